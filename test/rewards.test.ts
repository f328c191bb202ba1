// Rewards and advantages (contract 5): hand-computed cases, then random groups against the plain
// float64 reference in test/reference/rewards.ts, the running median against a sort, and argument
// checking. Failures print the seed; replay with FORGE_TEST_SEED=<seed>.
import { describe, expect, it } from 'vitest';

import { gauss, seededRun, type Rng } from './helpers/random.js';
import { naiveMedian, refGroup, refSpeed } from './reference/rewards.js';
import { RewardModel, RunningMedian, SpeedBaselines, groupAdvantages, speedReward } from '../lib/scheduler/rewards.js';
import type { SessionOutcome } from '../lib/scheduler/types.js';

const { rng: makeRng, fail, why } = seededRun();
const int = (rand: Rng, lo: number, hi: number) => lo + Math.floor(rand() * (hi - lo + 1));

function close(actual: ArrayLike<number>, expected: ArrayLike<number>, what: string, tol = 1e-9): void {
  if (actual.length !== expected.length) fail(`${what}: length ${actual.length}, expected ${expected.length}`);
  for (let i = 0; i < expected.length; i++) {
    const e = expected[i];
    if (!(Math.abs(actual[i] - e) <= tol * Math.max(1, Math.abs(e)))) fail(`${what}[${i}]: got ${actual[i]}, expected ${e}`);
  }
}

describe('rewards: hand-computed cases', () => {
  it('outcome only: (R - B) / std on every call', () => {
    const m = new RewardModel({ eps: 0 });
    const g = m.scoreGroup('t', [{ perf: 1 }, { perf: 0 }, { perf: 0, calls: 3 }, { perf: 1 }]);
    expect(g.baseline).toBe(0.5);
    expect(g.std).toBe(0.5);
    expect(g.sessions.map((s) => [...s.advantages])).toEqual([[1], [-1], [-1, -1, -1], [1]]);
    // The default eps keeps the division finite: (1 - 0.5) / (0.5 + 1e-6).
    const d = new RewardModel().scoreGroup('t', [{ perf: 1 }, { perf: 0 }]);
    close(d.sessions[0].advantages, [0.5 / 0.500001], 'eps');
  });

  it('process rewards give each call its reward-to-go', () => {
    // alpha 0.2: s0 calls get [0.1, -0.2, 0 + perf 1] (total 0.9), s1 [0, 0]; B = 0.45, std = 0.45.
    const sessions: SessionOutcome[] = [
      { perf: 1, process: [0.5, -1, 0] },
      { perf: 0, process: [0, 0] },
    ];
    const raw = new RewardModel({ alpha: 0.2, normalize: false }).scoreGroup('t', sessions);
    close(raw.sessions[0].callRewards, [0.1, -0.2, 1], 'call rewards');
    close([raw.sessions[0].total, raw.sessions[1].total], [0.9, 0], 'totals');
    close(raw.sessions[0].advantages, [0.45, 0.35, 0.55], 'reward-to-go - B');
    close(raw.sessions[1].advantages, [-0.45, -0.45], 'reward-to-go - B');
    expect(raw.scale).toBe(1);
    const norm = new RewardModel({ alpha: 0.2, eps: 0 }).scoreGroup('t', sessions);
    close(norm.sessions[0].advantages, [1, 0.35 / 0.45, 0.55 / 0.45], 'normalised');
    close([norm.std], [0.45], 'std');
  });

  it('speed: h(T / running median), decreasing, clamped, 0 at the baseline', () => {
    const m = new RewardModel({ beta: 0.5, eps: 0 });
    m.scoreGroup('task', [{ perf: 0, seconds: 10 }, { perf: 0, seconds: 30 }, { perf: 0, seconds: 20 }]);
    // Baseline after observing the new group: median of [10, 30, 20, 20, 40] = 20.
    const g = m.scoreGroup('task', [{ perf: 1, seconds: 20 }, { perf: 1, seconds: 40 }]);
    expect(g.speedBaseline).toBe(20);
    close(g.sessions.map((s) => s.speed), [0, -Math.log(2)], 'speed');
    close(g.sessions.map((s) => s.total), [1, 1 - 0.5 * Math.log(2)], 'totals');
    close(g.sessions.map((s) => s.advantages[0]), [1, -1], 'advantages');
    // Another task has its own baseline: a first sighting scores 0.
    expect(m.scoreGroup('other', [{ perf: 0, seconds: 99 }]).sessions[0].speed).toBe(0);
    expect(speedReward(2, 'linear')).toBe(-1);
    expect(speedReward(3, 'linear')).toBe(-1); // clamped
    expect(speedReward(0.25, 'log', 0.5)).toBe(0.5);
    expect(speedReward(0.5, 'linear')).toBe(0.5);
    expect(speedReward(2, (x) => 1 / x)).toBe(0.5);
    for (const shape of ['log', 'linear'] as const)
      for (let x = 0.05; x < 5; x *= 1.3) expect(speedReward(x * 1.3, shape, 10)).toBeLessThan(speedReward(x, shape, 10));
  });

  it('a group of identical rewards gives zeros, not NaN', () => {
    for (const sessions of [[{ perf: 0.1 }, { perf: 0.1 }, { perf: 0.1 }], [{ perf: 7 }], [{ perf: 0.3, calls: 2 }, { perf: 0.3, calls: 2 }]]) {
      const g = new RewardModel().scoreGroup('t', sessions);
      expect(g.std).toBe(0);
      for (const s of g.sessions) for (const a of s.advantages) expect(a).toBe(0);
    }
    // Equal totals, different paths: std 0 leaves the centred reward-to-go unscaled.
    const g = new RewardModel({ alpha: 1 }).scoreGroup('t', [{ perf: 0, process: [1, -1] }, { perf: 0, process: [0, 0] }]);
    expect(g.scale).toBe(1);
    expect(g.sessions.map((s) => [...s.advantages])).toEqual([[0, -1], [0, 0]]);
  });
});

describe('rewards: randomized against the reference', () => {
  it('running median equals a sorted window after every push', () => {
    const rand = makeRng();
    for (let run = 0; run < 200; run++) {
      const window = rand() < 0.2 ? Infinity : int(rand, 1, 12);
      const m = new RunningMedian(window);
      const history: number[] = [];
      for (let i = int(rand, 1, 80); i > 0; i--) {
        const v = rand() < 0.5 ? int(rand, 0, 5) : gauss(rand) * 100; // duplicates and spread
        m.push(v);
        history.push(v);
        if (m.median !== naiveMedian(history, window)) fail(`median window=${window} after ${history.length} pushes: ${m.median} vs ${naiveMedian(history, window)}`);
      }
      expect(m.size).toBe(Math.min(window, history.length));
    }
    expect(new RunningMedian().median).toBeNaN();
  });

  it('scores random groups as the plain formula does (speed baselines per task)', () => {
    const rand = makeRng();
    for (let run = 0; run < 60; run++) {
      const alpha = rand() * 2, beta = rand(), eps = rand() < 0.5 ? 0 : 1e-6;
      const shape = rand() < 0.5 ? ('log' as const) : ('linear' as const);
      const clip = 0.2 + rand() * 2, window = int(rand, 1, 9), normalize = rand() < 0.8;
      const m = new RewardModel({ alpha, beta, eps, speedShape: shape, speedClip: clip, baselineWindow: window, normalize });
      const history = new Map<string, number[]>();
      for (let step = 0; step < 20; step++) {
        const task = `task${int(rand, 0, 3)}`;
        const sessions: SessionOutcome[] = Array.from({ length: int(rand, 1, 8) }, () => {
          const s: SessionOutcome = { perf: gauss(rand) };
          if (rand() < 0.6) s.process = Array.from({ length: int(rand, 1, 6) }, () => gauss(rand));
          else if (rand() < 0.5) s.calls = int(rand, 1, 4);
          if (rand() < 0.8) s.seconds = Math.exp(gauss(rand));
          return s;
        });
        const h = history.get(task) ?? [];
        for (const s of sessions) if (s.seconds !== undefined) h.push(s.seconds);
        history.set(task, h);
        const base = h.length ? naiveMedian(h, window) : undefined;
        const ref = refGroup(
          sessions.map((s) => ({ ...s, process: s.process ? [...s.process] : undefined, speed: s.seconds !== undefined && base !== undefined ? refSpeed(s.seconds / base, shape, clip) : 0 })),
          alpha,
          beta,
          eps,
          normalize,
        );
        const got = m.scoreGroup(task, sessions);
        const what = `run ${run} step ${step}`;
        if (base !== undefined) close([got.speedBaseline!], [base], `${what} baseline`, 0);
        close(got.sessions.map((s) => s.total), ref.totals, `${what} totals`);
        close([got.baseline, got.std], [ref.baseline, ref.std], `${what} B, std`);
        got.sessions.forEach((s, i) => close(s.advantages, ref.advantages[i], `${what} session ${i} advantages`, 1e-8));
        got.sessions.forEach((s, i) => close([s.callRewards.reduce((a, b) => a + b, 0)], [s.total], `${what} session ${i} sum of call rewards`));
      }
    }
  });

  it('normalised advantages of first calls have mean 0 and std ~1 per group', () => {
    const rand = makeRng();
    for (let run = 0; run < 50; run++) {
      const G = int(rand, 2, 16);
      const totals = Array.from({ length: G }, () => [gauss(rand) * 5 + 3]);
      const { advantages } = groupAdvantages(totals, { eps: 0 });
      const a = advantages.map((x) => x[0]);
      const mean = a.reduce((s, x) => s + x, 0) / G;
      const std = Math.sqrt(a.reduce((s, x) => s + (x - mean) ** 2, 0) / G);
      expect(Math.abs(mean), why('mean')).toBeLessThan(1e-12);
      expect(Math.abs(std - 1), why('std')).toBeLessThan(1e-12);
    }
  });
});

describe('rewards: argument checking', () => {
  it('names the argument and the expected value', () => {
    const m = new RewardModel();
    expect(() => m.scoreGroup('t', [])).toThrow(/sessions: expected a non-empty array/);
    expect(() => m.scoreGroup('t', [{ perf: NaN }])).toThrow(/sessions\[0\]\.perf: expected a finite number, got NaN/);
    expect(() => m.scoreGroup('t', [{ perf: 0 }, { perf: 0, process: [] }])).toThrow(/sessions\[1\]\.process/);
    expect(() => m.scoreGroup('t', [{ perf: 0, process: [0, Infinity] }])).toThrow(/sessions\[0\]\.process\[1\]/);
    expect(() => m.scoreGroup('t', [{ perf: 0, process: [0], calls: 2 }])).toThrow(/sessions\[0\]\.calls: 2 disagrees/);
    expect(() => m.scoreGroup('t', [{ perf: 0, calls: 0 }])).toThrow(/sessions\[0\]\.calls/);
    expect(() => m.scoreGroup('t', [{ perf: 0, seconds: 0 }])).toThrow(/sessions\[0\]\.seconds: expected a number > 0/);
    expect(() => m.scoreGroup(3 as unknown as string, [{ perf: 0 }])).toThrow(/taskId/);
    expect(() => new RewardModel({ alpha: NaN })).toThrow(/options\.alpha/);
    expect(() => new RewardModel({ speedShape: 'cubic' as 'log' })).toThrow(/options\.speedShape/);
    expect(() => new RewardModel({ baselineWindow: 0 })).toThrow(/window/);
    expect(() => speedReward(-1)).toThrow(/ratio: expected a number > 0/);
    expect(() => speedReward(1, () => NaN)).toThrow(/speedShape\(1\)/);
    expect(() => new SpeedBaselines().observe('t', Infinity)).toThrow(/seconds/);
    expect(() => groupAdvantages([[1], []])).toThrow(/callRewards\[1\]/);
    expect(() => new RunningMedian(1.5)).toThrow(/window/);
  });
});
