/**
 * A VRAM memory test from user space (issue 21): the classic patterns over
 * an allocation, a VRAM range or all free usable VRAM, written through BAR1
 * (write-combining wide stores where sysfs offers `resource1_wc`) and read
 * back through PRAMIN so that no CPU-side cache or write-combining buffer
 * answers the read; PRAMIN alone where BAR1 cannot be used.
 *
 * What the patterns find:
 *
 * | pattern        | passes                                   | finds                                   |
 * | -------------- | ---------------------------------------- | --------------------------------------- |
 * | `solid0`       | write 0, verify                          | bits stuck at 1                         |
 * | `solid1`       | write ~0, verify                         | bits stuck at 0                         |
 * | `checkerboard` | 0x55555555/0xaaaaaaaa by word, then inverse | stuck bits, neighbour coupling       |
 * | `walking1`     | 32 passes: every word 1 << k             | stuck bits, data-line shorts (by lane)  |
 * | `walking0`     | 32 passes: every word ~(1 << k)          | the same, inverted                      |
 * | `address`      | every word its own address, then inverse | address-decoder faults (aliasing)       |
 * | `inversions`   | moving inversions (p = 0, 0x55555555)    | coupling faults, order-dependent faults |
 * | `random`       | seeded per-address random, then inverse  | data-dependent faults                   |
 *
 * Every write pass covers the whole target before its verify pass reads any
 * of it, so a cell that two addresses decode to is seen however far apart
 * they are (the target is held, in chunks, for the whole run). Moving
 * inversions go block by block (1 MiB: read and check, write the inverse,
 * ascending, then descending), not word by word: a word-by-word read of a
 * card over PCIe would take hours per GiB.
 *
 * Interrupting: Ctrl-C in the REPL (the interrupt word: EINTR at the next
 * chunk boundary or MMIO access) or an `AbortSignal` (checked before each
 * 1 MiB block; the run yields to the event loop every 50 ms so a signal
 * handler can abort it) stop the run; either way every mapping it made is unmapped and every
 * allocation freed before it returns the partial result (`interrupted`).
 *
 * @module
 */

import { describe, fail, formatSize, hex, NovaError } from "../hw/errors.ts";
import { interruptPoint, type Mmio } from "../hw/mmio.ts";
import { checkObject, checkOptions, checkUint } from "../hw/validate.ts";
import { Allocation, type BuddyAllocator } from "./buddy.ts";
import type { Pramin } from "./pramin.ts";
import type { BarMapping, BarUser } from "./bar_user.ts";

/** The pattern names, in the order they run by default. */
export const MEMTEST_PATTERNS = [
  "solid0",
  "solid1",
  "checkerboard",
  "walking1",
  "walking0",
  "address",
  "inversions",
  "random",
] as const;

/** One memory-test pattern (see the module documentation for what each finds). */
export type MemtestPattern = typeof MEMTEST_PATTERNS[number];

/** The quick set: one pass of each kind of fault, for large targets. */
export const MEMTEST_QUICK: readonly MemtestPattern[] = Object.freeze([
  "solid0",
  "solid1",
  "address",
]);

/** What to test: an allocation, a VRAM range `{ start, size }`, or `"all"` free usable VRAM. */
export type MemtestTarget = Allocation | { start: number; size: number } | "all";

/** Options of {@linkcode memtest}. */
export interface MemtestOptions {
  /** Patterns to run, in order (default: all of {@linkcode MEMTEST_PATTERNS}). */
  patterns?: readonly MemtestPattern[];
  /** Seed of the `random` pattern (a 32-bit unsigned integer; default 1). */
  seed?: number;
  /** Bytes per chunk mapped at a time: a power of two, 1 MiB..1 GiB (default 64 MiB). */
  chunkSize?: number;
  /** Stop after this many failing words (default 1000). */
  maxErrors?: number;
  /**
   * `"auto"` (default): BAR1 where it can be used (physical BAR1 below its
   * reach, else a BAR1 mapping), else PRAMIN; `"bar1"`: BAR1 or an error;
   * `"pramin"`: PRAMIN only.
   */
  path?: "auto" | "bar1" | "pramin";
  /**
   * How data written through BAR1 is read back: `"pramin"` (default; no CPU
   * cache or write-combining buffer can answer) or `"bar1"` (the same
   * aperture: faster on a card, proves less).
   */
  readBack?: "pramin" | "bar1";
  /**
   * Test VRAM that is not the user's (firmware's, outside the usable region,
   * or another allocation's: its data is destroyed): yes, really.
   */
  force?: boolean;
  /** Stops the run before the next 1 MiB block when aborted. */
  signal?: AbortSignal;
  /** Called after every block (1 MiB) with where the run is. */
  onProgress?: (progress: MemtestProgress) => void;
}

/** Where a run is (see {@linkcode MemtestOptions.onProgress}). */
export interface MemtestProgress {
  /** The pattern running. */
  pattern: MemtestPattern;
  /** Bytes of work done (a write or a read of one byte counts one). */
  done: number;
  /** Bytes of work in the whole run. */
  total: number;
  /** Failing words so far. */
  errors: number;
  /** Milliseconds since the start. */
  elapsedMs: number;
  /** Throughput so far (bytes written and read per second). */
  bytesPerSecond: number;
  /** The path of the chunk being tested. */
  path: string;
}

/** One failing word. */
export interface MemtestFailure {
  /** VRAM byte address of the word. */
  address: number;
  /** What was written. */
  expected: number;
  /** What was read back. */
  found: number;
  /** `expected ^ found`: the failing bits. */
  xor: number;
  /** The pattern that found it. */
  pattern: MemtestPattern;
  /** For the address pattern: the address whose pattern the word holds (an alias), if any. */
  holdsPatternOf?: number;
}

/** Failing words of one 1 MiB region. */
export interface MemtestRegion {
  /** First byte of the region (1 MiB aligned). */
  start: number;
  /** Failing words in it. */
  errors: number;
  /** The failing bits seen in it (OR of the XORs). */
  bits: number;
}

/** Bytes tested through one path. */
export interface MemtestPathUse {
  /** The path, e.g. `BAR1 physical (write-combining) -> PRAMIN read-back`. */
  path: string;
  /** Bytes of the target it covered. */
  bytes: number;
}

/** What {@linkcode memtest} returns. */
export interface MemtestResult {
  /** The device spec (`sim:ga102`, a PCI address), when known. */
  device: string | null;
  /** What was tested, in words: `VRAM 0x1000000 +64 MiB`, `all free VRAM (23.9 GiB)`. */
  target: string;
  /** The extents tested, lowest first. */
  extents: { start: number; size: number }[];
  /** Bytes tested. */
  bytes: number;
  /** The patterns run (completely or in part). */
  patterns: MemtestPattern[];
  /** The random seed. */
  seed: number;
  /** The paths used and how much each covered (the first is the main one). */
  paths: MemtestPathUse[];
  /** The main path (the one that covered the most bytes). */
  path: string;
  /** Failing words (at most `maxErrors`), in the order found. */
  errors: MemtestFailure[];
  /** Failing words found (equals `errors.length`). */
  errorCount: number;
  /** True when the run stopped because `maxErrors` was reached. */
  stoppedAfterMaxErrors: boolean;
  /** Failing words per bit lane 0..31 (a word counts once in each failing bit). */
  bitLanes: number[];
  /** Failing words per 1 MiB region, lowest first (only regions with errors). */
  regions: MemtestRegion[];
  /** True when Ctrl-C (EINTR) or the signal stopped the run early. */
  interrupted: boolean;
  /** Bytes written and read back. */
  bytesMoved: number;
  /** Milliseconds the run took. */
  elapsedMs: number;
  /** `bytesMoved` per second. */
  bytesPerSecond: number;
  /** Notes on path choices (BAR1 refused, say). */
  notes: string[];
  /** The one-line verdict. */
  summary: string;
}

/**
 * What a memory test needs of a GPU (a {@linkcode Gpu} has all of it): the
 * allocator, PRAMIN, the VRAM geometry, and BAR1 (null: PRAMIN only).
 */
export interface MemtestHost {
  /** The memory manager (its buddy allocator). */
  readonly mm: { readonly buddy: BuddyAllocator };
  /** PRAMIN. */
  readonly pramin: Pramin;
  /** VRAM size and usable region. */
  readonly vram: { readonly size: number; readonly usable: { start: number; end: number } };
  /** BAR1, or null to test through PRAMIN only. */
  readonly bar1: BarUser | null;
  /** The device (its spec, read-only flag and BAR1 aperture), or null when unknown. */
  readonly device:
    | { readonly spec: string; readonly readOnly: boolean; readonly bar1: Mmio }
    | null;
}

const MiB = 2 ** 20;
const GiB = 2 ** 30;
const PAGE = 4096;
/** Bytes moved per MMIO bulk call and compared at a time; also the error-region size. */
const BLOCK = MiB;
const DEFAULT_CHUNK = 64 * MiB;
const DEFAULT_MAX_ERRORS = 1000;
/** Free VRAM an "all" run leaves for the page tables of the chunk it maps. */
const TABLE_RESERVE = MiB;
const TWO_32 = 2 ** 32;
/** Yield to the event loop (signal handlers, timers) at least this often. */
const YIELD_MS = 50;

/** Fills `out` with the pattern of the words at VRAM `addr`, `addr + 4`, ... (block-aligned). */
type Gen = (addr: number, out: Uint32Array) => void;

/** One pass over the target. */
type Step =
  | { kind: "write"; gen: Gen }
  | { kind: "verify"; gen: Gen }
  | { kind: "rmw"; expect: Gen; next: Gen; descending: boolean };

function constant(v: number): Gen {
  const word = v >>> 0;
  return (_addr, out) => void out.fill(word);
}

function checkerboard(invert: boolean): Gen {
  const even = invert ? 0xaaaaaaaa : 0x55555555;
  const odd = (~even) >>> 0;
  return (addr, out) => {
    const first = ((addr / 4) & 1) === 0 ? even : odd;
    const second = first === even ? odd : even;
    for (let i = 0; i < out.length; i += 2) {
      out[i] = first;
      if (i + 1 < out.length) out[i + 1] = second;
    }
  };
}

/**
 * The address pattern's word for VRAM `addr`: the low 32 bits of the
 * address with bits 32..33 in its two (always zero) low bits, so below 16 GiB
 * it is exact and invertible; above, the higher bits are mixed in.
 */
export function addressWord(addr: number): number {
  const lo = addr % TWO_32;
  const hi = Math.floor(addr / TWO_32);
  return ((lo ^ Math.imul(hi >>> 2, 0x9e3779b0)) | (hi & 3)) >>> 0;
}

function addressGen(invert: boolean): Gen {
  return (addr, out) => {
    // Blocks are 1 MiB aligned: the high part is one value for the whole block.
    const hi = Math.floor(addr / TWO_32);
    const mix = ((Math.imul(hi >>> 2, 0x9e3779b0) | 0) ^ (hi & 3)) | 0;
    const flip = invert ? -1 : 0;
    let lo = addr % TWO_32;
    for (let i = 0; i < out.length; i++, lo += 4) out[i] = (lo ^ mix ^ flip) >>> 0;
  };
}

/** The random pattern's word for VRAM `addr` under `seed` (a hash of both: any order regenerates it). */
export function randomWord(seed: number, addr: number): number {
  const w = Math.floor(addr / 4);
  let h = Math.imul((w ^ seed) | 0, 0x85ebca6b) ^
    Math.imul(Math.floor(w / TWO_32) + 0x632be5ab, seed | 1);
  h ^= h >>> 15;
  h = Math.imul(h, 0x2c1b3c6d);
  h ^= h >>> 12;
  h = Math.imul(h, 0x297a2d39);
  h ^= h >>> 15;
  return h >>> 0;
}

function randomGen(seed: number, invert: boolean): Gen {
  return (addr, out) => {
    const flip = invert ? 0xffffffff : 0;
    for (let i = 0; i < out.length; i++) out[i] = (randomWord(seed, addr + i * 4) ^ flip) >>> 0;
  };
}

/** The passes of one pattern. */
function stepsOf(pattern: MemtestPattern, seed: number): Step[] {
  const wv = (gen: Gen): Step[] => [{ kind: "write", gen }, { kind: "verify", gen }];
  switch (pattern) {
    case "solid0":
      return wv(constant(0));
    case "solid1":
      return wv(constant(0xffffffff));
    case "checkerboard":
      return [...wv(checkerboard(false)), ...wv(checkerboard(true))];
    case "walking1":
    case "walking0": {
      const out: Step[] = [];
      for (let k = 0; k < 32; k++) {
        const bit = (1 << k) >>> 0;
        out.push(...wv(constant(pattern === "walking1" ? bit : ~bit)));
      }
      return out;
    }
    case "address":
      return [...wv(addressGen(false)), ...wv(addressGen(true))];
    case "inversions": {
      const out: Step[] = [];
      for (const p of [0, 0x55555555]) {
        const a = constant(p);
        const b = constant(~p);
        out.push(
          { kind: "write", gen: a },
          { kind: "rmw", expect: a, next: b, descending: false },
          { kind: "rmw", expect: b, next: a, descending: true },
          { kind: "verify", gen: a },
        );
      }
      return out;
    }
    case "random":
      return [...wv(randomGen(seed, false)), ...wv(randomGen(seed, true))];
  }
}

/** Bytes of work (writes and reads) of a step over `bytes`. */
function stepWork(s: Step, bytes: number): number {
  return s.kind === "rmw" ? 2 * bytes : bytes;
}

/** A chunk of the target: [start, start + size), with the allocation that holds it (ours or not). */
interface Chunk {
  start: number;
  size: number;
}

/** CPU access to one chunk while it is acquired. */
interface Port {
  /** The path's name. */
  readonly name: string;
  /** Writes words at VRAM `addr` (inside the chunk). */
  write(addr: number, words: Uint32Array): void;
  /** Reads words at VRAM `addr` back (through the read-back path). */
  read(addr: number, out: Uint32Array): void;
  /** Releases the chunk (unmaps a BAR1 mapping). */
  release(): void;
}

/** The checked options, defaults filled in. */
interface Plan {
  patterns: MemtestPattern[];
  seed: number;
  chunkSize: number;
  maxErrors: number;
  path: "auto" | "bar1" | "pramin";
  readBack: "pramin" | "bar1";
  force: boolean;
  signal: AbortSignal | null;
  onProgress: ((p: MemtestProgress) => void) | null;
}

function oneOf<T extends string>(values: readonly T[], what: string) {
  return (value: unknown, key: string) => {
    if (typeof value !== "string" || !(values as readonly string[]).includes(value)) {
      fail("EINVAL", `${what}.${key} ${describe(value)} is not one of ${values.join(", ")}`);
    }
  };
}

function checkPlan(options: unknown): Plan {
  const what = "memtest options";
  checkOptions(options, {
    patterns: (value: unknown, key: string) => {
      if (!Array.isArray(value) || value.length === 0) {
        fail(
          "EINVAL",
          `${what}.${key} must be a non-empty array of pattern names, not ${describe(value)}`,
        );
      }
      for (const p of value) {
        if (!(MEMTEST_PATTERNS as readonly unknown[]).includes(p)) {
          fail(
            "EINVAL",
            `${what}.${key}: unknown pattern ${describe(p)}; known: ${MEMTEST_PATTERNS.join(", ")}`,
          );
        }
      }
    },
    seed: "number",
    chunkSize: "number",
    maxErrors: "number",
    path: oneOf(["auto", "bar1", "pramin"], what),
    readBack: oneOf(["pramin", "bar1"], what),
    force: "boolean",
    signal: (value: unknown, key: string) => {
      if (!(value instanceof AbortSignal)) {
        fail("EINVAL", `${what}.${key} must be an AbortSignal, not ${describe(value)}`);
      }
    },
    onProgress: "function",
  }, what);
  const o = (options ?? {}) as MemtestOptions;
  const seed = o.seed ?? 1;
  if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) {
    fail("EINVAL", `${what}.seed ${describe(seed)} is not a 32-bit unsigned integer`);
  }
  const chunkSize = o.chunkSize ?? DEFAULT_CHUNK;
  checkUint(chunkSize, `${what}.chunkSize`);
  if (chunkSize < MiB || chunkSize > GiB || (chunkSize & (chunkSize - 1)) !== 0) {
    fail(
      "EINVAL",
      `${what}.chunkSize ${describe(chunkSize)} is not a power of two in 1 MiB..1 GiB`,
    );
  }
  const maxErrors = o.maxErrors ?? DEFAULT_MAX_ERRORS;
  checkUint(maxErrors, `${what}.maxErrors`);
  if (maxErrors < 1) fail("EINVAL", `${what}.maxErrors ${describe(maxErrors)} must be at least 1`);
  return {
    patterns: [...(o.patterns ?? MEMTEST_PATTERNS)],
    seed,
    chunkSize,
    maxErrors,
    path: o.path ?? "auto",
    readBack: o.readBack ?? "pramin",
    force: o.force ?? false,
    signal: o.signal ?? null,
    onProgress: o.onProgress ?? null,
  };
}

/** The target resolved: extents, and whether they must be allocated for the run. */
interface Resolved {
  text: string;
  extents: Chunk[];
  /** Allocate the extents from the buddy for the run (free VRAM), or test them in place. */
  allocate: boolean;
  /** All free VRAM: the extents are found when the run starts. */
  all: boolean;
}

/** The free blocks of the allocator, merged. */
function freeExtents(buddy: BuddyAllocator): Chunk[] {
  return merge(buddy.freeBlocks().map((b) => ({ start: b.start, size: b.size })));
}

function resolveTarget(host: MemtestHost, target: unknown, plan: Plan): Resolved {
  const buddy = host.mm.buddy;
  const vramSize = host.vram.size;
  const check = (start: number, size: number) => {
    host.pramin.checkWrite(start, size, "memtest", plan.force);
  };
  if (target === "all" || target === undefined) {
    if (freeExtents(buddy).length === 0) {
      fail("ENOMEM", "memtest: no free usable VRAM to test (everything is allocated)");
    }
    // The extents are taken when the run starts (after BAR1 is brought up, if it must be).
    return { text: "all free usable VRAM", extents: [], allocate: true, all: true };
  }
  if (target instanceof Allocation) {
    if (!target.live) fail("EINVAL", `memtest target ${String(target)} has been freed`);
    if (!buddy.allocations().includes(target)) {
      fail("EINVAL", `memtest target ${String(target)} is not an allocation of this GPU's buddy`);
    }
    const extents = merge(target.blocks.map((b) => ({ start: b.start, size: b.size })));
    for (const e of extents) check(e.start, e.size);
    return {
      text: String(target).replace(/^Allocation/, "allocation"),
      extents,
      allocate: false,
      all: false,
    };
  }
  if (typeof target === "string") {
    fail(
      "EINVAL",
      `memtest target ${describe(target)} is not "all", an allocation or a { start, size } range`,
    );
  }
  const r = checkObject(target, "memtest target");
  checkOptions(r, { start: "number", size: "number" }, "memtest target range");
  const start = checkUint(r.start, "memtest target start");
  const size = checkUint(r.size, "memtest target size");
  if (start % PAGE !== 0 || size % PAGE !== 0 || size === 0) {
    fail(
      "EINVAL",
      `memtest range ${hex(start)} +${hex(size)} must be 4 KiB aligned and non-empty`,
    );
  }
  if (start + size > vramSize) {
    fail(
      "EINVAL",
      `memtest range ${hex(start)} +${hex(size)} is past the end of VRAM (${hex(vramSize)})`,
    );
  }
  check(start, size);
  const text = `VRAM ${hex(start)} +${formatSize(size)}`;
  const { start: us, end: ue } = { start: buddy.start, end: buddy.end };
  const inside = start >= us && start + size <= ue;
  const free = inside &&
    buddy.freeBlocks({ range: { start, end: start + size } }).reduce(
        (n, b) => n + Math.min(b.start + b.size, start + size) - Math.max(b.start, start),
        0,
      ) === size;
  if (!free && !plan.force) {
    const users = buddy.allocations().filter((a) =>
      a.blocks.some((b) => b.start < start + size && b.start + b.size > start)
    );
    fail(
      inside ? "EBUSY" : "EPERM",
      inside
        ? `memtest range ${hex(start)} +${hex(size)} is in use (${
          users.slice(0, 3).map(String).join(", ") || "allocated"
        }): testing it would destroy that data`
        : `memtest range ${hex(start)} +${hex(size)} is outside the allocator's region [${
          hex(us)
        }, ${hex(ue)})`,
      "pass an allocation, a free range, or { force: true } to test it anyway",
    );
  }
  return { text, extents: [{ start, size }], allocate: free, all: false };
}

/** Sorts extents and joins touching ones. */
function merge(list: Chunk[]): Chunk[] {
  const sorted = [...list].sort((a, b) => a.start - b.start);
  const out: Chunk[] = [];
  for (const e of sorted) {
    const last = out[out.length - 1];
    if (last !== undefined && last.start + last.size === e.start) last.size += e.size;
    else out.push({ ...e });
  }
  return out;
}

/** Cuts extents into chunks at multiples of `chunkSize` (so big pages fit). */
function chunksOf(extents: Chunk[], chunkSize: number): Chunk[] {
  const out: Chunk[] = [];
  for (const e of extents) {
    for (let at = e.start; at < e.start + e.size;) {
      const end = Math.min(e.start + e.size, (Math.floor(at / chunkSize) + 1) * chunkSize);
      out.push({ start: at, size: end - at });
      at = end;
    }
  }
  return out;
}

/** Thrown inside the run to stop it (max errors, abort); never escapes. */
class Stop {
  constructor(readonly why: "maxErrors" | "abort") {}
}

/**
 * Tests VRAM: writes each pattern over the whole target, reads it back and
 * reports every failing word (address, expected, found, XOR), the failing
 * bits per lane and per 1 MiB region, and a summary line. Validates the
 * target and every option before it allocates or touches anything; every
 * mapping and allocation it makes is gone when it returns, also after an
 * error or an interruption (Ctrl-C's EINTR, `options.signal`).
 *
 * `host` is a {@linkcode Gpu} (or what {@linkcode MemtestHost} lists).
 *
 * @example
 * ```ts
 * import { openGpu } from "../mod.ts";
 * import { memtest } from "./memtest.ts";
 * using gpu = await openGpu({ device: "sim" });
 * const r = await memtest(gpu, { start: 0x1000000, size: 4 << 20 }, { patterns: ["solid0", "address"] });
 * r.errorCount; // 0
 * r.summary; // "memtest PASS: VRAM 0x1000000 +4 MiB, 2 patterns, 0 errors, ..."
 * ```
 */
export async function memtest(
  host: MemtestHost,
  target: MemtestTarget = "all",
  options: MemtestOptions = {},
): Promise<MemtestResult> {
  checkHost(host);
  const plan = checkPlan(options);
  if (host.device?.readOnly || host.pramin.bar0.readOnly) {
    fail("EPERM", "memtest writes VRAM: the session is read-only", "reopen without --read-only");
  }
  const resolved = resolveTarget(host, target, plan);
  if (plan.path === "bar1" && (host.bar1 === null || host.device === null)) {
    fail("ENOTSUP", "memtest path bar1: this host has no BAR1 (PRAMIN only)");
  }
  return await run(host, resolved, plan);
}

function checkHost(host: unknown): void {
  const h = host as Partial<MemtestHost> | null;
  if (
    h === null || typeof h !== "object" || typeof h.mm?.buddy?.alloc !== "function" ||
    typeof h.pramin?.borrow !== "function" || typeof h.vram?.size !== "number"
  ) {
    fail("EINVAL", `memtest takes a Gpu (or a MemtestHost), not ${describe(host)}`);
  }
}

/** The run itself (everything checked). */
async function run(host: MemtestHost, resolved: Resolved, plan: Plan): Promise<MemtestResult> {
  const t0 = performance.now();
  const notes: string[] = [];
  let bar1Usable = plan.path !== "pramin" && host.bar1 !== null && host.device !== null;
  if (resolved.all) {
    // All free VRAM is held for the run, so whatever BAR1 needs must be in place first: its
    // own address space (bring-up allocates it), and room for one chunk's page tables.
    let extents = freeExtents(host.mm.buddy);
    const bar1 = host.bar1;
    const reach = bar1?.mode === "physical" ? bar1.physical.reach : 0;
    if (bar1Usable && bar1 !== null && extents.some((e) => e.start + e.size > reach)) {
      if (bar1.mode === "physical") {
        try {
          bar1.bringUp();
        } catch (e) {
          const refused = e instanceof NovaError && (e.code === "EPERM" || e.code === "ENOTSUP");
          if (!refused || plan.path === "bar1") throw e;
          bar1Usable = false;
          notes.push(`BAR1 not used (${e.message}); PRAMIN throughout`);
        }
        extents = freeExtents(host.mm.buddy);
      }
      if (bar1Usable) {
        const last = extents[extents.length - 1];
        const keep = Math.min(TABLE_RESERVE, last.size);
        notes.push(
          `${formatSize(keep)} at ${
            hex(last.start + last.size - keep)
          } left free for BAR1's page tables (not tested)`,
        );
        last.size -= keep;
        if (last.size === 0) extents.pop();
      }
    }
    resolved.extents = extents;
    resolved.text = `all free usable VRAM (${formatSize(extents.reduce((n, e) => n + e.size, 0))})`;
  }
  const chunks = chunksOf(resolved.extents, plan.chunkSize);
  const bytes = chunks.reduce((n, c) => n + c.size, 0);
  const stepsByPattern = plan.patterns.map((p) => ({ pattern: p, steps: stepsOf(p, plan.seed) }));
  const total = stepsByPattern.reduce(
    (n, p) => n + p.steps.reduce((m, s) => m + stepWork(s, bytes), 0),
    0,
  );
  const errors: MemtestFailure[] = [];
  const lanes = new Array<number>(32).fill(0);
  const regions = new Map<number, MemtestRegion>();
  const pathBytes = new Map<string, number>();
  const ran: MemtestPattern[] = [];
  let done = 0;
  let moved = 0;
  let interrupted = false;
  let stoppedAfterMax = false;
  let lastYield = performance.now();
  const owned: Allocation[] = [];
  const wc = host.device?.bar1.hasBlockCopies === true;
  const exp = new Uint32Array(BLOCK / 4);
  const got = new Uint32Array(BLOCK / 4);

  // One window for the whole run: restored (if it moved) when the run ends.
  using w = host.pramin.borrow();
  const praminName = "PRAMIN";
  const readBackName = plan.readBack === "pramin" ? "PRAMIN read-back" : "BAR1 read-back";

  const praminPort: Port = {
    name: praminName,
    write: (addr, words) => w.writeWords(addr, words),
    read: (addr, out) => void w.readWords(addr, out.length, out),
    release: () => {},
  };

  const readBack = (port: Port) =>
    plan.readBack === "pramin"
      ? (addr: number, out: Uint32Array) => void w.readWords(addr, out.length, out)
      : port.read;

  /** CPU access to `chunk` through the best path allowed (BAR1 first). */
  const acquire = (chunk: Chunk): Port => {
    if (!bar1Usable) return praminPort;
    const bar1 = host.bar1!;
    const aperture = wc ? "write-combining" : "uncached";
    if (bar1.mode === "physical" && chunk.start + chunk.size <= bar1.physical.reach) {
      const phys = plan.force ? bar1.physical.forced : bar1.physical;
      try {
        phys.readBytes(chunk.start, 0); // the mode and aperture checks, no access
        const name = `BAR1 physical (${aperture}) -> ${readBackName}`;
        const port: Port = {
          name,
          write: (addr, words) =>
            phys.writeBytes(addr, new Uint8Array(words.buffer, words.byteOffset, words.byteLength)),
          read: (addr, out) =>
            new Uint8Array(out.buffer, out.byteOffset, out.byteLength).set(
              phys.readBytes(addr, out.length * 4),
            ),
          release: () => {},
        };
        return { ...port, read: readBack(port) };
      } catch (e) {
        if (!(e instanceof NovaError) || e.code !== "EFAULT") throw e;
        // Physical BAR1 aims elsewhere (TARGET): a mapping binds it properly.
      }
    }
    let m: BarMapping;
    try {
      m = bar1.map({ start: chunk.start, size: chunk.size }, { writable: true, force: plan.force });
    } catch (e) {
      const refused = e instanceof NovaError &&
        (e.code === "EPERM" || e.code === "ENOTSUP" || e.code === "ENOSPC");
      if (!refused || plan.path === "bar1") throw e;
      bar1Usable = false;
      notes.push(`BAR1 not used (${e.message}); PRAMIN from ${hex(chunk.start)} on`);
      return praminPort;
    }
    const base = chunk.start;
    const port: Port = {
      name: `BAR1 mapping (${aperture}) -> ${readBackName}`,
      write: (addr, words) =>
        m.writeBytes(addr - base, new Uint8Array(words.buffer, words.byteOffset, words.byteLength)),
      read: (addr, out) => {
        const bytes = m.readBytes(addr - base, out.length * 4);
        new Uint8Array(out.buffer, out.byteOffset, out.byteLength).set(bytes);
      },
      release: () => m.unmap(),
    };
    return { ...port, read: readBack(port) };
  };

  const record = (
    pattern: MemtestPattern,
    addr: number,
    e: Uint32Array,
    g: Uint32Array,
    n: number,
  ) => {
    for (let i = 0; i < n; i++) {
      if (e[i] === g[i]) continue;
      const address = addr + i * 4;
      const expected = e[i];
      const found = g[i];
      const xor = (expected ^ found) >>> 0;
      const f: MemtestFailure = { address, expected, found, xor, pattern };
      if (pattern === "address") {
        const partner = addressOf(found, host.vram.size, resolved.extents) ??
          addressOf((~found) >>> 0, host.vram.size, resolved.extents);
        if (partner !== null && partner !== address) f.holdsPatternOf = partner;
      }
      errors.push(f);
      for (let b = 0; b < 32; b++) if ((xor >>> b) & 1) lanes[b]++;
      const rs = address - (address % MiB);
      const r = regions.get(rs);
      if (r === undefined) regions.set(rs, { start: rs, errors: 1, bits: xor });
      else {
        r.errors++;
        r.bits = (r.bits | xor) >>> 0;
      }
      if (errors.length >= plan.maxErrors) throw new Stop("maxErrors");
    }
  };

  const compare = (pattern: MemtestPattern, addr: number, n: number) => {
    const e = exp;
    const g = got;
    for (let i = 0; i < n; i++) {
      if (e[i] !== g[i]) {
        record(pattern, addr, e, g, n);
        return;
      }
    }
  };

  const progress = (pattern: MemtestPattern, path: string) => {
    if (plan.onProgress === null) return;
    const elapsedMs = performance.now() - t0;
    plan.onProgress({
      pattern,
      done,
      total,
      errors: errors.length,
      elapsedMs,
      bytesPerSecond: elapsedMs > 0 ? moved / (elapsedMs / 1000) : 0,
      path,
    });
  };

  /** Blocks of a chunk: 1 MiB aligned pieces. */
  const blocksOf = (c: Chunk, descending: boolean): [number, number][] => {
    const out: [number, number][] = [];
    for (let at = c.start; at < c.start + c.size;) {
      const end = Math.min(c.start + c.size, (Math.floor(at / BLOCK) + 1) * BLOCK);
      out.push([at, end - at]);
      at = end;
    }
    return descending ? out.reverse() : out;
  };

  const runStep = async (pattern: MemtestPattern, step: Step, first: boolean) => {
    const order = step.kind === "rmw" && step.descending ? [...chunks].reverse() : chunks;
    for (const c of order) {
      interruptPoint(); // Ctrl-C: EINTR here, at a chunk boundary, before the next access
      if (plan.signal?.aborted) throw new Stop("abort");
      const port = acquire(c);
      try {
        if (first) pathBytes.set(port.name, (pathBytes.get(port.name) ?? 0) + c.size);
        const descending = step.kind === "rmw" && step.descending;
        for (const [addr, len] of blocksOf(c, descending)) {
          if (performance.now() - lastYield > YIELD_MS) {
            // Let signal handlers and timers run (the CLI's Ctrl-C aborts the signal).
            await new Promise((resolve) => setTimeout(resolve, 0));
            lastYield = performance.now();
          }
          if (plan.signal?.aborted) throw new Stop("abort");
          const n = len / 4;
          const e = exp.subarray(0, n);
          const g = got.subarray(0, n);
          if (step.kind === "write") {
            step.gen(addr, e);
            port.write(addr, e);
            moved += len;
            done += len;
          } else if (step.kind === "verify") {
            port.read(addr, g);
            step.gen(addr, e);
            moved += len;
            done += len;
            compare(pattern, addr, n);
          } else {
            port.read(addr, g);
            step.expect(addr, e);
            moved += len;
            done += len;
            compare(pattern, addr, n);
            step.next(addr, e);
            port.write(addr, e);
            moved += len;
            done += len;
          }
          progress(pattern, port.name);
        }
      } finally {
        port.release();
      }
    }
  };

  let failure: { error: unknown } | null = null;
  try {
    if (resolved.allocate) {
      for (const c of chunks) {
        owned.push(
          host.mm.buddy.alloc(c.size, { range: { start: c.start, end: c.start + c.size } }),
        );
      }
    }
    let first = true;
    for (const { pattern, steps } of stepsByPattern) {
      ran.push(pattern);
      for (const s of steps) {
        await runStep(pattern, s, first);
        first = false;
      }
    }
  } catch (e) {
    failure = { error: e };
  }
  // Everything back: mappings were released chunk by chunk; now the allocations.
  let freeError: { error: unknown } | null = null;
  for (const a of owned.reverse()) {
    try {
      if (a.live) a.free();
    } catch (e) {
      freeError ??= { error: e };
    }
  }
  if (failure !== null) {
    const e = failure.error;
    if (e instanceof Stop) {
      if (e.why === "maxErrors") stoppedAfterMax = true;
      else interrupted = true;
    } else if (e instanceof NovaError && e.code === "EINTR") {
      interrupted = true;
    } else {
      throw e;
    }
  }
  if (freeError !== null) throw freeError.error;

  const elapsedMs = performance.now() - t0;
  const paths = [...pathBytes].map(([path, b]) => ({ path, bytes: b })).sort((a, b) =>
    b.bytes - a.bytes
  );
  const result: MemtestResult = {
    device: host.device?.spec ?? null,
    target: resolved.text,
    extents: resolved.extents.map((e) => ({ ...e })),
    bytes,
    patterns: ran,
    seed: plan.seed,
    paths,
    path: paths[0]?.path ?? (bar1Usable ? "BAR1" : praminName),
    errors,
    errorCount: errors.length,
    stoppedAfterMaxErrors: stoppedAfterMax,
    bitLanes: lanes,
    regions: [...regions.values()].sort((a, b) => a.start - b.start),
    interrupted,
    bytesMoved: moved,
    elapsedMs,
    bytesPerSecond: elapsedMs > 0 ? moved / (elapsedMs / 1000) : 0,
    notes,
    summary: "",
  };
  result.summary = summaryLine(result);
  Object.defineProperty(result, Symbol.for("Deno.customInspect"), {
    value: () => formatMemtestReport(result).join("\n"),
    enumerable: false,
  });
  return result;
}

/** The VRAM address whose address-pattern word is `word`, when exactly one in the extents has it. */
function addressOf(word: number, vramSize: number, extents: Chunk[]): number | null {
  let found: number | null = null;
  const tops = Math.ceil(vramSize / (4 * TWO_32));
  for (let top = 0; top < Math.max(1, tops); top++) {
    const hi = top * 4 + (word & 3);
    const lo = ((word & ~3) ^ Math.imul(top, 0x9e3779b0)) >>> 0;
    const addr = hi * TWO_32 + lo;
    if (addr >= vramSize) continue;
    if (!extents.some((e) => addr >= e.start && addr < e.start + e.size)) continue;
    if (found !== null) return null;
    found = addr;
  }
  return found;
}

/** GB/s (10^9 bytes per second) with two decimals. */
function gbps(bytesPerSecond: number): string {
  return `${(bytesPerSecond / 1e9).toFixed(2)} GB/s`;
}

function summaryLine(r: MemtestResult): string {
  const verdict = r.errorCount > 0 ? "FAIL" : r.interrupted ? "INTERRUPTED" : "PASS";
  const parts = [
    `memtest ${verdict}: ${r.target}`,
    `${r.patterns.length} pattern${r.patterns.length === 1 ? "" : "s"}`,
    `${r.errorCount}${r.stoppedAfterMaxErrors ? "+" : ""} error${r.errorCount === 1 ? "" : "s"}`,
  ];
  if (r.errorCount > 0) {
    const bits = r.bitLanes.map((n, b) => (n > 0 ? b : -1)).filter((b) => b >= 0);
    parts.push(
      `failing bits ${bits.join(",")} in ${r.regions.length} MiB region${
        r.regions.length === 1 ? "" : "s"
      }`,
    );
  }
  parts.push(`${(r.elapsedMs / 1000).toFixed(1)} s`, gbps(r.bytesPerSecond), `via ${r.path}`);
  if (r.stoppedAfterMaxErrors) parts.push("stopped after max errors");
  if (r.interrupted) parts.push(`interrupted (${r.patterns.at(-1) ?? "before the first pattern"})`);
  return parts.join(", ");
}

/**
 * The report as text lines: the failing words (at most `maxLines`), the bit
 * lanes and 1 MiB regions with errors, the notes and the summary line.
 *
 * @example
 * ```ts
 * import { openGpu } from "../mod.ts";
 * import { formatMemtestReport, memtest } from "./memtest.ts";
 * using gpu = await openGpu({ device: "sim" });
 * const r = await memtest(gpu, { start: 0x1000000, size: 1 << 20 }, { patterns: ["solid1"] });
 * console.log(formatMemtestReport(r).join("\n"));
 * ```
 */
export function formatMemtestReport(
  result: MemtestResult,
  options: { maxLines?: number } = {},
): string[] {
  const r = result as unknown as Record<string, unknown> | null;
  if (
    r === null || typeof r !== "object" || !Array.isArray(r.errors) || !Array.isArray(r.regions) ||
    typeof r.summary !== "string"
  ) {
    fail("EINVAL", `formatMemtestReport takes what memtest() returned, not ${describe(result)}`);
  }
  checkOptions(options, { maxLines: "number" }, "formatMemtestReport options");
  const max = options.maxLines ?? 50;
  if (!Number.isSafeInteger(max) || max < 0) {
    fail("EINVAL", `formatMemtestReport maxLines ${describe(max)} is not a non-negative integer`);
  }
  const lines: string[] = [];
  const h8 = (v: number) => hex(v, 8);
  for (const f of result.errors.slice(0, max)) {
    const bits = [];
    for (let b = 0; b < 32; b++) if ((f.xor >>> b) & 1) bits.push(b);
    lines.push(
      `  ${hex(f.address).padEnd(13)} ${f.pattern.padEnd(12)} expected ${h8(f.expected)} found ${
        h8(f.found)
      } xor ${h8(f.xor)} (bit${bits.length === 1 ? "" : "s"} ${bits.join(",")})${
        f.holdsPatternOf === undefined
          ? ""
          : ` holds the address pattern of ${hex(f.holdsPatternOf)}`
      }`,
    );
  }
  if (result.errors.length > max) lines.push(`  ... ${result.errors.length - max} more`);
  if (result.errorCount > 0) {
    lines.push(
      "bit lanes: " +
        result.bitLanes.map((n, b) => (n > 0 ? `${b}:${n}` : "")).filter((s) => s !== "").join(" "),
    );
    lines.push("1 MiB regions:");
    for (const r of result.regions.slice(0, max)) {
      lines.push(
        `  ${hex(r.start).padEnd(13)} ${String(r.errors).padStart(7)} errors, bits ${h8(r.bits)}`,
      );
    }
    if (result.regions.length > max) {
      lines.push(`  ... ${result.regions.length - max} more regions`);
    }
  }
  for (const n of result.notes) lines.push(`note: ${n}`);
  for (const p of result.paths) lines.push(`path: ${p.path} (${formatSize(p.bytes)})`);
  lines.push(result.summary);
  return lines;
}

/**
 * The usable bandwidth of a PCIe link in bytes per second, one direction,
 * after line encoding: `speed` as sysfs `current_link_speed` writes it
 * (`"16.0 GT/s PCIe"`, `"8 GT/s"`, `"2.5 GT/s"`), `width` as
 * `current_link_width` (`"16"`). 8b/10b below 8 GT/s, 128b/130b from 8 GT/s,
 * 242/256 flits at 64 GT/s. Null when either is unknown.
 *
 * @example
 * ```ts
 * pcieBandwidth("16.0 GT/s PCIe", "16"); // 31507692307.69 (Gen4 x16: ~31.5 GB/s)
 * ```
 */
export function pcieBandwidth(speed: string, width: string): number | null {
  if (typeof speed !== "string") fail("EINVAL", `link speed ${describe(speed)} is not a string`);
  if (typeof width !== "string") fail("EINVAL", `link width ${describe(width)} is not a string`);
  const m = /^\s*(\d+(?:\.\d+)?)\s*GT\/s/i.exec(speed);
  const lanes = /^\s*x?(\d+)\s*$/i.exec(width);
  if (m === null || lanes === null) return null;
  const gts = Number(m[1]);
  const n = Number(lanes[1]);
  if (!(gts > 0) || !(n > 0)) return null;
  const efficiency = gts < 8 ? 8 / 10 : gts < 64 ? 128 / 130 : 242 / 256;
  return (gts * 1e9 * efficiency * n) / 8;
}

/** A PCIe link as sysfs reports it, with its bandwidth. */
export interface PcieLink {
  /** `current_link_speed` as read. */
  speed: string;
  /** `current_link_width` as read. */
  width: string;
  /** Bytes per second, one direction ({@linkcode pcieBandwidth}); null when unknown. */
  bytesPerSecond: number | null;
}

/**
 * Reads `current_link_speed` and `current_link_width` from a PCI function's
 * sysfs directory (`gpu.device.pci.path`); null when either file is missing.
 *
 * @example
 * ```ts ignore
 * readPcieLink("/sys/bus/pci/devices/0000:65:00.0")?.bytesPerSecond;
 * ```
 */
export function readPcieLink(path: string): PcieLink | null {
  if (typeof path !== "string" || path === "") {
    fail("EINVAL", `readPcieLink takes a sysfs directory, not ${describe(path)}`);
  }
  try {
    const speed = Deno.readTextFileSync(`${path}/current_link_speed`).trim();
    const width = Deno.readTextFileSync(`${path}/current_link_width`).trim();
    return { speed, width, bytesPerSecond: pcieBandwidth(speed, width) };
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    if (e instanceof Deno.errors.NotADirectory) {
      fail("EINVAL", `readPcieLink: ${path} is not a directory (a PCI function's sysfs directory)`);
    }
    throw e;
  }
}
