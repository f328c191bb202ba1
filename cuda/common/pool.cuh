// Stream-ordered temporaries (scratch, the dQ accumulator) come from forge's own memory pool per
// device. The default pool gives its memory back to the OS at every synchronisation (release
// threshold 0), so a caller that synchronises after each call (Node, Python asking for stats) would
// map fresh memory every time; this pool keeps what it holds (up to the peak of forge's temporaries),
// and other users of the default pool are unaffected. If a pool cannot be made, cudaMallocAsync serves.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <mutex>
#include <unordered_map>

namespace forge {
namespace cuda {

inline cudaError_t temporary_malloc(void** ptr, size_t bytes, cudaStream_t stream) {
  int device = 0;
  cudaError_t err = cudaGetDevice(&device);
  if (err != cudaSuccess) return err;
  static std::mutex mutex;
  static std::unordered_map<int, cudaMemPool_t> pools;  // never destroyed: lives as long as the process
  cudaMemPool_t pool = nullptr;
  {
    std::lock_guard<std::mutex> lock(mutex);
    auto it = pools.find(device);
    if (it != pools.end()) {
      pool = it->second;
    } else {
      cudaMemPoolProps props{};
      props.allocType = cudaMemAllocationTypePinned;
      props.handleTypes = cudaMemHandleTypeNone;
      props.location.type = cudaMemLocationTypeDevice;
      props.location.id = device;
      if (cudaMemPoolCreate(&pool, &props) == cudaSuccess) {
        uint64_t keep = UINT64_MAX;
        cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep);
      } else {
        cudaGetLastError();
        pool = nullptr;
      }
      pools.emplace(device, pool);
    }
  }
  return pool ? cudaMallocFromPoolAsync(ptr, bytes, pool, stream) : cudaMallocAsync(ptr, bytes, stream);
}

}  // namespace cuda
}  // namespace forge
