/**
 * The one error class of novamm. Every failure carries a POSIX-like code and a
 * message that names the offending value and the limit it broke; `hint`, when
 * present, says what fixes it (printed by the CLI as a second line).
 *
 * Lives in `hw/` because both halves (the simulator and `mm/`) raise it and
 * `hw/` must not import `mm/`.
 *
 * @module
 */

/** Error codes used across novamm (the Linux errno names). */
export type ErrorCode =
  | "EINVAL"
  | "ENOMEM"
  | "ENOSPC"
  | "ENODEV"
  | "ENOENT"
  | "EBUSY"
  | "ETIMEDOUT"
  | "EFAULT"
  | "EPERM"
  | "EACCES"
  | "EOVERFLOW"
  | "ENOTSUP"
  | "EINTR"
  | "EAGAIN"
  | "EIO";

/**
 * A novamm failure: `code` says what kind, `message` what and why.
 *
 * @example
 * ```ts
 * import { openGpu } from "../mod.ts";
 * using gpu = await openGpu({ device: "sim" });
 * try { gpu.pramin.read32(2 ** 41); } catch (e) { if (e instanceof NovaError) console.log(e.code); }
 * ```
 */
export class NovaError extends Error {
  /** The errno-style code. */
  readonly code: ErrorCode;
  /** What the user can do about it, if anything. */
  readonly hint?: string;

  /** Constructs it (see the class documentation for who does and how). */
  constructor(code: ErrorCode, message: string, options?: { hint?: string; cause?: unknown }) {
    super(
      `${code}: ${message}`,
      options?.cause === undefined ? undefined : { cause: options.cause },
    );
    this.name = "NovaError";
    this.code = code;
    if (options?.hint !== undefined) this.hint = options.hint;
  }
}

/** Throws a {@linkcode NovaError}; handy in expressions. */
export function fail(code: ErrorCode, message: string, hint?: string): never {
  throw new NovaError(code, message, hint === undefined ? undefined : { hint });
}

/** Formats a number or bigint as 0x-prefixed hex (for messages and REPL output). */
export function hex(value: number | bigint, pad = 0): string {
  if (typeof value !== "bigint" && (typeof value !== "number" || !Number.isInteger(value))) {
    fail("EINVAL", `hex takes an integer number or a bigint, not ${describe(value)}`);
  }
  if (typeof pad !== "number" || !Number.isInteger(pad) || pad < 0 || pad > 64) {
    fail("EINVAL", `hex padding ${describe(pad)} is not an integer in 0..64`);
  }
  const neg = value < 0;
  const digits = (neg ? -BigInt(value) : BigInt(value)).toString(16).padStart(pad, "0");
  return `${neg ? "-" : ""}0x${digits}`;
}

/**
 * A byte count for people, one way everywhere: `512 B`, `4 KiB`, `1.5 MiB`,
 * `23.99 GiB`, `2 TiB`: the largest unit the count reaches, whole when it
 * divides, else rounded down to at most two decimals (never overstated, so
 * the banner, the buddy and the walk print the same text for the same range).
 */
export function formatSize(bytes: number | bigint): string {
  const n = Number(bytes);
  const sign = n < 0 ? "-" : "";
  const a = Math.abs(n);
  for (
    const [unit, s] of [["TiB", 2 ** 40], ["GiB", 2 ** 30], ["MiB", 2 ** 20], [
      "KiB",
      1024,
    ]] as const
  ) {
    if (a >= s) {
      const v = a / s;
      return `${sign}${Number.isInteger(v) ? v : Math.floor(v * 100) / 100} ${unit}`;
    }
  }
  return `${n} B`;
}

/** Names a value for an error message: hex for integers, JSON-ish otherwise. */
export function describe(value: unknown): string {
  if (typeof value === "bigint") return `${hex(value)}n`;
  if (typeof value === "number") {
    return Number.isSafeInteger(value) && value >= 0 ? hex(value) : String(value);
  }
  if (typeof value === "string") return JSON.stringify(value);
  if (typeof value === "function") return "a function";
  if (Array.isArray(value)) return `an array of ${value.length}`;
  if (ArrayBuffer.isView(value)) return `a ${value.constructor.name}`;
  if (value !== null && typeof value === "object") {
    return `an object { ${Object.keys(value).slice(0, 4).join(", ")} }`;
  }
  return String(value);
}
