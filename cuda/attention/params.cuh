// The arguments every tree-attention kernel takes (both dtype paths), filled by the host entry points.
#pragma once

#include <cstdint>

#include "tree_tiles.cuh"

namespace forge::cuda::attention {

struct ForwardParams {
  const void* q;  // [N, Hq, D]
  const void* k;  // [N, Hkv, D]
  const void* v;
  const int32_t* subtree_end;  // [N]
  const TileBounds* bounds;    // [ceil(N / 64)]
  void* o;                     // [N, Hq, D]
  float* lse;                  // [N, Hq]
  int n, hq, hkv, group;
  float scale, scale_log2;  // scale, scale * log2(e)
};

struct BackwardParams {
  const void* q;  // [N, Hq, D]
  const void* k;  // [N, Hkv, D]
  const void* v;
  const void* d_o;             // [N, Hq, D]
  const float* lse;            // [N, Hq]
  const float* delta;          // [N, Hq]
  const int32_t* subtree_end;  // [N]
  const TileBounds* bounds;    // [ceil(N / 64)]
  float* dq_acc;               // [N, Hq, D], zeroed; receives sum of ds k (unscaled)
  void* dk;                    // [N, Hkv, D]
  void* dv;
  int n, hq, hkv, group;
  float scale, scale_log2;  // scale, scale * log2(e)
};

}  // namespace forge::cuda::attention
