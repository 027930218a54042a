// gru.hpp — stage 3, network: one GRU step, then the linear head.
//
// Contract:
//   input   z[F] (z-scored features, F = inputs), h[H] (the stream's hidden state);
//   output  h[H] updated in place, y[2K] (head outputs, output units);
//   cost    3H(F + H) + 2K H multiply-adds (4,096 for F = 8, H = 32, K = 10);
//   errors  none: the weights were validated when the model loaded.
//
// The maths, in PyTorch's gate order (r, z, n):
//   r  = sigma(W_ir x + b_ir + W_hr h + b_hr)          // reset gate
//   z  = sigma(W_iz x + b_iz + W_hz h + b_hz)          // update gate
//   n  = tanh (W_in x + b_in + r * (W_hn h + b_hn))    // candidate
//   h' = (1 - z) * n + z * h
//   y  = W_o h' + b_o
// Weights are stored transposed (column-major), so each input element
// broadcasts into one contiguous axpy over all 3H gate rows:
//
//   gh[0..3H) += W_hh[:, j] * h[j]     for j in 0..H
//
// INT8 scheme (docs/model-format.md): per-row symmetric int8 weights
// W[i,:] ~= s_w[i] * Wq[i,:]; int8 activations with a symmetric scale:
//   x: dynamic per tick, s_x = max|x| / 127   (s_x = 1 when x == 0)
//   h: static,           s_h = 1 / 127        (|h| <= 1 for a GRU)
//   aq = clamp(rint(a * (1 / s_a)), -127, 127) (float32 product, half to even)
// Accumulators are int32 (|acc| <= 127 * 127 * kMaxHidden fits easily), then
//   out[i] = acc[i] * (s_w[i] * s_a) + b[i].
// The hidden state itself stays float32; only the matmul inputs are int8.
//
// How each ISA forms the exact int32 sums (the same integers, different
// instructions; tests/unit/test_int8.py checks every ISA against numpy):
//   scalar, AVX2  weights as int16 column pairs, activations widened to int16:
//                 one vpmaddwd gives Q[i][2p] a[2p] + Q[i][2p+1] a[2p+1] per
//                 int32 lane, exactly (|sum| <= 2 * 127^2). vpmaddubsw was
//                 tried and is no faster here: its int16 pair sums must be
//                 widened by a second multiply-add (vpmaddwd with ones), so it
//                 needs as many multiply instructions per product as vpmaddwd.
//   AVX-512 VNNI  weights as int8 column quads, activations offset to
//                 unsigned bytes a + 128 (a XOR 0x80): one vpdpbusd adds
//                 sum_t Q[i][4g+t] (a[4g+t] + 128) to an int32 lane; the
//                 accumulator starts at -128 sum_j Q[i][j], so the result is
//                 sum_j Q[i][j] a[j] exactly (every partial sum stays below
//                 127 * 255 * kMaxHidden < 2^31).
#pragma once

#include <cstdint>

#include "tmn/aligned.hpp"
#include "tmn/isa.hpp"

namespace tmn {

inline constexpr int kMaxInputs = 8;     // largest input size F (the ingest's features)
inline constexpr int kMaxHidden = 1024;  // largest hidden size H (int32 accumulators, above)

// Round n up to a multiple of 16 floats (one AVX-512 register).
constexpr long pad16(long n) noexcept { return (n + 15) / 16 * 16; }
// Round a column count up to whole quads (the int8 layouts' column groups).
constexpr long pad4(long n) noexcept { return (n + 3) / 4 * 4; }

struct GruWeights {
  int inputs = 0;     // F
  int hidden = 0;     // H
  int out = 0;        // 2K
  long ld_gates = 0;  // pad16(3H): leading dimension of the gate matrices
  long ld_out = 0;    // pad16(2K): leading dimension of the head
  // FP32, transposed with padded rows: w_ih_t[j * ld_gates + i] = W_ih[i][j];
  // padding entries are zero, so the kernels run whole 16-wide blocks.
  AlignedBuffer<float> w_ih_t, w_hh_t, b_ih, b_hh, w_out_t, b_out;
  // INT8 values, held as int16 column pairs for the pairwise integer
  // multiply-add (vpmaddwd): q_hh_p[(p * ld_gates + i) * 2 + t] = Qhh[i][2p+t],
  // zero where 2p+t >= the column count. Per-row scales; s_hh_h and s_out_h
  // fold the static hidden scale in: s_hh_h[i] = s_hh[i] / 127.
  AlignedBuffer<std::int16_t> q_ih_p, q_hh_p, q_out_p;
  // The same values as int8 column quads for vpdpbusd (AVX-512 VNNI):
  // q_hh_4[(g * ld_gates + i) * 4 + t] = Qhh[i][4g+t], zero where 4g+t >= the
  // column count; and each row's offset correction -128 sum_j Q[i][j].
  AlignedBuffer<std::int8_t> q_ih_4, q_hh_4, q_out_4;
  AlignedBuffer<std::int32_t> c_ih, c_hh, c_out;
  AlignedBuffer<float> s_ih, s_hh_h, s_out_h;

  GruWeights() = default;
  GruWeights(int inputs_, int hidden_, int out_);
};

// Per-engine work space. The INT8 path leaves its quantised inputs and raw
// accumulators here, which is what the exact-arithmetic test reads.
struct GruScratch {
  AlignedBuffer<float> gi, gh;                // pad16(3H)
  AlignedBuffer<float> y;                     // pad16(2K)
  AlignedBuffer<std::int8_t> xq, hq;          // F and H rounded up to 4 (pad 0)
  AlignedBuffer<std::int16_t> a16;            // a quantised vector widened (AVX2)
  AlignedBuffer<std::uint8_t> au8;            // a quantised vector + 128 (VNNI)
  AlignedBuffer<std::int32_t> acc_ih, acc_hh; // pad16(3H)
  AlignedBuffer<std::int32_t> acc_out;        // pad16(2K)
  float x_scale = 1.0f;

  GruScratch() = default;
  GruScratch(int inputs, int hidden, int out);
};

// One table per instruction set. Each kernel translation unit is compiled
// with its own -m flags; the engine picks a table once, when it is built.
struct GruKernels {
  Isa isa;
  void (*step_fp32)(const GruWeights& w, const float* x, float* h, float* y,
                    GruScratch& s) noexcept;
  void (*step_int8)(const GruWeights& w, const float* x, float* h, float* y,
                    GruScratch& s) noexcept;
  // For tests of the approximations: out[i] = f(in[i]).
  void (*sigmoid)(const float* in, float* out, int n) noexcept;
  void (*tanh)(const float* in, float* out, int n) noexcept;
};

// Precondition: isa_available(isa).
const GruKernels& gru_kernels(Isa isa) noexcept;

}  // namespace tmn
