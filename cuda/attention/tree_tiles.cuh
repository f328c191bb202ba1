// The tree structure as the device kernels see it: key tiles of kKeyTile nodes, their visibility
// bounds, and the copies of node rows into shared memory.
//
// Nodes are in DFS pre-order, so key a is visible to query q iff a <= q < subtree_end[a]. A key tile
// [k0, k0 + 64) lying wholly before a query tile [q0, q1) is seen by some query of it iff
// max(subtree_end over the tile) > q0; the tile holding q0 is always seen (q0 sees itself). A pre-pass
// stores that max (and the min, for tiles that every query of a tile sees, which skip the mask) per
// key tile, so the kernels skip invisible tiles after reading one int. subtree_end is trusted but
// clamped to [0, N] wherever it bounds a loop, so a bad entry gives a wrong answer, never a bad read.
#pragma once

#include <cstdint>

#include "mma.cuh"

namespace forge::cuda::attention {

constexpr int kKeyTile = 64;  // keys per tile, in every kernel and in the bounds pre-pass

struct TileBounds {
  int max_end;  // max over the tile's keys of subtree_end, clamped to [0, N]
  int min_end;  // min of the same (keys < N only)
};

// One warp per key tile of Tile keys (a template: header kernels must not be defined twice).
template <int Tile>
__global__ void tile_bounds_kernel(const int32_t* __restrict__ subtree_end, int n, int num_tiles,
                                   TileBounds* __restrict__ out) {
  const int lane = threadIdx.x & 31;
  const int warps = (gridDim.x * blockDim.x) >> 5;
  for (int t = (blockIdx.x * blockDim.x + threadIdx.x) >> 5; t < num_tiles; t += warps) {
    int hi = 0, lo = n;
    for (int j = lane; j < Tile; j += 32) {
      const int a = t * Tile + j;
      if (a < n) {
        const int e = min(max(subtree_end[a], 0), n);
        hi = max(hi, e);
        lo = min(lo, e);
      }
    }
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) {
      hi = max(hi, __shfl_xor_sync(0xffffffffu, hi, off));
      lo = min(lo, __shfl_xor_sync(0xffffffffu, lo, off));
    }
    if (lane == 0) out[t] = {hi, lo};
  }
}

// First key tile t' in [t, t_end) that some query >= q0 can see (max_end > q0), or t_end. Called by
// every lane of a warp with the same arguments; every warp of a block gets the same answer, so the
// block's loop over tiles stays in step. 32 tiles are tested per round.
__device__ __forceinline__ int next_visible_tile(const TileBounds* __restrict__ bounds, int t, int t_end, int q0) {
  const int lane = threadIdx.x & 31;
  for (int base = t; base < t_end; base += 32) {
    const int i = base + lane;
    const bool visible = i < t_end && bounds[i].max_end > q0;
    const unsigned hits = __ballot_sync(0xffffffffu, visible);
    if (hits) return base + __ffs(hits) - 1;
  }
  return t_end;
}

// Copies rows [row0, row0 + Rows) of head `head` of a [n, heads, D] tensor into a shared tile with
// `Stride` elements per row, 16 bytes per cp.async; rows at or past n are zero-filled (a masked key
// row must hold numbers: 0 * NaN would still poison the product).
template <class T, int D, int Rows, int Stride, int Threads>
__device__ __forceinline__ void load_rows(T* tile, const T* __restrict__ src, int64_t row0, int64_t n, int heads,
                                          int head) {
  constexpr int kChunks = D * static_cast<int>(sizeof(T)) / 16;  // 16-byte chunks per row
  constexpr int kPerChunk = 16 / static_cast<int>(sizeof(T));
  static_assert((Rows * kChunks) % Threads == 0, "every thread copies the same number of chunks");
#pragma unroll
  for (int it = 0; it < Rows * kChunks / Threads; ++it) {
    const int i = it * Threads + static_cast<int>(threadIdx.x);
    const int r = i / kChunks, c = i % kChunks;
    const int64_t node = row0 + r;
    const bool valid = node < n;
    const T* from = valid ? src + (node * heads + head) * D + c * kPerChunk : src;
    cp_async_16(tile + r * Stride + c * kPerChunk, from, valid);
  }
}

// subtree_end of the keys [k0, k0 + kKeyTile), clamped to [0, n]; 0 past n (never visible).
template <int Threads>
__device__ __forceinline__ void load_ends(int* ends, const int32_t* __restrict__ subtree_end, int64_t k0, int n) {
  for (int j = threadIdx.x; j < kKeyTile; j += Threads) {
    const int64_t a = k0 + j;
    ends[j] = a < n ? min(max(subtree_end[a], 0), n) : 0;
  }
}

}  // namespace forge::cuda::attention
