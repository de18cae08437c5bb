/**
 * `GpuMm` (nova-core's GpuMm): the VRAM buddy allocator, PRAMIN and the TLB
 * of one GPU, and the factory for its address spaces.
 *
 * @module
 */

import { describe, fail, formatSize, hex } from "../hw/errors.ts";
import { BuddyAllocator } from "./buddy.ts";
import type { MmuFormat } from "./pagetable/format.ts";
import type { Pramin } from "./pramin.ts";
import type { Tlb } from "./tlb.ts";
import { Vmm } from "./vmm.ts";
import { bigintOrNumber, checkObject, checkOptions, checkUint } from "../hw/validate.ts";
import {
  memtest,
  type MemtestHost,
  type MemtestOptions,
  type MemtestResult,
  type MemtestTarget,
} from "./memtest.ts";

const VA_SIZE = bigintOrNumber("options");

/** What {@linkcode GpuMm} is built from. */
export interface GpuMmOptions {
  /** PRAMIN of the GPU. */
  pramin: Pramin;
  /** TLB of the GPU. */
  tlb: Tlb;
  /** Page-table format of the chip. */
  format: MmuFormat;
  /** VRAM bytes. */
  vramSize: number;
  /** The usable VRAM region [start, end) the allocator manages. */
  usable: { start: number; end: number };
  /**
   * Why there is no allocator (a read-only device whose usable region is
   * empty: a snapshot that leaves novamm nothing). Opening, walking, dumping
   * and verifying existing address spaces work; every allocation (`buddy`,
   * `createVmm`, a map that needs a table, `memtest`) fails EPERM with this.
   * `usable` may then be empty.
   */
  noAllocator?: string;
  /**
   * Whether the table at VRAM address `addr`, in the tree whose root is
   * `pdb`, is known to be firmware's (a region of the VRAM layout, or a BAR1
   * firmware bound at open), not merely one this session did not make. The
   * `Gpu` passes its rule; without it every such table counts as firmware's.
   */
  firmwareTable?: (addr: number, pdb: number) => boolean;
  /**
   * The GPU this belongs to, for {@linkcode GpuMm.memtest} to reach BAR1
   * (the `Gpu` passes `() => this`); without it memtest uses PRAMIN only.
   */
  memtestHost?: () => MemtestHost;
}

/**
 * Memory management of one GPU.
 *
 * @example
 * ```ts
 * import { openGpu } from "../mod.ts";
 * using gpu = await openGpu({ device: "sim" });
 * const a = gpu.mm.buddy.alloc(2 << 20);
 * const ch = gpu.mm.createVmm({ vaSize: 1n << 40n });
 * ```
 */
export class GpuMm {
  readonly #buddy: BuddyAllocator | null;
  /** PRAMIN. */
  readonly pramin: Pramin;
  /** TLB. */
  readonly tlb: Tlb;
  /** Page-table format of this GPU. */
  readonly format: MmuFormat;
  /** VRAM bytes. */
  readonly vramSize: number;
  readonly #vmms = new Set<Vmm>();
  readonly #memtestHost: (() => MemtestHost) | null;
  readonly #firmwareTable: (addr: number, pdb: number) => boolean;
  /**
   * Why there is no allocator, or null: a read-only device whose usable
   * region is empty (existing address spaces open, walk, dump and verify;
   * allocations fail EPERM naming this).
   */
  readonly noAllocator: string | null;

  /** Constructs it (see the class documentation for who does and how). */
  constructor(options: GpuMmOptions) {
    const { start, end } = options.usable;
    this.noAllocator = options.noAllocator ?? null;
    this.#buddy = this.noAllocator === null
      ? new BuddyAllocator({ start, size: end - start })
      : null;
    this.#firmwareTable = options.firmwareTable ?? (() => true);
    this.pramin = options.pramin;
    this.tlb = options.tlb;
    this.format = options.format;
    this.vramSize = options.vramSize;
    this.#memtestHost = options.memtestHost ?? null;
  }

  /**
   * The VRAM allocator over the usable region. On a read-only device whose
   * usable region is empty there is none: reading this fails EPERM naming
   * why ({@linkcode GpuMm.noAllocator}).
   */
  get buddy(): BuddyAllocator {
    if (this.#buddy === null) {
      fail(
        "EPERM",
        `no VRAM allocator: ${this.noAllocator}; nothing can be allocated`,
        "existing address spaces still open read-only: gpu.mm.openVmm({ pdb, vaSize }), gpu.walk(va, { pdb })",
      );
    }
    return this.#buddy;
  }

  /**
   * @internal Whether the table at `addr` in the tree rooted at `pdb` is
   * firmware's (a region firmware owns, or a BAR1 firmware bound at open)
   * rather than merely not made by this session (a snapshot's, another
   * tool's): the label `Vmm.dump` and the views print for it.
   */
  firmwareTable(addr: number, pdb: number): boolean {
    checkUint(addr, "table address");
    checkUint(pdb, "PDB");
    return this.#firmwareTable(addr, pdb);
  }

  /**
   * Tests VRAM with the classic patterns (see `mm/memtest.ts`): an
   * allocation, a `{ start, size }` range, or `"all"` free usable VRAM
   * (default), through BAR1 with a PRAMIN read-back, or PRAMIN. Everything
   * it maps and allocates is released when it returns, also when
   * interrupted (Ctrl-C).
   *
   * @example
   * ```ts
   * import { openGpu } from "../mod.ts";
   * using gpu = await openGpu({ device: "sim" });
   * const a = gpu.mm.buddy.alloc(2 << 20);
   * const r = await gpu.mm.memtest(a, { patterns: ["solid0", "solid1"] });
   * r.summary; // "memtest PASS: allocation 0x... +2 MiB (1 block), 2 patterns, 0 errors, ..."
   * ```
   */
  memtest(target: MemtestTarget = "all", options: MemtestOptions = {}): Promise<MemtestResult> {
    try {
      const host: MemtestHost = this.#memtestHost?.() ?? {
        mm: this,
        pramin: this.pramin,
        vram: {
          size: this.vramSize,
          usable: { start: this.buddy.start, end: this.buddy.end },
        },
        bar1: null,
        device: null,
      };
      return memtest(host, target, options);
    } catch (e) {
      return Promise.reject(e);
    }
  }

  #deps() {
    const allocator = () => this.buddy;
    return {
      pramin: this.pramin,
      tlb: this.tlb,
      // Read when a table is made or freed: without an allocator that fails EPERM then, not at open.
      get buddy(): BuddyAllocator {
        return allocator();
      },
      format: this.format,
      vramSize: this.vramSize,
      tablesChanged: () => {
        this.tablesVersion++;
      },
      firmwareTable: (addr: number, pdb: number) => this.#firmwareTable(addr, pdb),
    };
  }

  /** @internal Changes whenever tables may have been made or freed (the write policy's cache key). */
  tablesVersion = 0;

  /**
   * A new address space (a channel's, say) with a fresh, zeroed root
   * directory from the buddy allocator.
   */
  createVmm(options: { vaSize?: bigint | number; name?: string; bar?: boolean } = {}): Vmm {
    checkOptions(
      options,
      { vaSize: VA_SIZE, name: "string", bar: "boolean" },
      "createVmm options",
    );
    const vaSize = this.#vaSize(options.vaSize ?? 1n << BigInt(this.format.vaBits));
    const root = this.buddy.alloc(4096);
    try {
      using w = this.pramin.borrow();
      w.fill(root.start, this.format.directories[0].tableBytes, 0);
    } catch (e) {
      root.free();
      throw e;
    }
    const vmm = new Vmm(this.#deps(), {
      pdb: root.start,
      vaSize,
      rootAllocation: root,
      name: options.name,
      bar: options.bar,
    });
    this.#vmms.add(vmm);
    this.tablesVersion++;
    return vmm;
  }

  /**
   * An address space over existing tables (firmware's BAR1, say): valid
   * entries already there are scanned and their VA marked taken.
   */
  openVmm(options: { pdb: number; vaSize: bigint | number; name?: string; bar?: boolean }): Vmm {
    checkObject(options, "openVmm options");
    checkOptions(
      options,
      { pdb: "number", vaSize: VA_SIZE, name: "string", bar: "boolean" },
      "openVmm options",
    );
    const vaSize = this.#vaSize(options.vaSize);
    const other = this.vmms().find((v) => v.pdb === options.pdb);
    if (other !== undefined) {
      // Two shadows of one tree would each free tables the other still writes.
      fail("EBUSY", `PDB ${hex(options.pdb)} is already managed by ${other.name}; use that Vmm`);
    }
    const vmm = new Vmm(this.#deps(), {
      pdb: options.pdb,
      vaSize,
      scan: true,
      name: options.name,
      bar: options.bar,
    });
    // Tables built by hand in an allocation: that allocation must not be freed (and handed
    // out again) while this space still walks and writes them.
    const holder = this.#buddy?.allocations().find((a) =>
      a.blocks.some((b) => options.pdb >= b.start && options.pdb < b.start + b.size)
    );
    if (holder !== undefined) vmm.whenDestroyed(holder.pin(`the page directory of ${vmm.name}`));
    this.#vmms.add(vmm);
    this.tablesVersion++;
    return vmm;
  }

  /** Address spaces made here and not destroyed. */
  vmms(): Vmm[] {
    for (const v of this.#vmms) if (v.destroyed) this.#vmms.delete(v);
    return [...this.#vmms];
  }

  /** Checks a VA size: an integer in 4 KiB..2^vaBits, a multiple of 4 KiB. */
  #vaSize(raw: bigint | number): bigint {
    const maxVa = 1n << BigInt(this.format.vaBits);
    if (typeof raw !== "bigint" && !Number.isSafeInteger(raw)) {
      fail("EINVAL", `VA size ${describe(raw)} is not an integer`);
    }
    const vaSize = BigInt(raw);
    if (vaSize <= 0n || vaSize > maxVa || vaSize % 4096n !== 0n) {
      fail(
        "EINVAL",
        `VA size ${hex(vaSize)} must be a multiple of 4 KiB in 0x1000..${
          hex(maxVa)
        } (${this.format.vaBits}-bit VA)`,
      );
    }
    return vaSize;
  }

  /** Destroys an address space (unmaps everything, frees its root). */
  destroyVmm(vmm: Vmm, teardown?: symbol): void {
    if (!(vmm instanceof Vmm)) fail("EINVAL", `${describe(vmm)} is not a Vmm`);
    vmm.destroy(teardown);
    this.#vmms.delete(vmm);
  }

  /** The one-line summary as text (`${x}` prints it, not `[object Object]`). */
  toString(): string {
    return (this as unknown as Record<symbol, () => string>)[Symbol.for("Deno.customInspect")]();
  }

  /** The one-line summary the REPL and `Deno.inspect` print. */
  [Symbol.for("Deno.customInspect")](): string {
    if (this.#buddy === null) {
      return `GpuMm MMU v${this.format.version}: no allocator (${this.noAllocator}), ${this.vmms().length} address spaces`;
    }
    const s = this.#buddy.stats();
    return `GpuMm MMU v${this.format.version}: VRAM ${formatSize(s.total)} usable, ${
      formatSize(s.free)
    } free, ${this.vmms().length} address spaces`;
  }
}
