/**
 * The in-memory model of a snapshot: what a card (or a simulator, or another
 * driver's MMIO trace) held at one moment, enough to reopen it offline as a
 * device. The file format (`hw/snap/format.ts`) serialises exactly this; the
 * mmiotrace importer (`hw/snap/mmiotrace.ts`) produces it; `snap:FILE`
 * devices answer from it.
 *
 * A snapshot answers only what was recorded: a register that is not in
 * {@linkcode Snapshot.registers} and VRAM outside {@linkcode Snapshot.vram}
 * are unknown, never made up.
 *
 * @module
 */

/** The format name written in every snapshot file's header. */
export const SNAPSHOT_FORMAT = "novamm-snapshot";

/** The current snapshot format version; readers refuse newer ones. */
export const SNAPSHOT_VERSION = 1;

/** Where a snapshot came from. */
export interface SnapshotSource {
  /** `sim` (the simulator), `pci` (a card), `mmiotrace` (imported), `snap` (a re-snapshot). */
  kind: "sim" | "pci" | "mmiotrace" | "snap";
  /** The device spec or file it was taken from (`sim:ga102`, `0000:65:00.0`, a trace path). */
  spec: string;
  /** ISO-8601 time it was taken. */
  takenAt: string;
  /** The tool and version that wrote it (`novamm 0.1.0`). */
  tool: string;
  /** Free text: why, by whom. */
  comment?: string;
}

/** Chip identity. */
export interface SnapshotChip {
  /** NV_PMC_BOOT_0 as read. */
  boot0: number;
  /** NV_PMC_BOOT_42 as read. */
  boot42: number;
  /** PCI identity when known (a card or a trace that named it). */
  pci: {
    bdf: string | null;
    vendor: number;
    device: number;
    subsystemVendor: number | null;
    subsystemDevice: number | null;
  } | null;
  /** BAR sizes in bytes (BAR0, BAR1, and BAR2/3 where present). */
  barSizes: { bar0: number; bar1: number; bar2?: number };
  /** VRAM bytes as the FB size register reported. */
  vramSize: number;
}

/** A captured VRAM range. Ranges are sorted by `addr` and never overlap. */
export interface SnapshotVramRange {
  /** VRAM byte address (4-byte aligned). */
  addr: number;
  /** The bytes (length a multiple of 4). */
  data: Uint8Array;
  /** Why it was captured: `instance block of BAR1`, `PD3 of vmm0`, `user`, `trace`... */
  why: string;
}

/** An address space the snapshot knows the root of. */
export interface SnapshotAddressSpace {
  /** `bar1`, `bar2`, `vmm0`, a user's label. */
  name: string;
  /** VRAM address of the top-level page directory. */
  pdb: number;
  /** Page-table format. */
  mmuVersion: 2 | 3;
  /** VRAM address of the instance block that points at it, when there is one. */
  instanceBlock: number | null;
}

/** Everything a snapshot holds. */
export interface Snapshot {
  /** Always {@linkcode SNAPSHOT_FORMAT}. */
  format: typeof SNAPSHOT_FORMAT;
  /** Format version. */
  version: number;
  /** Where and when it was taken. */
  source: SnapshotSource;
  /** Chip identity. */
  chip: SnapshotChip;
  /**
   * Card state as novamm saw it (GFW status, BAR1 mode and binding, VRAM
   * layout, the PRAMIN window): JSON-safe, for people and reports; a reopened
   * device derives its behaviour from {@linkcode registers}, not from this.
   */
  state: Record<string, unknown>;
  /** BAR0 register offset → 32-bit value, for every register captured. */
  registers: Map<number, number>;
  /** Captured VRAM. */
  vram: SnapshotVramRange[];
  /** Address spaces whose roots are known. */
  addressSpaces: SnapshotAddressSpace[];
}
