// solver_push.hpp — forward-push personalised PageRank, the solver module's
// second solver (solver.hpp holds Jacobi and the shared Certificate).
// docs/active-selection.md derives the bound; this is the summary.
//
// Contract:
//   input   a directed graph in CSR with nonnegative weights (row u lists u's
//           out-edges), OUT-WEIGHT NORMALISED by the solver: the walk moves
//           u -> v with P_uv = w_uv / W_u, W_u = sum of row u (a row-stochastic
//           input is left as it is). A row with W_u = 0 is dangling: its walk
//           restarts, i.e. jumps by the restart distribution (networkx's
//           default). A damping alpha in (0, 1) (the chance to follow an edge),
//           a restart distribution s given sparsely (nodes, nonnegative weights,
//           normalised by the solver) and eps, a target on the L1 error.
//   output  x^ >= 0 on the touched nodes (the support), an estimate of
//             pi = (1 - alpha) s + alpha pi P'      (P' = P with dangling rows s)
//           the residual r there, and a Certificate: error_bound >= ||x^ - pi||_1
//           (rounding included), residual_norm = ||r||_1, the work, and
//           iterations = threshold rounds.
//   cost    work = touched entries: 1 + out-degree per push (1 for a dangling
//           node), 1 per restart entry, 1 per support entry per threshold
//           round. Never more than `budget`. For fixed eps and alpha it does not
//           grow with the graph: it depends on the neighbourhood of s only.
//   errors  PushGraph's constructor and check_restart throw
//           std::invalid_argument; the solve itself never throws or allocates
//           and returns an uncertified, infinite bound for inputs it refuses.
//
// The algorithm (Andersen, Chung and Lang 2006, with dangling mass kept apart):
//   p = 0, r = s, m = 0.       invariant:  pi = p + pr(r) + m pi
//   push u:  p_u += (1 - alpha) r_u;  r_v += alpha r_u P_uv (or, dangling,
//            m += alpha r_u);  r_u = 0
// where pr(v) = (1 - alpha) v (I - alpha P')^-1 is linear, pr(s) = pi, and
// ||pr(v)||_1 = ||v||_1 for v >= 0 (P' is stochastic). Hence
//   pi = (p + pr(r)) / (1 - m),  x^ = p / (1 - m),  ||pi - x^||_1 = ||r||_1 / (1 - m)
// exactly, before rounding; the estimate is an entrywise lower bound. Pushes run
// in rounds: a FIFO of the nodes with r_u >= theta (1 + d_u), theta halving
// each round (or dropping to the largest remaining ratio), until the bound is
// <= eps or the budget is spent.
#pragma once

#include <cstdint>
#include <vector>

#include "tmn/solver.hpp"

namespace tmn::solver {

// A weighted directed graph: its CSR pattern (row u lists u's out-edges)
// and a weight per edge, validated and normalised once (allocates), then
// immutable. An empty weight vector means every weight is 1.
class PushGraph : public CsrPattern {
 public:
  PushGraph(int n, std::vector<std::int32_t> indptr, std::vector<std::int32_t> indices,
            std::vector<double> weights);

  int dangling() const noexcept { return dangling_; }      // rows with W_u = 0
  int max_out_degree() const noexcept { return max_row_nnz(); }
  // Throws std::invalid_argument unless the restart is `count` in-range nodes
  // with finite, nonnegative weights of positive sum (repeated nodes add up).
  void check_restart(const std::int32_t* nodes, const double* weights, int count) const;

  const double* weights() const noexcept { return weights_.empty() ? nullptr : weights_.data(); }
  // 1 / W_u (rounded), 0 for a dangling row.
  const double* inv_out_weight() const noexcept { return inv_w_.data(); }

 private:
  int dangling_ = 0;
  std::vector<double> weights_, inv_w_;
};

// The state of one solve, sized for a graph of n nodes at construction (the
// only allocation). Reusable: a solve clears what the previous one touched, so
// a local solve costs no O(n) reset. After a solve, nodes()[0..support())
// are the touched nodes, with estimate(u) and residual(u) there.
class PushWorkspace {
 public:
  explicit PushWorkspace(int n);
  PushWorkspace(const PushWorkspace&) = delete;
  PushWorkspace& operator=(const PushWorkspace&) = delete;

  int n() const noexcept { return static_cast<int>(p_.size()); }
  int support() const noexcept { return support_; }
  const std::int32_t* nodes() const noexcept { return nodes_.data(); }
  double estimate(int u) const noexcept { return p_[u] * scale_; }  // x^_u = p_u / (1 - m)
  double residual(int u) const noexcept { return r_[u]; }

 private:
  friend struct PushSolve;
  std::vector<double> p_, r_;
  std::vector<std::int32_t> nodes_, queue_;  // support list; FIFO ring of n slots
  std::vector<std::uint8_t> in_support_, in_queue_;
  int support_ = 0;
  double scale_ = 1.0;                       // 1 / (1 - m)
};

struct PushResult {
  Certificate cert;            // error_bound on ||x^ - pi||_1; residual_norm = ||r||_1
  double dangling_mass = 0.0;  // m: mass that reached dangling nodes and restarted
  std::uint64_t pushes = 0;
};

// Personalised PageRank of `g` with restart s = weights / sum(weights) on
// `nodes` (check_restart's rules), damping alpha, L1 target eps, at most
// `budget` work. `ws` must have ws.n() == g.n().
PushResult pagerank_push(const PushGraph& g, const std::int32_t* nodes, const double* weights,
                         int count, double alpha, double eps, std::uint64_t budget,
                         PushWorkspace& ws) noexcept;

}  // namespace tmn::solver
