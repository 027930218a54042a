// stream_table.hpp — fixed-capacity per-stream state.
//
// Contract:
//   * Capacity and hidden size are fixed at construction, which allocates
//     everything: slots, hidden states and the index. find/insert/erase never
//     allocate, never throw and cost O(1) expected.
//   * The index is open addressing with linear probing over a power-of-two
//     table at most half full; erase uses backward-shift deletion, so there
//     are no tombstones and probe lengths never degrade.
//   * A slot number stays valid until its stream is erased.
//   * insert on a full table returns kNone (the engine answers
//     Status::capacity_exceeded); it never evicts on its own.
#pragma once

#include <cstdint>
#include <limits>

#include "tmn/aligned.hpp"
#include "tmn/kalman.hpp"

namespace tmn {

struct StreamState {
  std::uint64_t id = 0;
  double t_first = 0.0;        // sensor time of the first tick (or of the restart)
  double t_last = 0.0;         // sensor time of the last accepted tick
  std::uint64_t ticks = 0;     // accepted ticks since the (re)start
  std::uint64_t last_seen = 0; // tmn::clock ticks at the last accepted tick
  KalmanState kf{};
  bool live = false;
};

class StreamTable {
 public:
  static constexpr std::uint32_t kNone = std::numeric_limits<std::uint32_t>::max();

  StreamTable(std::uint32_t capacity, int hidden);
  StreamTable(const StreamTable&) = delete;
  StreamTable& operator=(const StreamTable&) = delete;

  std::uint32_t find(std::uint64_t id) const noexcept;
  // Precondition: find(id) == kNone. Returns the new slot with a zeroed
  // hidden state, or kNone when the table is full.
  std::uint32_t insert(std::uint64_t id) noexcept;
  // Returns false if the stream is absent.
  bool erase(std::uint64_t id) noexcept;
  // Erases every stream whose last_seen is older than now - idle_ticks;
  // returns how many.
  std::uint32_t evict_idle(std::uint64_t now, std::uint64_t idle_ticks) noexcept;
  void clear() noexcept;

  StreamState& state(std::uint32_t slot) noexcept { return slots_[slot]; }
  const StreamState& state(std::uint32_t slot) const noexcept { return slots_[slot]; }
  float* hidden(std::uint32_t slot) noexcept { return hidden_.data() + slot * stride_; }
  const float* hidden(std::uint32_t slot) const noexcept { return hidden_.data() + slot * stride_; }

  std::uint32_t size() const noexcept { return size_; }
  std::uint32_t capacity() const noexcept { return capacity_; }

 private:
  std::uint32_t home(std::uint64_t id) const noexcept;

  std::uint32_t capacity_;
  std::uint32_t size_ = 0;
  std::uint32_t mask_;                  // index size - 1
  std::size_t stride_;                  // floats per hidden state, padded to 64 bytes
  AlignedBuffer<StreamState> slots_;    // capacity
  AlignedBuffer<float> hidden_;         // capacity * stride
  AlignedBuffer<std::uint32_t> index_;  // slot + 1, 0 = empty
  AlignedBuffer<std::uint32_t> free_;   // stack of free slots
  std::uint32_t free_top_;
};

}  // namespace tmn
