// Shared plumbing of the GPU bench: the error type every failed call becomes, the checks that turn a
// CUDA or forge status into it, and an owning device buffer. Every CUDA call is checked (exit code 0
// proves nothing on a GPU); a failure names the call and its text.
#pragma once

#include <cuda_runtime.h>
#include <forge/forge.h>

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>

namespace gpubench {

struct BenchError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

inline void cuda_check(cudaError_t err, const char* what) {
  if (err != cudaSuccess) throw BenchError(std::string(what) + ": " + cudaGetErrorString(err));
}

inline void forge_check(forge_status status, const char* what) {
  if (status != FORGE_OK)
    throw BenchError(std::string(what) + ": " + forge_status_name(status) + ": " + forge_last_error());
}

// After a launch of our own kernels: launch errors now, errors inside the kernel at the next sync.
inline void cuda_check_launch(const char* what) { cuda_check(cudaGetLastError(), what); }

#define GB_CUDA(call) ::gpubench::cuda_check((call), #call)
#define GB_FORGE(call) ::gpubench::forge_check((call), #call)

// Device memory through the library's allocator (what a user of the ABI does), freed on scope exit.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(size_t bytes) : bytes_(bytes) {
    if (bytes > 0) GB_FORGE(forge_cuda_malloc(bytes, &ptr_));
  }
  ~DeviceBuffer() { forge_cuda_free(ptr_); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& other) noexcept { *this = std::move(other); }
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept {
    std::swap(ptr_, other.ptr_);
    std::swap(bytes_, other.bytes_);
    return *this;
  }

  void* get() const { return ptr_; }
  template <class T>
  T* as() const { return static_cast<T*>(ptr_); }
  size_t bytes() const { return bytes_; }

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

// A non-blocking stream owned for the whole run: kernels that ignored their stream argument and ran
// on the legacy default stream would escape our events and time as impossibly fast (flagged).
class Stream {
 public:
  Stream() { GB_CUDA(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking)); }
  ~Stream() { cudaStreamDestroy(stream_); }
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  cudaStream_t get() const { return stream_; }
  void* as_void() const { return static_cast<void*>(stream_); }
  void sync() const { GB_CUDA(cudaStreamSynchronize(stream_)); }

 private:
  cudaStream_t stream_ = nullptr;
};

}  // namespace gpubench
