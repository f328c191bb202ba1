// The demo run's event log: what the embedded RL loop records, one JSON object per line (runLog.ts
// writes and reads it), and everything the report, the summary table and the plots are computed
// from. A run writes `run` first, then phases with their `warmstep`, `task`, `step` and `eval`
// events, then `end`; a killed run simply stops, and the report works from what is there.
//
// Every event carries `type` and `time` (ms since the Unix epoch, stamped by the writer when absent).
// JSON has no NaN or Infinity: the writer stores a non-finite number as null, and the report treats a
// null (or absent) number as missing. Rates are fractions in [0, 1]; rewards are in reward units.

/** The phases of a demo run, in the order they run. */
export type PhaseName = 'warm-start' | 'eval-initial' | 'rl' | 'eval-final';
export const PHASES: readonly PhaseName[] = Object.freeze(['warm-start', 'eval-initial', 'rl', 'eval-final']);

/** The log's format version (`run.logVersion`); bumped when a field changes meaning. */
export const RUN_LOG_VERSION = 1;

interface Stamped {
  /** Milliseconds since the Unix epoch when the event was written. */
  time: number;
}

/** The machine a run ran on (machineInfo() in runLog.ts fills it from node:os). */
export interface MachineInfo {
  /** Logical CPUs. */
  cpus: number;
  /** CPU model name, e.g. "AMD EPYC 7B13". */
  cpuModel: string;
  /** Total memory in GiB. */
  memoryGiB: number;
  /** process.platform / process.arch, e.g. "linux" / "x64". */
  platform: string;
  arch: string;
  /** process.version, e.g. "v20.19.0". */
  node: string;
  /** Kernel threads (nativeInfo().threads) and compute backend ("cpu" or a GPU name), when known. */
  threads?: number;
  backend?: string;
}

/** The run starts: everything needed to reproduce it and to read its numbers. */
export interface RunStartEvent extends Stamped {
  type: 'run';
  /** RUN_LOG_VERSION of the writer. */
  logVersion: number;
  seed: number;
  /** The demo's options as resolved (flat or nested JSON); the report shows them as a table. */
  options: Record<string, unknown>;
  model: {
    /** The nano policy config (dim, numLayers, numHeads, numKvHeads, headDim, ffnDim, vocabSize, ...). */
    config: Record<string, unknown>;
    /** Trainable parameters. */
    params: number;
  };
  /** Scaffold names in display order (e.g. react-calculator, kv-lookup, context-truncating, sdk-agent). */
  scaffolds: string[];
  scheduler: {
    mode: 'fifo' | 'windowed' | 'greedy';
    /** W in tasks (absent for greedy). */
    window?: number;
    /** Queue capacity N in tasks. */
    capacity?: number;
    /** Rollouts per task (group size G). */
    groupSize?: number;
    /** Groups per training batch. */
    batchGroups?: number;
    /** Staleness bound in policy versions. */
    maxLag?: number;
  };
  machine: MachineInfo;
  /** ISO 8601 start time (the same instant as `time`, readable). */
  startedAt: string;
}

/** A phase starts or ends (a phase that never ended was cut off). */
export interface PhaseEvent extends Stamped {
  type: 'phase';
  name: PhaseName;
  status: 'started' | 'ended';
}

/** One supervised warm-start step. */
export interface WarmStepEvent extends Stamped {
  type: 'warmstep';
  /** 1-based step. */
  step: number;
  /** Cross-entropy loss (nats per trainable token). */
  loss: number;
  /** Teacher-forced copy accuracy, on the steps where it was checked. */
  accuracy?: number;
}

/** One agent run (a session) finished and was scored. */
export interface TaskEvent extends Stamped {
  type: 'task';
  /** The phase it ran in ('rl' for training rollouts, 'eval-*' for evaluations). */
  phase: PhaseName;
  scaffold: string;
  taskId: string;
  /** Task family, e.g. "calc" or "kv". */
  family: string;
  /** 1 when the verifier accepted the answer, else 0. */
  success: 0 | 1;
  /** r_perf, r_process, r_speed and the composite r = r_perf + alpha r_process + beta r_speed. */
  outcomeReward: number;
  processReward: number;
  speedReward: number;
  totalReward: number;
  /** Wall-clock seconds of the session. */
  seconds: number;
  /** Tool calls executed, model calls made, forks in the session's call tree. */
  toolCalls: number;
  turns: number;
  forks: number;
  /** The distinct policy versions that produced its tokens, ascending. */
  versions: number[];
}

/** Per-scaffold numbers of one RL step, over the groups in its batch of that scaffold. */
export interface StepScaffoldStats {
  /** Mean total reward of the batch's sessions. */
  reward: number;
  /** Fraction of the batch's sessions that succeeded. */
  success: number;
  groups: number;
}

/** One RL trainer step (one optimizer update; the policy version moves to `version`). */
export interface StepEvent extends Stamped {
  type: 'step';
  /** 1-based RL step. */
  step: number;
  /** Policy version after the step. */
  version: number;
  loss: number;
  /** Mean total reward and success rate over every session in the batch. */
  rewardMean: number;
  successRate: number;
  /** The same per scaffold (scaffolds absent from the batch are absent). */
  byScaffold: Record<string, StepScaffoldStats>;
  /** CISPO stats: mean importance ratio, fractions clipped above / below, mean entropy (nats). */
  ratioMean: number;
  clipFracHigh: number;
  clipFracLow: number;
  entropy: number;
  /** Global gradient L2 norm before clipping. */
  gradNorm: number;
  /** Tokens of the samples, and nodes of their prefix tree(s). */
  inputTokens: number;
  treeTokens: number;
  /** inputTokens / treeTokens: how many times fewer tokens the tree computes (>= 1). */
  reduction: number;
  /** inputTokens per second of step time. */
  tokensPerSecond: number;
  /** Wall time of the trainer step in milliseconds. */
  stepMs: number;
  /** Off-policy lag of the batch's trajectories in versions (trainer version - rollout version). */
  lagMean: number;
  lagMax: number;
  /** Groups and samples (trainable calls) in the batch. */
  groups: number;
  samples: number;
}

/** One scaffold's evaluation numbers. */
export interface EvalScaffoldStats {
  /** Fraction of evaluation tasks solved. */
  successRate: number;
  /** Mean tool calls and wall seconds per task. */
  meanToolCalls: number;
  meanSeconds: number;
  /** Tasks evaluated. */
  n: number;
}

/** An evaluation on held-out tasks (before and after RL). */
export interface EvalEvent extends Stamped {
  type: 'eval';
  phase: 'eval-initial' | 'eval-final';
  scaffolds: Record<string, EvalScaffoldStats>;
}

/** The run's totals (computeTotals() in analysis.ts; the end event may carry them). */
export interface RunTotals {
  /** RL steps logged. */
  steps: number;
  /** Tokens trained (sum of inputTokens) and tree tokens computed over all RL steps. */
  inputTokens: number;
  treeTokens: number;
  /** Mean of the per-step reductions. */
  meanReduction: number;
  /** Sample-weighted mean of the per-step mean lags, and the largest lag. */
  meanLag: number;
  maxLag: number;
  /** Task events logged (all phases). */
  tasks: number;
  /** Seconds from the run event to the end event (or to the last event of a cut-off run). */
  wallSeconds: number;
}

/** The run ends. */
export interface EndEvent extends Stamped {
  type: 'end';
  status: 'completed' | 'interrupted' | 'failed';
  /** What went wrong, for 'failed'. */
  error?: string;
  /** Seconds since the run event. */
  wallSeconds: number;
  /** The totals at the end (optional: the report recomputes them from the events). */
  totals?: RunTotals;
  /** Where the final checkpoint was saved, if any. */
  checkpoint?: string;
}

export type RunEvent = RunStartEvent | PhaseEvent | WarmStepEvent | TaskEvent | StepEvent | EvalEvent | EndEvent;
export type RunEventType = RunEvent['type'];
export const RUN_EVENT_TYPES: readonly RunEventType[] = Object.freeze(['run', 'phase', 'warmstep', 'task', 'step', 'eval', 'end']);

/** An event as handed to the writer: `time` may be left out (the writer stamps it). */
type Unstamped<E> = E extends RunEvent ? Omit<E, 'time'> & { time?: number } : never;
export type RunEventInput = Unstamped<RunEvent>;
