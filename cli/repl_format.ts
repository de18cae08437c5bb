/**
 * How the REPL prints values, for people at a bench. One rule, by context:
 * **counts are decimal, addresses and values are hex.**
 *
 * - bigints always in hex: `0x12345000n`;
 * - a top-level integer number in hex, with its decimal value where that
 *   helps (10 and up): `0x12345000 (305418240)`, `0x2a (42)`, `0x5`;
 * - inside objects the key decides. Decimal: counts, versions, bit positions
 *   and lengths — keys such as `count`, `polls`, `pages`, `entries`,
 *   `length`, `reads`, `writes`, `moves`, `version` / `mmuVersion`, `bits`,
 *   `hi` / `lo`, sizes in units (`sizeMiB`), page-table level names
 *   (`PT: 4097`, `PD0: 2`) and page-size names (`"4K": 16`, `"4 KiB": 16`). Hex:
 *   everything else (addresses, offsets, register values, `pa`, `va`,
 *   `size` in bytes, ids);
 * - sizes for people go through one formatter, `formatSize` (hw/errors.ts):
 *   `4 KiB`, `23.99 GiB` (rounded down, never overstated);
 * - address ranges are written one way everywhere: `[start, end)`, end
 *   excluded (`usable [0x40000, 0x5fff00000)`);
 * - objects with a custom inspect (`Symbol.for("Deno.customInspect")`: GPUs,
 *   allocations, entries, walks) print their own summary, and their
 *   `toString()` gives the same text (`${bar1}`);
 * - a `Uint8Array` prints as a hex dump;
 * - `undefined` prints nothing.
 *
 * The banner and the prompt are made here too: the evaluation thread shows them as soon as
 * the GPU is open, before it loads the rest of the REPL (cli/repl_worker.ts), so this module
 * stays light.
 *
 * @module
 */

import { formatSize, hex } from "../hw/errors.ts";
import type { Gpu } from "../mm/gpu.ts";

const CUSTOM = Symbol.for("Deno.customInspect");
// Keys whose numbers are counts (or versions, bit positions, lengths), shown
// in decimal whatever their size: see the module doc.
const COUNT_KEY = new RegExp(
  "^(count|reads|writes|moves|length|ms|total|hits|misses|faults|flushes|entries|pages|" +
    "allocations|blocks|index|line|lines|depth|version|n|i|id|rss|polls|bits|bit|hi|lo|width|" +
    "shift|tables|mappings|ranges|retries|attempts|passes|errors|mismatches|" +
    "PT|PD\\d|PDE|PTE)$" +
    "|(Count|Reads|Writes|Moves|Length|Ms|Total|Hits|Misses|Faults|Flushes|Entries|Pages|" +
    "Allocations|Blocks|Index|PerMiB|Polls|Bits|Version|Tables|Mappings|Retries|Errors|" +
    "KiB|MiB|GiB|InMb|Mb)$" +
    "|^\\d+(\\.\\d+)? ?(B|KiB|MiB|GiB|TiB|K|M|G)$",
);

// Keys whose numbers are addresses or ids, shown in hex at any size.
const HEX_KEY =
  /^(pa|va|pdb|addr|address|offset|base|start|end|raw|boot0|boot42|pfn)$|(Id|Address|Addr|Pdb|Offset|Base|Start|End|Raw|Pfn)$/;

/** Options for {@linkcode formatValue}. */
export interface FormatOptions {
  /** ANSI colors (default: false). */
  colors?: boolean;
  /** Nesting depth shown (default 4). */
  depth?: number;
}

/** A value that prints as fixed text (hex numbers, dumps, help). */
export class Text {
  /** The text. */
  readonly text: string;
  readonly #color: string | null;

  /** Text to print as is, in an ANSI `color` (e.g. "33") when colors are on. */
  constructor(text: string, color: string | null = null) {
    this.text = text;
    this.#color = color;
  }

  /** How Deno.inspect (and the REPL) prints it. */
  [CUSTOM](_inspect: unknown, options: { colors?: boolean }): string {
    return options?.colors && this.#color !== null
      ? `\x1b[${this.#color}m${this.text}\x1b[39m`
      : this.text;
  }

  /** The text. */
  toString(): string {
    return this.text;
  }
}

function hasCustomInspect(v: object): boolean {
  return CUSTOM in v;
}

/** Formats an integer the top-level way (see the module doc). */
export function formatInteger(n: number): string {
  return Math.abs(n) >= 10 ? `${hex(n)} (${n})` : hex(n);
}

function plainObject(v: object): boolean {
  const proto = Object.getPrototypeOf(v);
  if (proto === null || proto === Object.prototype) return true;
  // Class instances: shown like Deno shows them (own fields), with numbers rewritten.
  return Object.prototype.toString.call(v) === "[object Object]" && typeof v !== "function";
}

/** Rebuilds `v` with bigints (and address-like numbers) as hex text for Deno.inspect. */
function forDisplay(
  v: unknown,
  keyName: string,
  depth: number,
  seen: Map<object, unknown>,
): unknown {
  if (typeof v === "bigint") return new Text(`${hex(v)}n`, "33");
  if (typeof v === "number") {
    if (
      Number.isInteger(v) && (HEX_KEY.test(keyName) || !COUNT_KEY.test(keyName))
    ) {
      return new Text(hex(v), "33");
    }
    return v;
  }
  if (typeof v !== "object" || v === null || depth < 0) return v;
  if (hasCustomInspect(v) || ArrayBuffer.isView(v)) return v;
  const known = seen.get(v);
  if (known !== undefined) return known;
  if (Array.isArray(v)) {
    const out: unknown[] = [];
    seen.set(v, out);
    for (let i = 0; i < v.length; i++) {
      if (i in v) out[i] = forDisplay(v[i], keyName, depth - 1, seen);
    }
    return out;
  }
  if (v instanceof Map) {
    const out = new Map();
    seen.set(v, out);
    for (const [k, x] of v) {
      out.set(forDisplay(k, "", depth - 1, seen), forDisplay(x, String(k), depth - 1, seen));
    }
    return out;
  }
  if (v instanceof Set) {
    const out = new Set();
    seen.set(v, out);
    for (const x of v) out.add(forDisplay(x, keyName, depth - 1, seen));
    return out;
  }
  if (!plainObject(v)) return v;
  const out = Object.create(Object.getPrototypeOf(v));
  seen.set(v, out);
  for (const k of Object.keys(v)) {
    out[k] = forDisplay((v as Record<string, unknown>)[k], k, depth - 1, seen);
  }
  return out;
}

/**
 * Hex dump lines of `bytes` whose first byte is at `address`: 16 bytes a
 * line, address column, ASCII column; runs of identical lines collapse to `*`
 * as in `hexdump -C`.
 *
 * @example
 * ```ts
 * hexdumpText(new Uint8Array([0xef, 0xbe, 0xad, 0xde]), 0x1000);
 * // "0x00001000  ef be ad de                                       |....|\n0x00001004"
 * ```
 */
export function hexdumpText(bytes: Uint8Array, address: number | bigint = 0): string {
  return foldedDump(bytes, address, (row) => {
    let hexPart = "";
    let ascii = "";
    for (let j = 0; j < 16; j++) {
      if (j === 8) hexPart += " ";
      if (j < row.length) {
        hexPart += row[j].toString(16).padStart(2, "0") + " ";
        ascii += row[j] >= 0x20 && row[j] < 0x7f ? String.fromCharCode(row[j]) : ".";
      } else {
        hexPart += "   ";
      }
    }
    return `${hexPart} |${ascii}|`;
  });
}

/**
 * The frame both dumps share: one line per 16 bytes, `formatRow(row, offset)`
 * after the address (`offset` is the row's first byte in `bytes`); a full row
 * that formats as the one before it is folded into one `*` line a run; the
 * end address last. The address column is at least 8 hex digits wide.
 */
function foldedDump(
  bytes: Uint8Array,
  address: number | bigint,
  formatRow: (row: Uint8Array, offset: number) => string,
): string {
  const base = BigInt(address);
  const end = base + BigInt(bytes.length);
  const width = Math.max(8, end.toString(16).length);
  const addr = (a: bigint) => `0x${a.toString(16).padStart(width, "0")}`;
  const lines: string[] = [];
  let previous = "";
  let starred = false;
  for (let i = 0; i < bytes.length; i += 16) {
    const row = bytes.subarray(i, Math.min(i + 16, bytes.length));
    const text = formatRow(row, i);
    if (text === previous && row.length === 16) {
      if (!starred) lines.push("*");
      starred = true;
      continue;
    }
    previous = text;
    starred = false;
    lines.push(`${addr(base + BigInt(i))}  ${text}`);
  }
  lines.push(addr(end));
  return lines.join("\n");
}

/**
 * Formats a value for the REPL; null means "print nothing" (undefined).
 *
 * @example
 * ```ts
 * formatValue(0x12345000n); // "0x12345000n"
 * formatValue(0xdeadbeef); // "0xdeadbeef (3735928559)"
 * formatValue({ size: 2 ** 30, mmioReads: 70000 }); // "{ size: 0x40000000, mmioReads: 70000 }"
 * ```
 */
export function formatValue(value: unknown, options: FormatOptions = {}): string | null {
  const colors = options.colors ?? false;
  const paint = (s: string) => (colors ? `\x1b[33m${s}\x1b[39m` : s);
  if (value === undefined) return null;
  if (typeof value === "bigint") return paint(`${hex(value)}n`);
  if (typeof value === "number") {
    return paint(Number.isInteger(value) ? formatInteger(value) : String(value));
  }
  if (value instanceof Uint8Array && !(CUSTOM in value)) {
    const head = `Uint8Array(${value.length})`;
    return value.length === 0
      ? head
      : `${head}\n${hexdumpText(value.subarray(0, 4096))}${
        value.length > 4096 ? `\n... ${value.length - 4096} more bytes` : ""
      }`;
  }
  // setTimeout/setInterval hand back node's Timeout object here: its internals help nobody.
  if (typeof value === "object" && value !== null && value.constructor?.name === "Timeout") {
    return "Timeout (clearTimeout(_) cancels it)";
  }
  const shown = forDisplay(value, "", options.depth ?? 4, new Map());
  return Deno.inspect(shown, {
    colors,
    depth: options.depth ?? 4,
    iterableLimit: 64,
    strAbbreviateSize: 400,
  });
}

/**
 * A 32-bit word dump (m1n1's chexdump32): four little-endian words per line
 * with the address, repeated lines folded into `*`. Trailing bytes that do
 * not fill a word are shown as a short word.
 *
 * @example
 * ```ts
 * hexdump32Text(new Uint8Array([0xef, 0xbe, 0xad, 0xde]), 0x100000);
 * // "0x00100000  deadbeef\n0x00100004"
 * ```
 */
export function hexdump32Text(bytes: Uint8Array, address: number | bigint = 0): string {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return foldedDump(bytes, address, (row, i) => {
    const words: string[] = [];
    for (let j = i; j < i + row.length; j += 4) {
      if (j + 4 <= bytes.length) words.push(dv.getUint32(j, true).toString(16).padStart(8, "0"));
      else {
        let w = "";
        for (let k = bytes.length - 1; k >= j; k--) w += bytes[k].toString(16).padStart(2, "0");
        words.push(w);
      }
    }
    return words.join(" ");
  });
}

/** The BAR1 root page directory as the hardware has it bound, or null (BAR1 not virtual). */
export function bar1Pdb(gpu: Gpu): number | null {
  try {
    return gpu.bar1Binding?.pdb ?? null;
  } catch {
    return null;
  }
}

/**
 * The VRAM layout, one indented line a region (name, range, where it comes
 * from): the REPL banner and `regs()` print it.
 */
export function layoutLines(layout: Gpu["vram"]["layout"]): string[] {
  return layout.map((r) => `  ${r.name.padEnd(13)} [${hex(r.start)}, ${hex(r.end)})  ${r.source}`);
}

/**
 * The lines shown when the REPL starts: device, chip, MMU version, read-only
 * or not; GFW boot; BAR1 size and mode; VRAM, the usable region and where it
 * comes from; the firmware-owned regions (the layout).
 */
export function banner(gpu: Gpu): string {
  const { chip, vram, device } = gpu;
  const usable = vram.usable;
  const pdb = bar1Pdb(gpu);
  const gfw = device.gfw;
  const bar1 = `BAR1 ${formatSize(device.bar1.size)} ${
    pdb === null
      ? `physical (offset = VRAM address; ${
        gpu.family.fbFlush.mechanism === "gsp"
          ? "it stays physical: no CPU-side FB flush on this chip"
          : "bar1.bringUp() binds novamm's tables"
      })`
      : `virtual, PDB ${hex(pdb)}`
  }${device.bootVga ? " · boot VGA device" : ""}`;
  const lines = [
    `novamm REPL · ${device.spec} · ${chip.name} ${chip.revision} (${chip.architecture}, MMU v${chip.mmuVersion}) · ${
      device.readOnly ? "READ-ONLY" : "read-write"
    }`,
    `${
      device.kind === "snap" && gfw.polls === 0
        ? `GFW boot: ${gfw.register} not in the snapshot (`
        : `GFW boot done (${gfw.register} = ${hex(gfw.value)}`
    }${gfw.waitedMs > 0 ? `, waited ${gfw.waitedMs} ms` : ""}) · ${bar1}`,
    `VRAM ${formatSize(vram.size)}, usable [${hex(usable.start)}, ${hex(usable.end)}) (${
      formatSize(usable.end - usable.start)
    }, ${vram.usableSource === "layout" ? "largest range firmware leaves" : vram.usableSource})`,
    ...layoutLines(vram.layout),
    ...vram.unknown.map((u) => `  unknown: ${u}`),
    familyLine(gpu),
    "Type help() for the preloaded names; .exit or Ctrl-D quits.",
  ];
  return lines.join("\n");
}

/** The chip family's mechanics in one line: FB flush, bind registers, display, knobs. */
function familyLine(gpu: Gpu): string {
  const f = gpu.family;
  const flush = {
    uflush: "FB flush: write 0x70000",
    xal: "FB flush: read 0x10F800, poll 0x10F804",
    gsp: "FB flush: GSP-RM only (BAR1 stays physical)",
  }[f.fbFlush.mechanism];
  const bind = f.bar1.kind === "vf" ? "bind 0xB80F40 (+0x1704)" : "bind LOW/HIGH 0xB80F60/64";
  const display = f.layout.displayFuse === null ? "no display" : "display fuse read";
  const mc = gpu.device.memClear;
  const m = mc.value === null
    ? "memory clear: not reported"
    : mc.waitedMs > 0
    ? `memory clear waited ${mc.waitedMs} ms`
    : "";
  return `${f.name}: ${flush} · ${bind} · ${display}${f.layout.mmuLock ? " · MMU lock" : ""}${
    m === "" ? "" : ` · ${m}`
  }${gpu.device.barFirewall?.warning ? ` · ${gpu.device.barFirewall.warning}` : ""}`;
}

/** The prompt: the chip, lower case (`ga102> `), marked when read-only. */
export function promptFor(gpu: Gpu): string {
  return `${gpu.chip.name.toLowerCase()}${gpu.device.readOnly ? "(ro)" : ""}> `;
}
