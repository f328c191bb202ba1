// Element types of device tensors: F32 / F16 / BF16 loaded and stored as float on the device, a host
// check naming the argument, a dispatch from forge_dtype to a template parameter, and 16-byte vector
// loads (8 halves or bf16s, 4 floats per load).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <forge/forge.h>

#include <cstdint>
#include <string>

#include "common/error.hpp"

namespace forge {
namespace cuda {

// ---- device: element <-> float ----------------------------------------------------------------------
__device__ __forceinline__ float to_float(float x) { return x; }
__device__ __forceinline__ float to_float(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }

template <class T>
__device__ __forceinline__ T from_float(float x);
template <>
__device__ __forceinline__ float from_float<float>(float x) { return x; }
template <>
__device__ __forceinline__ __half from_float<__half>(float x) { return __float2half_rn(x); }
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float x) { return __float2bfloat16_rn(x); }

template <class T>
__device__ __forceinline__ float load_float(const T* p) { return to_float(*p); }
template <class T>
__device__ __forceinline__ void store_float(T* p, float x) { *p = from_float<T>(x); }

// ---- 16-byte vectors ------------------------------------------------------------------------------
// kVecElems<T> elements travel in one 16-byte load (uint4). A pointer qualifies when it is 16-byte
// aligned; callers peel a scalar head until it is.
template <class T>
constexpr int kVecElems = 16 / static_cast<int>(sizeof(T));

template <class T>
struct alignas(16) Vec16 {
  T v[kVecElems<T>];
};

template <class T>
__device__ __forceinline__ void load_vec16(const T* p, float (&out)[kVecElems<T>]) {
  Vec16<T> raw = *reinterpret_cast<const Vec16<T>*>(p);
#pragma unroll
  for (int i = 0; i < kVecElems<T>; ++i) out[i] = to_float(raw.v[i]);
}

template <class T>
__device__ __forceinline__ void store_vec16(T* p, const float (&in)[kVecElems<T>]) {
  Vec16<T> raw;
#pragma unroll
  for (int i = 0; i < kVecElems<T>; ++i) raw.v[i] = from_float<T>(in[i]);
  *reinterpret_cast<Vec16<T>*>(p) = raw;
}

__host__ __device__ __forceinline__ bool is_aligned16(const void* p) {
  return (reinterpret_cast<uintptr_t>(p) & 15u) == 0;
}

// ---- host: checks and dispatch --------------------------------------------------------------------
inline const char* dtype_name(forge_dtype dtype) {
  switch (dtype) {
    case FORGE_DTYPE_F32: return "F32";
    case FORGE_DTYPE_F16: return "F16";
    case FORGE_DTYPE_BF16: return "BF16";
  }
  return "unknown";
}

// FORGE_OK for a known dtype, else FORGE_ERR_INVALID_ARGUMENT "<name>: unknown dtype <n> ...".
inline forge_status check_dtype(const char* name, forge_dtype dtype) {
  switch (dtype) {
    case FORGE_DTYPE_F32:
    case FORGE_DTYPE_F16:
    case FORGE_DTYPE_BF16: return FORGE_OK;
  }
  return fail(FORGE_ERR_INVALID_ARGUMENT, std::string(name) + ": unknown dtype " + std::to_string(static_cast<int>(dtype)) +
                                              " (expected FORGE_DTYPE_F32 = 0, F16 = 1 or BF16 = 2)");
}

// Type tag handed to dispatch bodies: `[&](auto tag) { using T = typename decltype(tag)::type; ... }`.
template <class T>
struct TypeTag {
  using type = T;
};

// Calls body(TypeTag<float | __half | __nv_bfloat16>{}) for `dtype`; an unknown value is
// FORGE_ERR_INVALID_ARGUMENT naming `name`. The body returns forge_status.
template <class Body>
forge_status dispatch_dtype(const char* name, forge_dtype dtype, Body&& body) {
  switch (dtype) {
    case FORGE_DTYPE_F32: return body(TypeTag<float>{});
    case FORGE_DTYPE_F16: return body(TypeTag<__half>{});
    case FORGE_DTYPE_BF16: return body(TypeTag<__nv_bfloat16>{});
  }
  return check_dtype(name, dtype);
}

}  // namespace cuda
}  // namespace forge
