#include "tmn/stream_table.hpp"

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

}  // namespace

StreamTable::StreamTable(std::uint32_t capacity, int hidden)
    : capacity_(capacity),
      mask_(0),
      stride_(((static_cast<std::size_t>(hidden) * sizeof(float) + 63) / 64) * 64 / sizeof(float)),
      slots_(capacity),
      hidden_(static_cast<std::size_t>(capacity) * stride_),
      index_(0),
      free_(capacity),
      free_top_(0) {
  if (capacity < 1 || capacity > (1u << 24))
    throw std::invalid_argument("max_streams must be in [1, 16777216]");
  index_ = AlignedBuffer<std::uint32_t>(index_size(capacity));
  mask_ = static_cast<std::uint32_t>(index_.size()) - 1;
  clear();
}

void StreamTable::clear() noexcept {
  for (std::size_t i = 0; i < index_.size(); ++i) index_[i] = 0;
  for (std::uint32_t s = 0; s < capacity_; ++s) {
    slots_[s].live = false;
    free_[s] = capacity_ - 1 - s;  // pop order 0, 1, 2, ...
  }
  free_top_ = capacity_;
  size_ = 0;
}

std::uint32_t StreamTable::home(std::uint64_t id) const noexcept {
  return static_cast<std::uint32_t>(mix(id)) & mask_;
}

std::uint32_t StreamTable::find(std::uint64_t id) const noexcept {
  for (std::uint32_t i = home(id);; i = (i + 1) & mask_) {
    const std::uint32_t e = index_[i];
    if (e == 0) return kNone;
    if (slots_[e - 1].id == id) return e - 1;
  }
}

std::uint32_t StreamTable::insert(std::uint64_t id) noexcept {
  if (free_top_ == 0) return kNone;
  const std::uint32_t slot = free_[--free_top_];
  std::uint32_t i = home(id);
  while (index_[i] != 0) i = (i + 1) & mask_;
  index_[i] = slot + 1;
  StreamState& s = slots_[slot];
  s = StreamState{};
  s.id = id;
  s.live = true;
  float* h = hidden(slot);
  for (std::size_t j = 0; j < stride_; ++j) h[j] = 0.0f;
  ++size_;
  return slot;
}

bool StreamTable::erase(std::uint64_t id) noexcept {
  std::uint32_t i = home(id);
  for (;; i = (i + 1) & mask_) {
    const std::uint32_t e = index_[i];
    if (e == 0) return false;
    if (slots_[e - 1].id == id) break;
  }
  const std::uint32_t slot = index_[i] - 1;
  // Backward-shift deletion: pull later entries of the probe run into the
  // hole when the hole lies between their home and where they sit.
  std::uint32_t hole = i;
  for (std::uint32_t j = (i + 1) & mask_; index_[j] != 0; j = (j + 1) & mask_) {
    const std::uint32_t h = home(slots_[index_[j] - 1].id);
    // j's entry may move to `hole` iff h is not cyclically in (hole, j]
    const bool stays = hole <= j ? (hole < h && h <= j) : (hole < h || h <= j);
    if (!stays) {
      index_[hole] = index_[j];
      hole = j;
    }
  }
  index_[hole] = 0;
  slots_[slot].live = false;
  free_[free_top_++] = slot;
  --size_;
  return true;
}

std::uint32_t StreamTable::evict_idle(std::uint64_t now, std::uint64_t idle_ticks) noexcept {
  std::uint32_t n = 0;
  for (std::uint32_t s = 0; s < capacity_; ++s) {
    const StreamState& st = slots_[s];
    if (st.live && now > st.last_seen && now - st.last_seen > idle_ticks) {
      erase(st.id);
      ++n;
    }
  }
  return n;
}

}  // namespace tmn
