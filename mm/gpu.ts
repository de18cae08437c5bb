/**
 * `Gpu`: one open GPU with everything the memory-management code needs —
 * the device's BARs, PRAMIN, the TLB, and (from `gpu_mm.ts`, `bar_user.ts`)
 * the VRAM allocator, address spaces and BAR1.
 *
 * @module
 */

import { fail, hex } from "../hw/errors.ts";
import { type Device, openDevice, type OpenDeviceOptions } from "../hw/device.ts";
import type { ChipInfo } from "../hw/chip.ts";
import type { Mmio } from "../hw/mmio.ts";
import { windowRegister } from "../hw/regs.ts";
import type { SimGpu } from "../hw/sim/gpu.ts";
import { Pramin } from "./pramin.ts";
import { Tlb } from "./tlb.ts";
import { GpuMm } from "./gpu_mm.ts";
import { type Bar1Binding, BarUser, readBar1Binding } from "./bar_user.ts";
import { type MmuFormat, mmuFormat } from "./pagetable/format.ts";
import { walk, type WalkResult } from "./pagetable/walk.ts";

/** VRAM as the driver sees it. */
export interface VramInfo {
  /** Bytes of VRAM. */
  size: number;
  /** The region firmware leaves to drivers: [start, end). */
  usable: { start: number; end: number };
}

/** MMIO counters since open (or since {@linkcode Gpu.resetStats}). */
export interface GpuStats {
  /** MMIO loads. */
  mmioReads: number;
  /** MMIO stores. */
  mmioWrites: number;
  /** PRAMIN window moves. */
  windowMoves: number;
}

/** Options for {@linkcode openGpu}. */
export type OpenGpuOptions = OpenDeviceOptions;

/**
 * One open GPU.
 *
 * @example
 * ```ts
 * const gpu = await openGpu({ device: "sim:gh100" });
 * gpu.chip.name; // "GH100"
 * gpu.close();
 * ```
 */
export class Gpu {
  /** The device (BARs, chip, simulator or PCI function). */
  readonly device: Device;
  /** Chip identity. */
  readonly chip: ChipInfo;
  /** VRAM size and usable region. */
  readonly vram: VramInfo;
  /** BAR0 (registers + PRAMIN aperture): `gpu.bar0.read32(0x1700)`. */
  readonly bar0: Mmio;
  /** PRAMIN access to VRAM. */
  readonly pramin: Pramin;
  /** TLB invalidation. */
  readonly tlb: Tlb;
  /** Page-table format of this chip. */
  readonly format: MmuFormat;
  #mm: GpuMm | null = null;
  #bar1: BarUser | null = null;
  #binding: Bar1Binding | null | undefined = undefined;

  /** Constructs it (see the class documentation for who does and how). */
  constructor(device: Device) {
    this.device = device;
    this.chip = device.chip;
    this.bar0 = device.bar0;
    this.pramin = new Pramin(device.bar0, {
      register: windowRegister(device.chip.architecture),
      vramSize: device.vramSize,
    });
    this.tlb = new Tlb(device.bar0, { vramSize: device.vramSize });
    this.format = mmuFormat({
      version: device.chip.mmuVersion,
      architecture: device.chip.architecture,
    });
    this.vram = {
      size: device.vramSize,
      usable: device.firmwareUsable ?? this.#guessUsable(),
    };
  }

  /**
   * Without GSP's report (a card opened from user space), keep clear of
   * firmware: the usable region ends below the BAR1 instance block and the
   * top 256 MiB of VRAM, where GSP-RM keeps its reserved memory, and starts
   * at 1 MiB.
   */
  #guessUsable(): { start: number; end: number } {
    const MiB = 2 ** 20;
    let end = this.device.vramSize - 256 * MiB;
    let b: Bar1Binding | null = null;
    try {
      b = this.bar1Binding;
    } catch {
      // Read-only: the window cannot move to the instance block; the 256 MiB margin stands.
      this.#binding = undefined;
    }
    if (b !== null) end = Math.min(end, b.instanceBlock, b.pdb);
    end -= end % (2 * MiB);
    return { start: MiB, end: Math.max(MiB, end) };
  }

  /** Where BAR1's instance block and root directory are (read from the hardware once), or null. */
  get bar1Binding(): Bar1Binding | null {
    if (this.#binding === undefined) {
      this.#binding = readBar1Binding(this.bar0, this.pramin, { mmuVersion: this.chip.mmuVersion });
    }
    return this.#binding;
  }

  /** VRAM allocator, address spaces (created on first use). */
  get mm(): GpuMm {
    if (this.#mm === null) {
      this.#mm = new GpuMm({
        pramin: this.pramin,
        tlb: this.tlb,
        format: this.format,
        vramSize: this.vram.size,
        usable: this.vram.usable,
      });
    }
    return this.#mm;
  }

  /** BAR1: its address space and CPU mappings (created on first use). */
  get bar1(): BarUser {
    if (this.#bar1 === null) {
      const b = this.bar1Binding;
      if (b === null) {
        fail(
          "ENODEV",
          "BAR1 is not in virtual mode (no BAR1 instance block bound): nothing to map into",
        );
      }
      this.#bar1 = new BarUser(this.mm, this.device.bar1, b);
    }
    return this.#bar1;
  }

  /**
   * Walks a GPU VA through the page tables in VRAM (default: BAR1's) and
   * returns every level visited.
   */
  walk(va: bigint | number, options: { pdb?: number } = {}): WalkResult {
    const pdb = options.pdb ?? this.bar1Binding?.pdb;
    if (pdb === undefined) fail("EINVAL", "no PDB given and BAR1 has none");
    using w = this.pramin.borrow();
    return walk(w, { format: this.format, pdb, va, vramSize: this.vram.size });
  }

  /** The simulator behind this GPU, or null on a card. */
  get sim(): SimGpu | null {
    return this.device.sim;
  }

  /** MMIO accesses and window moves since open. */
  stats(): GpuStats {
    const c = this.device.counters;
    return { mmioReads: c.mmioReads, mmioWrites: c.mmioWrites, windowMoves: c.windowMoves };
  }

  /** Zeroes the counters. */
  resetStats(): void {
    const c = this.device.counters;
    c.mmioReads = 0;
    c.mmioWrites = 0;
    c.windowMoves = 0;
  }

  /**
   * Unmaps what this session mapped (BAR1 mappings, address spaces it made),
   * restores the PRAMIN window if one is open, then unmaps the BARs.
   */
  close(): void {
    if (this.device.bar0.closed) return;
    try {
      if (!this.device.readOnly) {
        try {
          for (const v of this.#mm?.vmms() ?? []) this.#mm!.destroyVmm(v);
        } finally {
          this.pramin.close();
        }
      }
    } finally {
      this.device.close();
    }
  }

  /** Releases it at the end of a `using` scope (same as closing it explicitly). */
  [Symbol.dispose](): void {
    this.close();
  }

  /** The one-line summary the REPL and `Deno.inspect` print. */
  [Symbol.for("Deno.customInspect")](): string {
    return `Gpu ${this.device.spec} ${this.chip.name} (${this.chip.architecture}, MMU v${this.chip.mmuVersion}) VRAM ${
      hex(this.vram.size)
    }${this.device.readOnly ? " read-only" : ""}`;
  }
}

/**
 * Opens a GPU: `"sim"` (default, = `sim:ga102`), `"sim:gh100"`, ... or a PCI address.
 *
 * @example
 * ```ts
 * const gpu = await openGpu({ device: "sim:gh100" });
 * using w = gpu.pramin.window();
 * w.write32(0x1000, 0xdeadbeef);
 * ```
 */
export function openGpu(options: OpenGpuOptions = {}): Promise<Gpu> {
  try {
    return Promise.resolve(new Gpu(openDevice(options)));
  } catch (e) {
    return Promise.reject(e);
  }
}
