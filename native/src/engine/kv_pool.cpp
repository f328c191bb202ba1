// forge_kv_pool_create / _free / _info: the pool's storage and its description.
#include "engine/kv_pool.hpp"

#include <memory>
#include <string>

#include "common/error.hpp"
#include "model/config.hpp"

extern "C" {

FORGE_API forge_status forge_kv_pool_create(const forge_model_config* config, int64_t capacity, forge_kv_pool** out) {
  return forge::guarded("forge_kv_pool_create", [&] {
    forge::model::Dims d;
    if (forge_status s = forge::model::check_config(config, d); s != FORGE_OK) return s;
    if (!out) return forge::fail(FORGE_ERR_INVALID_ARGUMENT, "out: null pointer");
    *out = nullptr;
    if (capacity < 1 || capacity > INT32_MAX)
      return forge::fail(FORGE_ERR_INVALID_ARGUMENT,
                         "capacity: expected an integer in [1, 2^31), got " + std::to_string(capacity));
    // Refuse sizes no host can hold before asking the allocator (which may overcommit and then kill us).
    const double bytes = 2.0 * static_cast<double>(capacity) * d.layers * d.kv_dim() * sizeof(float);
    if (bytes > 0x1p46)
      return forge::fail(FORGE_ERR_OUT_OF_MEMORY, "capacity: " + std::to_string(capacity) + " slots need " +
                                                      std::to_string(bytes) + " bytes");
    auto pool = std::make_unique<forge_kv_pool>();
    pool->capacity = capacity;
    pool->num_layers = static_cast<int32_t>(d.layers);
    pool->num_kv_heads = static_cast<int32_t>(d.kv_heads);
    pool->head_dim = static_cast<int32_t>(d.head_dim);
    const size_t floats = static_cast<size_t>(capacity * d.kv_dim());
    pool->k.resize(static_cast<size_t>(d.layers));
    pool->v.resize(static_cast<size_t>(d.layers));
    for (int64_t l = 0; l < d.layers; ++l) {
      pool->k[static_cast<size_t>(l)].assign(floats, 0.0f);
      pool->v[static_cast<size_t>(l)].assign(floats, 0.0f);
    }
    *out = pool.release();
    return FORGE_OK;
  });
}

FORGE_API void forge_kv_pool_free(forge_kv_pool* pool) { delete pool; }

FORGE_API forge_status forge_kv_pool_info(const forge_kv_pool* pool, forge_kv_pool_layout* info) {
  return forge::guarded("forge_kv_pool_info", [&] {
    if (!pool) return forge::fail(FORGE_ERR_INVALID_ARGUMENT, "pool: null pointer");
    if (!info) return forge::fail(FORGE_ERR_INVALID_ARGUMENT, "info: null pointer");
    info->capacity = pool->capacity;
    info->num_layers = pool->num_layers;
    info->num_kv_heads = pool->num_kv_heads;
    info->head_dim = pool->head_dim;
    info->bytes = 2 * pool->capacity * pool->num_layers * pool->row_floats() * static_cast<int64_t>(sizeof(float));
    return FORGE_OK;
  });
}

}
