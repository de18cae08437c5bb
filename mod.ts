/**
 * novamm: NVIDIA GPU memory management from user space.
 *
 * @example
 * ```ts
 * import { openGpu } from "./mod.ts";
 * const gpu = await openGpu({ device: "sim:gh100" });
 * using w = gpu.pramin.window();
 * w.write32(0x1000, 0xdeadbeef);
 * console.log(w.read32(0x1000).toString(16));
 * ```
 *
 * @module
 */

export { type ErrorCode, hex, NovaError } from "./hw/errors.ts";
export { type Architecture, type ChipInfo, decodeChip } from "./hw/chip.ts";
export { Mmio, type MmioAccess, type MmioBackend, type MmioCounters } from "./hw/mmio.ts";
export {
  parseTrace,
  type ReplayResult,
  replayTrace,
  type Trace,
  type TraceEntry,
  TraceWriter,
} from "./hw/trace.ts";
export { type Device, openDevice, type OpenDeviceOptions } from "./hw/device.ts";
export { listGpus, type PciFunction } from "./hw/pci.ts";
export { SIM_PROFILES } from "./hw/sim/profiles.ts";
export { Gpu, type GpuStats, openGpu, type OpenGpuOptions, type VramInfo } from "./mm/gpu.ts";
export { Pramin, PraminView, PraminWindow } from "./mm/pramin.ts";
export { type FlushResult, Tlb } from "./mm/tlb.ts";
export { type Allocation, BuddyAllocator, type BuddyStats } from "./mm/buddy.ts";
export { GpuMm } from "./mm/gpu_mm.ts";
export { type MapOptions, Mapping, PreparedMapping, type Translation, Vmm } from "./mm/vmm.ts";
export { BarMapping, BarUser } from "./mm/bar_user.ts";
export { mmu, mmuFormat, walk } from "./mm/pagetable/mod.ts";
