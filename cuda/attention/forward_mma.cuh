// Tree attention forward on tensor cores (F16 / BF16 inputs, float32 accumulation), FlashAttention-2
// style.
//
// Block = 4 warps = one query tile of 64 nodes at one query head; warp w owns rows 16w..16w+15 and
// keeps its Q fragments, running max / sum and output accumulator in registers. The block walks the
// visible key tiles (tree_tiles.cuh) in order with K and V double-buffered in shared memory
// (cp.async for tile i+1 is in flight while tile i computes):
//   S = Q K^T (mma), scaled into the log2 domain, masked per element unless every query of the tile
//   sees every key; online softmax (row max over the quad of lanes sharing a row); O += P V with P
//   taken straight from the S fragments.
// The output is O / l and LSE = (m + log2 l) ln 2, written for rows < N.
#pragma once

#include <cmath>
#include <cstdint>

#include "../common/launch.cuh"
#include "mma.cuh"
#include "params.cuh"
#include "tree_tiles.cuh"

namespace forge::cuda::attention {

template <int D>
struct ForwardTiles {
  static constexpr int kWarps = 4, kThreads = 32 * kWarps, kQueryTile = 16 * kWarps;
  static constexpr int kStride = D + 8;
  static constexpr int kTile = kKeyTile * kStride;  // elements of one Q, K or V tile (64 rows)
  static_assert(kQueryTile == kKeyTile, "the tile skip test assumes square tiles");
  // Q, K[2], V[2] (16-bit elements), then the keys' subtree_end [2][64].
  static constexpr size_t kSmemBytes = 5 * kTile * 2 + 2 * kKeyTile * sizeof(int);
};

template <class T, int D>
__global__ void __launch_bounds__(ForwardTiles<D>::kThreads)
    tree_attention_forward_mma(const ForwardParams p) {
  using Tiles = ForwardTiles<D>;
  constexpr int S = Tiles::kStride;
  FORGE_DYNAMIC_SHARED(smem);
  T* sq = reinterpret_cast<T*>(smem);
  T* sk = sq + Tiles::kTile;      // [2][64][S]
  T* sv = sk + 2 * Tiles::kTile;  // [2][64][S]
  int* sends = reinterpret_cast<int*>(sv + 2 * Tiles::kTile);  // [2][64]

  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int g = lane >> 2, t4 = lane & 3;
  const T* q = static_cast<const T*>(p.q);
  const T* k = static_cast<const T*>(p.k);
  const T* v = static_cast<const T*>(p.v);
  // Last query tiles first: in a chain they see the most keys, so the long blocks start early.
  const int q_tile = static_cast<int>(gridDim.x - 1 - blockIdx.x);
  const int q0 = q_tile * Tiles::kQueryTile;
  const int q_last = min(q0 + Tiles::kQueryTile, p.n) - 1;
  const int t_end = q_last / kKeyTile + 1;  // key tiles holding some key <= q_last
  const int row0 = q0 + 16 * warp + g, row1 = row0 + 8;  // this lane's two rows

  for (int h = blockIdx.y; h < p.hq; h += gridDim.y) {
    const int kv = h / p.group;
    load_rows<T, D, Tiles::kQueryTile, S, Tiles::kThreads>(sq, q, q0, p.n, p.hq, h);
    cp_async_commit();
    int t = next_visible_tile(p.bounds, 0, t_end, q0);
    if (t < t_end) {
      load_rows<T, D, kKeyTile, S, Tiles::kThreads>(sk, k, int64_t{t} * kKeyTile, p.n, p.hkv, kv);
      load_rows<T, D, kKeyTile, S, Tiles::kThreads>(sv, v, int64_t{t} * kKeyTile, p.n, p.hkv, kv);
      load_ends<Tiles::kThreads>(sends, p.subtree_end, int64_t{t} * kKeyTile, p.n);
    }
    cp_async_commit();
    cp_async_wait<1>();  // Q has landed
    __syncthreads();

    uint32_t qf[D / 16][4];
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) ldmatrix_x4(qf[kk], a_addr<T, S>(sq, 16 * warp, 16 * kk, lane));
    float acc[D / 8][4];
    zero(acc);
    float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};  // log2 domain; l is this lane's share

    for (int stage = 0; t < t_end; stage ^= 1) {
      const int t_next = next_visible_tile(p.bounds, t + 1, t_end, q0);
      if (t_next < t_end) {
        T* nk = sk + (stage ^ 1) * Tiles::kTile;
        T* nv = sv + (stage ^ 1) * Tiles::kTile;
        load_rows<T, D, kKeyTile, S, Tiles::kThreads>(nk, k, int64_t{t_next} * kKeyTile, p.n, p.hkv, kv);
        load_rows<T, D, kKeyTile, S, Tiles::kThreads>(nv, v, int64_t{t_next} * kKeyTile, p.n, p.hkv, kv);
        load_ends<Tiles::kThreads>(sends + (stage ^ 1) * kKeyTile, p.subtree_end, int64_t{t_next} * kKeyTile, p.n);
      }
      cp_async_commit();
      cp_async_wait<1>();  // tile t has landed (only tile t_next may still be in flight)
      __syncthreads();

      const T* ck = sk + stage * Tiles::kTile;
      const T* cv = sv + stage * Tiles::kTile;
      const int* ends = sends + stage * kKeyTile;
      const int k0 = t * kKeyTile;

      float s[kKeyTile / 8][4];
      zero(s);
#pragma unroll
      for (int kk = 0; kk < D / 16; ++kk) {
#pragma unroll
        for (int j = 0; j < kKeyTile / 16; ++j) {
          uint32_t b[4];
          ldmatrix_x4(b, b_addr_nk<T, S>(ck, 16 * j, 16 * kk, lane));
          MmaType<T>::mma(s[2 * j], qf[kk], b[0], b[1]);
          MmaType<T>::mma(s[2 * j + 1], qf[kk], b[2], b[3]);
        }
      }

      // Every query of the tile sees every key: all keys precede q0 and no key's subtree ends
      // before the tile's last query.
      const bool all_visible = k0 + kKeyTile - 1 < q0 && p.bounds[t].min_end > q_last;
      float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
      for (int nt = 0; nt < kKeyTile / 8; ++nt)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int col = nt * 8 + 2 * t4 + (e & 1);
          const int row = e < 2 ? row0 : row1;
          float x = s[nt][e] * p.scale_log2;
          if (!all_visible && !(k0 + col <= row && row < ends[col])) x = -INFINITY;
          s[nt][e] = x;
          mx[e >> 1] = fmaxf(mx[e >> 1], x);
        }
      float alpha[2], m_use[2];
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
        mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
        const float m_new = fmaxf(m[r], mx[r]);
        // A row that has seen no key yet keeps m = -inf: subtract 0 instead (exp2(-inf) = 0, never NaN).
        m_use[r] = m_new == -INFINITY ? 0.0f : m_new;
        alpha[r] = exp2f(m[r] - m_use[r]);
        m[r] = m_new;
        l[r] *= alpha[r];
      }
#pragma unroll
      for (int nt = 0; nt < kKeyTile / 8; ++nt)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const float pe = exp2f(s[nt][e] - m_use[e >> 1]);
          s[nt][e] = pe;
          l[e >> 1] += pe;
        }
#pragma unroll
      for (int nt = 0; nt < D / 8; ++nt) {
        acc[nt][0] *= alpha[0];
        acc[nt][1] *= alpha[0];
        acc[nt][2] *= alpha[1];
        acc[nt][3] *= alpha[1];
      }

      uint32_t pf[kKeyTile / 16][4];
#pragma unroll
      for (int kk = 0; kk < kKeyTile / 16; ++kk) pack_a<T>(pf[kk], s[2 * kk], s[2 * kk + 1]);
      mma_tile_reg_a<T, kKeyTile, D / 16, true>(acc, pf,
                                                [&](int n0, int kb) { return b_addr_kn<T, S>(cv, n0, kb, lane); });

      __syncthreads();  // every warp is done with this stage before it is refilled
      t = t_next;
    }

    // Finish: the row sum over the quad, then O / l and the natural-log LSE.
    T* o = static_cast<T*>(p.o);
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      l[r] += __shfl_xor_sync(0xffffffffu, l[r], 1);
      l[r] += __shfl_xor_sync(0xffffffffu, l[r], 2);
      const int row = r ? row1 : row0;
      if (row >= p.n) continue;
      const float inv = l[r] > 0.0f ? 1.0f / l[r] : 0.0f;
      T* dst = o + (int64_t{row} * p.hq + h) * D + 2 * t4;
#pragma unroll
      for (int nt = 0; nt < D / 8; ++nt)
        *reinterpret_cast<uint32_t*>(dst + nt * 8) = MmaType<T>::pack(acc[nt][2 * r] * inv, acc[nt][2 * r + 1] * inv);
      if (t4 == 0)
        p.lse[int64_t{row} * p.hq + h] = l[r] > 0.0f ? m[r] * 0.69314718055994531f + logf(l[r]) : -INFINITY;
    }
    cp_async_wait<0>();
    __syncthreads();  // the next head reloads sq
  }
}

}  // namespace forge::cuda::attention
