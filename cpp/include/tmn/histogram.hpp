// histogram.hpp — fixed-memory log-linear histogram for percentiles.
//
// Contract:
//   * Buckets cover [lowest, lowest * 2^octaves) with `sub` linear buckets per
//     octave (relative bucket width 1/sub); values below go to an underflow
//     bucket, values above (+inf and NaN included) to an overflow bucket. Exact count,
//     sum, min and max are kept besides.
//   * record() never allocates, locks or throws: a handful of flops.
//   * One writer thread. Counters are relaxed atomics written with plain
//     load+store (no read-modify-write), so another thread may read a
//     snapshot at any time; a snapshot can be a few records behind, never torn
//     per counter.
//   * percentile(p) returns the upper edge of the bucket holding the p-th
//     value, clamped to [min, max]: an upper bound within one bucket width.
#pragma once

#include <atomic>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "tmn/aligned.hpp"

namespace tmn {

class Histogram {
 public:
  Histogram(double lowest, int octaves, int sub);
  Histogram(const Histogram&) = delete;
  Histogram& operator=(const Histogram&) = delete;

  void record(double v) noexcept {
    bump(counts_[bucket(v)]);
    bump(count_);
    if (std::isfinite(v)) {
      sum_.store(sum_.load(std::memory_order_relaxed) + v, std::memory_order_relaxed);
      if (v < min_.load(std::memory_order_relaxed)) min_.store(v, std::memory_order_relaxed);
      if (v > max_.load(std::memory_order_relaxed)) max_.store(v, std::memory_order_relaxed);
    }
  }
  void reset() noexcept;
  // Add another histogram's records (the same lowest, octaves and sub; else
  // std::invalid_argument). For the stats of several loops (not the tick path).
  void add(const Histogram& other);

  std::uint64_t count() const noexcept { return count_.load(std::memory_order_relaxed); }
  double sum() const noexcept { return sum_.load(std::memory_order_relaxed); }
  double min() const noexcept { return min_.load(std::memory_order_relaxed); }
  double max() const noexcept { return max_.load(std::memory_order_relaxed); }
  double lowest() const noexcept { return lowest_; }
  int octaves() const noexcept { return octaves_; }
  int sub() const noexcept { return sub_; }
  double mean() const noexcept { return count() ? sum() / static_cast<double>(count()) : 0.0; }
  // p in [0, 100]; NaN when empty.
  double percentile(double p) const noexcept;
  // Every bucket's count: underflow first, overflow last (for tests).
  std::vector<std::uint64_t> bucket_counts() const;

 private:
  static void bump(std::atomic<std::uint64_t>& c) noexcept {
    c.store(c.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  }
  std::size_t bucket(double v) const noexcept;
  double upper_edge(std::size_t b) const noexcept;

  double lowest_;
  int octaves_, sub_;
  AlignedBuffer<std::atomic<std::uint64_t>> counts_;  // 1 + octaves*sub + 1
  std::atomic<std::uint64_t> count_{0};
  std::atomic<double> sum_{0.0};
  std::atomic<double> min_{std::numeric_limits<double>::infinity()};
  std::atomic<double> max_{-std::numeric_limits<double>::infinity()};
};

// The percentiles every tmn report gives (server stats, benchmarks, accuracy
// reports), named as they appear in them. The bindings export the list.
struct ReportedPercentile {
  const char* name;
  double p;  // in [0, 100]
};
inline constexpr ReportedPercentile kReportedPercentiles[] = {
    {"p50", 50.0}, {"p90", 90.0}, {"p99", 99.0}, {"p99.9", 99.9}};

}  // namespace tmn
