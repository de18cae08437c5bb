/**
 * `Gpu`: one open GPU with everything the memory-management code needs —
 * the device's BARs, PRAMIN, the TLB, and (from `gpu_mm.ts`, `bar_user.ts`)
 * the VRAM allocator, address spaces and BAR1.
 *
 * @module
 */

import { hex } from "../hw/errors.ts";
import { type Device, openDevice, type OpenDeviceOptions } from "../hw/device.ts";
import type { ChipInfo } from "../hw/chip.ts";
import type { Mmio } from "../hw/mmio.ts";
import { windowRegister } from "../hw/regs.ts";
import type { SimGpu } from "../hw/sim/gpu.ts";
import { Pramin } from "./pramin.ts";
import { Tlb } from "./tlb.ts";

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

  constructor(device: Device) {
    this.device = device;
    this.chip = device.chip;
    this.bar0 = device.bar0;
    this.pramin = new Pramin(device.bar0, {
      register: windowRegister(device.chip.architecture),
      vramSize: device.vramSize,
    });
    this.tlb = new Tlb(device.bar0, { vramSize: device.vramSize });
    this.vram = {
      size: device.vramSize,
      usable: device.firmwareUsable ?? { start: 0, end: device.vramSize },
    };
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

  /** Restores the PRAMIN window if one is open, then unmaps the BARs. */
  close(): void {
    if (this.device.bar0.closed) return;
    if (!this.device.readOnly) this.pramin.close();
    this.device.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }

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
