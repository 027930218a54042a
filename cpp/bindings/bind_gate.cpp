// bind_gate.cpp — stage 4, the gate, on its own, and the certified Jacobi
// solver (tests check both against dense solves; training calibrates with them).
#include <pybind11/stl.h>

#include <algorithm>
#include <limits>
#include <optional>
#include <string>

#include "bindings.hpp"
#include "tmn/gate.hpp"
#include "tmn/solver.hpp"

namespace tmn::bindings {

namespace {

// The gate's matrix A (x) I_2 as a dense array.
py::array_t<double> dense_matrix(const SolverGate& g) {
  const solver::CsrMatrix& a = g.matrix();
  const py::ssize_t n = a.n();
  py::array_t<double> d({n, n});
  std::fill_n(d.mutable_data(), n * n, 0.0);
  for (int i = 0; i < a.n(); ++i)
    for (int p = a.indptr()[i]; p < a.indptr()[i + 1]; ++p)
      d.mutable_data()[i * n + a.indices()[p]] = a.data()[p];
  return d;
}

py::dict run_gate(SolverGate& g, const carray<float>& delta, const carray<double>& prior,
                  const carray<double>& inv_var, const carray<double>& v) {
  const py::ssize_t P = 2 * static_cast<py::ssize_t>(g.horizons());
  check_length(delta, P, "delta");
  check_length(prior, P, "prior");
  check_length(inv_var, P, "inv_var");
  check_length(v, 2, "v");
  std::vector<double> path(P, 0.0);
  const GateResult r = g.run(delta.data(), prior.data(), inv_var.data(), v.data(), path.data());
  py::dict out = certificate_dict(r.cert);
  out["cert_error"] = bound_as_float(r.cert.error_bound);  // as a Prediction stores it
  out["verdict"] = r.verdict;
  out["d2"] = r.d2;
  out["path"] = r.verdict == Verdict::pass ? py::object(to_array(path)) : py::none();
  return out;
}

py::tuple jacobi_solve(const carray<std::int64_t>& indptr, const carray<std::int64_t>& indices,
                       const carray<double>& data, const carray<double>& b,
                       const carray<double>& x0, double eps, std::uint64_t budget,
                       const py::object& lambda_lb, double omega) {
  const int n = static_cast<int>(b.size());
  check_length(x0, n, "x0");
  solver::CsrMatrix a(n, narrow_indices(indptr, "indptr"), narrow_indices(indices, "indices"),
                      to_vector(data));
  const double lb = lambda_lb.is_none() ? a.gershgorin_lower_bound() : lambda_lb.cast<double>();
  std::vector<double> x = to_vector(x0), r(n);
  if (!(omega > 0.0 && omega < 2.0)) throw py::value_error("omega must be in (0, 2)");
  const solver::Certificate c =
      solver::jacobi_solve(a, b.data(), x.data(), r.data(), eps, budget, lb, omega);
  return py::make_tuple(to_array(x), certificate_dict(c));
}

}  // namespace

void bind_gate(py::module_& m) {
  py::class_<GateParams>(m, "GateParams")
      .def(py::init([](double eps, std::uint64_t budget, double lam, double threshold,
                       double blend_s) {
             return GateParams{eps, budget, lam, threshold, blend_s};
           }),
           py::arg("eps"), py::arg("budget"), py::arg("lam"), py::arg("threshold"),
           py::arg("blend_s") = 0.0)
      .def_readwrite("eps", &GateParams::eps)
      .def_readwrite("budget", &GateParams::budget)
      .def_readwrite("lam", &GateParams::lambda)
      .def_readwrite("threshold", &GateParams::threshold)
      .def_readwrite("blend_s", &GateParams::blend_s);
  py::class_<SolverGate>(m, "SolverGate", "Stage 4 on its own, for tests and training.")
      .def(py::init([](const GateParams& p, int K, double dh, bool guarded,
                       const std::optional<Isa>& isa) {
             const Isa chosen = isa.value_or(best_isa());
             if (!isa_available(chosen))
               throw py::value_error(std::string("isa '") + isa_name(chosen) +
                                     "' is not available in this build on this CPU");
             return new SolverGate(p, K, dh, guarded, chosen);
           }),
           py::arg("params"), py::arg("horizons"), py::arg("dh"), py::arg("guarded") = false,
           py::arg("isa") = py::none(),
           "guarded: the engine's wall-clock guard (off here by default, so that tests of "
           "the maths never depend on the scheduler); isa: the solve's kernel (default: "
           "the best this CPU has)")
      .def_property_readonly("isa", &SolverGate::isa)
      .def_property_readonly("fixed_size", &SolverGate::fixed_size,
                             "The solve runs in a fixed-size kernel (2K <= 32), else the "
                             "generic jacobi_solve.")
      .def("matrix", &dense_matrix)
      .def("run", &run_gate, py::arg("delta"), py::arg("prior"), py::arg("inv_var"),
           py::arg("v"));
  m.def("jacobi_solve", &jacobi_solve, py::arg("indptr"), py::arg("indices"), py::arg("data"),
        py::arg("b"), py::arg("x0"), py::arg("eps"), py::arg("budget"),
        py::arg("lambda_lb") = py::none(), py::arg("omega") = 1.0,
        "Certified (damped) Jacobi solve of A x = b (A in CSR). lambda_lb defaults to "
        "Gershgorin's bound; omega = 1 is plain Jacobi.");
}

}  // namespace tmn::bindings
