// The forge-rl command line. Spawned for what only a process shows (the bin launcher, exit codes,
// signals): `gateway` on a free port over a FAKE vLLM server (test/fakes/, no GPU here), talked to
// with the official openai client, SIGTERM with a stream in flight; a bad flag (exit 2, flag named);
// `preflight --json` on a failing agent. In-process for the rest: `gateway --pool` recording into
// SQLite on disk; `preflight` on the fixture agents (test/fixtures/agents/) through a real gateway on
// the embedded NanoEngine or the fake vLLM server, its report checked against what the gateway
// recorded, recomputed here independently; agents that fail, hang, cannot start, are interrupted or
// are killed with a call in flight; the report's numbers and verdicts on synthetic calls linked by
// the real call tree.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';
import { afterAll, describe, expect, it } from 'vitest';
import { main } from '../lib/cli/main.js';
import { gatewayCommand, gatewayOptionsFrom, GATEWAY_FLAGS } from '../lib/cli/gateway.js';
import { runPreflight, type PreflightOptions } from '../lib/cli/preflight.js';
import { callStats, preflightReport, type RunOutcome } from '../lib/cli/report.js';
import { CallTree } from '../lib/gateway/callTree.js';
import type { CallRecord } from '../lib/gateway/recorder.js';
import { PolicyTrainer } from '../lib/model/trainer.js';
import { SqliteStore } from '../lib/pool/sqliteStore.js';
import { FakeVllmServer } from './fakes/fakeVllmServer.js';
import { seededRun } from './helpers/random.js';

const BIN = join(import.meta.dirname, '..', 'bin', 'forge-rl.js');
const AGENTS = join(import.meta.dirname, 'fixtures', 'agents');
const SMALL = { dim: 64, numLayers: 2, numHeads: 4, numKvHeads: 2, headDim: 16, ffnDim: 96 };
const tmp = mkdtempSync(join(tmpdir(), 'forge-cli-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function cli(args: string[]) {
  const child = spawn(process.execPath, [BIN, ...args], { env: { ...process.env, FORGE_CLI_SOURCE: '1' }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '', stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (stderr += d));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, exited, out: () => stdout, err: () => stderr };
}

async function waitFor<T>(probe: () => T | undefined, what: string, ms = 20_000): Promise<T> {
  const t0 = Date.now();
  for (;;) {
    const v = probe();
    if (v !== undefined) return v;
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function captureIO() {
  const out: string[] = [], err: string[] = [];
  return { io: { out: (l: string) => out.push(l), err: (l: string) => err.push(l) }, out, err };
}

/** Distinct non-empty prefixes of the sequences: the prefix tree's token count, computed by hand. */
function distinctPrefixes(seqs: number[][]): number {
  const seen = new Set<string>();
  for (const s of seqs) for (let i = 1; i <= s.length; i++) seen.add(s.slice(0, i).join(','));
  return seen.size;
}

const preflightOptions = (command: string[], extra: Partial<PreflightOptions> = {}): PreflightOptions => ({
  command, runs: 1, timeoutMs: 30_000, gateway: { ...gatewayOptionsFrom({}, {}, 0), cacheTokens: 8192 }, ...extra,
});

describe('forge-rl gateway (spawned)', () => {
  it('serves the openai client on --port 0 over --upstream-url; SIGTERM lets the stream in flight finish, then exits 0', async () => {
    // A FAKE vLLM server (no GPU here) that sends a token every 15 ms, so a stream is surely in flight at the signal.
    const fake = new FakeVllmServer({ script: () => ({ role: 'assistant', content: 'All done, nothing else to add here.' }) });
    fake.faults = { tokenDelayMs: 15 };
    const apiRoot = await fake.start();
    const p = cli(['gateway', '--port', '0', '--admin-token', 'adm-1', '--upstream-url', apiRoot, '--upstream-model', fake.model,
      '--max-completion-tokens', '40']);
    try {
      // The last line printed at start says how to create a session.
      await waitFor(() => (p.out().includes('create a session: curl') ? true : undefined), 'the start lines');
      const base = /forge-rl gateway: (http:\/\/127\.0\.0\.1:\d+) /.exec(p.out())![1];
      expect(p.out()).toContain(`curl -s -X POST ${base}/v1/sessions`);
      expect(p.out()).toContain(`upstream: OpenAI-compatible server ${apiRoot}`);
      expect(p.err()).toMatch(/warning: no --pool/);
      const created = await fetch(`${base}/v1/sessions`, {
        method: 'POST', headers: { authorization: 'Bearer adm-1', 'content-type': 'application/json' }, body: '{"task_id":"t"}',
      });
      expect(created.status).toBe(201);
      const s = (await created.json()) as { id: string; key: string };
      const client = new OpenAI({ baseURL: `${base}/sessions/${s.id}/v1`, apiKey: s.key, maxRetries: 0 });
      const reply = await client.chat.completions.create({ model: 'nano', messages: [{ role: 'user', content: 'hi' }], max_tokens: 5 });
      expect(reply.choices[0].message.content).toBe('All d');
      // The limit flag reached the gateway: 41 tokens is refused in the OpenAI error shape.
      await expect(client.chat.completions.create({ model: 'nano', messages: [{ role: 'user', content: 'hi' }], max_tokens: 41 }))
        .rejects.toMatchObject({ status: 400, code: 'FORGE_GW_CONTEXT_LENGTH_EXCEEDED' });

      const stream = await client.chat.completions.create({ model: 'nano', messages: [{ role: 'user', content: 'go' }], max_tokens: 30, stream: true });
      const it = stream[Symbol.asyncIterator]();
      let text = (await it.next()).value?.choices[0]?.delta?.content ?? '';
      p.child.kill('SIGTERM');
      let finish: string | null | undefined;
      for (let r = await it.next(); !r.done; r = await it.next()) {
        text += r.value.choices[0]?.delta?.content ?? '';
        finish = r.value.choices[0]?.finish_reason ?? finish;
      }
      expect(finish, 'the call in flight finished during the graceful close').toBe('length');
      expect(text).toBe('All done, nothing else to add '); // 30 tokens: one byte each
      expect(fake.calls.at(-1)).toMatchObject({ aborted: false, done: true });
      expect(await p.exited).toBe(0);
      expect(p.err()).toMatch(/SIGTERM: closing/);
      expect(p.err()).toMatch(/forge-rl gateway: closed/);
      await expect(fetch(`${base}/healthz`)).rejects.toThrow();
    } finally {
      p.child.kill('SIGKILL');
      await fake.close();
    }
  });

  it('a bad flag exits 2 and names the flag (the other usage errors are checked in-process)', async () => {
    const bad = cli(['gateway', '--port', '70000']);
    expect(await bad.exited).toBe(2);
    expect(bad.err()).toMatch(/--port: expected an integer in \[0, 65535\], got "70000"/);
  });

  it('preflight --json on an agent that exits 1: exit code 1, the run and the failed checks in the JSON', async () => {
    const p = cli(['preflight', '--json', '--runs', '1', '--cache-tokens', '4096', '--', process.execPath, '-e', 'console.log("bye"); process.exit(1)']);
    expect(await p.exited).toBe(1);
    const report = JSON.parse(p.out());
    expect(report.runs).toHaveLength(1);
    expect(report.runs[0]).toMatchObject({ exitCode: 1, timedOut: false, calls: 0 });
    expect(report.ok).toBe(false);
    const verdict = Object.fromEntries(report.checks.map((c: { name: string; verdict: string }) => [c.name, c.verdict]));
    expect(verdict['agent runs']).toBe('fail');
    expect(verdict['calls reach the gateway']).toBe('fail');
    expect(p.err()).toMatch(/\[run 1\] bye/);
  });
});

describe('forge-rl main (in-process)', () => {
  it('help lists every flag; usage errors name what is wrong', async () => {
    const h = captureIO();
    expect(await main(['gateway', '--help'], h.io)).toBe(0);
    for (const flag of Object.keys(GATEWAY_FLAGS)) expect(h.out.join('\n')).toContain(`--${flag}`);
    const p = captureIO();
    expect(await main(['help', 'preflight'], p.io)).toBe(0);
    expect(p.out.join('\n')).toMatch(/usage: forge-rl preflight .* -- <agent command\.\.\.>/);
    const cases: [string[], RegExp][] = [
      [['preflight'], /no agent command/],
      [['preflight', '--runs', '0', '--', 'x'], /--runs: expected an integer in \[1, 1000\], got "0"/],
      [['preflight', '--timeout', 'soon', '--', 'x'], /--timeout: expected a positive number of seconds/],
      [['preflight', '--pool', 'p.sqlite', '--', 'x'], /unknown flag --pool/],
      [['preflight', 'node', '--', 'x'], /unexpected argument node before --/],
      [['gateway', '--upstream-model', 'm'], /--upstream-model: only meaningful with --upstream-url/],
      [['gateway', '--upstream-url', 'localhost:8000'], /--upstream-url: expected an http\(s\) URL/],
      [['gateway', '--json'], /unknown flag --json/],
      [['gateway', '--bogus-flag'], /gateway: unknown flag --bogus-flag/],
      [['gateway', '--port'], /--port needs a value/],
      [['nope'], /unknown command "nope"/],
      [[], /usage: forge-rl <command>/],
    ];
    for (const [argv, message] of cases) {
      const c = captureIO();
      expect(await main(argv, c.io), argv.join(' ')).toBe(2);
      expect(c.err.join('\n'), argv.join(' ')).toMatch(message);
    }
  });
});

describe('forge-rl gateway --pool (in-process)', () => {
  it('records into the SQLite pool; stopping closes the pool and abandons the sessions left open', async () => {
    const poolPath = join(tmp, 'pool.sqlite');
    const c = captureIO();
    const stop = new AbortController();
    const exit = gatewayCommand(['--port', '0', '--admin-token', 'adm-2', '--pool', poolPath, '--cache-tokens', '4096'], c.io, stop.signal);
    const base = await waitFor(() => /forge-rl gateway: (http:\/\/\S+) /.exec(c.out.join('\n'))?.[1], 'the URL line');
    expect(c.err.join('\n')).not.toMatch(/no --pool/);
    const admin = (path: string, body = '{}') => fetch(`${base}${path}`, {
      method: 'POST', headers: { authorization: 'Bearer adm-2', 'content-type': 'application/json' }, body,
    }).then(async (r) => ({ status: r.status, json: (await r.json()) as Record<string, any> }));
    const closed = (await admin('/v1/sessions', '{"task_id":"t1"}')).json;
    const open = (await admin('/v1/sessions', '{"task_id":"t1"}')).json;
    const reply = await new OpenAI({ baseURL: `${base}/sessions/${closed.id}/v1`, apiKey: closed.key, maxRetries: 0 })
      .chat.completions.create({ model: 'nano', messages: [{ role: 'user', content: 'hi' }], max_tokens: 6 });
    expect((await admin(`/v1/sessions/${closed.id}/close`)).status).toBe(200);
    stop.abort();
    expect(await exit).toBe(0);
    const pool = await SqliteStore.open(poolPath);
    try {
      expect((await pool.getSession(closed.id)).status).toBe('closed');
      expect((await pool.getSession(open.id)).status).toBe('abandoned');
      const [call] = await pool.getCalls(closed.id);
      expect(call.trainable).toBe(true);
      expect(call.completionIds.length).toBe(reply.usage!.completion_tokens);
      expect(call.logprobs.length).toBe(call.completionIds.length);
    } finally {
      await pool.close();
    }
  });
});

describe('forge-rl preflight (in-process, real gateway and engine)', () => {
  const run = seededRun();

  /** The numbers the report must show, recomputed from the recorded calls. */
  function expectReportMatchesRecord(outcomes: RunOutcome[], report: ReturnType<typeof preflightReport>) {
    outcomes.forEach((o, k) => {
      const r = report.runs[k];
      const calls = o.calls;
      expect(r.calls).toBe(calls.length);
      const forks = calls.filter((c) => c.link.relation === 'fork').length;
      const linked = calls.filter((c) => c.link.relation === 'fork' || c.link.relation === 'continue').length;
      expect([r.forks, r.linked]).toEqual([forks, linked]);
      const trainable = calls.filter((c) => c.trainable);
      const seqs = trainable.map((c) => [...c.promptIds!, ...c.completionIds!]);
      expect(r.unmergedTokens).toBe(seqs.reduce((a, s) => a + s.length, 0));
      expect(r.treeTokens).toBe(distinctPrefixes(seqs));
      expect(r.amplification).toBeCloseTo(r.unmergedTokens / r.treeTokens, 12);
      const complete = calls.filter((c) => c.status === 'ok' && c.logprobs!.length === c.completionIds!.length && c.versions!.length === c.completionIds!.length);
      expect(r.complete).toBe(complete.length);
    });
  }

  it('the tool-loop and truncating agents: report numbers equal what the gateway recorded', async () => {
    const loop = await runPreflight(preflightOptions(['node', join(AGENTS, 'tool-loop-agent.mjs')], { runs: 2 }), captureIO().io);
    expect(loop.outcomes.map((o) => [o.exitCode, o.calls.length])).toEqual([[0, 3], [0, 3]]);
    expectReportMatchesRecord(loop.outcomes, loop.report);
    expect(loop.report.total.completeness).toBe(1);
    expect(loop.report.total.calls).toBe(6);
    expect(loop.report.ok).toBe(true);

    const trunc = await runPreflight(preflightOptions(['node', join(AGENTS, 'truncating-agent.mjs')]), captureIO().io);
    const [o] = trunc.outcomes;
    expect(o.calls.length).toBe(4);
    expectReportMatchesRecord(trunc.outcomes, trunc.report);
    // Calls 3 and 4 drop the history: they cannot continue anything, whatever the model wrote.
    expect(o.calls[2].link.relation).toBe('fork');
    expect(o.calls[3].link.relation).toBe('fork');
    expect(trunc.report.total.forkRate!).toBeGreaterThanOrEqual(2 / 3);
    expect(trunc.report.total.amplification!).toBeGreaterThan(1); // the system prompt is shared
    expect(trunc.report.total.completeness).toBe(1);
    expect(trunc.report.checks.find((c) => c.name === 'fork rate')!.verdict).toBe('warn');
  });

  it('serves a trainer checkpoint: every recorded token carries its version', async () => {
    const path = join(tmp, 'policy.safetensors');
    await new PolicyTrainer({ config: SMALL, seed: 5, version: 7 }).save(path);
    const opts = preflightOptions(['node', join(AGENTS, 'tool-loop-agent.mjs')], { env: { ...process.env, AGENT_TURNS: '2' } });
    opts.gateway.checkpoint = path;
    const { outcomes } = await runPreflight(opts, captureIO().io);
    expect(outcomes[0].calls.length).toBe(2);
    for (const c of outcomes[0].calls) expect(new Set(c.versions!)).toEqual(new Set([7]));
  });

  it('reports an agent that hangs (killed at the timeout) and one that cannot start', async () => {
    const hang = await runPreflight(preflightOptions([process.execPath, '-e', 'setInterval(() => {}, 1000)'], { timeoutMs: 800 }), captureIO().io);
    expect(hang.outcomes[0]).toMatchObject({ timedOut: true, exitCode: null, signal: 'SIGTERM' });
    expect(hang.report.checks[0]).toMatchObject({ name: 'agent runs', verdict: 'fail' });
    expect(hang.report.checks[0].why).toMatch(/timed out/);
    const missing = await runPreflight(preflightOptions([join(tmp, 'no-such-agent')]), captureIO().io);
    expect(missing.outcomes[0].spawnError).toMatch(/ENOENT/);
    expect(missing.report.ok).toBe(false);
    // Interrupted (Ctrl-C) once the agent is up: the agent is stopped, the runs left are skipped.
    const interrupt = new AbortController();
    const io = { out: () => {}, err: (line: string) => line === '[run 1] up' && interrupt.abort() };
    const agent = [process.execPath, '-e', 'console.log("up"); setInterval(() => {}, 1000)'];
    const stopped = await runPreflight(preflightOptions(agent, { runs: 3, signal: interrupt.signal }), io);
    expect(stopped.outcomes.map((o) => [o.timedOut, o.signal])).toEqual([[false, 'SIGTERM']]);
  });

  it('an agent stopped with a call in flight: the call is recorded aborted and reported', async () => {
    const fake = new FakeVllmServer({ script: () => ({ role: 'assistant', content: 'x'.repeat(200) }) });
    fake.faults = { tokenDelayMs: 25 }; // 200 tokens: 5 s
    const apiRoot = await fake.start();
    try {
      // The agent says when its stream has started; the preflight is interrupted then.
      const agent = "import OpenAI from 'openai'; const s = await new OpenAI({ maxRetries: 0 }).chat.completions.create(" +
        "{ model: 'm', messages: [{ role: 'user', content: 'go' }], max_tokens: 200, stream: true }); " +
        "let n = 0; for await (const c of s) if (n++ === 1) console.log('streaming');";
      const interrupt = new AbortController();
      const io = { out: () => {}, err: (line: string) => line === '[run 1] streaming' && interrupt.abort() };
      const { outcomes, report } = await runPreflight(preflightOptions([process.execPath, '--input-type=module', '-e', agent], {
        signal: interrupt.signal, gateway: gatewayOptionsFrom({ 'upstream-url': apiRoot, 'upstream-model': fake.model }, {}, 0),
      }), io);
      expect(outcomes[0].signal).toBe('SIGTERM');
      expect(outcomes[0].calls.map((c) => [c.status, c.trainable])).toEqual([['aborted', false]]);
      expect(fake.calls[0].aborted).toBe(true); // the abort reached the upstream
      expect([report.total.aborted, report.total.trainable]).toEqual([1, 0]);
      const verdict = Object.fromEntries(report.checks.map((c) => [c.name, c.verdict]));
      expect([verdict['agent runs'], verdict['failed / aborted calls'], verdict['trainable calls']]).toEqual(['fail', 'fail', 'fail']);
    } finally {
      await fake.close();
    }
  });

  it('--upstream-url (a FAKE vLLM server): tool calls parse, histories continue; without token ids the check fails', async () => {
    // The fake renders the nano template and answers from this script: a tool call short enough for
    // the agent's max_tokens (24), then text (cut by max_tokens: the history still continues).
    const fake = new FakeVllmServer({
      script: (_p, call) => call % 3 === 0
        ? { role: 'assistant', content: '', tool_calls: [{ id: 'x', type: 'function', function: { name: 'lookup', arguments: '{"w":"x"}' } }] }
        : { role: 'assistant', content: `Forge means to shape metal (${call}).` },
    });
    const apiRoot = await fake.start();
    try {
      const options = (): PreflightOptions => preflightOptions(['node', join(AGENTS, 'tool-loop-agent.mjs')], {
        gateway: gatewayOptionsFrom({ 'upstream-url': apiRoot, 'upstream-model': fake.model }, {}, 0),
      });
      const good = await runPreflight(options(), captureIO().io);
      const [o] = good.outcomes;
      expect(o.calls.length).toBe(3);
      expectReportMatchesRecord(good.outcomes, good.report);
      const t = good.report.total;
      expect([t.completeness, t.trainable, t.toolCallsTried, t.toolCallsParsed]).toEqual([1, 3, 1, 1]);
      // The model's output renders back to the same ids: every follow-up continues its branch.
      expect([t.linked, t.forks, t.editedOutputs]).toEqual([2, 0, 0]);
      expect(good.report.checks.every((c) => c.verdict === 'ok')).toBe(true);

      fake.faults = { omitTokenIds: true };
      const bad = await runPreflight(options(), captureIO().io);
      expect(bad.report.total.calls).toBe(3);
      expect(bad.report.total.complete).toBe(0);
      const verdict = Object.fromEntries(bad.report.checks.map((c) => [c.name, c.verdict]));
      expect([verdict['token-id completeness'], verdict['trainable calls']]).toEqual(['fail', 'fail']);
      expect(bad.report.checks.find((c) => c.name === 'trainable calls')!.why).toMatch(/3 of 3 not trainable: 3× /);
      expect(bad.report.ok).toBe(false);
    } finally {
      await fake.close();
    }
  });

  it('report numbers and verdicts on synthetic calls linked by the real call tree', () => {
    const rand = run.rng();
    const tree = new CallTree();
    const calls: CallRecord[] = [];
    const tokens = (n: number) => Array.from({ length: n }, () => 1 + Math.floor(rand() * 40));
    const record = (prompt: number[], completion: number[], extra: Partial<CallRecord> = {}): CallRecord => {
      const p = Int32Array.from(prompt), c = Int32Array.from(completion);
      const rec: CallRecord = {
        id: `c${calls.length}`, sessionId: 's', protocol: 'openai', request: {}, choice: 0, status: 'ok',
        promptIds: p, completionIds: c, logprobs: new Float64Array(c.length).fill(-1), versions: new Int32Array(c.length),
        trainable: true, toolCalls: [], parseErrors: [], link: tree.link(p),
        timings: { receivedAt: 0, admittedAt: 0, firstTokenAt: 0, doneAt: 0 }, usage: { promptTokens: p.length, completionTokens: c.length, cachedPromptTokens: 0 },
        ...extra,
      };
      // As the gateway does: a call that is not trainable is neither linked nor added.
      if (!rec.trainable) rec.link = tree.link(undefined);
      else tree.add(rec.id, p, c);
      calls.push(rec);
      return rec;
    };
    const gen = tokens(12); // ends with the "generation prompt" of each call
    const a = record(gen, tokens(6), { toolCalls: [{ id: 't0', name: 'f', arguments: {}, argumentsText: '{}' }] });
    const b = record([...a.promptIds!, ...a.completionIds!, ...tokens(5)], tokens(4)); // continue
    // Resends b's prompt with b's output replaced: it still extends a's whole sequence, so the tree
    // calls it a continue of a; the report sees that b's output was not resent.
    const edited = record([...b.promptIds!, 99, ...tokens(3)], tokens(3), { parseErrors: [{ kind: 'bad_json', message: 'x', at: 1, toolCall: 0 }] });
    expect(edited.link).toEqual({ relation: 'continue', parent: a.id, forkTokens: a.promptIds!.length + a.completionIds!.length });
    record(gen.slice(0, 5).concat(tokens(4)), tokens(5)); // context cut: forks inside a's prompt
    record(tokens(6), [], { trainable: false, notTrainableReason: 'the upstream returned no token ids', logprobs: undefined, versions: undefined });
    record(tokens(4), tokens(2), { status: 'aborted', trainable: false, notTrainableReason: 'the client disconnected' });
    const s = callStats(calls);
    expect([s.calls, s.ok, s.aborted, s.failed]).toEqual([6, 5, 1, 0]);
    expect(s.complete).toBe(4); // the call without token ids is not complete
    expect([s.linked, s.forks, s.editedOutputs]).toEqual([3, 1, 1]);
    expect([s.toolCallsTried, s.toolCallsParsed]).toEqual([2, 1]);
    expect(s.notTrainable).toEqual({ 'the upstream returned no token ids': 1, 'the client disconnected': 1 });
    const seqs = calls.filter((c) => c.trainable).map((c) => [...c.promptIds!, ...c.completionIds!]);
    expect(s.treeTokens).toBe(distinctPrefixes(seqs));
    expect(s.treeTokens).toBe(tree.tokens);
    expect(s.amplification).toBeCloseTo(seqs.reduce((n, q) => n + q.length, 0) / s.treeTokens, 12);

    const report = preflightReport(['agent'], [{ run: 1, sessionId: 's', exitCode: 0, signal: null, timedOut: false, durationMs: 1, calls }]);
    const verdict = Object.fromEntries(report.checks.map((c) => [c.name, c.verdict]));
    expect(verdict).toEqual({
      'agent runs': 'ok', 'calls reach the gateway': 'ok', 'token-id completeness': 'fail', 'trainable calls': 'warn',
      'failed / aborted calls': 'warn', 'fork rate': 'warn', 'model output resent verbatim': 'warn', 'token amplification': 'ok',
      'tool-call parse rate': 'warn',
    });
    expect(report.ok).toBe(false);
    expect(report.checks.find((c) => c.name === 'trainable calls')!.why).toMatch(/2 of 6 not trainable/);
  });
});
