// The GPU bench (bench/gpu/) run on the CPU emulator of the CUDA kernels (cuda/simt/), so that the
// program that will get a few minutes of a lent GPU has already built and passed every one of its
// checks here: `bash bench/gpu/run.sh --emulator` builds forge_gpu_bench and libforge_kernels for the
// emulator (bench/gpu/build-simt, incremental after the first build) and runs each section with
// --smoke (tiny problems, every device kernel against its CPU kernel, every timing path once). Needs
// the CUDA toolkit's headers and CMake, not a GPU; without them the describe name says what is missing.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';

import { seededRun } from './helpers/random.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const runScript = join(root, 'bench', 'gpu', 'run.sh');

function missing(): string | null {
  const home = process.env.CUDA_PATH ?? process.env.CUDA_HOME ?? '/usr/local/cuda';
  const nvcc = spawnSync('nvcc', ['--version'], { stdio: 'ignore' }).status === 0;
  if (!nvcc && !existsSync(join(home, 'include', 'cuda_runtime.h'))) return 'no CUDA toolkit headers (nvcc)';
  if (spawnSync('cmake', ['--version'], { stdio: 'ignore' }).status !== 0) return 'no cmake';
  return null;
}

const why = missing();
const title = why
  ? `the GPU bench on the CPU emulator (skipped: ${why})`
  : 'the GPU bench on the CPU emulator (bash bench/gpu/run.sh --emulator)';

interface Check { section: string; name: string; dtype: string; output: string; rel_err: number | null; pass: boolean }
interface Timing { section: string; name: string; median_ms: number | null; ratio: number | null; emulated: boolean }
interface SectionResult {
  sections: string;
  smoke: boolean;
  emulator: boolean;
  device: { name: string };
  ceilings: { gemm_tflops: number | null; gemm_note: string };
  checks: Check[];
  timings: Timing[];
  targets: unknown[];
  notes: string[];
  errors: string[];
  failed: boolean;
}

// What each section must have checked, by name: every kernel, dtype and special case of its --smoke
// plan (a case that threw would be missing here and listed in `errors`).
const expectedChecks: Record<string, RegExp[]> = {
  layout: [
    /^convert f32->bf16$/, /^convert f32->f16$/, /^convert bf16->f32$/, /^convert f16->f32$/, /^convert bf16->f16$/,
    /^gather_to_samples .* C=37$/, /^gather_to_samples .* C=128$/, /^scatter_from_samples .* C=37$/,
    /^scatter_from_samples .* C=128$/, /^convert f32->bf16 n=\d+ \(all written\)$/,
  ],
  merge: [/^merge_states rows=\d+ H=8 D=128$/, /^merge_states rows=\d+ H=4 D=64$/, /^merge_states in place /, /^merge_states_csr /],
  cispo: [/^cispo N=/, /^ppo-clip N=/, /^cross-entropy N=/, / Z=\d+$/, /^cispo in place /, /^cispo fwd\+bwd .*\(all written\)$/],
  attention: [
    /^random forks .* Hkv=2 D=64 fwd$/, /^random forks .* D=128 bwd$/, /^random forks .* fwd rerun$/, /^chain N=1 /,
    /^chain N=65 /, /^agent tree .* scale=/, /^tree bwd .*\(all written\)$/, /^causal fwd .*\(all written\)$/,
  ],
};

describe.skipIf(why !== null)(title, () => {
  const run = seededRun();
  const out = mkdtempSync(join(tmpdir(), 'forge-gpu-bench-emu-'));
  afterAll(() => rmSync(out, { recursive: true, force: true }));

  it('builds, and every section passes all its checks, with host times never passed off as GPU results', () => {
    const result = spawnSync('bash', [runScript, '--emulator'], {
      encoding: 'utf8',
      timeout: 290_000, // the first build dominates; a hang in a section is cut by run.sh's own limit
      env: { ...process.env, OUT: out, FORGE_TEST_SEED: String(run.seed), FORGE_COMMIT: 'test' },
    });
    const stdout = result.stdout ?? '';
    const log = existsSync(join(out, 'gpu_bench.log')) ? readFileSync(join(out, 'gpu_bench.log'), 'utf8') : '';
    const because = run.why(`exit ${result.status} signal ${result.signal}\n${stdout.slice(-4000)}\n${log.slice(-4000)}`);
    expect(result.error, because).toBeUndefined();
    expect(result.status, because).toBe(0);
    expect(stdout, because).toContain('RESULT: all correctness checks passed');

    const lines = readFileSync(join(out, 'gpu_bench.jsonl'), 'utf8').split('\n').filter((l) => l.trim());
    const results = lines.map((l) => JSON.parse(l) as SectionResult);
    expect(results.map((r) => r.sections)).toEqual(['layout', 'merge', 'cispo', 'attention']);
    for (const r of results) {
      const where = run.why(`section ${r.sections}`);
      expect(r.device.name, where).toContain('emulator');
      expect(r.emulator && r.smoke, where).toBe(true);
      expect(r.errors, where).toEqual([]);
      expect(r.failed, where).toBe(false);
      const bad = r.checks.filter((c) => !c.pass).map((c) => `${c.name} [${c.dtype} ${c.output}] ${c.rel_err}`);
      expect(bad, where).toEqual([]);
      const names = r.checks.map((c) => c.name);
      for (const want of expectedChecks[r.sections])
        expect(names.some((n) => want.test(n)), `${where}: a check matching ${want} in ${names.join(' | ')}`).toBe(true);
      // Timed too, but as host time: marked emulated, no ratio to a ceiling, no target judged, no cuBLAS.
      expect(r.timings.length, where).toBeGreaterThan(0);
      for (const t of r.timings) {
        expect(t.emulated, `${where}: ${t.name}`).toBe(true);
        expect(t.ratio, `${where}: ${t.name}`).toBe(0);
        expect(t.median_ms, `${where}: ${t.name}`).toBeGreaterThan(0);
      }
      expect(r.targets, where).toEqual([]);
      expect(r.ceilings.gemm_tflops, where).toBe(0);
      expect(r.ceilings.gemm_note, where).toContain('emulator');
    }
    // Every dtype and both head dims of the attention kernels, forward and backward.
    const attention = results[3].checks;
    for (const dtype of ['bf16', 'f16', 'f32'])
      for (const d of ['D=64', 'D=128'])
        for (const pass of ['fwd', 'bwd'])
          expect(attention.some((c) => c.dtype === dtype && c.name.includes(d) && c.name.endsWith(pass)),
            run.why(`attention ${dtype} ${d} ${pass}`)).toBe(true);
    expect(results[2].notes.concat(results[3].notes).some((n) => /not judged on the CPU emulator/.test(n))).toBe(true);
    expect(readFileSync(join(out, 'results.md'), 'utf8')).toContain('ON THE CPU EMULATOR');
  }, 300_000);

  it('refuses --quick with --emulator, and forge_gpu_bench --smoke with --quick, naming the conflict', () => {
    const script = spawnSync('bash', [runScript, '--emulator', '--quick'], { encoding: 'utf8', env: { ...process.env, OUT: out } });
    expect(script.status).toBe(2);
    expect(script.stderr).toContain('--quick and --emulator: choose one');
    const bin = join(root, 'bench', 'gpu', 'build-simt', 'forge_gpu_bench');
    const direct = spawnSync(bin, ['--smoke', '--quick'], { encoding: 'utf8' });
    expect(direct.status).toBe(2);
    expect(direct.stderr).toContain('--quick and --smoke: choose one');
  });
});
