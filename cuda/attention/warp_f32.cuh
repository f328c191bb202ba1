// The float32 reference path of tree attention on the device (FORGE_DTYPE_F32): tensor cores have
// no float32 mode that meets the 1e-4 bound, so these kernels use plain FMAs, one warp per row, each
// lane owning D / 32 channels (scores are reduced across the warp with shuffles):
//   forward and dQ: one warp per (query, query head), walking its visible keys: the key tiles the
//     bounds pre-pass says it can see, then the visible keys of each tile found 32 at a time (ballot);
//   dK / dV: one warp per (key, kv head), walking the queries [a, subtree_end[a]) of every query head
//     of its group: in DFS pre-order they are exactly the key's descendants, so no mask and no atomics.
// Written for clarity: a checked reference, not the fast path.
#pragma once

#include <cmath>
#include <cstdint>

#include "params.cuh"
#include "state.cuh"
#include "tree_tiles.cuh"

namespace forge::cuda::attention {

constexpr int kWarpRowsPerBlock = 4;

template <int N>
__device__ __forceinline__ void load_lane(const float* __restrict__ row, float (&x)[N]) {
  static_assert(N == 2 || N == 4, "D is 64 or 128");
  if constexpr (N == 4) {
    const float4 f = *reinterpret_cast<const float4*>(row);
    x[0] = f.x, x[1] = f.y, x[2] = f.z, x[3] = f.w;
  } else {
    const float2 f = *reinterpret_cast<const float2*>(row);
    x[0] = f.x, x[1] = f.y;
  }
}

template <int N>
__device__ __forceinline__ void store_lane(float* __restrict__ row, const float (&x)[N]) {
  if constexpr (N == 4) *reinterpret_cast<float4*>(row) = make_float4(x[0], x[1], x[2], x[3]);
  else *reinterpret_cast<float2*>(row) = make_float2(x[0], x[1]);
}

template <int N>
__device__ __forceinline__ float lane_dot(const float (&a)[N], const float (&b)[N]) {
  float s = 0.0f;
#pragma unroll
  for (int c = 0; c < N; ++c) s = fmaf(a[c], b[c], s);
  return s;
}

__device__ __forceinline__ float warp_sum(float x) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) x += __shfl_xor_sync(0xffffffffu, x, off);
  return x;
}

// Calls visit(a) for every key a visible to query q, in increasing order (a <= q < subtree_end[a]).
// Every lane of the warp calls it with the same q and sees the same keys.
template <class Visit>
__device__ __forceinline__ void for_each_visible_key(const TileBounds* __restrict__ bounds,
                                                     const int32_t* __restrict__ subtree_end, int q, Visit visit) {
  const int lane = threadIdx.x & 31;
  const int t_end = q / kKeyTile + 1;
  for (int t = next_visible_tile(bounds, 0, t_end, q); t < t_end; t = next_visible_tile(bounds, t + 1, t_end, q)) {
    for (int base = t * kKeyTile; base < (t + 1) * kKeyTile && base <= q; base += 32) {
      const int a = base + lane;
      unsigned hits = __ballot_sync(0xffffffffu, a <= q && subtree_end[a] > q);
      while (hits) {
        visit(base + __ffs(hits) - 1);
        hits &= hits - 1;
      }
    }
  }
}

template <int D>
__global__ void __launch_bounds__(32 * kWarpRowsPerBlock) tree_attention_forward_f32(const ForwardParams p) {
  constexpr int N = D / 32;
  const int lane = threadIdx.x & 31;
  const float* q = static_cast<const float*>(p.q);
  const float* k = static_cast<const float*>(p.k);
  const float* v = static_cast<const float*>(p.v);
  float* o = static_cast<float*>(p.o);
  const int64_t rows = int64_t{p.n} * p.hq;
  const int64_t warps = int64_t{gridDim.x} * kWarpRowsPerBlock;
  for (int64_t r = int64_t{blockIdx.x} * kWarpRowsPerBlock + (threadIdx.x >> 5); r < rows; r += warps) {
    const int qn = static_cast<int>(r / p.hq), h = static_cast<int>(r % p.hq), kv = h / p.group;
    float qv[N];
    load_lane(q + r * D + lane * N, qv);
    State<N> state;
    state.init();
    for_each_visible_key(p.bounds, p.subtree_end, qn, [&](int a) {
      const int64_t at = (int64_t{a} * p.hkv + kv) * D + lane * N;
      float kx[N], vx[N];
      load_lane(k + at, kx);
      load_lane(v + at, vx);
      state.update(p.scale * warp_sum(lane_dot(qv, kx)), vx);
    });
    state.normalize();
    store_lane(o + r * D + lane * N, state.o);
    if (lane == 0) p.lse[r] = state.lse();
  }
}

// dQ [N, Hq, D] float32, written (scaled), one warp per (query, head).
template <int D>
__global__ void __launch_bounds__(32 * kWarpRowsPerBlock) tree_attention_dq_f32(const BackwardParams p, float* dq) {
  constexpr int N = D / 32;
  const int lane = threadIdx.x & 31;
  const float* q = static_cast<const float*>(p.q);
  const float* k = static_cast<const float*>(p.k);
  const float* v = static_cast<const float*>(p.v);
  const float* d_o = static_cast<const float*>(p.d_o);
  const int64_t rows = int64_t{p.n} * p.hq;
  const int64_t warps = int64_t{gridDim.x} * kWarpRowsPerBlock;
  for (int64_t r = int64_t{blockIdx.x} * kWarpRowsPerBlock + (threadIdx.x >> 5); r < rows; r += warps) {
    const int qn = static_cast<int>(r / p.hq), h = static_cast<int>(r % p.hq), kv = h / p.group;
    float qv[N], dov[N], acc[N] = {};
    load_lane(q + r * D + lane * N, qv);
    load_lane(d_o + r * D + lane * N, dov);
    const float lse = p.lse[r], delta = p.delta[r];
    for_each_visible_key(p.bounds, p.subtree_end, qn, [&](int a) {
      const int64_t at = (int64_t{a} * p.hkv + kv) * D + lane * N;
      float kx[N], vx[N];
      load_lane(k + at, kx);
      load_lane(v + at, vx);
      const float s = warp_sum(lane_dot(qv, kx)), dp = warp_sum(lane_dot(dov, vx));
      const float ds = expf(p.scale * s - lse) * (dp - delta);
#pragma unroll
      for (int c = 0; c < N; ++c) acc[c] = fmaf(ds, kx[c], acc[c]);
    });
#pragma unroll
    for (int c = 0; c < N; ++c) acc[c] *= p.scale;
    store_lane(dq + r * D + lane * N, acc);
  }
}

// dK, dV [N, Hkv, D] float32, written, one warp per (key, kv head).
template <int D>
__global__ void __launch_bounds__(32 * kWarpRowsPerBlock) tree_attention_dkdv_f32(const BackwardParams p) {
  constexpr int N = D / 32;
  const int lane = threadIdx.x & 31;
  const float* q = static_cast<const float*>(p.q);
  const float* k = static_cast<const float*>(p.k);
  const float* v = static_cast<const float*>(p.v);
  const float* d_o = static_cast<const float*>(p.d_o);
  const int64_t rows = int64_t{p.n} * p.hkv;
  const int64_t warps = int64_t{gridDim.x} * kWarpRowsPerBlock;
  for (int64_t r = int64_t{blockIdx.x} * kWarpRowsPerBlock + (threadIdx.x >> 5); r < rows; r += warps) {
    const int a = static_cast<int>(r / p.hkv), kv = static_cast<int>(r % p.hkv);
    float kx[N], vx[N], dk[N] = {}, dv[N] = {};
    load_lane(k + r * D + lane * N, kx);
    load_lane(v + r * D + lane * N, vx);
    const int end = min(max(p.subtree_end[a], a), p.n);
    for (int h = kv * p.group; h < (kv + 1) * p.group; ++h)
      for (int qn = a; qn < end; ++qn) {
        const int64_t unit = int64_t{qn} * p.hq + h;
        float qv[N], dov[N];
        load_lane(q + unit * D + lane * N, qv);
        load_lane(d_o + unit * D + lane * N, dov);
        const float s = warp_sum(lane_dot(qv, kx)), dp = warp_sum(lane_dot(dov, vx));
        const float pe = expf(p.scale * s - p.lse[unit]);
        const float ds = pe * (dp - p.delta[unit]);
#pragma unroll
        for (int c = 0; c < N; ++c) {
          dv[c] = fmaf(pe, dov[c], dv[c]);
          dk[c] = fmaf(ds, qv[c], dk[c]);
        }
      }
#pragma unroll
    for (int c = 0; c < N; ++c) dk[c] *= p.scale;
    store_lane(static_cast<float*>(p.dk) + r * D + lane * N, dk);
    store_lane(static_cast<float*>(p.dv) + r * D + lane * N, dv);
  }
}

}  // namespace forge::cuda::attention
