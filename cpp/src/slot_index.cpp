#include "tmn/slot_index.hpp"

#include <stdexcept>

namespace tmn {

namespace {

std::uint32_t index_size(std::uint32_t capacity) {
  std::uint32_t n = 16;
  while (n < 2ull * capacity) n <<= 1;  // load factor <= 1/2
  return n;
}

// splitmix64 finaliser: stream ids are often small consecutive integers.
std::uint64_t mix(std::uint64_t z) noexcept {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

std::uint32_t checked(std::uint32_t capacity) {
  if (capacity < 1 || capacity > (1u << 24))
    throw std::invalid_argument("max_streams must be in [1, 16777216]");
  return capacity;
}

}  // namespace

SlotIndex::SlotIndex(std::uint32_t capacity)
    : capacity_(checked(capacity)),
      ids_(capacity),
      live_(capacity),
      last_seen_(capacity),
      index_(index_size(capacity)),
      free_(capacity) {
  mask_ = static_cast<std::uint32_t>(index_.size()) - 1;
  clear();
}

void SlotIndex::clear() noexcept {
  for (std::size_t i = 0; i < index_.size(); ++i) index_[i] = 0;
  for (std::uint32_t s = 0; s < capacity_; ++s) {
    live_[s] = 0;
    free_[s] = capacity_ - 1 - s;  // pop order 0, 1, 2, ...
  }
  free_top_ = capacity_;
  size_ = 0;
}

std::uint32_t SlotIndex::home(std::uint64_t id) const noexcept {
  return static_cast<std::uint32_t>(mix(id)) & mask_;
}

std::uint32_t SlotIndex::find(std::uint64_t id) const noexcept {
  for (std::uint32_t i = home(id);; i = (i + 1) & mask_) {
    const std::uint32_t e = index_[i];
    if (e == 0) return kNone;
    if (ids_[e - 1] == id) return e - 1;
  }
}

std::uint32_t SlotIndex::insert(std::uint64_t id) noexcept {
  if (free_top_ == 0) return kNone;
  const std::uint32_t slot = free_[--free_top_];
  std::uint32_t i = home(id);
  while (index_[i] != 0) i = (i + 1) & mask_;
  index_[i] = slot + 1;
  ids_[slot] = id;
  live_[slot] = 1;
  last_seen_[slot] = 0;
  ++size_;
  return slot;
}

std::uint32_t SlotIndex::erase(std::uint64_t id) noexcept {
  std::uint32_t i = home(id);
  for (;; i = (i + 1) & mask_) {
    const std::uint32_t e = index_[i];
    if (e == 0) return kNone;
    if (ids_[e - 1] == id) break;
  }
  const std::uint32_t slot = index_[i] - 1;
  // Backward-shift deletion: pull later entries of the probe run into the
  // hole when the hole lies cyclically between their home and where they sit.
  std::uint32_t hole = i;
  for (std::uint32_t j = (i + 1) & mask_; index_[j] != 0; j = (j + 1) & mask_) {
    const std::uint32_t h = home(ids_[index_[j] - 1]);
    const bool stays = hole <= j ? (hole < h && h <= j) : (hole < h || h <= j);
    if (!stays) {
      index_[hole] = index_[j];
      hole = j;
    }
  }
  index_[hole] = 0;
  live_[slot] = 0;
  free_[free_top_++] = slot;
  --size_;
  return slot;
}

std::uint32_t SlotIndex::evict_idle(std::uint64_t now, std::uint64_t idle_ticks) noexcept {
  std::uint32_t n = 0;
  for (std::uint32_t s = 0; s < capacity_; ++s) {
    if (live_[s] && now > last_seen_[s] && now - last_seen_[s] > idle_ticks) {
      erase(ids_[s]);
      ++n;
    }
  }
  return n;
}

}  // namespace tmn
