// Host-side checks shared by every CUDA entry point: CUDA errors -> forge_status with the CUDA text,
// "is there a usable GPU", "is this a device pointer", and the void* -> cudaStream_t cast.
// Include with a path relative to the including file (cuda/ is not an include directory of the
// CMake build): from cuda/x.cu `#include "common/check.cuh"`, from cuda/<op>/y.cuh "../common/check.cuh".
#pragma once

#include <cuda_runtime.h>
#include <dlfcn.h>
#include <forge/forge.h>

#include <string>

#include "common/error.hpp"  // native/src/common: forge::fail, forge::guarded

namespace forge {
namespace cuda {

// cudaError_t -> FORGE_OK, or FORGE_ERR_DEVICE with "<what>: <CUDA text> (<CUDA name>)"
// (FORGE_ERR_OUT_OF_MEMORY for a failed allocation). A non-sticky error is consumed
// (cudaGetLastError) so the next call on this thread starts clean.
inline forge_status check(cudaError_t err, const char* what) {
  if (err == cudaSuccess) return FORGE_OK;
  cudaGetLastError();
  return fail(err == cudaErrorMemoryAllocation ? FORGE_ERR_OUT_OF_MEMORY : FORGE_ERR_DEVICE,
              std::string(what) + ": " + cudaGetErrorString(err) + " (" + cudaGetErrorName(err) + ")");
}

// After a <<<...>>> launch: reports configuration / launch errors (an error inside the kernel
// surfaces later, at a synchronising call).
inline forge_status check_launch(const char* kernel) { return check(cudaGetLastError(), kernel); }

inline cudaStream_t as_stream(void* stream) { return static_cast<cudaStream_t>(stream); }

// Why cudaGetDeviceCount failed, in words. Without any NVIDIA driver the static runtime answers
// "driver version is insufficient", which reads like "upgrade your driver": say what is true instead.
inline const char* no_device_reason(cudaError_t err) {
  if (err == cudaErrorInsufficientDriver || err == cudaErrorNoDevice) {
    void* driver = dlopen("libcuda.so.1", RTLD_LAZY | RTLD_LOCAL);
    if (driver == nullptr) return "no NVIDIA driver, libcuda.so.1 not found";
    dlclose(driver);
  }
  return cudaGetErrorString(err);
}

// FORGE_OK, or FORGE_ERR_DEVICE "<fn>: no usable GPU: <reason>" (no driver, no device, ...).
inline forge_status require_device(const char* fn) {
  int count = 0;
  cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    cudaGetLastError();
    return fail(FORGE_ERR_DEVICE, std::string(fn) + ": no usable GPU: " + no_device_reason(err));
  }
  if (count <= 0) return fail(FORGE_ERR_DEVICE, std::string(fn) + ": no usable GPU: the CUDA runtime found no device");
  return FORGE_OK;
}

// A pointer a kernel on the current device may dereference: device memory of the current device, or
// managed memory. NULL, host memory (pageable or pinned) or another device's memory ->
// FORGE_ERR_INVALID_ARGUMENT naming the argument. Call require_device first.
inline forge_status require_device_pointer(const char* name, const void* ptr) {
  if (ptr == nullptr) return fail(FORGE_ERR_INVALID_ARGUMENT, std::string(name) + ": NULL where a device pointer is required");
  cudaPointerAttributes attr{};
  cudaError_t err = cudaPointerGetAttributes(&attr, ptr);
  if (err == cudaErrorInvalidValue) {
    // Older runtimes answer this for plain host memory they never saw.
    cudaGetLastError();
    return fail(FORGE_ERR_INVALID_ARGUMENT, std::string(name) + ": a host pointer where a device pointer is required");
  }
  if (err != cudaSuccess) return check(err, name);
  if (attr.type == cudaMemoryTypeManaged) return FORGE_OK;
  if (attr.type != cudaMemoryTypeDevice) {
    return fail(FORGE_ERR_INVALID_ARGUMENT,
                std::string(name) + (attr.type == cudaMemoryTypeHost ? ": pinned host memory" : ": a host pointer") +
                    " where a device pointer is required");
  }
  int current = 0;
  cudaError_t cur_err = cudaGetDevice(&current);
  if (cur_err != cudaSuccess) return check(cur_err, name);
  if (attr.device != current) {
    return fail(FORGE_ERR_INVALID_ARGUMENT, std::string(name) + ": memory of device " + std::to_string(attr.device) +
                                                ", but the current device is " + std::to_string(current));
  }
  return FORGE_OK;
}

// Like require_device_pointer, but NULL is allowed (optional outputs).
inline forge_status optional_device_pointer(const char* name, const void* ptr) {
  return ptr == nullptr ? FORGE_OK : require_device_pointer(name, ptr);
}

}  // namespace cuda
}  // namespace forge

// Early return of a non-OK forge_status.
#define FORGE_CUDA_RETURN_IF(expr)                   \
  do {                                               \
    forge_status forge_status_ = (expr);             \
    if (forge_status_ != FORGE_OK) return forge_status_; \
  } while (0)

// Early return of a CUDA runtime call's error as FORGE_ERR_DEVICE naming `what`.
#define FORGE_CUDA_TRY(call, what) FORGE_CUDA_RETURN_IF(::forge::cuda::check((call), (what)))

// Early return of a launch error, right after FORGE_LAUNCH(..., kernel)(...).
#define FORGE_CUDA_CHECK_LAUNCH(what) FORGE_CUDA_RETURN_IF(::forge::cuda::check_launch(what))
