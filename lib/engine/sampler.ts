// Token sampling for the engine: temperature, top-p (nucleus), a seeded RNG per request, and the
// log-probability of the sampled token. The logprob is log_softmax of the raw float32 logits
// (temperature 1, no top-p) computed in float64: exactly what the training path's CISPO kernel
// computes for the same token (logp = z[y] - logsumexp(z)), so the ratio starts at 1 on-policy.
// Top-k alternatives, when asked, come from that same distribution and the same normaliser, so the
// sampled token's entry is bit-identical to its recorded logprob (temperature and top-p shape only
// the draw, never the reported numbers).
import { KernelErrorCode, rangeError } from '../errors.js';
import { expectFinite, expectInt } from '../validate.js';
import type { TopLogprob } from './types.js';

/** Most alternatives a request may ask for (OpenAI's top_logprobs limit). */
export const MAX_TOP_LOGPROBS = 20;

export interface SamplingOptions {
  /** 0 = greedy (argmax, lowest id on ties); > 0 divides the logits. Default 1. */
  temperature?: number;
  /** Nucleus: sample among the most likely tokens whose probabilities add up to topP, in (0, 1]. Default 1. */
  topP?: number;
}

/** A uniform [0, 1) generator. */
export type Random = () => number;

/**
 * A seeded generator (xoshiro128**, 53-bit doubles from two draws): the same seed gives the same
 * sequence on every machine. The seed is an integer in [0, 2^53].
 */
export function seededRandom(seed: number): Random {
  expectInt('seed', seed, 0, 2 ** 53);
  // splitmix32 expands the seed into the four state words.
  let s = (seed >>> 0) ^ Math.imul(Math.floor(seed / 2 ** 32), 0x9e3779b9);
  const split = () => {
    s = (s + 0x9e3779b9) | 0;
    let z = s;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    return (z ^ (z >>> 16)) >>> 0;
  };
  let a = split(), b = split(), c = split(), d = split();
  const next = () => {
    const r = Math.imul(rotl(Math.imul(b, 5), 7), 9) >>> 0;
    const t = b << 9;
    c ^= a;
    d ^= b;
    b ^= c;
    a ^= d;
    c ^= t;
    d = rotl(d, 11);
    return r;
  };
  return () => ((next() >>> 5) * 67108864 + (next() >>> 6)) / 9007199254740992;
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}

/** The normaliser of log_softmax(row) in float64: log_softmax(row)[i] = row[i] - max - logSum. */
interface LogSoftmaxNorm {
  max: number;
  logSum: number;
}

function logSoftmaxNorm(row: ArrayLike<number>): LogSoftmaxNorm {
  let max = -Infinity;
  for (let i = 0; i < row.length; i++) if (row[i] > max) max = row[i];
  let sum = 0;
  for (let i = 0; i < row.length; i++) sum += Math.exp(row[i] - max);
  return { max, logSum: Math.log(sum) };
}

/** log_softmax(row)[token] in float64: row[token] - logsumexp(row). */
export function logSoftmaxAt(row: ArrayLike<number>, token: number): number {
  const { max, logSum } = logSoftmaxNorm(row);
  return row[token] - max - logSum;
}

/**
 * The k most likely tokens of log_softmax(row) (temperature 1, no top-p), most likely first, ties
 * broken by the lower id; k is capped at the row's length. O(V k) with a sorted buffer of k.
 */
export function topLogprobs(row: ArrayLike<number>, k: number): TopLogprob[] {
  return topOf(row, expectInt('k', k, 0), logSoftmaxNorm(row));
}

function topOf(row: ArrayLike<number>, k: number, norm: LogSoftmaxNorm): TopLogprob[] {
  const n = Math.min(k, row.length);
  const best: number[] = [];
  for (let i = 0; i < row.length && n > 0; i++) {
    // Ids ascend, so a later token never displaces an equal one: ties keep the lower id first.
    if (best.length === n && !(row[i] > row[best[n - 1]])) continue;
    let j = best.length === n ? n - 1 : best.length;
    while (j > 0 && row[i] > row[best[j - 1]]) {
      best[j] = best[j - 1];
      j--;
    }
    best[j] = i;
  }
  return best.map((token) => ({ token, logprob: row[token] - norm.max - norm.logSum }));
}

/** Checks sampling options; returns them with the defaults filled in. */
export function samplingOptions(options: SamplingOptions | undefined, name = 'options'): Required<SamplingOptions> {
  const temperature = options?.temperature === undefined ? 1 : expectFinite(`${name}.temperature`, options.temperature, 0);
  const topP = options?.topP === undefined ? 1 : expectFinite(`${name}.topP`, options.topP);
  if (!(topP > 0 && topP <= 1)) throw rangeError(`${name}.topP: expected a number in (0, 1], got ${topP}`);
  return { temperature, topP };
}

export interface Sampled {
  token: number;
  /** log_softmax of the raw logits at `token`, float64. */
  logprob: number;
  /** The `topK` most likely tokens (see topLogprobs); only when topK > 0. */
  top?: TopLogprob[];
}

/** The sampled token with its logprob (and the top-k from the same normaliser when asked). */
function sampled(row: Float32Array, token: number, topK: number): Sampled {
  const norm = logSoftmaxNorm(row);
  const out: Sampled = { token, logprob: row[token] - norm.max - norm.logSum };
  if (topK > 0) out.top = topOf(row, topK, norm);
  return out;
}

/**
 * Picks a token from one row of logits. Greedy at temperature 0; otherwise p ∝ exp(z / T) restricted
 * to the top-p nucleus, drawn with one call to `random`. Non-finite logits are refused (a broken model
 * must not produce plausible-looking tokens). `topK` > 0 also returns the k most likely tokens.
 */
export function sampleToken(row: Float32Array, options: Required<SamplingOptions>, random: Random, topK = 0): Sampled {
  const V = row.length;
  let best = 0;
  for (let i = 0; i < V; i++) {
    if (!Number.isFinite(row[i])) throw rangeError(`logits[${i}]: expected a finite number, got ${row[i]}`, KernelErrorCode.NON_FINITE);
    if (row[i] > row[best]) best = i;
  }
  if (options.temperature === 0) return sampled(row, best, topK);
  const max = row[best], invT = 1 / options.temperature;
  const p = new Float64Array(V);
  let total = 0;
  for (let i = 0; i < V; i++) total += p[i] = Math.exp((row[i] - max) * invT);
  let order: ArrayLike<number> | undefined;
  let mass = total;
  if (options.topP < 1) {
    // Smallest set of most likely tokens with probability >= topP (ties broken by id, deterministic).
    const idx = Array.from({ length: V }, (_, i) => i).sort((x, y) => p[y] - p[x] || x - y);
    let kept = 0, acc = 0;
    while (kept < V && (kept === 0 || acc < options.topP * total)) acc += p[idx[kept++]];
    order = idx.slice(0, kept);
    mass = acc;
  }
  let u = random() * mass;
  const n = order ? order.length : V;
  let token = order ? order[n - 1] : V - 1;
  for (let j = 0; j < n; j++) {
    const i = order ? order[j] : j;
    u -= p[i];
    if (u < 0) {
      token = i;
      break;
    }
  }
  // u may stay >= 0 by rounding: the last candidate with non-zero weight was taken above as default.
  if (p[token] === 0) token = best;
  return sampled(row, token, topK);
}
