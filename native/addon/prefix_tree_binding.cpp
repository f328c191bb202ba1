// Placeholder until the prefix_tree binding lands.
#include "binding.hpp"
namespace forge::addon {
void register_prefix_tree(Napi::Env, Napi::Object) {}
}  // namespace forge::addon
