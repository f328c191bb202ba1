// Seeded randomness for the tests: every run draws fresh inputs from a seed that failures print, and
// FORGE_TEST_SEED=<seed> replays a failing run.

export type Rng = () => number;

/** mulberry32: a small seeded PRNG, uniform in [0, 1). */
export function makeRng(seed: number): Rng {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The seed of this test run: FORGE_TEST_SEED when set (to replay a failure), else fresh. */
export function runSeed(): number {
  const env = process.env.FORGE_TEST_SEED;
  return env !== undefined ? Number(env) >>> 0 : (Math.random() * 2 ** 32) >>> 0;
}

/** A standard normal draw (Box-Muller). */
export const gauss = (rand: Rng): number => Math.sqrt(-2 * Math.log(1 - rand())) * Math.cos(2 * Math.PI * rand());

/** A test file's randomness: the run seed, independent streams (tests do not depend on each other's
 * draws), and messages that say how to replay the run. */
export function seededRun() {
  const seed = runSeed();
  let streams = 0;
  const why = (what: string) => `${what} (seed ${seed}: rerun with FORGE_TEST_SEED=${seed})`;
  return {
    seed,
    rng: (): Rng => makeRng(seed + 0x9e3779b9 * ++streams),
    why,
    fail: (message: string): never => {
      throw new Error(why(message));
    },
  };
}
