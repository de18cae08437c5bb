/**
 * What scripts (examples/, `repl.ts <script>`) need, as one public module:
 * the REPL's globals for a script (`scriptGlobals`: the opened GPU, helpers
 * and the script's own arguments), the progress line, size formatting, and
 * the error helpers. Scripts import this and `mod.ts`, nothing else.
 *
 * @example
 * ```ts
 * import { formatSize, hex, scriptGlobals } from "./script.ts";
 * const { gpu, args } = await scriptGlobals();
 * console.log(gpu.chip.name, formatSize(gpu.vram.size), hex(0x1000), args);
 * ```
 *
 * @module
 */

export {
  type ByteSource,
  formatSize,
  type ReplGlobals,
  type ReplHelpers,
  scriptGlobals,
  scriptUsage,
} from "./cli/globals.ts";
export { Progress } from "./cli/common.ts";
export { NamedRegister, type RegisterValue } from "./cli/registers.ts";
export { type Watch, watchHelpers, type WatchOptions } from "./cli/watch.ts";
export type { Text } from "./cli/repl_format.ts";
export { fail, hex, NovaError } from "./hw/errors.ts";
export type { DumpNode } from "./mm/vmm.ts";
