// `forge-rl preflight [flags] -- <agent command...>`: starts a gateway in-process (the same one
// `forge-rl gateway` starts, from the same flags), runs the agent a few times through it, one session
// per run, and reports what would silently ruin training (report.ts). Exit code 0 when no check fails.
// The runs are recorded in memory only: a preflight is a check, not training data.
import type { FastifyInstance } from 'fastify';
import { MemoryRecorder } from '../gateway/recorder.js';
import { runAgent } from './agentProcess.js';
import { CliUsageError, type CliIO, type FlagTable, helpText, intFlag, parseFlags, processIO, secondsFlag } from './args.js';
import { GATEWAY_FLAGS, type GatewayServerOptions, gatewayOptionsFrom, startGatewayServer } from './gateway.js';
import type { PreflightReport, RunOutcome } from './report.js';

const { pool: _pool, 'abandon-open': _abandonOpen, ...SHARED_FLAGS } = GATEWAY_FLAGS;

export const PREFLIGHT_FLAGS: FlagTable = {
  runs: { type: 'string', value: '<n>', help: 'how many times to run the agent, one session each (default 3)' },
  timeout: { type: 'string', value: '<s>', help: 'seconds one run may take before the agent is killed (default 120)' },
  json: { type: 'boolean', help: 'print the report as JSON (agent output goes to stderr either way)' },
  ...SHARED_FLAGS,
};

export const PREFLIGHT_HELP = helpText(
  'forge-rl preflight [--runs 3] [--timeout 120] [--json] [gateway flags] -- <agent command...>',
  'Runs the agent command through a gateway started in-process, once per session, with\n' +
    'OPENAI_BASE_URL / OPENAI_API_KEY, ANTHROPIC_BASE_URL / ANTHROPIC_API_KEY and FORGE_SESSION_ID set, and\n' +
    'reports token-id completeness, fork rate, token amplification, tool-call parse rate, calls not\n' +
    'trainable and why, and failed calls, with a verdict per check. Exit code 0 when no check fails.',
  PREFLIGHT_FLAGS,
);

export interface PreflightOptions {
  command: string[];
  runs: number;
  timeoutMs: number;
  gateway: GatewayServerOptions;
  cwd?: string;
  /** Environment of the agent, before the session's variables are added. Default process.env. */
  env?: NodeJS.ProcessEnv;
  /** Aborting stops the running agent and skips the runs left; the report covers the runs made. */
  signal?: AbortSignal;
}

export interface PreflightResult {
  report: PreflightReport;
  /** What the gateway recorded, per run (the report's input). */
  outcomes: RunOutcome[];
}

/** An admin request through the app itself (no network): the same route and checks as over HTTP. */
async function admin(app: FastifyInstance, token: string, url: string, payload?: object): Promise<Record<string, unknown>> {
  const res = await app.inject({ method: 'POST', url, payload, headers: { authorization: `Bearer ${token}` } });
  if (res.statusCode >= 300) throw new Error(`POST ${url}: ${res.statusCode} ${res.body}`);
  return res.json() as Record<string, unknown>;
}

/** Runs the preflight; agent output and progress go to io.err. */
export async function runPreflight(options: PreflightOptions, io: CliIO = processIO): Promise<PreflightResult> {
  const recorder = new MemoryRecorder();
  const server = await startGatewayServer(options.gateway, { recorder });
  const outcomes: RunOutcome[] = [];
  try {
    io.err(`preflight: gateway ${server.baseUrl} · upstream: ${server.upstreamDescription}`);
    for (let run = 1; run <= options.runs && !options.signal?.aborted; run++) {
      const created = await admin(server.gateway.app, server.adminToken, '/v1/sessions',
        { task_id: 'preflight', scaffold: 'preflight', metadata: { run } });
      const id = created.id as string, key = created.key as string;
      const env: NodeJS.ProcessEnv = {
        ...(options.env ?? process.env),
        OPENAI_BASE_URL: `${server.baseUrl}/sessions/${id}/v1`,
        OPENAI_API_KEY: key,
        // The Anthropic SDK appends /v1/messages to its base URL.
        ANTHROPIC_BASE_URL: `${server.baseUrl}/sessions/${id}`,
        ANTHROPIC_API_KEY: key,
        FORGE_SESSION_ID: id,
        FORGE_GATEWAY_URL: server.baseUrl,
      };
      // A bearer token from the caller's environment would be sent instead of the key.
      delete env.ANTHROPIC_AUTH_TOKEN;
      io.err(`[run ${run}] session ${id}: ${options.command.join(' ')}`);
      const exit = await runAgent({
        command: options.command, env, timeoutMs: options.timeoutMs, cwd: options.cwd, signal: options.signal,
        onLine: (line) => io.err(`[run ${run}] ${line}`),
      });
      // The agent is gone; closing waits for its calls still in flight (aborted by the disconnect) to be recorded.
      await admin(server.gateway.app, server.adminToken, `/v1/sessions/${id}/close`);
      const session = server.gateway.sessions.get(id)!;
      const status = exit.spawnError !== undefined ? `could not start: ${exit.spawnError}`
        : exit.timedOut ? `timed out after ${options.timeoutMs / 1000} s, killed` : exit.signal ?? `exit ${exit.exitCode}`;
      io.err(`[run ${run}] ${status} · ${session.calls} calls · ${(exit.durationMs / 1000).toFixed(1)} s`);
      outcomes.push({ run, sessionId: id, ...exit, calls: recorder.callsOf(id) });
    }
  } finally {
    await server.close();
  }
  // Loaded here: it needs the native addon (prefix trees), which --help and usage errors do not.
  const { preflightReport } = await import('./report.js');
  return { report: preflightReport(options.command, outcomes), outcomes };
}

/** `forge-rl preflight`: resolves with the exit code (0: no check failed, 1: some did). */
export async function preflightCommand(argv: readonly string[], io: CliIO = processIO): Promise<number> {
  const dash = argv.indexOf('--');
  const flagPart = dash < 0 ? argv : argv.slice(0, dash);
  const { values, positionals } = parseFlags('preflight', flagPart, PREFLIGHT_FLAGS, { positionals: true });
  if (values.help) {
    io.out(PREFLIGHT_HELP);
    return 0;
  }
  if (dash >= 0 && positionals.length > 0)
    throw new CliUsageError(`preflight: unexpected argument ${positionals[0]} before -- (the agent command goes after --)`);
  const command = dash < 0 ? positionals : argv.slice(dash + 1);
  if (command.length === 0) throw new CliUsageError('preflight: no agent command (forge-rl preflight [flags] -- <agent command...>)');
  const options: PreflightOptions = {
    command: [...command],
    runs: intFlag(values, 'runs', 3, 1, 1000),
    timeoutMs: secondsFlag(values, 'timeout', 120),
    gateway: gatewayOptionsFrom(values, process.env, 0),
  };
  // The agents run in their own process groups, out of reach of the terminal's Ctrl-C: stop them here.
  const interrupt = new AbortController();
  const onSignal = (signal: string) => {
    io.err(`${signal}: stopping the agent and the preflight`);
    interrupt.abort();
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    const { report } = await runPreflight({ ...options, signal: interrupt.signal }, io);
    const { formatReport } = await import('./report.js');
    io.out(values.json ? JSON.stringify(report, null, 2) : formatReport(report));
    return interrupt.signal.aborted ? 130 : report.ok ? 0 : 1;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}
