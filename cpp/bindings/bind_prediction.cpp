// bind_prediction.cpp — tmn._core.Prediction, one tick's answer (stage 5) as
// a Python object, and Engine.tick, the call that makes one.
//
// Engine.tick is the per-tick call from Python, so both halves are written
// against the CPython API rather than through pybind11's generic dispatch:
//   * tick is a vectorcall method (METH_FASTCALL | METH_KEYWORDS) on the
//     pybind11 Engine class: no argument-loader objects, no keyword dict;
//   * a Prediction is a small C type holding its own copy of the C++
//     Prediction: an owned, immutable record (a later tick never changes
//     it), taken from a free list, so making one costs a memcpy and no
//     allocation in the steady state. Its attributes build Python objects
//     only when read (path and radius are fresh numpy arrays each time).
// bench/README.md ("Engine.tick from Python") measures the alternatives: a
// pybind11-made Prediction, a tuple and a reused record.
#include <cmath>
#include <cstring>
#include <string>

#include "bindings.hpp"
#include "tmn/engine.hpp"

namespace tmn::bindings {

namespace {

struct PyPrediction {
  PyObject_HEAD
  Prediction p;
};

PyTypeObject* prediction_type = nullptr;

// Released Predictions kept for reuse (under the GIL): a tick in a loop then
// allocates nothing.
constexpr int kFreeListSize = 64;
PyPrediction* free_list[kFreeListSize];
int n_free = 0;

// The enum objects a Prediction returns (pybind11 enums, made once).
PyObject* status_objects[8] = {};
PyObject* verdict_objects[8] = {};
PyObject* stage_names[kStages] = {};

void prediction_dealloc(PyObject* self) {
  PyTypeObject* type = Py_TYPE(self);
  if (n_free < kFreeListSize) {
    free_list[n_free++] = reinterpret_cast<PyPrediction*>(self);
  } else {
    type->tp_free(self);
  }
  Py_DECREF(type);  // a heap type: every instance holds a reference to it
}

const Prediction& of(PyObject* self) { return reinterpret_cast<PyPrediction*>(self)->p; }

PyObject* enum_object(PyObject* const* table, int value) {
  PyObject* o = value >= 0 && value < 8 ? table[value] : nullptr;
  if (o == nullptr) return PyLong_FromLong(value);
  Py_INCREF(o);
  return o;
}

template <class T>
PyObject* array_of(const T* data, std::initializer_list<py::ssize_t> shape) {
  py::array_t<T> a(shape);
  std::memcpy(a.mutable_data(), data, static_cast<std::size_t>(a.size()) * sizeof(T));
  return a.release().ptr();
}

// -- attributes ---------------------------------------------------------------

#define TMN_GETTER(name, expr)                                   \
  PyObject* get_##name(PyObject* self, void*) {                  \
    const Prediction& p = of(self);                              \
    (void)p;                                                     \
    return expr;                                                 \
  }
TMN_GETTER(stream, PyLong_FromUnsignedLongLong(p.stream))
TMN_GETTER(t, PyFloat_FromDouble(p.t))
TMN_GETTER(t_grid, PyFloat_FromDouble(p.t_grid))
TMN_GETTER(dt, PyFloat_FromDouble(p.dt))
TMN_GETTER(h0, PyFloat_FromDouble(p.h0))
TMN_GETTER(blend, PyFloat_FromDouble(p.blend))
TMN_GETTER(d2, PyFloat_FromDouble(p.d2))
TMN_GETTER(cert_error, PyFloat_FromDouble(p.cert_error))
TMN_GETTER(work, PyLong_FromUnsignedLong(p.work))
TMN_GETTER(total_ns, PyLong_FromUnsignedLong(p.total_ns))
TMN_GETTER(restarted, PyBool_FromLong(p.restarted))
TMN_GETTER(stages_timed, PyBool_FromLong(p.stages_timed))
TMN_GETTER(status, enum_object(status_objects, static_cast<int>(p.status)))
TMN_GETTER(verdict, enum_object(verdict_objects, static_cast<int>(p.verdict)))
TMN_GETTER(origin, Py_BuildValue("(dd)", p.origin[0], p.origin[1]))
TMN_GETTER(path, array_of(p.path.data(), {p.horizons, 2}))
TMN_GETTER(radius, array_of(p.radius.data(), {p.horizons}))
#undef TMN_GETTER

PyObject* get_stage_ns(PyObject* self, void*) {
  const Prediction& p = of(self);
  PyObject* d = PyDict_New();
  if (d == nullptr) return nullptr;
  for (int i = 0; i < kStages; ++i) {
    PyObject* v = PyLong_FromUnsignedLong(p.stage_ns[i]);
    if (v == nullptr || PyDict_SetItem(d, stage_names[i], v) < 0) {
      Py_XDECREF(v);
      Py_DECREF(d);
      return nullptr;
    }
    Py_DECREF(v);
  }
  return d;
}

PyGetSetDef prediction_getset[] = {
    {"stream", get_stream, nullptr, "The stream's id.", nullptr},
    {"t", get_t, nullptr, "The tick's time, seconds.", nullptr},
    {"t_grid", get_t_grid, nullptr,
     "The newest grid sample's time: path point k is the prediction for t_grid + h_k.", nullptr},
    {"dt", get_dt, nullptr, "Sensor time since the stream's previous tick (0 at a (re)start).",
     nullptr},
    {"h0", get_h0, nullptr, "The first horizon, seconds (h_k = (k + 1) h0).", nullptr},
    {"blend", get_blend, nullptr, "B: the weight of the certified path in the served path.",
     nullptr},
    {"d2", get_d2, nullptr, "The plausibility statistic (B); NaN for A and while warming.",
     nullptr},
    {"cert_error", get_cert_error, nullptr,
     "Proven bound on the served path's numerical error, output units; NaN when nothing "
     "certified is served.",
     nullptr},
    {"work", get_work, nullptr, "Touched nonzeros spent by the gate.", nullptr},
    {"total_ns", get_total_ns, nullptr, "The tick's time in the engine (0 with timing 'off').",
     nullptr},
    {"stages_timed", get_stages_timed, nullptr,
     "stage_ns were measured on this tick (always with timing 'all', one tick in "
     "TIMING_SAMPLE_PERIOD with 'sampled', never with 'off').",
     nullptr},
    {"stage_ns", get_stage_ns, nullptr, "ns per stage, {name: ns} in tick order (0: not timed).",
     nullptr},
    {"restarted", get_restarted, nullptr, "This tick restarted the stream after a gap.", nullptr},
    {"status", get_status, nullptr, "The tick's tmn.Status (ok: Engine.tick raises otherwise).",
     nullptr},
    {"verdict", get_verdict, nullptr, "What the gate decided (tmn.Verdict).", nullptr},
    {"origin", get_origin, nullptr, "(x, y) where the path starts, at t_grid.", nullptr},
    {"path", get_path, nullptr,
     "(K, 2) float64: (x, y) at t_grid + h_k for each horizon, data units (a new array).",
     nullptr},
    {"radius", get_radius, nullptr,
     "(K,) float32: the 90 % error radius of each path point, data units (NaN while warming or "
     "for a model without an uncertainty calibration; a new array).",
     nullptr},
    {nullptr, nullptr, nullptr, nullptr, nullptr}};

// -- methods ---------------------------------------------------------------------

// The one float argument `dt` of at() and radius_at(), positional or keyword.
bool dt_argument(PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames, const char* fn,
                 double& dt) {
  const Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
  if (nargs + nkw != 1 ||
      (nkw == 1 && PyUnicode_CompareWithASCIIString(PyTuple_GET_ITEM(kwnames, 0), "dt") != 0)) {
    PyErr_Format(PyExc_TypeError, "%s() takes exactly one argument, dt", fn);
    return false;
  }
  dt = PyFloat_AsDouble(args[0]);
  return !(dt == -1.0 && PyErr_Occurred());
}

PyObject* prediction_at(PyObject* self, PyObject* const* args, Py_ssize_t nargs,
                        PyObject* kwnames) {
  double dt = 0.0;
  if (!dt_argument(args, nargs, kwnames, "at", dt)) return nullptr;
  const std::array<double, 2> q = of(self).at(dt);
  return Py_BuildValue("(dd)", q[0], q[1]);
}

PyObject* prediction_radius_at(PyObject* self, PyObject* const* args, Py_ssize_t nargs,
                               PyObject* kwnames) {
  double dt = 0.0;
  if (!dt_argument(args, nargs, kwnames, "radius_at", dt)) return nullptr;
  return PyFloat_FromDouble(of(self).radius_at(dt));
}

PyMethodDef prediction_methods[] = {
    {"at", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(prediction_at)),
     METH_FASTCALL | METH_KEYWORDS,
     "at(dt) -> (x, y): the point predicted dt seconds after the tick, between the horizons "
     "(cubic Hermite, Catmull-Rom slopes); NaN outside (0, t_grid + h_K - t]."},
    {"radius_at",
     reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(prediction_radius_at)),
     METH_FASTCALL | METH_KEYWORDS,
     "radius_at(dt) -> float: the error radius of at(dt), linear in time between the "
     "horizons' radii, from 0 at the path's origin; NaN where at(dt) is NaN or there is no "
     "radius."},
    {nullptr, nullptr, 0, nullptr}};

PyObject* prediction_repr(PyObject* self) {
  const Prediction& p = of(self);
  const int K = p.horizons;
  const std::string s =
      "Prediction(stream=" + std::to_string(p.stream) + ", t=" +
      py::repr(py::float_(p.t)).cast<std::string>() + ", status=" + status_name(p.status) +
      ", verdict=" + verdict_name(p.verdict) + ", horizons=" + std::to_string(K) +
      (K > 0 ? ", last=(" + py::repr(py::float_(p.path[2 * K - 2])).cast<std::string>() + ", " +
                   py::repr(py::float_(p.path[2 * K - 1])).cast<std::string>() + ")"
             : std::string()) +
      ")";
  return PyUnicode_FromString(s.c_str());
}

PyType_Slot prediction_slots[] = {
    {Py_tp_doc, const_cast<char*>(
                    "One tick's answer (stage 5, actuation): an owned record that a later tick "
                    "never changes. Made by Engine.tick.")},
    {Py_tp_dealloc, reinterpret_cast<void*>(prediction_dealloc)},
    {Py_tp_getset, prediction_getset},
    {Py_tp_methods, prediction_methods},
    {Py_tp_repr, reinterpret_cast<void*>(prediction_repr)},
    {0, nullptr}};

PyType_Spec prediction_spec = {"tmn._core.Prediction", sizeof(PyPrediction), 0,
                               Py_TPFLAGS_DEFAULT | Py_TPFLAGS_DISALLOW_INSTANTIATION,
                               prediction_slots};

}  // namespace

PyObject* new_prediction(const Prediction& p) {
  PyPrediction* o;
  if (n_free > 0) {
    o = free_list[--n_free];
    // PyObject_Init takes a new reference to the (heap) type, as tp_alloc does
    PyObject_Init(reinterpret_cast<PyObject*>(o), prediction_type);
  } else {
    o = PyObject_New(PyPrediction, prediction_type);
    if (o == nullptr) return nullptr;
  }
  std::memcpy(static_cast<void*>(&o->p), &p, sizeof p);
  return reinterpret_cast<PyObject*>(o);
}

void bind_prediction(py::module_& m) {
  static_assert(std::is_trivially_copyable_v<Prediction>, "a Prediction is copied by memcpy");
  prediction_type = reinterpret_cast<PyTypeObject*>(PyType_FromSpec(&prediction_spec));
  if (prediction_type == nullptr) throw py::error_already_set();
  PyObject* module_name = PyUnicode_FromString("tmn._core");
  PyObject_SetAttrString(reinterpret_cast<PyObject*>(prediction_type), "__module__", module_name);
  Py_DECREF(module_name);
  m.attr("Prediction") = py::handle(reinterpret_cast<PyObject*>(prediction_type));
  // the objects attributes return, made once (and kept for the process's life)
  for (Status s : kStatuses)
    status_objects[static_cast<int>(s)] = py::cast(s).release().ptr();
  for (Verdict v : kVerdicts)
    verdict_objects[static_cast<int>(v)] = py::cast(v).release().ptr();
  for (int i = 0; i < kStages; ++i) stage_names[i] = PyUnicode_InternFromString(kStageNames[i]);
}

}  // namespace tmn::bindings
