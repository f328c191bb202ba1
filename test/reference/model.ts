// Plain float64 reference of the nano policy, written from the math of forge.h's "Nano policy model"
// section and deliberately naive: every matrix product is a triple loop, attention walks each node's
// parent chain (it never reads subtreeEnd) and materialises its softmax, RoPE calls Math.cos / sin per
// element. It shares nothing with the native code but the formulas and the documented buffer layout,
// which it lays out itself (so the native paramInfo can be checked against it).

export interface ReferenceConfig {
  vocabSize: number;
  dim: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  ffnDim: number;
  tiedEmbeddings: boolean;
  ropeTheta: number;
  normEps: number;
}

export interface ReferenceTensor {
  name: string;
  offset: number;
  shape: number[];
}

/** The documented buffer order: tok_embeddings, per layer the 9 block tensors, norm, output (untied). */
export function referenceLayout(c: ReferenceConfig): ReferenceTensor[] {
  const out: ReferenceTensor[] = [];
  let at = 0;
  const add = (name: string, shape: number[]) => {
    out.push({ name, offset: at, shape });
    at += shape.reduce((a, b) => a * b, 1);
  };
  const qd = c.numHeads * c.headDim, kvd = c.numKvHeads * c.headDim;
  add('tok_embeddings', [c.vocabSize, c.dim]);
  for (let l = 0; l < c.numLayers; l++) {
    add(`layers.${l}.attn_norm`, [c.dim]);
    add(`layers.${l}.attn.wq`, [c.dim, qd]);
    add(`layers.${l}.attn.wk`, [c.dim, kvd]);
    add(`layers.${l}.attn.wv`, [c.dim, kvd]);
    add(`layers.${l}.attn.wo`, [qd, c.dim]);
    add(`layers.${l}.mlp_norm`, [c.dim]);
    add(`layers.${l}.mlp.w_gate`, [c.dim, c.ffnDim]);
    add(`layers.${l}.mlp.w_up`, [c.dim, c.ffnDim]);
    add(`layers.${l}.mlp.w_down`, [c.ffnDim, c.dim]);
  }
  add('norm', [c.dim]);
  if (!c.tiedEmbeddings) add('output', [c.dim, c.vocabSize]);
  return out;
}

type Matrix = Float64Array[]; // rows

function tensor(c: ReferenceConfig, params: ArrayLike<number>, name: string): Float64Array {
  const t = referenceLayout(c).find((x) => x.name === name);
  if (!t) throw new Error(`reference: no tensor ${name}`);
  const size = t.shape.reduce((a, b) => a * b, 1);
  return Float64Array.from({ length: size }, (_, i) => params[t.offset + i]);
}

/** x [n][in] times W [in, out] (row-major flat) -> [n][out]. */
function matmul(x: Matrix, w: Float64Array, out: number): Matrix {
  return x.map((row) => {
    const y = new Float64Array(out);
    for (let i = 0; i < row.length; i++) for (let j = 0; j < out; j++) y[j] += row[i] * w[i * out + j];
    return y;
  });
}

function rmsnorm(x: Matrix, weight: Float64Array, eps: number): Matrix {
  return x.map((row) => {
    let ss = 0;
    for (const v of row) ss += v * v;
    const r = 1 / Math.sqrt(ss / row.length + eps);
    return row.map((v, j) => v * r * weight[j]);
  });
}

/** Rotate-half RoPE of one head vector at `position`. */
function rope(v: Float64Array, position: number, theta: number): Float64Array {
  const D = v.length, h = D / 2;
  const out = new Float64Array(D);
  for (let i = 0; i < h; i++) {
    const angle = position * Math.pow(theta, (-2 * i) / D);
    const cos = Math.cos(angle), sin = Math.sin(angle);
    out[i] = v[i] * cos - v[i + h] * sin;
    out[i + h] = v[i + h] * cos + v[i] * sin;
  }
  return out;
}

function head(row: Float64Array, h: number, D: number): Float64Array {
  return row.slice(h * D, (h + 1) * D);
}

/** Ancestors-or-self of q, by walking parent links. */
function rootPath(parent: ArrayLike<number>, q: number): number[] {
  const path: number[] = [];
  for (let a = q; a >= 0; a = parent[a]) path.push(a);
  return path;
}

/** Logits [n][vocab] of every node. */
export function referenceForward(
  c: ReferenceConfig,
  params: ArrayLike<number>,
  tokens: ArrayLike<number>,
  positions: ArrayLike<number>,
  parent: ArrayLike<number>,
): Matrix {
  const n = tokens.length, D = c.headDim, group = c.numHeads / c.numKvHeads;
  const emb = tensor(c, params, 'tok_embeddings');
  let x: Matrix = Array.from({ length: n }, (_, i) => emb.slice(tokens[i] * c.dim, (tokens[i] + 1) * c.dim));
  for (let l = 0; l < c.numLayers; l++) {
    const t = (name: string) => tensor(c, params, `layers.${l}.${name}`);
    const h = rmsnorm(x, t('attn_norm'), c.normEps);
    const q = matmul(h, t('attn.wq'), c.numHeads * D);
    const k = matmul(h, t('attn.wk'), c.numKvHeads * D);
    const v = matmul(h, t('attn.wv'), c.numKvHeads * D);
    const attn: Matrix = [];
    for (let i = 0; i < n; i++) {
      const out = new Float64Array(c.numHeads * D);
      const keys = rootPath(parent, i);
      for (let hq = 0; hq < c.numHeads; hq++) {
        const kv = Math.floor(hq / group);
        const qi = rope(head(q[i], hq, D), positions[i], c.ropeTheta);
        const scores = keys.map((a) => {
          const ka = rope(head(k[a], kv, D), positions[a], c.ropeTheta);
          let s = 0;
          for (let d = 0; d < D; d++) s += qi[d] * ka[d];
          return s / Math.sqrt(D);
        });
        const max = Math.max(...scores);
        const p = scores.map((s) => Math.exp(s - max));
        const sum = p.reduce((a, b) => a + b, 0);
        keys.forEach((a, idx) => {
          const va = head(v[a], kv, D);
          for (let d = 0; d < D; d++) out[hq * D + d] += (p[idx] / sum) * va[d];
        });
      }
      attn.push(out);
    }
    const proj = matmul(attn, t('attn.wo'), c.dim);
    x = x.map((row, i) => row.map((val, j) => val + proj[i][j]));
    const h2 = rmsnorm(x, t('mlp_norm'), c.normEps);
    const gate = matmul(h2, t('mlp.w_gate'), c.ffnDim);
    const up = matmul(h2, t('mlp.w_up'), c.ffnDim);
    const act = gate.map((row, i) => row.map((g, j) => (g / (1 + Math.exp(-g))) * up[i][j]));
    const down = matmul(act, t('mlp.w_down'), c.dim);
    x = x.map((row, i) => row.map((val, j) => val + down[i][j]));
  }
  const hf = rmsnorm(x, tensor(c, params, 'norm'), c.normEps);
  if (!c.tiedEmbeddings) return matmul(hf, tensor(c, params, 'output'), c.vocabSize);
  // Tied: logits = hf E^T with E [vocab, dim].
  return hf.map((row) => {
    const y = new Float64Array(c.vocabSize);
    for (let v = 0; v < c.vocabSize; v++) for (let j = 0; j < c.dim; j++) y[v] += row[j] * emb[v * c.dim + j];
    return y;
  });
}

/**
 * The policy-gradient surrogate with fixed term weights: -(1/Z) sum_j w_j A_j logp_j, on the
 * reference logits. w = 1 is cross-entropy; CISPO's clipped ratios held fixed give its gradient.
 */
export function referenceLoss(
  c: ReferenceConfig,
  params: ArrayLike<number>,
  batch: { token: ArrayLike<number>; position: ArrayLike<number>; parent: ArrayLike<number> },
  terms: { node: ArrayLike<number>; target: ArrayLike<number>; advantage: ArrayLike<number> },
  weights: ArrayLike<number> | null,
  normalizer: number,
): number {
  const logits = referenceForward(c, params, batch.token, batch.position, batch.parent);
  let loss = 0;
  for (let j = 0; j < terms.node.length; j++) {
    const row = logits[terms.node[j]];
    const max = Math.max(...row);
    const lse = max + Math.log(row.reduce((a, z) => a + Math.exp(z - max), 0));
    const logp = row[terms.target[j]] - lse;
    loss -= ((weights ? weights[j] : 1) * terms.advantage[j] * logp) / normalizer;
  }
  return loss;
}
