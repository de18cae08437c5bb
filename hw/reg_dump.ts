/**
 * A register dump for people: the registers novamm uses on this chip, read
 * once each (single 32-bit reads) and decoded field by field. What the REPL's
 * `regs()` prints.
 *
 * @module
 */

import type { Architecture } from "./chip.ts";
import { describe, fail, formatSize, hex } from "./errors.ts";
import { checkMmio, checkUint } from "./validate.ts";
import type { Mmio } from "./mmio.ts";
import {
  ADDR_VAL_4K,
  BAR1_BLOCK,
  BAR1_BLOCK_LOW,
  BIND_STATUS,
  BOOT_0,
  BOOT_42,
  type Field,
  field,
  FUSE_STATUS_OPT_DISPLAY,
  getField,
  gfwBootRegisters,
  isPriError,
  LOCAL_MEMORY_RANGE,
  MMU_INVALIDATE,
  MMU_INVALIDATE_PDB,
  MMU_INVALIDATE_UPPER_PDB,
  NV_PBUS_BAR1_BLOCK,
  NV_PDISP_VGA_WORKSPACE_BASE,
  NV_PFB_PRI_MMU_LOCAL_MEMORY_RANGE,
  NV_PFB_PRI_MMU_LOCK_ADDR_HI,
  NV_PFB_PRI_MMU_LOCK_ADDR_LO,
  NV_PFB_PRI_MMU_LOCK_CFG_PRIV_LEVEL_MASK,
  NV_PMC_BOOT_0,
  NV_PMC_BOOT_42,
  NV_UFLUSH_FB_FLUSH,
  NV_USABLE_FB_SIZE_IN_MB,
  NV_VIRTUAL_FUNCTION_PRIV_BAR1_BLOCK,
  NV_VIRTUAL_FUNCTION_PRIV_BIND_STATUS,
  NV_VIRTUAL_FUNCTION_PRIV_FUNC_BAR1_BLOCK_HIGH_ADDR,
  NV_VIRTUAL_FUNCTION_PRIV_FUNC_BAR1_BLOCK_LOW_ADDR,
  NV_VIRTUAL_FUNCTION_PRIV_MMU_INVALIDATE,
  NV_VIRTUAL_FUNCTION_PRIV_MMU_INVALIDATE_PDB,
  NV_VIRTUAL_FUNCTION_PRIV_MMU_INVALIDATE_UPPER_PDB,
  NV_XAL_EP_ZB_UFLUSH_FB_FLUSH_COMPLETED,
  SCRATCH_GROUP_05_PLM,
  UFLUSH_FB_FLUSH,
  VGA_WORKSPACE_BASE,
  windowRegister,
  XAL_FB_FLUSH,
} from "./regs.ts";
import { chipFamily } from "./family/mod.ts";

/** One register novamm knows. */
export interface KnownRegister {
  /** NVIDIA's name. */
  name: string;
  /** BAR0 offset. */
  offset: number;
  /** Its fields by name. */
  fields: Readonly<Record<string, Field>>;
}

/** A chip id of each architecture, for callers that name only the architecture. */
const TYPICAL_CHIP: Record<Architecture, number> = {
  Turing: 0x162,
  Ampere: 0x172,
  Ada: 0x192,
  Hopper: 0x180,
  Blackwell: 0x1b2,
};

/**
 * The registers novamm reads or writes on an architecture (and chip: GA100's
 * VRAM size and GB20x's boot status live elsewhere), in BAR0 order.
 */
export function knownRegisters(architecture: Architecture, chipId?: number): KnownRegister[] {
  if (!Object.hasOwn(TYPICAL_CHIP, architecture as string)) {
    fail(
      "EINVAL",
      `architecture ${describe(architecture)} is not one of ${
        Object.keys(TYPICAL_CHIP).join(", ")
      }`,
    );
  }
  if (chipId !== undefined) checkUint(chipId, "chip id");
  const chip = chipId ?? TYPICAL_CHIP[architecture];
  const win = windowRegister(architecture);
  const hopperOn = architecture === "Hopper" || architecture === "Blackwell";
  const gfw = gfwBootRegisters(chip);
  const localRange = architecture === "Turing" || chip === 0x170;
  const list: KnownRegister[] = [
    { name: "NV_PMC_BOOT_0", offset: NV_PMC_BOOT_0, fields: BOOT_0 },
    { name: "NV_PMC_BOOT_42", offset: NV_PMC_BOOT_42, fields: BOOT_42 },
    {
      name: win.name,
      offset: win.offset,
      fields: win.target === null ? { BASE: win.base } : { BASE: win.base, TARGET: win.target },
    },
    localRange
      ? {
        name: "NV_PFB_PRI_MMU_LOCAL_MEMORY_RANGE",
        offset: NV_PFB_PRI_MMU_LOCAL_MEMORY_RANGE,
        fields: LOCAL_MEMORY_RANGE,
      }
      : {
        name: "NV_USABLE_FB_SIZE_IN_MB",
        offset: NV_USABLE_FB_SIZE_IN_MB,
        fields: { MB: field(31, 0) },
      },
    {
      name: "NV_VIRTUAL_FUNCTION_PRIV_MMU_INVALIDATE_PDB",
      offset: NV_VIRTUAL_FUNCTION_PRIV_MMU_INVALIDATE_PDB,
      fields: MMU_INVALIDATE_PDB,
    },
    {
      name: "NV_VIRTUAL_FUNCTION_PRIV_MMU_INVALIDATE_UPPER_PDB",
      offset: NV_VIRTUAL_FUNCTION_PRIV_MMU_INVALIDATE_UPPER_PDB,
      fields: MMU_INVALIDATE_UPPER_PDB,
    },
    {
      name: "NV_VIRTUAL_FUNCTION_PRIV_MMU_INVALIDATE",
      offset: NV_VIRTUAL_FUNCTION_PRIV_MMU_INVALIDATE,
      fields: MMU_INVALIDATE,
    },
  ];
  const fam = chipFamily({ chipId: chip, name: architecture });
  list.push({ name: gfw.name, offset: gfw.progress, fields: { PROGRESS: gfw.field } });
  // The FB flush of the family. Never 0x10F800: a read there injects a flush (facts §14.1).
  if (fam.fbFlush.mechanism === "uflush") {
    list.push({ name: "NV_UFLUSH_FB_FLUSH", offset: NV_UFLUSH_FB_FLUSH, fields: UFLUSH_FB_FLUSH });
  } else if (fam.fbFlush.mechanism === "xal") {
    list.push({
      name: "NV_XAL_EP_ZB_UFLUSH_FB_FLUSH_COMPLETED",
      offset: NV_XAL_EP_ZB_UFLUSH_FB_FLUSH_COMPLETED,
      fields: XAL_FB_FLUSH,
    });
  }
  if (fam.layout.displayFuse !== null) {
    list.push(
      {
        name: "NV_FUSE_STATUS_OPT_DISPLAY",
        offset: fam.layout.displayFuse,
        fields: FUSE_STATUS_OPT_DISPLAY,
      },
      {
        name: "NV_PDISP_VGA_WORKSPACE_BASE",
        offset: NV_PDISP_VGA_WORKSPACE_BASE,
        fields: VGA_WORKSPACE_BASE,
      },
    );
  }
  for (const pair of fam.layout.wpr2) {
    list.push(
      { name: `${pair.name}_LO`, offset: pair.lo, fields: ADDR_VAL_4K },
      { name: `${pair.name}_HI`, offset: pair.hi, fields: ADDR_VAL_4K },
    );
  }
  list.push({
    name: "MEM_CLEAR_STATUS",
    offset: fam.boot.memClear,
    fields: { DONE: field(31, 0) },
  });
  if (gfw.plm !== null) {
    list.push({
      name: "NV_PGC6_AON_SECURE_SCRATCH_GROUP_05_PRIV_LEVEL_MASK",
      offset: gfw.plm,
      fields: SCRATCH_GROUP_05_PLM,
    });
  }
  if (fam.layout.mmuLock) {
    list.push(
      {
        name: "NV_PFB_PRI_MMU_LOCK_CFG_PRIV_LEVEL_MASK",
        offset: NV_PFB_PRI_MMU_LOCK_CFG_PRIV_LEVEL_MASK,
        fields: { READ_PROTECTION_LEVEL0: field(0, 0) },
      },
      {
        name: "NV_PFB_PRI_MMU_LOCK_ADDR_LO",
        offset: NV_PFB_PRI_MMU_LOCK_ADDR_LO,
        fields: ADDR_VAL_4K,
      },
      {
        name: "NV_PFB_PRI_MMU_LOCK_ADDR_HI",
        offset: NV_PFB_PRI_MMU_LOCK_ADDR_HI,
        fields: ADDR_VAL_4K,
      },
    );
  }
  if (hopperOn) {
    list.push(
      {
        name: "NV_VIRTUAL_FUNCTION_PRIV_FUNC_BAR1_BLOCK_LOW_ADDR",
        offset: NV_VIRTUAL_FUNCTION_PRIV_FUNC_BAR1_BLOCK_LOW_ADDR,
        fields: BAR1_BLOCK_LOW,
      },
      {
        name: "NV_VIRTUAL_FUNCTION_PRIV_FUNC_BAR1_BLOCK_HIGH_ADDR",
        offset: NV_VIRTUAL_FUNCTION_PRIV_FUNC_BAR1_BLOCK_HIGH_ADDR,
        fields: { ADDR_HI: field(31, 0) },
      },
    );
  } else {
    // NV_PBUS_BIND_STATUS 0x1710 is only in the gm107 header: not listed on Turing+.
    list.push(
      { name: "NV_PBUS_BAR1_BLOCK", offset: NV_PBUS_BAR1_BLOCK, fields: BAR1_BLOCK },
      {
        name: "NV_VIRTUAL_FUNCTION_PRIV_BAR1_BLOCK",
        offset: NV_VIRTUAL_FUNCTION_PRIV_BAR1_BLOCK,
        fields: BAR1_BLOCK,
      },
      {
        name: "NV_VIRTUAL_FUNCTION_PRIV_BIND_STATUS",
        offset: NV_VIRTUAL_FUNCTION_PRIV_BIND_STATUS,
        fields: BIND_STATUS,
      },
    );
  }
  return list.sort((a, b) => a.offset - b.offset);
}

/** One line of a register dump. */
export interface RegisterReading extends KnownRegister {
  /** What the single 32-bit read returned. */
  value: number;
  /** Field values, or null when the read was a PRI error. */
  decoded: Record<string, number> | null;
}

/**
 * Reads every known register once and decodes it. Prints as a table, one
 * register per line, fields in hex; PRI errors are flagged, not decoded.
 *
 * @example
 * ```ts
 * import { openGpu } from "../mod.ts";
 * using gpu = await openGpu({ device: "sim" });
 * console.log(readRegisters(gpu.bar0, gpu.chip.architecture));
 * ```
 */
export function readRegisters(
  bar0: Mmio,
  architecture: Architecture,
  chipId?: number,
): RegisterReading[] {
  checkMmio(bar0, "readRegisters bar0");
  const out = knownRegisters(architecture, chipId).map((r) => {
    const value = bar0.read32(r.offset);
    const decoded = isPriError(value) ? null : Object.fromEntries(
      Object.entries(r.fields).map(([k, f]) => [k, getField(value, f)]),
    );
    return { ...r, value, decoded };
  });
  Object.defineProperty(out, Symbol.for("Deno.customInspect"), {
    value: () => formatReadings(out),
    enumerable: false,
    configurable: true,
  });
  return out;
}

/**
 * What a raw field means, printed beside it: sizes in bytes (`MB=0x6000
 * (24 GiB)`), address fields as the VRAM address they encode (`VAL=0x5ff00
 * (VRAM 0x5ff00000)`); null for fields that are plain values.
 */
function derived(r: RegisterReading, key: string, v: number): string | null {
  const d = r.decoded!;
  if (r.name === "NV_USABLE_FB_SIZE_IN_MB" && key === "MB") return formatSize(v * 2 ** 20);
  if (r.name === "NV_PFB_PRI_MMU_LOCAL_MEMORY_RANGE" && key === "LOWER_MAG") {
    return formatSize(v * 2 ** (20 + (d.LOWER_SCALE ?? 0)));
  }
  // WPR2 and the MMU lock: VAL (31:4) is the address >> 12.
  if (/_(WPR2|LOCK)_ADDR_(LO|HI)$/.test(r.name) && key === "VAL") {
    return `VRAM ${hex(BigInt(v) << 12n)}`;
  }
  if (r.name === "NV_PDISP_VGA_WORKSPACE_BASE" && key === "ADDR") {
    return `VRAM ${hex(BigInt(v) << 16n)}`;
  }
  if (/BAR1_BLOCK(_LOW_ADDR)?$/.test(r.name) && key === "PTR") return `at ${hex(BigInt(v) << 12n)}`;
  return null;
}

function formatReadings(rs: RegisterReading[]): string {
  const width = Math.max(...rs.map((r) => r.name.length));
  return rs.map((r) => {
    const fields = r.decoded === null
      ? "PRI error (register unreadable)"
      : Object.entries(r.decoded).map(([k, v]) => {
        const more = derived(r, k, v);
        return `${k}=${hex(v)}${more === null ? "" : ` (${more})`}`;
      }).join(" ");
    return `${hex(r.offset, 6)}  ${r.name.padEnd(width)}  ${hex(r.value, 8)}  ${fields}`;
  }).join("\n");
}
