// kalman.hpp — stage 2, prior: a constant-velocity Kalman filter aware of dt.
//
// Contract:
//   state   (x, y, vx, vy) with a 4x4 covariance. Q, R and F are block-
//           diagonal per axis and both axes start from the same P0 = R, so the
//           covariance is the same 2x2 block [[p_pp, p_pv], [p_pv, p_vv]] for
//           both axes at every step. We store that block once: exact, not an
//           approximation (tests compare against filterpy's full 4x4 filter).
//   step    predict over the real dt, then update with the measured position
//           and velocity (H = I4):
//             F(dt) = [[1, dt], [0, 1]]
//             Q(dt) = q [[dt^3/3, dt^2/2], [dt^2/2, dt]]   (white-noise accel.)
//             R     = diag(r_pos, r_vel)
//           The update uses the Joseph form, as filterpy does.
//   prior   m_k = p + v h_k with per-axis position variance
//             s_k = p_pp + 2 h_k p_pv + h_k^2 p_vv + q h_k^3 / 3.
//   cost    ~60 flops per step, ~5 flops per horizon; no allocation, no errors
//           (inputs are validated by ingest; dt > 0).
//   bounds  q in [0, kMaxKalmanQ], r_pos and r_vel in [kMinKalmanR,
//           kMaxKalmanR] (checked when an engine is built): wide enough for
//           any data unit, narrow enough that no variance overflows.
#pragma once

#include "tmn/tick.hpp"

namespace tmn {

inline constexpr double kMaxKalmanQ = 1e15;
inline constexpr double kMinKalmanR = 1e-12;
inline constexpr double kMaxKalmanR = 1e15;

struct KalmanParams {
  double q;      // white-noise acceleration spectral density, (units/s^2)^2 / Hz
  double r_pos;  // position measurement variance, units^2
  double r_vel;  // velocity measurement variance, (units/s)^2
};

struct KalmanState {
  double px, py, vx, vy;     // posterior mean
  double p_pp, p_pv, p_vv;   // posterior covariance block, shared by both axes
};

class KalmanPrior {
 public:
  explicit KalmanPrior(const KalmanParams& p) noexcept : p_(p) {}

  // First tick of a stream: x = z, P = R.
  void init(KalmanState& s, const Tick& z) const noexcept;
  // Predict over dt (> 0), then update with z.
  void step(KalmanState& s, const Tick& z, double dt) const noexcept;
  // For horizons h[0..K): the prior path relative to the posterior position,
  // rel[2k] = vx h_k, rel[2k+1] = vy h_k, and the per-axis variance var[k].
  void extrapolate(const KalmanState& s, const double* h, int K, double* rel,
                   double* var) const noexcept;

  // The factors of s_k that depend on the horizon only: fixed for a model's
  // horizons, so the engine computes them once (terms) and extrapolates from
  // them, with the same operations and so the same bits as from h.
  struct HorizonTerms {
    double h, two_h, h2, q_h3;  // h, 2 h, h^2, q h^3 / 3
  };
  HorizonTerms terms(double h) const noexcept { return {h, 2.0 * h, h * h, p_.q * h * h * h / 3.0}; }
  void extrapolate(const KalmanState& s, const HorizonTerms* t, int K, double* rel,
                   double* var) const noexcept;
  // The variances var[k] alone (for a caller that builds the path itself).
  void variances(const KalmanState& s, const HorizonTerms* t, int K, double* var) const noexcept;

  const KalmanParams& params() const noexcept { return p_; }

 private:
  KalmanParams p_;
};

}  // namespace tmn
