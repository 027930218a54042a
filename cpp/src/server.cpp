#include "tmn/server.hpp"

#include <pthread.h>
#include <sched.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>
#include <zmq.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <limits>
#include <new>
#include <random>
#include <stdexcept>

#include "tmn/clock.hpp"
#include "tmn/slot_index.hpp"

namespace tmn {

namespace {

std::uint64_t rotl(std::uint64_t x, int b) noexcept { return (x << b) | (x >> (64 - b)); }

// SipHash-2-4 (Aumasson and Bernstein): a keyed pseudo-random function, so
// that nobody without the key can invert or predict its outputs.
std::uint64_t siphash24(std::uint64_t k0, std::uint64_t k1, const std::uint8_t* m,
                        std::size_t n) noexcept {
  std::uint64_t v0 = 0x736f6d6570736575ull ^ k0, v1 = 0x646f72616e646f6dull ^ k1,
                v2 = 0x6c7967656e657261ull ^ k0, v3 = 0x7465646279746573ull ^ k1;
  const auto round = [&] {
    v0 += v1; v1 = rotl(v1, 13); v1 ^= v0; v0 = rotl(v0, 32);
    v2 += v3; v3 = rotl(v3, 16); v3 ^= v2;
    v0 += v3; v3 = rotl(v3, 21); v3 ^= v0;
    v2 += v1; v1 = rotl(v1, 17); v1 ^= v2; v2 = rotl(v2, 32);
  };
  const auto word = [&](std::size_t at, std::size_t len) {  // little-endian
    std::uint64_t w = 0;
    for (std::size_t i = 0; i < len; ++i) w |= static_cast<std::uint64_t>(m[at + i]) << (8 * i);
    return w;
  };
  const std::size_t full = n - n % 8;
  for (std::size_t i = 0; i < full; i += 8) {
    const std::uint64_t w = word(i, 8);
    v3 ^= w;
    round();
    round();
    v0 ^= w;
  }
  const std::uint64_t last = (static_cast<std::uint64_t>(n) << 56) | word(full, n % 8);
  v3 ^= last;
  round();
  round();
  v0 ^= last;
  v2 ^= 0xff;
  for (int r = 0; r < 4; ++r) round();
  return v0 ^ v1 ^ v2 ^ v3;
}

// SipHash of bytes followed by one domain byte (keeps the uses apart).
std::uint64_t keyed(const std::uint64_t key[2], const void* data, std::size_t n,
                    std::uint8_t domain) noexcept {
  std::uint8_t buf[300];
  n = std::min(n, sizeof buf - 1);
  std::memcpy(buf, data, n);
  buf[n] = domain;
  return siphash24(key[0], key[1], buf, n + 1);
}

enum : std::uint8_t { kScopeK0 = 0, kScopeK1 = 1, kOwnerOfKey = 2, kOwnerOfPeer = 3 };

constexpr int kPollTimeoutMs = 100;  // blocking mode: heartbeat and stop latency

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

std::size_t record_bytes(int K) { return wire::prediction_record_bytes(K); }

// Write one prediction record (and its path and radius) at out.
void write_record(const Prediction& p, Status st, int K, std::uint8_t* out) noexcept {
  wire::PredictionRecord r{};
  r.stream = p.stream;
  r.t = p.t;
  r.status = static_cast<std::uint8_t>(st);
  r.verdict = st == Status::ok ? static_cast<std::uint8_t>(p.verdict) : kNoPrediction;
  r.flags = p.restarted ? 1 : 0;
  const bool ok = st == Status::ok;  // a refused tick has no gate figures (not the last tick's)
  r.work = ok ? p.work : 0;
  r.d2 = ok ? p.d2 : std::numeric_limits<float>::quiet_NaN();
  r.cert_error = ok ? p.cert_error : std::numeric_limits<float>::quiet_NaN();
  r.total_ns = p.total_ns;
  for (int s = 0; s < kStages; ++s) r.stage_ns[s] = p.stage_ns[s];
  r.t_grid = ok ? p.t_grid : std::numeric_limits<double>::quiet_NaN();
  std::memcpy(out, &r, sizeof r);
  std::uint8_t* radius = out + sizeof r + 16u * K;
  if (st == Status::ok) {
    std::memcpy(out + sizeof r, p.path.data(), 16u * K);
    std::memcpy(radius, p.radius.data(), 4u * K);
  } else {
    const double nan = std::numeric_limits<double>::quiet_NaN();
    const float fnan = std::numeric_limits<float>::quiet_NaN();
    for (int i = 0; i < 2 * K; ++i) std::memcpy(out + sizeof r + 8u * i, &nan, 8);
    for (int i = 0; i < K; ++i) std::memcpy(radius + 4u * i, &fnan, 4);
  }
}

// Write one point record: the prediction dt seconds after the tick.
void write_point(const Prediction& p, Status st, double dt, std::uint8_t* out) noexcept {
  wire::PointRecord r{};
  const bool ok = st == Status::ok;
  r.stream = p.stream;
  r.t = p.t;
  r.status = static_cast<std::uint8_t>(st);
  r.verdict = ok ? static_cast<std::uint8_t>(p.verdict) : kNoPrediction;
  r.flags = p.restarted ? 1 : 0;
  const std::array<double, 2> q = p.at(dt);  // NaN when not ok
  r.x = q[0];
  r.y = q[1];
  r.radius = ok ? p.radius_at(dt) : std::numeric_limits<float>::quiet_NaN();
  r.total_ns = p.total_ns;
  std::memcpy(out, &r, sizeof r);
}

void write_points_header(std::uint32_t count, std::uint32_t seq, std::uint8_t* out) noexcept {
  const wire::Header h{wire::kMagic, wire::kVersion,
                       static_cast<std::uint16_t>(wire::Kind::points), count, seq};
  std::memcpy(out, &h, sizeof h);
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

// Which client holds each engine stream, for the per-client quota and for
// mapping engine ids back to (client, id). One per engine (swapped with it:
// a new engine starts with no streams). Sized at construction for every
// stream the engine can hold; nothing here allocates afterwards. Loop thread
// only. It follows the engine's table: every removal the server makes
// (reset, idle eviction, reclaim) is mirrored by release() or sync().
class StreamOwners {
 public:
  explicit StreamOwners(std::uint32_t capacity)
      : streams_(capacity), owner_slot_(capacity), client_id_(capacity), owners_(capacity),
        held_(capacity, 0) {}

  // Streams the owner holds.
  std::uint32_t held(std::uint64_t owner) const noexcept {
    const std::uint32_t o = owners_.find(owner);
    return o == SlotIndex::kNone ? 0 : held_[o];
  }
  // A stream the engine just created for this owner.
  void own(std::uint64_t engine_id, std::uint64_t owner, std::uint64_t client_id) noexcept {
    if (streams_.find(engine_id) != SlotIndex::kNone) return;
    std::uint32_t o = owners_.find(owner);
    if (o == SlotIndex::kNone) {
      o = owners_.insert(owner);
      if (o == SlotIndex::kNone) return;  // cannot happen: an owner holds >= 1 stream
      held_[o] = 0;
    }
    const std::uint32_t s = streams_.insert(engine_id);
    if (s == SlotIndex::kNone) {  // cannot happen while sync() follows the engine
      if (held_[o] == 0) owners_.erase(owner);
      return;
    }
    owner_slot_[s] = o;
    client_id_[s] = client_id;
    ++held_[o];
  }
  // The engine no longer holds this stream.
  void release(std::uint64_t engine_id) noexcept {
    const std::uint32_t s = streams_.find(engine_id);
    if (s == SlotIndex::kNone) return;
    const std::uint32_t o = owner_slot_[s];
    streams_.erase(engine_id);
    if (--held_[o] == 0) owners_.erase(owners_.id(o));
  }
  // After an eviction in the engine: release every stream it dropped.
  void sync(const StreamTable& table) noexcept {
    for (std::uint32_t s = 0; s < streams_.capacity(); ++s)
      if (streams_.live(s) && table.find(streams_.id(s)) == StreamTable::kNone)
        release(streams_.id(s));
  }
  // Reset the owner's streams idle (wall time) since before `before`; how many.
  std::uint32_t reclaim(std::uint64_t owner, std::uint64_t before, Engine& engine,
                        LiveAccuracy& live) noexcept {
    const std::uint32_t o = owners_.find(owner);
    if (o == SlotIndex::kNone) return 0;
    std::uint32_t n = 0;
    for (std::uint32_t s = 0; s < streams_.capacity(); ++s) {
      if (!streams_.live(s) || owner_slot_[s] != o) continue;
      const std::uint64_t id = streams_.id(s);
      const std::uint32_t slot = engine.streams().find(id);
      if (slot != StreamTable::kNone && engine.streams().last_seen(slot) >= before) continue;
      engine.reset(id);
      live.forget(id);
      const bool last = held_[o] == 1;
      release(id);
      ++n;
      if (last) break;  // the owner's slot is gone
    }
    return n;
  }
  template <class F>
  void each(F&& f) const {
    for (std::uint32_t s = 0; s < streams_.capacity(); ++s)
      if (streams_.live(s)) f(streams_.id(s), owners_.id(owner_slot_[s]), client_id_[s]);
  }

 private:
  SlotIndex streams_;                       // engine id -> slot
  std::vector<std::uint32_t> owner_slot_;   // per stream slot: its owner's slot in owners_
  std::vector<std::uint64_t> client_id_;    // per stream slot: the client's own id
  SlotIndex owners_;                        // owner id -> slot
  std::vector<std::uint32_t> held_;         // per owner slot: streams held
};

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
  if (!(cfg_.idle_evict_s >= 0.0) || !(cfg_.reclaim_idle_s >= 0.0))
    throw std::invalid_argument("idle times must be >= 0 (and not NaN)");
  const bool curve = !cfg_.curve_secret_key.empty();
  if (curve) {
    std::uint8_t raw[32];
    if (cfg_.curve_secret_key.size() != 40 ||
        zmq_z85_decode(raw, cfg_.curve_secret_key.c_str()) == nullptr)
      throw std::invalid_argument("the CURVE secret key must be 40 characters of Z85");
    for (const std::string& k : cfg_.client_keys)
      if (k.size() != 40 || zmq_z85_decode(raw, k.c_str()) == nullptr)
        throw std::invalid_argument("a client key is not 40 characters of Z85: " + k);
  }
  {  // the secret of every keyed hash: 128 bits from the OS, never shown
    std::random_device rd;
    for (std::uint64_t& w : secret_) w = (static_cast<std::uint64_t>(rd()) << 32) ^ rd();
  }
  if (curve) {
    for (const std::string& k : cfg_.client_keys)
      scopes_.push_back(Scope{k, keyed(secret_, k.data(), k.size(), kScopeK0),
                              keyed(secret_, k.data(), k.size(), kScopeK1),
                              keyed(secret_, k.data(), k.size(), kOwnerOfKey)});
    std::sort(scopes_.begin(), scopes_.end(),
              [](const Scope& a, const Scope& b) { return a.key < b.key; });
    scopes_.erase(std::unique(scopes_.begin(), scopes_.end(),
                              [](const Scope& a, const Scope& b) { return a.key == b.key; }),
                  scopes_.end());
  }

  for (int s = 0; s < kStages; ++s) stage_[s] = std::make_unique<Histogram>(1.0, 34, 16);
  tick_total_ = std::make_unique<Histogram>(1.0, 34, 16);
  server_ns_ = std::make_unique<Histogram>(1.0, 34, 16);
  for (auto& h : phase_ns_) h = std::make_unique<Histogram>(1.0, 34, 16);
  interval_ns_ = std::make_unique<Histogram>(1.0, 40, 16);
  live_ = std::make_unique<LiveAccuracy>(engine_->streams().capacity(), engine_->horizons_s(),
                                         cfg_.score_every_s, engine_->error_resolution());
  owners_ = std::make_unique<StreamOwners>(engine_->streams().capacity());
  reply_.assign(sizeof(wire::Header) + sizeof(wire::ErrorBody) + kMaxErrorText, 0);
  pub_buf_.assign(sizeof(wire::Header) + sizeof(wire::PredictionInfo) + record_bytes(kMaxHorizons),
                  0);
  jobs_.resize(kMaxJobs);
  for (std::size_t i = 0; i < kMaxJobs; ++i) free_[i] = kMaxJobs - 1 - i;
  nfree_ = kMaxJobs;

  wake_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (wake_fd_ < 0) throw std::runtime_error("eventfd failed");
  ctx_ = zmq_ctx_new();
  if (ctx_ == nullptr) throw std::runtime_error(zmq_problem("zmq_ctx_new"));
  zmq_ctx_set(ctx_, ZMQ_IO_THREADS, 1);
  if (cfg_.io_core >= 0) zmq_ctx_set(ctx_, ZMQ_THREAD_AFFINITY_CPU_ADD, cfg_.io_core);

  const auto fail = [this](const std::string& what) {
    const std::string msg = zmq_problem(what);
    for (void* sock : {router_, pub_, zap_})
      if (sock) zmq_close(sock);
    zmq_ctx_term(ctx_);
    ::close(wake_fd_);
    throw std::runtime_error(msg);
  };
  const int linger = 500, one = 1, rcvhwm = kRecvHwm;
  const std::int64_t maxmsg = static_cast<std::int64_t>(kMaxMessageBytes);
  // A socket peers reach: its send queue, message size and linger bounded.
  const auto open_socket = [&](int type, const char* name, int sndhwm) {
    void* sock = zmq_socket(ctx_, type);
    if (sock == nullptr) fail(std::string("zmq_socket(") + name + ")");
    zmq_setsockopt(sock, ZMQ_SNDHWM, &sndhwm, sizeof sndhwm);
    zmq_setsockopt(sock, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(sock, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg);
    return sock;
  };
  const auto secure = [&](void* sock) {
    if (!curve) return true;
    return zmq_setsockopt(sock, ZMQ_ZAP_DOMAIN, "tmn", 3) == 0 &&
           zmq_setsockopt(sock, ZMQ_CURVE_SERVER, &one, sizeof one) == 0 &&
           zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, cfg_.curve_secret_key.c_str(), 40) == 0;
  };
  if (curve) {  // the ZAP handler must exist before any peer connects
    zap_ = zmq_socket(ctx_, ZMQ_REP);
    if (zap_ == nullptr || zmq_bind(zap_, "inproc://zeromq.zap.01") != 0) fail("ZAP handler");
  }
  router_ = open_socket(ZMQ_ROUTER, "ROUTER", kSendHwm);
  zmq_setsockopt(router_, ZMQ_RCVHWM, &rcvhwm, sizeof rcvhwm);
  zmq_setsockopt(router_, ZMQ_ROUTER_MANDATORY, &one, sizeof one);  // a full queue is counted
  // A client reconnecting under its routing id takes it over at once. Not
  // with CURVE: there a routing id would let one key take another's replies
  // (streams are scoped by key, so a reconnect keeps them anyway).
  if (!curve) zmq_setsockopt(router_, ZMQ_ROUTER_HANDOVER, &one, sizeof one);
  if (!secure(router_)) fail("CURVE on ROUTER");
  if (zmq_bind(router_, cfg_.endpoint.c_str()) != 0) fail("cannot bind " + cfg_.endpoint);
  char last[1024];
  std::size_t last_size = sizeof last;
  bound_endpoint_ = zmq_getsockopt(router_, ZMQ_LAST_ENDPOINT, last, &last_size) == 0
                        ? std::string(last)
                        : cfg_.endpoint;
  if (!cfg_.pub_endpoint.empty()) {
    // XPUB with NODROP: a full subscriber queue makes the send fail (counted
    // as dropped_pub) instead of dropping silently
    pub_ = open_socket(ZMQ_XPUB, "XPUB", kPubHwm);
    zmq_setsockopt(pub_, ZMQ_XPUB_NODROP, &one, sizeof one);
    if (!secure(pub_)) fail("CURVE on PUB");
    if (zmq_bind(pub_, cfg_.pub_endpoint.c_str()) != 0)
      fail("cannot bind PUB " + cfg_.pub_endpoint);
  }
}

Server::~Server() {
  stop();
  for (void* sock : {router_, pub_, zap_})
    if (sock) zmq_close(sock);
  if (ctx_) zmq_ctx_term(ctx_);
  if (wake_fd_ >= 0) ::close(wake_fd_);
}

void Server::start() {
  if (thread_.joinable()) throw std::runtime_error("server already started");
#if defined(__SANITIZE_ADDRESS__)
  // AddressSanitizer reserves terabytes of shadow memory: never lock it
  if (cfg_.lock_memory) {
    std::lock_guard<std::mutex> lock(mu_);
    warnings_.push_back("built with AddressSanitizer: memory is not locked");
  }
#else
  if (cfg_.lock_memory && mlockall(MCL_CURRENT | MCL_FUTURE) != 0) {
    std::lock_guard<std::mutex> lock(mu_);
    warnings_.push_back(std::string("mlockall failed (") + std::strerror(errno) +
                        "): memory may be paged out");
  }
#endif
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

const Scope* Server::scope_of(const char* user_id) const noexcept {
  if (user_id == nullptr || scopes_.empty()) return nullptr;
  std::size_t lo = 0, hi = scopes_.size();
  while (lo < hi) {  // binary search, no allocation
    const std::size_t mid = (lo + hi) / 2;
    const int c = std::strcmp(scopes_[mid].key.c_str(), user_id);
    if (c == 0) return &scopes_[mid];
    if (c < 0) lo = mid + 1;
    else hi = mid;
  }
  return nullptr;
}

std::uint64_t Server::engine_id(const Scope* scope, std::uint64_t stream) const noexcept {
  if (scope == nullptr) return stream;
  std::uint8_t b[8];
  for (int i = 0; i < 8; ++i) b[i] = static_cast<std::uint8_t>(stream >> (8 * i));
  return siphash24(scope->k0, scope->k1, b, 8);
}

std::uint64_t Server::scoped_stream(const std::string& client_key,
                                    std::uint64_t stream) const noexcept {
  return engine_id(scope_of(client_key.empty() ? nullptr : client_key.c_str()), stream);
}

bool Server::knows_client(const std::string& client_key) const noexcept {
  return !client_key.empty() && scope_of(client_key.c_str()) != nullptr;
}

std::uint32_t Server::stream_quota() const noexcept {
  if (cfg_.max_streams_per_client > 0) return cfg_.max_streams_per_client;
  return std::max<std::uint32_t>(1, engine_->streams().capacity() / 4);
}

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
  // the requests, the wake-up, and the ZAP handler and subscriptions if any
  zmq_pollitem_t items[4] = {{router_, 0, ZMQ_POLLIN, 0}, {nullptr, wake_fd_, ZMQ_POLLIN, 0}};
  int nitems = 2;
  for (void* sock : {zap_, pub_})
    if (sock) items[nitems++] = {sock, 0, ZMQ_POLLIN, 0};
  const std::uint64_t evict_period = clock::from_ns(1e9);
  while (!stop_.load(std::memory_order_acquire)) {
    bump(counters_.loop_iterations);
    if (pending_.load(std::memory_order_acquire)) service_commands();
    if (run_slice()) {
      // between two slices: one more request (ROUTER fair-queues the peers)
      if (njobs_ < kMaxJobs) receive_one();
      serve_zap();
      drain_subscriptions();
    } else if (cfg_.spin || pending_.load(std::memory_order_relaxed)) {
      receive_one();
      serve_zap();
      drain_subscriptions();
    } else {
      for (auto& it : items) it.revents = 0;
      // a reply waiting for room is retried soon; otherwise sleep until a request
      const int timeout = njobs_ > 0 ? 1 : kPollTimeoutMs;
      if (zmq_poll(items, nitems, timeout) > 0) {
        if (items[1].revents & ZMQ_POLLIN) {
          std::uint64_t v;
          [[maybe_unused]] const ssize_t n = ::read(wake_fd_, &v, sizeof v);
        }
        if (items[0].revents & ZMQ_POLLIN) receive_one();
        serve_zap();
        drain_subscriptions();
      }
    }
    const std::uint64_t now = clock::now();
    if (now >= next_evict_) {  // about once a second
      next_evict_ = now + evict_period;
      const std::uint64_t idle = clock::from_ns(cfg_.idle_evict_s * 1e9);
      const std::uint32_t evicted = engine_->evict_idle(cfg_.idle_evict_s);
      if (evicted > 0) owners_->sync(engine_->streams());
      bump(counters_.evicted, static_cast<std::uint64_t>(evicted));
      live_->evict_idle(now, idle);
    }
  }
  // stop: no new connections; answer what already arrived, for at most kDrainNs
  zmq_unbind(router_, bound_endpoint_.c_str());
  const std::uint64_t deadline = clock::now() + clock::from_ns(static_cast<double>(kDrainNs));
  while (clock::now() < deadline) {
    if (pending_.load(std::memory_order_acquire)) service_commands();
    if (run_slice()) {
      if (njobs_ < kMaxJobs) receive_one();
    } else if (!receive_one()) {
      break;
    }
  }
  drop_jobs();
  if (pending_.load(std::memory_order_acquire)) service_commands();
  running_.store(false, std::memory_order_release);
}

bool Server::receive_one() noexcept {
  // A request is [identity, payload] (DEALER) or [identity, empty, payload]
  // (REQ). Anything else is answered with bad_envelope.
  constexpr int kMaxParts = 3;
  zmq_msg_t parts[kMaxParts];
  zmq_msg_init(&parts[0]);
  if (zmq_msg_recv(&parts[0], router_, ZMQ_DONTWAIT) < 0) {
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
  const char* user = zap_ && payload ? zmq_msg_gets(payload, "User-Id") : nullptr;
  if (size == 0) {
    send_error(wire::FrameError::bad_envelope, 0,
               "expected [identity, (empty,) payload] with a non-empty payload");
  } else if (data[0] == '{') {
    // control: hand it to the control thread (allocation is fine here: this
    // is not the tick path), unless it is too big or too many wait
    bump(counters_.control);
    bool queued = false;
    if (size <= kMaxControlBytes) {
      std::lock_guard<std::mutex> lock(mu_);
      if (control_in_.size() < kMaxControlQueue) {
        const std::uint64_t token = next_token_++;
        envelopes_[token] = Envelope{
            std::string(reinterpret_cast<const char*>(identity_), identity_size_), delimiter_};
        control_in_.push_back(ControlRequest{
            token, std::string(reinterpret_cast<const char*>(data), size), user ? user : ""});
        queued = true;
      }
    }
    if (queued) {
      cv_.notify_all();
    } else {
      bump(counters_.control_overloaded);
      static constexpr char kTooBig[] =
          R"({"ok": false, "error": "bad_request", "message": "control message larger than 65536 bytes"})";
      static constexpr char kBusy[] =
          R"({"ok": false, "error": "overloaded", "message": "too many control requests waiting; retry later"})";
      if (size > kMaxControlBytes) send_reply(kTooBig, sizeof kTooBig - 1);
      else send_reply(kBusy, sizeof kBusy - 1);
    }
  } else if (cfg_.echo) {
    send_reply(data, size);
    server_ns_->record(clock::to_ns(clock::now() - t_recv));
  } else {
    accept_ticks(payload, t_recv, scope_of(user));
  }
  for (int i = 0; i < n; ++i) zmq_msg_close(&parts[i]);
  return true;
}

void Server::serve_zap() noexcept {
  // ZAP (RFC 27): [version, request id, domain, address, identity, mechanism,
  // credentials...]; the reply names the client's key as its User-Id.
  if (zap_ == nullptr) return;
  for (;;) {
    char frame[7][64];
    std::size_t len[7] = {};
    int got = 0;
    bool more = true;
    while (more) {
      char buf[64];
      const int r = zmq_recv(zap_, buf, sizeof buf, got == 0 ? ZMQ_DONTWAIT : 0);
      if (r < 0) {
        if (got == 0) return;  // nothing waiting
        break;
      }
      if (got < 7) {
        len[got] = std::min<std::size_t>(static_cast<std::size_t>(r), sizeof buf);
        std::memcpy(frame[got], buf, len[got]);
      }
      ++got;
      int m = 0;
      std::size_t ms = sizeof m;
      more = zmq_getsockopt(zap_, ZMQ_RCVMORE, &m, &ms) == 0 && m != 0;
    }
    char key[41] = {};
    const bool curve = got >= 7 && len[5] == 5 && std::memcmp(frame[5], "CURVE", 5) == 0 &&
                       len[6] == 32 &&
                       zmq_z85_encode(key, reinterpret_cast<const std::uint8_t*>(frame[6]), 32);
    const bool allowed = curve && scope_of(key) != nullptr;
    if (!allowed) bump(counters_.refused_peers);
    const char* status = allowed ? "200" : "400";
    const char* text = allowed ? "OK" : "unknown client key";
    zmq_send(zap_, "1.0", 3, ZMQ_SNDMORE);
    zmq_send(zap_, frame[1], got > 1 ? len[1] : 0, ZMQ_SNDMORE);
    zmq_send(zap_, status, 3, ZMQ_SNDMORE);
    zmq_send(zap_, text, std::strlen(text), ZMQ_SNDMORE);
    zmq_send(zap_, key, allowed ? 40 : 0, ZMQ_SNDMORE);
    zmq_send(zap_, "", 0, 0);
  }
}

void Server::drain_subscriptions() noexcept {
  if (pub_ == nullptr) return;
  char buf[64];
  while (zmq_recv(pub_, buf, sizeof buf, ZMQ_DONTWAIT) >= 0) {
  }
}

void Server::send_error(wire::FrameError code, std::uint32_t seq, const char* msg) noexcept {
  bump(counters_.by_frame_error[static_cast<int>(code) & 15]);
  const std::size_t len = std::min<std::size_t>(std::strlen(msg), kMaxErrorText);
  const wire::Header h{wire::kMagic, wire::kVersion, static_cast<std::uint16_t>(wire::Kind::error),
                       0, seq};
  const wire::ErrorBody b{static_cast<std::uint16_t>(code), static_cast<std::uint16_t>(len), 0};
  std::uint8_t* out = reply_.data();
  std::memcpy(out, &h, sizeof h);
  std::memcpy(out + sizeof h, &b, sizeof b);
  std::memcpy(out + sizeof h + sizeof b, msg, len);
  deliver(identity_, identity_size_, delimiter_, out, sizeof h + sizeof b + len, true);
}

void Server::deliver(const std::uint8_t* identity, std::size_t identity_size, bool delim,
                     const void* data, std::size_t n, bool ordered) noexcept {
  // Replies keep request order per peer (`ordered`: behind its queued jobs),
  // and wait for room in the peer's queue: either way as a job of its own,
  // done, with its reply ready.
  const std::uint64_t hash = identity_hash(identity, identity_size);
  std::size_t behind = 0;
  for (std::size_t i = 0; i < njobs_; ++i)
    behind += same_peer(jobs_[order_[i]], hash, identity, identity_size);
  if (behind == 0 || !ordered) {
    zmq_msg_t m;
    if (zmq_msg_init_size(&m, n) != 0) {
      bump(counters_.dropped_replies);
      return;
    }
    std::memcpy(zmq_msg_data(&m), data, n);
    const int err = send_to(identity, identity_size, delim, &m);
    if (err == 0) return;
    zmq_msg_close(&m);
    if (err != EAGAIN) {  // the peer is gone
      bump(counters_.dropped_replies);
      return;
    }
  }
  if (nfree_ == 0 || behind >= kMaxJobsPerPeer) {
    bump(counters_.dropped_replies);
    return;
  }
  const std::size_t idx = free_[--nfree_];
  Job& j = jobs_[idx];
  zmq_msg_init(&j.request);
  if (zmq_msg_init_size(&j.reply, n) != 0) {
    free_[nfree_++] = idx;
    bump(counters_.dropped_replies);
    return;
  }
  std::memcpy(zmq_msg_data(&j.reply), data, n);
  std::memcpy(j.identity, identity, identity_size);
  j.identity_size = identity_size;
  j.identity_hash = hash;
  j.delimiter = delim;
  j.t_recv = j.t_done = clock::now();
  j.count = j.next = 0;
  j.started = false;
  j.done = true;
  order_[njobs_++] = idx;
}

std::uint64_t Server::identity_hash(const std::uint8_t* id, std::size_t n) noexcept {
  std::uint64_t hash = 1469598103934665603ull;  // FNV-1a
  for (std::size_t i = 0; i < n; ++i) hash = (hash ^ id[i]) * 1099511628211ull;
  return hash;
}

bool Server::same_peer(const Job& j, std::uint64_t hash, const std::uint8_t* identity,
                       std::size_t identity_size) noexcept {
  return j.identity_hash == hash && j.identity_size == identity_size &&
         std::memcmp(j.identity, identity, identity_size) == 0;
}

void Server::send_reply(const void* data, std::size_t n) noexcept {
  deliver(identity_, identity_size_, delimiter_, data, n, false);
}

int Server::send_to(const std::uint8_t* identity, std::size_t identity_size, bool delim,
                    zmq_msg_t* msg) noexcept {
  // ROUTER_MANDATORY: a full queue refuses the first frame (EAGAIN), so
  // nothing was sent and the caller may try again; EHOSTUNREACH: peer gone
  const int more = ZMQ_SNDMORE | ZMQ_DONTWAIT;
  if (zmq_send(router_, identity, identity_size, more) < 0) return zmq_errno();
  if (delim) zmq_send(router_, "", 0, more);
  zmq_msg_send(msg, router_, ZMQ_DONTWAIT);
  return 0;
}

void Server::send_envelope_reply(const std::string& identity, bool delim, const void* data,
                                 std::size_t n) noexcept {
  deliver(reinterpret_cast<const std::uint8_t*>(identity.data()),
          std::min(identity.size(), sizeof identity_), delim, data, n, false);
}

void Server::accept_ticks(zmq_msg_t* payload, std::uint64_t t_recv, const Scope* scope) noexcept {
  const auto* data = static_cast<const std::uint8_t*>(zmq_msg_data(payload));
  const std::size_t n = zmq_msg_size(payload);
  wire::Header h;
  wire::PointQuery query;
  const char* why = "";
  if (const std::uint16_t code = wire::check_tick_frame(data, n, h, query, &why)) {
    const auto e = static_cast<wire::FrameError>(code);
    send_error(e, e == wire::FrameError::bad_magic ? 0 : h.seq, why);
    return;
  }
  // this peer's queued work, in ticks
  const std::uint64_t hash = identity_hash(identity_, identity_size_);
  std::uint64_t queued = h.count;
  std::size_t slots = 0, reply_bytes = 0;
  for (std::size_t i = 0; i < njobs_; ++i) {
    const Job& j = jobs_[order_[i]];
    if (same_peer(j, hash, identity_, identity_size_)) {
      queued += j.count - j.next;
      ++slots;
      if (j.started || j.done) reply_bytes += zmq_msg_size(&const_cast<Job&>(j).reply);
    }
  }
  if (queued > kMaxQueuedTicksPerPeer || slots >= kMaxJobsPerPeer ||
      reply_bytes > kMaxWaitingReplyBytesPerPeer || nfree_ == 0) {
    send_error(wire::FrameError::overloaded, h.seq,
               "too many ticks of this client are waiting; read the replies before sending more");
    return;
  }
  bump(counters_.batches);
  const std::size_t idx = free_[--nfree_];
  Job& j = jobs_[idx];
  zmq_msg_init(&j.request);
  zmq_msg_move(&j.request, payload);
  std::memcpy(j.identity, identity_, identity_size_);
  j.identity_size = identity_size_;
  j.identity_hash = hash;
  j.delimiter = delimiter_;
  j.t_recv = t_recv;
  j.scope = scope;
  // the quota's owner: the CURVE key, else the connection (its routing id)
  j.owner = scope ? scope->owner : keyed(secret_, identity_, identity_size_, kOwnerOfPeer);
  j.count = h.count;
  j.seq = h.seq;
  j.has_velocity = wire::has_velocity(h.kind);
  j.point = wire::is_point_kind(h.kind);
  j.at_dt = query.dt;
  j.next = 0;
  j.started = j.done = false;
  order_[njobs_++] = idx;
}

bool Server::run_slice() noexcept {
  for (std::size_t tries = 0; tries < njobs_; ++tries) {
    const std::size_t pos = (rr_ + tries) % njobs_;
    Job& j = jobs_[order_[pos]];
    // A peer's jobs compute in order, and their replies go out in order.
    bool earlier = false, earlier_computing = false;
    for (std::size_t q = 0; q < pos && !earlier_computing; ++q) {
      const Job& o = jobs_[order_[q]];
      if (same_peer(o, j.identity_hash, j.identity, j.identity_size)) {
        earlier = true;
        earlier_computing = !o.done;
      }
    }
    if (earlier_computing || (j.done && earlier)) continue;
    if (j.done) {  // its reply waits for room in the peer's queue
      const std::size_t idx = order_[pos];
      if (retry_reply(pos)) {
        rr_ = turn_after(pos, jobs_[idx]);
        return true;
      }
      continue;
    }
    if (!j.started && hold_) continue;  // a reload waits for the started jobs

    Engine& e = *engine_;
    const int K = e.horizons();
    // a point job answers with PointRecords behind a bare header (protocol.hpp)
    const std::size_t rb = j.point ? sizeof(wire::PointRecord) : record_bytes(K);
    const std::size_t head = sizeof(wire::Header) + (j.point ? 0 : sizeof(wire::PredictionInfo));
    const std::size_t ticks_at = sizeof(wire::Header) + (j.point ? sizeof(wire::PointQuery) : 0);
    if (!j.started) {  // libzmq allocates the reply, which it then sends without a copy
      if (zmq_msg_init_size(&j.reply, head + j.count * rb) != 0) {
        std::memcpy(identity_, j.identity, j.identity_size);
        identity_size_ = j.identity_size;
        delimiter_ = j.delimiter;
        const std::uint32_t seq = j.seq;
        zmq_msg_close(&j.request);
        free_[nfree_++] = order_[pos];
        for (std::size_t q = pos; q + 1 < njobs_; ++q) order_[q] = order_[q + 1];
        --njobs_;
        send_error(wire::FrameError::internal, seq, "out of memory for the reply");
        return true;
      }
      auto* reply = static_cast<std::uint8_t*>(zmq_msg_data(&j.reply));
      if (j.point) write_points_header(j.count, j.seq, reply);
      else write_prediction_header(j.count, j.seq, K, reply);
      j.started = true;
      j.t_start = clock::now();
      ++started_jobs_;
    }
    const auto* data = static_cast<const std::uint8_t*>(zmq_msg_data(&j.request));
    std::uint8_t* rec = static_cast<std::uint8_t*>(zmq_msg_data(&j.reply)) + head + j.next * rb;
    const std::uint64_t until = clock::now() + clock::from_ns(static_cast<double>(kSliceNs));
    Prediction p;
    Tick last{};
    bool last_ok = false;
    const std::uint64_t t_recv = j.t_recv;
    while (j.next < j.count) {
      wire::TickRecord tr;
      std::memcpy(&tr, data + ticks_at + j.next * sizeof tr, sizeof tr);
      const Tick k{tr.t, tr.x, tr.y, tr.vx, tr.vy, j.has_velocity};
      const Status st = tick_one(j, tr.stream, k, p);
      if (j.point) write_point(p, st, j.at_dt, rec);
      else write_record(p, st, K, rec);
      std::memcpy(rec, &tr.stream, sizeof tr.stream);  // the client's own id
      bump(counters_.ticks);
      bump(counters_.by_status[static_cast<int>(st) & 7]);
      if (st == Status::ok) {
        bump(counters_.ticks_ok);
        bump(counters_.by_verdict[static_cast<int>(p.verdict) & 7]);
        if (p.verdict == Verdict::pass)
          bump(counters_.cert_sum_pass, static_cast<double>(p.cert_error));
        if (pub_ != nullptr) publish(tr.stream, j.seq, K, p);
        // the job's last tick is recorded after its reply is sent (below)
        if (j.next + 1 < j.count) record_tick(k, p, t_recv);
        else last = k, last_ok = true;
      }
      ++j.next;
      rec += rb;
      if (clock::now() >= until) break;
    }
    if (j.next == j.count) {
      j.done = true;
      j.t_done = clock::now();
      --started_jobs_;
      const std::size_t idx = order_[pos];
      if (!earlier && retry_reply(pos)) rr_ = turn_after(pos, jobs_[idx]);
      else rr_ = pos + 1;
      // Stats and live accuracy of the last tick wait until the reply is on
      // its way: the requester does not wait for them (a single-tick
      // request's reply leaves ~0.3 us sooner, docs/reliability.md).
      if (last_ok) record_tick(last, p, t_recv);
    } else {
      rr_ = pos + 1;
    }
    return true;
  }
  return false;
}

void Server::record_tick(const Tick& k, const Prediction& p, std::uint64_t t_recv) noexcept {
  for (int s = 0; s < kStages; ++s) stage_[s]->record(p.stage_ns[s]);
  tick_total_->record(p.total_ns);
  if (p.dt > 0.0) interval_ns_->record(p.dt * 1e9);
  live_->observe(k, p, t_recv);
}

Status Server::tick_one(const Job& j, std::uint64_t client_id, const Tick& k,
                        Prediction& p) noexcept {
  Engine& e = *engine_;
  const std::uint64_t id = engine_id(j.scope, client_id);  // the engine's id of this stream
  const bool fresh = e.streams().find(id) == StreamTable::kNone;
  // a new stream counts against its client's quota; a tick the engine would
  // refuse anyway keeps the engine's answer
  if (fresh && owners_->held(j.owner) >= stream_quota() &&
      validate_tick(k, nullptr, e.ranges()) == Status::ok &&
      !(reclaim_own(j.owner) && owners_->held(j.owner) < stream_quota())) {
    bump(counters_.quota_refused);
    p.stream = id;
    p.t = k.t;
    p.restarted = false;
    p.status = Status::capacity_exceeded;
    p.stage_ns = {};
    p.total_ns = 0;
    return Status::capacity_exceeded;
  }
  Status st = e.tick(id, k, p);
  if (st == Status::capacity_exceeded && reclaim()) st = e.tick(id, k, p);
  if (fresh && st == Status::ok) owners_->own(id, j.owner, client_id);
  return st;
}

bool Server::reclaim_own(std::uint64_t owner) noexcept {
  const std::uint64_t now = clock::now();
  if (cfg_.reclaim_idle_s <= 0.0 || now < next_own_reclaim_) return false;
  next_own_reclaim_ = now + clock::from_ns(1e7);
  const std::uint64_t idle = clock::from_ns(cfg_.reclaim_idle_s * 1e9);
  if (now < idle) return false;
  const std::uint32_t n = owners_->reclaim(owner, now - idle, *engine_, *live_);
  bump(counters_.reclaimed, static_cast<std::uint64_t>(n));
  return n > 0;
}

bool Server::reclaim() noexcept {
  // A full table: forget streams idle for reclaim_idle_s (at most every 10 ms,
  // since each try scans the table).
  const std::uint64_t now = clock::now();
  if (cfg_.reclaim_idle_s <= 0.0 || now < next_reclaim_) return false;
  next_reclaim_ = now + clock::from_ns(1e7);
  const std::uint32_t n = engine_->evict_idle(cfg_.reclaim_idle_s);
  live_->evict_idle(now, clock::from_ns(cfg_.reclaim_idle_s * 1e9));
  if (n > 0) owners_->sync(engine_->streams());
  bump(counters_.reclaimed, static_cast<std::uint64_t>(n));
  return n > 0;
}

void Server::publish(std::uint64_t stream, std::uint32_t seq, int K,
                     const Prediction& p) noexcept {
  // topic: the stream id, 8 bytes little-endian; then a one-record prediction
  // frame (whichever kind the request was), under the client's own id
  std::uint8_t* pb = pub_buf_.data();
  write_prediction_header(1, seq, K, pb);
  std::uint8_t* rec = pb + sizeof(wire::Header) + sizeof(wire::PredictionInfo);
  write_record(p, Status::ok, K, rec);
  std::memcpy(rec, &stream, sizeof stream);
  const std::size_t rb = record_bytes(K);
  if (zmq_send(pub_, &stream, sizeof stream, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0 ||
      zmq_send(pub_, pb, sizeof(wire::Header) + sizeof(wire::PredictionInfo) + rb,
               ZMQ_DONTWAIT) < 0)
    bump(counters_.dropped_pub);
}

std::size_t Server::turn_after(std::size_t pos, const Job& gone) const noexcept {
  // The job that followed the one just retired now sits at pos; the turn goes
  // to the first job from there (cyclically) of another peer. Handing it to
  // the retired job's peer again would let a peer whose small requests keep
  // arriving (each done in one slice) keep the turn for ever, and a request
  // appended just now must not jump ahead of the jobs already waiting.
  for (std::size_t k = 0; k < njobs_; ++k) {
    const std::size_t q = (pos + k) % njobs_;
    if (!same_peer(jobs_[order_[q]], gone.identity_hash, gone.identity, gone.identity_size))
      return q;
  }
  return njobs_ > 0 ? pos % njobs_ : 0;
}

bool Server::retry_reply(std::size_t pos) noexcept {
  Job& j = jobs_[order_[pos]];
  const int err = send_to(j.identity, j.identity_size, j.delimiter, &j.reply);
  if (err == EAGAIN && clock::now() - j.t_done < clock::from_ns(kReplyWaitNs))
    return false;  // the peer is not reading: keep the reply (and its later jobs) waiting
  if (err == 0) {
    const std::uint64_t sent = clock::now();
    server_ns_->record(clock::to_ns(sent - j.t_recv));
    if (j.count > 0) {  // a tick job (not a queued error or control reply)
      phase_ns_[0]->record(clock::to_ns(j.t_start - j.t_recv));
      phase_ns_[1]->record(clock::to_ns(j.t_done - j.t_start));
      phase_ns_[2]->record(clock::to_ns(sent - j.t_done));
    }
  } else {
    bump(counters_.dropped_replies);
    zmq_msg_close(&j.reply);
  }
  zmq_msg_close(&j.request);
  free_[nfree_++] = order_[pos];
  for (std::size_t q = pos; q + 1 < njobs_; ++q) order_[q] = order_[q + 1];
  --njobs_;
  return true;
}

void Server::drop_jobs() noexcept {
  for (std::size_t i = 0; i < njobs_; ++i) {
    Job& j = jobs_[order_[i]];
    if (j.started || j.done) zmq_msg_close(&j.reply);
    zmq_msg_close(&j.request);
    free_[nfree_++] = order_[i];
    bump(counters_.dropped_at_stop);
  }
  njobs_ = started_jobs_ = 0;
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
      owners_->release(cmd_stream_);
    } else if (cmd_ == Cmd::list) {
      try {  // not the tick path: this may allocate
        list_streams(cmd_list_);
      } catch (const std::bad_alloc&) {
        cmd_list_.clear();
      }
    } else if (cmd_ == Cmd::swap && started_jobs_ > 0) {
      hold_ = true;  // finish the started jobs with the old engine first
      pending_.store(true, std::memory_order_relaxed);
    } else if (cmd_ == Cmd::swap) {
      install_swap();
      hold_ = false;
    }
    if (cmd_ != Cmd::none && !hold_) {
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

void Server::install_swap() noexcept {
  std::swap(engine_, cmd_engine_);  // cmd_engine_ now holds the old engine
  std::swap(live_, cmd_live_);
  std::swap(owners_, cmd_owners_);
  bump(counters_.reloads);
}

bool Server::loop_ran(std::unique_lock<std::mutex>& lock) {
  cmd_done_ = false;
  pending_.store(true, std::memory_order_release);
  lock.unlock();
  wake();
  lock.lock();
  cv_.wait(lock, [this] { return cmd_done_ || !running(); });
  if (!cmd_done_) cmd_ = Cmd::none;  // the loop stopped before it ran the command
  return cmd_done_;
}

Status Server::reset_stream(std::uint64_t stream) {
  std::unique_lock<std::mutex> lock(mu_);
  if (running()) {
    cmd_ = Cmd::reset;
    cmd_stream_ = stream;
    if (loop_ran(lock)) return cmd_status_;
  }
  live_->forget(stream);
  owners_->release(stream);
  return engine_->reset(stream);
}

void Server::list_streams(std::vector<HeldStream>& out) const {
  out.clear();
  owners_->each([&](std::uint64_t engine_id, std::uint64_t owner, std::uint64_t client_id) {
    std::string key;
    for (const Scope& sc : scopes_)
      if (sc.owner == owner) key = sc.key;
    out.push_back(HeldStream{engine_id, client_id, std::move(key)});
  });
}

std::vector<Server::HeldStream> Server::held_streams() {
  std::unique_lock<std::mutex> lock(mu_);
  std::vector<HeldStream> out;
  if (running()) {
    cmd_ = Cmd::list;
    if (loop_ran(lock)) {
      out.swap(cmd_list_);
      return out;
    }
  }
  list_streams(out);
  return out;
}

Engine* Server::swap_engine(Engine* next) {
  if (next == nullptr) throw std::invalid_argument("swap_engine: engine is null");
  auto live = std::make_unique<LiveAccuracy>(next->streams().capacity(), next->horizons_s(),
                                             cfg_.score_every_s, next->error_resolution());
  auto owners = std::make_unique<StreamOwners>(next->streams().capacity());
  std::unique_lock<std::mutex> lock(mu_);
  cmd_ = Cmd::swap;
  cmd_engine_ = next;
  cmd_live_ = std::move(live);
  cmd_owners_ = std::move(owners);
  if (!running() || !loop_ran(lock)) {
    install_swap();
    cmd_ = Cmd::none;
  }
  Engine* old = cmd_engine_;
  cmd_engine_ = nullptr;
  cmd_live_.reset();  // the old live accuracy, no longer read by the loop
  cmd_owners_.reset();
  return old;
}

}  // namespace tmn
