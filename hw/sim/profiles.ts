/**
 * Simulated GPU profiles, card states and the CONFLICT knobs. `sim` means
 * `sim:ga102:bare`.
 *
 * What differs per chip follows NVIDIA's per-chip HALs (facts §14.1): which
 * chips have a display engine (and so a VGA workspace), which have the
 * MMU-locked region (GA100 only), and how the CPU flushes posted FB writes
 * (NV_UFLUSH_FB_FLUSH on Turing/Ampere/Ada, the XAL token registers on GH100
 * and GB20x, a GSP call on GB10x).
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
  /**
   * VBIOS locks a region at the top of VRAM in NV_PFB_PRI_MMU_LOCK_ADDR: GA100
   * only (`memmgrReadMmuLock_GA100`; the registers exist only in `ga100/dev_fb.h`;
   * facts §14.1). Elsewhere those offsets are unknown registers.
   */
  mmuLock: boolean;
  /**
   * The chip has a display engine: NV_FUSE_STATUS_OPT_DISPLAY reads 0 and
   * NV_PDISP_VGA_WORKSPACE_BASE exists. False on GA100, GH100, GB100/GB102/GB110/GB112
   * (facts §14.1): no VGA workspace, no console, no boot VGA device.
   */
  display: boolean;
  /**
   * How the CPU flushes posted FB writes (facts §14.1): `uflush` = write
   * NV_UFLUSH_FB_FLUSH 0x70000 (Turing, Ampere, Ada); `xal` = read
   * NV_XAL_EP_ZB_UFLUSH_FB_FLUSH 0x10F800 and poll the token at 0x10F804 (GH100,
   * GB20x); `gsp` = an RPC to GSP, no CPU-side register at all (GB10x).
   */
  fbFlush: "uflush" | "xal" | "gsp";
}

/**
 * What state the card is in when the simulator opens it (facts §13.2):
 *
 * - `bare`: power-on, no driver ever bound. GFW boot done, BAR1 physical,
 *   no instance block or tables, WPR2 clear; nothing reports a usable region.
 * - `gsp`: what GSP-RM leaves while it runs: BAR1 tables at the top of VRAM,
 *   bound as RM binds (MMU v2: through NV_VIRTUAL_FUNCTION_PRIV_BAR1_BLOCK, so
 *   0x1704 reads the same value under `bar1alias=shared` and zero under
 *   `separate`; v3: LOW then HIGH), WPR2 set, a usable region reported.
 * - `unloaded`: after the nvidia driver unloads: BAR1 physical again (RM's
 *   teardown), WPR2 still set, GSP's old tables still in VRAM (stale), the
 *   previous driver's data everywhere else, nothing reported.
 * - `booting`: GFW boot still running at open; it completes
 *   {@linkcode GFW_BOOT_MS} ms after the card is created, and the post-reset
 *   memory clear {@linkcode MEM_CLEAR_MS} ms after that.
 * - `vga`: `bare`, and the card is the boot VGA device (sysfs `boot_vga` = 1):
 *   the kernel console scans out from VRAM 0 through physical BAR1. Only chips
 *   with a display engine ({@linkcode SimProfile.display}).
 */
export type SimCardState = "bare" | "gsp" | "unloaded" | "booting" | "vga";

/** The card states, in the order help texts list them. */
export const SIM_STATES: readonly SimCardState[] = ["bare", "gsp", "unloaded", "booting", "vga"];

/** How long GFW boot runs on a `booting` card. */
export const GFW_BOOT_MS = 250;
/** How long after GFW boot the post-reset memory clear of a `booting` card ends (facts §14.2 item 2). */
export const MEM_CLEAR_MS = 50;

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
    mmuLock: false,
    display: true,
    fbFlush: "uflush",
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
    display: false,
    fbFlush: "uflush",
  },
  gh100: {
    name: "gh100",
    chipId: 0x180,
    architecture: "Hopper",
    mmuVersion: 3,
    vramSize: 80 * GiB,
    bar1Size: 128 * GiB,
    vramSizeRegister: "usableFbSizeInMb",
    mmuLock: false,
    display: false,
    fbFlush: "xal",
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
    display: true,
    fbFlush: "uflush",
  },
  ad102: {
    name: "ad102",
    chipId: 0x192,
    architecture: "Ada",
    mmuVersion: 2,
    vramSize: 24 * GiB,
    bar1Size: 256 * MiB,
    vramSizeRegister: "usableFbSizeInMb",
    mmuLock: false,
    display: true,
    fbFlush: "uflush",
  },
  gb202: {
    name: "gb202",
    chipId: 0x1b2,
    architecture: "Blackwell",
    mmuVersion: 3,
    vramSize: 32 * GiB,
    bar1Size: 32 * GiB,
    vramSizeRegister: "usableFbSizeInMb",
    mmuLock: false,
    display: true,
    fbFlush: "xal",
  },
  gb100: {
    name: "gb100",
    chipId: 0x1a0,
    architecture: "Blackwell",
    mmuVersion: 3,
    vramSize: 192 * GiB, // HBM3e (B200)
    bar1Size: 256 * GiB,
    vramSizeRegister: "usableFbSizeInMb",
    mmuLock: false,
    display: false,
    fbFlush: "gsp",
  },
};

/** The profile `sim` stands for. */
export const DEFAULT_SIM_PROFILE = "ga102";
/** The state a simulated card starts in unless the spec names one. */
export const DEFAULT_SIM_STATE: SimCardState = "bare";

/**
 * The simulator's answers to the facts marked CONFLICT in §14.1 (the sources
 * disagree; novamm must be right under every candidate). Chosen when the card
 * is created.
 *
 * - `bar1alias` (MMU v2): `shared` = NV_PBUS_BAR1_BLOCK 0x1704 and
 *   NV_VIRTUAL_FUNCTION_PRIV_BAR1_BLOCK 0xB80F40 are one register at two
 *   offsets (what RM's unload writing only 0x1704 implies; the default);
 *   `separate` = two registers, BAR1 virtual if either says virtual (the VF
 *   one wins when both do), physical only when both say physical.
 * - `lowbind` (MMU v3): `immediate` = a BAR1_BLOCK_LOW write with MODE
 *   physical takes effect at once (what RM's teardown writing only LOW
 *   implies; the default); `high` = a LOW write only stores, the HIGH write
 *   starts every bind.
 * - `v3bit10` (MMU v3): `ignored` = the PDB word's USE_VER2_PT_FORMAT bit may be
 *   0 or 1 (the default); `rm` = only RM's value (0 on v3) is accepted.
 */
export interface SimConflicts {
  /** Whether 0x1704 and 0xB80F40 are one register (MMU v2). */
  bar1alias: "shared" | "separate";
  /** Whether a LOW write with MODE physical binds by itself (MMU v3). */
  lowbind: "immediate" | "high";
  /** What the v3 instance block's bit 10 may hold. */
  v3bit10: "ignored" | "rm";
}

/** The candidates of each knob, default first (for help texts and test matrices). */
export const SIM_CONFLICTS: { readonly [K in keyof SimConflicts]: readonly SimConflicts[K][] } = {
  bar1alias: ["shared", "separate"],
  lowbind: ["immediate", "high"],
  v3bit10: ["ignored", "rm"],
};

/** The MMU version each knob applies to (a knob of the other version is refused). */
export const SIM_CONFLICT_MMU: { readonly [K in keyof SimConflicts]: 2 | 3 } = {
  bar1alias: 2,
  lowbind: 3,
  v3bit10: 3,
};

/** What each knob is unless a spec or option says otherwise: what RM's code implies. */
export const DEFAULT_SIM_CONFLICTS: Readonly<SimConflicts> = {
  bar1alias: "shared",
  lowbind: "immediate",
  v3bit10: "ignored",
};
