// activation.hpp — vectorisable exp, sigmoid and tanh.
//
// Contract: branch-free float functions that GCC/Clang auto-vectorise in a
// loop, so no fast-math flag is needed (see DESIGN.md: finite-math-only would
// delete ingest's isfinite checks). Inputs are finite (ingest guarantees it).
// Maximum errors, checked by tests/unit/test_activation.py on a dense grid
// against float64 references:
//   exp_approx   relative error <= 3e-7 on [-87, 88] (clamped outside)
//   sigmoid      absolute error <= 2e-7
//   tanh         absolute error <= 4e-7
// The functions have internal linkage on purpose: each ISA-specific kernel
// translation unit gets its own copy compiled for its own instruction set,
// so no AVX-512 code can leak into the portable build through the linker.
#pragma once

#include <bit>
#include <cmath>
#include <cstdint>

namespace tmn::act {

// e^x by Cody-Waite range reduction x = n ln2 + r, |r| <= ln2/2, a degree-6
// polynomial for e^r (Cephes expf coefficients) and 2^n built in the exponent
// bits.
[[gnu::always_inline]] static inline float exp_approx(float x) noexcept {
  x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
  const float n = std::floor(x * 1.44269504088896341f + 0.5f);
  const float r = (x - n * 0.693359375f) + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const std::int32_t bits = (static_cast<std::int32_t>(n) + 127) << 23;
  return p * std::bit_cast<float>(bits);
}

// sigma(x) = 1 / (1 + e^-x)
[[gnu::always_inline]] static inline float sigmoid(float x) noexcept {
  return 1.0f / (1.0f + exp_approx(-x));
}

// tanh(x) = 2 sigma(2x) - 1; absolute (not relative) accuracy near 0, which
// is what a GRU needs.
[[gnu::always_inline]] static inline float tanh(float x) noexcept {
  return 2.0f / (1.0f + exp_approx(-2.0f * x)) - 1.0f;
}

}  // namespace tmn::act
