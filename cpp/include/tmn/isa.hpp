// isa.hpp — the instruction sets the per-ISA kernels are compiled for.
//
// Contract: the GRU kernels (gru.hpp) and the gate's solver kernels
// (gate.hpp) are each compiled once per instruction set (CMakeLists.txt:
// portable, AVX2+FMA, AVX-512 F/BW/VL/VNNI) and picked once, when an engine
// or a gate is built. isa_available() says whether a set is compiled into
// this build and supported by this CPU; best_isa() is the widest that is.
#pragma once

#include <cstdint>

namespace tmn {

enum class Isa : std::uint8_t { scalar = 0, avx2 = 1, avx512 = 2 };

const char* isa_name(Isa isa) noexcept;
// Compiled into this build and supported by this CPU.
bool isa_available(Isa isa) noexcept;
Isa best_isa() noexcept;

}  // namespace tmn
