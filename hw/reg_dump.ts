/**
 * A register dump for people: the registers novamm uses on this chip, read
 * once each (single 32-bit reads) and decoded field by field. What the REPL's
 * `regs()` prints.
 *
 * @module
 */

import type { Architecture } from "./chip.ts";
import { hex } from "./errors.ts";
import type { Mmio } from "./mmio.ts";
import {
  BAR1_BLOCK,
  BAR1_BLOCK_LOW,
  BOOT_0,
  BOOT_42,
  type Field,
  field,
  getField,
  isPriError,
  LOCAL_MEMORY_RANGE,
  MMU_INVALIDATE,
  MMU_INVALIDATE_PDB,
  MMU_INVALIDATE_UPPER_PDB,
  NV_PBUS_BAR1_BLOCK,
  NV_PFB_PRI_MMU_LOCAL_MEMORY_RANGE,
  NV_PMC_BOOT_0,
  NV_PMC_BOOT_42,
  NV_USABLE_FB_SIZE_IN_MB,
  NV_VIRTUAL_FUNCTION_PRIV_FUNC_BAR1_BLOCK_HIGH_ADDR,
  NV_VIRTUAL_FUNCTION_PRIV_FUNC_BAR1_BLOCK_LOW_ADDR,
  NV_VIRTUAL_FUNCTION_PRIV_MMU_INVALIDATE,
  NV_VIRTUAL_FUNCTION_PRIV_MMU_INVALIDATE_PDB,
  NV_VIRTUAL_FUNCTION_PRIV_MMU_INVALIDATE_UPPER_PDB,
  windowRegister,
} from "./regs.ts";

/** One register novamm knows. */
export interface KnownRegister {
  /** NVIDIA's name. */
  name: string;
  /** BAR0 offset. */
  offset: number;
  /** Its fields by name. */
  fields: Readonly<Record<string, Field>>;
}

/** The registers novamm reads or writes on an architecture, in BAR0 order. */
export function knownRegisters(architecture: Architecture): KnownRegister[] {
  const win = windowRegister(architecture);
  const hopperOn = architecture === "Hopper" || architecture === "Blackwell";
  const list: KnownRegister[] = [
    { name: "NV_PMC_BOOT_0", offset: NV_PMC_BOOT_0, fields: BOOT_0 },
    { name: "NV_PMC_BOOT_42", offset: NV_PMC_BOOT_42, fields: BOOT_42 },
    {
      name: win.name,
      offset: win.offset,
      fields: win.target === null ? { BASE: win.base } : { BASE: win.base, TARGET: win.target },
    },
    architecture === "Turing"
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
    list.push({ name: "NV_PBUS_BAR1_BLOCK", offset: NV_PBUS_BAR1_BLOCK, fields: BAR1_BLOCK });
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
 * console.log(readRegisters(gpu.bar0, gpu.chip.architecture));
 * ```
 */
export function readRegisters(bar0: Mmio, architecture: Architecture): RegisterReading[] {
  const out = knownRegisters(architecture).map((r) => {
    const value = bar0.read32(r.offset);
    const decoded = isPriError(value) ? null : Object.fromEntries(
      Object.entries(r.fields).map(([k, f]) => [k, getField(value, f)]),
    );
    return { ...r, value, decoded };
  });
  Object.defineProperty(out, Symbol.for("Deno.customInspect"), {
    value: () => formatReadings(out),
    enumerable: false,
  });
  return out;
}

function formatReadings(rs: RegisterReading[]): string {
  const width = Math.max(...rs.map((r) => r.name.length));
  return rs.map((r) => {
    const fields = r.decoded === null
      ? "PRI error (register unreadable)"
      : Object.entries(r.decoded).map(([k, v]) => `${k}=${hex(v)}`).join(" ");
    return `${hex(r.offset, 6)}  ${r.name.padEnd(width)}  ${hex(r.value, 8)}  ${fields}`;
  }).join("\n");
}
