// tick.hpp — stage 1, ingest: the sensor tick and its validation.
//
// Contract:
//   input   one Tick (t in seconds, position and velocity in data units) and
//           the stream's previous t (NaN for a new stream);
//   output  Status::ok, or the first problem found; on ok, the z-scored
//           network features;
//   cost    a handful of compares and four fused multiply-adds;
//   errors  non_finite, out_of_range (a finite value outside the model's
//           InputRanges, see engine.hpp), time_not_increasing. Validation
//           never writes to stream state: the caller commits state only
//           after ok.
// Long gaps are not errors: the engine restarts the stream (see engine.hpp).
#pragma once

#include <array>
#include <cmath>

#include "tmn/status.hpp"

namespace tmn {

struct Tick {
  double t;   // seconds, strictly increasing within a stream
  double x;   // position, data units
  double y;
  double vx;  // velocity, data units per second
  double vy;
};

// The network's input features, in order: the one list of them (the
// bindings export it; model artifacts name it in config.json "features").
inline constexpr const char* kFeatureNames[] = {"x", "y", "vx", "vy"};

// z = (feature - mean) / std for the features of kFeatureNames.
struct Normaliser {
  std::array<double, 4> mean{};
  std::array<double, 4> inv_std{};  // 1/std, precomputed at load

  void apply(const Tick& k, float* z) const noexcept {
    z[0] = static_cast<float>((k.x - mean[0]) * inv_std[0]);
    z[1] = static_cast<float>((k.y - mean[1]) * inv_std[1]);
    z[2] = static_cast<float>((k.vx - mean[2]) * inv_std[2]);
    z[3] = static_cast<float>((k.vy - mean[3]) * inv_std[3]);
  }
};

// The closed interval [lo, hi] each tick field must lie in, in the order
// t, x, y, vx, vy. Derived from the model by input_ranges() (engine.hpp).
struct InputRanges {
  std::array<double, 5> lo{}, hi{};
};

// `prev_t` is NaN for a stream that has no tick yet. Comparisons with NaN
// are false, so a new stream accepts any finite t in range.
inline Status validate_tick(const Tick& k, double prev_t, const InputRanges& r) noexcept {
  const double v[5] = {k.t, k.x, k.y, k.vx, k.vy};
  for (double f : v)
    if (!std::isfinite(f)) return Status::non_finite;
  for (int i = 0; i < 5; ++i)
    if (!(v[i] >= r.lo[i] && v[i] <= r.hi[i])) return Status::out_of_range;
  if (k.t <= prev_t) return Status::time_not_increasing;
  return Status::ok;
}

}  // namespace tmn
