/**
 * TU10x (Turing): the base every later family derives from. FB flush through
 * NV_UFLUSH_FB_FLUSH, BAR1 through the VF register, ADR_LIMIT in the
 * instance block, SYS_MEMBAR on PTE downgrades, the display fuse at 0x21C04,
 * GFW boot in the GC6 scratch, WPR2 in NV_PFB.
 *
 * @module
 */

import {
  gfwBootRegisters,
  MEM_CLEAR_STATUS,
  NV_FUSE_STATUS_OPT_DISPLAY_TU102,
  NV_PFB_PRI_MMU_WPR2_ADDR_HI,
  NV_PFB_PRI_MMU_WPR2_ADDR_LO,
} from "../regs.ts";
import { VF_BIND } from "./bar1_bind.ts";
import { UFLUSH } from "./fb_flush.ts";
import type { ChipFamily } from "./types.ts";

/** WPR2 in NV_PFB (every chip up to Hopper; Blackwell 590.x). */
export const PFB_WPR2 = {
  lo: NV_PFB_PRI_MMU_WPR2_ADDR_LO,
  hi: NV_PFB_PRI_MMU_WPR2_ADDR_HI,
  name: "NV_PFB_PRI_MMU_WPR2_ADDR",
} as const;

/** Turing. */
export const TU10X: ChipFamily = {
  name: "TU10x",
  chipIds: [0x162, 0x164, 0x166, 0x167, 0x168],
  mmuVersion: 2,
  fbFlush: UFLUSH,
  bar1: VF_BIND,
  instanceBlock: { ver2Bit: 1, adrLimit: true, ctxswMagic: false },
  invalidate: { membarOnDowngrade: true, scope: null },
  layout: { displayFuse: NV_FUSE_STATUS_OPT_DISPLAY_TU102, mmuLock: false, wpr2: [PFB_WPR2] },
  boot: {
    gfw: gfwBootRegisters(0x162),
    gfwTimeoutMs: 4000,
    memClear: MEM_CLEAR_STATUS,
    barFirewall: false,
  },
};
