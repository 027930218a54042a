// clock.hpp — the monotonic clock that times every stage.
//
// Contract: `now()` returns a monotonic tick count; `to_ns()` converts a
// difference to nanoseconds. On x86 with an invariant TSC, ticks are TSC
// cycles (rdtsc costs ~10 ns, a third of a vDSO clock_gettime), calibrated
// once per process against std::chrono::steady_clock. Elsewhere, ticks are
// steady_clock nanoseconds. `now()` makes no system call and never fails.
// Call `calibrate()` once before timing (the Engine constructor does); until
// then `now()` reads steady_clock.
#pragma once

#include <chrono>
#include <cstdint>
#if defined(__x86_64__)
#include <x86intrin.h>
#endif

namespace tmn::clock {

namespace detail {
// Written once by calibrate(), before any engine exists; read-only after.
inline bool use_tsc = false;
inline double ns_per_tick = 1.0;
}  // namespace detail

inline std::uint64_t now() noexcept {
#if defined(__x86_64__)
  if (detail::use_tsc) return __rdtsc();
#endif
  return static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(
          std::chrono::steady_clock::now().time_since_epoch())
          .count());
}

// Nanoseconds in a tick difference, saturating at UINT32_MAX (4.3 s).
inline std::uint32_t to_ns(std::uint64_t ticks) noexcept {
  const double ns = static_cast<double>(ticks) * detail::ns_per_tick + 0.5;
  return ns >= 4294967295.0 ? 4294967295u : static_cast<std::uint32_t>(ns);
}

// Ticks in a duration of `ns` nanoseconds (for idle limits and the like).
inline std::uint64_t from_ns(double ns) noexcept {
  const double t = ns / detail::ns_per_tick;
  return t >= 1.8e19 ? ~std::uint64_t{0} : static_cast<std::uint64_t>(t > 0.0 ? t : 0.0);
}

inline bool uses_tsc() noexcept { return detail::use_tsc; }

// Idempotent and thread-compatible (call it before starting threads).
void calibrate() noexcept;

}  // namespace tmn::clock
