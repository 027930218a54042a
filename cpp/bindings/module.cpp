// module.cpp — PYBIND11_MODULE(_core): registers every concept (bindings.hpp).
#include "bindings.hpp"

PYBIND11_MODULE(_core, m) {
  namespace b = tmn::bindings;
  m.doc() = "tmn native engine: ingest, Kalman prior, GRU, certified gate, actuation";
  b::bind_constants(m);
  b::bind_platform(m);
  b::bind_ingest(m);
  b::bind_kalman(m);
  b::bind_gate(m);
  b::bind_prediction(m);
  b::bind_engine(m);
  b::bind_server(m);
  b::bind_solver_push(m);
}
