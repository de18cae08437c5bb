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
export {
  Mmio,
  type MmioAccess,
  type MmioBackend,
  type MmioCounters,
  type MmioGuard,
  type MmioTracer,
  type Width,
} from "./hw/mmio.ts";
export type { Field, GfwBootRegisters, WindowRegister } from "./hw/regs.ts";
export { checkOptions, checkUint, type OptionKind } from "./hw/validate.ts";
export {
  type KnownRegister,
  knownRegisters,
  readRegisters,
  type RegisterReading,
} from "./hw/reg_dump.ts";
export {
  type FileReplayResult,
  parseTrace,
  readLines,
  type ReplayResult,
  replayTrace,
  replayTraceFile,
  type Trace,
  type TraceDivergence,
  type TraceEntry,
  type TraceFooter,
  type TraceHeader,
  type TracePci,
  tracePciOf,
  TraceWriter,
  type TraceWriterOptions,
} from "./hw/trace.ts";
export {
  type CardLock,
  type Device,
  type GfwStatus,
  lockCard,
  type MemClearStatus,
  openDevice,
  type OpenDeviceOptions,
} from "./hw/device.ts";
export {
  type BarFirewallOptions,
  type BarFirewallPoll,
  type BarFirewallResult,
  type ConfigFunction,
  findNvidiaDvsec,
  isBlackwellDeviceId,
  waitBarFirewall,
} from "./hw/pci_config.ts";
export {
  type Bar1BindOps,
  type BootWaits,
  type ChipFamily,
  chipFamily,
  FAMILIES,
  type FbFlushOps,
  type InstanceBlockRules,
  instanceBlockWords,
  type InvalidateRules,
  type LayoutRegisters,
} from "./hw/family/mod.ts";
export {
  type GpuScan,
  listGpus,
  type PciBar,
  type PciFunction,
  scanGpus,
  type SysfsOptions,
} from "./hw/pci.ts";
export type {
  SimAlias,
  SimBootInfo,
  SimDeadRegion,
  SimEvent,
  SimFlush,
  SimGpu,
  SimKnobs,
  SimRegion,
  SimStuckBits,
} from "./hw/sim/gpu.ts";
export type { SimFirmwareInfo } from "./hw/sim/firmware.ts";
export type {
  SimAccess,
  SimAperture,
  SimArchitecture,
  SimFault,
  SimMmu,
  SimTlbStats,
  SimTranslation,
  SimWalkFault,
} from "./hw/sim/mmu.ts";
export type {
  PostedWrites,
  SparseMemory,
  VramAlias,
  VramBackground,
  VramDeadRegion,
  VramFaults,
  VramStuckBits,
} from "./hw/sim/vram.ts";
export {
  SIM_CONFLICTS,
  SIM_PROFILES,
  SIM_STATES,
  type SimCardState,
  type SimConflicts,
  type SimProfile,
} from "./hw/sim/profiles.ts";
export { Gpu, type GpuStats, openGpu, type OpenGpuOptions, type VramInfo } from "./mm/gpu.ts";
export {
  Pramin,
  PraminView,
  PraminWindow,
  VRAM_IMAGE_HEADER_BYTES,
  VRAM_IMAGE_MAGIC,
  VRAM_IMAGE_VERSION,
  type VramCompareResult,
  type VramImageHeader,
  type VramImageResult,
  type VramWordDifference,
} from "./mm/pramin.ts";
export type {
  InstanceBlockDifference,
  VerifyDifference,
  VerifyOptions,
  VerifyReport,
} from "./mm/pagetable/verify.ts";
export { fbFlush, type FlushOptions, type FlushResult, Tlb } from "./mm/tlb.ts";
export { type LayoutOptions, readVramLayout, usableFrom, type VramRegion } from "./mm/layout.ts";
export { BarPhysical } from "./mm/bar_physical.ts";
export { type OwnedRange, VramPolicy, type VramPolicySources } from "./mm/vram_policy.ts";
export {
  Allocation,
  type AllocOptions,
  type Block,
  BuddyAllocator,
  type BuddyStats,
} from "./mm/buddy.ts";
export { GpuMm } from "./mm/gpu_mm.ts";
export {
  formatMemtestReport,
  memtest,
  MEMTEST_PATTERNS,
  MEMTEST_QUICK,
  type MemtestFailure,
  type MemtestHost,
  type MemtestOptions,
  type MemtestPathUse,
  type MemtestPattern,
  type MemtestProgress,
  type MemtestRegion,
  type MemtestResult,
  type MemtestTarget,
  pcieBandwidth,
  type PcieLink,
  readPcieLink,
} from "./mm/memtest.ts";
export {
  decode as decodeRegister,
  type DecodedField,
  type DecodedValue,
  describeRegister,
  formatDecoded,
  loadedRegisterDb,
  loadRegisterDb,
  lookup as lookupRegister,
  registerByName,
  type RegisterDb,
  type RegisterDbMeta,
  type RegisterDef,
  type RegisterFacts,
  registerFacts,
  type RegisterField,
  type RegisterHit,
  type RegisterValue as RegisterNamedValue,
  sideEffect,
  sideEffectFree,
  suggestRegister,
} from "./hw/regdb/mod.ts";
export { describePriError } from "./hw/pri_error.ts";
export type { Foreign } from "./mm/pagetable/dump.ts";
export {
  type DumpNode,
  type DumpOptions,
  type Extent,
  type MapOptions,
  Mapping,
  PreparedMapping,
  type Translation,
  Vmm,
} from "./mm/vmm.ts";
export { type VaRange, VaRanges, VaRangesView } from "./mm/va_ranges.ts";
export {
  type Bar1Binding,
  type Bar1BindState,
  type Bar1Mode,
  type BarMapOptions,
  BarMapping,
  type BarTarget,
  BarUser,
  readBar1Bind,
  restoreBar1Bind,
} from "./mm/bar_user.ts";
export type {
  DecodedDualHalf,
  DecodedDualPde,
  DecodedPde,
  DecodedPte,
  // The one entry-codec type under its older name (with type arguments: one version's codec).
  EntryCodec as EntryCodecOf,
} from "./mm/pagetable/codec.ts";
export type {
  AddressLayout,
  AddressSpec,
  ApertureSpec,
  EntryCodec,
  EntryTable,
  EntryTables,
  FieldCondition,
  FieldSpec,
  FlagSpec,
  GroupSpec,
  LevelFormat,
  PdeAperture,
  PteAperture,
  PteInfo,
  UintSpec,
  V2DualHalf,
  V2DualHalfFields,
  V2DualPde,
  V2DualPdeFields,
  V2Pde,
  V2PdeFields,
  V2Pte,
  V2PteFields,
  V3DualHalf,
  V3DualHalfFields,
  V3DualPde,
  V3DualPdeFields,
  V3Pde,
  V3PdeFields,
  V3Pte,
  V3PteFields,
  WalkMapped,
  WalkStep,
  WalkStopReason,
  WalkUnmapped,
} from "./mm/pagetable/mod.ts";
export {
  type EntryReader,
  mmu,
  type MmuFormat,
  mmuFormat,
  type MmuVersion,
  type V2Codec,
  type V3Codec,
  walk,
  type WalkOptions,
  type WalkResult,
} from "./mm/pagetable/mod.ts";
export {
  crc32,
  decodeSnapshot,
  type DecodeSnapshotOptions,
  encodeSnapshot,
  readSnapshotFile,
  writeSnapshotFile,
} from "./hw/snap/format.ts";
export {
  type Snapshot,
  SNAPSHOT_FORMAT,
  SNAPSHOT_VERSION,
  type SnapshotAddressSpace,
  type SnapshotChip,
  type SnapshotSource,
  type SnapshotVramRange,
} from "./hw/snap/types.ts";
export { type ParsedSnapSpec, parseSnapSpec } from "./hw/snap/device.ts";
export { describeSnapshot, type SnapshotOptions, takeSnapshot } from "./mm/snapshot.ts";
export {
  importMmiotrace,
  importMmiotraceFile,
  type MmiotraceBars,
  type MmiotraceImport,
  type MmiotraceImportOptions,
  type SnapshotTable,
  snapshotTables,
} from "./hw/snap/mmiotrace.ts";
export {
  addressSpaceHtml,
  type AddressSpaceOptions,
  display,
  inJupyter,
  installJupyterDisplay,
  JUPYTER_DISPLAY,
  type MimeBundle,
  registerHtml,
  reportHtml,
  type ReportOptions,
  show,
  type ShowOptions,
  type View,
  view,
  type ViewOptions,
  type VramItem,
  type VramKind,
  type VramLane,
  vramMapHtml,
  type VramMapOptions,
  type VramModel,
  vramModel,
  walkHtml,
} from "./views/mod.ts";
