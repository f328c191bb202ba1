// CISPO loss + gradient: the fused kernel (forge_cispo_loss: one online pass per row, then the
// gradient write) against the two-pass baseline (forge_bench_cispo_two_pass: materialises the [N, V]
// float32 softmax, then reads loss and gradient from it), same compiler, flags, vector width and
// threads, measured in the same run. Both write dlogits into a preallocated array, so the timings are
// the kernels' alone. Memory: the workspace bytes each allocates, and the peak RSS growth of one call
// measured in a fresh child process per variant (VmHWM from /proc/self/status).
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { type Bench, type BenchSection, fmt, rng, time } from './harness.js';
import { addon, nativeInfo } from '../lib/native.js';

const packageRoot = join(dirname(fileURLToPath(import.meta.url)), '..');

interface Problem {
  N: number;
  V: number;
  logits: Float32Array;
  node: Int32Array;
  target: Int32Array;
  oldLogprob: Float32Array;
  advantage: Float32Array;
}

/** Tree-node logits and terms as a prefix-tree batch gives them: most rows predict one token, a few
 * branch (2-4 terms), ~30% carry none (prompt / tool-output nodes). Logits are uniform in [-8, 8). */
function problem(N: number, V: number, seed: number): Problem {
  const rand = rng(seed);
  const logits = new Float32Array(N * V);
  for (let i = 0; i < logits.length; i++) logits[i] = rand() * 16 - 8;
  const node: number[] = [];
  for (let n = 0; n < N; n++) {
    const u = rand();
    const count = u < 0.3 ? 0 : u < 0.9 ? 1 : 2 + Math.floor(rand() * 3);
    for (let k = 0; k < count; k++) node.push(n);
  }
  const J = node.length;
  return {
    N,
    V,
    logits,
    node: Int32Array.from(node),
    target: Int32Array.from({ length: J }, () => Math.floor(rand() * V)),
    oldLogprob: Float32Array.from({ length: J }, () => -Math.log(V) + (rand() - 0.5)),
    advantage: Float32Array.from({ length: J }, () => rand() * 2 - 1),
  };
}

function call(fn: 'cispoLoss' | 'benchCispoTwoPass', p: Problem, out: Float32Array) {
  // CISPO defaults: no lower bound, upper bound 1 + 4; Z = number of terms.
  const { logits, V, node, target, oldLogprob, advantage } = p;
  return addon[fn](logits, V, node, target, oldLogprob, advantage, 0, Infinity, 4, 0, true, false, out, false);
}

// One kernel call in a fresh process: how much the peak RSS grows over what the inputs and output
// already hold (all touched before the call).
const CHILD = `
  import { createRequire } from 'node:module';
  import { readFileSync } from 'node:fs';
  const [root, fn, N, V] = [process.argv[1], process.argv[2], Number(process.argv[3]), Number(process.argv[4])];
  const addon = createRequire(root + '/')('node-gyp-build')(root);
  const kib = (key) => Number(readFileSync('/proc/self/status', 'utf8').match(new RegExp(key + ':\\\\s+(\\\\d+)'))[1]);
  const logits = new Float32Array(N * V);
  for (let i = 0; i < logits.length; i++) logits[i] = ((i * 2654435761) % 65536) / 4096 - 8;
  const out = new Float32Array(N * V).fill(1);
  const node = Int32Array.from({ length: N }, (_, n) => n);
  const target = node.map((n) => (n * 7919) % V);
  const old = new Float32Array(N).fill(-Math.log(V)), adv = new Float32Array(N).fill(0.5);
  const before = kib('VmHWM');
  addon[fn](logits, V, node, target, old, adv, 0, Infinity, 4, 0, true, false, out, false);
  process.stdout.write(JSON.stringify({ before, after: kib('VmHWM') }));`;

function peakGrowthMiB(fn: string, N: number, V: number): number {
  const run = spawnSync(process.execPath, ['--input-type=module', '-e', CHILD, packageRoot, fn, String(N), String(V)], {
    encoding: 'utf8',
  });
  if (run.status !== 0) throw new Error(`RSS child for ${fn} failed: ${run.stderr}`);
  const { before, after } = JSON.parse(run.stdout) as { before: number; after: number };
  return (after - before) / 1024;
}

const MiB = (bytes: number) => bytes / 2 ** 20;

export const bench: Bench = async ({ quick, log }) => {
  const sizes = quick
    ? [
        [64, 32_768],
        [128, 151_936],
      ]
    : [
        [512, 32_768],
        [2048, 32_768],
        [512, 151_936],
        [2048, 151_936],
      ];
  const canMeasureRss = (() => {
    try {
      return /VmHWM/.test(readFileSync('/proc/self/status', 'utf8'));
    } catch {
      return false;
    }
  })();
  const timeRows: (string | number)[][] = [];
  const memoryRows: (string | number)[][] = [];
  for (const [N, V] of sizes) {
    log(`N=${N} V=${V}: generating`);
    const p = problem(N, V, N ^ V);
    const out = new Float32Array(N * V).fill(1);
    const repeats = N * V > 1e8 ? 3 : 5;
    const fused = await time(() => call('cispoLoss', p, out), { warmup: 1, repeats, minMs: 300 });
    const twoPass = await time(() => call('benchCispoTwoPass', p, out), { warmup: 1, repeats, minMs: 300 });
    const a = call('cispoLoss', p, out), b = call('benchCispoTwoPass', p, out);
    if (Math.abs(a.loss - b.loss) > 1e-4 * (Math.abs(a.loss) + 1e-6))
      throw new Error(`loss mismatch: fused ${a.loss}, two-pass ${b.loss}`);
    const gbPerS = (ms: number) => (2 * 4 * N * V) / (ms * 1e6); // logits read + dlogits written, once each
    log(`  fused ${fmt(fused.medianMs)} ms, two-pass ${fmt(twoPass.medianMs)} ms`);
    timeRows.push([
      `${N} x ${V}`,
      p.node.length,
      fmt(fused.medianMs),
      fmt(twoPass.medianMs),
      `**${fmt(twoPass.medianMs / fused.medianMs)}x**`,
      fmt(gbPerS(fused.medianMs)),
      fmt(gbPerS(twoPass.medianMs)),
    ]);

    const wsFused = addon.benchCispoFusedWorkspace(N, V, p.node.length) as number;
    const wsTwoPass = b.workspaceBytes as number;
    const row: (string | number)[] = [`${N} x ${V}`, fmt(MiB(wsFused)), fmt(MiB(wsTwoPass))];
    row.push(`${fmt(wsTwoPass / wsFused)}x`);
    if (canMeasureRss) {
      log('  peak RSS children');
      const rssFused = peakGrowthMiB('cispoLoss', N, V);
      const rssTwoPass = peakGrowthMiB('benchCispoTwoPass', N, V);
      row.push(fmt(rssFused), fmt(rssTwoPass), fmt(MiB(4 * N * V)));
    }
    memoryRows.push(row);
  }
  const threads = nativeInfo().numThreads;
  const rssColumns = ['fused peak RSS growth MiB', 'two-pass peak RSS growth MiB', 'one [N, V] float32 MiB'];
  const sections: BenchSection[] = [
    {
      title: 'CISPO loss + gradient: fused online pass vs two-pass softmax',
      description:
        `forge_cispo_loss against forge_bench_cispo_two_pass (materialised [N, V] float32 softmax), CISPO ` +
        `mode, ~0.9 terms per row, both writing dlogits into a preallocated array; ${threads} kernel threads, ` +
        'median of repeated runs. GB/s: logits read + dlogits written, once each, per second.',
      columns: ['N x V', 'terms', 'fused ms', 'two-pass ms', 'speed-up', 'fused GB/s', 'two-pass GB/s'],
      rows: timeRows,
      notes: [
        'The baseline keeps its softmax buffer from call to call (as a caching allocator would), so it pays ' +
          'no page faults for it after the first call: the speed-up is that of the passes alone.',
      ],
    },
    {
      title: 'CISPO loss + gradient: memory beyond inputs and outputs',
      description:
        'Workspace: bytes each variant allocates (fused: an upper bound, mostly one row of exponentials per ' +
        'thread). Peak RSS growth: VmHWM after one call minus before it, in a fresh process per variant with ' +
        'logits and dlogits already resident (0: below the peak the process had already reached).',
      columns: ['N x V', 'fused workspace MiB', 'two-pass workspace MiB', 'ratio'].concat(canMeasureRss ? rssColumns : []),
      rows: memoryRows,
      notes: canMeasureRss ? undefined : ['/proc/self/status is not readable here: peak RSS not measured.'],
    },
  ];
  return sections;
};
