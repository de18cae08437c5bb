/**
 * GA100 (Ampere, HBM): no display (no VGA workspace), the VBIOS-locked region
 * in NV_PFB_PRI_MMU_LOCK_ADDR (`memmgrReadMmuLock_GA100` is GA100's alone),
 * no ADR_LIMIT, no SYS_MEMBAR on downgrades (facts §14.1).
 *
 * @module
 */

import { MMU_INVALIDATE_SCOPE_NON_LINK_TLBS } from "../regs.ts";
import { TU10X } from "./tu102.ts";
import type { ChipFamily } from "./types.ts";

/** GA100. */
export const GA100: ChipFamily = {
  ...TU10X,
  name: "GA100",
  chipIds: [0x170],
  instanceBlock: { ...TU10X.instanceBlock, adrLimit: false },
  invalidate: { membarOnDowngrade: false, scope: MMU_INVALIDATE_SCOPE_NON_LINK_TLBS },
  layout: { ...TU10X.layout, displayFuse: null, mmuLock: true },
};
