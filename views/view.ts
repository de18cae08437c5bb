/**
 * `view(x)`: the picture of any object novamm hands out, as an HTML
 * fragment with its text form beside it (the same text the REPL prints).
 * One dispatch serves the notebook's rich display, `show(x)` and the
 * report:
 *
 * | object                                   | picture                                        |
 * | ---------------------------------------- | ---------------------------------------------- |
 * | `Gpu`, `GpuMm`, `BuddyAllocator`          | VRAM map (+ every address space for a Gpu)    |
 * | `Allocation`                             | VRAM map with the allocation outlined          |
 * | `Vmm`                                    | address space: VA coverage and table tree      |
 * | `Mapping`, `BarMapping`                  | its walk, and the VRAM map with it outlined    |
 * | `BarUser` (`bar1`)                       | VRAM map and BAR1's address space (if virtual) |
 * | a walk result (`walk(va)`)               | the path through the levels                    |
 * | a decoded register, `regs()` lines       | the register's fields                          |
 *
 * @module
 */

import { fail } from "../hw/errors.ts";
import { formatDecoded } from "../hw/regdb/mod.ts";
import { checkOptions } from "../hw/validate.ts";
import { Gpu } from "../mm/gpu.ts";
import { GpuMm } from "../mm/gpu_mm.ts";
import { Allocation, BuddyAllocator } from "../mm/buddy.ts";
import { Mapping, Vmm } from "../mm/vmm.ts";
import { BarMapping, BarUser } from "../mm/bar_user.ts";
import { addressSpaceHtml } from "./address_space.ts";
import { esc } from "./html.ts";
import { vramModel } from "./model.ts";
import { isDecodedValue, isRegisterReading, registerHtml } from "./register.ts";
import { vramMapHtml } from "./vram_map.ts";
import { isWalkResult, walkHtml } from "./walk.ts";

/** A picture and its text form. */
export interface View {
  /** HTML fragment (needs the page style and, to zoom maps, the page script: see `page.ts`). */
  html: string;
  /** The text form (what the REPL prints for the object). */
  text: string;
  /** A short title (`VRAM map of GA102`). */
  title: string;
}

/** Options of {@linkcode view}. */
export interface ViewOptions {
  /** The GPU the object belongs to (needed to draw an Allocation or a Mapping on the VRAM map). */
  gpu?: Gpu;
}

/** The text the REPL prints for `x` (its `Deno.customInspect`, else `Deno.inspect`). */
export function textOf(x: unknown): string {
  if (typeof x === "string") return x;
  if (isDecodedValue(x)) return formatDecoded(x, { multiline: true });
  return Deno.inspect(x, { depth: 4, colors: false, strAbbreviateSize: 10000 });
}

/** True when {@linkcode view} draws `x` (anything else has only its text). */
export function canView(x: unknown): boolean {
  return x instanceof Gpu || x instanceof GpuMm || x instanceof BuddyAllocator ||
    x instanceof Allocation || x instanceof Vmm || x instanceof Mapping ||
    x instanceof BarMapping || x instanceof BarUser || isWalkResult(x) || isDecodedValue(x) ||
    isRegisterReading(x) || (Array.isArray(x) && x.length > 0 && x.every(isRegisterReading));
}

/**
 * The picture of `x` (see the module table), or EINVAL for an object no view
 * draws ({@linkcode canView} says which).
 *
 * @example
 * ```ts
 * import { openGpu } from "../mod.ts";
 * using gpu = await openGpu({ device: "sim:gh100" });
 * const a = gpu.mm.buddy.alloc(2 ** 30);
 * view(a, { gpu }).html.includes('class="nm-hl"'); // true
 * ```
 */
export function view(x: unknown, options: ViewOptions = {}): View {
  checkOptions(options, { gpu: "object" }, "view options");
  const gpu = options.gpu;
  if (gpu !== undefined && !(gpu instanceof Gpu)) {
    fail("EINVAL", "view options.gpu must be a Gpu (from openGpu)");
  }
  const text = textOf(x);
  const section = (title: string, body: string) => `<h3>${esc(title)}</h3>${body}`;
  if (x instanceof Gpu) {
    const spaces = x.mm.vmms().filter((v) => !v.destroyed);
    const html = vramMapHtml(vramModel(x)) +
      spaces.map((v) => addressSpaceHtml(v)).join("");
    return { html, text, title: `${x.chip.name} (${x.device.spec})` };
  }
  if (x instanceof GpuMm || x instanceof BuddyAllocator) {
    const g = needGpu(gpu, x);
    return { html: vramMapHtml(vramModel(g)), text, title: `VRAM map of ${g.chip.name}` };
  }
  if (x instanceof Allocation) {
    if (gpu === undefined) {
      return { html: `<pre class="nm">${esc(text)}</pre>`, text, title: "allocation" };
    }
    const model = vramModel(gpu);
    const end = Math.min(model.size, x.start + x.size);
    const highlight = { start: x.start, end, label: String(x) };
    // Unique on a page holding many outputs (a notebook): the second map shares the first's data.
    const id = `nm-a${Date.now().toString(36)}${(++serial).toString(36)}`;
    return {
      html: vramMapHtml(model, { highlight, id }) +
        `<h3>around it</h3>${
          vramMapHtml(model, { highlight, range: around(x, model.size), dataOf: id })
        }`,
      text,
      title: String(x),
    };
  }
  if (x instanceof Vmm) {
    return { html: addressSpaceHtml(x), text, title: `address space ${x.name}` };
  }
  if (x instanceof Mapping || x instanceof BarMapping) {
    const m = x instanceof BarMapping ? x.mapping : x;
    const vmm = m.vmm;
    let html = walkHtml(vmm.walk(m.va), vmm.format);
    if (gpu !== undefined && m.live) {
      const first = m.extents[0];
      html += vramMapHtml(vramModel(gpu), {
        highlight: {
          start: first.pa,
          end: first.pa + first.size,
          label: `first extent of ${text}`,
        },
      });
    }
    return { html, text, title: text };
  }
  if (x instanceof BarUser) {
    const g = needGpu(gpu, x);
    let html = vramMapHtml(vramModel(g));
    if (x.mode === "virtual" && x.boundVmm !== null) html += addressSpaceHtml(x.boundVmm);
    return { html, text, title: "BAR1" };
  }
  if (isWalkResult(x)) {
    return { html: walkHtml(x, gpu?.format), text, title: `walk 0x${x.va.toString(16)}` };
  }
  if (isDecodedValue(x) || isRegisterReading(x)) {
    return { html: registerHtml(x), text, title: x.name };
  }
  if (Array.isArray(x) && x.length > 0 && x.every(isRegisterReading)) {
    return {
      html: x.map((r) => section(r.name, registerHtml(r))).join(""),
      text,
      title: "registers",
    };
  }
  return fail(
    "EINVAL",
    `no view draws ${
      x === null
        ? "null"
        : typeof x === "object"
        ? (x.constructor?.name ?? "this object")
        : typeof x
    }`,
    "views draw a Gpu, mm, mm.buddy, an Allocation, a Vmm, a Mapping, bar1, a walk result or a register",
  );
}

let serial = 0;

/** The aligned power-of-two range (at least 64 KiB) around an allocation, four times its size. */
function around(a: Allocation, size: number): { start: number; end: number } {
  let span = 2 ** 16;
  while (span < 4 * a.size || Math.floor(a.start / span) * span + span < a.start + a.size) {
    span *= 2;
  }
  const start = Math.max(0, Math.min(Math.floor(a.start / span) * span, size - span));
  return { start, end: Math.min(size, start + span) };
}

function needGpu(gpu: Gpu | undefined, x: object): Gpu {
  if (gpu === undefined) {
    fail(
      "EINVAL",
      `drawing ${x.constructor.name} needs its GPU: view(x, { gpu })`,
      "show(x) at the REPL passes it",
    );
  }
  return gpu;
}
