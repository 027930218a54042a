#include "tmn/live_accuracy.hpp"

#include <cmath>
#include <stdexcept>

namespace tmn {

namespace {
// Per-stream histograms are coarser (4 buckets per octave, each 1/8 to 1/4 of
// its values wide) to keep memory at ~1 KB per stream and horizon; the overall
// ones use 16 (1/32 to 1/16).
constexpr int kOctaves = 40;
}  // namespace

LiveAccuracy::LiveAccuracy(std::uint32_t capacity, const std::vector<double>& horizons_s,
                           double every_s, double error_lowest)
    : K_(static_cast<int>(horizons_s.size())),
      h_(horizons_s),
      every_s_(every_s),
      ring_(0),
      index_(capacity),
      rings_(capacity) {
  if (K_ < 1) throw std::invalid_argument("live accuracy: need horizons");
  if (!(every_s > 0.0)) throw std::invalid_argument("live accuracy: sampling interval must be > 0");
  ring_ = static_cast<std::uint32_t>(std::ceil(h_.back() / every_s_)) + 4;
  entries_ = AlignedBuffer<Entry>(static_cast<std::size_t>(capacity) * ring_);
  paths_ = AlignedBuffer<double>(static_cast<std::size_t>(capacity) * ring_ * 2 * K_);
  for (int k = 0; k < K_; ++k) overall_.push_back(std::make_unique<Histogram>(error_lowest, kOctaves, 16));
  per_stream_.reserve(static_cast<std::size_t>(capacity) * K_);
  for (std::size_t i = 0; i < static_cast<std::size_t>(capacity) * K_; ++i)
    per_stream_.push_back(std::make_unique<Histogram>(error_lowest, kOctaves, 4));
}

void LiveAccuracy::forget(std::uint64_t stream) noexcept { index_.erase(stream); }

const Histogram* LiveAccuracy::stream(std::uint64_t id, int k) const noexcept {
  const std::uint32_t slot = index_.find(id);
  return slot == SlotIndex::kNone ? nullptr : per_stream_[slot * K_ + k].get();
}

void LiveAccuracy::observe(const Tick& k, const Prediction& p, std::uint64_t now) noexcept {
  std::uint32_t slot = index_.find(p.stream);
  if (slot == SlotIndex::kNone) {
    slot = index_.insert(p.stream);
    if (slot == SlotIndex::kNone) return;  // full: this stream is not scored
    rings_[slot] = Ring{0.0, 0.0, 0.0, -1e300, 0, 0, false};
    for (int kk = 0; kk < K_; ++kk) per_stream_[slot * K_ + kk]->reset();
  }
  Ring& r = rings_[slot];
  index_.touch(slot, now);
  if (p.restarted || (r.has_prev && k.t <= r.t_prev)) {
    // a gap, or the stream was reset and started again: the truth in between
    // is unknown
    r.size = 0;
    r.has_prev = false;
    r.next_sample = -1e300;
  }

  // 1. score every pending prediction whose next horizon this tick has passed
  //    (each horizon exactly once, when its target time falls in (t_prev, t])
  if (r.has_prev) {
    for (std::uint32_t j = 0; j < r.size; ++j) {
      const std::uint32_t e = (r.head + j) % ring_;
      Entry& en = entries_[slot * ring_ + e];
      const double* path = path_of(slot, e);
      while (en.next_k < K_ && en.t + h_[en.next_k] <= k.t) {
        const double tau = en.t + h_[en.next_k];
        // truth: linear between the previous tick and this one
        const double w = (tau - r.t_prev) / (k.t - r.t_prev);
        const double tx = r.x_prev + w * (k.x - r.x_prev);
        const double ty = r.y_prev + w * (k.y - r.y_prev);
        const double err = std::hypot(path[2 * en.next_k] - tx, path[2 * en.next_k + 1] - ty);
        overall_[en.next_k]->record(err);
        per_stream_[slot * K_ + en.next_k]->record(err);
        ++en.next_k;
      }
    }
    // drop the fully scored ones (the oldest finish first)
    while (r.size > 0 && entries_[slot * ring_ + r.head].next_k == K_) {
      r.head = (r.head + 1) % ring_;
      --r.size;
    }
  }
  r.t_prev = k.t;
  r.x_prev = k.x;
  r.y_prev = k.y;
  r.has_prev = true;

  // 2. keep this prediction if it is time for a sample
  if (p.verdict == Verdict::warming || k.t < r.next_sample) return;
  r.next_sample = k.t + every_s_;
  if (r.size == ring_) {  // cannot happen with regular ticks; keep the newest
    r.head = (r.head + 1) % ring_;
    --r.size;
    ++overwritten_;
  }
  const std::uint32_t e = (r.head + r.size) % ring_;
  entries_[slot * ring_ + e] = Entry{p.t_grid, 0};  // the path's anchor (engine.hpp)
  double* path = path_of(slot, e);
  for (int i = 0; i < 2 * K_; ++i) path[i] = p.path[i];
  ++r.size;
}

}  // namespace tmn
