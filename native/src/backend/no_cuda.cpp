// The CUDA entry points of a build without cuda/ (FORGE_CUDA=off, or no nvcc found).
#include <forge/forge.h>

extern "C" {

FORGE_API int forge_cuda_compiled(void) { return 0; }

FORGE_API int forge_cuda_device_count(const char** reason) {
  if (reason) *reason = "forge-rl was built without CUDA (FORGE_CUDA=off or nvcc not found)";
  return 0;
}

}
