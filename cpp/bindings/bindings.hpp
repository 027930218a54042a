// bindings.hpp — tmn._core, the pybind11 module, split by concept.
//
// Contract: cpp/bindings/ is the only C++ that knows Python. Each bind_*
// function registers one concept on the module (module.cpp calls them in
// order: constants and enums first, since the later signatures name them).
// The bindings convert arrays at the boundary and release the GIL around
// whole-recording work (replay, timing loops); they add nothing to the
// maths. Every constant that Python needs is exported here from its C++
// definition (bind_constants), never written again in Python.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "tmn/solver.hpp"

namespace tmn::bindings {

namespace py = pybind11;

void bind_constants(py::module_& m);  // enums and constants (bind_constants.cpp)
void bind_platform(py::module_& m);   // ISA, clock, CPUs, activations (bind_constants.cpp)
void bind_ingest(py::module_& m);     // stage 1 on whole recordings (bind_ingest.cpp)
void bind_kalman(py::module_& m);     // stage 2 on its own (bind_kalman.cpp)
void bind_gate(py::module_& m);       // stage 4 and the solver (bind_gate.cpp)
void bind_prediction(py::module_& m); // Prediction, a C type (bind_prediction.cpp)
void bind_engine(py::module_& m);     // ModelSpec, TickError, Engine (bind_engine.cpp)
void bind_server(py::module_& m);     // ServerConfig, Server and its stats (bind_server.cpp)
void bind_solver_push(py::module_& m);  // PushGraph: forward-push PageRank (bind_solver_push.cpp)

}  // namespace tmn::bindings

namespace tmn {
struct Prediction;
}

namespace tmn::bindings {

// A new tmn._core.Prediction holding a copy of p (bind_prediction.cpp).
PyObject* new_prediction(const Prediction& p);

template <class T>
using carray = py::array_t<T, py::array::c_style | py::array::forcecast>;

template <class T>
std::vector<T> to_vector(const carray<T>& a) {
  return std::vector<T>(a.data(), a.data() + a.size());
}

template <class T>
py::array_t<T> to_array(const std::vector<T>& v) {
  py::array_t<T> a(static_cast<py::ssize_t>(v.size()));
  std::memcpy(a.mutable_data(), v.data(), v.size() * sizeof(T));
  return a;
}

// indices arrive as int64 so that nothing wraps silently on narrowing
inline std::vector<std::int32_t> narrow_indices(const carray<std::int64_t>& a, const char* name) {
  std::vector<std::int32_t> v(a.size());
  for (py::ssize_t i = 0; i < a.size(); ++i) {
    const std::int64_t x = a.data()[i];
    if (x < 0 || x > std::numeric_limits<std::int32_t>::max())
      throw py::value_error(std::string(name) + " entries must be in [0, 2^31)");
    v[i] = static_cast<std::int32_t>(x);
  }
  return v;
}

inline void check_length(const py::array& a, py::ssize_t n, const char* name) {
  if (a.ndim() != 1 || a.shape(0) != n)
    throw py::value_error(std::string(name) + " must be a 1-D array of length " +
                          std::to_string(n));
}

inline py::dict certificate_dict(const solver::Certificate& c) {
  py::dict d;
  d["error_bound"] = c.error_bound;
  d["residual_norm"] = c.residual_norm;
  d["work"] = c.work;
  d["iterations"] = c.iterations;
  d["certified"] = c.certified;
  return d;
}

}  // namespace tmn::bindings
