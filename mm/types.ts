/**
 * Address and size types of the `mm` half: checked conversions between VRAM
 * addresses (plain numbers below 2^40), GPU virtual addresses (bigint), frame
 * numbers and raw 64-bit entries, plus the aperture names shared by both MMU
 * entry codecs.
 *
 * Every conversion checks its input; precision is never lost silently
 * (design principle 4).
 *
 * @module
 */

import { describe, fail, hex } from "../hw/errors.ts";

export { describe, fail, hex, NovaError } from "../hw/errors.ts";
export type { ErrorCode } from "../hw/errors.ts";

/** VRAM is addressed with 40 bits (PRAMIN window base << 16; nova `MAX_VRAM_OFFSET`). */
export const VRAM_ADDRESS_LIMIT = 2 ** 40;
/** Small page / frame size. */
export const PAGE_4K = 4096;
/** Big page size (64 KiB, the instance block's BIG_PAGE_SIZE = 1). */
export const PAGE_64K = 65536;
/** Huge page mapped by a PTE at PD0. */
export const PAGE_2M = 2 ** 21;
/** Huge page mapped by a PTE at PD1 (Ampere and later). */
export const PAGE_512M = 2 ** 29;
/** Huge page mapped by a PTE at PD2 (Blackwell only). */
export const PAGE_256G = 2 ** 38;

const TWO_64 = 1n << 64n;

/**
 * Where a PTE points: NVIDIA's `NV_MMU_VER2/VER3_PTE_APERTURE` values
 * 0 VIDEO_MEMORY, 1 PEER_MEMORY, 2 SYSTEM_COHERENT, 3 SYSTEM_NON_COHERENT.
 */
export type PteAperture = "video" | "peer" | "sysCoherent" | "sysNonCoherent";

/**
 * Where a PDE points: `NV_MMU_VER2/VER3_PDE_APERTURE` values 0 INVALID,
 * 1 VIDEO_MEMORY, 2 SYSTEM_COHERENT, 3 SYSTEM_NON_COHERENT. Note the encoding
 * differs from {@linkcode PteAperture}.
 */
export type PdeAperture = "invalid" | "video" | "sysCoherent" | "sysNonCoherent";

/** What a mapper or walker needs from any PTE, whatever the MMU version (`pteInfo`). */
export interface PteInfo {
  /** VALID bit. */
  valid: boolean;
  /** Where the page lives. */
  aperture: PteAperture;
  /** Page byte address (a number when safe). */
  address: number | bigint;
  /** Valid and not read-only (v2 READ_ONLY; v3 PCF bit 2). */
  writable: boolean;
  /** Valid and privileged-only (v2 PRIVILEGE; v3 PCF bit 1). */
  privileged: boolean;
}

/** PTE aperture names indexed by the 2-bit hardware value. */
export const PTE_APERTURES: readonly PteAperture[] = Object.freeze([
  "video",
  "peer",
  "sysCoherent",
  "sysNonCoherent",
]);

/** PDE aperture names indexed by the 2-bit hardware value. */
export const PDE_APERTURES: readonly PdeAperture[] = Object.freeze([
  "invalid",
  "video",
  "sysCoherent",
  "sysNonCoherent",
]);

/**
 * Checks a VRAM byte address: a safe integer in [0, 2^40).
 *
 * @example
 * ```ts
 * vramAddress(0x1000); // 4096
 * vramAddress(2 ** 40); // throws EOVERFLOW
 * ```
 */
export function vramAddress(value: number | bigint, what = "VRAM address"): number {
  if (typeof value === "bigint") {
    if (value < 0n) fail("EINVAL", `${what} ${describe(value)} is negative`);
    if (value >= BigInt(VRAM_ADDRESS_LIMIT)) {
      fail(
        "EOVERFLOW",
        `${what} ${describe(value)} is at or above the VRAM limit ${hex(VRAM_ADDRESS_LIMIT)}`,
      );
    }
    return Number(value);
  }
  if (typeof value !== "number" || !Number.isInteger(value) || value < 0) {
    fail("EINVAL", `${what} ${describe(value)} is not a non-negative integer`);
  }
  if (value >= VRAM_ADDRESS_LIMIT) {
    fail(
      "EOVERFLOW",
      `${what} ${describe(value)} is at or above the VRAM limit ${hex(VRAM_ADDRESS_LIMIT)}`,
    );
  }
  return value;
}

/**
 * Checks a GPU virtual address against a `vaBits`-bit address space (49 on
 * MMU v2, 57 on v3) and returns it as a bigint.
 *
 * @example
 * ```ts
 * virtualAddress(0x1000, 49); // 4096n
 * virtualAddress(1n << 49n, 49); // throws EOVERFLOW
 * ```
 */
export function virtualAddress(value: bigint | number, vaBits: number): bigint {
  let va: bigint;
  if (typeof value === "bigint") {
    va = value;
  } else {
    if (typeof value !== "number" || !Number.isSafeInteger(value)) {
      fail("EINVAL", `virtual address ${describe(value)} is not a safe integer (use a bigint)`);
    }
    va = BigInt(value);
  }
  if (va < 0n) fail("EINVAL", `virtual address ${describe(value)} is negative`);
  const limit = 1n << BigInt(vaBits);
  if (va >= limit) {
    fail(
      "EOVERFLOW",
      `virtual address ${hex(va)} is at or above the ${vaBits}-bit VA limit ${hex(limit)}`,
    );
  }
  return va;
}

/**
 * Byte address of a 4 KiB frame number.
 *
 * @example
 * ```ts
 * pfnToAddress(0x1200); // 0x1200000
 * ```
 */
export function pfnToAddress(pfn: number): number {
  if (typeof pfn !== "number" || !Number.isSafeInteger(pfn) || pfn < 0) {
    fail("EINVAL", `frame number ${describe(pfn)} is not a non-negative integer`);
  }
  const address = pfn * PAGE_4K;
  if (address >= VRAM_ADDRESS_LIMIT) {
    fail(
      "EOVERFLOW",
      `frame number ${hex(pfn)} gives address ${hex(address)}, at or above the VRAM limit ${
        hex(VRAM_ADDRESS_LIMIT)
      }`,
    );
  }
  return address;
}

/**
 * 4 KiB frame number of a VRAM byte address; the address must be frame aligned.
 *
 * @example
 * ```ts
 * addressToPfn(0x1200000); // 0x1200
 * ```
 */
export function addressToPfn(address: number): number {
  const a = vramAddress(address);
  if (a % PAGE_4K !== 0) fail("EINVAL", `address ${hex(a)} is not 4 KiB aligned`);
  return a / PAGE_4K;
}

/**
 * Converts a bigint to a number, refusing values outside the safe range.
 *
 * @example
 * ```ts
 * toSafeNumber(0x1000n, "offset"); // 4096
 * ```
 */
export function toSafeNumber(value: bigint, what: string): number {
  if (value > BigInt(Number.MAX_SAFE_INTEGER) || value < BigInt(Number.MIN_SAFE_INTEGER)) {
    fail("EOVERFLOW", `${what} ${hex(value)} does not fit a safe integer (limit 2^53 - 1)`);
  }
  return Number(value);
}

/** A number when it is safe, else the bigint itself (how decoded addresses are reported). */
export function numberIfSafe(value: bigint): number | bigint {
  return value <= 0x1f_ffff_ffff_ffffn ? Number(value) : value;
}

/**
 * Checks a raw 64-bit value (an entry, a 64-bit VRAM word): a bigint in
 * [0, 2^64) or a non-negative safe number.
 *
 * @example
 * ```ts
 * u64(0x1234501); // 0x1234501n
 * ```
 */
export function u64(value: bigint | number, what = "raw value"): bigint {
  if (typeof value === "bigint") {
    if (value >= 0n && value < TWO_64) return value;
    fail("EINVAL", `${what} ${describe(value)} is not a 64-bit unsigned value`);
  }
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 0) {
    fail("EINVAL", `${what} ${describe(value)} is not a non-negative safe integer or bigint`);
  }
  return BigInt(value);
}

const DENO_INSPECT = Symbol.for("Deno.customInspect");
const NODE_INSPECT = Symbol.for("nodejs.util.inspect.custom");

// One wrapper per summary function, so decoding many entries allocates no closures.
const wrappers = new WeakMap<object, (this: object) => string>();

/**
 * Makes a plain-data object print as `summary(obj)` in Deno's REPL, Node's
 * `util.inspect` and `String()`, without adding enumerable properties (so
 * `deepStrictEqual` against a literal still holds). Pass a module-level
 * function: wrappers are cached per function.
 *
 * @example
 * ```ts
 * const p = inspectable({ x: 1 }, (o) => `P(${o.x})`);
 * String(p); // "P(1)"
 * ```
 */
export function inspectable<T extends object>(obj: T, summary: (obj: T) => string): T {
  let show = wrappers.get(summary);
  if (show === undefined) {
    show = function (this: object): string {
      return summary(this as T);
    };
    wrappers.set(summary, show);
  }
  Object.defineProperty(obj, DENO_INSPECT, { value: show, configurable: true, writable: true });
  Object.defineProperty(obj, NODE_INSPECT, { value: show, configurable: true, writable: true });
  Object.defineProperty(obj, "toString", { value: show, configurable: true, writable: true });
  return obj;
}

// ---------------------------------------------------------------------------
// Entry-field checks shared by the MMU v2 and v3 codecs. Each returns the
// field's default (false / 0 / 0n / index 0) when the value is undefined and
// throws EINVAL naming the entry, the field and the limit otherwise.

/** Rejects keys that are not fields of this entry (catches typos such as `readonly`). */
export function checkFieldNames(
  fields: object,
  allowed: ReadonlySet<string>,
  what: string,
): void {
  if (typeof fields !== "object" || fields === null) {
    fail("EINVAL", `${what} fields must be an object, got ${describe(fields)}`);
  }
  for (const key in fields) {
    if (!allowed.has(key)) {
      fail(
        "EINVAL",
        `${what} has no field ${JSON.stringify(key)} (fields: ${[...allowed].join(", ")})`,
      );
    }
  }
}

/** A boolean flag field; undefined means false. */
export function flagField(value: unknown, what: string): boolean {
  if (value === undefined) return false;
  if (typeof value !== "boolean") {
    fail("EINVAL", `${what} must be a boolean, got ${describe(value)}`);
  }
  return value;
}

/** An unsigned integer field of `bits` bits; undefined means 0. */
export function uintField(value: unknown, bits: number, what: string): number {
  if (value === undefined) return 0;
  const max = 2 ** bits - 1;
  if (typeof value !== "number" || !Number.isInteger(value) || value < 0 || value > max) {
    fail("EINVAL", `${what} ${describe(value)} is out of range: ${bits} bits, 0..${hex(max)}`);
  }
  return value;
}

/** A byte-address field (bigint or safe number); undefined means 0n. */
export function addressField(value: unknown, what: string): bigint {
  if (value === undefined) return 0n;
  if (typeof value === "bigint") {
    if (value < 0n) fail("EINVAL", `${what} ${describe(value)} is negative`);
    return value;
  }
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 0) {
    fail("EINVAL", `${what} ${describe(value)} is not a non-negative safe integer or bigint`);
  }
  return BigInt(value);
}

/** An aperture name field; returns its 2-bit hardware value (undefined means 0). */
export function apertureField(value: unknown, names: readonly string[], what: string): number {
  if (value === undefined) return 0;
  const index = typeof value === "string" ? names.indexOf(value) : -1;
  if (index < 0) {
    fail(
      "EINVAL",
      `${what} ${describe(value)} is not one of ${names.map((n) => `"${n}"`).join(", ")}`,
    );
  }
  return index;
}

/**
 * Checks that `address` is aligned to 2^`alignBits` and below 2^`limitBits`,
 * the span of the entry field `field` that will hold it.
 */
export function checkAddressFits(
  address: bigint,
  alignBits: number,
  limitBits: number,
  what: string,
  field: string,
): void {
  if ((address & ((1n << BigInt(alignBits)) - 1n)) !== 0n) {
    fail(
      "EINVAL",
      `${what} ${hex(address)} is not aligned to ${
        hex(2 ** alignBits)
      } (${field} holds address >> ${alignBits})`,
    );
  }
  const limit = 1n << BigInt(limitBits);
  if (address >= limit) {
    fail("EINVAL", `${what} ${hex(address)} does not fit ${field}: limit ${hex(limit)}`);
  }
}

/**
 * The `reserved` input of an encoder: bits no field covers, passed back
 * verbatim (so `encode(decode(raw)) === raw`). Only bits in `allowed` may be
 * set; undefined means 0n.
 */
export function reservedField(value: unknown, allowed: bigint, what: string): bigint {
  if (value === undefined) return 0n;
  const bits = typeof value === "number" && Number.isSafeInteger(value) && value >= 0
    ? BigInt(value)
    : value;
  if (typeof bits !== "bigint" || bits < 0n) {
    fail("EINVAL", `${what} reserved ${describe(value)} is not a non-negative bigint`);
  }
  const clash = bits & ~allowed;
  if (clash !== 0n) {
    fail(
      "EINVAL",
      `${what} reserved ${hex(bits)} sets bits ${hex(clash)} that belong to fields (free bits: ${
        hex(allowed)
      })`,
    );
  }
  return bits;
}
