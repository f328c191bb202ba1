// forge-rl's public TypeScript API.
export { nativeInfo, setNumThreads, type NativeInfo } from './native.js';
export { KernelErrorCode, type CodedError } from './errors.js';
export * from './prefixTree.js';
export * from './attention.js';
export * from './cispo.js';
