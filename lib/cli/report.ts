// The numbers of a preflight, from the calls the gateway recorded; no processes, no network, so it is
// testable on its own. What would silently ruin training:
//   - calls whose token ids are incomplete (prompt ids, completion ids, a logprob and a policy version
//     per completion token): they cannot be trained on at all;
//   - forks: a call that does not extend an earlier call's prompt+completion starts a new branch;
//   - edited outputs: a call that resends an earlier call's prompt followed by something other than
//     what the model wrote (re-serialised tool calls, stripped reasoning, text that does not render
//     back to the same tokens): the history is not what the model produced;
//   - token amplification: tokens the calls would train on one by one (prompt + completion each)
//     over the tokens of their merged prefix tree; near 1 on multi-call runs means nothing is shared;
//   - tool-call parse rate, calls not trainable by reason, failed and aborted calls, agent exits.
import type { CallRecord } from '../gateway/recorder.js';
import { CallTree } from '../gateway/callTree.js';
import { buildPrefixTree } from '../prefixTree.js';

export interface RunOutcome {
  /** 1-based. */
  run: number;
  sessionId: string;
  exitCode: number | null;
  signal: string | null;
  timedOut: boolean;
  /** The agent could not be started (e.g. the command does not exist). */
  spawnError?: string;
  durationMs: number;
  calls: readonly CallRecord[];
}

export interface CallStats {
  calls: number;
  /** By status. */
  ok: number;
  failed: number;
  aborted: number;
  /** Calls with status ok whose ids, logprobs and versions are all there and agree in length. */
  complete: number;
  /** complete / ok; null without ok calls. */
  completeness: number | null;
  /** Calls linked to an earlier call (continue or fork). */
  linked: number;
  forks: number;
  /** forks / linked; null when no call was linked. */
  forkRate: number | null;
  /** Calls that resend an earlier call's prompt followed by something else than any completion the
   *  model produced for that prompt (the agent edited the output, or it did not round-trip). */
  editedOutputs: number;
  trainable: number;
  /** Sum over trainable calls of prompt + completion tokens. */
  unmergedTokens: number;
  /** Tokens of the prefix tree merging them (per run; summed over runs in the total). */
  treeTokens: number;
  /** unmergedTokens / treeTokens; null without trainable calls. */
  amplification: number | null;
  /** Calls with tool-call output (parsed calls or tool-call parse errors), and those without errors. */
  toolCallsTried: number;
  toolCallsParsed: number;
  toolCallParseRate: number | null;
  /** Reason -> calls not trainable for it. */
  notTrainable: Record<string, number>;
}

/** One run: what happened to the agent process, and its calls' statistics. */
export interface RunReport extends CallStats, Omit<RunOutcome, 'calls'> {}

export type Verdict = 'ok' | 'warn' | 'fail';

export interface Check {
  name: string;
  verdict: Verdict;
  /** One line: why. */
  why: string;
}

export interface PreflightReport {
  command: string[];
  runs: RunReport[];
  total: CallStats;
  checks: Check[];
  /** No check failed (the exit code is 0). */
  ok: boolean;
}

/** Warn above this fork rate. */
export const FORK_RATE_WARN = 0.25;
/** Warn below this amplification on runs with several trainable calls. */
export const AMPLIFICATION_WARN = 1.1;
/** Warn below this tool-call parse rate. */
export const TOOL_PARSE_WARN = 0.9;

function isComplete(c: CallRecord): boolean {
  const n = c.completionIds?.length;
  return c.promptIds !== undefined && c.promptIds.length > 0 && n !== undefined && c.logprobs?.length === n && c.versions?.length === n;
}

/**
 * Whether `c` resends an earlier call's prompt (the longest one its prompt extends, `byPrompt`) and
 * then something that is none of the completions produced for it: its recorded link then reaches no
 * completion past that prompt's end (the longest earlier prompt+completion it extends ends there or before).
 */
function isEditedOutput(c: CallRecord, byPrompt: ReturnType<CallTree['link']>): boolean {
  if (byPrompt.relation !== 'continue' || byPrompt.forkTokens === c.promptIds!.length) return false; // no earlier prompt, or a retry
  return !(c.link.relation === 'continue' && c.link.forkTokens > byPrompt.forkTokens);
}

function ratio(a: number, b: number): number | null {
  return b > 0 ? a / b : null;
}

/** The statistics of one run's calls (one session: one prefix tree). */
export function callStats(calls: readonly CallRecord[]): CallStats {
  // Prompts alone, in call order: linking a prompt here finds the longest earlier prompt it extends.
  const prompts = new CallTree();
  const s: CallStats = {
    calls: calls.length, ok: 0, failed: 0, aborted: 0, complete: 0, completeness: null, linked: 0, forks: 0, forkRate: null,
    editedOutputs: 0, trainable: 0, unmergedTokens: 0, treeTokens: 0, amplification: null, toolCallsTried: 0,
    toolCallsParsed: 0, toolCallParseRate: null, notTrainable: {},
  };
  const sequences: Int32Array[] = [];
  for (const c of calls) {
    s[c.status]++;
    if (c.status === 'ok' && isComplete(c)) s.complete++;
    if (c.link.relation === 'continue' || c.link.relation === 'fork') s.linked++;
    if (c.link.relation === 'fork') s.forks++;
    if (c.trainable && c.promptIds) {
      if (isEditedOutput(c, prompts.link(c.promptIds))) s.editedOutputs++;
      prompts.add(c.id, c.promptIds, new Int32Array(0));
    }
    const toolErrors = c.parseErrors.filter((e) => e.toolCall !== undefined).length;
    if (c.toolCalls.length > 0 || toolErrors > 0) {
      s.toolCallsTried++;
      if (toolErrors === 0) s.toolCallsParsed++;
    }
    if (c.trainable && c.promptIds && c.completionIds) {
      s.trainable++;
      const seq = new Int32Array(c.promptIds.length + c.completionIds.length);
      seq.set(c.promptIds);
      seq.set(c.completionIds, c.promptIds.length);
      if (seq.length > 0) sequences.push(seq);
    } else {
      const reason = c.notTrainableReason ?? (c.trainable ? 'no token ids' : 'not trainable');
      s.notTrainable[reason] = (s.notTrainable[reason] ?? 0) + 1;
    }
  }
  if (sequences.length > 0) {
    let vocabSize = 1;
    for (const q of sequences) for (const t of q) if (t >= vocabSize) vocabSize = t + 1;
    const tree = buildPrefixTree(sequences.map((tokens) => ({ tokens })), { vocabSize });
    s.unmergedTokens = tree.stats.inputTokens;
    s.treeTokens = tree.stats.treeTokens;
  }
  finishRatios(s);
  return s;
}

function finishRatios(s: CallStats): void {
  s.completeness = ratio(s.complete, s.ok);
  s.forkRate = ratio(s.forks, s.linked);
  s.amplification = ratio(s.unmergedTokens, s.treeTokens);
  s.toolCallParseRate = ratio(s.toolCallsParsed, s.toolCallsTried);
}

/** Sums the runs' statistics (tree tokens add up: each run is its own tree). */
export function sumStats(parts: readonly CallStats[]): CallStats {
  const total = callStats([]);
  const counts = ['calls', 'ok', 'failed', 'aborted', 'complete', 'linked', 'forks', 'editedOutputs', 'trainable',
    'unmergedTokens', 'treeTokens', 'toolCallsTried', 'toolCallsParsed'] as const;
  for (const p of parts) {
    for (const k of counts) total[k] += p[k];
    for (const [reason, n] of Object.entries(p.notTrainable)) total.notTrainable[reason] = (total.notTrainable[reason] ?? 0) + n;
  }
  finishRatios(total);
  return total;
}

const plural = (n: number, noun: string) => `${n} ${noun}${n === 1 ? '' : 's'}`;
const pct = (x: number | null) => (x === null ? 'n/a' : `${(100 * x).toFixed(x === 1 || x === 0 ? 0 : 1)}%`);

function checks(runs: RunReport[], t: CallStats): Check[] {
  const out: Check[] = [];
  const bad = runs.filter((r) => r.spawnError !== undefined || r.timedOut || r.exitCode !== 0);
  out.push({
    name: 'agent runs',
    verdict: bad.length ? 'fail' : 'ok',
    why: bad.length
      ? bad.map((r) => `run ${r.run} ${r.spawnError !== undefined ? `could not start (${r.spawnError})` : r.timedOut ? 'timed out and was killed'
        : r.signal !== null ? `was killed by ${r.signal}` : `exited ${r.exitCode}`}`).join('; ')
      : `${runs.length} of ${runs.length} runs exited 0`,
  });
  const silent = runs.filter((r) => r.calls === 0 && r.spawnError === undefined);
  out.push({
    name: 'calls reach the gateway',
    verdict: silent.length ? 'fail' : 'ok',
    why: silent.length
      ? `run${silent.length > 1 ? 's' : ''} ${silent.map((r) => r.run).join(', ')} made no calls: does the agent use OPENAI_BASE_URL / ANTHROPIC_BASE_URL?`
      : `${plural(t.calls, 'call')} over ${plural(runs.length, 'run')}`,
  });
  out.push({
    name: 'token-id completeness',
    verdict: t.ok === 0 ? 'fail' : t.complete < t.ok ? 'fail' : 'ok',
    why: t.ok === 0 ? 'no call finished' : `${t.complete} of ${t.ok} finished calls have prompt ids, completion ids, logprobs and versions (${pct(t.completeness)})`,
  });
  const reasons = Object.entries(t.notTrainable).sort((a, b) => b[1] - a[1]);
  out.push({
    name: 'trainable calls',
    verdict: t.calls > 0 && t.trainable === 0 ? 'fail' : reasons.length ? 'warn' : 'ok',
    why: reasons.length ? `${t.calls - t.trainable} of ${t.calls} not trainable: ${reasons.map(([r, n]) => `${n}× ${r}`).join('; ')}` : `all ${t.calls} calls trainable`,
  });
  out.push({
    name: 'failed / aborted calls',
    verdict: t.calls > 0 && t.failed + t.aborted === t.calls ? 'fail' : t.failed + t.aborted > 0 ? 'warn' : 'ok',
    why: `${t.failed} failed, ${t.aborted} aborted of ${t.calls}`,
  });
  out.push({
    name: 'fork rate',
    verdict: (t.forkRate ?? 0) > FORK_RATE_WARN ? 'warn' : 'ok',
    why: t.linked === 0 ? 'no call followed another' : `${t.forks} of ${t.linked} follow-up calls fork (${pct(t.forkRate)})`,
  });
  out.push({
    name: 'model output resent verbatim',
    verdict: t.editedOutputs > 0 ? 'warn' : 'ok',
    why: t.editedOutputs === 0 ? 'no call changed an earlier completion'
      : `${plural(t.editedOutputs, 'call')} resent an assistant turn that differs from the model's output ` +
        '(the agent edits completions, or their text does not render back to the same tokens)',
  });
  const multi = runs.filter((r) => r.trainable >= 2);
  const flat = multi.filter((r) => (r.amplification ?? 1) < AMPLIFICATION_WARN);
  out.push({
    name: 'token amplification',
    verdict: flat.length ? 'warn' : 'ok',
    why: t.amplification === null ? 'no trainable calls'
      : `${t.unmergedTokens} tokens unmerged / ${t.treeTokens} in prefix trees = ${t.amplification.toFixed(2)}x` +
        (flat.length ? `; run${flat.length > 1 ? 's' : ''} ${flat.map((r) => r.run).join(', ')} share almost no prefix between calls` : ''),
  });
  out.push({
    name: 'tool-call parse rate',
    verdict: t.toolCallParseRate !== null && t.toolCallParseRate < TOOL_PARSE_WARN ? 'warn' : 'ok',
    why: t.toolCallsTried === 0 ? 'no call produced a tool call' : `${t.toolCallsParsed} of ${t.toolCallsTried} calls with tool calls parsed (${pct(t.toolCallParseRate)})`,
  });
  return out;
}

export function preflightReport(command: string[], outcomes: readonly RunOutcome[]): PreflightReport {
  const runs: RunReport[] = outcomes.map((o) => {
    const r: RunReport = {
      run: o.run, sessionId: o.sessionId, exitCode: o.exitCode, signal: o.signal, timedOut: o.timedOut, durationMs: o.durationMs,
      ...callStats(o.calls),
    };
    if (o.spawnError !== undefined) r.spawnError = o.spawnError;
    return r;
  });
  const total = sumStats(runs);
  const list = checks(runs, total);
  return { command, runs, total, checks: list, ok: list.every((c) => c.verdict !== 'fail') };
}

/** The human form: a table per run and in total, then the checks and a verdict line. */
export function formatReport(report: PreflightReport): string {
  const head = ['run', 'exit', 'calls', 'complete', 'forks', 'amplification', 'tool calls parsed', 'not trainable', 'failed/aborted'];
  const row = (label: string, exit: string, s: CallStats) => [
    label, exit, String(s.calls), `${s.complete}/${s.ok}`, `${s.forks}/${s.linked}`,
    s.amplification === null ? 'n/a' : `${s.amplification.toFixed(2)}x`, `${s.toolCallsParsed}/${s.toolCallsTried}`,
    String(s.calls - s.trainable), `${s.failed}/${s.aborted}`,
  ];
  const exit = (r: RunReport) => r.spawnError !== undefined ? 'no start' : r.timedOut ? 'timeout' : r.signal ?? String(r.exitCode);
  const rows = [head, ...report.runs.map((r) => row(String(r.run), exit(r), r)), row('all', '', report.total)];
  const widths = head.map((_, k) => Math.max(...rows.map((r) => r[k].length)));
  const lines = [`forge-rl preflight: ${plural(report.runs.length, 'run')} of ${report.command.join(' ')}`, ''];
  for (const r of rows) lines.push(r.map((cell, k) => cell.padEnd(widths[k])).join('  ').trimEnd());
  lines.push('');
  const nameWidth = Math.max(...report.checks.map((c) => c.name.length));
  for (const c of report.checks) lines.push(`${c.verdict.padEnd(4)}  ${c.name.padEnd(nameWidth)}  ${c.why}`);
  const warnings = report.checks.filter((c) => c.verdict === 'warn').length;
  const failures = report.checks.filter((c) => c.verdict === 'fail').length;
  lines.push('', failures > 0 ? `verdict: FAIL (${failures} check${failures > 1 ? 's' : ''} failed)` : `verdict: ok${warnings ? ` (${warnings} warning${warnings > 1 ? 's' : ''})` : ''}`);
  return lines.join('\n');
}
