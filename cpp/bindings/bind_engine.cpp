// bind_engine.cpp — the engine: ModelSpec (plain arrays from tmn.load),
// Prediction (stage 5's answer), TickError and Engine itself.
#include <pybind11/stl.h>

#include <optional>

#include "bindings.hpp"
#include "tmn/clock.hpp"
#include "tmn/engine.hpp"

namespace tmn::bindings {

namespace {

template <class T, class Buf>
py::array_t<T> buffer_to_array(const Buf& b, std::size_t n) {
  py::array_t<T> a(static_cast<py::ssize_t>(n));
  std::memcpy(a.mutable_data(), b.data(), n * sizeof(T));
  return a;
}

// ModelSpec's weight arrays by name: FP32, the per-row scales, and INT8.
using M = ModelSpec;
const std::pair<const char*, std::vector<float> M::*> kFloatArrays[] = {
    {"w_ih", &M::w_ih}, {"w_hh", &M::w_hh}, {"b_ih", &M::b_ih}, {"b_hh", &M::b_hh},
    {"w_out", &M::w_out}, {"b_out", &M::b_out}, {"s_ih", &M::s_ih}, {"s_hh", &M::s_hh},
    {"s_out", &M::s_out}};
const std::pair<const char*, std::vector<std::int8_t> M::*> kInt8Arrays[] = {
    {"q_ih", &M::q_ih}, {"q_hh", &M::q_hh}, {"q_out", &M::q_out}};

py::dict get_tensors(const ModelSpec& s) {
  py::dict d;
  for (const auto& [name, field] : kFloatArrays) d[name] = to_array(s.*field);
  for (const auto& [name, field] : kInt8Arrays) d[name] = to_array(s.*field);
  return d;
}

// Every array of kFloatArrays and kInt8Arrays, by name, and nothing else.
void set_tensors(ModelSpec& s, const py::dict& d) {
  std::size_t found = 0;
  const auto take = [&](const char* name, auto& field) {
    if (!d.contains(name)) return;
    using T = typename std::decay_t<decltype(field)>::value_type;
    field = to_vector(d[name].cast<carray<T>>());
    ++found;
  };
  for (const auto& [name, field] : kFloatArrays) take(name, s.*field);
  for (const auto& [name, field] : kInt8Arrays) take(name, s.*field);
  if (found != d.size() || found != std::size(kFloatArrays) + std::size(kInt8Arrays))
    throw py::value_error("tensors must hold exactly w_ih, w_hh, b_ih, b_hh, w_out, b_out, "
                          "s_ih, s_hh, s_out (float32) and q_ih, q_hh, q_out (int8)");
}

// tmn.TickError (a ValueError with a `status` attribute), created at import.
PyObject* tick_error = nullptr;

[[noreturn]] void raise_tick_error(Status st, const std::string& detail) {
  py::object exc = py::reinterpret_borrow<py::object>(tick_error)(
      py::str(std::string(status_name(st)) + ": " + detail));
  exc.attr("status") = st;
  PyErr_SetObject(tick_error, exc.ptr());
  throw py::error_already_set();
}

py::array_t<double> path_array(py::ssize_t n, int K) {
  return py::array_t<double>({n, static_cast<py::ssize_t>(K), py::ssize_t{2}});
}

py::dict replay(Engine& e, const carray<double>& t, const carray<double>& x,
                const carray<double>& y, const std::optional<carray<double>>& vx,
                const std::optional<carray<double>>& vy, const py::object& stream,
                bool candidates) {
  const py::ssize_t n = t.size();
  if (vx.has_value() != vy.has_value()) throw py::value_error("give both vx and vy, or neither");
  for (const auto* a : {&x, &y})
    if (a->size() != n) throw py::value_error("t, x and y must have the same length");
  if (vx && (vx->size() != n || vy->size() != n))
    throw py::value_error("vx and vy must have t's length");
  ReplayInput in{t.data(), x.data(), y.data(), vx ? vx->data() : nullptr,
                 vy ? vy->data() : nullptr, nullptr, static_cast<std::uint64_t>(n)};
  carray<std::uint64_t> ids;
  if (!stream.is_none()) {
    ids = carray<std::uint64_t>::ensure(stream);
    if (!ids || ids.size() != n) throw py::value_error("stream must have the same length as t");
    in.stream = ids.data();
  }
  const int K = e.horizons();
  py::array_t<double> paths = path_array(n, K);
  py::array_t<std::uint8_t> status(n), verdict(n);
  py::array_t<float> cert(n), d2(n), blend(n);
  py::array_t<double> t_grid(n);
  py::array_t<std::uint32_t> work(n), total(n);
  py::array_t<std::uint32_t> stages({n, static_cast<py::ssize_t>(kStages)});
  py::array_t<float> radius({n, static_cast<py::ssize_t>(K)});
  ReplayOutput out{paths.mutable_data(), status.mutable_data(), verdict.mutable_data(),
                   cert.mutable_data(),  d2.mutable_data(),     blend.mutable_data(),
                   t_grid.mutable_data(), work.mutable_data(),  stages.mutable_data(),
                   total.mutable_data()};
  out.radius = radius.mutable_data();
  py::object prior = py::none(), proposal = py::none();
  if (candidates) {
    py::array_t<double> a = path_array(n, K), b = path_array(n, K);
    out.prior = a.mutable_data();
    out.proposal = b.mutable_data();
    prior = a;
    proposal = b;
  }
  std::uint64_t good = 0;
  {
    py::gil_scoped_release release;
    good = e.replay(in, out);
  }
  py::dict d;
  d["paths"] = paths;
  d["status"] = status;
  d["verdict"] = verdict;
  d["cert"] = cert;
  d["d2"] = d2;
  d["blend"] = blend;
  d["t_grid"] = t_grid;
  d["work"] = work;
  d["stage_ns"] = stages;
  d["total_ns"] = total;
  d["radius"] = radius;
  d["ok"] = good;
  d["prior"] = prior;
  d["proposal"] = proposal;
  return d;
}

py::dict int8_scratch(const Engine& e) {
  const GruScratch& s = e.scratch();
  const std::size_t H = e.hidden(), G = 3 * H, O = 2 * e.horizons();
  py::dict d;
  d["xq"] = buffer_to_array<std::int8_t>(s.xq, static_cast<std::size_t>(e.features()));
  d["hq_out"] = buffer_to_array<std::int8_t>(s.hq, H);
  d["acc_ih"] = buffer_to_array<std::int32_t>(s.acc_ih, G);
  d["acc_hh"] = buffer_to_array<std::int32_t>(s.acc_hh, G);
  d["acc_out"] = buffer_to_array<std::int32_t>(s.acc_out, O);
  d["x_scale"] = s.x_scale;
  return d;
}

// The bare network step, timed like a tick stage, for the benchmark's
// "physical limit". The checksum consumes y.
py::tuple time_network_steps(Engine& e, std::uint64_t n) {
  const int H = e.hidden();
  std::vector<float> z(static_cast<std::size_t>(e.features())), h(H, 0.0f), y(2 * e.horizons());
  for (std::size_t j = 0; j < z.size(); ++j) z[j] = (j & 1 ? -0.1f : 0.1f) * (1 + j);
  py::array_t<std::uint32_t> ns(static_cast<py::ssize_t>(n));
  double checksum = 0.0;
  {
    py::gil_scoped_release release;
    std::uint32_t* out = ns.mutable_data();
    for (std::uint64_t i = 0; i < n; ++i) {
      z[0] = static_cast<float>(i & 63) * 0.01f;
      const std::uint64_t c0 = clock::now();
      e.network_step(z.data(), h.data(), y.data());
      out[i] = clock::to_ns(clock::now() - c0);
      checksum += y[0];
    }
  }
  return py::make_tuple(ns, checksum);
}

void bind_model_spec(py::module_& m) {
  py::class_<M>(m, "ModelSpec", "Plain arrays for Engine; built by tmn.load().")
      .def(py::init<>())
      .def_readwrite("system", &M::system).def_readwrite("hidden", &M::hidden)
      .def_readwrite("horizons_s", &M::horizons_s).def_readwrite("ingest", &M::ingest)
      .def_readwrite("feature_mean", &M::feature_mean).def_readwrite("feature_std", &M::feature_std)
      .def_readwrite("gate_variance", &M::gate_variance)
      .def_readwrite("radius_c0", &M::radius_c0).def_readwrite("radius_c1", &M::radius_c1)
      .def_readwrite("output_scale", &M::output_scale)
      .def_readwrite("window_s", &M::window_s).def_readwrite("max_gap_s", &M::max_gap_s)
      .def_readwrite("kalman", &M::kalman).def_readwrite("gate", &M::gate)
      .def_property("tensors", &get_tensors, &set_tensors,
                    "The weight arrays by name (w_*, b_*, s_* float32; q_* int8), flat.");
}

void bind_prediction(py::module_& m) {
  using P = Prediction;
  py::class_<P>(m, "Prediction", "One tick's answer (stage 5, actuation).")
      .def_readonly("stream", &P::stream).def_readonly("t", &P::t)
      .def_readonly("t_grid", &P::t_grid).def_readonly("blend", &P::blend)
      .def_readonly("h0", &P::h0).def_readonly("dt", &P::dt)
      .def_readonly("status", &P::status).def_readonly("verdict", &P::verdict)
      .def_readonly("restarted", &P::restarted).def_readonly("d2", &P::d2)
      .def_readonly("cert_error", &P::cert_error).def_readonly("work", &P::work)
      .def_readonly("total_ns", &P::total_ns)
      .def_readonly("stages_timed", &P::stages_timed,
                    "stage_ns were measured on this tick (the engine's timing: always with "
                    "'all', one tick in TIMING_SAMPLE_PERIOD with 'sampled', never with 'off')")
      .def_property_readonly("stage_ns",
                             [](const Prediction& p) {
                               py::dict d;
                               for (int i = 0; i < kStages; ++i) d[kStageNames[i]] = p.stage_ns[i];
                               return d;
                             })
      .def_property_readonly("origin",
                             [](const Prediction& p) { return py::make_tuple(p.origin[0], p.origin[1]); })
      .def(
          "at",
          [](const Prediction& p, double dt) {
            const std::array<double, 2> q = p.at(dt);
            return py::make_tuple(q[0], q[1]);
          },
          py::arg("dt"),
          "(x, y) predicted dt seconds after the tick, between the horizons (cubic "
          "Hermite, Catmull-Rom slopes); NaN outside (0, t_grid + h_K - t].")
      .def("radius_at", &P::radius_at, py::arg("dt"),
           "The error radius of at(dt): linear in time between the horizons' radii, from 0 "
           "at the path's origin; NaN where at(dt) is NaN or there is no radius.")
      .def_property_readonly("path", [](const Prediction& p) {
        py::array_t<double> a({static_cast<py::ssize_t>(p.horizons), py::ssize_t{2}});
        std::memcpy(a.mutable_data(), p.path.data(), 2 * p.horizons * sizeof(double));
        return a;
      })
      .def_property_readonly(
          "radius",
          [](const Prediction& p) {
            return buffer_to_array<float>(p.radius, static_cast<std::size_t>(p.horizons));
          },
          "The 90 % error radius of each path point, data units (NaN while warming or "
          "for a model without an uncertainty calibration).");
}

}  // namespace

void bind_engine(py::module_& m) {
  tick_error = PyErr_NewExceptionWithDoc(
      "tmn._core.TickError",
      "A tick (or reset) was refused; `status` is the tmn.Status code. The stream's "
      "state is untouched.",
      PyExc_ValueError, nullptr);
  m.attr("TickError") = py::handle(tick_error);
  bind_model_spec(m);
  bind_prediction(m);
  py::class_<Engine>(m, "Engine", "The five-stage tick engine (one thread at a time).")
      .def(py::init<const ModelSpec&, Precision, std::uint32_t, Isa, Timing>(), py::arg("spec"),
           py::arg("precision"), py::arg("max_streams"), py::arg("isa"),
           py::arg("timing") = Timing::all)
      .def(
          "tick",
          [](Engine& e, double t, double x, double y, const std::optional<double>& vx,
             const std::optional<double>& vy, std::uint64_t stream) {
            if (vx.has_value() != vy.has_value())
              throw py::value_error("give both vx and vy, or neither");
            Prediction p;
            const Status st =
                e.tick(stream, Tick{t, x, y, vx.value_or(0.0), vy.value_or(0.0), vx.has_value()}, p);
            if (st != Status::ok)
              raise_tick_error(st, "tick t=" + py::repr(py::float_(t)).cast<std::string>() +
                                       " on stream " + std::to_string(stream) + " refused");
            return p;
          },
          py::arg("t"), py::arg("x"), py::arg("y"), py::arg("vx") = py::none(),
          py::arg("vy") = py::none(), py::arg("stream") = 0,
          "Run one tick through all five stages (without vx, vy the engine differentiates "
          "the positions); raises TickError on bad input.")
      .def(
          "reset",
          [](Engine& e, std::uint64_t stream) {
            const Status st = e.reset(stream);
            if (st != Status::ok)
              raise_tick_error(st, "stream " + std::to_string(stream) + " is not held");
          },
          py::arg("stream"), "Forget a stream; raises TickError (unknown_stream).")
      .def("evict_idle", &Engine::evict_idle, py::arg("idle_s"))
      .def("replay", &replay, py::arg("t"), py::arg("x"), py::arg("y"),
           py::arg("vx") = py::none(), py::arg("vy") = py::none(),
           py::arg("stream") = py::none(), py::arg("candidates") = false)
      .def(
          "network_step",
          [](Engine& e, const carray<float>& z, const carray<float>& h) {
            check_length(z, e.features(), "z");
            check_length(h, e.hidden(), "h");
            std::vector<float> hv = to_vector(h), y(2 * e.horizons());
            e.network_step(z.data(), hv.data(), y.data());
            return py::make_tuple(to_array(hv), to_array(y));
          },
          py::arg("z"), py::arg("h"), "One GRU step + head outside any stream: (h', y).")
      .def("int8_scratch", &int8_scratch,
           "Quantised inputs and int32 accumulators left by the last INT8 step.")
      .def("time_network_steps", &time_network_steps, py::arg("n"))
      .def_property_readonly("horizons", &Engine::horizons)
      .def_property_readonly("hidden", &Engine::hidden)
      .def_property_readonly("features", &Engine::features)
      .def_property_readonly("system", &Engine::system)
      .def_property_readonly("precision", &Engine::precision)
      .def_property_readonly("isa", &Engine::isa)
      .def_property_readonly("restarts", &Engine::restarts)
      .def_property("timing", &Engine::timing, &Engine::set_timing,
                    "What a tick times (engine.hpp): all, sampled or off; settable between ticks.")
      .def_property_readonly("stream_count", [](const Engine& e) { return e.streams().size(); })
      .def_property_readonly("max_streams",
                             [](const Engine& e) { return e.streams().capacity(); });
  m.def(
      "input_ranges",
      [](const ModelSpec& spec) {
        const InputRanges r = input_ranges(spec);
        py::dict d;
        d["t"] = py::make_tuple(-r.t_max, r.t_max);
        d["x"] = py::make_tuple(-r.pos_max[0], r.pos_max[0]);
        d["y"] = py::make_tuple(-r.pos_max[1], r.pos_max[1]);
        d["vx"] = py::make_tuple(-r.vel_max[0], r.vel_max[0]);
        d["vy"] = py::make_tuple(-r.vel_max[1], r.vel_max[1]);
        return d;
      },
      py::arg("spec"),
      "{field: (lo, hi)}: the valid range of every tick field for a model; a "
      "displacement from the previous tick may imply at most the velocity range.");
  m.def("bound_as_float", &bound_as_float, py::arg("bound"),
        "A double bound as float32, rounded upward (how certificates are stored).");
}

}  // namespace tmn::bindings
