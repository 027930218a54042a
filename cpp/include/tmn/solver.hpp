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
//   x  += D^-1 r                       (the Neumann series of D^-1 A)
// Since ||x - x*||_2 = ||A^-1 r||_2 <= ||r||_2 / lambda_min(A), the bound is
//   error_bound = (||r_hat||_2 + gamma (||b||_2 + ||A||_abs ||x||_2)) (1 + 4nu)
//                 / lambda_lb
// where r_hat is the computed residual, gamma = (m+1)u / (1 - (m+1)u) bounds
// the rounding of each residual entry relative to (|b| + |A||x|)_i (m = the
// largest row nnz, u = 2^-53), ||A||_abs = sqrt(max row |.|-sum x max column
// |.|-sum) >= || |A| ||_2, and lambda_lb <= lambda_min(A) is supplied by the
// caller (or Gershgorin's bound). The rounding term is evaluated only when
// the residual alone says the target may be met.
// Forward-push personalised PageRank will join this module with the same
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

// A square sparse matrix in CSR form. Built once (allocates), then immutable.
class CsrMatrix {
 public:
  CsrMatrix() = default;
  // From a dense row-major n x n matrix; exact zeros are not stored.
  static CsrMatrix from_dense(const double* a, int n);
  // From CSR arrays (validated: sorted, in-range indices, nonzero diagonal).
  CsrMatrix(int n, std::vector<std::int32_t> indptr,
            std::vector<std::int32_t> indices, std::vector<double> data);

  int n() const noexcept { return n_; }
  std::uint64_t nnz() const noexcept { return data_.size(); }
  int max_row_nnz() const noexcept { return max_row_nnz_; }
  // sqrt(||A||_1 ||A||_inf), an upper bound on the 2-norm of |A|.
  double abs_norm_bound() const noexcept { return abs_norm_; }
  // min_i (a_ii - sum_{j != i} |a_ij|): a lower bound on lambda_min for a
  // symmetric matrix (Gershgorin); positive iff strictly diagonally dominant.
  double gershgorin_lower_bound() const noexcept;

  const std::int32_t* indptr() const noexcept { return indptr_.data(); }
  const std::int32_t* indices() const noexcept { return indices_.data(); }
  const double* data() const noexcept { return data_.data(); }
  const double* inv_diag() const noexcept { return inv_diag_.data(); }
  // The same matrix padded to W = max_row_nnz() entries per row, stored
  // column-major (ELLPACK: entry w of row i at [w * n + i]; padding has value
  // 0 and points at the row's own column). The residual then sweeps all rows
  // per entry: n independent chains instead of one chain per row.
  const std::int32_t* ell_indices() const noexcept { return ell_indices_.data(); }
  const double* ell_data() const noexcept { return ell_data_.data(); }

 private:
  int n_ = 0;
  int max_row_nnz_ = 0;
  double abs_norm_ = 0.0;
  std::vector<std::int32_t> indptr_, indices_;
  std::vector<double> data_, inv_diag_;
  std::vector<std::int32_t> ell_indices_;
  std::vector<double> ell_data_;
};

// Jacobi iteration from the initial guess in x (in/out). `r` is caller
// scratch of length n; on return it holds the last computed residual.
Certificate jacobi_solve(const CsrMatrix& a, const double* b, double* x,
                         double* r, double eps, std::uint64_t budget,
                         double lambda_lb) noexcept;

}  // namespace tmn::solver
