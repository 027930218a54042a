// solver.hpp — certified iterative solvers with a hard work budget.
//
// Contract (shared by every solver in this module):
//   * All memory is owned by the caller or sized at construction; a solve
//     never allocates, never throws, and stops either when its certificate
//     proves the requested accuracy or when its budget runs out.
//   * Work is counted in touched nonzeros, the machine-independent cost.
//   * A `Certificate` is an a-posteriori bound on the error of the returned
//     solution, including the floating-point error of computing it.
//
// Jacobi/Neumann for A x = b, A symmetric positive definite and strictly
// diagonally dominant, stored in CSR:
//   r   = b - A x                      (one pass over A: work += nnz)
//   x  += omega D^-1 r                 (the Neumann series of omega D^-1 A)
// omega = 1 is plain Jacobi; a damped omega < 1 converges faster when the
// spectrum of D^-1 A is known to be lopsided (the gate's is, see gate.hpp).
// It converges whenever 0 < omega mu < 2 for every eigenvalue mu of D^-1 A.
// Since ||x - x*||_2 = ||A^-1 r||_2 <= ||r||_2 / lambda_min(A), the bound is
//   error_bound = (||r_hat||_2 + gamma (||b||_2 + ||A||_abs ||x||_2)) (1 + 4nu)
//                 / lambda_lb
// where r_hat is the computed residual, gamma = (m+1)u / (1 - (m+1)u) bounds
// the rounding of each residual entry relative to (|b| + |A||x|)_i (m = the
// largest row nnz, u = 2^-53), ||A||_abs = sqrt(max row |.|-sum x max column
// |.|-sum) >= || |A| ||_2, and lambda_lb <= lambda_min(A) is supplied by the
// caller (or Gershgorin's bound). The rounding term is evaluated only when
// the residual alone says the target may be met.
// Forward-push personalised PageRank is solver_push.hpp, with the same
// Certificate (its bound is the L1 mass of the remaining residual).
#pragma once

#include <cstdint>
#include <vector>

namespace tmn::solver {

struct Certificate {
  double error_bound = 0.0;    // proven bound on ||x - x*||_2
  double residual_norm = 0.0;  // ||b - A x||_2 as computed
  std::uint64_t work = 0;      // touched nonzeros
  std::uint32_t iterations = 0;
  bool certified = false;      // error_bound <= eps was reached within budget
};

// The nonzero pattern of an n x n sparse matrix, or a directed graph of n
// nodes, in CSR: row i holds the column (or target node) indices
// indices[indptr[i] .. indptr[i + 1]). Validated once (allocates), then
// immutable: n > 0, indptr has n + 1 non-decreasing entries from 0 to
// len(indices), and every index is in [0, n); otherwise std::invalid_argument,
// its message starting with `owner`. Shared by CsrMatrix and PushGraph.
class CsrPattern {
 public:
  CsrPattern() = default;
  CsrPattern(const char* owner, int n, std::vector<std::int32_t> indptr,
             std::vector<std::int32_t> indices);

  int n() const noexcept { return n_; }
  std::uint64_t nnz() const noexcept { return indices_.size(); }
  int max_row_nnz() const noexcept { return max_row_nnz_; }
  const std::int32_t* indptr() const noexcept { return indptr_.data(); }
  const std::int32_t* indices() const noexcept { return indices_.data(); }

 private:
  int n_ = 0;
  int max_row_nnz_ = 0;
  std::vector<std::int32_t> indptr_, indices_;
};

// A square sparse matrix in CSR form: its pattern and one value per entry.
// Built once (allocates), then immutable.
class CsrMatrix : public CsrPattern {
 public:
  CsrMatrix() = default;
  // From a dense row-major n x n matrix; exact zeros are not stored.
  static CsrMatrix from_dense(const double* a, int n);
  // From CSR arrays (validated as a CsrPattern, and: sorted indices in each
  // row, finite values, a nonzero diagonal).
  CsrMatrix(int n, std::vector<std::int32_t> indptr,
            std::vector<std::int32_t> indices, std::vector<double> data);

  // sqrt(||A||_1 ||A||_inf), an upper bound on the 2-norm of |A|.
  double abs_norm_bound() const noexcept { return abs_norm_; }
  // min_i (a_ii - sum_{j != i} |a_ij|): a lower bound on lambda_min for a
  // symmetric matrix (Gershgorin); positive iff strictly diagonally dominant.
  double gershgorin_lower_bound() const noexcept;

  const double* data() const noexcept { return data_.data(); }
  const double* inv_diag() const noexcept { return inv_diag_.data(); }
  // Banded matrices (at most kMaxDiagonals distinct diagonals, like the
  // gate's) are also stored by diagonal (DIA): diagonal d holds
  // A[i][i + offset(d)] at [d * n + i], zero outside the matrix. The residual
  // then runs over contiguous, vectorisable rows instead of indirect CSR
  // indices. Empty when the matrix is not banded.
  static constexpr int kMaxDiagonals = 9;
  const std::vector<int>& diagonal_offsets() const noexcept { return dia_offsets_; }
  const double* diagonal_data() const noexcept { return dia_data_.data(); }

 private:
  double abs_norm_ = 0.0;
  std::vector<double> data_, inv_diag_;
  std::vector<int> dia_offsets_;
  std::vector<double> dia_data_;
};

// A guard for one solve, free until `after_work` nonzeros are spent. Then
// the solve stops (uncertified) at once if the rounding floor (below) alone
// exceeds eps, and otherwise after `ticks` more of tmn::clock. The default
// never fires.
struct WallGuard {
  std::uint64_t after_work = ~std::uint64_t{0};
  std::uint64_t ticks = 0;
};

// Jacobi iteration from the initial guess in x (in/out). `r` is caller
// scratch of length n; on return it holds the last computed residual.
Certificate jacobi_solve(const CsrMatrix& a, const double* b, double* x,
                         double* r, double eps, std::uint64_t budget,
                         double lambda_lb, double omega = 1.0,
                         WallGuard guard = {}) noexcept;

// The smallest error_bound any x can get for this b: the rounding term
// gamma ||b||_2 (1 + 4 n u) / lambda_lb. A target eps below it can never be
// certified, whatever the budget.
double rounding_floor(const CsrMatrix& a, const double* b, double lambda_lb) noexcept;

// The constants of the bound above for a's system: gamma = (m+1)u / (1 -
// (m+1)u) and the factor (1 + 4 n u). For kernels that solve it in a layout
// of their own (the gate's, gate.hpp) and must certify exactly as
// jacobi_solve does.
double residual_gamma(const CsrMatrix& a) noexcept;
double norm_fudge(const CsrMatrix& a) noexcept;

// sum_i v_i^2 in one fixed order: four partial sums s_l over i = l mod 4,
// each in index order, then (s_0 + s_1) + (s_2 + s_3). Every norm of the
// solvers is summed this way, so that a kernel holding four doubles per
// register (gate.hpp) returns the same bits as jacobi_solve. (Any order
// would do for the proof: the (1 + 4 n u) factor covers the rounding of the
// norms whatever their order.)
double sum_squares(const double* v, int n) noexcept;

}  // namespace tmn::solver
