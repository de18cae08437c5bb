/**
 * The firmware scan: reads the tables an address space did not create (a
 * firmware-built space, or a throw-away copy for `dump({ fromHardware })`)
 * through PRAMIN into the shadow, and reports the VA their entries cover.
 *
 * Every table the scan can follow (a video-aperture PDE inside VRAM) joins
 * the shadow as foreign (no allocation, already written); any other non-zero
 * entry (a PTE, a sysmem or out-of-range PDE, a sparse marker) makes its VA
 * firmware's, so that entry is never rewritten.
 *
 * @module
 */

import { interruptPoint } from "../../hw/mmio.ts";
import type { PraminWindow } from "../pramin.ts";
import {
  BIG_HALF,
  dualSlot,
  type PtTable,
  type ShadowTree,
  SMALL_HALF,
  wordOf,
  wordsPerEntry,
  wordZero,
} from "./tree.ts";
import { tableFits } from "./walk.ts";

const PAGE = 4096;

/** A half of a decoded PD0 entry, as far as the scan looks at it. */
interface ScannedHalf {
  aperture: string;
  address: number | bigint;
}

/**
 * Reads the tables below `tree.root` (which must hold only the root) into
 * the shadow, one bulk read per table over the entries below `vaSize`, and
 * returns the VA ranges `[start, end)` their non-zero entries take, sorted
 * and merged (big and small pages may cover the same VA).
 *
 * @example
 * ```ts
 * import { openGpu } from "../../mod.ts";
 * import { mmuFormat } from "./mod.ts";
 * import { ShadowTree } from "./tree.ts";
 * using gpu = await openGpu({ device: "sim" });
 * const tree = new ShadowTree(mmuFormat({ version: 2 }), 0x200000, null);
 * using w = gpu.pramin.window();
 * for (const [start, end] of scanTables(tree, w, 1n << 40n, gpu.mm.vramSize)) {
 *   console.log("firmware maps", start, end); // a fresh card: none
 * }
 * ```
 */
export function scanTables(
  tree: ShadowTree,
  w: PraminWindow,
  vaSize: bigint,
  vramSize: number,
): [bigint, bigint][] {
  const codec = tree.format.codec;
  const dirs = tree.format.directories;
  const pd0 = dirs.length - 1;
  const taken: [bigint, bigint][] = [];
  const take = (va: bigint, size: bigint) => {
    taken.push([va, va + size > vaSize ? vaSize : va + size]);
  };
  const child = (t: PtTable, idx: number, slot: number, addr: number, va: bigint) => {
    const c = tree.newTable(tree.childDepth(t.depth, slot), addr, null);
    c.written = true;
    tree.attach(t, idx, slot, c);
    visit(c, va);
  };
  // A table we can follow: in VRAM, wholly below its end.
  const ok = (h: ScannedHalf, size: number) =>
    h.aperture === "video" && tableFits(h.address, size, vramSize);
  const visit = (t: PtTable, base: bigint) => {
    interruptPoint(); // once per table (its read checks too; the decode loop does not)
    const level = t.level;
    const span = 1n << BigInt(level.vaLo);
    const count = Math.min(level.entries, Number((vaSize - base + span - 1n) / span));
    const perEntry = 2 * wordsPerEntry(t);
    // One bulk read of the entries this space can reach (the same 32-bit reads, in order).
    w.readWords(t.addr, count * perEntry, t.raw.subarray(0, count * perEntry));
    const entryVa = (i: number) => base + (BigInt(i) << BigInt(level.vaLo));
    if (t.depth > pd0) {
      for (let i = 0; i < count; i++) {
        if (wordZero(t, i)) continue;
        t.live++;
        // Any non-zero PTE (valid, sparse or marker) is firmware's: keep clear of it.
        take(entryVa(i), span);
      }
      return;
    }
    for (let i = 0; i < count; i++) {
      const va = entryVa(i);
      if (level.dual) {
        const lo = wordOf(t, dualSlot(i, BIG_HALF));
        const hi = wordOf(t, dualSlot(i, SMALL_HALF));
        if (lo === 0n && hi === 0n) continue;
        t.live++;
        const d = codec.decodeDualPde([lo, hi]);
        // A half that is not a table we can follow (sysmem, out of range, or an
        // invalid but non-zero word such as a sparse marker) makes the whole
        // 2 MiB firmware's, so its word is never rewritten.
        const odd = (h: ScannedHalf, word: bigint, size: number) =>
          h.aperture === "invalid" ? word !== 0n : !ok(h, size);
        if (d.isPte || odd(d.big, lo, 256) || odd(d.small, hi, PAGE)) {
          take(va, span);
          continue;
        }
        if (d.big.aperture === "video") {
          child(t, i, dualSlot(i, BIG_HALF), d.big.address as number, va);
        }
        if (d.small.aperture === "video") {
          child(t, i, dualSlot(i, SMALL_HALF), d.small.address as number, va);
        }
        continue;
      }
      const raw = wordOf(t, i);
      if (raw === 0n) continue;
      t.live++;
      const d = codec.decodePde(raw);
      if (d.isPte || !ok(d, PAGE)) {
        take(va, span);
        continue;
      }
      child(t, i, i, d.address as number, va);
    }
  };
  visit(tree.root, 0n);
  taken.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  const merged: [bigint, bigint][] = [];
  for (const [start, end] of taken) {
    const last = merged.at(-1);
    if (last !== undefined && start <= last[1]) last[1] = end > last[1] ? end : last[1];
    else merged.push([start, end]);
  }
  return merged;
}
