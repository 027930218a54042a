#include "tmn/solver.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

#include "tmn/clock.hpp"

namespace tmn::solver {

namespace {
constexpr double kUnitRoundoff = std::numeric_limits<double>::epsilon() / 2.0;  // 2^-53
}  // namespace

// gamma = (m+1)u / (1 - (m+1)u), the relative rounding of one residual entry.
double residual_gamma(const CsrMatrix& a) noexcept {
  const double m1 = static_cast<double>(a.max_row_nnz() + 1);
  return m1 * kUnitRoundoff / (1.0 - m1 * kUnitRoundoff);
}
double norm_fudge(const CsrMatrix& a) noexcept {
  return 1.0 + 4.0 * static_cast<double>(a.n()) * kUnitRoundoff;
}

double sum_squares(const double* v, int n) noexcept {
  double s[4] = {0.0, 0.0, 0.0, 0.0};
  for (int i = 0; i < n; ++i) s[i & 3] += v[i] * v[i];
  return (s[0] + s[1]) + (s[2] + s[3]);
}

double rounding_floor(const CsrMatrix& a, const double* b, double lambda_lb) noexcept {
  return residual_gamma(a) * std::sqrt(sum_squares(b, a.n())) * norm_fudge(a) / lambda_lb;
}

CsrMatrix CsrMatrix::from_dense(const double* a, int n) {
  std::vector<std::int32_t> indptr{0}, indices;
  std::vector<double> data;
  for (int i = 0; i < n; ++i) {
    for (int j = 0; j < n; ++j) {
      const double v = a[static_cast<long>(i) * n + j];
      if (v != 0.0) {
        indices.push_back(j);
        data.push_back(v);
      }
    }
    indptr.push_back(static_cast<std::int32_t>(indices.size()));
  }
  return CsrMatrix(n, std::move(indptr), std::move(indices), std::move(data));
}

CsrPattern::CsrPattern(const char* owner, int n, std::vector<std::int32_t> indptr,
                       std::vector<std::int32_t> indices)
    : n_(n), indptr_(std::move(indptr)), indices_(std::move(indices)) {
  const auto refuse = [owner](const std::string& what) {
    throw std::invalid_argument(std::string(owner) + ": " + what);
  };
  if (n <= 0) refuse("n must be positive");
  if (indptr_.size() != static_cast<std::size_t>(n) + 1 || indptr_[0] != 0 ||
      static_cast<std::size_t>(indptr_[n]) != indices_.size())
    refuse("indptr must have n + 1 entries from 0 to len(indices)");
  for (int i = 0; i < n; ++i) {
    if (indptr_[i + 1] < indptr_[i]) refuse("indptr must be non-decreasing");
    max_row_nnz_ = std::max(max_row_nnz_, indptr_[i + 1] - indptr_[i]);
    for (int p = indptr_[i]; p < indptr_[i + 1]; ++p)
      if (indices_[p] < 0 || indices_[p] >= n)
        refuse("index out of range in row " + std::to_string(i));
  }
}

CsrMatrix::CsrMatrix(int n, std::vector<std::int32_t> indptr,
                     std::vector<std::int32_t> indices, std::vector<double> data)
    : CsrPattern("CsrMatrix", n, std::move(indptr), std::move(indices)),
      data_(std::move(data)), inv_diag_(static_cast<std::size_t>(n), 0.0) {
  if (data_.size() != nnz())
    throw std::invalid_argument("CsrMatrix: data and indices differ in length");
  const std::int32_t* ip = this->indptr();  // the moved-from parameter hides it
  const std::int32_t* ix = this->indices();
  for (int i = 0; i < n; ++i) {
    for (int p = ip[i]; p < ip[i + 1]; ++p) {
      const int j = ix[p];
      if (p > ip[i] && ix[p - 1] >= j)
        throw std::invalid_argument("CsrMatrix: column indices must be sorted in row " +
                                    std::to_string(i));
      if (!std::isfinite(data_[p]))
        throw std::invalid_argument("CsrMatrix: non-finite value in row " + std::to_string(i));
      if (j == i && data_[p] != 0.0) inv_diag_[i] = 1.0 / data_[p];
    }
    if (inv_diag_[i] == 0.0)
      throw std::invalid_argument("CsrMatrix: missing or zero diagonal in row " +
                                  std::to_string(i));
  }
  std::vector<double> row(n, 0.0), col(n, 0.0);
  for (int i = 0; i < n; ++i)
    for (int p = ip[i]; p < ip[i + 1]; ++p) {
      row[i] += std::fabs(data_[p]);
      col[ix[p]] += std::fabs(data_[p]);
    }
  std::vector<int> offsets;
  for (int i = 0; i < n && offsets.size() <= kMaxDiagonals; ++i)
    for (int p = ip[i]; p < ip[i + 1]; ++p)
      if (std::find(offsets.begin(), offsets.end(), ix[p] - i) == offsets.end())
        offsets.push_back(ix[p] - i);
  if (offsets.size() <= kMaxDiagonals) {
    std::sort(offsets.begin(), offsets.end());
    dia_offsets_ = offsets;
    dia_data_.assign(offsets.size() * static_cast<std::size_t>(n), 0.0);
    for (int i = 0; i < n; ++i)
      for (int p = ip[i]; p < ip[i + 1]; ++p) {
        const auto d = std::find(offsets.begin(), offsets.end(), ix[p] - i) - offsets.begin();
        dia_data_[static_cast<std::size_t>(d) * n + i] = data_[p];
      }
  }
  abs_norm_ = std::sqrt(*std::max_element(row.begin(), row.end()) *
                        *std::max_element(col.begin(), col.end()));
}

double CsrMatrix::gershgorin_lower_bound() const noexcept {
  const std::int32_t* ip = indptr();
  const std::int32_t* ix = indices();
  double lb = std::numeric_limits<double>::infinity();
  for (int i = 0; i < n(); ++i) {
    double diag = 0.0, off = 0.0;
    for (int p = ip[i]; p < ip[i + 1]; ++p) {
      if (ix[p] == i) diag = data_[p];
      else off += std::fabs(data_[p]);
    }
    lb = std::min(lb, diag - off);
  }
  return lb;
}

// Cloned for x86-64-v3 (AVX2, FMA) and the baseline, picked by the loader:
// the banded sweeps vectorise 4 doubles wide where the CPU allows. This file
// is compiled with -ffp-contract=off (CMakeLists.txt), so no clone fuses a
// product into its sum: every clone, and the gate's kernels (gate.hpp),
// round the same operations and return the same bits.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
__attribute__((target_clones("arch=x86-64-v3", "default")))
#endif
Certificate jacobi_solve(const CsrMatrix& a, const double* b, double* x,
                         double* r, double eps, std::uint64_t budget,
                         double lambda_lb, double omega, WallGuard guard) noexcept {
  const int n = a.n();
  const std::int32_t* ip = a.indptr();
  const std::int32_t* ix = a.indices();
  const double* av = a.data();
  const std::vector<int>& offsets = a.diagonal_offsets();
  const double* dia = a.diagonal_data();
  const double* inv_d = a.inv_diag();
  const double gamma = residual_gamma(a);
  const double fudge = norm_fudge(a);

  Certificate c;
  c.error_bound = std::numeric_limits<double>::infinity();
  if (!(lambda_lb > 0.0)) return c;  // no bound can be proven
  std::uint64_t deadline = 0;  // set when the guard starts
  // The full bound, rounding term included, for the current x and residual.
  const auto full_bound = [&]() noexcept {
    const double rounding =
        gamma * (std::sqrt(sum_squares(b, n)) + a.abs_norm_bound() * std::sqrt(sum_squares(x, n)));
    return (c.residual_norm + rounding) * fudge / lambda_lb;
  };
  // Each pass computes a residual, then updates x only if the budget allows
  // the residual that will certify the update: the returned bound always
  // belongs to the returned x.
  while (c.work + a.nnz() <= budget) {
    // r = b - A x
    if (!offsets.empty()) {  // banded: one contiguous sweep per diagonal
      for (int i = 0; i < n; ++i) r[i] = b[i];
      for (std::size_t d = 0; d < offsets.size(); ++d) {
        const int off = offsets[d];
        const double* __restrict v = dia + d * static_cast<std::size_t>(n);
        double* __restrict rd = r;
        const double* __restrict xd = x;
        const int lo = std::max(0, -off), hi = std::min(n, n - off);
        for (int i = lo; i < hi; ++i) rd[i] -= v[i] * xd[i + off];
      }
    } else {
      for (int i = 0; i < n; ++i) {
        double acc = b[i];
        for (int p = ip[i]; p < ip[i + 1]; ++p) acc -= av[p] * x[ix[p]];
        r[i] = acc;
      }
    }
    c.work += a.nnz();
    c.residual_norm = std::sqrt(sum_squares(r, n));
    // The residual alone is a lower estimate of the bound: add the rounding
    // term only when the target is within reach, or when this is the last pass.
    if (c.work >= guard.after_work && deadline == 0) {  // the guard starts
      if (!(rounding_floor(a, b, lambda_lb) <= eps)) break;  // never certifiable
      deadline = clock::now() + guard.ticks;
    }
    const bool last = c.work + a.nnz() > budget || (deadline != 0 && clock::now() >= deadline);
    if (c.residual_norm * fudge / lambda_lb <= eps || last) {
      c.error_bound = full_bound();
      if (c.error_bound <= eps) {
        c.certified = true;
        return c;
      }
    }
    if (last) break;
    for (int i = 0; i < n; ++i) x[i] += omega * r[i] * inv_d[i];  // x += omega D^-1 r
    ++c.iterations;
  }
  return c;
}

}  // namespace tmn::solver
