// The GRU step, compiled once per instruction set (see CMakeLists.txt). The
// build defines TMN_ISA to scalar, avx2 or avx512 and passes matching -m
// flags; everything here lives in a namespace of that name, so the copies
// never collide. std algorithms are avoided on purpose: an out-of-line
// template copy compiled for AVX-512 could be picked by the linker for the
// portable path. Loops are written so that GCC auto-vectorises them.
#include <algorithm>
#include <cmath>
#if defined(__AVX2__)
#include <immintrin.h>
#endif

#include "tmn/activation.hpp"
#include "tmn/gru.hpp"

#ifndef TMN_ISA
#error "TMN_ISA must name the instruction set of this translation unit"
#endif

namespace tmn::kernels::TMN_ISA {

namespace {

// The matrix-vector products run over transposed weights with a padded
// leading dimension ld (a multiple of 16). A block of B outputs stays in
// registers while the columns are broadcast into it:
//
//   out[i0 .. i0+B) += sum_j W_t[j][i0 .. i0+B) * a[j]
//
// Columns are split over S interleaved partial sums, so that B/8 x S
// independent FMA chains (8 for AVX2) hide the FMA latency. Integer sums are
// exact in any order; float sums differ from a sequential sum by rounding.
template <int B, int S, class Acc, class W, class A>
inline void block_dot(const W* __restrict w_t, long ld, const A* __restrict a, int cols,
                      long i0, Acc* __restrict out) noexcept {
  Acc acc[S][B];
  for (int s = 0; s < S; ++s)
    for (int ii = 0; ii < B; ++ii) acc[s][ii] = Acc(0);
  int j = 0;
  for (; j + S <= cols; j += S) {
    for (int s = 0; s < S; ++s) {
      const Acc aj = static_cast<Acc>(a[j + s]);
      const W* __restrict col = w_t + (j + s) * ld + i0;
      for (int ii = 0; ii < B; ++ii) acc[s][ii] += static_cast<Acc>(col[ii]) * aj;
    }
  }
  for (; j < cols; ++j) {
    const Acc aj = static_cast<Acc>(a[j]);
    const W* __restrict col = w_t + j * ld + i0;
    for (int ii = 0; ii < B; ++ii) acc[0][ii] += static_cast<Acc>(col[ii]) * aj;
  }
  for (int s = 1; s < S; ++s)
    for (int ii = 0; ii < B; ++ii) acc[0][ii] += acc[s][ii];
  for (int ii = 0; ii < B; ++ii) out[i0 + ii] += acc[0][ii];
}

// out[0..ld) += W_t^T a; ld is the padded output count.
template <class Acc, class W, class A>
inline void matvec_t(const W* __restrict w_t, long ld, const A* __restrict a, int cols,
                     Acc* __restrict out) noexcept {
  long i0 = 0;
  for (; i0 + 32 <= ld; i0 += 32) block_dot<32, 2>(w_t, ld, a, cols, i0, out);
  for (; i0 < ld; i0 += 16) block_dot<16, 4>(w_t, ld, a, cols, i0, out);
}

// Integer dot products over int8 values held as int16 column pairs,
//   qp[(p * ld + i) * 2 + t] = Q[i][2p + t],
// so that one multiply-add of 16-bit pairs (vpmaddwd) gives
//   Q[i][2p] a[2p] + Q[i][2p+1] a[2p+1]
// in an int32 lane, exactly. acc[0..ld) = Q a, with a padded to an even
// length with zero.
inline void matvec_pairs(const std::int16_t* __restrict qp, long ld,
                         const std::int8_t* __restrict a, int pairs,
                         std::int32_t* __restrict acc) noexcept {
#if defined(__AVX2__)
  for (long i0 = 0; i0 < ld; i0 += 16) {
    __m256i s0 = _mm256_setzero_si256(), s1 = _mm256_setzero_si256();
    for (int p = 0; p < pairs; ++p) {
      const std::uint32_t lo = static_cast<std::uint16_t>(a[2 * p]);
      const std::uint32_t hi = static_cast<std::uint16_t>(a[2 * p + 1]);
      const __m256i ap = _mm256_set1_epi32(static_cast<int>(lo | (hi << 16)));
      const std::int16_t* col = qp + (p * ld + i0) * 2;
      s0 = _mm256_add_epi32(s0, _mm256_madd_epi16(
                                    _mm256_load_si256(reinterpret_cast<const __m256i*>(col)), ap));
      s1 = _mm256_add_epi32(s1, _mm256_madd_epi16(_mm256_load_si256(
                                    reinterpret_cast<const __m256i*>(col + 16)), ap));
    }
    _mm256_store_si256(reinterpret_cast<__m256i*>(acc + i0), s0);
    _mm256_store_si256(reinterpret_cast<__m256i*>(acc + i0 + 8), s1);
  }
#else
  for (long i = 0; i < ld; ++i) acc[i] = 0;
  for (int p = 0; p < pairs; ++p) {
    const std::int32_t a0 = a[2 * p], a1 = a[2 * p + 1];
    const std::int16_t* __restrict col = qp + p * ld * 2;
    for (long i = 0; i < ld; ++i) acc[i] += col[2 * i] * a0 + col[2 * i + 1] * a1;
  }
#endif
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
  const int H = w.hidden, O = w.out;
  const long LG = w.ld_gates, LO = w.ld_out;
  float* __restrict gi = s.gi.data();
  float* __restrict gh = s.gh.data();
  float* __restrict yo = s.y.data();
  for (long i = 0; i < LG; ++i) {
    gi[i] = w.b_ih[i];
    gh[i] = w.b_hh[i];
  }
  matvec_t(w.w_ih_t.data(), LG, x, w.inputs, gi);   // gi = W_ih x + b_ih
  matvec_t(w.w_hh_t.data(), LG, h, H, gh);          // gh = W_hh h + b_hh
  gru_cell(gi, gh, H, h);
  for (long o = 0; o < LO; ++o) yo[o] = w.b_out[o];
  matvec_t(w.w_out_t.data(), LO, h, H, yo);         // y = W_o h' + b_o
  for (int o = 0; o < O; ++o) y[o] = yo[o];
}

void step_int8(const GruWeights& w, const float* x, float* h, float* y,
               GruScratch& s) noexcept {
  const int H = w.hidden, G = 3 * w.hidden, O = w.out;
  const long LG = w.ld_gates, LO = w.ld_out;
  float* __restrict gi = s.gi.data();
  float* __restrict gh = s.gh.data();

  // quantise x with its dynamic scale, h with the static scale 1/127
  float xmax = 0.0f;
  const int F = w.inputs;
  for (int j = 0; j < F; ++j) xmax = std::max(xmax, std::fabs(x[j]));
  const float x_scale = xmax > 0.0f ? xmax / 127.0f : 1.0f;
  const float x_inv = xmax > 0.0f ? 127.0f / xmax : 0.0f;
  s.x_scale = x_scale;
  quantise(x, x_inv, F, s.xq.data());  // an odd F leaves the pad entry 0
  quantise(h, 127.0f, H, s.hq.data());

  // int32 accumulators, then dequantise and add the biases
  matvec_pairs(w.q_ih_p.data(), LG, s.xq.data(), (F + 1) / 2, s.acc_ih.data());
  matvec_pairs(w.q_hh_p.data(), LG, s.hq.data(), (H + 1) / 2, s.acc_hh.data());
  for (int i = 0; i < G; ++i) {
    gi[i] = static_cast<float>(s.acc_ih[i]) * (w.s_ih[i] * x_scale) + w.b_ih[i];
    gh[i] = static_cast<float>(s.acc_hh[i]) * w.s_hh_h[i] + w.b_hh[i];
  }
  gru_cell(gi, gh, H, h);

  // head on the re-quantised h'
  quantise(h, 127.0f, H, s.hq.data());
  matvec_pairs(w.q_out_p.data(), LO, s.hq.data(), (H + 1) / 2, s.acc_out.data());
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
