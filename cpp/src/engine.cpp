#include "tmn/engine.hpp"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstring>
#include <stdexcept>
#include <string>
#include <type_traits>

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

// dst[(g * ld + i) * 4 + t] = src[i * cols + 4g + t] and each row's offset
// correction c[i] = -128 sum_j src[i][j] (gru.hpp); padding stays zero
void quad_columns(const std::vector<std::int8_t>& src, int rows, int cols, long ld,
                  std::int8_t* dst, std::int32_t* c) {
  for (int i = 0; i < rows; ++i) {
    std::int32_t sum = 0;
    for (int j = 0; j < cols; ++j) {
      const std::int8_t q = src[static_cast<long>(i) * cols + j];
      dst[((j / 4) * ld + i) * 4 + (j & 3)] = q;
      sum += q;
    }
    c[i] = -128 * sum;
  }
}

GruWeights load_weights(const ModelSpec& m, int K, int F) {
  const int H = m.hidden, G = 3 * m.hidden, O = 2 * K;
  require(H >= 1 && H <= kMaxHidden,
          "hidden must be in [1, " + std::to_string(kMaxHidden) + "]");
  require_size(m.w_ih, static_cast<std::size_t>(G) * F, "w_ih");
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

  GruWeights w(F, H, O);
  transpose_into(m.w_ih, G, F, w.ld_gates, w.w_ih_t.data());
  transpose_into(m.w_hh, G, H, w.ld_gates, w.w_hh_t.data());
  transpose_into(m.w_out, O, H, w.ld_out, w.w_out_t.data());
  pair_columns(m.q_ih, G, F, w.ld_gates, w.q_ih_p.data());
  pair_columns(m.q_hh, G, H, w.ld_gates, w.q_hh_p.data());
  pair_columns(m.q_out, O, H, w.ld_out, w.q_out_p.data());
  quad_columns(m.q_ih, G, F, w.ld_gates, w.q_ih_4.data(), w.c_ih.data());
  quad_columns(m.q_hh, G, H, w.ld_gates, w.q_hh_4.data(), w.c_hh.data());
  quad_columns(m.q_out, O, H, w.ld_out, w.q_out_4.data(), w.c_out.data());
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
  require(m.gate.blend_s >= 0.0 && m.gate.blend_s <= kMaxHorizonS,
          "gate.blend_ms must be in [0, kMaxHorizonS]");
  return m.gate;
}

// The features of the model's system, with normalisation of that many.
int checked_features(const ModelSpec& m) {
  const int F = m.system == System::A ? kFeaturesA : kFeaturesB;
  require(m.feature_mean.size() == static_cast<std::size_t>(F) &&
              m.feature_std.size() == static_cast<std::size_t>(F),
          "normalisation: need " + std::to_string(F) + " means and stds for System " +
              (m.system == System::A ? "A" : "B"));
  return F;
}

// Grid samples one tick can emit stay within kMaxGridStepsPerTick.
IngestParams checked_ingest(const ModelSpec& m) {
  require(m.max_gap_s > 0.0 && m.max_gap_s * m.ingest.rate_hz + 2.0 <= kMaxGridStepsPerTick,
          "max_gap_ms times sample_rate_hz must stay below kMaxGridStepsPerTick");
  return m.ingest;
}

}  // namespace

const char* timing_name(Timing t) noexcept {
  switch (t) {
    case Timing::all: return "all";
    case Timing::sampled: return "sampled";
    case Timing::off: return "off";
  }
  return "unknown";
}

InputRanges input_ranges(const ModelSpec& m) noexcept {
  InputRanges r;
  r.t_max = kMaxAbsTimeS;
  r.max_gap_s = m.max_gap_s;
  for (int a = 0; a < 2; ++a) {
    r.pos_max[a] = kMaxAbsOutputUnits * m.output_scale[a];
    // features 0 and 1 are the velocity (ingest.hpp), normalised by its RMS
    r.vel_max[a] = kInputSigmas * (m.feature_std.size() > 1 ? m.feature_std[a] : 0.0);
  }
  return r;
}

Engine::Engine(const ModelSpec& m, Precision precision, std::uint32_t max_streams, Isa isa,
               Timing timing)
    : system_(m.system),
      precision_(precision),
      K_(checked_horizons(m)),
      kernels_(nullptr),
      ingest_(checked_ingest(m)),
      window_s_(m.window_s),
      max_gap_s_(m.max_gap_s),
      kalman_(checked_kalman(m)),
      w_(load_weights(m, K_, checked_features(m))),
      scratch_(w_.inputs, m.hidden, 2 * K_),
      table_(max_streams, m.hidden, 2 * K_),
      timing_(timing),
      saved_hidden_(static_cast<std::size_t>(m.hidden)),
      saved_outputs_(static_cast<std::size_t>(2 * K_)) {
  require(isa_available(isa), std::string("isa '") + isa_name(isa) +
                                  "' is not available in this build on this CPU");
  kernels_ = &gru_kernels(isa);
  norm_.features = w_.inputs;
  for (int i = 0; i < w_.inputs; ++i) {
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
    out_scale2_[a] = m.output_scale[a] * m.output_scale[a];
  }
  require(window_s_ >= 0.0 && std::isfinite(window_s_), "window must be >= 0");
  ranges_ = input_ranges(m);
  for (int k = 0; k < K_; ++k) {
    h_[k] = m.horizons_s[k];
    hterms_[k] = kalman_.terms(h_[k]);
  }
  if (system_ == System::B) {
    gate_.emplace(checked_gate(m), K_, h_[0], true, isa);
    gate_prior_variance_ = m.gate_variance.empty();
    if (!gate_prior_variance_) {
      require(m.gate_variance.size() == static_cast<std::size_t>(K_),
              "gate.variance: need one per horizon");
      for (int k = 0; k < K_; ++k) {
        require(m.gate_variance[k] > 0.0 && std::isfinite(m.gate_variance[k]),
                "gate.variance must be positive");
        gate_inv_var_[2 * k] = gate_inv_var_[2 * k + 1] = 1.0 / m.gate_variance[k];
      }
    }
  }
  has_radius_ = !m.radius_c0.empty();
  if (has_radius_ || !m.radius_c1.empty()) {
    require(m.radius_c0.size() == static_cast<std::size_t>(K_) &&
                m.radius_c1.size() == static_cast<std::size_t>(K_),
            "uncertainty: need radius_c0 and radius_c1, one per horizon");
    // bounded so that a radius stays finite in float32 for any valid tick
    const double r_max = std::min(ranges_.pos_max[0], ranges_.pos_max[1]);
    const double v_max = std::hypot(ranges_.vel_max[0], ranges_.vel_max[1]);
    for (int k = 0; k < K_; ++k) {
      const double c0 = m.radius_c0[k], c1 = m.radius_c1[k];
      require(c0 >= 0.0 && c1 >= 0.0 && c0 + c1 > 0.0 && std::sqrt(c0) <= r_max &&
                  std::sqrt(c1) * v_max <= r_max,
              "uncertainty: radius_c0 and radius_c1 must be >= 0, not both 0, and "
              "within the model's position range");
      radius_c0_[k] = c0;
      radius_c1_[k] = c1;
    }
  }
  clock::calibrate();
}

bool Engine::stages_this_tick() noexcept {
  if (timing_ == Timing::all) return true;
  if (timing_ == Timing::off) return false;
  // xorshift64 (Marsaglia): one tick in kTimingSamplePeriod on average, with
  // no period a stream order could alias with
  sample_state_ ^= sample_state_ << 13;
  sample_state_ ^= sample_state_ >> 7;
  sample_state_ ^= sample_state_ << 17;
  return sample_state_ % kTimingSamplePeriod == 0;
}

void Engine::step_sample(StreamState& s, float* h, float* y, const GridSample& g, bool first,
                         std::uint64_t& prior_ticks, std::uint64_t& network_ticks) noexcept {
  const bool timed = time_stages_;
  const std::uint64_t a = timed ? clock::now() : 0;
  // 2. prior: the Kalman update on the grid sample, after its prediction of it
  const Tick z{g.t, g.x, g.y, g.vx, g.vy};
  double pred_x = g.x, pred_y = g.y;
  if (first) {
    kalman_.init(s.kf, z);
  } else {
    const double dt = g.t - ingest_.grid_t(s.grid, s.grid.n - 1);
    pred_x = s.kf.px + s.kf.vx * dt;
    pred_y = s.kf.py + s.kf.vy * dt;
    kalman_.step(s.kf, z, dt);
  }
  const std::uint64_t b = timed ? clock::now() : 0;

  // 3. network: the features, one GRU step, the head (kept for the ticks to come)
  double f[kMaxFeatures];
  if (system_ == System::A) ingest_.features_a(s.grid, g, f);
  else ingest_.features_b(s.grid, g, s.kf, pred_x, pred_y, f);
  float zf[kMaxFeatures];
  norm_.apply(f, zf);
  network_step(zf, h, y);
  s.gx = g.x;
  s.gy = g.y;
  if (timed) {
    const std::uint64_t c = clock::now();
    prior_ticks += b - a;
    network_ticks += c - b;
  }
}

const double* Engine::decide(StreamState& s, const float* y, double dt, Prediction& out,
                             double& bx, double& by) noexcept {
  const double t_grid = ingest_.grid_t(s.grid, s.grid.n - 1);
  const bool warming = t_grid - s.t_first < window_s_;
  out.d2 = std::numeric_limits<float>::quiet_NaN();
  out.cert_error = std::numeric_limits<float>::quiet_NaN();
  out.work = 0;
  out.blend = 0.0f;
  bx = s.kf.px;
  by = s.kf.py;
  if (system_ == System::A && !warming) {
    // A predicts the displacement from the newest grid position
    out.verdict = Verdict::ungated;
    bx = s.gx;
    by = s.gy;
    for (int i = 0; i < 2 * K_; ++i) proj_[i] = y[i] * out_scale_[i & 1];
    return proj_.data();
  }
  if (warming) {
    kalman_.extrapolate(s.kf, hterms_.data(), K_, rel_.data(), var_.data());
    out.verdict = Verdict::warming;
    s.blend = 0.0f;
    return rel_.data();
  }
  // B: work in output units, where eps and the threshold are defined: the
  // prior path m_k = v h_k with v in output units (the loops run over (x, y)
  // pairs, which the compiler does two at a time)
  const double sx = out_scale_[0], sy = out_scale_[1];
  const double v[2] = {s.kf.vx / sx, s.kf.vy / sy};
  for (int kk = 0; kk < K_; ++kk) {
    rel_[2 * kk] = v[0] * hterms_[kk].h;
    rel_[2 * kk + 1] = v[1] * hterms_[kk].h;
  }
  kalman_.variances(s.kf, hterms_.data(), K_, var_.data());
  if (gate_prior_variance_) {
    // 1 / (s_k / scale_a^2), one division per horizon for both axes
    const double x2 = out_scale2_[0], y2 = out_scale2_[1];
    for (int kk = 0; kk < K_; ++kk) {
      const double inv = 1.0 / var_[kk];
      inv_var_[2 * kk] = inv * x2;
      inv_var_[2 * kk + 1] = inv * y2;
    }
  } else {
    for (int i = 0; i < 2 * K_; ++i) inv_var_[i] = gate_inv_var_[i];
  }
  const GateResult g =
      gate_->run(y, rel_.data(), inv_var_.data(), v, proj_.data(), s.blend > 0.0f);
  out.verdict = g.verdict;
  out.d2 = static_cast<float>(g.d2);
  out.work = static_cast<std::uint32_t>(g.cert.work);
  // the blend moves towards this tick's verdict, at most dt / blend_s
  const double blend_s = gate_->params().blend_s;
  const double step = blend_s > 0.0 ? dt / blend_s : 1.0;
  double w = s.blend;
  if (!g.projected) w = 0.0;  // nothing certified to blend with
  else if (g.verdict == Verdict::pass) w = std::min(1.0, w + step);
  else w = std::max(0.0, w - step);
  s.blend = static_cast<float>(w);
  out.blend = s.blend;
  if (w > 0.0) out.cert_error = bound_as_float(w * g.cert.error_bound);
  const double u = 1.0 - w;
  for (int kk = 0; kk < K_; ++kk) {
    proj_[2 * kk] = (w * proj_[2 * kk] + u * rel_[2 * kk]) * sx;
    proj_[2 * kk + 1] = (w * proj_[2 * kk + 1] + u * rel_[2 * kk + 1]) * sy;
  }
  return proj_.data();
}

Status Engine::tick(std::uint64_t stream, const Tick& k, Prediction& out) noexcept {
  // c0 is also the stream table's idle clock, so it is read in every mode
  const std::uint64_t c0 = clock::now();
  time_stages_ = stages_this_tick();
  const bool timed = time_stages_;
  const bool total = timing_ != Timing::off;
  out.stages_timed = false;
  out.stream = stream;
  out.t = k.t;
  out.horizons = static_cast<std::uint16_t>(K_);
  out.restarted = false;

  // 1. ingest: validate before touching any state
  std::uint32_t slot = table_.find(stream);
  const Tick* prev = slot == StreamTable::kNone ? nullptr : &table_.state(slot).grid.prev;
  Status st = validate_tick(k, prev, ranges_);
  const bool inserted = st == Status::ok && slot == StreamTable::kNone;
  if (inserted) {
    slot = table_.insert(stream);
    if (slot == StreamTable::kNone) st = Status::capacity_exceeded;
  }
  if (st != Status::ok) {
    out.status = st;
    out.stage_ns = {};
    out.total_ns = total ? clock::to_ns(clock::now() - c0) : 0;
    return st;
  }
  StreamState& s = table_.state(slot);
  float* h = table_.hidden(slot);
  float* y = table_.outputs(slot);
  save_state(s);  // for the output check in stage 5
  const std::uint64_t saved_seen = table_.last_seen(slot);
  for (int i = 0; i < w_.hidden; ++i) saved_hidden_[i] = h[i];
  for (int i = 0; i < 2 * K_; ++i) saved_outputs_[i] = y[i];
  bool fresh = s.ticks == 0;
  const double dt = fresh ? 0.0 : k.t - s.grid.prev.t;
  if (!fresh && dt > max_gap_s_) {  // stale state: start over
    fresh = true;
    out.restarted = true;
    ++restarts_;
    for (int i = 0; i < w_.hidden; ++i) h[i] = 0.0f;
  }
  // 2. and 3. for every grid sample the tick reaches (ingest.hpp)
  std::uint64_t prior_ticks = 0, network_ticks = 0;
  const std::uint64_t c1 = timed ? clock::now() : 0;
  if (fresh) {
    s.ticks = 0;
    s.blend = 0.0f;
    const GridSample g = ingest_.start(s.grid, k, k.has_velocity);
    s.t_first = g.t;
    step_sample(s, h, y, g, true, prior_ticks, network_ticks);
  } else {
    ingest_.advance(s.grid, k, k.has_velocity, [&](const GridSample& g) {
      step_sample(s, h, y, g, false, prior_ticks, network_ticks);
    });
  }
  ++s.ticks;
  table_.touch(slot, c0);
  const std::uint64_t c3 = timed ? clock::now() : 0;

  // 4. gate: decide which path goes out, relative to (bx, by)
  double bx = 0.0, by = 0.0;
  const double* rel = decide(s, y, dt, out, bx, by);
  out.t_grid = ingest_.grid_t(s.grid, s.grid.n - 1);
  out.dt = fresh ? 0.0 : dt;
  out.h0 = h_[0];
  out.origin = {bx, by};
  const std::uint64_t c4 = timed ? clock::now() : 0;

  // 5. actuation: the absolute path in data units, which must be finite
  bool finite = true;
  for (int kk = 0; kk < K_; ++kk) {
    out.path[2 * kk] = bx + rel[2 * kk];
    out.path[2 * kk + 1] = by + rel[2 * kk + 1];
  }
  for (int i = 0; i < 2 * K_; ++i) finite &= std::isfinite(out.path[i]);
  radius(s, out);
  out.status = Status::ok;
  if (!finite) {  // refuse the tick and put the stream back as it was
    if (inserted) {
      table_.erase(stream);
    } else {
      restore_state(s);
      table_.touch(slot, saved_seen);
      for (int i = 0; i < w_.hidden; ++i) h[i] = saved_hidden_[i];
      for (int i = 0; i < 2 * K_; ++i) y[i] = saved_outputs_[i];
      if (out.restarted) --restarts_;
    }
    out.status = Status::non_finite_output;
    out.restarted = false;
  }
  if (!total) {
    out.stage_ns = {};
    out.total_ns = 0;
    return out.status;
  }
  const std::uint64_t c5 = clock::now();
  out.total_ns = clock::to_ns(c5 - c0);
  out.stages_timed = timed;
  if (timed) {
    const std::uint64_t ingest_ticks = (c1 - c0) + (c3 - c1) - prior_ticks - network_ticks;
    out.stage_ns = {clock::to_ns(ingest_ticks), clock::to_ns(prior_ticks),
                    clock::to_ns(network_ticks), clock::to_ns(c4 - c3), clock::to_ns(c5 - c4)};
  } else {
    out.stage_ns = {};
  }
  return out.status;
}

// The ring's tail from velocity_window on is never written (ingest.cpp), so
// the snapshot copies the state around it: everything before the ring, its
// first W (or more) entries of each axis, everything after it.
namespace {
static_assert(std::is_standard_layout_v<StreamState> && std::is_trivially_copyable_v<StreamState>,
              "the snapshot copies StreamState by byte ranges");
constexpr std::size_t kRx = offsetof(StreamState, grid) + offsetof(GridState, rx);
constexpr std::size_t kRy = offsetof(StreamState, grid) + offsetof(GridState, ry);
constexpr std::size_t kRingEnd = kRy + sizeof(GridState::ry);
static_assert(kRy == kRx + sizeof(GridState::rx), "rx and ry are adjacent");

// Fixed sizes, so that every copy is inlined: the ring's first 8 entries
// (windows up to 8, the usual ones), else all of it.
template <std::size_t Ring>
void copy_state(const StreamState& from, StreamState& to) noexcept {
  const auto* f = reinterpret_cast<const unsigned char*>(&from);
  auto* t = reinterpret_cast<unsigned char*>(&to);
  std::memcpy(t, f, kRx);
  std::memcpy(t + kRx, f + kRx, Ring * sizeof(double));
  std::memcpy(t + kRy, f + kRy, Ring * sizeof(double));
  std::memcpy(t + kRingEnd, f + kRingEnd, sizeof(StreamState) - kRingEnd);
}
void copy_state(const StreamState& from, StreamState& to, int W) noexcept {
  if (W <= 8) copy_state<8>(from, to);
  else copy_state<kMaxVelocityWindow>(from, to);
}
}  // namespace

void Engine::save_state(const StreamState& s) noexcept {
  copy_state(s, saved_state_, ingest_.params().velocity_window);
}

void Engine::restore_state(StreamState& s) const noexcept {
  copy_state(saved_state_, s, ingest_.params().velocity_window);
}

void Engine::radius(const StreamState& s, Prediction& out) const noexcept {
  // r_k = sqrt(c0_k + c1_k |v|^2): the 90 % error radius (docs/uncertainty.md)
  const float nan = std::numeric_limits<float>::quiet_NaN();
  if (!has_radius_ || out.verdict == Verdict::warming) {
    for (int k = 0; k < K_; ++k) out.radius[k] = nan;
    return;
  }
  const double v2 = s.kf.vx * s.kf.vx + s.kf.vy * s.kf.vy;
  for (int k = 0; k < K_; ++k)
    out.radius[k] = static_cast<float>(std::sqrt(radius_c0_[k] + radius_c1_[k] * v2));
}

std::array<double, 2> Prediction::at(double dt) const noexcept {
  const double s = (t - t_grid) + dt;  // time since the path's start
  const int K = horizons;
  if (!(dt > 0.0) || !(s <= K * h0) || K < 1 || status != Status::ok) return {kNaN, kNaN};
  // knots j = 0..K at times j h0: the origin, then path point j - 1
  const auto knot = [&](int j, int a) { return j == 0 ? origin[a] : path[2 * (j - 1) + a]; };
  const auto slope = [&](int j, int a) {  // per second
    const int lo = j > 0 ? j - 1 : 0, hi = j < K ? j + 1 : K;
    return (knot(hi, a) - knot(lo, a)) / ((hi - lo) * h0);
  };
  const int j = std::min(static_cast<int>(s / h0), K - 1);  // the segment [j h0, (j+1) h0]
  const double u = s / h0 - j, u2 = u * u, u3 = u2 * u;
  const double h00 = 2 * u3 - 3 * u2 + 1, h10 = u3 - 2 * u2 + u, h01 = -2 * u3 + 3 * u2,
               h11 = u3 - u2;
  std::array<double, 2> out{};
  for (int a = 0; a < 2; ++a)
    out[a] = h00 * knot(j, a) + h10 * h0 * slope(j, a) + h01 * knot(j + 1, a) +
             h11 * h0 * slope(j + 1, a);
  return out;
}

float Prediction::radius_at(double dt) const noexcept {
  const double s = (t - t_grid) + dt;  // time since the path's start
  const int K = horizons;
  if (!(dt > 0.0) || !(s <= K * h0) || K < 1 || status != Status::ok)
    return std::numeric_limits<float>::quiet_NaN();
  const int j = std::min(static_cast<int>(s / h0), K - 1);  // between knots j and j + 1
  const double u = s / h0 - j;
  const double lo = j == 0 ? 0.0 : radius[j - 1];
  return static_cast<float>(lo + u * (radius[j] - lo));
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
    const bool has_v = in.vx != nullptr && in.vy != nullptr;
    const Tick k{in.t[i], in.x[i], in.y[i], has_v ? in.vx[i] : 0.0, has_v ? in.vy[i] : 0.0,
                 has_v};
    const Status st = tick(in.stream ? in.stream[i] : 0, k, p);
    double* row = out.paths + i * P;
    out.status[i] = static_cast<std::uint8_t>(st);
    if (timing_ != Timing::off) out.total_ns[i] = p.total_ns;
    if (p.stages_timed)
      for (int s = 0; s < kStages; ++s) out.stage_ns[i * kStages + s] = p.stage_ns[s];
    if (st == Status::ok) {
      ++good;
      for (int j = 0; j < P; ++j) row[j] = p.path[j];
      out.verdict[i] = static_cast<std::uint8_t>(p.verdict);
      out.cert[i] = p.cert_error;
      out.d2[i] = p.d2;
      out.blend[i] = p.blend;
      out.t_grid[i] = p.t_grid;
      out.work[i] = p.work;
      if (out.radius)
        for (int k = 0; k < K_; ++k) out.radius[i * K_ + k] = p.radius[k];
      if (with_candidates) {
        const std::uint32_t slot = table_.find(p.stream);
        candidates(table_.state(slot), table_.outputs(slot), out.prior + i * P,
                   out.proposal + i * P);
      }
    } else {
      for (int j = 0; j < P; ++j) row[j] = kNaN;
      if (with_candidates)
        for (int j = 0; j < P; ++j) out.prior[i * P + j] = out.proposal[i * P + j] = kNaN;
      out.verdict[i] = kNoPrediction;
      out.cert[i] = std::numeric_limits<float>::quiet_NaN();
      out.d2[i] = std::numeric_limits<float>::quiet_NaN();
      out.blend[i] = 0.0f;
      out.t_grid[i] = kNaN;
      out.work[i] = 0;
      if (out.radius)
        for (int k = 0; k < K_; ++k) out.radius[i * K_ + k] = std::numeric_limits<float>::quiet_NaN();
    }
  }
  return good;
}

void Engine::candidates(const StreamState& s, const float* y, double* prior,
                        double* proposal) const noexcept {
  std::array<double, 2 * kMaxHorizons> rel{};
  std::array<double, kMaxHorizons> var{};
  kalman_.extrapolate(s.kf, hterms_.data(), K_, rel.data(), var.data());
  const bool a = system_ == System::A;
  for (int i = 0; i < 2 * K_; ++i) {
    const double base = (i & 1) ? s.kf.py : s.kf.px;
    prior[i] = base + rel[i];
    const double net = y[i] * out_scale_[i & 1];
    proposal[i] = a ? ((i & 1) ? s.gy : s.gx) + net : prior[i] + net;
  }
}

void Engine::network_step(const float* z, float* h, float* y) noexcept {
  if (precision_ == Precision::int8)
    kernels_->step_int8(w_, z, h, y, scratch_);
  else
    kernels_->step_fp32(w_, z, h, y, scratch_);
}

}  // namespace tmn
