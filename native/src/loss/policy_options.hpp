// Checking and resolving forge_cispo_options (host side), shared by the CPU kernel (policy_terms.hpp)
// and the device entry point (cuda/cispo.cu), so both accept the same options with the same errors.
#pragma once

#include <forge/forge.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <string>

#include "common/error.hpp"
#include "loss/policy_term_math.hpp"

namespace forge::loss {

// A number as the error messages print it.
inline std::string num(double x) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.9g", x);
  return buf;
}

// Validates the options and resolves them for `num_terms` terms (Z = num_terms unless normalizer > 0).
inline forge_status resolve_policy_options(const forge_cispo_options* options, int64_t num_terms, PolicyParams& p) {
  if (!options) return fail(FORGE_ERR_INVALID_ARGUMENT, "options: null pointer");
  const forge_cispo_options& o = *options;
  if (o.mode != FORGE_PG_CISPO && o.mode != FORGE_PG_PPO_CLIP && o.mode != FORGE_PG_CROSS_ENTROPY)
    return fail(FORGE_ERR_INVALID_ARGUMENT,
                "options.mode: expected FORGE_PG_CISPO (0), FORGE_PG_PPO_CLIP (1) or FORGE_PG_CROSS_ENTROPY (2), got " +
                    std::to_string(static_cast<int>(o.mode)));
  // +inf is a valid epsilon (no bound on that side); NaN and negatives are not.
  if (std::isnan(o.eps_low)) return fail(FORGE_ERR_NON_FINITE, "options.eps_low: expected a number >= 0, got nan");
  if (o.eps_low < 0)
    return fail(FORGE_ERR_OUT_OF_RANGE, "options.eps_low: expected a number >= 0, got " + num(o.eps_low));
  if (std::isnan(o.eps_high)) return fail(FORGE_ERR_NON_FINITE, "options.eps_high: expected a number >= 0, got nan");
  if (o.eps_high < 0)
    return fail(FORGE_ERR_OUT_OF_RANGE, "options.eps_high: expected a number >= 0, got " + num(o.eps_high));
  if (!std::isfinite(o.normalizer))
    return fail(FORGE_ERR_NON_FINITE, "options.normalizer: expected a finite number, got " + num(o.normalizer));

  p.mode = o.mode;
  p.lo = 1.0 - static_cast<double>(o.eps_low);
  p.hi = 1.0 + static_cast<double>(o.eps_high);
  if (o.mode == FORGE_PG_CROSS_ENTROPY) {  // nothing is clipped: the clip fractions stay 0
    p.lo = -std::numeric_limits<double>::infinity();
    p.hi = std::numeric_limits<double>::infinity();
  }
  const double z = o.normalizer > 0 ? o.normalizer : static_cast<double>(num_terms);
  p.inv_z = z > 0 ? 1.0 / z : 0.0;  // no terms: nothing is normalised
  return FORGE_OK;
}

}  // namespace forge::loss
