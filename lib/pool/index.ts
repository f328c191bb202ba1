// The data pool: durable trajectories (sessions and their call trees), rewards and policy versions.
// PoolStore (types.ts) is the seam: SqliteStore is the embedded durable default, MemoryStore serves
// tests and runs that need no disk, and a distributed backend would implement the same interface.
export * from './types.js';
export { PoolError, PoolErrorCode, poolErrorStatus, isPoolError } from './errors.js';
export { MemoryStore, type MemoryStoreOptions } from './memoryStore.js';
export { SqliteStore, type SqliteStoreOptions } from './sqliteStore.js';
export { isPrunedCall, PRUNED_REASON } from './retention.js';
export {
  type CallJson,
  type ExportedTrajectory,
  type ExportSummary,
  type RescoreOptions,
  type RescoreResult,
  type RewardFunction,
  type Score,
  type TrajectoryJson,
  callFromJson,
  callToJson,
  exportJsonl,
  importTrajectories,
  readJsonl,
  rescore,
  trajectoryFromJson,
} from './export.js';
