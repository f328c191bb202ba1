#include "error.hpp"

namespace forge {

// Not in an anonymous namespace: forge_last_error below reads it.
thread_local std::string last_error_message;

forge_status fail(forge_status status, std::string message) {
  last_error_message = std::move(message);
  return status;
}

void clear_error() { last_error_message.clear(); }

}  // namespace forge

extern "C" {

FORGE_API const char* forge_last_error(void) { return forge::last_error_message.c_str(); }

FORGE_API const char* forge_status_name(forge_status status) {
  switch (status) {
    case FORGE_OK: return "FORGE_OK";
    case FORGE_ERR_INVALID_ARGUMENT: return "FORGE_ERR_INVALID_ARGUMENT";
    case FORGE_ERR_OUT_OF_RANGE: return "FORGE_ERR_OUT_OF_RANGE";
    case FORGE_ERR_NON_FINITE: return "FORGE_ERR_NON_FINITE";
    case FORGE_ERR_OUT_OF_MEMORY: return "FORGE_ERR_OUT_OF_MEMORY";
    case FORGE_ERR_UNSUPPORTED: return "FORGE_ERR_UNSUPPORTED";
    case FORGE_ERR_DEVICE: return "FORGE_ERR_DEVICE";
    case FORGE_ERR_INTERNAL: return "FORGE_ERR_INTERNAL";
  }
  return "FORGE_ERR_UNKNOWN";
}

FORGE_API int forge_abi_version(void) { return FORGE_ABI_VERSION; }

}
