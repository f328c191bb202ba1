// Input validation for forge_prefix_tree_build: every offset, token id, mask value and per-token
// number the build reads is checked here first, so the build itself can trust its input. Errors
// name the argument, the sample and the position ("tokens[1041] (sample 3, position 17): ...").
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <string>

#include "common/error.hpp"
#include "common/simd.hpp"
#include "common/thread_pool.hpp"
#include "tree/prefix_tree.hpp"

namespace forge::tree {

namespace {

constexpr int64_t kMaxTokens = (int64_t{1} << 31) - 1;  // positions and node ids are int32
constexpr int64_t kScanGrain = int64_t{1} << 16;        // below this a scan is not worth a thread

enum class Problem { kNone, kToken, kTrainable, kOldLogprob, kAdvantage };

inline Problem problem_at(const forge_sample_batch& b, int64_t i) {
  const int32_t tok = b.tokens[i];
  if (tok < 0 || (b.vocab_size > 0 && tok >= b.vocab_size)) return Problem::kToken;
  if (b.trainable) {
    const uint8_t m = b.trainable[i];
    if (m > 1) return Problem::kTrainable;
    if (m) {
      if (b.old_logprobs && !std::isfinite(b.old_logprobs[i]))
        return Problem::kOldLogprob;
      if (b.advantages && !std::isfinite(b.advantages[i])) return Problem::kAdvantage;
    }
  }
  return Problem::kNone;
}

// First index in [begin, end) with a problem, or end.
FORGE_HOT int64_t first_problem(const forge_sample_batch& b, int64_t begin, int64_t end) {
  for (int64_t i = begin; i < end; ++i)
    if (problem_at(b, i) != Problem::kNone) return i;
  return end;
}

// "[1041] (sample 3, position 17)": the packed index and where it sits in its sample.
std::string where(const forge_sample_batch& b, int64_t i) {
  const int64_t* end = b.offsets + b.num_samples + 1;
  const int64_t s = std::upper_bound(b.offsets, end, i) - b.offsets - 1;
  return "[" + std::to_string(i) + "] (sample " + std::to_string(s) + ", position " +
         std::to_string(i - b.offsets[s]) + ")";
}

std::string number(float x) {
  if (std::isnan(x)) return "NaN";
  if (std::isinf(x)) return x > 0 ? "Infinity" : "-Infinity";
  return std::to_string(x);
}

forge_status report(const forge_sample_batch& b, int64_t i) {
  switch (problem_at(b, i)) {
    case Problem::kToken: {
      std::string range = b.vocab_size > 0 ? "[0, " + std::to_string(b.vocab_size) + ")" : "[0, 2^31)";
      return fail(FORGE_ERR_OUT_OF_RANGE, "tokens" + where(b, i) + ": token id " + std::to_string(b.tokens[i]) +
                                              " out of range " + range);
    }
    case Problem::kTrainable:
      return fail(FORGE_ERR_INVALID_ARGUMENT, "trainable" + where(b, i) + ": expected 0 or 1, got " +
                                                  std::to_string(b.trainable[i]));
    case Problem::kOldLogprob: {
      // Only finiteness is required: an upstream may round a log-probability to a tiny positive value.
      return fail(FORGE_ERR_NON_FINITE, "old_logprobs" + where(b, i) +
                                            ": expected a finite log-probability at a trainable position, got " +
                                            number(b.old_logprobs[i]));
    }
    case Problem::kAdvantage:
      return fail(FORGE_ERR_NON_FINITE, "advantages" + where(b, i) +
                                            ": expected a finite advantage at a trainable position, got " +
                                            number(b.advantages[i]));
    case Problem::kNone:
      break;
  }
  return fail(FORGE_ERR_INTERNAL, "check_sample_batch: no problem at index " + std::to_string(i));
}

forge_status check_offsets(const forge_sample_batch& b) {
  const int32_t S = b.num_samples;
  if (b.offsets[0] != 0)
    return fail(FORGE_ERR_INVALID_ARGUMENT, "offsets[0]: expected 0, got " + std::to_string(b.offsets[0]));
  for (int32_t s = 0; s < S; ++s) {
    const int64_t lo = b.offsets[s], hi = b.offsets[s + 1];
    if (hi <= lo)
      return fail(FORGE_ERR_INVALID_ARGUMENT,
                  "offsets[" + std::to_string(s + 1) + "]: sample " + std::to_string(s) +
                      " is empty or offsets decrease (offsets[" + std::to_string(s) + "] = " + std::to_string(lo) +
                      ", offsets[" + std::to_string(s + 1) + "] = " + std::to_string(hi) +
                      "); every sample needs at least one token");
    if (hi > kMaxTokens)
      return fail(FORGE_ERR_OUT_OF_RANGE, "offsets[" + std::to_string(s + 1) + "]: " + std::to_string(hi) +
                                              " tokens exceed the int32 limit of 2^31 - 1 positions");
  }
  return FORGE_OK;
}

}  // namespace

forge_status check_sample_batch(const forge_sample_batch& b) {
  if (b.num_samples < 1)
    return fail(FORGE_ERR_INVALID_ARGUMENT,
                "num_samples: expected at least 1 sample, got " + std::to_string(b.num_samples));
  if (!b.offsets) return fail(FORGE_ERR_INVALID_ARGUMENT, "offsets: null pointer");
  if (!b.tokens) return fail(FORGE_ERR_INVALID_ARGUMENT, "tokens: null pointer");
  if (forge_status s = check_offsets(b); s != FORGE_OK) return s;
  const int64_t T = b.offsets[b.num_samples];

  // The first bad position overall (not merely the first one some thread saw), so the message is
  // the same on every run.
  std::atomic<int64_t> first{T};
  parallel_for(T, kScanGrain, [&](int64_t begin, int64_t end) {
    if (begin >= first.load(std::memory_order_relaxed)) return;
    const int64_t bad = first_problem(b, begin, end);
    if (bad == end) return;
    int64_t seen = first.load(std::memory_order_relaxed);
    while (bad < seen && !first.compare_exchange_weak(seen, bad, std::memory_order_relaxed)) {
    }
  });
  if (first.load() < T) return report(b, first.load());

  if (!b.trainable) return FORGE_OK;
  for (int32_t s = 0; s < b.num_samples; ++s) {
    const int64_t lo = b.offsets[s];
    if (b.trainable[lo])
      return fail(FORGE_ERR_INVALID_ARGUMENT,
                  "trainable[" + std::to_string(lo) + "] (sample " + std::to_string(s) +
                      ", position 0): must be 0, no token of the sample predicts its first token");
    // A per-sample advantage is only read for samples that carry terms.
    if (b.sample_advantages && !b.advantages && !std::isfinite(b.sample_advantages[s]) &&
        std::memchr(b.trainable + lo, 1, static_cast<size_t>(b.offsets[s + 1] - lo)))
      return fail(FORGE_ERR_NON_FINITE, "sample_advantages[" + std::to_string(s) +
                                            "]: expected a finite advantage for a sample with trainable "
                                            "positions, got " + number(b.sample_advantages[s]));
  }
  return FORGE_OK;
}

}  // namespace forge::tree
