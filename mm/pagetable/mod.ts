/**
 * GPU page tables: formats as data, the MMU v2/v3 entry codecs and the walker.
 *
 * @example
 * ```ts
 * import { mmu, mmuFormat } from "./mod.ts";
 * mmu.v2.decodePte(0x1234501n).address; // 0x12345000
 * mmu.v3.encodePde({ aperture: "video", address: 0x200000 }); // 0x200002n
 * const format = mmuFormat({ version: 3, architecture: "Blackwell" });
 * ```
 *
 * @module
 */

import { v2, type V2Codec } from "./ver2.ts";
import { v3, type V3Codec } from "./ver3.ts";

/** The entry codecs by MMU version: `mmu.v2` (Turing/Ampere/Ada), `mmu.v3` (Hopper/Blackwell). */
export const mmu: Readonly<{ v2: V2Codec; v3: V3Codec }> = Object.freeze({ v2, v3 });

export { v2 } from "./ver2.ts";
export { v3 } from "./ver3.ts";
export type {
  V2Codec,
  V2DualHalf,
  V2DualHalfFields,
  V2DualPde,
  V2DualPdeFields,
  V2Pde,
  V2PdeFields,
  V2Pte,
  V2PteFields,
} from "./ver2.ts";
export type {
  V3Codec,
  V3DualHalf,
  V3DualHalfFields,
  V3DualPde,
  V3DualPdeFields,
  V3Pde,
  V3PdeFields,
  V3Pte,
  V3PteFields,
} from "./ver3.ts";
export { levelIndex, mmuFormat } from "./format.ts";
export type {
  AddressLayout,
  AddressSpec,
  ApertureSpec,
  EntryTable,
  FieldCondition,
  FieldSpec,
  FlagSpec,
  GroupSpec,
  UintSpec,
} from "./fields.ts";
export type {
  Architecture,
  DecodedDualHalf,
  DecodedDualPde,
  DecodedPde,
  DecodedPte,
  EntryCodec,
  EntryTables,
  LevelFormat,
  MmuFormat,
  MmuVersion,
} from "./format.ts";
export { formatStep, walk } from "./walk.ts";
export type {
  EntryReader,
  WalkMapped,
  WalkOptions,
  WalkResult,
  WalkStep,
  WalkStopReason,
  WalkUnmapped,
} from "./walk.ts";
export type { PdeAperture, PteAperture, PteInfo } from "../types.ts";
