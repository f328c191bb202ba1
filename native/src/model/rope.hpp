// Rotary position embedding, rotate-half form (GPT-NeoX / Llama-HF): within each head of head_dim
// values, element i < head_dim/2 pairs with i + head_dim/2, and the pair turns by the angle
// position * theta^(-2i / head_dim):
//   y_i = x_i cos - x_{i+h} sin,   y_{i+h} = x_{i+h} cos + x_i sin        (h = head_dim / 2)
// The backward turns by the opposite angle (the rotation's transpose).
#pragma once

#include <cstdint>
#include <vector>

namespace forge::model {

// cos / sin of every node's angles [n, head_dim / 2], computed once per batch in float64 and shared
// by every layer, q and k, forward and backward.
struct RopeTable {
  int64_t half = 0;
  std::vector<float> cos, sin;
};

void rope_table(int64_t n, const int32_t* positions, int64_t head_dim, float theta, RopeTable& table);

// Rotates x [n, heads, head_dim] in place (inverse = the backward of the forward rotation).
void rope_apply(const RopeTable& table, int64_t n, int64_t heads, float* x, bool inverse);

}  // namespace forge::model
