// The scheduler side of the pool: windowed FIFO over the task queue (contract 4), the lag bound,
// rewards and group advantages (contract 5).
export * from './types.js';
export { WindowedFifoScheduler, SchedulerError } from './windowedFifo.js';
export { StalenessPolicy, type StalenessVerdict } from './staleness.js';
export * from './rewards.js';
