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
  PDE_APERTURES,
  type PdeAperture,
  PTE_APERTURES,
  type PteAperture,
  uintField,
} from "../types.ts";
import { type EntryCodec, makeCodec } from "./codec.ts";
import {
  address,
  aperture,
  at,
  type EntryTable,
  flag,
  group,
  uint,
  type VramField,
  vramTarget,
} from "./fields.ts";

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

// ---------------------------------------------------------------------------
// The field tables: everything else (encode, decode, checks, printing, the fast
// VRAM encoders) is derived from these by makeCodec.

const VID = at("ADDRESS_VID", 39, 12, 12);
const ADDR = at("ADDRESS", 51, 12, 12);

/** Names of PTE PCF values when VALID=0. */
const INVALID_PCF = Object.freeze(["INVALID", "SPARSE", "MAPPING_NOWHERE", "NO_VALID_4KB_PAGE"]);

/** PCF written by `v3.vramPte` for read-write pages (nouveau's choice, facts D11). */
const PCF_RW = 0x10; // REGULAR_RW_ATOMIC_CACHED_ACD
const PCF_RO = 0x14; // REGULAR_RO_ATOMIC_CACHED_ACD
const PDE_PCF_VRAM = 2; // VALID_CACHED_ATS_NOT_ALLOWED (nouveau, facts D10)

/** The MMU v3 PTE (facts §5.4). */
const PTE: EntryTable = Object.freeze({
  title: "PTE v3",
  what: "v3 PTE",
  words: 1,
  items: Object.freeze([
    flag("valid", 0, { label: "valid", offLabel: "invalid" }),
    aperture("aperture", 2, 1, PTE_APERTURES),
    uint("pcf", 7, 3, { print: "always", names: { whenClear: "valid", values: INVALID_PCF } }),
    uint("kind", 11, 8, { print: "always" }),
    // Video pages: ADDRESS_VID 39:12 (51:40 reserved); peer and system: ADDRESS 51:12.
    address("address", "aperture", [VID, ADDR, ADDR, ADDR]),
    uint("peerId", 63, 61, {
      label: "peer",
      print: "always",
      radix: 10,
      when: { field: "aperture", is: ["peer"] },
    }),
  ]),
  print: Object.freeze(["valid", "aperture", "address", "pcf", "kind", "peerId"]),
});

/** The MMU v3 PDE at PD4…PD1: the address has no aperture-specific width. */
const PDE: EntryTable = Object.freeze({
  title: "PDE v3",
  what: "v3 PDE",
  words: 1,
  items: Object.freeze([
    flag("isPte", 0, { label: "isPte" }),
    aperture("aperture", 2, 1, PDE_APERTURES),
    uint("pcf", 5, 3, { print: "always" }),
    address("address", "aperture", [ADDR, ADDR, ADDR, ADDR]),
  ]),
  print: Object.freeze(["aperture", "address", "pcf", "isPte"]),
});

/** A dual-PDE half prints as "video 0x300000 pcf=0x2". */
const HALF_PRINT = Object.freeze(["aperture", "address", "pcf"]);
const BIG = at("ADDRESS_BIG", 51, 8, 8);
const SMALL = at("ADDRESS_SMALL", 115, 76, 12);

/** The MMU v3 dual PDE at PD0, 128 bits. */
const DUAL: EntryTable = Object.freeze({
  title: "DualPDE v3",
  what: "v3 dual PDE",
  words: 2,
  items: Object.freeze([
    flag("isPte", 0, { label: "isPte" }),
    group("big", [
      aperture("aperture", 2, 1, PDE_APERTURES),
      uint("pcf", 5, 3, { print: "always" }),
      address("address", "aperture", [BIG, BIG, BIG, BIG]),
    ], { print: HALF_PRINT }),
    group("small", [
      aperture("aperture", 66, 65, PDE_APERTURES),
      uint("pcf", 69, 67, { print: "always" }),
      address("address", "aperture", [SMALL, SMALL, SMALL, SMALL]),
    ], { print: HALF_PRINT }),
  ]),
  print: Object.freeze(["isPte", "big", "small"]),
});

// The mapper's hot path (one call per PTE run): number arithmetic and one BigInt. makeCodec
// checks it against the encoder derived from the table when the codec is first used.
const PTE_TARGET: VramField = Object.freeze({
  alignBits: 12,
  limitBits: 40,
  what: "v3 PTE address",
  field: "ADDRESS_VID (39:12)",
});

function vramPte(address: number, options: { writable: boolean; kind?: number }): bigint {
  vramTarget(address, PTE_TARGET);
  const kind = uintField(options.kind, 4, "v3 PTE kind");
  // Below 2^40 everything fits a safe number: address in place, PCF at 7:3, KIND at 11:8.
  return BigInt(address + kind * 256 + (options.writable ? PCF_RW : PCF_RO) * 8 + 1);
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
export const v3: V3Codec = makeCodec<
  3,
  V3PteFields,
  V3PdeFields,
  V3DualPdeFields,
  V3Pte,
  V3Pde,
  V3DualPde
>({
  version: 3,
  tables: Object.freeze({ pte: PTE, pde: PDE, dualPde: DUAL }),
  // VALID=0, PCF=3 NO_VALID_4KB_PAGE; the test reads only these fields.
  noSmallPte: { valid: false, pcf: 3 },
  // PCF bit 2 read-only, bit 1 privileged (NVIDIA's value table, facts D6).
  pteInfo: { readOnly: { field: "pcf", bit: 2 }, privileged: { field: "pcf", bit: 1 } },
  vram: {
    pteWritable: { valid: true, pcf: PCF_RW },
    pteReadOnly: { valid: true, pcf: PCF_RO },
    kindField: "kind",
    pde: { aperture: "video", pcf: PDE_PCF_VRAM },
    dualHalf: { aperture: "video", pcf: PDE_PCF_VRAM },
  },
  fastVramPte: vramPte,
});
