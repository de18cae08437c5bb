/**
 * The names the REPL (and scripts run by `repl.ts`) find preloaded. This is
 * the one place to add a name: one line in {@linkcode buildGlobals} with the
 * value, a one-line description and an example; `help()`, completion and the
 * script globals pick it up from there.
 *
 * @module
 */

import { readRegisters } from "../hw/reg_dump.ts";
import { describe, fail, formatSize, hex } from "../hw/errors.ts";
import { u64 } from "../mm/types.ts";
import type { BarUser } from "../mm/bar_user.ts";
import { type Gpu, openGpu } from "../mm/gpu.ts";
import type { GpuMm } from "../mm/gpu_mm.ts";
import { mmu, type MmuFormat, type WalkResult } from "../mm/pagetable/mod.ts";
import type { V2PteFields, V3PteFields } from "../mm/pagetable/mod.ts";
import type { Vmm } from "../mm/vmm.ts";
import { bar1Pdb, hexdump32Text, hexdumpText, layoutLines, Text } from "./repl_format.ts";
import { buildRegisters, NamedRegister } from "./registers.ts";
import { classHelp, classNames, codecHelp, helpFor, paramsOf, propertyHelp } from "./help.ts";
import { Allocation } from "../mm/buddy.ts";
import { checkTimeout, pollRegister, type PollResult } from "../hw/poll.ts";
import { interruptPoint } from "../hw/mmio.ts";
import { checkOptions, checkUint, didYouMean } from "../hw/validate.ts";
import { NovaError } from "../hw/errors.ts";
import { decodeFor, lookupFor, readGroup, registerHelp, registerProxy } from "./regdb_globals.ts";
import {
  type DecodedValue,
  loadedRegisterDb,
  loadRegisterDb,
  type RegisterHit,
  suggestRegister,
} from "../hw/regdb/mod.ts";
import { watchHelpers } from "./watch.ts";
import { knownRegisters } from "../hw/reg_dump.ts";
import { parseReplArgs } from "./repl_args.ts";

/** Something {@linkcode ReplHelpers.hexdump} can read: a BAR1 mapping, a VRAM view, ... */
export interface ByteSource {
  /** Reads `len` bytes at `offset` inside the source. */
  readBytes(offset: number, len: number): Uint8Array;
  /** Where the source starts (shown in the address column), e.g. a mapping's BAR1 VA. */
  va?: bigint | number;
  /** Bytes in the source. */
  size?: number;
}

/** One preloaded name: its value and what `help()` says about it. */
export interface GlobalEntry {
  /** The name. */
  name: string;
  /** The value (made on first use for the lazy ones: `mm`, `bar1`, `vmm`). */
  readonly value: unknown;
  /** One line: what it is. */
  about: string;
  /** A line to type. */
  example: string;
}

/** The helper functions every session has. */
export interface ReplHelpers {
  /** `hex(n)` → `"0x..."`. */
  hex: (value: number | bigint, pad?: number) => string;
  /** Hex dump of VRAM (an address), of an allocation, of a mapping, or of bytes. */
  hexdump: (
    source: number | bigint | ByteSource | Uint8Array | Allocation,
    len?: number,
    start?: number,
  ) => Text;
  /** 32-bit word dump of VRAM (an address), of an allocation, of a mapping, or of bytes. */
  hexdump32: (
    source: number | bigint | ByteSource | Uint8Array | Allocation,
    len?: number,
    start?: number,
  ) => Text;
  /** Named registers of this chip: `reg.NAME.read()`, `.write(v)`, `.set(field, v)`, ... */
  reg: Record<string, NamedRegister>;
  /** Registers by offset, name, glob or substring (the chip's header database). */
  lookup: (query: number | string) => RegisterHit[] | Promise<RegisterHit[]>;
  /** A register value decoded field by field with the header's value names. */
  decode: (register: string | number, value: number) => DecodedValue | Promise<DecodedValue>;
  /** BAR0 read-modify-write `v | bits`. */
  set32: (offset: number, bits: number) => void;
  /** BAR0 read-modify-write `v & ~bits`. */
  clear32: (offset: number, bits: number) => void;
  /** BAR0 read-modify-write `(v & ~clear) | set`. */
  mask32: (offset: number, clear: number, set: number) => void;
  /** Watches a register or VRAM word: polled after every input, changes printed. */
  watch: ReturnType<typeof watchHelpers>["watch"];
  /** Stops watches (all, or by name / offset); returns how many. */
  unwatch: ReturnType<typeof watchHelpers>["unwatch"];
  /** The watches and their last values. */
  watches: ReturnType<typeof watchHelpers>["watches"];
  /** 1024. */
  KiB: number;
  /** 2^20. */
  MiB: number;
  /** 2^30. */
  GiB: number;
  /** Decodes a raw PTE of this GPU's MMU version. */
  pte: (raw: bigint | number | V2PteFields | V3PteFields) => unknown;
  /** Decodes a raw PDE, or a PD0 dual PDE given as `[low, high]`. */
  pde: (raw: bigint | number | readonly [bigint | number, bigint | number]) => unknown;
  /** Walks a GPU VA through the BAR1 page tables (or those at `pdb`). */
  walk: (va: bigint | number, pdb?: number | { pdb?: number }) => WalkResult;
  /** MMIO counters since open; `stats.reset()` zeroes them. */
  stats: (() => Record<string, number>) & { reset(): void };
  /**
   * Lists the preloaded names, or describes one: `help(pramin)`, a member
   * without reading it (`help(bar1, "mode")`, `help("bar1.mode")`), a class
   * by name (`help("Vmm")`), a codec function (`help(mmu.v2.encodePte)`).
   */
  help: (topic?: unknown, member?: string) => Text;
  /** Polls a register until `(read & mask) === value`; ETIMEDOUT naming the last value. */
  poll32: (
    register: number | string | NamedRegister,
    mask: number,
    value: number,
    options?: { timeoutMs?: number },
  ) => { value: number; polls: number };
  /** Waits `us` microseconds (busy; Ctrl-C stops it). */
  udelay: (us: number) => void;
  /** Waits `ms` milliseconds (Ctrl-C stops it). */
  msleep: (ms: number) => void;
}

/** The preloaded names (`sim` only on the simulator). */
export interface ReplGlobals extends ReplHelpers {
  /** The open GPU. */
  gpu: Gpu;
  /** BAR0 registers. */
  bar0: Gpu["bar0"];
  /** PRAMIN. */
  pramin: Gpu["pramin"];
  /** TLB flushes. */
  tlb: Gpu["tlb"];
  /** Memory manager: buddy allocator, address spaces (`gpu.mm`, made on first use). */
  mm: GpuMm;
  /** The address space BAR1 is bound to now (`gpu.bar1.vmm`; ENODEV while BAR1 is physical). */
  vmm: Vmm;
  /** BAR1 (`gpu.bar1`, made on first use): mode, physical access, bring-up, binding, maps. */
  bar1: BarUser;
  /** The MMU entry codecs `mmu.v2`, `mmu.v3`. */
  mmu: typeof mmu;
  /** This GPU's page-table format. */
  format: MmuFormat;
  /** The simulator behind a `sim` device. */
  sim?: NonNullable<Gpu["sim"]>;
}

const ENTRIES = Symbol("novamm.globals.entries");

// The banner's pieces live with it (cli/repl_format.ts, loaded before this module); `regs()`
// prints the layout the same way.
export { bar1Pdb, layoutLines };

/** Formats a byte count for people: `24 GiB`, `1.5 MiB`, `512 B` (the one size formatter). */
export { formatSize };

function members(value: unknown): string[] {
  if (value === null || value === undefined) return [];
  const names = new Set<string>();
  let o: object | null = Object(value);
  while (o !== null && o !== Object.prototype && o !== Function.prototype) {
    if (!Array.isArray(o) && !ArrayBuffer.isView(o)) {
      for (const n of Object.getOwnPropertyNames(o)) {
        if (!n.startsWith("_") && n !== "constructor" && /^[A-Za-z$][\w$]*$/.test(n)) names.add(n);
      }
    }
    o = Object.getPrototypeOf(o);
  }
  return [...names].sort();
}

/** A value made on first use (and then kept, unless `live`: then asked for afresh each time). */
class Lazy {
  #make: () => unknown;
  #done = false;
  #value: unknown;
  #live: boolean;
  constructor(make: () => unknown, live = false) {
    this.#make = make;
    this.#live = live;
  }
  get(): unknown {
    if (this.#live) {
      const v = this.#make();
      this.#done = true;
      return v;
    }
    if (!this.#done) {
      this.#value = this.#make();
      this.#done = true;
    }
    return this.#value;
  }
  get made(): boolean {
    return this.#done;
  }
}

/**
 * Builds the preloaded names for `gpu`. `mm`, `bar1` and `vmm` are made on
 * first use (BAR1 scans the firmware's tables; on a card without a virtual
 * BAR1 using it fails with ENODEV, the rest still works).
 *
 * @example
 * ```ts
 * import { openGpu } from "../mod.ts";
 * const g = buildGlobals(await openGpu({ device: "sim" }));
 * g.hexdump(0x100000, 32);
 * g.help();
 * ```
 */
export function buildGlobals(gpu: Gpu): ReplGlobals {
  const codec = gpu.chip.mmuVersion === 3 ? mmu.v3 : mmu.v2;
  const v = `v${gpu.chip.mmuVersion}`;

  // One reader for both dumps: a VRAM address (PRAMIN), a Uint8Array, or a mapping.
  const dumpSource = (
    source: number | bigint | ByteSource | Uint8Array | Allocation,
    len: number,
    start: number,
    what: string,
  ): [Uint8Array, number | bigint] => {
    if (!Number.isSafeInteger(len) || len < 0 || len > 64 * 2 ** 20) {
      fail("EINVAL", `${what} length ${String(len)} is not in 0..64 MiB`);
    }
    if (typeof source === "number" || typeof source === "bigint") {
      const addr = Number(source);
      return [gpu.pramin.readBytes(addr, len), addr];
    }
    if (source instanceof Uint8Array) {
      return [source.subarray(0, Math.min(len, source.length)), start];
    }
    if (source instanceof Allocation) {
      // Its VRAM through PRAMIN, the address column in VRAM addresses.
      if (!source.contiguous) {
        fail(
          "EINVAL",
          `${what} of a non-contiguous allocation: dump one block, e.g. ${what}(a.blocks[0].start)`,
        );
      }
      if (!source.live) fail("ENODEV", `${what}: the allocation has been freed`);
      checkUint(start, `${what} start`);
      const n = Math.min(len, Math.max(0, source.size - start));
      return [gpu.pramin.readBytes(source.start + start, n), source.start + start];
    }
    if (typeof source === "object" && source !== null && typeof source.readBytes === "function") {
      const size = typeof source.size === "number" ? source.size : undefined;
      const n = size === undefined ? len : Math.min(len, Math.max(0, size - start));
      const base = source.va === undefined ? 0n : BigInt(source.va);
      return [source.readBytes(start, n), base + BigInt(start)];
    }
    return fail(
      "EINVAL",
      `${what} takes a VRAM address, an Allocation, a Uint8Array or a mapping (something with readBytes(offset, len)), not ${
        describe(source)
      }`,
    );
  };
  const hexdump = (
    source: number | bigint | ByteSource | Uint8Array | Allocation,
    len = 256,
    start = 0,
  ): Text => new Text(hexdumpText(...dumpSource(source, len, start, "hexdump")));
  const hexdump32 = (
    source: number | bigint | ByteSource | Uint8Array | Allocation,
    len = 256,
    start = 0,
  ): Text => new Text(hexdump32Text(...dumpSource(source, len, start, "hexdump32")));

  const pde = (raw: bigint | number | readonly [bigint | number, bigint | number]) =>
    Array.isArray(raw)
      ? (raw.length === 2
        ? codec.decodeDualPde([u64(raw[0], "dual PDE low word"), u64(raw[1], "dual PDE high word")])
        : fail("EINVAL", `a dual PDE is [low, high], not an array of ${raw.length}`))
      : codec.decodePde(u64(raw as bigint | number, "PDE"));

  // The same arguments as gpu.walk: walk(va), walk(va, pdb) or walk(va, { pdb }).
  const walk = (va: bigint | number, pdb?: number | { pdb?: number }): WalkResult =>
    gpu.walk(va, pdb);

  const stats = Object.assign(() => {
    const s = gpu.stats();
    return Object.defineProperty({ ...s }, Symbol.for("Deno.customInspect"), {
      value: () =>
        `MMIO since open: ${s.mmioReads} reads, ${s.mmioWrites} writes, ${s.windowMoves} window moves`,
    }) as Record<string, number>;
  }, { reset: () => gpu.resetStats() });

  const entries: { name: string; value: unknown; about: string; example: string }[] = [];
  const add = (name: string, value: unknown, about: string, example: string) => {
    if (value !== undefined && value !== null) entries.push({ name, value, about, example });
  };
  const lazy = (make: () => unknown) => new Lazy(make);
  // One line per preloaded name: value, what it is, an example.
  add("gpu", gpu, "the open GPU: chip, vram, stats(), close()", "gpu.chip; gpu.vram.usable");
  add("bar0", gpu.bar0, "BAR0 registers, raw and counted", "bar0.read32(0xa00)");
  add("pramin", gpu.pramin, "VRAM through the PRAMIN window", "using w = pramin.window()");
  add(
    "tlb",
    gpu.tlb,
    "FB flush + TLB invalidation",
    'tlb.flush(vmm.pdb, { hubOnly: true }); tlb.flush("all")',
  );
  add(
    "mm",
    lazy(() => gpu.mm),
    "VRAM buddy allocator and address spaces",
    "a = mm.buddy.alloc(2 << 20)",
  );
  add(
    "bar1",
    lazy(() => gpu.bar1),
    "BAR1: .mode, .physical, bringUp(), bind(), map VRAM for the CPU",
    "bar1.physical.read32(a.start); using m = bar1.map(a, { writable: true })",
  );
  add(
    "vmm",
    new Lazy(() => gpu.bar1.vmm, true),
    "the address space BAR1 is bound to (after bar1.bringUp())",
    "vmm.translate(m.va); vmm.dump()",
  );
  add("mmu", mmu, "page-table entry codecs, pure", `mmu.${v}.decodePte(0x1234501n)`);
  add("format", gpu.format, `this GPU's MMU ${v} page-table format`, "format.directories");
  add("sim", gpu.sim, "the simulator behind this device", "sim.errors(); sim.flushes");
  add("hex", hex, "number or bigint as 0x-hex text", "hex(4096)");
  add(
    "hexdump",
    hexdump,
    "hex dump of VRAM, an allocation, a mapping or bytes",
    "hexdump(0x100000, 64); hexdump(a)",
  );
  add(
    "hexdump32",
    hexdump32,
    "32-bit word dump of VRAM, a mapping or bytes",
    "hexdump32(a.start, 64)",
  );
  const known = knownRegisters(gpu.chip.architecture, gpu.chip.chipId);
  const regs = buildRegisters(gpu.bar0, known);
  const regProxy = registerProxy(gpu.bar0, gpu.chip, regs.reg);
  // The chip's register database (NVIDIA's headers) loads in the background.
  loadRegisterDb(gpu.chip).catch(() => undefined);
  add(
    "reg",
    regProxy,
    "every register of this chip: .read() decoded, .write, .set/.clear field, .mask",
    "reg.NV_PBUS_BAR0_WINDOW.read()",
  );
  add(
    "lookup",
    lookupFor(gpu.chip),
    "registers by offset, name, glob or substring, with fields and reset values",
    'lookup(0x100ce0); lookup("NV_PFB_PRI_MMU_*")',
  );
  add(
    "decode",
    decodeFor(gpu.chip),
    "a register value, field by field with the header's value names",
    'decode("NV_PMC_BOOT_0", 0x172000a1)',
  );
  add("set32", regs.set32, "BAR0 read-modify-write: v | bits", "set32(0x1700, 0x1)");
  add("clear32", regs.clear32, "BAR0 read-modify-write: v & ~bits", "clear32(0x1700, 0x1)");
  add(
    "mask32",
    regs.mask32,
    "BAR0 read-modify-write: (v & ~clear) | set",
    "mask32(0x1700, 0xff, 0x10)",
  );
  const w = watchHelpers(gpu, known);
  // A misspelt register name in a string: the header database's nearest name.
  const suggestIn = (e: unknown): never => {
    const m = e instanceof NovaError ? /no register named "([^"]+)"/.exec(e.message) : null;
    const db = loadedRegisterDb(gpu.chip);
    const near = m === null || db === undefined ? null : suggestRegister(db, m[1]);
    if (near === null) throw e;
    const err = e as NovaError;
    throw new NovaError(err.code, err.message.replace(`${err.code}: `, ""), {
      hint: `did you mean "${near}"?`,
    });
  };
  const watch = ((...args: Parameters<typeof w.watch>) => {
    try {
      return w.watch(...args);
    } catch (e) {
      return suggestIn(e);
    }
  }) as typeof w.watch;
  add(
    "watch",
    watch,
    "poll a register or VRAM word after every input; print changes",
    'watch("NV_PBUS_BAR0_WINDOW"); watch(a.start, { vram: true })',
  );
  add("unwatch", w.unwatch, "stop watches (all, or by name / offset)", "unwatch()");
  add("watches", w.watches, "the watches and their last values", "watches()");
  add("KiB", 1024, "1024: sizes without shifts (4 * KiB)", "mm.buddy.alloc(64 * KiB)");
  add(
    "MiB",
    2 ** 20,
    "2^20 (`5 << 30` is 32-bit in JavaScript: use 5 * GiB)",
    "mm.buddy.alloc(4 * MiB)",
  );
  add("GiB", 2 ** 30, "2^30", "mm.createVmm({ vaSize: 64 * GiB })");
  add(
    "pte",
    // Its own output back in: a decoded PTE (or any fields object) is re-encoded and decoded.
    (raw: bigint | number | V2PteFields | V3PteFields) =>
      typeof raw === "object" && raw !== null
        ? codec.decodePte(codec.encodePte(raw))
        : codec.decodePte(u64(raw as bigint | number, "PTE")),
    `decode an MMU ${v} PTE; pte(pte(x)) re-encodes a decoded one`,
    "pte(0x1234501n)",
  );
  add("pde", pde, `decode an MMU ${v} PDE; [low, high] for PD0`, "pde(0x20002n)");
  add(
    "walk",
    walk,
    "a GPU VA level by level (BAR1, or walk(va, pdb) / walk(va, { pdb }), as gpu.walk)",
    "walk(0x10000n)",
  );
  add("stats", stats, "MMIO reads/writes/window moves; stats.reset()", "stats()");
  add(
    "show",
    async (x?: unknown) => {
      const { show } = await import("../views/show.ts");
      return new Text(await show(x, { gpu, print: false }));
    },
    "a picture of x (VRAM map, address space, walk, register) or, with no argument, the report, as HTML beside the history file; prints its path",
    "show(mm.buddy); show(vmm); show(walk(m.va)); show()",
  );
  add(
    "regs",
    (glob?: string, options?: { force?: boolean }) => {
      if (glob !== undefined) {
        // A group by name: side-effect-free registers only, unless forced.
        const db = loadedRegisterDb(gpu.chip);
        return db === undefined
          ? loadRegisterDb(gpu.chip).then((d) => readGroup(gpu.bar0, d, glob, options))
          : readGroup(gpu.bar0, db, glob, options);
      }
      const rs = readRegisters(gpu.bar0, gpu.chip.architecture, gpu.chip.chipId);
      const table = Deno.inspect(rs);
      // The registers, then what they say about VRAM: the layout novamm keeps clear of.
      const layout = layoutLines(gpu.vram.layout);
      const u = gpu.vram.usable;
      return Object.defineProperty(rs, Symbol.for("Deno.customInspect"), {
        value: () =>
          [
            table,
            `VRAM layout (usable [${hex(u.start)}, ${hex(u.end)}), ${gpu.vram.usableSource}):`,
            ...layout,
          ].join("\n"),
      });
    },
    'the registers novamm uses, read once each and decoded; regs("NV_PFB_*") a group',
    'regs(); regs("NV_PFB_PRI_MMU_*")',
  );

  const poll32 = (
    register: number | string | NamedRegister,
    mask: number,
    value: number,
    options: { timeoutMs?: number } = {},
  ): PollResult => {
    checkOptions(options, { timeoutMs: "number" }, "poll32 options");
    const r = typeof register === "string" ? regProxy[register] : register;
    let offset: number;
    let name: string;
    if (typeof r === "number") {
      checkUint(r, "poll32 register offset");
      if (r % 4 !== 0 || r + 4 > gpu.bar0.size) {
        fail(
          "EINVAL",
          `poll32 offset ${hex(r)} must be 4-byte aligned and below ${hex(gpu.bar0.size)}`,
        );
      }
      offset = r;
      name = `register ${hex(r)}`;
    } else if (r instanceof NamedRegister) {
      offset = r.offset;
      name = r.name;
    } else {
      return fail(
        "EINVAL",
        `poll32 takes a BAR0 offset, a register name or reg.NAME, not ${describe(register)}`,
      );
    }
    checkUint(mask, "poll32 mask");
    checkUint(value, "poll32 value");
    if (mask > 0xffffffff || value > 0xffffffff) {
      fail("EINVAL", `poll32 mask and value are 32-bit (got ${hex(mask)}, ${hex(value)})`);
    }
    if ((value & ~mask) >>> 0 !== 0) {
      fail(
        "EINVAL",
        `poll32 value ${hex(value)} has bits outside mask ${hex(mask)}: it can never match`,
      );
    }
    const timeoutMs = checkTimeout(options.timeoutMs ?? 1000, "poll32 timeoutMs");
    const r2 = pollRegister(gpu.bar0, offset, name, (v) => ((v & mask) >>> 0) === value, {
      timeoutMs,
      what: `${name} & ${hex(mask)} == ${hex(value)}`,
    });
    return Object.defineProperty(r2, Symbol.for("Deno.customInspect"), {
      value: () => `${name} = ${hex(r2.value, 8)} after ${r2.polls} polls`,
    });
  };
  add(
    "poll32",
    poll32,
    "poll a register until (read & mask) === value; ETIMEDOUT naming the last value",
    'poll32("NV_PMC_BOOT_0", 0xff, 0xa1, { timeoutMs: 100 })',
  );
  // Sleeps in short slices, so Ctrl-C (the shared interrupt word) stops them.
  const sleep = (ms: number) => {
    const end = performance.now() + ms;
    const word = new Int32Array(new SharedArrayBuffer(4));
    for (let left = ms; left > 0; left = end - performance.now()) {
      interruptPoint();
      if (left > 2) Atomics.wait(word, 0, 0, Math.min(20, left - 1));
    }
    interruptPoint();
  };
  const udelay = (us: number): void => {
    if (typeof us !== "number" || !Number.isFinite(us) || us < 0 || us > 60e6) {
      fail("EINVAL", `udelay ${describe(us)} is not a number of microseconds in 0..60000000`);
    }
    sleep(us / 1000);
  };
  const msleep = (ms: number): void => {
    if (typeof ms !== "number" || !Number.isFinite(ms) || ms < 0 || ms > 60_000) {
      fail("EINVAL", `msleep ${describe(ms)} is not a number of milliseconds in 0..60000`);
    }
    sleep(ms);
  };
  add("udelay", udelay, "wait microseconds (Ctrl-C stops it)", "udelay(10)");
  add("msleep", msleep, "wait milliseconds (Ctrl-C stops it)", "msleep(5)");

  function help(...args: unknown[]): Text {
    return helpText(list, gpu, args);
  }
  add(
    "help",
    help,
    'this list; help(obj) lists obj\'s members; help(obj, "member"), help("bar1.mode")',
    "help(pramin)",
  );

  const globals: Record<string, unknown> = {};
  const list: GlobalEntry[] = entries.map((e) => {
    const value = e.value;
    if (value instanceof Lazy) {
      Object.defineProperty(globals, e.name, {
        get: () => value.get(),
        enumerable: true,
        configurable: true,
      });
      return {
        name: e.name,
        about: e.about,
        example: e.example,
        get value() {
          return value.made ? value.get() : undefined;
        },
      };
    }
    globals[e.name] = value;
    return e;
  });
  Object.defineProperty(globals, ENTRIES, { value: list });
  return globals as unknown as ReplGlobals;
}

/**
 * Defines the preloaded names on `target` (globalThis for the REPL and
 * scripts), keeping the lazy ones lazy; assigning a name replaces it.
 */
export function installGlobals(globals: ReplGlobals, target: object = globalThis): void {
  for (const [name, d] of Object.entries(Object.getOwnPropertyDescriptors(globals))) {
    const replace = (v: unknown) =>
      Object.defineProperty(target, name, {
        value: v,
        writable: true,
        configurable: true,
        enumerable: false,
      });
    if (d.get !== undefined) {
      const get = d.get;
      Object.defineProperty(target, name, {
        get,
        set: replace,
        configurable: true,
        enumerable: false,
      });
    } else {
      replace(d.value);
    }
  }
}

/** The help entries of a globals object from {@linkcode buildGlobals}. */
export function globalEntries(globals: ReplGlobals): readonly GlobalEntry[] {
  return (globals as unknown as { [ENTRIES]?: GlobalEntry[] })[ENTRIES] ?? [];
}

/** Member names of a value as completion lists them: own + prototype chain, no `_` names. */
export function memberNames(value: unknown): string[] {
  return members(value);
}

/** The topics `help()` lists the preloaded names under. */
const TOPICS: [string, string[]][] = [
  [
    "The card",
    [
      "gpu",
      "bar0",
      "reg",
      "regs",
      "lookup",
      "decode",
      "set32",
      "clear32",
      "mask32",
      "poll32",
      "stats",
      "sim",
    ],
  ],
  ["Watching", ["watch", "unwatch", "watches"]],
  ["VRAM", ["pramin", "mm", "hexdump", "hexdump32", "KiB", "MiB", "GiB"]],
  ["Page tables, TLB and BAR1", ["bar1", "vmm", "tlb", "mmu", "format", "pte", "pde", "walk"]],
  ["This prompt", ["hex", "udelay", "msleep", "help"]],
];

/** `help(undefined)`: most often a misspelt member (the REPL names it from the input). */
export const HELP_UNDEFINED = "help got undefined — a misspelt member?";

function helpText(entries: GlobalEntry[], gpu: Gpu, args: unknown[]): Text {
  if (args.length >= 2) {
    // help(obj, "member"): the member described without reading it.
    const [obj, member] = args;
    if (typeof member !== "string") {
      fail(
        "EINVAL",
        `help(obj, member) takes the member's name as a string, not ${describe(member)}`,
      );
    }
    const e = entries.find((e) => e.value === obj);
    return new Text(propertyHelp(obj, member, e?.name ?? classOfName(obj)));
  }
  if (args.length === 1) {
    const topic = args[0];
    if (topic === undefined) {
      fail("EINVAL", HELP_UNDEFINED, "help() with no argument lists the preloaded names");
    }
    if (typeof topic === "string") return new Text(helpForName(entries, gpu, topic));
    return new Text(helpForValue(entries, gpu, topic));
  }
  const w = Math.max(...entries.map((e) => e.name.length));
  const a = Math.max(...entries.map((e) => e.about.length));
  const line = (e: GlobalEntry) => `  ${e.name.padEnd(w)}  ${e.about.padEnd(a)}  ${e.example}`;
  const listed = new Set<string>();
  const out = [`Preloaded on ${gpu.device.spec} (${gpu.chip.name}, MMU v${gpu.chip.mmuVersion}):`];
  for (const [title, names] of TOPICS) {
    const group = entries.filter((e) => names.includes(e.name));
    if (group.length === 0) continue;
    out.push(`${title}:`, ...group.map(line));
    for (const e of group) listed.add(e.name);
  }
  const rest = entries.filter((e) => !listed.has(e.name));
  if (rest.length > 0) out.push("Other:", ...rest.map(line));
  return new Text(
    [
      ...out,
      "",
      "help(x) for any of them or their members: signature, what it does, an example.",
      "JavaScript with top-level await; declarations persist across lines;",
      "`using x = ...` keeps x until the session ends (then disposes it).",
      "Tab completes names and members; Ctrl-R finds history; Ctrl-C stops an input at its",
      "next MMIO access (twice: kills it); .help, .break (drop a multi-line input), .exit or Ctrl-D.",
    ].join("\n"),
  );
}

function classOfName(obj: unknown): string {
  if (obj === null || (typeof obj !== "object" && typeof obj !== "function")) return describe(obj);
  const c = (obj as { constructor?: { name?: string } }).constructor?.name;
  return c === undefined || c === "Object" ? "the object" : c;
}

function helpForValue(entries: GlobalEntry[], gpu: Gpu, topic: unknown): string {
  const e = entries.find((e) => e.value === topic);
  const register = registerHelp(topic, gpu.chip);
  if (register !== null) return register;
  const documented = helpFor(topic) ?? codecHelp(topic);
  if (documented !== null) {
    return e === undefined ? documented : `${e.name}: ${e.about}\n${documented}`;
  }
  if (e !== undefined && typeof topic === "function") {
    // A preloaded helper: its own parameter list, what it is for, an example.
    return `${e.name}${paramsOf(topic as () => unknown)}\n  ${e.about}\n  e.g. ${e.example}`;
  }
  const names = members(topic);
  const head = e === undefined ? "" : `${e.name}: ${e.about}\n  e.g. ${e.example}\n`;
  return `${head}members: ${names.length ? names.join(", ") : "(none)"}`;
}

/**
 * `help("NAME")`: a preloaded name, a path below one (`"bar1.mode"`: the
 * last member described without reading it), an exported class or a member
 * of one (`"Vmm"`, `"Vmm.map"`), or a register (`"NV_PMC_BOOT_0"`).
 */
function helpForName(entries: GlobalEntry[], gpu: Gpu, name: string): string {
  const parts = name.trim().split(".");
  const g = globalThis as Record<string, unknown>;
  const byName = (n: string): { found: boolean; value: unknown } => {
    const e = entries.find((e) => e.name === n);
    if (e !== undefined) return { found: true, value: g[n] === undefined ? e.value : g[n] };
    return n in g ? { found: true, value: g[n] } : { found: false, value: undefined };
  };
  const cls = classHelp(parts[0], parts[1]);
  if (cls !== null && parts.length <= 2) return cls;
  const root = byName(parts[0]);
  if (root.found && parts.length === 1) return helpForValue(entries, gpu, root.value);
  if (root.found) {
    let obj = root.value;
    for (const p of parts.slice(1, -1)) {
      if (obj === null || obj === undefined) break;
      obj = (obj as Record<string, unknown>)[p];
    }
    if (obj === null || obj === undefined) {
      fail("EINVAL", `help(${JSON.stringify(name)}): ${parts.slice(0, -1).join(".")} is ${obj}`);
    }
    return propertyHelp(obj, parts[parts.length - 1], parts.slice(0, -1).join("."));
  }
  if (/^NV_\w+$/.test(name)) {
    const db = loadedRegisterDb(gpu.chip);
    if (db !== undefined && db.byName.has(name)) {
      const reg = entries.find((e) => e.name === "reg")?.value as Record<string, unknown>;
      const r = registerHelp(reg[name], gpu.chip);
      if (r !== null) return r;
    }
    const near = db === undefined ? null : suggestRegister(db, name);
    if (near !== null) {
      fail("EINVAL", `no register ${name} on this chip`, `did you mean "${near}"?`);
    }
  }
  const near = didYouMean(parts[0], [...entries.map((e) => e.name), ...classNames()]);
  return fail(
    "EINVAL",
    `help: no preloaded name, class or register ${JSON.stringify(name)}`,
    near === null ? "help() lists the preloaded names" : `did you mean ${near}?`,
  );
}

const SCRIPT_KEY = Symbol.for("novamm.repl.script");

/** What `repl.ts` hands a script: its globals and arguments. */
export interface ScriptContext {
  /** The preloaded names. */
  globals: ReplGlobals;
  /** Arguments after the script path that `repl.ts` did not take. */
  args: string[];
}

/** Called by `repl.ts` before it imports a script. */
export function setScriptContext(ctx: ScriptContext | undefined): void {
  (globalThis as Record<symbol, unknown>)[SCRIPT_KEY] = ctx;
}

/**
 * The preloaded names for a script: those of `repl.ts` when it runs the
 * script (`deno task repl script.ts --device D`), else the script opens the
 * device itself from its own `--device/--read-only/--force` flags
 * (`deno run -A script.ts --device D`) and closes it at exit.
 *
 * @example
 * ```ts
 * const { gpu, pramin, args } = await scriptGlobals();
 * ```
 */
export async function scriptGlobals(): Promise<ReplGlobals & { args: string[] }> {
  const ctx = (globalThis as Record<symbol, unknown>)[SCRIPT_KEY] as ScriptContext | undefined;
  if (ctx !== undefined) return Object.assign(Object.create(ctx.globals), { args: ctx.args });
  // As after a script path in repl.ts: device flags are taken, the rest is the script's.
  const own = parseReplArgs(["script", ...Deno.args]);
  if (own.args.includes("--help") || own.args.includes("-h")) {
    console.log(scriptUsage(new URL(Deno.mainModule)));
    Deno.exit(0);
  }
  const gpu = await openGpu({ device: own.device, readOnly: own.readOnly, force: own.force });
  globalThis.addEventListener("unload", () => gpu.close());
  return Object.assign(Object.create(buildGlobals(gpu)), { args: own.args });
}

/**
 * A script's `--help`: its leading doc comment (up to `@module`) after a
 * usage line, so a script documents its options once, at its top.
 */
export function scriptUsage(url: URL): string {
  const text = Deno.readTextFileSync(url);
  const m = /^\s*\/\*\*([\s\S]*?)\*\//.exec(text);
  const doc = (m?.[1] ?? "").split("\n")
    .map((l) => l.replace(/^\s*\* ?/, ""))
    .join("\n")
    .split("@module")[0]
    .replace(/```sh\n|```\n?/g, "")
    .trim();
  const cwd = `${Deno.cwd()}/`;
  const name = url.pathname.startsWith(cwd) ? url.pathname.slice(cwd.length) : url.pathname;
  return `usage: deno task repl ${name} [--device D] [--read-only] [--force] [options]\n\n${doc}\n`;
}
