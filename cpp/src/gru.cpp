#include "tmn/gru.hpp"

namespace tmn {

namespace kernels {
namespace scalar { extern const GruKernels table; }
#if defined(TMN_HAVE_AVX2)
namespace avx2 { extern const GruKernels table; }
#endif
#if defined(TMN_HAVE_AVX512)
namespace avx512 { extern const GruKernels table; }
#endif
}  // namespace kernels

GruWeights::GruWeights(int hidden_, int out_)
    : hidden(hidden_),
      out(out_),
      w_ih_t(static_cast<std::size_t>(kFeatures) * 3 * hidden_),
      w_hh_t(static_cast<std::size_t>(hidden_) * 3 * hidden_),
      b_ih(3 * hidden_),
      b_hh(3 * hidden_),
      w_out_t(static_cast<std::size_t>(hidden_) * out_),
      b_out(out_),
      q_ih_t(static_cast<std::size_t>(kFeatures) * 3 * hidden_),
      q_hh_t(static_cast<std::size_t>(hidden_) * 3 * hidden_),
      q_out_t(static_cast<std::size_t>(hidden_) * out_),
      s_ih(3 * hidden_),
      s_hh_h(3 * hidden_),
      s_out_h(out_) {}

GruScratch::GruScratch(int hidden, int out)
    : gi(3 * hidden),
      gh(3 * hidden),
      xq(kFeatures),
      hq(hidden),
      acc_ih(3 * hidden),
      acc_hh(3 * hidden),
      acc_out(out) {}

const char* isa_name(Isa isa) noexcept {
  switch (isa) {
    case Isa::scalar: return "scalar";
    case Isa::avx2: return "avx2";
    case Isa::avx512: return "avx512";
  }
  return "unknown";
}

bool isa_available(Isa isa) noexcept {
  switch (isa) {
    case Isa::scalar: return true;
    case Isa::avx2:
#if defined(TMN_HAVE_AVX2)
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
      return false;
#endif
    case Isa::avx512:
#if defined(TMN_HAVE_AVX512)
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
#else
      return false;
#endif
  }
  return false;
}

Isa best_isa() noexcept {
  if (isa_available(Isa::avx512)) return Isa::avx512;
  if (isa_available(Isa::avx2)) return Isa::avx2;
  return Isa::scalar;
}

const GruKernels& gru_kernels(Isa isa) noexcept {
  switch (isa) {
#if defined(TMN_HAVE_AVX512)
    case Isa::avx512: return kernels::avx512::table;
#endif
#if defined(TMN_HAVE_AVX2)
    case Isa::avx2: return kernels::avx2::table;
#endif
    default: return kernels::scalar::table;
  }
}

}  // namespace tmn
