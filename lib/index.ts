// forge-rl's public TypeScript API.
export { nativeInfo, setNumThreads, type NativeInfo } from './native.js';
export { KernelErrorCode, type CodedError } from './errors.js';

// Kernels (contracts 1-3).
export * from './prefixTree.js';
export * from './attention.js';
export * from './cispo.js';

// The nano policy: model, tokenizer and chat template, optimizer, checkpoints.
export { NanoPolicy, defaultConfig, type NanoPolicyConfig, type LossAndGrad } from './model/policy.js';
export * as tokenizer from './model/tokenizer.js';
export * as chatTemplate from './model/chatTemplate.js';
export { nanoChatTemplate, type ChatTemplate, type ChatMessage, type ToolDefinition } from './model/chatTemplate.js';
export { AdamW, paramGroups, adamwStep, gradSqNorm } from './model/optimizer.js';
export {
  PolicyTrainer, type TrainerOptions, type TrainStepResult, type TreePartsBatch, type TrainBatch, type BatchLossAndGrad,
} from './model/trainer.js';
export { saveCheckpoint, loadCheckpoint, saveTrainingState, loadTrainingState } from './model/checkpoint.js';
export { CheckpointError, CheckpointErrorCode } from './model/safetensors.js';

// The inference engine: KV slot pool, prefix cache, continuous batching.
export * as engine from './engine/index.js';
export { NanoEngine } from './engine/index.js';

// The gateway (contract 6) and the scheduler with rewards (contracts 4, 5).
export * as gateway from './gateway/index.js';
export { createGateway, EngineUpstream, type Gateway, type GatewayOptions } from './gateway/index.js';
export * as scheduler from './scheduler/index.js';
export { WindowedFifoScheduler, RewardModel } from './scheduler/index.js';

// The data pool: durable trajectories, call trees and rewards (SQLite on disk, or in memory).
export * as pool from './pool/index.js';
export { SqliteStore, MemoryStore, type PoolStore } from './pool/index.js';

// The batch builder: released groups -> samples -> prefix-tree parts under a token budget; the pool feed.
export * as batch from './batch/index.js';
export { BatchBuilder, PoolFeed, type TrainingBatch, type TrajectoryRollout } from './batch/index.js';

// The CUDA backend: device tensors and the GPU kernels (the CPU kernels serve when no GPU is usable),
// and the `backend` option of the host-array kernels above.
export * from './device.js';
export { setDefaultBackend, getDefaultBackend, type Backend, type BackendOption } from './backend.js';
export {
  treeAttentionDevice, treeAttentionBackwardDevice, DEVICE_HEAD_DIMS,
  type DeviceAttentionOptions, type DeviceAttentionOutput, type DeviceAttentionGrads,
} from './attentionDevice.js';

// Reporting: the run's JSONL event log, SVG plots, the HTML report, the terminal summary and progress.
export * as report from './report/index.js';
export { RunLogWriter, renderReport, writeReport, summaryTable, createProgress, svgPlot } from './report/index.js';

// The white-box agent SDK and the embedded RL loop (`npm run demo`).
export { ForgeAgent, AgentSession, AgentSdkError, AgentErrorCode } from './agents/sdk.js';
export { runDemo, type DemoResult, type DemoHooks } from './demo/run.js';
export { defaultOptions as defaultDemoOptions, resolveOptions as resolveDemoOptions, type DemoOptions } from './demo/options.js';
