// The demo's model sizes. All use the tokenizer's vocabulary (defaultConfig()'s). 'tiny' is what the
// demo trains by default: on 2 CPU cores it learns the demo's copying skills in about a thousand
// warm-start steps and improves through RL within minutes; the larger ones show the same loop at a
// higher cost per step.
import { typeError } from '../errors.js';
import type { NanoPolicyConfig } from '../model/policy.js';

export type ModelSize = 'tiny' | 'small' | 'default';
export const MODEL_SIZES: readonly ModelSize[] = Object.freeze(['tiny', 'small', 'default']);

const CONFIGS: Readonly<Record<ModelSize, Partial<NanoPolicyConfig>>> = Object.freeze({
  // ~0.13 M parameters.
  tiny: { dim: 64, numLayers: 2, numHeads: 4, numKvHeads: 2, headDim: 16, ffnDim: 176 },
  // ~0.36 M parameters.
  small: { dim: 96, numLayers: 3, numHeads: 4, numKvHeads: 2, headDim: 24, ffnDim: 256 },
  // defaultConfig(): ~0.8 M parameters.
  default: {},
});

export function modelConfig(size: ModelSize): Partial<NanoPolicyConfig> {
  const config = CONFIGS[size];
  if (config === undefined) throw typeError(`model: expected one of ${MODEL_SIZES.join(', ')}, got ${JSON.stringify(size)}`);
  return { ...config };
}
