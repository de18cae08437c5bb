/**
 * Whole pages: {@linkcode pageHtml} wraps view fragments into one
 * self-contained HTML document (style and script inline, nothing fetched),
 * and {@linkcode reportHtml} makes the report of a GPU: the VRAM map, every
 * address space with a walk of its first mapping, the registers novamm
 * knows (read once, decoded), each with its text form as the fallback.
 *
 * @module
 */

import { formatSize, NovaError } from "../hw/errors.ts";
import { checkObject, checkOptions } from "../hw/validate.ts";
import { readRegisters } from "../hw/reg_dump.ts";
import { decode, type DecodedValue, loadRegisterDb, type RegisterDb } from "../hw/regdb/mod.ts";
import type { RegisterReading } from "../hw/reg_dump.ts";
import { Gpu } from "../mm/gpu.ts";
import { fail } from "../hw/errors.ts";
import { addressSpaceHtml, type AddressSpaceOptions } from "./address_space.ts";
import { esc, hexFast, STYLE } from "./html.ts";
import { vramModel } from "./model.ts";
import { registerHtml } from "./register.ts";
import { textOf } from "./view.ts";
import { VRAM_MAP_SCRIPT, vramMapHtml } from "./vram_map.ts";
import { walkHtml } from "./walk.ts";

/** Lines of a text fallback shown at most (the rest is counted). */
const TEXT_LINES = 2000;

/** A `<details>` holding the text form (cut after 2000 lines). */
export function textFallback(text: string, summary = "as text"): string {
  const lines = text.split("\n");
  const cut = lines.length > TEXT_LINES
    ? lines.slice(0, TEXT_LINES).join("\n") + `\n… ${lines.length - TEXT_LINES} more lines`
    : text;
  return `<details class="nm-text"><summary>${esc(summary)}</summary><pre>${
    esc(cut)
  }</pre></details>`;
}

/**
 * One self-contained HTML document around `body` (view fragments): the
 * shared style, and the map script that zooms the VRAM maps and marks the
 * document `data-nm-ready="1"` once it ran.
 *
 * @example
 * ```ts
 * const html = pageHtml("empty", "<p>nothing</p>");
 * html.startsWith("<!doctype html>"); // true
 * ```
 */
export function pageHtml(title: string, body: string): string {
  if (typeof title !== "string" || typeof body !== "string") {
    fail("EINVAL", "pageHtml takes a title and a body (strings)");
  }
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${
    esc(title)
  }</title><meta name="viewport" content="width=device-width"><style>body{margin:16px}${STYLE}</style></head><body class="nm"><h1>${
    esc(title)
  }</h1>${body}<script>${
    VRAM_MAP_SCRIPT.replace(/<\/script/gi, "<\\/script")
  }</script></body></html>\n`;
}

/** Options of {@linkcode reportHtml}. */
export interface ReportOptions {
  /** Read and draw the registers novamm knows (default true; single side-effect-free reads). */
  registers?: boolean;
  /** Passed to each address-space view. */
  addressSpace?: AddressSpaceOptions;
  /** The time printed in the header (default now). */
  date?: Date;
}

/**
 * The report of a GPU as one HTML document (see the module notes).
 *
 * @example
 * ```ts
 * import { openGpu } from "../mod.ts";
 * using gpu = await openGpu({ device: "sim:gh100" });
 * gpu.bar1.bringUp();
 * const html = await reportHtml(gpu);
 * html.includes('data-nm-map="vram"'); // true
 * ```
 */
export async function reportHtml(gpu: Gpu, options: ReportOptions = {}): Promise<string> {
  checkObject(gpu, "reportHtml gpu");
  if (!(gpu instanceof Gpu)) fail("EINVAL", "reportHtml takes a Gpu (from openGpu)");
  checkOptions(
    options,
    { registers: "boolean", addressSpace: "object", date: "object" },
    "report options",
  );
  if (options.date !== undefined && !(options.date instanceof Date)) {
    fail("EINVAL", "report options.date must be a Date");
  }
  const parts: string[] = [];
  // What cannot be read (a read-only session and tables outside the PRAMIN window) is
  // reported in its place; the rest of the page still shows.
  const drawn = (what: string, fn: () => string): string => {
    try {
      return fn();
    } catch (e) {
      if (!(e instanceof NovaError)) throw e;
      return `<p class="nm-err">${esc(what)} not drawn: ${esc(e.message)}${
        e.hint === undefined ? "" : `; hint: ${esc(e.hint)}`
      }</p>`;
    }
  };
  const bar1Mode = drawn("BAR1", () => gpu.bar1.mode);
  parts.push(
    `<p class="nm-head">${esc(gpu.chip.name)} (${
      esc(gpu.chip.architecture)
    }, MMU v${gpu.chip.mmuVersion}) · ${esc(gpu.device.spec)}${
      gpu.device.readOnly ? " · read-only" : ""
    } · VRAM ${esc(formatSize(gpu.vram.size))}, usable [${hexFast(gpu.vram.usable.start)}, ${
      hexFast(gpu.vram.usable.end)
    }) (${esc(gpu.vram.usableSource)}) · BAR1 ${
      esc(formatSize(gpu.device.bar1.size))
    } ${bar1Mode} · ${esc((options.date ?? new Date()).toISOString())}</p>`,
  );
  // VRAM.
  parts.push(drawn("the VRAM map", () => {
    const model = vramModel(gpu);
    const allocations = gpu.mm.noAllocator === null ? gpu.mm.buddy.allocations() : [];
    const close = usedSpan(model.lanes[1].items.map((i) => [i.start, i.end]), model.size);
    return (
      `<h2>VRAM</h2>${vramMapHtml(model, { id: "nm-vram" })}${
        close === null
          ? ""
          : `<h3>where novamm's allocations are</h3>${
            vramMapHtml(model, { range: close, dataOf: "nm-vram" })
          }`
      }${
        textFallback(
          [
            `VRAM ${formatSize(gpu.vram.size)}; firmware's regions:`,
            ...gpu.vram.layout.map((r) =>
              `  ${r.name} [${hexFast(r.start)}, ${hexFast(r.end)}) ${formatSize(r.end - r.start)}`
            ),
            gpu.mm.noAllocator === null
              ? String(gpu.mm.buddy)
              : `no allocator: ${gpu.mm.noAllocator}`,
            ...allocations.slice(0, TEXT_LINES).map((a) =>
              `${String(a)}${a.users.length === 0 ? "" : `  in use by ${a.users.join(", ")}`}`
            ),
            ...(allocations.length > TEXT_LINES
              ? [`… ${allocations.length - TEXT_LINES} more allocations`]
              : []),
            `PRAMIN window at ${hexFast(gpu.pramin.base)}`,
            bar1Mode.startsWith("<") ? "BAR1 not read" : String(gpu.bar1),
          ].join("\n"),
        )
      }`
    );
  }));
  // Address spaces.
  const spaces = gpu.mm.vmms().filter((v) => !v.destroyed);
  parts.push(`<h2>Address spaces</h2>`);
  if (spaces.length === 0) {
    parts.push(`<p>none yet (bar1.bringUp() makes BAR1's; mm.createVmm() others)</p>`);
  }
  for (const vmm of spaces) {
    parts.push(drawn(vmm.name, () => addressSpaceHtml(vmm, options.addressSpace ?? {})));
    const first = vmm.mappings()[0];
    if (first !== undefined) {
      parts.push(
        drawn(
          `the walk of ${hexFast(Number(first.va))}`,
          () => walkHtml(vmm.walk(first.va), vmm.format),
        ),
      );
    }
    parts.push(textFallback(textOf(vmm.dump()), "vmm.dump() as text"));
  }
  // Registers.
  if (options.registers ?? true) {
    const readings = readRegisters(gpu.bar0, gpu.chip.architecture, gpu.chip.chipId);
    let db: RegisterDb | null = null;
    try {
      db = await loadRegisterDb(gpu.chip);
    } catch {
      db = null; // no header data for this chip: the fields novamm names still show
    }
    parts.push(`<h2>Registers</h2>`);
    for (const r of readings) parts.push(registerHtml(decoded(db, r)));
    parts.push(textFallback(textOf(readings)));
  }
  return pageHtml(`novamm report · ${gpu.chip.name} · ${gpu.device.spec}`, parts.join("\n"));
}

/**
 * The smallest aligned power-of-two range holding every [start, end) given,
 * or null when there is none or it is more than a quarter of `size`.
 */
function usedSpan(ranges: number[][], size: number): { start: number; end: number } | null {
  if (ranges.length === 0) return null;
  let lo = Infinity;
  let hi = 0;
  for (const [s, e] of ranges) {
    lo = Math.min(lo, s);
    hi = Math.max(hi, e);
  }
  let span = 2 ** 16;
  while (Math.floor(lo / span) * span + span < hi) span *= 2;
  const start = Math.floor(lo / span) * span;
  if (span > size / 4) return null;
  return { start, end: Math.min(size, start + span) };
}

/** The header database's decoding of a reading where it has the register, else the reading. */
function decoded(db: RegisterDb | null, r: RegisterReading): DecodedValue | RegisterReading {
  if (db === null) return r;
  try {
    return decode(db, r.name, r.value);
  } catch {
    return r;
  }
}
