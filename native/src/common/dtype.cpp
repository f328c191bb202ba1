// forge_dtype_size: plain host facts about device element types, compiled in every build (with or
// without CUDA) so callers can size buffers before asking for a device.
#include <forge/forge.h>

extern "C" FORGE_API size_t forge_dtype_size(forge_dtype dtype) {
  switch (dtype) {
    case FORGE_DTYPE_F32: return 4;
    case FORGE_DTYPE_F16: return 2;
    case FORGE_DTYPE_BF16: return 2;
  }
  return 0;
}
