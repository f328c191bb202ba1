// forge_cuda_merge_states / forge_cuda_merge_states_csr: combine normalised attention states over
// disjoint key sets on the device, with the semantics of the CPU kernels (merge_states.cpp): lse = -inf
// is the empty state, NaN / +inf is FORGE_ERR_NON_FINITE checked before anything is written.
//
// The value check needs the device: a check kernel records the first bad index in a device flag, the
// merge kernel (next on the stream) reads the flag and writes nothing when it is set, and the host
// reads the flag back. So these two calls synchronise the stream before they return (unlike the other
// forge_cuda_* kernels) and report the first bad lse (or, for CSR, the first bad offset) by index.
// The math is attention/state.cuh's. One warp serves one (row, head): every lane reads that unit's
// lse values before lane 0 writes its lse, so o_out / lse_out may be exactly a's or b's buffers.
#include <cuda_runtime.h>
#include <forge/forge.h>
#include <cmath>

#include <cstdint>
#include <cstdio>
#include <string>

#include "attention/state.cuh"
#include "common/check.cuh"
#include "common/launch.cuh"
#include "common/scratch.cuh"

namespace forge {
namespace cuda {
namespace {

constexpr int64_t kMaxElements = int64_t{1} << 60;
constexpr unsigned long long kNone = ~0ull;
constexpr int kWarp = 32;

using attention::State;

// The device flags: first bad lse index (over a then b, or lse_in), first bad offset index.
struct Flags {
  unsigned long long bad_lse;
  unsigned long long bad_offset;
};

std::string num(float x) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.9g", static_cast<double>(x));
  return buf;
}

forge_status check_dims(int64_t rows, int32_t num_heads, int32_t head_dim, const char* rows_name) {
  if (rows < 0) return fail(FORGE_ERR_INVALID_ARGUMENT, std::string(rows_name) + ": expected >= 0, got " + std::to_string(rows));
  if (num_heads < 1) return fail(FORGE_ERR_INVALID_ARGUMENT, "num_heads: expected >= 1, got " + std::to_string(num_heads));
  if (head_dim < 1) return fail(FORGE_ERR_INVALID_ARGUMENT, "head_dim: expected >= 1, got " + std::to_string(head_dim));
  if (rows > kMaxElements / num_heads / head_dim)
    return fail(FORGE_ERR_INVALID_ARGUMENT, std::string(rows_name) + " * num_heads * head_dim: too large");
  return FORGE_OK;
}

bool overlaps(const void* a, int64_t a_bytes, const void* b, int64_t b_bytes) {
  if (!a || !b || a_bytes == 0 || b_bytes == 0) return false;
  const auto x = reinterpret_cast<uintptr_t>(a), y = reinterpret_cast<uintptr_t>(b);
  return x < y + static_cast<uintptr_t>(b_bytes) && y < x + static_cast<uintptr_t>(a_bytes);
}

__device__ __forceinline__ bool bad_lse(float l) { return isnan(l) || l == INFINITY; }

// Index i of lse_first (or count_first + i of lse_second) that is NaN or +inf -> atomicMin into flag.
__global__ void check_lse_kernel(const float* lse_first, int64_t count_first, const float* lse_second,
                                 int64_t count_second, unsigned long long* flag) {
  for (int64_t i = global_thread(); i < count_first + count_second; i += grid_stride()) {
    const float l = i < count_first ? lse_first[i] : lse_second[i - count_first];
    if (bad_lse(l)) atomicMin(flag, static_cast<unsigned long long>(i));
  }
}

// offsets[0] = 0, offsets[r-1] <= offsets[r] <= M, offsets[rows] = M; the first r that breaks it.
__global__ void check_offsets_kernel(const int64_t* offsets, int64_t rows, int64_t num_states,
                                     unsigned long long* flag) {
  for (int64_t r = global_thread(); r <= rows; r += grid_stride()) {
    const int64_t v = offsets[r];
    const bool bad = (r == 0 && v != 0) || (r > 0 && (v < offsets[r - 1] || v > num_states)) ||
                     (r == rows && v != num_states);
    if (bad) atomicMin(flag, static_cast<unsigned long long>(r));
  }
}

// Blocks for one warp per unit (capped; the kernels stride over the rest).
unsigned grid_for_warps(int64_t units) {
  constexpr int64_t warps_per_block = kThreads / kWarp;
  const int64_t blocks = (units + warps_per_block - 1) / warps_per_block;
  return static_cast<unsigned>(blocks < 1 ? 1 : (blocks > kMaxBlocks ? kMaxBlocks : blocks));
}

__global__ void merge_pair_kernel(int64_t units, int32_t head_dim, const float* o_a, const float* lse_a,
                                  const float* o_b, const float* lse_b, float* o_out, float* lse_out,
                                  const Flags* flags) {
  if (flags->bad_lse != kNone) return;
  const int lane = threadIdx.x % kWarp;
  for (int64_t u = global_thread() / kWarp; u < units; u += grid_stride() / kWarp) {
    const float la = lse_a[u], lb = lse_b[u];
    __syncwarp();  // every lane has read the lse values before lane 0 may overwrite them (in place)
    const int64_t base = u * head_dim;
    for (int c = lane; c < head_dim; c += kWarp) {
      State<1> s;
      s.init();
      s.merge_normalized({o_a[base + c]}, la);
      s.merge_normalized({o_b[base + c]}, lb);
      s.normalize();
      o_out[base + c] = s.o[0];
    }
    if (lane == 0) {
      State<1> s;
      s.init();
      s.merge_normalized({0.0f}, la);
      s.merge_normalized({0.0f}, lb);
      lse_out[u] = s.lse();
    }
    __syncwarp();
  }
}

__global__ void merge_csr_kernel(int64_t rows, int32_t num_heads, int32_t head_dim, const int64_t* offsets,
                                 int64_t num_states, const float* o_in, const float* lse_in, float* o_out,
                                 float* lse_out, const Flags* flags) {
  if (flags->bad_lse != kNone || flags->bad_offset != kNone) return;
  const int lane = threadIdx.x % kWarp;
  const int64_t units = rows * num_heads;
  for (int64_t u = global_thread() / kWarp; u < units; u += grid_stride() / kWarp) {
    const int64_t r = u / num_heads, h = u - r * num_heads;
    // Checked above; clamped anyway so no read leaves the inputs.
    int64_t first = offsets[r], last = offsets[r + 1];
    first = first < 0 ? 0 : (first > num_states ? num_states : first);
    last = last < first ? first : (last > num_states ? num_states : last);
    for (int c = lane; c < head_dim; c += kWarp) {
      State<1> s;
      s.init();
      for (int64_t i = first; i < last; ++i) {
        const int64_t in = i * num_heads + h;
        s.merge_normalized({o_in[in * head_dim + c]}, lse_in[in]);
      }
      s.normalize();
      o_out[u * head_dim + c] = s.o[0];
    }
    if (lane == 0) {
      State<1> s;
      s.init();
      for (int64_t i = first; i < last; ++i) s.merge_normalized({0.0f}, lse_in[i * num_heads + h]);
      lse_out[u] = s.lse();
    }
  }
}

// Reads the flags back (waiting for the stream).
forge_status read_flags(const Flags* device_flags, Flags& flags, cudaStream_t stream, const char* fn) {
  FORGE_CUDA_TRY(cudaMemcpyAsync(&flags, device_flags, sizeof flags, cudaMemcpyDeviceToHost, stream), fn);
  FORGE_CUDA_TRY(cudaStreamSynchronize(stream), fn);
  return FORGE_OK;
}

template <class T>
forge_status read_value(const T* device_ptr, T& value, cudaStream_t stream, const char* fn) {
  FORGE_CUDA_TRY(cudaMemcpyAsync(&value, device_ptr, sizeof value, cudaMemcpyDeviceToHost, stream), fn);
  FORGE_CUDA_TRY(cudaStreamSynchronize(stream), fn);
  return FORGE_OK;
}

forge_status lse_error(const char* name, const float* lse, int64_t index, cudaStream_t stream, const char* fn) {
  float value = 0;
  FORGE_CUDA_RETURN_IF(read_value(lse + index, value, stream, fn));
  return fail(FORGE_ERR_NON_FINITE, std::string(name) + "[" + std::to_string(index) +
                                        "]: expected a finite number or -inf, got " + num(value));
}

forge_status start_flags(StreamScratch& scratch, Flags*& flags, cudaStream_t stream, const char* fn) {
  const size_t at = scratch.reserve<Flags>(1);
  FORGE_CUDA_RETURN_IF(scratch.allocate(fn));
  flags = scratch.at<Flags>(at);
  FORGE_CUDA_TRY(cudaMemsetAsync(flags, 0xFF, sizeof(Flags), stream), fn);  // kNone everywhere
  return FORGE_OK;
}

forge_status merge_pair(int64_t rows, int32_t num_heads, int32_t head_dim, const float* o_a, const float* lse_a,
                        const float* o_b, const float* lse_b, float* o_out, float* lse_out, void* stream) {
  constexpr const char* fn = "forge_cuda_merge_states";
  FORGE_CUDA_RETURN_IF(check_dims(rows, num_heads, head_dim, "rows"));
  FORGE_CUDA_RETURN_IF(require_device(fn));
  const int64_t units = rows * num_heads, elements = units * head_dim;
  if (units == 0) return FORGE_OK;
  const std::pair<const void*, const char*> pointers[] = {{o_a, "o_a"}, {lse_a, "lse_a"}, {o_b, "o_b"},
                                                          {lse_b, "lse_b"}, {o_out, "o_out"}, {lse_out, "lse_out"}};
  for (const auto& p : pointers) FORGE_CUDA_RETURN_IF(require_device_pointer(p.second, p.first));
  // Each output is exactly one input buffer (element-wise merge) or disjoint from all of them.
  const int64_t ob = elements * 4, lb = units * 4;
  if (overlaps(o_out, ob, lse_out, lb)) return fail(FORGE_ERR_INVALID_ARGUMENT, "o_out: overlaps lse_out");
  const struct { const void* ptr; int64_t bytes; const char* name; } inputs[] = {
      {o_a, ob, "o_a"}, {lse_a, lb, "lse_a"}, {o_b, ob, "o_b"}, {lse_b, lb, "lse_b"}};
  const struct { const void* ptr; int64_t bytes; const char* name; } outputs[] = {{o_out, ob, "o_out"},
                                                                                  {lse_out, lb, "lse_out"}};
  for (const auto& out : outputs)
    for (const auto& in : inputs)
      if (overlaps(out.ptr, out.bytes, in.ptr, in.bytes) && !(out.ptr == in.ptr && out.bytes == in.bytes))
        return fail(FORGE_ERR_INVALID_ARGUMENT,
                    std::string(out.name) + ": overlaps " + in.name + " without being the same buffer");

  const cudaStream_t s = as_stream(stream);
  StreamScratch scratch(s);
  Flags* device_flags = nullptr;
  FORGE_CUDA_RETURN_IF(start_flags(scratch, device_flags, s, fn));
  FORGE_LAUNCH(grid_for(2 * units), kThreads, 0, s, check_lse_kernel)(lse_a, units, lse_b, units, &device_flags->bad_lse);
  FORGE_CUDA_CHECK_LAUNCH("forge_cuda_merge_states: check_lse");
  FORGE_LAUNCH(grid_for_warps(units), kThreads, 0, s, merge_pair_kernel)(units, head_dim, o_a, lse_a, o_b, lse_b, o_out,
                                                                 lse_out, device_flags);
  FORGE_CUDA_CHECK_LAUNCH("forge_cuda_merge_states: merge");
  Flags flags{};
  FORGE_CUDA_RETURN_IF(read_flags(device_flags, flags, s, fn));
  if (flags.bad_lse != kNone) {
    const auto i = static_cast<int64_t>(flags.bad_lse);
    return i < units ? lse_error("lse_a", lse_a, i, s, fn) : lse_error("lse_b", lse_b, i - units, s, fn);
  }
  return FORGE_OK;
}

forge_status offsets_error(const int64_t* offsets, int64_t rows, int64_t num_states, int64_t r, cudaStream_t s,
                           const char* fn) {
  int64_t value = 0, previous = 0;
  FORGE_CUDA_RETURN_IF(read_value(offsets + r, value, s, fn));
  if (r == 0 && value != 0) return fail(FORGE_ERR_INVALID_ARGUMENT, "offsets[0]: expected 0, got " + std::to_string(value));
  if (r > 0) FORGE_CUDA_RETURN_IF(read_value(offsets + r - 1, previous, s, fn));
  if (r > 0 && (value < previous || value > num_states))
    return fail(FORGE_ERR_OUT_OF_RANGE, "offsets[" + std::to_string(r) + "]: expected a value in [" +
                                            std::to_string(previous) + ", " + std::to_string(num_states) + "], got " +
                                            std::to_string(value));
  return fail(FORGE_ERR_INVALID_ARGUMENT, "offsets[" + std::to_string(rows) + "]: expected num_states (" +
                                              std::to_string(num_states) + "), got " + std::to_string(value));
}

forge_status merge_csr(int64_t rows, int32_t num_heads, int32_t head_dim, const int64_t* offsets, int64_t num_states,
                       const float* o_in, const float* lse_in, float* o_out, float* lse_out, void* stream) {
  constexpr const char* fn = "forge_cuda_merge_states_csr";
  FORGE_CUDA_RETURN_IF(check_dims(rows, num_heads, head_dim, "rows"));
  FORGE_CUDA_RETURN_IF(check_dims(num_states, num_heads, head_dim, "num_states"));
  FORGE_CUDA_RETURN_IF(require_device(fn));
  FORGE_CUDA_RETURN_IF(require_device_pointer("offsets", offsets));
  const int64_t in_units = num_states * num_heads, out_units = rows * num_heads;
  if (in_units > 0) {
    FORGE_CUDA_RETURN_IF(require_device_pointer("o_in", o_in));
    FORGE_CUDA_RETURN_IF(require_device_pointer("lse_in", lse_in));
  }
  if (out_units > 0) {
    FORGE_CUDA_RETURN_IF(require_device_pointer("o_out", o_out));
    FORGE_CUDA_RETURN_IF(require_device_pointer("lse_out", lse_out));
  }
  // An output row reads several input rows: no overlap at all.
  const int64_t oib = in_units * head_dim * 4, lib = in_units * 4, oob = out_units * head_dim * 4, lob = out_units * 4;
  if (overlaps(o_out, oob, lse_out, lob)) return fail(FORGE_ERR_INVALID_ARGUMENT, "o_out: overlaps lse_out");
  if (overlaps(o_out, oob, o_in, oib)) return fail(FORGE_ERR_INVALID_ARGUMENT, "o_out: overlaps o_in");
  if (overlaps(o_out, oob, lse_in, lib)) return fail(FORGE_ERR_INVALID_ARGUMENT, "o_out: overlaps lse_in");
  if (overlaps(lse_out, lob, o_in, oib)) return fail(FORGE_ERR_INVALID_ARGUMENT, "lse_out: overlaps o_in");
  if (overlaps(lse_out, lob, lse_in, lib)) return fail(FORGE_ERR_INVALID_ARGUMENT, "lse_out: overlaps lse_in");

  const cudaStream_t s = as_stream(stream);
  StreamScratch scratch(s);
  Flags* device_flags = nullptr;
  FORGE_CUDA_RETURN_IF(start_flags(scratch, device_flags, s, fn));
  FORGE_LAUNCH(grid_for(rows + 1), kThreads, 0, s, check_offsets_kernel)(offsets, rows, num_states, &device_flags->bad_offset);
  FORGE_CUDA_CHECK_LAUNCH("forge_cuda_merge_states_csr: check_offsets");
  if (in_units > 0) {
    FORGE_LAUNCH(grid_for(in_units), kThreads, 0, s, check_lse_kernel)(lse_in, in_units, nullptr, 0, &device_flags->bad_lse);
    FORGE_CUDA_CHECK_LAUNCH("forge_cuda_merge_states_csr: check_lse");
  }
  if (out_units > 0) {
    FORGE_LAUNCH(grid_for_warps(out_units), kThreads, 0, s, merge_csr_kernel)(rows, num_heads, head_dim, offsets, num_states,
                                                                      o_in, lse_in, o_out, lse_out, device_flags);
    FORGE_CUDA_CHECK_LAUNCH("forge_cuda_merge_states_csr: merge");
  }
  Flags flags{};
  FORGE_CUDA_RETURN_IF(read_flags(device_flags, flags, s, fn));
  if (flags.bad_offset != kNone)
    return offsets_error(offsets, rows, num_states, static_cast<int64_t>(flags.bad_offset), s, fn);
  if (flags.bad_lse != kNone) return lse_error("lse_in", lse_in, static_cast<int64_t>(flags.bad_lse), s, fn);
  return FORGE_OK;
}

}  // namespace
}  // namespace cuda
}  // namespace forge

extern "C" {

FORGE_API forge_status forge_cuda_merge_states(int64_t rows, int32_t num_heads, int32_t head_dim, const float* o_a,
                                               const float* lse_a, const float* o_b, const float* lse_b,
                                               float* o_out, float* lse_out, void* stream) {
  return forge::guarded("forge_cuda_merge_states", [&] {
    return forge::cuda::merge_pair(rows, num_heads, head_dim, o_a, lse_a, o_b, lse_b, o_out, lse_out, stream);
  });
}

FORGE_API forge_status forge_cuda_merge_states_csr(int64_t rows, int32_t num_heads, int32_t head_dim,
                                                   const int64_t* offsets, int64_t num_states, const float* o_in,
                                                   const float* lse_in, float* o_out, float* lse_out,
                                                   void* stream) {
  return forge::guarded("forge_cuda_merge_states_csr", [&] {
    return forge::cuda::merge_csr(rows, num_heads, head_dim, offsets, num_states, o_in, lse_in, o_out, lse_out,
                                  stream);
  });
}

}  // extern "C"
