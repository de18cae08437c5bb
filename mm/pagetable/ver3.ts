/**
 * MMU v3 entry codec (Hopper, Blackwell): PTE, PDE (PD4…PD1) and the 128-bit
 * dual PDE at PD0.
 *
 * Bit layouts from NVIDIA's `NV_MMU_VER3_*` definitions in open-gpu-kernel-modules
 * `src/common/inc/swref/published/hopper/gh100/dev_mmu.h` (Blackwell uses the
 * same encoders; facts §5.4):
 * - PTE: VALID 0, APERTURE 2:1, PCF 7:3, KIND 11:8, ADDRESS 51:12 (ADDRESS_VID
 *   is 39:12, so bits 51:40 of a video PTE are reserved), PEER_ID 63:61 (a
 *   field of peer PTEs only; reserved otherwise).
 * - PDE: IS_PTE 0, APERTURE 2:1, PCF 5:3, ADDRESS 51:12.
 * - Dual PDE: IS_PTE 0, APERTURE_BIG 2:1, PCF_BIG 5:3, ADDRESS_BIG 51:8
 *   (shift 8), APERTURE_SMALL 66:65, PCF_SMALL 69:67, ADDRESS_SMALL 115:76.
 *
 * PTE PCF bits when VALID=1 (NVIDIA's value table, facts D6): bit 0 uncached,
 * bit 1 privileged, bit 2 read-only, bit 3 atomics disabled, bit 4 access
 * counting disabled. When VALID=0: 0 INVALID, 1 SPARSE, 2 MAPPING_NOWHERE,
 * 3 NO_VALID_4KB_PAGE. PDE addresses have no aperture-specific width, so an
 * invalid PDE still reports its address bits.
 *
 * @module
 */

import {
  addressField,
  apertureField,
  checkAddressFits,
  checkFieldNames,
  fail,
  flagField,
  hex,
  inspectable,
  numberIfSafe,
  PDE_APERTURES,
  type PdeAperture,
  PTE_APERTURES,
  type PteAperture,
  type PteInfo,
  reservedField,
  u64,
  uintField,
} from "../types.ts";
import { bits, dualWords, type EntryCodec, vramFields, vramTarget } from "./codec.ts";

/** Fields of an MMU v3 PTE (all optional; missing means false / 0 / `"video"`). */
export interface V3PteFields {
  /** VALID (bit 0). */
  valid?: boolean;
  /** APERTURE (2:1), PTE encoding. */
  aperture?: PteAperture;
  /** PCF (7:3), 5 bits: e.g. 0x10 REGULAR_RW_ATOMIC_CACHED_ACD, 0x14 its read-only twin. */
  pcf?: number;
  /** KIND (11:8), 4 bits: 0x0 PITCH, 0x6 GENERIC_MEMORY, 0x7 INVALID. */
  kind?: number;
  /** Page byte address: ADDRESS_VID 39:12 (video) or ADDRESS 51:12 (peer, system), shift 12. */
  address?: number | bigint;
  /** PEER_ID (63:61), peer aperture only. */
  peerId?: number;
  /** Bits no field covers, passed through verbatim. */
  reserved?: bigint;
}

/** A decoded MMU v3 PTE: every field, plus `reserved` (set bits no field covers). */
export type V3Pte = Required<V3PteFields>;

/** Fields of an MMU v3 PDE (PD4…PD1). */
export interface V3PdeFields {
  /** IS_PTE (bit 0): a huge PTE (encode those with `encodePte`). */
  isPte?: boolean;
  /** APERTURE (2:1), PDE encoding; missing means `"invalid"`. */
  aperture?: PdeAperture;
  /** PCF (5:3), 3 bits: bit 0 uncached (sparse if invalid), bit 1 ATS not allowed. */
  pcf?: number;
  /** Next table byte address: ADDRESS 51:12, stored in place. */
  address?: number | bigint;
  /** Bits no field covers, passed through verbatim. */
  reserved?: bigint;
}

/** A decoded MMU v3 PDE: every field, plus `reserved`. */
export type V3Pde = Required<V3PdeFields>;

/** One half of an MMU v3 dual PDE. */
export interface V3DualHalfFields {
  /** APERTURE_BIG (2:1) / APERTURE_SMALL (66:65); missing means `"invalid"`. */
  aperture?: PdeAperture;
  /** PCF_BIG (5:3) / PCF_SMALL (69:67), 3 bits. */
  pcf?: number;
  /** Table address: big half 256 B aligned (51:8), small half 4 KiB aligned (115:76). */
  address?: number | bigint;
}

/** A decoded half of an MMU v3 dual PDE. */
export type V3DualHalf = Required<V3DualHalfFields>;

/** Fields of an MMU v3 dual PDE (PD0, 16 bytes). */
export interface V3DualPdeFields {
  /** IS_PTE (bit 0): the entry is a 2 MiB PTE (encode that with `encodePte`). */
  isPte?: boolean;
  /** Pointer to the 64 KiB-page table (low word). */
  big?: V3DualHalfFields;
  /** Pointer to the 4 KiB-page table (high word). */
  small?: V3DualHalfFields;
  /** Uncovered bits of the 128-bit entry (bit 64 = bit 0 of the high word). */
  reserved?: bigint;
}

/** A decoded MMU v3 dual PDE. */
export interface V3DualPde {
  /** IS_PTE (bit 0). */
  isPte: boolean;
  /** The 64 KiB-page table pointer (low word). */
  big: V3DualHalf;
  /** The 4 KiB-page table pointer (high word). */
  small: V3DualHalf;
  /** Uncovered set bits of the 128-bit entry (bit 64 = bit 0 of the high word). */
  reserved: bigint;
}

const ALL64 = (1n << 64n) - 1n;
const VID_LIMIT_BITS = 40; // ADDRESS_VID 39:12
const ADDR_LIMIT_BITS = 52; // ADDRESS 51:12 / ADDRESS_BIG 51:8
const ADDR_4K = bits(51, 12);
const ADDR_VID = bits(39, 12);
const ADDR_BIG = bits(51, 8);

const PTE_FREE = [
  ALL64 & ~(0xfffn | ADDR_VID),
  ALL64 & ~(0xfffn | ADDR_4K | bits(63, 61)),
  ALL64 & ~(0xfffn | ADDR_4K),
  ALL64 & ~(0xfffn | ADDR_4K),
];
const PDE_FREE = ALL64 & ~(0x3fn | ADDR_4K);
const DUAL_LO_FREE = ALL64 & ~(0x3fn | ADDR_BIG);
const DUAL_HI_FREE = ALL64 & ~(0x3en | ADDR_4K);
const DUAL_FREE = (DUAL_HI_FREE << 64n) | DUAL_LO_FREE;

const PTE_KEYS = new Set(["valid", "aperture", "pcf", "kind", "address", "peerId", "reserved"]);
const PDE_KEYS = new Set(["isPte", "aperture", "pcf", "address", "reserved"]);
const DUAL_KEYS = new Set(["isPte", "big", "small", "reserved"]);
const HALF_KEYS = new Set(["aperture", "pcf", "address"]);

/** Names of PTE PCF values when VALID=0. */
const INVALID_PCF = ["INVALID", "SPARSE", "MAPPING_NOWHERE", "NO_VALID_4KB_PAGE"];

/** PCF written by `v3.vramPte` for read-write pages (nouveau's choice, facts D11). */
const PCF_RW = 0x10; // REGULAR_RW_ATOMIC_CACHED_ACD
const PCF_RO = 0x14; // REGULAR_RO_ATOMIC_CACHED_ACD
const PDE_PCF_VRAM = 2; // VALID_CACHED_ATS_NOT_ALLOWED (nouveau, facts D10)

function showPte(p: V3Pte): string {
  let s = `PTE v3 ${p.valid ? "valid" : "invalid"} ${p.aperture} ${hex(p.address)} pcf=${
    hex(p.pcf)
  }`;
  if (!p.valid && p.pcf < INVALID_PCF.length) s += ` (${INVALID_PCF[p.pcf]})`;
  s += ` kind=${hex(p.kind)}`;
  if (p.aperture === "peer") s += ` peer=${p.peerId}`;
  if (p.reserved !== 0n) s += ` reserved=${hex(p.reserved)}`;
  return s;
}

function showPde(p: V3Pde): string {
  let s = `PDE v3 ${p.aperture}`;
  if (p.aperture !== "invalid" || p.address !== 0) s += ` ${hex(p.address)}`;
  s += ` pcf=${hex(p.pcf)}`;
  if (p.isPte) s += " isPte";
  if (p.reserved !== 0n) s += ` reserved=${hex(p.reserved)}`;
  return s;
}

function showHalf(name: string, h: V3DualHalf): string {
  if (h.aperture === "invalid" && h.address === 0 && h.pcf === 0) return ` ${name}=invalid`;
  return ` ${name}=${h.aperture} ${hex(h.address)} pcf=${hex(h.pcf)}`;
}

function showDual(p: V3DualPde): string {
  let s = `DualPDE v3${p.isPte ? " isPte" : ""}${showHalf("big", p.big)}${
    showHalf("small", p.small)
  }`;
  if (p.reserved !== 0n) s += ` reserved=${hex(p.reserved)}`;
  return s;
}

function encodePte(fields: V3PteFields): bigint {
  checkFieldNames(fields, PTE_KEYS, "v3 PTE");
  const valid = flagField(fields.valid, "v3 PTE valid");
  const ap = apertureField(fields.aperture, PTE_APERTURES, "v3 PTE aperture");
  const pcf = uintField(fields.pcf, 5, "v3 PTE pcf");
  const kind = uintField(fields.kind, 4, "v3 PTE kind");
  const address = addressField(fields.address, "v3 PTE address");
  const peerId = uintField(fields.peerId, 3, "v3 PTE peerId");
  const video = ap === 0;
  checkAddressFits(
    address,
    12,
    video ? VID_LIMIT_BITS : ADDR_LIMIT_BITS,
    "v3 PTE address",
    video ? "ADDRESS_VID (39:12)" : "ADDRESS (51:12)",
  );
  if (peerId !== 0 && ap !== 1) {
    fail("EINVAL", `v3 PTE peerId ${peerId} needs aperture "peer", not "${PTE_APERTURES[ap]}"`);
  }
  const reserved = reservedField(fields.reserved, PTE_FREE[ap], "v3 PTE");
  const low = (valid ? 1 : 0) | (ap << 1) | (pcf << 3) | (kind << 8);
  return BigInt(low) | address | (BigInt(peerId) << 61n) | reserved;
}

function decodePte(raw: bigint | number): V3Pte {
  const r = u64(raw, "v3 PTE");
  const low = Number(r & 0xfffn);
  const ap = (low >> 1) & 3;
  return inspectable({
    valid: (low & 1) !== 0,
    aperture: PTE_APERTURES[ap],
    pcf: (low >> 3) & 0x1f,
    kind: (low >> 8) & 0xf,
    address: numberIfSafe(r & (ap === 0 ? ADDR_VID : ADDR_4K)),
    peerId: ap === 1 ? Number(r >> 61n) : 0,
    reserved: r & PTE_FREE[ap],
  }, showPte);
}

function encodePde(fields: V3PdeFields): bigint {
  checkFieldNames(fields, PDE_KEYS, "v3 PDE");
  const isPte = flagField(fields.isPte, "v3 PDE isPte");
  const ap = apertureField(fields.aperture, PDE_APERTURES, "v3 PDE aperture");
  const pcf = uintField(fields.pcf, 3, "v3 PDE pcf");
  const address = addressField(fields.address, "v3 PDE address");
  checkAddressFits(address, 12, ADDR_LIMIT_BITS, "v3 PDE address", "ADDRESS (51:12)");
  const reserved = reservedField(fields.reserved, PDE_FREE, "v3 PDE");
  return BigInt((isPte ? 1 : 0) | (ap << 1) | (pcf << 3)) | address | reserved;
}

function decodePde(raw: bigint | number): V3Pde {
  const r = u64(raw, "v3 PDE");
  const low = Number(r & 0x3fn);
  return inspectable({
    isPte: (low & 1) !== 0,
    aperture: PDE_APERTURES[(low >> 1) & 3],
    pcf: low >> 3,
    address: numberIfSafe(r & ADDR_4K),
    reserved: r & PDE_FREE,
  }, showPde);
}

function half(
  value: V3DualHalfFields | undefined,
  name: string,
  alignBits: number,
  field: string,
): bigint {
  if (value === undefined) return 0n;
  const what = `v3 dual PDE ${name}`;
  checkFieldNames(value, HALF_KEYS, what);
  const ap = apertureField(value.aperture, PDE_APERTURES, `${what}.aperture`);
  const pcf = uintField(value.pcf, 3, `${what}.pcf`);
  const address = addressField(value.address, `${what}.address`);
  checkAddressFits(address, alignBits, ADDR_LIMIT_BITS, `${what}.address`, field);
  return BigInt((ap << 1) | (pcf << 3)) | address;
}

function encodeDualPde(fields: V3DualPdeFields): [bigint, bigint] {
  checkFieldNames(fields, DUAL_KEYS, "v3 dual PDE");
  const isPte = flagField(fields.isPte, "v3 dual PDE isPte");
  const big = half(fields.big, "big", 8, "ADDRESS_BIG (51:8)");
  const small = half(fields.small, "small", 12, "ADDRESS_SMALL (115:76)");
  const reserved = reservedField(fields.reserved, DUAL_FREE, "v3 dual PDE");
  return [(isPte ? 1n : 0n) | big | (reserved & ALL64), small | (reserved >> 64n)];
}

function decodeDualPde(raw: readonly [bigint | number, bigint | number]): V3DualPde {
  const [lo, hi] = dualWords(raw, "v3 dual PDE");
  const l = Number(lo & 0x3fn);
  const h = Number(hi & 0x3fn);
  return inspectable({
    isPte: (l & 1) !== 0,
    big: {
      aperture: PDE_APERTURES[(l >> 1) & 3],
      pcf: l >> 3,
      address: numberIfSafe(lo & ADDR_BIG),
    },
    small: {
      aperture: PDE_APERTURES[(h >> 1) & 3],
      pcf: h >> 3,
      address: numberIfSafe(hi & ADDR_4K),
    },
    reserved: ((hi & DUAL_HI_FREE) << 64n) | (lo & DUAL_LO_FREE),
  }, showDual);
}

const TARGET = vramFields("v3", { limitBits: VID_LIMIT_BITS, field: "VRAM address field" });

function vramPte(address: number, options: { writable: boolean; kind?: number }): bigint {
  vramTarget(address, TARGET.pte);
  const kind = uintField(options.kind, 4, "v3 PTE kind");
  // Below 2^40 everything fits a safe number: address in place, PCF at 7:3, KIND at 11:8.
  return BigInt(address + kind * 256 + (options.writable ? PCF_RW : PCF_RO) * 8 + 1);
}

function vramPde(address: number): bigint {
  vramTarget(address, TARGET.pde);
  return BigInt(address + PDE_PCF_VRAM * 8 + 2);
}

function vramDualPde(tables: { big?: number; small?: number }): [bigint, bigint] {
  let lo = 0n;
  let hi = 0n;
  if (tables.big !== undefined) {
    vramTarget(tables.big, TARGET.big);
    lo = BigInt(tables.big + PDE_PCF_VRAM * 8 + 2);
  }
  if (tables.small !== undefined) {
    vramTarget(tables.small, TARGET.small);
    hi = BigInt(tables.small + PDE_PCF_VRAM * 8 + 2);
  }
  return [lo, hi];
}

function isNoSmallPte(raw: bigint): boolean {
  return (raw & 0xf9n) === 0x18n; // VALID=0 and PCF (7:3) = 3
}

function pteInfo(raw: bigint): PteInfo {
  const low = Number(raw & 0xffn);
  const ap = (low >> 1) & 3;
  const valid = (low & 1) !== 0;
  const pcf = low >> 3;
  return {
    valid,
    aperture: PTE_APERTURES[ap],
    address: numberIfSafe(raw & (ap === 0 ? ADDR_VID : ADDR_4K)),
    writable: valid && (pcf & 4) === 0,
    privileged: valid && (pcf & 2) !== 0,
  };
}

/**
 * The shape of {@linkcode v3}: the MMU v3 entry codec over the v3 field and
 * decoded types. Version specifics:
 * - `invalidPte` is all zero (PCF INVALID); `invalidPde` is all zero.
 * - `noSmallPte` (and `isNoSmallPte`) is VALID=0, PCF=3 NO_VALID_4KB_PAGE.
 * - `vramPte` writes PCF 0x10 (RW) or 0x14 (RO), kind 0 unless given (as
 *   nouveau); `vramPde` and each used half of `vramDualPde` get APERTURE
 *   video and PCF 2 VALID_CACHED_ATS_NOT_ALLOWED (as nouveau).
 * - `pteInfo`: PCF bit 2 (read-only) clears `writable`, PCF bit 1 sets
 *   `privileged`.
 */
export interface V3Codec
  extends EntryCodec<V3PteFields, V3PdeFields, V3DualPdeFields, V3Pte, V3Pde, V3DualPde> {
  /** MMU format version. */
  readonly version: 3;
}

/**
 * The MMU v3 codec. Pure functions; raw entries are bigint (safe numbers are
 * accepted as input), dual PDEs are `[low, high]` word pairs.
 *
 * @example
 * ```ts
 * v3.encodePte({ valid: true, address: 0x12345000, pcf: 0x10, kind: 6 }); // 0x12345681n
 * String(v3.decodePte(0x12345681n)); // "PTE v3 valid video 0x12345000 pcf=0x10 kind=0x6"
 * v3.vramPde(0x200000); // 0x200012n
 * ```
 */
export const v3: V3Codec = Object.freeze({
  version: 3 as const,
  invalidPte: 0n,
  invalidPde: 0n,
  noSmallPte: 0x18n,
  encodePte,
  decodePte,
  encodePde,
  decodePde,
  encodeDualPde,
  decodeDualPde,
  vramPte,
  vramPde,
  vramDualPde,
  pteInfo,
  isNoSmallPte,
});
