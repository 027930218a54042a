#include "tmn/server.hpp"

#include <pthread.h>
#include <sched.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>
#include <zmq.h>

#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>

#include "tmn/clock.hpp"

namespace tmn {

namespace {

constexpr int kPollTimeoutMs = 100;         // blocking mode: heartbeat and stop latency
constexpr std::size_t kMaxDrain = 1 << 20;  // messages answered after stop()

template <class T>
void bump(std::atomic<T>& c, T by = 1) noexcept {
  c.store(c.load(std::memory_order_relaxed) + by, std::memory_order_relaxed);
}

std::string zmq_problem(const std::string& what) {
  return what + ": " + zmq_strerror(zmq_errno());
}

std::string cpu_list(const std::vector<int>& cpus) {
  std::string s;
  for (int c : cpus) s += (s.empty() ? "" : ",") + std::to_string(c);
  return s;
}

std::size_t record_bytes(int K) { return sizeof(wire::PredictionRecord) + 16u * K; }

// Write one prediction record (and its path) at out.
void write_record(const Prediction& p, Status st, int K, std::uint8_t* out) noexcept {
  wire::PredictionRecord r{};
  r.stream = p.stream;
  r.t = p.t;
  r.status = static_cast<std::uint8_t>(st);
  r.verdict = st == Status::ok ? static_cast<std::uint8_t>(p.verdict) : kNoPrediction;
  r.flags = p.restarted ? 1 : 0;
  r.work = p.work;
  r.d2 = p.d2;
  r.cert_error = p.cert_error;
  r.total_ns = p.total_ns;
  for (int s = 0; s < kStages; ++s) r.stage_ns[s] = p.stage_ns[s];
  std::memcpy(out, &r, sizeof r);
  if (st == Status::ok) {
    std::memcpy(out + sizeof r, p.path.data(), 16u * K);
  } else {
    const double nan = std::numeric_limits<double>::quiet_NaN();
    for (int i = 0; i < 2 * K; ++i) std::memcpy(out + sizeof r + 8u * i, &nan, 8);
  }
}

void write_prediction_header(std::uint32_t count, std::uint32_t seq, int K,
                             std::uint8_t* out) noexcept {
  const wire::Header h{wire::kMagic, wire::kVersion,
                       static_cast<std::uint16_t>(wire::Kind::predictions), count, seq};
  const wire::PredictionInfo info{static_cast<std::uint16_t>(K),
                                  static_cast<std::uint16_t>(record_bytes(K)), 0};
  std::memcpy(out, &h, sizeof h);
  std::memcpy(out + sizeof h, &info, sizeof info);
}

}  // namespace

std::vector<int> allowed_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  std::vector<int> cpus;
  if (sched_getaffinity(0, sizeof set, &set) != 0) return cpus;
  for (int c = 0; c < CPU_SETSIZE; ++c)
    if (CPU_ISSET(c, &set)) cpus.push_back(c);
  return cpus;
}

Server::Server(Engine* engine, const ServerConfig& cfg) : cfg_(cfg), engine_(engine) {
  if (engine_ == nullptr) throw std::invalid_argument("server: engine is null");
  const std::vector<int> cpus = allowed_cpus();
  for (int core : {cfg_.core, cfg_.io_core}) {
    if (core < 0) continue;
    bool ok = false;
    for (int c : cpus) ok = ok || c == core;
    if (!ok)
      throw std::runtime_error("core " + std::to_string(core) +
                               " is not available to this process; valid cores: " +
                               cpu_list(cpus));
  }
  if (cfg_.rt_priority < 0 || cfg_.rt_priority > 99)
    throw std::invalid_argument("rt priority must be in [0, 99]");

  for (int s = 0; s < kStages; ++s) stage_[s] = std::make_unique<Histogram>(1.0, 34, 16);
  tick_total_ = std::make_unique<Histogram>(1.0, 34, 16);
  server_ns_ = std::make_unique<Histogram>(1.0, 34, 16);
  live_ = std::make_unique<LiveAccuracy>(engine_->streams().capacity(), engine_->horizons_s(),
                                         cfg_.score_every_s, engine_->error_resolution());
  reply_.assign(sizeof(wire::Header) + sizeof(wire::PredictionInfo) +
                    static_cast<std::size_t>(wire::kMaxBatch) * record_bytes(kMaxHorizons),
                0);
  pub_buf_.assign(sizeof(wire::Header) + sizeof(wire::PredictionInfo) + record_bytes(kMaxHorizons),
                  0);

  wake_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (wake_fd_ < 0) throw std::runtime_error("eventfd failed");
  ctx_ = zmq_ctx_new();
  if (ctx_ == nullptr) throw std::runtime_error(zmq_problem("zmq_ctx_new"));
  zmq_ctx_set(ctx_, ZMQ_IO_THREADS, 1);
  if (cfg_.io_core >= 0) zmq_ctx_set(ctx_, ZMQ_THREAD_AFFINITY_CPU_ADD, cfg_.io_core);

  const auto fail = [this](const std::string& what) {
    const std::string msg = zmq_problem(what);
    if (router_) zmq_close(router_);
    if (pub_) zmq_close(pub_);
    zmq_ctx_term(ctx_);
    ::close(wake_fd_);
    throw std::runtime_error(msg);
  };
  router_ = zmq_socket(ctx_, ZMQ_ROUTER);
  if (router_ == nullptr) fail("zmq_socket(ROUTER)");
  const int hwm = 100000, linger = 500;
  zmq_setsockopt(router_, ZMQ_SNDHWM, &hwm, sizeof hwm);
  zmq_setsockopt(router_, ZMQ_RCVHWM, &hwm, sizeof hwm);
  zmq_setsockopt(router_, ZMQ_LINGER, &linger, sizeof linger);
  if (zmq_bind(router_, cfg_.endpoint.c_str()) != 0) fail("cannot bind " + cfg_.endpoint);
  if (!cfg_.pub_endpoint.empty()) {
    pub_ = zmq_socket(ctx_, ZMQ_PUB);
    if (pub_ == nullptr) fail("zmq_socket(PUB)");
    zmq_setsockopt(pub_, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt(pub_, ZMQ_LINGER, &linger, sizeof linger);
    if (zmq_bind(pub_, cfg_.pub_endpoint.c_str()) != 0)
      fail("cannot bind PUB " + cfg_.pub_endpoint);
  }
}

Server::~Server() {
  stop();
  if (router_) zmq_close(router_);
  if (pub_) zmq_close(pub_);
  if (ctx_) zmq_ctx_term(ctx_);
  if (wake_fd_ >= 0) ::close(wake_fd_);
}

void Server::start() {
  if (thread_.joinable()) throw std::runtime_error("server already started");
  if (cfg_.lock_memory && mlockall(MCL_CURRENT | MCL_FUTURE) != 0) {
    std::lock_guard<std::mutex> lock(mu_);
    warnings_.push_back(std::string("mlockall failed (") + std::strerror(errno) +
                        "): memory may be paged out");
  }
  std::unique_lock<std::mutex> lock(mu_);
  thread_ = std::thread([this] { run(); });
  cv_.wait(lock, [this] { return running_.load(std::memory_order_acquire); });
}

void Server::stop() {
  if (!thread_.joinable()) return;
  stop_.store(true, std::memory_order_release);
  wake();
  thread_.join();
  cv_.notify_all();
}

void Server::wake() noexcept {
  const std::uint64_t one = 1;
  [[maybe_unused]] const ssize_t n = ::write(wake_fd_, &one, sizeof one);
}

std::vector<std::string> Server::warnings() const {
  std::lock_guard<std::mutex> lock(mu_);
  return warnings_;
}

std::uint32_t Server::stream_count() const noexcept { return engine_->streams().size(); }

void Server::setup_thread() noexcept {
  std::vector<std::string> w;
  if (cfg_.core >= 0) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cfg_.core, &set);
    const int rc = pthread_setaffinity_np(pthread_self(), sizeof set, &set);
    if (rc != 0) w.push_back(std::string("could not pin the loop: ") + std::strerror(rc));
  }
  if (cfg_.rt_priority > 0) {
    sched_param sp{};
    sp.sched_priority = cfg_.rt_priority;
    const int rc = pthread_setschedparam(pthread_self(), SCHED_FIFO, &sp);
    if (rc != 0)
      w.push_back(std::string("SCHED_FIFO priority ") + std::to_string(cfg_.rt_priority) +
                  " denied (" + std::strerror(rc) + "); running with normal scheduling");
  }
  // Prefault the stack the loop will use, and the reply buffers.
  volatile std::uint8_t stack[256 * 1024];
  for (std::size_t i = 0; i < sizeof stack; i += 4096) stack[i] = 0;
  for (std::size_t i = 0; i < reply_.size(); i += 4096) reply_[i] = 0;
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& s : w) warnings_.push_back(std::move(s));
}

void Server::run() noexcept {
  setup_thread();
  {
    std::lock_guard<std::mutex> lock(mu_);
    running_.store(true, std::memory_order_release);
  }
  cv_.notify_all();
  zmq_pollitem_t items[2] = {{router_, 0, ZMQ_POLLIN, 0}, {nullptr, wake_fd_, ZMQ_POLLIN, 0}};
  const std::uint64_t evict_period = clock::from_ns(1e9);
  while (!stop_.load(std::memory_order_acquire)) {
    bump(counters_.loop_iterations);
    if (pending_.load(std::memory_order_acquire)) service_commands();
    if (cfg_.spin) {
      receive_one(ZMQ_DONTWAIT);
    } else {
      items[0].revents = items[1].revents = 0;
      if (zmq_poll(items, 2, kPollTimeoutMs) > 0) {
        if (items[1].revents & ZMQ_POLLIN) {
          std::uint64_t v;
          [[maybe_unused]] const ssize_t n = ::read(wake_fd_, &v, sizeof v);
        }
        if (items[0].revents & ZMQ_POLLIN)
          while (receive_one(ZMQ_DONTWAIT) && !pending_.load(std::memory_order_relaxed)) {
          }
      }
    }
    const std::uint64_t now = clock::now();
    if (now >= next_evict_) {  // about once a second
      next_evict_ = now + evict_period;
      const std::uint64_t idle = clock::from_ns(cfg_.idle_evict_s * 1e9);
      bump(counters_.evicted, static_cast<std::uint64_t>(engine_->evict_idle(cfg_.idle_evict_s)));
      live_->evict_idle(now, idle);
    }
  }
  // stop: no new connections; answer what already arrived
  zmq_unbind(router_, cfg_.endpoint.c_str());
  for (std::size_t i = 0; i < kMaxDrain && receive_one(ZMQ_DONTWAIT); ++i) {
  }
  if (pending_.load(std::memory_order_acquire)) service_commands();
  running_.store(false, std::memory_order_release);
}

bool Server::receive_one(int flags) noexcept {
  // A request is [identity, payload] (DEALER) or [identity, empty, payload]
  // (REQ). Anything else is answered with bad_envelope.
  constexpr int kMaxParts = 3;
  zmq_msg_t parts[kMaxParts];
  zmq_msg_init(&parts[0]);
  if (zmq_msg_recv(&parts[0], router_, flags) < 0) {
    zmq_msg_close(&parts[0]);
    return false;
  }
  const std::uint64_t t_recv = clock::now();
  bump(counters_.messages);
  int n = 1;
  bool extra = false, more = zmq_msg_more(&parts[0]) != 0;
  while (more) {
    zmq_msg_t* m = n < kMaxParts ? &parts[n] : nullptr;
    zmq_msg_t rest;
    if (m == nullptr) {
      m = &rest;
      extra = true;
    }
    zmq_msg_init(m);
    const bool got = zmq_msg_recv(m, router_, 0) >= 0;
    more = got && zmq_msg_more(m) != 0;
    if (m == &rest || !got) zmq_msg_close(m);
    else ++n;
  }
  identity_size_ = std::min(zmq_msg_size(&parts[0]), sizeof identity_);
  std::memcpy(identity_, zmq_msg_data(&parts[0]), identity_size_);
  delimiter_ = false;
  zmq_msg_t* payload = nullptr;
  if (!extra && n == 2) {
    payload = &parts[1];
  } else if (!extra && n == 3 && zmq_msg_size(&parts[1]) == 0) {
    delimiter_ = true;
    payload = &parts[2];
  }
  const auto* data = payload ? static_cast<const std::uint8_t*>(zmq_msg_data(payload)) : nullptr;
  const std::size_t size = payload ? zmq_msg_size(payload) : 0;
  if (size == 0) {
    send_error(wire::FrameError::bad_envelope, 0,
               "expected [identity, (empty,) payload] with a non-empty payload");
  } else if (data[0] == '{') {
    // control: hand it to the control thread (allocation is fine here: this
    // is not the tick path)
    bump(counters_.control);
    {
      std::lock_guard<std::mutex> lock(mu_);
      const std::uint64_t token = next_token_++;
      envelopes_[token] = Envelope{
          std::string(reinterpret_cast<const char*>(identity_), identity_size_), delimiter_};
      control_in_.push_back(
          ControlRequest{token, std::string(reinterpret_cast<const char*>(data), size)});
    }
    cv_.notify_all();
  } else if (cfg_.echo) {
    send_reply(data, size);
    server_ns_->record(clock::to_ns(clock::now() - t_recv));
  } else {
    handle_ticks(data, size, t_recv);
  }
  for (int i = 0; i < n; ++i) zmq_msg_close(&parts[i]);
  return true;
}

void Server::send_error(wire::FrameError code, std::uint32_t seq, const char* msg) noexcept {
  bump(counters_.by_frame_error[static_cast<int>(code) & 15]);
  const std::size_t len = std::min<std::size_t>(std::strlen(msg), 1024);
  const wire::Header h{wire::kMagic, wire::kVersion, static_cast<std::uint16_t>(wire::Kind::error),
                       0, seq};
  const wire::ErrorBody b{static_cast<std::uint16_t>(code), static_cast<std::uint16_t>(len), 0};
  std::uint8_t* out = reply_.data();
  std::memcpy(out, &h, sizeof h);
  std::memcpy(out + sizeof h, &b, sizeof b);
  std::memcpy(out + sizeof h + sizeof b, msg, len);
  send_reply(out, sizeof h + sizeof b + len);
}

void Server::send_reply(const void* data, std::size_t n) noexcept {
  const int more = ZMQ_SNDMORE | ZMQ_DONTWAIT;
  if (zmq_send(router_, identity_, identity_size_, more) < 0 ||
      (delimiter_ && zmq_send(router_, "", 0, more) < 0) ||
      zmq_send(router_, data, n, ZMQ_DONTWAIT) < 0)
    bump(counters_.dropped_replies);
}

void Server::send_envelope_reply(const std::string& identity, bool delim, const void* data,
                                 std::size_t n) noexcept {
  const int more = ZMQ_SNDMORE | ZMQ_DONTWAIT;
  if (zmq_send(router_, identity.data(), identity.size(), more) < 0 ||
      (delim && zmq_send(router_, "", 0, more) < 0) ||
      zmq_send(router_, data, n, ZMQ_DONTWAIT) < 0)
    bump(counters_.dropped_replies);
}

void Server::handle_ticks(const std::uint8_t* data, std::size_t n, std::uint64_t t_recv) noexcept {
  wire::Header h;
  if (n < sizeof h) {
    send_error(wire::FrameError::bad_magic, 0, "frame shorter than the 16-byte header");
    return;
  }
  std::memcpy(&h, data, sizeof h);
  if (h.magic != wire::kMagic) {
    send_error(wire::FrameError::bad_magic, 0, "not a tmn frame: bad magic (and not JSON)");
    return;
  }
  if (h.version != wire::kVersion) {
    send_error(wire::FrameError::bad_version, h.seq, "unsupported frame version; this server speaks 1");
    return;
  }
  if (h.kind != static_cast<std::uint16_t>(wire::Kind::ticks)) {
    send_error(wire::FrameError::bad_kind, h.seq, "only tick batches (kind 1) are accepted");
    return;
  }
  if (h.count == 0) {
    send_error(wire::FrameError::empty_batch, h.seq, "a tick batch needs at least one tick");
    return;
  }
  if (h.count > wire::kMaxBatch) {
    send_error(wire::FrameError::batch_too_large, h.seq, "more than 4096 ticks in one frame");
    return;
  }
  if (n != sizeof h + static_cast<std::size_t>(h.count) * sizeof(wire::TickRecord)) {
    send_error(wire::FrameError::bad_size, h.seq, "frame length != 16 + 48 * count");
    return;
  }
  bump(counters_.batches);
  Engine& e = *engine_;
  const int K = e.horizons();
  const std::size_t rb = record_bytes(K);
  std::uint8_t* out = reply_.data();
  write_prediction_header(h.count, h.seq, K, out);
  std::uint8_t* rec = out + sizeof(wire::Header) + sizeof(wire::PredictionInfo);
  Prediction p;
  for (std::uint32_t i = 0; i < h.count; ++i, rec += rb) {
    wire::TickRecord tr;
    std::memcpy(&tr, data + sizeof h + i * sizeof tr, sizeof tr);
    const Tick k{tr.t, tr.x, tr.y, tr.vx, tr.vy};
    const Status st = e.tick(tr.stream, k, p);
    write_record(p, st, K, rec);
    bump(counters_.ticks);
    bump(counters_.by_status[static_cast<int>(st) & 7]);
    if (st != Status::ok) continue;
    bump(counters_.ticks_ok);
    bump(counters_.by_verdict[static_cast<int>(p.verdict) & 7]);
    if (p.verdict == Verdict::pass) bump(counters_.cert_sum_pass, static_cast<double>(p.cert_error));
    for (int s = 0; s < kStages; ++s) stage_[s]->record(p.stage_ns[s]);
    tick_total_->record(p.total_ns);
    live_->observe(k, p, t_recv);
    if (pub_ != nullptr) {
      // topic: the stream id, 8 bytes little-endian; then a one-record frame
      std::uint8_t* pb = pub_buf_.data();
      write_prediction_header(1, h.seq, K, pb);
      std::memcpy(pb + sizeof(wire::Header) + sizeof(wire::PredictionInfo), rec, rb);
      if (zmq_send(pub_, &tr.stream, sizeof tr.stream, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0 ||
          zmq_send(pub_, pb, sizeof(wire::Header) + sizeof(wire::PredictionInfo) + rb,
                   ZMQ_DONTWAIT) < 0)
        bump(counters_.dropped_pub);
    }
  }
  send_reply(out, static_cast<std::size_t>(rec - out));
  server_ns_->record(clock::to_ns(clock::now() - t_recv));
}

// Loop thread: run posted commands and send control replies.
void Server::service_commands() noexcept {
  std::deque<std::pair<std::uint64_t, std::string>> replies;
  {
    std::lock_guard<std::mutex> lock(mu_);
    pending_.store(false, std::memory_order_relaxed);
    replies.swap(control_out_);
    if (cmd_ == Cmd::reset) {
      cmd_status_ = engine_->reset(cmd_stream_);
      live_->forget(cmd_stream_);
    } else if (cmd_ == Cmd::swap) {
      std::swap(engine_, cmd_engine_);  // cmd_engine_ now holds the old engine
      std::swap(live_, cmd_live_);
      bump(counters_.reloads);
    }
    if (cmd_ != Cmd::none) {
      cmd_ = Cmd::none;
      cmd_done_ = true;
    }
  }
  cv_.notify_all();
  for (auto& [token, json] : replies) {
    Envelope env;
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = envelopes_.find(token);
      if (it == envelopes_.end()) continue;
      env = std::move(it->second);
      envelopes_.erase(it);
    }
    send_envelope_reply(env.identity, env.delimiter, json.data(), json.size());
  }
}

bool Server::next_control(ControlRequest& out, double timeout_s) {
  std::unique_lock<std::mutex> lock(mu_);
  const auto deadline = std::chrono::steady_clock::now() +
                        std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                            std::chrono::duration<double>(timeout_s));
  if (!cv_.wait_until(lock, deadline, [this] { return !control_in_.empty(); })) return false;
  out = std::move(control_in_.front());
  control_in_.pop_front();
  return true;
}

void Server::reply_control(std::uint64_t token, const std::string& json) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    control_out_.emplace_back(token, json);
    pending_.store(true, std::memory_order_release);
  }
  if (!running()) {  // the loop is gone: nobody can send it
    std::lock_guard<std::mutex> lock(mu_);
    control_out_.clear();
    return;
  }
  wake();
}

Status Server::reset_stream(std::uint64_t stream) {
  std::unique_lock<std::mutex> lock(mu_);
  if (!running()) {
    live_->forget(stream);
    return engine_->reset(stream);
  }
  cmd_ = Cmd::reset;
  cmd_stream_ = stream;
  cmd_done_ = false;
  pending_.store(true, std::memory_order_release);
  lock.unlock();
  wake();
  lock.lock();
  cv_.wait(lock, [this] { return cmd_done_ || !running(); });
  if (!cmd_done_) {  // the loop stopped before it ran the command
    cmd_ = Cmd::none;
    live_->forget(stream);
    return engine_->reset(stream);
  }
  return cmd_status_;
}

Engine* Server::swap_engine(Engine* next) {
  if (next == nullptr) throw std::invalid_argument("swap_engine: engine is null");
  auto live = std::make_unique<LiveAccuracy>(next->streams().capacity(), next->horizons_s(),
                                             cfg_.score_every_s, next->error_resolution());
  std::unique_lock<std::mutex> lock(mu_);
  cmd_ = Cmd::swap;
  cmd_engine_ = next;
  cmd_live_ = std::move(live);
  cmd_done_ = false;
  if (!running()) {
    std::swap(engine_, cmd_engine_);
    std::swap(live_, cmd_live_);
    cmd_ = Cmd::none;
    bump(counters_.reloads);
  } else {
    pending_.store(true, std::memory_order_release);
    lock.unlock();
    wake();
    lock.lock();
    cv_.wait(lock, [this] { return cmd_done_ || !running(); });
    if (!cmd_done_) {
      std::swap(engine_, cmd_engine_);
      std::swap(live_, cmd_live_);
      cmd_ = Cmd::none;
      bump(counters_.reloads);
    }
  }
  Engine* old = cmd_engine_;
  cmd_engine_ = nullptr;
  cmd_live_.reset();  // the old live accuracy, no longer read by the loop
  return old;
}

}  // namespace tmn
