/**
 * Pictures of novamm's state: the VRAM map, address spaces (table tree and
 * VA coverage), walks and registers as SVG/HTML generated here (no network,
 * no framework), the static report, `show(x)` for the REPL and rich display
 * in `deno jupyter`.
 *
 * @example
 * ```ts
 * import { openGpu } from "../mod.ts";
 * import { reportHtml } from "./mod.ts";
 * using gpu = await openGpu({ device: "sim:gh100" });
 * gpu.bar1.bringUp();
 * Deno.writeTextFileSync(Deno.makeTempFileSync({ suffix: ".html" }), await reportHtml(gpu));
 * ```
 *
 * @module
 */

export {
  allocationKind,
  mappedExtents,
  VRAM_KINDS,
  type VramItem,
  type VramKind,
  type VramLane,
  type VramModel,
  vramModel,
} from "./model.ts";
export {
  drawAxis,
  drawLane,
  type DrawStyle,
  type LaneData,
  type LaneGeometry,
  VRAM_MAP_SCRIPT,
  vramMapHtml,
  type VramMapOptions,
} from "./vram_map.ts";
export {
  addressSpaceHtml,
  type AddressSpaceOptions,
  pageSizeAt,
  vaCoverage,
} from "./address_space.ts";
export { isWalkResult, walkHtml } from "./walk.ts";
export {
  isDecodedValue,
  isRegisterReading,
  registerHtml,
  type RegisterPicture,
  registerPicture,
} from "./register.ts";
export { canView, textOf, type View, view, type ViewOptions } from "./view.ts";
export { pageHtml, reportHtml, type ReportOptions, textFallback } from "./page.ts";
export { show, showDirectory, type ShowOptions } from "./show.ts";
export {
  display,
  inJupyter,
  installJupyterDisplay,
  JUPYTER_DISPLAY,
  type MimeBundle,
  mimeBundle,
} from "./jupyter.ts";
export { esc, hexFast, KIND_COLORS, PAGE_COLORS } from "./html.ts";
