#include "tmn/gru.hpp"

namespace tmn {

GruWeights::GruWeights(int inputs_, int hidden_, int out_)
    : inputs(inputs_),
      hidden(hidden_),
      out(out_),
      ld_gates(pad16(3L * hidden_)),
      ld_out(pad16(out_)),
      w_ih_t(inputs_ * ld_gates),
      w_hh_t(hidden_ * ld_gates),
      b_ih(ld_gates),
      b_hh(ld_gates),
      w_out_t(hidden_ * ld_out),
      b_out(ld_out),
      q_ih_p((inputs_ + 1) / 2 * 2 * ld_gates),
      q_hh_p((hidden_ + 1) / 2 * 2 * ld_gates),
      q_out_p((hidden_ + 1) / 2 * 2 * ld_out),
      q_ih_4(pad4(inputs_) * ld_gates),
      q_hh_4(pad4(hidden_) * ld_gates),
      q_out_4(pad4(hidden_) * ld_out),
      c_ih(ld_gates),
      c_hh(ld_gates),
      c_out(ld_out),
      s_ih(ld_gates),
      s_hh_h(ld_gates),
      s_out_h(ld_out) {}

GruScratch::GruScratch(int inputs, int hidden, int out)
    : gi(pad16(3L * hidden)),
      gh(pad16(3L * hidden)),
      y(pad16(out)),
      xq(pad4(inputs)),
      hq(pad4(hidden)),
      a16(pad4(inputs > hidden ? inputs : hidden)),
      au8(pad4(inputs > hidden ? inputs : hidden)),
      acc_ih(pad16(3L * hidden)),
      acc_hh(pad16(3L * hidden)),
      acc_out(pad16(out)) {}

}  // namespace tmn
