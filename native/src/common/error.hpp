// Per-thread last error and the exception-to-status guard every C ABI entry point runs inside.
#pragma once

#include <forge/forge.h>

#include <new>
#include <string>
#include <utility>

namespace forge {

// Records `message` as this thread's last error and returns `status`, so a check reads
//   if (bad) return fail(FORGE_ERR_INVALID_ARGUMENT, "q: expected ...");
forge_status fail(forge_status status, std::string message);
void clear_error();

// Runs `body` (returning forge_status) so that no exception escapes: bad_alloc becomes
// FORGE_ERR_OUT_OF_MEMORY, anything else FORGE_ERR_INTERNAL with its text.
template <class Body>
forge_status guarded(const char* where, Body&& body) noexcept {
  try {
    clear_error();
    return std::forward<Body>(body)();
  } catch (const std::bad_alloc&) {
    return fail(FORGE_ERR_OUT_OF_MEMORY, std::string(where) + ": out of memory");
  } catch (const std::exception& e) {
    return fail(FORGE_ERR_INTERNAL, std::string(where) + ": " + e.what());
  } catch (...) {
    return fail(FORGE_ERR_INTERNAL, std::string(where) + ": unknown exception");
  }
}

}  // namespace forge
