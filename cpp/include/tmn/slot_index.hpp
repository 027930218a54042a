// slot_index.hpp — a fixed-capacity map from 64-bit ids to dense slots.
//
// Contract:
//   * Construction allocates everything; find/insert/erase never allocate,
//     never throw and cost O(1) expected.
//   * Open addressing with linear probing over a power-of-two table at most
//     half full. erase uses backward-shift deletion, so there are no
//     tombstones and probe lengths never degrade under churn.
//   * Slots are dense in [0, capacity) and stay valid until erased; freed
//     slots are reused (LIFO).
//   * insert on a full map returns kNone; the map never evicts on its own.
//   * Each slot keeps a last-seen time (tmn::clock ticks, set by touch());
//     evict_idle() erases the slots not touched for longer than a limit.
// Shared by the engine's StreamTable and the server's live-accuracy table.
#pragma once

#include <cstdint>
#include <limits>

#include "tmn/aligned.hpp"

namespace tmn {

class SlotIndex {
 public:
  static constexpr std::uint32_t kNone = std::numeric_limits<std::uint32_t>::max();

  explicit SlotIndex(std::uint32_t capacity);
  SlotIndex(const SlotIndex&) = delete;
  SlotIndex& operator=(const SlotIndex&) = delete;
  SlotIndex(SlotIndex&&) noexcept = default;

  std::uint32_t find(std::uint64_t id) const noexcept;
  // Precondition: find(id) == kNone. Returns the new slot, or kNone if full.
  std::uint32_t insert(std::uint64_t id) noexcept;
  // Returns the freed slot, or kNone if the id is absent.
  std::uint32_t erase(std::uint64_t id) noexcept;
  void clear() noexcept;
  void touch(std::uint32_t slot, std::uint64_t now) noexcept { last_seen_[slot] = now; }
  std::uint64_t last_seen(std::uint32_t slot) const noexcept { return last_seen_[slot]; }
  // Erases every slot last touched more than idle_ticks before now; returns how many.
  std::uint32_t evict_idle(std::uint64_t now, std::uint64_t idle_ticks) noexcept;

  bool live(std::uint32_t slot) const noexcept { return live_[slot] != 0; }
  std::uint64_t id(std::uint32_t slot) const noexcept { return ids_[slot]; }
  std::uint32_t size() const noexcept { return size_; }
  std::uint32_t capacity() const noexcept { return capacity_; }

 private:
  std::uint32_t home(std::uint64_t id) const noexcept;

  std::uint32_t capacity_;
  std::uint32_t size_ = 0;
  std::uint32_t mask_ = 0;               // index size - 1
  AlignedBuffer<std::uint64_t> ids_;     // capacity
  AlignedBuffer<std::uint8_t> live_;     // capacity
  AlignedBuffer<std::uint64_t> last_seen_;  // capacity
  AlignedBuffer<std::uint32_t> index_;   // slot + 1, 0 = empty
  AlignedBuffer<std::uint32_t> free_;    // stack of free slots
  std::uint32_t free_top_ = 0;
};

}  // namespace tmn
