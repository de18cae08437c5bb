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
  if (options === undefined) return;
  if (options === null || typeof options !== "object" || Array.isArray(options)) {
    fail("EINVAL", `${what} must be an object, not ${describe(options)}`);
  }
  for (const [key, value] of Object.entries(options)) {
    const kind = Object.hasOwn(known, key) ? known[key] : undefined;
    if (kind === undefined) {
      fail(
        "EINVAL",
        `unknown key ${JSON.stringify(key)} in ${what}; known: ${Object.keys(known).join(", ")}`,
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

/** A non-negative safe integer (a VRAM address, a size, an offset), or EINVAL naming the limit. */
export function checkUint(value: unknown, what: string): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < 0) {
    fail("EINVAL", `${what} ${describe(value)} is not a non-negative integer`);
  }
  if (!Number.isSafeInteger(value)) {
    fail("EINVAL", `${what} ${describe(value)} is past the safe-integer limit 2^53 - 1`);
  }
  return value;
}
