/**
 * The shared checks for what callers pass in: option bags (known keys of
 * known types; an unknown key is an error that names the known ones) and
 * plain arguments. Every public entry validates with these before it touches
 * hardware, so a bad call changes nothing.
 *
 * @module
 */

import { describe, fail } from "./errors.ts";

/** The type one option must have: a `typeof` name, or a check that throws. */
export type OptionKind =
  | "number"
  | "boolean"
  | "string"
  | "bigint"
  | "function"
  | "object"
  | ((value: unknown, key: string) => void);

/**
 * Checks an options bag: `undefined` is an empty bag; anything but a plain
 * object, an unknown key or a value of the wrong type fails with EINVAL
 * naming the key and the known keys. `undefined` values are allowed (absent).
 *
 * @example
 * ```ts
 * checkOptions({ writable: true }, { writable: "boolean", va: "bigint" }, "bar1.map options");
 * ```
 */
export function checkOptions(
  options: unknown,
  known: Readonly<Record<string, OptionKind>>,
  what: string,
): void {
  what = String(what);
  if (options === undefined) return;
  if (options === null || typeof options !== "object" || Array.isArray(options)) {
    fail("EINVAL", `${what} must be an object, not ${describe(options)}`);
  }
  for (const [key, value] of Object.entries(options)) {
    const kind = Object.hasOwn(known, key) ? known[key] : undefined;
    if (kind === undefined) {
      const near = didYouMean(key, Object.keys(known));
      fail(
        "EINVAL",
        `unknown key ${JSON.stringify(key)} in ${what}; known: ${Object.keys(known).join(", ")}`,
        near === null ? undefined : `did you mean ${near}?`,
      );
    }
    if (value === undefined) continue;
    if (typeof kind === "function") {
      kind(value, key);
    } else if ((typeof value as string) !== kind) {
      fail("EINVAL", `${what}.${key} must be a ${kind}, not ${describe(value)}`);
    }
  }
}

/** An option kind for a VA or VA size, which takes a bigint or a number (`what` names the bag). */
export function bigintOrNumber(what: string): OptionKind {
  return (value: unknown, key: string) => {
    if (typeof value !== "bigint" && typeof value !== "number") {
      fail("EINVAL", `${what}.${key} must be a bigint or number, not ${describe(value)}`);
    }
  };
}

/** A non-negative safe integer (a VRAM address, a size, an offset), or EINVAL naming the limit. */
export function checkUint(value: unknown, what: string): number {
  if (typeof value === "bigint") {
    fail(
      "EINVAL",
      `${what} ${describe(value)} is a bigint; this takes a number (${describe(Number(value))})`,
    );
  }
  if (typeof value === "string") {
    fail("EINVAL", `${what} ${describe(value)} is a string; this takes a number`);
  }
  if (typeof value !== "number" || !Number.isInteger(value) || value < 0) {
    fail("EINVAL", `${what} ${describe(value)} is not a non-negative integer`);
  }
  if (!Number.isSafeInteger(value)) {
    fail("EINVAL", `${what} ${describe(value)} is past the safe-integer limit 2^53 - 1`);
  }
  return value;
}

/** Edit distance between two strings (insertions, deletions, substitutions; case-blind). */
function distance(a: string, b: string): number {
  a = a.toLowerCase();
  b = b.toLowerCase();
  let prev = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = cur;
  }
  return prev[b.length];
}

/**
 * The candidate closest to `word` when it is near enough to be a typo (at
 * most a third of its length, at least 1 edit; case alone always counts), or null.
 *
 * @example
 * ```ts
 * didYouMean("pramn", ["pramin", "gpu"]); // "pramin"
 * ```
 */
export function didYouMean(word: string, candidates: Iterable<string>): string | null {
  let best: string | null = null;
  let bestD = Infinity;
  for (const c of candidates) {
    if (c === word) continue;
    const d = c.toLowerCase() === word.toLowerCase() ? 0.5 : distance(word, c);
    if (d < bestD) {
      best = c;
      bestD = d;
    }
  }
  return bestD <= Math.max(1, Math.floor(word.length / 3)) ? best : null;
}

/** A non-null object (an options bag or a record argument), or EINVAL. */
export function checkObject(value: unknown, what: string): Record<string, unknown> {
  if (value === null || typeof value !== "object") {
    fail("EINVAL", `${what} must be an object, not ${describe(value)}`);
  }
  return value as Record<string, unknown>;
}

/** A Uint8Array (bytes to write), or EINVAL naming what it got. */
export function checkBytes(value: unknown, what: string): Uint8Array {
  if (!(value instanceof Uint8Array)) {
    const kind = ArrayBuffer.isView(value) ? value.constructor.name : describe(value);
    fail("EINVAL", `${what} must be a Uint8Array, not ${kind}`);
  }
  return value;
}

/** Something with the `Mmio` accessors (an aperture such as `gpu.bar0`), or EINVAL. */
export function checkMmio(value: unknown, what: string): void {
  const v = value as { read32?: unknown; write32?: unknown } | null;
  if (v === null || typeof v !== "object" || typeof v.read32 !== "function") {
    fail("EINVAL", `${what} must be an Mmio aperture (gpu.bar0), not ${describe(value)}`);
  }
}

/**
 * A GPU virtual address or size: a bigint, or a safe non-negative integer
 * number; returned as a bigint. EINVAL names the value and the limit.
 */
export function checkVa(value: unknown, what: string): bigint {
  if (typeof value === "bigint") {
    if (value < 0n) fail("EINVAL", `${what} ${describe(value)} is negative`);
    if (value >= 1n << 64n) fail("EINVAL", `${what} ${describe(value)} does not fit in 64 bits`);
    return value;
  }
  return BigInt(checkUint(value, what));
}
