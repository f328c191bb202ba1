// Reading and writing one logits row with a whole block: 16-byte vector loads over the aligned body
// (8 bf16 or 4 floats per load) with scalar head and tail, the per-thread online log-sum-exp state,
// and its block-wide combination.
#pragma once

#include <cuda_runtime.h>
#include <cmath>

#include <cstdint>

#include "../common/dtype.cuh"

namespace forge {
namespace cuda {
namespace cispo {

// Calls body(col, x) for the row's elements, each thread a strided share: x is a float[K] holding
// elements col .. col + K - 1, K = kVecElems<T> in the aligned body and 1 in the head and tail.
// With vector = false every element goes one by one (e.g. when a paired output row has another
// alignment).
template <class T, class Body>
__device__ __forceinline__ void row_chunks(const T* row, int64_t n, bool vector, Body&& body) {
  constexpr int E = kVecElems<T>;
  const auto addr = reinterpret_cast<uintptr_t>(row);
  int64_t head = n;
  if (vector && addr % sizeof(T) == 0) head = static_cast<int64_t>(((16 - (addr & 15)) & 15) / sizeof(T));
  if (head > n) head = n;
  const int64_t vectors = (n - head) / E, tail = head + vectors * E;
  for (int64_t i = threadIdx.x; i < head; i += blockDim.x) {
    const float x[1] = {to_float(row[i])};
    body(i, x);
  }
  for (int64_t v = threadIdx.x; v < vectors; v += blockDim.x) {
    float x[E];
    load_vec16(row + head + v * E, x);
    body(head + v * E, x);
  }
  for (int64_t i = tail + threadIdx.x; i < n; i += blockDim.x) {
    const float x[1] = {to_float(row[i])};
    body(i, x);
  }
}

// Writes x[0..K) to out[col ..), one vector store when K is the vector width (row_chunks' layout).
template <class T, int K>
__device__ __forceinline__ void store_chunk(T* out, int64_t col, const float (&x)[K]) {
  if constexpr (K == kVecElems<T>) {
    store_vec16(out + col, x);
  } else {
#pragma unroll
    for (int k = 0; k < K; ++k) store_float(out + col + k, x[k]);
  }
}

// The whole row set to `value` by the block.
template <class T>
__device__ __forceinline__ void fill_row(T* row, int64_t n, float value) {
  constexpr int E = kVecElems<T>;
  const auto addr = reinterpret_cast<uintptr_t>(row);
  int64_t head = addr % sizeof(T) == 0 ? static_cast<int64_t>(((16 - (addr & 15)) & 15) / sizeof(T)) : n;
  if (head > n) head = n;
  const int64_t vectors = (n - head) / E, tail = head + vectors * E;
  float fill[E];
#pragma unroll
  for (int k = 0; k < E; ++k) fill[k] = value;
  for (int64_t i = threadIdx.x; i < head; i += blockDim.x) store_float(row + i, value);
  for (int64_t v = threadIdx.x; v < vectors; v += blockDim.x) store_vec16(row + head + v * E, fill);
  for (int64_t i = tail + threadIdx.x; i < n; i += blockDim.x) store_float(row + i, value);
}

// One thread's share of a row: m = max, d = sum exp(z - m), t = sum exp(z - m) (z - m) (for the
// entropy log d - t / d, kept relative to m so a large offset in the logits does not cancel).
// float32 per thread; rescaled only when a chunk raises the max.
struct OnlineRow {
  float m = -INFINITY;
  float d = 0.0f;
  float t = 0.0f;
  bool finite = true;

  template <int K>
  __device__ __forceinline__ void add(const float (&x)[K]) {
    float chunk_max = x[0];
    bool ok = isfinite(x[0]);
#pragma unroll
    for (int k = 1; k < K; ++k) {
      chunk_max = fmaxf(chunk_max, x[k]);
      ok = ok && isfinite(x[k]);
    }
    if (!ok) {
      finite = false;  // the row is reported; its sums are no longer used
      return;
    }
    if (chunk_max > m) {
      if (m == -INFINITY) {
        d = 0.0f;
        t = 0.0f;
      } else {
        // Moving the reference from m to m': each e scales by a = exp(m - m'), each (z - m) grows by m - m'.
        const float a = expf(m - chunk_max);
        t = a * (t + d * (m - chunk_max));
        d = a * d;
      }
      m = chunk_max;
    }
#pragma unroll
    for (int k = 0; k < K; ++k) {
      const float dz = x[k] - m;
      const float e = expf(dz);
      d += e;
      t = fmaf(e, dz, t);
    }
  }
};

// The block's combined state in float64 (m stays float: it is one of the logits).
struct RowSummary {
  float m;
  double d, t;
  bool finite;

  __device__ double lse() const { return static_cast<double>(m) + log(d); }
  __device__ double entropy() const { return log(d) - t / d; }
};

// Combines (m, d, t) of b into a (both relative to their own m).
__device__ __forceinline__ void combine(float& m, double& d, double& t, float mb, double db, double tb) {
  if (db == 0.0) return;  // b saw nothing
  if (d == 0.0) {
    m = mb;
    d = db;
    t = tb;
    return;
  }
  const float mn = fmaxf(m, mb);
  const double fa = exp(static_cast<double>(m) - mn), fb = exp(static_cast<double>(mb) - mn);
  t = fa * (t + d * (static_cast<double>(m) - mn)) + fb * (tb + db * (static_cast<double>(mb) - mn));
  d = fa * d + fb * db;
  m = mn;
}

// Block-wide combination of every thread's OnlineRow; every thread gets the result. `shared` holds 32
// entries of each array. All threads must call it.
struct RowShared {
  float m[32];
  double d[32], t[32];
  RowSummary result;
};

// Combines the 32 lanes' states (butterfly: every lane ends with the warp's state).
__device__ __forceinline__ void warp_combine(float& m, double& d, double& t) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) {
    const float mb = __shfl_xor_sync(0xffffffffu, m, offset);
    const double db = __shfl_xor_sync(0xffffffffu, d, offset);
    const double tb = __shfl_xor_sync(0xffffffffu, t, offset);
    combine(m, d, t, mb, db, tb);
  }
}

__device__ __forceinline__ RowSummary block_row_summary(const OnlineRow& mine, RowShared& sh) {
  float m = mine.m;
  double d = mine.d, t = mine.t;
  if (!(d > 0.0)) {
    m = -INFINITY;
    d = 0.0;
    t = 0.0;
  }
  warp_combine(m, d, t);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = (blockDim.x + 31) >> 5;
  const bool all_finite = __syncthreads_and(mine.finite) != 0;  // also orders earlier reads of `sh`
  if (lane == 0) {
    sh.m[warp] = m;
    sh.d[warp] = d;
    sh.t[warp] = t;
  }
  __syncthreads();
  if (warp == 0) {
    m = lane < warps ? sh.m[lane] : -INFINITY;
    d = lane < warps ? sh.d[lane] : 0.0;
    t = lane < warps ? sh.t[lane] : 0.0;
    warp_combine(m, d, t);
    if (lane == 0) sh.result = {m, d, t, all_finite};
  }
  __syncthreads();
  return sh.result;
}

}  // namespace cispo
}  // namespace cuda
}  // namespace forge
