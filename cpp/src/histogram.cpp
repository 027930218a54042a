#include "tmn/histogram.hpp"

#include <limits>
#include <stdexcept>

namespace tmn {

Histogram::Histogram(double lowest, int octaves, int sub)
    : lowest_(lowest), octaves_(octaves), sub_(sub),
      counts_(static_cast<std::size_t>(octaves) * sub + 2) {
  if (!(lowest > 0.0) || octaves < 1 || octaves > 1000 || sub < 1 || sub > 1024)
    throw std::invalid_argument("histogram: bad range");
  reset();
}

void Histogram::reset() noexcept {
  for (std::size_t i = 0; i < counts_.size(); ++i) counts_[i].store(0, std::memory_order_relaxed);
  count_.store(0, std::memory_order_relaxed);
  sum_.store(0.0, std::memory_order_relaxed);
  min_.store(std::numeric_limits<double>::infinity(), std::memory_order_relaxed);
  max_.store(-std::numeric_limits<double>::infinity(), std::memory_order_relaxed);
}

void Histogram::add(const Histogram& o) {
  if (o.lowest_ != lowest_ || o.octaves_ != octaves_ || o.sub_ != sub_)
    throw std::invalid_argument("histogram: cannot add histograms of different ranges");
  const auto plus = [](std::atomic<std::uint64_t>& to, const std::atomic<std::uint64_t>& from) {
    to.store(to.load(std::memory_order_relaxed) + from.load(std::memory_order_relaxed),
             std::memory_order_relaxed);
  };
  for (std::size_t i = 0; i < counts_.size(); ++i) plus(counts_[i], o.counts_[i]);
  plus(count_, o.count_);
  sum_.store(sum() + o.sum(), std::memory_order_relaxed);
  if (o.min() < min()) min_.store(o.min(), std::memory_order_relaxed);
  if (o.max() > max()) max_.store(o.max(), std::memory_order_relaxed);
}

std::size_t Histogram::bucket(double v) const noexcept {
  const std::size_t overflow = counts_.size() - 1;
  if (!(v >= lowest_)) return std::isnan(v) ? overflow : 0;  // underflow
  const double q = v / lowest_;
  // +inf (or a quotient that overflows to it): frexp's exponent is unspecified
  if (!(q <= std::numeric_limits<double>::max())) return overflow;
  int e = 0;
  const double m = std::frexp(q, &e);  // v/lowest = m 2^e, m in [0.5, 1)
  const long octave = e - 1;
  if (octave >= octaves_) return overflow;
  const long s = static_cast<long>((2.0 * m - 1.0) * sub_);  // linear within the octave
  return 1 + static_cast<std::size_t>(octave * sub_ + (s < sub_ ? s : sub_ - 1));
}

double Histogram::upper_edge(std::size_t b) const noexcept {
  if (b == 0) return lowest_;
  const std::size_t k = b - 1;
  const long octave = static_cast<long>(k) / sub_;
  const long s = static_cast<long>(k) % sub_;
  return lowest_ * std::ldexp(1.0 + static_cast<double>(s + 1) / sub_, static_cast<int>(octave));
}

std::vector<std::uint64_t> Histogram::bucket_counts() const {
  std::vector<std::uint64_t> out(counts_.size());
  for (std::size_t i = 0; i < counts_.size(); ++i) out[i] = counts_[i].load(std::memory_order_relaxed);
  return out;
}

double Histogram::percentile(double p) const noexcept {
  const std::uint64_t n = count();
  if (n == 0) return std::numeric_limits<double>::quiet_NaN();
  // rank of the p-th value, 1-based (nearest-rank definition)
  const double want = std::ceil(p / 100.0 * static_cast<double>(n));
  const std::uint64_t rank = want < 1.0 ? 1 : static_cast<std::uint64_t>(want);
  std::uint64_t seen = 0;
  const std::size_t last = counts_.size() - 1;
  for (std::size_t b = 0; b <= last; ++b) {
    seen += counts_[b].load(std::memory_order_relaxed);
    if (seen >= rank) {
      if (b == last) return max();
      const double edge = upper_edge(b);
      return edge < min() ? min() : (edge > max() ? max() : edge);
    }
  }
  return max();
}

}  // namespace tmn
