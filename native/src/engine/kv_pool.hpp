// The KV pool behind forge_kv_pool (forge.h, "Inference engine"): per layer, K and V rows
// [capacity, kv_heads, head_dim]. Slots are handed out by the caller's prefix cache; the pool only
// stores them.
#pragma once

#include <forge/forge.h>

#include <cstdint>
#include <vector>

struct forge_kv_pool {
  int64_t capacity = 0;
  int32_t num_layers = 0, num_kv_heads = 0, head_dim = 0;
  std::vector<std::vector<float>> k, v;  // [num_layers][capacity * kv_heads * head_dim]

  int64_t row_floats() const { return static_cast<int64_t>(num_kv_heads) * head_dim; }
  float* k_slot(int64_t layer, int64_t slot) { return k[static_cast<size_t>(layer)].data() + slot * row_floats(); }
  float* v_slot(int64_t layer, int64_t slot) { return v[static_cast<size_t>(layer)].data() + slot * row_floats(); }
};
