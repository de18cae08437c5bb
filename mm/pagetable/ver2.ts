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

// ---------------------------------------------------------------------------
// The field tables: everything else (encode, decode, checks, printing, the fast
// VRAM encoders) is derived from these by makeCodec.

const VID = at("ADDRESS_VID", 32, 8, 12);
const SYS = at("ADDRESS_SYS", 53, 8, 12);
const BIG_VID = at("ADDRESS_BIG_VID", 32, 4, 8);
const BIG_SYS = at("ADDRESS_BIG_SYS", 53, 4, 8);
const SMALL_VID = at("ADDRESS_SMALL_VID", 96, 72, 12);
const SMALL_SYS = at("ADDRESS_SMALL_SYS", 117, 72, 12);

/** The MMU v2 PTE (facts §5.1). */
const PTE: EntryTable = Object.freeze({
  title: "PTE v2",
  what: "v2 PTE",
  words: 1,
  items: Object.freeze([
    flag("valid", 0, { label: "valid", offLabel: "invalid" }),
    aperture("aperture", 2, 1, PTE_APERTURES),
    flag("vol", 3, { label: "vol" }),
    flag("encrypted", 4, { label: "encrypted" }),
    flag("privilege", 5, { label: "priv" }),
    flag("readOnly", 6, { label: "ro" }),
    flag("atomicDisable", 7, { label: "noAtomic" }),
    // Video and peer pages: ADDRESS_VID 32:8; system pages: ADDRESS_SYS 53:8.
    address("address", "aperture", [VID, VID, SYS, SYS]),
    // ADDRESS_VID_PEER 35:33: in a video PTE these bits are reserved.
    uint("peerId", 35, 33, {
      label: "peer",
      print: "always",
      radix: 10,
      when: { field: "aperture", is: ["peer"] },
    }),
    // COMPTAGLINE 55:36 overlaps ADDRESS_SYS: a field of video and peer PTEs only.
    uint("comptagline", 55, 36, {
      label: "comptag",
      when: {
        field: "aperture",
        is: ["video", "peer"],
        why: "COMPTAGLINE (55:36) overlaps ADDRESS_SYS (53:8)",
      },
    }),
    uint("kind", 63, 56),
  ]),
  print: Object.freeze([
    "valid",
    "aperture",
    "address",
    "vol",
    "encrypted",
    "privilege",
    "readOnly",
    "atomicDisable",
    "peerId",
    "comptagline",
    "kind",
  ]),
});

/** The MMU v2 PDE at PD3, PD2, PD1 (facts §5.2). */
const PDE: EntryTable = Object.freeze({
  title: "PDE v2",
  what: "v2 PDE",
  words: 1,
  items: Object.freeze([
    flag("isPte", 0, { label: "isPte" }),
    aperture("aperture", 2, 1, PDE_APERTURES),
    flag("vol", 3, { label: "vol" }),
    flag("noAts", 5, { label: "noAts" }),
    // An invalid PDE has no target: its address bits are reserved.
    address("address", "aperture", [null, VID, SYS, SYS]),
  ]),
  print: Object.freeze(["aperture", "address", "isPte", "vol", "noAts"]),
});

/** The MMU v2 dual PDE at PD0, 128 bits (facts §5.3). */
const DUAL: EntryTable = Object.freeze({
  title: "DualPDE v2",
  what: "v2 dual PDE",
  words: 2,
  items: Object.freeze([
    flag("isPte", 0, { label: "isPte" }),
    group("big", [
      aperture("aperture", 2, 1, PDE_APERTURES),
      flag("vol", 3, { label: "vol" }),
      address("address", "aperture", [null, BIG_VID, BIG_SYS, BIG_SYS]),
    ]),
    // NO_ATS (bit 5) is bit 9 of ADDRESS_BIG while the big half points to a table.
    flag("noAts", 5, {
      label: "noAts",
      when: {
        field: "big.aperture",
        is: ["invalid"],
        why:
          "NO_ATS (bit 5) is bit 9 of ADDRESS_BIG (32:4 / 53:4) when the big half points to a table",
      },
    }),
    group("small", [
      aperture("aperture", 66, 65, PDE_APERTURES),
      flag("vol", 67, { label: "vol" }),
      address("address", "aperture", [null, SMALL_VID, SMALL_SYS, SMALL_SYS]),
    ]),
  ]),
  print: Object.freeze(["isPte", "big", "small", "noAts"]),
});

// The mapper's hot path (one call per PTE run): number arithmetic and one BigInt. makeCodec
// checks it against the encoder derived from the table when the codec is first used.
const PTE_TARGET: VramField = Object.freeze({
  alignBits: 12,
  limitBits: 37,
  what: "v2 PTE address",
  field: "ADDRESS_VID (32:8)",
});

function vramPte(address: number, options: { writable: boolean; kind?: number }): bigint {
  vramTarget(address, PTE_TARGET);
  const kind = uintField(options.kind, 8, "v2 PTE kind");
  // VALID | APERTURE_VIDEO (0) | READ_ONLY when not writable | ADDRESS_VID = address >> 12 at bit 8.
  const low = address / 16 + 1 + (options.writable ? 0 : 0x40);
  return kind === 0 ? BigInt(low) : BigInt(low) | (BigInt(kind) << 56n);
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
export const v2: V2Codec = makeCodec<
  2,
  V2PteFields,
  V2PdeFields,
  V2DualPdeFields,
  V2Pte,
  V2Pde,
  V2DualPde
>({
  version: 2,
  tables: Object.freeze({ pte: PTE, pde: PDE, dualPde: DUAL }),
  // VALID=0, PRIVILEGE=1 (as nouveau); the test reads only these two bits.
  noSmallPte: { valid: false, privilege: true },
  pteInfo: { readOnly: { field: "readOnly" }, privileged: { field: "privilege" } },
  vram: {
    pteWritable: { valid: true },
    pteReadOnly: { valid: true, readOnly: true },
    kindField: "kind",
    pde: { aperture: "video" },
    dualHalf: { aperture: "video" },
  },
  fastVramPte: vramPte,
});
