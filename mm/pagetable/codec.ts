/**
 * What an MMU entry codec is, independent of the version: the generic
 * {@linkcode EntryCodec} interface, the version-independent decoded shapes it
 * returns, and small bit helpers both codecs use. `ver2.ts` and `ver3.ts`
 * instantiate the interface with their own field types; `format.ts` names the
 * "either version" instance. This module imports neither codec, so there is
 * no import cycle.
 *
 * @module
 */

import {
  checkAddressFits,
  fail,
  type PdeAperture,
  type PteAperture,
  type PteInfo,
  u64,
} from "../types.ts";

/** Page-table format version: 2 (Turing, Ampere, Ada) or 3 (Hopper, Blackwell). */
export type MmuVersion = 2 | 3;

/** The common fields of a decoded PTE of either version. */
export interface DecodedPte {
  /** VALID bit. */
  valid: boolean;
  /** Where the page lives. */
  aperture: PteAperture;
  /** Page byte address (a number when safe). */
  address: number | bigint;
  /** Set bits no field covers. */
  reserved: bigint;
}

/** The common fields of a decoded PDE of either version. */
export interface DecodedPde {
  /** IS_PTE bit: the entry is a huge PTE. */
  isPte: boolean;
  /** Where the next table lives ("invalid": nowhere). */
  aperture: PdeAperture;
  /** Next table byte address. */
  address: number | bigint;
  /** Set bits no field covers. */
  reserved: bigint;
}

/** The common fields of one decoded dual-PDE half. */
export interface DecodedDualHalf {
  /** Where the page table lives ("invalid": nowhere). */
  aperture: PdeAperture;
  /** Page table byte address. */
  address: number | bigint;
}

/** The common fields of a decoded dual PDE of either version. */
export interface DecodedDualPde {
  /** IS_PTE bit: the entry is a 2 MiB PTE. */
  isPte: boolean;
  /** Pointer to the 64 KiB-page table. */
  big: DecodedDualHalf;
  /** Pointer to the 4 KiB-page table. */
  small: DecodedDualHalf;
  /** Set bits no field covers (128-bit). */
  reserved: bigint;
}

/**
 * What every entry codec provides (`mmu.v2`, `mmu.v3`), over its own field
 * types (`PteFields`, `PdeFields`, `DualFields`) and decoded types (`Pte`,
 * `Pde`, `Dual`). Encoders validate and throw EINVAL naming the field that is
 * out of range or misplaced; decoders never throw on a 64-bit (or
 * `[low, high]` 128-bit) value. Raw entries are bigint (safe numbers are
 * accepted as input).
 *
 * @example
 * ```ts
 * function firstPage<P, D, X>(codec: EntryCodec<P, D, X>, raw: bigint): number | bigint {
 *   return codec.decodePte(raw).address;
 * }
 * ```
 */
export interface EntryCodec<
  PteFields,
  PdeFields,
  DualFields,
  Pte extends DecodedPte = DecodedPte,
  Pde extends DecodedPde = DecodedPde,
  Dual extends DecodedDualPde = DecodedDualPde,
> {
  /** MMU format version. */
  readonly version: MmuVersion;
  /** The invalid PTE (0n). */
  readonly invalidPte: bigint;
  /** The invalid PDE (0n; nova's 0x1 would be a huge PTE at PD0/PD1, facts D14). */
  readonly invalidPde: bigint;
  /** A big-page PTE telling the MMU not to look at the small-page table. */
  readonly noSmallPte: bigint;
  /** Encodes a PTE from named fields. */
  encodePte(fields: PteFields): bigint;
  /** Decodes any 64-bit value as a PTE. */
  decodePte(raw: bigint | number): Pte;
  /** Encodes a PDE (a non-dual directory entry) from named fields. */
  encodePde(fields: PdeFields): bigint;
  /** Decodes any 64-bit value as a PDE. */
  decodePde(raw: bigint | number): Pde;
  /** Encodes a 128-bit PD0 dual PDE as `[low, high]`. */
  encodeDualPde(fields: DualFields): [bigint, bigint];
  /** Decodes a PD0 dual PDE given as `[low, high]`. */
  decodeDualPde(raw: readonly [bigint | number, bigint | number]): Dual;
  /** A valid read-write or read-only PTE to a VRAM page (kind 0 unless given). */
  vramPte(address: number, options: { writable: boolean; kind?: number }): bigint;
  /** A PDE pointing to a VRAM table. */
  vramPde(address: number): bigint;
  /** A dual PDE to VRAM big and/or small tables (`[0n, 0n]` for neither). */
  vramDualPde(tables: { big?: number; small?: number }): [bigint, bigint];
  /** Version-independent view of a raw PTE: valid / aperture / address / writable / privileged. */
  pteInfo(raw: bigint): PteInfo;
  /** True for the big-page "no small pages" marker. */
  isNoSmallPte(raw: bigint): boolean;
}

/**
 * The mask of bits `hi`..`lo` (inclusive).
 *
 * @example
 * ```ts
 * bits(7, 4); // 0xf0n
 * ```
 */
export function bits(hi: number, lo: number): bigint {
  return ((1n << BigInt(hi - lo + 1)) - 1n) << BigInt(lo);
}

/**
 * Checks a dual PDE given as `[low, high]` and returns both words as u64
 * bigints; throws EINVAL naming `what` otherwise.
 *
 * @example
 * ```ts
 * dualWords([0x12, 0n], "v3 dual PDE"); // [0x12n, 0n]
 * ```
 */
export function dualWords(
  raw: readonly [bigint | number, bigint | number],
  what: string,
): [bigint, bigint] {
  if (!Array.isArray(raw) || raw.length !== 2) {
    fail("EINVAL", `${what} must be [low, high] 64-bit words, got ${String(raw)}`);
  }
  return [u64(raw[0], `${what} low word`), u64(raw[1], `${what} high word`)];
}

/** An entry field that holds a VRAM address, as the fast `vram*` encoders check it. */
export interface VramField {
  /** The address must be aligned to 2^alignBits (the field holds address >> alignBits). */
  readonly alignBits: number;
  /** The address must be below 2^limitBits. */
  readonly limitBits: number;
  /** What the address is, for errors ("v2 PTE address"). */
  readonly what: string;
  /** The hardware field, for errors ("ADDRESS_VID"). */
  readonly field: string;
}

/** The four VRAM targets of a codec's fast encoders, as {@linkcode vramFields} builds them. */
export interface VramFields {
  /** `vramPte`: 4 KiB aligned. */
  readonly pte: VramField;
  /** `vramPde`: 4 KiB aligned. */
  readonly pde: VramField;
  /** `vramDualPde` big half: 256 B aligned (a 64 KiB-page table is 256 bytes). */
  readonly big: VramField;
  /** `vramDualPde` small half: 4 KiB aligned. */
  readonly small: VramField;
}

/**
 * The VRAM targets of a codec's `vramPte` / `vramPde` / `vramDualPde`, named
 * after `codec` ("v2") in errors, all below 2^`limitBits` in field `field`.
 *
 * @example
 * ```ts
 * const t = vramFields("v3", { limitBits: 40, field: "VRAM address field" });
 * t.big.what; // "v3 dual PDE big address"
 * ```
 */
export function vramFields(
  codec: string,
  options: { limitBits: number; field: string },
): VramFields {
  const { limitBits, field } = options;
  const at = (alignBits: number, what: string): VramField =>
    Object.freeze({ alignBits, limitBits, what: `${codec} ${what}`, field });
  return Object.freeze({
    pte: at(12, "PTE address"),
    pde: at(12, "PDE address"),
    big: at(8, "dual PDE big address"),
    small: at(12, "dual PDE small address"),
  });
}

/**
 * Checks the VRAM target of a fast `vram*` encoder: a non-negative safe
 * integer that `target` can hold; throws EINVAL otherwise. The common case
 * costs only number arithmetic (pass a module-level `target`: no allocation);
 * bigints appear only to build the error.
 *
 * @example
 * ```ts
 * const PTE = { alignBits: 12, limitBits: 40, what: "PTE address", field: "ADDRESS_VID" };
 * vramTarget(0x1000, PTE); // ok
 * vramTarget(0x1800, PTE); // throws EINVAL: not aligned to 0x1000
 * ```
 */
export function vramTarget(address: number, target: VramField): void {
  const { alignBits, limitBits } = target;
  if (
    typeof address !== "number" || !Number.isSafeInteger(address) || address < 0 ||
    address % 2 ** alignBits !== 0 || address >= 2 ** limitBits
  ) {
    const a = typeof address === "number" && Number.isSafeInteger(address) && address >= 0
      ? BigInt(address)
      : fail("EINVAL", `${target.what} ${String(address)} is not a non-negative safe integer`);
    checkAddressFits(a, alignBits, limitBits, target.what, target.field);
  }
}
