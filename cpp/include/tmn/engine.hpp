// engine.hpp — the five-stage tick and stage 5, actuation (the Prediction).
//
//   ingest -> prior -> network -> gate -> actuation
//
// Contract:
//   * Construction (from a ModelSpec that Python built from a validated
//     artifact) allocates everything and may throw std::invalid_argument.
//     After that, tick/reset/evict never allocate, lock, throw or make a
//     system call; they return a Status.
//   * tick(): a bad tick returns its Status and leaves every stream's state
//     exactly as it was. A good tick returns ok and fills a Prediction.
//   * Ticks come at the sensor's rate, with or without velocity; the model
//     runs on its own grid (ingest.hpp). A tick steps the prior and the
//     network once per grid sample it reaches (none when ticks come faster
//     than the grid, several when slower), then the gate decides the path
//     once. The path is anchored at the newest grid sample: point k is the
//     prediction for Prediction::t_grid + h_k.
//   * A gap longer than max_gap_s restarts the stream (grid, Kalman and hidden
//     state re-initialised, warming again); it is counted, not an error.
//   * A stream is warming until window_s of sensor time has passed since its
//     (re)start. While warming the network still runs (its hidden state must
//     warm up) but the output is the Kalman prior path.
//   * B: a verdict switch does not make the served path jump. The served path
//     is  blend * certified + (1 - blend) * prior, where blend moves towards 1
//     on a pass and towards 0 on a fallback by at most dt / gate.blend_s per
//     tick (dt the sensor time since the previous tick), and starts at 0 when
//     the stream warms up. Its certificate is blend times the projection's:
//     the exact blend differs from the served one by blend * (p - p*), so
//     ||error|| <= blend * bound (docs/gate.md, "Blending"). A fallback with
//     no certificate (out of budget) drops blend to 0 at once.
//   * Uncertainty: when the model carries a calibration (ModelSpec::radius_*),
//     each point k gets a 90 % error radius r_k = sqrt(c0_k + c1_k |v|^2) in
//     data units, |v| the prior's posterior speed: calibrated on validation so
//     that the true point lies within r_k of path point k on 90 % of the
//     non-warming ticks (docs/uncertainty.md). NaN while warming or without a
//     calibration.
//   * One Engine is used by one thread at a time.
//   * Timing (Engine::timing, below). A clock read (rdtsc, ~10 ns here) costs
//     what a short stage measures, so how much a tick times is a choice:
//       all      every tick: total_ns and the five stage_ns (up to six reads);
//       sampled  every tick's total_ns (two reads); the five stage_ns on one
//                tick in kTimingSamplePeriod on average, chosen by a xorshift
//                generator so that no periodic stream order aliases with it;
//       off      none: total_ns and stage_ns are 0 (one read remains, the
//                stream table's idle clock).
//     Prediction::stages_timed says whether this tick's stage_ns were
//     measured; stage_ns are all 0 when not. The default is all: tmn-serve's
//     per-stage histograms and a replay's stage_ns hold every tick.
#pragma once

#include <array>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "tmn/gate.hpp"
#include "tmn/gru.hpp"
#include "tmn/ingest.hpp"
#include "tmn/kalman.hpp"
#include "tmn/status.hpp"
#include "tmn/stream_table.hpp"
#include "tmn/tick.hpp"

namespace tmn {

inline constexpr int kMaxHorizons = 32;
inline constexpr double kMaxHorizonS = 60.0;  // the last horizon, seconds
inline constexpr int kStages = 5;
// The stages in tick order: Prediction::stage_ns and every timing use it.
inline constexpr const char* kStageNames[kStages] = {"ingest", "prior", "network", "gate",
                                                     "actuation"};

// Valid input ranges (docs/protocol.md, "Valid ranges"). A velocity, given
// or implied by a tick's displacement from the previous one, may be at most
// kInputSigmas of the training velocity's RMS (its normalisation.std): far
// beyond anything the network has seen, far below float32 overflow of the
// normalised input. Positions are bounded in absolute value by
// kMaxAbsOutputUnits output units (times normalisation.output_scale), and t
// by kMaxAbsTimeS, so that no downstream float32 (d2, the certificate,
// features) can overflow. Position itself is no feature: any place is fine.
inline constexpr double kInputSigmas = 1.0e4;
inline constexpr double kMaxAbsOutputUnits = 1.0e9;
inline constexpr double kMaxAbsTimeS = 1.0e10;  // Unix time in seconds fits

enum class System : std::uint8_t { A = 0, B = 1 };

// What a tick times (see the contract above), in value order.
enum class Timing : std::uint8_t { all = 0, sampled = 1, off = 2 };
inline constexpr Timing kTimings[] = {Timing::all, Timing::sampled, Timing::off};
const char* timing_name(Timing t) noexcept;
// sampled: the stages of one tick in this many are timed, on average.
inline constexpr std::uint32_t kTimingSamplePeriod = 16;
enum class Precision : std::uint8_t { fp32 = 0, int8 = 1 };

// Everything an engine needs, as plain arrays (row-major, PyTorch layout).
// Python fills it from model.safetensors and config.json; C++ parses no files.
struct ModelSpec {
  System system = System::B;
  int hidden = 32;
  std::vector<double> horizons_s;       // K, equally spaced: h_k = (k+1) h_0
  IngestParams ingest{};                // the model grid, differentiator, high-pass
  std::vector<double> feature_mean;     // F: kFeaturesA (A) or kFeaturesB (B), ingest.hpp
  std::vector<double> feature_std;
  std::array<double, 2> output_scale{}; // data units per output unit, per axis
  double window_s = 0.128;
  double max_gap_s = 0.1;
  KalmanParams kalman{};
  GateParams gate{};
  // B: the per-axis variance of each horizon the plausibility test divides by,
  // in output units^2 (K values); empty: the prior's own covariance S_k.
  std::vector<double> gate_variance;
  // The uncertainty radius (K values each, or both empty: no radius):
  // r_k^2 = radius_c0[k] + radius_c1[k] |v|^2, in data units^2 and s^2.
  std::vector<double> radius_c0, radius_c1;
  // FP32: w_ih [3H,F], w_hh [3H,H], b_ih [3H], b_hh [3H], w_out [2K,H], b_out [2K]
  std::vector<float> w_ih, w_hh, b_ih, b_hh, w_out, b_out;
  // INT8 with per-row scales: q_* has the shape of w_*, s_* one per row
  std::vector<std::int8_t> q_ih, q_hh, q_out;
  std::vector<float> s_ih, s_hh, s_out;
};

// The valid range of every tick field for model m: the one place the ranges
// are derived (from normalisation and output_scale), see kInputSigmas.
InputRanges input_ranges(const ModelSpec& m) noexcept;

struct Prediction {
  std::uint64_t stream = 0;
  double t = 0.0;           // the tick's time
  double t_grid = 0.0;      // the newest grid sample's: path point k is for t_grid + h_k
  double dt = 0.0;          // sensor time since the stream's previous tick (0 at a (re)start)
  Status status = Status::ok;
  Verdict verdict = Verdict::warming;
  std::uint16_t horizons = 0;
  bool restarted = false;   // this tick restarted the stream after a gap
  float d2 = 0.0f;          // plausibility statistic (B); NaN for A
  float cert_error = 0.0f;  // proven bound on the served path's numerical error (B): the
                            // projection's times blend; NaN when nothing certified is served
  float blend = 0.0f;       // B: weight of the certified path in the served path
  std::uint32_t work = 0;   // touched nonzeros spent by the gate
  bool stages_timed = false;  // stage_ns were measured on this tick (Engine timing)
  std::array<std::uint32_t, kStages> stage_ns{};  // 0 when !stages_timed
  std::uint32_t total_ns = 0;                     // 0 with Timing::off
  double h0 = 0.0;          // the first horizon (s); h_k = (k + 1) h0
  std::array<double, 2> origin{};  // where the path starts, at t_grid (A: the grid
                                   // position; B: the prior's posterior position)
  // (x, y) at each horizon, data units, absolute coordinates
  std::array<double, 2 * kMaxHorizons> path{};
  // the calibrated error radius of each path point, data units (NaN: none)
  std::array<float, kMaxHorizons> radius{};

  // The predicted point dt seconds after the tick (t + dt), for 0 < dt and
  // t + dt <= t_grid + h_K; NaN outside. A cubic Hermite curve through the
  // origin (at t_grid) and the K path points, with Catmull-Rom slopes (central
  // differences; one-sided at the two ends): exact at the horizons, C1 between.
  std::array<double, 2> at(double dt) const noexcept;
  // The error radius of at(dt): linear in time between the horizons' radii,
  // from 0 at the path's origin (calibrated only at the horizons); NaN where
  // at(dt) is NaN or the prediction has no radius.
  float radius_at(double dt) const noexcept;
};

// A recording for Engine::replay: n ticks as columns. `stream` may be null
// (every tick on stream 0); vx and vy may both be null (position-only ticks).
struct ReplayInput {
  const double* t = nullptr;
  const double* x = nullptr;
  const double* y = nullptr;
  const double* vx = nullptr;
  const double* vy = nullptr;
  const std::uint64_t* stream = nullptr;
  std::uint64_t n = 0;
};

// Where Engine::replay writes, one row per input tick: arrays of n, except
// paths, prior and proposal (n x K x 2) and stage_ns (n x kStages). prior and
// proposal may be null (then neither is written). The timing arrays are
// written only where the engine measured something: total_ns unless the
// timing is off, a stage_ns row only for a tick whose stages were timed; the
// caller zeroes them (a zeroed allocation costs no page until written).
struct ReplayOutput {
  double* paths = nullptr;
  std::uint8_t* status = nullptr;
  std::uint8_t* verdict = nullptr;  // a Verdict, or kNoPrediction
  float* cert = nullptr;
  float* d2 = nullptr;
  float* blend = nullptr;
  double* t_grid = nullptr;
  std::uint32_t* work = nullptr;
  std::uint32_t* stage_ns = nullptr;
  std::uint32_t* total_ns = nullptr;
  double* prior = nullptr;
  double* proposal = nullptr;
  float* radius = nullptr;  // n x K; may be null
};

class Engine {
 public:
  Engine(const ModelSpec& spec, Precision precision, std::uint32_t max_streams, Isa isa,
         Timing timing = Timing::all);
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  Status tick(std::uint64_t stream, const Tick& k, Prediction& out) noexcept;
  // Forget a stream. unknown_stream if it is not in the table.
  Status reset(std::uint64_t stream) noexcept;
  // Forget streams idle (no accepted tick) for longer than idle_s of wall time.
  std::uint32_t evict_idle(double idle_s) noexcept;

  // Run the ticks of `in` in order, as tick() would, writing one row of
  // `out` per tick. A bad tick gets its status, NaN paths and kNoPrediction.
  // out.prior and out.proposal (if not null) receive each tick's two
  // candidate paths, whichever was served: the Kalman prior, and the
  // network's own path (A: measured position + output; B: prior + residual,
  // before the gate). Returns the number of ok ticks.
  std::uint64_t replay(const ReplayInput& in, const ReplayOutput& out) noexcept;

  // Run one network step on given normalised features and hidden state,
  // outside any stream (for tests and benchmarks). h is updated in place.
  void network_step(const float* z, float* h, float* y) noexcept;

  int horizons() const noexcept { return K_; }
  std::vector<double> horizons_s() const { return {h_.begin(), h_.begin() + K_}; }
  // A small length in data units (1e-6 output units) for error histograms.
  double error_resolution() const noexcept {
    return 1e-6 * (out_scale_[0] < out_scale_[1] ? out_scale_[0] : out_scale_[1]);
  }
  int hidden() const noexcept { return w_.hidden; }
  int features() const noexcept { return norm_.features; }
  const Ingest& ingest() const noexcept { return ingest_; }
  System system() const noexcept { return system_; }
  Precision precision() const noexcept { return precision_; }
  Isa isa() const noexcept { return kernels_->isa; }
  const StreamTable& streams() const noexcept { return table_; }
  const InputRanges& ranges() const noexcept { return ranges_; }
  const GruScratch& scratch() const noexcept { return scratch_; }
  std::uint64_t restarts() const noexcept { return restarts_; }
  Timing timing() const noexcept { return timing_; }
  // Between ticks only (one thread at a time, like tick).
  void set_timing(Timing t) noexcept { timing_ = t; }

 private:
  System system_;
  Precision precision_;
  int K_;
  const GruKernels* kernels_;
  Ingest ingest_;
  Normaliser norm_;
  InputRanges ranges_;
  std::array<double, 2> out_scale_;
  std::array<double, 2> out_scale2_;  // scale^2, for variances
  double window_s_, max_gap_s_;
  std::array<double, kMaxHorizons> h_{};  // horizons, seconds
  KalmanPrior kalman_;
  std::array<KalmanPrior::HorizonTerms, kMaxHorizons> hterms_{};  // kalman_.terms(h_k)
  std::optional<SolverGate> gate_;  // System B only
  bool gate_prior_variance_ = true;   // d2 against S_k, else against gate_inv_var_
  std::array<double, 2 * kMaxHorizons> gate_inv_var_{};
  bool has_radius_ = false;
  std::array<double, kMaxHorizons> radius_c0_{}, radius_c1_{};
  GruWeights w_;
  GruScratch scratch_;
  StreamTable table_;
  std::uint64_t restarts_ = 0;
  Timing timing_ = Timing::all;
  std::uint64_t sample_state_ = 0x9E3779B97F4A7C15ull;  // xorshift64 for Timing::sampled
  bool time_stages_ = true;  // this tick's stages are timed

  // Whether this tick times its stages (advances the sampler in sampled mode).
  bool stages_this_tick() noexcept;

  // Stages 2 and 3 on one grid sample g of stream s (first: of a (re)start):
  // the prior's update, the features, one GRU step; adds their times.
  void step_sample(StreamState& s, float* h, float* y, const GridSample& g, bool first,
                   std::uint64_t& prior_ticks, std::uint64_t& network_ticks) noexcept;
  // Stage 4: the served path relative to (bx, by) into rel_, and the verdict.
  const double* decide(StreamState& s, const float* y, double dt, Prediction& out, double& bx,
                       double& by) noexcept;
  // Stage 5's radius of every path point (NaN while warming or uncalibrated).
  void radius(const StreamState& s, Prediction& out) const noexcept;
  // The candidates of the tick just accepted on stream state s (see replay).
  void candidates(const StreamState& s, const float* y, double* prior,
                  double* proposal) const noexcept;

  // per-tick work space, sized at construction
  std::array<double, 2 * kMaxHorizons> rel_{}, inv_var_{}, proj_{};
  std::array<double, kMaxHorizons> var_{};
  // the stream's state before the tick, restored on non_finite_output: all
  // of it but the velocity ring's entries from velocity_window on, which no
  // tick writes (save_state, restore_state)
  StreamState saved_state_{};
  void save_state(const StreamState& s) noexcept;
  void restore_state(StreamState& s) const noexcept;
  AlignedBuffer<float> saved_hidden_, saved_outputs_;
};

}  // namespace tmn
