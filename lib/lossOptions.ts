// The options of the policy-gradient loss kernels (contract 3) as the kernels take them: checked,
// defaults filled in. Shared by cispoLoss (lib/cispo.ts), cispoLossDevice (lib/device.ts) and the nano
// policy's lossAndGrad, and kept apart from cispo.ts so the device wrappers need no import of it.
import { KernelErrorCode, rangeError, typeError } from './errors.js';

// CISPO defaults. MiniMax-M1 sets no lower bound on the IS weight and tunes only the upper one. Peers
// cap the ratio near 5: TRL's GRPOConfig(loss_type='cispo') clamps the ratio at epsilon_high, whose
// documented recommended value is 5.0 (the eps_max of ScaleRL, arXiv 2510.13786); Tinker's cispo loss
// defaults to clip_high_threshold = 4.0. Here the cap is 1 + epsHigh, so epsHigh = 4 gives TRL's 5.
const CISPO_EPS_LOW = Infinity;
const CISPO_EPS_HIGH = 4;
// PPO-clip: the usual symmetric 0.2.
const PPO_EPS = 0.2;

const MODES = { cispo: 0, 'ppo-clip': 1, 'cross-entropy': 2 } as const;
const MODE_NAMES = "'cispo', 'ppo-clip' or 'cross-entropy'";
const NON_FINITE = KernelErrorCode.NON_FINITE;

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null;
}

function epsilon(name: string, value: unknown, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number') throw typeError(`${name}: expected a number, got ${typeof value}`);
  if (Number.isNaN(value)) throw rangeError(`${name}: expected a number >= 0, got NaN`, NON_FINITE);
  if (value < 0) throw rangeError(`${name}: expected a number >= 0, got ${value}`);
  return value;
}

function flag(name: string, value: unknown, fallback: boolean): boolean {
  if (value === undefined) return fallback;
  if (typeof value !== 'boolean') throw typeError(`${name}: expected a boolean, got ${typeof value}`);
  return value;
}

/** The loss options as the kernels take them: checked, defaults filled in, the mode as forge_pg_mode's
 * value and Z = 0 for "the number of terms". Shared by cispoLoss and the nano policy's lossAndGrad. */
export function resolveLossOptions(options: unknown): {
  mode: number;
  epsLow: number;
  epsHigh: number;
  normalizer: number;
  grad: boolean;
  inPlace: boolean;
} {
  if (options !== undefined && !isObject(options))
    throw typeError(`options: expected an object, got ${typeof options}`);
  const o = (options ?? {}) as Record<string, unknown>;
  const mode = o.mode ?? 'cispo';
  if (typeof mode !== 'string') throw typeError(`options.mode: expected ${MODE_NAMES}, got ${typeof mode}`);
  if (!Object.hasOwn(MODES, mode)) throw rangeError(`options.mode: expected ${MODE_NAMES}, got '${mode}'`);
  const ppo = mode === 'ppo-clip';
  const epsLow = epsilon('options.epsLow', o.epsLow, ppo ? PPO_EPS : CISPO_EPS_LOW);
  const epsHigh = epsilon('options.epsHigh', o.epsHigh, ppo ? PPO_EPS : CISPO_EPS_HIGH);
  let normalizer = 0; // the kernel's "number of terms"
  if (o.normalizer !== undefined) {
    if (typeof o.normalizer !== 'number')
      throw typeError(`options.normalizer: expected a number, got ${typeof o.normalizer}`);
    if (!Number.isFinite(o.normalizer))
      throw rangeError(`options.normalizer: expected a finite number, got ${o.normalizer}`, NON_FINITE);
    if (o.normalizer <= 0) throw rangeError(`options.normalizer: expected a number > 0, got ${o.normalizer}`);
    normalizer = o.normalizer;
  }
  const grad = flag('options.grad', o.grad, true);
  const inPlace = flag('options.inPlace', o.inPlace, false);
  if (inPlace && !grad) throw rangeError('options.inPlace: writes dlogits, so it needs grad: true');
  return { mode: MODES[mode as keyof typeof MODES], epsLow, epsHigh, normalizer, grad, inPlace };
}
