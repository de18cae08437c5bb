/**
 * Simulated GPU profiles and card states. `sim` means `sim:ga102:bare`.
 *
 * @module
 */

import type { SimArchitecture } from "./mmu.ts";

/** One simulated board. */
export interface SimProfile {
  /** Profile name as typed after `sim:`. */
  name: string;
  /** BOOT_42 chip id. */
  chipId: number;
  /** Architecture of the chip. */
  architecture: SimArchitecture;
  /** Page-table format. */
  mmuVersion: 2 | 3;
  /** VRAM bytes. */
  vramSize: number;
  /** BAR1 aperture bytes. */
  bar1Size: number;
  /**
   * Where VBIOS devinit reports the VRAM size: NV_PFB_PRI_MMU_LOCAL_MEMORY_RANGE
   * (Turing, GA100) or NV_USABLE_FB_SIZE_IN_MB (GA102 and later); facts §13.1.
   */
  vramSizeRegister: "localMemoryRange" | "usableFbSizeInMb";
  /** VBIOS locks a region at the top of VRAM in NV_PFB_PRI_MMU_LOCK_ADDR (GA100 and later). */
  mmuLock: boolean;
}

/**
 * What state the card is in when the simulator opens it (facts §13.2):
 *
 * - `bare`: power-on, no driver ever bound. GFW boot done, BAR1 physical,
 *   no instance block or tables, WPR2 clear; nothing reports a usable region.
 * - `gsp`: what GSP-RM leaves while it runs: BAR1 tables at the top of VRAM,
 *   bound through NV_VIRTUAL_FUNCTION_PRIV_BAR1_BLOCK (0x1704 reads zero),
 *   WPR2 set, a usable region reported.
 * - `unloaded`: after the nvidia driver unloads: BAR1 physical again, WPR2
 *   still set, GSP's old tables still in VRAM (stale), nothing reported.
 * - `booting`: GFW boot still running at open; it completes
 *   {@linkcode GFW_BOOT_MS} ms after the card is created.
 * - `vga`: `bare`, and the card is the boot VGA device (sysfs `boot_vga` = 1):
 *   the kernel console scans out from VRAM 0 through physical BAR1.
 */
export type SimCardState = "bare" | "gsp" | "unloaded" | "booting" | "vga";

/** The card states, in the order help texts list them. */
export const SIM_STATES: readonly SimCardState[] = ["bare", "gsp", "unloaded", "booting", "vga"];

/** How long GFW boot runs on a `booting` card. */
export const GFW_BOOT_MS = 250;

const GiB = 2 ** 30;
const MiB = 2 ** 20;

/** The boards the simulator can be. */
export const SIM_PROFILES: Readonly<Record<string, SimProfile>> = {
  ga102: {
    name: "ga102",
    chipId: 0x172,
    architecture: "Ampere",
    mmuVersion: 2,
    vramSize: 24 * GiB,
    bar1Size: 256 * MiB,
    vramSizeRegister: "usableFbSizeInMb",
    mmuLock: true,
  },
  ga100: {
    name: "ga100",
    chipId: 0x170,
    architecture: "Ampere",
    mmuVersion: 2,
    vramSize: 40 * GiB, // HBM2 (A100 40 GB)
    bar1Size: 64 * GiB,
    vramSizeRegister: "localMemoryRange",
    mmuLock: true,
  },
  gh100: {
    name: "gh100",
    chipId: 0x180,
    architecture: "Hopper",
    mmuVersion: 3,
    vramSize: 80 * GiB,
    bar1Size: 128 * GiB,
    vramSizeRegister: "usableFbSizeInMb",
    mmuLock: true,
  },
  tu102: {
    name: "tu102",
    chipId: 0x162,
    architecture: "Turing",
    mmuVersion: 2,
    vramSize: 11 * GiB,
    bar1Size: 256 * MiB,
    vramSizeRegister: "localMemoryRange",
    mmuLock: false,
  },
  ad102: {
    name: "ad102",
    chipId: 0x192,
    architecture: "Ada",
    mmuVersion: 2,
    vramSize: 24 * GiB,
    bar1Size: 256 * MiB,
    vramSizeRegister: "usableFbSizeInMb",
    mmuLock: true,
  },
  gb202: {
    name: "gb202",
    chipId: 0x1b2,
    architecture: "Blackwell",
    mmuVersion: 3,
    vramSize: 32 * GiB,
    bar1Size: 32 * GiB,
    vramSizeRegister: "usableFbSizeInMb",
    mmuLock: true,
  },
};

/** The profile `sim` stands for. */
export const DEFAULT_SIM_PROFILE = "ga102";
/** The state a simulated card starts in unless the spec names one. */
export const DEFAULT_SIM_STATE: SimCardState = "bare";
