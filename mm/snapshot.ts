/**
 * Taking a snapshot of an open GPU (`gpu.snapshot(file)`, `deno task
 * snapshot`): chip identity, card state as novamm sees it, every register
 * novamm knows that is safe to read on the chip, and the VRAM that matters —
 * every instance block and page table reachable from the BAR1 binding and
 * from each address space the session knows (walked in VRAM, so firmware's
 * tables are captured as they are, not novamm's shadow), plus ranges the
 * user names. The file format is `hw/snap/format.ts`; `snap:FILE` reopens it.
 *
 * Read-only on the card: registers are single reads of side-effect-free
 * registers only (the register database's `sideEffectFree` rule: never a
 * FIFO pop, a clear-on-read or an XAL memop), VRAM is read through PRAMIN
 * and the window register is put back afterwards. A read-only open cannot
 * move the PRAMIN window: VRAM outside the window as found is then listed in
 * `state.skipped` with the reason instead of captured.
 *
 * Bounded: the plan (registers, instance blocks, user ranges) is checked
 * against `maxBytes` before anything is read, and every page table found is
 * checked before it is read. Long captures report progress (the work-progress
 * line of the REPL, or `onProgress`) and stop at Ctrl-C (`interruptPoint`,
 * or `signal`).
 *
 * @module
 */

import { describe, fail, formatSize, hex, NovaError } from "../hw/errors.ts";
import { interruptPoint } from "../hw/mmio.ts";
import { checkObject, checkOptions, checkUint } from "../hw/validate.ts";
import { knownRegisters } from "../hw/reg_dump.ts";
import { loadRegisterDb, type RegisterDb, sideEffect } from "../hw/regdb/mod.ts";
import { INSTANCE_BLOCK_BYTES } from "../hw/family/mod.ts";
import { NV_PMC_BOOT_0, NV_PMC_BOOT_42, PRAMIN_SIZE } from "../hw/regs.ts";
import {
  type Snapshot,
  SNAPSHOT_FORMAT,
  SNAPSHOT_VERSION,
  type SnapshotAddressSpace,
  type SnapshotSource,
  type SnapshotVramRange,
} from "../hw/snap/types.ts";
import { writeSnapshotFile } from "../hw/snap/format.ts";
import type { Gpu } from "./gpu.ts";
import { readInstanceBlock } from "./bar_user.ts";
import type { LevelFormat } from "./pagetable/format.ts";
import { tableFits } from "./pagetable/walk.ts";
import { workDone, workStep } from "./pagetable/tree.ts";

/** Options for {@linkcode takeSnapshot} and `gpu.snapshot`. */
export interface SnapshotOptions {
  /** Extra VRAM to capture: `[{ addr, size }]` (rounded out to 4 bytes). */
  ranges?: { addr: number; size: number }[];
  /** Extra page-directory roots to walk and capture (another driver's address spaces). */
  pdbs?: number[];
  /** Refuse a capture bigger than this many bytes (registers + VRAM; default 256 MiB). */
  maxBytes?: number;
  /** Free text stored in the file's source. */
  comment?: string;
  /** Called with `(done, total, what)` during long captures. */
  onProgress?: (done: number, total: number, what: string) => void;
  /** Stops the capture (EINTR) at the next step when aborted. */
  signal?: AbortSignal;
}

/** Default `maxBytes`. */
export const DEFAULT_SNAPSHOT_MAX_BYTES = 256 * 2 ** 20;

/** Register offsets past which nothing is read (BAR0 is 16 MiB; PRAMIN is VRAM, not registers). */
const PRAMIN_START = 0x700000;
/** Most register instances one capture reads (indexed registers are expanded). */
const MAX_REGISTERS = 1 << 18;
/** Bytes read per step of a user range (one progress report and interrupt check each). */
const STEP_BYTES = 1 << 20;

function checkSnapshotOptions(options: SnapshotOptions): void {
  checkOptions(options, {
    ranges: "object",
    pdbs: "object",
    maxBytes: "number",
    comment: "string",
    onProgress: "function",
    signal: (v, k) => {
      if (!(v instanceof AbortSignal)) {
        fail("EINVAL", `snapshot options.${k} must be an AbortSignal, not ${describe(v)}`);
      }
    },
  }, "snapshot options");
  if (options.maxBytes !== undefined) {
    checkUint(options.maxBytes, "snapshot maxBytes");
    if (options.maxBytes === 0) fail("EINVAL", "snapshot maxBytes must be above 0");
  }
  if (options.ranges !== undefined && !Array.isArray(options.ranges)) {
    fail(
      "EINVAL",
      `snapshot options.ranges must be an array of { addr, size }, not ${describe(options.ranges)}`,
    );
  }
  if (options.pdbs !== undefined && !Array.isArray(options.pdbs)) {
    fail(
      "EINVAL",
      `snapshot options.pdbs must be an array of VRAM addresses, not ${describe(options.pdbs)}`,
    );
  }
}

/**
 * The BAR0 offsets to read: every register novamm uses on this chip and every
 * side-effect-free BAR0 register of the chip's database (indexed ones at each
 * instance the header counts), never one that some definition at that offset
 * says a read changes state, never the PRAMIN aperture.
 */
export function snapshotRegisterOffsets(
  gpu: Pick<Gpu, "chip" | "bar0">,
  db: RegisterDb | null,
): number[] {
  const want = new Set<number>();
  const unsafe = new Set<number>();
  const limit = Math.min(gpu.bar0.size, 2 ** 24);
  const add = (o: number, into: Set<number>) => {
    if (
      o % 4 === 0 && o >= 0 && o + 4 <= limit &&
      !(o >= PRAMIN_START && o < PRAMIN_START + PRAMIN_SIZE)
    ) {
      into.add(o);
    }
  };
  for (const r of knownRegisters(gpu.chip.architecture, gpu.chip.chipId)) add(r.offset, want);
  for (const r of db?.registers ?? []) {
    if (r.space !== null) continue;
    const into = sideEffect(r) === null ? want : unsafe;
    let offsets = [r.offset];
    for (const d of r.dims) {
      const n = Math.max(1, Math.min(d.count, 4096));
      const next: number[] = [];
      for (const o of offsets) for (let i = 0; i < n; i++) next.push(o + i * d.stride);
      offsets = next;
      if (offsets.length > MAX_REGISTERS) break;
    }
    for (const o of offsets) add(o, into);
    if (want.size > MAX_REGISTERS) break;
  }
  for (const o of unsafe) want.delete(o);
  return [...want].sort((a, b) => a - b);
}

/** A piece of VRAM to capture. */
interface Piece {
  addr: number;
  data: Uint8Array;
  why: string;
}

/** What a capture skipped and why (read-only opens: VRAM outside the window). */
interface Skipped {
  addr: number;
  size: number;
  why: string;
  reason: string;
}

/** Byte budget of one capture: refuses, naming both numbers, before the read that would pass it. */
class Budget {
  used = 0;
  constructor(readonly max: number) {}
  take(bytes: number, what: string): void {
    if (this.used + bytes > this.max) {
      fail(
        "ENOSPC",
        `the snapshot would need ${formatSize(this.used + bytes)} (${
          this.used + bytes
        } bytes, at ${what}), over maxBytes ${formatSize(this.max)} (${this.max} bytes)`,
        "raise --max-bytes (maxBytes), or capture fewer --range bytes",
      );
    }
    this.used += bytes;
  }
}

/** Sorts and merges pieces into non-overlapping ranges (later pieces' bytes win on overlap). */
function mergePieces(pieces: Piece[]): SnapshotVramRange[] {
  const sorted = [...pieces].sort((a, b) => a.addr - b.addr);
  const out: SnapshotVramRange[] = [];
  let group: Piece[] = [];
  let start = 0;
  let end = 0;
  const flush = () => {
    if (group.length === 0) return;
    const data = group.length === 1 ? group[0].data : new Uint8Array(end - start);
    if (group.length > 1) { for (const p of group) data.set(p.data, p.addr - start); }
    const whys = [...new Set(group.map((p) => p.why))];
    const why = whys.length <= 3
      ? whys.join("; ")
      : `${whys.slice(0, 3).join("; ")}; +${whys.length - 3} more`;
    out.push({ addr: start, data, why });
    group = [];
  };
  for (const p of sorted) {
    if (group.length > 0 && p.addr <= end) {
      group.push(p);
      end = Math.max(end, p.addr + p.data.length);
      continue;
    }
    flush();
    group = [p];
    start = p.addr;
    end = p.addr + p.data.length;
  }
  flush();
  return out;
}

/** Yields to the event loop (so a CLI's Ctrl-C listener can run) and checks for an interrupt. */
async function step(options: SnapshotOptions): Promise<void> {
  interruptPoint();
  if (options.signal !== undefined) {
    await new Promise((r) => setTimeout(r, 0));
    if (options.signal.aborted) fail("EINTR", "snapshot interrupted (Ctrl-C); nothing was written");
  }
}

/**
 * Captures the GPU (see the module documentation). Nothing is written to
 * the card except the PRAMIN window register (moved and put back; a
 * read-only open never moves it).
 *
 * @example
 * ```ts
 * import { openGpu } from "../mod.ts";
 * using gpu = await openGpu({ device: "sim:ga102:gsp" });
 * const snap = await takeSnapshot(gpu);
 * snap.addressSpaces[0].name; // "bar1"
 * ```
 */
export async function takeSnapshot(gpu: Gpu, options: SnapshotOptions = {}): Promise<Snapshot> {
  checkObject(gpu, "takeSnapshot gpu");
  checkSnapshotOptions(options);
  const vramSize = gpu.vram.size;
  const budget = new Budget(options.maxBytes ?? DEFAULT_SNAPSHOT_MAX_BYTES);
  // User ranges and roots are checked before any access.
  const userRanges = (options.ranges ?? []).map((r, i) => {
    checkObject(r, `snapshot ranges[${i}]`);
    checkOptions(r, { addr: "number", size: "number" }, `snapshot ranges[${i}]`);
    const addr = checkUint(r.addr, `snapshot ranges[${i}].addr`);
    const size = checkUint(r.size, `snapshot ranges[${i}].size`);
    if (size === 0 || addr + size > vramSize) {
      fail(
        "EINVAL",
        `snapshot range [${hex(addr)}, ${hex(addr + size)}) is empty or past the end of VRAM (${
          hex(vramSize)
        })`,
      );
    }
    const start = addr - (addr % 4);
    const end = Math.min(vramSize, Math.ceil((addr + size) / 4) * 4);
    return { addr: start, size: end - start };
  });
  const extraRoots = (options.pdbs ?? []).map((p, i) => {
    checkUint(p, `snapshot pdbs[${i}]`);
    if (p % 4096 !== 0 || p + 4096 > vramSize) {
      fail(
        "EINVAL",
        `snapshot pdbs[${i}] ${hex(p)} is not a 4 KiB aligned VRAM address below ${hex(vramSize)}`,
      );
    }
    return p;
  });
  let db: RegisterDb | null = null;
  try {
    db = await loadRegisterDb(gpu.chip.chipId);
  } catch (e) {
    if (!(e instanceof NovaError)) throw e; // a chip the database does not cover: novamm's own only
  }
  const offsets = snapshotRegisterOffsets(gpu, db);
  budget.take(offsets.length * 8, "the registers");
  for (const r of userRanges) budget.take(r.size, `range ${hex(r.addr)}`);

  // Registers: single reads, values as read (a PRI error value is what the card answered).
  const registers = new Map<number, number>();
  for (let i = 0; i < offsets.length; i++) {
    if ((i & 1023) === 0) {
      options.onProgress?.(i, offsets.length, "registers");
      await step(options);
    }
    registers.set(offsets[i], gpu.bar0.read32(offsets[i]));
  }

  const pieces: Piece[] = [];
  const skipped: Skipped[] = [];
  const spaces: SnapshotAddressSpace[] = [];
  const mmuVersion = gpu.chip.mmuVersion as 2 | 3;
  const format = gpu.format;
  const bind = gpu.family.bar1.read(gpu.bar0);
  const windowValue = gpu.pramin.registerValue ?? registers.get(gpu.pramin.register.offset) ?? null;
  {
    using w = gpu.pramin.borrow();
    const readOr = (addr: number, size: number, why: string): Uint8Array | null => {
      try {
        return w.readBytes(addr, size);
      } catch (e) {
        // A read-only open cannot move the window: say what was left out, and why.
        if (e instanceof NovaError && e.code === "EPERM" && gpu.device.readOnly) {
          skipped.push({ addr, size, why, reason: e.message });
          return null;
        }
        throw e;
      }
    };
    const capture = (addr: number, size: number, why: string): Uint8Array | null => {
      budget.take(size, why);
      const data = readOr(addr, size, why);
      if (data !== null) pieces.push({ addr, data, why });
      return data;
    };
    // The BAR1 instance block, as the bind registers name it now.
    const roots: { name: string; pdb: number; instanceBlock: number | null }[] = [];
    if (bind.instanceBlock !== null && bind.instanceBlock + INSTANCE_BLOCK_BYTES <= vramSize) {
      const block = capture(bind.instanceBlock, INSTANCE_BLOCK_BYTES, "instance block of bar1");
      if (block !== null) {
        let b: { pdb: number } | null = null;
        try {
          b = readInstanceBlock(gpu.pramin, bind.instanceBlock, { mmuVersion });
        } catch (e) {
          if (!(e instanceof NovaError) || e.code !== "ENOTSUP") throw e;
          // A format novamm does not walk: the block is captured, its tables are not.
          skipped.push({
            addr: bind.instanceBlock,
            size: 0,
            why: "bar1 tables",
            reason: e.message,
          });
        }
        if (b !== null && b.pdb + 4096 <= vramSize) {
          roots.push({ name: "bar1", pdb: b.pdb, instanceBlock: bind.instanceBlock });
        }
      }
    }
    for (const v of gpu.knownVmms()) {
      if (v.destroyed || roots.some((r) => r.pdb === v.pdb)) continue;
      roots.push({ name: v.name, pdb: v.pdb, instanceBlock: null });
    }
    for (const [i, p] of extraRoots.entries()) {
      if (!roots.some((r) => r.pdb === p)) {
        roots.push({ name: `pdb${i}`, pdb: p, instanceBlock: null });
      }
    }
    // Walk each tree in VRAM; each table is read once (several spaces may share tables).
    const seen = new Set<string>();
    let tables = 0;
    for (const root of roots) {
      spaces.push({
        name: root.name,
        pdb: root.pdb,
        mmuVersion,
        instanceBlock: root.instanceBlock,
      });
      const queue: { addr: number; level: LevelFormat; depth: number }[] = [
        { addr: root.pdb, level: format.directories[0], depth: 0 },
      ];
      while (queue.length > 0) {
        const t = queue.pop()!;
        const key = `${t.addr}:${t.level.name}`;
        if (seen.has(key)) continue;
        seen.add(key);
        if ((tables++ & 255) === 0) {
          workStep(tables, tables + queue.length, "snapshot tables");
          options.onProgress?.(tables, tables + queue.length, "page tables");
          await step(options);
        }
        const data = capture(t.addr, t.level.tableBytes, `${t.level.name} of ${root.name}`);
        if (data === null || t.depth >= format.directories.length) continue; // a PT: leaves only
        queue.push(...children(data, t.level, t.depth, format.directories, format, vramSize));
      }
    }
    workDone(tables, "snapshot tables");
    // The user's ranges, a step at a time (progress, Ctrl-C); the budget took them already.
    const total = userRanges.reduce((s, r) => s + r.size, 0);
    let done = 0;
    for (const r of userRanges) {
      const data = new Uint8Array(r.size);
      let ok = true;
      for (let o = 0; o < r.size && ok; o += STEP_BYTES) {
        const n = Math.min(STEP_BYTES, r.size - o);
        const part = readOr(r.addr + o, n, "user");
        if (part === null) ok = false;
        else data.set(part, o);
        done += n;
        workStep(done, total, "snapshot ranges");
        options.onProgress?.(done, total, "VRAM ranges");
        await step(options);
      }
      if (ok) pieces.push({ addr: r.addr, data, why: "user" });
    }
    if (total > 0) workDone(total, "snapshot ranges");
  }
  const vram = mergePieces(pieces);
  const dev = gpu.device;
  const source: SnapshotSource = {
    kind: dev.kind === "snap" ? "snap" : dev.kind,
    spec: dev.spec,
    takenAt: new Date().toISOString(),
    tool: "novamm",
  };
  if (options.comment !== undefined) source.comment = options.comment;
  const pci = dev.pci;
  return {
    format: SNAPSHOT_FORMAT,
    version: SNAPSHOT_VERSION,
    source,
    chip: {
      boot0: registers.get(NV_PMC_BOOT_0) ?? gpu.bar0.read32(NV_PMC_BOOT_0),
      boot42: registers.get(NV_PMC_BOOT_42) ?? gpu.bar0.read32(NV_PMC_BOOT_42),
      pci: pci === null ? (dev.snapshot?.chip.pci ?? null) : {
        bdf: pci.bdf,
        vendor: pci.vendor,
        device: pci.device,
        subsystemVendor: pci.subsystemVendor ?? null,
        subsystemDevice: pci.subsystemDevice ?? null,
      },
      barSizes: { bar0: dev.bar0.size, bar1: dev.bar1.size },
      vramSize,
    },
    state: {
      chip: `${gpu.chip.name} (${gpu.chip.architecture}, MMU v${mmuVersion})`,
      gfw: { ...dev.gfw },
      memClear: { ...dev.memClear },
      bootVga: dev.bootVga,
      firmwareUsable: dev.firmwareUsable === null ? null : { ...dev.firmwareUsable },
      bar1: {
        mode: bind.mode,
        via: bind.via,
        instanceBlock: bind.instanceBlock,
        pdb: spaces.find((s) => s.name === "bar1")?.pdb ?? null,
        registers: bind.registers.map((r) => ({ offset: r.offset, value: r.value })),
        problem: bind.problem,
      },
      // The binding the layout came from: as this session found BAR1 at open (or, reopened, as
      // the recorded session did). A reopen derives the same firmware regions from it, so BAR1
      // tables a session built itself are never taken for firmware's reserved memory.
      bar1AtStart: bar1AtStart(gpu),
      vram: {
        size: vramSize,
        usable: { ...gpu.vram.usable },
        usableSource: gpu.vram.usableSource,
        layout: gpu.vram.layout.map((r) => ({ ...r })),
        // Layout registers the device could not tell (a snap: device that lacked them).
        unknown: [...gpu.vram.unknown],
      },
      pramin: {
        register: gpu.pramin.register.name,
        offset: gpu.pramin.register.offset,
        value: windowValue,
      },
      readOnly: dev.readOnly,
      registersRead: offsets.length,
      skipped,
    },
    registers,
    vram,
    addressSpaces: spaces,
  };
}

/**
 * BAR1's binding when the card was first read, as `state.bar1AtStart` records it (the
 * mmiotrace importer's shape, without its line): a snapshot's own record carried over.
 */
function bar1AtStart(gpu: Gpu): unknown {
  const recorded = gpu.device.snapshot?.state.bar1AtStart;
  if (recorded !== undefined) return recorded;
  const b = gpu.bar1AtOpen;
  return {
    mode: b.mode,
    via: b.via,
    instanceBlock: b.instanceBlock === null ? null : hex(b.instanceBlock),
    problem: b.problem,
  };
}

/** The tables the entries of one table point to (video aperture, inside VRAM). */
function children(
  data: Uint8Array,
  level: LevelFormat,
  depth: number,
  directories: readonly LevelFormat[],
  format: Gpu["format"],
  vramSize: number,
): { addr: number; level: LevelFormat; depth: number }[] {
  const out: { addr: number; level: LevelFormat; depth: number }[] = [];
  const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const word = (at: number) => dv.getBigUint64(at, true);
  const codec = format.codec;
  const follow = (aperture: string, address: number | bigint, next: LevelFormat, d: number) => {
    if (aperture === "video" && tableFits(address, next.tableBytes, vramSize)) {
      out.push({ addr: address, level: next, depth: d });
    }
  };
  for (let i = 0; i < level.entries; i++) {
    if (level.dual) {
      const lo = word(i * 16);
      const hi = word(i * 16 + 8);
      if (lo === 0n && hi === 0n) continue;
      const d = codec.decodeDualPde([lo, hi]);
      if (d.isPte) continue;
      follow(d.big.aperture, d.big.address, format.bigPt, depth + 1);
      follow(d.small.aperture, d.small.address, format.smallPt, depth + 1);
      continue;
    }
    const raw = word(i * 8);
    if (raw === 0n) continue;
    const d = codec.decodePde(raw);
    if (d.isPte) continue;
    follow(d.aperture, d.address, directories[depth + 1], depth + 1);
  }
  return out;
}

/**
 * Takes a snapshot (see {@linkcode takeSnapshot}) and writes it to `file`;
 * returns what was captured and the file's size.
 *
 * @example
 * ```ts
 * import { openGpu } from "../mod.ts";
 * using gpu = await openGpu({ device: "sim" });
 * const file = await Deno.makeTempFile({ suffix: ".snap" });
 * const { bytes } = await snapshotToFile(gpu, file, { ranges: [{ addr: 0x100000, size: 4096 }] });
 * ```
 */
export async function snapshotToFile(
  gpu: Gpu,
  file: string,
  options: SnapshotOptions = {},
): Promise<{ snapshot: Snapshot; bytes: number; file: string }> {
  if (typeof file !== "string" || file === "") {
    fail("EINVAL", `a snapshot file name is a non-empty string, not ${describe(file)}`);
  }
  const snapshot = await takeSnapshot(gpu, options);
  const bytes = await writeSnapshotFile(file, snapshot);
  return { snapshot, bytes, file };
}

/** A one-line summary of a capture: registers, ranges, bytes, address spaces, skipped. */
export function describeSnapshot(s: Snapshot, fileBytes?: number): string {
  const o = s as Partial<Snapshot> | null;
  if (
    o === null || typeof o !== "object" || !(o.registers instanceof Map) ||
    !Array.isArray(o.vram) || !Array.isArray(o.addressSpaces) || typeof o.source !== "object" ||
    o.source === null || typeof o.state !== "object" || o.state === null
  ) {
    fail("EINVAL", `describeSnapshot takes a Snapshot (readSnapshotFile), not ${describe(s)}`);
  }
  if (
    fileBytes !== undefined &&
    (typeof fileBytes !== "number" || !Number.isSafeInteger(fileBytes) || fileBytes < 0)
  ) {
    fail("EINVAL", `describeSnapshot file size ${describe(fileBytes)} is not a byte count`);
  }
  const vramBytes = s.vram.reduce((n, r) => n + r.data.length, 0);
  const skipped = Array.isArray(s.state.skipped) ? s.state.skipped.length : 0;
  return `snapshot of ${s.source.spec}: ${s.registers.size} registers, ${s.vram.length} VRAM ranges (${
    formatSize(vramBytes)
  }), ${s.addressSpaces.length} address spaces (${
    s.addressSpaces.map((a) => `${a.name} @${hex(a.pdb)}`).join(", ") || "none"
  })${fileBytes === undefined ? "" : `, file ${formatSize(fileBytes)}`}${
    skipped > 0 ? `; ${skipped} ranges skipped (read-only: outside the PRAMIN window)` : ""
  }`;
}
