// forge_cuda_cispo_loss (contract 3 on the device): argument checks, the term index (csr_by_key:
// terms by node, then by target), the fused row kernel (cispo/kernel.cuh), the statistics. With
// `stats` the call waits for the stream, reads the totals and the non-finite flag back and reports
// a non-finite logits row as FORGE_ERR_NON_FINITE naming the row and column, exactly as the CPU
// kernel; without it everything stays asynchronous and such a row gets NaN dlogits and logprobs.
#include <cuda_runtime.h>
#include <forge/forge.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "cispo/kernel.cuh"
#include "common/check.cuh"
#include "common/csr.cuh"
#include "common/dtype.cuh"
#include "common/launch.cuh"
#include "common/scratch.cuh"
#include "loss/policy_options.hpp"  // native/src

namespace forge {
namespace cuda {
namespace cispo {
namespace {

constexpr const char* kFn = "forge_cuda_cispo_loss";
constexpr unsigned long long kNone = ~0ull;

using loss::num;

// What the host reads back: the totals and the first non-finite row.
struct Readback {
  Totals totals;
  unsigned long long bad_at;  // row << 32 | column of the first non-finite logit, or kNone
};

struct Args {
  forge_dtype dtype;
  int64_t num_rows, vocab_size;
  const void* logits;
  int64_t num_terms;
  const int32_t* term_node;
  const int32_t* term_target;
  const float* term_old_logprob;
  const float* term_advantage;
  const forge_cispo_options* options;
  void* dlogits;
  float* logprobs_out;
};

// The host-side checks of the CPU kernel (policy_terms.hpp validate_policy_args), minus the term
// values, which live in device memory (trusted, see forge.h); the options' checks are the same code.
forge_status validate(const Args& a, PolicyParams& p) {
  if (a.dtype != FORGE_DTYPE_F32 && a.dtype != FORGE_DTYPE_BF16) {
    FORGE_CUDA_RETURN_IF(check_dtype("dtype", a.dtype));
    return fail(FORGE_ERR_UNSUPPORTED, std::string("dtype: the device CISPO kernel reads F32 or BF16 logits, got ") +
                                           dtype_name(a.dtype));
  }
  if (a.num_rows < 0) return fail(FORGE_ERR_INVALID_ARGUMENT, "num_rows: expected >= 0, got " + std::to_string(a.num_rows));
  if (a.num_rows >= INT32_MAX)
    return fail(FORGE_ERR_UNSUPPORTED, "num_rows: the device kernel serves fewer than 2^31 - 1 rows, got " +
                                           std::to_string(a.num_rows));
  if (a.vocab_size < 1 || a.vocab_size > INT32_MAX)
    return fail(FORGE_ERR_INVALID_ARGUMENT,
                "vocab_size: expected an integer in [1, 2147483647], got " + std::to_string(a.vocab_size));
  if (a.num_rows > std::numeric_limits<int64_t>::max() / 4 / a.vocab_size)
    return fail(FORGE_ERR_INVALID_ARGUMENT, "num_rows * vocab_size: " + std::to_string(a.num_rows) + " x " +
                                                std::to_string(a.vocab_size) + " elements overflow");
  if (a.num_terms < 0 || a.num_terms >= INT32_MAX)
    return fail(FORGE_ERR_INVALID_ARGUMENT,
                "num_terms: expected an integer in [0, 2147483646], got " + std::to_string(a.num_terms));
  return loss::resolve_policy_options(a.options, a.num_terms, p);
}

forge_status check_pointers(const Args& a) {
  const int64_t elements = a.num_rows * a.vocab_size;
  if (elements > 0) FORGE_CUDA_RETURN_IF(require_device_pointer("logits", a.logits));
  if (elements > 0) FORGE_CUDA_RETURN_IF(optional_device_pointer("dlogits", a.dlogits));
  if (a.num_terms > 0) {
    FORGE_CUDA_RETURN_IF(require_device_pointer("term_node", a.term_node));
    FORGE_CUDA_RETURN_IF(require_device_pointer("term_target", a.term_target));
    FORGE_CUDA_RETURN_IF(require_device_pointer("term_old_logprob", a.term_old_logprob));
    FORGE_CUDA_RETURN_IF(require_device_pointer("term_advantage", a.term_advantage));
    FORGE_CUDA_RETURN_IF(optional_device_pointer("logprobs_out", a.logprobs_out));
  }
  if (a.dlogits && a.dlogits != a.logits && elements > 0) {
    // Partial overlap would read logits the gradient pass already overwrote.
    const auto bytes = static_cast<uintptr_t>(elements) * forge_dtype_size(a.dtype);
    const auto l = reinterpret_cast<uintptr_t>(a.logits), d = reinterpret_cast<uintptr_t>(a.dlogits);
    if (d < l + bytes && l < d + bytes)
      return fail(FORGE_ERR_INVALID_ARGUMENT, "dlogits: overlaps logits without being equal to it");
  }
  return FORGE_OK;
}

__global__ void fill_nan_kernel(float* out, int64_t n) {
  for (int64_t i = global_thread(); i < n; i += grid_stride()) out[i] = NAN;
}

// Blocks of the row kernel: as many as the device keeps resident, at most one per row.
forge_status row_grid(const void* kernel, int64_t num_rows, int& blocks) {
  int device = 0, sms = 0, per_sm = 0;
  FORGE_CUDA_TRY(cudaGetDevice(&device), kFn);
  FORGE_CUDA_TRY(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device), kFn);
  FORGE_CUDA_TRY(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, kRowThreads, 0), kFn);
  const int64_t resident = static_cast<int64_t>(sms) * (per_sm > 0 ? per_sm : 1);
  blocks = static_cast<int>(num_rows < resident ? num_rows : resident);
  return FORGE_OK;
}

// The first non-finite logit, named as the CPU kernel names it (the kernel found its row and column
// before any in-place write; the value is read back, and is gone when dlogits overwrote it).
template <class T>
forge_status non_finite_error(const T* logits, int64_t row, int64_t column, int64_t vocab_size, bool in_place,
                              cudaStream_t s) {
  const std::string where = "logits[row " + std::to_string(row) + ", column " + std::to_string(column) + "]";
  if (in_place) return fail(FORGE_ERR_NON_FINITE, where + ": held a non-finite value (overwritten in place by dlogits)");
  T held;
  FORGE_CUDA_TRY(cudaMemcpyAsync(&held, logits + row * vocab_size + column, sizeof(T), cudaMemcpyDeviceToHost, s),
                 kFn);
  FORGE_CUDA_TRY(cudaStreamSynchronize(s), kFn);
  float v;
  if constexpr (sizeof(T) == 4) {
    std::memcpy(&v, &held, 4);
  } else {  // bf16: the high half of a float
    uint16_t bits;
    std::memcpy(&bits, &held, 2);
    const uint32_t wide = static_cast<uint32_t>(bits) << 16;
    std::memcpy(&v, &wide, 4);
  }
  if (!std::isfinite(v)) return fail(FORGE_ERR_NON_FINITE, where + ": expected a finite number, got " + num(v));
  return fail(FORGE_ERR_NON_FINITE, where + ": held a non-finite value (the caller changed it meanwhile)");
}

template <class T>
forge_status run(const Args& a, const PolicyParams& p, forge_cispo_stats* stats, cudaStream_t s) {
  const auto rows = static_cast<int32_t>(a.num_rows), terms = static_cast<int32_t>(a.num_terms);
  int blocks = 0;
  FORGE_CUDA_RETURN_IF(row_grid(reinterpret_cast<const void*>(&cispo_rows_kernel<T>), a.num_rows, blocks));

  StreamScratch scratch(s);
  const size_t at_order = scratch.reserve<int32_t>(terms), at_start = scratch.reserve<int32_t>(rows + int64_t{1});
  const size_t at_fix = scratch.reserve<float>(terms), at_partials = scratch.reserve<Totals>(blocks);
  const size_t at_readback = scratch.reserve<Readback>(1);
  FORGE_CUDA_RETURN_IF(scratch.allocate("forge_cuda_cispo_loss: scratch"));
  Readback* readback = scratch.at<Readback>(at_readback);

  FORGE_CUDA_TRY(cudaMemsetAsync(&readback->bad_at, 0xFF, sizeof readback->bad_at, s), kFn);
  if (a.logprobs_out && terms > 0) {
    // Terms the kernel skips (node or target out of range) read NaN rather than stale memory.
    FORGE_LAUNCH(grid_for(terms), kThreads, 0, s, fill_nan_kernel)(a.logprobs_out, terms);
    FORGE_CUDA_CHECK_LAUNCH("forge_cuda_cispo_loss: fill_nan");
  }
  RowKernelArgs<T> k{};
  k.logits = static_cast<const T*>(a.logits);
  k.dlogits = static_cast<T*>(a.dlogits);
  k.num_rows = a.num_rows;
  k.vocab_size = a.vocab_size;
  k.order = scratch.at<int32_t>(at_order);
  k.start = scratch.at<int32_t>(at_start);
  k.target = a.term_target;
  k.old_logprob = a.term_old_logprob;
  k.advantage = a.term_advantage;
  k.logprobs_out = a.logprobs_out;
  k.fix = scratch.at<float>(at_fix);
  k.params = p;
  k.check_all_rows = stats != nullptr;
  k.partials = scratch.at<Totals>(at_partials);
  k.bad_at = &readback->bad_at;
  FORGE_CUDA_RETURN_IF(csr_by_key(a.term_node, a.term_target, static_cast<int32_t>(a.vocab_size), terms, rows,
                                  scratch.at<int32_t>(at_order), scratch.at<int32_t>(at_start), s));
  FORGE_LAUNCH(blocks, kRowThreads, 0, s, cispo_rows_kernel<T>)(k);
  FORGE_CUDA_CHECK_LAUNCH("forge_cuda_cispo_loss: rows");
  if (!stats) return FORGE_OK;

  FORGE_LAUNCH(1, 32, 0, s, cispo_totals_kernel)(k.partials, blocks, &readback->totals);
  FORGE_CUDA_CHECK_LAUNCH("forge_cuda_cispo_loss: totals");
  Readback host{};
  FORGE_CUDA_TRY(cudaMemcpyAsync(&host, readback, sizeof host, cudaMemcpyDeviceToHost, s), kFn);
  FORGE_CUDA_TRY(cudaStreamSynchronize(s), kFn);
  if (host.bad_at != kNone)
    return non_finite_error(static_cast<const T*>(a.logits), static_cast<int64_t>(host.bad_at >> 32),
                            static_cast<int64_t>(host.bad_at & 0xffffffffull), a.vocab_size, a.dlogits == a.logits, s);
  loss::write_stats(host.totals, p.inv_z, stats);
  return FORGE_OK;
}

forge_status cispo_loss(const Args& a, forge_cispo_stats* stats, void* stream) {
  PolicyParams p{};
  FORGE_CUDA_RETURN_IF(validate(a, p));
  FORGE_CUDA_RETURN_IF(require_device(kFn));
  FORGE_CUDA_RETURN_IF(check_pointers(a));
  const cudaStream_t s = as_stream(stream);
  if (a.num_rows == 0) {  // no row, so no term can be valid: every logprob reads NaN, as for a skipped term
    if (a.logprobs_out && a.num_terms > 0) {
      FORGE_LAUNCH(grid_for(a.num_terms), kThreads, 0, s, fill_nan_kernel)(a.logprobs_out, a.num_terms);
      FORGE_CUDA_CHECK_LAUNCH("forge_cuda_cispo_loss: fill_nan");
    }
    if (stats) {  // with stats the call waits for the stream, whatever the rows
      FORGE_CUDA_TRY(cudaStreamSynchronize(s), kFn);
      loss::write_stats(Totals{}, p.inv_z, stats);
    }
    return FORGE_OK;
  }
  if (a.dtype == FORGE_DTYPE_BF16) return run<__nv_bfloat16>(a, p, stats, s);
  return run<float>(a, p, stats, s);
}

}  // namespace
}  // namespace cispo
}  // namespace cuda
}  // namespace forge

extern "C" FORGE_API forge_status forge_cuda_cispo_loss(forge_dtype dtype, int64_t num_rows, int64_t vocab_size,
                                                        const void* logits, int64_t num_terms, const int32_t* term_node,
                                                        const int32_t* term_target, const float* term_old_logprob,
                                                        const float* term_advantage, const forge_cispo_options* options,
                                                        void* dlogits, float* logprobs_out, forge_cispo_stats* stats,
                                                        void* stream) {
  return forge::guarded("forge_cuda_cispo_loss", [&] {
    const forge::cuda::cispo::Args a{dtype,          num_rows,         vocab_size,     logits,  num_terms,
                                     term_node,      term_target,      term_old_logprob, term_advantage,
                                     options,        dlogits,          logprobs_out};
    return forge::cuda::cispo::cispo_loss(a, stats, stream);
  });
}
