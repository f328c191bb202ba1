// Argument checks shared by the kernel wrappers. Each names the argument and what was expected, and
// runs before the addon is touched (the addon re-checks only what memory safety needs).
import { KernelErrorCode, rangeError, typeError } from './errors.js';

type TypedArrayCtor = Float32ArrayConstructor | Int32ArrayConstructor | Uint8ArrayConstructor | Float64ArrayConstructor;

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (ArrayBuffer.isView(value)) return value.constructor.name;
  if (Array.isArray(value)) return 'Array';
  return typeof value;
}

/** Checks `value` is an instance of `ctor` (and of `length` elements when given). */
export function expectArray<T extends TypedArrayCtor>(
  name: string,
  value: unknown,
  ctor: T,
  length?: number,
): InstanceType<T> {
  if (!(value instanceof ctor)) throw typeError(`${name}: expected a ${ctor.name}, got ${describe(value)}`);
  if (length !== undefined && (value as InstanceType<T>).length !== length)
    throw rangeError(`${name}: expected ${length} elements, got ${(value as InstanceType<T>).length}`);
  return value as InstanceType<T>;
}

/** Checks an integer in [min, max]. */
export function expectInt(name: string, value: unknown, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof value !== 'number') throw typeError(`${name}: expected an integer, got ${describe(value)}`);
  if (!Number.isInteger(value) || value < min || value > max)
    throw rangeError(`${name}: expected an integer in [${min}, ${max}], got ${value}`);
  return value;
}

/** Checks a finite number (optionally >= min). */
export function expectFinite(name: string, value: unknown, min = -Infinity): number {
  if (typeof value !== 'number') throw typeError(`${name}: expected a number, got ${describe(value)}`);
  if (!Number.isFinite(value)) throw rangeError(`${name}: expected a finite number, got ${value}`, KernelErrorCode.NON_FINITE);
  if (value < min) throw rangeError(`${name}: expected a number >= ${min}, got ${value}`);
  return value;
}

/** Index of the first NaN/Inf in `values`, or -1. */
export function firstNonFinite(values: ArrayLike<number>): number {
  for (let i = 0; i < values.length; i++) if (!Number.isFinite(values[i])) return i;
  return -1;
}

/** Throws a RangeError naming `name` and the index when `values` holds NaN or Inf. */
export function expectAllFinite(name: string, values: ArrayLike<number>): void {
  const bad = firstNonFinite(values);
  if (bad >= 0) throw rangeError(`${name}[${bad}]: expected a finite number, got ${values[bad]}`, KernelErrorCode.NON_FINITE);
}
