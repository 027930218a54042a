#include "tmn/ingest.hpp"

#include <cmath>
#include <stdexcept>

namespace tmn {

Ingest::Ingest(const IngestParams& p)
    : p_(p), rate_(p.rate_hz), alpha_(0.0), inv_tau_(0.0) {
  if (!(p.rate_hz > 0.0 && std::isfinite(p.rate_hz)))
    throw std::invalid_argument("ingest: sample_rate_hz must be positive");
  if (p.velocity_window < 2 || p.velocity_window > kMaxVelocityWindow)
    throw std::invalid_argument("ingest.velocity_window must be in [2, kMaxVelocityWindow]");
  if (!(p.highpass_s > 0.0 && std::isfinite(p.highpass_s)))
    throw std::invalid_argument("ingest.highpass_ms must be positive");
  alpha_ = 1.0 - std::exp(-1.0 / (p.rate_hz * p.highpass_s));
  inv_tau_ = 1.0 / p.highpass_s;
  // w_[m][j] = (j - c) / sum_i (i - c)^2 with c = (m - 1) / 2
  for (int m = 2; m <= p.velocity_window; ++m) {
    const double c = 0.5 * (m - 1);
    double den = 0.0;
    for (int i = 0; i < m; ++i) den += (i - c) * (i - c);
    for (int j = 0; j < m; ++j) w_[m][j] = (j - c) / den;
  }
}

GridSample Ingest::start(GridState& s, const Tick& k, bool has_velocity) const noexcept {
  s.t0 = k.t;
  s.n = 1;
  s.prev = k;
  if (!has_velocity) s.prev.vx = s.prev.vy = 0.0;  // v_0 = 0, not the peer's fields
  s.rx[0] = k.x;
  s.ry[0] = k.y;
  s.head = 1 % p_.velocity_window;
  s.filled = 1;
  s.ex = k.x;
  s.ey = k.y;
  if (has_velocity) return {k.t, k.x, k.y, k.vx, k.vy};
  return {k.t, k.x, k.y, 0.0, 0.0};
}

std::uint64_t Ingest::pending(const GridState& s, double t) const noexcept {
  // the grid's last index at t, as numpy counts np.arange over the span
  const double last = std::floor((t - s.t0) * rate_ + 1e-9);
  if (!(last >= static_cast<double>(s.n))) return 0;
  // a gap longer than max_gap restarts the stream before this is called, so
  // `last` is small; the clamp only keeps the conversion defined
  const double cap = static_cast<double>(s.n) + kMaxGridStepsPerTick;
  return static_cast<std::uint64_t>(last < cap ? last : cap) + 1 - s.n;
}

double Ingest::slope(const std::array<double, kMaxVelocityWindow>& ring, const GridState& s) const
    noexcept {
  const int W = p_.velocity_window, m = s.filled;
  if (m < 2) return 0.0;
  const auto& w = w_[m];
  double v = 0.0;
  int i = s.head - m;  // the oldest of the m positions
  if (i < 0) i += W;
  for (int j = 0; j < m; ++j) {
    v += w[j] * ring[i];
    if (++i == W) i = 0;
  }
  return v * rate_;
}

GridSample Ingest::sample_at(GridState& s, const Tick& k, bool has_velocity) const noexcept {
  const double t = grid_t(s, s.n);
  GridSample g{t, k.x, k.y, k.vx, k.vy};
  if (t != k.t) {  // np.interp between the previous and the current tick
    const Tick& a = s.prev;
    const double dt = k.t - a.t, u = t - a.t;
    g.x = (k.x - a.x) / dt * u + a.x;
    g.y = (k.y - a.y) / dt * u + a.y;
    if (has_velocity) {
      g.vx = (k.vx - a.vx) / dt * u + a.vx;
      g.vy = (k.vy - a.vy) / dt * u + a.vy;
    }
  }
  // 2. the differentiator's window: the last W grid positions
  const int W = p_.velocity_window;
  s.rx[s.head] = g.x;
  s.ry[s.head] = g.y;
  if (++s.head == W) s.head = 0;
  if (s.filled < W) ++s.filled;
  if (!has_velocity) {
    g.vx = slope(s.rx, s);
    g.vy = slope(s.ry, s);
  }
  return g;
}

void Ingest::features_a(GridState& s, const GridSample& g, double* f) const noexcept {
  s.ex += alpha_ * (g.x - s.ex);
  s.ey += alpha_ * (g.y - s.ey);
  f[0] = g.vx;
  f[1] = g.vy;
  f[2] = (g.x - s.ex) * inv_tau_;
  f[3] = (g.y - s.ey) * inv_tau_;
}

void Ingest::features_b(GridState& s, const GridSample& g, const KalmanState& post,
                        double pred_x, double pred_y, double* f) const noexcept {
  features_a(s, g, f);
  f[4] = post.vx;
  f[5] = post.vy;
  f[6] = g.x - pred_x;
  f[7] = g.y - pred_y;
}

}  // namespace tmn
