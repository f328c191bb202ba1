// The SwiGLU gate of the MLP, element-wise over [n, ffn]: act = silu(gate) * up, silu(g) = g sigmoid(g).
#pragma once

#include <cstdint>

namespace forge::model {

void swiglu_forward(int64_t count, const float* gate, const float* up, float* act);

// d_gate = d_act * up * silu'(gate), d_up = d_act * silu(gate), with silu'(g) = s (1 + g (1 - s)),
// s = sigmoid(g). Outputs overwritten; d_gate / d_up may alias gate / up (read before written).
void swiglu_backward(int64_t count, const float* gate, const float* up, const float* d_act, float* d_gate,
                     float* d_up);

}  // namespace forge::model
