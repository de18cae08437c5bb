/**
 * What the VRAM map draws, gathered from a GPU through its public API only
 * (`gpu.vram`, `gpu.mm.buddy.allocations()`, `gpu.pramin.base`,
 * `gpu.bar1`, `Vmm.mappings()`), as plain data: the views never reach into
 * a device, so anything that offers the same API (a snapshot of a card,
 * later) draws the same way. Gathering makes no MMIO access beyond the
 * PRAMIN window register when it was never read.
 *
 * @module
 */

import { checkObject } from "../hw/validate.ts";
import { interruptPoint } from "../hw/mmio.ts";
import { Gpu } from "../mm/gpu.ts";
import { fail, NovaError } from "../hw/errors.ts";
import { Vmm } from "../mm/vmm.ts";
import { hexFast } from "./html.ts";

/** What owns a piece of VRAM, as the map colours it. */
export type VramKind = "firmware" | "table" | "instance" | "alloc" | "pramin" | "bar1";

/** The kinds in legend order. */
export const VRAM_KINDS: readonly VramKind[] = Object.freeze([
  "firmware",
  "table",
  "instance",
  "alloc",
  "pramin",
  "bar1",
]);

/** One owned piece of VRAM: [start, end) and what it is. */
export interface VramItem {
  /** First byte. */
  start: number;
  /** One past the last byte. */
  end: number;
  /** Who owns it. */
  kind: VramKind;
  /** What it is, for people (`PD0 of bar1`); views add the range and size. */
  label: string;
}

/** One row of the map: items sorted by start. */
export interface VramLane {
  /** Row name (`firmware`, `buddy`, `PRAMIN`, `BAR1`). */
  name: string;
  /** What the row shows, one line. */
  about: string;
  /** The items, lowest start first. */
  items: VramItem[];
}

/** Everything the VRAM map shows. */
export interface VramModel {
  /** `GH100 · sim:gh100`. */
  title: string;
  /** Bytes of VRAM. */
  size: number;
  /** The usable range novamm allocates from. */
  usable: { start: number; end: number };
  /** The rows. */
  lanes: VramLane[];
}

/** The kind of a buddy allocation, from the label its allocator gave it. */
export function allocationKind(label: string | null): VramKind {
  if (label === null) return "alloc";
  if (/^instance block/.test(label)) return "instance";
  if (/^(PD\d|PT|PT64K|PDB|root)\b/.test(label)) return "table";
  return "alloc";
}

/**
 * The VRAM map's data for an open GPU: firmware's regions from the layout,
 * every live buddy allocation (page tables, instance blocks and the rest,
 * each block of a scattered one), the PRAMIN window (1 MiB at its base) and
 * what BAR1 reaches (the whole aperture in physical mode; the pages behind
 * each mapping of the bound address space in virtual mode).
 *
 * @example
 * ```ts
 * import { openGpu } from "../mod.ts";
 * using gpu = await openGpu({ device: "sim:gh100" });
 * const m = vramModel(gpu);
 * m.lanes.map((l) => l.name); // ["firmware", "buddy", "PRAMIN", "BAR1"]
 * ```
 */
export function vramModel(gpu: Gpu): VramModel {
  checkObject(gpu, "vramModel gpu");
  if (!(gpu instanceof Gpu)) fail("EINVAL", "vramModel takes a Gpu (from openGpu)");
  const size = gpu.vram.size;
  const firmware: VramItem[] = gpu.vram.layout.map((r) => ({
    start: r.start,
    end: r.end,
    kind: "firmware" as const,
    label: `${r.name} (${r.source})`,
  }));
  const buddy: VramItem[] = [];
  // A read-only snapshot that leaves novamm no usable VRAM has no allocator: nothing allocated.
  const allocations = gpu.mm.noAllocator === null ? gpu.mm.buddy.allocations() : [];
  for (let i = 0; i < allocations.length; i++) {
    if ((i & 4095) === 4095) interruptPoint();
    const a = allocations[i];
    const kind = allocationKind(a.label);
    const label = a.label ?? (a.contiguous ? "allocation" : "block of a non-contiguous allocation");
    if (a.contiguous) buddy.push({ start: a.start, end: a.start + a.size, kind, label });
    else {
      for (const b of a.blocks) buddy.push({ start: b.start, end: b.start + b.size, kind, label });
    }
  }
  buddy.sort((a, b) => a.start - b.start);
  const pramin: VramItem[] = [];
  const base = gpu.pramin.base;
  if (base >= 0) {
    pramin.push({
      start: base,
      end: Math.min(size, base + 2 ** 20),
      kind: "pramin",
      label: "PRAMIN window (BAR0 + 0x700000)",
    });
  }
  return {
    title: `${gpu.chip.name} · ${gpu.device.spec}`,
    size,
    usable: { start: gpu.vram.usable.start, end: gpu.vram.usable.end },
    lanes: [
      { name: "firmware", about: "regions firmware owns (VRAM layout)", items: firmware },
      {
        name: "buddy",
        about: "novamm's allocations: tables, instance blocks, buffers",
        items: buddy,
      },
      { name: "PRAMIN", about: "the 1 MiB BAR0 window", items: pramin },
      bar1Lane(gpu),
    ],
  };
}

function bar1Lane(gpu: Gpu): VramLane {
  try {
    return { name: "BAR1", about: "what the CPU reaches through BAR1", items: bar1Items(gpu) };
  } catch (e) {
    // A read-only session that cannot read the bound tables: the rest of the map still shows.
    if (!(e instanceof NovaError)) throw e;
    return { name: "BAR1", about: `BAR1 not drawn: ${e.message}`, items: [] };
  }
}

function bar1Items(gpu: Gpu): VramItem[] {
  const bar1Size = gpu.device.bar1.size;
  const bar1 = gpu.bar1;
  if (bar1.mode === "physical") {
    const end = Math.min(gpu.vram.size, bar1Size);
    return [{
      start: 0,
      end,
      kind: "bar1",
      label: "BAR1 physical: offset = VRAM address",
    }];
  }
  const vmm = bar1.boundVmm;
  if (vmm === null) return [];
  return mappedExtents(vmm, "BAR1");
}

/** The VRAM pages behind every mapping of `vmm`, one item per physical extent, by address. */
export function mappedExtents(vmm: Vmm, what: string): VramItem[] {
  if (!(vmm instanceof Vmm)) fail("EINVAL", "mappedExtents takes a Vmm");
  const out: VramItem[] = [];
  const maps = vmm.mappings();
  for (let i = 0; i < maps.length; i++) {
    if ((i & 1023) === 1023) interruptPoint();
    const m = maps[i];
    let va = Number(m.va);
    for (const x of m.extents) {
      out.push({
        start: x.pa,
        end: x.pa + x.size,
        kind: "bar1",
        label: `${what} VA ${hexFast(va)}`,
      });
      va += x.size;
    }
  }
  return out.sort((a, b) => a.start - b.start);
}
