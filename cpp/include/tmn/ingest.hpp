// ingest.hpp — stage 1, ingest: sensor ticks onto the model's grid, and the
// network's input features.
//
// Contract:
//   input   accepted ticks of one stream (validated by tick.hpp), at any rate,
//           with or without velocity;
//   output  grid samples at the model rate, t_n = t_0 + n / rate (t_0 the
//           stream's first tick), each with a position and a velocity, and
//           the features the network reads at each;
//   cost    per grid sample: a linear interpolation, a W-sample differentiator
//           (W = velocity_window) when the tick has no velocity, and a few
//           flops of features; no allocation, no errors. The per-stream state
//           (GridState) is a plain value of ~600 bytes.
//
// Training resamples every recording with exactly this code (the bindings'
// `resample` and `grid_features`), so the engine sees what training saw.
//
// 1. Grid. A tick at t emits every grid point n with t_prev < t_n <= t, where
//    n <= floor((t - t_0) rate + 1e-9) (numpy's count of the same span). Its
//    values are np.interp's: (v - v_prev) / (t - t_prev) * (t_n - t_prev)
//    + v_prev between the previous and the current tick, and exactly the
//    tick's own values when t_n == t.
// 2. Velocity. A tick without velocity gets, at each grid sample, the causal
//    least-squares slope of the last m = min(n + 1, W) grid positions:
//      v_n = rate * sum_{j<m} w_j p_{n-m+1+j},  w_j = (j - (m-1)/2) / sum_i (i - (m-1)/2)^2
//    (v_0 = 0): a first-order causal Savitzky-Golay differentiator.
// 3. Features (translation invariant: no absolute position), per axis:
//      v      the grid velocity (measured or differentiated);
//      hp     (p - e) / tau, e the exponential moving average of the position,
//             e_0 = p_0, e_n = e_{n-1} + a (p_n - e_{n-1}), a = 1 - exp(-1 / (rate tau)):
//             the position's recent motion in velocity units, low in noise;
//    and for System B the prior's own state after its update on the sample:
//      v_hat  the posterior velocity;
//      innov  the innovation: p_n minus the prior's prediction of it.
//    A reads [vx, vy, hpx, hpy]; B reads those and [vhx, vhy, ix, iy].
#pragma once

#include <array>
#include <cstdint>

#include "tmn/kalman.hpp"
#include "tmn/tick.hpp"

namespace tmn {

inline constexpr int kMaxVelocityWindow = 32;
// Grid samples one tick may emit: the model rate times the longest gap that
// does not restart a stream must stay within it (checked at load).
inline constexpr int kMaxGridStepsPerTick = 4096;
inline constexpr int kFeaturesA = 4;
inline constexpr int kFeaturesB = 8;
inline constexpr int kMaxFeatures = kFeaturesB;
// The features in input order: B reads all, A the first kFeaturesA.
inline constexpr const char* kFeatureNames[kMaxFeatures] = {"vx", "vy", "hpx", "hpy",
                                                            "vhx", "vhy", "ix", "iy"};

// z = (feature - mean) / std for the features above.
struct Normaliser {
  int features = 0;  // F
  std::array<double, kMaxFeatures> mean{};
  std::array<double, kMaxFeatures> inv_std{};  // 1/std, precomputed at load

  void apply(const double* f, float* z) const noexcept {
    for (int i = 0; i < features; ++i) z[i] = static_cast<float>((f[i] - mean[i]) * inv_std[i]);
  }
};

struct IngestParams {
  double rate_hz = 2000.0;    // the model grid
  int velocity_window = 8;    // W, samples of the differentiator (2..kMaxVelocityWindow)
  double highpass_s = 0.032;  // tau of the position high-pass feature
};

// One grid sample: position and velocity at t = t_0 + n / rate.
struct GridSample {
  double t, x, y, vx, vy;
};

// Everything ingest keeps per stream.
struct GridState {
  double t0 = 0.0;
  std::uint64_t n = 0;    // grid samples emitted since the (re)start
  Tick prev{};            // the last accepted tick (without velocity: the grid's)
  std::array<double, kMaxVelocityWindow> rx{}, ry{};  // the last W grid positions
  int head = 0;           // where the next position goes in rx, ry
  int filled = 0;         // how many of them hold positions
  double ex = 0.0, ey = 0.0;  // the high-pass's moving average
};

class Ingest {
 public:
  // Throws std::invalid_argument on parameters outside the contract.
  explicit Ingest(const IngestParams& p);

  // The first tick of a stream (or of a restart) is grid sample 0.
  GridSample start(GridState& s, const Tick& k, bool has_velocity) const noexcept;
  // How many grid samples a tick at t emits (0, 1 or more).
  std::uint64_t pending(const GridState& s, double t) const noexcept;
  // Calls on_sample(const GridSample&) for each grid sample in (t_prev, k.t],
  // oldest first, then makes k the stream's previous tick.
  template <class OnSample>
  void advance(GridState& s, const Tick& k, bool has_velocity, OnSample&& on_sample) const
      noexcept {
    const std::uint64_t end = s.n + pending(s, k.t);
    double vx = s.prev.vx, vy = s.prev.vy;
    for (; s.n < end; ++s.n) {
      const GridSample g = sample_at(s, k, has_velocity);
      vx = g.vx;
      vy = g.vy;
      on_sample(g);
    }
    s.prev = k;
    // a position-only tick's vx, vy are whatever the peer sent: the stream
    // keeps the differentiated velocity instead, for a later tick with one
    if (!has_velocity) {
      s.prev.vx = vx;
      s.prev.vy = vy;
    }
  }
  double grid_t(const GridState& s, std::uint64_t n) const noexcept {
    return s.t0 + static_cast<double>(n) / rate_;
  }

  // Raw features of grid sample g (kFeaturesA values into f); advances the
  // high-pass. start() has already set it up for sample 0.
  void features_a(GridState& s, const GridSample& g, double* f) const noexcept;
  // B: also the prior after its update on g (post) and its prediction of g's
  // position before the update (kFeaturesB values into f).
  void features_b(GridState& s, const GridSample& g, const KalmanState& post, double pred_x,
                  double pred_y, double* f) const noexcept;

  const IngestParams& params() const noexcept { return p_; }

 private:
  GridSample sample_at(GridState& s, const Tick& k, bool has_velocity) const noexcept;
  double slope(const std::array<double, kMaxVelocityWindow>& ring, const GridState& s) const
      noexcept;

  IngestParams p_;
  double rate_, alpha_, inv_tau_;
  // w_[m][j]: the differentiator's weights with m samples (2 <= m <= W)
  std::array<std::array<double, kMaxVelocityWindow>, kMaxVelocityWindow + 1> w_{};
};

}  // namespace tmn
