/**
 * The VRAM a card's firmware already uses, read from the FB registers as a
 * driver does before GSP is up (facts §13.2 item 4), and the usable region
 * derived from it: the largest range no firmware region touches.
 *
 * Which registers exist is the chip family's (`hw/family/`, facts §14.1).
 * Regions (each `{ name, start, end, source }`, end exclusive):
 * - `vga-memory`: the first 256 KiB (nouveau `ramgp102`: legacy VGA memory),
 *   on chips with a display only;
 * - `console`: the boot VGA device's scanout at VRAM 0 (sysfs `boot_vga`);
 * - `vga-workspace`: only where the chip has a display — none at all on
 *   GA100, GH100 and GB10x, else NV_FUSE_STATUS_OPT_DISPLAY bit 0 clear (an
 *   unreadable fuse counts as a display): NV_PDISP_VGA_WORKSPACE_BASE (valid
 *   bit 3, address 31:8 << 16) up to the end of VRAM; not valid → the top
 *   1 MiB; below size − 1 MiB → the last 128 KiB (nova-core `fb.rs`, RM
 *   `kernel_gsp_tu102.c`);
 * - `mmu-lock`: GA100 only (`memmgrReadMmuLock_GA100`): NV_PFB_PRI_MMU_LOCK_ADDR_LO/HI
 *   when the privilege mask lets level 0 read them and HI ≥ LO (0/0: none):
 *   [LO << 12, align_up(HI << 12, 64 KiB));
 * - `wpr2`: each WPR2 register pair of the family (NV_PFB everywhere; also
 *   NV_HUBMMU 0x88A824/8 on Blackwell): [LO << 12, HI << 12) — HI is the
 *   exclusive end (RM `rangeMake(start, end - 1)`); empty when the end is 0
 *   or equals the start (a GH100 LO resets to 0xFFFFFFF0);
 * - `bar1-tables`: from a BAR1 instance block bound at open (someone else's
 *   tables, which live in firmware's reserved memory) to the end of VRAM.
 *
 * @module
 */

import { describe, fail, hex } from "../hw/errors.ts";
import { checkMmio, checkObject, checkOptions, checkUint } from "../hw/validate.ts";
import type { ChipInfo } from "../hw/chip.ts";
import type { Mmio } from "../hw/mmio.ts";
import {
  ADDR_VAL_4K,
  FUSE_STATUS_OPT_DISPLAY,
  getField,
  NV_PDISP_VGA_WORKSPACE_BASE,
  NV_PFB_PRI_MMU_LOCK_ADDR_HI,
  NV_PFB_PRI_MMU_LOCK_ADDR_LO,
  NV_PFB_PRI_MMU_LOCK_CFG_PRIV_LEVEL_MASK,
  readValid,
  VGA_WORKSPACE_BASE,
} from "../hw/regs.ts";
import { chipFamily, type LayoutRegisters } from "../hw/family/mod.ts";

/** One VRAM region firmware owns. */
export interface VramRegion {
  /** Short name (`vga-workspace`, `wpr2`, ...). */
  name: string;
  /** First byte. */
  start: number;
  /** One past the last byte. */
  end: number;
  /** Where the numbers come from (register and value, or the rule assumed). */
  source: string;
}

/** What {@linkcode readVramLayout} needs besides the registers. */
export interface LayoutOptions {
  /** VRAM bytes. */
  vramSize: number;
  /** The boot VGA device: keep the console scanout at VRAM 0. */
  bootVga: boolean;
  /** An instance block BAR1 was bound to at open (not novamm's), or null. */
  boundInstanceBlock: number | null;
  /**
   * A snapshot device (`snap:FILE`): whether it holds register `offset`. A
   * register it does not hold is unknown: the layout treats it as it treats
   * an unreadable one and lists it in {@linkcode VramLayout.unknown}, and it
   * is never read (a `snap:` device refuses to make up its value).
   */
  recorded?: (offset: number) => boolean;
}

/** The layout with the registers it could not know. */
export interface VramLayout {
  /** The firmware-owned regions, sorted by start. */
  regions: VramRegion[];
  /** Registers the layout wanted and the device could not tell (`NV_FUSE_STATUS_OPT_DISPLAY (0x820c04): not in the snapshot`). */
  unknown: string[];
}

const KiB = 1024;
const MiB = 1024 * KiB;
/** Bytes kept for a console scanout at VRAM 0: a 3840×2160 32-bpp frame, rounded up. */
export const CONSOLE_RESERVE = 32 * MiB;
/** Alignment of the usable region's ends (the 64 KiB big page). */
const USABLE_ALIGN = 64 * KiB;

/**
 * Reads the firmware-owned regions from the FB registers (single 32-bit
 * reads, no writes, so it works on a read-only session).
 *
 * @example
 * ```ts
 * import { openGpu } from "../mod.ts";
 * using gpu = await openGpu({ device: "sim" });
 * const regions = readVramLayout(gpu.bar0, gpu.chip, {
 *   vramSize: gpu.vram.size, bootVga: false, boundInstanceBlock: null,
 * });
 * ```
 */
export function readVramLayout(bar0: Mmio, chip: ChipInfo, options: LayoutOptions): VramRegion[] {
  return vramLayout(bar0, chip, options).regions;
}

/**
 * {@linkcode readVramLayout} with the registers it could not know: on a
 * `snap:` device (`options.recorded`), a layout register the snapshot does
 * not hold is treated as unreadable (a display assumed, the top 1 MiB for
 * the VGA workspace, no WPR2 or MMU-lock region from it) and listed.
 *
 * @example
 * ```ts
 * import { openGpu } from "../mod.ts";
 * using gpu = await openGpu({ device: "sim" });
 * const { regions, unknown } = vramLayout(gpu.bar0, gpu.chip, {
 *   vramSize: gpu.vram.size, bootVga: false, boundInstanceBlock: null,
 *   recorded: (offset) => offset !== 0x820c04,
 * });
 * unknown; // ["NV_FUSE_STATUS_OPT_DISPLAY (0x820c04): not in the snapshot"]
 * ```
 */
export function vramLayout(bar0: Mmio, chip: ChipInfo, options: LayoutOptions): VramLayout {
  checkMmio(bar0, "readVramLayout bar0");
  checkObject(chip, "readVramLayout chip");
  checkObject(options, "readVramLayout options");
  checkOptions(
    options,
    {
      vramSize: "number",
      bootVga: "boolean",
      boundInstanceBlock: (v, k) => v === null || checkUint(v, k),
      recorded: "function",
    },
    "readVramLayout options",
  );
  checkUint(options.vramSize, "VRAM size");
  const size = options.vramSize;
  const layout = chipFamily(chip).layout;
  const regions: VramRegion[] = [];
  const unknown: string[] = [];
  const recorded = options.recorded;
  /** A single read; null when it reads a PRI error or the snapshot does not hold it. */
  const rd: Read = (offset, name) => {
    if (recorded !== undefined && !recorded(offset)) {
      const why = `${name} (${hex(offset)}): not in the snapshot`;
      if (!unknown.includes(why)) unknown.push(why);
      return NOT_RECORDED;
    }
    return readValid(bar0, offset);
  };
  const display = hasDisplay(rd, layout);
  if (display.present) {
    regions.push({
      name: "vga-memory",
      start: 0,
      end: 256 * KiB,
      source: "first 256 KiB (nouveau ramgp102)",
    });
  }
  if (options.bootVga) {
    regions.push({
      name: "console",
      start: 0,
      end: Math.min(size, CONSOLE_RESERVE),
      source: "boot VGA device (sysfs boot_vga = 1): console scanout at 0, 32 MiB assumed",
    });
  }
  if (display.present) regions.push(vgaWorkspace(rd, size, display.why));
  if (layout.mmuLock) {
    const lock = mmuLock(rd, size);
    if (lock !== null) regions.push(lock);
  }
  for (const pair of layout.wpr2) {
    const lo = rd(pair.lo, `${pair.name}_LO`);
    const hi = rd(pair.hi, `${pair.name}_HI`);
    if (typeof lo !== "number" || typeof hi !== "number") continue;
    const start = getField(lo, ADDR_VAL_4K.VAL) * 4096;
    const end = getField(hi, ADDR_VAL_4K.VAL) * 4096; // exclusive
    if (end === 0 || end <= start) continue;
    const source = `${pair.name}_LO/HI (${hex(pair.lo)}) = ${hex(lo, 8)}/${
      hex(hi, 8)
    } (set: firmware ran; GSP-RM or its remains)`;
    const same = regions.find((r) => r.name === "wpr2" && r.start === start);
    if (same !== undefined && same.end === Math.min(size, end)) {
      same.source += `; ${source}`;
      continue;
    }
    regions.push({ name: "wpr2", start, end: Math.min(size, end), source });
  }

  if (options.boundInstanceBlock !== null) {
    const start = Math.floor(options.boundInstanceBlock / (2 * MiB)) * 2 * MiB;
    regions.push({
      name: "bar1-tables",
      start,
      end: size,
      source: `BAR1 was bound at open to the instance block at ${
        hex(options.boundInstanceBlock)
      }: firmware's reserved memory`,
    });
  }
  regions.sort((a, b) => a.start - b.start || a.end - b.end);
  return { regions, unknown };
}

/** Marks a register a snapshot does not hold (never a value). */
const NOT_RECORDED = "not in the snapshot";
/** A layout register read: its value, null (a PRI error) or {@linkcode NOT_RECORDED}. */
type Read = (offset: number, name: string) => number | null | typeof NOT_RECORDED;

/** Why a read gave no value, for a region's source. */
function noValue(v: null | typeof NOT_RECORDED): string {
  return v === null ? "unreadable" : NOT_RECORDED;
}

/** Whether the chip has a display (and so a VGA workspace), and why novamm thinks so. */
function hasDisplay(rd: Read, layout: LayoutRegisters): { present: boolean; why: string } {
  if (layout.displayFuse === null) return { present: false, why: "the chip has no display" };
  const fuse = rd(layout.displayFuse, "NV_FUSE_STATUS_OPT_DISPLAY");
  if (typeof fuse !== "number") {
    return { present: true, why: `NV_FUSE_STATUS_OPT_DISPLAY ${noValue(fuse)}: display assumed` };
  }
  const present = getField(fuse, FUSE_STATUS_OPT_DISPLAY.DATA) === 0;
  return { present, why: `NV_FUSE_STATUS_OPT_DISPLAY = ${hex(fuse, 8)}` };
}

function vgaWorkspace(rd: Read, size: number, why: string): VramRegion {
  const vga = rd(NV_PDISP_VGA_WORKSPACE_BASE, "NV_PDISP_VGA_WORKSPACE_BASE");
  let base: number;
  let source: string;
  if (typeof vga === "number" && getField(vga, VGA_WORKSPACE_BASE.STATUS_VALID) === 1) {
    base = getField(vga, VGA_WORKSPACE_BASE.ADDR) * 2 ** 16;
    source = `NV_PDISP_VGA_WORKSPACE_BASE = ${hex(vga, 8)}`;
    if (base < size - MiB) {
      base = size - 128 * KiB;
      source += " (below the top MiB: the last 128 KiB, as nova-core)";
    }
  } else {
    base = size - MiB;
    source = `NV_PDISP_VGA_WORKSPACE_BASE ${
      typeof vga === "number" ? `= ${hex(vga, 8)}, not valid` : noValue(vga)
    }: the top 1 MiB assumed`;
  }
  return {
    name: "vga-workspace",
    start: Math.max(0, base),
    end: size,
    source: `${source}; ${why}`,
  };
}

/** GA100's VBIOS-locked region (RM `memmgrReadMmuLock_GA100`), or null. */
function mmuLock(rd: Read, size: number): VramRegion | null {
  const plm = rd(
    NV_PFB_PRI_MMU_LOCK_CFG_PRIV_LEVEL_MASK,
    "NV_PFB_PRI_MMU_LOCK_CFG_PRIV_LEVEL_MASK",
  );
  if (typeof plm !== "number" || (plm & 1) !== 1) return null;
  const lo = rd(NV_PFB_PRI_MMU_LOCK_ADDR_LO, "NV_PFB_PRI_MMU_LOCK_ADDR_LO");
  const hi = rd(NV_PFB_PRI_MMU_LOCK_ADDR_HI, "NV_PFB_PRI_MMU_LOCK_ADDR_HI");
  if (typeof lo !== "number" || typeof hi !== "number") return null;
  const start = getField(lo, ADDR_VAL_4K.VAL) * 4096;
  const last = getField(hi, ADDR_VAL_4K.VAL) * 4096;
  if (last < start || (start === 0 && last === 0)) return null;
  const end = Math.min(size, Math.ceil(last / (64 * KiB)) * 64 * KiB);
  if (end <= start) return null;
  return {
    name: "mmu-lock",
    start,
    end,
    source: `NV_PFB_PRI_MMU_LOCK_ADDR_LO/HI = ${hex(lo, 8)}/${hex(hi, 8)}`,
  };
}

/**
 * The largest range of VRAM that no region touches, its ends aligned to 64 KiB.
 *
 * @example
 * ```ts
 * import { openGpu } from "../mod.ts";
 * using gpu = await openGpu({ device: "sim" });
 * usableFrom(gpu.vram.layout, gpu.vram.size); // { start: 0x40000, end: 0x5ffe00000 }
 * ```
 */
export function usableFrom(
  regions: readonly VramRegion[],
  vramSize: number,
): { start: number; end: number } {
  if (!Array.isArray(regions)) {
    fail("EINVAL", `usableFrom takes an array of regions, not ${describe(regions)}`);
  }
  for (const r of regions) {
    checkObject(r, "a VRAM region");
    checkUint(r.start, "region start");
    checkUint(r.end, "region end");
  }
  checkUint(vramSize, "VRAM size");
  const sorted = [...regions].sort((a, b) => a.start - b.start);
  let best = { start: 0, end: 0 };
  let cursor = 0;
  const consider = (gapStart: number, gapEnd: number) => {
    const start = Math.ceil(gapStart / USABLE_ALIGN) * USABLE_ALIGN;
    const end = Math.floor(gapEnd / USABLE_ALIGN) * USABLE_ALIGN;
    if (end - start > best.end - best.start) best = { start, end };
  };
  for (const r of sorted) {
    if (r.start > cursor) consider(cursor, r.start);
    cursor = Math.max(cursor, r.end);
  }
  if (cursor < vramSize) consider(cursor, vramSize);
  return best;
}
