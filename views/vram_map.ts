/**
 * The VRAM map: one row per owner (firmware's regions, buddy allocations with
 * page tables and instance blocks coloured apart, the PRAMIN window, what
 * BAR1 reaches) over one address axis, as inline SVG. The page script zooms
 * (wheel, double-click, buttons) from the whole card down to a few 4 KiB
 * pages, pans by dragging, and says under the pointer what each row holds
 * at that address; every drawn piece also has a hover title.
 *
 * Large cards stay cheap: pieces narrower than two pixels merge with their
 * neighbours into one "N items" piece, so a row never has more than about
 * two elements per pixel whatever the number of allocations. The server
 * and the page script draw with the same functions ({@linkcode drawLane},
 * {@linkcode drawAxis}; the script embeds their source).
 *
 * @module
 */

import { formatSize } from "../hw/errors.ts";
import { checkObject, checkOptions } from "../hw/validate.ts";
import { interruptPoint } from "../hw/mmio.ts";
import { describe, fail } from "../hw/errors.ts";
import { esc, hexFast, KIND_COLORS, swatch } from "./html.ts";
import { VRAM_KINDS, type VramModel } from "./model.ts";

/** A row as the drawing functions take it: parallel arrays (compact as JSON). */
export interface LaneData {
  /** Starts, ascending. */
  s: number[];
  /** Ends (exclusive). */
  e: number[];
  /** Kind index into {@linkcode DrawStyle.kinds}. */
  k: number[];
  /** Label index into {@linkcode DrawStyle.labels}. */
  l: number[];
}

/** Geometry of one row in SVG units. */
export interface LaneGeometry {
  /** Left edge of the plot. */
  x0: number;
  /** Plot width. */
  pw: number;
  /** Top of the row. */
  y: number;
  /** Row height. */
  h: number;
}

/** Names, colours and formatters the drawing functions use. */
export interface DrawStyle {
  /** Kind names (CSS class suffix and legend). */
  kinds: string[];
  /** Colour of each kind. */
  colors: string[];
  /** The label of label index `i` (a hover title says it, then the range and size). */
  label: (i: number) => string;
  /** Address formatter. */
  hex: (n: number) => string;
  /** Size formatter. */
  size: (n: number) => string;
  /** Called every few thousand items (Ctrl-C on the server; nothing in the page). */
  tick: () => void;
}

/**
 * Draws the items of one row visible in [v0, v1) as SVG rects (a piece two
 * pixels or wider alone, narrower ones merged into runs at least a pixel
 * wide). Self-contained: the page script embeds this function's source.
 */
export function drawLane(
  lane: LaneData,
  v0: number,
  v1: number,
  g: LaneGeometry,
  st: DrawStyle,
): string {
  const scale = g.pw / (v1 - v0);
  const out: string[] = [];
  const r2 = (x: number) => Math.round(x * 100) / 100;
  const txt = (t: string) =>
    t.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
  let cs = -1; // open cluster: first item, pixel span, kinds seen, bytes
  let cn = 0;
  let cp0 = 0;
  let cp1 = 0;
  let ck = -1;
  let cbytes = 0;
  let clast = 0;
  const one = (i: number, p0: number, p1: number) => {
    const k = lane.k[i];
    out.push(
      `<rect class="nm-k-${st.kinds[k]}" data-s="${st.hex(lane.s[i])}" data-e="${
        st.hex(lane.e[i])
      }" x="${r2(g.x0 + p0)}" y="${g.y}" width="${
        r2(Math.max(1, p1 - p0))
      }" height="${g.h}" fill="${st.colors[k]}"><title>${
        txt(
          `${st.label(lane.l[i])} [${st.hex(lane.s[i])}, ${st.hex(lane.e[i])}) ${
            st.size(lane.e[i] - lane.s[i])
          }`,
        )
      }</title></rect>`,
    );
  };
  const flush = () => {
    if (cs < 0) return;
    if (cn === 1) one(cs, cp0, cp1);
    else {
      out.push(
        `<rect class="nm-cluster" data-s="${st.hex(lane.s[cs])}" data-e="${st.hex(clast)}" x="${
          r2(g.x0 + cp0)
        }" y="${g.y}" width="${r2(Math.max(1, cp1 - cp0))}" height="${g.h}" fill="${
          ck >= 0 ? st.colors[ck] : "#6b7280"
        }" opacity="0.85"><title>${cn} pieces, ${st.size(cbytes)} in [${st.hex(lane.s[cs])}, ${
          st.hex(clast)
        }): zoom in to separate them</title></rect>`,
      );
    }
    cs = -1;
  };
  const n = lane.s.length;
  for (let i = 0; i < n; i++) {
    if ((i & 4095) === 4095) st.tick();
    const s = lane.s[i];
    const e = lane.e[i];
    if (e <= v0 || s >= v1) continue;
    const p0 = (Math.max(s, v0) - v0) * scale;
    const p1 = (Math.min(e, v1) - v0) * scale;
    if (p1 - p0 >= 2) {
      flush();
      one(i, p0, p1);
      continue;
    }
    if (cs >= 0 && p0 <= cp1 + 1) {
      cn++;
      if (p1 > cp1) cp1 = p1;
      if (lane.k[i] !== ck) ck = -1;
      cbytes += e - s;
      if (e > clast) clast = e;
      continue;
    }
    flush();
    cs = i;
    cn = 1;
    cp0 = p0;
    cp1 = p1;
    ck = lane.k[i];
    cbytes = e - s;
    clast = e;
  }
  flush();
  return out.join("");
}

/**
 * The address axis under the rows for [v0, v1): ticks at a power-of-two
 * step (about eight), labelled in hex. Self-contained (embedded in the page).
 */
export function drawAxis(
  v0: number,
  v1: number,
  g: LaneGeometry,
  st: { hex: (n: number) => string },
): string {
  const span = v1 - v0;
  let step = 1;
  while (span / step > 8) step *= 2;
  const scale = g.pw / span;
  const out = [
    `<line x1="${g.x0}" x2="${g.x0 + g.pw}" y1="${g.y}" y2="${g.y}" stroke="#57606a"/>`,
  ];
  for (let t = Math.ceil(v0 / step) * step; t <= v1; t += step) {
    const x = Math.round((g.x0 + (t - v0) * scale) * 100) / 100;
    out.push(
      `<line x1="${x}" x2="${x}" y1="${g.y}" y2="${g.y + 4}" stroke="#57606a"/>`,
      `<text x="${x}" y="${g.y + 15}" text-anchor="${x > g.x0 + g.pw - 40 ? "end" : "middle"}">${
        st.hex(t)
      }</text>`,
    );
  }
  return out.join("");
}

/** Options of {@linkcode vramMapHtml}. */
export interface VramMapOptions {
  /** Width of the SVG in user units (default 1200, 400..20000). */
  width?: number;
  /** The range shown first (default the whole card); the zoom can still reach all of it. */
  range?: { start: number; end: number };
  /** A VRAM range to outline (an allocation the caller asked about). */
  highlight?: { start: number; end: number; label: string };
  /** Names this map's data block (`data-nm-id`), so a later map of the same model can share it. */
  id?: string;
  /**
   * The `id` of an earlier map of the same model and width on the page: this
   * one embeds only its own view and highlight, the rows' pieces come from
   * that map's data (a second picture of a large card costs no second copy).
   */
  dataOf?: string;
}

const LABEL_W = 70;
const ROW_H = 22;
const ROW_GAP = 6;
const TOP = 18;

/** Geometry of the map for a model and width (shared by the server and the data it embeds). */
function layout(model: VramModel, width: number) {
  const x0 = LABEL_W;
  const pw = width - LABEL_W - 10;
  const rows = model.lanes.map((_, i) => ({ x0, pw, y: TOP + i * (ROW_H + ROW_GAP), h: ROW_H }));
  const axisY = TOP + model.lanes.length * (ROW_H + ROW_GAP) + 2;
  return { x0, pw, rows, axisY, height: axisY + 24 };
}

/** The lanes as parallel arrays with a shared label table. */
function laneData(model: VramModel): { lanes: LaneData[]; labels: string[] } {
  const labels: string[] = [];
  const index = new Map<string, number>();
  const kinds = VRAM_KINDS as readonly string[];
  const lanes = model.lanes.map((lane) => {
    const d: LaneData = { s: [], e: [], k: [], l: [] };
    lane.items.forEach((it, i) => {
      if ((i & 4095) === 4095) interruptPoint();
      let li = index.get(it.label);
      if (li === undefined) {
        li = labels.length;
        labels.push(it.label);
        index.set(it.label, li);
      }
      d.s.push(it.start);
      d.e.push(it.end);
      d.k.push(kinds.indexOf(it.kind));
      d.l.push(li);
    });
    return d;
  });
  return { lanes, labels };
}

/**
 * The VRAM map of a model as an HTML fragment (a `<div class="nm nm-map">`
 * holding the SVG, its legend, zoom buttons, a status line and the data the
 * page script zooms with). Needs {@linkcode VRAM_MAP_SCRIPT} once on the page
 * to zoom; without it the whole-card picture and the hover titles still work.
 *
 * @example
 * ```ts
 * import { openGpu } from "../mod.ts";
 * import { vramModel } from "./model.ts";
 * using gpu = await openGpu({ device: "sim" });
 * const html = vramMapHtml(vramModel(gpu));
 * html.includes("<svg"); // true
 * ```
 */
export function vramMapHtml(model: VramModel, options: VramMapOptions = {}): string {
  checkObject(model, "vramMapHtml model");
  if (
    !Array.isArray(model.lanes) || typeof model.size !== "number" ||
    !Number.isSafeInteger(model.size) || model.size <= 0 || typeof model.usable !== "object" ||
    model.usable === null
  ) {
    fail("EINVAL", `vramMapHtml takes a VramModel (vramModel(gpu)), not ${describe(model)}`);
  }
  checkOptions(
    options,
    { width: "number", range: "object", highlight: "object", id: "string", dataOf: "string" },
    "VRAM map options",
  );
  for (const key of ["id", "dataOf"] as const) {
    const v = options[key];
    if (v !== undefined && !/^[A-Za-z][\w-]{0,63}$/.test(v)) {
      fail(
        "EINVAL",
        `VRAM map ${key} ${
          JSON.stringify(v)
        } is not a name (a letter, then 0..63 of [A-Za-z0-9_-])`,
      );
    }
  }
  const width = options.width ?? 1200;
  if (!Number.isInteger(width) || width < 400 || width > 20000) {
    fail("EINVAL", `VRAM map width ${String(width)} is not an integer in 400..20000`);
  }
  const range = options.range ?? { start: 0, end: model.size };
  checkRange(range, model.size, "VRAM map range");
  if (options.highlight !== undefined) checkRange(options.highlight, model.size, "highlight");
  const geo = layout(model, width);
  const { lanes, labels } = laneData(model);
  const kinds = [...VRAM_KINDS];
  const style: DrawStyle = {
    kinds,
    colors: kinds.map((k) => KIND_COLORS[k]),
    label: (i) => labels[i],
    hex: hexFast,
    size: formatSize,
    tick: interruptPoint,
  };
  const v0 = range.start;
  const v1 = range.end;
  const rows = model.lanes.map((lane, i) => {
    const g = geo.rows[i];
    return `<text x="4" y="${g.y + 15}">${
      esc(lane.name)
    }</text><rect class="nm-bg" x="${g.x0}" y="${g.y}" width="${g.pw}" height="${g.h}" fill="#f3f4f6"><title>${
      esc(lane.about)
    }</title></rect>`;
  }).join("");
  const plot = model.lanes.map((_, i) => drawLane(lanes[i], v0, v1, geo.rows[i], style)).join(
    "",
  ) + drawAxis(v0, v1, { x0: geo.x0, pw: geo.pw, y: geo.axisY, h: 0 }, style) +
    highlightRect(options.highlight, v0, v1, geo);
  const usable = model.usable;
  const data = {
    size: model.size,
    v0,
    v1,
    x0: geo.x0,
    pw: geo.pw,
    rows: geo.rows,
    axisY: geo.axisY,
    names: model.lanes.map((l) => l.name),
    kinds,
    colors: style.colors,
    labels: options.dataOf === undefined ? labels : null,
    lanes: options.dataOf === undefined ? lanes : null,
    dataOf: options.dataOf ?? null,
    highlight: options.highlight ?? null,
  };
  const json = JSON.stringify(data).replace(/</g, "\\u003c");
  const legend = `<div class="nm-legend">${
    kinds.map((k) => swatch(KIND_COLORS[k], k === "alloc" ? "allocation" : k)).join("")
  }${swatch(KIND_COLORS.cluster, "several (zoom in)")}</div>`;
  const id = options.id === undefined ? "" : ` data-nm-id="${options.id}"`;
  return `<div class="nm nm-map" data-nm-map="vram"${id}><div class="nm-tools"><b>VRAM ${
    esc(formatSize(model.size))
  }</b> · ${esc(model.title)} · usable [${hexFast(usable.start)}, ${
    hexFast(usable.end)
  }) <button data-z="all">whole card</button><button data-z="in">zoom in</button><button data-z="out">zoom out</button><span class="nm-range mono">[${
    hexFast(v0)
  }, ${
    hexFast(v1)
  })</span></div><svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${width} ${geo.height}" width="${width}" height="${geo.height}" role="img" aria-label="VRAM map">${rows}<g class="nm-plot">${plot}</g></svg><div class="nm-status">wheel or double-click to zoom, drag to pan; the line here says what is under the pointer</div>${legend}<script type="application/json" class="nm-data">${json}</script></div>`;
}

function checkRange(r: unknown, size: number, what: string): void {
  checkObject(r, what);
  const { start, end } = r as { start: unknown; end: unknown };
  if (
    typeof start !== "number" || typeof end !== "number" || !Number.isSafeInteger(start) ||
    !Number.isSafeInteger(end) || start < 0 || end > size || end <= start
  ) {
    fail(
      "EINVAL",
      `${what} [${String(start)}, ${String(end)}) is not a non-empty range inside [0x0, ${
        hexFast(size)
      })`,
    );
  }
}

function highlightRect(
  h: VramMapOptions["highlight"],
  v0: number,
  v1: number,
  geo: ReturnType<typeof layout>,
): string {
  if (h === undefined || h.end <= v0 || h.start >= v1) return "";
  const scale = geo.pw / (v1 - v0);
  const x = geo.x0 + (Math.max(h.start, v0) - v0) * scale;
  const w = Math.max(2, (Math.min(h.end, v1) - Math.max(h.start, v0)) * scale);
  const top = geo.rows[0].y - 4;
  return `<rect class="nm-hl" x="${Math.round(x * 100) / 100}" y="${top}" width="${
    Math.round(w * 100) / 100
  }" height="${geo.axisY - top}" fill="none" stroke="#d1242f" stroke-width="2"><title>${
    esc(h.label)
  }</title></rect>`;
}

/**
 * The page script of the VRAM maps (include once per page, after them):
 * zoom, pan, the status line. Marks each map it set up with
 * `data-nm-ready="1"`, and the document element once all are; an error is
 * recorded as `data-nm-error` on the document element.
 */
export const VRAM_MAP_SCRIPT = `(function () {
"use strict";
var drawLane = ${drawLane.toString()};
var drawAxis = ${drawAxis.toString()};
var formatSize = ${formatSize.toString()};
var hexFast = ${hexFast.toString()};
var MIN_SPAN = 0x8000;
function setup(root) {
  var d = JSON.parse(root.querySelector("script.nm-data").textContent);
  if (d.dataOf !== null) {
    var from = JSON.parse(document.querySelector('[data-nm-id="' + d.dataOf + '"] script.nm-data').textContent);
    d.lanes = from.lanes; d.labels = from.labels;
  }
  var svg = root.querySelector("svg");
  var plot = svg.querySelector("g.nm-plot");
  var status = root.querySelector(".nm-status");
  var rangeText = root.querySelector(".nm-range");
  var st = { kinds: d.kinds, colors: d.colors, label: function (i) { return d.labels[i]; }, hex: hexFast, size: formatSize, tick: function () {} };
  var v0 = d.v0, v1 = d.v1;
  function render() {
    var parts = [];
    for (var i = 0; i < d.lanes.length; i++) parts.push(drawLane(d.lanes[i], v0, v1, d.rows[i], st));
    parts.push(drawAxis(v0, v1, { x0: d.x0, pw: d.pw, y: d.axisY, h: 0 }, st));
    var h = d.highlight;
    if (h && h.end > v0 && h.start < v1) {
      var sc = d.pw / (v1 - v0);
      var x = d.x0 + (Math.max(h.start, v0) - v0) * sc;
      var w = Math.max(2, (Math.min(h.end, v1) - Math.max(h.start, v0)) * sc);
      parts.push('<rect class="nm-hl" x="' + x + '" y="' + (d.rows[0].y - 4) + '" width="' + w + '" height="' + (d.axisY - d.rows[0].y + 4) + '" fill="none" stroke="#d1242f" stroke-width="2"></rect>');
    }
    plot.innerHTML = parts.join("");
    rangeText.textContent = "[" + hexFast(Math.floor(v0)) + ", " + hexFast(Math.ceil(v1)) + ") " + formatSize(v1 - v0);
  }
  function clamp() {
    var span = Math.min(d.size, Math.max(MIN_SPAN, v1 - v0));
    if (v0 < 0) v0 = 0;
    if (v0 + span > d.size) v0 = d.size - span;
    v1 = v0 + span;
  }
  function toAddr(evt) {
    var p = svg.createSVGPoint();
    p.x = evt.clientX; p.y = evt.clientY;
    var q = p.matrixTransform(svg.getScreenCTM().inverse());
    return { x: q.x, a: v0 + (q.x - d.x0) / d.pw * (v1 - v0) };
  }
  function zoom(factor, at) {
    var a = at === undefined ? (v0 + v1) / 2 : at;
    var span = Math.min(d.size, Math.max(MIN_SPAN, (v1 - v0) * factor));
    var f = (a - v0) / (v1 - v0);
    v0 = a - f * span; v1 = v0 + span;
    clamp(); render();
  }
  function describe(a) {
    var out = [hexFast(Math.floor(a))];
    for (var i = 0; i < d.lanes.length; i++) {
      var l = d.lanes[i], hit = null, n = 0;
      for (var j = 0; j < l.s.length && l.s[j] <= a; j++) if (l.e[j] > a) { if (hit === null) hit = j; n++; }
      if (hit !== null) out.push(d.names[i] + ": " + d.labels[l.l[hit]] + " [" + hexFast(l.s[hit]) + ", " + hexFast(l.e[hit]) + ") " + formatSize(l.e[hit] - l.s[hit]) + (n > 1 ? " (+" + (n - 1) + " more)" : ""));
    }
    return out.length === 1 ? out[0] + ": nothing novamm knows of" : out.join(" · ");
  }
  svg.addEventListener("wheel", function (e) {
    e.preventDefault();
    zoom(e.deltaY < 0 ? 0.8 : 1.25, toAddr(e).a);
  }, { passive: false });
  svg.addEventListener("dblclick", function (e) { zoom(e.shiftKey ? 4 : 0.25, toAddr(e).a); });
  var drag = null;
  svg.addEventListener("mousedown", function (e) { drag = { x: toAddr(e).x, v0: v0, v1: v1 }; });
  window.addEventListener("mouseup", function () { drag = null; });
  svg.addEventListener("mousemove", function (e) {
    var p = toAddr(e);
    if (drag !== null) {
      var dv = (p.x - drag.x) / d.pw * (drag.v1 - drag.v0);
      v0 = drag.v0 - dv; v1 = drag.v1 - dv; clamp(); render();
      return;
    }
    if (p.a >= 0 && p.a < d.size && p.x >= d.x0) status.textContent = describe(p.a);
  });
  root.querySelectorAll("button[data-z]").forEach(function (b) {
    b.addEventListener("click", function () {
      var z = b.getAttribute("data-z");
      if (z === "all") { v0 = 0; v1 = d.size; render(); }
      else zoom(z === "in" ? 0.25 : 4);
    });
  });
  render(); // the same picture, now drawn by this script: it zooms from here
  root.setAttribute("data-nm-ready", "1");
}
try {
  document.querySelectorAll(".nm-map[data-nm-map]:not([data-nm-ready])").forEach(setup);
  document.documentElement.setAttribute("data-nm-ready", "1");
} catch (e) {
  document.documentElement.setAttribute("data-nm-error", String(e && e.stack || e));
  throw e;
}
})();`;
