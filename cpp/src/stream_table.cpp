#include "tmn/stream_table.hpp"

namespace tmn {

namespace {

// n floats rounded up to whole 64-byte cache lines, in floats
std::size_t padded(int n) {
  return ((static_cast<std::size_t>(n) * sizeof(float) + 63) / 64) * 64 / sizeof(float);
}

}  // namespace

StreamTable::StreamTable(std::uint32_t capacity, int hidden, int outputs)
    : index_(capacity),
      out_at_(padded(hidden)),
      stride_(padded(hidden) + padded(outputs)),
      slots_(capacity),
      floats_(static_cast<std::size_t>(capacity) * stride_) {}

std::uint32_t StreamTable::insert(std::uint64_t id) noexcept {
  const std::uint32_t slot = index_.insert(id);
  if (slot == kNone) return kNone;
  slots_[slot] = StreamState{};
  float* h = hidden(slot);
  for (std::size_t j = 0; j < stride_; ++j) h[j] = 0.0f;
  return slot;
}

}  // namespace tmn
