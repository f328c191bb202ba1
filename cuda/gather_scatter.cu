// Contract 1 on the device: per-node rows [N, C] out to the per-sample layout [T, C] (gather, any
// dtype), and back, summed over the positions sharing a node (scatter, float32 gradients) or merged,
// each node taking the row of its first position (merge, any dtype: per-sample K/V into the tree).
// Scatter is deterministic without atomics on the values: node_of is inverted first (csr_by_key: the
// positions of each node, in position order), then each output element sums its node's positions in
// that order in float64 — the same order and precision as the CPU kernel, so the results agree bitwise.
#include <cuda_runtime.h>
#include <forge/forge.h>

#include <cstdint>
#include <string>

#include "common/check.cuh"
#include "common/csr.cuh"
#include "common/dtype.cuh"
#include "common/launch.cuh"
#include "common/scratch.cuh"

namespace forge {
namespace cuda {
namespace {

constexpr int64_t kMaxElements = (int64_t{1} << 62) / 4;

forge_status check_shapes(int64_t num_nodes, int64_t channels, int64_t num_positions) {
  if (channels < 1) return fail(FORGE_ERR_INVALID_ARGUMENT, "channels: expected at least 1, got " + std::to_string(channels));
  if (num_nodes < 1 || num_nodes > (int64_t{1} << 31))
    return fail(FORGE_ERR_INVALID_ARGUMENT, "num_nodes: expected an integer in [1, 2^31], got " + std::to_string(num_nodes));
  if (num_positions < 0)
    return fail(FORGE_ERR_INVALID_ARGUMENT, "num_positions: expected at least 0, got " + std::to_string(num_positions));
  if (num_nodes > kMaxElements / channels || num_positions > kMaxElements / channels)
    return fail(FORGE_ERR_INVALID_ARGUMENT,
                "channels: " + std::to_string(channels) + " channels times the number of rows overflows a buffer size");
  return FORGE_OK;
}

// out[i, c] = values[node_of[i], c]; an id outside [0, N) gives a zero row (never an invalid read).
template <class T>
__global__ void gather_kernel(const T* values, int64_t num_nodes, int64_t channels, const int32_t* node_of,
                              int64_t num_positions, T* out) {
  const int64_t total = num_positions * channels;
  for (int64_t e = global_thread(); e < total; e += grid_stride()) {
    const int64_t i = e / channels, c = e - i * channels;
    const int64_t n = node_of[i];
    out[e] = (n >= 0 && n < num_nodes) ? values[n * channels + c] : from_float<T>(0.0f);
  }
}

// out[n, c] = sum over k in [start[n], start[n+1]) of values[order[k], c], in float64, in order.
__global__ void sum_kernel(const float* values, int64_t channels, const int32_t* order, const int32_t* start,
                           int64_t num_nodes, float* out) {
  const int64_t total = num_nodes * channels;
  for (int64_t e = global_thread(); e < total; e += grid_stride()) {
    const int64_t n = e / channels, c = e - n * channels;
    double acc = 0.0;
    for (int32_t k = start[n]; k < start[n + 1]; ++k) acc += values[static_cast<int64_t>(order[k]) * channels + c];
    out[e] = static_cast<float>(acc);
  }
}

constexpr int32_t kNoPosition = INT32_MAX;  // above every position (num_positions < INT32_MAX)

__global__ void fill_int_kernel(int32_t* out, int64_t n, int32_t value) {
  for (int64_t i = global_thread(); i < n; i += grid_stride()) out[i] = value;
}

// first[node_of[p]] = min p. The minimum does not depend on the order the atomics land in, so the
// result is deterministic; ids outside [0, N) are skipped.
__global__ void first_position_kernel(const int32_t* node_of, int64_t num_positions, int64_t num_nodes, int32_t* first) {
  for (int64_t p = global_thread(); p < num_positions; p += grid_stride()) {
    const int64_t n = node_of[p];
    if (n >= 0 && n < num_nodes) atomicMin(first + n, static_cast<int32_t>(p));
  }
}

// out[n, c] = values[first[n], c], or zero for a node without positions.
template <class T>
__global__ void copy_first_kernel(const T* values, int64_t channels, const int32_t* first, int64_t num_nodes, T* out) {
  const int64_t total = num_nodes * channels;
  for (int64_t e = global_thread(); e < total; e += grid_stride()) {
    const int64_t n = e / channels, c = e - n * channels;
    const int32_t p = first[n];
    out[e] = p != kNoPosition ? values[static_cast<int64_t>(p) * channels + c] : from_float<T>(0.0f);
  }
}

forge_status gather(forge_dtype dtype, const void* node_values, int64_t num_nodes, int64_t channels,
                    const int32_t* node_of, int64_t num_positions, void* out, void* stream) {
  FORGE_CUDA_RETURN_IF(check_dtype("dtype", dtype));
  FORGE_CUDA_RETURN_IF(check_shapes(num_nodes, channels, num_positions));
  FORGE_CUDA_RETURN_IF(require_device("forge_cuda_gather_to_samples"));
  if (num_positions == 0) return FORGE_OK;
  FORGE_CUDA_RETURN_IF(require_device_pointer("node_values", node_values));
  FORGE_CUDA_RETURN_IF(require_device_pointer("node_of", node_of));
  FORGE_CUDA_RETURN_IF(require_device_pointer("out", out));
  return dispatch_dtype("dtype", dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    FORGE_LAUNCH(grid_for(num_positions * channels), kThreads, 0, as_stream(stream), gather_kernel<T>)(
        static_cast<const T*>(node_values), num_nodes, channels, node_of, num_positions, static_cast<T*>(out));
    FORGE_CUDA_CHECK_LAUNCH("forge_cuda_gather_to_samples");
    return FORGE_OK;
  });
}

forge_status scatter(const float* sample_values, int64_t num_positions, int64_t channels, const int32_t* node_of,
                     int64_t num_nodes, float* out, void* stream) {
  FORGE_CUDA_RETURN_IF(check_shapes(num_nodes, channels, num_positions));
  // The position index and the bucket sentinel are int32 on the device.
  if (num_positions >= INT32_MAX)
    return fail(FORGE_ERR_UNSUPPORTED, "num_positions: the device scatter serves fewer than 2^31 - 1 positions, got " +
                                           std::to_string(num_positions));
  if (num_nodes >= INT32_MAX)
    return fail(FORGE_ERR_UNSUPPORTED,
                "num_nodes: the device scatter serves fewer than 2^31 - 1 nodes, got " + std::to_string(num_nodes));
  FORGE_CUDA_RETURN_IF(require_device("forge_cuda_scatter_from_samples"));
  FORGE_CUDA_RETURN_IF(require_device_pointer("out", out));
  if (num_positions > 0) {
    FORGE_CUDA_RETURN_IF(require_device_pointer("sample_values", sample_values));
    FORGE_CUDA_RETURN_IF(require_device_pointer("node_of", node_of));
  }
  const cudaStream_t s = as_stream(stream);
  const auto positions = static_cast<int32_t>(num_positions), nodes = static_cast<int32_t>(num_nodes);
  StreamScratch scratch(s);
  const size_t at_order = scratch.reserve<int32_t>(positions), at_start = scratch.reserve<int32_t>(nodes + int64_t{1});
  FORGE_CUDA_RETURN_IF(scratch.allocate("forge_cuda_scatter_from_samples: scratch"));
  int32_t* order = scratch.at<int32_t>(at_order);
  int32_t* start = scratch.at<int32_t>(at_start);
  FORGE_CUDA_RETURN_IF(csr_by_key(node_of, nullptr, 0, positions, nodes, order, start, s));
  FORGE_LAUNCH(grid_for(num_nodes * channels), kThreads, 0, s, sum_kernel)(sample_values, channels, order, start, num_nodes, out);
  FORGE_CUDA_CHECK_LAUNCH("forge_cuda_scatter_from_samples");
  return FORGE_OK;
}

forge_status merge(forge_dtype dtype, const void* values, int64_t num_positions, int64_t channels,
                   const int32_t* node_of, int64_t num_nodes, void* out, void* stream) {
  constexpr const char* kFn = "forge_cuda_merge_to_tree";
  FORGE_CUDA_RETURN_IF(check_dtype("dtype", dtype));
  FORGE_CUDA_RETURN_IF(check_shapes(num_nodes, channels, num_positions));
  // Positions are int32 on the device, with INT32_MAX as "none".
  if (num_positions >= INT32_MAX)
    return fail(FORGE_ERR_UNSUPPORTED, "num_positions: the device merge serves fewer than 2^31 - 1 positions, got " +
                                           std::to_string(num_positions));
  if (num_nodes >= INT32_MAX)
    return fail(FORGE_ERR_UNSUPPORTED,
                "num_nodes: the device merge serves fewer than 2^31 - 1 nodes, got " + std::to_string(num_nodes));
  FORGE_CUDA_RETURN_IF(require_device(kFn));
  FORGE_CUDA_RETURN_IF(require_device_pointer("out", out));
  if (num_positions > 0) {
    FORGE_CUDA_RETURN_IF(require_device_pointer("values", values));
    FORGE_CUDA_RETURN_IF(require_device_pointer("node_of", node_of));
  }
  const cudaStream_t s = as_stream(stream);
  StreamScratch scratch(s);
  const size_t at_first = scratch.reserve<int32_t>(num_nodes);
  FORGE_CUDA_RETURN_IF(scratch.allocate("forge_cuda_merge_to_tree: scratch"));
  int32_t* first = scratch.at<int32_t>(at_first);
  FORGE_LAUNCH(grid_for(num_nodes), kThreads, 0, s, fill_int_kernel)(first, num_nodes, kNoPosition);
  FORGE_CUDA_CHECK_LAUNCH(kFn);
  if (num_positions > 0) {
    FORGE_LAUNCH(grid_for(num_positions), kThreads, 0, s, first_position_kernel)(node_of, num_positions, num_nodes, first);
    FORGE_CUDA_CHECK_LAUNCH(kFn);
  }
  return dispatch_dtype("dtype", dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    FORGE_LAUNCH(grid_for(num_nodes * channels), kThreads, 0, s, copy_first_kernel<T>)(
        static_cast<const T*>(values), channels, first, num_nodes, static_cast<T*>(out));
    FORGE_CUDA_CHECK_LAUNCH(kFn);
    return FORGE_OK;
  });
}

}  // namespace
}  // namespace cuda
}  // namespace forge

extern "C" {

FORGE_API forge_status forge_cuda_gather_to_samples(forge_dtype dtype, const void* node_values, int64_t num_nodes,
                                                    int64_t channels, const int32_t* node_of, int64_t num_positions,
                                                    void* out, void* stream) {
  return forge::guarded("forge_cuda_gather_to_samples", [&] {
    return forge::cuda::gather(dtype, node_values, num_nodes, channels, node_of, num_positions, out, stream);
  });
}

FORGE_API forge_status forge_cuda_scatter_from_samples(const float* sample_values, int64_t num_positions,
                                                       int64_t channels, const int32_t* node_of, int64_t num_nodes,
                                                       float* out, void* stream) {
  return forge::guarded("forge_cuda_scatter_from_samples", [&] {
    return forge::cuda::scatter(sample_values, num_positions, channels, node_of, num_nodes, out, stream);
  });
}

FORGE_API forge_status forge_cuda_merge_to_tree(forge_dtype dtype, const void* values, int64_t num_positions,
                                                int64_t channels, const int32_t* node_of, int64_t num_nodes,
                                                void* out, void* stream) {
  return forge::guarded("forge_cuda_merge_to_tree", [&] {
    return forge::cuda::merge(dtype, values, num_positions, channels, node_of, num_nodes, out, stream);
  });
}

}  // extern "C"
