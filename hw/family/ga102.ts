/**
 * GA10x (GA102..GA107, Ampere with display): as Turing, without ADR_LIMIT or
 * SYS_MEMBAR on downgrades, with the display fuse at 0x820C04 (facts §14.1).
 *
 * @module
 */

import { NV_FUSE_STATUS_OPT_DISPLAY_GA100 } from "../regs.ts";
import { GA100 } from "./ga100.ts";
import { TU10X } from "./tu102.ts";
import type { ChipFamily } from "./types.ts";

/** GA102..GA107. */
export const GA10X: ChipFamily = {
  ...TU10X,
  name: "GA10x",
  chipIds: [0x172, 0x173, 0x174, 0x176, 0x177],
  instanceBlock: { ...TU10X.instanceBlock, adrLimit: false },
  invalidate: GA100.invalidate,
  layout: { ...TU10X.layout, displayFuse: NV_FUSE_STATUS_OPT_DISPLAY_GA100 },
};
