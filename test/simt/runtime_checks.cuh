// Checks 5-8: the emulated runtime around the kernels: faults past the end of device memory, cp.async
// landing only at its wait, launch-configuration and shared-memory limits, and device memory itself.
#pragma once

#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "attention/mma.cuh"
#include "common/launch.cuh"
#include "harness.hpp"

namespace simt_selftest {

constexpr unsigned kFaultyThread = 37;  // block 1, thread 5 of a grid of two 32-thread blocks

// Every thread writes its element; thread kFaultyThread writes one float past the end instead.
__global__ void write_past_end_kernel(float* out, int n) {
  const unsigned i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i == kFaultyThread) out[n] = 1.0f;
  else if (i < static_cast<unsigned>(n)) out[i] = static_cast<float>(i);
}

__global__ void read_past_end_kernel(const float* in, int n, float* out) {
  if (threadIdx.x == 3) out[0] = in[n];
}

__global__ void fill_kernel(float* out, int n) {
  for (int i = threadIdx.x; i < n; i += blockDim.x) out[i] = static_cast<float>(i) + 0.5f;
}

// Fails when an access one element past an allocation goes unnoticed, is reported without the
// allocation's size, the kernel and the thread, or leaves the process unable to launch again.
inline Outcome check_out_of_bounds(uint64_t) {
  constexpr int n = 1024;  // 4096 bytes: the allocation ends right at its guard page
  DeviceArray<float> buffer(n), out(1);
  FORGE_LAUNCH(dim3(2), dim3(32), 0, nullptr, write_past_end_kernel)(buffer.get(), n);
  if (Outcome e = expect_error(last_launch(), cudaErrorIllegalAddress,
                               {"0 bytes past the end of a device allocation of 4096 bytes", "write_past_end_kernel",
                                "block (1,0,0) thread (5,0,0)"});
      !e.empty())
    return "write: " + e;
  FORGE_LAUNCH(dim3(1), dim3(32), 0, nullptr, read_past_end_kernel)(buffer.get(), n, out.get());
  if (Outcome e = expect_error(last_launch(), cudaErrorIllegalAddress,
                               {"0 bytes past the end of a device allocation of 4096 bytes", "read_past_end_kernel"});
      !e.empty())
    return "read: " + e;
  FORGE_LAUNCH(dim3(1), dim3(64), 0, nullptr, fill_kernel)(buffer.get(), n);
  if (Outcome launched = expect_launched(); !launched.empty()) return "the launch after the faults: " + launched;
  const std::vector<float> got = buffer.download();
  for (int i = 0; i < n; ++i)
    if (got[i] != i + 0.5f) return cat("the launch after the faults: element ", i, " = ", got[i]);
  return "";
}

constexpr int kCopyThreads = 32, kChunk = 16;
constexpr int kRegionBytes = kCopyThreads * kChunk;

// Per thread: group 1 copies a chunk of `first` to region 0; group 2 copies a chunk of `second` to
// region 1 and zero-fills region 2 (its source is the end of `first`'s allocation: reading it would
// fault). out[phase][region][thread] = the thread's 16 bytes of each region before any wait, after
// cp_async_wait<1> and after cp_async_wait<0>.
__global__ void cp_async_kernel(const unsigned char* first, const unsigned char* second, unsigned char* out) {
  namespace fa = forge::cuda::attention;
  FORGE_DYNAMIC_SHARED(smem);
  const int tid = threadIdx.x, mine = tid * kChunk;
  fa::cp_async_16(smem + mine, first + mine, true);
  fa::cp_async_commit();
  fa::cp_async_16(smem + kRegionBytes + mine, second + mine, true);
  fa::cp_async_16(smem + 2 * kRegionBytes + mine, first + kRegionBytes, false);
  fa::cp_async_commit();
  auto record = [&](int phase) {
    for (int region = 0; region < 3; ++region)
      for (int b = 0; b < kChunk; ++b)
        out[(phase * 3 + region) * kRegionBytes + mine + b] = smem[region * kRegionBytes + mine + b];
  };
  record(0);
  fa::cp_async_wait<1>();
  record(1);
  fa::cp_async_wait<0>();
  record(2);
}

// Fails when cp.async copies at the call instead of at its wait, a wait lands too many or too few
// groups, the zero-fill form reads its source or writes anything but zeros, or dynamic shared
// memory does not start as 0xFF bytes.
inline Outcome check_cp_async(uint64_t seed) {
  std::mt19937_64 rng = stream_for(seed, "cp_async");
  std::vector<unsigned char> first(kRegionBytes), second(kRegionBytes);
  for (auto* data : {&first, &second})
    for (unsigned char& byte : *data) byte = static_cast<unsigned char>(1 + rng() % 254);  // never 0x00 or 0xFF
  DeviceArray<unsigned char> first_dev(first), second_dev(second), out(9 * kRegionBytes);
  const ScopedEnv deferred("FORGE_SIMT_CP_ASYNC", nullptr);  // the default: copies land at the wait
  FORGE_LAUNCH(dim3(1), dim3(kCopyThreads), 3 * kRegionBytes, nullptr, cp_async_kernel)(first_dev.get(),
                                                                                       second_dev.get(), out.get());
  if (Outcome launched = expect_launched(); !launched.empty()) return launched;
  const std::vector<unsigned char> got = out.download();
  const std::vector<unsigned char> fill(kRegionBytes, 0xFF), zeros(kRegionBytes, 0);
  const std::vector<unsigned char>* want[3][3] = {{&fill, &fill, &fill},       // before any wait
                                                  {&first, &fill, &fill},      // after wait<1>
                                                  {&first, &second, &zeros}};  // after wait<0>
  const char* phases[3] = {"before cp_async_wait", "after cp_async_wait<1>", "after cp_async_wait<0>"};
  for (int phase = 0; phase < 3; ++phase)
    for (int region = 0; region < 3; ++region)
      for (int b = 0; b < kRegionBytes; ++b) {
        const unsigned char g = got[(phase * 3 + region) * kRegionBytes + b], w = (*want[phase][region])[b];
        if (g != w)
          return cat(phases[phase], ", region ", region, " byte ", b, ": got ", int{g}, ", want ", int{w});
      }
  return "";
}

// Writes `tid + 1` to out[tid], and (with dynamic shared memory) proves the last byte is usable.
__device__ void config_body(int* out, int shared_bytes) {
  FORGE_DYNAMIC_SHARED(smem);
  const int tid = static_cast<int>(threadIdx.x);
  if (shared_bytes > 0 && tid == 0) smem[shared_bytes - 1] = 41;
  __syncthreads();
  out[tid] = tid + 1 + (shared_bytes > 0 ? smem[shared_bytes - 1] - 41 : 0);
}
__global__ void config_kernel(int* out, int shared_bytes) { config_body(out, shared_bytes); }

// The same body in a second kernel for the shared-memory opt-in, which is per kernel: config_kernel
// never opts in.
__global__ void big_shared_kernel(int* out, int shared_bytes) { config_body(out, shared_bytes); }

// Fails when an oversized block or dynamic shared memory over the 48 KiB default runs (or fails
// without saying why), when the opt-in does not raise the limit, or when it leaks to another kernel.
inline Outcome check_launch_limits(uint64_t) {
  DeviceArray<int> out(1024);
  FORGE_LAUNCH(dim3(1), dim3(2048), 0, nullptr, config_kernel)(out.get(), 0);
  if (Outcome e = expect_error(last_launch(), cudaErrorInvalidConfiguration, {"config_kernel", "block (2048,1,1)"});
      !e.empty())
    return "2048 threads: " + e;
  if (out.download()[0] != -1) return "2048 threads: the kernel ran";  // still the 0xFF fill
  FORGE_LAUNCH(dim3(1), dim3(1024), 0, nullptr, config_kernel)(out.get(), 0);
  if (Outcome e = expect_launched(); !e.empty()) return "1024 threads: " + e;
  if (out.download()[1023] != 1024) return "1024 threads: thread 1023 did not run";

  constexpr int k48 = 48 * 1024, k64 = 64 * 1024;
  FORGE_LAUNCH(dim3(1), dim3(32), k48, nullptr, big_shared_kernel)(out.get(), k48);
  if (Outcome e = expect_launched(); !e.empty()) return "48 KiB without opt-in: " + e;
  FORGE_LAUNCH(dim3(1), dim3(32), k64, nullptr, big_shared_kernel)(out.get(), k64);
  if (Outcome e = expect_failure(last_launch(), {"65536 bytes of dynamic shared memory", "big_shared_kernel"}); !e.empty())
    return "64 KiB without opt-in: " + e;
  if (cudaFuncSetAttribute(big_shared_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, k64) != cudaSuccess)
    return "cudaFuncSetAttribute failed";
  std::vector<int> cleared(1024, 0);
  out.upload(cleared);
  FORGE_LAUNCH(dim3(1), dim3(32), k64, nullptr, big_shared_kernel)(out.get(), k64);
  if (Outcome e = expect_launched(); !e.empty()) return "64 KiB after opt-in: " + e;
  const std::vector<int> got = out.download();
  for (int tid = 0; tid < 32; ++tid)
    if (got[tid] != tid + 1) return cat("64 KiB after opt-in: out[", tid, "] = ", got[tid]);
  FORGE_LAUNCH(dim3(1), dim3(32), k64, nullptr, config_kernel)(out.get(), k64);
  if (last_launch().code == cudaSuccess) return "the opt-in of big_shared_kernel let config_kernel use 64 KiB";
  return "";
}

// Fails when fresh device memory is not all 0xFF bytes, or pointer attributes misclassify an
// interior device pointer, a host pointer or a freed one.
inline Outcome check_device_memory(uint64_t) {
  constexpr size_t bytes = 1000;  // not a multiple of 16
  unsigned char* dev = nullptr;
  if (cudaMalloc(reinterpret_cast<void**>(&dev), bytes) != cudaSuccess) return "cudaMalloc failed";
  std::vector<unsigned char> host(bytes, 0);
  cudaMemcpy(host.data(), dev, bytes, cudaMemcpyDeviceToHost);
  for (size_t i = 0; i < bytes; ++i)
    if (host[i] != 0xFF) {
      cudaFree(dev);
      return cat("byte ", i, " of fresh device memory is ", int{host[i]});
    }
  auto type_of = [](const void* p) {
    cudaPointerAttributes attributes;
    return cudaPointerGetAttributes(&attributes, p) == cudaSuccess ? attributes.type : cudaMemoryTypeUnregistered;
  };
  std::string why;
  for (const size_t offset : {size_t{0}, size_t{500}, bytes - 1})
    if (why.empty() && type_of(dev + offset) != cudaMemoryTypeDevice) why = cat("dev + ", offset, " is not device memory");
  if (why.empty() && type_of(host.data()) == cudaMemoryTypeDevice) why = "a host pointer is device memory";
  cudaFree(dev);
  if (why.empty() && type_of(dev + 500) == cudaMemoryTypeDevice) why = "a freed pointer is still device memory";
  return why;
}

}  // namespace simt_selftest
