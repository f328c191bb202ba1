// The windowed-FIFO scheduler (contract 4): randomized runs against the plain model in
// test/reference/scheduler.ts plus the invariants checked directly (never beyond the window, head
// moves only on consumption, each task consumed once, lag bound, W = 1 is FIFO, W = N is completion
// order), the async API, and argument checking. Failures print the seed; replay with
// FORGE_TEST_SEED=<seed>.
import { describe, expect, it } from 'vitest';

import { seededRun, type Rng } from './helpers/random.js';
import { ReferenceWindowedFifo, type RefOutcome } from './reference/scheduler.js';
import { SchedulerError, WindowedFifoScheduler } from '../lib/scheduler/windowedFifo.js';
import { type GroupRelease, type PickOrder, type SchedulerMode, SchedulerErrorCode, type StaleAction } from '../lib/scheduler/types.js';

const { rng: makeRng, fail, why } = seededRun();
const int = (rand: Rng, lo: number, hi: number) => lo + Math.floor(rand() * (hi - lo + 1));

interface Roll {
  version: number;
  tag: string;
}

interface RunSpec {
  N: number;
  mode: SchedulerMode;
  order: PickOrder;
  W: number;
  maxLag: number;
  action: StaleAction;
  minGroupSize: number;
  tasks: number;
  abortRate: number;
}

function randomSpec(rand: Rng): RunSpec {
  const N = int(rand, 1, 16);
  const mode: SchedulerMode = (['windowed', 'fifo', 'greedy'] as const)[int(rand, 0, 2)];
  const W = mode === 'fifo' ? 1 : mode === 'greedy' ? Infinity : int(rand, 1, N + 2);
  return {
    N,
    mode,
    // Mostly each mode's default; sometimes the other order.
    order: rand() < 0.7 ? (mode === 'greedy' ? 'first-ready' : 'oldest') : mode === 'greedy' ? 'oldest' : 'first-ready',
    W,
    maxLag: rand() < 0.3 ? Infinity : int(rand, 0, 4),
    action: rand() < 0.5 ? 'drop' : 'downweight',
    minGroupSize: int(rand, 1, 3),
    tasks: int(rand, 0, 60),
    abortRate: rand() < 0.5 ? 0 : 0.05,
  };
}

/**
 * Drives the scheduler and the reference with the same random operations (submit, complete one
 * rollout, take, new policy version, abort) until every task is consumed, checking each step.
 */
function randomRun(rand: Rng, spec: RunSpec) {
  const { N, W, maxLag, action, minGroupSize } = spec;
  const s = new WindowedFifoScheduler<Roll>({
    capacity: N,
    mode: spec.mode,
    window: spec.mode === 'windowed' ? W : undefined,
    order: spec.order,
    staleness: { maxLag, action, minGroupSize },
  });
  const ref = new ReferenceWindowedFifo(N, W, maxLag, action, minGroupSize, spec.order);
  const ctx = (what: string) =>
    `${what} [N=${N} W=${W} mode=${spec.mode} order=${spec.order} maxLag=${maxLag} ${action} min=${minGroupSize}]`;
  expect(s.window, why(ctx('window'))).toBe(W);

  let headEvents = 0, consuming = false;
  s.on('head', ({ head }) => {
    if (!consuming) fail(ctx(`head moved to ${head} outside a take or abort`));
    headEvents++;
  });
  const expectedTrajectories = { stale: 0, 'too-few-fresh': 0 };
  const readyOrder: number[] = [];
  s.on('ready', ({ index }) => readyOrder.push(index));

  const groupSize: number[] = [];
  const pending: { index: number; version: number }[] = []; // rollouts under way
  const consumed = new Map<number, string>(); // index -> how
  const takeOrder: number[] = []; // released or stale-dropped, in order
  const released: GroupRelease<Roll>[] = [];
  const takesAtSubmit: number[] = []; // window takes before each task was submitted

  const takeOne = () => {
    consuming = true;
    const got = s.tryNext();
    consuming = false;
    // The reference's takes until its first release must match: whole-group drops first, then it.
    const expected: RefOutcome[] = [];
    let head = ref.head(); // at the release (after any whole-group drops)
    for (;;) {
      head = ref.head();
      const o = ref.take();
      if (!o) break;
      expected.push(o);
      if (!o.dropped) break;
    }
    const last = expected[expected.length - 1];
    if (!last || last.dropped) {
      if (got) fail(ctx(`released T_${got.index}, the reference had nothing to release`));
    } else {
      if (!got) return fail(ctx(`released nothing, the reference released T_${last.index}`));
      if (got.index !== last.index) fail(ctx(`released T_${got.index}, the reference T_${last.index}`));
      if (got.windowOffset !== got.index - head || got.index - head >= W || got.index < head)
        fail(ctx(`T_${got.index} released beyond the window [${head}, ${head + W - 1}]`));
      expect(got.trajectories.map((t) => t.lag), why(ctx('lags'))).toEqual(last.lags);
      expect(got.trajectories.map((t) => t.weight), why(ctx('weights'))).toEqual(last.weights);
      expect(got.dropped, why(ctx('stale count'))).toBe(last.stale);
      for (const t of got.trajectories) {
        if (action === 'drop' && t.lag > maxLag) fail(ctx(`lag ${t.lag} > ${maxLag} released under 'drop'`));
        if (t.lag > maxLag !== t.weight < 1) fail(ctx(`lag ${t.lag} got weight ${t.weight}`));
        expect(t.lag, why(ctx('lag'))).toBe(s.policyVersion - t.rollout.version);
      }
      released.push(got);
    }
    for (const o of expected) {
      if (consumed.has(o.index)) fail(ctx(`T_${o.index} consumed twice`));
      // Contract 4: overtaken by at most N - 1 older and W - 1 younger tasks.
      const overtaken = takeOrder.length - takesAtSubmit[o.index];
      if (overtaken > N + W - 2) fail(ctx(`T_${o.index} was overtaken by ${overtaken} tasks`));
      consumed.set(o.index, o.dropped ?? 'released');
      if (o.dropped === 'too-few-fresh') expectedTrajectories['too-few-fresh'] += o.lags.length + o.stale;
      else expectedTrajectories.stale += o.stale;
      takeOrder.push(o.index);
    }
    expect(s.stats().head, why(ctx('head after take'))).toBe(ref.head());
  };

  let guard = 0;
  while (consumed.size < spec.tasks) {
    if (++guard > 100_000) fail(ctx('run did not finish'));
    const u = rand();
    if (u < 0.3 && groupSize.length < spec.tasks) {
      if (s.freeSlots !== N - (groupSize.length - consumed.size)) fail(ctx('freeSlots'));
      if (!ref.canSubmit()) {
        expect(() => s.submit(`x${groupSize.length}`, 1)).toThrow(SchedulerError);
        continue;
      }
      const g = int(rand, 1, 4);
      const k = s.submit(`t${groupSize.length}`, g);
      if (k !== ref.submit(g)) fail(ctx('submit index'));
      groupSize.push(g);
      takesAtSubmit.push(takeOrder.length);
      // Rollouts start under the current version, or one a little older (a slow engine update).
      for (let r = 0; r < g; r++) pending.push({ index: k, version: Math.max(0, s.policyVersion - int(rand, 0, 1)) });
    } else if (u < 0.6 && pending.length) {
      const [roll] = pending.splice(int(rand, 0, pending.length - 1), 1);
      const accepted = s.complete(`t${roll.index}`, { version: roll.version, tag: 'r' });
      if (accepted !== (consumed.get(roll.index) !== 'aborted')) fail(ctx(`complete(T_${roll.index}) returned ${accepted}`));
      if (accepted) ref.complete(roll.index, roll.version);
    } else if (u < 0.85) {
      takeOne();
    } else if (u < 0.95) {
      s.setPolicyVersion(s.policyVersion + 1);
      ref.version++;
    } else if (rand() < spec.abortRate * 10) {
      const open = groupSize.map((_, k) => k).filter((k) => !consumed.has(k));
      if (!open.length) continue;
      const k = open[int(rand, 0, open.length - 1)];
      consuming = true;
      s.abort(`t${k}`);
      consuming = false;
      ref.abort(k);
      consumed.set(k, 'aborted');
    }
  }

  // Every task consumed exactly once; the counts add up.
  const st = s.stats();
  expect(consumed.size, why(ctx('consumed'))).toBe(spec.tasks);
  expect(st.head, why(ctx('final head'))).toBe(spec.tasks);
  expect(st.pending, why(ctx('pending'))).toBe(0);
  const n = (how: string) => [...consumed.values()].filter((v) => v === how).length;
  expect(st.released, why(ctx('released'))).toBe(n('released'));
  expect(st.dropped.stale.groups, why(ctx('stale groups'))).toBe(n('stale'));
  expect(st.dropped['too-few-fresh'].groups, why(ctx('too-few-fresh groups'))).toBe(n('too-few-fresh'));
  expect(st.dropped.aborted.groups, why(ctx('aborted groups'))).toBe(n('aborted'));
  expect(st.dropped.stale.trajectories, why(ctx('stale trajectories'))).toBe(expectedTrajectories.stale);
  expect(st.dropped['too-few-fresh'].trajectories, why(ctx('too-few-fresh trajectories'))).toBe(expectedTrajectories['too-few-fresh']);
  const downweighted = released.flatMap((r) => r.trajectories).filter((t) => t.lag > maxLag).length;
  expect(st.downweighted.stale, why(ctx('downweighted'))).toBe(downweighted);
  const lags = released.flatMap((r) => r.trajectories.map((t) => t.lag));
  expect(st.lag.count, why(ctx('lag count'))).toBe(lags.length);
  expect(st.lag.max, why(ctx('lag max'))).toBe(lags.length ? Math.max(...lags) : 0);

  // W = 1: strict FIFO, released in queue order. Greedy first-ready: completion order.
  if (W === 1) for (let i = 1; i < takeOrder.length; i++) if (takeOrder[i] <= takeOrder[i - 1]) fail(ctx('W = 1 out of queue order'));
  if (spec.mode === 'greedy' && spec.order === 'first-ready') {
    const taken = new Set(takeOrder);
    expect(takeOrder, why(ctx('greedy takes in completion order'))).toEqual(readyOrder.filter((k) => taken.has(k)));
  }
  return { headEvents };
}

describe('windowed FIFO: randomized runs against the reference model', () => {
  it('holds every invariant over 400 random runs', () => {
    const rand = makeRng();
    let checked = 0;
    for (let run = 0; run < 400; run++) {
      const spec = randomSpec(rand);
      randomRun(rand, spec);
      checked += spec.tasks;
    }
    expect(checked).toBeGreaterThan(1000);
  });

  it('covers the modes at a fixed large capacity', () => {
    const rand = makeRng();
    for (const mode of ['fifo', 'greedy', 'windowed'] as const)
      for (let run = 0; run < 20; run++) {
        const N = 32;
        randomRun(rand, { N, mode, order: mode === 'greedy' ? 'first-ready' : 'oldest', W: mode === 'fifo' ? 1 : mode === 'greedy' ? Infinity : Math.ceil(0.3 * N), maxLag: 2, action: 'drop', minGroupSize: 1, tasks: 120, abortRate: 0 });
      }
  });
});

describe('windowed FIFO: the window', () => {
  const one = (s: WindowedFifoScheduler<Roll>, id: string) => s.complete(id, { version: s.policyVersion, tag: id });

  it('never takes a finished task beyond the window, and reports the wait', () => {
    let t = 0;
    const s = new WindowedFifoScheduler<Roll>({ capacity: 10, window: 3, now: () => t });
    for (let k = 0; k < 10; k++) s.submit(`t${k}`, 1);
    const waits: number[] = [];
    s.on('wait', ({ index }) => waits.push(index));
    one(s, 't5');
    one(s, 't3');
    one(s, 't2');
    expect(waits).toEqual([5, 3]);
    expect(s.tryNext()?.index).toBe(2); // window [0, 2]
    expect(s.tryNext()).toBeUndefined(); // T_3 and T_5 are done, but beyond
    t = 7;
    one(s, 't0');
    expect(s.tryNext()?.index).toBe(0); // head -> 1: window [1, 3]: T_3 waited 7
    expect(s.stats().waited['beyond-window']).toEqual({ groups: 2, time: 7 });
    expect(s.tryNext()?.index).toBe(3);
    expect(s.tryNext()).toBeUndefined(); // T_1 still running holds the head
    expect(s.stats().head).toBe(1);
    one(s, 't1');
    const order = [s.tryNext(), s.tryNext(), s.tryNext()].map((r) => r?.index);
    expect(order).toEqual([1, 5, undefined]); // T_5 entered the window when the head passed 2 and 3
    expect(s.stats().head).toBe(4); // T_4 still running
    expect(s.freeSlots).toBe(5); // five consumed, in order or not
  });

  it("orders the window's ready groups by queue index ('oldest') or by completion ('first-ready')", () => {
    for (const order of ['oldest', 'first-ready'] as const) {
      const s = new WindowedFifoScheduler<Roll>({ capacity: 8, window: 4, order });
      for (let k = 0; k < 5; k++) s.submit(`t${k}`, 1);
      for (const k of [4, 3, 1, 2]) one(s, `t${k}`); // T_4 beyond the window [0, 3]
      const taken = [s.tryNext(), s.tryNext(), s.tryNext(), s.tryNext()].map((r) => r?.index);
      expect(taken).toEqual(order === 'oldest' ? [1, 2, 3, undefined] : [3, 1, 2, undefined]);
    }
    expect(new WindowedFifoScheduler({ capacity: 4 }).order).toBe('oldest');
    expect(new WindowedFifoScheduler({ capacity: 4, mode: 'greedy' }).order).toBe('first-ready');
  });

  it('defaults W to ceil(0.3 N); fifo is W = 1 and greedy has no window', () => {
    expect(new WindowedFifoScheduler({ capacity: 10 }).window).toBe(3);
    expect(new WindowedFifoScheduler({ capacity: 7 }).window).toBe(3);
    expect(new WindowedFifoScheduler({ capacity: 1 }).window).toBe(1);
    expect(new WindowedFifoScheduler({ capacity: 9, mode: 'fifo' }).window).toBe(1);
    expect(new WindowedFifoScheduler({ capacity: 9, mode: 'greedy' }).window).toBe(Infinity);
  });

  it('releases a group only when all its rollouts are done', () => {
    const s = new WindowedFifoScheduler<Roll>({ capacity: 4, mode: 'greedy' });
    s.submit('a', 3);
    one(s, 'a');
    one(s, 'a');
    expect(s.tryNext()).toBeUndefined();
    one(s, 'a');
    expect(s.tryNext()?.trajectories.length).toBe(3);
    expect(() => one(s, 'a')).toThrow(expect.objectContaining({ code: SchedulerErrorCode.GROUP_FULL }));
  });

  it('drops or down-weights stale trajectories and says why', () => {
    for (const action of ['drop', 'downweight'] as const) {
      const s = new WindowedFifoScheduler<Roll>({ capacity: 4, mode: 'greedy', staleness: { maxLag: 1, action, minGroupSize: 2 } });
      s.submit('old', 2);
      s.submit('mixed', 3);
      s.complete('old', { version: 0, tag: '' });
      s.complete('old', { version: 0, tag: '' });
      s.complete('mixed', { version: 0, tag: '' });
      s.setPolicyVersion(2);
      s.complete('mixed', { version: 2, tag: '' });
      s.complete('mixed', { version: 1, tag: '' });
      const got = s.tryNext();
      const st = s.stats();
      if (action === 'drop') {
        // 'old' is all stale; 'mixed' keeps 2 fresh of 3 (minGroupSize 2).
        expect(got?.taskId).toBe('mixed');
        expect(got?.trajectories.map((t) => t.lag)).toEqual([0, 1]);
        expect(st.dropped.stale).toEqual({ groups: 1, trajectories: 3 });
      } else {
        expect(got?.taskId).toBe('old');
        expect(got?.trajectories.map((t) => t.weight)).toEqual([0.5, 0.5]);
        expect(s.tryNext()?.trajectories.map((t) => t.weight)).toEqual([0.5, 1, 1]);
        expect(s.stats().downweighted.stale).toBe(3);
      }
    }
    const few = new WindowedFifoScheduler<Roll>({ capacity: 2, staleness: { maxLag: 0, minGroupSize: 2 } });
    few.submit('g', 2);
    few.complete('g', { version: 0, tag: '' });
    few.setPolicyVersion(1);
    few.complete('g', { version: 1, tag: '' });
    expect(few.tryNext()).toBeUndefined();
    expect(few.stats().dropped['too-few-fresh']).toEqual({ groups: 1, trajectories: 2 });
    expect(few.stats().head).toBe(1);
  });

  it('uses a custom down-weight and rejects one out of [0, 1]', () => {
    const mk = (weight: (lag: number, max: number) => number) => {
      const s = new WindowedFifoScheduler<Roll>({ capacity: 2, staleness: { maxLag: 0, action: 'downweight', weight } });
      s.submit('g', 1);
      s.complete('g', { version: 0, tag: '' });
      s.setPolicyVersion(3);
      return s;
    };
    expect(mk((lag) => 1 / (1 + lag)).tryNext()?.trajectories[0].weight).toBe(0.25);
    expect(() => mk(() => 2).tryNext()).toThrow(/weight\(3, 0\).*\[0, 1\], got 2/);
  });

  it('aborted tasks free the head; their late rollouts are ignored and counted', () => {
    const s = new WindowedFifoScheduler<Roll>({ capacity: 2, mode: 'fifo' });
    s.submit('a', 2);
    s.submit('b', 1);
    one(s, 'b');
    expect(s.tryNext()).toBeUndefined();
    s.abort('a', 'sandbox crashed');
    expect(s.complete('a', { version: 0, tag: '' })).toBe(false);
    expect(s.tryNext()?.taskId).toBe('b');
    const st = s.stats();
    expect(st.dropped.aborted.groups).toBe(1);
    expect(st.lateRollouts).toBe(1);
  });
});

describe('windowed FIFO: async API and events', () => {
  it('next() resolves when a group in the window becomes ready, in waiter order', async () => {
    const s = new WindowedFifoScheduler<Roll>({ capacity: 3, window: 1 });
    s.submit('a', 1);
    s.submit('b', 1);
    let settled = 0;
    const first = s.next().then((r) => (settled++, r));
    const second = s.next().then((r) => (settled++, r));
    s.complete('b', { version: 0, tag: '' }); // beyond the window: nobody wakes
    await new Promise((r) => setImmediate(r));
    expect(settled).toBe(0);
    s.complete('a', { version: 0, tag: '' });
    expect((await first).taskId).toBe('a');
    expect((await second).taskId).toBe('b');
  });

  it('next() honours an AbortSignal and close()', async () => {
    const s = new WindowedFifoScheduler<Roll>({ capacity: 3 });
    const ac = new AbortController();
    const aborted = s.next({ signal: ac.signal });
    ac.abort();
    await expect(aborted).rejects.toMatchObject({ code: SchedulerErrorCode.ABORTED });
    const pending = s.next();
    s.close();
    await expect(pending).rejects.toMatchObject({ code: SchedulerErrorCode.CLOSED });
    await expect(s.next()).rejects.toMatchObject({ code: SchedulerErrorCode.CLOSED });
    expect(() => s.submit('x', 1)).toThrow(expect.objectContaining({ code: SchedulerErrorCode.CLOSED }));
  });

  it('an async producer and two consumers consume every task once (waitForSlot + next)', async () => {
    const rand = makeRng();
    const total = 200;
    const s = new WindowedFifoScheduler<Roll>({ capacity: 12, window: 4 });
    const seen: number[] = [];
    let over = false;
    const consumer = async () => {
      while (!over) {
        try {
          const r = await s.next();
          seen.push(r.index);
          if (rand() < 0.3) await new Promise((res) => setTimeout(res, 0));
        } catch (e) {
          if ((e as SchedulerError).code !== SchedulerErrorCode.CLOSED) throw e;
        }
      }
    };
    const consumers = [consumer(), consumer()];
    const finishing: Promise<void>[] = [];
    for (let k = 0; k < total; k++) {
      await s.waitForSlot();
      s.submit(`t${k}`, 2);
      for (let r = 0; r < 2; r++)
        finishing.push(new Promise<void>((res) => setTimeout(() => (s.complete(`t${k}`, { version: 0, tag: '' }), res()), int(rand, 0, 3))));
    }
    await Promise.all(finishing);
    while (seen.length < total) await new Promise((res) => setTimeout(res, 1));
    over = true;
    s.close();
    await Promise.all(consumers);
    expect([...seen].sort((a, b) => a - b), why('every task once')).toEqual(Array.from({ length: total }, (_, k) => k));
  });

  it('emits submit, ready, release, head and version events', () => {
    const s = new WindowedFifoScheduler<Roll>({ capacity: 2 });
    const log: string[] = [];
    for (const e of ['submit', 'ready', 'release', 'head', 'version'] as const) s.on(e, () => log.push(e));
    const off = s.on('submit', () => log.push('again'));
    off();
    s.submit('a', 1);
    s.complete('a', { version: 0, tag: '' });
    s.tryNext();
    s.setPolicyVersion(1);
    expect(log).toEqual(['submit', 'ready', 'release', 'head', 'version']);
  });
});

describe('windowed FIFO: argument and state errors', () => {
  it('names the argument and the expected value', () => {
    expect(() => new WindowedFifoScheduler({ capacity: 0 })).toThrow(/options\.capacity: expected an integer in \[1/);
    expect(() => new WindowedFifoScheduler({ capacity: 4, window: 0 })).toThrow(/options\.window: expected an integer in \[1, \d+\], got 0/);
    expect(() => new WindowedFifoScheduler({ capacity: 4, window: 2.5 })).toThrow(/options\.window/);
    expect(() => new WindowedFifoScheduler({ capacity: 4, mode: 'fifo', window: 2 })).toThrow(/options\.window/);
    expect(() => new WindowedFifoScheduler({ capacity: 4, mode: 'lifo' as SchedulerMode })).toThrow(TypeError);
    expect(() => new WindowedFifoScheduler({ capacity: 4, order: 'newest' as PickOrder })).toThrow(/options\.order/);
    expect(() => new WindowedFifoScheduler({ capacity: 4, staleness: { maxLag: -1 } })).toThrow(/maxLag/);
    expect(() => new WindowedFifoScheduler({ capacity: 4, staleness: { maxLag: 1.5 } })).toThrow(/maxLag/);
    expect(() => new WindowedFifoScheduler({ capacity: 4, staleness: { action: 'wait' as StaleAction } })).toThrow(/action/);
    const s = new WindowedFifoScheduler<Roll>({ capacity: 1 });
    expect(() => s.submit('a', 0)).toThrow(/groupSize/);
    expect(() => s.submit(7 as unknown as string, 1)).toThrow(/taskId: expected a string/);
    s.submit('a', 1);
    expect(() => s.submit('b', 1)).toThrow(expect.objectContaining({ code: SchedulerErrorCode.QUEUE_FULL }));
    expect(() => s.complete('zzz', { version: 0, tag: '' })).toThrow(expect.objectContaining({ code: SchedulerErrorCode.UNKNOWN_TASK }));
    expect(() => s.complete('a', { version: 1, tag: '' })).toThrow(expect.objectContaining({ code: SchedulerErrorCode.FUTURE_VERSION }));
    expect(() => s.complete('a', { version: -1, tag: '' })).toThrow(/rollout\.version/);
    expect(() => s.complete('a', null as unknown as Roll)).toThrow(/rollout: expected an object/);
    expect(() => s.setPolicyVersion(-1)).toThrow(/version/);
    s.complete('a', { version: 0, tag: '' });
    s.tryNext();
    expect(() => s.submit('a', 1)).toThrow(expect.objectContaining({ code: SchedulerErrorCode.DUPLICATE_TASK }));
    s.setPolicyVersion(3);
    expect(() => s.setPolicyVersion(2)).toThrow(/version: expected an integer in \[3/);
  });
});
