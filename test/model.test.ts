// The nano policy (lib/model/policy.ts over forge_model_*) against the plain float64 reference model
// (test/reference/model.ts): logits on random tree batches, every parameter's gradient against
// central finite differences of the reference loss, the merged tree batch against the same samples one
// at a time, a short SFT run on a toy language, and bad input at every layer. Fresh random inputs each
// run; failures print the seed (FORGE_TEST_SEED=<seed> replays).
import { afterEach, describe, expect, it } from 'vitest';

import { NanoPolicy, defaultConfig, type NanoPolicyConfig, type PolicyBatch } from '../lib/model/policy.js';
import { addon, setNumThreads } from '../lib/native.js';
import { buildPrefixTree, type Sample } from '../lib/prefixTree.js';
import { gauss, seededRun } from './helpers/random.js';
import { bushy } from './helpers/trees.js';
import { referenceForward, referenceLayout, referenceLoss } from './reference/model.js';

const { rng: makeRng, fail } = seededRun();

/** The tiny config of the exactness tests: GQA (2 query heads on 1 kv head), untied. */
const TINY: NanoPolicyConfig = {
  vocabSize: 11, dim: 8, numLayers: 2, numHeads: 2, numKvHeads: 1, headDim: 4, ffnDim: 12,
  tiedEmbeddings: false, ropeTheta: 10000, normEps: 1e-5,
};

/** Parameters of a well-conditioned test model: matrices N(0, 0.4^2), norm gains around 1. */
function randomParams(policy: NanoPolicy, rand: () => number): Float32Array {
  const p = new Float32Array(policy.numParams);
  for (const t of policy.paramInfo())
    for (let i = 0; i < t.size; i++) p[t.offset + i] = t.shape.length === 1 ? 1 + 0.3 * gauss(rand) : 0.4 * gauss(rand);
  return p;
}

function depths(parent: Int32Array): Int32Array {
  const d = new Int32Array(parent.length);
  for (let i = 0; i < parent.length; i++) d[i] = parent[i] < 0 ? 0 : d[parent[i]] + 1;
  return d;
}

/** A random forest batch with positions = depth (+ offset) and random tokens. */
function randomBatch(rand: () => number, n: number, vocab: number, positionOffset = 0) {
  const tree = bushy(n, rand, { branch: 0.3, forest: true });
  const token = Int32Array.from({ length: n }, () => Math.floor(rand() * vocab));
  const position = depths(tree.parent).map((d) => d + positionOffset);
  return { ...tree, token, position };
}

/** J random terms on a batch of n nodes: some rows several, some (node, target) pairs repeated. */
function randomTerms(rand: () => number, n: number, vocab: number, J: number) {
  const node = new Int32Array(J), target = new Int32Array(J);
  for (let j = 0; j < J; j++) {
    const copy = j > 0 && rand() < 0.2 ? Math.floor(rand() * j) : -1;
    node[j] = copy >= 0 ? node[copy] : Math.floor(rand() * n);
    target[j] = copy >= 0 ? target[copy] : Math.floor(rand() * vocab);
  }
  const advantage = Float32Array.from({ length: J }, () => gauss(rand));
  return { node, target, advantage, oldLogprob: new Float32Array(J) };
}

function near(actual: number, expected: number, tol: number, what: string): void {
  if (!(Math.abs(actual - expected) <= tol)) fail(`${what}: got ${actual}, expected ${expected} ± ${tol}`);
}

const bits = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

afterEach(() => {
  setNumThreads(0);
});

describe('configuration and parameter layout', () => {
  it('the default config: tokenizer vocabulary, ~0.8 M parameters, layout as documented', () => {
    const policy = new NanoPolicy();
    expect(policy.config).toEqual(defaultConfig());
    const info = policy.paramInfo();
    const ref = referenceLayout(policy.config);
    expect(info.map(({ name, offset, shape }) => ({ name, offset, shape }))).toEqual(ref);
    const last = info[info.length - 1];
    expect(policy.numParams).toBe(last.offset + last.size);
    expect(policy.numParams).toBeGreaterThan(7e5);
    expect(policy.numParams).toBeLessThan(1e6);
  });

  it('tied embeddings drop the output head', () => {
    const untied = new NanoPolicy(TINY), tied = new NanoPolicy({ ...TINY, tiedEmbeddings: true });
    expect(untied.numParams - tied.numParams).toBe(TINY.dim * TINY.vocabSize);
    expect(tied.paramInfo().map((t) => t.name)).not.toContain('output');
    expect(tied.paramInfo().map(({ name, offset, shape }) => ({ name, offset, shape }))).toEqual(referenceLayout(tied.config));
  });

  it('init is deterministic in the seed and has the documented scales', async () => {
    const policy = new NanoPolicy();
    const a = policy.init(7), b = policy.init(7), c = await policy.initAsync(8);
    expect(bits(a).equals(bits(b))).toBe(true);
    expect(bits(a).equals(bits(c))).toBe(false);
    setNumThreads(1);
    expect(bits(policy.init(7)).equals(bits(a))).toBe(true);
    const std = (name: string) => {
      const t = policy.paramInfo().find((x) => x.name === name)!;
      let s = 0;
      for (let i = 0; i < t.size; i++) s += a[t.offset + i] ** 2;
      return Math.sqrt(s / t.size);
    };
    near(std('layers.0.attn.wq'), 0.02, 0.002, 'std of wq');
    near(std('output'), 0.02, 0.002, 'std of output');
    near(std('layers.3.mlp.w_down'), 0.02 / Math.sqrt(8), 0.001, 'std of w_down');
    near(std('layers.1.attn.wo'), 0.02 / Math.sqrt(8), 0.001, 'std of wo');
    expect(std('norm')).toBe(1);
    expect(std('layers.2.mlp_norm')).toBe(1);
  });
});

describe('forward against the float64 reference', () => {
  const configs: [string, NanoPolicyConfig, number][] = [
    ['tiny, GQA, untied', TINY, 0],
    ['tiny, tied, positions offset by 5000', { ...TINY, tiedEmbeddings: true }, 5000],
    ['4 heads on 2 kv heads, head_dim 6, 1 layer', { ...TINY, numHeads: 4, numKvHeads: 2, headDim: 6, numLayers: 1, ropeTheta: 500 }, 3],
    ['multi-head (no GQA), 3 layers', { ...TINY, numHeads: 2, numKvHeads: 2, numLayers: 3, vocabSize: 40 }, 0],
  ];
  for (const [name, config, offset] of configs)
    it(name, () => {
      const rand = makeRng();
      const policy = new NanoPolicy(config);
      const params = randomParams(policy, rand);
      for (const n of [1, 29]) {
        const b = randomBatch(rand, n, config.vocabSize, offset);
        const logits = policy.forward(params, b.token, b.position, b);
        const ref = referenceForward(config, params, b.token, b.position, b.parent);
        const V = config.vocabSize;
        for (let i = 0; i < n; i++) {
          const scale = Math.sqrt(ref[i].reduce((a, x) => a + x * x, 0) / V);
          for (let v = 0; v < V; v++)
            near(logits[i * V + v], ref[i][v], 1e-4 * (Math.abs(ref[i][v]) + scale), `${name}: logits[${i}, ${v}] (n=${n})`);
        }
      }
    });

  it('a 300-node tree (several attention tiles, the thread pool) matches too; threads, async change no bit', async () => {
    const rand = makeRng();
    const config = { ...TINY, vocabSize: 23 };
    const policy = new NanoPolicy(config);
    const params = randomParams(policy, rand);
    const b = randomBatch(rand, 300, config.vocabSize);
    const logits = policy.forward(params, b.token, b.position, b);
    const ref = referenceForward(config, params, b.token, b.position, b.parent);
    for (let i = 0; i < 300; i += 7)
      for (let v = 0; v < config.vocabSize; v++)
        near(logits[i * 23 + v], ref[i][v], 1e-4 * (Math.abs(ref[i][v]) + 1), `300 nodes: logits[${i}, ${v}]`);
    expect(bits(await policy.forwardAsync(params, b.token, b.position, b)).equals(bits(logits))).toBe(true);
    setNumThreads(1);
    expect(bits(policy.forward(params, b.token, b.position, b)).equals(bits(logits))).toBe(true);
  });
});

describe('gradients against finite differences of the reference loss', () => {
  const h = 1e-5;
  /** >= 200 parameters spanning every tensor: all of a small tensor, a random sample of a large one. */
  function pickParams(policy: NanoPolicy, rand: () => number): number[] {
    const picked: number[] = [];
    for (const t of policy.paramInfo()) {
      const take = Math.min(t.size, 12);
      const seen = new Set<number>();
      while (seen.size < take) seen.add(Math.floor(rand() * t.size));
      for (const i of seen) picked.push(t.offset + i);
    }
    return picked;
  }

  function check(config: NanoPolicyConfig, mode: 'cross-entropy' | 'cispo', label: string): void {
    const rand = makeRng();
    const policy = new NanoPolicy(config);
    const params = randomParams(policy, rand);
    const b = randomBatch(rand, 21, config.vocabSize);
    const terms = randomTerms(rand, 21, config.vocabSize, 30);
    // CISPO: ratios placed well inside and outside the clip range [0.8, 1.28]; their clipped values
    // are the (stop-gradient) weights of the surrogate the finite differences see.
    const refLogits = referenceForward(config, params, b.token, b.position, b.parent);
    const ratios = [0.3, 0.95, 1.1, 2.5];
    const weights = new Float64Array(terms.node.length).fill(1);
    for (let j = 0; j < terms.node.length && mode === 'cispo'; j++) {
      const row = refLogits[terms.node[j]];
      const max = Math.max(...row);
      const logp = row[terms.target[j]] - max - Math.log(row.reduce((a, z) => a + Math.exp(z - max), 0));
      const r = ratios[Math.floor(rand() * ratios.length)];
      terms.oldLogprob[j] = logp - Math.log(r);
      weights[j] = Math.min(Math.max(r, 0.8), 1.28);
    }
    const Z = 17.5;
    const batch: PolicyBatch = { ...b, terms };
    const result = policy.lossAndGrad(params, batch, { mode, epsLow: 0.2, epsHigh: 0.28, normalizer: Z });
    if (mode === 'cispo') expect(result.stats.clipFracHigh + result.stats.clipFracLow).toBeGreaterThan(0);
    const x = Float64Array.from(params);
    const loss = (p: Float64Array) => referenceLoss(config, p, b, terms, weights, Z);
    near(result.loss, loss(x), 1e-5 * (Math.abs(loss(x)) + 1), `${label}: loss`);

    const picked = pickParams(policy, rand);
    expect(picked.length).toBeGreaterThanOrEqual(200);
    const fd = picked.map((i) => {
      x[i] = params[i] + h;
      const up = loss(x);
      x[i] = params[i] - h;
      const down = loss(x);
      x[i] = params[i];
      return (up - down) / (2 * h);
    });
    const maxAbs = Math.max(...fd.map(Math.abs));
    expect(maxAbs).toBeGreaterThan(0);
    const names = policy.paramInfo();
    picked.forEach((i, k) => {
      const t = names.filter((u) => u.offset <= i).pop()!;
      near(result.grads[i], fd[k], 1e-3 * Math.abs(fd[k]) + 1e-5 * maxAbs, `${label}: d loss / d ${t.name}[${i - t.offset}]`);
    });
  }

  it('cross-entropy, untied', () => check(TINY, 'cross-entropy', 'CE untied'));
  it('cross-entropy, tied (head and embedding gradients add up)', () => check({ ...TINY, tiedEmbeddings: true }, 'cross-entropy', 'CE tied'));
  it('CISPO with clipped ratios (weights held fixed), 4 heads on 2 kv heads', () =>
    check({ ...TINY, numHeads: 4, numKvHeads: 2, ropeTheta: 100 }, 'cispo', 'CISPO GQA'));
});

/** Agent-like samples: a shared system prompt, then per task a few calls that extend each other or fork. */
function agentSamples(rand: () => number, vocab: number): Sample[] {
  const tokens = (n: number) => Array.from({ length: n }, () => Math.floor(rand() * vocab));
  const system = tokens(12);
  const samples: Sample[] = [];
  for (let task = 0; task < 3; task++) {
    let history = [...system, ...tokens(4)];
    for (let call = 0; call < 3; call++) {
      const completion = tokens(3 + Math.floor(rand() * 4));
      const all = Int32Array.from([...history, ...completion]);
      const trainable = new Uint8Array(all.length);
      trainable.fill(1, history.length);
      const oldLogprobs = Float32Array.from(all, () => -Math.log(vocab) + 0.3 * gauss(rand));
      samples.push({ tokens: all, trainable, oldLogprobs, advantage: gauss(rand) });
      history = rand() < 0.7 ? [...all, ...tokens(2)] : [...system, ...tokens(5)]; // continue or fork
    }
  }
  return samples;
}

describe('the merged tree batch equals the same samples one at a time', () => {
  it('logits, loss and every gradient (CISPO, same Z)', () => {
    const rand = makeRng();
    const config = { ...TINY, vocabSize: 19, numHeads: 4, numKvHeads: 2 };
    const policy = new NanoPolicy(config);
    const params = randomParams(policy, rand);
    const samples = agentSamples(rand, config.vocabSize);
    const merged = buildPrefixTree(samples, { vocabSize: config.vocabSize });
    expect(merged.stats.ratio).toBeGreaterThan(1.5);
    const Z = merged.numTerms;
    const whole = policy.lossAndGrad(params, merged, { normalizer: Z });
    const mergedLogits = policy.forward(params, merged.token, merged.position, merged);
    const V = config.vocabSize;
    let loss = 0;
    const grads = new Float64Array(policy.numParams);
    samples.forEach((sample, s) => {
      const single = buildPrefixTree([sample], { vocabSize: V });
      const r = policy.lossAndGrad(params, single, { normalizer: Z });
      loss += r.loss;
      r.grads.forEach((g, i) => (grads[i] += g));
      const logits = policy.forward(params, single.token, single.position, single);
      merged.nodeOfSample(s).forEach((node, t) => {
        for (let v = 0; v < V; v++) {
          const e = logits[single.nodeOf[t] * V + v];
          near(mergedLogits[node * V + v], e, 1e-5 * (Math.abs(e) + 1), `sample ${s}: logits[${t}, ${v}]`);
        }
      });
    });
    near(whole.loss, loss, 1e-5 * Math.abs(loss), 'loss');
    for (const t of policy.paramInfo()) {
      let maxAbs = 0;
      for (let i = 0; i < t.size; i++) maxAbs = Math.max(maxAbs, Math.abs(grads[t.offset + i]));
      for (let i = 0; i < t.size; i++) {
        const e = grads[t.offset + i];
        near(whole.grads[t.offset + i], e, 1e-5 * (Math.abs(e) + maxAbs), `grad ${t.name}[${i}]`);
      }
    }
  });
});

describe('supervised training on a toy language', () => {
  it('a few hundred cross-entropy steps drive the loss down by a large factor', () => {
    // Sequences BOS, step s, a, a+s, a+2s, ... (mod 10): predicting the next needs the step token at
    // position 1 (attention) and the previous token. Terms on the predictable positions only.
    const rand = makeRng();
    const config: NanoPolicyConfig = { ...TINY, vocabSize: 16, dim: 32, numHeads: 4, numKvHeads: 2, headDim: 8, ffnDim: 64 };
    const policy = new NanoPolicy(config);
    const params = policy.init(Math.floor(rand() * 2 ** 32));
    const m = new Float32Array(params.length), v = new Float32Array(params.length);
    const batch = () => {
      const samples: Sample[] = [];
      for (let k = 0; k < 24; k++) {
        const step = 1 + Math.floor(rand() * 4);
        const seq = [15, 10 + step, Math.floor(rand() * 10)];
        while (seq.length < 14) seq.push((seq[seq.length - 1] + step) % 10);
        const trainable = new Uint8Array(seq.length).fill(1, 3);
        samples.push({ tokens: Int32Array.from(seq), trainable, advantage: 1 });
      }
      return buildPrefixTree(samples, { vocabSize: config.vocabSize });
    };
    const losses: number[] = [];
    const lr = 3e-3, b1 = 0.9, b2 = 0.99;
    for (let step = 1; step <= 300; step++) {
      const { loss, grads } = policy.lossAndGrad(params, batch(), { mode: 'cross-entropy' });
      losses.push(loss);
      // Adam, written out (the test owns its optimizer so it checks only the model).
      for (let i = 0; i < params.length; i++) {
        m[i] = b1 * m[i] + (1 - b1) * grads[i];
        v[i] = b2 * v[i] + (1 - b2) * grads[i] * grads[i];
        params[i] -= (lr * (m[i] / (1 - b1 ** step))) / (Math.sqrt(v[i] / (1 - b2 ** step)) + 1e-8);
      }
    }
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    const first = mean(losses.slice(0, 5)), last = mean(losses.slice(-20));
    near(first, Math.log(16), 0.3, 'initial loss (near uniform at init)');
    if (!(last < first / 20)) fail(`loss went from ${first} to ${last}, expected below ${first / 20}`);
  });
});

describe('bad input', () => {
  const policy = new NanoPolicy(TINY);
  const params = new Float32Array(policy.numParams);
  const b = { parent: Int32Array.from([-1, 0, 1]), subtreeEnd: Int32Array.from([3, 3, 3]) };
  const tokens = Int32Array.from([1, 2, 3]), positions = Int32Array.from([0, 1, 2]);
  const terms = {
    node: Int32Array.from([0, 1]),
    target: Int32Array.from([2, 3]),
    oldLogprob: new Float32Array(2),
    advantage: new Float32Array(2),
  };
  const batch = { ...b, token: tokens, position: positions, terms };
  function throws(fn: () => unknown, type: ErrorConstructor, message: RegExp, code?: string): void {
    let error: unknown;
    try {
      fn();
    } catch (e) {
      error = e;
    }
    if (!(error instanceof type)) fail(`expected a ${type.name} matching ${message}, got ${error}`);
    expect((error as Error).message).toMatch(message);
    if (code) expect((error as { code: string }).code).toBe(code);
  }

  it('config errors name the field', () => {
    throws(() => new NanoPolicy({ dim: 0 }), RangeError, /^config\.dim: expected an integer in \[1, /);
    throws(() => new NanoPolicy({ numHeads: 4, numKvHeads: 3 }), RangeError, /^config\.numKvHeads: expected a divisor of numHeads \(4\)/);
    throws(() => new NanoPolicy({ headDim: 7 }), RangeError, /^config\.headDim: expected an even number/);
    throws(() => new NanoPolicy({ tiedEmbeddings: 1 as never }), TypeError, /^config\.tiedEmbeddings/);
    throws(() => new NanoPolicy({ normEps: 0 }), RangeError, /^config\.normEps/);
    throws(() => new NanoPolicy({ ropeTheta: NaN }), RangeError, /^config\.ropeTheta/, 'FORGE_ERR_NON_FINITE');
    // The C ABI's own checks, with the TypeScript layer bypassed.
    const raw = { ...TINY, headDim: 5 };
    throws(() => addon.modelNumParams(raw), RangeError, /^config\.head_dim: expected an even integer in \[2, 1024\]/, 'FORGE_ERR_INVALID_ARGUMENT');
    throws(() => addon.modelNumParams({ ...TINY, numKvHeads: 0 }), RangeError, /^config\.num_kv_heads/);
    throws(() => addon.modelNumParams({ ...TINY, ffnDim: undefined }), TypeError, /^config\.ffnDim: expected an integer/);
  });

  it('batch errors name the argument, in TypeScript and in the C ABI', () => {
    throws(() => policy.forward(new Float32Array(5), tokens, positions, b), RangeError, /^params: expected \d+ elements, got 5/);
    throws(() => policy.forward(params, Int32Array.from([1, 11, 0]), positions, b), RangeError, /^tokens\[1\]: token id 11 out of the vocabulary \[0, 11\)/);
    throws(() => policy.forward(params, tokens, Int32Array.from([0, -1, 2]), b), RangeError, /^positions\[1\]/);
    const badTree = { ...b, subtreeEnd: Int32Array.from([3, 2, 3]) };
    throws(() => policy.forward(params, tokens, positions, badTree), RangeError, /subtree_end|subtreeEnd/);
    const empty = new Int32Array(0);
    const emptyTree = { parent: empty, subtreeEnd: empty };
    throws(() => policy.forward(params, empty, empty, emptyTree), RangeError, /^tokens: expected at least 1 node/);
    const withTerms = (over: object) => ({ ...batch, terms: { ...terms, ...over } });
    throws(() => policy.lossAndGrad(params, withTerms({ node: Int32Array.from([0, 3]) })), RangeError,
      /^batch\.terms\.node\[1\]: node 3 out of range \[0, 3\)/);
    throws(() => policy.lossAndGrad(params, withTerms({ target: Int32Array.from([0, 11]) })), RangeError,
      /^batch\.terms\.target\[1\]/);
    throws(() => policy.lossAndGrad(params, batch, { mode: 'sft' as never }), RangeError, /^options\.mode: expected 'cispo', 'ppo-clip' or 'cross-entropy'/);
    throws(() => policy.lossAndGrad(params, batch, { normalizer: -1 }), RangeError, /^options\.normalizer/);
    // Bypassing TypeScript: the addon checks lengths, the C ABI ids, positions, the tree and the terms.
    const call = (over: Record<number, unknown>) => {
      const args: unknown[] = [TINY, params, tokens, positions, b.parent, b.subtreeEnd];
      args.push(terms.node, terms.target, terms.oldLogprob, terms.advantage, 0, Infinity, 4, 0, false);
      for (const [i, v] of Object.entries(over)) args[Number(i)] = v;
      return () => addon.modelLossBackward(...args);
    };
    throws(call({ 1: new Float32Array(3) }), RangeError, /^params: expected length/);
    throws(call({ 3: new Int32Array(2) }), RangeError, /^positions: expected length 3/);
    throws(call({ 2: Int32Array.from([0, 99, 0]) }), RangeError, /^tokens\[1\]: token id 99 out of range \[0, 11\)$/, 'FORGE_ERR_OUT_OF_RANGE');
    throws(call({ 3: Int32Array.from([0, 1, -4]) }), RangeError, /^positions\[2\]: expected >= 0, got -4$/, 'FORGE_ERR_OUT_OF_RANGE');
    throws(call({ 4: Int32Array.from([-1, 0, 5]) }), RangeError, /parent\[2\]/);
    throws(call({ 6: Int32Array.from([0, 7]) }), RangeError, /^term_node\[1\]: node 7 out of range \[0, 3\)$/, 'FORGE_ERR_OUT_OF_RANGE');
    throws(call({ 9: Float32Array.from([0, NaN]) }), RangeError, /^term_advantage\[1\]/, 'FORGE_ERR_NON_FINITE');
    throws(call({ 10: 5 }), RangeError, /^mode/);
    throws(call({ 11: -1 }), RangeError, /^options\.eps_low/);
  });

  it('async calls reject with the same errors; non-finite parameters are refused, naming the tensor', async () => {
    const bad = Int32Array.from([1, 2, 30]);
    const pending = addon.modelForward(TINY, params, bad, positions, b.parent, b.subtreeEnd, true);
    await expect(pending).rejects.toThrow(/^tokens\[2\]: token id 30/);
    const wk = policy.paramInfo().find((t) => t.name === 'layers.1.attn.wk')!;
    const nan = params.slice();
    nan[wk.offset + 5] = NaN;
    const message = new RegExp(`^params\\[${wk.offset + 5}\\] \\(layers\\.1\\.attn\\.wk\\[5\\]\\): expected a finite number, got nan$`);
    throws(() => policy.lossAndGrad(nan, batch), RangeError, message, 'FORGE_ERR_NON_FINITE');
    await expect(policy.forwardAsync(nan, tokens, positions, b)).rejects.toThrow(message);
  });
});
