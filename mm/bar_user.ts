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
 * The bind registers (facts §7.4, §13.1): Turing/Ampere/Ada bind through
 * NV_VIRTUAL_FUNCTION_PRIV_BAR1_BLOCK 0xB80F40 (status 0xB80F50), as RM and
 * nouveau do; the legacy NV_PBUS_BAR1_BLOCK 0x1704 (status 0x1710) is a
 * separate register that may read zero while BAR1 is bound, so both are read
 * and the VF one is the one written. Hopper and later: LOW 0xB80F60 then
 * HIGH 0xB80F64, whose write starts the bind; LOW's PENDING/OUTSTANDING
 * bits are the status.
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
import { pollRegister } from "../hw/poll.ts";
import {
  BAR1_BLOCK,
  BAR1_BLOCK_LOW,
  BIND_STATUS,
  getField,
  NV_PBUS_BAR1_BLOCK,
  NV_PBUS_BIND_STATUS,
  NV_RAMIN_ADR_LIMIT_HI,
  NV_RAMIN_ADR_LIMIT_LO,
  NV_RAMIN_PAGE_DIR_BASE_HI,
  NV_RAMIN_PAGE_DIR_BASE_LO,
  NV_RAMIN_SC_PAGE_DIR_BASE,
  NV_RAMIN_SC_PDB_VALID,
  NV_VIRTUAL_FUNCTION_PRIV_BAR1_BLOCK,
  NV_VIRTUAL_FUNCTION_PRIV_BIND_STATUS,
  NV_VIRTUAL_FUNCTION_PRIV_FUNC_BAR1_BLOCK_HIGH_ADDR,
  NV_VIRTUAL_FUNCTION_PRIV_FUNC_BAR1_BLOCK_LOW_ADDR,
  RAMIN_PDB,
  RAMIN_SUBCONTEXTS,
  readValid,
  setField,
} from "../hw/regs.ts";
import {
  bigintOrNumber,
  checkBytes,
  checkMmio,
  checkObject,
  checkOptions,
  checkUint,
} from "../hw/validate.ts";

/** Polls a bind status (or LOW) register until BAR1 PENDING and OUTSTANDING are clear (2 s). */
function pollBind(bar0: Mmio, offset: number, name: string): void {
  pollRegister(
    bar0,
    offset,
    name,
    (v) =>
      getField(v, BIND_STATUS.BAR1_PENDING) === 0 &&
      getField(v, BIND_STATUS.BAR1_OUTSTANDING) === 0,
    { what: "BAR1 bind" },
  );
}

function checkMmuVersion(options: unknown): void {
  const o = checkObject(options, "options");
  checkOptions(o, { mmuVersion: "number" }, "options");
  if (o.mmuVersion !== 2 && o.mmuVersion !== 3) {
    fail("EINVAL", `mmuVersion ${describe(o.mmuVersion)} is not 2 or 3`);
  }
}
import { Allocation } from "./buddy.ts";
import type { GpuMm } from "./gpu_mm.ts";
import type { Pramin } from "./pramin.ts";
import type { Tlb } from "./tlb.ts";
import type { Extent, Mapping } from "./vmm.ts";
import { Vmm } from "./vmm.ts";
import { BarPhysical } from "./bar_physical.ts";
import { u64 } from "./types.ts";

/** Where BAR1's tables are. */
export interface Bar1Binding {
  /** VRAM address of the BAR1 instance block. */
  instanceBlock: number;
  /** VRAM address of the BAR1 root page directory. */
  pdb: number;
}

/** How BAR1 translates CPU accesses. */
export type Bar1Mode = "physical" | "virtual";

/** The BAR1 bind registers as read: what the live binding is and the raw values to restore. */
export interface Bar1BindState {
  /** Physical or virtual. */
  mode: Bar1Mode;
  /** The bound instance block (virtual mode), else null. */
  instanceBlock: number | null;
  /** The register the live binding came from, for messages. */
  via: string;
  /** Each bind register's offset and value (PRI-error reads are left out: never written back). */
  registers: { offset: number; value: number }[];
}

const PAGE = 4096;
const MAP_VA = bigintOrNumber("bar1.map options");

/**
 * Reads the BAR1 bind registers (single reads, nothing written): on MMU v2
 * chips the VF register 0xB80F40 and the legacy 0x1704 (the VF one wins when
 * both are virtual); from Hopper on LOW/HIGH.
 */
export function readBar1Bind(bar0: Mmio, options: { mmuVersion: 2 | 3 }): Bar1BindState {
  checkMmio(bar0, "readBar1Bind bar0");
  checkMmuVersion(options);
  if (options.mmuVersion === 2) {
    const vf = readValid(bar0, NV_VIRTUAL_FUNCTION_PRIV_BAR1_BLOCK);
    const legacy = readValid(bar0, NV_PBUS_BAR1_BLOCK);
    const registers: Bar1BindState["registers"] = [];
    if (vf !== null) registers.push({ offset: NV_VIRTUAL_FUNCTION_PRIV_BAR1_BLOCK, value: vf });
    if (legacy !== null) registers.push({ offset: NV_PBUS_BAR1_BLOCK, value: legacy });
    for (
      const [v, via] of [[vf, "NV_VIRTUAL_FUNCTION_PRIV_BAR1_BLOCK"], [
        legacy,
        "NV_PBUS_BAR1_BLOCK",
      ]] as const
    ) {
      if (
        v !== null && getField(v, BAR1_BLOCK.MODE) === 1 && getField(v, BAR1_BLOCK.TARGET) === 0
      ) {
        return {
          mode: "virtual",
          instanceBlock: getField(v, BAR1_BLOCK.PTR) * PAGE,
          via,
          registers,
        };
      }
    }
    return {
      mode: "physical",
      instanceBlock: null,
      via: "NV_VIRTUAL_FUNCTION_PRIV_BAR1_BLOCK",
      registers,
    };
  }
  const lo = readValid(bar0, NV_VIRTUAL_FUNCTION_PRIV_FUNC_BAR1_BLOCK_LOW_ADDR);
  const hi = readValid(bar0, NV_VIRTUAL_FUNCTION_PRIV_FUNC_BAR1_BLOCK_HIGH_ADDR);
  const registers: Bar1BindState["registers"] = [];
  if (lo !== null && hi !== null) {
    // PENDING/OUTSTANDING are status: never written back.
    registers.push(
      { offset: NV_VIRTUAL_FUNCTION_PRIV_FUNC_BAR1_BLOCK_LOW_ADDR, value: (lo & ~3) >>> 0 },
      { offset: NV_VIRTUAL_FUNCTION_PRIV_FUNC_BAR1_BLOCK_HIGH_ADDR, value: hi },
    );
  }
  const via = "NV_VIRTUAL_FUNCTION_PRIV_FUNC_BAR1_BLOCK_LOW_ADDR";
  if (
    lo !== null && hi !== null && getField(lo, BAR1_BLOCK_LOW.MODE) === 1 &&
    getField(lo, BAR1_BLOCK_LOW.TARGET) === 0
  ) {
    const inst = getField(lo, BAR1_BLOCK_LOW.PTR) * PAGE + hi * 2 ** 32;
    return { mode: "virtual", instanceBlock: inst, via, registers };
  }
  return { mode: "physical", instanceBlock: null, via, registers };
}

/** Reads the PDB an instance block names (through PRAMIN); refuses formats novamm cannot map. */
export function readInstanceBlock(
  pramin: Pramin,
  inst: number,
  options: { mmuVersion: 2 | 3 },
): Bar1Binding | null {
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
  const pdb = getField(word, RAMIN_PDB.LO) * PAGE +
    w.read32(inst + NV_RAMIN_PAGE_DIR_BASE_HI) * 2 ** 32;
  return { instanceBlock: inst, pdb };
}

/**
 * Writes back BAR1 bind registers as {@linkcode readBar1Bind} found them,
 * skipping those that still hold their value; each write that starts a bind
 * is polled to completion before the next (the register the live binding
 * came from goes last). Used by `gpu.close()` and, after a REPL evaluation
 * had to be killed, by the REPL's own clean-up (it has only the registers).
 */
export function restoreBar1Bind(
  bar0: Mmio,
  found: Bar1BindState,
  options: { mmuVersion: 2 | 3 },
): void {
  checkMmio(bar0, "restoreBar1Bind bar0");
  const f = checkObject(found, "restoreBar1Bind found");
  if (!Array.isArray(f.registers) || typeof f.via !== "string") {
    fail("EINVAL", `restoreBar1Bind takes what readBar1Bind returned, not ${describe(found)}`);
  }
  for (const r of f.registers as unknown[]) {
    const reg = checkObject(r, "a bind register");
    checkUint(reg.offset, "bind register offset");
    checkUint(reg.value, "bind register value");
  }
  checkMmuVersion(options);
  const poll = (offset: number, name: string) => pollBind(bar0, offset, name);
  if (options.mmuVersion === 2) {
    const live = found.via === "NV_PBUS_BAR1_BLOCK"
      ? NV_PBUS_BAR1_BLOCK
      : NV_VIRTUAL_FUNCTION_PRIV_BAR1_BLOCK;
    const regs = [...found.registers].sort((a, b) =>
      Number(a.offset === live) - Number(b.offset === live)
    );
    for (const r of regs) {
      if (bar0.read32(r.offset) === r.value) continue;
      bar0.write32(r.offset, r.value);
      if (r.offset === NV_PBUS_BAR1_BLOCK) poll(NV_PBUS_BIND_STATUS, "NV_PBUS_BIND_STATUS");
      else poll(NV_VIRTUAL_FUNCTION_PRIV_BIND_STATUS, "NV_VIRTUAL_FUNCTION_PRIV_BIND_STATUS");
    }
    return;
  }
  if (found.registers.length !== 2) return; // unreadable at open: nothing safe to write back
  const [low, high] = found.registers;
  const now = [(bar0.read32(low.offset) & ~3) >>> 0, bar0.read32(high.offset)];
  if (now[0] === low.value && now[1] === high.value) return;
  bar0.write32(low.offset, low.value);
  bar0.write32(high.offset, high.value); // starts the bind
  poll(NV_VIRTUAL_FUNCTION_PRIV_FUNC_BAR1_BLOCK_LOW_ADDR, "BAR1_BLOCK_LOW_ADDR");
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
    if (this.#user.boundVmm !== this.mapping.vmm) {
      fail(
        "EFAULT",
        `BAR1 mapping ${hex(this.va)} is in ${this.mapping.vmm.name}, but BAR1 is ${
          this.#user.mode === "physical" ? "in physical mode" : `bound to ${this.#user.boundName}`
        } now`,
        "bind its address space again (gpu.bar1.bind(vmm) or gpu.bar1.bringUp())",
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

  /** Reads bytes (32-bit accesses, 8-bit at unaligned edges; wide copies on a write-combining BAR1). */
  readBytes(offset: number, len: number): Uint8Array {
    return this.#bar1.readBytes(this.#at(offset, len), len);
  }

  /** Writes bytes (as {@linkcode BarMapping.readBytes} reads). */
  writeBytes(offset: number, bytes: Uint8Array): void {
    this.#writable();
    checkBytes(bytes, "writeBytes bytes");
    this.#bar1.writeBytes(this.#at(offset, bytes.length), bytes);
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
}

/** The address space BAR1 is bound to now: a Vmm novamm manages, or a foreign instance block. */
interface Bound {
  vmm: Vmm | null;
  instanceBlock: number;
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
  #hit: Mapping | null = null;
  #hitStart = 0;
  #hitEnd = 0;

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
    });
    const found = options.found;
    if (found.instanceBlock !== null) {
      const b = readInstanceBlock(options.pramin, found.instanceBlock, {
        mmuVersion: options.mmuVersion,
      });
      if (b === null) {
        this.#bound = { vmm: null, instanceBlock: found.instanceBlock, pdb: null };
      } else {
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
        this.#bound = { vmm, instanceBlock: b.instanceBlock, pdb: b.pdb };
      }
    }
    this.#bar1.setGuard((offset, length, op) => this.#guard(offset, length, op));
    const bar0 = options.bar0;
    const watched = options.mmuVersion === 2
      ? [NV_VIRTUAL_FUNCTION_PRIV_BAR1_BLOCK, NV_PBUS_BAR1_BLOCK]
      : [NV_VIRTUAL_FUNCTION_PRIV_FUNC_BAR1_BLOCK_HIGH_ADDR];
    for (const offset of watched) bar0.watch(offset, () => this.#foreignWrite());
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
    return b.vmm?.name ?? `the instance block at ${hex(b.instanceBlock)} (not novamm's)`;
  }

  /** Instance block and root directory BAR1 is bound to, or null in physical mode. */
  get binding(): Bar1Binding | null {
    const b = this.#bound;
    return b === null || b.pdb === null ? null : { instanceBlock: b.instanceBlock, pdb: b.pdb };
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
    if (b === null) return;
    const hit = this.#hit;
    if (hit !== null && hit.live && offset >= this.#hitStart && offset + length <= this.#hitEnd) {
      if (op === "w" && !hit.writable) this.#refuse(offset, length, op, "read-only mapping");
      return;
    }
    if (b.vmm === null) this.#refuse(offset, length, op, `BAR1 is bound to ${this.boundName}`);
    const m = b.vmm.liveAt(offset, length);
    if (m === null) this.#refuse(offset, length, op, `no live mapping of ${b.vmm.name} there`);
    if (m === "firmware") return;
    if (op === "w" && !m.writable) this.#refuse(offset, length, op, "read-only mapping");
    this.#hit = m;
    this.#hitStart = Number(m.va);
    this.#hitEnd = this.#hitStart + m.size;
  }

  #refuse(offset: number, length: number, op: "r" | "w", why: string): never {
    fail(
      "EFAULT",
      `refused CPU ${op === "r" ? "read" : "write"} of BAR1 VA ${
        hex(offset)
      } (+${length}): ${why}; while BAR1 is virtual that access is a BAR fault, fatal on hardware`,
      "map the page first (gpu.bar1.map(...)), or use gpu.bar1.physical after gpu.bar1.unbind()",
    );
  }

  /** Someone else (a REPL poke) wrote a bind register: follow what the hardware now has. */
  #foreignWrite(): void {
    if (this.#writing) return;
    this.#hit = null;
    const s = readBar1Bind(this.#o.bar0, { mmuVersion: this.#o.mmuVersion });
    this.#release?.();
    this.#release = null;
    if (s.instanceBlock === null) {
      this.#bound = null;
      return;
    }
    for (const [vmm, a] of this.#instanceBlocks) {
      if (a.start === s.instanceBlock) {
        this.#bound = { vmm, instanceBlock: a.start, pdb: vmm.pdb };
        this.#release = vmm.hold("BAR1 is bound to it");
        return;
      }
    }
    const own = this.#own;
    if (own !== null && this.#o.found.instanceBlock === s.instanceBlock) {
      this.#bound = { vmm: own, instanceBlock: s.instanceBlock, pdb: own.pdb };
      return;
    }
    this.#bound = { vmm: null, instanceBlock: s.instanceBlock, pdb: null };
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
    const b = this.#bound;
    if (b !== null && b.vmm !== null && b.vmm === this.#own) return this;
    if (b === null && this.#o.bootVga && !options.force) {
      fail(
        "EPERM",
        "this card is the boot VGA device (sysfs boot_vga = 1): the console scans out through physical BAR1, and binding BAR1 takes that away",
        "gpu.bar1.bringUp({ force: true }) if the console may go blank; gpu.bar1.physical works without it",
      );
    }
    if (b !== null && b.vmm === null) {
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
   * be touched through BAR1.
   */
  bind(vmm: Vmm): void {
    if (!(vmm instanceof Vmm)) fail("EINVAL", `${describe(vmm)} is not a Vmm`);
    const mm = this.#o.mm();
    if (!mm.vmms().includes(vmm)) {
      fail("EINVAL", `${vmm.name} is not a live address space of this GPU (gpu.mm.createVmm)`);
    }
    this.#writable("bar1.bind()");
    if (this.#bound?.vmm === vmm) return;
    this.#bindTo(vmm);
  }

  /**
   * Puts BAR1 back in physical mode (BAR1 offset = VRAM address). Address
   * spaces stay. Should the bind status poll fail, BAR1 is still treated as
   * virtual (the safe assumption for the guard).
   */
  unbind(): void {
    this.#writable("bar1.unbind()");
    if (this.#bound === null) return;
    this.#writeBind(null);
    this.#setBound(null);
  }

  #setBound(bound: Bound | null): void {
    this.#hit = null;
    this.#release?.();
    this.#release = null;
    this.#bound = bound;
    const vmm = bound?.vmm ?? null;
    if (vmm !== null && !(this.#adopted && vmm === this.#own)) {
      this.#release = vmm.hold("BAR1 is bound to it");
    }
  }

  /** The instance block of `vmm`, written (not yet flushed) on first use. */
  #instanceBlock(vmm: Vmm): Allocation {
    let a = this.#instanceBlocks.get(vmm);
    if (a !== undefined && a.live) return a;
    const mm = this.#o.mm();
    a = mm.buddy.alloc(PAGE);
    try {
      using w = this.#o.pramin.borrow();
      const inst = a.start;
      w.fill(inst, PAGE, 0);
      let word = setField(0, RAMIN_PDB.TARGET, 0);
      word = setField(word, RAMIN_PDB.USE_VER2_PT_FORMAT, 1);
      word = setField(word, RAMIN_PDB.BIG_PAGE_SIZE, 1);
      word = setField(word, RAMIN_PDB.LO, Math.floor((vmm.pdb % 2 ** 32) / PAGE));
      const hi = Math.floor(vmm.pdb / 2 ** 32);
      w.write32(inst + NV_RAMIN_PAGE_DIR_BASE_LO, word);
      w.write32(inst + NV_RAMIN_PAGE_DIR_BASE_HI, hi);
      const limit = Number(vmm.vaSize) - 1;
      w.write32(inst + NV_RAMIN_ADR_LIMIT_LO, ((limit % 2 ** 32) | 0xfff) >>> 0);
      w.write32(inst + NV_RAMIN_ADR_LIMIT_HI, Math.floor(limit / 2 ** 32));
      // Volta+ subcontexts as nouveau's gv100_vmm_join: 0 valid with the same PDB, the rest
      // invalid. SC_CONFIG, the high words of subcontexts 1..63 and of SC_PDB_VALID stay 0
      // from the fill above.
      for (let i = 0; i < RAMIN_SUBCONTEXTS; i++) {
        const at = inst + NV_RAMIN_SC_PAGE_DIR_BASE + i * 0x10;
        w.write32(at, i === 0 ? word : 1);
        if (i === 0) w.write32(at + 4, hi);
      }
      w.write32(inst + NV_RAMIN_SC_PDB_VALID, 1);
    } catch (e) {
      a.free();
      throw e;
    }
    const unpin = a.pin(`the instance block of ${vmm.name}`);
    const block = a;
    this.#instanceBlocks.set(vmm, block);
    vmm.whenDestroyed(() => {
      if (this.#instanceBlocks.get(vmm) === block) this.#instanceBlocks.delete(vmm);
      unpin();
      block.free();
    });
    return block;
  }

  /** Binds BAR1 to `vmm` through `inst` (by default its own instance block, made on first use). */
  #bindTo(vmm: Vmm, inst: number = this.#instanceBlock(vmm).start): void {
    // The instance block and the tables must be in VRAM before the GPU fetches them.
    this.#o.tlb.fbFlush();
    try {
      this.#writeBind(inst);
    } finally {
      // Even when the status poll fails the bind register was written: treat BAR1 as
      // virtual (the guard then only lets live mappings through, which is safe either way).
      this.#setBound({ vmm, instanceBlock: inst, pdb: vmm.pdb });
    }
    this.#o.tlb.invalidate(vmm.pdb, { hubOnly: true }); // flushed above, nothing written since
  }

  /** Writes the bind registers for `inst` (null: physical) and polls the bind status. */
  #writeBind(inst: number | null): void {
    const bar0 = this.#o.bar0;
    this.#changed = true;
    this.#writing = true;
    try {
      if (this.#o.mmuVersion === 2) {
        let v = 0;
        if (inst !== null) {
          v = setField(0, BAR1_BLOCK.PTR, inst / PAGE);
          v = setField(v, BAR1_BLOCK.MODE, 1);
        }
        bar0.write32(NV_VIRTUAL_FUNCTION_PRIV_BAR1_BLOCK, v);
        this.#pollBind(
          NV_VIRTUAL_FUNCTION_PRIV_BIND_STATUS,
          "NV_VIRTUAL_FUNCTION_PRIV_BIND_STATUS",
        );
      } else {
        let lo = 0;
        if (inst !== null) {
          lo = setField(0, BAR1_BLOCK_LOW.PTR, (inst % 2 ** 32) / PAGE);
          lo = setField(lo, BAR1_BLOCK_LOW.MODE, 1);
        }
        bar0.write32(NV_VIRTUAL_FUNCTION_PRIV_FUNC_BAR1_BLOCK_LOW_ADDR, lo);
        // The HIGH write starts the bind.
        bar0.write32(
          NV_VIRTUAL_FUNCTION_PRIV_FUNC_BAR1_BLOCK_HIGH_ADDR,
          inst === null ? 0 : Math.floor(inst / 2 ** 32),
        );
        this.#pollBind(
          NV_VIRTUAL_FUNCTION_PRIV_FUNC_BAR1_BLOCK_LOW_ADDR,
          "BAR1_BLOCK_LOW_ADDR",
        );
      }
    } finally {
      this.#writing = false;
    }
  }

  #pollBind(offset: number, name: string): void {
    pollBind(this.#o.bar0, offset, name);
  }

  /**
   * Writes back the bind registers the session found (run by `gpu.close()`),
   * then frees novamm's instance blocks. Nothing is written when the session
   * never changed the binding, or when it is read-only.
   */
  restore(): void {
    if (this.#o.readOnly || !this.#changed) return;
    this.#writing = true;
    try {
      restoreBar1Bind(this.#o.bar0, this.#o.found, { mmuVersion: this.#o.mmuVersion });
    } finally {
      this.#writing = false;
    }
    this.#changed = false;
    this.#foreignWrite();
  }

  /**
   * Maps VRAM into the bound BAR1 address space and returns CPU access to it
   * (use with `using`). On a physical-mode card BAR1 is brought up first
   * (refused on the boot VGA device: see {@linkcode BarUser.bringUp}).
   */
  map(target: BarTarget, options: BarMapOptions = {}): BarMapping {
    checkOptions(
      options,
      { writable: "boolean", va: MAP_VA, pageSize: "number" },
      "bar1.map options",
    );
    const pieces = toPieces(target);
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
    const mapOptions = { ...options, label: "bar1" };
    // Extents (an allocation's blocks, a range) cost O(PTEs); frame numbers are taken as given.
    const prepared = "extents" in pieces
      ? vmm.prepareExtents(pieces.extents, mapOptions)
      : vmm.prepareMap(pieces.pfns, mapOptions);
    if (Number(prepared.va) + size > this.size) {
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

  /** The one-line summary the REPL and `Deno.inspect` print. */
  [Symbol.for("Deno.customInspect")](): string {
    const b = this.#bound;
    if (b === null) {
      return `BAR1 ${formatSize(this.size)}, physical mode (BAR1 offset = VRAM address)`;
    }
    return `BAR1 ${formatSize(this.size)}, virtual: ${this.boundName}, instance block ${
      hex(b.instanceBlock)
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
