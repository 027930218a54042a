// The GRU step, compiled once per instruction set (see CMakeLists.txt). The
// build defines TMN_ISA to scalar, avx2 or avx512 and passes matching -m
// flags; everything here lives in a namespace of that name, so the copies
// never collide. std algorithms are avoided on purpose: an out-of-line
// template copy compiled for AVX-512 could be picked by the linker for the
// portable path. Loops are written so that GCC auto-vectorises them.
#include <algorithm>
#include <cmath>

#include "tmn/activation.hpp"
#include "tmn/gru.hpp"

#ifndef TMN_ISA
#error "TMN_ISA must name the instruction set of this translation unit"
#endif

namespace tmn::kernels::TMN_ISA {

namespace {

// out[0..n) += col[0..n) * a, for each column j of a transposed matrix
inline void axpy_cols(const float* __restrict w_t, const float* __restrict a,
                      int cols, int n, float* __restrict out) noexcept {
  for (int j = 0; j < cols; ++j) {
    const float aj = a[j];
    const float* __restrict col = w_t + static_cast<long>(j) * n;
    for (int i = 0; i < n; ++i) out[i] += col[i] * aj;
  }
}

inline void dot_cols_i8(const std::int8_t* __restrict q_t,
                        const std::int8_t* __restrict aq, int cols, int n,
                        std::int32_t* __restrict acc) noexcept {
  for (int i = 0; i < n; ++i) acc[i] = 0;
  for (int j = 0; j < cols; ++j) {
    const std::int32_t aj = aq[j];
    const std::int8_t* __restrict col = q_t + static_cast<long>(j) * n;
    for (int i = 0; i < n; ++i) acc[i] += static_cast<std::int32_t>(col[i]) * aj;
  }
}

// aq = clamp(rint(a * inv_scale), -127, 127); rint rounds half to even.
inline void quantise(const float* __restrict a, float inv_scale, int n,
                     std::int8_t* __restrict aq) noexcept {
  for (int i = 0; i < n; ++i) {
    float v = std::nearbyint(a[i] * inv_scale);
    v = std::min(127.0f, std::max(-127.0f, v));
    aq[i] = static_cast<std::int8_t>(v);
  }
}

// h' from pre-activations gi = W_i x + b_i and gh = W_h h + b_h (3H each).
inline void gru_cell(const float* __restrict gi, const float* __restrict gh,
                     int H, float* __restrict h) noexcept {
  for (int i = 0; i < H; ++i) {
    const float r = act::sigmoid(gi[i] + gh[i]);                  // reset gate
    const float z = act::sigmoid(gi[H + i] + gh[H + i]);          // update gate
    const float n = act::tanh(gi[2 * H + i] + r * gh[2 * H + i]); // candidate
    h[i] = (1.0f - z) * n + z * h[i];
  }
}

void step_fp32(const GruWeights& w, const float* x, float* h, float* y,
               GruScratch& s) noexcept {
  const int H = w.hidden, G = 3 * w.hidden, O = w.out;
  float* __restrict gi = s.gi.data();
  float* __restrict gh = s.gh.data();
  for (int i = 0; i < G; ++i) {
    gi[i] = w.b_ih[i];
    gh[i] = w.b_hh[i];
  }
  axpy_cols(w.w_ih_t.data(), x, kFeatures, G, gi);  // gi = W_ih x + b_ih
  axpy_cols(w.w_hh_t.data(), h, H, G, gh);          // gh = W_hh h + b_hh
  gru_cell(gi, gh, H, h);
  for (int o = 0; o < O; ++o) y[o] = w.b_out[o];
  axpy_cols(w.w_out_t.data(), h, H, O, y);          // y = W_o h' + b_o
}

void step_int8(const GruWeights& w, const float* x, float* h, float* y,
               GruScratch& s) noexcept {
  const int H = w.hidden, G = 3 * w.hidden, O = w.out;
  float* __restrict gi = s.gi.data();
  float* __restrict gh = s.gh.data();

  // quantise x with its dynamic scale, h with the static scale 1/127
  float xmax = 0.0f;
  for (int j = 0; j < kFeatures; ++j) xmax = std::max(xmax, std::fabs(x[j]));
  const float x_scale = xmax > 0.0f ? xmax / 127.0f : 1.0f;
  const float x_inv = xmax > 0.0f ? 127.0f / xmax : 0.0f;
  s.x_scale = x_scale;
  quantise(x, x_inv, kFeatures, s.xq.data());
  quantise(h, 127.0f, H, s.hq.data());

  // int32 accumulators, then dequantise and add the biases
  dot_cols_i8(w.q_ih_t.data(), s.xq.data(), kFeatures, G, s.acc_ih.data());
  dot_cols_i8(w.q_hh_t.data(), s.hq.data(), H, G, s.acc_hh.data());
  for (int i = 0; i < G; ++i) {
    gi[i] = static_cast<float>(s.acc_ih[i]) * (w.s_ih[i] * x_scale) + w.b_ih[i];
    gh[i] = static_cast<float>(s.acc_hh[i]) * w.s_hh_h[i] + w.b_hh[i];
  }
  gru_cell(gi, gh, H, h);

  // head on the re-quantised h'
  quantise(h, 127.0f, H, s.hq.data());
  dot_cols_i8(w.q_out_t.data(), s.hq.data(), H, O, s.acc_out.data());
  for (int o = 0; o < O; ++o)
    y[o] = static_cast<float>(s.acc_out[o]) * w.s_out_h[o] + w.b_out[o];
}

void sigmoid_n(const float* in, float* out, int n) noexcept {
  for (int i = 0; i < n; ++i) out[i] = act::sigmoid(in[i]);
}

void tanh_n(const float* in, float* out, int n) noexcept {
  for (int i = 0; i < n; ++i) out[i] = act::tanh(in[i]);
}

}  // namespace

extern const GruKernels table;
const GruKernels table{Isa::TMN_ISA, &step_fp32, &step_int8, &sigmoid_n, &tanh_n};

}  // namespace tmn::kernels::TMN_ISA
