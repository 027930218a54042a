// bind_engine.cpp — the engine: ModelSpec (plain arrays from tmn.load),
// Prediction (stage 5's answer), TickError and Engine itself.
#include <pybind11/stl.h>

#include <cstddef>
#include <limits>
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

// Sets TickError as the current Python exception (for the raw C-API tick).
void set_tick_error(Status st, const std::string& detail) {
  py::object exc = py::reinterpret_borrow<py::object>(tick_error)(
      py::str(std::string(status_name(st)) + ": " + detail));
  exc.attr("status") = st;
  PyErr_SetObject(tick_error, exc.ptr());
}

[[noreturn]] void raise_tick_error(Status st, const std::string& detail) {
  set_tick_error(st, detail);
  throw py::error_already_set();
}

// -- Engine.tick: one tick from Python (bind_prediction.cpp says why raw) ------

// Engine.tick(t, x, y, vx=None, vy=None, stream=0) as a vectorcall method.
PyObject* engine_tick(PyObject* self, PyObject* const* args, Py_ssize_t nargs,
                      PyObject* kwnames) noexcept {
  constexpr int kArgs = 6;
  static const char* const names[kArgs] = {"t", "x", "y", "vx", "vy", "stream"};
  PyObject* a[kArgs] = {};
  if (nargs > kArgs) {
    PyErr_Format(PyExc_TypeError, "tick() takes at most %d arguments (%zd given)", kArgs, nargs);
    return nullptr;
  }
  for (Py_ssize_t i = 0; i < nargs; ++i) a[i] = args[i];
  const Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
  for (Py_ssize_t j = 0; j < nkw; ++j) {
    PyObject* key = PyTuple_GET_ITEM(kwnames, j);
    int i = 0;
    while (i < kArgs && PyUnicode_CompareWithASCIIString(key, names[i]) != 0) ++i;
    if (i == kArgs) {
      PyErr_Format(PyExc_TypeError, "tick() got an unexpected keyword argument '%U'", key);
      return nullptr;
    }
    if (a[i] != nullptr) {
      PyErr_Format(PyExc_TypeError, "tick() got multiple values for argument '%s'", names[i]);
      return nullptr;
    }
    a[i] = args[nargs + j];
  }
  double v[5] = {0.0, 0.0, 0.0, 0.0, 0.0};
  for (int i = 0; i < 5; ++i) {
    if (a[i] == nullptr || a[i] == Py_None) {
      if (i < 3) {
        PyErr_Format(PyExc_TypeError, "tick() missing required argument '%s'", names[i]);
        return nullptr;
      }
      continue;
    }
    v[i] = PyFloat_AsDouble(a[i]);
    if (v[i] == -1.0 && PyErr_Occurred()) return nullptr;
  }
  const bool has_vx = a[3] != nullptr && a[3] != Py_None;
  const bool has_vy = a[4] != nullptr && a[4] != Py_None;
  if (has_vx != has_vy) {
    PyErr_SetString(PyExc_ValueError, "give both vx and vy, or neither");
    return nullptr;
  }
  std::uint64_t stream = 0;
  if (a[5] != nullptr) {
    PyObject* index = PyNumber_Index(a[5]);
    if (index == nullptr) return nullptr;
    stream = PyLong_AsUnsignedLongLong(index);
    Py_DECREF(index);
    if (stream == static_cast<std::uint64_t>(-1) && PyErr_Occurred()) {
      PyErr_SetString(PyExc_TypeError, "stream must be an integer in [0, 2^64)");
      return nullptr;
    }
  }
  // The method descriptor has checked that self is an Engine instance, so its
  // C++ object is read from pybind11's instance record directly (no lookup).
  auto* e = static_cast<Engine*>(
      reinterpret_cast<py::detail::instance*>(self)->get_value_and_holder().value_ptr());
  if (e == nullptr) {
    PyErr_SetString(PyExc_TypeError, "tick() needs a constructed tmn._core.Engine");
    return nullptr;
  }
  Prediction p;
  const Status st = e->tick(stream, Tick{v[0], v[1], v[2], v[3], v[4], has_vx}, p);
  if (st != Status::ok) {
    try {
      set_tick_error(st, "tick t=" + py::repr(py::float_(v[0])).cast<std::string>() +
                             " on stream " + std::to_string(stream) + " refused");
    } catch (py::error_already_set& err) {
      err.restore();
    }
    return nullptr;
  }
  return new_prediction(p);
}

PyMethodDef engine_tick_def = {
    "tick", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(engine_tick)),
    METH_FASTCALL | METH_KEYWORDS,
    "tick(t, x, y, vx=None, vy=None, stream=0) -> Prediction: run one tick through all five "
    "stages (without vx, vy the engine differentiates the positions); raises TickError on bad "
    "input, leaving the stream's state untouched."};

// -- Engine.tick_many: a frame's ticks of several streams at once -------------

// One row of tick_many's structured array, then path f8[K][2] and radius
// f4[K] (batch_dtype builds the numpy dtype from these offsets).
struct BatchHead {
  std::uint64_t stream;
  double t, t_grid, dt;
  double origin[2];
  float d2, cert_error, blend;
  std::uint32_t work, total_ns;
  std::uint32_t stage_ns[kStages];
  std::uint8_t status, verdict, restarted, stages_timed;
  std::uint8_t reserved[4];
};
static_assert(sizeof(BatchHead) % 8 == 0, "the path that follows is 8-byte aligned");

std::size_t batch_row_bytes(int K) {
  return (sizeof(BatchHead) + 20 * static_cast<std::size_t>(K) + 7) / 8 * 8;
}

py::dtype make_batch_dtype(int K) {
  py::list names, formats, offsets;
  const auto field = [&](const char* name, py::object format, std::size_t offset) {
    names.append(name);
    formats.append(std::move(format));
    offsets.append(offset);
  };
  const auto sub = [](const char* base, py::tuple shape) { return py::make_tuple(base, shape); };
  using H = BatchHead;
  field("stream", py::str("<u8"), offsetof(H, stream));
  field("t", py::str("<f8"), offsetof(H, t));
  field("t_grid", py::str("<f8"), offsetof(H, t_grid));
  field("dt", py::str("<f8"), offsetof(H, dt));
  field("origin", sub("<f8", py::make_tuple(2)), offsetof(H, origin));
  field("d2", py::str("<f4"), offsetof(H, d2));
  field("cert_error", py::str("<f4"), offsetof(H, cert_error));
  field("blend", py::str("<f4"), offsetof(H, blend));
  field("work", py::str("<u4"), offsetof(H, work));
  field("total_ns", py::str("<u4"), offsetof(H, total_ns));
  field("stage_ns", sub("<u4", py::make_tuple(kStages)), offsetof(H, stage_ns));
  field("status", py::str("u1"), offsetof(H, status));
  field("verdict", py::str("u1"), offsetof(H, verdict));
  field("restarted", py::str("?"), offsetof(H, restarted));
  field("stages_timed", py::str("?"), offsetof(H, stages_timed));
  field("path", sub("<f8", py::make_tuple(K, 2)), sizeof(H));
  field("radius", sub("<f4", py::make_tuple(K)), sizeof(H) + 16 * static_cast<std::size_t>(K));
  py::dict d;
  d["names"] = names;
  d["formats"] = formats;
  d["offsets"] = offsets;
  d["itemsize"] = batch_row_bytes(K);
  return py::dtype::from_args(d);
}

// One dtype per K, made once: building a dtype from its fields costs
// microseconds, more than a frame of ticks. (Never released: a dtype lives
// as long as the module.)
py::dtype batch_dtype(int K) {
  static PyObject* cache[kMaxHorizons + 1] = {};
  if (cache[K] == nullptr) cache[K] = make_batch_dtype(K).release().ptr();
  return py::reinterpret_borrow<py::dtype>(cache[K]);
}

// Writes one row; a refused tick gets NaN values and kNoPrediction, as in a replay.
void write_row(const Prediction& p, Status st, int K, std::uint8_t* row) noexcept {
  constexpr double nan = std::numeric_limits<double>::quiet_NaN();
  constexpr float nanf = std::numeric_limits<float>::quiet_NaN();
  const bool ok = st == Status::ok;
  BatchHead h{};
  h.stream = p.stream;
  h.t = p.t;
  h.t_grid = ok ? p.t_grid : nan;
  h.dt = ok ? p.dt : nan;
  h.origin[0] = ok ? p.origin[0] : nan;
  h.origin[1] = ok ? p.origin[1] : nan;
  h.d2 = ok ? p.d2 : nanf;
  h.cert_error = ok ? p.cert_error : nanf;
  h.blend = ok ? p.blend : 0.0f;
  h.work = ok ? p.work : 0;
  h.total_ns = p.total_ns;
  for (int s = 0; s < kStages; ++s) h.stage_ns[s] = p.stage_ns[s];
  h.status = static_cast<std::uint8_t>(st);
  h.verdict = ok ? static_cast<std::uint8_t>(p.verdict) : kNoPrediction;
  h.restarted = ok && p.restarted;
  h.stages_timed = ok && p.stages_timed;
  std::memcpy(row, &h, sizeof h);
  double* path = reinterpret_cast<double*>(row + sizeof h);
  float* radius = reinterpret_cast<float*>(row + sizeof h + 16 * static_cast<std::size_t>(K));
  for (int i = 0; i < 2 * K; ++i) path[i] = ok ? p.path[i] : nan;
  for (int k = 0; k < K; ++k) radius[k] = ok ? p.radius[k] : nanf;
}

py::array tick_many(Engine& e, const carray<double>& t, const carray<double>& x,
                    const carray<double>& y, const std::optional<carray<double>>& vx,
                    const std::optional<carray<double>>& vy, const py::object& stream,
                    const py::object& out) {
  const py::ssize_t n = t.size();
  if (vx.has_value() != vy.has_value()) throw py::value_error("give both vx and vy, or neither");
  if (t.ndim() != 1 || x.size() != n || y.size() != n)
    throw py::value_error("t, x and y must be 1-D arrays of the same length");
  if (vx && (vx->size() != n || vy->size() != n))
    throw py::value_error("vx and vy must have t's length");
  carray<std::uint64_t> ids;
  if (!stream.is_none()) {
    const py::array given = py::array::ensure(stream);
    const char kind = given ? given.dtype().kind() : '?';
    if (kind != 'i' && kind != 'u')
      throw py::value_error("stream ids must be integers (an integer array or list)");
    ids = carray<std::uint64_t>::ensure(given);
    if (!ids || ids.size() != n) throw py::value_error("stream must have the same length as t");
    if (kind == 'i') {  // a negative id would wrap to a huge one
      const carray<std::int64_t> signed_ids = carray<std::int64_t>::ensure(given);
      for (py::ssize_t i = 0; i < n; ++i)
        if (signed_ids.data()[i] < 0) throw py::value_error("stream ids must be in [0, 2^64)");
    }
  }
  const int K = e.horizons();
  py::array rows;
  if (out.is_none()) {
    rows = py::array(batch_dtype(K), std::vector<py::ssize_t>{n});
  } else {
    rows = py::reinterpret_borrow<py::array>(out);
    if (!rows.dtype().equal(batch_dtype(K)) || rows.ndim() != 1 || rows.shape(0) != n ||
        !(rows.flags() & py::array::c_style) || !rows.writeable())
      throw py::value_error("out must be a writeable, contiguous 1-D array of len(t) rows of "
                            "Engine.batch_dtype");
  }
  auto* base = static_cast<std::uint8_t*>(rows.mutable_data());
  const std::size_t rb = batch_row_bytes(K);
  const double* pvx = vx ? vx->data() : nullptr;
  const double* pvy = vy ? vy->data() : nullptr;
  const std::uint64_t* pid = stream.is_none() ? nullptr : ids.data();
  {
    py::gil_scoped_release release;
    Prediction p;
    for (py::ssize_t i = 0; i < n; ++i) {
      const Tick k{t.data()[i], x.data()[i], y.data()[i], pvx ? pvx[i] : 0.0,
                   pvy ? pvy[i] : 0.0, pvx != nullptr};
      const Status st = e.tick(pid ? pid[i] : 0, k, p);
      write_row(p, st, K, base + static_cast<std::size_t>(i) * rb);
    }
  }
  return rows;
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
  py::array_t<std::uint32_t> work(n);
  // zeroed (calloc: no page is touched until written): Engine::replay writes
  // the timing arrays only where it measured something
  const py::object zeros = py::module_::import("numpy").attr("zeros");
  const auto u32_zeros = [&](py::tuple shape) {
    return py::array_t<std::uint32_t>(zeros(shape, py::dtype::of<std::uint32_t>()));
  };
  py::array_t<std::uint32_t> total = u32_zeros(py::make_tuple(n));
  py::array_t<std::uint32_t> stages = u32_zeros(py::make_tuple(n, kStages));
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
  using namespace py::literals;
  return py::dict("paths"_a = paths, "status"_a = status, "verdict"_a = verdict, "cert"_a = cert,
                  "d2"_a = d2, "blend"_a = blend, "t_grid"_a = t_grid, "work"_a = work,
                  "stage_ns"_a = stages, "total_ns"_a = total, "radius"_a = radius, "ok"_a = good,
                  "prior"_a = prior, "proposal"_a = proposal);
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

}  // namespace

void bind_engine(py::module_& m) {
  tick_error = PyErr_NewExceptionWithDoc(
      "tmn._core.TickError",
      "A tick (or reset) was refused; `status` is the tmn.Status code. The stream's "
      "state is untouched.",
      PyExc_ValueError, nullptr);
  m.attr("TickError") = py::handle(tick_error);
  bind_model_spec(m);
  py::class_<Engine> engine(m, "Engine", "The five-stage tick engine (one thread at a time).");
  engine
      .def(py::init<const ModelSpec&, Precision, std::uint32_t, Isa, Timing>(), py::arg("spec"),
           py::arg("precision"), py::arg("max_streams"), py::arg("isa"),
           py::arg("timing") = Timing::all)
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
                             [](const Engine& e) { return e.streams().capacity(); })
      .def("tick_many", &tick_many, py::arg("t"), py::arg("x"), py::arg("y"),
           py::arg("vx") = py::none(), py::arg("vy") = py::none(),
           py::arg("stream") = py::none(), py::arg("out") = py::none(),
           "Run len(t) ticks in order (GIL released) into one structured array of "
           "batch_dtype rows; a refused tick gets its status, not an exception.")
      .def_property_readonly("batch_dtype",
                             [](const Engine& e) { return batch_dtype(e.horizons()); },
                             "The numpy dtype of tick_many's rows for this engine's K.");
  // tick is a raw vectorcall method: see bind_prediction.cpp
  PyObject* tick = PyDescr_NewMethod(reinterpret_cast<PyTypeObject*>(engine.ptr()),
                                     &engine_tick_def);
  if (tick == nullptr) throw py::error_already_set();
  engine.attr("tick") = py::reinterpret_steal<py::object>(tick);
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
