/**
 * `show(x)` at the REPL: writes the picture of `x` as a self-contained HTML
 * page next to the history file (`~/.novamm_show/` beside
 * `~/.novamm_history`, or the directory of `$NOVAMM_HISTORY`) and prints
 * its path, for a browser. `show()` with no argument shows the whole GPU
 * (the report, registers included).
 *
 * Only public objects are read (see `view.ts`), so it draws whatever
 * `openGpu` opened: a simulator, a card, or a snapshot once those exist.
 *
 * @module
 */

import { fail } from "../hw/errors.ts";
import { checkOptions } from "../hw/validate.ts";
import type { Gpu } from "../mm/gpu.ts";
import { pageHtml, reportHtml, textFallback } from "./page.ts";
import { view } from "./view.ts";

/** Options of {@linkcode show}. */
export interface ShowOptions {
  /** The session's GPU (to draw allocations and mappings on the VRAM map; `show()` shows it). */
  gpu?: Gpu;
  /** Directory to write into (default: beside the history file, see {@linkcode showDirectory}). */
  dir?: string;
  /** Print the path (default true). */
  print?: boolean;
}

/**
 * Where `show()` writes: `$NOVAMM_SHOW_DIR`, else a `novamm_show`
 * directory beside the history file (`$NOVAMM_HISTORY`'s directory, or
 * `~/.novamm_show`), else the system temporary directory.
 */
export function showDirectory(): string {
  const own = Deno.env.get("NOVAMM_SHOW_DIR");
  if (own !== undefined && own !== "") return own;
  const hist = Deno.env.get("NOVAMM_HISTORY");
  if (hist !== undefined && hist !== "") {
    const slash = hist.lastIndexOf("/");
    return `${slash <= 0 ? (slash === 0 ? "" : ".") : hist.slice(0, slash)}/novamm_show`;
  }
  const home = Deno.env.get("HOME") ?? Deno.env.get("USERPROFILE");
  if (home !== undefined) return `${home}/.novamm_show`;
  return `${Deno.env.get("TMPDIR") ?? "/tmp"}/novamm_show`;
}

let counter = 0;

/**
 * Writes the page for `x` (the whole report when `x` is omitted or is the
 * GPU) and returns its path (printed too unless `print: false`).
 *
 * @example
 * ```ts
 * import { openGpu } from "../mod.ts";
 * using gpu = await openGpu({ device: "sim" });
 * const path = await show(gpu.mm.buddy, { gpu, dir: Deno.makeTempDirSync(), print: false });
 * path.endsWith(".html"); // true
 * ```
 */
export async function show(x?: unknown, options: ShowOptions = {}): Promise<string> {
  checkOptions(options, { gpu: "object", dir: "string", print: "boolean" }, "show options");
  const gpu = options.gpu;
  let html: string;
  let name: string;
  if (x === undefined || (gpu !== undefined && x === gpu)) {
    if (gpu === undefined) fail("EINVAL", "show() with nothing to show needs options.gpu");
    html = await reportHtml(gpu);
    name = "report";
  } else {
    const v = view(x, { gpu });
    html = pageHtml(v.title, v.html + textFallback(v.text));
    name = v.title.replace(/[^A-Za-z0-9_.-]+/g, "_").slice(0, 40).replace(/^_+|_+$/g, "") ||
      "view";
  }
  const dir = options.dir ?? showDirectory();
  Deno.mkdirSync(dir, { recursive: true });
  const stamp = new Date().toISOString().replace(/[-:]/g, "").replace(/\..*/, "");
  const path = `${dir}/${stamp}-${++counter}-${name}.html`;
  Deno.writeTextFileSync(path, html);
  if (options.print ?? true) console.log(path);
  return path;
}
