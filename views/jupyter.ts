/**
 * Rich display in `deno jupyter`: Deno's kernel shows a value that has a
 * `[Symbol.for("Jupyter.display")]()` method by the MIME bundle it returns.
 * {@linkcode installJupyterDisplay} puts that method on the prototypes of
 * the objects novamm hands out (Gpu, GpuMm, BuddyAllocator, Allocation, Vmm,
 * Mapping, BarUser, BarMapping), drawing with `view()`; `text/plain` is the
 * text the REPL prints, so a front end without HTML loses nothing.
 * Plain results (a walk, a decoded register) go through
 * {@linkcode display}.
 *
 * @module
 */

import { describe, fail } from "../hw/errors.ts";
import { Gpu } from "../mm/gpu.ts";
import { GpuMm } from "../mm/gpu_mm.ts";
import { Allocation, BuddyAllocator } from "../mm/buddy.ts";
import { Mapping, Vmm } from "../mm/vmm.ts";
import { BarMapping, BarUser } from "../mm/bar_user.ts";
import { STYLE } from "./html.ts";
import { VRAM_MAP_SCRIPT } from "./vram_map.ts";
import { canView, textOf, view } from "./view.ts";

/** The key Deno's Jupyter kernel looks for (`Deno.jupyter.$display`). */
export const JUPYTER_DISPLAY: unique symbol = Symbol.for("Jupyter.display") as never;

/** A Jupyter MIME bundle. */
export interface MimeBundle {
  /** The picture: style, view fragment and the map script. */
  "text/html": string;
  /** The text form. */
  "text/plain": string;
}

/**
 * True inside `deno jupyter` (where `Deno.jupyter` exists; reading it
 * anywhere else throws).
 *
 * @example
 * ```ts
 * if (inJupyter()) console.log("in a notebook");
 * ```
 */
export function inJupyter(): boolean {
  try {
    return typeof (Deno as unknown as { jupyter?: unknown }).jupyter === "object";
  } catch {
    return false;
  }
}

/** The classes that get the display method. */
const CLASSES = [Gpu, GpuMm, BuddyAllocator, Allocation, Vmm, Mapping, BarUser, BarMapping];

let current: Gpu | undefined;

/**
 * The MIME bundle of `x` (the GPU to draw allocations and mappings on: the
 * one given, else the one {@linkcode installJupyterDisplay} was last given).
 */
export function mimeBundle(x: unknown, gpu: Gpu | undefined = current): MimeBundle {
  if (gpu !== undefined && !(gpu instanceof Gpu)) fail("EINVAL", "mimeBundle gpu must be a Gpu");
  const context = gpu !== undefined && !gpu.device.bar0.closed ? gpu : undefined;
  const v = view(x, { gpu: context });
  return {
    "text/html":
      `<div class="nm"><style>${STYLE}</style>${v.html}<script>${VRAM_MAP_SCRIPT}</script></div>`,
    "text/plain": v.text,
  };
}

/**
 * Installs the Jupyter display method on novamm's classes (once; a second
 * call only changes the GPU used as context). Returns the classes it covers.
 *
 * @example
 * ```ts
 * import { openGpu } from "../mod.ts";
 * using gpu = await openGpu({ device: "sim" });
 * installJupyterDisplay(gpu);
 * const show = (gpu.mm.buddy as unknown as Record<symbol, () => MimeBundle>)[JUPYTER_DISPLAY];
 * show.call(gpu.mm.buddy)["text/html"].includes("<svg"); // true
 * ```
 */
export function installJupyterDisplay(gpu?: Gpu): string[] {
  if (gpu !== undefined && !(gpu instanceof Gpu)) {
    fail(
      "EINVAL",
      `installJupyterDisplay takes the session's Gpu (or nothing), not ${describe(gpu)}`,
    );
  }
  current = gpu;
  for (const C of CLASSES) {
    const proto = C.prototype as unknown as Record<symbol, unknown>;
    if (Object.hasOwn(proto, JUPYTER_DISPLAY)) continue;
    Object.defineProperty(proto, JUPYTER_DISPLAY, {
      value: function (this: unknown): MimeBundle {
        try {
          return mimeBundle(this);
        } catch (e) {
          // A picture that cannot be drawn (a freed allocation's GPU closed): the text still shows.
          return { "text/html": "", "text/plain": `${textOf(this)}\n(no picture: ${String(e)})` };
        }
      },
      configurable: true,
      writable: true,
      enumerable: false,
    });
  }
  return CLASSES.map((C) => C.name);
}

/**
 * A displayable wrapper for anything {@linkcode view} draws (a walk result,
 * a decoded register): the last expression of a cell shows as a picture.
 *
 * @example
 * ```ts
 * import { openGpu } from "../mod.ts";
 * using gpu = await openGpu({ device: "sim" });
 * const d = display(gpu.mm, gpu);
 * d[JUPYTER_DISPLAY]()["text/plain"]; // "GpuMm ..."
 * ```
 */
export function display(x: unknown, gpu: Gpu | undefined = current): {
  [JUPYTER_DISPLAY](): MimeBundle;
} {
  if (!canView(x)) {
    fail(
      "EINVAL",
      `display() draws a Gpu, mm, an Allocation, a Vmm, a Mapping, bar1, a walk or a register, not ${
        describe(x)
      }`,
    );
  }
  return { [JUPYTER_DISPLAY]: () => mimeBundle(x, gpu) };
}
