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
//     answer, reset_stream() and swap_engine() run on the loop between two
//     requests, so a reload never splits or drops a request.
//   * stop(): stop intake (unbind), answer what was already received, join.
#pragma once

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
  bool echo = false;  // benchmark floor: answer every binary request with its own bytes
};

struct ControlRequest {
  std::uint64_t token = 0;
  std::string payload;  // JSON text
};

// Counters and histograms, written by the loop thread only (relaxed), read by
// the control thread at any time.
struct ServerCounters {
  std::atomic<std::uint64_t> messages{0}, batches{0}, ticks{0}, ticks_ok{0};
  std::atomic<std::uint64_t> control{0}, dropped_replies{0}, dropped_pub{0};
  std::atomic<std::uint64_t> reloads{0}, evicted{0}, loop_iterations{0};
  std::atomic<std::uint64_t> by_status[8]{};
  std::atomic<std::uint64_t> by_frame_error[16]{};
  std::atomic<std::uint64_t> by_verdict[8]{};
  std::atomic<double> cert_sum_pass{0.0};
};

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
  // Swap in a new engine between two requests; returns the old one. The
  // caller keeps ownership of both; live accuracy restarts with the model.
  Engine* swap_engine(Engine* next);

  const ServerCounters& counters() const noexcept { return counters_; }
  const Histogram& stage(int s) const noexcept { return *stage_[s]; }
  const Histogram& tick_total() const noexcept { return *tick_total_; }
  const Histogram& server_latency() const noexcept { return *server_ns_; }
  const LiveAccuracy& live() const noexcept { return *live_; }
  Engine* engine() const noexcept { return engine_; }
  std::uint32_t stream_count() const noexcept;
  std::vector<std::string> warnings() const;
  const ServerConfig& config() const noexcept { return cfg_; }

 private:
  void run() noexcept;
  void setup_thread() noexcept;
  bool receive_one(int flags) noexcept;  // false when nothing was read
  void handle_ticks(const std::uint8_t* data, std::size_t n, std::uint64_t t_recv) noexcept;
  void send_error(wire::FrameError code, std::uint32_t seq, const char* msg) noexcept;
  void send_reply(const void* data, std::size_t n) noexcept;
  void send_envelope_reply(const std::string& envelope, bool delim, const void* data,
                           std::size_t n) noexcept;
  void service_commands() noexcept;
  void wake() noexcept;

  ServerConfig cfg_;
  Engine* engine_;
  void* ctx_ = nullptr;
  void* router_ = nullptr;
  void* pub_ = nullptr;
  int wake_fd_ = -1;
  std::thread thread_;
  std::atomic<bool> running_{false}, stop_{false};

  // current request's envelope (loop thread only)
  std::uint8_t identity_[256];
  std::size_t identity_size_ = 0;
  bool delimiter_ = false;
  std::vector<std::uint8_t> reply_;    // sized for kMaxBatch at construction
  std::vector<std::uint8_t> pub_buf_;  // one prediction frame

  ServerCounters counters_;
  std::unique_ptr<Histogram> stage_[kStages];
  std::unique_ptr<Histogram> tick_total_, server_ns_;
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
  enum class Cmd { none, reset, swap } cmd_ = Cmd::none;
  std::uint64_t cmd_stream_ = 0;
  Engine* cmd_engine_ = nullptr;
  std::unique_ptr<LiveAccuracy> cmd_live_;
  Status cmd_status_ = Status::ok;
  bool cmd_done_ = false;
  std::vector<std::string> warnings_;
};

// The CPUs this process may run on (sched_getaffinity).
std::vector<int> allowed_cpus();

}  // namespace tmn
