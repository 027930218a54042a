// live_accuracy.hpp — scores served predictions when their truth arrives.
//
// Contract:
//   * Every `every_s` of a stream's sensor time, observe() keeps the served
//     (non-warming) prediction in that stream's ring. When a later tick of the
//     same stream passes t_pred + h_k, horizon k is scored: the Euclidean
//     distance between the predicted point and the truth, the measured
//     position linearly interpolated between the two ticks around
//     t_pred + h_k. Errors go to per-horizon histograms, overall and per
//     stream, in data units.
//   * A restarted stream (gap), or one whose time starts over (reset), drops
//     its unscored predictions.
//   * Everything is sized at construction; observe() never allocates or
//     throws. One writer thread (the server loop); snapshots may be read from
//     another thread (see histogram.hpp).
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "tmn/aligned.hpp"
#include "tmn/engine.hpp"
#include "tmn/histogram.hpp"
#include "tmn/slot_index.hpp"

namespace tmn {

class LiveAccuracy {
 public:
  // error_lowest: smallest error resolved by the histograms (data units).
  LiveAccuracy(std::uint32_t capacity, const std::vector<double>& horizons_s, double every_s,
               double error_lowest);

  // k and p of an ok tick; now = tmn::clock::now() for idle eviction.
  void observe(const Tick& k, const Prediction& p, std::uint64_t now) noexcept;
  void forget(std::uint64_t stream) noexcept;
  // Forget streams not observed for idle_ticks of tmn::clock; returns how many.
  std::uint32_t evict_idle(std::uint64_t now, std::uint64_t idle_ticks) noexcept {
    return index_.evict_idle(now, idle_ticks);
  }

  int horizons() const noexcept { return K_; }
  const Histogram& overall(int k) const noexcept { return *overall_[k]; }
  // Per-stream histogram of horizon k, or nullptr if the stream is not held.
  const Histogram* stream(std::uint64_t id, int k) const noexcept;
  std::uint64_t overwritten() const noexcept { return overwritten_; }
  const SlotIndex& streams() const noexcept { return index_; }

 private:
  struct Entry {
    double t;      // sensor time of the prediction
    int next_k;    // first horizon not scored yet
  };
  struct Ring {
    double t_prev, x_prev, y_prev;  // last tick seen
    double next_sample;             // sensor time of the next kept prediction
    std::uint32_t head, size;       // oldest entry, number of entries
    bool has_prev;
  };
  double* path_of(std::uint32_t slot, std::uint32_t e) noexcept {
    return paths_.data() + (static_cast<std::size_t>(slot) * ring_ + e) * 2 * K_;
  }

  int K_;
  std::vector<double> h_;
  double every_s_;
  std::uint32_t ring_;  // entries per stream
  SlotIndex index_;
  AlignedBuffer<Ring> rings_;
  AlignedBuffer<Entry> entries_;   // capacity * ring_
  AlignedBuffer<double> paths_;    // capacity * ring_ * 2K
  std::vector<std::unique_ptr<Histogram>> overall_;     // K
  std::vector<std::unique_ptr<Histogram>> per_stream_;  // capacity * K
  std::uint64_t overwritten_ = 0;
};

}  // namespace tmn
