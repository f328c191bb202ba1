// Asserting on the coded errors the API throws: the class, the `code` and the message.
import { expect } from 'vitest';

export function expectError(fn: () => unknown, type: typeof TypeError | typeof RangeError, code: string, message: RegExp): void {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  expect(caught, `expected ${type.name} ${message}`).toBeInstanceOf(type);
  expect((caught as { code: string }).code).toBe(code);
  expect((caught as Error).message).toMatch(message);
}
