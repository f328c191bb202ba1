// Deterministic initialisation of a parameter buffer (forge_model_init).
#pragma once

#include <cstdint>

#include "model/config.hpp"

namespace forge::model {

// Matrices N(0, 0.02^2), the residual projections (wo, w_down) N(0, (0.02 / sqrt(2 L))^2), norm gains 1.
// Tensor t draws from its own stream seeded by (seed, t), so the values depend on nothing else.
void init_params(const Dims& d, uint64_t seed, float* params);

}  // namespace forge::model
