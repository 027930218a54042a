#include "tmn/kalman.hpp"

namespace tmn {

void KalmanPrior::init(KalmanState& s, const Tick& z) const noexcept {
  s.px = z.x;
  s.py = z.y;
  s.vx = z.vx;
  s.vy = z.vy;
  s.p_pp = p_.r_pos;
  s.p_pv = 0.0;
  s.p_vv = p_.r_vel;
}

void KalmanPrior::step(KalmanState& s, const Tick& z, double dt) const noexcept {
  // predict: x = F x, P = F P F^T + Q
  s.px += s.vx * dt;
  s.py += s.vy * dt;
  const double dt2 = dt * dt;
  const double a = s.p_pp + 2.0 * dt * s.p_pv + dt2 * s.p_vv + p_.q * dt2 * dt / 3.0;
  const double b = s.p_pv + dt * s.p_vv + p_.q * dt2 / 2.0;
  const double c = s.p_vv + p_.q * dt;

  // update: S = P + R, K = P S^-1
  const double s00 = a + p_.r_pos, s01 = b, s11 = c + p_.r_vel;
  const double inv_det = 1.0 / (s00 * s11 - s01 * s01);
  const double i00 = s11 * inv_det, i01 = -s01 * inv_det, i11 = s00 * inv_det;
  const double k00 = a * i00 + b * i01, k01 = a * i01 + b * i11;
  const double k10 = b * i00 + c * i01, k11 = b * i01 + c * i11;

  // x += K (z - x), per axis (same gain for both)
  const double ex = z.x - s.px, evx = z.vx - s.vx;
  const double ey = z.y - s.py, evy = z.vy - s.vy;
  s.px += k00 * ex + k01 * evx;
  s.vx += k10 * ex + k11 * evx;
  s.py += k00 * ey + k01 * evy;
  s.vy += k10 * ey + k11 * evy;

  // Joseph form: P = (I-K) P (I-K)^T + K R K^T, kept symmetric by construction.
  const double m00 = 1.0 - k00, m01 = -k01, m10 = -k10, m11 = 1.0 - k11;
  // T = (I-K) P
  const double t00 = m00 * a + m01 * b, t01 = m00 * b + m01 * c;
  const double t10 = m10 * a + m11 * b, t11 = m10 * b + m11 * c;
  const double r0 = p_.r_pos, r1 = p_.r_vel;
  s.p_pp = t00 * m00 + t01 * m01 + k00 * k00 * r0 + k01 * k01 * r1;
  s.p_pv = t00 * m10 + t01 * m11 + k00 * k10 * r0 + k01 * k11 * r1;
  s.p_vv = t10 * m10 + t11 * m11 + k10 * k10 * r0 + k11 * k11 * r1;
}

void KalmanPrior::variances(const KalmanState& s, const HorizonTerms* t, int K,
                            double* var) const noexcept {
  // s_k = p_pp + 2 h_k p_pv + h_k^2 p_vv + q h_k^3 / 3
  for (int k = 0; k < K; ++k)
    var[k] = s.p_pp + t[k].two_h * s.p_pv + t[k].h2 * s.p_vv + t[k].q_h3;
}

void KalmanPrior::extrapolate(const KalmanState& s, const HorizonTerms* t, int K,
                              double* rel, double* var) const noexcept {
  for (int k = 0; k < K; ++k) {
    rel[2 * k] = s.vx * t[k].h;
    rel[2 * k + 1] = s.vy * t[k].h;
  }
  variances(s, t, K, var);
}

void KalmanPrior::extrapolate(const KalmanState& s, const double* h, int K,
                              double* rel, double* var) const noexcept {
  for (int k = 0; k < K; ++k) {
    const HorizonTerms t = terms(h[k]);
    extrapolate(s, &t, 1, rel + 2 * k, var + k);
  }
}

}  // namespace tmn
