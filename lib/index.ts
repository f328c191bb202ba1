export { nativeInfo, setNumThreads } from './native.js';
