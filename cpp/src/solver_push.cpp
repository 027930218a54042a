#include "tmn/solver_push.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

namespace tmn::solver {

PushGraph::PushGraph(int n, std::vector<std::int32_t> indptr, std::vector<std::int32_t> indices,
                     std::vector<double> weights)
    : CsrPattern("PushGraph", n, std::move(indptr), std::move(indices)),
      weights_(std::move(weights)), inv_w_(static_cast<std::size_t>(n), 0.0) {
  if (!weights_.empty() && weights_.size() != nnz())
    throw std::invalid_argument("PushGraph: weights and indices differ in length");
  const std::int32_t* ip = this->indptr();  // the moved-from parameter hides it
  for (int u = 0; u < n; ++u) {
    double w_sum = 0.0;
    for (int e = ip[u]; e < ip[u + 1]; ++e) {
      const double w = weights_.empty() ? 1.0 : weights_[e];
      if (!(std::isfinite(w) && w >= 0.0))
        throw std::invalid_argument("PushGraph: weights must be finite and >= 0 (row " +
                                    std::to_string(u) + ")");
      w_sum += w;
    }
    if (!std::isfinite(w_sum))
      throw std::invalid_argument("PushGraph: the weights of row " + std::to_string(u) +
                                  " overflow");
    if (w_sum > 0.0) inv_w_[u] = 1.0 / w_sum;
    else ++dangling_;
  }
}

void PushGraph::check_restart(const std::int32_t* nodes, const double* weights,
                              int count) const {
  if (count <= 0) throw std::invalid_argument("restart: give at least one node");
  double total = 0.0;
  for (int i = 0; i < count; ++i) {
    if (nodes[i] < 0 || nodes[i] >= n())
      throw std::invalid_argument("restart: node " + std::to_string(nodes[i]) +
                                  " is not in the graph (n = " + std::to_string(n()) + ")");
    if (!(std::isfinite(weights[i]) && weights[i] >= 0.0))
      throw std::invalid_argument("restart: weights must be finite and >= 0");
    total += weights[i];
  }
  if (!(total > 0.0 && std::isfinite(total)))
    throw std::invalid_argument("restart: the weights must have a positive, finite sum");
}

PushWorkspace::PushWorkspace(int n)
    : p_(static_cast<std::size_t>(std::max(n, 0)), 0.0), r_(p_.size(), 0.0),
      nodes_(p_.size()), queue_(p_.size()), in_support_(p_.size(), 0),
      in_queue_(p_.size(), 0) {
  if (n <= 0) throw std::invalid_argument("PushWorkspace: n must be positive");
}

// One solve: the workspace's arrays plus the running sums. A struct (not a
// lambda soup) so that each step below is a short named function.
struct PushSolve {
  static constexpr double u = std::numeric_limits<double>::epsilon() / 2.0;  // 2^-53
  static constexpr double M = 1.0 + 0x1p-20;  // bound on any mass (see rounding())

  const PushGraph& g;
  PushWorkspace& ws;
  const double alpha, c1, eps;
  const std::uint64_t budget;
  const double* w;
  const double* inv_w;
  const std::int32_t* ip;
  const std::int32_t* ix;
  double rs = 1.0;   // running ||r||_1
  double m = 0.0;    // dangling mass
  double theta = std::numeric_limits<double>::infinity();
  double r0_term = 0.0, push_term = 0.0;  // rounding of the restart, of the push shares
  int head = 0, queued = 0;
  PushResult out;

  static double gamma(double k) noexcept { return k * u / (1.0 - k * u); }

  double cost(int v) const noexcept {
    return inv_w[v] == 0.0 ? 1.0 : 1.0 + static_cast<double>(ip[v + 1] - ip[v]);
  }

  void clear() noexcept {
    for (int i = 0; i < ws.support_; ++i) {
      const int v = ws.nodes_[i];
      ws.p_[v] = ws.r_[v] = 0.0;
      ws.in_support_[v] = ws.in_queue_[v] = 0;
    }
    ws.support_ = 0;
    ws.scale_ = 1.0;
  }

  void touch(int v) noexcept {
    if (!ws.in_support_[v]) {
      ws.in_support_[v] = 1;
      ws.nodes_[ws.support_++] = v;
    }
  }

  void enqueue(int v) noexcept {
    ws.in_queue_[v] = 1;
    ws.queue_[(head + queued++) % ws.n()] = v;  // each node at most once: n slots suffice
  }

  // Rounding, for the work done so far (docs/active-selection.md): the defect
  // of the invariant and of the running sum rs. Every mass is <= M while
  // this is below 2^-21 (the solve stops certifying past that).
  double rounding() const noexcept {
    return r0_term + push_term + 3.0 * u * M * static_cast<double>(out.cert.work) + 2.0 * u * M;
  }

  double bound() const noexcept {
    return (std::max(rs, 0.0) + rounding()) / (1.0 - m) * (1.0 + 8.0 * u);
  }

  // r = s / sum(s) on the support; returns false if the budget cannot pay for it.
  bool start(const std::int32_t* nodes, const double* weights, int count) noexcept {
    if (static_cast<std::uint64_t>(count) > budget) return false;
    double total = 0.0;
    for (int i = 0; i < count; ++i) total += weights[i];
    const double inv = 1.0 / total;
    for (int i = 0; i < count; ++i) {
      touch(nodes[i]);
      ws.r_[nodes[i]] += weights[i] * inv;
    }
    out.cert.work = static_cast<std::uint64_t>(count);
    r0_term = 2.0 * gamma(count + 2.0) * M;
    push_term = gamma(g.max_out_degree() + 5.0) * M / (1.0 - alpha);
    return true;
  }

  void push(int v) noexcept {
    const double rv = ws.r_[v];
    ws.r_[v] = 0.0;
    rs -= rv;
    ws.p_[v] += c1 * rv;  // p_v += (1 - alpha) r_v
    ++out.pushes;
    if (inv_w[v] == 0.0) {  // dangling: the walk restarts, m += alpha r_v
      m += alpha * rv;
      out.cert.work += 1;
      return;
    }
    const double share = alpha * rv * inv_w[v];  // r_x += alpha r_v w_vx / W_v
    for (int e = ip[v]; e < ip[v + 1]; ++e) {
      const int x = ix[e];
      const double t = w == nullptr ? share : share * w[e];
      touch(x);
      ws.r_[x] += t;
      rs += t;
      if (!ws.in_queue_[x] && ws.r_[x] >= theta * cost(x)) enqueue(x);
    }
    out.cert.work += 1 + static_cast<std::uint64_t>(ip[v + 1] - ip[v]);
  }

  // Lowers theta (halving it, or to the largest r_v / cost(v) left when no
  // node reaches half) and queues the nodes at or above it. False when
  // nothing is left to push or the budget cannot pay for the scan.
  bool next_round() noexcept {
    for (int pass = 0; pass < 2; ++pass) {
      const std::uint64_t n_s = static_cast<std::uint64_t>(ws.support_);
      if (out.cert.work + n_s > budget) return false;
      out.cert.work += n_s;
      double largest = 0.0;
      const double next = theta * 0.5;
      for (int i = 0; i < ws.support_; ++i) {
        const int v = ws.nodes_[i];
        const double ratio = ws.r_[v] / cost(v);
        largest = std::max(largest, ratio);
        if (pass == 1 ? ratio >= theta : ratio >= next) enqueue(v);
      }
      if (pass == 0) theta = next;
      if (queued > 0) return true;
      if (!(largest > 0.0)) return false;  // every residual is zero
      theta = largest;
    }
    return queued > 0;
  }

  void finish() noexcept {
    const double scale = 1.0 / (1.0 - m);
    ws.scale_ = m == 0.0 ? 1.0 : scale;
    out.dangling_mass = m;
    out.cert.residual_norm = std::max(rs, 0.0);
    const bool sound = rounding() < 0x1p-21;
    out.cert.error_bound = sound ? bound() : std::numeric_limits<double>::infinity();
    out.cert.certified = sound && out.cert.error_bound <= eps;
  }

  void run(const std::int32_t* nodes, const double* weights, int count) noexcept {
    if (!start(nodes, weights, count)) {
      out.cert.error_bound = std::numeric_limits<double>::infinity();
      return;
    }
    // rounds of pushes until the bound meets eps, the budget runs out, or
    // rounding alone keeps the bound above eps
    bool exhausted = false;
    while (!exhausted && !(bound() <= eps) &&
           rounding() * (1.0 + 8.0 * u) / (1.0 - m) <= eps && next_round()) {
      ++out.cert.iterations;
      while (queued > 0) {
        const int v = ws.queue_[head];
        if (out.cert.work + static_cast<std::uint64_t>(cost(v)) > budget) {
          exhausted = true;  // the state stays consistent, the rest unpushed
          break;
        }
        head = (head + 1) % ws.n();
        --queued;
        ws.in_queue_[v] = 0;
        push(v);
        if (rs <= eps * (1.0 - m) && bound() <= eps) break;
      }
    }
    for (int i = 0; i < ws.support_; ++i) ws.in_queue_[ws.nodes_[i]] = 0;
    head = queued = 0;
    finish();
  }
};

PushResult pagerank_push(const PushGraph& g, const std::int32_t* nodes, const double* weights,
                         int count, double alpha, double eps, std::uint64_t budget,
                         PushWorkspace& ws) noexcept {
  PushSolve s{g, ws, alpha, 1.0 - alpha, eps, budget, g.weights(), g.inv_out_weight(),
              g.indptr(), g.indices()};
  if (ws.n() != g.n()) {
    s.out.cert.error_bound = std::numeric_limits<double>::infinity();
    return s.out;
  }
  s.clear();  // the workspace describes this solve only (nothing, if refused)
  bool valid = alpha > 0.0 && alpha < 1.0 && count > 0;
  double total = 0.0;
  for (int i = 0; valid && i < count; ++i) {
    valid = nodes[i] >= 0 && nodes[i] < g.n() && std::isfinite(weights[i]) && weights[i] >= 0.0;
    total += weights[i];
  }
  if (!(valid && total > 0.0 && std::isfinite(total))) {
    s.out.cert.error_bound = std::numeric_limits<double>::infinity();
    return s.out;
  }
  s.run(nodes, weights, count);
  return s.out;
}

}  // namespace tmn::solver
