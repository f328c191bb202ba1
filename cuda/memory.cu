// Device properties, device selection, memory, copies, synchronisation and dtype conversion (forge.h
// "CUDA backend"). Every entry point first makes sure a usable GPU exists, so on a machine without
// one each call returns FORGE_ERR_DEVICE with the reason instead of failing somewhere inside CUDA.
#include <cuda_runtime.h>
#include <forge/forge.h>

#include <cstdint>
#include <cstring>
#include <string>

#include "common/check.cuh"
#include "common/dtype.cuh"
#include "common/launch.cuh"

namespace forge {
namespace cuda {
namespace {

forge_status check_device_index(const char* fn, int32_t device) {
  int count = 0;
  FORGE_CUDA_TRY(cudaGetDeviceCount(&count), fn);
  if (device < 0 || device >= count)
    return fail(FORGE_ERR_OUT_OF_RANGE, "device: " + std::to_string(device) + " out of range [0, " +
                                            std::to_string(count) + ")");
  return FORGE_OK;
}

forge_status get_props(int32_t device, forge_cuda_device_props* props) {
  FORGE_CUDA_RETURN_IF(require_device("forge_cuda_get_device_props"));
  if (!props) return fail(FORGE_ERR_INVALID_ARGUMENT, "props: null pointer");
  FORGE_CUDA_RETURN_IF(check_device_index("forge_cuda_get_device_props", device));
  cudaDeviceProp p{};
  FORGE_CUDA_TRY(cudaGetDeviceProperties(&p, device), "forge_cuda_get_device_props: cudaGetDeviceProperties");
  // Free memory is a property of the current device: switch to `device` for the query and back.
  int current = 0;
  FORGE_CUDA_TRY(cudaGetDevice(&current), "forge_cuda_get_device_props: cudaGetDevice");
  size_t free_bytes = 0, total_bytes = 0;
  if (current != device) FORGE_CUDA_TRY(cudaSetDevice(device), "forge_cuda_get_device_props: cudaSetDevice");
  const cudaError_t info = cudaMemGetInfo(&free_bytes, &total_bytes);
  if (current != device) cudaSetDevice(current);
  FORGE_CUDA_TRY(info, "forge_cuda_get_device_props: cudaMemGetInfo");
  std::memset(props, 0, sizeof *props);
  std::strncpy(props->name, p.name, sizeof props->name - 1);
  props->major = p.major;
  props->minor = p.minor;
  props->multiprocessors = p.multiProcessorCount;
  props->total_memory = static_cast<int64_t>(total_bytes);
  props->free_memory = static_cast<int64_t>(free_bytes);
  return FORGE_OK;
}

// A copy or memset: on `stream`, or synchronous with respect to the host when stream is NULL.
forge_status finish_on(void* stream, const char* fn) {
  if (stream == nullptr) FORGE_CUDA_TRY(cudaStreamSynchronize(nullptr), fn);
  return FORGE_OK;
}

enum class Side { Host, Device };

forge_status copy(const char* fn, void* dst, Side dst_side, const void* src, Side src_side, size_t bytes,
                  void* stream, cudaMemcpyKind kind) {
  FORGE_CUDA_RETURN_IF(require_device(fn));
  if (bytes == 0) return FORGE_OK;
  if (dst_side == Side::Device) FORGE_CUDA_RETURN_IF(require_device_pointer("dst", dst));
  else if (!dst) return fail(FORGE_ERR_INVALID_ARGUMENT, "dst: null pointer");
  if (src_side == Side::Device) FORGE_CUDA_RETURN_IF(require_device_pointer("src", src));
  else if (!src) return fail(FORGE_ERR_INVALID_ARGUMENT, "src: null pointer");
  FORGE_CUDA_TRY(cudaMemcpyAsync(dst, src, bytes, kind, as_stream(stream)), fn);
  return finish_on(stream, fn);
}

template <class From, class To>
__global__ void convert_kernel(int64_t n, const From* src, To* dst) {
  for (int64_t i = global_thread(); i < n; i += grid_stride()) store_float(dst + i, load_float(src + i));
}

forge_status convert(int64_t n, forge_dtype src_dtype, const void* src, forge_dtype dst_dtype, void* dst,
                     void* stream) {
  FORGE_CUDA_RETURN_IF(check_dtype("src_dtype", src_dtype));
  FORGE_CUDA_RETURN_IF(check_dtype("dst_dtype", dst_dtype));
  if (n < 0) return fail(FORGE_ERR_INVALID_ARGUMENT, "n: expected >= 0, got " + std::to_string(n));
  if (n > (int64_t{1} << 60)) return fail(FORGE_ERR_INVALID_ARGUMENT, "n: too large (" + std::to_string(n) + ")");
  FORGE_CUDA_RETURN_IF(require_device("forge_cuda_convert"));
  if (n == 0) return FORGE_OK;
  FORGE_CUDA_RETURN_IF(require_device_pointer("src", src));
  FORGE_CUDA_RETURN_IF(require_device_pointer("dst", dst));
  const uintptr_t s = reinterpret_cast<uintptr_t>(src), d = reinterpret_cast<uintptr_t>(dst);
  const uintptr_t sb = static_cast<uintptr_t>(n) * forge_dtype_size(src_dtype);
  const uintptr_t db = static_cast<uintptr_t>(n) * forge_dtype_size(dst_dtype);
  if (s < d + db && d < s + sb) {
    // Elements of different sizes would be read after another thread wrote over them.
    if (s == d && src_dtype == dst_dtype) return FORGE_OK;
    return fail(FORGE_ERR_INVALID_ARGUMENT, "dst: overlaps src (convert into a separate buffer)");
  }
  return dispatch_dtype("src_dtype", src_dtype, [&](auto from) {
    using From = typename decltype(from)::type;
    return dispatch_dtype("dst_dtype", dst_dtype, [&](auto to) {
      using To = typename decltype(to)::type;
      FORGE_LAUNCH(grid_for(n), kThreads, 0, as_stream(stream), convert_kernel<From, To>)(n, static_cast<const From*>(src),
                                                                                 static_cast<To*>(dst));
      FORGE_CUDA_CHECK_LAUNCH("forge_cuda_convert");
      return FORGE_OK;
    });
  });
}

}  // namespace
}  // namespace cuda
}  // namespace forge

using forge::guarded;
using namespace forge::cuda;

extern "C" {

FORGE_API forge_status forge_cuda_get_device_props(int32_t device, forge_cuda_device_props* props) {
  return guarded("forge_cuda_get_device_props", [&] { return get_props(device, props); });
}

FORGE_API forge_status forge_cuda_set_device(int32_t device) {
  return guarded("forge_cuda_set_device", [&] {
    FORGE_CUDA_RETURN_IF(require_device("forge_cuda_set_device"));
    FORGE_CUDA_RETURN_IF(check_device_index("forge_cuda_set_device", device));
    return check(cudaSetDevice(device), "forge_cuda_set_device");
  });
}

FORGE_API forge_status forge_cuda_malloc(size_t bytes, void** out) {
  return guarded("forge_cuda_malloc", [&] {
    if (!out) return forge::fail(FORGE_ERR_INVALID_ARGUMENT, "out: null pointer");
    *out = nullptr;
    FORGE_CUDA_RETURN_IF(require_device("forge_cuda_malloc"));
    if (bytes == 0) return FORGE_OK;
    void* ptr = nullptr;
    FORGE_CUDA_TRY(cudaMalloc(&ptr, bytes), ("forge_cuda_malloc: " + std::to_string(bytes) + " bytes").c_str());
    *out = ptr;
    return FORGE_OK;
  });
}

FORGE_API forge_status forge_cuda_free(void* ptr) {
  return guarded("forge_cuda_free", [&] {
    if (!ptr) return FORGE_OK;
    FORGE_CUDA_RETURN_IF(require_device("forge_cuda_free"));
    return check(cudaFree(ptr), "forge_cuda_free");
  });
}

FORGE_API forge_status forge_cuda_memcpy_h2d(void* dst, const void* src, size_t bytes, void* stream) {
  return guarded("forge_cuda_memcpy_h2d", [&] {
    return copy("forge_cuda_memcpy_h2d", dst, Side::Device, src, Side::Host, bytes, stream, cudaMemcpyHostToDevice);
  });
}

FORGE_API forge_status forge_cuda_memcpy_d2h(void* dst, const void* src, size_t bytes, void* stream) {
  return guarded("forge_cuda_memcpy_d2h", [&] {
    return copy("forge_cuda_memcpy_d2h", dst, Side::Host, src, Side::Device, bytes, stream, cudaMemcpyDeviceToHost);
  });
}

FORGE_API forge_status forge_cuda_memcpy_d2d(void* dst, const void* src, size_t bytes, void* stream) {
  return guarded("forge_cuda_memcpy_d2d", [&] {
    return copy("forge_cuda_memcpy_d2d", dst, Side::Device, src, Side::Device, bytes, stream,
                cudaMemcpyDeviceToDevice);
  });
}

FORGE_API forge_status forge_cuda_memset(void* dst, int value, size_t bytes, void* stream) {
  return guarded("forge_cuda_memset", [&] {
    FORGE_CUDA_RETURN_IF(require_device("forge_cuda_memset"));
    if (bytes == 0) return FORGE_OK;
    FORGE_CUDA_RETURN_IF(require_device_pointer("dst", dst));
    FORGE_CUDA_TRY(cudaMemsetAsync(dst, value, bytes, as_stream(stream)), "forge_cuda_memset");
    return finish_on(stream, "forge_cuda_memset");
  });
}

FORGE_API forge_status forge_cuda_synchronize(void* stream) {
  return guarded("forge_cuda_synchronize", [&] {
    FORGE_CUDA_RETURN_IF(require_device("forge_cuda_synchronize"));
    if (stream == nullptr) return check(cudaDeviceSynchronize(), "forge_cuda_synchronize");
    return check(cudaStreamSynchronize(as_stream(stream)), "forge_cuda_synchronize");
  });
}

FORGE_API forge_status forge_cuda_convert(int64_t n, forge_dtype src_dtype, const void* src, forge_dtype dst_dtype,
                                          void* dst, void* stream) {
  return guarded("forge_cuda_convert", [&] { return convert(n, src_dtype, src, dst_dtype, dst, stream); });
}

}  // extern "C"
