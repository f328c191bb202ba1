// Placeholder until the attention binding lands.
#include "binding.hpp"
namespace forge::addon {
void register_attention(Napi::Env, Napi::Object) {}
}  // namespace forge::addon
