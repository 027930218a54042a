// server.hpp — the ZeroMQ daemon loop (tmn-serve's engine room).
//
// Contract:
//   * One loop thread owns the ROUTER socket (and the optional PUB socket)
//     and the Engine. It reads a request, runs its ticks through the engine,
//     replies with one prediction per tick (docs/protocol.md), publishes each
//     prediction on PUB, records stats, and scores live accuracy. On the tick
//     path our code never allocates, locks or throws; libzmq's own message
//     handling is the only system-call and allocation source.
//   * Pinning: the loop thread is pinned to `core`, libzmq's I/O thread to
//     `io_core`, memory is locked (mlockall) and the loop's stack prefaulted.
//     Optional SCHED_FIFO. Failures to lock memory or to get SCHED_FIFO are
//     warnings (see warnings()), an invalid core is an error at construction.
//   * `spin` busy-polls the socket (no wake-up latency, one core at 100%);
//     otherwise the loop blocks in zmq_poll.
//   * The control plane (JSON control messages, stream reset, model reload,
//     stats) is served by ONE other thread (tmn-serve's Python main thread):
//     next_control() hands it the JSON requests, reply_control() sends its
//     answer, reset_stream() runs on the loop between two slices and
//     swap_engine() once no job is half done, so a reload never splits or
//     drops a request.
//   * Fairness: a tick batch is a job. The loop runs jobs round-robin in
//     slices of kSliceNs, and reads the next request between two slices, so
//     no client holds the loop for longer than a slice while others wait.
//     Jobs of one peer (routing id) run in arrival order, so its replies and
//     its streams' ticks keep their order.
//   * Bounds: a message is at most kMaxMessageBytes (ZMQ_MAXMSGSIZE: a
//     larger one disconnects its peer). At most kMaxJobs jobs wait; of one
//     peer at most kMaxJobsPerPeer, kMaxQueuedTicksPerPeer unanswered ticks
//     and kMaxWaitingReplyBytesPerPeer of finished replies (beyond: error
//     `overloaded`, itself dropped and counted if it cannot be queued). A
//     control message is at most kMaxControlBytes and at most
//     kMaxControlQueue wait for the control thread (beyond: a JSON reply).
//     High-water marks (kSendHwm, kRecvHwm) bound libzmq's queues. A reply
//     (of any kind) refused by a full queue waits, in order, for up to
//     kReplyWaitNs, then is dropped; a publication refused is dropped at
//     once; both are counted (dropped_replies, dropped_pub), and the loop
//     never blocks on a peer.
//   * CURVE (curve_secret_key set): every peer must present one of
//     client_keys (a ZAP handler on the loop thread checks). Stream ids are
//     then scoped per client key: the engine's id of a client's stream is
//     SipHash-2-4 of the client's id under a 128-bit key derived from the
//     client's public key and a secret drawn when the server starts. The
//     engine id tells a client nothing it could invert or reuse, so no client
//     can reach another's streams. Control requests carry the client's key
//     (empty without CURVE); held_streams() maps engine ids back to
//     (key, the client's id) for the control plane.
//   * Stream quota: a client (a CURVE key; without CURVE a peer's routing
//     id, i.e. one connection) holds at most max_streams_per_client streams
//     (0: a quarter of the engine's table, at least 1). A tick for a new
//     stream beyond it first reclaims that client's own streams idle for
//     reclaim_idle_s; if none is, it gets capacity_exceeded, counted in
//     quota_refused. So one client cannot fill the table for all others.
//   * A full stream table reclaims the streams idle for reclaim_idle_s (at
//     most once every 10 ms), so idle ids cannot block new streams for long.
//   * stop(): stop intake (unbind), answer what was already received within
//     kDrainNs, join.
#pragma once

#include <zmq.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "tmn/engine.hpp"
#include "tmn/histogram.hpp"
#include "tmn/live_accuracy.hpp"
#include "tmn/protocol.hpp"

namespace tmn {

// tmn-serve binds loopback unless told otherwise (docs/protocol.md).
inline constexpr const char* kDefaultEndpoint = "tcp://127.0.0.1:5555";
// ZMQ_MAXMSGSIZE: above the largest tick frame (16 + 48 x 4096 bytes), so that
// a frame a little too long still gets its error reply.
inline constexpr std::size_t kMaxMessageBytes = 256 * 1024;
static_assert(kMaxMessageBytes >
              sizeof(wire::Header) + (wire::kMaxBatch + 1) * sizeof(wire::TickRecord));
inline constexpr std::size_t kMaxControlBytes = 64 * 1024;
inline constexpr std::size_t kMaxControlQueue = 64;
inline constexpr std::size_t kMaxJobs = 256;
inline constexpr std::size_t kMaxJobsPerPeer = 64;  // requests of one peer waiting (and errors)
inline constexpr std::size_t kMaxWaitingReplyBytesPerPeer = 16 << 20;
inline constexpr std::uint32_t kMaxQueuedTicksPerPeer = 4 * wire::kMaxBatch;
inline constexpr std::uint64_t kSliceNs = 50'000;       // 50 us of one job, then the next
inline constexpr std::uint64_t kDrainNs = 1'000'000'000;  // stop(): answer the queue for <= 1 s
inline constexpr std::uint64_t kReplyWaitNs = 2'000'000'000;  // a reply waits <= 2 s for room
inline constexpr int kSendHwm = 32;   // messages per peer
inline constexpr int kRecvHwm = 32;
inline constexpr int kPubHwm = 1000;  // publications per subscriber
inline constexpr std::size_t kMaxErrorText = 1024;
// The phases of a tick request's receive->send time (Server::server_phase),
// named as in the stats (latency_ns.server_<name>).
inline constexpr int kServerPhases = 3;
inline constexpr const char* kServerPhaseNames[kServerPhases] = {"wait", "compute", "send"};

struct ServerConfig {
  std::string endpoint = kDefaultEndpoint;
  std::string pub_endpoint;  // empty: no PUB socket
  int core = -1;             // -1: do not pin the loop
  int io_core = -1;          // -1: do not pin libzmq's I/O thread
  bool spin = false;
  int rt_priority = 0;       // 0: normal scheduling; 1..99: SCHED_FIFO
  bool lock_memory = true;
  double idle_evict_s = 60.0;     // forget streams idle this long (wall time)
  double score_every_s = 0.01;    // live accuracy: one kept prediction per stream per interval
  double reclaim_idle_s = 2.0;    // a full table reuses the LRU stream idle this long
  // streams one client may hold (0: a quarter of the engine's table, at least 1)
  std::uint32_t max_streams_per_client = 0;
  bool echo = false;  // benchmark floor: answer every binary request with its own bytes
  // CURVE: the server's secret key (Z85, 40 characters; empty: no CURVE) and
  // the public keys (Z85) allowed to connect.
  std::string curve_secret_key;
  std::vector<std::string> client_keys;
};

struct ControlRequest {
  std::uint64_t token = 0;
  std::string payload;     // JSON text
  std::string client_key;  // the peer's CURVE public key (Z85), empty without CURVE
};

// Counters and histograms, written by the loop thread only (relaxed), read by
// the control thread at any time.
struct ServerCounters {
  std::atomic<std::uint64_t> messages{0}, batches{0}, ticks{0}, ticks_ok{0};
  std::atomic<std::uint64_t> control{0}, dropped_replies{0}, dropped_pub{0};
  std::atomic<std::uint64_t> reloads{0}, evicted{0}, loop_iterations{0}, reclaimed{0};
  std::atomic<std::uint64_t> refused_peers{0}, control_overloaded{0}, dropped_at_stop{0};
  std::atomic<std::uint64_t> quota_refused{0};  // new streams refused by the per-client quota
  std::atomic<std::uint64_t> by_status[8]{};
  std::atomic<std::uint64_t> by_frame_error[16]{};
  std::atomic<std::uint64_t> by_verdict[8]{};
  std::atomic<double> cert_sum_pass{0.0};
};

// A CURVE client's scope: its key, the SipHash key of its stream ids and its
// owner id (server.cpp).
struct Scope {
  std::string key;
  std::uint64_t k0 = 0, k1 = 0, owner = 0;
};
class StreamOwners;  // server.cpp: which client holds each engine stream

class Server {
 public:
  // Binds the sockets; throws std::runtime_error naming the endpoint or core.
  Server(Engine* engine, const ServerConfig& cfg);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  void start();
  void stop();
  bool running() const noexcept { return running_.load(std::memory_order_acquire); }

  // Control plane (one thread):
  bool next_control(ControlRequest& out, double timeout_s);
  void reply_control(std::uint64_t token, const std::string& json);
  Status reset_stream(std::uint64_t stream);
  // The engine's id for a client's stream id: the keyed hash of the key's
  // scope; the id itself for an empty or unknown key, or without CURVE.
  std::uint64_t scoped_stream(const std::string& client_key, std::uint64_t stream) const noexcept;
  // Whether client_key is one of the CURVE keys allowed to connect.
  bool knows_client(const std::string& client_key) const noexcept;
  // Every stream the server's clients hold: (engine id, the owner's CURVE key
  // or "" without CURVE, the client's own id). Runs on the loop between two
  // slices, like reset_stream.
  struct HeldStream {
    std::uint64_t engine_id, client_id;
    std::string client_key;
  };
  std::vector<HeldStream> held_streams();
  // The per-client quota in force (max_streams_per_client, or its default).
  std::uint32_t stream_quota() const noexcept;
  // The endpoint actually bound (ZMQ_LAST_ENDPOINT: a wildcard port resolved).
  const std::string& bound_endpoint() const noexcept { return bound_endpoint_; }
  // Swap in a new engine between two requests; returns the old one. The
  // caller keeps ownership of both; live accuracy restarts with the model.
  Engine* swap_engine(Engine* next);

  const ServerCounters& counters() const noexcept { return counters_; }
  const Histogram& stage(int s) const noexcept { return *stage_[s]; }
  const Histogram& tick_total() const noexcept { return *tick_total_; }
  const Histogram& server_latency() const noexcept { return *server_ns_; }
  // The receive->send time of a tick request in its three phases (ns): waiting
  // for its first slice, computing its ticks (the engine and the loop's
  // bookkeeping), and sending its reply (the send call, plus any wait for room
  // in the peer's queue). Together they are server_latency().
  const Histogram& server_phase(int phase) const noexcept { return *phase_ns_[phase]; }
  // Sensor time between consecutive ticks of a stream, over all streams (ns):
  // the report rate the clients' sensors have.
  const Histogram& report_interval() const noexcept { return *interval_ns_; }
  const LiveAccuracy& live() const noexcept { return *live_; }
  Engine* engine() const noexcept { return engine_; }
  std::uint32_t stream_count() const noexcept;
  std::vector<std::string> warnings() const;
  const ServerConfig& config() const noexcept { return cfg_; }

 private:
  // A tick batch being answered: its request, its reply (built in a libzmq
  // message as the ticks run) and where it stands.
  struct Job {
    zmq_msg_t request, reply;
    std::uint8_t identity[256];
    std::size_t identity_size = 0;
    std::uint64_t identity_hash = 0;
    bool delimiter = false;
    std::uint64_t t_recv = 0;
    const Scope* scope = nullptr;  // the CURVE client's scope, or none
    std::uint64_t owner = 0;               // whose quota its new streams count against
    std::uint32_t count = 0, next = 0, seq = 0;
    std::uint64_t t_start = 0, t_done = 0;  // its first slice began; its last tick was answered
    bool started = false, done = false;  // done: every tick answered, the reply not sent yet
    bool has_velocity = true;            // kind ticks (true) or position_ticks
    bool point = false;                  // a point kind: answered with PointRecords
    double at_dt = 0.0;                  // its PointQuery.dt
  };

  void run() noexcept;
  void setup_thread() noexcept;
  bool receive_one() noexcept;  // false when nothing was read
  // Check a tick frame; queue it as a job, or answer its error.
  void accept_ticks(zmq_msg_t* payload, std::uint64_t t_recv, const Scope* scope) noexcept;
  bool run_slice() noexcept;  // false when no job could run
  bool reclaim() noexcept;    // true when streams were freed
  // One tick of a job: the quota, the engine (and a reclaim if the table is
  // full), the ownership of a new stream.
  Status tick_one(const Job& j, std::uint64_t client_id, const Tick& k, Prediction& p) noexcept;
  // The stage histograms and live accuracy of one answered tick.
  void record_tick(const Tick& k, const Prediction& p, std::uint64_t t_recv) noexcept;
  void list_streams(std::vector<HeldStream>& out) const;  // loop thread (or stopped)
  // Hands the command in cmd_ to the running loop and waits (lock held on
  // entry and return); false if the loop stopped first: the caller runs it.
  bool loop_ran(std::unique_lock<std::mutex>& lock);
  void install_swap() noexcept;  // cmd_'s engine, live accuracy and owners in use (mu_ held)
  // The client's own streams idle for reclaim_idle_s, reset (at most every
  // 10 ms); true when one was.
  bool reclaim_own(std::uint64_t owner) noexcept;
  void publish(std::uint64_t stream, std::uint32_t seq, int K, const Prediction& p) noexcept;
  // Send a done job's reply and retire it; false while the peer's queue is
  // full and the reply is younger than kReplyWaitNs (then it is dropped).
  bool retry_reply(std::size_t pos) noexcept;
  // Where the round robin goes on after the job `gone` (retired from pos):
  // the next job of another peer.
  std::size_t turn_after(std::size_t pos, const Job& gone) const noexcept;
  void drop_jobs() noexcept;
  // An error frame to the current request's peer, in order behind its jobs.
  void send_error(wire::FrameError code, std::uint32_t seq, const char* msg) noexcept;
  // Send now, or queue as a done job behind the peer's jobs (`ordered`) or
  // until its queue has room; dropped and counted when neither is possible.
  void deliver(const std::uint8_t* identity, std::size_t identity_size, bool delim,
               const void* data, std::size_t n, bool ordered) noexcept;
  static std::uint64_t identity_hash(const std::uint8_t* id, std::size_t n) noexcept;
  static bool same_peer(const Job& j, std::uint64_t hash, const std::uint8_t* identity,
                        std::size_t identity_size) noexcept;
  void send_reply(const void* data, std::size_t n) noexcept;
  int send_to(const std::uint8_t* identity, std::size_t identity_size, bool delim,
              zmq_msg_t* msg) noexcept;  // 0 or the errno of the refusal
  void send_envelope_reply(const std::string& envelope, bool delim, const void* data,
                           std::size_t n) noexcept;
  void serve_zap() noexcept;
  void drain_subscriptions() noexcept;
  const Scope* scope_of(const char* user_id) const noexcept;
  std::uint64_t engine_id(const Scope* scope, std::uint64_t stream) const noexcept;
  void service_commands() noexcept;
  void wake() noexcept;

  ServerConfig cfg_;
  Engine* engine_;
  void* ctx_ = nullptr;
  void* router_ = nullptr;
  void* pub_ = nullptr;
  void* zap_ = nullptr;
  int wake_fd_ = -1;
  std::string bound_endpoint_;
  std::uint64_t secret_[2] = {0, 0};  // drawn at construction: keys every hash below
  std::vector<Scope> scopes_;         // CURVE: one per client key, sorted by key
  std::unique_ptr<StreamOwners> owners_;  // who holds each engine stream (loop thread)
  std::thread thread_;
  std::atomic<bool> running_{false}, stop_{false};

  // current request's envelope (loop thread only)
  std::uint8_t identity_[256];
  std::size_t identity_size_ = 0;
  bool delimiter_ = false;
  std::vector<std::uint8_t> reply_;    // error frames
  std::vector<std::uint8_t> pub_buf_;  // one prediction frame
  std::vector<Job> jobs_;              // kMaxJobs, a FIFO: jobs_[order_[0..njobs_)]
  std::size_t order_[kMaxJobs];
  std::size_t free_[kMaxJobs];
  std::size_t njobs_ = 0, nfree_ = 0, rr_ = 0;
  std::size_t started_jobs_ = 0;
  bool hold_ = false;  // a reload waits: start no job
  std::uint64_t next_reclaim_ = 0, next_own_reclaim_ = 0;

  ServerCounters counters_;
  std::unique_ptr<Histogram> stage_[kStages];
  std::unique_ptr<Histogram> tick_total_, server_ns_, interval_ns_;
  std::unique_ptr<Histogram> phase_ns_[kServerPhases];
  std::unique_ptr<LiveAccuracy> live_;
  std::uint64_t next_evict_ = 0;

  // control plane, behind one mutex (never taken on the tick path: the loop
  // checks `pending_` first)
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::atomic<bool> pending_{false};
  std::deque<ControlRequest> control_in_;
  struct Envelope {
    std::string identity;
    bool delimiter;
  };
  std::map<std::uint64_t, Envelope> envelopes_;
  std::deque<std::pair<std::uint64_t, std::string>> control_out_;
  std::uint64_t next_token_ = 1;
  enum class Cmd { none, reset, swap, list } cmd_ = Cmd::none;
  std::uint64_t cmd_stream_ = 0;
  Engine* cmd_engine_ = nullptr;
  std::unique_ptr<LiveAccuracy> cmd_live_;
  std::unique_ptr<StreamOwners> cmd_owners_;
  std::vector<HeldStream> cmd_list_;
  Status cmd_status_ = Status::ok;
  bool cmd_done_ = false;
  std::vector<std::string> warnings_;
};

// The CPUs this process may run on (sched_getaffinity).
std::vector<int> allowed_cpus();

}  // namespace tmn
