// bind_constants.cpp — the enums and constants Python shares with C++, and
// the platform queries (ISA, clock, CPUs, activation approximations).
//
// Every name and number here comes from its C++ definition: enums are bound
// by looping over the C++ lists (kStatuses, kVerdicts, kFrameErrors) with the
// C++ name functions, so a code or a name exists once.
#include <pybind11/stl.h>

#include "bindings.hpp"
#include "tmn/clock.hpp"
#include "tmn/engine.hpp"
#include "tmn/histogram.hpp"
#include "tmn/protocol.hpp"
#include "tmn/server.hpp"

namespace tmn::bindings {

namespace {

// A C++ name as a Python attribute: a keyword gets a trailing underscore
// (Verdict "pass" is tmn.Verdict.pass_).
std::string attribute_name(const char* name) {
  const bool keyword = py::module_::import("keyword").attr("iskeyword")(name).cast<bool>();
  return keyword ? std::string(name) + "_" : std::string(name);
}

template <class E, class Values, class Name>
void bind_listed_enum(py::module_& m, const char* py_name, const char* doc,
                      const Values& values, Name name_of) {
  py::enum_<E> e(m, py_name, doc);
  for (E v : values) e.value(attribute_name(name_of(v)).c_str(), v);
}

template <std::size_t N>
py::tuple names_tuple(const char* const (&names)[N]) {
  py::tuple t(N);
  for (std::size_t i = 0; i < N; ++i) t[i] = py::str(names[i]);
  return t;
}

}  // namespace

void bind_constants(py::module_& m) {
  bind_listed_enum<Status>(m, "Status", "Error codes of the tick path (append-only).",
                           kStatuses, status_name);
  bind_listed_enum<Verdict>(m, "Verdict", "What the gate decided for a prediction.", kVerdicts,
                            verdict_name);
  bind_listed_enum<wire::FrameError>(m, "FrameError",
                                     "Frame-level error codes of the wire protocol.",
                                     wire::kFrameErrors, wire::frame_error_name);
  py::enum_<wire::Kind>(m, "FrameKind", "What a binary frame carries.")
      .value("ticks", wire::Kind::ticks)
      .value("predictions", wire::Kind::predictions)
      .value("error", wire::Kind::error)
      .value("position_ticks", wire::Kind::position_ticks)
      .value("point_ticks", wire::Kind::point_ticks)
      .value("point_position_ticks", wire::Kind::point_position_ticks)
      .value("points", wire::Kind::points);
  py::enum_<Isa>(m, "Isa", "Instruction set of the GRU kernels.")
      .value("scalar", Isa::scalar)
      .value("avx2", Isa::avx2)
      .value("avx512", Isa::avx512);
  bind_listed_enum<Timing>(m, "Timing", "What a tick times (engine.hpp).", kTimings,
                           timing_name);
  py::enum_<System>(m, "System").value("A", System::A).value("B", System::B);
  py::enum_<Precision>(m, "Precision").value("fp32", Precision::fp32).value("int8", Precision::int8);

  m.attr("STAGES") = names_tuple(kStageNames);
  m.attr("TIMING_SAMPLE_PERIOD") = kTimingSamplePeriod;
  // the features each system reads, in input order (ingest.hpp)
  py::dict features;
  features["A"] = py::tuple(names_tuple(kFeatureNames)[py::slice(0, kFeaturesA, 1)]);
  features["B"] = names_tuple(kFeatureNames);
  m.attr("FEATURES") = features;
  m.attr("MAX_VELOCITY_WINDOW") = kMaxVelocityWindow;
  m.attr("MAX_GRID_STEPS_PER_TICK") = kMaxGridStepsPerTick;
  m.attr("NO_PREDICTION") = kNoPrediction;
  py::dict verdict_names;
  for (Verdict v : kVerdicts) verdict_names[py::int_(static_cast<int>(v))] = verdict_name(v);
  verdict_names[py::int_(kNoPrediction)] = kNoPredictionName;
  m.attr("VERDICT_NAMES") = verdict_names;
  py::list percentiles;
  for (const ReportedPercentile& q : kReportedPercentiles)
    percentiles.append(py::make_tuple(q.name, q.p));
  m.attr("PERCENTILES") = py::tuple(percentiles);
  m.attr("MAX_HORIZONS") = kMaxHorizons;
  m.attr("MAX_HORIZON_S") = kMaxHorizonS;
  m.attr("INPUT_SIGMAS") = kInputSigmas;
  m.attr("MAX_ABS_OUTPUT_UNITS") = kMaxAbsOutputUnits;
  m.attr("MAX_ABS_TIME_S") = kMaxAbsTimeS;
  m.attr("MIN_GATE_EPS") = kMinGateEps;
  m.attr("MAX_GATE_EPS") = kMaxGateEps;
  m.attr("MAX_GATE_BUDGET") = kMaxGateBudget;
  m.attr("GATE_GUARD_WORK") = kGateGuardWork;
  m.attr("GATE_GUARD_NS") = kGateGuardNs;
  m.attr("MAX_KALMAN_Q") = kMaxKalmanQ;
  m.attr("MIN_KALMAN_R") = kMinKalmanR;
  m.attr("MAX_KALMAN_R") = kMaxKalmanR;
  m.attr("MAX_HIDDEN") = kMaxHidden;
  m.attr("MAX_LAMBDA") = kMaxLambda;
  m.attr("MAX_BATCH") = wire::kMaxBatch;
  m.attr("WIRE_MAGIC") = wire::kMagic;
  m.attr("WIRE_VERSION") = wire::kVersion;
  m.attr("DEFAULT_ENDPOINT") = kDefaultEndpoint;
}

void bind_platform(py::module_& m) {
  m.def("isa_available", &isa_available, py::arg("isa"));
  m.def("best_isa", &best_isa);
  m.def("clock_uses_tsc", [] {
    clock::calibrate();
    return clock::uses_tsc();
  });
  m.def(
      "clock_ns_per_tick",
      [] {
        clock::calibrate();
        return clock::uses_tsc() ? clock::detail::ns_per_tick : 1.0;
      },
      "Nanoseconds per tick of the stage clock: the calibrated TSC period, or 1 when the "
      "clock is steady_clock (for timers outside the engine that read the same clock).");
  m.def("allowed_cpus", &allowed_cpus, "CPUs this process may run on.");
  m.def(
      "activation",
      [](const std::string& name, const carray<float>& x, Isa isa) {
        if (!isa_available(isa)) throw py::value_error("isa not available");
        const GruKernels& k = gru_kernels(isa);
        py::array_t<float> out(x.size());
        const int n = static_cast<int>(x.size());
        if (name == "sigmoid") k.sigmoid(x.data(), out.mutable_data(), n);
        else if (name == "tanh") k.tanh(x.data(), out.mutable_data(), n);
        else throw py::value_error("activation must be 'sigmoid' or 'tanh'");
        return out;
      },
      py::arg("name"), py::arg("x"), py::arg("isa") = Isa::scalar,
      "The engine's vectorised sigmoid/tanh approximation, for accuracy tests.");
}

}  // namespace tmn::bindings
