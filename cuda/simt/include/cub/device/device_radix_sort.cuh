// Stand-in for CUB's device radix sort under the CPU emulator (this folder comes first on the include
// path of the emulator build only). Same contract as cub::DeviceRadixSort::SortPairs: a stable sort of
// (key, value) pairs by key bits [begin_bit, end_bit), the first call with temp == NULL sizing the
// temporary storage. CUB is a library, not our kernel code: what the emulator checks is our use of it.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <numeric>
#include <vector>

namespace cub {

struct DeviceRadixSort {
  template <class Key, class Value, class Count>
  static cudaError_t SortPairs(void* temp, size_t& temp_bytes, const Key* keys_in, Key* keys_out,
                               const Value* values_in, Value* values_out, Count num_items, int begin_bit = 0,
                               int end_bit = static_cast<int>(sizeof(Key) * 8), cudaStream_t stream = 0) {
    (void)stream;
    if (temp == nullptr) {
      temp_bytes = 16;
      return cudaSuccess;
    }
    if (num_items < 0 || begin_bit < 0 || end_bit > static_cast<int>(sizeof(Key) * 8) || begin_bit > end_bit)
      return cudaErrorInvalidValue;
    const int bits = end_bit - begin_bit;
    const uint64_t mask = bits >= 64 ? ~uint64_t{0} : (uint64_t{1} << bits) - 1;
    auto digit = [&](Key k) { return (static_cast<uint64_t>(k) >> begin_bit) & mask; };
    std::vector<size_t> order(static_cast<size_t>(num_items));
    std::iota(order.begin(), order.end(), size_t{0});
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return digit(keys_in[a]) < digit(keys_in[b]); });
    std::vector<Key> keys(order.size());
    std::vector<Value> values(order.size());
    for (size_t i = 0; i < order.size(); ++i) keys[i] = keys_in[order[i]], values[i] = values_in[order[i]];
    std::copy(keys.begin(), keys.end(), keys_out);
    std::copy(values.begin(), values.end(), values_out);
    return cudaSuccess;
  }
};

}  // namespace cub
