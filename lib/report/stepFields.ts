// The trainer's side of a `step` event, read off PolicyTrainer.step()'s result, so the loop only adds
// what the trainer cannot know (rewards, success rates, lag, groups). Type-only import: the report
// does not load the model.
import type { TrainStepResult } from '../model/trainer.js';
import type { StepEvent } from './events.js';

export type TrainerStepFields = Pick<
  StepEvent,
  'version' | 'loss' | 'ratioMean' | 'clipFracHigh' | 'clipFracLow' | 'entropy' | 'gradNorm' | 'inputTokens' | 'treeTokens' | 'reduction' | 'tokensPerSecond' | 'stepMs'
>;

export function trainerStepFields(result: TrainStepResult): TrainerStepFields {
  return {
    version: result.version,
    loss: result.loss,
    ratioMean: result.stats.meanRatio,
    clipFracHigh: result.stats.clipFracHigh,
    clipFracLow: result.stats.clipFracLow,
    entropy: result.stats.meanEntropy,
    gradNorm: result.gradNorm,
    inputTokens: result.inputTokens,
    treeTokens: result.treeTokens,
    reduction: result.treeTokens > 0 ? result.inputTokens / result.treeTokens : NaN,
    tokensPerSecond: result.ms > 0 ? result.inputTokens / (result.ms / 1000) : NaN,
    stepMs: result.ms,
  };
}
