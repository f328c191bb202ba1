// The numbers of a run, computed once from its event log for the HTML report and the terminal
// summary: the before/after headline per scaffold (from the eval events), the per-step series, and the
// run's totals. A cut-off run (no final eval, no end event) gives what its events allow; values the
// log stored as null (non-finite) are NaN here and print as missing.
import type {
  EndEvent, EvalEvent, EvalScaffoldStats, PhaseName, RunEvent, RunStartEvent, RunTotals, StepEvent, TaskEvent, WarmStepEvent,
} from './events.js';
import { PHASES } from './events.js';

/** The last element that passes `test` (Array.prototype.findLast is ES2023, beyond our lib target). */
function lastOf<T, S extends T>(items: readonly T[], test: (item: T) => item is S): S | undefined;
function lastOf<T>(items: readonly T[], test: (item: T) => boolean): T | undefined;
function lastOf<T>(items: readonly T[], test: (item: T) => boolean): T | undefined {
  for (let i = items.length - 1; i >= 0; i--) if (test(items[i])) return items[i];
  return undefined;
}

/** A logged number, or NaN when the log holds null or nothing. */
export const val = (v: unknown): number => (typeof v === 'number' && Number.isFinite(v) ? v : NaN);

export interface ScaffoldHeadline {
  scaffold: string;
  before?: EvalScaffoldStats;
  after?: EvalScaffoldStats;
  /** after.successRate - before.successRate (a fraction; x100 for points); NaN without both. */
  change: number;
}

export interface PhaseSpan {
  name: PhaseName;
  /** ms since the epoch; NaN when the log has no such edge (ended: cut off). */
  startedAt: number;
  endedAt: number;
}

export type RunStatus = EndEvent['status'] | 'cut off';

export interface RunAnalysis {
  run?: RunStartEvent;
  end?: EndEvent;
  status: RunStatus;
  /** ms since the epoch of the run event (or of the first event). */
  startTime: number;
  /** run.scaffolds first, then any other scaffold in order of first appearance. */
  scaffolds: string[];
  phases: PhaseSpan[];
  warmsteps: WarmStepEvent[];
  tasks: TaskEvent[];
  steps: StepEvent[];
  /** The last eval event of each phase. */
  evalInitial?: EvalEvent;
  evalFinal?: EvalEvent;
  /** One row per scaffold evaluated before or after. */
  headline: ScaffoldHeadline[];
  /** Every scaffold pooled (weighted by tasks evaluated). */
  overall: ScaffoldHeadline;
  totals: RunTotals;
}

/** The scaffolds pooled: success rate, tool calls and seconds per task weighted by n. */
export function poolEval(stats: readonly (EvalScaffoldStats | undefined)[]): EvalScaffoldStats | undefined {
  let n = 0, success = 0, calls = 0, seconds = 0;
  for (const s of stats) {
    const k = val(s?.n);
    if (!s || !(k > 0)) continue;
    n += k;
    success += val(s.successRate) * k;
    calls += val(s.meanToolCalls) * k;
    seconds += val(s.meanSeconds) * k;
  }
  return n > 0 ? { successRate: success / n, meanToolCalls: calls / n, meanSeconds: seconds / n, n } : undefined;
}

const change = (before?: EvalScaffoldStats, after?: EvalScaffoldStats) =>
  before && after ? val(after.successRate) - val(before.successRate) : NaN;

/** The run's totals (what the end event may carry). */
export function computeTotals(events: readonly RunEvent[]): RunTotals {
  const steps = events.filter((e): e is StepEvent => e.type === 'step');
  let inputTokens = 0, treeTokens = 0, reductionSum = 0, reductions = 0, lagWeighted = 0, lagSamples = 0, maxLag = NaN;
  for (const s of steps) {
    if (Number.isFinite(val(s.inputTokens))) inputTokens += val(s.inputTokens);
    if (Number.isFinite(val(s.treeTokens))) treeTokens += val(s.treeTokens);
    const r = Number.isFinite(val(s.reduction)) ? val(s.reduction) : val(s.inputTokens) / val(s.treeTokens);
    if (Number.isFinite(r)) (reductionSum += r), reductions++;
    const lag = val(s.lagMean), n = val(s.samples);
    if (Number.isFinite(lag) && n > 0) (lagWeighted += lag * n), (lagSamples += n);
    const lagMax = val(s.lagMax);
    if (Number.isFinite(lagMax) && !(lagMax <= maxLag)) maxLag = lagMax;
  }
  const run = events.find((e) => e.type === 'run');
  const end = lastOf(events, (e): e is EndEvent => e.type === 'end');
  const t0 = run?.time ?? events[0]?.time;
  const lastTime = events.reduce((a, e) => Math.max(a, val(e.time)), -Infinity);
  const wallSeconds = Number.isFinite(val(end?.wallSeconds)) ? val(end!.wallSeconds) : t0 !== undefined ? (lastTime - t0) / 1000 : NaN;
  return {
    steps: steps.length,
    inputTokens,
    treeTokens,
    meanReduction: reductions ? reductionSum / reductions : NaN,
    meanLag: lagSamples > 0 ? lagWeighted / lagSamples : NaN,
    maxLag,
    tasks: events.filter((e) => e.type === 'task').length,
    wallSeconds,
  };
}

export function analyzeRun(events: readonly RunEvent[]): RunAnalysis {
  const run = events.find((e): e is RunStartEvent => e.type === 'run');
  const end = lastOf(events, (e): e is EndEvent => e.type === 'end');
  const evals = events.filter((e): e is EvalEvent => e.type === 'eval');
  const evalInitial = lastOf(evals, (e) => e.phase === 'eval-initial');
  const evalFinal = lastOf(evals, (e) => e.phase === 'eval-final');
  const tasks = events.filter((e): e is TaskEvent => e.type === 'task');
  const steps = events.filter((e): e is StepEvent => e.type === 'step');

  const seen = new Set<string>(Array.isArray(run?.scaffolds) ? run.scaffolds : []);
  const note = (name: unknown) => typeof name === 'string' && seen.add(name);
  for (const e of events) {
    if (e.type === 'eval') Object.keys(e.scaffolds ?? {}).forEach(note);
    else if (e.type === 'step') Object.keys(e.byScaffold ?? {}).forEach(note);
    else if (e.type === 'task') note(e.scaffold);
  }
  const scaffolds = [...seen];

  const headline = scaffolds
    .map((scaffold) => {
      const before = evalInitial?.scaffolds?.[scaffold], after = evalFinal?.scaffolds?.[scaffold];
      return { scaffold, before, after, change: change(before, after) };
    })
    .filter((h) => h.before || h.after);
  const before = poolEval(headline.map((h) => h.before)), after = poolEval(headline.map((h) => h.after));

  const phases: PhaseSpan[] = [];
  for (const e of events) {
    if (e.type !== 'phase' || !PHASES.includes(e.name)) continue;
    let span = lastOf(phases, (p) => p.name === e.name);
    if (e.status === 'started' || !span) phases.push((span = { name: e.name, startedAt: NaN, endedAt: NaN }));
    if (e.status === 'started') span.startedAt = e.time;
    else span.endedAt = e.time;
  }

  return {
    run,
    end,
    status: end?.status ?? 'cut off',
    startTime: run?.time ?? events[0]?.time ?? NaN,
    scaffolds,
    phases,
    warmsteps: events.filter((e): e is WarmStepEvent => e.type === 'warmstep'),
    tasks,
    steps,
    evalInitial,
    evalFinal,
    headline,
    overall: { scaffold: 'all', before, after, change: change(before, after) },
    totals: computeTotals(events),
  };
}
