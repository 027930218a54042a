// tick.hpp — stage 1, ingest: the sensor tick and its validation.
//
// Contract:
//   input   one Tick (t in seconds, position and, when the sensor has it,
//           velocity in data units) and the stream's previous accepted tick
//           (none for a new stream);
//   output  Status::ok, or the first problem found;
//   cost    a handful of compares;
//   errors  non_finite, out_of_range (a finite value outside the model's
//           InputRanges, see engine.hpp), time_not_increasing. Validation
//           never writes to stream state: the caller commits state only
//           after ok.
// Long gaps are not errors: the engine restarts the stream (see engine.hpp).
// The grid, the velocity of a position-only tick and the features: ingest.hpp.
#pragma once

#include <array>
#include <cmath>

#include "tmn/status.hpp"

namespace tmn {

struct Tick {
  double t;   // seconds, strictly increasing within a stream
  double x;   // position, data units
  double y;
  double vx;  // velocity, data units per second (ignored without has_velocity)
  double vy;
  bool has_velocity = true;  // false: the engine differentiates the positions
};

// What a tick may hold (derived from the model by input_ranges(), engine.hpp):
// |t| <= t_max; per axis |position| <= pos_max, and |velocity| <= vel_max for
// the tick's own velocity and for the one implied by its displacement from
// the previous tick, when that is at most max_gap_s earlier (a longer gap
// restarts the stream, which may then start anywhere).
struct InputRanges {
  double t_max = 0.0;
  std::array<double, 2> pos_max{}, vel_max{};
  double max_gap_s = 0.0;
};

// `prev` is the stream's previous accepted tick, or null for a new stream.
inline Status validate_tick(const Tick& k, const Tick* prev, const InputRanges& r) noexcept {
  if (!(std::isfinite(k.t) && std::isfinite(k.x) && std::isfinite(k.y))) return Status::non_finite;
  if (k.has_velocity && !(std::isfinite(k.vx) && std::isfinite(k.vy))) return Status::non_finite;
  if (!(std::fabs(k.t) <= r.t_max && std::fabs(k.x) <= r.pos_max[0] &&
        std::fabs(k.y) <= r.pos_max[1]))
    return Status::out_of_range;
  if (k.has_velocity && !(std::fabs(k.vx) <= r.vel_max[0] && std::fabs(k.vy) <= r.vel_max[1]))
    return Status::out_of_range;
  if (prev == nullptr) return Status::ok;
  const double dt = k.t - prev->t;
  if (!(dt > 0.0)) return Status::time_not_increasing;
  if (dt <= r.max_gap_s && !(std::fabs(k.x - prev->x) <= r.vel_max[0] * dt &&
                             std::fabs(k.y - prev->y) <= r.vel_max[1] * dt))
    return Status::out_of_range;  // a jump no sensor makes
  return Status::ok;
}

}  // namespace tmn
