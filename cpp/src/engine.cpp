#include "tmn/engine.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "tmn/clock.hpp"

namespace tmn {

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// Two overloads, so that a passing check on a literal builds no string.
void require(bool ok, const char* what) {
  if (!ok) throw std::invalid_argument(what);
}
void require(bool ok, const std::string& what) {
  if (!ok) throw std::invalid_argument(what);
}

template <class T>
void require_size(const std::vector<T>& v, std::size_t n, const char* name) {
  require(v.size() == n, std::string(name) + ": expected " + std::to_string(n) +
                             " values, got " + std::to_string(v.size()));
}

// dst[j * ld + i] = src[i * cols + j]; padding stays zero
template <class T>
void transpose_into(const std::vector<T>& src, int rows, int cols, long ld, T* dst) {
  for (int i = 0; i < rows; ++i)
    for (int j = 0; j < cols; ++j) dst[j * ld + i] = src[static_cast<long>(i) * cols + j];
}

// dst[(p * ld + i) * 2 + t] = src[i * cols + 2p + t]; padding stays zero
void pair_columns(const std::vector<std::int8_t>& src, int rows, int cols, long ld,
                  std::int16_t* dst) {
  for (int i = 0; i < rows; ++i)
    for (int j = 0; j < cols; ++j)
      dst[((j / 2) * ld + i) * 2 + (j & 1)] = src[static_cast<long>(i) * cols + j];
}

GruWeights load_weights(const ModelSpec& m, int K) {
  const int H = m.hidden, G = 3 * m.hidden, O = 2 * K;
  require(H >= 1 && H <= kMaxHidden,
          "hidden must be in [1, " + std::to_string(kMaxHidden) + "]");
  require_size(m.w_ih, static_cast<std::size_t>(G) * kFeatures, "w_ih");
  require_size(m.w_hh, static_cast<std::size_t>(G) * H, "w_hh");
  require_size(m.b_ih, G, "b_ih");
  require_size(m.b_hh, G, "b_hh");
  require_size(m.w_out, static_cast<std::size_t>(O) * H, "w_out");
  require_size(m.b_out, O, "b_out");
  require_size(m.q_ih, m.w_ih.size(), "q_ih");
  require_size(m.q_hh, m.w_hh.size(), "q_hh");
  require_size(m.q_out, m.w_out.size(), "q_out");
  require_size(m.s_ih, G, "s_ih");
  require_size(m.s_hh, G, "s_hh");
  require_size(m.s_out, O, "s_out");
  for (const auto* v : {&m.w_ih, &m.w_hh, &m.b_ih, &m.b_hh, &m.w_out, &m.b_out, &m.s_ih,
                        &m.s_hh, &m.s_out})
    for (float f : *v) require(std::isfinite(f), "weights must be finite");
  for (const auto* q : {&m.q_ih, &m.q_hh, &m.q_out})
    for (std::int8_t v : *q) require(v != -128, "int8 weights must be in [-127, 127]");

  GruWeights w(H, O);
  transpose_into(m.w_ih, G, kFeatures, w.ld_gates, w.w_ih_t.data());
  transpose_into(m.w_hh, G, H, w.ld_gates, w.w_hh_t.data());
  transpose_into(m.w_out, O, H, w.ld_out, w.w_out_t.data());
  pair_columns(m.q_ih, G, kFeatures, w.ld_gates, w.q_ih_p.data());
  pair_columns(m.q_hh, G, H, w.ld_gates, w.q_hh_p.data());
  pair_columns(m.q_out, O, H, w.ld_out, w.q_out_p.data());
  for (int i = 0; i < G; ++i) {
    w.b_ih[i] = m.b_ih[i];
    w.b_hh[i] = m.b_hh[i];
    w.s_ih[i] = m.s_ih[i];
    w.s_hh_h[i] = m.s_hh[i] / 127.0f;  // fold in the static hidden scale
  }
  for (int o = 0; o < O; ++o) {
    w.b_out[o] = m.b_out[o];
    w.s_out_h[o] = m.s_out[o] / 127.0f;
  }
  return w;
}

int checked_horizons(const ModelSpec& m) {
  const auto K = static_cast<int>(m.horizons_s.size());
  require(K >= 1 && K <= kMaxHorizons,
          "horizons: need 1 to " + std::to_string(kMaxHorizons) + " horizons");
  const double h0 = m.horizons_s[0];
  require(h0 > 0.0 && K * h0 <= kMaxHorizonS,
          "horizons: must be positive, the last at most kMaxHorizonS");
  for (int k = 0; k < K; ++k)
    require(std::fabs(m.horizons_s[k] - (k + 1) * h0) <= 1e-9 * (k + 1),
            "horizons: must be equally spaced multiples of the first (h_k = (k+1) h_0)");
  return K;
}

KalmanParams checked_kalman(const ModelSpec& m) {
  const auto in = [](double v, double lo, double hi) { return v >= lo && v <= hi; };
  require(in(m.kalman.q, 0.0, kMaxKalmanQ), "kalman.q must be in [0, kMaxKalmanQ]");
  require(in(m.kalman.r_pos, kMinKalmanR, kMaxKalmanR),
          "kalman.r_pos must be in [kMinKalmanR, kMaxKalmanR]");
  require(in(m.kalman.r_vel, kMinKalmanR, kMaxKalmanR),
          "kalman.r_vel must be in [kMinKalmanR, kMaxKalmanR]");
  return m.kalman;
}

GateParams checked_gate(const ModelSpec& m) {
  require(m.gate.eps >= kMinGateEps && m.gate.eps <= kMaxGateEps,
          "gate.eps must be in [kMinGateEps, kMaxGateEps]");
  require(m.gate.budget >= 1 && m.gate.budget <= kMaxGateBudget,
          "gate.budget must be in [1, kMaxGateBudget]");
  return m.gate;
}

}  // namespace

InputRanges input_ranges(const ModelSpec& m) noexcept {
  InputRanges r;
  r.lo[0] = -kMaxAbsTimeS;
  r.hi[0] = kMaxAbsTimeS;
  for (int f = 0; f < 4; ++f) {  // features x, y, vx, vy are tick fields 1..4
    const double reach = kInputSigmas * m.feature_std[f];
    r.lo[f + 1] = m.feature_mean[f] - reach;
    r.hi[f + 1] = m.feature_mean[f] + reach;
  }
  for (int a = 0; a < 2; ++a) {  // positions: also an absolute bound
    const double limit = kMaxAbsOutputUnits * m.output_scale[a];
    r.lo[a + 1] = std::max(r.lo[a + 1], -limit);
    r.hi[a + 1] = std::min(r.hi[a + 1], limit);
  }
  return r;
}

Engine::Engine(const ModelSpec& m, Precision precision, std::uint32_t max_streams, Isa isa)
    : system_(m.system),
      precision_(precision),
      K_(checked_horizons(m)),
      kernels_(nullptr),
      window_s_(m.window_s),
      max_gap_s_(m.max_gap_s),
      kalman_(checked_kalman(m)),
      w_(load_weights(m, K_)),
      scratch_(m.hidden, 2 * K_),
      table_(max_streams, m.hidden),
      saved_hidden_(static_cast<std::size_t>(m.hidden)) {
  require(isa_available(isa), std::string("isa '") + isa_name(isa) +
                                  "' is not available in this build on this CPU");
  kernels_ = &gru_kernels(isa);
  for (int i = 0; i < 4; ++i) {
    require(std::isfinite(m.feature_mean[i]), "normalisation.mean must be finite");
    require(m.feature_std[i] > 0.0 && std::isfinite(m.feature_std[i]),
            "normalisation.std must be positive");
    norm_.mean[i] = m.feature_mean[i];
    norm_.inv_std[i] = 1.0 / m.feature_std[i];
  }
  for (int a = 0; a < 2; ++a) {
    require(m.output_scale[a] > 0.0 && std::isfinite(m.output_scale[a]),
            "normalisation.output_scale must be positive");
    out_scale_[a] = m.output_scale[a];
    inv_out_scale2_[a] = 1.0 / (m.output_scale[a] * m.output_scale[a]);
  }
  require(window_s_ >= 0.0 && std::isfinite(window_s_), "window must be >= 0");
  require(max_gap_s_ > 0.0, "max_gap must be > 0");
  ranges_ = input_ranges(m);
  for (int k = 0; k < K_; ++k) h_[k] = m.horizons_s[k];
  if (system_ == System::B) gate_.emplace(checked_gate(m), K_, h_[0]);
  clock::calibrate();
}

Status Engine::tick(std::uint64_t stream, const Tick& k, Prediction& out) noexcept {
  const std::uint64_t c0 = clock::now();
  out.stream = stream;
  out.t = k.t;
  out.horizons = static_cast<std::uint16_t>(K_);
  out.restarted = false;

  // 1. ingest: validate before touching any state
  std::uint32_t slot = table_.find(stream);
  Status st = validate_tick(k, slot == StreamTable::kNone ? kNaN : table_.state(slot).t_last,
                            ranges_);
  const bool inserted = st == Status::ok && slot == StreamTable::kNone;
  if (inserted) {
    slot = table_.insert(stream);
    if (slot == StreamTable::kNone) st = Status::capacity_exceeded;
  }
  if (st != Status::ok) {
    out.status = st;
    out.stage_ns = {};
    out.total_ns = clock::to_ns(clock::now() - c0);
    return st;
  }
  StreamState& s = table_.state(slot);
  float* h = table_.hidden(slot);
  saved_state_ = s;  // for the output check in stage 5
  const std::uint64_t saved_seen = table_.last_seen(slot);
  for (int i = 0; i < w_.hidden; ++i) saved_hidden_[i] = h[i];
  bool fresh = s.ticks == 0;
  if (!fresh && k.t - s.t_last > max_gap_s_) {  // stale state: start over
    fresh = true;
    out.restarted = true;
    ++restarts_;
    for (int i = 0; i < w_.hidden; ++i) h[i] = 0.0f;
  }
  float z[kFeatures];
  norm_.apply(k, z);
  const std::uint64_t c1 = clock::now();

  // 2. prior: Kalman predict over the real dt, update, extrapolate
  if (fresh) {
    kalman_.init(s.kf, k);
    s.t_first = k.t;
    s.ticks = 0;
  } else {
    kalman_.step(s.kf, k, k.t - s.t_last);
  }
  s.t_last = k.t;
  ++s.ticks;
  table_.touch(slot, c0);
  kalman_.extrapolate(s.kf, h_.data(), K_, rel_.data(), var_.data());
  const std::uint64_t c2 = clock::now();

  // 3. network: one GRU step, hidden state carried in the stream table
  if (precision_ == Precision::int8)
    kernels_->step_int8(w_, z, h, y_.data(), scratch_);
  else
    kernels_->step_fp32(w_, z, h, y_.data(), scratch_);
  const std::uint64_t c3 = clock::now();

  // 4. gate: decide which path goes out, relative to (bx, by)
  const bool warming = k.t - s.t_first < window_s_;
  double bx = s.kf.px, by = s.kf.py;
  const double* rel = rel_.data();  // data units
  out.d2 = std::numeric_limits<float>::quiet_NaN();
  out.cert_error = std::numeric_limits<float>::quiet_NaN();
  out.work = 0;
  if (warming) {
    out.verdict = Verdict::warming;
  } else if (system_ == System::A) {
    // A predicts the displacement from the measured position
    out.verdict = Verdict::ungated;
    bx = k.x;
    by = k.y;
    for (int i = 0; i < 2 * K_; ++i) proj_[i] = y_[i] * out_scale_[i & 1];
    rel = proj_.data();
  } else {
    // B: work in output units, where eps and the threshold are defined
    for (int kk = 0; kk < K_; ++kk) {
      for (int a = 0; a < 2; ++a) {
        rel_[2 * kk + a] /= out_scale_[a];
        inv_var_[2 * kk + a] = 1.0 / (var_[kk] * inv_out_scale2_[a]);
      }
    }
    const double v[2] = {s.kf.vx / out_scale_[0], s.kf.vy / out_scale_[1]};
    const GateResult g = gate_->run(y_.data(), rel_.data(), inv_var_.data(), v, proj_.data());
    out.verdict = g.verdict;
    out.d2 = static_cast<float>(g.d2);
    // a certificate only for the certified path; a fallback serves the prior
    if (g.verdict == Verdict::pass) out.cert_error = bound_as_float(g.cert.error_bound);
    out.work = static_cast<std::uint32_t>(g.cert.work);
    const double* chosen = g.verdict == Verdict::pass ? proj_.data() : rel_.data();
    for (int i = 0; i < 2 * K_; ++i) proj_[i] = chosen[i] * out_scale_[i & 1];
    rel = proj_.data();
  }
  const std::uint64_t c4 = clock::now();

  // 5. actuation: the absolute path in data units, which must be finite
  bool finite = true;
  for (int kk = 0; kk < K_; ++kk) {
    out.path[2 * kk] = bx + rel[2 * kk];
    out.path[2 * kk + 1] = by + rel[2 * kk + 1];
    finite = finite && std::isfinite(out.path[2 * kk]) && std::isfinite(out.path[2 * kk + 1]);
  }
  out.status = Status::ok;
  if (!finite) {  // refuse the tick and put the stream back as it was
    if (inserted) {
      table_.erase(stream);
    } else {
      s = saved_state_;
      table_.touch(slot, saved_seen);
      for (int i = 0; i < w_.hidden; ++i) h[i] = saved_hidden_[i];
      if (out.restarted) --restarts_;
    }
    out.status = Status::non_finite_output;
    out.restarted = false;
  }
  const std::uint64_t c5 = clock::now();
  out.stage_ns = {clock::to_ns(c1 - c0), clock::to_ns(c2 - c1), clock::to_ns(c3 - c2),
                  clock::to_ns(c4 - c3), clock::to_ns(c5 - c4)};
  out.total_ns = clock::to_ns(c5 - c0);
  return out.status;
}

Status Engine::reset(std::uint64_t stream) noexcept {
  return table_.erase(stream) ? Status::ok : Status::unknown_stream;
}

std::uint32_t Engine::evict_idle(double idle_s) noexcept {
  if (!(idle_s >= 0.0)) return 0;  // NaN or negative: nothing is that idle
  return table_.evict_idle(clock::now(), clock::from_ns(idle_s * 1e9));
}

std::uint64_t Engine::replay(const ReplayInput& in, const ReplayOutput& out) noexcept {
  Prediction p;
  std::uint64_t good = 0;
  const int P = 2 * K_;
  const bool with_candidates = out.prior != nullptr && out.proposal != nullptr;
  for (std::uint64_t i = 0; i < in.n; ++i) {
    const Tick k{in.t[i], in.x[i], in.y[i], in.vx[i], in.vy[i]};
    const Status st = tick(in.stream ? in.stream[i] : 0, k, p);
    double* row = out.paths + i * P;
    out.status[i] = static_cast<std::uint8_t>(st);
    out.total_ns[i] = p.total_ns;
    for (int s = 0; s < kStages; ++s) out.stage_ns[i * kStages + s] = p.stage_ns[s];
    if (st == Status::ok) {
      ++good;
      for (int j = 0; j < P; ++j) row[j] = p.path[j];
      out.verdict[i] = static_cast<std::uint8_t>(p.verdict);
      out.cert[i] = p.cert_error;
      out.d2[i] = p.d2;
      out.work[i] = p.work;
      if (with_candidates)
        candidates(table_.state(table_.find(p.stream)), k, out.prior + i * P,
                   out.proposal + i * P);
    } else {
      for (int j = 0; j < P; ++j) row[j] = kNaN;
      if (with_candidates)
        for (int j = 0; j < P; ++j) out.prior[i * P + j] = out.proposal[i * P + j] = kNaN;
      out.verdict[i] = kNoPrediction;
      out.cert[i] = std::numeric_limits<float>::quiet_NaN();
      out.d2[i] = std::numeric_limits<float>::quiet_NaN();
      out.work[i] = 0;
    }
  }
  return good;
}

void Engine::candidates(const StreamState& s, const Tick& k, double* prior,
                        double* proposal) const noexcept {
  std::array<double, 2 * kMaxHorizons> rel{};
  std::array<double, kMaxHorizons> var{};
  kalman_.extrapolate(s.kf, h_.data(), K_, rel.data(), var.data());
  const bool a = system_ == System::A;
  for (int i = 0; i < 2 * K_; ++i) {
    const double base = (i & 1) ? s.kf.py : s.kf.px;
    prior[i] = base + rel[i];
    const double net = y_[i] * out_scale_[i & 1];
    proposal[i] = a ? ((i & 1) ? k.y : k.x) + net : prior[i] + net;
  }
}

void Engine::network_step(const float* z, float* h, float* y) noexcept {
  if (precision_ == Precision::int8)
    kernels_->step_int8(w_, z, h, y, scratch_);
  else
    kernels_->step_fp32(w_, z, h, y, scratch_);
}

}  // namespace tmn
