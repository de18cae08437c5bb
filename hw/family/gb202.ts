/**
 * GB20x (Blackwell with display): the CPU-side FB flush of GH100 (0x10F800),
 * the Blackwell WPR2, waits and instance-block word of GB10x, a display fuse
 * at 0x820C04, and FSP_BOOT_COMPLETE moved to 0xAD00BC (facts §13.2, §14.1).
 *
 * @module
 */

import { gfwBootRegisters, NV_FUSE_STATUS_OPT_DISPLAY_GA100 } from "../regs.ts";
import { XAL } from "./fb_flush.ts";
import { GB10X } from "./gb100.ts";
import type { ChipFamily } from "./types.ts";

/** GB202..GB207. */
export const GB20X: ChipFamily = {
  ...GB10X,
  name: "GB20x",
  chipIds: [0x1b2, 0x1b3, 0x1b5, 0x1b6, 0x1b7],
  fbFlush: XAL,
  layout: { ...GB10X.layout, displayFuse: NV_FUSE_STATUS_OPT_DISPLAY_GA100 },
  boot: { ...GB10X.boot, gfw: gfwBootRegisters(0x1b2) },
};
