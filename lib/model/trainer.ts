// The nano policy's trainer: one object holding the weights, the AdamW state and the policy version,
// whose step merges a batch of samples into a prefix tree (contract 1), runs the model's forward,
// loss (CISPO, PPO-clip or cross-entropy: contract 3) and backward off the event loop, and applies
// AdamW with global-norm clipping. A batch split into several trees (parts under a token budget, from
// the batch builder) is accumulated: each part's forward/backward with the batch's one normaliser,
// gradients summed, then one optimizer step. Checkpoints are safetensors files holding weights,
// optimizer moments, the version and the model config, so a run resumes exactly where it stopped.
import { rangeError, typeError } from '../errors.js';
import { buildPrefixTreeAsync, type PackedSamples, type PrefixTree, type Sample } from '../prefixTree.js';
import { expectInt } from '../validate.js';
import type { CispoStats } from '../cispo.js';
import { loadTrainingState, saveTrainingState } from './checkpoint.js';
import { AdamW, paramGroups, type AdamWOptions } from './optimizer.js';
import { NanoPolicy, type LossAndGrad, type NanoPolicyConfig, type PolicyLossOptions } from './policy.js';

/** A batch split into prefix trees that share one loss normaliser (the batch builder's TrainingBatch
 * satisfies it). Without `normalizer`, Z is the total number of terms over the parts. */
export interface TreePartsBatch {
  parts: PrefixTree[];
  normalizer?: number;
}

/** Anything step() trains on: samples (merged here), one prefix tree, or parts accumulated. */
export type TrainBatch = Sample[] | PackedSamples | PrefixTree | TreePartsBatch;

/** Loss and gradient of a whole batch, summed over its parts. */
export interface BatchLossAndGrad extends LossAndGrad {
  /** Trees forwarded (1 unless the batch was split). */
  parts: number;
  /** The normaliser every part's loss divided by. */
  normalizer: number;
  inputTokens: number;
  treeTokens: number;
}

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
  /** Tokens in the samples, and nodes actually computed after prefix merging (summed over parts). */
  inputTokens: number;
  treeTokens: number;
  /** Trees forwarded and backpropagated for this step (1 unless the batch came split). */
  parts: number;
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
   * One optimizer step on a batch: samples (merged here), an already built prefix tree, or a batch
   * split into parts ({ parts, normalizer }: gradients accumulated over the parts, one AdamW step).
   * Runs off the event loop; one step at a time (a second concurrent call is refused).
   */
  async step(batch: TrainBatch, loss?: PolicyLossOptions): Promise<TrainStepResult> {
    if (this.#busy) throw typeError('step: the previous step has not finished');
    this.#busy = true;
    try {
      const t0 = performance.now();
      const result = await this.#lossAndGrad(batch, loss);
      const update = await this.optimizer.stepAsync(this.params, result.grads);
      this.#version += 1;
      return {
        version: this.#version,
        loss: result.loss,
        gradNorm: update.gradNorm,
        clipped: update.clipped,
        lr: update.lr,
        stats: result.stats,
        inputTokens: result.inputTokens,
        treeTokens: result.treeTokens,
        parts: result.parts,
        ms: performance.now() - t0,
      };
    } finally {
      this.#busy = false;
    }
  }

  /**
   * Loss and gradient of a batch under the current weights, without updating them: what step()
   * applies. For parts, every part's loss divides by one Z (the step's `loss.normalizer`, else the
   * trainer's default, else the batch's `normalizer`, else the total terms over the parts), so the
   * summed loss and gradient equal those of the unsplit batch.
   */
  async lossAndGrad(batch: TrainBatch, loss?: PolicyLossOptions): Promise<BatchLossAndGrad> {
    // Exclusive like step(): a step updates the weights in place while this would read them.
    if (this.#busy) throw typeError('lossAndGrad: a step (or another lossAndGrad) has not finished');
    this.#busy = true;
    try {
      return await this.#lossAndGrad(batch, loss);
    } finally {
      this.#busy = false;
    }
  }

  async #lossAndGrad(batch: TrainBatch, loss: PolicyLossOptions | undefined): Promise<BatchLossAndGrad> {
    const options = { ...this.loss, ...loss };
    if (isTreeParts(batch)) return this.#accumulate(batch, options);
    const tree = isPrefixTree(batch) ? batch : await buildPrefixTreeAsync(batch, { vocabSize: this.policy.config.vocabSize });
    const result = await this.policy.lossAndGradAsync(this.params, tree, options);
    return {
      ...result,
      parts: 1,
      normalizer: options.normalizer ?? tree.numTerms,
      inputTokens: tree.stats.inputTokens,
      treeTokens: tree.stats.treeTokens,
    };
  }

  async #accumulate(batch: TreePartsBatch, options: PolicyLossOptions): Promise<BatchLossAndGrad> {
    const parts = batch.parts;
    if (parts.length === 0) throw rangeError('batch.parts: expected at least one PrefixTree, got none (an empty batch has nothing to train on)');
    parts.forEach((p, k) => {
      if (!isPrefixTree(p)) throw typeError(`batch.parts[${k}]: expected a PrefixTree`);
    });
    const z = batch.normalizer;
    if (z !== undefined && !(typeof z === 'number' && Number.isFinite(z) && z > 0))
      throw rangeError(`batch.normalizer: expected a finite number > 0, got ${String(z)}`);
    const totalTerms = parts.reduce((a, p) => a + p.numTerms, 0);
    const normalizer = options.normalizer ?? batch.normalizer ?? Math.max(1, totalTerms);
    let lossSum = 0, inputTokens = 0, treeTokens = 0;
    let grads: Float32Array | undefined;
    const results: { stats: CispoStats; positive: number; negative: number }[] = [];
    const logprobs: Float32Array[] = [];
    // One part at a time: peak memory is one part's activations plus the gradient sum.
    for (const part of parts) {
      const r = await this.policy.lossAndGradAsync(this.params, part, { ...options, normalizer });
      lossSum += r.loss;
      if (grads) for (let i = 0; i < grads.length; i++) grads[i] += r.grads[i];
      else grads = r.grads;
      let positive = 0, negative = 0;
      for (const a of part.terms.advantage) {
        if (a > 0) positive++;
        else if (a < 0) negative++;
      }
      results.push({ stats: r.stats, positive, negative });
      logprobs.push(r.logprobs);
      inputTokens += part.stats.inputTokens;
      treeTokens += part.stats.treeTokens;
    }
    const all = new Float32Array(logprobs.reduce((a, l) => a + l.length, 0));
    logprobs.reduce((at, l) => (all.set(l, at), at + l.length), 0);
    return { loss: lossSum, grads: grads!, logprobs: all, stats: combineStats(results), parts: parts.length, normalizer, inputTokens, treeTokens };
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

/** Per-part statistics -> the batch's: means weighted by the terms (or rows, or signed-advantage
 * terms) each part's mean was over. */
function combineStats(parts: { stats: CispoStats; positive: number; negative: number }[]): CispoStats {
  const sum = (f: (p: (typeof parts)[number]) => number) => parts.reduce((a, p) => a + f(p), 0);
  const terms = sum((p) => p.stats.numTerms), rows = sum((p) => p.stats.numRows);
  const positive = sum((p) => p.positive), negative = sum((p) => p.negative);
  const mean = (total: number, f: (p: (typeof parts)[number]) => number) => (total > 0 ? sum(f) / total : 0);
  return {
    meanRatio: mean(terms, (p) => p.stats.meanRatio * p.stats.numTerms),
    clipFracHigh: mean(terms, (p) => p.stats.clipFracHigh * p.stats.numTerms),
    clipFracLow: mean(terms, (p) => p.stats.clipFracLow * p.stats.numTerms),
    clipFracPositiveAdv: mean(positive, (p) => p.stats.clipFracPositiveAdv * p.positive),
    clipFracNegativeAdv: mean(negative, (p) => p.stats.clipFracNegativeAdv * p.negative),
    meanEntropy: mean(rows, (p) => p.stats.meanEntropy * p.stats.numRows),
    meanLogprob: mean(terms, (p) => p.stats.meanLogprob * p.stats.numTerms),
    numTerms: terms,
    numRows: rows,
  };
}

function isTreeParts(batch: unknown): batch is TreePartsBatch {
  return typeof batch === 'object' && batch !== null && !Array.isArray(batch) && Array.isArray((batch as TreePartsBatch).parts);
}

function isPrefixTree(batch: unknown): batch is PrefixTree {
  return typeof batch === 'object' && batch !== null && 'subtreeEnd' in batch && 'terms' in batch && 'stats' in batch;
}
