/**
 * A walk drawn as its path through the levels: the VA cut into each level's
 * index bits, then one box per entry the walker read (level, index, entry
 * address, raw word, decoded entry) joined by arrows, ending at the page it
 * translated to or at the level and reason it stopped.
 *
 * @module
 */

import { describe, fail, formatSize } from "../hw/errors.ts";
import { checkObject } from "../hw/validate.ts";
import type { MmuFormat } from "../mm/pagetable/format.ts";
import type { WalkResult } from "../mm/pagetable/walk.ts";
import { esc, hexFast, pageColor } from "./html.ts";

function raw(r: bigint | readonly [bigint, bigint]): string {
  const w = (x: bigint) => "0x" + x.toString(16).padStart(16, "0");
  return typeof r === "bigint" ? w(r) : `${w(r[0])}<br>${w(r[1])}`;
}

/** True for something shaped as a walk result (what `vmm.walk()` / `gpu.walk()` return). */
export function isWalkResult(x: unknown): x is WalkResult {
  return typeof x === "object" && x !== null && typeof (x as WalkResult).mapped === "boolean" &&
    typeof (x as WalkResult).va === "bigint" && Array.isArray((x as WalkResult).steps);
}

/**
 * The walk as an HTML fragment; with the page-table `format` the VA's index
 * bits of every level are shown above the path.
 *
 * @example
 * ```ts
 * import { openGpu } from "../mod.ts";
 * using gpu = await openGpu({ device: "sim" });
 * const a = gpu.mm.buddy.alloc(64 * 1024);
 * using m = gpu.bar1.map(a);
 * const html = walkHtml(gpu.walk(m.va), gpu.format);
 * html.includes("nm-end"); // true
 * ```
 */
export function walkHtml(result: WalkResult, format?: MmuFormat): string {
  if (!isWalkResult(result)) {
    fail(
      "EINVAL",
      `walkHtml takes a walk result (vmm.walk(va) or gpu.walk(va)), not ${describe(result)}`,
    );
  }
  if (format !== undefined) checkObject(format, "walkHtml format");
  const va = result.va;
  let bits = "";
  if (format !== undefined) {
    const levels = [...format.directories, format.smallPt];
    const cells = levels.map((l) => {
      const idx = Number((va >> BigInt(l.vaLo)) & ((1n << BigInt(l.vaHi - l.vaLo + 1)) - 1n));
      return `<td><b>${esc(l.name)}</b><br>VA ${l.vaHi}:${l.vaLo}<br>= ${idx}</td>`;
    });
    cells.push(
      `<td><b>offset</b><br>VA 11:0<br>= ${hexFast(Number(va & 0xfffn))}</td>`,
    );
    bits = `<table class="nm-bits"><tr>${cells.join("")}</tr></table>`;
  }
  const steps = result.steps.map((s) =>
    `<div class="nm-step" data-level="${esc(s.level)}"><b>${
      esc(s.level)
    }[${s.index}]</b><span class="mono">@${hexFast(s.entryAddress)}<br>${raw(s.raw)}</span><br>${
      esc(String(s.entry))
    }</div>`
  );
  const end = result.mapped
    ? `<div class="nm-step nm-end" style="border-left:6px solid ${pageColor(result.pageSize)}"><b>${
      esc(formatSize(result.pageSize))
    } page</b><span class="mono">${esc(result.aperture)} ${
      typeof result.pa === "number" ? hexFast(result.pa) : "0x" + result.pa.toString(16)
    }</span><br>at ${esc(result.level)}</div>`
    : `<div class="nm-step nm-stop"><b>unmapped</b>${esc(result.reason)}<br>at ${
      esc(result.level)
    }</div>`;
  const path = [...steps, end].join('<span class="nm-arrow">→</span>');
  return `<div class="nm nm-walkview"><h3>walk ${
    "0x" + va.toString(16)
  }</h3>${bits}<div class="nm-walk">${path}</div></div>`;
}
