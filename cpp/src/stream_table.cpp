#include "tmn/stream_table.hpp"

namespace tmn {

StreamTable::StreamTable(std::uint32_t capacity, int hidden)
    : index_(capacity),
      stride_(((static_cast<std::size_t>(hidden) * sizeof(float) + 63) / 64) * 64 / sizeof(float)),
      slots_(capacity),
      hidden_(static_cast<std::size_t>(capacity) * stride_) {}

std::uint32_t StreamTable::insert(std::uint64_t id) noexcept {
  const std::uint32_t slot = index_.insert(id);
  if (slot == kNone) return kNone;
  slots_[slot] = StreamState{};
  float* h = hidden(slot);
  for (std::size_t j = 0; j < stride_; ++j) h[j] = 0.0f;
  return slot;
}

}  // namespace tmn
