#include "tmn/isa.hpp"

#include "tmn/gate.hpp"
#include "tmn/gru.hpp"

namespace tmn {

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

// The kernel tables of each ISA (gru_kernels.cpp and gate_kernels.cpp, each
// compiled once per ISA into a namespace of its name).
namespace kernels {
namespace scalar {
extern const GruKernels table;
extern const GateKernels gate_table;
}  // namespace scalar
#if defined(TMN_HAVE_AVX2)
namespace avx2 {
extern const GruKernels table;
extern const GateKernels gate_table;
}  // namespace avx2
#endif
#if defined(TMN_HAVE_AVX512)
namespace avx512 {
extern const GruKernels table;
extern const GateKernels gate_table;
}  // namespace avx512
#endif
}  // namespace kernels

namespace {

struct IsaKernels {
  const GruKernels* gru;
  const GateKernels* gate;
};

// An ISA this build lacks gets the portable tables.
IsaKernels kernels_of(Isa isa) noexcept {
  switch (isa) {
#if defined(TMN_HAVE_AVX512)
    case Isa::avx512: return {&kernels::avx512::table, &kernels::avx512::gate_table};
#endif
#if defined(TMN_HAVE_AVX2)
    case Isa::avx2: return {&kernels::avx2::table, &kernels::avx2::gate_table};
#endif
    default: return {&kernels::scalar::table, &kernels::scalar::gate_table};
  }
}

}  // namespace

const GruKernels& gru_kernels(Isa isa) noexcept { return *kernels_of(isa).gru; }
const GateKernels& gate_kernels(Isa isa) noexcept { return *kernels_of(isa).gate; }

}  // namespace tmn
