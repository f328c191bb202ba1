// Tensor-core building blocks of the tree-attention kernels: cp.async tile copies, ldmatrix and
// mma.sync m16n8k16 (sm_80 and later; nothing here needs sm_90a).
//
// Fragment layout of mma.m16n8k16 (PTX ISA), lane = 4 * g + t (g = groupID, t = thread in group):
//   A 16x16 (row-major), 4 regs of 2 halves: r0 = A[g][2t..2t+1], r1 = A[g+8][2t..], r2 = A[g][8+2t..],
//     r3 = A[g+8][8+2t..]
//   B 16x8 (k x n), 2 regs: r0 = B[2t..2t+1][g], r1 = B[8+2t..8+2t+1][g]
//   C 16x8 float: c0, c1 = C[g][2t..2t+1], c2, c3 = C[g+8][2t..2t+1]
// So the C fragments of two adjacent n-tiles, packed to 16 bits, are the A fragment of a k16 step
// (pack_a below): the FlashAttention-2 trick that keeps P in registers between the two products.
//
// ldmatrix.x4 loads four 8x8 16-bit matrices; lanes 8i..8i+7 give the row addresses of matrix i and
// register i receives matrix i (plain: row g, cols 2t..2t+1; .trans: rows 2t..2t+1, col g). The
// *_addr helpers below say which rows and columns each lane points at for each operand kind.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

namespace forge::cuda::attention {

template <class T> struct MmaType;
template <> struct MmaType<__half> {
  static __device__ __forceinline__ uint32_t pack(float lo, float hi) {
    __half2 v = __floats2half2_rn(lo, hi);  // .x (low 16 bits) = lo: the lower-indexed element
    return *reinterpret_cast<uint32_t*>(&v);
  }
  static __device__ __forceinline__ void mma(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
#ifdef FORGE_SIMT
    ::forge::simt::mma_m16n8k16(c, a, b0, b1, /*bf16=*/false);
#else
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#endif
  }
};
template <> struct MmaType<__nv_bfloat16> {
  static __device__ __forceinline__ uint32_t pack(float lo, float hi) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<uint32_t*>(&v);
  }
  static __device__ __forceinline__ void mma(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
#ifdef FORGE_SIMT
    ::forge::simt::mma_m16n8k16(c, a, b0, b1, /*bf16=*/true);
#else
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#endif
  }
};

#ifdef FORGE_SIMT
// The CPU emulator (cuda/simt/) carries out the same operations with the same fragment layouts.
__device__ __forceinline__ void cp_async_16(void* dst, const void* src, bool valid) {
  ::forge::simt::cp_async_16(dst, src, valid);
}
__device__ __forceinline__ void cp_async_commit() { ::forge::simt::cp_async_commit(); }
template <int Pending>
__device__ __forceinline__ void cp_async_wait() {
  ::forge::simt::cp_async_wait(Pending);
}
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* p) { ::forge::simt::ldmatrix_x4(r, p, false); }
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const void* p) {
  ::forge::simt::ldmatrix_x4(r, p, true);
}
#else
__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// 16-byte global -> shared copy; when !valid the 16 bytes are zero-filled and `src` is not read.
__device__ __forceinline__ void cp_async_16(void* dst, const void* src, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr(dst)), "l"(src),
               "r"(valid ? 16 : 0)
               : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
// Waits until at most `Pending` of this thread's committed groups are still in flight.
template <int Pending>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(Pending) : "memory");
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(p))
               : "memory");
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(p))
               : "memory");
}
#endif  // FORGE_SIMT

// Shared-memory tiles are row-major with `Stride` elements per row (the row length + 8: rows then
// start 16 bytes apart modulo 128, so the 8 row reads of one ldmatrix hit distinct banks).
//
// A fragment (16 x 16 at rows m0.., cols k0..) of a tile stored as A itself, [m][k]:
//   r0..r3 = A rows m0 + {0-7, 8-15, 0-7, 8-15}, cols k0 + {0-7, 0-7, 8-15, 8-15}.
template <class T, int Stride>
__device__ __forceinline__ const T* a_addr(const T* tile, int m0, int k0, int lane) {
  const int mi = lane >> 3;
  return tile + (m0 + (mi & 1) * 8 + (lane & 7)) * Stride + k0 + (mi >> 1) * 8;
}
// A fragment of A = S^T, from a tile stored as S, [k][m] (use with ldmatrix_x4_trans).
template <class T, int Stride>
__device__ __forceinline__ const T* a_addr_transposed(const T* tile, int m0, int k0, int lane) {
  const int mi = lane >> 3;
  return tile + (k0 + (mi >> 1) * 8 + (lane & 7)) * Stride + m0 + (mi & 1) * 8;
}
// B fragments of two n-tiles (n0.., n0+8..) at k0.., from a tile stored [n][k] (B = tile^T, e.g.
// K for S = Q K^T; use with ldmatrix_x4): r0, r1 = n-tile n0 (k lo, k hi), r2, r3 = n-tile n0 + 8.
template <class T, int Stride>
__device__ __forceinline__ const T* b_addr_nk(const T* tile, int n0, int k0, int lane) {
  const int mi = lane >> 3;
  return tile + (n0 + (mi >> 1) * 8 + (lane & 7)) * Stride + k0 + (mi & 1) * 8;
}
// The same two n-tiles from a tile stored [k][n] (B = tile, e.g. V for O = P V; ldmatrix_x4_trans).
template <class T, int Stride>
__device__ __forceinline__ const T* b_addr_kn(const T* tile, int n0, int k0, int lane) {
  const int mi = lane >> 3;
  return tile + (k0 + (mi & 1) * 8 + (lane & 7)) * Stride + n0 + (mi >> 1) * 8;
}

// The A fragment of a k16 step made from the C fragments of two adjacent n-tiles (see the top).
template <class T>
__device__ __forceinline__ void pack_a(uint32_t (&a)[4], const float (&lo)[4], const float (&hi)[4]) {
  a[0] = MmaType<T>::pack(lo[0], lo[1]);
  a[1] = MmaType<T>::pack(lo[2], lo[3]);
  a[2] = MmaType<T>::pack(hi[0], hi[1]);
  a[3] = MmaType<T>::pack(hi[2], hi[3]);
}

// C[m16 x (2*NPairs*8)] += A-tile[m0.., 0..K) * B where B's n-tiles come two per ldmatrix.
// `a_at(k0)` returns the A fragment address, `b_at(n0, k0)` the B one; Trans selects ldmatrix.trans
// for B. Written once so every product of the kernels reads the same way.
template <class T, int K, int NPairs, bool TransA, bool TransB, class AAt, class BAt>
__device__ __forceinline__ void mma_tile(float (&c)[2 * NPairs][4], AAt a_at, BAt b_at) {
#pragma unroll
  for (int k0 = 0; k0 < K; k0 += 16) {
    uint32_t a[4];
    if constexpr (TransA) ldmatrix_x4_trans(a, a_at(k0)); else ldmatrix_x4(a, a_at(k0));
#pragma unroll
    for (int j = 0; j < NPairs; ++j) {
      uint32_t b[4];
      if constexpr (TransB) ldmatrix_x4_trans(b, b_at(16 * j, k0)); else ldmatrix_x4(b, b_at(16 * j, k0));
      MmaType<T>::mma(c[2 * j], a, b[0], b[1]);
      MmaType<T>::mma(c[2 * j + 1], a, b[2], b[3]);
    }
  }
}

// Same, with A already in registers as k16 fragments a[K / 16][4] (P or dS from the C fragments).
template <class T, int K, int NPairs, bool TransB, class BAt>
__device__ __forceinline__ void mma_tile_reg_a(float (&c)[2 * NPairs][4], const uint32_t (&a)[K / 16][4], BAt b_at) {
#pragma unroll
  for (int kk = 0; kk < K / 16; ++kk) {
#pragma unroll
    for (int j = 0; j < NPairs; ++j) {
      uint32_t b[4];
      if constexpr (TransB) ldmatrix_x4_trans(b, b_at(16 * j, 16 * kk)); else ldmatrix_x4(b, b_at(16 * j, 16 * kk));
      MmaType<T>::mma(c[2 * j], a[kk], b[0], b[1]);
      MmaType<T>::mma(c[2 * j + 1], a[kk], b[2], b[3]);
    }
  }
}

template <int N>
__device__ __forceinline__ void zero(float (&c)[N][4]) {
#pragma unroll
  for (int i = 0; i < N; ++i) c[i][0] = c[i][1] = c[i][2] = c[i][3] = 0.0f;
}

}  // namespace forge::cuda::attention
