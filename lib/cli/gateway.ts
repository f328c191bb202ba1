// `forge-rl gateway`: the gateway as a server process. Also the gateway factory `preflight` uses, so
// both start exactly the same thing from the same flags: the embedded engine (a fresh nano policy, or
// a trainer checkpoint) or an OpenAI-compatible server upstream, an optional durable pool, limits.
// SIGINT/SIGTERM close it gracefully: no new requests, calls in flight finish (or, after the grace
// period or a second signal, are aborted and recorded as such), then the engine and the pool close.
//
// The engine, the gateway and the pool are imported when the server starts, so that --help and
// usage errors answer without loading them (and the native addon).
import { randomBytes } from 'node:crypto';
import type { NanoEngine } from '../engine/engine.js';
import type { GatewayLimits } from '../gateway/callRunner.js';
import type { CallRecorder } from '../gateway/recorder.js';
import type { Gateway, GatewayOptions } from '../gateway/server.js';
import type { ServedVersion } from '../gateway/servedVersion.js';
import type { Upstream } from '../gateway/upstream.js';
import type { SqliteStore } from '../pool/sqliteStore.js';
import { CliUsageError, type CliIO, type FlagTable, type FlagValues, helpText, intFlag, parseFlags, processIO, secondsFlag, stringFlag } from './args.js';
import { countCalls } from './countingUpstream.js';

/** Flags shared by `gateway` and `preflight` (preflight refuses --pool: its runs are not training data). */
export const GATEWAY_FLAGS: FlagTable = {
  port: { type: 'string', value: '<n>', help: 'port to listen on; 0 picks a free one (gateway default 8000, preflight 0)' },
  host: { type: 'string', value: '<addr>', help: 'address to listen on (default 127.0.0.1)' },
  'admin-token': { type: 'string', value: '<token>', help: 'bearer token of the session admin (default: $FORGE_ADMIN_TOKEN, else a generated one, printed)' },
  pool: { type: 'string', value: '<file.sqlite>', help: 'record into this durable data pool (default: memory only, lost on exit)' },
  'abandon-open': { type: 'boolean', help: 'with --pool: mark the sessions that earlier (dead) gateways left open as abandoned, freeing their group slots; without it they are only counted' },
  checkpoint: { type: 'string', value: '<file>', help: 'serve the weights of this trainer checkpoint (default: a fresh nano policy)' },
  seed: { type: 'string', value: '<n>', help: 'seed of the fresh nano policy (default 0)' },
  'cache-tokens': { type: 'string', value: '<n>', help: 'KV cache of the embedded engine, in tokens (default 32768)' },
  'upstream-url': { type: 'string', value: '<url>', help: 'an OpenAI-compatible server\'s API root (vLLM, SGLang), e.g. http://127.0.0.1:8001/v1, instead of the embedded engine' },
  'upstream-model': { type: 'string', value: '<name>', help: 'the model name that server serves (with --upstream-url; API key: $FORGE_UPSTREAM_API_KEY)' },
  'upstream-dialect': { type: 'string', value: '<vllm|sglang>', help: 'how that server returns token ids (default vllm)' },
  'upstream-version': { type: 'string', value: '<n>', help: 'the policy version that server serves at start (default 0); POST /v1/policy-versions advances it after each weight push' },
  'upstream-connections': { type: 'string', value: '<n>', help: 'connections to that server at most, kept open for reuse (default 1024)' },
  'max-concurrent-calls': { type: 'string', value: '<n>', help: 'requests one session may have in flight (default 8)' },
  'max-completion-tokens': { type: 'string', value: '<n>', help: 'largest max_tokens accepted (default 4096)' },
  'call-timeout': { type: 'string', value: '<s>', help: 'abort an upstream call after this many seconds (default 600)' },
  'shutdown-grace': { type: 'string', value: '<s>', help: 'on SIGINT/SIGTERM, wait this long for calls in flight before aborting them (default 10)' },
};

export interface GatewayServerOptions {
  port: number;
  host: string;
  adminToken?: string;
  poolPath?: string;
  /** Mark sessions other (dead) writers left open in the pool as abandoned at start. */
  abandonOpen?: boolean;
  checkpoint?: string;
  seed: number;
  cacheTokens: number;
  upstreamUrl?: string;
  upstreamModel?: string;
  upstreamDialect?: 'vllm' | 'sglang';
  upstreamApiKey?: string;
  /** The policy version the server serves at start (with upstreamUrl). */
  upstreamVersion?: number;
  upstreamConnections?: number;
  limits: Partial<GatewayLimits>;
  shutdownGraceMs: number;
}

/** Reads the gateway flags (and FORGE_ADMIN_TOKEN); throws CliUsageError naming a bad flag. */
export function gatewayOptionsFrom(values: FlagValues, env: NodeJS.ProcessEnv, defaultPort: number): GatewayServerOptions {
  const limits: Partial<GatewayLimits> = {};
  if (values['max-concurrent-calls'] !== undefined) limits.maxConcurrentCalls = intFlag(values, 'max-concurrent-calls', 8, 1);
  if (values['max-completion-tokens'] !== undefined) limits.maxCompletionTokens = intFlag(values, 'max-completion-tokens', 4096, 1);
  if (values['call-timeout'] !== undefined) limits.callTimeoutMs = secondsFlag(values, 'call-timeout', 600);
  const options: GatewayServerOptions = {
    port: intFlag(values, 'port', defaultPort, 0, 65535),
    host: stringFlag(values, 'host') ?? '127.0.0.1',
    adminToken: stringFlag(values, 'admin-token') ?? (env.FORGE_ADMIN_TOKEN || undefined),
    poolPath: stringFlag(values, 'pool'),
    abandonOpen: values['abandon-open'] === true,
    checkpoint: stringFlag(values, 'checkpoint'),
    seed: intFlag(values, 'seed', 0, 0, 2 ** 31 - 1),
    cacheTokens: intFlag(values, 'cache-tokens', 32768, 2, 2 ** 31 - 1),
    upstreamUrl: stringFlag(values, 'upstream-url'),
    upstreamModel: stringFlag(values, 'upstream-model'),
    upstreamApiKey: env.FORGE_UPSTREAM_API_KEY || undefined,
    limits,
    shutdownGraceMs: secondsFlag(values, 'shutdown-grace', 10),
  };
  const dialect = stringFlag(values, 'upstream-dialect');
  if (dialect !== undefined) {
    if (dialect !== 'vllm' && dialect !== 'sglang') throw new CliUsageError(`--upstream-dialect: expected vllm or sglang, got ${JSON.stringify(dialect)}`);
    if (options.upstreamUrl === undefined) throw new CliUsageError('--upstream-dialect: only meaningful with --upstream-url');
    options.upstreamDialect = dialect;
  }
  for (const [flag, key] of [['upstream-version', 'upstreamVersion'], ['upstream-connections', 'upstreamConnections']] as const) {
    if (values[flag] === undefined) continue;
    if (options.upstreamUrl === undefined) throw new CliUsageError(`--${flag}: only meaningful with --upstream-url`);
    options[key] = flag === 'upstream-version' ? intFlag(values, flag, 0, 0, 2 ** 31 - 1) : intFlag(values, flag, 1024, 1, 65535);
  }
  if (options.upstreamUrl !== undefined) {
    if (!/^https?:\/\/[^/]/.test(options.upstreamUrl)) throw new CliUsageError(`--upstream-url: expected an http(s) URL, got ${JSON.stringify(options.upstreamUrl)}`);
    if (options.checkpoint !== undefined) throw new CliUsageError('--checkpoint: the embedded engine serves checkpoints; it cannot be combined with --upstream-url');
    if (options.upstreamModel === undefined) throw new CliUsageError('--upstream-model: required with --upstream-url (the model name the server serves)');
  } else if (options.upstreamModel !== undefined) throw new CliUsageError('--upstream-model: only meaningful with --upstream-url');
  return options;
}

export interface RunningGateway {
  gateway: Gateway;
  baseUrl: string;
  adminToken: string;
  /** True when no token was given and one was generated (the operator must be told it). */
  tokenGenerated: boolean;
  /** e.g. "embedded engine (fresh nano policy, seed 0, version 0)". */
  upstreamDescription: string;
  /** Sessions other gateways left open in the pool at start, and whether they were marked abandoned. */
  staleOpenSessions: { count: number; abandoned: boolean };
  /** Aborts every call in flight now (their connections are closed). */
  abortInFlight(): void;
  /** Graceful: stops accepting, lets calls in flight finish for `graceMs`, aborts the rest, closes the engine and the pool. */
  close(graceMs?: number): Promise<void>;
}

/** Starts a gateway from parsed options. `recorder`: where calls go when there is no pool (preflight's). */
export async function startGatewayServer(options: GatewayServerOptions, extra: { recorder?: CallRecorder } = {}): Promise<RunningGateway> {
  const adminToken = options.adminToken ?? `forge-admin-${randomBytes(18).toString('base64url')}`;
  const { createGateway } = await import('../gateway/server.js');
  let engine: NanoEngine | undefined;
  let upstreamDescription: string;
  let inner: Upstream;
  let servedVersion: ServedVersion | undefined;
  if (options.upstreamUrl !== undefined) {
    const [{ OpenAICompatibleUpstream }, { ServedVersion }] = await Promise.all([import('../gateway/openaiUpstream.js'), import('../gateway/servedVersion.js')]);
    const contextLength = await probeUpstream(options.upstreamUrl, options.upstreamModel!, options.upstreamApiKey);
    // The server does not report the policy version it serves; whoever pushes weights to it says so
    // (POST /v1/policy-versions), and the gateway holds it.
    servedVersion = new ServedVersion(options.upstreamVersion ?? 0);
    inner = new OpenAICompatibleUpstream({
      baseURL: options.upstreamUrl, model: options.upstreamModel!, dialect: options.upstreamDialect, apiKey: options.upstreamApiKey,
      version: servedVersion.read, contextLength, maxConnections: options.upstreamConnections,
    });
    upstreamDescription = `OpenAI-compatible server ${options.upstreamUrl} (${options.upstreamDialect ?? 'vllm'}, model ${options.upstreamModel}, version ${servedVersion.current})`;
  } else {
    const [{ NanoEngine }, { EngineUpstream }, { NanoPolicy }, { PolicyTrainer }] = await Promise.all([
      import('../engine/engine.js'), import('../gateway/engineUpstream.js'), import('../model/policy.js'), import('../model/trainer.js'),
    ]);
    if (options.checkpoint !== undefined) {
      const trainer = await PolicyTrainer.load(options.checkpoint);
      engine = new NanoEngine({ config: trainer.policy.config, params: trainer.params, version: trainer.version, cacheTokens: options.cacheTokens });
      upstreamDescription = `embedded engine (checkpoint ${options.checkpoint}, version ${trainer.version})`;
    } else {
      const policy = new NanoPolicy();
      engine = new NanoEngine({ config: policy.config, params: policy.init(options.seed), cacheTokens: options.cacheTokens });
      upstreamDescription = `embedded engine (fresh nano policy, seed ${options.seed}, version 0)`;
    }
    inner = new EngineUpstream({ generator: engine });
  }
  const counted = countCalls(inner);
  const upstream = counted.upstream;
  let pool: SqliteStore | undefined;
  let staleOpenSessions = { count: 0, abandoned: false };
  let gateway: Gateway;
  try {
    if (options.poolPath !== undefined) {
      const { SqliteStore } = await import('../pool/sqliteStore.js');
      pool = await SqliteStore.open(options.poolPath);
      // Sessions an earlier gateway left open (it was killed) are never visible as completed and hold
      // their group slots until marked abandoned; only the operator knows those writers are dead.
      const stale = (await pool.listSessions({ status: 'open' })).filter((s) => s.owner !== pool!.owner);
      staleOpenSessions = { count: stale.length, abandoned: false };
      if (options.abandonOpen && stale.length > 0) {
        await pool.abandonOpenSessions({ exceptOwner: pool.owner, reason: 'left open by a gateway that stopped (abandoned at restart)' });
        staleOpenSessions.abandoned = true;
      }
    }
    const gatewayOptions: GatewayOptions = { upstream, adminToken, limits: options.limits, servedVersion };
    if (pool !== undefined) gatewayOptions.pool = pool;
    else if (extra.recorder !== undefined) gatewayOptions.recorder = extra.recorder;
    gateway = createGateway(gatewayOptions);
  } catch (e) {
    engine?.close();
    await pool?.close();
    throw e;
  }
  let baseUrl: string;
  try {
    baseUrl = await gateway.listen({ port: options.port, host: options.host });
  } catch (e) {
    await gateway.close().catch(() => {});
    engine?.close();
    await pool?.close();
    const err = e as Error & { code?: string };
    if (err.code === 'EADDRINUSE') throw new CliUsageError(`--port: ${options.host}:${options.port} is already in use`);
    throw e;
  }
  const abortInFlight = () => gateway.app.server.closeAllConnections();
  let closing: Promise<void> | undefined;
  return {
    staleOpenSessions,
    gateway, baseUrl, adminToken, tokenGenerated: options.adminToken === undefined, upstreamDescription, abortInFlight,
    close(graceMs = options.shutdownGraceMs) {
      closing ??= (async () => {
        const timer = setTimeout(abortInFlight, graceMs);
        try {
          await gateway.close();
          // fastify is closed once the connections are; a handler may still be recording its call.
          await counted.idle();
          await new Promise((resolve) => setTimeout(resolve, 50));
          // Sessions the task runner never closed cannot complete any more: this writer marks its own.
          await pool?.abandonOpenSessions({ owner: pool.owner, reason: 'the gateway stopped before the session was closed' });
        } finally {
          clearTimeout(timer);
          engine?.close();
          await pool?.close();
        }
      })();
      return closing;
    },
  };
}

/** Checks at start that the server answers and serves `model`; returns its max_model_len when it lists one. */
async function probeUpstream(baseUrl: string, model: string, apiKey: string | undefined): Promise<number | undefined> {
  let listed: { id?: string; max_model_len?: number }[];
  try {
    const res = await fetch(`${baseUrl.replace(/\/+$/, '')}/models`, {
      headers: apiKey ? { authorization: `Bearer ${apiKey}` } : {}, signal: AbortSignal.timeout(10_000),
    });
    if (!res.ok) throw new Error(`GET /models answered ${res.status}`);
    listed = ((await res.json()) as { data?: typeof listed }).data ?? [];
  } catch (e) {
    throw new Error(`--upstream-url: cannot list the models of ${baseUrl}: ${(e as Error).message}`);
  }
  const found = listed.find((m) => m.id === model);
  if (found === undefined)
    throw new CliUsageError(`--upstream-model: ${baseUrl} does not serve ${JSON.stringify(model)} (it serves ${listed.map((m) => JSON.stringify(m.id)).join(', ') || 'nothing'})`);
  return Number.isInteger(found.max_model_len) && found.max_model_len! > 0 ? found.max_model_len : undefined;
}

export const GATEWAY_HELP = helpText(
  'forge-rl gateway [flags]',
  'Serves agents over the OpenAI (/v1/chat/completions) and Anthropic (/v1/messages) protocols and records\n' +
    'every call token-exact. The task runner creates a session with the admin token (POST /v1/sessions) and\n' +
    'gives the agent its key, or the base URL <url>/sessions/<id>/v1. SIGINT/SIGTERM close it gracefully.',
  GATEWAY_FLAGS,
);

/** `forge-rl gateway`: runs until SIGINT/SIGTERM (or `stop` aborts); resolves with the exit code. */
export async function gatewayCommand(argv: readonly string[], io: CliIO = processIO, stop?: AbortSignal): Promise<number> {
  const { values } = parseFlags('gateway', argv, GATEWAY_FLAGS);
  if (values.help) {
    io.out(GATEWAY_HELP);
    return 0;
  }
  const options = gatewayOptionsFrom(values, process.env, 8000);
  // Without a usable GPU, one line says why the kernels run on the CPU (issue 7).
  (await import('../device.js')).selectBackend();
  if (options.poolPath === undefined)
    io.err('warning: no --pool: sessions and calls are kept in memory only and are lost when the gateway stops');
  const running = await startGatewayServer(options);
  const token = running.tokenGenerated ? running.adminToken : '$FORGE_ADMIN_TOKEN';
  io.out(`forge-rl gateway: ${running.baseUrl} · upstream: ${running.upstreamDescription} · pool: ${options.poolPath ?? 'memory'}`);
  if (running.tokenGenerated) io.out(`admin token (generated): ${running.adminToken}`);
  const stale = running.staleOpenSessions;
  if (stale.abandoned) io.err(`marked ${stale.count} session(s) left open by earlier gateways as abandoned`);
  else if (stale.count > 0)
    io.err(`warning: the pool holds ${stale.count} session(s) left open by other gateways; if those are gone, restart with --abandon-open to mark them abandoned and free their group slots`);
  io.out(`create a session: curl -s -X POST ${running.baseUrl}/v1/sessions -H "Authorization: Bearer ${token}" ` +
    `-H 'content-type: application/json' -d '{"task_id":"my-task"}'  (then OPENAI_BASE_URL=${running.baseUrl}/sessions/<id>/v1)`);

  // First signal: graceful close; a second one aborts the calls still in flight.
  let exitCode = 0;
  await new Promise<void>((resolve) => {
    let closing = false;
    const again = () => {
      io.err('aborting the calls in flight');
      running.abortInFlight();
    };
    const onSignal = (signal: string) => {
      if (closing) return again();
      closing = true;
      io.err(`${signal}: closing (calls in flight get ${options.shutdownGraceMs / 1000} s to finish; another signal aborts them)`);
      running.close()
        .catch((e: Error) => {
          io.err(`error while closing: ${e.message}`);
          exitCode = 1;
        })
        .finally(() => {
          process.off('SIGINT', onSignal);
          process.off('SIGTERM', onSignal);
          resolve();
        });
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    if (stop?.aborted) onSignal('stop');
    else stop?.addEventListener('abort', () => onSignal('stop'), { once: true });
  });
  io.err('forge-rl gateway: closed');
  return exitCode;
}
