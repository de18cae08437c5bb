/**
 * The difference between two snapshots (`hw/snap/types.ts`): registers by
 * name, page-table entries by VA, VRAM captured in one but not the other and
 * VRAM captured in both that changed. `deno task diff A B` prints it
 * (`diff.ts`). It lives in `mm/` because it decodes page tables with the
 * codecs of `mm/pagetable/` (hw/ never imports mm/).
 *
 * Page tables: each snapshot's address spaces are walked from their roots
 * through the VRAM the snapshot holds ({@linkcode SnapshotVramReader}), as
 * the MMU walks them (`mm/pagetable/walk.ts`): a directory entry pointing at
 * a video-memory table is followed, every other non-zero entry is a leaf —
 * a PTE at PT/PT64K, a huge PTE at a directory level, or a directory entry
 * that cannot be followed (system memory, a marker). Leaves of the two sides
 * are matched by address space name, level and VA; an entry whose word
 * differs, or that one side lacks, is a difference, and runs of them at
 * consecutive VAs are merged into one VA range. A table one snapshot did not
 * capture is listed (its entries are unknown, never taken as zero), and no
 * difference is reported for the VA under it.
 *
 * A hostile snapshot cannot make it loop or grow without bound: every walk
 * descends one level per step, and at most {@linkcode MAX_DIFF_TABLES}
 * tables and {@linkcode MAX_DIFF_ENTRIES} leaves per side are taken (EINVAL
 * beyond). Ctrl-C is heard once per table and every few thousand entries.
 *
 * @module
 */

import { describe, fail, formatSize, hex } from "../hw/errors.ts";
import { interruptPoint } from "../hw/mmio.ts";
import { checkObject, checkOptions, checkUint } from "../hw/validate.ts";
import { decodeChip } from "../hw/chip.ts";
import {
  decode as decodeRegister,
  loadRegisterDb,
  lookup,
  type RegisterDb,
} from "../hw/regdb/mod.ts";
import type { Snapshot, SnapshotAddressSpace, SnapshotVramRange } from "../hw/snap/types.ts";
import {
  type Architecture,
  type DecodedDualPde,
  type DecodedPde,
  type DecodedPte,
  type EntryCodec,
  type LevelFormat,
  type MmuFormat,
  mmuFormat,
} from "./pagetable/format.ts";
import type { WordReader } from "./pagetable/verify.ts";

/** Default for the most tables walked per snapshot (`maxTables`): 128 GiB of 4 KiB pages. */
export const MAX_DIFF_TABLES = 1 << 16;
/** Default for the most non-zero entries taken per snapshot (`maxEntries`): 4 GiB of 4 KiB pages. */
export const MAX_DIFF_ENTRIES = 1 << 20;

// --- reading a snapshot's VRAM ----------------------------------------------------

/**
 * Reads 32-bit words of the VRAM a snapshot captured. A word that was not
 * captured is never made up: {@linkcode SnapshotVramReader.readWords} fails
 * (ENOENT) and {@linkcode SnapshotVramReader.covered} says so first.
 * Satisfies the page-table code's `WordReader`.
 *
 * @example
 * ```ts
 * const r = new SnapshotVramReader([{ addr: 0x1000, data: new Uint8Array(8), why: "user" }]);
 * r.covered(0x1000, 8); // true
 * r.readWords(0x1000, 2); // Uint32Array [0, 0]
 * ```
 */
export class SnapshotVramReader implements WordReader {
  readonly #ranges: readonly SnapshotVramRange[];

  /** Checks the ranges are sorted, disjoint and 4-byte aligned (EINVAL naming the first that is not). */
  constructor(ranges: readonly SnapshotVramRange[]) {
    if (!Array.isArray(ranges)) {
      fail("EINVAL", `snapshot VRAM must be an array of ranges, not ${describe(ranges)}`);
    }
    let end = 0;
    ranges.forEach((r, i) => {
      if (
        r === null || typeof r !== "object" || !Number.isSafeInteger(r.addr) || r.addr < 0 ||
        !(r.data instanceof Uint8Array)
      ) {
        fail("EINVAL", `snapshot VRAM range ${i} is not { addr, data, why }`);
      }
      if (r.addr % 4 !== 0 || r.data.length % 4 !== 0) {
        fail("EINVAL", `snapshot VRAM range ${i} at ${hex(r.addr)} is not 4-byte aligned`);
      }
      if (r.addr < end) {
        fail(
          "EINVAL",
          `snapshot VRAM range ${i} at ${hex(r.addr)} overlaps or precedes the one before (ends ${
            hex(end)
          })`,
        );
      }
      end = r.addr + r.data.length;
    });
    this.#ranges = ranges;
  }

  /** Index of the range holding `addr`, or -1. */
  #find(addr: number): number {
    const list = this.#ranges;
    let lo = 0;
    let hi = list.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const r = list[mid];
      if (addr < r.addr) hi = mid - 1;
      else if (addr >= r.addr + r.data.length) lo = mid + 1;
      else return mid;
    }
    return -1;
  }

  /** True when every byte of [addr, addr + len) was captured (adjacent ranges count as one). */
  covered(addr: number, len: number): boolean {
    if (typeof addr !== "number" || typeof len !== "number") {
      checkUint(addr, "snapshot VRAM address");
      checkUint(len, "length");
    }
    let i = this.#find(addr);
    if (i < 0) return false;
    const end = addr + len;
    let reach = this.#ranges[i].addr + this.#ranges[i].data.length;
    while (reach < end) {
      const next = this.#ranges[++i];
      if (next === undefined || next.addr !== reach) return false;
      reach += next.data.length;
    }
    return true;
  }

  /** Reads `count` words at `addr` (4-byte aligned); ENOENT when any was not captured. */
  readWords(addr: number, count: number, out: Uint32Array = new Uint32Array(count)): Uint32Array {
    if (!Number.isSafeInteger(addr) || addr < 0 || addr % 4 !== 0) {
      fail("EINVAL", `snapshot VRAM address ${describe(addr)} is not a 4-byte aligned address`);
    }
    if (!Number.isSafeInteger(count) || count < 0 || out.length < count) {
      fail("EINVAL", `readWords count ${describe(count)} does not fit the output`);
    }
    if (!this.covered(addr, count * 4)) {
      fail("ENOENT", `VRAM [${hex(addr)}, ${hex(addr + count * 4)}) was not captured`);
    }
    let i = this.#find(addr);
    for (let k = 0; k < count;) {
      const r = this.#ranges[i++];
      const d = r.data;
      let o = addr + k * 4 - r.addr;
      for (; k < count && o < d.length; k++, o += 4) {
        out[k] = (d[o] | (d[o + 1] << 8) | (d[o + 2] << 16) | (d[o + 3] << 24)) >>> 0;
      }
    }
    return out;
  }
}

// --- leaves of an address space ---------------------------------------------------

/** One non-zero entry the walk did not follow. */
interface Leaf {
  /** Level name; `PD0.big` / `PD0.small` for a half of a dual PDE that cannot be followed. */
  level: string;
  /** Order of the level (root 0 ... PT deepest), for sorting. */
  depth: number;
  va: bigint;
  size: bigint;
  entryAddress: number;
  raw: bigint;
  /** How to decode it (when it differs): as a PTE, a PDE, or the dual PDE `pair`. */
  as: "pte" | "pde" | "dual";
  /** The whole 128-bit entry, for `dual`. */
  pair?: readonly [bigint, bigint];
}

/** A table the walk reached but the snapshot did not capture. */
export interface UncapturedTable {
  /** Which snapshot: "a" or "b". */
  side: "a" | "b";
  /** Address space. */
  space: string;
  /** Level of the missing table. */
  level: string;
  /** Its VRAM address. */
  addr: number;
  /** The VA it covers: [va, end). */
  va: bigint;
  /** End of the VA it covers. */
  end: bigint;
}

function archOf(s: Snapshot, version: 2 | 3): Architecture {
  try {
    const c = decodeChip(s.chip.boot0, s.chip.boot42);
    if (c.mmuVersion === version) return c.architecture;
  } catch {
    // An unknown chip: the version's default architecture (huge-page levels may differ).
  }
  return version === 2 ? "Ampere" : "Hopper";
}

function word64(w: Uint32Array, i: number): bigint {
  const lo = w[i];
  const hi = w[i + 1];
  return hi === 0 ? BigInt(lo) : (BigInt(hi) << 32n) | BigInt(lo);
}

interface Walked {
  format: MmuFormat;
  leaves: Map<string, Leaf>;
  uncaptured: UncapturedTable[];
  tables: number;
}

function leafKey(level: string, va: bigint): string {
  return `${level}|${va}`;
}

/** Walks one address space of a snapshot, collecting every non-zero entry it does not follow. */
function walkSpace(
  snap: Snapshot,
  space: SnapshotAddressSpace,
  reader: SnapshotVramReader,
  side: "a" | "b",
  budget: { tables: number; entries: number; maxTables: number; maxEntries: number },
): Walked {
  const format = mmuFormat({
    version: space.mmuVersion,
    architecture: archOf(snap, space.mmuVersion),
  });
  const codec = format.codec;
  const dirs = format.directories;
  const leaves = new Map<string, Leaf>();
  const uncaptured: UncapturedTable[] = [];
  let tables = 0;
  const add = (l: Leaf) => {
    if (--budget.entries < 0) {
      fail(
        "EINVAL",
        `snapshot ${side}: more than ${budget.maxEntries} non-zero page-table entries reachable (at ${space.name} ${l.level} VA ${
          hex(l.va)
        })`,
      );
    }
    if ((budget.entries & 4095) === 0) interruptPoint();
    leaves.set(leafKey(l.level, l.va), l);
  };
  const table = (lvl: LevelFormat, addr: number, base: bigint): Uint32Array | null => {
    interruptPoint();
    if (--budget.tables < 0) {
      fail(
        "EINVAL",
        `snapshot ${side}: more than ${budget.maxTables} page tables reachable from ${space.name} (tables that point at each other?)`,
      );
    }
    tables++;
    const span = 1n << BigInt(lvl.vaLo);
    if (!reader.covered(addr, lvl.tableBytes)) {
      uncaptured.push({
        side,
        space: space.name,
        level: lvl.name,
        addr,
        va: base,
        end: base + BigInt(lvl.entries) * span,
      });
      return null;
    }
    return reader.readWords(addr, lvl.tableBytes / 4);
  };
  const pt = (lvl: LevelFormat, depth: number, addr: number, base: bigint) => {
    const w = table(lvl, addr, base);
    if (w === null) return;
    const span = BigInt(lvl.pageSize);
    for (let i = 0; i < lvl.entries; i++) {
      if (w[2 * i] === 0 && w[2 * i + 1] === 0) continue;
      const raw = word64(w, 2 * i);
      add({
        level: lvl.name,
        depth,
        va: base + BigInt(i) * span,
        size: span,
        entryAddress: addr + 8 * i,
        raw,
        as: "pte",
      });
    }
  };
  const dir = (depth: number, addr: number, base: bigint) => {
    const lvl = dirs[depth];
    const w = table(lvl, addr, base);
    if (w === null) return;
    const span = 1n << BigInt(lvl.vaLo);
    for (let i = 0; i < lvl.entries; i++) {
      const va = base + BigInt(i) * span;
      if (lvl.dual) {
        const lo = word64(w, 4 * i);
        const hi = word64(w, 4 * i + 2);
        if (lo === 0n && hi === 0n) continue;
        const at = addr + 16 * i;
        if ((lo & 1n) === 1n) {
          add({
            level: lvl.name,
            depth,
            va,
            size: span,
            entryAddress: at,
            raw: lo,
            as: "pte",
          });
          continue;
        }
        const d = codec.decodeDualPde([lo, hi]);
        const halves = [
          ["big", lo, d.big, format.bigPt, dirs.length + 1, at],
          ["small", hi, d.small, format.smallPt, dirs.length, at + 8],
        ] as const;
        for (const [name, word, half, ptLevel, ptDepth, wordAt] of halves) {
          if (word === 0n) continue;
          if (half.aperture === "video" && typeof half.address === "number") {
            pt(ptLevel, ptDepth, half.address, va);
          } else {
            add({
              level: `${lvl.name}.${name}`,
              depth,
              va,
              size: span,
              entryAddress: wordAt,
              raw: word,
              as: "dual",
              pair: [lo, hi],
            });
          }
        }
        continue;
      }
      if (w[2 * i] === 0 && w[2 * i + 1] === 0) continue;
      const raw = word64(w, 2 * i);
      const at = addr + 8 * i;
      if ((raw & 1n) === 1n) {
        add({
          level: lvl.name,
          depth,
          va,
          size: span,
          entryAddress: at,
          raw,
          as: "pte",
        });
        continue;
      }
      const d = codec.decodePde(raw);
      if (d.aperture === "video" && typeof d.address === "number") {
        dir(depth + 1, d.address, va);
      } else {
        add({ level: lvl.name, depth, va, size: span, entryAddress: at, raw, as: "pde" });
      }
    }
  };
  dir(0, space.pdb, 0n);
  return { format, leaves, uncaptured, tables };
}

// --- the diff ---------------------------------------------------------------------

/** One register that differs. */
export interface RegisterDifference {
  /** BAR0 offset. */
  offset: number;
  /** Its name in the register database (null: none at that offset, or an unknown chip). */
  name: string | null;
  /** Value in A (null: not captured in A). */
  a: number | null;
  /** Value in B (null: not captured in B). */
  b: number | null;
  /** Fields that changed, `FIELD 0x0 -> 0x1` (both captured and the register known). */
  fields: string[];
}

/** A run of page-table entries at consecutive VAs that differ the same way. */
export interface EntryDifference {
  /** Address space. */
  space: string;
  /** Level (`PT`, `PT64K`, `PD0`, `PD1`, ...; `PD0.big`/`PD0.small` for a half that is no table). */
  level: string;
  /** `changed` (both have a different word), `added` (only B), `removed` (only A). */
  kind: "changed" | "added" | "removed";
  /** First VA. */
  va: bigint;
  /** End of the VA range (exclusive). */
  end: bigint;
  /** Entries in the run. */
  count: number;
  /** First entry's word in A (null when added). */
  a: bigint | null;
  /** First entry's word in B (null when removed). */
  b: bigint | null;
  /** First entry decoded from A. */
  aDecoded: DecodedPte | DecodedPde | DecodedDualPde | null;
  /** First entry decoded from B. */
  bDecoded: DecodedPte | DecodedPde | DecodedDualPde | null;
}

/** One address space compared. */
export interface SpaceDifference {
  /** Its name. */
  name: string;
  /** `both`, or the one snapshot that has it. */
  in: "both" | "a" | "b";
  /** Root in A (null: absent). */
  pdbA: number | null;
  /** Root in B. */
  pdbB: number | null;
  /** MMU version (A's when both). */
  mmuVersion: 2 | 3;
  /** Tables walked in A and B. */
  tables: [number, number];
  /** Non-zero entries found in A and B. */
  entries: [number, number];
  /** Differing runs (at most `maxItems`). */
  differences: EntryDifference[];
  /** Differing runs in all. */
  differenceCount: number;
  /** Tables reached that a snapshot did not capture (their VA is not compared). */
  uncaptured: UncapturedTable[];
}

/** A VRAM range `[start, end)` and why it was captured. */
export interface VramSpan {
  /** First byte. */
  start: number;
  /** One past the last byte. */
  end: number;
  /** The capture's reason (`why`) where it starts. */
  why: string;
}

/** What {@linkcode diffSnapshots} found. */
export interface SnapshotDiff {
  /** Labels of the two sides (file names, or "a"/"b"). */
  labels: [string, string];
  /** Chip of each side (`GA102`, or BOOT_0 in hex when unknown). */
  chips: [string, string];
  /** Registers that differ (at most `maxItems`), by offset. */
  registers: RegisterDifference[];
  /** Registers that differ in all. */
  registerCount: number;
  /** Address spaces, by name. */
  spaces: SpaceDifference[];
  /** VRAM captured only in A. */
  onlyA: VramSpan[];
  /** VRAM captured only in B. */
  onlyB: VramSpan[];
  /** VRAM captured in both whose bytes differ (at most `maxItems`). */
  changed: VramSpan[];
  /** Bytes that differ in VRAM captured in both. */
  changedBytes: number;
  /** True when nothing differs. */
  same: boolean;
}

/** Options of {@linkcode diffSnapshots}. */
export interface DiffOptions {
  /** Labels printed for the two sides (default "a", "b"). */
  labels?: [string, string];
  /** Items listed at most per list (default 1000; the counts include the rest). */
  maxItems?: number;
  /** Most tables walked per snapshot (default {@linkcode MAX_DIFF_TABLES}; EINVAL beyond). */
  maxTables?: number;
  /** Most non-zero entries taken per snapshot (default {@linkcode MAX_DIFF_ENTRIES}; EINVAL beyond). */
  maxEntries?: number;
}

function checkSnapshot(s: unknown, what: string): Snapshot {
  const o = s as Partial<Snapshot> | null;
  if (
    o === null || typeof o !== "object" || !(o.registers instanceof Map) ||
    !Array.isArray(o.vram) || !Array.isArray(o.addressSpaces) || typeof o.chip !== "object"
  ) {
    fail(
      "EINVAL",
      `diffSnapshots ${what} is not a Snapshot (readSnapshotFile), not ${describe(s)}`,
    );
  }
  return s as Snapshot;
}

function chipName(s: Snapshot): string {
  try {
    return decodeChip(s.chip.boot0, s.chip.boot42).name;
  } catch {
    return `BOOT_0 ${hex(s.chip.boot0 >>> 0, 8)}`;
  }
}

async function registerDb(s: Snapshot): Promise<RegisterDb | null> {
  try {
    return await loadRegisterDb(decodeChip(s.chip.boot0, s.chip.boot42).chipId);
  } catch {
    return null;
  }
}

function registerName(db: RegisterDb | null, offset: number): string | null {
  if (db === null) return null;
  try {
    const hits = lookup(db, offset, { limit: 1 });
    return hits.length === 0 ? null : hits[0].name;
  } catch {
    return null;
  }
}

function changedFields(db: RegisterDb | null, offset: number, a: number, b: number): string[] {
  if (db === null) return [];
  try {
    const da = decodeRegister(db, offset, a >>> 0);
    const dbv = decodeRegister(db, offset, b >>> 0);
    const out: string[] = [];
    da.fields.forEach((f, i) => {
      const g = dbv.fields[i];
      if (f.value !== g.value) {
        const name = (v: number, e: string | null) => `${hex(v)}${e === null ? "" : ` (${e})`}`;
        out.push(`${f.name} ${name(f.value, f.enum)} -> ${name(g.value, g.enum)}`);
      }
    });
    if (da.unknownBits !== dbv.unknownBits) {
      out.push(`unnamed bits ${hex(da.unknownBits)} -> ${hex(dbv.unknownBits)}`);
    }
    return out;
  } catch {
    return [];
  }
}

/** Merged [start, end) intervals of a snapshot's VRAM, each with the `why` of its first range. */
function coverage(ranges: readonly SnapshotVramRange[]): VramSpan[] {
  const out: VramSpan[] = [];
  for (const r of ranges) {
    if (r.data.length === 0) continue;
    const last = out.at(-1);
    if (last !== undefined && last.end === r.addr) last.end += r.data.length;
    else out.push({ start: r.addr, end: r.addr + r.data.length, why: r.why });
  }
  return out;
}

/** `x` minus `y` (both merged and sorted), keeping `x`'s reasons. */
function subtract(x: VramSpan[], y: VramSpan[], whyOf: (addr: number) => string): VramSpan[] {
  const out: VramSpan[] = [];
  let j = 0;
  for (const r of x) {
    let pos = r.start;
    while (j < y.length && y[j].end <= pos) j++;
    for (let k = j; k < y.length && y[k].start < r.end; k++) {
      if (y[k].start > pos) out.push({ start: pos, end: y[k].start, why: whyOf(pos) });
      pos = Math.max(pos, y[k].end);
    }
    if (pos < r.end) out.push({ start: pos, end: r.end, why: whyOf(pos) });
  }
  return out;
}

function whyAt(ranges: readonly SnapshotVramRange[]): (addr: number) => string {
  return (addr) => {
    let lo = 0;
    let hi = ranges.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const r = ranges[mid];
      if (addr < r.addr) hi = mid - 1;
      else if (addr >= r.addr + r.data.length) lo = mid + 1;
      else return r.why;
    }
    return "";
  };
}

/** Byte differences where both captured VRAM: merged runs (at most `max`) and the byte count. */
function vramChanges(
  a: readonly SnapshotVramRange[],
  b: readonly SnapshotVramRange[],
  max: number,
): { spans: VramSpan[]; bytes: number } {
  const spans: VramSpan[] = [];
  let bytes = 0;
  let open = -1;
  let i = 0;
  let j = 0;
  const why = whyAt(a);
  while (i < a.length && j < b.length) {
    const ra = a[i];
    const rb = b[j];
    const start = Math.max(ra.addr, rb.addr);
    const end = Math.min(ra.addr + ra.data.length, rb.addr + rb.data.length);
    for (let p = start; p < end; p++) {
      if ((p & 0xfffff) === 0) interruptPoint();
      if (ra.data[p - ra.addr] === rb.data[p - rb.addr]) continue;
      bytes++;
      if (open === p) {
        open++;
        const last = spans.at(-1);
        if (last !== undefined && last.end === p) last.end = open;
        continue;
      }
      open = p + 1;
      if (spans.length < max) spans.push({ start: p, end: open, why: why(p) });
    }
    if (ra.addr + ra.data.length <= rb.addr + rb.data.length) i++;
    else j++;
  }
  return { spans, bytes };
}

function decodeLeaf(codec: EntryCodec, l: Leaf): DecodedPte | DecodedPde | DecodedDualPde {
  if (l.as === "pte") return codec.decodePte(l.raw);
  if (l.as === "pde") return codec.decodePde(l.raw);
  return codec.decodeDualPde(l.pair as [bigint, bigint]);
}

function compareLeaves(
  codecs: readonly [EntryCodec, EntryCodec],
  name: string,
  a: Map<string, Leaf>,
  b: Map<string, Leaf>,
  unknown: UncapturedTable[],
  max: number,
): { list: EntryDifference[]; count: number } {
  // The VA under uncaptured tables, merged: a leaf there is not compared (binary search).
  const holes: [bigint, bigint][] = [];
  for (const u of [...unknown].sort((x, y) => (x.va < y.va ? -1 : x.va > y.va ? 1 : 0))) {
    const last = holes.at(-1);
    if (last !== undefined && u.va <= last[1]) last[1] = u.end > last[1] ? u.end : last[1];
    else holes.push([u.va, u.end]);
  }
  const hidden = (l: Leaf) => {
    let lo = 0;
    let hi = holes.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (l.va < holes[mid][0]) hi = mid - 1;
      else if (l.va >= holes[mid][1]) lo = mid + 1;
      else return true;
    }
    return false;
  };
  const diffs: { leaf: Leaf; kind: EntryDifference["kind"]; a: Leaf | null; b: Leaf | null }[] = [];
  let n = 0;
  for (const [key, la] of a) {
    if ((++n & 4095) === 0) interruptPoint();
    const lb = b.get(key);
    if (lb !== undefined && lb.raw === la.raw) continue;
    if (hidden(la)) continue;
    diffs.push({ leaf: la, kind: lb === undefined ? "removed" : "changed", a: la, b: lb ?? null });
  }
  for (const [key, lb] of b) {
    if ((++n & 4095) === 0) interruptPoint();
    if (a.has(key) || hidden(lb)) continue;
    diffs.push({ leaf: lb, kind: "added", a: null, b: lb });
  }
  diffs.sort((x, y) =>
    x.leaf.va < y.leaf.va ? -1 : x.leaf.va > y.leaf.va ? 1 : x.leaf.depth - y.leaf.depth
  );
  const list: EntryDifference[] = [];
  let count = 0;
  let last: EntryDifference | null = null;
  for (const d of diffs) {
    const l = d.leaf;
    if (last !== null && last.level === l.level && last.kind === d.kind && last.end === l.va) {
      last.end = l.va + l.size;
      last.count++;
      continue;
    }
    count++;
    last = {
      space: name,
      level: l.level,
      kind: d.kind,
      va: l.va,
      end: l.va + l.size,
      count: 1,
      a: d.a?.raw ?? null,
      b: d.b?.raw ?? null,
      aDecoded: d.a === null ? null : decodeLeaf(codecs[0], d.a),
      bDecoded: d.b === null ? null : decodeLeaf(codecs[1], d.b),
    };
    // Runs past the list are still counted (and merged, so the count is of runs).
    if (list.length < max) list.push(last);
  }
  return { list, count };
}

/**
 * Compares snapshot `a` with snapshot `b` (see the module documentation):
 * registers (named from the register database of A's chip, with the fields
 * that changed), page-table entries by address space and VA, VRAM captured
 * in only one of them, and captured VRAM whose bytes changed. Lists are
 * bounded by `maxItems`; counts are whole.
 *
 * @example
 * ```ts
 * import { SNAPSHOT_FORMAT, type Snapshot } from "../hw/snap/types.ts";
 * const snap = (value: number): Snapshot => ({
 *   format: SNAPSHOT_FORMAT,
 *   version: 1,
 *   source: { kind: "sim", spec: "sim:ga102", takenAt: "", tool: "novamm" },
 *   chip: { boot0: 0x172000a1, boot42: 0x172a1000, pci: null, barSizes: { bar0: 0, bar1: 0 }, vramSize: 0 },
 *   state: {},
 *   registers: new Map([[0x1700, value]]),
 *   vram: [],
 *   addressSpaces: [],
 * });
 * const d = await diffSnapshots(snap(0), snap(0x10));
 * d.registers[0].name; // "NV_PBUS_BAR0_WINDOW"
 * ```
 */
export async function diffSnapshots(
  a: Snapshot,
  b: Snapshot,
  options: DiffOptions = {},
): Promise<SnapshotDiff> {
  checkSnapshot(a, "a");
  checkSnapshot(b, "b");
  checkObject(options, "diffSnapshots options");
  checkOptions(
    options,
    { labels: "object", maxItems: "number", maxTables: "number", maxEntries: "number" },
    "diffSnapshots options",
  );
  const maxTables = options.maxTables ?? MAX_DIFF_TABLES;
  const maxEntries = options.maxEntries ?? MAX_DIFF_ENTRIES;
  for (const [k, v] of [["maxTables", maxTables], ["maxEntries", maxEntries]] as const) {
    if (!Number.isSafeInteger(v) || v < 1 || v > 2 ** 26) {
      fail("EINVAL", `diffSnapshots ${k} ${describe(v)} is not an integer in 1..${hex(2 ** 26)}`);
    }
  }
  const max = options.maxItems ?? 1000;
  if (!Number.isSafeInteger(max) || max < 0 || max > 2 ** 24) {
    fail(
      "EINVAL",
      `diffSnapshots maxItems ${describe(max)} is not an integer in 0..${hex(2 ** 24)}`,
    );
  }
  const labels = options.labels ?? ["a", "b"];
  if (
    !Array.isArray(labels) || labels.length !== 2 || labels.some((l) => typeof l !== "string")
  ) {
    fail("EINVAL", `diffSnapshots labels ${describe(labels)} are not two strings`);
  }
  const readerA = new SnapshotVramReader(a.vram);
  const readerB = new SnapshotVramReader(b.vram);

  // Registers.
  const db = await registerDb(a) ?? await registerDb(b);
  const offsets = [...new Set([...a.registers.keys(), ...b.registers.keys()])].sort((x, y) =>
    x - y
  );
  const registers: RegisterDifference[] = [];
  let registerCount = 0;
  for (const offset of offsets) {
    const va = a.registers.get(offset) ?? null;
    const vb = b.registers.get(offset) ?? null;
    if (va === vb) continue;
    registerCount++;
    if (registers.length >= max) continue;
    registers.push({
      offset,
      name: registerName(db, offset),
      a: va,
      b: vb,
      fields: va !== null && vb !== null ? changedFields(db, offset, va, vb) : [],
    });
  }

  // Page tables, by address space name.
  const budgetA = { tables: maxTables, entries: maxEntries, maxTables, maxEntries };
  const budgetB = { tables: maxTables, entries: maxEntries, maxTables, maxEntries };
  const names = [...new Set([...a.addressSpaces, ...b.addressSpaces].map((s) => s.name))];
  const spaces: SpaceDifference[] = [];
  for (const name of names) {
    const sa = a.addressSpaces.find((s) => s.name === name) ?? null;
    const sb = b.addressSpaces.find((s) => s.name === name) ?? null;
    const wa = sa === null ? null : walkSpace(a, sa, readerA, "a", budgetA);
    const wb = sb === null ? null : walkSpace(b, sb, readerB, "b", budgetB);
    const uncaptured = [...(wa?.uncaptured ?? []), ...(wb?.uncaptured ?? [])];
    const both = wa !== null && wb !== null;
    const { list, count } = both
      ? compareLeaves(
        [wa.format.codec, wb.format.codec],
        name,
        wa.leaves,
        wb.leaves,
        uncaptured,
        max,
      )
      : { list: [], count: 0 };
    spaces.push({
      name,
      in: both ? "both" : wa !== null ? "a" : "b",
      pdbA: sa?.pdb ?? null,
      pdbB: sb?.pdb ?? null,
      mmuVersion: (sa ?? sb)!.mmuVersion,
      tables: [wa?.tables ?? 0, wb?.tables ?? 0],
      entries: [wa?.leaves.size ?? 0, wb?.leaves.size ?? 0],
      differences: list,
      differenceCount: count,
      uncaptured,
    });
  }

  // VRAM coverage and content.
  const covA = coverage(a.vram);
  const covB = coverage(b.vram);
  const onlyA = subtract(covA, covB, whyAt(a.vram));
  const onlyB = subtract(covB, covA, whyAt(b.vram));
  const { spans: changed, bytes: changedBytes } = vramChanges(a.vram, b.vram, max);
  const chips: [string, string] = [chipName(a), chipName(b)];
  const result: SnapshotDiff = {
    labels: [labels[0], labels[1]],
    chips,
    registers,
    registerCount,
    spaces,
    onlyA,
    onlyB,
    changed,
    changedBytes,
    same: registerCount === 0 && onlyA.length === 0 && onlyB.length === 0 &&
      changedBytes === 0 && chips[0] === chips[1] &&
      spaces.every((s) =>
        s.in === "both" && s.pdbA === s.pdbB && s.differenceCount === 0 &&
        s.uncaptured.length === 0
      ),
  };
  Object.defineProperty(result, Symbol.for("Deno.customInspect"), {
    value: () => formatDiff(result),
    enumerable: false,
  });
  return result;
}

// --- printing -----------------------------------------------------------------------

function word32(v: number | null): string {
  return v === null ? "(not captured)" : hex(v >>> 0, 8);
}

function span(s: VramSpan): string {
  return `[${hex(s.start)}, ${hex(s.end)}) ${formatSize(s.end - s.start)}${
    s.why === "" ? "" : ` ${s.why}`
  }`;
}

function checkDiff(d: unknown, what: string): SnapshotDiff {
  const o = d as Partial<SnapshotDiff> | null;
  if (
    o === null || typeof o !== "object" || !Array.isArray(o.labels) || !Array.isArray(o.spaces) ||
    !Array.isArray(o.registers) || !Array.isArray(o.onlyA) || !Array.isArray(o.onlyB)
  ) {
    fail("EINVAL", `${what} takes what diffSnapshots returned, not ${describe(d)}`);
  }
  return d as SnapshotDiff;
}

/** The diff as text, one section per kind of difference (what `deno task diff` prints). */
export function formatDiff(d: SnapshotDiff): string {
  checkDiff(d, "formatDiff");
  const [la, lb] = d.labels;
  const lines = [`diff ${la} -> ${lb}${d.same ? ": the same" : ""}`];
  if (d.chips[0] !== d.chips[1]) lines.push(`chip: ${d.chips[0]} -> ${d.chips[1]}`);
  lines.push(`registers: ${d.registerCount} differ`);
  for (const r of d.registers) {
    lines.push(
      `  ${r.name ?? "(unnamed)"} (${hex(r.offset)}): ${word32(r.a)} -> ${word32(r.b)}${
        r.fields.length > 0 ? `  ${r.fields.join(", ")}` : ""
      }`,
    );
  }
  if (d.registerCount > d.registers.length) {
    lines.push(`  … ${d.registerCount - d.registers.length} more`);
  }
  for (const s of d.spaces) {
    const pdb = s.in === "both"
      ? s.pdbA === s.pdbB ? `PDB ${hex(s.pdbA!)}` : `PDB ${hex(s.pdbA!)} -> ${hex(s.pdbB!)}`
      : `only in ${s.in === "a" ? la : lb} (PDB ${hex((s.pdbA ?? s.pdbB)!)})`;
    lines.push(
      `page tables of ${s.name} (MMU v${s.mmuVersion}, ${pdb}): ${s.differenceCount} ${
        s.differenceCount === 1 ? "range differs" : "ranges differ"
      } (${s.entries[0]} -> ${s.entries[1]} non-zero entries)`,
    );
    for (const e of s.differences) {
      const n = e.count === 1 ? "" : ` ×${e.count}`;
      lines.push(`  VA [${hex(e.va)}, ${hex(e.end)}) ${e.level}${n} ${e.kind}`);
      if (e.aDecoded !== null) lines.push(`    ${la}: ${hex(e.a!, 16)} ${String(e.aDecoded)}`);
      if (e.bDecoded !== null) lines.push(`    ${lb}: ${hex(e.b!, 16)} ${String(e.bDecoded)}`);
    }
    if (s.differenceCount > s.differences.length) {
      lines.push(`  … ${s.differenceCount - s.differences.length} more ranges`);
    }
    for (const u of s.uncaptured) {
      lines.push(
        `  ${u.level} at ${hex(u.addr)} (VA [${hex(u.va)}, ${hex(u.end)})) not captured in ${
          u.side === "a" ? la : lb
        }: not compared`,
      );
    }
  }
  const list = (title: string, spans: VramSpan[]) => {
    if (spans.length === 0) return;
    lines.push(title);
    for (const s of spans) lines.push(`  ${span(s)}`);
  };
  list(`VRAM captured only in ${la}:`, d.onlyA);
  list(`VRAM captured only in ${lb}:`, d.onlyB);
  if (d.changedBytes > 0) {
    list(`VRAM captured in both that changed (${d.changedBytes} bytes):`, d.changed);
  }
  return lines.join("\n");
}

/** The diff as JSON-safe data (bigints and entry words as hex strings, decoded entries as text). */
export function diffToJson(d: SnapshotDiff): unknown {
  checkDiff(d, "diffToJson");
  const big = (v: bigint | null) => (v === null ? null : hex(v));
  return {
    labels: d.labels,
    chips: d.chips,
    same: d.same,
    registerCount: d.registerCount,
    registers: d.registers.map((r) => ({
      offset: hex(r.offset),
      name: r.name,
      a: r.a === null ? null : hex(r.a >>> 0),
      b: r.b === null ? null : hex(r.b >>> 0),
      fields: r.fields,
    })),
    spaces: d.spaces.map((s) => ({
      name: s.name,
      in: s.in,
      pdbA: s.pdbA === null ? null : hex(s.pdbA),
      pdbB: s.pdbB === null ? null : hex(s.pdbB),
      mmuVersion: s.mmuVersion,
      tables: s.tables,
      entries: s.entries,
      differenceCount: s.differenceCount,
      differences: s.differences.map((e) => ({
        level: e.level,
        kind: e.kind,
        va: hex(e.va),
        end: hex(e.end),
        count: e.count,
        a: big(e.a),
        b: big(e.b),
        aDecoded: e.aDecoded === null ? null : String(e.aDecoded),
        bDecoded: e.bDecoded === null ? null : String(e.bDecoded),
      })),
      uncaptured: s.uncaptured.map((u) => ({
        ...u,
        addr: hex(u.addr),
        va: hex(u.va),
        end: hex(u.end),
      })),
    })),
    onlyA: d.onlyA.map((s) => ({ start: hex(s.start), end: hex(s.end), why: s.why })),
    onlyB: d.onlyB.map((s) => ({ start: hex(s.start), end: hex(s.end), why: s.why })),
    changedBytes: d.changedBytes,
    changed: d.changed.map((s) => ({ start: hex(s.start), end: hex(s.end), why: s.why })),
  };
}
