// Counts an upstream's calls in flight, so a closing server can wait until the last call has returned
// before it closes the engine and the pool under it. A Proxy rather than a wrapper class: every
// method of the upstream (including ones this file does not know) still reaches it; any method that
// returns a promise counts as in flight until the promise settles.
import type { Upstream } from '../gateway/upstream.js';

export interface CountedUpstream {
  upstream: Upstream;
  /** Calls in flight now. */
  inFlight(): number;
  /** Resolves when no call is in flight. */
  idle(): Promise<void>;
}

export function countCalls(inner: Upstream): CountedUpstream {
  let inFlight = 0;
  let waiters: (() => void)[] = [];
  const done = () => {
    if (--inFlight === 0) {
      const wake = waiters;
      waiters = [];
      for (const w of wake) w();
    }
  };
  const upstream = new Proxy(inner, {
    get(target, prop) {
      const value = Reflect.get(target, prop, target) as unknown;
      if (typeof value !== 'function') return value;
      return (...args: unknown[]) => {
        const result = (value as (...a: unknown[]) => unknown).apply(target, args);
        if (result !== null && typeof (result as Promise<unknown>)?.then === 'function') {
          inFlight++;
          (result as Promise<unknown>).then(done, done);
        }
        return result;
      };
    },
  });
  return {
    upstream,
    inFlight: () => inFlight,
    idle: () => (inFlight === 0 ? Promise.resolve() : new Promise<void>((resolve) => waiters.push(resolve))),
  };
}
