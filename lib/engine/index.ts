// The embedded inference engine of the nano policy: KV pool and kernels, prefix cache, sampler, engine.
export * from './kernels.js';
export * from './prefixCache.js';
export * from './sampler.js';
export * from './types.js';
export { NanoEngine, type NanoEngineOptions } from './engine.js';
