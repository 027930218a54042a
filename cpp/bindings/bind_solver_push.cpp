// bind_solver_push.cpp — forward-push personalised PageRank (solver_push.hpp):
// a PushGraph holds the validated graph and a workspace reused by every solve,
// so a local solve on a large graph costs no O(n) allocation or reset.
#include <cmath>

#include "bindings.hpp"
#include "tmn/solver_push.hpp"

namespace tmn::bindings {

namespace {

struct PyPushGraph {
  solver::PushGraph graph;
  solver::PushWorkspace ws;

  PyPushGraph(const carray<std::int64_t>& indptr, const carray<std::int64_t>& indices,
              const py::object& weights)
      : graph(static_cast<int>(indptr.size()) - 1, narrow_indices(indptr, "indptr"),
              narrow_indices(indices, "indices"),
              weights.is_none() ? std::vector<double>{}
                                : to_vector(weights.cast<carray<double>>())),
        ws(graph.n()) {}

  py::dict pagerank(const carray<std::int64_t>& nodes, const carray<double>& weights,
                    double alpha, double eps, std::uint64_t budget) {
    if (!(alpha > 0.0 && alpha < 1.0)) throw py::value_error("alpha must be in (0, 1)");
    if (!(eps > 0.0)) throw py::value_error("eps must be > 0");
    check_length(weights, nodes.size(), "restart_weights");
    const std::vector<std::int32_t> s = narrow_indices(nodes, "restart_nodes");
    if (s.size() > static_cast<std::size_t>(std::numeric_limits<int>::max()))
      throw py::value_error("restart_nodes: too many entries");
    graph.check_restart(s.data(), weights.data(), static_cast<int>(s.size()));
    const solver::PushResult r = solver::pagerank_push(
        graph, s.data(), weights.data(), static_cast<int>(s.size()), alpha, eps, budget, ws);
    const py::ssize_t k = ws.support();
    py::array_t<std::int64_t> at(k);
    py::array_t<double> est(k), res(k);
    for (py::ssize_t i = 0; i < k; ++i) {
      const int v = ws.nodes()[i];
      at.mutable_data()[i] = v;
      est.mutable_data()[i] = ws.estimate(v);
      res.mutable_data()[i] = ws.residual(v);
    }
    py::dict out = certificate_dict(r.cert);
    out["nodes"] = at;
    out["estimate"] = est;
    out["residual"] = res;
    out["dangling_mass"] = r.dangling_mass;
    out["pushes"] = r.pushes;
    return out;
  }
};

}  // namespace

void bind_solver_push(py::module_& m) {
  py::class_<PyPushGraph>(
      m, "PushGraph",
      "A weighted directed graph in CSR (row u: u's out-edges; weights None means 1) for "
      "forward-push personalised PageRank. The walk is out-weight normalised; a row of zero "
      "weight is dangling and restarts.")
      .def(py::init<const carray<std::int64_t>&, const carray<std::int64_t>&,
                    const py::object&>(),
           py::arg("indptr"), py::arg("indices"), py::arg("weights") = py::none())
      .def_property_readonly("n", [](const PyPushGraph& g) { return g.graph.n(); })
      .def_property_readonly("nnz", [](const PyPushGraph& g) { return g.graph.nnz(); })
      .def_property_readonly("dangling", [](const PyPushGraph& g) { return g.graph.dangling(); })
      .def("pagerank", &PyPushGraph::pagerank, py::arg("restart_nodes"),
           py::arg("restart_weights"), py::arg("alpha"), py::arg("eps"), py::arg("budget"),
           "Personalised PageRank by forward push: a dict with nodes (the touched ones), "
           "estimate and residual there, error_bound >= ||estimate - pi||_1, residual_norm "
           "(||r||_1), work, iterations (threshold rounds), pushes, dangling_mass, certified.");
}

}  // namespace tmn::bindings
