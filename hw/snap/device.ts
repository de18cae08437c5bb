/**
 * A snapshot as a device (`--device snap:FILE`): BAR0 answers exactly what
 * was recorded — a captured register reads its value, the PRAMIN aperture
 * (BAR0 + 0x700000, 1 MiB) reads captured VRAM through the window register —
 * and anything that was not captured is an error naming the offset and "not
 * in the snapshot", never a made-up value.
 *
 * Strict and read-only by default: every write is refused except the PRAMIN
 * window register, whose value is session state (where the aperture points),
 * not recorded data, so that `walk`, dumps and `pramin.read32` can reach any
 * captured VRAM. `snap:FILE?scratch` makes a writable in-memory copy:
 * captured registers and captured VRAM take writes; anything else is refused.
 *
 * BAR1 CPU access is refused (a snapshot holds VRAM, not a live MMU): walk
 * the VA (`gpu.walk(va)`) and read the page through PRAMIN instead.
 *
 * @module
 */

import { fail, hex } from "../errors.ts";
import type { MmioBackend } from "../mmio.ts";
import { getField, NV_PMC_BOOT_0, NV_PMC_BOOT_42, windowRegister } from "../regs.ts";
import { decodeChip } from "../chip.ts";
import type { Snapshot, SnapshotVramRange } from "./types.ts";

/** BAR0 offset of the PRAMIN aperture and its size (facts §3). */
const PRAMIN_START = 0x700000;
const PRAMIN_BYTES = 0x100000;
/** The window's base field counts 64 KiB blocks. */
const WINDOW_SHIFT = 16;

/** A parsed `snap:FILE[?scratch]` spec. */
export interface ParsedSnapSpec {
  /** The snapshot file. */
  path: string;
  /** Writes go to an in-memory copy. */
  scratch: boolean;
}

/**
 * Parses `snap:FILE` or `snap:FILE?scratch`; null when `spec` does not start
 * with `snap:`. An empty file name or another query is ENODEV.
 *
 * @example
 * ```ts
 * parseSnapSpec("snap:card.snap?scratch"); // { path: "card.snap", scratch: true }
 * parseSnapSpec("sim:ga102"); // null
 * ```
 */
export function parseSnapSpec(spec: string): ParsedSnapSpec | null {
  if (typeof spec !== "string" || !spec.startsWith("snap:")) return null;
  let rest = spec.slice(5);
  let scratch = false;
  const q = rest.lastIndexOf("?");
  if (q >= 0) {
    const query = rest.slice(q + 1);
    if (query !== "scratch") {
      fail(
        "ENODEV",
        `bad snapshot spec ${JSON.stringify(spec)}: the only option is ?scratch, not ?${query}`,
        "use snap:FILE (read-only) or snap:FILE?scratch (writes to an in-memory copy)",
      );
    }
    scratch = true;
    rest = rest.slice(0, q);
  }
  if (rest === "") {
    fail(
      "ENODEV",
      `bad snapshot spec ${JSON.stringify(spec)}: no file name after snap:`,
      "use snap:FILE",
    );
  }
  return { path: rest, scratch };
}

/** Ranges sorted by address: the index of the one holding `addr`, or -1. */
function findRange(vram: readonly SnapshotVramRange[], addr: number): number {
  let lo = 0;
  let hi = vram.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    const r = vram[mid];
    if (addr < r.addr) hi = mid - 1;
    else if (addr >= r.addr + r.data.length) lo = mid + 1;
    else return mid;
  }
  return -1;
}

/** The BAR backends of a snapshot device and what they share. */
export interface SnapBackends {
  /** BAR0: registers and PRAMIN from the snapshot. */
  bar0: MmioBackend;
  /** BAR1: refuses every access. */
  bar1: MmioBackend;
  /** The snapshot answered from (a private copy when scratch). */
  snapshot: Snapshot;
}

/**
 * Makes the two BAR backends of a snapshot device. With `scratch` the
 * registers and VRAM are copied first, so writes never reach `snapshot`.
 *
 * @example
 * ```ts
 * import { readSnapshotFile } from "./format.ts";
 * const file = Deno.args[0] ?? "card.snap";
 * const { bar0 } = snapBackends(await readSnapshotFile(file), { scratch: false, label: file });
 * bar0.read32(0); // BOOT_0 as recorded
 * ```
 */
export function snapBackends(
  snapshot: Snapshot,
  options: { scratch: boolean; label: string },
): SnapBackends {
  const { scratch, label } = options;
  const snap: Snapshot = scratch
    ? {
      ...snapshot,
      registers: new Map(snapshot.registers),
      vram: snapshot.vram.map((r) => ({ ...r, data: r.data.slice() })),
    }
    : snapshot;
  const regs = snap.registers;
  const vram = snap.vram;
  // The chip as the recorded BOOT registers say (what the open identifies it by).
  const chip = decodeChip(
    regs.get(NV_PMC_BOOT_0) ?? snap.chip.boot0,
    regs.get(NV_PMC_BOOT_42) ?? snap.chip.boot42,
  );
  const win = windowRegister(chip.architecture);
  // The window register as recorded: where the aperture points (session state from here on).
  let window = regs.get(win.offset) ?? null;
  const missing = (what: string, at: string): never =>
    fail(
      "EIO",
      `${label}: ${what} ${at} is not in the snapshot`,
      "the snapshot answers only what was captured (take it again with --range for VRAM)",
    );
  const readOnlyWrite = (offset: number): never =>
    fail(
      "EPERM",
      `${label}: write of BAR0 ${hex(offset)} refused: a snapshot opens read-only`,
      "open snap:FILE?scratch to write to an in-memory copy",
    );
  /** VRAM address of PRAMIN aperture byte `o` (0..1 MiB). */
  const vramOf = (o: number): number => {
    if (window === null) {
      return missing(
        `the PRAMIN window register ${win.name} (${hex(win.offset)}) for BAR0`,
        hex(PRAMIN_START + o),
      );
    }
    if (win.target !== null && getField(window, win.target) !== 0) {
      return fail(
        "EIO",
        `${label}: BAR0 ${hex(PRAMIN_START + o)}: the PRAMIN window (${
          hex(window, 8)
        }) points at system memory, which a snapshot does not hold`,
      );
    }
    return getField(window, win.base) * 2 ** WINDOW_SHIFT + o;
  };
  const vramWord = (addr: number): [Uint8Array, number] => {
    const i = findRange(vram, addr);
    if (i < 0) missing("VRAM", `${hex(addr)} (through PRAMIN)`);
    const r = vram[i];
    return [r.data, addr - r.addr];
  };
  const read = (offset: number, width: 1 | 2 | 4): number => {
    if (offset >= PRAMIN_START && offset < PRAMIN_START + PRAMIN_BYTES) {
      const [data, at] = vramWord(vramOf(offset - PRAMIN_START));
      let v = 0;
      for (let k = width - 1; k >= 0; k--) v = v * 256 + data[at + k];
      return v;
    }
    const base = offset - (offset % 4);
    const word = base === win.offset && window !== null ? window : regs.get(base);
    if (word === undefined) return missing("register", `BAR0 ${hex(base)}`);
    const shift = (offset - base) * 8;
    return width === 4 ? word >>> 0 : (word >>> shift) & (width === 1 ? 0xff : 0xffff);
  };
  const write = (offset: number, value: number, width: 1 | 2 | 4): void => {
    if (offset >= PRAMIN_START && offset < PRAMIN_START + PRAMIN_BYTES) {
      if (!scratch) readOnlyWrite(offset);
      const [data, at] = vramWord(vramOf(offset - PRAMIN_START));
      for (let k = 0; k < width; k++) data[at + k] = (value >>> (8 * k)) & 0xff;
      return;
    }
    const base = offset - (offset % 4);
    if (base === win.offset && width === 4) {
      window = value >>> 0; // where the aperture points: session state, allowed read-only
      if (scratch) regs.set(base, window);
      return;
    }
    if (!scratch) readOnlyWrite(offset);
    const old = regs.get(base);
    if (old === undefined) {
      fail(
        "EPERM",
        `${label}: write of BAR0 ${
          hex(offset)
        } refused: the register is not in the snapshot (scratch copies take writes of captured registers only)`,
      );
    }
    const shift = (offset - base) * 8;
    const mask = width === 4 ? 0xffffffff : (width === 1 ? 0xff : 0xffff) << shift;
    regs.set(base, ((old & ~mask) | ((value << shift) & mask)) >>> 0);
  };
  const bar0: MmioBackend = {
    size: Math.max(snap.chip.barSizes.bar0, PRAMIN_START + PRAMIN_BYTES),
    read8: (o) => read(o, 1),
    read16: (o) => read(o, 2),
    read32: (o) => read(o, 4),
    write8: (o, v) => write(o, v, 1),
    write16: (o, v) => write(o, v, 2),
    write32: (o, v) => write(o, v, 4),
    readWords(offset: number, out: Uint32Array): void {
      const end = offset + out.length * 4;
      if (offset >= PRAMIN_START && end <= PRAMIN_START + PRAMIN_BYTES && out.length > 0) {
        const addr = vramOf(offset - PRAMIN_START);
        const i = findRange(vram, addr);
        const r = i < 0 ? null : vram[i];
        if (r !== null && addr + out.length * 4 <= r.addr + r.data.length) {
          const at = r.data.byteOffset + addr - r.addr;
          if (at % 4 === 0) {
            out.set(new Uint32Array(r.data.buffer, at, out.length));
            return;
          }
        }
      }
      for (let k = 0; k < out.length; k++) out[k] = read(offset + k * 4, 4);
    },
  };
  const bar1Refused = (o: number): never =>
    fail(
      "ENOTSUP",
      `${label}: BAR1 ${hex(o)}: a snapshot has no BAR1 aperture (it records VRAM, not a live MMU)`,
      "walk the VA (gpu.walk(va)) and read the page through PRAMIN (gpu.pramin.read32(pa))",
    );
  const bar1: MmioBackend = {
    size: snap.chip.barSizes.bar1 > 0 ? snap.chip.barSizes.bar1 : 2 ** 16,
    read8: bar1Refused,
    read16: bar1Refused,
    read32: bar1Refused,
    write8: bar1Refused,
    write16: bar1Refused,
    write32: bar1Refused,
  };
  return { bar0, bar1, snapshot: snap };
}
