// stream_table.hpp — fixed-capacity per-stream state of the engine.
//
// Contract:
//   * Capacity and hidden size are fixed at construction, which allocates
//     everything; find/insert/erase/evict never allocate or throw (the id
//     lookup is a SlotIndex, see slot_index.hpp).
//   * insert gives a slot with a zeroed hidden state, zeroed network
//     outputs and default state, or kNone when full (the engine answers
//     Status::capacity_exceeded).
#pragma once

#include <cstddef>
#include <cstdint>

#include "tmn/aligned.hpp"
#include "tmn/ingest.hpp"
#include "tmn/kalman.hpp"
#include "tmn/slot_index.hpp"

namespace tmn {

struct StreamState {
  double t_first = 0.0;        // sensor time of the first tick (or of the restart)
  std::uint64_t ticks = 0;     // accepted ticks since the (re)start
  GridState grid{};            // ingest: the model grid, differentiator, high-pass
  double gx = 0.0, gy = 0.0;   // position of the newest grid sample (A's base)
  KalmanState kf{};            // the prior at the newest grid sample
  float blend = 0.0f;          // B: weight of the certified path in the served one
};

class StreamTable {
 public:
  static constexpr std::uint32_t kNone = SlotIndex::kNone;

  // Per slot: the GRU's hidden state (hidden floats) and its last outputs
  // (outputs floats), each padded to a cache line.
  StreamTable(std::uint32_t capacity, int hidden, int outputs);
  StreamTable(const StreamTable&) = delete;
  StreamTable& operator=(const StreamTable&) = delete;

  std::uint32_t find(std::uint64_t id) const noexcept { return index_.find(id); }
  // Precondition: find(id) == kNone.
  std::uint32_t insert(std::uint64_t id) noexcept;
  // Returns false if the stream is absent.
  bool erase(std::uint64_t id) noexcept { return index_.erase(id) != kNone; }
  // Wall-clock activity (tmn::clock ticks) for idle eviction.
  void touch(std::uint32_t slot, std::uint64_t now) noexcept { index_.touch(slot, now); }
  std::uint64_t last_seen(std::uint32_t slot) const noexcept { return index_.last_seen(slot); }
  // Erases every stream not touched for idle_ticks; returns how many.
  std::uint32_t evict_idle(std::uint64_t now, std::uint64_t idle_ticks) noexcept {
    return index_.evict_idle(now, idle_ticks);
  }
  void clear() noexcept { index_.clear(); }

  StreamState& state(std::uint32_t slot) noexcept { return slots_[slot]; }
  const StreamState& state(std::uint32_t slot) const noexcept { return slots_[slot]; }
  float* hidden(std::uint32_t slot) noexcept { return floats_.data() + slot * stride_; }
  const float* hidden(std::uint32_t slot) const noexcept { return floats_.data() + slot * stride_; }
  float* outputs(std::uint32_t slot) noexcept { return hidden(slot) + out_at_; }
  const float* outputs(std::uint32_t slot) const noexcept { return hidden(slot) + out_at_; }

  std::uint32_t size() const noexcept { return index_.size(); }
  std::uint32_t capacity() const noexcept { return index_.capacity(); }

 private:
  SlotIndex index_;
  std::size_t out_at_;                // where the outputs start in a slot's floats
  std::size_t stride_;                // floats per slot: hidden, outputs, each padded to 64 bytes
  AlignedBuffer<StreamState> slots_;  // capacity
  AlignedBuffer<float> floats_;       // capacity * stride
};

}  // namespace tmn
