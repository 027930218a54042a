// The gate's fixed-size solver kernels (gate.hpp, 4.), compiled once per
// instruction set like gru_kernels.cpp: the build defines TMN_ISA and passes
// matching -m flags, and everything lives in a namespace of that name.
//
// The iterate x and the residual r live in R registers of four doubles (GCC
// vector extensions: AVX2/AVX-512 ymm registers, SSE2 pairs in the portable
// build). Row i of A (x) I_2 touches x[i-4], x[i-2], x[i], x[i+2], x[i+4]:
// register j's neighbours at -4 and +4 are registers j-1 and j+1, those at -2
// and +2 are the halves of two neighbouring registers, one shuffle each:
//
//   x[4j-2 .. 4j+2) = (hi half of X[j-1], lo half of X[j])
//   x[4j+2 .. 4j+6) = (hi half of X[j],   lo half of X[j+1])
//
// Every operation is jacobi_solve's (solver.cpp) on the same numbers in the
// same order: r_i = b_i, then r_i -= A[i][i+off] x[i+off] over the offsets
// in increasing order (a coefficient outside the matrix is 0 and changes
// nothing but the sign of a zero); the norms in sum_squares's four-lane
// order; x_i += (omega r_i) inv_d_i. This file is compiled with
// -ffp-contract=off, so no product is fused into its sum here or there.
#include <cmath>
#include <cstring>
#include <limits>

#include "tmn/clock.hpp"
#include "tmn/gate.hpp"

#ifndef TMN_ISA
#error "TMN_ISA must name the instruction set of this translation unit"
#endif

namespace tmn::kernels::TMN_ISA {

namespace {

using v4d = double __attribute__((vector_size(32)));
using v4f = float __attribute__((vector_size(16)));
constexpr int L = kGateLanes;
static_assert(L == 4, "the kernels hold four doubles per register");

inline v4d load(const double* p) noexcept {
  v4d v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline void store(double* p, v4d v) noexcept { std::memcpy(p, &v, sizeof v); }

// (s_0 + s_1) + (s_2 + s_3): sum_squares's last step
inline double lanes(v4d s) noexcept { return (s[0] + s[1]) + (s[2] + s[3]); }

// sum_squares (solver.hpp) of R registers: lane l accumulates i = l mod 4
// in index order, starting from register 0 (0 + a = a exactly).
template <int R>
inline double sum_squares(const v4d* v) noexcept {
  v4d s = v[0] * v[0];
  for (int j = 1; j < R; ++j) s = s + v[j] * v[j];
  return lanes(s);
}

// jacobi_solve's iteration on registers: B the right-hand side, X the start
// (updated in place), Rr the last residual. Returns the certificate.
template <int R>
[[gnu::always_inline]] inline solver::Certificate iterate(const GateBand& a, const v4d* B, v4d* X, v4d* Rr, double eps,
                                   std::uint64_t budget, double lambda_lb, double omega,
                                   solver::WallGuard guard) noexcept {
  const v4d zero = {0.0, 0.0, 0.0, 0.0};
  for (int j = 0; j < R; ++j) Rr[j] = zero;
  const double bb = sum_squares<R>(B);
  const double norm_b = std::sqrt(bb);
  const double gamma = a.gamma, fudge = a.fudge;
  // x / lambda_lb as jacobi_solve divides it; the gate's lambda_lb is 1, and
  // x / 1 == x exactly, so the division leaves the critical path there
  const bool unit = lambda_lb == 1.0;
  const auto per_lambda = [&](double v) noexcept { return unit ? v : v / lambda_lb; };

  solver::Certificate c;
  c.error_bound = std::numeric_limits<double>::infinity();
  if (!(lambda_lb > 0.0)) return c;  // no bound can be proven
  std::uint64_t deadline = 0;        // set when the guard starts
  while (c.work + a.nnz <= budget) {
    // r = b - A x, register by register
    for (int j = 0; j < R; ++j) {
      const v4d prev = j > 0 ? X[j - 1] : zero;
      const v4d next = j + 1 < R ? X[j + 1] : zero;
      const v4d m2 = __builtin_shufflevector(prev, X[j], 2, 3, 4, 5);
      const v4d p2 = __builtin_shufflevector(X[j], next, 2, 3, 4, 5);
      v4d rj = B[j];
      rj = rj - load(a.diag[0] + L * j) * prev;
      rj = rj - load(a.diag[1] + L * j) * m2;
      rj = rj - load(a.diag[2] + L * j) * X[j];
      rj = rj - load(a.diag[3] + L * j) * p2;
      rj = rj - load(a.diag[4] + L * j) * next;
      Rr[j] = rj;
    }
    c.work += a.nnz;
    c.residual_norm = std::sqrt(sum_squares<R>(Rr));
    // ||x|| for the full bound, independent of r: computed alongside it
    const double norm_x = std::sqrt(sum_squares<R>(X));
    // the guard of gate.hpp, 3., exactly as jacobi_solve runs it
    if (c.work >= guard.after_work && deadline == 0) {
      const double floor = per_lambda(gamma * norm_b * fudge);  // rounding_floor
      if (!(floor <= eps)) break;  // never certifiable
      deadline = clock::now() + guard.ticks;
    }
    const bool last = c.work + a.nnz > budget || (deadline != 0 && clock::now() >= deadline);
    if (per_lambda(c.residual_norm * fudge) <= eps || last) {
      const double rounding = gamma * (norm_b + a.abs_norm * norm_x);
      c.error_bound = per_lambda((c.residual_norm + rounding) * fudge);
      if (c.error_bound <= eps) {
        c.certified = true;
        return c;
      }
    }
    if (last) break;
    for (int j = 0; j < R; ++j) X[j] = X[j] + omega * Rr[j] * load(a.inv_diag + L * j);
    ++c.iterations;
  }
  return c;
}

// The gate's projection (gate.cpp): q = prior + delta, b = q + the boundary
// terms on the first two rows, solved from u = q with no trip through memory;
// the certified u is written to path (2K values), and nothing when uncertified.
template <int R>
solver::Certificate project(const GateBand& a, const double* prior, const float* delta,
                            const double* boundary, double eps, std::uint64_t budget,
                            double lambda_lb, double omega, solver::WallGuard guard,
                            double* path) noexcept {
  v4d X[R], B[R], Rr[R];
  const int n = a.n, full = n / L;  // whole registers; the last may be partial
  for (int j = 0; j < R; ++j) {
    if (j < full) {
      v4f f;
      std::memcpy(&f, delta + L * j, sizeof f);
      X[j] = load(prior + L * j) + __builtin_convertvector(f, v4d);
    } else {
      double q[L] = {0.0, 0.0, 0.0, 0.0};
      for (int i = L * j; i < n; ++i) q[i - L * j] = prior[i] + static_cast<double>(delta[i]);
      X[j] = load(q);
    }
    B[j] = X[j];
  }
  B[0][0] += boundary[0];
  B[0][1] += boundary[1];
  const solver::Certificate c = iterate<R>(a, B, X, Rr, eps, budget, lambda_lb, omega, guard);
  if (c.certified) {
    for (int j = 0; j < R; ++j) {
      if (j < full) {
        store(path + L * j, X[j]);
      } else {
        double u[L];
        store(u, X[j]);
        for (int i = L * j; i < n; ++i) path[i] = u[i - L * j];
      }
    }
  }
  return c;
}

// sum_i double(delta_i)^2 inv_var_i in sum_squares's order.
double plausibility(const float* delta, const double* inv_var, int n) noexcept {
  v4d s = {0.0, 0.0, 0.0, 0.0};
  int i = 0;
  for (; i + L <= n; i += L) {
    v4f f;
    std::memcpy(&f, delta + i, sizeof f);
    const v4d d = __builtin_convertvector(f, v4d);
    s = s + d * d * load(inv_var + i);
  }
  for (; i < n; ++i) {
    const double d = delta[i];
    s[i & 3] += d * d * inv_var[i];
  }
  return lanes(s);
}

}  // namespace

extern const GateKernels gate_table;
const GateKernels gate_table{Isa::TMN_ISA,
                             {nullptr, &project<1>, &project<2>, &project<3>, &project<4>,
                              &project<5>, &project<6>, &project<7>, &project<8>},
                             &plausibility};
static_assert(kGateMaxRegs == 8, "gate_table lists one kernel per register count");

}  // namespace tmn::kernels::TMN_ISA
