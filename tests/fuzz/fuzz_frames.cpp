// fuzz_frames.cpp — libFuzzer target: one peer frame through tmn-serve's path.
//
// Each input is a frame as tmn-serve receives it. wire::check_tick_frame
// decides whether it is a tick batch (server.cpp answers any other with its
// FrameError); the records of a good one run through two engines (System B
// and A, built once from deterministic random weights, FP32 and INT8), into
// live accuracy and the latency histograms, exactly as the server loop does.
// Built with -fsanitize=fuzzer,address,undefined (tests/fuzz/test_fuzz.py):
// any crash, leak, out-of-bounds access or undefined behaviour is a finding.
// The contract checked besides: a refused tick answers with NaN-free status
// and every "ok" prediction has a finite path.
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <vector>

#include "tmn/engine.hpp"
#include "tmn/histogram.hpp"
#include "tmn/live_accuracy.hpp"
#include "tmn/protocol.hpp"

namespace {

tmn::ModelSpec spec(tmn::System system, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-0.2f, 0.2f);
  tmn::ModelSpec m;
  m.system = system;
  m.hidden = 8;
  const int K = 4, H = m.hidden, G = 3 * H, O = 2 * K;
  for (int k = 0; k < K; ++k) m.horizons_s.push_back(0.05 * (k + 1));
  const int F = system == tmn::System::A ? tmn::kFeaturesA : tmn::kFeaturesB;
  m.feature_mean.assign(F, 0.0);
  m.feature_std.assign(F, 2.0);
  m.output_scale = {1.0, 1.0};
  m.kalman = {10.0, 1e-4, 1e-2};
  m.gate = {0.02, 200000, 0.1, 50.0};
  const auto fill = [&](std::vector<float>& v, std::size_t n) {
    v.resize(n);
    for (float& f : v) f = u(rng);
  };
  fill(m.w_ih, static_cast<std::size_t>(G) * F);
  fill(m.w_hh, static_cast<std::size_t>(G) * H);
  fill(m.b_ih, G);
  fill(m.b_hh, G);
  fill(m.w_out, static_cast<std::size_t>(O) * H);
  fill(m.b_out, O);
  const auto quantise = [](const std::vector<float>& w, int rows, std::vector<std::int8_t>& q,
                           std::vector<float>& s) {
    const int cols = static_cast<int>(w.size()) / rows;
    q.resize(w.size());
    s.resize(rows);
    for (int r = 0; r < rows; ++r) {
      float amax = 0.0f;
      for (int c = 0; c < cols; ++c) amax = std::fmax(amax, std::fabs(w[r * cols + c]));
      s[r] = amax > 0.0f ? amax / 127.0f : 1.0f;
      for (int c = 0; c < cols; ++c)
        q[r * cols + c] = static_cast<std::int8_t>(std::lrint(w[r * cols + c] / s[r]));
    }
  };
  quantise(m.w_ih, G, m.q_ih, m.s_ih);
  quantise(m.w_hh, G, m.q_hh, m.s_hh);
  quantise(m.w_out, O, m.q_out, m.s_out);
  return m;
}

struct Target {
  std::unique_ptr<tmn::Engine> engine;
  std::unique_ptr<tmn::LiveAccuracy> live;
};

Target make(tmn::System system, tmn::Precision precision, unsigned seed) {
  Target t;
  t.engine = std::make_unique<tmn::Engine>(spec(system, seed), precision, 64, tmn::Isa::scalar);
  t.live = std::make_unique<tmn::LiveAccuracy>(64, t.engine->horizons_s(), 0.01,
                                               t.engine->error_resolution());
  return t;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static Target targets[2] = {make(tmn::System::B, tmn::Precision::int8, 1),
                              make(tmn::System::A, tmn::Precision::fp32, 2)};
  static tmn::Histogram stage(1.0, 34, 16);
  tmn::wire::Header h;
  tmn::wire::PointQuery q;
  const char* why = "";
  if (tmn::wire::check_tick_frame(data, size, h, q, &why) != 0) {
    if (std::strlen(why) == 0) std::abort();  // every refusal says why
    return 0;
  }
  tmn::Prediction p;
  for (Target& t : targets) {
    for (std::uint32_t i = 0; i < h.count; ++i) {
      tmn::wire::TickRecord r;
      const std::size_t ticks_at = sizeof h + (tmn::wire::is_point_kind(h.kind) ? sizeof q : 0);
      std::memcpy(&r, data + ticks_at + i * sizeof r, sizeof r);
      const tmn::Tick k{r.t, r.x, r.y, r.vx, r.vy, tmn::wire::has_velocity(h.kind)};
      const tmn::Status st = t.engine->tick(r.stream % 80, k, p);  // some beyond capacity
      if (st != tmn::Status::ok) continue;
      for (int j = 0; j < 2 * t.engine->horizons(); ++j)
        if (!std::isfinite(p.path[j])) std::abort();  // "ok" with a non-finite path
      if (p.verdict == tmn::Verdict::pass && !(p.cert_error >= 0.0f)) std::abort();
      if (tmn::wire::is_point_kind(h.kind)) {  // the point a points reply carries
        const std::array<double, 2> at = p.at(q.dt);
        const float r = p.radius_at(q.dt);
        if (std::isnan(at[0]) != std::isnan(at[1]) || r < 0.0f) std::abort();
      }
      for (int s = 0; s < tmn::kStages; ++s) stage.record(p.stage_ns[s]);
      stage.record(static_cast<double>(p.d2));
      t.live->observe(k, p, static_cast<std::uint64_t>(i));
    }
    if (h.seq % 7 == 0) t.engine->reset(h.seq % 80);
  }
  return 0;
}
