// The nano policy's trainer: one object holding the weights, the AdamW state and the policy version,
// whose step merges a batch of samples into a prefix tree (contract 1), runs the model's forward,
// loss (CISPO, PPO-clip or cross-entropy: contract 3) and backward off the event loop, and applies
// AdamW with global-norm clipping. Checkpoints are safetensors files holding weights, optimizer
// moments, the version and the model config, so a run resumes exactly where it stopped.
import { typeError } from '../errors.js';
import { buildPrefixTreeAsync, type PackedSamples, type PrefixTree, type Sample } from '../prefixTree.js';
import { expectInt } from '../validate.js';
import type { CispoStats } from '../cispo.js';
import { loadTrainingState, saveTrainingState } from './checkpoint.js';
import { AdamW, paramGroups, type AdamWOptions } from './optimizer.js';
import { NanoPolicy, type NanoPolicyConfig, type PolicyLossOptions } from './policy.js';

export interface TrainerOptions {
  /** Model configuration; defaults to defaultConfig(). */
  config?: Partial<NanoPolicyConfig>;
  /** Seed of the initial weights (ignored when `params` is given); default 0. */
  seed?: number;
  /** Start from these weights (copied) instead of a fresh init. */
  params?: Float32Array;
  /** AdamW settings; defaults lr 1e-3, betas (0.9, 0.95), weight decay 0.1 on matrices, maxGradNorm 1. */
  optimizer?: AdamWOptions;
  /** Default loss of step(); a step may override it. Default CISPO with its defaults. */
  loss?: PolicyLossOptions;
  /** Policy version of the initial weights; each step adds one. Default 0. */
  version?: number;
}

export interface TrainStepResult {
  /** Policy version after this step (the version the new weights carry). */
  version: number;
  loss: number;
  /** Global gradient L2 norm before clipping. */
  gradNorm: number;
  clipped: boolean;
  lr: number;
  stats: CispoStats;
  /** Tokens in the samples, and nodes actually computed after prefix merging. */
  inputTokens: number;
  treeTokens: number;
  /** Wall time of the step (tree build, forward/backward, optimizer), in milliseconds. */
  ms: number;
}

const CHECKPOINT_KIND = 'forge-rl/nano-policy-trainer';

export class PolicyTrainer {
  readonly policy: NanoPolicy;
  readonly optimizer: AdamW;
  /** The current weights; updated in place by every step. */
  readonly params: Float32Array;
  readonly loss: Readonly<PolicyLossOptions>;
  #version: number;
  #busy = false;

  /** `optimizer`: an existing AdamW over this config's parameters (a resumed run) instead of a fresh one. */
  constructor(options: TrainerOptions = {}, optimizer?: AdamW) {
    if (typeof options !== 'object' || options === null) throw typeError('options: expected an object');
    this.policy = new NanoPolicy(options.config);
    this.params = options.params ? options.params.slice() : this.policy.init(expectInt('options.seed', options.seed ?? 0, 0));
    if (this.params.length !== this.policy.numParams)
      throw typeError(`options.params: expected ${this.policy.numParams} parameters for this config, got ${this.params.length}`);
    if (optimizer && optimizer.numParams !== this.policy.numParams)
      throw typeError(`optimizer: covers ${optimizer.numParams} parameters, this config has ${this.policy.numParams}`);
    this.optimizer =
      optimizer ??
      new AdamW(paramGroups(this.policy.paramInfo()), { maxGradNorm: 1, ...options.optimizer, numParams: this.policy.numParams });
    this.loss = { ...options.loss };
    this.#version = expectInt('options.version', options.version ?? 0, 0);
  }

  /** Policy version of the current weights. */
  get version(): number {
    return this.#version;
  }

  /**
   * One optimizer step on a batch: samples (merged here) or an already built prefix tree. Runs off the
   * event loop; one step at a time (a second concurrent call is refused).
   */
  async step(batch: Sample[] | PackedSamples | PrefixTree, loss?: PolicyLossOptions): Promise<TrainStepResult> {
    if (this.#busy) throw typeError('step: the previous step has not finished');
    this.#busy = true;
    try {
      const t0 = performance.now();
      const tree = isPrefixTree(batch)
        ? batch
        : await buildPrefixTreeAsync(batch, { vocabSize: this.policy.config.vocabSize });
      const result = await this.policy.lossAndGradAsync(this.params, tree, { ...this.loss, ...loss });
      const update = await this.optimizer.stepAsync(this.params, result.grads);
      this.#version += 1;
      return {
        version: this.#version,
        loss: result.loss,
        gradNorm: update.gradNorm,
        clipped: update.clipped,
        lr: update.lr,
        stats: result.stats,
        inputTokens: tree.stats.inputTokens,
        treeTokens: tree.stats.treeTokens,
        ms: performance.now() - t0,
      };
    } finally {
      this.#busy = false;
    }
  }

  /** Writes weights, optimizer state, version, model config and loss defaults atomically to `path`. */
  async save(path: string): Promise<void> {
    await saveTrainingState(path, {
      params: this.params,
      paramInfo: this.policy.paramInfo(),
      optimizer: this.optimizer,
      step: this.#version,
      config: { kind: CHECKPOINT_KIND, model: this.policy.config, loss: this.loss },
    });
  }

  /** A trainer that continues the run saved at `path`: the next step equals the one it would have taken. */
  static async load(path: string): Promise<PolicyTrainer> {
    const state = await loadTrainingState(path);
    const config = state.config as { kind?: string; model?: NanoPolicyConfig; loss?: PolicyLossOptions } | null;
    if (!config || config.kind !== CHECKPOINT_KIND || !config.model)
      throw typeError(`${path}: not a nano policy trainer checkpoint (its config is ${JSON.stringify(config)})`);
    return new PolicyTrainer(
      { config: config.model, params: state.params, loss: config.loss, version: state.step },
      state.optimizer,
    );
  }
}

function isPrefixTree(batch: unknown): batch is PrefixTree {
  return typeof batch === 'object' && batch !== null && 'subtreeEnd' in batch && 'terms' in batch && 'stats' in batch;
}
