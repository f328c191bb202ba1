// One stream-ordered scratch allocation carved into typed sub-buffers: reserve every buffer, allocate
// once (on the call's stream, from forge's pool: pool.cuh), free on scope exit (cudaFreeAsync, stream-ordered, so
// the kernels enqueued before it still see the memory). One allocation keeps the error paths simple.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "check.cuh"
#include "pool.cuh"

namespace forge {
namespace cuda {

class StreamScratch {
 public:
  explicit StreamScratch(cudaStream_t stream) : stream_(stream) {}
  StreamScratch(const StreamScratch&) = delete;
  StreamScratch& operator=(const StreamScratch&) = delete;
  ~StreamScratch() {
    if (base_) cudaFreeAsync(base_, stream_);  // errors here would also have failed the call's kernels
  }

  // Reserves `count` elements of T (256-byte aligned); returns the offset to pass to at<T>().
  template <class T>
  size_t reserve(int64_t count) {
    const size_t offset = total_;
    total_ += (static_cast<size_t>(count) * sizeof(T) + 255) & ~size_t{255};
    return offset;
  }

  // Allocates everything reserved (nothing when the total is 0).
  forge_status allocate(const char* what) {
    if (total_ == 0) return FORGE_OK;
    return check(temporary_malloc(&base_, total_, stream_), what);
  }

  template <class T>
  T* at(size_t offset) const {
    return reinterpret_cast<T*>(static_cast<char*>(base_) + offset);
  }

  size_t bytes() const { return total_; }

 private:
  cudaStream_t stream_;
  void* base_ = nullptr;
  size_t total_ = 0;
};

}  // namespace cuda
}  // namespace forge
