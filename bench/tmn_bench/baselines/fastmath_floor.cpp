// The compute-floor reference of tmn-bench engine (bench/README.md, "The
// fast-math floor"): one GRU step and the linear head of the model's exact
// sizes, written plainly and compiled by the bench with -O3 -march=native
// -ffast-math -funroll-loops, so that the compiler may vectorise, reassociate,
// fuse and unroll everything and call vectorised expf/tanhf (libmvec). Of the
// variants tried (row dot products, no unrolling, 512-bit vectors) this was
// the fastest on the reference machine. It is a measuring stick only:
// never part of the product (DESIGN.md forbids fast-math there), built into a
// temporary shared library by tmn_bench.baselines.fastmath_floor.
//
// Sizes are compile-time constants (-DTMN_F, -DTMN_H, -DTMN_O), the weights
// fixed-size aligned arrays, transposed so that each input element is one
// contiguous axpy over all gate rows (PyTorch's gate order r, z, n):
//   gi = W_ih x + b_ih,  gh = W_hh h + b_hh
//   r = sigma(gi_r + gh_r), z = sigma(gi_z + gh_z), n = tanh(gi_n + r * gh_n)
//   h' = (1 - z) n + z h,  y = W_o h' + b_o
#include <cmath>
#include <cstdint>
#include <ctime>
#include <x86intrin.h>

#ifndef TMN_F
#error "-DTMN_F=<inputs> -DTMN_H=<hidden> -DTMN_O=<outputs> give the model's sizes"
#endif

namespace {

constexpr int F = TMN_F, H = TMN_H, G = 3 * TMN_H, O = TMN_O;

alignas(64) float w_ih_t[F][G];  // w_ih_t[j][i] = W_ih[i][j]
alignas(64) float w_hh_t[H][G];
alignas(64) float b_ih[G], b_hh[G];
alignas(64) float w_out_t[H][O];
alignas(64) float b_out[O];

inline float sigmoid(float v) { return 1.0f / (1.0f + std::exp(-v)); }

inline void step(const float* __restrict x, float* __restrict h, float* __restrict y) {
  alignas(64) float gi[G], gh[G];
  for (int i = 0; i < G; ++i) {
    gi[i] = b_ih[i];
    gh[i] = b_hh[i];
  }
  for (int j = 0; j < F; ++j)
    for (int i = 0; i < G; ++i) gi[i] += w_ih_t[j][i] * x[j];
  for (int j = 0; j < H; ++j)
    for (int i = 0; i < G; ++i) gh[i] += w_hh_t[j][i] * h[j];
  for (int i = 0; i < H; ++i) {
    const float r = sigmoid(gi[i] + gh[i]);
    const float z = sigmoid(gi[H + i] + gh[H + i]);
    const float n = std::tanh(gi[2 * H + i] + r * gh[2 * H + i]);
    h[i] = (1.0f - z) * n + z * h[i];
  }
  for (int o = 0; o < O; ++o) y[o] = b_out[o];
  for (int j = 0; j < H; ++j)
    for (int o = 0; o < O; ++o) y[o] += w_out_t[j][o] * h[j];
}

inline std::uint64_t now(bool tsc) {
  if (tsc) return __rdtsc();
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1000000000u + static_cast<std::uint64_t>(ts.tv_nsec);
}

}  // namespace

extern "C" {

// The sizes this library was built for: F, H, O.
void tmn_floor_sizes(int* f, int* h, int* o) {
  *f = F;
  *h = H;
  *o = O;
}

// The weights in PyTorch's row-major layouts: w_ih [3H, F], w_hh [3H, H],
// b_ih, b_hh [3H], w_out [O, H], b_out [O].
void tmn_floor_set(const float* w_ih, const float* w_hh, const float* bi, const float* bh,
                   const float* w_out, const float* bo) {
  for (int i = 0; i < G; ++i) {
    for (int j = 0; j < F; ++j) w_ih_t[j][i] = w_ih[i * F + j];
    for (int j = 0; j < H; ++j) w_hh_t[j][i] = w_hh[i * H + j];
    b_ih[i] = bi[i];
    b_hh[i] = bh[i];
  }
  for (int o = 0; o < O; ++o) {
    for (int j = 0; j < H; ++j) w_out_t[j][o] = w_out[o * H + j];
    b_out[o] = bo[o];
  }
}

// n steps over the inputs z[n][F], carrying h[H] (in/out); each step timed
// by two clock reads (rdtsc when tsc, else CLOCK_MONOTONIC ns) into ticks[n],
// like the engine's bare step. Returns the sum of y[0], which consumes every
// step's output.
double tmn_floor_run(const float* z, long n, int tsc, std::uint64_t* ticks, float* h) {
  alignas(64) float hh[H], y[O];
  for (int i = 0; i < H; ++i) hh[i] = h[i];
  double checksum = 0.0;
  for (long s = 0; s < n; ++s) {
    const std::uint64_t t0 = now(tsc != 0);
    step(z + s * F, hh, y);
    ticks[s] = now(tsc != 0) - t0;
    checksum += y[0];
  }
  for (int i = 0; i < H; ++i) h[i] = hh[i];
  return checksum;
}

}  // extern "C"
