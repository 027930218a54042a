// bind_server.cpp — the tmn-serve loop (ServerConfig, Server) and its stats
// as JSON-ready dicts for the control plane (python/tmn/serve.py).
#include <pybind11/stl.h>

#include "bindings.hpp"
#include "tmn/engine.hpp"
#include "tmn/histogram.hpp"
#include "tmn/live_accuracy.hpp"
#include "tmn/protocol.hpp"
#include "tmn/server.hpp"
#include "tmn/slot_index.hpp"

namespace tmn::bindings {

namespace {

py::dict histogram_dict(const Histogram& h) {
  py::dict d;
  d["count"] = h.count();
  const bool any = h.count() > 0;
  d["mean"] = any ? py::object(py::float_(h.mean())) : py::object(py::none());
  for (const ReportedPercentile& q : kReportedPercentiles)
    d[q.name] = any ? py::object(py::float_(h.percentile(q.p))) : py::object(py::none());
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

std::uint64_t get(const std::atomic<std::uint64_t>& a) {
  return a.load(std::memory_order_relaxed);
}

// Tick errors, frame errors and verdicts by name, with the gate's figures.
void add_outcome_counts(py::dict& d, const ServerCounters& c) {
  py::dict errors;
  for (Status st : kStatuses)
    if (st != Status::ok) errors[status_name(st)] = get(c.by_status[static_cast<int>(st)]);
  d["tick_errors"] = errors;
  py::dict frame_errors;  // the JSON errors are tmn-serve's control_errors
  for (wire::FrameError e : wire::kFrameErrors)
    if (e != wire::FrameError::bad_json && e != wire::FrameError::bad_request &&
        e != wire::FrameError::unknown_command)
      frame_errors[wire::frame_error_name(e)] = get(c.by_frame_error[static_cast<int>(e)]);
  d["frame_errors"] = frame_errors;
  py::dict verdicts;
  for (Verdict v : kVerdicts) verdicts[verdict_name(v)] = get(c.by_verdict[static_cast<int>(v)]);
  d["verdicts"] = verdicts;
  const std::uint64_t pass = get(c.by_verdict[0]);
  const std::uint64_t gated = pass + get(c.by_verdict[1]) + get(c.by_verdict[2]);
  d["gate_pass_rate"] = gated ? py::object(py::float_(static_cast<double>(pass) / gated)) : py::object(py::none());
  d["mean_cert_error"] = pass ? py::object(py::float_(c.cert_sum_pass.load(std::memory_order_relaxed) / pass))
                              : py::object(py::none());
}

// The sum of one histogram over every loop (`of` picks it from a server).
template <class F>
py::dict summed(const std::vector<const Server*>& servers, F&& of) {
  const Histogram& first = of(*servers.front());
  Histogram sum(first.lowest(), first.octaves(), first.sub());
  for (const Server* s : servers) sum.add(of(*s));
  return histogram_dict(sum);
}

// The stats of one daemon: its counters summed over its loops (one per core,
// tmn-serve --cores), its histograms merged bucket by bucket, so every
// percentile is that of all its requests.
py::dict server_stats(const std::vector<const Server*>& servers) {
  if (servers.empty()) throw std::invalid_argument("stats: no server");
  const Server& one = *servers.front();
  ServerCounters c;  // the sums
  const auto add = [](std::atomic<std::uint64_t>& to, const std::atomic<std::uint64_t>& v) {
    to.store(to.load(std::memory_order_relaxed) + v.load(std::memory_order_relaxed),
             std::memory_order_relaxed);
  };
  std::uint32_t streams = 0;
  for (const Server* s : servers) {
    const ServerCounters& k = s->counters();
    for (auto m : {&ServerCounters::messages, &ServerCounters::batches, &ServerCounters::ticks,
                   &ServerCounters::ticks_ok, &ServerCounters::control,
                   &ServerCounters::dropped_replies, &ServerCounters::dropped_pub,
                   &ServerCounters::reloads, &ServerCounters::evicted,
                   &ServerCounters::loop_iterations, &ServerCounters::reclaimed,
                   &ServerCounters::refused_peers, &ServerCounters::control_overloaded,
                   &ServerCounters::dropped_at_stop, &ServerCounters::quota_refused})
      add(c.*m, k.*m);
    for (int i = 0; i < 8; ++i) add(c.by_status[i], k.by_status[i]);
    for (int i = 0; i < 16; ++i) add(c.by_frame_error[i], k.by_frame_error[i]);
    for (int i = 0; i < 8; ++i) add(c.by_verdict[i], k.by_verdict[i]);
    c.cert_sum_pass.store(c.cert_sum_pass.load(std::memory_order_relaxed) +
                              k.cert_sum_pass.load(std::memory_order_relaxed),
                          std::memory_order_relaxed);
    streams += s->stream_count();
  }
  py::dict d;
  d["messages"] = get(c.messages);
  d["batches"] = get(c.batches);
  d["ticks"] = get(c.ticks);
  d["ticks_ok"] = get(c.ticks_ok);
  d["control_requests"] = get(c.control);
  d["dropped_replies"] = get(c.dropped_replies);
  d["dropped_pub"] = get(c.dropped_pub);
  d["reloads"] = get(one.counters().reloads);  // every loop swaps on each reload
  d["evicted_streams"] = get(c.evicted);
  d["loop_iterations"] = get(c.loop_iterations);
  d["reclaimed_streams"] = get(c.reclaimed);
  d["refused_peers"] = get(c.refused_peers);
  d["control_overloaded"] = get(c.control_overloaded);
  d["dropped_at_stop"] = get(c.dropped_at_stop);
  d["quota_refused"] = get(c.quota_refused);
  d["max_streams_per_client"] = one.stream_quota();  // per loop
  d["streams"] = streams;
  d["loops"] = servers.size();
  add_outcome_counts(d, c);
  py::dict lat;
  for (int i = 0; i < kStages; ++i)
    lat[kStageNames[i]] = summed(servers, [i](const Server& s) -> const Histogram& {
      return s.stage(i);
    });
  lat["tick"] = summed(servers, [](const Server& s) -> const Histogram& { return s.tick_total(); });
  lat["server"] = summed(servers, [](const Server& s) -> const Histogram& {
    return s.server_latency();
  });
  for (int i = 0; i < kServerPhases; ++i)
    lat[(std::string("server_") + kServerPhaseNames[i]).c_str()] =
        summed(servers, [i](const Server& s) -> const Histogram& { return s.server_phase(i); });
  lat["report_interval"] = summed(servers, [](const Server& s) -> const Histogram& {
    return s.report_interval();
  });
  d["latency_ns"] = lat;
  const LiveAccuracy& live = one.live();
  const std::vector<double> h = one.engine()->horizons_s();
  bool same_model = true;  // a reload swaps every loop's engine before stats run again
  for (const Server* s : servers) same_model = same_model && s->live().horizons() == live.horizons();
  std::uint64_t overwritten = 0;
  for (const Server* s : servers) overwritten += s->live().overwritten();
  std::vector<std::unique_ptr<Histogram>> overall;
  if (same_model)
    for (int k = 0; k < live.horizons(); ++k) {
      const Histogram& h0 = live.overall(k);
      overall.push_back(std::make_unique<Histogram>(h0.lowest(), h0.octaves(), h0.sub()));
      for (const Server* s : servers) overall.back()->add(s->live().overall(k));
    }
  d["live_accuracy"] =
      per_horizon(live, h, [&](int k) { return same_model ? overall[k].get() : nullptr; });
  d["live_accuracy_overwritten"] = overwritten;
  return d;
}

py::object next_control(Server& s, double timeout_s) {
  ControlRequest r;
  bool got = false;
  {
    py::gil_scoped_release release;
    got = s.next_control(r, timeout_s);
  }
  if (!got) return py::none();
  return py::make_tuple(r.token, py::bytes(r.payload), r.client_key);
}

std::vector<std::uint64_t> scored_streams(const Server& s) {
  const SlotIndex& idx = s.live().streams();
  std::vector<std::uint64_t> ids;
  for (std::uint32_t i = 0; i < idx.capacity(); ++i)
    if (idx.live(i)) ids.push_back(idx.id(i));
  return ids;
}

}  // namespace

void bind_server(py::module_& m) {
  // the per-peer bounds of docs/protocol.md ("Limits, queues and fairness")
  m.attr("MAX_JOBS_PER_PEER") = kMaxJobsPerPeer;
  m.attr("SEND_HWM") = kSendHwm;
  // the phases of a request's receive->send time, as named in stats (server_<phase>)
  py::tuple phases(kServerPhases);
  for (int i = 0; i < kServerPhases; ++i) phases[i] = kServerPhaseNames[i];
  m.attr("SERVER_PHASES") = phases;
  py::class_<Histogram>(m, "Histogram", "The fixed-memory log histogram of the stats (tests).")
      .def(py::init<double, int, int>(), py::arg("lowest"), py::arg("octaves"), py::arg("sub"))
      .def("record", &Histogram::record, py::arg("v"))
      .def("percentile", &Histogram::percentile, py::arg("p"))
      .def_property_readonly("count", &Histogram::count)
      .def_property_readonly("max", &Histogram::max)
      .def("bucket_counts", &Histogram::bucket_counts);
  using C = ServerConfig;
  py::class_<C>(m, "ServerConfig")
      .def(py::init<>())
      .def_readwrite("endpoint", &C::endpoint).def_readwrite("pub_endpoint", &C::pub_endpoint)
      .def_readwrite("core", &C::core).def_readwrite("io_core", &C::io_core)
      .def_readwrite("spin", &C::spin).def_readwrite("rt_priority", &C::rt_priority)
      .def_readwrite("lock_memory", &C::lock_memory)
      .def_readwrite("idle_evict_s", &C::idle_evict_s)
      .def_readwrite("score_every_s", &C::score_every_s).def_readwrite("echo", &C::echo)
      .def_readwrite("reclaim_idle_s", &C::reclaim_idle_s)
      .def_readwrite("curve_secret_key", &C::curve_secret_key)
      .def_readwrite("client_keys", &C::client_keys)
      .def_readwrite("max_streams_per_client", &C::max_streams_per_client);
  py::class_<Server>(m, "Server", "The tmn-serve loop; see cpp/include/tmn/server.hpp.")
      .def(py::init<Engine*, const ServerConfig&>(), py::arg("engine"), py::arg("config"),
           py::keep_alive<1, 2>())
      .def("start", &Server::start, py::call_guard<py::gil_scoped_release>())
      .def("stop", &Server::stop, py::call_guard<py::gil_scoped_release>())
      .def_property_readonly("running", &Server::running)
      .def("next_control", &next_control, py::arg("timeout_s"),
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
      .def("knows_client", &Server::knows_client, py::arg("client_key"))
      .def(
          "held_streams",
          [](Server& s) {
            std::vector<Server::HeldStream> held;
            {
              py::gil_scoped_release release;
              held = s.held_streams();
            }
            py::list out;
            for (const auto& h : held)
              out.append(py::make_tuple(h.engine_id, h.client_key, h.client_id));
            return out;
          },
          "[(engine id, owner's CURVE key or '', the client's id)] of every stream held.")
      .def_property_readonly("bound_endpoint", &Server::bound_endpoint)
      .def_property_readonly("stream_count", &Server::stream_count)
      .def("stats", [](const Server& s) { return server_stats({&s}); })
      .def(
          "stream_accuracy",
          [](const Server& s, std::uint64_t stream) {
            const LiveAccuracy& live = s.live();
            return per_horizon(live, s.engine()->horizons_s(),
                               [&](int k) { return live.stream(stream, k); });
          },
          py::arg("stream"), "Live accuracy of one stream per horizon ([] if not held).")
      .def("scored_streams", &scored_streams)
      .def("warnings", &Server::warnings);
  m.def(
      "loops_stats",
      [](const std::vector<const Server*>& servers) { return server_stats(servers); },
      py::arg("servers"),
      "The stats of several loops of one daemon (tmn-serve --cores): counters summed, "
      "histograms merged bucket by bucket.");
}

}  // namespace tmn::bindings
