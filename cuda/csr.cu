// csr_by_key (common/csr.cuh): items grouped by key with CUB's stable radix sort, bucket starts by a
// binary search per bucket. The one place the sort is instantiated (it is the slowest code to compile).
#include <cub/device/device_radix_sort.cuh>

#include "common/check.cuh"
#include "common/csr.cuh"
#include "common/launch.cuh"
#include "common/scratch.cuh"

namespace forge {
namespace cuda {
namespace {

// Out-of-range keys become `limit`, which sorts after every valid key.
__global__ void prepare_keys(const int32_t* keys, int32_t count, uint32_t limit, uint32_t* sanitized,
                             int32_t* iota) {
  for (int64_t i = global_thread(); i < count; i += grid_stride()) {
    const int32_t k = keys[i];
    sanitized[i] = (k >= 0 && static_cast<uint32_t>(k) < limit) ? static_cast<uint32_t>(k) : limit;
    if (iota) iota[i] = static_cast<int32_t>(i);
  }
}

// keys_by_item[i] = primary[items[i]]: the primary keys in the order of the secondary sort.
__global__ void permute_keys(const uint32_t* primary, const int32_t* items, int32_t count, uint32_t* out) {
  for (int64_t i = global_thread(); i < count; i += grid_stride()) out[i] = primary[items[i]];
}

// start[b] = first index of sorted[] holding a key >= b, for b in [0, num_buckets].
__global__ void bucket_starts(const uint32_t* sorted, int32_t count, int32_t num_buckets, int32_t* start) {
  for (int64_t b = global_thread(); b <= num_buckets; b += grid_stride()) {
    int32_t lo = 0, hi = count;
    while (lo < hi) {
      const int32_t mid = lo + (hi - lo) / 2;
      if (sorted[mid] < static_cast<uint32_t>(b)) lo = mid + 1;
      else hi = mid;
    }
    start[b] = lo;
  }
}

// Bits needed for values in [0, limit] (the sentinel included).
int bits_for(uint32_t limit) {
  int bits = 1;
  while (bits < 32 && (limit >> bits) != 0) ++bits;
  return bits;
}

forge_status sort_pairs(void* temp, size_t& temp_bytes, const uint32_t* keys_in, uint32_t* keys_out,
                        const int32_t* values_in, int32_t* values_out, int32_t count, int bits, cudaStream_t stream) {
  return check(cub::DeviceRadixSort::SortPairs(temp, temp_bytes, keys_in, keys_out, values_in, values_out, count, 0,
                                               bits, stream),
               "csr_by_key: radix sort");
}

}  // namespace

forge_status csr_by_key(const int32_t* keys, const int32_t* secondary, int32_t secondary_range, int32_t count,
                        int32_t num_buckets, int32_t* order, int32_t* start, cudaStream_t stream) {
  if (count < 0 || num_buckets < 0 || num_buckets == INT32_MAX || (secondary && secondary_range < 0))
    return fail(FORGE_ERR_INTERNAL, "csr_by_key: bad sizes");
  if (count == 0) {
    FORGE_CUDA_TRY(cudaMemsetAsync(start, 0, (static_cast<size_t>(num_buckets) + 1) * sizeof(int32_t), stream),
                   "csr_by_key: memset");
    return FORGE_OK;
  }
  const uint32_t bucket_limit = static_cast<uint32_t>(num_buckets);
  const int bucket_bits = bits_for(bucket_limit);
  const uint32_t secondary_limit = static_cast<uint32_t>(secondary_range);
  const int secondary_bits = secondary ? bits_for(secondary_limit) : 0;

  // Temp sizes of the sorts (a host-side query).
  size_t temp_bytes = 0, secondary_temp = 0;
  FORGE_CUDA_RETURN_IF(sort_pairs(nullptr, temp_bytes, nullptr, nullptr, nullptr, nullptr, count, bucket_bits, stream));
  if (secondary)
    FORGE_CUDA_RETURN_IF(
        sort_pairs(nullptr, secondary_temp, nullptr, nullptr, nullptr, nullptr, count, secondary_bits, stream));
  if (secondary_temp > temp_bytes) temp_bytes = secondary_temp;

  StreamScratch scratch(stream);
  const size_t at_keys = scratch.reserve<uint32_t>(count), at_sorted = scratch.reserve<uint32_t>(count);
  const size_t at_iota = scratch.reserve<int32_t>(count), at_items = scratch.reserve<int32_t>(count);
  const size_t at_temp = scratch.reserve<char>(static_cast<int64_t>(temp_bytes));
  FORGE_CUDA_RETURN_IF(scratch.allocate("csr_by_key: scratch"));
  uint32_t* keys_clean = scratch.at<uint32_t>(at_keys);
  uint32_t* keys_sorted = scratch.at<uint32_t>(at_sorted);
  int32_t* iota = scratch.at<int32_t>(at_iota);
  int32_t* items = scratch.at<int32_t>(at_items);
  void* temp = scratch.at<char>(at_temp);

  const unsigned grid = grid_for(count);
  FORGE_LAUNCH(grid, kThreads, 0, stream, prepare_keys)(keys, count, bucket_limit, keys_clean, iota);
  FORGE_CUDA_CHECK_LAUNCH("csr_by_key: prepare_keys");
  if (secondary) {
    // Stable sort by the secondary key, then a stable sort of that item order by the bucket key: items
    // end up by (bucket, secondary, item index). Buffer use: the secondary keys go in keys_sorted; the
    // first sort's sorted keys are not needed and land in `order` (same size, overwritten by the
    // second sort); keys_sorted then takes the bucket keys in secondary order, whose sorted copy
    // lands in keys_clean.
    FORGE_LAUNCH(grid, kThreads, 0, stream, prepare_keys)(secondary, count, secondary_limit, keys_sorted, nullptr);
    FORGE_CUDA_CHECK_LAUNCH("csr_by_key: prepare_keys (secondary)");
    FORGE_CUDA_RETURN_IF(sort_pairs(temp, temp_bytes, keys_sorted, reinterpret_cast<uint32_t*>(order), iota, items,
                                    count, secondary_bits, stream));
    FORGE_LAUNCH(grid, kThreads, 0, stream, permute_keys)(keys_clean, items, count, keys_sorted);
    FORGE_CUDA_CHECK_LAUNCH("csr_by_key: permute_keys");
    FORGE_CUDA_RETURN_IF(sort_pairs(temp, temp_bytes, keys_sorted, keys_clean, items, order, count, bucket_bits, stream));
    keys_sorted = keys_clean;
  } else {
    FORGE_CUDA_RETURN_IF(
        sort_pairs(temp, temp_bytes, keys_clean, keys_sorted, iota, order, count, bucket_bits, stream));
  }
  FORGE_LAUNCH(grid_for(static_cast<int64_t>(num_buckets) + 1), kThreads, 0, stream, bucket_starts)(keys_sorted, count,
                                                                                          num_buckets, start);
  FORGE_CUDA_CHECK_LAUNCH("csr_by_key: bucket_starts");
  return FORGE_OK;
}

}  // namespace cuda
}  // namespace forge
