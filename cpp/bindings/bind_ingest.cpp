// bind_ingest.cpp — stage 1, ingest, on whole recordings: training resamples
// and builds the network's features with exactly the engine's code.
#include <pybind11/stl.h>

#include <optional>

#include "bindings.hpp"
#include "tmn/engine.hpp"
#include "tmn/ingest.hpp"
#include "tmn/kalman.hpp"

namespace tmn::bindings {

namespace {

void check_recording(const carray<double>& t, std::initializer_list<const carray<double>*> cols) {
  for (const auto* a : cols)
    if (a->size() != t.size()) throw py::value_error("every column must have t's length");
  if (t.size() == 0) throw py::value_error("a recording needs at least one sample");
  for (py::ssize_t i = 0; i < t.size(); ++i)
    if (!std::isfinite(t.data()[i]) || (i > 0 && !(t.data()[i] > t.data()[i - 1])))
      throw py::value_error("t must be finite and strictly increasing (index " +
                            std::to_string(i) + ")");
}

// One uninterrupted recording onto the model grid: (t, x, y, vx, vy) columns.
py::tuple resample(const IngestParams& p, const carray<double>& t, const carray<double>& x,
                   const carray<double>& y, const std::optional<carray<double>>& vx,
                   const std::optional<carray<double>>& vy) {
  if (vx.has_value() != vy.has_value()) throw py::value_error("give both vx and vy, or neither");
  const bool has_v = vx.has_value();
  check_recording(t, {&x, &y});
  if (has_v) check_recording(t, {&*vx, &*vy});
  const Ingest ingest(p);
  auto tick = [&](py::ssize_t i) {
    return Tick{t.data()[i], x.data()[i], y.data()[i], has_v ? vx->data()[i] : 0.0,
                has_v ? vy->data()[i] : 0.0};
  };
  GridState s;
  std::vector<GridSample> grid{ingest.start(s, tick(0), has_v)};
  {
    py::gil_scoped_release release;
    for (py::ssize_t i = 1; i < t.size(); ++i)
      ingest.advance(s, tick(i), has_v, [&](const GridSample& g) { grid.push_back(g); });
  }
  const auto n = static_cast<py::ssize_t>(grid.size());
  std::array<py::array_t<double>, 5> cols;
  for (auto& c : cols) c = py::array_t<double>(n);
  for (py::ssize_t i = 0; i < n; ++i) {
    const GridSample& g = grid[static_cast<std::size_t>(i)];
    const double v[5] = {g.t, g.x, g.y, g.vx, g.vy};
    for (int c = 0; c < 5; ++c) cols[c].mutable_data()[i] = v[c];
  }
  return py::make_tuple(cols[0], cols[1], cols[2], cols[3], cols[4]);
}

// Features of one stream already on the grid, with the prior the engine runs
// on it: (features[N, F] unnormalised, posterior[N, 4], covariance[N, 3]).
py::tuple grid_features(const IngestParams& p, System system, const KalmanParams& kp,
                        const carray<double>& t, const carray<double>& x,
                        const carray<double>& y, const carray<double>& vx,
                        const carray<double>& vy) {
  check_recording(t, {&x, &y, &vx, &vy});
  const Ingest ingest(p);
  const KalmanPrior prior(kp);
  const py::ssize_t n = t.size(), F = system == System::A ? kFeaturesA : kFeaturesB;
  py::array_t<double> feat({n, F}), state({n, py::ssize_t{4}}), cov({n, py::ssize_t{3}});
  double* f = feat.mutable_data();
  double* st = state.mutable_data();
  double* cv = cov.mutable_data();
  {
    py::gil_scoped_release release;
    GridState gs;
    KalmanState ks;
    for (py::ssize_t i = 0; i < n; ++i) {
      const GridSample g{t.data()[i], x.data()[i], y.data()[i], vx.data()[i], vy.data()[i]};
      const Tick z{g.t, g.x, g.y, g.vx, g.vy};
      double pred_x = g.x, pred_y = g.y;
      if (i == 0) {
        ingest.start(gs, z, true);
        prior.init(ks, z);
      } else {
        const double dt = g.t - t.data()[i - 1];
        pred_x = ks.px + ks.vx * dt;
        pred_y = ks.py + ks.vy * dt;
        prior.step(ks, z, dt);
      }
      if (system == System::A) ingest.features_a(gs, g, f + i * F);
      else ingest.features_b(gs, g, ks, pred_x, pred_y, f + i * F);
      st[4 * i] = ks.px; st[4 * i + 1] = ks.py; st[4 * i + 2] = ks.vx; st[4 * i + 3] = ks.vy;
      cv[3 * i] = ks.p_pp; cv[3 * i + 1] = ks.p_pv; cv[3 * i + 2] = ks.p_vv;
    }
  }
  return py::make_tuple(feat, state, cov);
}

}  // namespace

void bind_ingest(py::module_& m) {
  py::class_<IngestParams>(m, "IngestParams")
      .def(py::init([](double rate_hz, int velocity_window, double highpass_s) {
             IngestParams p{rate_hz, velocity_window, highpass_s};
             Ingest check(p);  // refuse what the engine would refuse
             return p;
           }),
           py::arg("rate_hz"), py::arg("velocity_window"), py::arg("highpass_s"))
      .def_readonly("rate_hz", &IngestParams::rate_hz)
      .def_readonly("velocity_window", &IngestParams::velocity_window)
      .def_readonly("highpass_s", &IngestParams::highpass_s);
  m.def("resample", &resample, py::arg("params"), py::arg("t"), py::arg("x"), py::arg("y"),
        py::arg("vx") = py::none(), py::arg("vy") = py::none(),
        "One uninterrupted recording onto the model grid exactly as the engine's ingest "
        "does it: (t, x, y, vx, vy); without vx, vy the causal differentiator's velocity.");
  m.def("grid_features", &grid_features, py::arg("params"), py::arg("system"),
        py::arg("kalman"), py::arg("t"), py::arg("x"), py::arg("y"), py::arg("vx"),
        py::arg("vy"),
        "Features of one stream on the grid, with the engine's prior run over it: "
        "(features[N, F] unnormalised, posterior[N, 4], covariance[N, 3]).");
}

}  // namespace tmn::bindings
