// status.hpp — the error codes of the tick path.
//
// Contract: every hot-path operation returns a Status instead of throwing.
// `Status::ok` is zero; every other value names one problem with the input.
// The numeric values are part of the wire protocol and the Python API
// (tmn.Status), so they are append-only: never renumber.
#pragma once

#include <cstdint>

namespace tmn {

enum class Status : std::uint8_t {
  ok = 0,
  non_finite = 1,          // t, x, y, vx or vy is NaN or infinite
  time_not_increasing = 2, // t <= the stream's previous t
  capacity_exceeded = 3,   // a new stream, but the stream table is full
  unknown_stream = 4,      // reset/lookup of a stream the table does not hold
  out_of_range = 5,        // a finite value outside the model's valid range (engine.hpp)
  non_finite_output = 6,   // the engine computed a non-finite path; nothing was kept
};

// Every status, in value order (the bindings export each one by name).
inline constexpr Status kStatuses[] = {Status::ok, Status::non_finite, Status::time_not_increasing,
                                       Status::capacity_exceeded, Status::unknown_stream,
                                       Status::out_of_range, Status::non_finite_output};

constexpr const char* status_name(Status s) noexcept {
  switch (s) {
    case Status::ok: return "ok";
    case Status::non_finite: return "non_finite";
    case Status::time_not_increasing: return "time_not_increasing";
    case Status::capacity_exceeded: return "capacity_exceeded";
    case Status::unknown_stream: return "unknown_stream";
    case Status::out_of_range: return "out_of_range";
    case Status::non_finite_output: return "non_finite_output";
  }
  return "unknown_status";
}

}  // namespace tmn
