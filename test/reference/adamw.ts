// Plain float64 reference of AdamW (Loshchilov & Hutter, decoupled weight decay; the form of
// torch.optim.AdamW), global-norm gradient clipping (torch.nn.utils.clip_grad_norm_) and the warmup +
// cosine learning-rate schedule, written straight from the formulas, one element at a time.

export interface ReferenceAdamWOptions {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
}

/** State in float64: params, first and second moments. */
export interface ReferenceAdamWState {
  params: Float64Array;
  m: Float64Array;
  v: Float64Array;
}

/** One AdamW step (t is 1-based) in place, on gradients multiplied by `gradScale` first. */
export function referenceAdamWStep(
  state: ReferenceAdamWState,
  grads: ArrayLike<number>,
  t: number,
  o: ReferenceAdamWOptions,
  gradScale = 1,
): void {
  const { params, m, v } = state;
  for (let i = 0; i < params.length; i++) {
    const g = grads[i] * gradScale;
    // Decoupled weight decay acts on the parameter before the Adam update.
    params[i] -= o.lr * o.weightDecay * params[i];
    m[i] = o.beta1 * m[i] + (1 - o.beta1) * g;
    v[i] = o.beta2 * v[i] + (1 - o.beta2) * g * g;
    const mHat = m[i] / (1 - Math.pow(o.beta1, t));
    const vHat = v[i] / (1 - Math.pow(o.beta2, t));
    params[i] -= (o.lr * mHat) / (Math.sqrt(vHat) + o.eps);
  }
}

/** L2 norm of all the gradients together. */
export function referenceGlobalNorm(grads: ArrayLike<number>[]): number {
  let sum = 0;
  for (const g of grads) for (let i = 0; i < g.length; i++) sum += g[i] * g[i];
  return Math.sqrt(sum);
}

/** clip_grad_norm_: the factor min(1, maxNorm / (norm + 1e-6)). */
export function referenceClipScale(norm: number, maxNorm: number | undefined): number {
  if (maxNorm === undefined || norm <= maxNorm) return 1;
  return maxNorm / (norm + 1e-6);
}

/** Learning rate of 1-based step t: linear warmup over `warmup` steps, then cosine down to minLr at `total`. */
export function referenceWarmupCosine(t: number, lr: number, warmup: number, total: number, minLr: number): number {
  if (t <= warmup) return (lr * t) / warmup;
  if (t >= total) return minLr;
  const progress = (t - warmup) / (total - warmup);
  return minLr + ((lr - minLr) * (1 + Math.cos(Math.PI * progress))) / 2;
}
