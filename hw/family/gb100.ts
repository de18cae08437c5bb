/**
 * GB10x (GB100, GB102, GB110, GB112: Blackwell data centre): as GH100, but the
 * FB flush is a GSP-RM call (no CPU-side register: BAR1 cannot be brought up
 * without GSP), WPR2 also in NV_HUBMMU (0x88A824/8, RM 595.x), word 131 of an
 * instance block holds the CTXSW magic, the memory-clear register moved to
 * 0x8A004C, the PCIe BAR firewall is waited for, and FSP boot may take 10 s
 * (facts §14.1, §14.2).
 *
 * @module
 */

import {
  MEM_CLEAR_STATUS_GB,
  NV_HUBMMU_PRI_MMU_WPR2_ADDR_HI,
  NV_HUBMMU_PRI_MMU_WPR2_ADDR_LO,
} from "../regs.ts";
import { GSP_ONLY } from "./fb_flush.ts";
import { GH100 } from "./gh100.ts";
import { PFB_WPR2 } from "./tu102.ts";
import type { ChipFamily } from "./types.ts";

/** WPR2 in NV_HUBMMU (Blackwell, RM 595.x). */
export const HUBMMU_WPR2 = {
  lo: NV_HUBMMU_PRI_MMU_WPR2_ADDR_LO,
  hi: NV_HUBMMU_PRI_MMU_WPR2_ADDR_HI,
  name: "NV_HUBMMU_PRI_MMU_WPR2_ADDR",
} as const;

/** GB100, GB102, GB110, GB112. */
export const GB10X: ChipFamily = {
  ...GH100,
  name: "GB10x",
  chipIds: [0x1a0, 0x1a2, 0x1a3, 0x1a4],
  fbFlush: GSP_ONLY,
  instanceBlock: { ...GH100.instanceBlock, ctxswMagic: true },
  layout: { ...GH100.layout, wpr2: [HUBMMU_WPR2, PFB_WPR2] },
  boot: { ...GH100.boot, gfwTimeoutMs: 10_000, memClear: MEM_CLEAR_STATUS_GB, barFirewall: true },
};
