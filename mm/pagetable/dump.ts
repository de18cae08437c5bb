/**
 * The dump of a shadow tree: every non-zero entry with its level, index,
 * VRAM address, first VA and decoded value, children nested, printing as an
 * indented tree. `Vmm.dump` is the entry point; it decides which shadow (its
 * own, or a fresh scan of VRAM) and what counts as firmware's.
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
  /** True for tables this Vmm did not create. */
  foreign: boolean;
}

/** How {@linkcode dumpTree} marks and prints. */
export interface DumpTreeOptions {
  /** Stop after this many PTEs. */
  maxPtes: number;
  /** True for a table the address space did not create. */
  tableForeign: (t: PtTable) => boolean;
  /** True for a PTE at a VA the address space did not map. */
  pteForeign: (va: bigint) => boolean;
  /** The first line of the printed tree. */
  header: string;
}

/**
 * The tree of `tree` from its root. An entry is marked foreign when the
 * table it points to is (`tableForeign`) or, for a PTE, when its VA is
 * (`pteForeign`): a page mapped by this Vmm into firmware's table is ours.
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
  let budget = options.maxPtes;
  const codec = tree.format.codec;
  const dirs = tree.format.directories.length;
  // Ctrl-C is heard once per table; progress counts tables (a terminal shows it when long).
  let tables = 0;
  let visited = 0;
  for (const _ of tree.tables()) tables++;
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
          foreign: d.isPte
            ? pteForeign(va)
            : [big, small].every((c) => c === null || tableForeign(c)),
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
        foreign: child === null ? pteForeign(va) : tableForeign(child),
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
    foreign: tableForeign(tree.root),
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
          n.foreign ? "  (firmware)" : ""
        }`,
      );
      visit(n.children, indent + "  ");
    }
  };
  visit(root.children, "  ");
  if (truncated) lines.push("  … (more PTEs; dump({ maxPtes }) shows more)");
  return lines.join("\n");
}
