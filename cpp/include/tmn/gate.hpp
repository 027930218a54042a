// gate.hpp — stage 4, gate (System B): plausibility test and certified
// projection. docs/gate.md holds the derivation; this is the summary.
//
// Contract:
//   input   delta[2K]  the network's correction to the prior (output units,
//                      (x, y) interleaved per horizon)
//           prior[2K]  the prior path relative to the current position
//           inv_var[2K] 1 / prior position variance, per horizon and axis
//           v[2]       the current velocity (output units per second)
//   output  verdict, d2, a Certificate, and on `pass` the certified path
//           (relative to the current position) in path[2K]; with
//           project_anyway, also for an implausible correction (the engine
//           blends out of a pass that way: engine.hpp), `projected` says so.
//   cost    2K flops for d2; per Jacobi pass nnz(A (x) I_2) = 2 (5K - 6)
//           touched nonzeros; at most `budget` in all.
//   errors  none; an untrusted result is a fallback verdict, not an error.
//
// 1. Plausibility: d2 = mean_k delta_k^T S_k^-1 delta_k. If d2 > threshold
//    (or d2 is not a number), the verdict is fallback_implausible.
// 2. Projection, per axis, onto smooth paths that start at the current
//    position p_0 = 0 with the current velocity (p_-1 = -v dh):
//      min_u ||u - q||^2 + lambda ||D2 [p_-1, p_0, u]||^2,  q = prior + delta
//    whose normal equations are A u = q + lambda v dh e_0 with
//      A = I + lambda D^T D,   D lower-triangular, rows (1, -2, 1).
//    A is SPD with lambda_min(A) >= 1, and strictly diagonally dominant for
//    lambda < 1/4 (interior rows: 1 + 6 lambda > 10 lambda). Both axes are
//    solved as one system A (x) I_2 (same lambda_min); damped Jacobi from
//    u = q stops when the proven bound on the whole path's error is <= eps.
//    Out of budget: fallback_uncertified.
// 3. Bounds. A model's eps and budget must lie in the ranges below (checked
//    when an Engine is built from it), and each solve has a guard of its own
//    (solver.hpp, WallGuard): once it has spent kGateGuardWork (an ordinary
//    tick needs a few hundred), it stops, uncertified, at once if its
//    rounding floor exceeds eps (it could never be certified), else after
//    kGateGuardNs more.
// 4. The solve's kernel. A is banded: in the interleaved order its nonzeros
//    lie on the diagonals -4, -2, 0, 2 and 4. For 2K <= 4 kGateMaxRegs
//    unknowns (K <= 16) the gate runs a fixed-size kernel compiled per ISA
//    (gate_kernels.cpp, like the GRU's) that keeps the iterate and the
//    residual in ceil(2K / 4) registers of four doubles (K = 10: five), the
//    band's coefficients as vectors per diagonal (GateBand). It performs
//    exactly jacobi_solve's operations on the same numbers in the same order
//    (solver.hpp's sum_squares; no fused multiply-add, -ffp-contract=off), so
//    it returns the same path, certificate, work and iterations bit for bit on
//    every ISA (tests/unit/test_gate.py); the proof of docs/gate.md is
//    unchanged. Larger K use jacobi_solve itself.
#pragma once

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>

#include "tmn/aligned.hpp"
#include "tmn/isa.hpp"
#include "tmn/solver.hpp"

namespace tmn {

enum class Verdict : std::uint8_t {
  pass = 0,                  // the certified, corrected path
  fallback_implausible = 1,  // the prior path: the correction failed d2
  fallback_uncertified = 2,  // the prior path: no certificate within budget
  warming = 3,               // the prior path: the stream is younger than a window
  ungated = 4,               // System A: the network's path, no gate
};

// Every verdict, in value order (the bindings export each one by name).
inline constexpr Verdict kVerdicts[] = {Verdict::pass, Verdict::fallback_implausible,
                                        Verdict::fallback_uncertified, Verdict::warming,
                                        Verdict::ungated};

// The verdict byte of a tick that was refused (status != ok): no prediction
// was made. It is not a Verdict; replays and the wire carry it in the same byte.
inline constexpr std::uint8_t kNoPrediction = 255;
inline constexpr const char* kNoPredictionName = "no_prediction";

// The projection's smoothness weight must lie in (0, kMaxLambda): below 1/4
// the matrix is strictly diagonally dominant (see the derivation above).
inline constexpr double kMaxLambda = 0.25;

const char* verdict_name(Verdict v) noexcept;

inline constexpr double kMinGateEps = 1e-6;          // output units
inline constexpr double kMaxGateEps = 1e3;
inline constexpr std::uint64_t kMaxGateBudget = 2'000'000;  // touched nonzeros per tick
inline constexpr std::uint64_t kGateGuardWork = 20'000;     // the guard starts after this
inline constexpr std::uint64_t kGateGuardNs = 500'000;     // then at most 0.5 ms more

// A certificate stored as float32 must still be a bound: round upward
// (to nearest, then one float up when that went below the double). For a
// float >= +0 the next one up is the next bit pattern, which spares the hot
// path a libm call; std::nextafter does the rest.
inline float bound_as_float(double bound) noexcept {
  const float f = static_cast<float>(bound);
  if (!(static_cast<double>(f) < bound)) return f;
  if (!std::signbit(f)) return std::bit_cast<float>(std::bit_cast<std::uint32_t>(f) + 1u);
  return std::nextafter(f, std::numeric_limits<float>::infinity());
}

struct GateParams {
  double eps;          // certificate target, output units
  std::uint64_t budget;  // touched nonzeros per tick, both axes together
  double lambda;       // smoothness weight, 0 < lambda < 1/4
  double threshold;    // d2 above this is implausible
  double blend_s = 0.0;  // verdict switches blend over this long (engine.hpp); 0: none
};

// The fixed-size kernels (4. above).
inline constexpr int kGateLanes = 4;     // doubles per register
inline constexpr int kGateMaxRegs = 8;   // registers of the iterate: 2K <= 32
inline constexpr int kGateDiagonals = 5;
inline constexpr int kGateBandOffsets[kGateDiagonals] = {-4, -2, 0, 2, 4};

// The gate's matrix laid out for the kernels: every array padded with zeros
// to regs * kGateLanes rows, so that whole registers load and the padding
// rows stay 0 (b = 0, no coefficient, inverse diagonal 0).
struct GateBand {
  int n = 0;                 // 2K unknowns
  int regs = 0;              // ceil(n / kGateLanes)
  std::uint64_t nnz = 0;     // touched nonzeros per residual: the CSR matrix's
  double gamma = 0.0;        // solver::residual_gamma of the CSR matrix
  double fudge = 0.0;        // solver::norm_fudge of the CSR matrix
  double abs_norm = 0.0;     // its abs_norm_bound
  // diag[d][i] = A[i][i + kGateBandOffsets[d]], 0 outside the matrix
  alignas(64) double diag[kGateDiagonals][kGateLanes * kGateMaxRegs]{};
  alignas(64) double inv_diag[kGateLanes * kGateMaxRegs]{};
};

// The gate's whole projection (SolverGate::run, 2.) in one kernel: b = prior
// + delta plus boundary[0..1] on the first two rows, solved from u = prior +
// delta exactly as jacobi_solve solves it (the same bits), with the
// right-hand side and the iterate built in registers; path (2K values)
// receives the certified u, and nothing when uncertified.
using GateProject = solver::Certificate (*)(const GateBand& a, const double* prior,
                                            const float* delta, const double* boundary,
                                            double eps, std::uint64_t budget, double lambda_lb,
                                            double omega, solver::WallGuard guard,
                                            double* path) noexcept;

// One table per instruction set, like GruKernels (gru.hpp).
struct GateKernels {
  Isa isa;
  GateProject project[kGateMaxRegs + 1];  // by register count; [0] unused
  // sum_i delta_i^2 inv_var_i over n values, in sum_squares's order
  double (*plausibility)(const float* delta, const double* inv_var, int n) noexcept;
};

// Precondition: isa_available(isa) (else the portable table).
const GateKernels& gate_kernels(Isa isa) noexcept;

struct GateResult {
  Verdict verdict;
  double d2;
  solver::Certificate cert;
  bool projected;  // path holds the certified projection
};

class SolverGate {
 public:
  // K horizons, equally spaced by dh seconds (h_k = (k + 1) dh).
  // Throws std::invalid_argument on parameters outside the contract.
  // `guarded`: the wall-clock guard of 3. (the engine's gates are guarded;
  // tests of the maths may leave it off so that no result depends on the
  // scheduler).
  // `isa`: the instruction set of the solve's kernel (4. above).
  SolverGate(const GateParams& p, int K, double dh, bool guarded = true,
             Isa isa = best_isa());
  SolverGate(const SolverGate&) = delete;
  SolverGate& operator=(const SolverGate&) = delete;
  SolverGate(SolverGate&&) noexcept = default;

  GateResult run(const float* delta, const double* prior, const double* inv_var,
                 const double* v, double* path, bool project_anyway = false) noexcept;

  // The matrix solved: A (x) I_2, 2K x 2K, axes interleaved.
  const solver::CsrMatrix& matrix() const noexcept { return a_; }
  int horizons() const noexcept { return K_; }
  const GateParams& params() const noexcept { return p_; }
  Isa isa() const noexcept { return kernels_->isa; }
  // The solve runs in a fixed-size kernel (else jacobi_solve itself).
  bool fixed_size() const noexcept { return solve_ != nullptr; }

 private:
  GateParams p_;
  int K_;
  double dh_;
  solver::CsrMatrix a_;
  double omega_;  // Jacobi damping, see the constructor
  solver::WallGuard guard_;
  const GateKernels* kernels_;
  GateProject solve_ = nullptr;  // the fixed-size kernel, if 2K fits one
  GateBand band_;
  AlignedBuffer<double> b_, u_, r_;  // the generic solve's scratch, 2K each (interleaved axes)
};

}  // namespace tmn
