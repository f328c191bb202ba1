// Grouping of items by an int32 key on the device (the inverse of a node_of / term_node map):
// order[start[b] .. start[b + 1]) lists the items whose key is b, in item order (a stable radix sort),
// or ordered by a secondary key first when one is given (ties still in item order). Items whose key is
// outside [0, num_buckets) are left out of every bucket (the arrays are trusted, never dereferenced out
// of bounds). Implemented in cuda/csr.cu, the one translation unit that instantiates the CUB sort.
#pragma once

#include <cuda_runtime.h>
#include <forge/forge.h>

#include <cstdint>

namespace forge {
namespace cuda {

// keys [count]; secondary [count] or NULL, values in [0, secondary_range) (others sort last inside
// their bucket); order [count] and start [num_buckets + 1] are device outputs. count and num_buckets
// below 2^31 - 1. Enqueued on `stream` (its scratch is stream-ordered too).
forge_status csr_by_key(const int32_t* keys, const int32_t* secondary, int32_t secondary_range, int32_t count,
                        int32_t num_buckets, int32_t* order, int32_t* start, cudaStream_t stream);

}  // namespace cuda
}  // namespace forge
