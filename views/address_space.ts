/**
 * The address-space view: the page-table tree of a {@linkcode Vmm} as
 * nested `<details>` (one per directory entry, with its level, index, VA,
 * the table it points to and how many entries of it are used), leaf tables
 * summarised as runs of PTEs (consecutive entries mapping consecutive VRAM)
 * and a strip of the table's entries coloured by page size; tables and
 * entries this session did not make are marked with whose they are as far as
 * known: `(firmware)` (firmware's reserved memory, the BAR1 firmware had bound
 * at open) or `(not this session's)` (a reopened snapshot's, another tool's;
 * see `DumpNode.foreign`). Above it, the VA coverage bar: the whole VA space
 * and the part in use, coloured by page size, ranges found in the tables
 * (not mapped by this session) in the colour of whose they are.
 *
 * Data comes from `vmm.dump()` (the shadow: no MMIO), `vmm.mappings()` and
 * `vmm.ranges.list()`. Cost is bounded: at most `maxTables` directory
 * entries are drawn, at most `maxRuns` runs are listed per table, and the
 * bar and strips merge what is narrower than a pixel.
 *
 * @module
 */

import { describe, fail, formatSize } from "../hw/errors.ts";
import { checkObject, checkOptions } from "../hw/validate.ts";
import { interruptPoint } from "../hw/mmio.ts";
import { type DumpNode, Vmm } from "../mm/vmm.ts";
import { type Foreign, foreignLabel } from "../mm/pagetable/dump.ts";
import type { MmuFormat } from "../mm/pagetable/format.ts";
import { esc, FIRMWARE_COLOR, hexFast, OTHER_COLOR, pageColor, pageLegend } from "./html.ts";
import { drawAxis, drawLane, type LaneData } from "./vram_map.ts";

/** Options of {@linkcode addressSpaceHtml}. */
export interface AddressSpaceOptions {
  /** PTEs read from the dump at most (default 2^17; 1..2^24). */
  maxPtes?: number;
  /** Directory entries drawn at most (default 2000). */
  maxTables?: number;
  /** Runs listed per leaf table (default 8). */
  maxRuns?: number;
  /** Open the `<details>` of the first levels (default 2; all of them when there are at most 64). */
  openLevels?: number;
}

/** Bytes a PTE at `level` maps. */
export function pageSizeAt(format: MmuFormat, level: string): number {
  if (level === format.smallPt.name) return 4096;
  if (level === format.bigPt.name) return 65536;
  const dir = format.directories.find((d) => d.name === level);
  return dir?.hugePageSize ?? dir?.pageSize ?? 0;
}

/** Directory entries under `n` (all levels). */
function dirsBelow(n: DumpNode): number {
  let k = 0;
  for (const ch of n.children) if (!isPte(ch)) k += 1 + dirsBelow(ch);
  return k;
}

function isPte(n: DumpNode): boolean {
  return n.children.length === 0 && typeof n.entry === "object" && n.entry !== null &&
    "valid" in n.entry;
}

interface Counts {
  /** PTEs by page size. */
  bySize: Map<number, number>;
  /** Firmware's PTEs. */
  firmware: number;
  /** PTEs not this session's that firmware is not known to own. */
  other: number;
}

/** The colour of a foreign entry or range. */
function foreignColor(foreign: Foreign): string {
  return foreign === "other" ? OTHER_COLOR : FIRMWARE_COLOR;
}

/** The ` (firmware)` / ` (not this session's)` mark after a foreign entry, or nothing. */
function foreignMark(foreign: Foreign): string {
  return foreign ? ` <span class="nm-fw">(${esc(foreignLabel(foreign))})</span>` : "";
}

function hexVa(va: bigint): string {
  return "0x" + va.toString(16);
}

/** One run of PTEs: consecutive indices of one level, consecutive pages, same owner and validity. */
interface Run {
  level: string;
  first: number;
  count: number;
  va: bigint;
  pa: number;
  size: number;
  valid: boolean;
  foreign: Foreign;
  aperture: string;
}

function runsOf(nodes: DumpNode[], format: MmuFormat): Run[] {
  const runs: Run[] = [];
  let r: Run | null = null;
  for (const n of nodes) {
    if (!isPte(n)) continue;
    const e = n.entry as { valid: boolean; aperture: string; address: number | bigint };
    const size = pageSizeAt(format, n.level);
    const pa = Number(e.address);
    if (
      r !== null && r.level === n.level && r.first + r.count === n.index && r.valid === e.valid &&
      r.foreign === n.foreign && r.aperture === e.aperture && r.pa + r.count * size === pa
    ) {
      r.count++;
      continue;
    }
    r = {
      level: n.level,
      first: n.index,
      count: 1,
      va: n.va,
      pa,
      size,
      valid: e.valid,
      foreign: n.foreign,
      aperture: e.aperture,
    };
    runs.push(r);
  }
  return runs;
}

function chips(c: Counts): string {
  const parts = [...c.bySize.entries()].sort((a, b) => a[0] - b[0]).map(([size, n]) =>
    `<span class="nm-sw"><i style="background:${pageColor(size)}"></i>${n}×${
      esc(formatSize(size))
    }</span>`
  );
  if (c.firmware > 0) parts.push(`<span class="nm-fw">${c.firmware} firmware's</span>`);
  if (c.other > 0) {
    parts.push(`<span class="nm-fw">${c.other} ${esc(foreignLabel("other"))}</span>`);
  }
  return parts.join(" ");
}

/**
 * A strip of a leaf table's entries, one row per level: runs of entries of
 * one kind (mapped, firmware's, invalid) as one rect each, empty grey.
 */
function strip(nodes: DumpNode[], format: MmuFormat): string {
  const levels = new Map<string, DumpNode[]>();
  for (const n of nodes) {
    if (!isPte(n)) continue;
    const l = levels.get(n.level);
    if (l === undefined) levels.set(n.level, [n]);
    else l.push(n);
  }
  const out: string[] = [];
  let y = 0;
  for (const [level, list] of levels) {
    const entries = level === format.smallPt.name
      ? format.smallPt.entries
      : level === format.bigPt.name
      ? format.bigPt.entries
      : format.directories.find((d) => d.name === level)?.entries ?? 512;
    const colors = [pageColor(pageSizeAt(format, level)), FIRMWARE_COLOR, "#8c959f", OTHER_COLOR];
    const scale = 256 / entries;
    out.push(
      `<text x="0" y="${y + 8}" font-size="9">${
        esc(level)
      }</text><rect x="44" y="${y}" width="256" height="9" fill="#eaeef2"/>`,
    );
    let i = 0;
    while (i < list.length) {
      const kindOf = (n: DumpNode) =>
        n.foreign === "other" ? 3 : n.foreign ? 1 : (n.entry as { valid: boolean }).valid ? 0 : 2;
      const k = kindOf(list[i]);
      let j = i + 1;
      while (j < list.length && list[j].index === list[j - 1].index + 1 && kindOf(list[j]) === k) {
        j++;
      }
      const x = 44 + list[i].index * scale;
      const w = Math.max(1, (list[j - 1].index + 1 - list[i].index) * scale);
      out.push(
        `<rect x="${Math.round(x * 100) / 100}" y="${y}" width="${
          Math.round(w * 100) / 100
        }" height="9" fill="${colors[k]}"/>`,
      );
      i = j;
    }
    y += 12;
  }
  return y === 0
    ? ""
    : `<svg class="nm-strip" width="300" height="${y}" viewBox="0 0 300 ${y}"><title>the table's entries, left to right: mapped (by page size), firmware's, invalid; grey is empty</title>${
      out.join("")
    }</svg>`;
}

/**
 * The address-space view of `vmm` as an HTML fragment: header, VA coverage
 * bar and the table tree.
 *
 * @example
 * ```ts
 * import { openGpu } from "../mod.ts";
 * using gpu = await openGpu({ device: "sim:gh100" });
 * gpu.bar1.bringUp();
 * const html = addressSpaceHtml(gpu.bar1.vmm);
 * html.includes("nm-tree"); // true
 * ```
 */
export function addressSpaceHtml(vmm: Vmm, options: AddressSpaceOptions = {}): string {
  checkObject(vmm, "addressSpaceHtml vmm");
  if (!(vmm instanceof Vmm)) {
    fail("EINVAL", "addressSpaceHtml takes a Vmm (gpu.bar1.vmm, mm.createVmm())");
  }
  checkOptions(
    options,
    { maxPtes: "number", maxTables: "number", maxRuns: "number", openLevels: "number" },
    "address-space view options",
  );
  const maxPtes = intOption(options.maxPtes, 2 ** 17, 1, 2 ** 24, "maxPtes");
  const maxTables = intOption(options.maxTables, 2000, 1, 2 ** 20, "maxTables");
  const maxRuns = intOption(options.maxRuns, 8, 1, 4096, "maxRuns");
  const openLevels = intOption(options.openLevels, 2, 0, 8, "openLevels");
  const format = vmm.format;
  const root = vmm.dump({ maxPtes });
  const counts = new Map<DumpNode, Counts>();
  let pteTotal = 0;
  let dirTotal = 0;
  const count = (n: DumpNode): Counts => {
    const c: Counts = { bySize: new Map(), firmware: 0, other: 0 };
    for (const ch of n.children) {
      if (isPte(ch)) {
        if ((++pteTotal & 4095) === 0) interruptPoint();
        const size = pageSizeAt(format, ch.level);
        c.bySize.set(size, (c.bySize.get(size) ?? 0) + 1);
        if (ch.foreign === "other") c.other++;
        else if (ch.foreign) c.firmware++;
      } else {
        dirTotal++;
        const sub = count(ch);
        for (const [s, k] of sub.bySize) c.bySize.set(s, (c.bySize.get(s) ?? 0) + k);
        c.firmware += sub.firmware;
        c.other += sub.other;
      }
    }
    counts.set(n, c);
    return c;
  };
  const total = count(root);
  let drawn = 0;
  let skipped = 0;
  const entriesOf = (level: string) =>
    format.directories.find((d) => d.name === level)?.entries ?? 512;
  const tree = (n: DumpNode, depth: number): string => {
    const dirs = n.children.filter((c) => !isPte(c));
    const leaves = n.children.length - dirs.length;
    const parts: string[] = [];
    for (const ch of dirs) {
      if (drawn >= maxTables) {
        skipped += 1 + dirsBelow(ch);
        continue;
      }
      drawn++;
      const e = ch.entry as { address?: number | bigint } | null;
      const sub = ch.children;
      const used = new Map<string, number>();
      for (const s of sub) used.set(s.level, (used.get(s.level) ?? 0) + 1);
      const usedText = [...used].map(([lv, k]) =>
        `${k} of ${
          lv === format.smallPt.name
            ? format.smallPt.entries
            : lv === format.bigPt.name
            ? format.bigPt.entries
            : entriesOf(lv)
        } ${esc(lv)} entries`
      ).join(", ");
      parts.push(
        `<details${depth < openLevels || dirTotal <= 64 ? " open" : ""}><summary><b>${
          esc(ch.level)
        }[${ch.index}]</b> va ${hexVa(ch.va)} @${hexFast(ch.address)}${
          e !== null && e.address !== undefined ? ` → ${hexFast(Number(e.address))}` : ""
        } · ${usedText || "no entries"} · ${chips(counts.get(ch)!)}${
          foreignMark(ch.foreign)
        }</summary>${tree(ch, depth + 1)}</details>`,
      );
    }
    if (leaves > 0) {
      const runs = runsOf(n.children, format);
      parts.push(strip(n.children, format));
      for (const r of runs.slice(0, maxRuns)) {
        const last = r.first + r.count - 1;
        parts.push(
          `<div class="nm-run"><i style="background:${
            r.foreign ? foreignColor(r.foreign) : pageColor(r.size)
          }"></i>${esc(r.level)}[${r.first}${r.count > 1 ? `..${last}` : ""}] ${r.count}×${
            esc(formatSize(r.size))
          } va [${hexVa(r.va)}, ${hexVa(r.va + BigInt(r.count * r.size))}) → ${
            r.valid ? `${esc(r.aperture)} ${hexFast(r.pa)}` : "invalid"
          }${foreignMark(r.foreign)}</div>`,
        );
      }
      if (runs.length > maxRuns) {
        parts.push(
          `<div class="nm-run">… ${runs.length - maxRuns} more runs (${leaves} PTEs in all)</div>`,
        );
      }
    }
    return parts.join("");
  };
  const body = tree(root, 0);
  const truncated = pteTotal >= maxPtes;
  const counted = vmm.tableCounts();
  const sizes = [
    ...new Set([
      4096,
      65536,
      2 ** 21,
      ...format.directories.flatMap((d) => d.hugePageSize === null ? [] : [d.hugePageSize]),
    ]),
  ].sort((a, b) => a - b);
  return `<div class="nm nm-space" data-nm-vmm="${esc(vmm.name)}"><h3>${
    esc(vmm.name)
  }: MMU v${format.version}, PDB ${hexFast(vmm.pdb)}, VA ${hexVa(vmm.vaSize)} (${
    esc(formatSize(vmm.vaSize))
  })</h3><div>tables: ${
    Object.entries(counted).map(([k, v]) => `${esc(k)} ${v}`).join(", ")
  } · PTEs: ${chips(total)}${
    truncated
      ? ` <b>(first ${maxPtes} PTEs only: addressSpaceHtml({ maxPtes }) shows more)</b>`
      : ""
  }</div>${coverage(vmm, root.foreign === "other" ? "other" : "firmware")}${
    pageLegend(sizes)
  }<div class="nm-tree"><details open><summary><b>PDB</b> ${
    esc(format.directories[0].name)
  } table @${hexFast(root.address)} · ${root.children.length} of ${
    format.directories[0].entries
  } entries${foreignMark(root.foreign)}</summary>${body}</details>${
    skipped > 0
      ? `<div>… ${skipped} more directory entries not drawn (addressSpaceHtml({ maxTables }))</div>`
      : ""
  }</div></div>`;
}

/** Bytes of a page-size name of `Mapping.pages` (`4K`, `64K`, `2M`, `512M`, `256G`). */
function sizeOfName(name: string): number {
  const m = /^(\d+)([KMG])$/.exec(name);
  if (m === null) return 0;
  return Number(m[1]) * { K: 2 ** 10, M: 2 ** 20, G: 2 ** 30 }[m[2] as "K" | "M" | "G"];
}

function intOption(v: number | undefined, dflt: number, lo: number, hi: number, what: string) {
  if (v === undefined) return dflt;
  if (!Number.isSafeInteger(v) || v < lo || v > hi) {
    fail("EINVAL", `address-space view ${what} ${describe(v)} is not an integer in ${lo}..${hi}`);
  }
  return v;
}

/**
 * The VA coverage bars of `vmm`: the whole VA space, then the span in use
 * (from the lowest taken VA to the highest), mappings coloured by their
 * largest page size, firmware's ranges brown.
 */
export function vaCoverage(vmm: Vmm): string {
  checkObject(vmm, "vaCoverage vmm");
  if (!(vmm instanceof Vmm)) fail("EINVAL", "vaCoverage takes a Vmm");
  return coverage(vmm, "firmware");
}

/** {@linkcode vaCoverage}, the ranges the scan found drawn as `found`'s (the root table's owner). */
function coverage(vmm: Vmm, found: "firmware" | "other"): string {
  const maps = vmm.mappings();
  const colors: string[] = [];
  const kindOf = new Map<string, number>();
  const kind = (c: string) => {
    let k = kindOf.get(c);
    if (k === undefined) {
      k = colors.length;
      colors.push(c);
      kindOf.set(c, k);
    }
    return k;
  };
  const items: { s: number; e: number; k: number; l: number }[] = [];
  for (let i = 0; i < maps.length; i++) {
    if ((i & 1023) === 1023) interruptPoint();
    const m = maps[i];
    let best = 0;
    for (const name of Object.keys(m.pages)) best = Math.max(best, sizeOfName(name));
    items.push({ s: Number(m.va), e: Number(m.va) + m.size, k: kind(pageColor(best)), l: i });
  }
  for (const r of vmm.ranges.list()) {
    if (r.owner !== "firmware") continue;
    items.push({ s: Number(r.start), e: Number(r.end), k: kind(foreignColor(found)), l: -1 });
  }
  items.sort((a, b) => a.s - b.s);
  const lane: LaneData = {
    s: items.map((x) => x.s),
    e: items.map((x) => x.e),
    k: items.map((x) => x.k),
    l: items.map((x) => x.l),
  };
  const st = {
    kinds: colors.map((_, i) => `va${i}`),
    colors,
    // Titles only for what is drawn alone: the text of a mapping is made when drawn.
    label: (i: number) =>
      i < 0
        ? (found === "firmware" ? "firmware's range" : "a range not this session's")
        : String(maps[i]),
    hex: hexFast,
    size: formatSize,
    tick: interruptPoint,
  };
  const W = 1000;
  const size = Number(vmm.vaSize);
  const bar = (v0: number, v1: number, y: number, name: string) =>
    `<text x="0" y="${y + 13}">${esc(name)}</text><rect x="90" y="${y}" width="${
      W - 100
    }" height="18" fill="#f3f4f6"/>` +
    drawLane(lane, v0, v1, { x0: 90, pw: W - 100, y, h: 18 }, st) +
    drawAxis(v0, v1, { x0: 90, pw: W - 100, y: y + 20, h: 0 }, st);
  let svg = bar(0, size, 0, "whole VA");
  let h = 42;
  if (items.length > 0) {
    const first = items[0].s;
    let hi = 0;
    for (const x of items) if (x.e > hi) hi = x.e;
    // The smallest aligned power-of-two block holding every taken range: round axis ticks.
    let span = 4096;
    while (Math.floor(first / span) * span + span < hi) span *= 2;
    const lo = Math.floor(first / span) * span;
    const end = Math.min(size, lo + span);
    if (end - lo < size) {
      svg += bar(lo, end, h, "in use");
      h += 42;
    }
  }
  return `<div class="nm-va"><svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${W} ${h}" width="${W}" height="${h}" role="img" aria-label="VA coverage">${svg}</svg></div>`;
}
