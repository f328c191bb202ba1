// `npm run demo` end to end, on loopback: warm start (trainer thread) -> engine + gateway (with the
// SQLite data pool) + agent programs -> evaluation on held-out tasks -> RL (rlLoop.ts: windowed-FIFO
// scheduler, batch builder, CISPO steps in the trainer thread, new weights to the engine after each)
// -> the same evaluation again -> run log, HTML report, summary table. With an external upstream the
// warm start and the trainer are skipped and every batch is exported as JSONL instead.
import { randomBytes } from 'node:crypto';
import { mkdirSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { BatchBuilder, PoolFeed, type TrajectoryRollout } from '../batch/index.js';
import { NanoEngine } from '../engine/index.js';
import type { GenerateResult } from '../engine/types.js';
import { createGateway } from '../gateway/server.js';
import { EngineUpstream, type TokenGenerator } from '../gateway/engineUpstream.js';
import { OpenAICompatibleUpstream } from '../gateway/openaiUpstream.js';
import { ServedVersion } from '../gateway/servedVersion.js';
import type { Upstream } from '../gateway/upstream.js';
import { NanoPolicy } from '../model/policy.js';
import { SqliteStore } from '../pool/sqliteStore.js';
import { RunLogWriter, machineInfo } from '../report/runLog.js';
import { RewardModel } from '../scheduler/rewards.js';
import { WindowedFifoScheduler } from '../scheduler/windowedFifo.js';
import { AgentPool } from './agentPool.js';
import { BatchExporter } from './batchExport.js';
import { DemoReporter } from './reporter.js';
import { cpuSeconds, type CpuTime } from './cpu.js';
import { evaluate } from './evaluate.js';
import { modelConfig } from './models.js';
import { resolveOptions, type DemoOptions } from './options.js';
import { runRlLoop, successSeconds, type RlStep } from './rlLoop.js';
import { GatewayAdmin } from './sessionRunner.js';
import { TrainerClient } from './trainerClient.js';

export interface DemoHooks {
  /** Each finished engine generation (tests compare it with what was trained). */
  onGenerate?: (promptIds: Int32Array, result: GenerateResult) => void;
  /** Each RL step, after training (or export). */
  onStep?: (step: RlStep) => void;
  /** Where progress and the summary go; default process.stdout. false: nowhere. */
  output?: { write(s: string): unknown; isTTY?: boolean } | false;
}

export interface DemoResult {
  options: DemoOptions;
  logPath: string;
  reportPath: string;
  summary: string;
  steps: number;
  wallSeconds: number;
  /** CPU seconds: this process, and its exited children (trainer, agent programs). */
  cpu: CpuTime;
}

/** Wraps a generator so that every finished generation is also handed to `hook`. */
export function observedGenerator(inner: TokenGenerator, hook: (promptIds: Int32Array, r: GenerateResult) => void): TokenGenerator {
  return {
    get version() {
      return inner.version;
    },
    generate(promptIds, options) {
      const g = inner.generate(promptIds, options);
      g.result.then((r) => hook(promptIds, r), () => {});
      return g;
    },
  };
}

export async function runDemo(partial: Partial<DemoOptions> = {}, hooks: DemoHooks = {}): Promise<DemoResult> {
  const o = resolveOptions(partial);
  const t0 = Date.now(), cpu0 = cpuSeconds();
  const deadline = t0 + o.minutes * 60_000;
  const out = resolve(o.out);
  mkdirSync(out, { recursive: true });
  const logPath = join(out, 'run.jsonl');
  rmSync(logPath, { force: true });
  for (const f of ['pool.sqlite', 'pool.sqlite-wal', 'pool.sqlite-shm', 'batches.jsonl']) rmSync(join(out, f), { force: true });
  const config = modelConfig(o.model);
  const policy = new NanoPolicy(config);
  const external = o.upstreamUrl !== undefined;
  const log = RunLogWriter.open(logPath);
  const reporter = new DemoReporter(log, o, hooks.output === false ? undefined : hooks.output ?? process.stdout);
  log.write({
    type: 'run', logVersion: 1, seed: o.seed, options: { ...o }, model: { config: { ...policy.config }, params: policy.numParams },
    scaffolds: [...o.scaffolds],
    scheduler: { mode: o.mode, window: o.mode === 'windowed' ? o.window ?? Math.ceil(0.3 * o.capacity) : undefined, capacity: o.capacity, groupSize: o.groupSize, batchGroups: o.groupsPerStep, maxLag: o.maxLag },
    machine: machineInfo(), startedAt: new Date(t0).toISOString(),
  });

  const trainer = external ? undefined : new TrainerClient();
  let pool: SqliteStore | undefined, agents: AgentPool | undefined, engine: NanoEngine | undefined;
  let gateway: ReturnType<typeof createGateway> | undefined;
  let cpu: CpuTime = { self: NaN, children: NaN };
  let steps = 0, status: 'completed' | 'failed' | 'interrupted' = 'completed', error: string | undefined;
  try {
    // Warm start: its clean phase stops at 40% of the budget at the latest.
    let params = policy.init(o.seed), version = 0;
    if (trainer) {
      reporter.phase('warm-start', o.warmStart.maxSteps + o.warmStart.noisySteps);
      const warm = await trainer.warmStart(
        { config, scaffolds: o.scaffolds, seed: o.seed, ...o.warmStart, deadline: t0 + o.minutes * 60_000 * 0.4 },
        (p) => reporter.warmProgress(p),
      );
      params = warm.params;
      version = warm.version;
      reporter.warmDone(warm);
      await trainer.initRl({ config, params, version, lr: o.rl.lr, epsHigh: o.rl.epsHigh });
    }

    pool = await SqliteStore.open(join(out, 'pool.sqlite'));
    const served = new ServedVersion(version);
    let upstream: Upstream;
    if (external) {
      upstream = new OpenAICompatibleUpstream({ baseURL: o.upstreamUrl!, model: o.upstreamModel ?? 'default', version: served.read });
    } else {
      engine = new NanoEngine({ config, params, version, cacheTokens: 1 << 16 });
      upstream = new EngineUpstream({ generator: hooks.onGenerate ? observedGenerator(engine, hooks.onGenerate) : engine });
    }
    const adminToken = `admin-${randomBytes(18).toString('base64url')}`;
    gateway = createGateway({ upstream, adminToken, pool, servedVersion: external ? served : undefined, metrics: { enabled: false } });
    const admin = new GatewayAdmin(await gateway.listen({ port: 0 }), adminToken);
    agents = new AgentPool({ maxConcurrent: o.concurrency });
    await agents.start(o.scaffolds);
    const evalCommon = { admin, pool, agents, scaffolds: o.scaffolds, seed: o.seed, tasksPerScaffold: o.evalTasks };

    const evalStart = Date.now();
    reporter.phase('eval-initial', o.evalTasks * o.scaffolds.length);
    reporter.evalDone('eval-initial', await evaluate({ ...evalCommon, phase: 'eval-initial', onRun: (r) => reporter.evalRun('eval-initial', r) }));
    const evalSeconds = (Date.now() - evalStart) / 1000;

    // RL until the budget leaves just enough for the final evaluation.
    const scheduler = new WindowedFifoScheduler<TrajectoryRollout>({
      capacity: o.capacity, mode: o.mode, window: o.mode === 'windowed' ? o.window : undefined,
      staleness: { maxLag: o.maxLag }, initialVersion: version,
    });
    const feed = new PoolFeed({ store: pool, scheduler, pollIntervalMs: 0 });
    const builder = new BatchBuilder({
      tokenBudget: 1 << 15, vocabSize: policy.config.vocabSize, sessionSeconds: successSeconds,
      rewards: new RewardModel({ alpha: o.rewards.alpha, beta: o.rewards.beta }),
    });
    const exporter = external ? new BatchExporter(join(out, 'batches.jsonl')) : undefined;
    reporter.phase('rl', o.rlSteps);
    try {
      steps = await runRlLoop({
        admin, pool, agents, scheduler, feed, builder, scaffolds: o.scaffolds, seed: o.seed,
        groupSize: o.groupSize, groupsPerStep: o.groupsPerStep, maxSteps: o.rlSteps,
        deadline: deadline - (evalSeconds * 1.3 + 20) * 1000,
        onSession: (run) => reporter.rlSession(run),
        train: async (step) => {
          if (exporter) {
            exporter.write(step);
            reporter.step(step, undefined, scheduler);
          } else {
            const { result, params: next } = await trainer!.step(step.batch);
            // The scheduler hears of the version first: the feed delivers no rollout of a version it does not know.
            scheduler.setPolicyVersion(result.version);
            await engine!.setWeights(next, result.version);
            reporter.step(step, result, scheduler);
          }
          hooks.onStep?.(step);
        },
      });
    } finally {
      await feed.close();
      scheduler.close();
      exporter?.close();
    }

    reporter.phase('eval-final', o.evalTasks * o.scaffolds.length);
    reporter.evalDone('eval-final', await evaluate({ ...evalCommon, phase: 'eval-final', onRun: (r) => reporter.evalRun('eval-final', r) }));
    if (trainer) await trainer.save(join(out, 'policy.safetensors'));
  } catch (e) {
    status = 'failed';
    error = (e as Error)?.stack ?? String(e);
    throw e;
  } finally {
    await agents?.close().catch(() => {});
    await gateway?.close().catch(() => {});
    engine?.close();
    await pool?.close().catch(() => {});
    await trainer?.close().catch(() => {});
    const now = cpuSeconds();
    cpu = { self: now.self - cpu0.self, children: now.children - cpu0.children };
    reporter.end(status, (Date.now() - t0) / 1000, error, trainer && status === 'completed' ? join(out, 'policy.safetensors') : undefined);
    log.close();
    reporter.finish(cpu);
  }
  return {
    options: o, logPath, reportPath: reporter.reportPath!, summary: reporter.summary ?? '', steps,
    wallSeconds: (Date.now() - t0) / 1000, cpu,
  };
}
