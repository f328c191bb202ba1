// Token embedding lookup and its backward (a scatter-add into the table's gradient).
#pragma once

#include <cstdint>

namespace forge::model {

// out [n, dim] = table[tokens[i]] (tokens already checked to lie in [0, vocab)).
void embedding_forward(int64_t n, int64_t dim, const int32_t* tokens, const float* table, float* out);

// dtable [vocab, dim] += sum over i with tokens[i] = v of d_out[i]. Rows of the table are owned by one
// task each and rows of d_out are added in node order, so the sum is deterministic.
void embedding_backward(int64_t n, int64_t dim, int64_t vocab, const int32_t* tokens, const float* d_out,
                        float* dtable);

}  // namespace forge::model
