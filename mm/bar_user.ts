/**
 * BAR1 (nova-core's BarUser): the BAR1 address space built by firmware,
 * mappings of VRAM into it, and CPU access to them through the BAR1 aperture
 * (the mmap of `resource1` on a card; the translating aperture on the
 * simulator).
 *
 * The BAR1 page directory is found the way the hardware finds it (facts §7.4):
 * the BAR1 instance-block pointer register (NV_PBUS_BAR1_BLOCK before Hopper,
 * NV_VIRTUAL_FUNCTION_PRIV_FUNC_BAR1_BLOCK_{LOW,HIGH}_ADDR from Hopper on),
 * then PAGE_DIR_BASE at byte 0x200 of the instance block, read through PRAMIN.
 *
 * @module
 */

import { describe, fail, hex } from "../hw/errors.ts";
import type { Mmio } from "../hw/mmio.ts";
import {
  BAR1_BLOCK,
  BAR1_BLOCK_LOW,
  getField,
  NV_PBUS_BAR1_BLOCK,
  NV_RAMIN_PAGE_DIR_BASE_HI,
  NV_RAMIN_PAGE_DIR_BASE_LO,
  NV_VIRTUAL_FUNCTION_PRIV_FUNC_BAR1_BLOCK_HIGH_ADDR,
  NV_VIRTUAL_FUNCTION_PRIV_FUNC_BAR1_BLOCK_LOW_ADDR,
  RAMIN_PDB,
} from "../hw/regs.ts";
import { readRegister } from "../hw/device.ts";
import { Allocation } from "./buddy.ts";
import type { GpuMm } from "./gpu_mm.ts";
import type { Pramin } from "./pramin.ts";
import type { Mapping, Vmm } from "./vmm.ts";
import { u64 } from "./types.ts";

/** Where BAR1's tables are. */
export interface Bar1Binding {
  /** VRAM address of the BAR1 instance block. */
  instanceBlock: number;
  /** VRAM address of the BAR1 root page directory. */
  pdb: number;
}

/** Reads the BAR1 binding from the registers and the instance block; null if BAR1 is not virtual. */
export function readBar1Binding(
  bar0: Mmio,
  pramin: Pramin,
  options: { mmuVersion: 2 | 3 },
): Bar1Binding | null {
  let inst: number;
  if (options.mmuVersion === 2) {
    const v = readRegister(bar0, NV_PBUS_BAR1_BLOCK, "NV_PBUS_BAR1_BLOCK");
    if (getField(v, BAR1_BLOCK.MODE) !== 1 || getField(v, BAR1_BLOCK.TARGET) !== 0) return null;
    inst = getField(v, BAR1_BLOCK.PTR) * 4096;
  } else {
    const lo = readRegister(
      bar0,
      NV_VIRTUAL_FUNCTION_PRIV_FUNC_BAR1_BLOCK_LOW_ADDR,
      "BAR1_BLOCK_LOW_ADDR",
    );
    if (getField(lo, BAR1_BLOCK_LOW.MODE) !== 1 || getField(lo, BAR1_BLOCK_LOW.TARGET) !== 0) {
      return null;
    }
    const hi = readRegister(
      bar0,
      NV_VIRTUAL_FUNCTION_PRIV_FUNC_BAR1_BLOCK_HIGH_ADDR,
      "BAR1_BLOCK_HIGH_ADDR",
    );
    inst = getField(lo, BAR1_BLOCK_LOW.PTR) * 4096 + hi * 2 ** 32;
  }
  using w = pramin.borrow();
  const word = w.read32(inst + NV_RAMIN_PAGE_DIR_BASE_LO);
  if (getField(word, RAMIN_PDB.TARGET) !== 0) return null;
  // novamm's formats are the v2/v3 page tables with 64 KiB big pages: refuse
  // anything else rather than map with the wrong layout.
  if (getField(word, RAMIN_PDB.BIG_PAGE_SIZE) !== 1) {
    fail(
      "ENOTSUP",
      `the BAR1 instance block at ${hex(inst)} selects 128 KiB big pages (PAGE_DIR_BASE ${
        hex(word, 8)
      }); only 64 KiB is supported`,
    );
  }
  if (options.mmuVersion === 2 && getField(word, RAMIN_PDB.USE_VER2_PT_FORMAT) !== 1) {
    fail(
      "ENOTSUP",
      `the BAR1 instance block at ${hex(inst)} does not use the version 2 page-table format`,
    );
  }
  const pdb = getField(word, RAMIN_PDB.LO) * 4096 +
    w.read32(inst + NV_RAMIN_PAGE_DIR_BASE_HI) * 2 ** 32;
  return { instanceBlock: inst, pdb };
}

/** What {@linkcode BarUser.map} takes: an allocation, a VRAM range, or 4 KiB frame numbers. */
export type BarTarget = Allocation | { start: number; size: number } | ArrayLike<number>;

/**
 * A VRAM range mapped into BAR1, accessed by the CPU through the BAR1
 * aperture. Offsets are bytes from the start of the mapping.
 */
export class BarMapping {
  /** The underlying address-space mapping. */
  readonly mapping: Mapping;
  readonly #bar1: Mmio;

  /** Made by {@linkcode BarUser.map}. */
  constructor(mapping: Mapping, bar1: Mmio) {
    this.mapping = mapping;
    this.#bar1 = bar1;
  }

  /** BAR1 virtual address = BAR1 byte offset of the first byte. */
  get va(): bigint {
    return this.mapping.va;
  }

  /** Bytes mapped. */
  get size(): number {
    return this.mapping.size;
  }

  #at(offset: number, len: number): number {
    if (!this.mapping.live) fail("ENODEV", `BAR1 mapping ${hex(this.va)} has been unmapped`);
    if (!Number.isSafeInteger(offset) || offset < 0 || !Number.isSafeInteger(len) || len < 0) {
      fail(
        "EINVAL",
        `offset ${describe(offset)} / length ${describe(len)} must be non-negative integers`,
      );
    }
    if (offset + len > this.size) {
      fail(
        "EINVAL",
        `offset ${hex(offset)} + ${hex(len)} is past the end of the ${
          hex(this.size)
        }-byte BAR1 mapping`,
      );
    }
    return Number(this.va) + offset;
  }

  #writable(): void {
    if (!this.mapping.writable) {
      fail("EPERM", `BAR1 mapping ${hex(this.va)} is read-only`, "map it with { writable: true }");
    }
  }

  /** 32-bit read at `offset`. */
  read32(offset: number): number {
    return this.#bar1.read32(this.#at(offset, 4));
  }

  /** 32-bit write at `offset`. */
  write32(offset: number, value: number): void {
    this.#writable();
    this.#bar1.write32(this.#at(offset, 4), value);
  }

  /** 64-bit read as two 32-bit reads, low half first. */
  read64(offset: number): bigint {
    const at = this.#at(offset, 8);
    const lo = this.#bar1.read32(at);
    return (BigInt(this.#bar1.read32(at + 4)) << 32n) | BigInt(lo);
  }

  /** 64-bit write as two 32-bit writes, low half first. */
  write64(offset: number, value: bigint | number): void {
    this.#writable();
    const v = u64(value, "value");
    const at = this.#at(offset, 8);
    this.#bar1.write32(at, Number(v & 0xffffffffn));
    this.#bar1.write32(at + 4, Number(v >> 32n));
  }

  /** Reads bytes (32-bit accesses; 8-bit at unaligned edges). */
  readBytes(offset: number, len: number): Uint8Array {
    const at = this.#at(offset, len);
    const out = new Uint8Array(len);
    const dv = new DataView(out.buffer);
    let i = 0;
    for (; i < len && (at + i) % 4 !== 0; i++) out[i] = this.#bar1.read8(at + i);
    for (; i + 4 <= len; i += 4) dv.setUint32(i, this.#bar1.read32(at + i), true);
    for (; i < len; i++) out[i] = this.#bar1.read8(at + i);
    return out;
  }

  /** Writes bytes (32-bit accesses; 8-bit at unaligned edges). */
  writeBytes(offset: number, bytes: Uint8Array): void {
    this.#writable();
    const at = this.#at(offset, bytes.length);
    const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const len = bytes.length;
    let i = 0;
    for (; i < len && (at + i) % 4 !== 0; i++) this.#bar1.write8(at + i, bytes[i]);
    for (; i + 4 <= len; i += 4) this.#bar1.write32(at + i, dv.getUint32(i, true));
    for (; i < len; i++) this.#bar1.write8(at + i, bytes[i]);
  }

  /** Unmaps from BAR1 (PTEs invalidated, TLB flushed, VA freed). */
  unmap(): void {
    this.mapping.unmap();
  }

  /** Releases it at the end of a `using` scope (same as closing it explicitly). */
  [Symbol.dispose](): void {
    this.unmap();
  }

  /** The one-line summary the REPL and `Deno.inspect` print. */
  [Symbol.for("Deno.customInspect")](): string {
    return `BarMapping BAR1 ${hex(this.va)} +${hex(this.size)} ${
      this.mapping.writable ? "rw" : "ro"
    }${this.mapping.live ? "" : " (unmapped)"}`;
  }
}

/**
 * BAR1 of one GPU.
 *
 * @example
 * ```ts
 * const a = gpu.mm.buddy.alloc(4 << 20);
 * using m = gpu.bar1.map(a, { writable: true });
 * m.write32(0, 0xcafebabe);
 * gpu.pramin.read32(a.start); // 0xcafebabe
 * ```
 */
export class BarUser {
  /** The BAR1 address space (firmware's tables, scanned). */
  readonly vmm: Vmm;
  /** BAR1 instance block and root directory. */
  readonly binding: Bar1Binding;
  /** BAR1 aperture bytes (= the VA size of the address space). */
  readonly size: number;
  readonly #bar1: Mmio;

  /** Constructs it (see the class documentation for who does and how). */
  constructor(mm: GpuMm, bar1: Mmio, binding: Bar1Binding) {
    this.#bar1 = bar1;
    this.binding = binding;
    this.size = bar1.size;
    this.vmm = mm.openVmm({ pdb: binding.pdb, vaSize: BigInt(bar1.size), name: "bar1" });
  }

  /** BAR1 root page directory. */
  get pdb(): number {
    return this.binding.pdb;
  }

  /** Maps VRAM into BAR1 and returns CPU access to it (use with `using`). */
  map(
    target: BarTarget,
    options: { writable?: boolean; va?: bigint | number; pageSize?: number } = {},
  ): BarMapping {
    const pfns = toPfns(target);
    const size = pfns.length * 4096;
    if (size > this.size) {
      fail("ENOSPC", `cannot map ${hex(size)} bytes into the ${hex(this.size)}-byte BAR1 aperture`);
    }
    const m = this.vmm.mapPages(pfns, { ...options, label: "bar1" });
    if (target instanceof Allocation) {
      // The pages must not go back to the allocator while BAR1 still points at them.
      m.whenUnmapped(target.pin(`the BAR1 mapping at ${hex(m.va)}`));
    }
    return new BarMapping(m, this.#bar1);
  }

  /** The one-line summary the REPL and `Deno.inspect` print. */
  [Symbol.for("Deno.customInspect")](): string {
    return `BAR1 ${hex(this.size)} bytes, PDB ${hex(this.pdb)}, instance block ${
      hex(this.binding.instanceBlock)
    }, ${this.vmm.mappings().length} mappings`;
  }
}

function toPfns(target: BarTarget): number[] {
  const pages = (start: number, size: number, out: number[]) => {
    if (
      !Number.isSafeInteger(start) || start % 4096 !== 0 || !Number.isSafeInteger(size) ||
      size <= 0 || size % 4096 !== 0
    ) {
      fail(
        "EINVAL",
        `VRAM range ${describe(start)} +${describe(size)} must be 4 KiB aligned and non-empty`,
      );
    }
    for (let a = start; a < start + size; a += 4096) out.push(a / 4096);
  };
  const out: number[] = [];
  if (target instanceof Allocation) {
    const a = target;
    if (!a.live) fail("EINVAL", `${String(a)} has been freed`);
    if (a.contiguous) pages(a.start, a.size, out);
    else for (const b of a.blocks) pages(b.start, b.size, out);
    return out;
  }
  if (target !== null && typeof target === "object" && "start" in target && "size" in target) {
    const r = target as { start: number; size: number };
    pages(r.start, r.size, out);
    return out;
  }
  return Array.from(target as ArrayLike<number>);
}
