// module.cpp — tmn._core, the pybind11 bindings. The only C++ file that knows
// Python. It converts arrays at the boundary and releases the GIL around
// whole-recording work (replay, timing loops); it adds nothing to the maths.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "tmn/clock.hpp"
#include "tmn/engine.hpp"
#include "tmn/protocol.hpp"
#include "tmn/server.hpp"
#include "tmn/solver.hpp"

namespace py = pybind11;
using namespace tmn;

namespace {

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

template <class T, class Buf>
py::array_t<T> buffer_to_array(const Buf& b, std::size_t n) {
  py::array_t<T> a(static_cast<py::ssize_t>(n));
  std::memcpy(a.mutable_data(), b.data(), n * sizeof(T));
  return a;
}

// Bind a std::vector<T> member of ModelSpec as a numpy-array property.
template <class T>
void vector_property(py::class_<ModelSpec>& c, const char* name, std::vector<T> ModelSpec::*field) {
  c.def_property(
      name, [field](const ModelSpec& s) { return to_array<T>(s.*field); },
      [field](ModelSpec& s, const carray<T>& a) { s.*field = to_vector<T>(a); });
}

void check_length(const py::array& a, py::ssize_t n, const char* name) {
  if (a.ndim() != 1 || a.shape(0) != n)
    throw py::value_error(std::string(name) + " must be a 1-D array of length " +
                          std::to_string(n));
}

py::dict certificate_dict(const solver::Certificate& c) {
  py::dict d;
  d["error_bound"] = c.error_bound;
  d["residual_norm"] = c.residual_norm;
  d["work"] = c.work;
  d["iterations"] = c.iterations;
  d["certified"] = c.certified;
  return d;
}

py::dict replay(Engine& e, const carray<double>& t, const carray<double>& x,
                const carray<double>& y, const carray<double>& vx, const carray<double>& vy,
                const py::object& stream, bool candidates) {
  const py::ssize_t n = t.size();
  for (const auto* a : {&x, &y, &vx, &vy})
    if (a->size() != n) throw py::value_error("t, x, y, vx and vy must have the same length");
  carray<std::uint64_t> ids;
  const std::uint64_t* ids_ptr = nullptr;
  if (!stream.is_none()) {
    ids = carray<std::uint64_t>::ensure(stream);
    if (!ids || ids.size() != n) throw py::value_error("stream must have the same length as t");
    ids_ptr = ids.data();
  }
  const int K = e.horizons();
  py::array_t<double> paths({n, static_cast<py::ssize_t>(K), py::ssize_t{2}});
  py::array_t<std::uint8_t> status(n), verdict(n);
  py::array_t<float> cert(n), d2(n);
  py::array_t<std::uint32_t> work(n), total(n);
  py::array_t<std::uint32_t> stages({n, static_cast<py::ssize_t>(kStages)});
  py::object prior = py::none(), proposal = py::none();
  double *prior_ptr = nullptr, *proposal_ptr = nullptr;
  if (candidates) {
    py::array_t<double> a({n, static_cast<py::ssize_t>(K), py::ssize_t{2}});
    py::array_t<double> b({n, static_cast<py::ssize_t>(K), py::ssize_t{2}});
    prior_ptr = a.mutable_data();
    proposal_ptr = b.mutable_data();
    prior = a;
    proposal = b;
  }
  std::uint64_t good = 0;
  {
    py::gil_scoped_release release;
    good = e.replay(t.data(), x.data(), y.data(), vx.data(), vy.data(), ids_ptr,
                    static_cast<std::uint64_t>(n), paths.mutable_data(), status.mutable_data(),
                    verdict.mutable_data(), cert.mutable_data(), d2.mutable_data(),
                    work.mutable_data(), stages.mutable_data(), total.mutable_data(),
                    prior_ptr, proposal_ptr);
  }
  py::dict out;
  out["paths"] = paths;
  out["status"] = status;
  out["verdict"] = verdict;
  out["cert"] = cert;
  out["d2"] = d2;
  out["work"] = work;
  out["stage_ns"] = stages;
  out["total_ns"] = total;
  out["ok"] = good;
  out["prior"] = prior;
  out["proposal"] = proposal;
  return out;
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

py::dict histogram_dict(const Histogram& h) {
  py::dict d;
  d["count"] = h.count();
  const bool any = h.count() > 0;
  d["mean"] = any ? py::object(py::float_(h.mean())) : py::object(py::none());
  const std::pair<const char*, double> ps[] = {
      {"p50", 50.0}, {"p90", 90.0}, {"p99", 99.0}, {"p99.9", 99.9}};
  for (const auto& [name, p] : ps)
    d[name] = any ? py::object(py::float_(h.percentile(p))) : py::object(py::none());
  d["max"] = any ? py::object(py::float_(h.max())) : py::object(py::none());
  return d;
}

template <class F>
py::list per_horizon(const LiveAccuracy& live, const std::vector<double>& h, F&& hist_of) {
  py::list out;
  for (int k = 0; k < live.horizons(); ++k) {
    const Histogram* hk = hist_of(k);
    if (hk == nullptr) return py::list();
    py::dict d = histogram_dict(*hk);
    d["horizon_ms"] = h[k] * 1000.0;
    out.append(d);
  }
  return out;
}

py::dict server_stats(const Server& s) {
  const ServerCounters& c = s.counters();
  const auto get = [](const std::atomic<std::uint64_t>& a) {
    return a.load(std::memory_order_relaxed);
  };
  py::dict d;
  d["messages"] = get(c.messages);
  d["batches"] = get(c.batches);
  d["ticks"] = get(c.ticks);
  d["ticks_ok"] = get(c.ticks_ok);
  d["control_requests"] = get(c.control);
  d["dropped_replies"] = get(c.dropped_replies);
  d["dropped_pub"] = get(c.dropped_pub);
  d["reloads"] = get(c.reloads);
  d["evicted_streams"] = get(c.evicted);
  d["loop_iterations"] = get(c.loop_iterations);
  d["reclaimed_streams"] = get(c.reclaimed);
  d["refused_peers"] = get(c.refused_peers);
  d["control_overloaded"] = get(c.control_overloaded);
  d["dropped_at_stop"] = get(c.dropped_at_stop);
  d["streams"] = s.stream_count();
  py::dict errors;
  for (Status st : {Status::non_finite, Status::time_not_increasing, Status::capacity_exceeded,
                    Status::unknown_stream, Status::out_of_range, Status::non_finite_output})
    errors[status_name(st)] = get(c.by_status[static_cast<int>(st)]);
  d["tick_errors"] = errors;
  py::dict frame_errors;
  const std::pair<const char*, wire::FrameError> fe[] = {
      {"bad_magic", wire::FrameError::bad_magic}, {"bad_version", wire::FrameError::bad_version},
      {"bad_kind", wire::FrameError::bad_kind}, {"bad_size", wire::FrameError::bad_size},
      {"batch_too_large", wire::FrameError::batch_too_large},
      {"empty_batch", wire::FrameError::empty_batch},
      {"bad_envelope", wire::FrameError::bad_envelope}, {"internal", wire::FrameError::internal},
      {"overloaded", wire::FrameError::overloaded}};  // JSON errors: control_errors
  for (const auto& [name, code] : fe) frame_errors[name] = get(c.by_frame_error[static_cast<int>(code)]);
  d["frame_errors"] = frame_errors;
  py::dict verdicts;
  for (Verdict v : {Verdict::pass, Verdict::fallback_implausible, Verdict::fallback_uncertified,
                    Verdict::warming, Verdict::ungated})
    verdicts[verdict_name(v)] = get(c.by_verdict[static_cast<int>(v)]);
  d["verdicts"] = verdicts;
  const std::uint64_t pass = get(c.by_verdict[0]);
  const std::uint64_t gated = pass + get(c.by_verdict[1]) + get(c.by_verdict[2]);
  d["gate_pass_rate"] = gated ? py::object(py::float_(static_cast<double>(pass) / gated)) : py::object(py::none());
  d["mean_cert_error"] = pass ? py::object(py::float_(c.cert_sum_pass.load(std::memory_order_relaxed) / pass))
                              : py::object(py::none());
  py::dict lat;
  const char* names[kStages] = {"ingest", "prior", "network", "gate", "actuation"};
  for (int i = 0; i < kStages; ++i) lat[names[i]] = histogram_dict(s.stage(i));
  lat["tick"] = histogram_dict(s.tick_total());
  lat["server"] = histogram_dict(s.server_latency());
  d["latency_ns"] = lat;
  const LiveAccuracy& live = s.live();
  const std::vector<double> h = s.engine()->horizons_s();
  d["live_accuracy"] = per_horizon(live, h, [&](int k) { return &live.overall(k); });
  d["live_accuracy_overwritten"] = live.overwritten();
  return d;
}

// The engine's input ranges and model bounds (engine.hpp, gate.hpp, kalman.hpp),
// and Histogram for tests.
void bind_limits(py::module_& m) {
  m.attr("INPUT_SIGMAS") = kInputSigmas;
  m.attr("MAX_ABS_OUTPUT_UNITS") = kMaxAbsOutputUnits;
  m.attr("MAX_ABS_TIME_S") = kMaxAbsTimeS;
  m.attr("MAX_HORIZON_S") = kMaxHorizonS;
  m.attr("MAX_HORIZONS") = kMaxHorizons;
  m.attr("MIN_GATE_EPS") = kMinGateEps;
  m.attr("MAX_GATE_EPS") = kMaxGateEps;
  m.attr("MAX_GATE_BUDGET") = kMaxGateBudget;
  m.attr("GATE_GUARD_WORK") = kGateGuardWork;
  m.attr("GATE_GUARD_NS") = kGateGuardNs;
  m.attr("MAX_KALMAN_Q") = kMaxKalmanQ;
  m.attr("MIN_KALMAN_R") = kMinKalmanR;
  m.attr("MAX_KALMAN_R") = kMaxKalmanR;
  m.def(
      "input_ranges",
      [](const ModelSpec& spec) {
        const InputRanges r = input_ranges(spec);
        py::dict d;
        const char* names[5] = {"t", "x", "y", "vx", "vy"};
        for (int i = 0; i < 5; ++i) d[names[i]] = py::make_tuple(r.lo[i], r.hi[i]);
        return d;
      },
      py::arg("spec"), "{field: (lo, hi)}: the valid range of every tick field for a model.");
  m.def("bound_as_float", &bound_as_float, py::arg("bound"),
        "A double bound as float32, rounded upward (how certificates are stored).");
  py::class_<Histogram>(m, "Histogram", "The fixed-memory log histogram of the stats (tests).")
      .def(py::init<double, int, int>(), py::arg("lowest"), py::arg("octaves"), py::arg("sub"))
      .def("record", &Histogram::record, py::arg("v"))
      .def("percentile", &Histogram::percentile, py::arg("p"))
      .def_property_readonly("count", &Histogram::count)
      .def_property_readonly("max", &Histogram::max)
      .def("bucket_counts", &Histogram::bucket_counts);
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "tmn native engine: ingest, Kalman prior, GRU, certified gate, actuation";
  tick_error = PyErr_NewExceptionWithDoc(
      "tmn._core.TickError",
      "A tick (or reset) was refused; `status` is the tmn.Status code. The stream's "
      "state is untouched.",
      PyExc_ValueError, nullptr);
  m.attr("TickError") = py::handle(tick_error);

  py::enum_<Status>(m, "Status", "Error codes of the tick path (append-only).")
      .value("ok", Status::ok)
      .value("non_finite", Status::non_finite)
      .value("time_not_increasing", Status::time_not_increasing)
      .value("capacity_exceeded", Status::capacity_exceeded)
      .value("unknown_stream", Status::unknown_stream)
      .value("out_of_range", Status::out_of_range)
      .value("non_finite_output", Status::non_finite_output);
  py::enum_<Verdict>(m, "Verdict", "What the gate decided for a prediction.")
      .value("pass_", Verdict::pass)
      .value("fallback_implausible", Verdict::fallback_implausible)
      .value("fallback_uncertified", Verdict::fallback_uncertified)
      .value("warming", Verdict::warming)
      .value("ungated", Verdict::ungated);
  py::enum_<Isa>(m, "Isa", "Instruction set of the GRU kernels.")
      .value("scalar", Isa::scalar)
      .value("avx2", Isa::avx2)
      .value("avx512", Isa::avx512);
  py::enum_<System>(m, "System").value("A", System::A).value("B", System::B);
  py::enum_<Precision>(m, "Precision").value("fp32", Precision::fp32).value("int8", Precision::int8);

  m.def("isa_available", &isa_available, py::arg("isa"));
  m.def("best_isa", &best_isa);
  m.def("clock_uses_tsc", [] {
    clock::calibrate();
    return clock::uses_tsc();
  });
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

  py::class_<KalmanParams>(m, "KalmanParams")
      .def(py::init<double, double, double>(), py::arg("q"), py::arg("r_pos"), py::arg("r_vel"))
      .def_readwrite("q", &KalmanParams::q)
      .def_readwrite("r_pos", &KalmanParams::r_pos)
      .def_readwrite("r_vel", &KalmanParams::r_vel);
  py::class_<KalmanState>(m, "KalmanState", "Posterior mean and the per-axis covariance block.")
      .def(py::init<>())
      .def_readwrite("px", &KalmanState::px)
      .def_readwrite("py", &KalmanState::py)
      .def_readwrite("vx", &KalmanState::vx)
      .def_readwrite("vy", &KalmanState::vy)
      .def_readwrite("p_pp", &KalmanState::p_pp)
      .def_readwrite("p_pv", &KalmanState::p_pv)
      .def_readwrite("p_vv", &KalmanState::p_vv);
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
      .def(
          "filter",
          [](const KalmanPrior& k, const carray<double>& t, const carray<double>& x,
             const carray<double>& y, const carray<double>& vx, const carray<double>& vy) {
            // Whole-recording filtering (training uses it for B's prior).
            const py::ssize_t n = t.size();
            for (const auto* a : {&x, &y, &vx, &vy})
              if (a->size() != n) throw py::value_error("t, x, y, vx and vy must have the same length");
            for (py::ssize_t i = 1; i < n; ++i)
              if (!(t.data()[i] > t.data()[i - 1]))
                throw py::value_error("t must be strictly increasing (index " +
                                      std::to_string(i) + ")");
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
          },
          py::arg("t"), py::arg("x"), py::arg("y"), py::arg("vx"), py::arg("vy"),
          "Filter a whole recording: (state[N,4] = px,py,vx,vy; cov[N,3] = p_pp,p_pv,p_vv).");
  py::class_<GateParams>(m, "GateParams")
      .def(py::init<double, std::uint64_t, double, double>(), py::arg("eps"), py::arg("budget"),
           py::arg("lam"), py::arg("threshold"))
      .def_readwrite("eps", &GateParams::eps)
      .def_readwrite("budget", &GateParams::budget)
      .def_readwrite("lam", &GateParams::lambda)
      .def_readwrite("threshold", &GateParams::threshold);

  py::class_<ModelSpec> spec(m, "ModelSpec", "Plain arrays for Engine; built by tmn.load().");
  spec.def(py::init<>())
      .def_readwrite("system", &ModelSpec::system)
      .def_readwrite("hidden", &ModelSpec::hidden)
      .def_readwrite("horizons_s", &ModelSpec::horizons_s)
      .def_readwrite("feature_mean", &ModelSpec::feature_mean)
      .def_readwrite("feature_std", &ModelSpec::feature_std)
      .def_readwrite("output_scale", &ModelSpec::output_scale)
      .def_readwrite("window_s", &ModelSpec::window_s)
      .def_readwrite("max_gap_s", &ModelSpec::max_gap_s)
      .def_readwrite("kalman", &ModelSpec::kalman)
      .def_readwrite("gate", &ModelSpec::gate);
  vector_property<float>(spec, "w_ih", &ModelSpec::w_ih);
  vector_property<float>(spec, "w_hh", &ModelSpec::w_hh);
  vector_property<float>(spec, "b_ih", &ModelSpec::b_ih);
  vector_property<float>(spec, "b_hh", &ModelSpec::b_hh);
  vector_property<float>(spec, "w_out", &ModelSpec::w_out);
  vector_property<float>(spec, "b_out", &ModelSpec::b_out);
  vector_property<std::int8_t>(spec, "q_ih", &ModelSpec::q_ih);
  vector_property<std::int8_t>(spec, "q_hh", &ModelSpec::q_hh);
  vector_property<std::int8_t>(spec, "q_out", &ModelSpec::q_out);
  vector_property<float>(spec, "s_ih", &ModelSpec::s_ih);
  vector_property<float>(spec, "s_hh", &ModelSpec::s_hh);
  vector_property<float>(spec, "s_out", &ModelSpec::s_out);

  py::class_<Prediction>(m, "Prediction", "One tick's answer (stage 5, actuation).")
      .def_readonly("stream", &Prediction::stream)
      .def_readonly("t", &Prediction::t)
      .def_readonly("status", &Prediction::status)
      .def_readonly("verdict", &Prediction::verdict)
      .def_readonly("restarted", &Prediction::restarted)
      .def_readonly("d2", &Prediction::d2)
      .def_readonly("cert_error", &Prediction::cert_error)
      .def_readonly("work", &Prediction::work)
      .def_readonly("total_ns", &Prediction::total_ns)
      .def_property_readonly("stage_ns",
                             [](const Prediction& p) {
                               py::dict d;
                               const char* names[kStages] = {"ingest", "prior", "network",
                                                             "gate", "actuation"};
                               for (int i = 0; i < kStages; ++i) d[names[i]] = p.stage_ns[i];
                               return d;
                             })
      .def_property_readonly("path", [](const Prediction& p) {
        py::array_t<double> a({static_cast<py::ssize_t>(p.horizons), py::ssize_t{2}});
        std::memcpy(a.mutable_data(), p.path.data(), 2 * p.horizons * sizeof(double));
        return a;
      });

  py::class_<SolverGate>(m, "SolverGate", "Stage 4 on its own, for tests and training.")
      .def(py::init<const GateParams&, int, double, bool>(), py::arg("params"),
           py::arg("horizons"), py::arg("dh"), py::arg("guarded") = false,
           "guarded: the engine's wall-clock guard (off here by default, so that tests of "
           "the maths never depend on the scheduler)")
      .def("matrix",
           [](const SolverGate& g) {
             const solver::CsrMatrix& a = g.matrix();
             const py::ssize_t n = a.n();
             py::array_t<double> d({n, n});
             std::fill_n(d.mutable_data(), n * n, 0.0);
             for (int i = 0; i < a.n(); ++i)
               for (int p = a.indptr()[i]; p < a.indptr()[i + 1]; ++p)
                 d.mutable_data()[i * n + a.indices()[p]] = a.data()[p];
             return d;
           })
      .def(
          "run",
          [](SolverGate& g, const carray<float>& delta, const carray<double>& prior,
             const carray<double>& inv_var, const carray<double>& v) {
            const py::ssize_t P = 2 * static_cast<py::ssize_t>(g.horizons());
            check_length(delta, P, "delta");
            check_length(prior, P, "prior");
            check_length(inv_var, P, "inv_var");
            check_length(v, 2, "v");
            std::vector<double> path(P, 0.0);
            const GateResult r = g.run(delta.data(), prior.data(), inv_var.data(), v.data(),
                                       path.data());
            py::dict out = certificate_dict(r.cert);
            out["cert_error"] = bound_as_float(r.cert.error_bound);  // as a Prediction stores it
            out["verdict"] = r.verdict;
            out["d2"] = r.d2;
            out["path"] = r.verdict == Verdict::pass ? py::object(to_array(path)) : py::none();
            return out;
          },
          py::arg("delta"), py::arg("prior"), py::arg("inv_var"), py::arg("v"));

  m.def(
      "jacobi_solve",
      [](const carray<std::int64_t>& indptr, const carray<std::int64_t>& indices,
         const carray<double>& data, const carray<double>& b, const carray<double>& x0,
         double eps, std::uint64_t budget, py::object lambda_lb, double omega) {
        const int n = static_cast<int>(b.size());
        check_length(x0, n, "x0");
        // indices arrive as int64 so that nothing wraps silently on narrowing
        const auto narrow = [](const carray<std::int64_t>& a, const char* name) {
          std::vector<std::int32_t> v(a.size());
          for (py::ssize_t i = 0; i < a.size(); ++i) {
            const std::int64_t x = a.data()[i];
            if (x < 0 || x > std::numeric_limits<std::int32_t>::max())
              throw py::value_error(std::string(name) + " entries must be in [0, 2^31)");
            v[i] = static_cast<std::int32_t>(x);
          }
          return v;
        };
        solver::CsrMatrix a(n, narrow(indptr, "indptr"), narrow(indices, "indices"),
                            to_vector(data));
        const double lb =
            lambda_lb.is_none() ? a.gershgorin_lower_bound() : lambda_lb.cast<double>();
        std::vector<double> x = to_vector(x0), r(n);
        if (!(omega > 0.0 && omega < 2.0)) throw py::value_error("omega must be in (0, 2)");
        const solver::Certificate c = solver::jacobi_solve(a, b.data(), x.data(), r.data(), eps,
                                                           budget, lb, omega);
        return py::make_tuple(to_array(x), certificate_dict(c));
      },
      py::arg("indptr"), py::arg("indices"), py::arg("data"), py::arg("b"), py::arg("x0"),
      py::arg("eps"), py::arg("budget"), py::arg("lambda_lb") = py::none(),
      py::arg("omega") = 1.0,
      "Certified (damped) Jacobi solve of A x = b (A in CSR). lambda_lb defaults to "
      "Gershgorin's bound; omega = 1 is plain Jacobi.");

  py::class_<Engine>(m, "Engine", "The five-stage tick engine (one thread at a time).")
      .def(py::init<const ModelSpec&, Precision, std::uint32_t, Isa>(), py::arg("spec"),
           py::arg("precision"), py::arg("max_streams"), py::arg("isa"))
      .def(
          "tick",
          [](Engine& e, double t, double x, double y, double vx, double vy, std::uint64_t stream) {
            Prediction p;
            const Status st = e.tick(stream, Tick{t, x, y, vx, vy}, p);
            if (st != Status::ok)
              raise_tick_error(st, "tick t=" + py::repr(py::float_(t)).cast<std::string>() +
                                       " on stream " + std::to_string(stream) + " refused");
            return p;
          },
          py::arg("t"), py::arg("x"), py::arg("y"), py::arg("vx"), py::arg("vy"),
          py::arg("stream") = 0,
          "Run one tick through all five stages; raises TickError on bad input.")
      .def(
          "reset",
          [](Engine& e, std::uint64_t stream) {
            const Status st = e.reset(stream);
            if (st != Status::ok)
              raise_tick_error(st, "stream " + std::to_string(stream) + " is not held");
          },
          py::arg("stream"), "Forget a stream; raises TickError (unknown_stream).")
      .def("evict_idle", &Engine::evict_idle, py::arg("idle_s"))
      .def("replay", &replay, py::arg("t"), py::arg("x"), py::arg("y"), py::arg("vx"),
           py::arg("vy"), py::arg("stream") = py::none(), py::arg("candidates") = false)
      .def(
          "network_step",
          [](Engine& e, const carray<float>& z, const carray<float>& h) {
            check_length(z, kFeatures, "z");
            check_length(h, e.hidden(), "h");
            std::vector<float> hv = to_vector(h), y(2 * e.horizons());
            e.network_step(z.data(), hv.data(), y.data());
            return py::make_tuple(to_array(hv), to_array(y));
          },
          py::arg("z"), py::arg("h"), "One GRU step + head outside any stream: (h', y).")
      .def(
          "int8_scratch",
          [](const Engine& e) {
            const GruScratch& s = e.scratch();
            const std::size_t H = e.hidden(), G = 3 * H, O = 2 * e.horizons();
            py::dict d;
            d["xq"] = buffer_to_array<std::int8_t>(s.xq, kFeatures);
            d["hq_out"] = buffer_to_array<std::int8_t>(s.hq, H);
            d["acc_ih"] = buffer_to_array<std::int32_t>(s.acc_ih, G);
            d["acc_hh"] = buffer_to_array<std::int32_t>(s.acc_hh, G);
            d["acc_out"] = buffer_to_array<std::int32_t>(s.acc_out, O);
            d["x_scale"] = s.x_scale;
            return d;
          },
          "Quantised inputs and int32 accumulators left by the last INT8 step.")
      .def(
          "time_network_steps",
          [](Engine& e, std::uint64_t n) {
            // The bare network step, timed like a tick stage, for the
            // benchmark's "physical limit". The checksum consumes y.
            const int H = e.hidden();
            std::vector<float> z{0.1f, -0.2f, 0.3f, -0.4f}, h(H, 0.0f), y(2 * e.horizons());
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
          },
          py::arg("n"))
      .def_property_readonly("horizons", &Engine::horizons)
      .def_property_readonly("hidden", &Engine::hidden)
      .def_property_readonly("system", &Engine::system)
      .def_property_readonly("precision", &Engine::precision)
      .def_property_readonly("isa", &Engine::isa)
      .def_property_readonly("restarts", &Engine::restarts)
      .def_property_readonly("stream_count", [](const Engine& e) { return e.streams().size(); })
      .def_property_readonly("max_streams",
                             [](const Engine& e) { return e.streams().capacity(); });

  bind_limits(m);

  m.def("allowed_cpus", &allowed_cpus, "CPUs this process may run on.");
  py::class_<ServerConfig>(m, "ServerConfig")
      .def(py::init<>())
      .def_readwrite("endpoint", &ServerConfig::endpoint)
      .def_readwrite("pub_endpoint", &ServerConfig::pub_endpoint)
      .def_readwrite("core", &ServerConfig::core)
      .def_readwrite("io_core", &ServerConfig::io_core)
      .def_readwrite("spin", &ServerConfig::spin)
      .def_readwrite("rt_priority", &ServerConfig::rt_priority)
      .def_readwrite("lock_memory", &ServerConfig::lock_memory)
      .def_readwrite("idle_evict_s", &ServerConfig::idle_evict_s)
      .def_readwrite("score_every_s", &ServerConfig::score_every_s)
      .def_readwrite("echo", &ServerConfig::echo)
      .def_readwrite("reclaim_idle_s", &ServerConfig::reclaim_idle_s)
      .def_readwrite("curve_secret_key", &ServerConfig::curve_secret_key)
      .def_readwrite("client_keys", &ServerConfig::client_keys);
  py::class_<Server>(m, "Server", "The tmn-serve loop; see cpp/include/tmn/server.hpp.")
      .def(py::init<Engine*, const ServerConfig&>(), py::arg("engine"), py::arg("config"),
           py::keep_alive<1, 2>())
      .def("start", &Server::start, py::call_guard<py::gil_scoped_release>())
      .def("stop", &Server::stop, py::call_guard<py::gil_scoped_release>())
      .def_property_readonly("running", &Server::running)
      .def(
          "next_control",
          [](Server& s, double timeout_s) -> py::object {
            ControlRequest r;
            bool got = false;
            {
              py::gil_scoped_release release;
              got = s.next_control(r, timeout_s);
            }
            if (!got) return py::none();
            return py::make_tuple(r.token, py::bytes(r.payload), r.client_key);
          },
          py::arg("timeout_s"),
          "(token, JSON bytes, client key) of the next control request, or None.")
      .def(
          "reply_control",
          [](Server& s, std::uint64_t token, const py::bytes& json) {
            s.reply_control(token, std::string(json));
          },
          py::arg("token"), py::arg("json"))
      .def("reset_stream", &Server::reset_stream, py::arg("stream"),
           py::call_guard<py::gil_scoped_release>())
      .def(
          "swap_engine",
          [](Server& s, Engine* next) {
            py::gil_scoped_release release;
            s.swap_engine(next);
          },
          py::arg("engine"), "Swap the engine between two requests. Keep both alive until it returns.")
      .def("scoped_stream", &Server::scoped_stream, py::arg("client_key"), py::arg("stream"),
           "The engine's id of a client's stream (its CURVE key's scope).")
      .def_property_readonly("bound_endpoint", &Server::bound_endpoint)
      .def("stats", &server_stats)
      .def(
          "stream_accuracy",
          [](const Server& s, std::uint64_t stream) {
            const LiveAccuracy& live = s.live();
            return per_horizon(live, s.engine()->horizons_s(),
                               [&](int k) { return live.stream(stream, k); });
          },
          py::arg("stream"), "Live accuracy of one stream per horizon ([] if not held).")
      .def(
          "scored_streams",
          [](const Server& s) {
            const SlotIndex& idx = s.live().streams();
            std::vector<std::uint64_t> ids;
            for (std::uint32_t i = 0; i < idx.capacity(); ++i)
              if (idx.live(i)) ids.push_back(idx.id(i));
            return ids;
          })
      .def("warnings", &Server::warnings);
}
