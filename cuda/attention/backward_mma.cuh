// Tree attention backward on tensor cores (F16 / BF16, float32 accumulation), FlashAttention-2 style.
//
//   p = exp(scale q.k - lse_q);  dV_a += p dO_q;  dp = dO_q . v_a;  ds = p (dp - Delta_q);
//   dQ_q += scale ds k_a;  dK_a += scale ds q_q        (Delta_q = dO_q . O_q, a pre-pass)
//
// Block = 4 warps = one key tile of 64 nodes at one kv head; warp w owns keys 16w..16w+15 and keeps
// their dK and dV in registers (float32) for the whole block. The queries that see any key of the tile
// are exactly [k0, max subtree_end of the tile) (descendants in DFS pre-order), so the block streams
// them in steps of kQueryStep rows, for every query head of the GQA group in turn (the group adds into
// the same dK / dV, no atomics), Q and dO double-buffered by cp.async. Per step:
//   S^T = K Q^T and dP^T = V dO^T (mma), P^T and dS^T in registers, dV += P^T dO and dK += dS^T Q from
//   those registers; dS^T goes to shared memory and the step's dQ partial dS K is added with float32
//   atomics into a [N, Hq, D] accumulator (scaled and converted by a final kernel).
#pragma once

#include <cmath>
#include <cstdint>

#include "../common/launch.cuh"
#include "mma.cuh"
#include "params.cuh"
#include "tree_tiles.cuh"

namespace forge::cuda::attention {

template <int D>
struct BackwardTiles {
  static constexpr int kWarps = 4, kThreads = 32 * kWarps;
  static constexpr int kQueryStep = D == 64 ? 64 : 32;  // keeps dK, dV and the step's S, dP in registers
  static constexpr int kStride = D + 8, kDsStride = kQueryStep + 8;
  static constexpr int kKvTile = kKeyTile * kStride, kQTile = kQueryStep * kStride;
  // dQ partial [kQueryStep, D]: kMTiles row tiles of 16, each split over kNSplit warps along D.
  static constexpr int kMTiles = kQueryStep / 16, kNSplit = kWarps / kMTiles, kDqPairs = D / 16 / kNSplit;
  static_assert(kMTiles * kNSplit == kWarps && kKeyTile == 16 * kWarps, "warp layout");
  // K, V, Q[2], dO[2], dS^T (16-bit); ends [64] int; lse2, delta [2][kQueryStep] float.
  static constexpr size_t kSmemBytes =
      (2 * kKvTile + 4 * kQTile + kKeyTile * kDsStride) * 2 + kKeyTile * sizeof(int) + 4 * kQueryStep * sizeof(float);
};

template <class T, int D>
__global__ void __launch_bounds__(BackwardTiles<D>::kThreads)
    tree_attention_backward_mma(const BackwardParams p) {
  using Tiles = BackwardTiles<D>;
  constexpr int S = Tiles::kStride, DS = Tiles::kDsStride, QS = Tiles::kQueryStep;
  FORGE_DYNAMIC_SHARED(smem);
  T* sk = reinterpret_cast<T*>(smem);
  T* sv = sk + Tiles::kKvTile;
  T* sq = sv + Tiles::kKvTile;      // [2][QS][S]
  T* sdo = sq + 2 * Tiles::kQTile;  // [2][QS][S]
  T* sds = sdo + 2 * Tiles::kQTile;  // [64][DS]: dS^T, keys x queries
  int* ends = reinterpret_cast<int*>(sds + kKeyTile * DS);
  float* slse = reinterpret_cast<float*>(ends + kKeyTile);  // [2][QS], lse * log2(e)
  float* sdelta = slse + 2 * QS;                            // [2][QS]

  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int g = lane >> 2, t4 = lane & 3;
  const T* q = static_cast<const T*>(p.q);
  const T* k = static_cast<const T*>(p.k);
  const T* v = static_cast<const T*>(p.v);
  const T* d_o = static_cast<const T*>(p.d_o);
  const int key_tile = blockIdx.x;  // low tiles have the most descendants: they start first
  const int k0 = key_tile * kKeyTile;
  const int q_end = p.bounds[key_tile].max_end;
  const int steps_per_head = q_end > k0 ? (q_end - k0 + QS - 1) / QS : 0;
  const int steps = steps_per_head * p.group;
  const int mt = warp % Tiles::kMTiles, dq_n0 = (warp / Tiles::kMTiles) * (D / Tiles::kNSplit);

  for (int kv = blockIdx.y; kv < p.hkv; kv += gridDim.y) {
    load_rows<T, D, kKeyTile, S, Tiles::kThreads>(sk, k, k0, p.n, p.hkv, kv);
    load_rows<T, D, kKeyTile, S, Tiles::kThreads>(sv, v, k0, p.n, p.hkv, kv);
    load_ends<Tiles::kThreads>(ends, p.subtree_end, k0, p.n);
    cp_async_commit();
    // Step s covers query head kv * group + s / steps_per_head, rows q0 + [0, QS).
    auto head_of = [&](int s) { return kv * p.group + s / steps_per_head; };
    auto q0_of = [&](int s) { return k0 + (s % steps_per_head) * QS; };
    auto issue = [&](int s, int stage) {
      const int h = head_of(s), q0 = q0_of(s);
      load_rows<T, D, QS, S, Tiles::kThreads>(sq + stage * Tiles::kQTile, q, q0, p.n, p.hq, h);
      load_rows<T, D, QS, S, Tiles::kThreads>(sdo + stage * Tiles::kQTile, d_o, q0, p.n, p.hq, h);
      for (int i = threadIdx.x; i < QS; i += Tiles::kThreads) {
        const int64_t row = int64_t{q0} + i;
        const bool valid = row < p.n;
        slse[stage * QS + i] = valid ? p.lse[row * p.hq + h] * 1.4426950408889634f : 0.0f;
        sdelta[stage * QS + i] = valid ? p.delta[row * p.hq + h] : 0.0f;
      }
    };
    if (steps > 0) issue(0, 0);
    cp_async_commit();

    float dk[D / 8][4], dv[D / 8][4];
    zero(dk);
    zero(dv);
    for (int s = 0; s < steps; ++s) {
      const int stage = s & 1;
      if (s + 1 < steps) issue(s + 1, stage ^ 1);
      cp_async_commit();
      cp_async_wait<1>();  // K, V and step s have landed
      __syncthreads();

      const int h = head_of(s), q0 = q0_of(s);
      const T* cq = sq + stage * Tiles::kQTile;
      const T* cdo = sdo + stage * Tiles::kQTile;
      const float* lse2 = slse + stage * QS;
      const float* delta = sdelta + stage * QS;

      float pt[QS / 8][4], dst[QS / 8][4];  // P^T, then dP^T -> dS^T: this warp's 16 keys x QS queries
      zero(pt);
      zero(dst);
      mma_tile<T, D, QS / 16, false, false>(
          pt, [&](int kb) { return a_addr<T, S>(sk, 16 * warp, kb, lane); },
          [&](int n0, int kb) { return b_addr_nk<T, S>(cq, n0, kb, lane); });
      mma_tile<T, D, QS / 16, false, false>(
          dst, [&](int kb) { return a_addr<T, S>(sv, 16 * warp, kb, lane); },
          [&](int n0, int kb) { return b_addr_nk<T, S>(cdo, n0, kb, lane); });
#pragma unroll
      for (int nt = 0; nt < QS / 8; ++nt)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int key = 16 * warp + g + 8 * (e >> 1), col = nt * 8 + 2 * t4 + (e & 1);
          const int row = q0 + col;
          const bool visible = k0 + key <= row && row < ends[key];
          const float pe = visible ? exp2f(pt[nt][e] * p.scale_log2 - lse2[col]) : 0.0f;
          pt[nt][e] = pe;
          dst[nt][e] = pe * (dst[nt][e] - delta[col]);
        }

      uint32_t pa[QS / 16][4], da[QS / 16][4];
#pragma unroll
      for (int kk = 0; kk < QS / 16; ++kk) {
        pack_a<T>(pa[kk], pt[2 * kk], pt[2 * kk + 1]);
        pack_a<T>(da[kk], dst[2 * kk], dst[2 * kk + 1]);
      }
      mma_tile_reg_a<T, QS, D / 16, true>(dv, pa, [&](int n0, int kb) { return b_addr_kn<T, S>(cdo, n0, kb, lane); });
      mma_tile_reg_a<T, QS, D / 16, true>(dk, da, [&](int n0, int kb) { return b_addr_kn<T, S>(cq, n0, kb, lane); });
      // dS^T as 16-bit pairs, rows = keys: the A operand of dQ = dS K is read back transposed.
#pragma unroll
      for (int kk = 0; kk < QS / 16; ++kk) {
        T* row_a = sds + (16 * warp + g) * DS + 16 * kk + 2 * t4;
        *reinterpret_cast<uint32_t*>(row_a) = da[kk][0];
        *reinterpret_cast<uint32_t*>(row_a + 8 * DS) = da[kk][1];
        *reinterpret_cast<uint32_t*>(row_a + 8) = da[kk][2];
        *reinterpret_cast<uint32_t*>(row_a + 8 * DS + 8) = da[kk][3];
      }
      __syncthreads();

      float dq[2 * Tiles::kDqPairs][4];
      zero(dq);
      mma_tile<T, kKeyTile, Tiles::kDqPairs, true, true>(
          dq, [&](int kb) { return a_addr_transposed<T, DS>(sds, 16 * mt, kb, lane); },
          [&](int n0, int kb) { return b_addr_kn<T, S>(sk, dq_n0 + n0, kb, lane); });
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        const int row = q0 + 16 * mt + g + 8 * r;
        if (row >= p.n) continue;
        float* dst_row = p.dq_acc + (int64_t{row} * p.hq + h) * D + dq_n0 + 2 * t4;
#pragma unroll
        for (int nt = 0; nt < 2 * Tiles::kDqPairs; ++nt) {
          atomicAdd(dst_row + nt * 8, dq[nt][2 * r]);
          atomicAdd(dst_row + nt * 8 + 1, dq[nt][2 * r + 1]);
        }
      }
      // No barrier here: this step's stage buffers were last read before the one above, and sds is
      // next written after the next step's first barrier (a mutation run on cuda/simt agrees).
    }

    T* dk_out = static_cast<T*>(p.dk);
    T* dv_out = static_cast<T*>(p.dv);
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const int64_t a = int64_t{k0} + 16 * warp + g + 8 * r;
      if (a >= p.n) continue;
      const int64_t at = (a * p.hkv + kv) * D + 2 * t4;
#pragma unroll
      for (int nt = 0; nt < D / 8; ++nt) {
        *reinterpret_cast<uint32_t*>(dk_out + at + nt * 8) =
            MmaType<T>::pack(dk[nt][2 * r] * p.scale, dk[nt][2 * r + 1] * p.scale);
        *reinterpret_cast<uint32_t*>(dv_out + at + nt * 8) = MmaType<T>::pack(dv[nt][2 * r], dv[nt][2 * r + 1]);
      }
    }
    cp_async_wait<0>();  // nothing may still be landing in sk / sv when the next kv head reloads them
    __syncthreads();
  }
}

}  // namespace forge::cuda::attention
