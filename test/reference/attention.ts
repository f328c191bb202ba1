// Plain float64 tree attention, written straight from the definition (no tiling, no online softmax):
// for each query, walk parent links to collect its ancestors-or-self, take the softmax of
// scale * q.k over them, and sum the values. The gradients come from the softmax Jacobian.

export interface RefShape {
  hq: number;
  hkv: number;
  d: number;
  scale: number;
}

export interface RefState {
  /** [N, Hq, D] */
  o: Float64Array;
  /** [N, Hq]; -Infinity where the query saw no key */
  lse: Float64Array;
}

/** Ancestors-or-self of q, by walking parent links. */
export function ancestors(parent: ArrayLike<number>, q: number): number[] {
  const out: number[] = [];
  for (let a = q; a >= 0; a = parent[a]) out.push(a);
  return out;
}

const kvHead = (h: number, s: RefShape) => Math.floor(h / (s.hq / s.hkv));

function dot(x: ArrayLike<number>, xi: number, y: ArrayLike<number>, yi: number, d: number): number {
  let sum = 0;
  for (let c = 0; c < d; c++) sum += x[xi + c] * y[yi + c];
  return sum;
}

/**
 * Attention of every query over the keys `keysOf(q)` (default: its ancestors-or-self) in float64:
 * o = sum_a softmax_a(scale q.k_a) v_a, lse = log sum_a exp(scale q.k_a).
 */
export function referenceAttention(
  q: ArrayLike<number>, k: ArrayLike<number>, v: ArrayLike<number>, parent: ArrayLike<number>, s: RefShape,
  keysOf: (q: number) => number[] = (x) => ancestors(parent, x),
): RefState {
  const n = parent.length, { hq, hkv, d, scale } = s;
  const o = new Float64Array(n * hq * d), lse = new Float64Array(n * hq);
  for (let qi = 0; qi < n; qi++) {
    const keys = keysOf(qi);
    for (let h = 0; h < hq; h++) {
      const kh = kvHead(h, s), row = (qi * hq + h) * d;
      if (keys.length === 0) {
        lse[qi * hq + h] = -Infinity;
        continue;
      }
      const scores = keys.map((a) => scale * dot(q, row, k, (a * hkv + kh) * d, d));
      const m = Math.max(...scores);
      const w = scores.map((x) => Math.exp(x - m));
      const total = w.reduce((x, y) => x + y, 0);
      keys.forEach((a, i) => {
        for (let c = 0; c < d; c++) o[row + c] += (w[i] / total) * v[(a * hkv + kh) * d + c];
      });
      lse[qi * hq + h] = m + Math.log(total);
    }
  }
  return { o, lse };
}

/**
 * Gradients of loss(o) given dO = dloss/do, from the softmax Jacobian: with P the attention weights
 * of a query and dP_a = dO . v_a,  dS_a = P_a (dP_a - sum_b P_b dP_b),
 * dq = scale sum_a dS_a k_a,  dk_a += scale dS_a q,  dv_a += P_a dO.
 */
export function referenceGrads(
  q: ArrayLike<number>, k: ArrayLike<number>, v: ArrayLike<number>, parent: ArrayLike<number>,
  dO: ArrayLike<number>, s: RefShape,
): { dq: Float64Array; dk: Float64Array; dv: Float64Array } {
  const n = parent.length, { hq, hkv, d, scale } = s;
  const dq = new Float64Array(n * hq * d), dk = new Float64Array(n * hkv * d), dv = new Float64Array(n * hkv * d);
  for (let qi = 0; qi < n; qi++) {
    const keys = ancestors(parent, qi);
    for (let h = 0; h < hq; h++) {
      const kh = kvHead(h, s), row = (qi * hq + h) * d;
      const kvRow = (a: number) => (a * hkv + kh) * d;
      const scores = keys.map((a) => scale * dot(q, row, k, kvRow(a), d));
      const m = Math.max(...scores);
      const w = scores.map((x) => Math.exp(x - m));
      const total = w.reduce((x, y) => x + y, 0);
      const P = w.map((x) => x / total);
      const dP = keys.map((a) => dot(dO, row, v, kvRow(a), d));
      const mean = P.reduce((acc, p, i) => acc + p * dP[i], 0);
      keys.forEach((a, i) => {
        const dS = P[i] * (dP[i] - mean);
        for (let c = 0; c < d; c++) {
          dq[row + c] += scale * dS * k[kvRow(a) + c];
          dk[kvRow(a) + c] += scale * dS * q[row + c];
          dv[kvRow(a) + c] += P[i] * dO[row + c];
        }
      });
    }
  }
  return { dq, dk, dv };
}

/** sum(o * w) of the float64 reference: the scalar loss of the finite-difference checks. */
export function referenceLoss(
  q: ArrayLike<number>, k: ArrayLike<number>, v: ArrayLike<number>, parent: ArrayLike<number>,
  w: ArrayLike<number>, s: RefShape,
): number {
  const { o } = referenceAttention(q, k, v, parent, s);
  let sum = 0;
  for (let i = 0; i < o.length; i++) sum += o[i] * w[i];
  return sum;
}
