// Included first into every cuda/ source compiled for the CPU emulator (-include, see CMakeLists.txt):
// the CUDA headers in their host form, then the device built-ins the kernels use, defined on
// forge::simt. Nothing here is compiled by nvcc.
#pragma once

#define FORGE_SIMT 1  // the hooks in cuda/ test this; every emulated source gets it through this file

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>

#include "simt.hpp"

// The kernel-pointer overload nvcc's cuda_runtime.h adds.
template <class... P>
inline cudaError_t cudaFuncSetAttribute(void (*kernel)(P...), cudaFuncAttribute attr, int value) {
  return cudaFuncSetAttribute(reinterpret_cast<const void*>(kernel), attr, value);
}

// Occupancy hints mean nothing here.
#undef __launch_bounds__
#define __launch_bounds__(...)

// One block runs at a time, so a static variable is that block's shared memory.
#undef __shared__
#define __shared__ static

#undef threadIdx
#undef blockIdx
#undef blockDim
#undef gridDim
#define threadIdx (::forge::simt::coords().thread_idx)
#define blockIdx (::forge::simt::coords().block_idx)
#define blockDim (::forge::simt::coords().block_dim)
#define gridDim (::forge::simt::coords().grid_dim)

inline void __syncthreads() { ::forge::simt::syncthreads_and(1); }
inline int __syncthreads_and(int predicate) { return ::forge::simt::syncthreads_and(predicate); }
inline void __syncwarp(unsigned mask = 0xffffffffu) { ::forge::simt::syncwarp(mask); }
inline unsigned __ballot_sync(unsigned mask, int predicate) { return ::forge::simt::ballot(mask, predicate); }
template <class T>
inline T __shfl_xor_sync(unsigned mask, T value, int lane_mask, int width = 32) {
  return ::forge::simt::shfl_xor(mask, value, lane_mask, width);
}
inline int __ffs(int x) { return __builtin_ffs(x); }
inline int __ffs(unsigned x) { return __builtin_ffs(static_cast<int>(x)); }

// Fibers never run at the same time, so atomics are plain read-modify-writes.
template <class T>
inline T atomicAdd(T* address, T value) {
  const T old = *address;
  *address = old + value;
  return old;
}
template <class T>
inline T atomicMin(T* address, T value) {
  const T old = *address;
  if (value < old) *address = value;
  return old;
}

// Device code calls CUDA's unqualified math functions.
using std::isfinite;
using std::isinf;
using std::isnan;
using std::max;
using std::min;
