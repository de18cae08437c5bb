/**
 * MMU v2 entry codec (Turing, Ampere, Ada): PTE, PDE (PD3/PD2/PD1) and the
 * 128-bit dual PDE at PD0.
 *
 * Bit layouts from NVIDIA's `NV_MMU_VER2_*` definitions: open-gpu-kernel-modules
 * `src/common/inc/swref/published/pascal/gp100/dev_mmu.h` and
 * `turing/tu102/dev_mmu.h`, and open-gpu-doc `manuals/turing/tu104/dev_mmu.ref.txt`
 * (the source of PDE `IS_PTE` and `NO_ATS`). Facts §5.1–§5.3.
 *
 * Overlaps in the hardware layout and how this codec resolves them:
 * - PTE `COMPTAGLINE` (55:36, Turing; Pascal/Volta had 53:36) overlaps
 *   `ADDRESS_SYS` (53:8). It is a field of video and peer PTEs only; in a
 *   system-memory PTE bits 53:8 are the address and bits 55:54 are reserved.
 * - PTE `ADDRESS_VID_PEER` (35:33) is the `peerId` of peer PTEs only; in a
 *   video PTE those bits are reserved (NVIDIA defines only PEER_0 there).
 * - Dual PDE `NO_ATS` (bit 5) lies inside `ADDRESS_BIG` (bits 32:4 / 53:4,
 *   address >> 8). It is a field only while the big half's aperture is
 *   invalid; with a big page table bit 5 is address bit 9.
 * - An entry (or dual-PDE half) whose PDE aperture is invalid has no target:
 *   its address bits are reported in `reserved` and `address` is 0.
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

/** Fields of an MMU v2 PTE (all optional; missing means false / 0 / `"video"`). */
export interface V2PteFields {
  /** VALID (bit 0). */
  valid?: boolean;
  /** APERTURE (2:1), PTE encoding. */
  aperture?: PteAperture;
  /** VOL (bit 3): volatile, bypass L2 caching. */
  vol?: boolean;
  /** ENCRYPTED (bit 4). */
  encrypted?: boolean;
  /** PRIVILEGE (bit 5). */
  privilege?: boolean;
  /** READ_ONLY (bit 6). */
  readOnly?: boolean;
  /** ATOMIC_DISABLE (bit 7). */
  atomicDisable?: boolean;
  /** Byte address of the page: ADDRESS_VID 32:8 (video/peer) or ADDRESS_SYS 53:8, shift 12. */
  address?: number | bigint;
  /** ADDRESS_VID_PEER (35:33), peer aperture only. */
  peerId?: number;
  /** COMPTAGLINE (55:36 on Turing+), video and peer apertures only. */
  comptagline?: number;
  /** KIND (63:56): 0x00 PITCH, 0x06 GENERIC_MEMORY, 0x07 INVALID (Turing+). */
  kind?: number;
  /** Bits no field covers, passed through verbatim. */
  reserved?: bigint;
}

/** A decoded MMU v2 PTE: every field, plus `reserved` (set bits no field covers). */
export type V2Pte = Required<V2PteFields>;

/** Fields of an MMU v2 PDE (PD3, PD2, PD1). */
export interface V2PdeFields {
  /** IS_PTE (bit 0): 1 turns the entry into a huge PTE (use the PTE codec for those). */
  isPte?: boolean;
  /** APERTURE (2:1), PDE encoding; missing means `"invalid"`. */
  aperture?: PdeAperture;
  /** VOL (bit 3). */
  vol?: boolean;
  /** NO_ATS (bit 5). */
  noAts?: boolean;
  /** Byte address of the next table: ADDRESS_VID 32:8 or ADDRESS_SYS 53:8, shift 12. */
  address?: number | bigint;
  /** Bits no field covers, passed through verbatim. */
  reserved?: bigint;
}

/** A decoded MMU v2 PDE: every field, plus `reserved`. */
export type V2Pde = Required<V2PdeFields>;

/** One half of an MMU v2 dual PDE. */
export interface V2DualHalfFields {
  /** APERTURE_BIG (2:1) / APERTURE_SMALL (66:65); missing means `"invalid"`. */
  aperture?: PdeAperture;
  /** VOL_BIG (3) / VOL_SMALL (67). */
  vol?: boolean;
  /** Table address: big half shift 8 (256 B aligned), small half shift 12. */
  address?: number | bigint;
}

/** A decoded half of an MMU v2 dual PDE. */
export type V2DualHalf = Required<V2DualHalfFields>;

/** Fields of an MMU v2 dual PDE (PD0, 16 bytes). */
export interface V2DualPdeFields {
  /** IS_PTE (bit 0): the entry is a 2 MiB PTE (encode that with `encodePte`). */
  isPte?: boolean;
  /** Pointer to the 64 KiB-page table (bits 63:0). */
  big?: V2DualHalfFields;
  /** NO_ATS (bit 5); only while the big half is invalid (bit 5 is otherwise ADDRESS_BIG). */
  noAts?: boolean;
  /** Pointer to the 4 KiB-page table (bits 127:64). */
  small?: V2DualHalfFields;
  /** Uncovered bits of the 128-bit entry (bit 64 = bit 0 of the high word). */
  reserved?: bigint;
}

/** A decoded MMU v2 dual PDE. */
export interface V2DualPde {
  /** IS_PTE (bit 0). */
  isPte: boolean;
  /** The 64 KiB-page table pointer. */
  big: V2DualHalf;
  /** NO_ATS (bit 5), only while the big half is invalid. */
  noAts: boolean;
  /** The 4 KiB-page table pointer. */
  small: V2DualHalf;
  /** Uncovered set bits of the 128-bit entry (bit 64 = bit 0 of the high word). */
  reserved: bigint;
}

const ALL64 = (1n << 64n) - 1n;
const VID_WIDTH = (1n << 25n) - 1n; // ADDRESS_VID 32:8
const SYS_WIDTH = (1n << 46n) - 1n; // ADDRESS_SYS 53:8
const BIG_VID_WIDTH = (1n << 29n) - 1n; // ADDRESS_BIG_VID 32:4
const BIG_SYS_WIDTH = (1n << 50n) - 1n; // ADDRESS_BIG_SYS 53:4
const VID_LIMIT_BITS = 37; // 25 bits << 12 (and 29 bits << 8)
const SYS_LIMIT_BITS = 58; // 46 bits << 12 (and 50 bits << 8)

// Free (reserved) bits per aperture value: everything no field covers.
const PTE_LOW = 0xffn | bits(63, 56);
const PTE_FREE = [
  ALL64 & ~(PTE_LOW | bits(32, 8) | bits(55, 36)), // video: 35:33 free
  ALL64 & ~(PTE_LOW | bits(35, 8) | bits(55, 36)), // peer
  ALL64 & ~(PTE_LOW | bits(53, 8)), // sys: 55:54 free
  ALL64 & ~(PTE_LOW | bits(53, 8)),
];
const PDE_FLAGS = 0x2fn; // IS_PTE, APERTURE, VOL, NO_ATS
const PDE_FREE = [
  ALL64 & ~PDE_FLAGS,
  ALL64 & ~(PDE_FLAGS | bits(32, 8)),
  ALL64 & ~(PDE_FLAGS | bits(53, 8)),
  ALL64 & ~(PDE_FLAGS | bits(53, 8)),
];
const DUAL_LO_FREE = [
  ALL64 & ~PDE_FLAGS, // big invalid: bit 5 is NO_ATS
  ALL64 & ~(0xfn | bits(32, 4)),
  ALL64 & ~(0xfn | bits(53, 4)),
  ALL64 & ~(0xfn | bits(53, 4)),
];
const DUAL_HI_FREE = [
  ALL64 & ~0xen,
  ALL64 & ~(0xen | bits(32, 8)),
  ALL64 & ~(0xen | bits(53, 8)),
  ALL64 & ~(0xen | bits(53, 8)),
];

const PTE_KEYS = new Set([
  "valid",
  "aperture",
  "vol",
  "encrypted",
  "privilege",
  "readOnly",
  "atomicDisable",
  "address",
  "peerId",
  "comptagline",
  "kind",
  "reserved",
]);
const PDE_KEYS = new Set(["isPte", "aperture", "vol", "noAts", "address", "reserved"]);
const DUAL_KEYS = new Set(["isPte", "big", "noAts", "small", "reserved"]);
const HALF_KEYS = new Set(["aperture", "vol", "address"]);

function flag(on: boolean, name: string): string {
  return on ? ` ${name}` : "";
}

function showPte(p: V2Pte): string {
  let s = `PTE v2 ${p.valid ? "valid" : "invalid"} ${p.aperture} ${hex(p.address)}`;
  s += flag(p.vol, "vol") + flag(p.encrypted, "encrypted") + flag(p.privilege, "priv");
  s += flag(p.readOnly, "ro") + flag(p.atomicDisable, "noAtomic");
  if (p.aperture === "peer") s += ` peer=${p.peerId}`;
  if (p.comptagline !== 0) s += ` comptag=${hex(p.comptagline)}`;
  if (p.kind !== 0) s += ` kind=${hex(p.kind)}`;
  if (p.reserved !== 0n) s += ` reserved=${hex(p.reserved)}`;
  return s;
}

function showPde(p: V2Pde): string {
  let s = `PDE v2 ${p.aperture}`;
  if (p.aperture !== "invalid") s += ` ${hex(p.address)}`;
  s += flag(p.isPte, "isPte") + flag(p.vol, "vol") + flag(p.noAts, "noAts");
  if (p.reserved !== 0n) s += ` reserved=${hex(p.reserved)}`;
  return s;
}

function showHalf(name: string, h: V2DualHalf): string {
  const target = h.aperture === "invalid" ? "invalid" : `${h.aperture} ${hex(h.address)}`;
  return ` ${name}=${target}${flag(h.vol, "vol")}`;
}

function showDual(p: V2DualPde): string {
  let s = `DualPDE v2${flag(p.isPte, "isPte")}`;
  s += showHalf("big", p.big) + showHalf("small", p.small) + flag(p.noAts, "noAts");
  if (p.reserved !== 0n) s += ` reserved=${hex(p.reserved)}`;
  return s;
}

function encodePte(fields: V2PteFields): bigint {
  checkFieldNames(fields, PTE_KEYS, "v2 PTE");
  const ap = apertureField(fields.aperture, PTE_APERTURES, "v2 PTE aperture");
  const valid = flagField(fields.valid, "v2 PTE valid");
  const vol = flagField(fields.vol, "v2 PTE vol");
  const encrypted = flagField(fields.encrypted, "v2 PTE encrypted");
  const privilege = flagField(fields.privilege, "v2 PTE privilege");
  const readOnly = flagField(fields.readOnly, "v2 PTE readOnly");
  const atomicDisable = flagField(fields.atomicDisable, "v2 PTE atomicDisable");
  const address = addressField(fields.address, "v2 PTE address");
  const peerId = uintField(fields.peerId, 3, "v2 PTE peerId");
  const comptagline = uintField(fields.comptagline, 20, "v2 PTE comptagline");
  const kind = uintField(fields.kind, 8, "v2 PTE kind");
  const sys = ap >= 2;
  checkAddressFits(
    address,
    12,
    sys ? SYS_LIMIT_BITS : VID_LIMIT_BITS,
    "v2 PTE address",
    sys ? "ADDRESS_SYS (53:8)" : "ADDRESS_VID (32:8)",
  );
  if (peerId !== 0 && ap !== 1) {
    fail("EINVAL", `v2 PTE peerId ${peerId} needs aperture "peer", not "${PTE_APERTURES[ap]}"`);
  }
  if (comptagline !== 0 && sys) {
    fail(
      "EINVAL",
      `v2 PTE comptagline ${
        hex(comptagline)
      } is only for video/peer apertures: COMPTAGLINE (55:36) overlaps ADDRESS_SYS (53:8)`,
    );
  }
  const reserved = reservedField(fields.reserved, PTE_FREE[ap], "v2 PTE");
  const low = (valid ? 1 : 0) | (ap << 1) | (vol ? 8 : 0) | (encrypted ? 0x10 : 0) |
    (privilege ? 0x20 : 0) | (readOnly ? 0x40 : 0) | (atomicDisable ? 0x80 : 0);
  return BigInt(low) | ((address >> 12n) << 8n) | (BigInt(peerId) << 33n) |
    (BigInt(comptagline) << 36n) | (BigInt(kind) << 56n) | reserved;
}

function decodePte(raw: bigint | number): V2Pte {
  const r = u64(raw, "v2 PTE");
  const low = Number(r & 0xffn);
  const ap = (low >> 1) & 3;
  let address: bigint;
  let peerId = 0;
  let comptagline = 0;
  if (ap >= 2) {
    address = ((r >> 8n) & SYS_WIDTH) << 12n;
  } else {
    address = ((r >> 8n) & VID_WIDTH) << 12n;
    comptagline = Number((r >> 36n) & 0xfffffn);
    if (ap === 1) peerId = Number((r >> 33n) & 7n);
  }
  return inspectable({
    valid: (low & 1) !== 0,
    aperture: PTE_APERTURES[ap],
    vol: (low & 8) !== 0,
    encrypted: (low & 0x10) !== 0,
    privilege: (low & 0x20) !== 0,
    readOnly: (low & 0x40) !== 0,
    atomicDisable: (low & 0x80) !== 0,
    address: numberIfSafe(address),
    peerId,
    comptagline,
    kind: Number(r >> 56n),
    reserved: r & PTE_FREE[ap],
  }, showPte);
}

/** Encodes a PDE-style pointer (aperture/vol/address) shared by PDEs and dual halves. */
function pointer(
  ap: number,
  address: bigint,
  shift: number,
  place: bigint,
  what: string,
): bigint {
  if (ap === 0) {
    if (address !== 0n) {
      fail("EINVAL", `${what} ${hex(address)} needs a valid aperture (aperture is "invalid")`);
    }
    return 0n;
  }
  const sys = ap >= 2;
  const hiBit = sys ? 53 : 32;
  checkAddressFits(
    address,
    shift,
    sys ? SYS_LIMIT_BITS : VID_LIMIT_BITS,
    what,
    `ADDRESS_${sys ? "SYS" : "VID"} (${hiBit}:${Number(place)}, shift ${shift})`,
  );
  return (address >> BigInt(shift)) << place;
}

function encodePde(fields: V2PdeFields): bigint {
  checkFieldNames(fields, PDE_KEYS, "v2 PDE");
  const isPte = flagField(fields.isPte, "v2 PDE isPte");
  const ap = apertureField(fields.aperture, PDE_APERTURES, "v2 PDE aperture");
  const vol = flagField(fields.vol, "v2 PDE vol");
  const noAts = flagField(fields.noAts, "v2 PDE noAts");
  const address = addressField(fields.address, "v2 PDE address");
  const addr = pointer(ap, address, 12, 8n, "v2 PDE address");
  const reserved = reservedField(fields.reserved, PDE_FREE[ap], "v2 PDE");
  const low = (isPte ? 1 : 0) | (ap << 1) | (vol ? 8 : 0) | (noAts ? 0x20 : 0);
  return BigInt(low) | addr | reserved;
}

function decodePde(raw: bigint | number): V2Pde {
  const r = u64(raw, "v2 PDE");
  const low = Number(r & 0xffn);
  const ap = (low >> 1) & 3;
  const width = ap >= 2 ? SYS_WIDTH : ap === 1 ? VID_WIDTH : 0n;
  return inspectable({
    isPte: (low & 1) !== 0,
    aperture: PDE_APERTURES[ap],
    vol: (low & 8) !== 0,
    noAts: (low & 0x20) !== 0,
    address: numberIfSafe(((r >> 8n) & width) << 12n),
    reserved: r & PDE_FREE[ap],
  }, showPde);
}

function half(value: V2DualHalfFields | undefined, name: string): [number, boolean, bigint] {
  if (value === undefined) return [0, false, 0n];
  checkFieldNames(value, HALF_KEYS, `v2 dual PDE ${name}`);
  return [
    apertureField(value.aperture, PDE_APERTURES, `v2 dual PDE ${name}.aperture`),
    flagField(value.vol, `v2 dual PDE ${name}.vol`),
    addressField(value.address, `v2 dual PDE ${name}.address`),
  ];
}

function encodeDualPde(fields: V2DualPdeFields): [bigint, bigint] {
  checkFieldNames(fields, DUAL_KEYS, "v2 dual PDE");
  const isPte = flagField(fields.isPte, "v2 dual PDE isPte");
  const noAts = flagField(fields.noAts, "v2 dual PDE noAts");
  const [bigAp, bigVol, bigAddress] = half(fields.big, "big");
  const [smallAp, smallVol, smallAddress] = half(fields.small, "small");
  const big = pointer(bigAp, bigAddress, 8, 4n, "v2 dual PDE big.address");
  const small = pointer(smallAp, smallAddress, 12, 8n, "v2 dual PDE small.address");
  if (noAts && bigAp !== 0) {
    fail(
      "EINVAL",
      `v2 dual PDE noAts needs big.aperture "invalid": NO_ATS (bit 5) is bit 9 of ADDRESS_BIG (32:4 / 53:4) when the big half points to a table`,
    );
  }
  const allowed = (DUAL_HI_FREE[smallAp] << 64n) | DUAL_LO_FREE[bigAp];
  const reserved = reservedField(fields.reserved, allowed, "v2 dual PDE");
  const lo = BigInt((isPte ? 1 : 0) | (bigAp << 1) | (bigVol ? 8 : 0) | (noAts ? 0x20 : 0)) |
    big | (reserved & ALL64);
  const hi = BigInt((smallAp << 1) | (smallVol ? 8 : 0)) | small | (reserved >> 64n);
  return [lo, hi];
}

function decodeDualPde(raw: readonly [bigint | number, bigint | number]): V2DualPde {
  const [lo, hi] = dualWords(raw, "v2 dual PDE");
  const l = Number(lo & 0xffn);
  const h = Number(hi & 0xffn);
  const bigAp = (l >> 1) & 3;
  const smallAp = (h >> 1) & 3;
  const bigWidth = bigAp >= 2 ? BIG_SYS_WIDTH : bigAp === 1 ? BIG_VID_WIDTH : 0n;
  const smallWidth = smallAp >= 2 ? SYS_WIDTH : smallAp === 1 ? VID_WIDTH : 0n;
  return inspectable({
    isPte: (l & 1) !== 0,
    big: {
      aperture: PDE_APERTURES[bigAp],
      vol: (l & 8) !== 0,
      address: numberIfSafe(((lo >> 4n) & bigWidth) << 8n),
    },
    noAts: bigAp === 0 && (l & 0x20) !== 0,
    small: {
      aperture: PDE_APERTURES[smallAp],
      vol: (h & 8) !== 0,
      address: numberIfSafe(((hi >> 8n) & smallWidth) << 12n),
    },
    reserved: ((hi & DUAL_HI_FREE[smallAp]) << 64n) | (lo & DUAL_LO_FREE[bigAp]),
  }, showDual);
}

// Fast helpers for the mapper and walker: number arithmetic, one BigInt at the end.

const TARGET = vramFields("v2", { limitBits: VID_LIMIT_BITS, field: "ADDRESS_VID" });

function vramPte(address: number, options: { writable: boolean; kind?: number }): bigint {
  vramTarget(address, TARGET.pte);
  const kind = uintField(options.kind, 8, "v2 PTE kind");
  // VALID | APERTURE_VIDEO (0) | READ_ONLY when not writable | ADDRESS_VID = address >> 12 at bit 8.
  const low = address / 16 + 1 + (options.writable ? 0 : 0x40);
  return kind === 0 ? BigInt(low) : BigInt(low) | (BigInt(kind) << 56n);
}

function vramPde(address: number): bigint {
  vramTarget(address, TARGET.pde);
  return BigInt(address / 16 + 2); // APERTURE_VIDEO_MEMORY (1 << 1)
}

function vramDualPde(tables: { big?: number; small?: number }): [bigint, bigint] {
  let lo = 0n;
  let hi = 0n;
  if (tables.big !== undefined) {
    vramTarget(tables.big, TARGET.big);
    lo = BigInt(tables.big / 16 + 2); // ADDRESS_BIG = address >> 8 at bit 4
  }
  if (tables.small !== undefined) {
    vramTarget(tables.small, TARGET.small);
    hi = BigInt(tables.small / 16 + 2);
  }
  return [lo, hi];
}

function isNoSmallPte(raw: bigint): boolean {
  return (raw & 0x21n) === 0x20n;
}

function pteInfo(raw: bigint): PteInfo {
  const low = Number(raw & 0xffn);
  const ap = (low >> 1) & 3;
  const width = ap >= 2 ? SYS_WIDTH : VID_WIDTH;
  const valid = (low & 1) !== 0;
  return {
    valid,
    aperture: PTE_APERTURES[ap],
    address: numberIfSafe(((raw >> 8n) & width) << 12n),
    writable: valid && (low & 0x40) === 0,
    privileged: valid && (low & 0x20) !== 0,
  };
}

/**
 * The shape of {@linkcode v2}: the MMU v2 entry codec over the v2 field and
 * decoded types. Version specifics:
 * - `invalidPte` and `invalidPde` are all zero (nova's 0x1 would be a huge PTE
 *   at PD0/PD1; facts D14).
 * - `noSmallPte` (and `isNoSmallPte`) is VALID=0, PRIVILEGE=1 (as nouveau).
 * - `vramPte` writes kind 0 (PITCH) unless given and READ_ONLY when not
 *   writable; `vramPde` sets APERTURE_VIDEO_MEMORY and nothing else.
 * - `pteInfo`: READ_ONLY (bit 6) clears `writable`, PRIVILEGE (bit 5) sets
 *   `privileged`.
 */
export interface V2Codec
  extends EntryCodec<V2PteFields, V2PdeFields, V2DualPdeFields, V2Pte, V2Pde, V2DualPde> {
  /** MMU format version. */
  readonly version: 2;
}

/**
 * The MMU v2 codec. Pure functions; raw entries are bigint (safe numbers are
 * accepted as input), dual PDEs are `[low, high]` word pairs.
 *
 * @example
 * ```ts
 * v2.encodePte({ valid: true, aperture: "video", address: 0x12345000 }); // 0x1234501n
 * v2.decodePde(0x20002n).address; // 0x200000
 * v2.vramPte(0x12345000, { writable: false }); // 0x1234541n
 * ```
 */
export const v2: V2Codec = Object.freeze({
  version: 2 as const,
  invalidPte: 0n,
  invalidPde: 0n,
  noSmallPte: 0x20n,
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
