// The learning recipe without the plumbing (a development tool; `npm run demo` is the real thing):
// the same warm start, then RL with the engine and the trainer called directly in this process (no
// gateway, no agent programs: lib/demo/localRollout.ts plays the scaffolds), evaluating before and
// after on held-out tasks with fixed sampling seeds. Fast enough to compare settings and seeds.
//   npx tsx scripts/recipe.ts --seed 1 --rl 150 [--model tiny] [--scaffolds a,b] [--lr 3e-4]
//     [--sft-lr 5e-3] [--target 0.99] [--noisy 300] [--eval 64] [--save warm.safetensors | --load warm.safetensors]
import { runLocalRollout, type LocalRollout } from '../lib/demo/localRollout.js';
import { modelConfig, type ModelSize } from '../lib/demo/models.js';
import { SCAFFOLDS, scaffoldSpec, scaffoldTask, type ScaffoldName } from '../lib/demo/scaffolds.js';
import { MALFORMED_CALL_REWARD } from '../lib/demo/sessionRunner.js';
import { warmStart } from '../lib/demo/warmStart.js';
import { NanoEngine } from '../lib/engine/index.js';
import { PolicyTrainer } from '../lib/model/trainer.js';
import type { Sample } from '../lib/prefixTree.js';
import { RewardModel } from '../lib/scheduler/rewards.js';

const argv = process.argv.slice(2);
const arg = (name: string) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : undefined;
};
const num = (name: string, d: number) => (arg(name) === undefined ? d : Number(arg(name)));
const seed = num('seed', 1);
const config = modelConfig((arg('model') ?? 'tiny') as ModelSize);
const scaffolds = (arg('scaffolds') ?? SCAFFOLDS.join(',')).split(',') as ScaffoldName[];
const t0 = performance.now(), cpu0 = process.cpuUsage();
const clock = () => {
  const c = process.cpuUsage(cpu0);
  return `${((performance.now() - t0) / 1000).toFixed(1)} s wall, ${((c.user + c.system) / 1e6).toFixed(1)} s cpu`;
};

let params: Float32Array, version: number;
if (arg('load')) {
  const t = await PolicyTrainer.load(arg('load')!);
  params = t.params;
  version = t.version;
} else {
  const w = await warmStart({
    config, scaffolds, seed, lr: num('sft-lr', 5e-3), targetAccuracy: num('target', 0.99), noisySteps: num('noisy', 300),
    onCheck: (step, acc) => console.log(`warm start ${step}: copy accuracy ${acc.toFixed(4)} (${clock()})`),
  });
  console.log(`warm start: ${w.cleanSteps} clean + ${w.steps - w.cleanSteps} noisy steps, per scaffold ${w.perScaffold.map((a) => a.toFixed(3)).join(' ')}`);
  ({ params, version } = w);
  if (arg('save')) await new PolicyTrainer({ config, params, version }).save(arg('save')!);
}

const engine = new NanoEngine({ config, params, version, cacheTokens: 1 << 16 });
const EVAL = num('eval', 64);
async function evaluate(label: string): Promise<number> {
  let total = 0;
  const parts: string[] = [];
  for (const name of scaffolds) {
    const runs = await Promise.all(Array.from({ length: EVAL }, (_, i) =>
      runLocalRollout(engine, scaffoldSpec(name), scaffoldTask(name, 'eval', seed, i), { seed: 7 + 31 * i })));
    const mean = (f: (r: LocalRollout) => number) => runs.reduce((a, r) => a + f(r), 0) / runs.length;
    const success = mean((r) => r.verdict.reward);
    total += success;
    parts.push(`${name} ${(100 * success).toFixed(0)}% turns ${mean((r) => r.result.turns).toFixed(2)} tools ${mean((r) => r.result.toolCalls).toFixed(2)} wasted ${mean((r) => r.verdict.wastedCalls).toFixed(2)}`);
  }
  console.log(`[${label}] ${(100 * total / scaffolds.length).toFixed(1)}% | ${parts.join(' | ')} | ${clock()}`);
  return total / scaffolds.length;
}

const before = await evaluate('warm');
const rl = new PolicyTrainer({ config, params, version, optimizer: { lr: num('lr', 3e-4) }, loss: { mode: 'cispo', epsHigh: 4 } });
const rewards = new RewardModel({ alpha: 0.1, beta: 0.3 });
const TASKS = num('tasks', 8), G = num('group', 8);
for (let step = 1, k = 0; step <= num('rl', 150); step++) {
  const groups = await Promise.all(Array.from({ length: TASKS }, async () => {
    const name = scaffolds[k % scaffolds.length];
    const task = scaffoldTask(name, 'train', seed, Math.floor(k++ / scaffolds.length));
    return { id: task.id, runs: await Promise.all(Array.from({ length: G }, () => runLocalRollout(engine, scaffoldSpec(name), task))) };
  }));
  const samples: Sample[] = [];
  let solved = 0, n = 0;
  for (const g of groups) {
    // The demo's rewards: outcome, -1 per malformed call (alpha 0.1), speed of solved runs only.
    const score = rewards.scoreGroup(g.id, g.runs.map((r) => ({
      perf: r.verdict.reward,
      process: r.calls.map((c) => (c.parseErrors > 0 ? MALFORMED_CALL_REWARD : 0)),
      seconds: r.verdict.correct ? r.seconds : undefined,
    })));
    g.runs.forEach((r, i) => {
      solved += r.verdict.reward;
      n++;
      r.calls.forEach((c, t) => {
        const tokens = Int32Array.from([...c.promptIds, ...c.completionIds]);
        const oldLogprobs = new Float32Array(tokens.length);
        oldLogprobs.set(Float32Array.from(c.logprobs), c.promptIds.length);
        samples.push({ tokens, trainable: new Uint8Array(tokens.length).fill(1, c.promptIds.length), oldLogprobs, advantage: score.sessions[i].advantages[t], version: c.versions[0] });
      });
    });
  }
  const r = await rl.step(samples);
  await engine.setWeights(rl.params, rl.version);
  if (step % 10 === 0) console.log(`rl ${step}: success ${(100 * solved / n).toFixed(0)}%, entropy ${r.stats.meanEntropy.toFixed(3)}, tree ${r.treeTokens}/${r.inputTokens} (${clock()})`);
}
const after = await evaluate('rl');
console.log(`change: ${(100 * (after - before)).toFixed(1)} points`);
engine.close();
