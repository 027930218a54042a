#include "tmn/clock.hpp"

#include <thread>
#if defined(__x86_64__)
#include <cpuid.h>
#endif

namespace tmn::clock {

namespace {

bool has_invariant_tsc() noexcept {
#if defined(__x86_64__)
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (__get_cpuid_max(0x80000000u, nullptr) < 0x80000007u) return false;
  __cpuid(0x80000007u, a, b, c, d);
  return (d & (1u << 8)) != 0;  // CPUID.80000007H:EDX[8] = invariant TSC
#else
  return false;
#endif
}

}  // namespace

void calibrate() noexcept {
  static bool done = false;
  if (done) return;
  done = true;
#if defined(__x86_64__)
  if (!has_invariant_tsc()) return;
  // Measure TSC ticks against steady_clock over 20 ms; the error of the
  // ratio is ~(2 x 30 ns) / 20 ms = 3e-6, far below what percentiles need.
  using sc = std::chrono::steady_clock;
  const auto t0 = sc::now();
  const std::uint64_t c0 = __rdtsc();
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  const auto t1 = sc::now();
  const std::uint64_t c1 = __rdtsc();
  const double ns = std::chrono::duration<double, std::nano>(t1 - t0).count();
  if (c1 <= c0 || ns <= 0.0) return;
  detail::ns_per_tick = ns / static_cast<double>(c1 - c0);
  detail::use_tsc = true;
#endif
}

}  // namespace tmn::clock
