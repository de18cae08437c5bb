/**
 * The chip-family tables (see `types.ts`): {@linkcode chipFamily} picks the
 * one for a chip. Adding a family is one file here and one line below.
 *
 * @module
 */

import { fail, hex } from "../errors.ts";
import { checkObject, checkUint } from "../validate.ts";
import type { ChipInfo } from "../chip.ts";
import { TU10X } from "./tu102.ts";
import { GA100 } from "./ga100.ts";
import { GA10X } from "./ga102.ts";
import { AD10X } from "./ad102.ts";
import { GH100 } from "./gh100.ts";
import { GB10X } from "./gb100.ts";
import { GB20X } from "./gb202.ts";
import type { ChipFamily } from "./types.ts";

export type {
  BootWaits,
  ChipFamily,
  InstanceBlockRules,
  InvalidateRules,
  LayoutRegisters,
} from "./types.ts";
export type { Bar1BindOps, Bar1BindState, Bar1Mode } from "./bar1_bind.ts";
export { LOWHIGH_BIND, VF_BIND } from "./bar1_bind.ts";
export { type FbFlushOps, GSP_ONLY, tokenPassed, UFLUSH, XAL } from "./fb_flush.ts";
export { INSTANCE_BLOCK_BYTES, instanceBlockWords, pdbWord } from "./instance_block.ts";

/** Every family, oldest first. */
export const FAMILIES: readonly ChipFamily[] = [TU10X, GA100, GA10X, AD10X, GH100, GB10X, GB20X];

/**
 * The family table of a chip (by BOOT_42 chip id).
 *
 * @example
 * ```ts
 * import { decodeChip } from "../chip.ts";
 * chipFamily(decodeChip(0x180000a1, 0x180a1000)).fbFlush.mechanism; // "xal"
 * ```
 */
export function chipFamily(chip: Pick<ChipInfo, "chipId" | "name">): ChipFamily {
  const c = checkObject(chip, "chipFamily chip");
  checkUint(c.chipId, "chip id");
  const f = FAMILIES.find((f) => f.chipIds.includes(chip.chipId));
  if (f === undefined) {
    fail("ENODEV", `no chip-family table for ${chip.name} (chip id ${hex(chip.chipId)})`);
  }
  return f;
}
