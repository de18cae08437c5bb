/**
 * The small pieces every view shares: HTML escaping, the colour of each kind
 * of VRAM owner and each page size, and the fast address formatter the
 * in-page script also uses (it is embedded in the page by its source text,
 * so the server and the browser draw with the same code).
 *
 * @module
 */

import { formatSize } from "../hw/errors.ts";

/**
 * Escapes text for HTML content and attribute values.
 *
 * @example
 * ```ts
 * esc('<a href="x">'); // "&lt;a href=&quot;x&quot;&gt;"
 * ```
 */
export function esc(text: string): string {
  return String(text).replace(/[&<>"']/g, (c) => ESCAPES[c]);
}

const ESCAPES: Record<string, string> = {
  "&": "&amp;",
  "<": "&lt;",
  ">": "&gt;",
  '"': "&quot;",
  "'": "&#39;",
};

/**
 * `0x`-hex of a non-negative safe integer, without the argument checks of
 * `hex()` (same text: `hexFast(4096) === hex(4096)`): the views format
 * hundreds of thousands of addresses, and the page script uses this very
 * function (by its source).
 *
 * @example
 * ```ts
 * hexFast(0x400000); // "0x400000"
 * ```
 */
export function hexFast(n: number): string {
  return "0x" + n.toString(16);
}

/** Colours of the VRAM owners (the map's legend, in this order). */
export const KIND_COLORS: Readonly<Record<string, string>> = Object.freeze({
  firmware: "#8c6d5a",
  table: "#e8b51a",
  instance: "#d9534f",
  alloc: "#4e9a8f",
  pramin: "#7a5fb0",
  bar1: "#3b73b9",
  cluster: "#6b7280",
});

/** Colours of the page sizes (4 KiB .. 256 GiB) in the address-space views. */
export const PAGE_COLORS: Readonly<Record<number, string>> = Object.freeze({
  [2 ** 12]: "#4e79a7",
  [2 ** 16]: "#59a14f",
  [2 ** 21]: "#f28e2b",
  [2 ** 29]: "#e15759",
  [2 ** 38]: "#b07aa1",
});

/** The colour of firmware's entries and ranges (drawn hatched where they are areas). */
export const FIRMWARE_COLOR = "#8c6d5a";

/** The colour of entries and ranges of tables not this session's that firmware is not known to own (a snapshot's, another tool's). */
export const OTHER_COLOR = "#6e7781";

/** Colour of a page size (grey for one without a colour). */
export function pageColor(size: number): string {
  return PAGE_COLORS[size] ?? "#999999";
}

/** A coloured swatch and its name, for legends. */
export function swatch(color: string, name: string): string {
  return `<span class="nm-sw"><i style="background:${esc(color)}"></i>${esc(name)}</span>`;
}

/** The legend of page-size colours. */
export function pageLegend(sizes: readonly number[]): string {
  return `<div class="nm-legend">${
    sizes.map((s) => swatch(pageColor(s), `${formatSize(s)} pages`)).join("")
  }${swatch(FIRMWARE_COLOR, "firmware's")}${swatch(OTHER_COLOR, "not this session's")}</div>`;
}

/** The page's style sheet (one, shared by every view; scoped by the `nm-` prefix). */
export const STYLE = `
.nm{font:13px/1.4 system-ui,sans-serif;color:#1f2328}
.nm h2{font-size:16px;margin:18px 0 6px}.nm h3{font-size:14px;margin:12px 0 4px}
.nm code,.nm pre,.nm .mono{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px}
.nm pre{background:#f6f8fa;padding:6px 8px;overflow:auto;max-height:320px}
.nm-legend{display:flex;flex-wrap:wrap;gap:10px;margin:4px 0}
.nm-sw{display:inline-flex;align-items:center;gap:4px}
.nm-sw i{display:inline-block;width:12px;height:12px;border-radius:2px}
.nm svg{max-width:100%;height:auto;display:block}
.nm svg text{font:11px system-ui,sans-serif;fill:#1f2328}
.nm-map{border:1px solid #d0d7de;border-radius:4px;padding:4px;background:#fff}
.nm-map svg{cursor:crosshair;user-select:none}
.nm-tools{display:flex;gap:6px;align-items:center;margin:2px 0 4px}
.nm-tools button{font-size:12px;padding:1px 8px}
.nm-status{font-family:ui-monospace,monospace;font-size:12px;color:#444;min-height:1.4em}
.nm details{margin-left:14px}.nm summary{cursor:pointer}
.nm-tree>details{margin-left:0}
.nm-fw{color:#8c6d5a;font-style:italic}.nm-err{color:#cf222e}
.nm-run{margin-left:28px;font-family:ui-monospace,monospace;font-size:12px}
.nm-run i{display:inline-block;width:10px;height:10px;margin-right:4px;border-radius:2px}
.nm table{border-collapse:collapse}.nm td,.nm th{border:1px solid #d0d7de;padding:2px 6px;text-align:left}
.nm-walk{display:flex;flex-wrap:wrap;align-items:stretch;gap:0}
.nm-step{border:1px solid #8c959f;border-radius:4px;padding:4px 6px;margin:2px;background:#f6f8fa;min-width:120px}
.nm-step b{display:block}.nm-arrow{align-self:center;padding:0 2px;color:#57606a}
.nm-end{border-color:#1a7f37;background:#dafbe1}.nm-stop{border-color:#cf222e;background:#ffebe9}
`;
