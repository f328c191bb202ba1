// The pieces of the blocked SGEMM (kernels/gemm.cpp), templated on the vector width W (floats per
// register): packing of A and B blocks into the layouts the micro-kernel streams, and the micro-kernel
// itself, an MR x NR (NR = 2W) register tile of C updated by one broadcast and two FMAs per row and k.
//
// Why vector extensions and not FORGE_HOT: the micro-kernel's accumulators must be exactly one
// register each, and a vector type matches the register of one ISA only (see
// loss/online_logsumexp.hpp). So everything here is always inline, and the driver instantiates it
// once per ISA (AVX-512: W = 16, AVX2: W = 8, baseline SSE: W = 4) inside a function compiled for it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "linalg/gemm.hpp"

#if !defined(__GNUC__)
#error "the forge GEMM needs GCC or Clang vector extensions"
#endif
#define FORGE_GEMM_INLINE inline __attribute__((always_inline))

// Wide vector types in always-inline helpers never cross a real call; the ABI note does not apply.
#pragma GCC diagnostic ignored "-Wpsabi"

namespace forge::linalg {

template <int W>
struct GemmVec {
  typedef float f __attribute__((vector_size(W * sizeof(float))));
  typedef int32_t i __attribute__((vector_size(W * sizeof(int32_t))));
};

// Register tile per width: MR rows of C by NR = 2W columns, 2 * MR accumulators. AVX-512 has 32
// registers (24 accumulators + 2 B vectors + 1 broadcast), AVX2 and SSE 16 (12 + 2 + 1).
template <int W>
struct GemmTile {
  static constexpr int MR = W == 16 ? 12 : 6;
  static constexpr int NR = 2 * W;
};

template <int W>
FORGE_GEMM_INLINE typename GemmVec<W>::f gload(const float* p) {
  typename GemmVec<W>::f v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
template <int W>
FORGE_GEMM_INLINE void gstore(float* p, const typename GemmVec<W>::f& v) {
  std::memcpy(p, &v, sizeof v);
}
// Broadcast as a shuffle of lane 0 (one vbroadcastss; spelled-out forms build the vector lane by lane).
template <int W>
FORGE_GEMM_INLINE typename GemmVec<W>::f gsplat(float x) {
  using F = typename GemmVec<W>::f;
#if defined(__clang__)
  F v;
  for (int k = 0; k < W; ++k) v[k] = x;
  return v;
#else
  return __builtin_shuffle(F{x}, typename GemmVec<W>::i{});
#endif
}

// op(A) rows [i0, i0 + mc) x columns [p0, p0 + kc) -> strips of MR rows: strip s holds, for each p,
// the MR values of rows s*MR .. s*MR + MR - 1 (zero past mc), so the micro-kernel reads them in order.
template <int MR>
FORGE_GEMM_INLINE void pack_a(Op op, const float* a, int64_t lda, int64_t i0, int64_t mc, int64_t p0, int64_t kc,
                              float* dst) {
  for (int64_t s = 0; s < mc; s += MR) {
    const int rows = mc - s < MR ? static_cast<int>(mc - s) : MR;
    float* d = dst + s * kc;
    if (op == Op::N) {
      // Row r of the strip is contiguous in A: read along it, write with stride MR.
      for (int r = 0; r < rows; ++r) {
        const float* src = a + (i0 + s + r) * lda + p0;
        for (int64_t p = 0; p < kc; ++p) d[p * MR + r] = src[p];
      }
      for (int r = rows; r < MR; ++r)
        for (int64_t p = 0; p < kc; ++p) d[p * MR + r] = 0.0f;
    } else {
      // A stored [k, m]: the strip's MR values of one p are contiguous.
      for (int64_t p = 0; p < kc; ++p) {
        const float* src = a + (p0 + p) * lda + i0 + s;
        float* dp = d + p * MR;
        int r = 0;
        for (; r < rows; ++r) dp[r] = src[r];
        for (; r < MR; ++r) dp[r] = 0.0f;
      }
    }
  }
}

// op(B) rows [p0, p0 + kc) x columns [j0, j0 + nc) -> strips of NR columns: strip s holds, for each p,
// the NR values of columns s*NR .. s*NR + NR - 1 (zero past nc).
template <int NR>
FORGE_GEMM_INLINE void pack_b(Op op, const float* b, int64_t ldb, int64_t p0, int64_t kc, int64_t j0, int64_t nc,
                              float* dst) {
  for (int64_t s = 0; s < nc; s += NR) {
    const int cols = nc - s < NR ? static_cast<int>(nc - s) : NR;
    float* d = dst + s * kc;
    if (op == Op::N) {
      for (int64_t p = 0; p < kc; ++p) {
        const float* src = b + (p0 + p) * ldb + j0 + s;
        float* dp = d + p * NR;
        if (cols == NR) {
          std::memcpy(dp, src, sizeof(float) * NR);
        } else {
          int c = 0;
          for (; c < cols; ++c) dp[c] = src[c];
          for (; c < NR; ++c) dp[c] = 0.0f;
        }
      }
    } else {
      // B stored [n, k]: column c of the strip is contiguous in B.
      for (int c = 0; c < cols; ++c) {
        const float* src = b + (j0 + s + c) * ldb + p0;
        for (int64_t p = 0; p < kc; ++p) d[p * NR + c] = src[p];
      }
      for (int c = cols; c < NR; ++c)
        for (int64_t p = 0; p < kc; ++p) d[p * NR + c] = 0.0f;
    }
  }
}

// C[0:rows, 0:cols] (leading dimension ldc) = alpha * (packed A strip)(packed B strip) + beta * C,
// over kc. The full MR x NR product is formed in registers; only the valid part is written.
template <int W>
FORGE_GEMM_INLINE void micro_kernel(int64_t kc, const float* __restrict a, const float* __restrict b, float* c,
                                    int64_t ldc, int rows, int cols, float alpha, float beta) {
  using F = typename GemmVec<W>::f;
  constexpr int MR = GemmTile<W>::MR;
  F c0[MR], c1[MR];
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i) c0[i] = c1[i] = F{};
  for (int64_t p = 0; p < kc; ++p) {
    const F b0 = gload<W>(b), b1 = gload<W>(b + W);
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
      const F ai = gsplat<W>(a[i]);
      c0[i] += ai * b0;
      c1[i] += ai * b1;
    }
    a += MR;
    b += 2 * W;
  }
  const F va = gsplat<W>(alpha), vb = gsplat<W>(beta);
  if (rows == MR && cols == 2 * W) {
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
      float* row = c + i * ldc;
      F x0 = va * c0[i], x1 = va * c1[i];
      if (beta != 0.0f) {  // beta = 0 must not read C (it may be uninitialised)
        x0 += vb * gload<W>(row);
        x1 += vb * gload<W>(row + W);
      }
      gstore<W>(row, x0);
      gstore<W>(row + W, x1);
    }
    return;
  }
  alignas(64) float tile[MR * 2 * W];
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i) {
    gstore<W>(tile + i * 2 * W, c0[i]);
    gstore<W>(tile + i * 2 * W + W, c1[i]);
  }
  for (int i = 0; i < rows; ++i) {
    float* row = c + i * ldc;
    const float* t = tile + i * 2 * W;
    if (beta != 0.0f)
      for (int j = 0; j < cols; ++j) row[j] = alpha * t[j] + beta * row[j];
    else
      for (int j = 0; j < cols; ++j) row[j] = alpha * t[j];
  }
}

}  // namespace forge::linalg
