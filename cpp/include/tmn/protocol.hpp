// protocol.hpp — the binary wire frames (docs/protocol.md is normative).
//
// Contract: fixed-size little-endian records behind a 16-byte header. A
// request carries a batch of TickRecord (kind ticks; kind position_ticks: the
// sensor has no velocity, vx and vy are ignored and the engine differentiates
// the positions, ingest.hpp); the reply carries one
// PredictionRecord per tick (in order, each with its own status), or an
// ErrorBody when the frame itself is unreadable. The point kinds
// (point_ticks, point_position_ticks) carry a PointQuery before the ticks and
// are answered with one PointRecord per tick: the predicted point dt seconds
// after each tick instead of the whole path. Control messages are JSON and
// start with '{'. Parsing never allocates: frames are read in place.
#pragma once

#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <iterator>

namespace tmn::wire {

static_assert(std::endian::native == std::endian::little,
              "the wire format is little-endian; add byte swapping for this CPU");

inline constexpr std::uint32_t kMagic = 0x314E4D54;  // bytes "TMN1"
inline constexpr std::uint16_t kVersion = 2;  // 2: the radius, the point kinds
inline constexpr std::uint32_t kMaxBatch = 4096;      // ticks per request

enum class Kind : std::uint16_t {
  ticks = 1,
  predictions = 2,
  error = 3,
  position_ticks = 4,
  point_ticks = 5,           // ticks with a PointQuery: answered with points
  point_position_ticks = 6,  // position-only ticks with a PointQuery
  points = 7,
};

// Frame-level error codes (a bad tick inside a good frame is reported in its
// PredictionRecord.status instead). Append-only.
enum class FrameError : std::uint16_t {
  bad_magic = 1,      // not a tmn frame (and not JSON)
  bad_version = 2,    // a version this server does not speak
  bad_kind = 3,       // not a tick batch
  bad_size = 4,       // length != header + count * record
  batch_too_large = 5,// count > kMaxBatch
  empty_batch = 6,    // count == 0
  bad_json = 7,       // control message is not valid JSON / not an object
  bad_request = 8,    // control message with a missing or bad field
  unknown_command = 9,
  bad_envelope = 10,  // multipart layout not [identity, (empty,) payload]
  internal = 11,      // the request could not be completed (see message)
  overloaded = 12,    // too many of this client's ticks are waiting (server.hpp)
  bad_query = 13,     // a point query whose dt is not positive and finite
};

// The names of the frame errors, in value order from 1 (stats and
// tmn.protocol use them), and every frame error in that order.
inline constexpr const char* kFrameErrorNames[] = {
    "bad_magic", "bad_version", "bad_kind", "bad_size", "batch_too_large", "empty_batch",
    "bad_json", "bad_request", "unknown_command", "bad_envelope", "internal", "overloaded",
    "bad_query"};
inline constexpr int kFrameErrorCount = static_cast<int>(std::size(kFrameErrorNames));
static_assert(static_cast<int>(FrameError::bad_query) == kFrameErrorCount,
              "every frame error needs its name, in value order");
inline constexpr auto kFrameErrors = [] {
  std::array<FrameError, kFrameErrorCount> all{};
  for (int i = 0; i < kFrameErrorCount; ++i) all[i] = static_cast<FrameError>(i + 1);
  return all;
}();

constexpr const char* frame_error_name(FrameError e) noexcept {
  const int i = static_cast<int>(e) - 1;
  return i >= 0 && i < kFrameErrorCount ? kFrameErrorNames[i] : "unknown_frame_error";
}

struct Header {
  std::uint32_t magic;
  std::uint16_t version;
  std::uint16_t kind;
  std::uint32_t count;  // records that follow
  std::uint32_t seq;    // client's correlation id, echoed in the reply
};
static_assert(sizeof(Header) == 16);

struct TickRecord {
  std::uint64_t stream;
  double t, x, y, vx, vy;
};
static_assert(sizeof(TickRecord) == 48);

// A prediction reply is Header{kind=predictions}, PredictionInfo, then
// `count` records of PredictionRecord followed by path[horizons][2] doubles
// and radius[horizons] floats.
struct PredictionInfo {
  std::uint16_t horizons;      // K
  std::uint16_t record_bytes;  // sizeof(PredictionRecord) + 20 K
  std::uint32_t reserved;
};
static_assert(sizeof(PredictionInfo) == 8);

struct PredictionRecord {
  std::uint64_t stream;
  double t;
  std::uint8_t status;   // tmn::Status
  std::uint8_t verdict;  // tmn::Verdict (kNoPrediction when status != ok)
  std::uint8_t flags;    // bit 0: the stream restarted on this tick
  std::uint8_t reserved;
  std::uint32_t work;     // touched nonzeros spent by the gate
  float d2;               // plausibility statistic (NaN for A)
  float cert_error;       // proven bound on the projection error (output units)
  std::uint32_t total_ns; // engine time for this tick
  std::uint32_t stage_ns[5];  // kStageNames: ingest, prior, network, gate, actuation
  double t_grid;          // the path's anchor: point k is the prediction for t_grid + h_k
};
static_assert(sizeof(PredictionRecord) == 64);

constexpr std::size_t prediction_record_bytes(int horizons) noexcept {
  return sizeof(PredictionRecord) + 20u * static_cast<std::size_t>(horizons);
}

// The point kinds' request: Header, PointQuery, then `count` TickRecords.
struct PointQuery {
  double dt;  // seconds after each tick's t: positive and finite
};
static_assert(sizeof(PointQuery) == 8);

// A points reply is Header{kind=points}, then `count` of these, in order.
struct PointRecord {
  std::uint64_t stream;
  double t;               // the tick's
  std::uint8_t status;    // tmn::Status
  std::uint8_t verdict;   // tmn::Verdict (kNoPrediction when status != ok)
  std::uint8_t flags;     // bit 0: the stream restarted on this tick
  std::uint8_t reserved;
  float radius;           // 90 % error radius at t + dt (NaN: none)
  double x, y;            // the predicted point at t + dt (NaN beyond the last horizon)
  std::uint32_t total_ns; // engine time for this tick
  std::uint32_t reserved2;
};
static_assert(sizeof(PointRecord) == 48);

constexpr bool is_point_kind(std::uint16_t kind) noexcept {
  return kind == static_cast<std::uint16_t>(Kind::point_ticks) ||
         kind == static_cast<std::uint16_t>(Kind::point_position_ticks);
}
constexpr bool has_velocity(std::uint16_t kind) noexcept {
  return kind == static_cast<std::uint16_t>(Kind::ticks) ||
         kind == static_cast<std::uint16_t>(Kind::point_ticks);
}

// An error reply is Header{kind=error, count=0}, ErrorBody, then
// message_bytes of UTF-8 text.
struct ErrorBody {
  std::uint16_t code;  // FrameError
  std::uint16_t message_bytes;
  std::uint32_t reserved;
};
static_assert(sizeof(ErrorBody) == 8);

// The frame-level check of a tick batch (its records are checked per tick by
// the engine). Returns 0 and fills h (and, for the point kinds, q) when the
// frame is a readable tick batch of any tick kind, else the FrameError to
// answer, and its message in *why. The header is read only when the frame
// holds one (h.seq is echoed for codes other than bad_magic).
inline std::uint16_t check_tick_frame(const std::uint8_t* data, std::size_t n, Header& h,
                                      PointQuery& q, const char** why) noexcept {
  const auto fail = [why](FrameError e, const char* msg) {
    *why = msg;
    return static_cast<std::uint16_t>(e);
  };
  if (n < sizeof h) return fail(FrameError::bad_magic, "frame shorter than the 16-byte header");
  std::memcpy(&h, data, sizeof h);
  if (h.magic != kMagic) return fail(FrameError::bad_magic, "not a tmn frame: bad magic (and not JSON)");
  if (h.version != kVersion)
    return fail(FrameError::bad_version, "unsupported frame version; this server speaks 2");
  const bool point = is_point_kind(h.kind);
  if (!point && h.kind != static_cast<std::uint16_t>(Kind::ticks) &&
      h.kind != static_cast<std::uint16_t>(Kind::position_ticks))
    return fail(FrameError::bad_kind,
                "only tick batches (kind 1, 4 without velocity, 5 and 6 with a point query) "
                "are accepted");
  if (h.count == 0) return fail(FrameError::empty_batch, "a tick batch needs at least one tick");
  if (h.count > kMaxBatch) return fail(FrameError::batch_too_large, "more than 4096 ticks in one frame");
  const std::size_t query = point ? sizeof q : 0;
  if (n != sizeof h + query + static_cast<std::size_t>(h.count) * sizeof(TickRecord))
    return fail(FrameError::bad_size, point ? "frame length != 16 + 8 + 48 * count"
                                            : "frame length != 16 + 48 * count");
  q.dt = 0.0;
  if (point) {
    std::memcpy(&q, data + sizeof h, sizeof q);
    if (!(q.dt > 0.0 && q.dt < 1e300))
      return fail(FrameError::bad_query, "a point query's dt must be positive and finite");
  }
  return 0;
}

}  // namespace tmn::wire
