// Plain float64 reference of contract 3 (CISPO / PPO-clip), written straight from the formulas and
// deliberately naive: the full [N, V] log-softmax is materialised, the entropy is -sum p log p, and
// the gradient is accumulated term by term from its definition. It shares nothing with the kernel
// but the formulas.

export type PolicyMode = 'cispo' | 'ppo-clip' | 'cross-entropy';

export interface ReferenceTerms {
  node: ArrayLike<number>;
  target: ArrayLike<number>;
  oldLogprob: ArrayLike<number>;
  advantage: ArrayLike<number>;
}

export interface ReferenceOptions {
  mode: PolicyMode;
  epsLow: number;
  epsHigh: number;
  /** Z; undefined: the number of terms. */
  normalizer?: number;
}

export interface ReferenceResult {
  loss: number;
  dlogits: Float64Array;
  logprobs: Float64Array;
  /** Per term: the importance ratio r and the clipped weight clip(r). */
  ratios: Float64Array;
  weights: Float64Array;
  stats: {
    meanRatio: number;
    clipFracHigh: number;
    clipFracLow: number;
    clipFracPositiveAdv: number;
    clipFracNegativeAdv: number;
    meanEntropy: number;
    meanLogprob: number;
    numTerms: number;
    numRows: number;
  };
}

/** log softmax of row n of z [N, V]: z - (max + log sum exp(z - max)). */
export function logSoftmaxRow(z: ArrayLike<number>, vocabSize: number, n: number): Float64Array {
  const out = new Float64Array(vocabSize);
  let max = -Infinity;
  for (let v = 0; v < vocabSize; v++) max = Math.max(max, z[n * vocabSize + v]);
  let sum = 0;
  for (let v = 0; v < vocabSize; v++) sum += Math.exp(z[n * vocabSize + v] - max);
  const lse = max + Math.log(sum);
  for (let v = 0; v < vocabSize; v++) out[v] = z[n * vocabSize + v] - lse;
  return out;
}

function clip(r: number, epsLow: number, epsHigh: number): number {
  return Math.min(Math.max(r, 1 - epsLow), 1 + epsHigh);
}

function normalizerOf(options: ReferenceOptions, numTerms: number): number {
  return options.normalizer !== undefined ? options.normalizer : numTerms;
}

/** Loss, gradient, log-probs and statistics, from the definitions. */
export function referencePolicyLoss(
  z: ArrayLike<number>,
  vocabSize: number,
  terms: ReferenceTerms,
  options: ReferenceOptions,
): ReferenceResult {
  const N = z.length / vocabSize;
  const J = terms.node.length;
  const Z = normalizerOf(options, J);
  const logSoftmax: Float64Array[] = [];
  for (let n = 0; n < N; n++) logSoftmax.push(logSoftmaxRow(z, vocabSize, n));

  const dlogits = new Float64Array(N * vocabSize);
  const logprobs = new Float64Array(J);
  const ratios = new Float64Array(J);
  const weights = new Float64Array(J);
  let loss = 0;
  let ratioSum = 0, high = 0, low = 0, pos = 0, posHigh = 0, neg = 0, negLow = 0, logpSum = 0;
  for (let j = 0; j < J; j++) {
    const n = terms.node[j], y = terms.target[j], A = terms.advantage[j];
    const logp = logSoftmax[n][y];
    const r = Math.exp(logp - terms.oldLogprob[j]);
    // Cross-entropy weighs every term 1 and clips nothing.
    const ce = options.mode === 'cross-entropy';
    const w = ce ? 1 : clip(r, options.epsLow, options.epsHigh);
    logprobs[j] = logp;
    ratios[j] = r;
    weights[j] = w;
    // d loss_j / d logp_j, negated: the coefficient c_j of -(1/Z) c_j (onehot(y) - softmax).
    let c: number;
    if (ce) {
      loss += (-A * logp) / Z;
      c = A;
    } else if (options.mode === 'cispo') {
      loss += (-w * A * logp) / Z;
      c = w * A;
    } else {
      loss += -Math.min(r * A, w * A) / Z;
      // min picks r A (slope r A in logp) when r is inside the clip range or r A is the smaller;
      // otherwise it picks the constant clip(r) A (slope 0).
      const inside = r >= 1 - options.epsLow && r <= 1 + options.epsHigh;
      c = inside || r * A < w * A ? r * A : 0;
    }
    for (let v = 0; v < vocabSize; v++) {
      const p = Math.exp(logSoftmax[n][v]);
      dlogits[n * vocabSize + v] += (-(1 / Z) * c * ((v === y ? 1 : 0) - p));
    }
    ratioSum += r;
    logpSum += logp;
    const above = !ce && r > 1 + options.epsHigh, below = !ce && r < 1 - options.epsLow;
    if (above) high++;
    if (below) low++;
    if (A > 0) {
      pos++;
      if (above) posHigh++;
    } else if (A < 0) {
      neg++;
      if (below) negLow++;
    }
  }

  const rowsWithTerms = new Set<number>();
  for (let j = 0; j < J; j++) rowsWithTerms.add(terms.node[j]);
  let entropySum = 0;
  for (const n of rowsWithTerms) {
    let h = 0;
    for (let v = 0; v < vocabSize; v++) {
      const lp = logSoftmax[n][v];
      h -= Math.exp(lp) * lp;
    }
    entropySum += h;
  }
  const mean = (a: number, b: number) => (b > 0 ? a / b : 0);
  return {
    loss,
    dlogits,
    logprobs,
    ratios,
    weights,
    stats: {
      meanRatio: mean(ratioSum, J),
      clipFracHigh: mean(high, J),
      clipFracLow: mean(low, J),
      clipFracPositiveAdv: mean(posHigh, pos),
      clipFracNegativeAdv: mean(negLow, neg),
      meanEntropy: mean(entropySum, rowsWithTerms.size),
      meanLogprob: mean(logpSum, J),
      numTerms: J,
      numRows: rowsWithTerms.size,
    },
  };
}

/** The CISPO surrogate with the weights held fixed (the stop-gradient): -(1/Z) sum_j w_j A_j logp_j(z). */
export function cispoSurrogate(
  z: ArrayLike<number>,
  vocabSize: number,
  terms: ReferenceTerms,
  weights: ArrayLike<number>,
  normalizer: number,
): number {
  let loss = 0;
  for (let j = 0; j < terms.node.length; j++) {
    const logp = logSoftmaxRow(z, vocabSize, terms.node[j])[terms.target[j]];
    loss += (-weights[j] * terms.advantage[j] * logp) / normalizer;
  }
  return loss;
}

/** The PPO-clip loss value: -(1/Z) sum_j min(r_j A_j, clip(r_j) A_j). */
export function ppoLoss(
  z: ArrayLike<number>,
  vocabSize: number,
  terms: ReferenceTerms,
  options: ReferenceOptions,
): number {
  const Z = normalizerOf(options, terms.node.length);
  let loss = 0;
  for (let j = 0; j < terms.node.length; j++) {
    const logp = logSoftmaxRow(z, vocabSize, terms.node[j])[terms.target[j]];
    const r = Math.exp(logp - terms.oldLogprob[j]);
    const A = terms.advantage[j];
    loss += -Math.min(r * A, clip(r, options.epsLow, options.epsHigh) * A) / Z;
  }
  return loss;
}
