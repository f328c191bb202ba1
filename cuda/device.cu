// Device discovery. The runtime is linked statically, so this loads on machines without a driver;
// cudaGetDeviceCount then returns an error, which means "no GPU": the CPU kernels serve.
#include <cuda_runtime.h>
#include <forge/forge.h>

#include "common/check.cuh"

extern "C" {

FORGE_API int forge_cuda_compiled(void) { return 1; }

FORGE_API int forge_cuda_device_count(const char** reason) {
  int count = 0;
  cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    cudaGetLastError();  // clear the sticky error so later calls start clean
    if (reason) *reason = forge::cuda::no_device_reason(err);
    return 0;
  }
  if (count == 0 && reason) *reason = "the CUDA runtime found no device";
  if (count > 0 && reason) *reason = "";
  return count;
}

}
