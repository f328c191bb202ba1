// CPU time of the demo's process tree: this process (its threads) plus its children that have exited
// and been waited for (the trainer process, the agent programs), read from /proc/self/stat on Linux;
// elsewhere only this process's own time is known.
import { readFileSync } from 'node:fs';

/** Clock ticks per second of /proc's times (USER_HZ: 100 on every Linux architecture Node runs on). */
const TICKS = 100;

export interface CpuTime {
  /** This process, every thread. */
  self: number;
  /** Exited children (and their exited children), or NaN when not known. */
  children: number;
}

export function cpuSeconds(): CpuTime {
  const own = process.cpuUsage();
  const self = (own.user + own.system) / 1e6;
  try {
    const stat = readFileSync('/proc/self/stat', 'utf8');
    // Fields after the command name (which may hold spaces, so split after its closing parenthesis).
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // utime, stime, cutime, cstime are fields 14-17 of the line: 12-15 counted from the state field.
    const children = (Number(fields[13]) + Number(fields[14])) / TICKS;
    return { self, children: Number.isFinite(children) ? children : NaN };
  } catch {
    return { self, children: NaN };
  }
}
