// Runs one agent command as a child process (no shell), its output streamed line by line with a
// prefix, killed (its whole process group: agents start helpers) when it runs past its timeout.
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';

export interface AgentExit {
  exitCode: number | null;
  signal: string | null;
  timedOut: boolean;
  spawnError?: string;
  durationMs: number;
}

export interface AgentRunOptions {
  command: readonly string[];
  env: NodeJS.ProcessEnv;
  timeoutMs: number;
  /** Each output line, stdout and stderr alike. */
  onLine: (line: string) => void;
  cwd?: string;
  /** After SIGTERM, how long before SIGKILL. Default 2000 ms. */
  killGraceMs?: number;
  /** Aborting stops the agent as a timeout would (without counting as one). */
  signal?: AbortSignal;
}

export function runAgent(options: AgentRunOptions): Promise<AgentExit> {
  const start = performance.now();
  return new Promise((resolve) => {
    const child = spawn(options.command[0], options.command.slice(1), {
      env: options.env, cwd: options.cwd, stdio: ['ignore', 'pipe', 'pipe'],
      // Its own process group, so a timeout kills the agent's children too.
      detached: process.platform !== 'win32',
    });
    let timedOut = false;
    let spawnError: string | undefined;
    let killTimer: NodeJS.Timeout | undefined;
    const killGroup = (signal: NodeJS.Signals) => {
      try {
        if (child.pid !== undefined && process.platform !== 'win32') process.kill(-child.pid, signal);
        else child.kill(signal);
      } catch {
        // Already gone.
      }
    };
    const stop = () => {
      if (killTimer !== undefined) return;
      killGroup('SIGTERM');
      killTimer = setTimeout(() => killGroup('SIGKILL'), options.killGraceMs ?? 2000);
    };
    const timer = setTimeout(() => {
      timedOut = true;
      stop();
    }, options.timeoutMs);
    if (options.signal?.aborted) stop();
    else options.signal?.addEventListener('abort', stop, { once: true });
    const lines = [child.stdout, child.stderr].map((stream) => {
      const rl = createInterface({ input: stream, crlfDelay: Infinity });
      rl.on('line', options.onLine);
      return new Promise<void>((done) => rl.once('close', done));
    });
    let settled = false;
    const finish = async (exitCode: number | null, signal: string | null) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      options.signal?.removeEventListener('abort', stop);
      // Grandchildren may hold the pipes open: wait briefly for the output, then stop reading.
      await Promise.race([Promise.all(lines), new Promise((r) => setTimeout(r, 1000))]);
      clearTimeout(killTimer);
      // Anything the agent left running in its group goes with it.
      if (spawnError === undefined) killGroup('SIGKILL');
      child.stdout.destroy();
      child.stderr.destroy();
      const exit: AgentExit = { exitCode, signal, timedOut, durationMs: performance.now() - start };
      if (spawnError !== undefined) exit.spawnError = spawnError;
      resolve(exit);
    };
    child.once('error', (e) => {
      spawnError = (e as Error).message;
      void finish(null, null);
    });
    child.once('exit', (code, signal) => void finish(code, signal));
  });
}
