// bind_kalman.cpp — stage 2, the Kalman prior, on its own (tests and training:
// training filters whole recordings for System B's targets).
#include <pybind11/stl.h>

#include "bindings.hpp"
#include "tmn/kalman.hpp"
#include "tmn/tick.hpp"

namespace tmn::bindings {

namespace {

// Filter a whole recording: (state[N,4] = px,py,vx,vy; cov[N,3] = p_pp,p_pv,p_vv).
py::tuple filter_recording(const KalmanPrior& k, const carray<double>& t,
                           const carray<double>& x, const carray<double>& y,
                           const carray<double>& vx, const carray<double>& vy) {
  const py::ssize_t n = t.size();
  for (const auto* a : {&x, &y, &vx, &vy})
    if (a->size() != n) throw py::value_error("t, x, y, vx and vy must have the same length");
  for (py::ssize_t i = 1; i < n; ++i)
    if (!(t.data()[i] > t.data()[i - 1]))
      throw py::value_error("t must be strictly increasing (index " + std::to_string(i) + ")");
  py::array_t<double> state({n, py::ssize_t{4}}), cov({n, py::ssize_t{3}});
  double* st = state.mutable_data();
  double* cv = cov.mutable_data();
  {
    py::gil_scoped_release release;
    KalmanState s;
    for (py::ssize_t i = 0; i < n; ++i) {
      const Tick z{t.data()[i], x.data()[i], y.data()[i], vx.data()[i], vy.data()[i]};
      if (i == 0) k.init(s, z);
      else k.step(s, z, z.t - t.data()[i - 1]);
      st[4 * i] = s.px; st[4 * i + 1] = s.py; st[4 * i + 2] = s.vx; st[4 * i + 3] = s.vy;
      cv[3 * i] = s.p_pp; cv[3 * i + 1] = s.p_pv; cv[3 * i + 2] = s.p_vv;
    }
  }
  return py::make_tuple(state, cov);
}

}  // namespace

void bind_kalman(py::module_& m) {
  py::class_<KalmanParams>(m, "KalmanParams")
      .def(py::init<double, double, double>(), py::arg("q"), py::arg("r_pos"), py::arg("r_vel"))
      .def_readwrite("q", &KalmanParams::q)
      .def_readwrite("r_pos", &KalmanParams::r_pos)
      .def_readwrite("r_vel", &KalmanParams::r_vel);
  using S = KalmanState;
  py::class_<S>(m, "KalmanState", "Posterior mean and the per-axis covariance block.")
      .def(py::init<>())
      .def_readwrite("px", &S::px).def_readwrite("py", &S::py)
      .def_readwrite("vx", &S::vx).def_readwrite("vy", &S::vy)
      .def_readwrite("p_pp", &S::p_pp).def_readwrite("p_pv", &S::p_pv)
      .def_readwrite("p_vv", &S::p_vv);
  py::class_<KalmanPrior>(m, "KalmanPrior", "Stage 2 on its own, for tests and training.")
      .def(py::init<const KalmanParams&>(), py::arg("params"))
      .def(
          "init",
          [](const KalmanPrior& k, double t, double x, double y, double vx, double vy) {
            KalmanState s;
            k.init(s, Tick{t, x, y, vx, vy});
            return s;
          },
          py::arg("t"), py::arg("x"), py::arg("y"), py::arg("vx"), py::arg("vy"))
      .def(
          "step",
          [](const KalmanPrior& k, KalmanState& s, double t, double x, double y, double vx,
             double vy, double dt) {
            if (!(dt > 0.0)) throw py::value_error("dt must be positive");
            k.step(s, Tick{t, x, y, vx, vy}, dt);
          },
          py::arg("state"), py::arg("t"), py::arg("x"), py::arg("y"), py::arg("vx"),
          py::arg("vy"), py::arg("dt"), "Predict over dt, then update; modifies state in place.")
      .def(
          "extrapolate",
          [](const KalmanPrior& k, const KalmanState& s, const carray<double>& h) {
            const int K = static_cast<int>(h.size());
            std::vector<double> rel(2 * K), var(K);
            k.extrapolate(s, h.data(), K, rel.data(), var.data());
            return py::make_tuple(to_array(rel), to_array(var));
          },
          py::arg("state"), py::arg("horizons_s"),
          "(rel[2K], var[K]): prior path relative to the position, per-axis variance.")
      .def("filter", &filter_recording, py::arg("t"), py::arg("x"), py::arg("y"), py::arg("vx"),
           py::arg("vy"),
           "Filter a whole recording: (state[N,4] = px,py,vx,vy; cov[N,3] = p_pp,p_pv,p_vv).");
}

}  // namespace tmn::bindings
