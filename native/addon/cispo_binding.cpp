// Placeholder until the cispo binding lands.
#include "binding.hpp"
namespace forge::addon {
void register_cispo(Napi::Env, Napi::Object) {}
}  // namespace forge::addon
