/**
 * `Gpu`: one open GPU with everything the memory-management code needs —
 * the device's BARs, PRAMIN, the TLB, and (from `gpu_mm.ts`, `bar_user.ts`)
 * the VRAM allocator, address spaces and BAR1.
 *
 * @module
 */

import { fail, formatSize, hex, NovaError } from "../hw/errors.ts";
import { checkOptions } from "../hw/validate.ts";
import { checkTimeout } from "../hw/poll.ts";
import {
  type Device,
  openDevice,
  type OpenDeviceOptions,
  parseSimSpec,
  simProfileChipId,
} from "../hw/device.ts";
import { expectRegisterDb, loadRegisterDb } from "../hw/regdb/mod.ts";
import type { ChipInfo } from "../hw/chip.ts";
import { Mmio } from "../hw/mmio.ts";
import { gpuLost, readValid, windowRegister } from "../hw/regs.ts";
import { installGuard } from "../hw/mmio.ts";
import { type ChipFamily, chipFamily } from "../hw/family/mod.ts";
import type { SimGpu } from "../hw/sim/gpu.ts";
import { Pramin } from "./pramin.ts";
import { Tlb } from "./tlb.ts";
import type { GpuMm } from "./gpu_mm.ts";
import type { Bar1BindState, BarUser } from "./bar_user.ts";
import { type Bar1Binding, readInstanceBlock } from "./bar1_binding.ts";
import { usableFrom, vramLayout, type VramRegion } from "./layout.ts";
import { type OwnedRange, VramPolicy } from "./vram_policy.ts";
import { type MmuFormat, mmuFormat } from "./pagetable/format.ts";
import { walk, type WalkResult } from "./pagetable/walk.ts";
import type { Vmm } from "./vmm.ts";
import type { SnapshotOptions } from "./snapshot.ts";
import type { Snapshot } from "../hw/snap/types.ts";
import { parseSnapSpec } from "../hw/snap/device.ts";
import { decodeChip } from "../hw/chip.ts";

/**
 * The code behind `gpu.mm`, `gpu.bar1` and `gpu.snapshot()`: the allocator, address spaces,
 * page-table engine, BAR1 and snapshots. It loads apart from the rest of this module (see
 * {@linkcode loadGpuModules}) so that an open GPU can be shown before it has loaded.
 */
interface GpuModules {
  GpuMm: typeof import("./gpu_mm.ts").GpuMm;
  BarUser: typeof import("./bar_user.ts").BarUser;
  TEARDOWN: typeof import("./vmm.ts").TEARDOWN;
  snapshotToFile: typeof import("./snapshot.ts").snapshotToFile;
}
let modules: GpuModules | null = null;
let loadingModules: Promise<void> | null = null;
/**
 * Chips whose register database {@linkcode openGpuEarly} left for {@linkcode loadGpuModules}
 * (their simulators wait for it).
 */
const pendingDbs = new Set<number>();

/**
 * Loads the code behind `gpu.mm`, `gpu.bar1` and `gpu.snapshot()` (once per thread), and waits
 * for the register databases {@linkcode openGpuEarly} started loading (a simulator answers the
 * registers it does not model from them). {@linkcode openGpu} waits for both; only a GPU
 * opened with `openGpuEarly` needs it called.
 *
 * @example
 * ```ts
 * const gpu = await openGpuEarly({ device: "sim" });
 * gpu.chip.name; // "GA102": registers, PRAMIN and walks work at once
 * await loadGpuModules();
 * gpu.mm.buddy.stats(); // the allocator needs the rest of the code
 * gpu.close();
 * ```
 */
export function loadGpuModules(): Promise<void> {
  // Computed specifiers on purpose: a literal one would have Deno read these modules (and all
  // they import) with this one, before whoever loads this module starts (the REPL's worker,
  // which loads this before its prompt and these after it).
  loadingModules ??= Promise.all([
    import(new URL("./gpu_mm.ts", import.meta.url).href) as Promise<typeof import("./gpu_mm.ts")>,
    import(new URL("./bar_user.ts", import.meta.url).href) as Promise<
      typeof import("./bar_user.ts")
    >,
    import(new URL("./vmm.ts", import.meta.url).href) as Promise<typeof import("./vmm.ts")>,
    import(new URL("./snapshot.ts", import.meta.url).href) as Promise<
      typeof import("./snapshot.ts")
    >,
  ]).then(([mm, bar, vmm, snap]) => {
    modules = {
      GpuMm: mm.GpuMm,
      BarUser: bar.BarUser,
      TEARDOWN: vmm.TEARDOWN,
      snapshotToFile: snap.snapshotToFile,
    };
  });
  const dbs = [...pendingDbs].map((chipId) => loadRegisterDb(chipId).catch(() => {}));
  pendingDbs.clear();
  return Promise.all([loadingModules, ...dbs]).then(() => {});
}

/** The code behind `what`, or EAGAIN while it is still loading (see {@linkcode openGpuEarly}). */
function loaded(what: string): GpuModules {
  if (modules === null) {
    fail(
      "EAGAIN",
      `${what}: novamm's memory-management code has not loaded yet (this GPU was opened with openGpuEarly)`,
      "await loadGpuModules() first (openGpu waits for it)",
    );
  }
  return modules;
}

/** VRAM as the driver sees it. */
export interface VramInfo {
  /** Bytes of VRAM. */
  size: number;
  /** The region left to novamm: [start, end). GSP's report on a `gsp` card, else the largest range no firmware region touches. */
  usable: { start: number; end: number };
  /**
   * Where `usable` comes from: `"GSP report"`, `"layout"`, `"recorded in the snapshot"`,
   * `"layout (BAR1 as the trace first read it)"` (an imported trace reopened), or
   * `"layout (BAR1 as the recorded session first read it)"` (a snapshot that records no
   * usable region, reopened).
   */
  usableSource: string;
  /**
   * Registers the layout wanted and the device could not tell (a `snap:` device that
   * did not record them): `NV_FUSE_STATUS_OPT_DISPLAY (0x820c04): not in the snapshot`.
   */
  unknown: readonly string[];
  /** The regions firmware owns (VGA workspace, MMU lock, WPR2, ...), each `{ name, start, end, source }`. */
  layout: readonly VramRegion[];
  /** Who owns which VRAM now (firmware's regions, novamm's tables): CPU writes there need `{ force: true }`. */
  policy: VramPolicy;
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
export interface OpenGpuOptions extends OpenDeviceOptions {
  /**
   * How long FB flushes, TLB invalidates and BAR1 binds may take before they
   * fail with ETIMEDOUT (default 2000 ms, as nouveau and nova-core; RM allows 4 s).
   */
  pollTimeoutMs?: number;
}

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
  /** The chip family's mechanics: FB flush, BAR1 bind registers, instance-block words, layout registers, boot waits. */
  readonly family: ChipFamily;
  /** The BAR1 bind registers as this session found them (restored by {@linkcode Gpu.close}). */
  readonly bar1AtOpen: Bar1BindState;
  #mm: GpuMm | null = null;
  #bar1: BarUser | null = null;
  /**
   * What the instance block BAR1 was bound to at open names, read once (the binding, or why
   * it could not be read); undefined until first asked.
   */
  #foundBinding: { binding: Bar1Binding | null } | { error: unknown } | undefined;
  /** A bind register was written this session (by novamm or a raw poke). */
  #bindWritten = false;
  readonly #pollTimeoutMs: number;
  /** The PRAMIN window register as found at open (null: it read a PRI error: never written back). */
  readonly #windowAtOpen: number | null;

  /** Constructs it (see the class documentation for who does and how). */
  constructor(device: Device, options: { pollTimeoutMs?: number } = {}) {
    checkOptions(options, { pollTimeoutMs: "number" }, "Gpu options");
    const pollTimeoutMs = checkTimeout(options.pollTimeoutMs ?? 2000, "poll timeout");
    this.#pollTimeoutMs = pollTimeoutMs;
    this.device = device;
    this.chip = device.chip;
    this.bar0 = device.bar0;
    this.pramin = new Pramin(device.bar0, {
      register: windowRegister(device.chip.architecture),
      vramSize: device.vramSize,
      policy: () => this.vram?.policy ?? null,
    });
    this.family = chipFamily(device.chip);
    this.tlb = new Tlb(device.bar0, {
      vramSize: device.vramSize,
      family: this.family,
      timeoutMs: pollTimeoutMs,
    });
    this.format = mmuFormat({
      version: device.chip.mmuVersion,
      architecture: device.chip.architecture,
    });
    // A snapshot answers only what it recorded: the open asks it what it holds before reading.
    const recorded = device.snapshot === null
      ? undefined
      : (offset: number) => device.snapshot!.registers.has(offset);
    this.bar1AtOpen = recorded === undefined
      ? this.family.bar1.read(device.bar0)
      : this.family.bar1.watched.some(recorded)
      ? this.family.bar1.read(recordedOnly(device.bar0, recorded))
      : {
        mode: "virtual",
        instanceBlock: null,
        via: this.family.bar1.kind === "vf"
          ? "NV_VIRTUAL_FUNCTION_PRIV_BAR1_BLOCK"
          : "BAR1_BLOCK_LOW",
        registers: [],
        problem: `none of the BAR1 bind registers (${
          this.family.bar1.watched.map((o) => hex(o)).join(", ")
        }) is in the snapshot: the binding is unknown`,
      };
    // A snapshot's layout comes from the binding its recorded session (or trace) first read:
    // BAR1 tables that session built itself are not firmware's reserved memory.
    const atStart = device.kind === "snap" ? traceStartBinding(device) : undefined;
    const { regions: layout, unknown } = vramLayout(device.bar0, device.chip, {
      vramSize: device.vramSize,
      bootVga: device.bootVga,
      boundInstanceBlock: atStart === undefined ? this.bar1AtOpen.instanceBlock : atStart,
      ...(recorded === undefined ? {} : { recorded }),
    });
    // From open, whatever the state: the BAR1 guard (made on the first BAR1 access), and
    // every write of a bind register followed (the card is the truth about its binding).
    installGuard(device.bar1, (o, l, op) => this.bar1.guardAccess(o, l, op));
    for (const offset of this.family.bar1.watched) {
      device.bar0.watch(offset, () => {
        this.#bindWritten = true;
        this.#bar1?.registersWritten();
      });
    }
    const win = windowRegister(device.chip.architecture);
    this.#windowAtOpen = recorded === undefined || recorded(win.offset)
      ? readValid(device.bar0, win.offset)
      : null;
    const reported = device.firmwareUsable;
    this.vram = {
      size: device.vramSize,
      usable: reported ?? usableFrom(layout, device.vramSize),
      usableSource: reported === null
        ? atStart === undefined
          ? "layout"
          : `layout (BAR1 as the ${recorder(device)} first read it)`
        : device.kind === "snap"
        ? "recorded in the snapshot"
        : "GSP report",
      unknown: Object.freeze(unknown),
      layout: Object.freeze(layout),
      policy: new VramPolicy({
        regions: layout.map((r) => ({ name: r.name, start: r.start, end: r.end })),
        dynamic: () => this.#ownedNow(),
        version: () =>
          (this.#mm?.tablesVersion ?? 0) * 2 ** 20 + (this.#bar1?.instanceBlockVersion ?? 0),
      }),
    };
  }

  /** Where BAR1's instance block and root directory are now, or null (physical mode). */
  get bar1Binding(): Bar1Binding | null {
    if (this.#bar1 === null && this.bar1AtOpen.instanceBlock === null) return null;
    if (this.#bar1 === null && !this.#bindWritten) {
      // The instance block BAR1 was bound to at open names the PDB (as BAR1's code would find
      // it): no need to adopt (scan) its tables, which a snapshot or trace may hold only in
      // part (walks report what is missing).
      const found = this.#bindingAtOpen();
      if ("error" in found) throw found.error;
      return found.binding;
    }
    return this.bar1.binding;
  }

  /**
   * The instance block BAR1 was bound to at open, read through PRAMIN the first time asked (as
   * BAR1's code reads it once when it adopts the binding): walks and dumps make no MMIO for it.
   */
  #bindingAtOpen(): { binding: Bar1Binding | null } | { error: unknown } {
    if (this.#foundBinding === undefined) {
      const inst = this.bar1AtOpen.instanceBlock;
      try {
        this.#foundBinding = {
          binding: inst === null
            ? null
            : readInstanceBlock(this.pramin, inst, { mmuVersion: this.chip.mmuVersion }),
        };
      } catch (error) {
        // Ctrl-C is no answer: asked again, it reads again.
        if (error instanceof NovaError && error.code === "EINTR") return { error };
        this.#foundBinding = { error };
      }
    }
    return this.#foundBinding;
  }

  /**
   * VRAM allocator, address spaces (created on first use). On a read-only
   * device whose usable region is empty (a snapshot that leaves novamm
   * nothing) it has no allocator: existing address spaces open, walk, dump and
   * verify (`gpu.mm.openVmm({ pdb, vaSize })`), every allocation fails EPERM.
   * A writable device with no usable VRAM refuses (ENOSPC).
   */
  get mm(): GpuMm {
    if (this.#mm === null) {
      const { start, end } = this.vram.usable;
      let noAllocator: string | undefined;
      if (end <= start) {
        const why =
          `the layout (${this.vram.usableSource}) leaves novamm no usable VRAM on ${this.device.spec} (${
            this.vram.layout.map((r) => `${r.name} [${hex(r.start)}, ${hex(r.end)})`).join(", ")
          })`;
        if (!this.device.readOnly) {
          fail(
            "ENOSPC",
            `${why}, so there is no allocator`,
            this.device.kind === "snap"
              ? "walks need none: gpu.walk(va) or gpu.walk(va, { pdb }) read the recorded tables"
              : undefined,
          );
        }
        noAllocator = `${why} and the device is read-only`;
      }
      this.#mm = new (loaded("gpu.mm").GpuMm)({
        pramin: this.pramin,
        tlb: this.tlb,
        format: this.format,
        vramSize: this.vram.size,
        usable: this.vram.usable,
        memtestHost: () => this,
        firmwareTable: (addr, pdb) => this.#firmwareTable(addr, pdb),
        ...(noAllocator === undefined ? {} : { noAllocator }),
      });
    }
    return this.#mm;
  }

  /**
   * Whether a page table novamm did not make this session is firmware's: it
   * lies in a region of the layout or outside the usable region (firmware's
   * reserved memory; for a snapshot, outside the region the recorded
   * session allocated from), or, on a card, it is in the tree of the BAR1
   * binding firmware had at open (adopted, never made by novamm). Anything
   * else (a reopened snapshot's own tables, another tool's in usable VRAM)
   * is merely not this session's.
   */
  #firmwareTable(addr: number, pdb: number): boolean {
    const { start, end } = this.vram.usable;
    if (addr < start || addr >= end) return true;
    if (this.vram.layout.some((r) => addr >= r.start && addr < r.end)) return true;
    // A snapshot's BAR1 tree may hold tables its recorded session added: only regions say.
    if (this.device.kind === "snap" || this.bar1AtOpen.instanceBlock === null) return false;
    // Not readable (a read-only open that cannot move the window): only regions say.
    const found = this.#bindingAtOpen();
    return "binding" in found && found.binding !== null && pdb === found.binding.pdb;
  }

  /** BAR1: physical access, bring-up, binding, its address space and CPU mappings (made on first use). */
  get bar1(): BarUser {
    if (this.#bar1 === null) {
      this.#bar1 = new (loaded("gpu.bar1").BarUser)({
        bar0: this.bar0,
        bar1: this.device.bar1,
        pramin: this.pramin,
        tlb: this.tlb,
        mm: () => this.mm,
        mmuVersion: this.chip.mmuVersion,
        family: this.family,
        usable: this.vram.usable,
        vramSize: this.vram.size,
        bootVga: this.device.bootVga,
        readOnly: this.device.readOnly,
        found: this.bar1AtOpen,
        rewritten: this.#bindWritten,
        policy: () => this.vram.policy,
        timeoutMs: this.#pollTimeoutMs,
      });
    }
    return this.#bar1;
  }

  /**
   * Walks a GPU VA through the page tables in VRAM (default: BAR1's) and
   * returns every level visited. The root is BAR1's PDB, or the one given as
   * `walk(va, pdb)` or `walk(va, { pdb })` (the REPL's `walk()` takes the same).
   */
  walk(va: bigint | number, options: { pdb?: number } | number = {}): WalkResult {
    if (typeof options === "number") options = { pdb: options };
    if (options === undefined) options = {};
    checkOptions(options, { pdb: "number" }, "walk options");
    const pdb = options.pdb ?? this.bar1Binding?.pdb;
    if (pdb === undefined) {
      const why = this.#bar1 === null ? this.bar1AtOpen.problem : null;
      fail("EINVAL", `no PDB given and BAR1 has none${why === null ? "" : ` (${why})`}`);
    }
    using w = this.pramin.borrow();
    return walk(w, { format: this.format, pdb, va, vramSize: this.vram.size });
  }

  /**
   * The address spaces this session made or opened (none before `gpu.mm` is
   * first used; reading this never creates it).
   */
  knownVmms(): Vmm[] {
    return this.#mm?.vmms() ?? [];
  }

  /**
   * Writes a snapshot of this GPU to `file` (see `mm/snapshot.ts`): chip,
   * state, every safe register, the instance blocks and page tables of BAR1
   * and of each known address space as VRAM holds them, and `ranges` the
   * caller names. Read-only on the card; reopen it with `snap:FILE`.
   *
   * @example
   * ```ts
   * using gpu = await openGpu({ device: "sim:ga102:gsp" });
   * const file = await Deno.makeTempFile({ suffix: ".snap" });
   * const { bytes } = await gpu.snapshot(file, { ranges: [{ addr: 0x100000, size: 4096 }] });
   * const offline = await openGpu({ device: `snap:${file}` });
   * offline.walk(0x10000n).mapped; // true: firmware's BAR1 tables, read from the file
   * ```
   */
  async snapshot(
    file: string,
    options: SnapshotOptions = {},
  ): Promise<{ snapshot: Snapshot; bytes: number; file: string }> {
    await loadGpuModules();
    return loaded("gpu.snapshot()").snapshotToFile(this, file, options);
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
   * Puts back what this session found at open, whoever changed it, and
   * unmaps the BARs: the BAR1 bind registers, then the mappings and address
   * spaces it made (unmapped, tables freed; an instance block the card is
   * still bound to is kept), then the PRAMIN window register. Every step
   * runs even when an earlier one fails; the first error is rethrown. A GPU
   * that was lost (reads all ones) is only unmapped.
   */
  close(): void {
    if (this.device.bar0.closed) return;
    let first: unknown = null;
    let gone = false;
    const step = (fn: () => void) => {
      if (gone) return;
      try {
        fn();
      } catch (e) {
        first ??= e;
        gone = this.#lost(); // nothing more to put back on a GPU that reads all ones
      }
    };
    try {
      if (!this.device.readOnly) {
        step(() => {
          if (this.#bar1 !== null) this.#bar1.restore();
          else if (this.#bindWritten) {
            // Raw pokes only, BAR1 never used: put the registers back all the same.
            this.family.bar1.restore(this.bar0, this.bar1AtOpen, this.#pollTimeoutMs, {
              always: true,
            });
          }
        });
        // (An allocator exists only once the code behind it has loaded.)
        for (const v of this.#mm?.vmms() ?? []) {
          step(() => this.#mm!.destroyVmm(v, loaded("gpu.close()").TEARDOWN));
        }
        step(() => this.pramin.close());
        step(() => this.#restoreWindow());
      }
    } finally {
      this.device.close();
    }
    // A lost GPU (all ones) has nothing left to restore: its loss was reported when it happened.
    if (first !== null && !gone) throw first;
  }

  /** novamm's tables and instance blocks, and adopted firmware tables, as they are now. */
  *#ownedNow(): Generator<OwnedRange> {
    for (const v of this.#mm?.vmms() ?? []) yield* v.tableRanges();
    if (this.#bar1 !== null) yield* this.#bar1.instanceBlockRanges();
  }

  /** Writes the PRAMIN window register back as found at open (after raw writes or views). */
  #restoreWindow(): void {
    const saved = this.#windowAtOpen;
    if (saved === null) return;
    const reg = this.pramin.register;
    // Every write of the register is watched, so the last value is known without a read.
    const now = this.pramin.registerValue ?? this.bar0.read32(reg.offset);
    if (now !== saved) this.bar0.write32(reg.offset, saved);
  }

  /** True when BOOT_0 reads all ones (fell off the bus, or lost after a BAR fault). */
  #lost(): boolean {
    return gpuLost(this.bar0);
  }

  /**
   * Set by whoever hands this GPU out under names (the REPL): `beforeClose`
   * runs before {@linkcode Gpu.reopen} closes it, `opened` gets the new GPU.
   */
  reopenHooks: {
    beforeClose?: () => void | Promise<void>;
    opened?: (next: Gpu) => void;
  } = {};

  /**
   * Opens the same device again with the options it was opened with (after
   * a close, or when the GPU was lost: a simulated card comes back fresh) and
   * returns the new GPU; this one is closed first if it is still open (an
   * error closing it is reported as a warning, and the reopen goes on). In
   * the REPL and in scripts the preloaded names (`gpu`, `pramin`, `mm`, ...)
   * then name the new objects.
   *
   * @example
   * ```ts
   * let gpu = await openGpu({ device: "sim" });
   * gpu.close();
   * gpu = await gpu.reopen();
   * gpu.close();
   * ```
   */
  async reopen(): Promise<Gpu> {
    await this.reopenHooks.beforeClose?.();
    try {
      this.close();
    } catch (e) {
      console.warn(
        `warning: closing ${this.device.spec} before the reopen: ${
          e instanceof Error ? e.message : String(e)
        }`,
      );
    }
    const saved = OPEN_OPTIONS.get(this) ?? {
      device: this.device.spec,
      readOnly: this.device.readOnly,
    };
    const next = await openGpu(saved);
    next.reopenHooks = this.reopenHooks;
    this.reopenHooks.opened?.(next);
    return next;
  }

  /** Releases it at the end of a `using` scope (same as closing it explicitly). */
  [Symbol.dispose](): void {
    this.close();
  }

  /** The one-line summary as text (`${x}` prints it, not `[object Object]`). */
  toString(): string {
    return (this as unknown as Record<symbol, () => string>)[Symbol.for("Deno.customInspect")]();
  }

  /** The one-line summary the REPL and `Deno.inspect` print. */
  [Symbol.for("Deno.customInspect")](): string {
    return `Gpu ${this.device.spec} ${this.chip.name} (${this.chip.architecture}, MMU v${this.chip.mmuVersion}) VRAM ${
      formatSize(this.vram.size)
    }${this.device.readOnly ? " read-only" : ""}`;
  }
}

/**
 * BAR0 of a snapshot device for the bind-register decoder: a register the snapshot holds
 * reads as recorded; one it does not reads as a PRI error, which the decoder leaves out as
 * unreadable (never decoded, never written back). Nothing else goes through it.
 */
function recordedOnly(bar0: Mmio, recorded: (offset: number) => boolean): Mmio {
  const unreadable = 0xbadf0000; // isPriError: "could not be read", never a register value
  const refuse = (): never => fail("EPERM", "the BAR1 bind read is read-only");
  return new Mmio("snapshot bind registers", {
    size: bar0.size,
    read8: refuse,
    read16: refuse,
    read32: (o) => recorded(o) ? bar0.read32(o) : unreadable,
    write8: refuse,
    write16: refuse,
    write32: refuse,
  }, { readOnly: true });
}

/**
 * An imported trace (`state.bar1AtStart`, hw/snap/mmiotrace.ts): the instance block BAR1
 * was bound to before the traced driver first wrote a bind register (null: physical), as
 * novamm's own open would have read it; undefined when the snapshot does not say (then the
 * layout uses the binding as recorded, as on a card bound by another driver).
 */
function traceStartBinding(device: Device): number | null | undefined {
  const s = device.snapshot?.state.bar1AtStart as
    | { mode?: unknown; instanceBlock?: unknown }
    | null
    | undefined;
  if (s === null || typeof s !== "object") return undefined;
  if (s.mode === "physical") return null;
  if (s.mode !== "virtual" || typeof s.instanceBlock !== "string") return undefined;
  if (!/^0x[0-9a-f]{1,13}$/i.test(s.instanceBlock)) return undefined;
  const inst = parseInt(s.instanceBlock.slice(2), 16);
  return inst < device.vramSize ? inst : undefined;
}

/** Who first read a snapshot's `bar1AtStart`: an imported trace (it names the line) or a session. */
function recorder(device: Device): string {
  const s = device.snapshot?.state.bar1AtStart as { line?: unknown } | null | undefined;
  return s?.line === undefined ? "recorded session" : "trace";
}

/**
 * A `snap:FILE`'s snapshot: a Linux mmiotrace log (it starts with `VERSION `) is imported
 * (hw/snap/mmiotrace.ts), anything else decoded as a snapshot file (whose errors name it).
 */
async function readSnapshotOrTrace(path: string): Promise<Snapshot> {
  let head = "";
  try {
    using f = await Deno.open(path);
    const buf = new Uint8Array(8);
    const n = await f.read(buf);
    head = new TextDecoder().decode(buf.subarray(0, n ?? 0));
  } catch {
    // not there, not readable, a directory: readSnapshotFile says which
  }
  if (head === "VERSION ") {
    return (await (import(new URL("../hw/snap/mmiotrace.ts", import.meta.url).href) as Promise<
      typeof import("../hw/snap/mmiotrace.ts")
    >)).importMmiotraceFile(path).snapshot;
  }
  return (await (import(new URL("../hw/snap/format.ts", import.meta.url).href) as Promise<
    typeof import("../hw/snap/format.ts")
  >)).readSnapshotFile(path);
}

/** The options each GPU was opened with (for {@linkcode Gpu.reopen}). */
const OPEN_OPTIONS = new WeakMap<Gpu, OpenGpuOptions>();

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
export async function openGpu(options: OpenGpuOptions = {}): Promise<Gpu> {
  // Both at once: the device opens while the rest of the code loads.
  const code = loadGpuModules();
  const gpu = await openWith(options, true);
  try {
    await code;
  } catch (e) {
    gpu.close();
    throw e;
  }
  return gpu;
}

/**
 * {@linkcode openGpu} without waiting for the code behind `gpu.mm`, `gpu.bar1` and
 * `gpu.snapshot()`, for a caller that shows the open device first (the REPL draws its banner
 * and prompt, then loads the rest): chip, registers, PRAMIN, the TLB, the VRAM layout and
 * walks work at once; the allocator, BAR1 (its accesses included) and snapshots fail with
 * EAGAIN until {@linkcode loadGpuModules} has resolved, and so does, on a simulated chip, a
 * register the simulator does not model (answered from NVIDIA's headers, whose database loads
 * meanwhile). The same options and checks as `openGpu`.
 *
 * @example
 * ```ts
 * const gpu = await openGpuEarly({ device: "sim:gh100" });
 * gpu.vram.usable; // the layout is read at open
 * await loadGpuModules();
 * gpu.bar1.mode; // "physical"
 * gpu.close();
 * ```
 */
export function openGpuEarly(options: OpenGpuOptions = {}): Promise<Gpu> {
  return openWith(options, false);
}

/**
 * {@linkcode openGpu}'s open; `waitForDb`: load a simulated chip's register database before
 * the open, else open at once and leave it to {@linkcode loadGpuModules} (until it has
 * loaded, a register the simulator does not model fails EAGAIN).
 */
function openWith(options: OpenGpuOptions, waitForDb: boolean): Promise<Gpu> {
  try {
    checkOptions(options, {
      device: "string",
      readOnly: "boolean",
      force: "boolean",
      sysfsRoot: "string",
      lockDir: "string",
      tracer: "function",
      gfwTimeoutMs: "number",
      pollTimeoutMs: "number",
      snapshot: "object",
    }, "openGpu options");
    const { pollTimeoutMs, ...deviceOptions } = options;
    if (pollTimeoutMs !== undefined) checkTimeout(pollTimeoutMs, "poll timeout");
    const open = () => {
      const gpu = new Gpu(
        openDevice(deviceOptions),
        pollTimeoutMs === undefined ? {} : { pollTimeoutMs },
      );
      OPEN_OPTIONS.set(gpu, { ...options });
      return gpu;
    };
    // A snapshot (or an mmiotrace log, imported): read and decode the file first (the open
    // itself is synchronous), and load
    // the chip's register database for names at the prompt.
    const snap = parseSnapSpec(deviceOptions.device ?? "sim");
    if (snap !== null && deviceOptions.snapshot === undefined) {
      return readSnapshotOrTrace(snap.path).then(async (snapshot) => {
        const chip = decodeChip(snapshot.chip.boot0, snapshot.chip.boot42);
        await loadRegisterDb(chip.chipId).catch(() => {});
        const gpu = new Gpu(
          openDevice({ ...deviceOptions, snapshot }),
          pollTimeoutMs === undefined ? {} : { pollTimeoutMs },
        );
        OPEN_OPTIONS.set(gpu, { ...options });
        return gpu;
      });
    }
    // A simulated chip answers the registers it does not model from NVIDIA's headers: load
    // that chip's register database first (once per process), or, early, meanwhile.
    const sim = parseSimSpec(deviceOptions.device ?? "sim");
    const chipId = sim === null ? null : simProfileChipId(sim.profile);
    if (chipId === null) return Promise.resolve(open());
    if (waitForDb) return loadRegisterDb(chipId).then(open, open);
    // Not now: loadGpuModules loads it (loading it here would hold up what the caller does
    // next, the REPL's banner and prompt). The simulator made meanwhile waits for it.
    expectRegisterDb(chipId);
    pendingDbs.add(chipId);
    return Promise.resolve(open());
  } catch (e) {
    return Promise.reject(e);
  }
}
