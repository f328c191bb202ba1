// The supervised warm start: cross-entropy (PolicyTrainer, mode 'cross-entropy') on fresh noisy
// demonstrations of every scaffold, until the policy has learned the skill the demonstrator shows —
// copying the right expression, key or value — and no longer than that. The skill is measured as
// teacher-forced argmax accuracy on held-out clean demonstrations, leaving out the first token of each
// reply: that token is the demonstrator's noisy decision (call, guess, repeat), which the warm start
// should imitate, not fix. How many steps it takes varies from seed to seed (a small transformer
// learns to copy in a sudden transition), so the warm start checks the accuracy as it goes.
import { seededRandom } from '../engine/sampler.js';
import type { NanoPolicyConfig } from '../model/policy.js';
import { PolicyTrainer } from '../model/trainer.js';
import { buildPrefixTree, type PrefixTree, type Sample } from '../prefixTree.js';
import { vocabSize } from '../model/tokenizer.js';
import { expectInt } from '../validate.js';
import { DEFAULT_MIX, demonstrate, demoSamples, type DemonstratorMix } from './demonstrator.js';
import { scaffoldSpec, scaffoldTask, type ScaffoldName } from './scaffolds.js';

export interface WarmStartOptions {
  /** The model (fields override defaultConfig()). */
  config?: Partial<NanoPolicyConfig>;
  scaffolds: readonly ScaffoldName[];
  /** Seeds the initial weights, the demonstrations and the tasks. */
  seed: number;
  /** Peak learning rate of the clean phase (warmup + cosine). Default 5e-3. */
  lr?: number;
  /** Learning rate of the noisy phase. Default 1e-3. */
  noisyLr?: number;
  mix?: DemonstratorMix;
  /** Demonstrations per step. Default 32. */
  batch?: number;
  /** Clean-phase steps at least / at most. Defaults 200 / 3000. */
  minSteps?: number;
  maxSteps?: number;
  /** Check the copy accuracy every this many steps. Default 100. */
  checkEvery?: number;
  /** End the clean phase once every scaffold's copy accuracy reaches this. Default 0.99. */
  targetAccuracy?: number;
  /** Steps on the noisy demonstrator after the clean phase. Default 300. */
  noisySteps?: number;
  /** Called after each step (progress display). */
  onStep?: (step: number, loss: number, phase: 'clean' | 'noisy') => void;
  /** Called after each accuracy check. */
  onCheck?: (step: number, accuracy: number) => void;
  /** End the clean phase early when this says so (a time budget). */
  shouldStop?: () => boolean;
}

export interface WarmStartResult {
  /** The warm-started weights. */
  params: Float32Array;
  /** Their policy version (= steps). */
  version: number;
  steps: number;
  /** Steps of the clean phase, and the weakest scaffold's copy accuracy at its end. */
  cleanSteps: number;
  cleanAccuracy: number;
  /** Copy accuracy after the noisy phase: the weakest scaffold's, and each scaffold's. */
  accuracy: number;
  perScaffold: number[];
  finalLoss: number;
  ms: number;
}

const CLEAN: DemonstratorMix = { good: 1, guess: 0, malformed: 0, wasted: 0, sloppy: 0 };

/** The held-out probe: clean demonstrations per scaffold as one tree, and which terms are a reply's first token. */
export interface CopyProbe {
  tree: PrefixTree;
  /** 1 for terms left out (a reply's first token). */
  skip: Uint8Array;
  /** Scaffold index of each sample. */
  scaffoldOf: Int32Array;
  scaffolds: readonly ScaffoldName[];
}

export function copyProbe(scaffolds: readonly ScaffoldName[], seed: number, perScaffold = 24): CopyProbe {
  const rand = seededRandom(seed + 1);
  const samples: Sample[] = [];
  const owner: number[] = [];
  scaffolds.forEach((name, k) => {
    const spec = scaffoldSpec(name);
    for (let d = 0; d < perScaffold; d++) {
      const task = scaffoldTask(name, 'probe', seed, d);
      for (const s of demoSamples(demonstrate(spec, task, rand, CLEAN))) {
        samples.push(s);
        owner.push(k);
      }
    }
  });
  const tree = buildPrefixTree(samples, { vocabSize });
  const first = samples.map((s) => s.trainable!.indexOf(1));
  const skip = new Uint8Array(tree.numTerms);
  for (let j = 0; j < tree.numTerms; j++) skip[j] = tree.terms.position[j] === first[tree.terms.sample[j]] ? 1 : 0;
  return { tree, skip, scaffoldOf: Int32Array.from(owner), scaffolds };
}

/**
 * Teacher-forced argmax accuracy of the trainer's weights on the probe's terms that are not skipped,
 * per scaffold; `min` is the weakest scaffold's (the warm start waits for every scaffold's skill).
 */
export async function copyAccuracy(trainer: PolicyTrainer, probe: CopyProbe): Promise<{ min: number; perScaffold: number[] }> {
  const { tree, skip } = probe;
  const V = trainer.policy.config.vocabSize;
  const logits = await trainer.policy.forwardAsync(trainer.params, tree.token, tree.position, tree);
  const right = new Float64Array(probe.scaffolds.length), total = new Float64Array(probe.scaffolds.length);
  for (let j = 0; j < tree.numTerms; j++) {
    if (skip[j]) continue;
    const row = tree.terms.node[j] * V;
    let best = 0;
    for (let v = 1; v < V; v++) if (logits[row + v] > logits[row + best]) best = v;
    const k = probe.scaffoldOf[tree.terms.sample[j]];
    total[k]++;
    if (best === tree.terms.target[j]) right[k]++;
  }
  const perScaffold = Array.from(right, (r, k) => (total[k] > 0 ? r / total[k] : 1));
  return { min: Math.min(...perScaffold), perScaffold };
}

/** Cross-entropy steps on fresh demonstrations drawn from `mix`; returns the last loss. */
class DemoStream {
  private index = 0;
  private readonly rand;
  /** Scaffolds in the order the batch slots cycle through (a weak scaffold appears several times). */
  private order: ScaffoldName[];
  constructor(private readonly scaffolds: readonly ScaffoldName[], private readonly seed: number, private readonly batch: number) {
    this.rand = seededRandom(seed);
    this.order = [...scaffolds];
  }
  /** Gives `weights[k]` (a small integer) slots per cycle to scaffold k. */
  weigh(weights: readonly number[]): void {
    this.order = this.scaffolds.flatMap((name, k) => Array<ScaffoldName>(Math.max(1, weights[k])).fill(name));
  }
  async step(trainer: PolicyTrainer, mix: DemonstratorMix): Promise<number> {
    const samples: Sample[] = [];
    for (let d = 0; d < this.batch; d++) {
      const name = this.order[this.index % this.order.length];
      const spec = scaffoldSpec(name);
      const task = scaffoldTask(name, 'warm', this.seed, this.index++);
      samples.push(...demoSamples(demonstrate(spec, task, this.rand, mix)));
    }
    return (await trainer.step(samples, { mode: 'cross-entropy' })).loss;
  }
}

/**
 * Runs the warm start from fresh weights: phase 1 on clean demonstrations until every scaffold's
 * copy accuracy reaches the target (the format and the copying; scaffolds below it get more of the
 * demonstrations), phase 2 on the noisy
 * demonstrator for `noisySteps` at a lower learning rate (its habits: guesses, malformed calls,
 * repeats, sloppy answers). Each phase has its own AdamW; the version counts all steps.
 */
export async function warmStart(options: WarmStartOptions): Promise<WarmStartResult> {
  const t0 = performance.now();
  const batch = expectInt('options.batch', options.batch ?? 32, 1);
  const minSteps = expectInt('options.minSteps', options.minSteps ?? 200, 0);
  const maxSteps = expectInt('options.maxSteps', options.maxSteps ?? 3000, 1);
  const noisySteps = expectInt('options.noisySteps', options.noisySteps ?? 300, 0);
  const checkEvery = expectInt('options.checkEvery', options.checkEvery ?? 100, 1);
  const target = options.targetAccuracy ?? 0.99;
  const stream = new DemoStream(options.scaffolds, options.seed, batch);
  const probe = copyProbe(options.scaffolds, options.seed);
  const clean = new PolicyTrainer({
    config: options.config, seed: options.seed, optimizer: { lr: options.lr ?? 5e-3, schedule: { kind: 'warmup-cosine', warmupSteps: 10, totalSteps: maxSteps } },
  });
  let accuracy = { min: 0, perScaffold: [] as number[] }, loss = NaN;
  while (clean.version < maxSteps) {
    loss = await stream.step(clean, CLEAN);
    options.onStep?.(clean.version, loss, 'clean');
    if (clean.version % checkEvery === 0) {
      accuracy = await copyAccuracy(clean, probe);
      options.onCheck?.(clean.version, accuracy.min);
      if (clean.version >= minSteps && accuracy.min >= target) break;
      // Scaffolds still below the target get more of the demonstrations (calc's five-character
      // expression takes longer to copy than a two-character key).
      stream.weigh(accuracy.perScaffold.map((a) => (a >= target ? 1 : 4)));
    }
    if (options.shouldStop?.()) break;
  }
  const cleanSteps = clean.version;
  const noisy = new PolicyTrainer({ config: options.config, params: clean.params, version: cleanSteps, optimizer: { lr: options.noisyLr ?? 1e-3 } });
  const mix = options.mix ?? DEFAULT_MIX;
  // The noisy phase always runs whole: a time budget cuts the clean phase only.
  for (let k = 0; k < noisySteps; k++) {
    loss = await stream.step(noisy, mix);
    options.onStep?.(noisy.version, loss, 'noisy');
  }
  const final = await copyAccuracy(noisy, probe);
  options.onCheck?.(noisy.version, final.min);
  return {
    params: noisy.params, version: noisy.version, steps: noisy.version, cleanSteps, cleanAccuracy: accuracy.min,
    accuracy: final.min, perScaffold: final.perScaffold, finalLoss: loss, ms: performance.now() - t0,
  };
}
