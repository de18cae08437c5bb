/**
 * The dump of a shadow tree: every non-zero entry with its level, index,
 * VRAM address, first VA and decoded value, children nested, printing as an
 * indented tree. `Vmm.dump` is the entry point; it decides which shadow (its
 * own, or a fresh scan of VRAM) and what counts as foreign.
 *
 * A foreign entry is one of two kinds, and the dump says which it knows:
 * `"firmware"` (a table in a region firmware owns, or of the BAR1 binding
 * firmware had at open: printed `(firmware)`) or `"other"` (a table this
 * session did not make and firmware is not known to own: a reopened
 * snapshot's, another tool's; printed `(not this session's)`).
 *
 * @module
 */

import { interruptPoint } from "../../hw/mmio.ts";
import { hex } from "../types.ts";
import {
  BIG_HALF,
  dualSlot,
  entryLive,
  type PtTable,
  type ShadowTree,
  SMALL_HALF,
  wordOf,
  workDone,
  workStep,
} from "./tree.ts";

/** One node of `Vmm.dump`. */
export interface DumpNode {
  /** Level name. */
  level: string;
  /** Index in the parent table (-1 for the root). */
  index: number;
  /** VRAM address of the entry (the PDB for the root). */
  address: number;
  /** First VA the entry covers. */
  va: bigint;
  /** Decoded entry (a PTE or PDE), or null for the root. */
  entry: unknown;
  /** Child nodes. */
  children: DumpNode[];
  /**
   * False for what this Vmm made; for a table (or a PTE at a VA) it did not
   * make, whose it is as far as known: `"firmware"` (firmware's reserved
   * memory, or the tables of the BAR1 binding firmware had at open) or
   * `"other"` (not this session's: a reopened snapshot's, another tool's).
   */
  foreign: Foreign;
}

/** Whose a foreign table is: see {@linkcode DumpNode.foreign}. */
export type Foreign = false | "firmware" | "other";

/** The word a dump prints after a foreign entry (and the views show): `(firmware)`, `(not this session's)`. */
export function foreignLabel(foreign: Foreign): string {
  return foreign === "firmware" ? "firmware" : foreign === "other" ? "not this session's" : "";
}

/** How {@linkcode dumpTree} marks and prints. */
export interface DumpTreeOptions {
  /** Stop after this many PTEs. */
  maxPtes: number;
  /** True for a table the address space did not create. */
  tableForeign: (t: PtTable) => boolean;
  /** True for a PTE at a VA the address space did not map. */
  pteForeign: (va: bigint) => boolean;
  /**
   * For a foreign table (or a table holding a foreign PTE): true when it is
   * known to be firmware's, false when it is merely not this session's.
   * Default: every foreign table is firmware's.
   */
  tableFirmware?: (t: PtTable) => boolean;
  /** The first line of the printed tree. */
  header: string;
}

/**
 * The tree of `tree` from its root. An entry is marked foreign when the
 * table it points to is (`tableForeign`) or, for a PTE, when its VA is
 * (`pteForeign`): a page mapped by this Vmm into firmware's table is ours.
 * A foreign mark is `"firmware"` when `tableFirmware` says so of that table
 * (of the table holding it, for a PTE), else `"other"`.
 *
 * @example
 * ```ts
 * import { mmuFormat } from "./mod.ts";
 * import { ShadowTree } from "./tree.ts";
 * const tree = new ShadowTree(mmuFormat({ version: 2 }), 0x200000, null);
 * const root = dumpTree(tree, {
 *   maxPtes: 256,
 *   tableForeign: (t) => t.alloc === null,
 *   pteForeign: () => false,
 *   header: "vmm",
 * });
 * ```
 */
export function dumpTree(tree: ShadowTree, options: DumpTreeOptions): DumpNode {
  const { tableForeign, pteForeign } = options;
  const tableFirmware = options.tableFirmware ?? (() => true);
  const kind = (foreign: boolean, t: PtTable): Foreign =>
    !foreign ? false : tableFirmware(t) ? "firmware" : "other";
  let budget = options.maxPtes;
  const codec = tree.format.codec;
  const dirs = tree.format.directories.length;
  // Ctrl-C is heard once per table; progress counts tables (a terminal shows it when long).
  let tables = 0;
  let visited = 0;
  for (const _ of tree.tables()) tables++;
  // A dual PDE is foreign when both halves are; firmware's when a half firmware owns is there.
  const dualForeign = (big: PtTable | null, small: PtTable | null): Foreign => {
    const halves = [big, small].filter((c) => c !== null);
    if (!halves.every((c) => tableForeign(c))) return false;
    return halves.length === 0 || halves.some((c) => tableFirmware(c)) ? "firmware" : "other";
  };
  const visit = (t: PtTable, base: bigint): DumpNode[] => {
    workStep(visited++, tables, "dump");
    const out: DumpNode[] = [];
    const span = 1n << BigInt(t.level.vaLo);
    for (let i = 0; i < t.level.entries && budget > 0; i++) {
      if (!entryLive(t, i)) continue;
      const va = base + BigInt(i) * span;
      if (t.level.dual) {
        const lo = wordOf(t, dualSlot(i, BIG_HALF));
        const hi = wordOf(t, dualSlot(i, SMALL_HALF));
        const d = codec.decodeDualPde([lo, hi]);
        const children: DumpNode[] = [];
        const big = t.children[dualSlot(i, BIG_HALF)];
        const small = t.children[dualSlot(i, SMALL_HALF)];
        if (big !== null) children.push(...visit(big, va));
        if (small !== null) children.push(...visit(small, va));
        if (d.isPte) budget--;
        out.push({
          level: t.level.name,
          index: i,
          address: t.addr + i * 16,
          va,
          entry: d.isPte ? codec.decodePte(lo) : d,
          children,
          foreign: d.isPte ? kind(pteForeign(va), t) : dualForeign(big, small),
        });
        continue;
      }
      const raw = wordOf(t, i);
      const child = t.depth < dirs ? t.children[i] : null;
      const isPte = t.depth >= dirs || (raw & 1n) === 1n;
      if (isPte) budget--;
      out.push({
        level: t.level.name,
        index: i,
        address: t.addr + i * 8,
        va,
        entry: isPte ? codec.decodePte(raw) : codec.decodePde(raw),
        children: child === null ? [] : visit(child, va),
        foreign: child === null ? kind(pteForeign(va), t) : kind(tableForeign(child), child),
      });
    }
    return out;
  };
  const root: DumpNode = {
    level: "PDB",
    index: -1,
    address: tree.root.addr,
    va: 0n,
    entry: null,
    children: visit(tree.root, 0n),
    foreign: kind(tableForeign(tree.root), tree.root),
  };
  workDone(tables, "dump");
  const truncated = budget <= 0;
  Object.defineProperty(root, Symbol.for("Deno.customInspect"), {
    value: () => formatDump(options.header, root, truncated),
    enumerable: false,
  });
  return root;
}

function formatDump(header: string, root: DumpNode, truncated: boolean): string {
  const lines = [header];
  const visit = (nodes: DumpNode[], indent: string) => {
    for (const n of nodes) {
      // Millions of lines: Ctrl-C is heard.
      if ((lines.length & 127) === 0) interruptPoint();
      lines.push(
        `${indent}${n.level}[${n.index}] va ${hex(n.va)} @${hex(n.address)} ${String(n.entry)}${
          n.foreign ? `  (${foreignLabel(n.foreign)})` : ""
        }`,
      );
      visit(n.children, indent + "  ");
    }
  };
  visit(root.children, "  ");
  if (truncated) lines.push("  … (more PTEs; dump({ maxPtes }) shows more)");
  return lines.join("\n");
}
