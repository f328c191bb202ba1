// The batch builder (scheduler releases -> rewards -> samples -> prefix-tree parts under a token
// budget) and the pool feed (data pool -> scheduler).
export * from './types.js';
export { BatchBuilder, type GroupSamples } from './builder.js';
export { planParts, type PartPlan, type PlanTree } from './partition.js';
export { rewardOf, sessionOutcome, sessionSeconds, trajectorySamples, type TrajectorySamples } from './samples.js';
export { PoolFeed, type FailedSessionPolicy, type FeedSink, type PollResult, type PoolFeedOptions, type PoolFeedStats } from './poolFeed.js';
