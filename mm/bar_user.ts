/**
 * BAR1 (nova-core's BarUser, and what nouveau's non-GSP `bar` code does):
 * the framebuffer aperture in both of its modes.
 *
 * - **Physical** (the reset state of a card no driver booted; facts §13.2):
 *   BAR1 byte offset X is VRAM address X. {@linkcode BarUser.physical} gives
 *   CPU access by VRAM address, inside the usable region unless forced.
 * - **Virtual**: BAR1 translates through the page tables of the address space
 *   its instance block names. {@linkcode BarUser.bringUp} builds novamm's own
 *   (instance block and root from the buddy allocator, PDB + ADR_LIMIT +
 *   subcontext copies, FB flush, bind, poll the bind status; facts §13.3),
 *   {@linkcode BarUser.bind} points BAR1 at any address space made with
 *   `gpu.mm.createVmm`, {@linkcode BarUser.unbind} goes back to physical and
 *   {@linkcode BarUser.restore} (run by `gpu.close()`) rewrites the bind
 *   registers the session found. A card already bound when opened (GSP-RM's
 *   tables: the `gsp` state) is adopted: its tables are scanned, never
 *   rewritten.
 *
 * The per-family mechanics — the bind registers and their sequences, the FB
 * flush, the instance-block words — are the chip family's table
 * (`hw/family/`); this file keeps the BAR1 object, its mappings and its
 * guard. After every bind or unbind attempt (success, timeout or PRI error)
 * the bind registers are read back and BAR1 is treated as what they say.
 * GB10x has no CPU-side FB flush: BAR1 stays physical there (refused with
 * ENOTSUP before anything is allocated or written).
 *
 * While BAR1 is virtual, every access through the BAR1 aperture (mappings,
 * REPL pokes of `gpu.device.bar1`) must lie inside a live mapping: anything
 * else is refused with EFAULT before it reaches the card, because a CPU
 * access to an unmapped BAR1 page is a BAR fault, fatal on hardware (§13.3
 * item 7). Raw writes of the bind registers are watched, so the guard
 * follows them.
 *
 * @module
 */

import { describe, fail, formatSize, hex } from "../hw/errors.ts";
import type { Mmio } from "../hw/mmio.ts";
import {
  type Bar1BindOps,
  type Bar1BindState,
  type Bar1Mode,
  type ChipFamily,
  instanceBlockWords,
  LOWHIGH_BIND,
  VF_BIND,
} from "../hw/family/mod.ts";
import {
  bigintOrNumber,
  checkBytes,
  checkMmio,
  checkObject,
  checkOptions,
  checkUint,
} from "../hw/validate.ts";

export type { Bar1BindState, Bar1Mode } from "../hw/family/mod.ts";

/** Bind timeout (RM, nouveau and nova-core use 2 s). */
const BIND_TIMEOUT_MS = 2000;

function bindOps(options: unknown, what: string): Bar1BindOps {
  const o = checkObject(options, "options");
  checkOptions(o, { mmuVersion: "number", always: "boolean" }, what);
  if (o.mmuVersion !== 2 && o.mmuVersion !== 3) {
    fail("EINVAL", `mmuVersion ${describe(o.mmuVersion)} is not 2 or 3`);
  }
  return o.mmuVersion === 2 ? VF_BIND : LOWHIGH_BIND;
}
import { Allocation } from "./buddy.ts";
import type { GpuMm } from "./gpu_mm.ts";
import type { Pramin } from "./pramin.ts";
import type { Tlb } from "./tlb.ts";
import type { Extent, Mapping } from "./vmm.ts";
import { Vmm } from "./vmm.ts";
import { BarPhysical } from "./bar_physical.ts";
import type { VerifyReport } from "./pagetable/verify.ts";
import type { VramPolicy } from "./vram_policy.ts";
import { u64 } from "./types.ts";
import { type Bar1Binding, readInstanceBlock } from "./bar1_binding.ts";

export { type Bar1Binding, readInstanceBlock } from "./bar1_binding.ts";

const PAGE = 4096;
const MAP_VA = bigintOrNumber("bar1.map options");

/**
 * Reads the BAR1 bind registers (single reads, nothing written): on MMU v2
 * chips the VF register 0xB80F40 and the legacy 0x1704 (virtual if either
 * says so); from Hopper on LOW/HIGH. See `hw/family/bar1_bind.ts`.
 */
export function readBar1Bind(bar0: Mmio, options: { mmuVersion: 2 | 3 }): Bar1BindState {
  checkMmio(bar0, "readBar1Bind bar0");
  return bindOps(options, "readBar1Bind options").read(bar0);
}

/**
 * Writes back BAR1 bind registers as {@linkcode readBar1Bind} found them,
 * skipping those that still hold their value; each write that starts a bind
 * is polled to completion before the next (the register the live binding
 * came from goes last; `always`: rewrite them even when they read as found,
 * which on LOW/HIGH chips does not prove the live binding). Used after a
 * REPL evaluation had to be killed, by the REPL's own clean-up (it has only
 * the registers).
 */
export function restoreBar1Bind(
  bar0: Mmio,
  found: Bar1BindState,
  options: { mmuVersion: 2 | 3; always?: boolean },
): void {
  checkMmio(bar0, "restoreBar1Bind bar0");
  bindOps(options, "restoreBar1Bind options").restore(bar0, found, BIND_TIMEOUT_MS, {
    always: options.always === true,
  });
}

/** What {@linkcode BarUser.map} takes: an allocation, a VRAM range, or 4 KiB frame numbers. */
export type BarTarget = Allocation | { start: number; size: number } | ArrayLike<number>;

/** Options for {@linkcode BarUser.map}. */
export interface BarMapOptions {
  /** Let the CPU write through the mapping (default false). */
  writable?: boolean;
  /** A fixed BAR1 VA (must be free). */
  va?: bigint | number;
  /** Force one page size. */
  pageSize?: number;
  /** A writable mapping of VRAM that is not the user's (firmware's, novamm's tables): yes, really. */
  force?: boolean;
}

/**
 * A VRAM range mapped into BAR1, accessed by the CPU through the BAR1
 * aperture. Offsets are bytes from the start of the mapping.
 */
export class BarMapping {
  /** The underlying address-space mapping. */
  readonly mapping: Mapping;
  readonly #bar1: Mmio;
  readonly #user: BarUser;

  /** Made by {@linkcode BarUser.map}. */
  constructor(mapping: Mapping, bar1: Mmio, user: BarUser) {
    this.mapping = mapping;
    this.#bar1 = bar1;
    this.#user = user;
  }

  /** BAR1 virtual address = BAR1 byte offset of the first byte. */
  get va(): bigint {
    return this.mapping.va;
  }

  /** Bytes mapped. */
  get size(): number {
    return this.mapping.size;
  }

  /**
   * Checks an access in the caller's terms and order: lifetime first
   * (unmapped: ENODEV; never flushed; BAR1 rebound), then permission (a write
   * to a read-only mapping: EPERM), then range and alignment (EINVAL), with
   * offsets relative to this mapping, never the BAR1 VA. Returns the BAR1
   * offset of the access.
   */
  #at(offset: number, len: number, write: boolean, align = 1): number {
    if (!this.mapping.live) {
      fail(
        "ENODEV",
        `BAR1 mapping ${hex(this.va)} +${formatSize(this.size)} has been unmapped`,
      );
    }
    if (!this.mapping.flushed) {
      fail(
        "EFAULT",
        `BAR1 mapping ${hex(this.va)} was never flushed: the GPU may not have its entries`,
        `${this.mapping.vmm.name}.flush() retries the flush; unmap() gives the mapping up`,
      );
    }
    if (this.#user.boundVmm !== this.mapping.vmm) {
      fail(
        "EFAULT",
        `BAR1 mapping ${hex(this.va)} is in ${this.mapping.vmm.name}, but BAR1 is ${
          this.#user.mode === "physical" ? "in physical mode" : `bound to ${this.#user.boundName}`
        } now`,
        "bind its address space again (gpu.bar1.bind(vmm) or gpu.bar1.bringUp())",
      );
    }
    if (write && !this.mapping.writable) {
      fail("EPERM", `BAR1 mapping ${hex(this.va)} is read-only`, "map it with { writable: true }");
    }
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
    if (offset % align !== 0) {
      fail(
        "EINVAL",
        `offset ${
          hex(offset)
        } in the BAR1 mapping is not aligned to the ${align}-byte access width`,
      );
    }
    return Number(this.va) + offset;
  }

  /** 32-bit read at `offset`. */
  read32(offset: number): number {
    return this.#bar1.read32(this.#at(offset, 4, false, 4));
  }

  /** 32-bit write at `offset`. */
  write32(offset: number, value: number): void {
    this.#bar1.write32(this.#at(offset, 4, true, 4), value);
  }

  /** 64-bit read as two 32-bit reads, low half first. */
  read64(offset: number): bigint {
    const at = this.#at(offset, 8, false, 4);
    const lo = this.#bar1.read32(at);
    return (BigInt(this.#bar1.read32(at + 4)) << 32n) | BigInt(lo);
  }

  /** 64-bit write as two 32-bit writes, low half first. */
  write64(offset: number, value: bigint | number): void {
    const at = this.#at(offset, 8, true, 4);
    const v = u64(value, "value");
    this.#bar1.write32(at, Number(v & 0xffffffffn));
    this.#bar1.write32(at + 4, Number(v >> 32n));
  }

  /** Reads bytes (32-bit accesses, 8-bit at unaligned edges; wide copies on a write-combining BAR1). */
  readBytes(offset: number, len: number): Uint8Array {
    return this.#bar1.readBytes(this.#at(offset, len, false), len);
  }

  /** Writes bytes (as {@linkcode BarMapping.readBytes} reads). */
  writeBytes(offset: number, bytes: Uint8Array): void {
    if (!(bytes instanceof Uint8Array)) this.#at(0, 0, true);
    checkBytes(bytes, "writeBytes bytes");
    this.#bar1.writeBytes(this.#at(offset, bytes.length, true), bytes);
  }

  /**
   * Unmaps from BAR1 (PTEs invalidated, TLB flushed, VA freed); a second call
   * is a double unmap (EINVAL), as a second `free()` of an Allocation is.
   */
  unmap(): void {
    if (!this.mapping.live) {
      fail("EINVAL", `BAR1 unmap: double unmap of BAR1 mapping ${hex(this.va)} +${hex(this.size)}`);
    }
    this.mapping.unmap();
  }

  /** Unmaps unless already unmapped, so `using m = bar1.map(...)` is safe after `m.unmap()`. */
  [Symbol.dispose](): void {
    if (this.mapping.live) this.mapping.unmap();
  }

  /** The one-line summary as text (`${x}` prints it, not `[object Object]`). */
  toString(): string {
    return (this as unknown as Record<symbol, () => string>)[Symbol.for("Deno.customInspect")]();
  }

  /** The one-line summary the REPL and `Deno.inspect` print. */
  [Symbol.for("Deno.customInspect")](): string {
    return `BarMapping BAR1 ${hex(this.va)} +${formatSize(this.size)} ${
      this.mapping.writable ? "rw" : "ro"
    }${this.mapping.live ? "" : " (unmapped)"}`;
  }
}

/** What {@linkcode BarUser} is built from. */
export interface BarUserOptions {
  /** BAR0 (bind registers). */
  bar0: Mmio;
  /** The BAR1 aperture. */
  bar1: Mmio;
  /** PRAMIN (instance blocks). */
  pramin: Pramin;
  /** The TLB / FB flush. */
  tlb: Tlb;
  /** The GPU's memory manager (made on first use). */
  mm: () => GpuMm;
  /** Page-table format version. */
  mmuVersion: 2 | 3;
  /** The chip family: bind registers, FB flush, instance-block words. */
  family: ChipFamily;
  /** The usable VRAM region (physical access is kept inside it unless forced). */
  usable: { start: number; end: number };
  /** VRAM bytes. */
  vramSize: number;
  /** The boot VGA device: the console scans out through physical BAR1. */
  bootVga: boolean;
  /** The session is read-only. */
  readOnly: boolean;
  /** The bind registers as the session found them. */
  found: Bar1BindState;
  /** A bind register was written since `found` was read: read them again. */
  rewritten?: boolean;
  /** Bind poll timeout in ms (default 2000). */
  timeoutMs?: number;
  /** The write policy (who owns which VRAM): writable mappings of owned VRAM need `force`. */
  policy?: () => VramPolicy | null;
}

/**
 * The address space BAR1 is bound to now: a Vmm novamm manages, or a foreign
 * instance block (null: one outside VRAM, or a binding the registers cannot say).
 */
interface Bound {
  vmm: Vmm | null;
  instanceBlock: number | null;
  pdb: number | null;
}

/**
 * BAR1 of one GPU.
 *
 * @example
 * ```ts
 * import { openGpu } from "../mod.ts";
 * using gpu = await openGpu({ device: "sim" });
 * gpu.bar1.mode; // "physical" on a card no driver booted
 * const a = gpu.mm.buddy.alloc(4 << 20);
 * using m = gpu.bar1.map(a, { writable: true }); // brings BAR1 up first
 * m.write32(0, 0xcafebabe);
 * gpu.pramin.read32(a.start); // 0xcafebabe
 * ```
 */
export class BarUser {
  /** BAR1 aperture bytes (= the VA size of novamm's BAR1 address space). */
  readonly size: number;
  /** CPU access by VRAM address while BAR1 is physical (inside the usable region). */
  readonly physical: BarPhysical;
  readonly #o: BarUserOptions;
  readonly #bar1: Mmio;
  #own: Vmm | null = null;
  /** #own is firmware's address space, adopted at open (not ours to unbind from). */
  #adopted = false;
  #bound: Bound | null = null;
  #release: (() => void) | null = null;
  readonly #instanceBlocks = new Map<Vmm, Allocation>();
  #writing = false;
  #changed = false;
  /** Why BAR1 may not be used as it is (physical into system memory, a bind that failed). */
  #problem: string | null = null;
  /** A bind or unbind failed: BAR1's state is not trusted until one succeeds. */
  #unsettled = false;
  /** A bind register was written during the session (by novamm or a raw poke). */
  #rawWrites = false;
  #hit: Mapping | null = null;
  #hitStart = 0;
  #hitEnd = 0;

  get #timeoutMs(): number {
    return this.#o.timeoutMs ?? BIND_TIMEOUT_MS;
  }

  /** Constructs it; a BAR1 bound at open is adopted (its tables scanned, not rewritten). */
  constructor(options: BarUserOptions) {
    this.#o = options;
    this.#bar1 = options.bar1;
    this.size = options.bar1.size;
    this.physical = new BarPhysical({
      bar1: options.bar1,
      usable: options.usable,
      vramSize: options.vramSize,
      mode: () => this.mode,
      problem: () => this.#bound === null ? this.#problem : null,
      policy: options.policy,
    });
    const found = options.found;
    if (found.instanceBlock !== null) {
      // Firmware's tables as bound at open: adopted (scanned, never rewritten).
      const b = readInstanceBlock(options.pramin, found.instanceBlock, {
        mmuVersion: options.mmuVersion,
      });
      if (b !== null) {
        const vmm = options.mm().openVmm({
          pdb: b.pdb,
          vaSize: BigInt(this.size),
          name: "bar1",
          bar: true,
        });
        // Firmware's tree outlives this session: destroying the Vmm only takes novamm's pages out.
        vmm.protect("it is BAR1's address space (firmware's tables); gpu.close() lets it go");
        this.#own = vmm;
        this.#adopted = true;
      }
    }
    // What the card says now: as found at open, unless a bind register was written since.
    this.#follow(options.rewritten ? undefined : found);
  }

  /**
   * @internal The BAR1 aperture's guard (installed by the Gpu at open, so it
   * holds from the first access): while BAR1 is virtual only live, flushed
   * mappings may be touched; while physical into system memory nothing.
   */
  guardAccess(offset: number, length: number, op: "r" | "w"): void {
    checkUint(offset, "BAR1 offset");
    checkUint(length, "BAR1 access length");
    if (op !== "r" && op !== "w") {
      fail("EINVAL", `BAR1 access op ${describe(op)} is not "r" or "w"`);
    }
    this.#guard(offset, length, op);
  }

  /** @internal A bind register was written (by anyone): follow what the card now says. */
  registersWritten(): void {
    this.#rawWrites = true;
    if (this.#writing) return;
    this.#follow();
  }

  /** `"physical"` (BAR1 offset = VRAM address) or `"virtual"` (translated through page tables). */
  get mode(): Bar1Mode {
    return this.#bound === null ? "physical" : "virtual";
  }

  /** The address space BAR1 translates through now (null: physical, or one novamm does not manage). */
  get boundVmm(): Vmm | null {
    return this.#bound?.vmm ?? null;
  }

  /** @internal A name for what BAR1 is bound to, for messages. */
  get boundName(): string {
    const b = this.#bound;
    if (b === null) return "nothing (physical mode)";
    if (b.vmm !== null) return b.vmm.name;
    return b.instanceBlock === null
      ? `an instance block novamm cannot reach (${this.#problem ?? "unknown binding"})`
      : `the instance block at ${hex(b.instanceBlock)} (not novamm's)`;
  }

  /**
   * `vmm.verify()` of the address space BAR1 is bound to (its shadow against
   * the tables in VRAM), plus the instance block's words: every word novamm
   * writes when the block is novamm's own, the page-directory words when it
   * is firmware's (adopted). ENODEV in physical mode or when BAR1 is bound to
   * an instance block novamm does not manage.
   */
  verify(options: { maxDifferences?: number } = {}): VerifyReport {
    checkOptions(options, { maxDifferences: "number" }, "bar1.verify options");
    const b = this.#bound;
    if (b === null || b.vmm === null || b.instanceBlock === null) {
      fail("ENODEV", `BAR1 is bound to ${this.boundName}: no address space of novamm's to verify`);
    }
    const own = [...this.#instanceBlocks.values()].some((a) => a.start === b.instanceBlock);
    return b.vmm.verify({
      ...options,
      instanceBlock: b.instanceBlock,
      instanceBlockRules: own ? this.#o.family.instanceBlock : undefined,
    });
  }

  /** Instance block and root directory BAR1 is bound to, or null in physical mode. */
  get binding(): Bar1Binding | null {
    const b = this.#bound;
    return b === null || b.pdb === null || b.instanceBlock === null
      ? null
      : { instanceBlock: b.instanceBlock, pdb: b.pdb };
  }

  /** The bound root page directory (ENODEV in physical mode). */
  get pdb(): number {
    const b = this.binding;
    if (b === null) {
      fail(
        "ENODEV",
        "BAR1 is in physical mode: it has no page directory",
        "gpu.bar1.bringUp() builds and binds one (gpu.bar1.map() does it too)",
      );
    }
    return b.pdb;
  }

  /**
   * The BAR1 address space: the one BAR1 is bound to (novamm's own after
   * {@linkcode BarUser.bringUp}, firmware's on a `gsp` card, or one given to
   * {@linkcode BarUser.bind}). ENODEV in physical mode.
   */
  get vmm(): Vmm {
    const b = this.#bound;
    if (b === null) {
      fail(
        "ENODEV",
        "BAR1 is in physical mode: no BAR1 address space is bound",
        "gpu.bar1.bringUp() builds and binds novamm's (gpu.bar1.map() does it too); gpu.bar1.physical reaches VRAM by address meanwhile",
      );
    }
    if (b.vmm === null) {
      fail("EBUSY", `BAR1 is bound to ${this.boundName}`, "gpu.bar1.bringUp() rebinds novamm's");
    }
    return b.vmm;
  }

  /** The guard on the BAR1 aperture: while virtual, only live mappings may be touched. */
  #guard(offset: number, length: number, op: "r" | "w"): void {
    const b = this.#bound;
    if (b === null) {
      // Physical with TARGET not VID: the aperture reaches system memory.
      if (this.#problem !== null) this.#refuse(offset, length, op, this.#problem);
      return;
    }
    const hit = this.#hit;
    if (
      hit !== null && hit.live && hit.flushed && offset >= this.#hitStart &&
      offset + length <= this.#hitEnd
    ) {
      if (op === "w" && !hit.writable) this.#refuse(offset, length, op, "read-only mapping");
      return;
    }
    if (b.vmm === null) this.#refuse(offset, length, op, `BAR1 is bound to ${this.boundName}`);
    const m = b.vmm.liveAt(offset, length);
    if (m === null) this.#refuse(offset, length, op, `no live mapping of ${b.vmm.name} there`);
    if (m === "firmware") return;
    if (!m.flushed) {
      this.#refuse(
        offset,
        length,
        op,
        `the mapping at ${hex(m.va)} was never flushed: the GPU may not have its entries`,
      );
    }
    if (op === "w" && !m.writable) this.#refuse(offset, length, op, "read-only mapping");
    this.#hit = m;
    this.#hitStart = Number(m.va);
    this.#hitEnd = this.#hitStart + m.size;
  }

  #refuse(offset: number, length: number, op: "r" | "w", why: string): never {
    const access = `refused CPU ${op === "r" ? "read" : "write"} of BAR1 ${
      this.#bound === null ? "offset" : "VA"
    } ${hex(offset)} (+${length})`;
    if (this.#bound === null) {
      fail(
        "EFAULT",
        `${access}: ${why}`,
        "gpu.bar1.bringUp() binds novamm's tables (TARGET VID); PRAMIN reaches VRAM meanwhile",
      );
    }
    fail(
      "EFAULT",
      `${access}: ${why}; while BAR1 is virtual that access is a BAR fault, fatal on hardware`,
      "map the page first (gpu.bar1.map(...)), or use gpu.bar1.physical after gpu.bar1.unbind()",
    );
  }

  /**
   * Reads the bind registers back and treats BAR1 as what they say (after
   * every bind, unbind or restore attempt, and after a raw write): novamm's
   * address space when one of its instance blocks is bound, firmware's
   * adopted one, or a foreign binding the guard lets nothing through.
   */
  #follow(known?: Bar1BindState): Bar1BindState {
    this.#hit = null;
    const s = known ?? this.#o.family.bar1.read(this.#o.bar0);
    this.#release?.();
    this.#release = null;
    this.#problem = s.problem;
    if (s.mode === "physical") {
      this.#bound = null;
      return s;
    }
    const inst = s.instanceBlock;
    if (inst !== null) {
      for (const [vmm, a] of this.#instanceBlocks) {
        if (a.start === inst) {
          this.#bound = { vmm, instanceBlock: a.start, pdb: vmm.pdb };
          this.#release = vmm.hold("BAR1 is bound to it");
          return s;
        }
      }
      const own = this.#own;
      if (own !== null && this.#adopted && this.#o.found.instanceBlock === inst) {
        this.#bound = { vmm: own, instanceBlock: inst, pdb: own.pdb };
        return s;
      }
    }
    this.#bound = { vmm: null, instanceBlock: inst, pdb: null };
    return s;
  }

  /** Refuses a bind on a family without a CPU-side FB flush (GB10x), before anything is written. */
  #canFlush(what: string): void {
    const flush = this.#o.family.fbFlush;
    if (flush.mechanism !== "gsp") return;
    fail(
      "ENOTSUP",
      `${what}: ${this.#o.family.name} flushes the frame buffer only through GSP-RM (${flush.description}), so the GPU would never see the instance block and tables; BAR1 stays physical here`,
      "use gpu.bar1.physical and PRAMIN; binding BAR1 on GB10x needs GSP-RM",
    );
  }

  #writable(what: string): void {
    if (this.#o.readOnly) {
      fail(
        "EPERM",
        `${what} writes BAR1 registers and VRAM: the session is read-only`,
        "reopen without --read-only",
      );
    }
  }

  /**
   * Builds novamm's own BAR1 address space on a physical-mode card and binds
   * it (or rebinds it after {@linkcode BarUser.unbind} / a `bind` of another
   * space). On the boot VGA device this takes `{ force: true }`: binding
   * BAR1 takes the firmware console's physical BAR1 away. Returns this.
   */
  bringUp(options: { force?: boolean } = {}): this {
    checkOptions(options, { force: "boolean" }, "bar1.bringUp options");
    this.#writable("bar1.bringUp()");
    this.#canFlush("bar1.bringUp()");
    const b = this.#bound;
    if (b !== null && b.vmm !== null && b.vmm === this.#own) return this;
    if (b === null && this.#o.bootVga && !options.force) {
      fail(
        "EPERM",
        "this card is the boot VGA device (sysfs boot_vga = 1): the console scans out through physical BAR1, and binding BAR1 takes that away",
        "gpu.bar1.bringUp({ force: true }) if the console may go blank; gpu.bar1.physical works without it",
      );
    }
    if (b !== null && b.vmm === null && !this.#unsettled) {
      fail(
        "EBUSY",
        `BAR1 is bound to ${this.boundName}`,
        "write the bind register back, or reopen",
      );
    }
    let own = this.#own;
    if (this.#adopted && own !== null && !own.destroyed) {
      // Back to firmware's own instance block, as found at open.
      this.#bindTo(own, this.#o.found.instanceBlock!);
      return this;
    }
    if (own === null || own.destroyed) {
      own = this.#o.mm().createVmm({ vaSize: BigInt(this.size), name: "bar1", bar: true });
      own.protect("it is novamm's BAR1 address space; gpu.close() tears it down");
      this.#own = own;
    }
    this.#bindTo(own);
    return this;
  }

  /**
   * Points BAR1 at an address space made with `gpu.mm.createVmm` (it gets an
   * instance block of its own), so the GPU's MMU translates CPU accesses
   * through BAR1 with that space's tables. Only its live mappings may then
   * be touched through BAR1. On the boot VGA device while BAR1 is physical this
   * takes `{ force: true }`, as {@linkcode BarUser.bringUp} does.
   */
  bind(vmm: Vmm, options: { force?: boolean } = {}): void {
    if (!(vmm instanceof Vmm)) fail("EINVAL", `${describe(vmm)} is not a Vmm`);
    checkOptions(options, { force: "boolean" }, "bar1.bind options");
    const mm = this.#o.mm();
    if (!mm.vmms().includes(vmm)) {
      fail("EINVAL", `${vmm.name} is not a live address space of this GPU (gpu.mm.createVmm)`);
    }
    this.#writable("bar1.bind()");
    if (this.#bound?.vmm === vmm) return;
    if (this.#bound === null && this.#o.bootVga && !options.force) {
      fail(
        "EPERM",
        "this card is the boot VGA device (sysfs boot_vga = 1): the console scans out through physical BAR1, and binding BAR1 takes that away",
        "gpu.bar1.bind(vmm, { force: true }) if the console may go blank",
      );
    }
    this.#canFlush("bar1.bind()");
    this.#bindTo(vmm);
  }

  /**
   * Puts BAR1 back in physical mode (BAR1 offset = VRAM address, TARGET VID)
   * in every bind register. Address spaces stay. The registers are read back
   * afterwards: should they still say virtual, or the bind status never
   * settle, BAR1 is treated as unusable (nothing goes through it) until a
   * bind or unbind succeeds.
   */
  unbind(): void {
    this.#writable("bar1.unbind()");
    if (this.#bound === null && this.#problem === null) return;
    const s = this.#change(() => this.#o.family.bar1.unbind(this.#o.bar0, this.#timeoutMs));
    if (s.mode !== "physical") {
      this.#unsettle(`still virtual after the unbind (${registersText(s)})`);
      fail("EIO", `bar1.unbind(): the bind registers still say virtual: ${registersText(s)}`);
    }
  }

  /**
   * Runs a bind-register sequence, then reads the registers back and follows
   * them. A sequence that failed (timeout, PRI error) leaves BAR1 unsettled:
   * the registers may already say the new binding while the GPU has not
   * switched, so neither binding is trusted.
   */
  #change(op: () => void): Bar1BindState {
    this.#changed = true;
    this.#writing = true;
    let error: unknown = null;
    try {
      op();
    } catch (e) {
      error = e;
    } finally {
      this.#writing = false;
    }
    let s: Bar1BindState | null = null;
    try {
      s = this.#follow();
    } catch (e) {
      error ??= e;
    }
    if (error !== null || s === null) {
      this.#unsettle(
        `the last BAR1 bind did not complete (${
          error instanceof Error ? error.message : String(error)
        })`,
      );
      throw error;
    }
    this.#unsettled = false;
    return s;
  }

  /** Nothing goes through BAR1 until a bind or unbind succeeds. */
  #unsettle(why: string): void {
    this.#release?.();
    this.#release = null;
    this.#hit = null;
    this.#bound = { vmm: null, instanceBlock: null, pdb: null };
    this.#problem = why;
    this.#unsettled = true;
  }

  /** The instance block of `vmm`, written whole (not yet flushed) on first use. */
  #instanceBlock(vmm: Vmm): Allocation {
    let a = this.#instanceBlocks.get(vmm);
    if (a !== undefined && a.live) return a;
    // Computed before anything is allocated: a bad VA size changes nothing.
    const words = instanceBlockWords(this.#o.family.instanceBlock, {
      pdb: vmm.pdb,
      vaSize: vmm.vaSize,
    });
    const mm = this.#o.mm();
    a = mm.buddy.alloc(PAGE, { label: `instance block of ${vmm.name}` });
    try {
      using w = this.#o.pramin.borrow();
      w.writeWords(a.start, words);
    } catch (e) {
      a.free();
      throw e;
    }
    const unpin = a.pin(`the instance block of ${vmm.name}`);
    const block = a;
    this.#instanceBlocks.set(vmm, block);
    this.instanceBlockVersion++;
    vmm.whenDestroyed(() => {
      if (this.#instanceBlocks.get(vmm) === block) this.#instanceBlocks.delete(vmm);
      this.instanceBlockVersion++;
      // Never give back an instance block the card is still bound to (a restore that
      // failed): the GPU would fetch whatever is written there next. It stays pinned.
      if (this.#cardUses(block.start)) return;
      unpin();
      block.free();
    });
    return block;
  }

  /** Binds BAR1 to `vmm` through `inst` (by default its own instance block, made on first use). */
  #bindTo(vmm: Vmm, inst: number = this.#instanceBlock(vmm).start): void {
    // The instance block and the tables must be in VRAM before the GPU fetches them.
    this.#o.tlb.fbFlush();
    const s = this.#change(() => this.#o.family.bar1.bind(this.#o.bar0, inst, this.#timeoutMs));
    if (s.mode !== "virtual" || s.instanceBlock !== inst || this.#bound?.vmm !== vmm) {
      this.#unsettle(`the bind of ${hex(inst)} did not take (${registersText(s)})`);
      fail(
        "EIO",
        `BAR1 bind of the instance block at ${hex(inst)}: the bind registers read back ${
          registersText(s)
        }`,
      );
    }
    this.#o.tlb.invalidate(vmm.pdb, { hubOnly: true }); // flushed above, nothing written since
  }

  /**
   * Writes back the bind registers the session found (run by `gpu.close()`),
   * whoever changed them, then reads them back. On LOW/HIGH chips the pair is
   * rewritten whenever any bind register was written this session: equal
   * register values do not prove the live binding (a LOW-only write may not
   * take effect: facts §14.1 CONFLICT). Nothing is written on a read-only session.
   */
  restore(): void {
    if (this.#o.readOnly) return;
    const always = this.#rawWrites || this.#changed;
    this.#change(() =>
      this.#o.family.bar1.restore(this.#o.bar0, this.#o.found, this.#timeoutMs, { always })
    );
    this.#changed = false;
    this.#rawWrites = false;
  }

  /** @internal Changes whenever an instance block is made or freed (the write policy's cache key). */
  instanceBlockVersion = 0;

  /** @internal novamm's instance blocks, for the write policy. */
  *instanceBlockRanges(): Generator<{ name: string; start: number; end: number }> {
    for (const [vmm, a] of this.#instanceBlocks) {
      if (a.live) {
        yield { name: `the instance block of ${vmm.name}`, start: a.start, end: a.start + a.size };
      }
    }
  }

  /** True when the card's bind registers name `inst` (read now; for freeing instance blocks). */
  #cardUses(inst: number): boolean {
    try {
      return this.#o.family.bar1.read(this.#o.bar0).instanceBlock === inst;
    } catch {
      return true; // cannot tell: keep it
    }
  }

  /**
   * Maps VRAM into the bound BAR1 address space and returns CPU access to it
   * (use with `using`). On a physical-mode card BAR1 is brought up first
   * (refused on the boot VGA device: see {@linkcode BarUser.bringUp}).
   */
  map(target: BarTarget, options: BarMapOptions = {}): BarMapping {
    checkOptions(
      options,
      { writable: "boolean", va: MAP_VA, pageSize: "number", force: "boolean" },
      "bar1.map options",
    );
    const pieces = toPieces(target);
    if (options.writable && !options.force) {
      // A writable CPU mapping of VRAM that is not the user's (firmware's, novamm's own
      // tables) needs { force: true }: checked before anything is allocated or written.
      const policy = this.#o.policy?.() ?? null;
      if (policy !== null) {
        if ("extents" in pieces) {
          for (const e of pieces.extents) {
            policy.checkWrite(e.pa, e.size, "a writable BAR1 mapping");
          }
        } else {
          for (const pfn of pieces.pfns) {
            if (Number.isSafeInteger(pfn) && pfn >= 0) {
              policy.checkWrite(pfn * PAGE, PAGE, "a writable BAR1 mapping");
            }
          }
        }
      }
    }
    const size = "extents" in pieces
      ? pieces.extents.reduce((n, e) => n + e.size, 0)
      : pieces.pfns.length * PAGE;
    if (size > this.size) {
      fail("ENOSPC", `cannot map ${hex(size)} bytes into the ${hex(this.size)}-byte BAR1 aperture`);
    }
    if (this.#bound === null) {
      if (this.#o.bootVga) {
        fail(
          "EPERM",
          "BAR1 is physical on the boot VGA device: mapping would bind BAR1 and take the console's physical BAR1 away",
          "gpu.bar1.bringUp({ force: true }) first, or use gpu.bar1.physical",
        );
      }
      this.bringUp();
    }
    const vmm = this.vmm;
    const { force: _force, ...rest } = options;
    const mapOptions = { ...rest, label: "bar1" };
    // Extents (an allocation's blocks, a range) cost O(PTEs); frame numbers are taken as given.
    const prepared = "extents" in pieces
      ? vmm.prepareExtents(pieces.extents, mapOptions)
      : vmm.prepareMap(pieces.pfns, mapOptions);
    if (prepared.va + BigInt(size) > BigInt(this.size)) { // bigint: a VA may exceed 2^53
      prepared.cancel(); // nothing was written: a failed map makes no MMIO access
      fail(
        "ENOSPC",
        `${vmm.name} placed the mapping at ${hex(prepared.va)}, past the ${
          hex(this.size)
        }-byte BAR1 aperture`,
        "pass a va below the aperture size",
      );
    }
    // The pages must not go back to the allocator while BAR1 may point at them:
    // pinned before the PTEs are written and the TLB flushed, released on unmap.
    const unpin = target instanceof Allocation
      ? target.pin(`the BAR1 mapping at ${hex(prepared.va)}`)
      : null;
    let m: Mapping;
    try {
      m = vmm.executeMap(prepared);
    } catch (e) {
      if (unpin !== null) {
        // A failed flush leaves the mapping in place: the pin goes with it.
        const left = prepared.mapping;
        if (left !== null && left.live) left.whenUnmapped(unpin);
        else unpin();
      }
      throw e;
    }
    if (unpin !== null) m.whenUnmapped(unpin);
    return new BarMapping(m, this.#bar1, this);
  }

  /** The one-line summary as text (`${x}` prints it, not `[object Object]`). */
  toString(): string {
    return (this as unknown as Record<symbol, () => string>)[Symbol.for("Deno.customInspect")]();
  }

  /** The one-line summary the REPL and `Deno.inspect` print. */
  [Symbol.for("Deno.customInspect")](): string {
    const b = this.#bound;
    if (b === null) {
      return `BAR1 ${formatSize(this.size)}, physical mode (${
        this.#problem ?? "BAR1 offset = VRAM address"
      })`;
    }
    return `BAR1 ${formatSize(this.size)}, virtual: ${this.boundName}${
      b.instanceBlock === null ? "" : `, instance block ${hex(b.instanceBlock)}`
    }${b.pdb === null ? "" : `, PDB ${hex(b.pdb)}`}${
      b.vmm === null ? "" : `, ${b.vmm.mappings().length} mappings`
    }`;
  }
}

/** What a BAR1 target maps: extents (allocations, ranges) or frame numbers as given. */
function toPieces(target: BarTarget): { extents: Extent[] } | { pfns: number[] } {
  const check = (start: number, size: number): Extent => {
    if (
      !Number.isSafeInteger(start) || start % 4096 !== 0 || !Number.isSafeInteger(size) ||
      size <= 0 || size % 4096 !== 0
    ) {
      fail(
        "EINVAL",
        `VRAM range ${describe(start)} +${describe(size)} must be 4 KiB aligned and non-empty`,
      );
    }
    return { pa: start, size };
  };
  if (target instanceof Allocation) {
    const a = target;
    if (!a.live) fail("EINVAL", `${String(a)} has been freed`);
    if (a.contiguous) return { extents: [check(a.start, a.size)] };
    return { extents: a.blocks.map((b) => check(b.start, b.size)) };
  }
  if (target === null || typeof target !== "object") {
    fail("EINVAL", `map target ${describe(target)} is not an allocation, a range or frame numbers`);
  }
  if ("start" in target && "size" in target) {
    const r = target as { start: number; size: number };
    return { extents: [check(r.start, r.size)] };
  }
  const n = (target as ArrayLike<number>).length;
  // Bounded before anything is copied: BAR1 cannot hold more pages than 2^53 bytes anyway.
  if (!Number.isSafeInteger(n) || n < 0 || n > 2 ** 28) {
    fail("EINVAL", `map target ${describe(target)} is not an array of at most 2^28 frame numbers`);
  }
  return { pfns: Array.from(target as ArrayLike<number>) };
}

/** The bind registers of a state, for messages: `0xb80f40=0x80000041 0x1704=0x0`. */
function registersText(s: Bar1BindState): string {
  const regs = s.registers.map((r) => `${hex(r.offset)}=${hex(r.value, 8)}`).join(" ");
  return `${regs || "no readable bind register"}${s.problem === null ? "" : `; ${s.problem}`}`;
}
