// The GRU step, compiled once per instruction set (see CMakeLists.txt). The
// build defines TMN_ISA to scalar, avx2 or avx512 and passes matching -m
// flags; everything here lives in a namespace of that name, so the copies
// never collide. std algorithms are avoided on purpose: an out-of-line
// template copy compiled for AVX-512 could be picked by the linker for the
// portable path. Loops are written so that GCC auto-vectorises them.
#include <algorithm>
#include <cmath>
#include <cstring>
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

// --- INT8: the exact int32 sums (gru.hpp says which layout each ISA reads) ---

inline std::uint32_t load_u32(const void* p) noexcept {
  std::uint32_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

#if defined(__AVX512VNNI__) && defined(__AVX512F__)
// acc[0..ld) = c + Q (a + 128), the sums in registers: passes of six blocks
// of 16 rows (3H = 96 rows for H = 32 in one pass; named accumulators, since
// GCC 12 shuffles an array of them through memory), then single blocks. q4
// holds Q as int8 column quads, au the activations + 128 as unsigned bytes
// (a whole number of quads), c the offset corrections.
inline void dpbusd_matvec(const std::int8_t* __restrict q4, long ld,
                          const std::uint8_t* __restrict au, int quads,
                          const std::int32_t* __restrict c, std::int32_t* __restrict acc) noexcept {
  const auto bcast = [&](int g) { return _mm512_set1_epi32(static_cast<int>(load_u32(au + 4 * g))); };
  const auto col = [&](int g, long i) { return _mm512_load_si512(q4 + (g * ld + i) * 4); };
  long i0 = 0;
  for (; i0 + 96 <= ld; i0 += 96) {
    __m512i s0 = _mm512_load_si512(c + i0), s1 = _mm512_load_si512(c + i0 + 16),
            s2 = _mm512_load_si512(c + i0 + 32), s3 = _mm512_load_si512(c + i0 + 48),
            s4 = _mm512_load_si512(c + i0 + 64), s5 = _mm512_load_si512(c + i0 + 80);
#pragma GCC unroll 4
    for (int g = 0; g < quads; ++g) {
      const __m512i ag = bcast(g);
      s0 = _mm512_dpbusd_epi32(s0, ag, col(g, i0));
      s1 = _mm512_dpbusd_epi32(s1, ag, col(g, i0 + 16));
      s2 = _mm512_dpbusd_epi32(s2, ag, col(g, i0 + 32));
      s3 = _mm512_dpbusd_epi32(s3, ag, col(g, i0 + 48));
      s4 = _mm512_dpbusd_epi32(s4, ag, col(g, i0 + 64));
      s5 = _mm512_dpbusd_epi32(s5, ag, col(g, i0 + 80));
    }
    _mm512_store_si512(acc + i0, s0);
    _mm512_store_si512(acc + i0 + 16, s1);
    _mm512_store_si512(acc + i0 + 32, s2);
    _mm512_store_si512(acc + i0 + 48, s3);
    _mm512_store_si512(acc + i0 + 64, s4);
    _mm512_store_si512(acc + i0 + 80, s5);
  }
  for (; i0 < ld; i0 += 32) {  // ld is a multiple of 16, and so is ld - i0
    const bool two = i0 + 32 <= ld;
    __m512i s0 = _mm512_load_si512(c + i0);
    __m512i s1 = two ? _mm512_load_si512(c + i0 + 16) : _mm512_setzero_si512();
    for (int g = 0; g < quads; ++g) {
      const __m512i ag = bcast(g);
      s0 = _mm512_dpbusd_epi32(s0, ag, col(g, i0));
      if (two) s1 = _mm512_dpbusd_epi32(s1, ag, col(g, i0 + 16));
    }
    _mm512_store_si512(acc + i0, s0);
    if (two) _mm512_store_si512(acc + i0 + 16, s1);
  }
}

// acc[0..ld) = Q a exactly, a the int8 vector aq of n values (pad4(n) stored,
// padding 0); ld a multiple of 16.
inline void int_matvec(const GruWeights&, const std::int16_t*, const std::int8_t* q4,
                       const std::int32_t* c, long ld, const std::int8_t* __restrict aq,
                       int n, GruScratch& s, std::int32_t* __restrict acc) noexcept {
  const int quads = static_cast<int>(pad4(n) / 4);
  std::uint8_t* __restrict au = s.au8.data();
  for (int j = 0; j < 4 * quads; ++j) au[j] = static_cast<std::uint8_t>(aq[j]) ^ 0x80u;
  dpbusd_matvec(q4, ld, au, quads, c, acc);
}
#elif defined(__AVX2__)
// acc[0..ld) = Q a, the sums in registers: passes of six blocks of 8 rows
// (named accumulators, as above), then pairs of blocks. qp holds Q as int16
// column pairs, a16 the activations as int16 (a whole number of pairs).
inline void madd_matvec(const std::int16_t* __restrict qp, long ld,
                        const std::int16_t* __restrict a16, int pairs,
                        std::int32_t* __restrict acc) noexcept {
  const auto bcast = [&](int p) { return _mm256_set1_epi32(static_cast<int>(load_u32(a16 + 2 * p))); };
  const auto madd = [&](int p, long i, __m256i ap) {
    return _mm256_madd_epi16(
        _mm256_load_si256(reinterpret_cast<const __m256i*>(qp + (p * ld + i) * 2)), ap);
  };
  const auto store = [&](long i, __m256i v) {
    _mm256_store_si256(reinterpret_cast<__m256i*>(acc + i), v);
  };
  long i0 = 0;
  for (; i0 + 48 <= ld; i0 += 48) {
    __m256i s0 = _mm256_setzero_si256(), s1 = s0, s2 = s0, s3 = s0, s4 = s0, s5 = s0;
#pragma GCC unroll 4
    for (int p = 0; p < pairs; ++p) {
      const __m256i ap = bcast(p);
      s0 = _mm256_add_epi32(s0, madd(p, i0, ap));
      s1 = _mm256_add_epi32(s1, madd(p, i0 + 8, ap));
      s2 = _mm256_add_epi32(s2, madd(p, i0 + 16, ap));
      s3 = _mm256_add_epi32(s3, madd(p, i0 + 24, ap));
      s4 = _mm256_add_epi32(s4, madd(p, i0 + 32, ap));
      s5 = _mm256_add_epi32(s5, madd(p, i0 + 40, ap));
    }
    store(i0, s0); store(i0 + 8, s1); store(i0 + 16, s2);
    store(i0 + 24, s3); store(i0 + 32, s4); store(i0 + 40, s5);
  }
  for (; i0 < ld; i0 += 16) {  // ld is a multiple of 16
    __m256i s0 = _mm256_setzero_si256(), s1 = s0;
#pragma GCC unroll 4
    for (int p = 0; p < pairs; ++p) {
      const __m256i ap = bcast(p);
      s0 = _mm256_add_epi32(s0, madd(p, i0, ap));
      s1 = _mm256_add_epi32(s1, madd(p, i0 + 8, ap));
    }
    store(i0, s0); store(i0 + 8, s1);
  }
}

inline void int_matvec(const GruWeights&, const std::int16_t* qp, const std::int8_t*,
                       const std::int32_t*, long ld, const std::int8_t* __restrict aq, int n,
                       GruScratch& s, std::int32_t* __restrict acc) noexcept {
  const int pairs = (n + 1) / 2;
  std::int16_t* __restrict a16 = s.a16.data();
  int j = 0;
  for (; j + 16 <= 2 * pairs; j += 16)  // sign-extend 16 bytes at a time
    _mm256_store_si256(reinterpret_cast<__m256i*>(a16 + j),
                       _mm256_cvtepi8_epi16(_mm_loadu_si128(
                           reinterpret_cast<const __m128i*>(aq + j))));
  if (j + 8 <= 2 * pairs) {
    _mm_store_si128(reinterpret_cast<__m128i*>(a16 + j),
                    _mm_cvtepi8_epi16(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(aq + j))));
    j += 8;
  }
  for (; j < 2 * pairs; ++j) a16[j] = aq[j];
  madd_matvec(qp, ld, a16, pairs, acc);
}
#else
// The portable path: the same pairs as AVX2, one row at a time.
inline void int_matvec(const GruWeights&, const std::int16_t* qp, const std::int8_t*,
                       const std::int32_t*, long ld, const std::int8_t* __restrict aq, int n,
                       GruScratch&, std::int32_t* __restrict acc) noexcept {
  const int pairs = (n + 1) / 2;
  for (long i = 0; i < ld; ++i) acc[i] = 0;
  for (int p = 0; p < pairs; ++p) {
    const std::int32_t a0 = aq[2 * p], a1 = aq[2 * p + 1];
    const std::int16_t* __restrict col = qp + p * ld * 2;
    for (long i = 0; i < ld; ++i) acc[i] += col[2 * i] * a0 + col[2 * i + 1] * a1;
  }
}
#endif

// aq = clamp(rint(a * inv_scale), -127, 127); rint rounds half to even (the
// default rounding mode, as vroundps's "nearest"). The vector body and the
// scalar tail compute the same float32 products, so they agree bit for bit.
inline void quantise(const float* __restrict a, float inv_scale, int n,
                     std::int8_t* __restrict aq) noexcept {
  int i = 0;
#if defined(__AVX2__)
  const __m256 k = _mm256_set1_ps(inv_scale), lo = _mm256_set1_ps(-127.0f),
               hi = _mm256_set1_ps(127.0f);
  const auto q8 = [&](const float* p) {
    __m256 v = _mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(p), k),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    return _mm256_cvtps_epi32(_mm256_min_ps(hi, _mm256_max_ps(lo, v)));
  };
  for (; i + 32 <= n; i += 32) {
    const __m256i w01 = _mm256_packs_epi32(q8(a + i), q8(a + i + 8));
    const __m256i w23 = _mm256_packs_epi32(q8(a + i + 16), q8(a + i + 24));
    // packs works per 128-bit lane: dwords (q0 lo, q1 lo, q2 lo, q3 lo | q0 hi, ...)
    const __m256i b = _mm256_permutevar8x32_epi32(_mm256_packs_epi16(w01, w23),
                                                  _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(aq + i), b);
  }
  for (; i + 8 <= n; i += 8) {  // e.g. the 8 features of System B
    const __m128i w = _mm_packs_epi32(_mm256_castsi256_si128(q8(a + i)),
                                      _mm256_extracti128_si256(q8(a + i), 1));
    const __m128i b = _mm_packs_epi16(w, w);  // the 8 values in the low 8 bytes
    _mm_storel_epi64(reinterpret_cast<__m128i*>(aq + i), b);
  }
#endif
  for (; i < n; ++i) {
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

// The same cell on the INT8 accumulators, dequantised on the fly:
//   gi[i] = acc_ih[i] (s_ih[i] s_x) + b_ih[i],  gh[i] = acc_hh[i] s_hh_h[i] + b_hh[i]
// (one pass instead of writing gi and gh out and reading them back).
inline void gru_cell_int8(const GruWeights& w, const std::int32_t* __restrict acc_ih,
                          const std::int32_t* __restrict acc_hh, float x_scale,
                          float* __restrict h) noexcept {
  const int H = w.hidden;
  const float* __restrict si = w.s_ih.data();
  const float* __restrict sh = w.s_hh_h.data();
  const float* __restrict bi = w.b_ih.data();
  const float* __restrict bh = w.b_hh.data();
  const auto gi = [&](int i) { return static_cast<float>(acc_ih[i]) * (si[i] * x_scale) + bi[i]; };
  const auto gh = [&](int i) { return static_cast<float>(acc_hh[i]) * sh[i] + bh[i]; };
  for (int i = 0; i < H; ++i) {
    const float r = act::sigmoid(gi(i) + gh(i));                  // reset gate
    const float z = act::sigmoid(gi(H + i) + gh(H + i));          // update gate
    const float n = act::tanh(gi(2 * H + i) + r * gh(2 * H + i)); // candidate
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
  const int H = w.hidden, O = w.out;
  const long LG = w.ld_gates, LO = w.ld_out;

  // quantise x with its dynamic scale, h with the static scale 1/127
  float xmax = 0.0f;
  const int F = w.inputs;
  for (int j = 0; j < F; ++j) xmax = std::max(xmax, std::fabs(x[j]));
  const float x_scale = xmax > 0.0f ? xmax / 127.0f : 1.0f;
  const float x_inv = xmax > 0.0f ? 127.0f / xmax : 0.0f;
  s.x_scale = x_scale;
  quantise(x, x_inv, F, s.xq.data());  // the padding up to a quad stays 0
  quantise(h, 127.0f, H, s.hq.data());

  // int32 accumulators, then the cell, dequantising as it reads them
  int_matvec(w, w.q_ih_p.data(), w.q_ih_4.data(), w.c_ih.data(), LG, s.xq.data(), F, s,
             s.acc_ih.data());
  int_matvec(w, w.q_hh_p.data(), w.q_hh_4.data(), w.c_hh.data(), LG, s.hq.data(), H, s,
             s.acc_hh.data());
  gru_cell_int8(w, s.acc_ih.data(), s.acc_hh.data(), x_scale, h);

  // head on the re-quantised h'
  quantise(h, 127.0f, H, s.hq.data());
  int_matvec(w, w.q_out_p.data(), w.q_out_4.data(), w.c_out.data(), LO, s.hq.data(), H, s,
             s.acc_out.data());
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
