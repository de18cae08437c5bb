/**
 * GH100 (Hopper): MMU v3; the FB flush by a read of 0x10F800 and a token
 * poll (no 0x70000); BAR1 through LOW/HIGH; bit 10 of the PDB word 0 as RM
 * writes it for v3; no display; GFW boot in FSP_BOOT_COMPLETE (facts §14.1).
 *
 * @module
 */

import { gfwBootRegisters } from "../regs.ts";
import { LOWHIGH_BIND } from "./bar1_bind.ts";
import { XAL } from "./fb_flush.ts";
import { GA100 } from "./ga100.ts";
import type { ChipFamily } from "./types.ts";

/** GH100. */
export const GH100: ChipFamily = {
  ...GA100,
  name: "GH100",
  chipIds: [0x180],
  mmuVersion: 3,
  fbFlush: XAL,
  bar1: LOWHIGH_BIND,
  instanceBlock: { ver2Bit: 0, adrLimit: false, ctxswMagic: false },
  layout: { ...GA100.layout, mmuLock: false },
  boot: { ...GA100.boot, gfw: gfwBootRegisters(0x180) },
};
