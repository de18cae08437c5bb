/**
 * Linux `mmiotrace` logs of any driver (nvidia, nouveau, nova-core, novamm
 * itself) rebuilt into a {@linkcode Snapshot}: the registers the driver read
 * and wrote, the VRAM it wrote (and read) through the PRAMIN window and the
 * BARs, and the address spaces it bound.
 *
 * ## The kernel's format (Documentation/trace/mmiotrace.rst, version 20070824)
 *
 * One record per line, a keyword then space-separated arguments; the exact
 * printf formats are those of `kernel/trace/trace_mmiotrace.c`:
 *
 * ```text
 * VERSION 20070824
 * PCIDEV BBDF VVVVDDDD IRQ BASE0 .. BASE6 SIZE0 .. SIZE6 [DRIVER]
 * LSPCI text
 * MAP   SECS.USEC ID 0xPHYS 0xVIRT 0xLEN 0xPC PID
 * UNMAP SECS.USEC ID 0xPC PID
 * R WIDTH SECS.USEC ID 0xPHYS 0xVALUE 0xPC PID
 * W WIDTH SECS.USEC ID 0xPHYS 0xVALUE 0xPC PID
 * UNKNOWN SECS.USEC ID 0xPHYS XX,XX,XX 0xPC PID
 * MARK SECS.USEC text
 * ```
 *
 * PCIDEV carries `/proc/bus/pci/devices` data: bus and devfn, vendor and
 * device, the IRQ, then seven resource starts (with the PCI region flags in
 * their low 4 bits) and seven sizes, all hex. Widths are 1, 2 or 4 bytes, and
 * 8 on x86-64 (`movq`): an 8-byte access is taken as two 32-bit accesses, low
 * word first, as RM's BAR0 path makes them (facts §2.1). A `MARK 0.000000
 * Lost N events.` line (the kernel's overrun notice) is counted: the trace is
 * then incomplete, and the snapshot's state says so. `UNKNOWN` records (an
 * instruction mmiotrace could not decode) and the kernel's `rw what?` /
 * `map what?` lines are counted as skipped with their reason; any other
 * malformed line is refused with its line number and why.
 *
 * ## What is rebuilt
 *
 * - The card: the first NVIDIA function (vendor 0x10de) whose resource 0 a
 *   MAP line maps. Resource 0 is BAR0 (16 MiB of registers), resource 1 is
 *   BAR1 (the framebuffer aperture), resource 3 is what novamm calls BAR2
 *   (the instance-memory aperture, facts §11). Maps of other devices are
 *   counted and skipped.
 * - Registers: every 32-bit BAR0 register as last read or written. Narrower
 *   accesses update the bytes they touch; a word only partly seen is left out
 *   (never made up) and counted.
 * - VRAM, mirrored byte by byte from every access that tells a value (reads
 *   too): PRAMIN (BAR0 0x700000, 1 MiB) through the window register
 *   (NV_PBUS_BAR0_WINDOW 0x1700 before Hopper, NV_XAL_EP_BAR0_WINDOW 0x10FD40
 *   from Hopper on; hw/regs.ts `windowRegister`); BAR1 and BAR2 in physical
 *   mode (BAR offset = VRAM address); BAR1 and BAR2 in virtual mode
 *   translated through the tables mirrored so far (the simulator's page
 *   walker, hw/sim/mmu.ts, written from the hardware facts), or counted as
 *   unmirrored with the reason (a table not seen, a system-memory page).
 *   Translation ignores TLB caching: a driver that changes a PTE without
 *   invalidating sees the old page on hardware, the import the new one.
 * - Bindings: the BAR1 bind registers as hw/family/bar1_bind.ts reads them
 *   (and, in `state.bar1AtStart`, as read before the driver first wrote one:
 *   the card's binding when the trace began, which a reopen's VRAM layout
 *   uses; null when the driver wrote them before reading them);
 *   BAR2 through its own registers (0xB80F48 and 0x1714 before Hopper,
 *   0xB80F70/74 from Hopper on; same fields as BAR1's); TLB invalidates
 *   (NV_VIRTUAL_FUNCTION_PRIV_MMU_INVALIDATE with a VID_MEM PDB) name more
 *   page-table roots. Address spaces: each instance block bound (its PDB read
 *   from the mirrored words 0x200/0x204), then each invalidated PDB not
 *   already known.
 *
 * Bounded: lines longer than 4096 characters are refused, live maps,
 * PCIDEV lines and registers are capped, and the mirrored VRAM stops at
 * `maxVramBytes` (default 256 MiB; what does not fit is counted).
 *
 * @module
 */

import { type ChipInfo, decodeChip } from "../chip.ts";
import { readVramSize } from "../device.ts";
import { describe, fail, formatSize, hex } from "../errors.ts";
import { chipFamily } from "../family/mod.ts";
import type { ChipFamily } from "../family/types.ts";
import { interruptPoint, Mmio, type MmioAccess } from "../mmio.ts";
import {
  BAR1_BLOCK,
  BAR1_BLOCK_LOW,
  type Field,
  getField,
  MMU_INVALIDATE,
  MMU_INVALIDATE_PDB,
  MMU_INVALIDATE_UPPER_PDB,
  NV_PMC_BOOT_0,
  NV_PMC_BOOT_42,
  NV_PRAMIN,
  NV_RAMIN_PAGE_DIR_BASE_HI,
  NV_RAMIN_PAGE_DIR_BASE_LO,
  NV_VIRTUAL_FUNCTION_PRIV_MMU_INVALIDATE,
  NV_VIRTUAL_FUNCTION_PRIV_MMU_INVALIDATE_PDB,
  NV_VIRTUAL_FUNCTION_PRIV_MMU_INVALIDATE_UPPER_PDB,
  PRAMIN_BASE_SHIFT,
  PRAMIN_SIZE,
  RAMIN_PDB,
  type WindowRegister,
  windowRegister,
} from "../regs.ts";
import { SimMmu } from "../sim/mmu.ts";
import { SparseMemory } from "../sim/vram.ts";
import { readLines } from "../trace.ts";
import { checkObject, checkOptions, checkUint } from "../validate.ts";
import {
  type Snapshot,
  SNAPSHOT_FORMAT,
  SNAPSHOT_VERSION,
  type SnapshotAddressSpace,
  type SnapshotVramRange,
} from "./types.ts";

export type { MmioAccess, Width } from "../mmio.ts";
export type {
  Snapshot,
  SnapshotAddressSpace,
  SnapshotChip,
  SnapshotSource,
  SnapshotVramRange,
} from "./types.ts";
export { SNAPSHOT_FORMAT } from "./types.ts";

/** The only log version the kernel writes. */
export const MMIOTRACE_VERSION = "20070824";
/** Longest line accepted (a PCIDEV line with a driver name is under 300 characters). */
export const MMIOTRACE_MAX_LINE = 4096;
/** Default cap on mirrored VRAM. */
export const DEFAULT_MAX_VRAM_BYTES = 256 * 2 ** 20;
/** Live maps at once (the kernel's map ids count up; a driver holds a few dozen). */
export const MAX_LIVE_MAPS = 65536;
/** PCIDEV lines kept (one per PCI function of the machine). */
export const MAX_PCIDEVS = 4096;
/** Registers kept (BAR0 holds 4 Mi words; drivers touch tens of thousands). */
export const DEFAULT_MAX_REGISTERS = 1 << 20;

const PAGE = 4096;
const NVIDIA = 0x10de;
const BAR0_BYTES = 16 * 2 ** 20;
/** A read value the snapshot never made: used by the register view for "not recorded". */
const NOT_RECORDED = 0xbadf0000;

// --- records -----------------------------------------------------------------

/** A PCIDEV record: one PCI function of the traced machine. */
export interface MmiotracePciDev {
  /** `0000:BB:DD.F` (mmiotrace prints no domain: 0000). */
  bdf: string;
  /** PCI vendor id. */
  vendor: number;
  /** PCI device id. */
  device: number;
  /** Resource starts (flags masked off), 7 entries (BAR0..5, ROM). */
  bases: number[];
  /** Resource sizes, 7 entries (0: absent). */
  sizes: number[];
  /** The bound driver's name, or "". */
  driver: string;
}

/** One parsed line of an mmiotrace log. */
export type MmiotraceRecord =
  | { kind: "version"; line: number; version: string }
  | { kind: "pcidev"; line: number; dev: MmiotracePciDev }
  | { kind: "lspci"; line: number; text: string }
  | {
    kind: "map";
    line: number;
    time: number;
    id: number;
    phys: number;
    virt: bigint;
    length: number;
  }
  | { kind: "unmap"; line: number; time: number; id: number }
  | {
    kind: "rw";
    line: number;
    op: "r" | "w";
    /** 1, 2, 4 or 8. */
    width: 1 | 2 | 4 | 8;
    time: number;
    id: number;
    phys: number;
    /** The value's low 32 bits (all of it below width 8). */
    value: number;
    /** Bits 63:32 of an 8-byte access, else 0. */
    high: number;
  }
  | { kind: "unknown"; line: number; time: number; id: number; phys: number }
  | { kind: "mark"; line: number; time: number; text: string }
  | { kind: "skip"; line: number; reason: string }
  | { kind: "empty"; line: number };

function bad(where: string, n: number, line: string, why: string): never {
  return fail(
    "EINVAL",
    `${where} line ${n}: ${why} (${JSON.stringify(line.slice(0, 100))})`,
    "an mmiotrace log is what `cat /sys/kernel/debug/tracing/trace_pipe` gives with the mmiotrace tracer (Documentation/trace/mmiotrace.rst)",
  );
}

const TIME_RE = /^(\d{1,10})\.(\d{1,9})$/;
const HEX_RE = /^0x([0-9a-fA-F]{1,16})$/;
const DEC_RE = /^-?\d{1,10}$/;

function timeOf(s: string, where: string, n: number, line: string): number {
  const m = TIME_RE.exec(s);
  if (m === null) bad(where, n, line, `timestamp ${JSON.stringify(s)} is not SECONDS.MICROSECONDS`);
  return Number(m[1]) + Number(`0.${m[2]}`);
}

function hexOf(s: string, what: string, where: string, n: number, line: string): bigint {
  const m = HEX_RE.exec(s);
  if (m === null) bad(where, n, line, `${what} ${JSON.stringify(s)} is not 0x-prefixed hex`);
  return BigInt(`0x${m[1]}`);
}

function safeOf(v: bigint, what: string, where: string, n: number, line: string): number {
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) bad(where, n, line, `${what} ${hex(v)} is past 2^53`);
  return Number(v);
}

function idOf(s: string, where: string, n: number, line: string): number {
  if (!DEC_RE.exec(s)) bad(where, n, line, `map id ${JSON.stringify(s)} is not a decimal number`);
  return Number(s);
}

function fieldsOf(
  f: string[],
  count: number,
  what: string,
  where: string,
  n: number,
  line: string,
): void {
  if (f.length !== count) {
    bad(where, n, line, `a ${what} record has ${count - 1} arguments, this one ${f.length - 1}`);
  }
}

/** A PC and PID pair: PC hex, PID decimal (the kernel prints 0x0 and 0). */
function tailOf(pc: string, pid: string, where: string, n: number, line: string): void {
  hexOf(pc, "PC", where, n, line);
  if (!DEC_RE.exec(pid)) bad(where, n, line, `PID ${JSON.stringify(pid)} is not a decimal number`);
}

const PCIDEV_HEX = /^[0-9a-fA-F]{1,16}$/;

function pcidevOf(f: string[], where: string, n: number, line: string): MmiotracePciDev {
  if (f.length < 18 || f.length > 19) {
    bad(
      where,
      n,
      line,
      `a PCIDEV record has 17 arguments and a driver name, this one ${f.length - 1}`,
    );
  }
  for (let i = 1; i < 18; i++) {
    if (!PCIDEV_HEX.test(f[i])) {
      bad(where, n, line, `PCIDEV item ${i} ${JSON.stringify(f[i])} is not hex`);
    }
  }
  if (f[1].length !== 4 || f[2].length !== 8) {
    bad(where, n, line, "PCIDEV starts with BBDF (4 hex digits) and VVVVDDDD (8 hex digits)");
  }
  const bus = parseInt(f[1].slice(0, 2), 16);
  const devfn = parseInt(f[1].slice(2), 16);
  const bases: number[] = [];
  const sizes: number[] = [];
  for (let i = 0; i < 7; i++) {
    const b = BigInt(`0x${f[4 + i]}`);
    const s = BigInt(`0x${f[11 + i]}`);
    // Bit 0 set: an I/O resource (flags in bits 1:0); else memory (flags in bits 3:0).
    const base = b & 1n ? b & ~3n : b & ~0xfn;
    bases.push(safeOf(base, `PCIDEV resource ${i} start`, where, n, line));
    sizes.push(safeOf(s, `PCIDEV resource ${i} size`, where, n, line));
  }
  const two = (x: number) => x.toString(16).padStart(2, "0");
  return {
    bdf: `0000:${two(bus)}:${two(devfn >> 3)}.${devfn & 7}`,
    vendor: parseInt(f[2].slice(0, 4), 16),
    device: parseInt(f[2].slice(4), 16),
    bases,
    sizes,
    driver: f[18] ?? "",
  };
}

/**
 * Parses one line of an mmiotrace log (without its newline; a trailing `\r`
 * is dropped). EINVAL names the line and the reason.
 *
 * @example
 * ```ts
 * parseMmiotraceLine("W 4 12.000100 1 0xf2001700 0x10 0x0 0", 5);
 * // { kind: "rw", op: "w", width: 4, time: 12.0001, id: 1, phys: 0xf2001700, value: 0x10, ... }
 * ```
 */
export function parseMmiotraceLine(
  raw: string,
  n: number,
  options: { path?: string } = {},
): MmiotraceRecord {
  checkOptions(options, { path: "string" }, "parseMmiotraceLine options");
  if (typeof raw !== "string") {
    fail("EINVAL", `an mmiotrace line is a string, not ${describe(raw)}`);
  }
  checkUint(n, "line number");
  const where = options.path ?? "mmiotrace";
  const line = raw.endsWith("\r") ? raw.slice(0, -1) : raw;
  if (line.length > MMIOTRACE_MAX_LINE) {
    bad(where, n, line, `a line of ${line.length} characters (at most ${MMIOTRACE_MAX_LINE})`);
  }
  if (line.trim() === "") return { kind: "empty", line: n };
  // The `trace` file (not `trace_pipe`) starts with ftrace's `#` comment lines.
  if (line.startsWith("#")) return { kind: "skip", line: n, reason: "ftrace comment line" };
  const sp = line.indexOf(" ");
  const key = sp < 0 ? line : line.slice(0, sp);
  if (key === "MARK") {
    const m = /^MARK (\S+) ?(.*)$/.exec(line);
    if (m === null) bad(where, n, line, "a MARK record is MARK SECS.USEC TEXT");
    return { kind: "mark", line: n, time: timeOf(m[1], where, n, line), text: m[2] };
  }
  if (key === "LSPCI") return { kind: "lspci", line: n, text: line.slice(6) };
  if (line === "rw what?" || line === "map what?") {
    return {
      kind: "skip",
      line: n,
      reason: `the kernel's "${line}" (an event it could not print)`,
    };
  }
  const f = line.trim().split(/ +/);
  switch (key) {
    case "VERSION":
      fieldsOf(f, 2, "VERSION", where, n, line);
      if (f[1] !== MMIOTRACE_VERSION) {
        bad(where, n, line, `log version ${JSON.stringify(f[1])} is not ${MMIOTRACE_VERSION}`);
      }
      return { kind: "version", line: n, version: f[1] };
    case "PCIDEV":
      return { kind: "pcidev", line: n, dev: pcidevOf(f, where, n, line) };
    case "MAP": {
      fieldsOf(f, 8, "MAP", where, n, line);
      tailOf(f[6], f[7], where, n, line);
      const length = safeOf(hexOf(f[5], "length", where, n, line), "length", where, n, line);
      if (length === 0) bad(where, n, line, "a MAP of 0 bytes");
      const phys = safeOf(
        hexOf(f[3], "physical address", where, n, line),
        "physical address",
        where,
        n,
        line,
      );
      if (phys + length > Number.MAX_SAFE_INTEGER) bad(where, n, line, "the map ends past 2^53");
      return {
        kind: "map",
        line: n,
        time: timeOf(f[1], where, n, line),
        id: idOf(f[2], where, n, line),
        phys,
        virt: hexOf(f[4], "virtual address", where, n, line),
        length,
      };
    }
    case "UNMAP":
      fieldsOf(f, 5, "UNMAP", where, n, line);
      tailOf(f[3], f[4], where, n, line);
      return {
        kind: "unmap",
        line: n,
        time: timeOf(f[1], where, n, line),
        id: idOf(f[2], where, n, line),
      };
    case "R":
    case "W": {
      fieldsOf(f, 8, key, where, n, line);
      tailOf(f[6], f[7], where, n, line);
      const width = Number(f[1]);
      if (f[1] !== "1" && f[1] !== "2" && f[1] !== "4" && f[1] !== "8") {
        bad(where, n, line, `width ${JSON.stringify(f[1])} is not 1, 2, 4 or 8 bytes`);
      }
      const phys = safeOf(
        hexOf(f[4], "physical address", where, n, line),
        "physical address",
        where,
        n,
        line,
      );
      if (phys % width !== 0) {
        bad(where, n, line, `${width}-byte access at ${hex(phys)} is misaligned`);
      }
      const v = hexOf(f[5], "value", where, n, line);
      if (v >> BigInt(8 * width) !== 0n) {
        bad(where, n, line, `value ${hex(v)} does not fit a ${width}-byte access`);
      }
      return {
        kind: "rw",
        line: n,
        op: key === "R" ? "r" : "w",
        width: width as 1 | 2 | 4 | 8,
        time: timeOf(f[2], where, n, line),
        id: idOf(f[3], where, n, line),
        phys,
        value: Number(v & 0xffffffffn),
        high: Number(v >> 32n),
      };
    }
    case "UNKNOWN": {
      fieldsOf(f, 7, "UNKNOWN", where, n, line);
      tailOf(f[5], f[6], where, n, line);
      if (!/^[0-9a-fA-F]{2},[0-9a-fA-F]{2},[0-9a-fA-F]{2}$/.test(f[4])) {
        bad(where, n, line, `UNKNOWN opcode bytes ${JSON.stringify(f[4])} are not XX,XX,XX`);
      }
      return {
        kind: "unknown",
        line: n,
        time: timeOf(f[1], where, n, line),
        id: idOf(f[2], where, n, line),
        phys: safeOf(
          hexOf(f[3], "physical address", where, n, line),
          "physical address",
          where,
          n,
          line,
        ),
      };
    }
    default:
      return bad(
        where,
        n,
        line,
        `${
          JSON.stringify(key.slice(0, 20))
        } is no mmiotrace record (VERSION, PCIDEV, LSPCI, MAP, UNMAP, R, W, UNKNOWN, MARK)`,
      );
  }
}

// --- mirrored VRAM -----------------------------------------------------------

/** VRAM seen in a trace: 4 KiB pages of bytes, each byte known or not. */
class Mirror {
  readonly pages = new Map<number, { data: Uint8Array; known: Uint8Array }>();
  readonly maxPages: number;
  bytes = 0;
  refused = 0;

  constructor(maxBytes: number) {
    this.maxPages = Math.floor(maxBytes / PAGE);
  }

  /** Stores `width` bytes of `lo`/`hi` (little-endian) at `addr`; false when past the cap. */
  put(addr: number, width: number, lo: number, hi: number): boolean {
    const index = Math.floor(addr / PAGE);
    let p = this.pages.get(index);
    if (p === undefined) {
      if (this.pages.size >= this.maxPages) {
        this.refused += width;
        return false;
      }
      p = { data: new Uint8Array(PAGE), known: new Uint8Array(PAGE) };
      this.pages.set(index, p);
    }
    const off = addr - index * PAGE;
    for (let i = 0; i < width; i++) {
      const v = i < 4 ? lo >>> (8 * i) : hi >>> (8 * (i - 4));
      p.data[off + i] = v & 0xff;
      if (!p.known[off + i]) {
        p.known[off + i] = 1;
        this.bytes++;
      }
    }
    return true;
  }

  /** The 32-bit word at `addr` (4-aligned) when all its bytes are known, else null. */
  word(addr: number): number | null {
    const p = this.pages.get(Math.floor(addr / PAGE));
    if (p === undefined) return null;
    const o = addr % PAGE;
    if (!(p.known[o] && p.known[o + 1] && p.known[o + 2] && p.known[o + 3])) return null;
    return (p.data[o] | (p.data[o + 1] << 8) | (p.data[o + 2] << 16) | (p.data[o + 3] << 24)) >>>
      0;
  }

  /** Sorted, merged ranges of fully known words; `partial` counts words only partly known. */
  ranges(): { ranges: SnapshotVramRange[]; partialWords: number } {
    const out: SnapshotVramRange[] = [];
    let partialWords = 0;
    let start = -1;
    let chunks: Uint8Array[] = [];
    let end = -1;
    const close = () => {
      if (start < 0) return;
      const data = new Uint8Array(end - start);
      let o = 0;
      for (const c of chunks) {
        data.set(c, o);
        o += c.length;
      }
      out.push({ addr: start, data, why: "trace" });
      start = -1;
      chunks = [];
    };
    for (const index of [...this.pages.keys()].sort((a, b) => a - b)) {
      const p = this.pages.get(index)!;
      const base = index * PAGE;
      let runStart = -1;
      for (let w = 0; w <= PAGE; w += 4) {
        const full = w < PAGE && p.known[w] && p.known[w + 1] && p.known[w + 2] && p.known[w + 3];
        if (w < PAGE && !full && (p.known[w] | p.known[w + 1] | p.known[w + 2] | p.known[w + 3])) {
          partialWords++;
        }
        if (full) {
          if (runStart < 0) runStart = w;
          continue;
        }
        if (runStart < 0) continue;
        const a = base + runStart;
        if (start >= 0 && end !== a) close();
        if (start < 0) start = a;
        chunks.push(p.data.slice(runStart, w));
        end = base + w;
        runStart = -1;
      }
    }
    close();
    return { ranges: out, partialWords };
  }
}

// --- the importer ------------------------------------------------------------

/** Options of {@linkcode importMmiotrace} and {@linkcode importMmiotraceFile}. */
export interface MmiotraceImportOptions {
  /** The file name, for messages and the snapshot's source. */
  path?: string;
  /** Cap on mirrored VRAM in bytes (default 256 MiB; 4 KiB .. 16 GiB). */
  maxVramBytes?: number;
  /** Cap on registers kept (default 2^20). */
  maxRegisters?: number;
  /** Which NVIDIA function to import (`0000:01:00.0`) when the log has several. */
  bdf?: string;
  /** BAR0 physical base when the log has no PCIDEV lines (with `bar1`, optionally `bar2`). */
  bar0?: number;
  /** BAR1 physical base when the log has no PCIDEV lines. */
  bar1?: number;
  /** BAR2 (PCI resource 3) physical base when the log has no PCIDEV lines. */
  bar2?: number;
  /** Free text for the snapshot's source. */
  comment?: string;
}

/** Why something was not mirrored or not applied: reason → count. */
type Counts = Record<string, number>;

function bump(c: Counts, why: string, by = 1): void {
  c[why] = (c[why] ?? 0) + by;
}

/** A BAR binding as the bind registers say. */
interface Binding {
  mode: "physical" | "virtual";
  instanceBlock: number | null;
  problem: string | null;
}

interface CardBars {
  bar0: number;
  bar1: number | null;
  bar2: number | null;
  sizes: { bar0: number; bar1: number; bar2?: number };
  dev: MmiotracePciDev | null;
}

type Region = "bar0" | "bar1" | "bar2";

// BAR2 bind registers (OGKM tu102 dev_vm.h NV_VIRTUAL_FUNCTION_PRIV_BAR2_BLOCK, dev_bus.h
// NV_PBUS_BAR2_BLOCK; gh100 dev_vm.h NV_VIRTUAL_FUNCTION_PRIV_FUNC_BAR2_BLOCK_LOW/HIGH_ADDR;
// facts §14.1 item 7.4): the same fields as BAR1's.
const BAR2_VF = 0xb80f48;
const BAR2_LEGACY = 0x001714;
const BAR2_LOW = 0xb80f70;
const BAR2_HIGH = 0xb80f74;
const LIMIT_NOTES = 100;
/** Distinct instance blocks bound, and distinct PDBs invalidated, kept (each). */
const MAX_ROOTS = 4096;

/**
 * Feeds an mmiotrace log line by line and builds the snapshot. Use
 * {@linkcode importMmiotrace} (text) or {@linkcode importMmiotraceFile}
 * (streamed); this class is for readers that already split lines.
 *
 * @example
 * ```ts
 * const imp = new MmiotraceImporter({ path: "x.txt" });
 * let n = 0;
 * for (const l of Deno.readTextFileSync("x.txt").split("\n")) imp.line(l, ++n);
 * const snap = imp.finish();
 * ```
 */
export class MmiotraceImporter {
  readonly #where: string;
  readonly #o: MmiotraceImportOptions;
  readonly #maxRegisters: number;
  readonly #mirror: Mirror;
  readonly #pcidevs: MmiotracePciDev[] = [];
  readonly #maps = new Map<number, { phys: number; length: number; region: Region | null }>();
  readonly #regs = new Map<number, { value: number; mask: number }>();
  readonly #skipped: Counts = {};
  readonly #unmirrored: Counts = {};
  readonly #assumed: Counts = {};
  #missing = false;
  readonly #marks: { line: number; text: string }[] = [];
  readonly #bindings: { bar: string; line: number; mode: string; instanceBlock: number | null }[] =
    [];
  readonly #bound = new Map<string, { bar: string; instanceBlock: number; line: number }>();
  readonly #tlbPdbs = new Map<number, number>();
  #card: CardBars | null = null;
  #version: string | null = null;
  #lines = 0;
  #reads = 0;
  #writes = 0;
  #lost = 0;
  #otherDevice = 0;
  #chip: ChipInfo | null = null;
  #family: ChipFamily | null = null;
  #window: WindowRegister | null = null;
  #windowBase: number | null = null;
  #windowSeen: string | null = null;
  #bar1: Binding = { mode: "physical", instanceBlock: null, problem: null };
  #bar2: Binding = { mode: "physical", instanceBlock: null, problem: null };
  #bar1Known = false;
  #bar2Known = false;
  /** BAR1's binding as read before the traced driver wrote a bind register (null: not read first). */
  #bar1AtStart: (Binding & { line: number }) | null = null;
  /** A BAR1 bind register was written: later reads show the driver's binding, not the card's at start. */
  #bar1Written = false;
  #mmu: SimMmu | null = null;
  #facade: Mmio;
  #finished = false;

  /** Checks the options (EINVAL names the bad one). */
  constructor(options: MmiotraceImportOptions = {}) {
    checkOptions(options, {
      path: "string",
      maxVramBytes: "number",
      maxRegisters: "number",
      bdf: "string",
      bar0: "number",
      bar1: "number",
      bar2: "number",
      comment: "string",
    }, "mmiotrace import options");
    const maxVram = options.maxVramBytes ?? DEFAULT_MAX_VRAM_BYTES;
    if (!Number.isSafeInteger(maxVram) || maxVram < PAGE || maxVram > 16 * 2 ** 30) {
      fail(
        "EINVAL",
        `maxVramBytes ${describe(maxVram)} is not an integer in [4 KiB, 16 GiB]`,
      );
    }
    this.#maxRegisters = options.maxRegisters ?? DEFAULT_MAX_REGISTERS;
    if (
      !Number.isSafeInteger(this.#maxRegisters) || this.#maxRegisters < 1 ||
      this.#maxRegisters > 1 << 22
    ) {
      fail("EINVAL", `maxRegisters ${describe(this.#maxRegisters)} is not an integer in [1, 2^22]`);
    }
    for (const k of ["bar0", "bar1", "bar2"] as const) {
      if (options[k] !== undefined) checkUint(options[k], `mmiotrace import ${k}`);
    }
    if ((options.bar1 !== undefined || options.bar2 !== undefined) && options.bar0 === undefined) {
      fail("EINVAL", "mmiotrace import bar1/bar2 bases need the bar0 base too");
    }
    this.#o = { ...options };
    this.#where = options.path ?? "mmiotrace";
    this.#mirror = new Mirror(maxVram);
    const regs = this.#regs;
    // The bind decoders of hw/family read registers through an Mmio: answer from what was seen.
    this.#facade = new Mmio("trace bar0", {
      size: BAR0_BYTES,
      read8: () => NOT_RECORDED & 0xff,
      read16: () => NOT_RECORDED & 0xffff,
      read32: (o) => {
        const r = regs.get(o);
        return r !== undefined && r.mask === 0xf ? r.value : NOT_RECORDED;
      },
      write8() {},
      write16() {},
      write32() {},
    }, { readOnly: true });
  }

  /** Takes one line (1-based number `n`); EINVAL names a malformed one. */
  line(raw: string, n: number): void {
    if (this.#finished) fail("EINVAL", "this mmiotrace import has finished");
    const r = parseMmiotraceLine(raw, n, { path: this.#where });
    this.#lines = n;
    if (this.#version === null && r.kind !== "empty" && r.kind !== "skip") {
      if (r.kind !== "version") {
        bad(this.#where, n, raw, `the log does not start with "VERSION ${MMIOTRACE_VERSION}"`);
      }
    }
    switch (r.kind) {
      case "empty":
      case "lspci":
        return;
      case "skip":
        bump(this.#skipped, r.reason);
        return;
      case "version":
        if (this.#version !== null) bad(this.#where, n, raw, "a second VERSION line");
        this.#version = r.version;
        return;
      case "pcidev":
        if (this.#pcidevs.length >= MAX_PCIDEVS) {
          bad(this.#where, n, raw, `more than ${MAX_PCIDEVS} PCIDEV lines`);
        }
        this.#pcidevs.push(r.dev);
        return;
      case "mark": {
        const lost = /^Lost (\d+) events\.?$/.exec(r.text);
        if (lost !== null) this.#lost += Number(lost[1]);
        if (this.#marks.length < LIMIT_NOTES) this.#marks.push({ line: n, text: r.text });
        return;
      }
      case "map":
        return this.#map(r.id, r.phys, r.length, n, raw);
      case "unmap":
        if (!this.#maps.delete(r.id)) {
          bad(this.#where, n, raw, `UNMAP of map id ${r.id}, which is not mapped`);
        }
        return;
      case "unknown": {
        const m = this.#mapOf(r.id, r.phys, 1, n, raw);
        if (m.region === null) {
          this.#otherDevice++;
          return;
        }
        bump(
          this.#skipped,
          `UNKNOWN instruction on ${m.region} (its effect is unknown; later values may not match)`,
        );
        return;
      }
      case "rw": {
        const m = this.#mapOf(r.id, r.phys, r.width, n, raw);
        if (m.region === null) {
          this.#otherDevice++;
          return;
        }
        const off = r.phys - this.#base(m.region);
        if (r.op === "r") this.#reads++;
        else this.#writes++;
        if (r.width === 8) {
          this.#access(m.region, r.op, 4, off, r.value, n);
          this.#access(m.region, r.op, 4, off + 4, r.high, n);
        } else {
          this.#access(m.region, r.op, r.width, off, r.value, n);
        }
      }
    }
  }

  #base(region: Region): number {
    const c = this.#card!;
    return region === "bar0" ? c.bar0 : region === "bar1" ? c.bar1! : c.bar2!;
  }

  #mapOf(id: number, phys: number, width: number, n: number, raw: string) {
    const m = this.#maps.get(id);
    if (m === undefined) {
      bad(this.#where, n, raw, `access through map id ${id}, which no MAP line opened`);
    }
    if (phys < m.phys || phys + width > m.phys + m.length) {
      bad(
        this.#where,
        n,
        raw,
        `access at ${hex(phys)} is outside map id ${id} [${hex(m.phys)}, ${
          hex(m.phys + m.length)
        })`,
      );
    }
    return m;
  }

  /** Records a MAP: which BAR of the card (found now if not yet) it falls in. */
  #map(id: number, phys: number, length: number, n: number, raw: string): void {
    if (this.#maps.has(id)) bad(this.#where, n, raw, `map id ${id} is mapped twice`);
    if (this.#maps.size >= MAX_LIVE_MAPS) {
      bad(this.#where, n, raw, `more than ${MAX_LIVE_MAPS} live maps`);
    }
    this.#card ??= this.#findCard(phys);
    let region: Region | null = null;
    const c = this.#card;
    if (c !== null) {
      const within = (base: number | null, size: number | undefined) =>
        base !== null && phys >= base && phys + length <= base + (size ?? 0);
      if (within(c.bar0, c.sizes.bar0)) region = "bar0";
      else if (within(c.bar1, c.sizes.bar1)) region = "bar1";
      else if (within(c.bar2, c.sizes.bar2)) region = "bar2";
      else if (
        ([[c.bar0, c.sizes.bar0], [c.bar1, c.sizes.bar1], [c.bar2, c.sizes.bar2]] as [
          number | null,
          number | undefined,
        ][]).some(([b, s]) => b !== null && s !== undefined && phys < b + s && phys + length > b)
      ) {
        bad(this.#where, n, raw, `MAP [${hex(phys)}, ${hex(phys + length)}) straddles a BAR's end`);
      }
    }
    this.#maps.set(id, { phys, length, region });
  }

  /** The card a MAP at `phys` belongs to, from the options or the PCIDEV lines; null: not an NVIDIA BAR0. */
  #findCard(phys: number): CardBars | null {
    const o = this.#o;
    if (o.bar0 !== undefined) {
      return {
        bar0: o.bar0,
        bar1: o.bar1 ?? null,
        bar2: o.bar2 ?? null,
        sizes: {
          bar0: BAR0_BYTES,
          bar1: o.bar1 === undefined ? 0 : 2 ** 40,
          ...(o.bar2 === undefined ? {} : { bar2: 2 ** 32 }),
        },
        dev: null,
      };
    }
    for (const d of this.#pcidevs) {
      if (d.vendor !== NVIDIA || d.sizes[0] < BAR0_BYTES) continue;
      if (o.bdf !== undefined && d.bdf !== o.bdf) continue;
      if (phys < d.bases[0] || phys >= d.bases[0] + d.sizes[0]) continue;
      return {
        bar0: d.bases[0],
        bar1: d.sizes[1] > 0 ? d.bases[1] : null,
        bar2: d.sizes[3] > 0 ? d.bases[3] : null,
        sizes: {
          bar0: d.sizes[0],
          bar1: d.sizes[1],
          ...(d.sizes[3] > 0 ? { bar2: d.sizes[3] } : {}),
        },
        dev: d,
      };
    }
    return null;
  }

  // --- replaying accesses ---

  #access(region: Region, op: "r" | "w", width: number, off: number, value: number, n: number) {
    if (region === "bar0") {
      if (off >= NV_PRAMIN && off < NV_PRAMIN + PRAMIN_SIZE) {
        if (this.#windowBase === null) {
          bump(this.#unmirrored, "PRAMIN access before the window register was seen");
          return;
        }
        this.#vram(this.#windowBase + off - NV_PRAMIN, width, value, 0);
        return;
      }
      this.#register(op, width, off, value, n);
      return;
    }
    const b = region === "bar1" ? this.#bar1 : this.#bar2;
    const known = region === "bar1" ? this.#bar1Known : this.#bar2Known;
    if (b.mode === "physical") {
      if (!known) {
        bump(
          this.#assumed,
          `${region} access before its bind registers were seen: taken as physical`,
        );
      }
      if (b.problem !== null) {
        bump(this.#unmirrored, `${region} physical with a non-VRAM target`);
        return;
      }
      this.#vram(off, width, value, 0);
      return;
    }
    const pdb = b.instanceBlock === null ? null : this.#pdbOf(b.instanceBlock);
    if (pdb === null) {
      bump(this.#unmirrored, `${region} virtual: instance block or PDB not seen`);
      return;
    }
    const mmu = this.#mmuOf();
    if (mmu === null) {
      bump(this.#unmirrored, `${region} virtual: chip unknown, cannot walk its tables`);
      return;
    }
    this.#missing = false;
    const t = mmu.walk(pdb, off);
    if ("fault" in t && this.#missing) {
      bump(this.#unmirrored, `${region} virtual: its tables are not all in the trace`);
      return;
    }
    if ("fault" in t) {
      bump(this.#unmirrored, `${region} virtual: ${t.fault} at ${t.level} in the mirrored tables`);
      return;
    }
    if (t.aperture !== "video" || typeof t.pa !== "number") {
      bump(this.#unmirrored, `${region} virtual: page in ${t.aperture} memory`);
      return;
    }
    this.#vram(t.pa, width, value, 0);
  }

  #vram(addr: number, width: number, value: number, high: number): void {
    if (!this.#mirror.put(addr, width, value, high)) {
      bump(this.#unmirrored, "past the mirrored-VRAM cap (maxVramBytes)");
    }
  }

  #register(op: "r" | "w", width: number, off: number, value: number, n: number): void {
    const word = off & ~3;
    let r = this.#regs.get(word);
    if (r === undefined) {
      if (this.#regs.size >= this.#maxRegisters) {
        bump(this.#skipped, "register past the register cap (maxRegisters)");
        return;
      }
      r = { value: 0, mask: 0 };
      this.#regs.set(word, r);
    }
    const shift = (off & 3) * 8;
    const bytesMask = width === 4 ? 0xf : ((1 << width) - 1) << (off & 3);
    const valueMask = width === 4 ? 0xffffffff : ((2 ** (8 * width) - 1) * 2 ** shift) >>> 0;
    r.value = ((r.value & ~valueMask) | ((value * 2 ** shift) & valueMask)) >>> 0;
    r.mask |= bytesMask;
    if (r.mask !== 0xf) return;
    this.#follow(word, op, n);
  }

  #reg(offset: number): number | null {
    const r = this.#regs.get(offset);
    return r !== undefined && r.mask === 0xf ? r.value : null;
  }

  /** Reacts to a fully known register: chip identity, window, bindings, invalidates. */
  #follow(word: number, op: "r" | "w", n: number): void {
    if (word === NV_PMC_BOOT_0 || word === NV_PMC_BOOT_42) {
      if (this.#chip === null) this.#identify();
      return;
    }
    if (word === 0x1700 || word === 0x10fd40) {
      const win = this.#window ??
        (word === 0x1700 ? windowRegister("Ampere") : windowRegister("Hopper"));
      if (win.offset !== word) return;
      const v = this.#reg(word)!;
      if (win.target !== null && getField(v, win.target) !== 0) {
        this.#windowBase = null; // system memory behind the window: nothing to mirror
        return;
      }
      this.#windowBase = getField(v, win.base) * 2 ** PRAMIN_BASE_SHIFT;
      this.#windowSeen ??= this.#window === null
        ? `${win.name} followed from line ${n} before the chip was identified`
        : null;
      return;
    }
    if (word === NV_VIRTUAL_FUNCTION_PRIV_MMU_INVALIDATE && op === "w") {
      const v = this.#reg(word)!;
      if (!getField(v, MMU_INVALIDATE.TRIGGER) || getField(v, MMU_INVALIDATE.ALL_PDB)) return;
      const lo = this.#reg(NV_VIRTUAL_FUNCTION_PRIV_MMU_INVALIDATE_PDB);
      if (lo === null || getField(lo, MMU_INVALIDATE_PDB.APERTURE) !== 0) return;
      const hi = this.#reg(NV_VIRTUAL_FUNCTION_PRIV_MMU_INVALIDATE_UPPER_PDB) ?? 0;
      const pdb = getField(lo, MMU_INVALIDATE_PDB.ADDR) * PAGE +
        getField(hi, MMU_INVALIDATE_UPPER_PDB.ADDR) * 2 ** 40;
      if (this.#tlbPdbs.has(pdb) || this.#tlbPdbs.size < MAX_ROOTS) {
        this.#tlbPdbs.set(pdb, (this.#tlbPdbs.get(pdb) ?? 0) + 1);
      } else bump(this.#skipped, `TLB invalidate past ${MAX_ROOTS} distinct PDBs`);
      return;
    }
    const bar1Regs = this.#family?.bar1.watched ?? [0xb80f40, 0x001704, 0xb80f60, 0xb80f64];
    if (bar1Regs.includes(word)) {
      this.#bar1 = this.#readBar1();
      this.#bar1Known = true;
      if (op === "w") this.#bar1Written = true;
      else if (!this.#bar1Written) this.#bar1AtStart = { ...this.#bar1, line: n };
      this.#noteBinding("bar1", this.#bar1, n);
      return;
    }
    if ([BAR2_VF, BAR2_LEGACY, BAR2_LOW, BAR2_HIGH].includes(word)) {
      this.#bar2 = this.#readBar2();
      this.#bar2Known = true;
      this.#noteBinding("bar2", this.#bar2, n);
    }
  }

  #noteBinding(bar: string, b: Binding, line: number): void {
    const last = this.#bindings.findLast((x) => x.bar === bar);
    if (last !== undefined && last.mode === b.mode && last.instanceBlock === b.instanceBlock) {
      return;
    }
    if (this.#bindings.length < LIMIT_NOTES) {
      this.#bindings.push({ bar, line, mode: b.mode, instanceBlock: b.instanceBlock });
    }
    if (b.mode === "virtual" && b.instanceBlock !== null) {
      const key = `${bar}@${b.instanceBlock}`;
      if (this.#bound.has(key) || this.#bound.size < MAX_ROOTS) {
        this.#bound.set(key, { bar, instanceBlock: b.instanceBlock, line });
      } else bump(this.#skipped, `binding past ${MAX_ROOTS} distinct instance blocks`);
    }
  }

  #identify(): void {
    const b0 = this.#reg(NV_PMC_BOOT_0);
    const b42 = this.#reg(NV_PMC_BOOT_42);
    if (b0 === null || b42 === null) return;
    try {
      this.#chip = decodeChip(b0, b42);
      this.#family = chipFamily(this.#chip);
      this.#window = windowRegister(this.#chip.architecture);
    } catch {
      this.#chip = null;
    }
  }

  #readBar1(): Binding {
    if (this.#family !== null) {
      const s = this.#family.bar1.read(this.#facade);
      return { mode: s.mode, instanceBlock: s.instanceBlock, problem: s.problem };
    }
    // Chip not known yet: the register just seen decides (the same fields as the family tables).
    const low = this.#reg(0xb80f60);
    if (low !== null) {
      return bindOf(
        low,
        BAR1_BLOCK_LOW,
        (v) => getField(v, BAR1_BLOCK_LOW.PTR) * PAGE + (this.#reg(0xb80f64) ?? 0) * 2 ** 32,
      );
    }
    const v = this.#reg(0xb80f40) ?? this.#reg(0x001704) ?? 0;
    return bindOf(v, BAR1_BLOCK, (x) => getField(x, BAR1_BLOCK.PTR) * PAGE);
  }

  #readBar2(): Binding {
    const hopperOn = this.#chip !== null
      ? this.#chip.mmuVersion === 3
      : this.#reg(BAR2_LOW) !== null;
    if (hopperOn) {
      const low = this.#reg(BAR2_LOW) ?? 0;
      return bindOf(
        low,
        BAR1_BLOCK_LOW,
        (v) => getField(v, BAR1_BLOCK_LOW.PTR) * PAGE + (this.#reg(BAR2_HIGH) ?? 0) * 2 ** 32,
      );
    }
    // As for BAR1 (facts §14.1 CONFLICT): virtual if either register says so, the VF one first.
    const states = [this.#reg(BAR2_VF), this.#reg(BAR2_LEGACY)]
      .filter((v): v is number => v !== null)
      .map((v) => bindOf(v, BAR1_BLOCK, (x) => getField(x, BAR1_BLOCK.PTR) * PAGE));
    return states.find((s) => s.mode === "virtual") ?? states[0] ??
      { mode: "physical", instanceBlock: null, problem: null };
  }

  /** The PDB an instance block in mirrored VRAM names (TARGET VID), or null. */
  #pdbOf(inst: number): number | null {
    const lo = this.#mirror.word(inst + NV_RAMIN_PAGE_DIR_BASE_LO);
    const hi = this.#mirror.word(inst + NV_RAMIN_PAGE_DIR_BASE_HI);
    if (lo === null || hi === null || getField(lo, RAMIN_PDB.TARGET) !== 0) return null;
    return getField(lo, RAMIN_PDB.LO) * PAGE + hi * 2 ** 32;
  }

  #mmuOf(): SimMmu | null {
    if (this.#chip === null) return null;
    if (this.#mmu === null) {
      const size = this.#vramSize() ?? 2 ** 40;
      const mirror = this.#mirror;
      this.#mmu = new SimMmu({
        vram: new SparseMemory(size),
        vramSize: size,
        version: this.#chip.mmuVersion,
        architecture: this.#chip.architecture,
        tables: {
          read32: (a) => {
            const w = mirror.word(a);
            if (w !== null) return w;
            this.#missing = true;
            return 0;
          },
        },
      });
    }
    return this.#mmu;
  }

  #vramSize(): number | null {
    if (this.#chip === null) return null;
    try {
      return readVramSize(this.#facade, this.#chip);
    } catch {
      return null;
    }
  }

  /** Builds the snapshot. EINVAL when the log never named the card or its chip. */
  finish(): MmiotraceImport {
    if (this.#finished) fail("EINVAL", "this mmiotrace import has finished");
    this.#finished = true;
    const where = this.#where;
    if (this.#version === null) {
      fail("EINVAL", `${where} is empty: no "VERSION ${MMIOTRACE_VERSION}" line`);
    }
    const c = this.#card;
    if (c === null) {
      fail(
        "EINVAL",
        `${where}: no MAP line maps the BAR0 of an NVIDIA GPU (${this.#pcidevs.length} PCIDEV lines, ${this.#otherDevice} accesses to other devices)`,
        "a log from trace_pipe starts with PCIDEV lines; without them pass the BAR bases (bar0, bar1, bar2)",
      );
    }
    const chip = this.#chip;
    if (chip === null) {
      const b0 = this.#reg(NV_PMC_BOOT_0);
      const b42 = this.#reg(NV_PMC_BOOT_42);
      fail(
        "EINVAL",
        b0 === null || b42 === null
          ? `${where}: the trace never reads NV_PMC_BOOT_0 and NV_PMC_BOOT_42, so its chip is unknown`
          : `${where}: BOOT_0 ${hex(b0, 8)} / BOOT_42 ${hex(b42, 8)} name no chip novamm knows`,
        "record the driver from its load (mmiotrace catches only maps made while it runs)",
      );
    }
    const vramSize = this.#vramSize();
    const { ranges, partialWords } = this.#mirror.ranges();
    // Instance blocks bound, the live binding of each BAR last (named bar1/bar2), then TLB roots.
    const spaces: SnapshotAddressSpace[] = [];
    const seen = new Set<number>();
    const live = new Map<string, number | null>([
      ["bar1", this.#bar1.mode === "virtual" ? this.#bar1.instanceBlock : null],
      ["bar2", this.#bar2.mode === "virtual" ? this.#bar2.instanceBlock : null],
    ]);
    const earlier = new Map<string, number>();
    const ordered = [...this.#bound.values()].sort((a, b) =>
      Number(live.get(b.bar) === b.instanceBlock) - Number(live.get(a.bar) === a.instanceBlock)
    );
    const unresolved: string[] = [];
    for (const b of ordered) {
      const pdb = this.#pdbOf(b.instanceBlock);
      const isLive = live.get(b.bar) === b.instanceBlock;
      const name = isLive ? b.bar : `${b.bar}-${(earlier.get(b.bar) ?? 0) + 1}`;
      if (!isLive) earlier.set(b.bar, (earlier.get(b.bar) ?? 0) + 1);
      if (pdb === null) {
        unresolved.push(
          `${name} (instance block ${hex(b.instanceBlock)}, bound at line ${b.line})`,
        );
        continue;
      }
      seen.add(pdb);
      spaces.push({ name, pdb, mmuVersion: chip.mmuVersion, instanceBlock: b.instanceBlock });
    }
    let t = 0;
    for (const pdb of [...this.#tlbPdbs.keys()].sort((a, b) => a - b)) {
      if (seen.has(pdb)) continue;
      spaces.push({ name: `tlb${t++}`, pdb, mmuVersion: chip.mmuVersion, instanceBlock: null });
    }
    const registers = new Map<number, number>();
    let partialRegisters = 0;
    for (const [o, r] of [...this.#regs].sort((a, b) => a[0] - b[0])) {
      if (r.mask === 0xf) registers.set(o, r.value);
      else partialRegisters++;
    }
    const unmirroredBytes = Object.values(this.#unmirrored).reduce((a, b) => a + b, 0);
    const state: Record<string, unknown> = {
      trace: {
        lines: this.#lines,
        reads: this.#reads,
        writes: this.#writes,
        otherDeviceAccesses: this.#otherDevice,
        skipped: { ...this.#skipped },
        lostEvents: this.#lost,
        complete: this.#lost === 0,
        marks: this.#marks,
      },
      card: {
        bdf: c.dev?.bdf ?? null,
        driver: c.dev?.driver ?? null,
        bar0Phys: hex(c.bar0),
        bar1Phys: c.bar1 === null ? null : hex(c.bar1),
        bar2Phys: c.bar2 === null ? null : hex(c.bar2),
      },
      chip: chip.name,
      vramSizeKnown: vramSize !== null,
      window: {
        register: this.#window!.name,
        base: this.#windowBase === null ? null : hex(this.#windowBase),
        ...(this.#windowSeen === null ? {} : { note: this.#windowSeen }),
      },
      bar1: bindingState(this.#bar1, this.#bar1Known),
      // What novamm's open reads for the layout: the binding the card had before this driver
      // bound BAR1 (tables a driver made during the trace are not firmware's reserved memory).
      bar1AtStart: this.#bar1AtStart === null ? null : {
        ...bindingState(this.#bar1AtStart, true),
        line: this.#bar1AtStart.line,
      },
      bar2: bindingState(this.#bar2, this.#bar2Known),
      bindings: this.#bindings.map((b) => ({
        ...b,
        instanceBlock: b.instanceBlock === null ? null : hex(b.instanceBlock),
      })),
      tlbInvalidates: [...this.#tlbPdbs].map(([pdb, count]) => ({ pdb: hex(pdb), count })),
      unresolvedBindings: unresolved,
      vram: {
        mirrored: formatSize(this.#mirror.bytes),
        mirroredBytes: this.#mirror.bytes,
        ranges: ranges.length,
        partialWords,
        unmirrored: { ...this.#unmirrored },
        assumed: { ...this.#assumed },
        unmirroredAccesses: unmirroredBytes,
        cap: formatSize(this.#mirror.maxPages * PAGE),
        capped: this.#mirror.refused > 0,
      },
      registers: { count: registers.size, partial: partialRegisters },
    };
    const dev = c.dev;
    const snapshot: Snapshot = {
      format: SNAPSHOT_FORMAT,
      version: SNAPSHOT_VERSION,
      source: {
        kind: "mmiotrace",
        spec: this.#o.path ?? "mmiotrace",
        takenAt: new Date().toISOString(),
        tool: "novamm 0.1.0",
        ...(this.#o.comment === undefined ? {} : { comment: this.#o.comment }),
      },
      chip: {
        boot0: chip.boot0,
        boot42: chip.boot42,
        pci: dev === null ? null : {
          bdf: dev.bdf,
          vendor: dev.vendor,
          device: dev.device,
          subsystemVendor: null,
          subsystemDevice: null,
        },
        barSizes: c.sizes,
        vramSize: vramSize ?? 0,
      },
      state,
      registers,
      vram: ranges,
      addressSpaces: spaces,
    };
    return {
      snapshot,
      bars: { bar0: c.bar0, bar1: c.bar1, bar2: c.bar2, sizes: { ...c.sizes } },
      stats: {
        lines: this.#lines,
        reads: this.#reads,
        writes: this.#writes,
        registers: registers.size,
        vramBytes: ranges.reduce((a, r) => a + r.data.length, 0),
        unmirroredAccesses: unmirroredBytes,
        lostEvents: this.#lost,
      },
    };
  }
}

function bindOf(
  value: number,
  f: { MODE: Field; TARGET: Field },
  inst: (v: number) => number,
): Binding {
  const mode = getField(value, f.MODE) ? "virtual" : "physical";
  const target = getField(value, f.TARGET);
  return {
    mode,
    instanceBlock: mode === "virtual" && target === 0 ? inst(value) : null,
    problem: target === 0 ? null : `TARGET ${target} is not VRAM`,
  };
}

function bindingState(b: Binding, known: boolean): Record<string, unknown> {
  return {
    mode: known ? b.mode : "unknown (bind registers not in the trace)",
    instanceBlock: b.instanceBlock === null ? null : hex(b.instanceBlock),
    ...(b.problem === null ? {} : { problem: b.problem }),
  };
}

/** Where the card's BARs sit in the traced machine's physical address space. */
export interface MmiotraceBars {
  /** BAR0 base. */
  bar0: number;
  /** BAR1 base, or null when the card has none the log names. */
  bar1: number | null;
  /** BAR2 (PCI resource 3) base, or null. */
  bar2: number | null;
  /** Their sizes. */
  sizes: { bar0: number; bar1: number; bar2?: number };
}

/** What an import produced. */
export interface MmiotraceImport {
  /** The rebuilt snapshot. */
  snapshot: Snapshot;
  /** The card's BAR physical bases and sizes (for {@linkcode accessesOf}). */
  bars: MmiotraceBars;
  /** Counts, for a summary line. */
  stats: {
    lines: number;
    reads: number;
    writes: number;
    registers: number;
    vramBytes: number;
    unmirroredAccesses: number;
    lostEvents: number;
  };
}

/**
 * Imports the text of an mmiotrace log. EINVAL names the first malformed
 * line (number and reason) before a snapshot is made.
 *
 * @example
 * ```ts
 * const { snapshot } = importMmiotrace(Deno.readTextFileSync("nvidia-load.txt"));
 * snapshot.addressSpaces; // [{ name: "bar1", pdb: ..., mmuVersion: 2, instanceBlock: ... }]
 * ```
 */
export function importMmiotrace(
  text: string,
  options: MmiotraceImportOptions = {},
): MmiotraceImport {
  if (typeof text !== "string") {
    fail("EINVAL", `importMmiotrace takes the log's text, not ${describe(text)}`);
  }
  const imp = new MmiotraceImporter(options);
  let n = 0;
  let at = 0;
  while (at <= text.length) {
    let nl = text.indexOf("\n", at);
    if (nl < 0) nl = text.length;
    if (nl - at > MMIOTRACE_MAX_LINE + 1) {
      fail(
        "EINVAL",
        `${options.path ?? "mmiotrace"} line ${
          n + 1
        }: a line of more than ${MMIOTRACE_MAX_LINE} characters`,
      );
    }
    const line = text.slice(at, nl);
    n++;
    if (!(nl === text.length && line === "")) imp.line(line, n);
    if ((n & 0xffff) === 0) interruptPoint();
    at = nl + 1;
  }
  return imp.finish();
}

/**
 * Imports an mmiotrace log file, streamed (bounded memory whatever its size).
 *
 * @example
 * ```ts
 * const { snapshot, stats } = importMmiotraceFile("nvidia-load.txt", { maxVramBytes: 2 ** 30 });
 * ```
 */
export function importMmiotraceFile(
  path: string,
  options: MmiotraceImportOptions = {},
): MmiotraceImport {
  if (typeof path !== "string" || path === "") {
    fail("EINVAL", `mmiotrace path ${describe(path)} is not a file name`);
  }
  const imp = new MmiotraceImporter({ path, ...options });
  let n = 0;
  for (const line of readLines(path)) {
    n++;
    imp.line(line, n);
    if ((n & 0xffff) === 0) interruptPoint();
  }
  return imp.finish();
}

/**
 * True when `firstLine` starts an mmiotrace log (`VERSION 20070824`), for
 * readers that accept both novamm's trace format and the kernel's.
 */
export function isMmiotrace(firstLine: string): boolean {
  return typeof firstLine === "string" && /^VERSION \d+\s*$/.test(firstLine);
}

/**
 * Turns an mmiotrace record into a novamm access on the card's BARs (for
 * decoding): the BAR-relative offset, 8-byte accesses as two 32-bit ones.
 * Null for records that are not accesses or that hit another device.
 */
export function accessesOf(
  r: MmiotraceRecord,
  bars: MmiotraceBars,
): MmioAccess[] | null {
  checkObject(r, "accessesOf record");
  const b = checkObject(bars, "accessesOf bars");
  if (typeof b.bar0 !== "number" || checkObject(b.sizes, "accessesOf bars.sizes") === null) {
    fail("EINVAL", `accessesOf takes the bars an import returned, not ${describe(bars)}`);
  }
  if (r.kind !== "rw") return null;
  const regions: [string, number | null, number | undefined][] = [
    ["bar0", bars.bar0, bars.sizes.bar0],
    ["bar1", bars.bar1, bars.sizes.bar1],
    ["bar2", bars.bar2, bars.sizes.bar2],
  ];
  for (const [bar, base, size] of regions) {
    if (base === null || size === undefined || r.phys < base || r.phys >= base + size) continue;
    const offset = r.phys - base;
    if (r.width === 8) {
      return [
        { bar, op: r.op, width: 4, offset, value: r.value },
        { bar, op: r.op, width: 4, offset: offset + 4, value: r.high },
      ];
    }
    return [{ bar, op: r.op, width: r.width, offset, value: r.value }];
  }
  return null;
}

// --- page tables of a snapshot -----------------------------------------------

/** One page table (or directory) reachable from a snapshot's address spaces. */
export interface SnapshotTable {
  /** The address space's name. */
  space: string;
  /** Level name (`PD3`, `PD0`, `PT`, `PT64K`, ...). */
  level: string;
  /** VRAM address of the table. */
  addr: number;
  /** Bytes per entry (16 for PD0, else 8). */
  entrySize: number;
  /** Entries in the table. */
  entries: number;
  /** First VA the table covers. */
  va: bigint;
  /** VA bytes one entry covers. */
  span: bigint;
}

interface Geometry {
  name: string;
  shift: number;
  entries: number;
}

function geometry(version: 2 | 3): Geometry[] {
  return [
    ...(version === 3
      ? [{ name: "PD4", shift: 56, entries: 2 }, { name: "PD3", shift: 47, entries: 512 }]
      : [{ name: "PD3", shift: 47, entries: 4 }]),
    { name: "PD2", shift: 38, entries: 512 },
    { name: "PD1", shift: 29, entries: 512 },
    { name: "PD0", shift: 21, entries: 256 },
  ];
}

/** Most tables {@linkcode snapshotTables} visits (a hostile snapshot cannot make it loop). */
export const MAX_SNAPSHOT_TABLES = 1 << 18;

/**
 * Every page table reachable from the snapshot's address spaces through the
 * VRAM it holds (facts §5 entry formats, as hw/sim/mmu.ts walks them):
 * directories whose entries point at VID_MEM tables, PD0's big (64 KiB) and
 * small (4 KiB) page tables. A table the snapshot did not capture ends the
 * branch (its words are unknown). Returns a lookup from any VRAM address to
 * the table entry holding it.
 *
 * @example
 * ```ts
 * const { snapshot } = importMmiotraceFile("nvidia-load.txt");
 * const t = snapshotTables(snapshot);
 * t.at(0x40000); // { table: { space: "bar1", level: "PD3", ... }, index: 0 } or null
 * ```
 */
export function snapshotTables(snapshot: Snapshot): {
  tables: SnapshotTable[];
  at(addr: number): { table: SnapshotTable; index: number } | null;
} {
  if (snapshot === null || typeof snapshot !== "object" || !Array.isArray(snapshot.vram)) {
    fail("EINVAL", `snapshotTables takes a Snapshot, not ${describe(snapshot)}`);
  }
  const ranges = snapshot.vram;
  const word = (a: number): number | null => {
    let lo = 0;
    let hi = ranges.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const r = ranges[mid];
      if (a < r.addr) hi = mid - 1;
      else if (a + 4 > r.addr + r.data.length) lo = mid + 1;
      else {
        const o = a - r.addr;
        const d = r.data;
        return (d[o] | (d[o + 1] << 8) | (d[o + 2] << 16) | (d[o + 3] << 24)) >>> 0;
      }
    }
    return null;
  };
  const tables: SnapshotTable[] = [];
  const byAddr = new Map<number, SnapshotTable>();
  const add = (t: SnapshotTable): boolean => {
    if (byAddr.has(t.addr) || tables.length >= MAX_SNAPSHOT_TABLES) return false;
    byAddr.set(t.addr, t);
    tables.push(t);
    return true;
  };
  for (const space of snapshot.addressSpaces) {
    const v2 = space.mmuVersion === 2;
    const levels = geometry(space.mmuVersion);
    const next = (lo: number, hi: number) =>
      v2
        ? ((lo >>> 8) + (hi & 1) * 2 ** 24) * PAGE
        : ((lo >>> 12) + (hi & 0xfffff) * 2 ** 20) * PAGE;
    const visit = (addr: number, depth: number, va: bigint): void => {
      const g = levels[depth];
      const pd0 = depth === levels.length - 1;
      const entrySize = pd0 ? 16 : 8;
      const span = 1n << BigInt(g.shift);
      if (
        !add({ space: space.name, level: g.name, addr, entrySize, entries: g.entries, va, span })
      ) {
        return;
      }
      for (let i = 0; i < g.entries; i++) {
        const e = addr + i * entrySize;
        const lo = word(e);
        const hi = word(e + 4);
        if (lo === null || hi === null || lo & 1) continue;
        const eva = va + BigInt(i) * span;
        if (!pd0) {
          if (((lo >>> 1) & 3) === 1) visit(next(lo, hi), depth + 1, eva);
          continue;
        }
        if (((lo >>> 1) & 3) === 1) {
          const big = v2
            ? ((lo >>> 4) + (hi & 1) * 2 ** 28) * 256
            : ((lo >>> 8) + (hi & 0xfffff) * 2 ** 24) * 256;
          add({
            space: space.name,
            level: "PT64K",
            addr: big,
            entrySize: 8,
            entries: 32,
            va: eva,
            span: 1n << 16n,
          });
        }
        const slo = word(e + 8);
        const shi = word(e + 12);
        if (slo !== null && shi !== null && ((slo >>> 1) & 3) === 1) {
          add({
            space: space.name,
            level: "PT",
            addr: next(slo, shi),
            entrySize: 8,
            entries: 512,
            va: eva,
            span: 1n << 12n,
          });
        }
      }
    };
    visit(space.pdb, 0, 0n);
  }
  return {
    tables,
    at(addr: number) {
      for (const align of [PAGE, 256, 32, 16]) {
        const t = byAddr.get(addr - (addr % align));
        if (t !== undefined && addr < t.addr + t.entries * t.entrySize) {
          return { table: t, index: Math.floor((addr - t.addr) / t.entrySize) };
        }
      }
      return null;
    },
  };
}
