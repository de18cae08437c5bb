/**
 * MMIO traces: a recorded session, one line per access, that
 * `deno task replay` plays back against a fresh simulator.
 *
 * ## Format (version 1)
 *
 * A UTF-8 text file. The first line is the header:
 *
 * ```text
 * # novamm trace v1 device=sim:ga102 chip=GA102
 * ```
 *
 * `key=value` pairs follow the version; `device` (the spec the session
 * opened) is required, others (`chip`, `start`) are informational. Every
 * other line is either a comment (`#` to end of line; the REPL records each
 * input it evaluates as `# > INPUT`) or one access:
 *
 * ```text
 * OP BAR WIDTH OFFSET VALUE
 * r bar0 4 0x00000a00 0x172a1000
 * w bar0 4 0x00001700 0x00000010
 * r bar1 1 0x00010003 0xf1
 * ```
 *
 * - `OP`: `r` (load) or `w` (store)
 * - `BAR`: `bar0` or `bar1`
 * - `WIDTH`: bytes, 1, 2 or 4
 * - `OFFSET`: byte offset in the BAR, 0x-prefixed hex (at least 8 digits)
 * - `VALUE`: what was read or written, 0x-prefixed hex (2 × WIDTH digits)
 *
 * Accesses appear in program order from the moment the device was opened,
 * so the BOOT_0/BOOT_42 reads that identify the chip come first: a fresh
 * simulator replaying the file sees exactly the sequence the session made.
 *
 * The last line is the footer, written when the recording closes:
 *
 * ```text
 * # end accesses=1234
 * # end accesses=5000000 limit=268435456
 * ```
 *
 * A comment is never taken for the footer: {@linkcode TraceWriter.comment}
 * writes a comment whose line would read as one (`# end accesses=0`) with two
 * spaces after the `#` (`#  end accesses=0`), which parses back to the same
 * comment text, and splits text at every line break (`\n`, `\r\n` or `\r`).
 *
 * A file without it was cut short (the session crashed or the disk filled)
 * and is refused, so a truncated trace never replays "ok". `limit=` says the
 * recording stopped at its size bound (`--trace-max`): what is there is a
 * complete prefix of the session. Files are read line by line (bounded
 * memory, whatever their size) by {@linkcode replayTraceFile}.
 *
 * ## The kernel's mmiotrace format
 *
 * With `format: "mmiotrace"` ({@linkcode TraceWriterOptions}) the same
 * session is written as the Linux kernel's mmiotrace text
 * (Documentation/trace/mmiotrace.rst, version 20070824), which
 * hw/snap/mmiotrace.ts imports into a snapshot like any other driver's log:
 *
 * ```text
 * VERSION 20070824
 * PCIDEV 0100 10de2204 0 f2000000 400000000c 0 0 0 0 0 1000000 10000000 0 0 0 0 0 novamm
 * MAP 0.000300 1 0xf2000000 0xffffc90000000000 0x1000000 0x0 0
 * MAP 0.000300 2 0x4000000000 0xffffca0000000000 0x10000000 0x0 0
 * MARK 0.000300 novamm trace v1 device=sim:ga102 chip=GA102 start=open
 * R 4 0.000322 1 0xf2000000 0x172000a1 0x0 0
 * W 4 0.000401 1 0xf2001700 0x4 0x0 0
 * MARK 0.000410 > gpu.bar1.bringUp()
 * UNMAP 0.018491 2 0x0 0
 * UNMAP 0.018491 1 0x0 0
 * MARK 0.018491 novamm end accesses=1234
 * ```
 *
 * BAR0 is map id 1 and BAR1 map id 2, at plausible physical bases (BAR0
 * 0xF2000000, BAR1 at 256 GiB or its size) or those `pci` gives; the
 * timestamp is the time since the recording started; the novamm header
 * (device, chip) is the first `MARK`; comments become
 * `MARK` lines, and the footer is a `MARK ... novamm end accesses=N` line.
 * `replayTraceFile` and `parseTrace` read novamm's format only.
 *
 * @module
 */

import { describe, fail, hex } from "./errors.ts";
import { checkObject, checkOptions } from "./validate.ts";
import { type MmioAccess, type MmioBackend, type MmioTracer, type Width } from "./mmio.ts";
import type { PciFunction } from "./pci.ts";
export type { PciBar, PciFunction } from "./pci.ts";
export type { MmioAccess, MmioBackend, MmioTracer, Width } from "./mmio.ts";

/** The first-line magic, followed by the version. */
export const TRACE_MAGIC = "# novamm trace v1";

/** The header of a trace file. */
export interface TraceHeader {
  /** Device spec the session opened (`sim:ga102`, `0000:65:00.0`). */
  device: string;
  /** Other `key=value` pairs (`chip`, `start`, ...). */
  [key: string]: string;
}

/** One access line of a trace, with its 1-based line number. */
export interface TraceEntry extends MmioAccess {
  /** Line number in the file (1-based). */
  line: number;
}

/** A parsed trace. */
export interface Trace {
  /** The header's key=value pairs. */
  header: TraceHeader;
  /** The accesses, in order. */
  entries: TraceEntry[];
  /** Comment lines by line number (the REPL's `# > INPUT` lines among them). */
  comments: Map<number, string>;
  /** The footer: accesses recorded and, when the size bound stopped it, that bound. */
  footer: TraceFooter;
}

/** What the footer line says. */
export interface TraceFooter {
  /** Accesses the recording wrote. */
  accesses: number;
  /** The size bound that stopped the recording (bytes), or null when the session ended first. */
  limit: number | null;
}

const FOOTER_RE = /^# end accesses=(\d+)(?: limit=(\d+))?$/;

/** Reads a footer line, or null when the line is not one. */
function footerOf(line: string): TraceFooter | null {
  const m = FOOTER_RE.exec(line);
  return m === null
    ? null
    : { accesses: Number(m[1]), limit: m[2] === undefined ? null : Number(m[2]) };
}

/** The header line parsed, or EINVAL naming what is wrong. */
function headerOf(first: string, where: string): TraceHeader {
  if (!first.startsWith(TRACE_MAGIC + " ") && first !== TRACE_MAGIC) {
    const got = first.startsWith("# novamm trace")
      ? `version ${JSON.stringify(first.slice(15).split(" ")[0])}`
      : JSON.stringify(first.slice(0, 60));
    fail(
      "EINVAL",
      `${where} line 1 is not a novamm trace header (got ${got}; expected "${TRACE_MAGIC} device=...")`,
      "record one with `deno task repl --trace FILE`",
    );
  }
  const header: Record<string, string> = {};
  for (const pair of first.slice(TRACE_MAGIC.length).trim().split(/\s+/)) {
    if (pair === "") continue;
    const eq = pair.indexOf("=");
    if (eq <= 0) {
      fail("EINVAL", `${where} line 1: header item ${JSON.stringify(pair)} is not key=value`);
    }
    header[pair.slice(0, eq)] = pair.slice(eq + 1);
  }
  if (header.device === undefined) fail("EINVAL", `${where} line 1: the header has no device=`);
  return header as TraceHeader;
}

/** A line without the `\r` a CRLF file leaves at its end. */
function withoutCr(raw: string): string {
  return raw.endsWith("\r") ? raw.slice(0, -1) : raw;
}

/** One access line parsed, or EINVAL naming the line. */
function entryOf(line: string, n: number, where: string): TraceEntry {
  const m = ACCESS_RE.exec(line);
  if (m === null) {
    fail(
      "EINVAL",
      `${where} line ${n}: ${
        JSON.stringify(line.slice(0, 80))
      } is not "OP BAR WIDTH OFFSET VALUE" ` +
        `(e.g. "r bar0 4 0x00000a00 0x172a1000")`,
    );
  }
  const width = Number(m[3]) as Width;
  const offset = parseInt(m[4], 16);
  const value = parseInt(m[5], 16);
  if (!Number.isSafeInteger(offset)) fail("EINVAL", `${where} line ${n}: offset past 2^53`);
  if (value > 2 ** (8 * width) - 1) {
    fail("EINVAL", `${where} line ${n}: value ${hex(value)} does not fit the ${width}-byte access`);
  }
  return { line: n, op: m[1] as "r" | "w", bar: m[2], width, offset, value };
}

function truncated(where: string, accesses: number): never {
  return fail(
    "EINVAL",
    `${where} ends without its footer after ${accesses} accesses: the recording was cut short (a crash, a full disk)`,
    "a truncated trace cannot be trusted to replay the whole session; record it again",
  );
}

function pad(n: number, digits: number): string {
  return n.toString(16).padStart(digits, "0");
}

/**
 * Formats one access as a trace line (no newline).
 *
 * @example
 * ```ts
 * formatAccess({ bar: "bar0", op: "r", width: 4, offset: 0xa00, value: 0x172a1000 });
 * // "r bar0 4 0x00000a00 0x172a1000"
 * ```
 */
export function formatAccess(a: MmioAccess): string {
  return `${a.op} ${a.bar} ${a.width} 0x${pad(a.offset, 8)} 0x${pad(a.value, a.width * 2)}`;
}

/** Formats the header line; EINVAL unless `header` is an object of non-empty strings with a `device`. */
export function formatHeader(header: TraceHeader): string {
  if (header === null || typeof header !== "object" || Array.isArray(header)) {
    fail("EINVAL", `trace header ${describe(header)} is not an object { device, ... }`);
  }
  if (typeof header.device !== "string") {
    fail("EINVAL", `trace header device ${describe(header.device)} is not a device spec string`);
  }
  const pairs = Object.entries(header).map(([k, v]) => {
    if (typeof v !== "string") {
      fail("EINVAL", `trace header ${JSON.stringify(k)} value ${describe(v)} is not a string`);
    }
    if (!/^[a-z][a-z0-9_-]*$/i.test(k) || /\s/.test(v) || v === "") {
      fail("EINVAL", `trace header pair ${JSON.stringify(`${k}=${v}`)} has spaces or is empty`);
    }
    return `${k}=${v}`;
  });
  return `${TRACE_MAGIC} ${pairs.join(" ")}`;
}

const ACCESS_RE = /^([rw]) (bar[01]) ([124]) 0x([0-9a-fA-F]{1,16}) 0x([0-9a-fA-F]{1,8})$/;

/**
 * Parses the text of a trace file. Throws EINVAL naming the first malformed
 * line.
 *
 * @example
 * ```ts
 * const t = parseTrace(Deno.readTextFileSync("session.trace"));
 * t.header.device; // "sim:ga102"
 * t.entries[0]; // { line: 2, op: "r", bar: "bar0", width: 4, offset: 0, value: 0x172000a1 }
 * ```
 */
export function parseTrace(text: string, options: { path?: string } = {}): Trace {
  if (typeof text !== "string") {
    fail("EINVAL", `parseTrace takes the trace text, not ${describe(text)}`);
  }
  checkOptions(options, { path: "string" }, "parseTrace options");
  const where = options.path ?? "trace";
  const lines = text.split("\n");
  const header = headerOf(lines[0]?.trimEnd() ?? "", where);
  const entries: TraceEntry[] = [];
  const comments = new Map<number, string>();
  let footer: TraceFooter | null = null;
  for (let i = 1; i < lines.length; i++) {
    const raw = lines[i];
    const line = withoutCr(raw);
    if (line === "") continue;
    if (footer !== null) fail("EINVAL", `${where} line ${i + 1}: text after the footer`);
    if (line.startsWith("#")) {
      footer = footerOf(line);
      if (footer === null) comments.set(i + 1, line.slice(1).trim());
      continue;
    }
    entries.push(entryOf(line, i + 1, where));
  }
  if (footer === null) truncated(where, entries.length);
  if (footer.accesses !== entries.length) {
    fail(
      "EINVAL",
      `${where}: the footer says ${footer.accesses} accesses, the file holds ${entries.length}`,
    );
  }
  return { header, entries, comments, footer };
}

const encoder = new TextEncoder();
const FLUSH_LINES = 8192;

/**
 * Writes a trace file: the header, then one line per access, buffered and
 * flushed every 8192 lines and on {@linkcode TraceWriter.close}.
 *
 * @example
 * ```ts
 * import { openGpu } from "../mod.ts";
 * using gpu = await openGpu({ device: "sim" });
 * const t = new TraceWriter("s.trace", { device: "sim:ga102", chip: "GA102" });
 * gpu.device.bar0.tracer = t.tracer;
 * gpu.device.bar1.tracer = t.tracer;
 * // ... session ...
 * t.close();
 * ```
 */
export class TraceWriter {
  /** The file written. */
  readonly path: string;
  /** Pass this as an `Mmio.tracer`. */
  readonly tracer: MmioTracer;
  #file: Deno.FsFile | null;
  #buffer: string[] = [];
  #accesses = 0;
  #bytes = 0;
  #maxBytes: number;
  #onLimit: ((message: string) => void) | undefined;
  #kernel: KernelLines | null;
  /** True once the size bound stopped the recording. */
  limited = false;

  /**
   * Creates (truncates) `path` and writes the header. Recording stops (and
   * `onLimit` is told once) when the file would pass `maxBytes` (default
   * 1 GiB); the footer then records the bound.
   */
  constructor(
    path: string,
    header: TraceHeader,
    options: TraceWriterOptions = {},
  ) {
    if (typeof path !== "string" || path === "" || path.includes("\0")) {
      fail("EINVAL", `trace path ${describe(path)} is not a file name`);
    }
    checkOptions(options, {
      maxBytes: "number",
      onLimit: "function",
      format: "string",
      pci: "object",
    }, "TraceWriter options");
    const format = options.format ?? "novamm";
    if (format !== "novamm" && format !== "mmiotrace") {
      fail("EINVAL", `trace format ${describe(format)} is not "novamm" or "mmiotrace"`);
    }
    if (format === "novamm" && options.pci !== undefined) {
      fail("EINVAL", `TraceWriter options.pci goes with format "mmiotrace"`);
    }
    const head = formatHeader(header);
    this.#kernel = format === "mmiotrace" ? new KernelLines(options.pci ?? {}) : null;
    this.#maxBytes = options.maxBytes ?? 2 ** 30;
    if (!Number.isSafeInteger(this.#maxBytes) || this.#maxBytes < 4096) {
      fail(
        "EINVAL",
        `trace size limit ${describe(this.#maxBytes)} is not an integer of at least 4096 bytes`,
      );
    }
    this.#onLimit = options.onLimit;
    this.path = path;
    try {
      this.#file = Deno.openSync(path, { write: true, create: true, truncate: true });
    } catch (e) {
      const why = e instanceof Error ? e.message : String(e);
      fail("EIO", `cannot create trace file ${path}: ${why}`);
    }
    if (this.#kernel === null) this.#buffer.push(head);
    else this.#buffer.push(...this.#kernel.header(), this.#kernel.mark(head.slice(2)));
    this.tracer = (a) => this.#append(a);
  }

  /** Accesses recorded so far. */
  get accesses(): number {
    return this.#accesses;
  }

  /**
   * Appends one access; EINVAL unless it is one a BAR makes (`bar0`/`bar1`,
   * `r`/`w`, width 1, 2 or 4, a safe offset, a value that fits the width).
   */
  record(a: MmioAccess): void {
    const x = checkObject(a, "trace record access");
    const { bar, op, width, offset, value } = x;
    if (bar !== "bar0" && bar !== "bar1") {
      fail("EINVAL", `trace record bar ${describe(bar)} is not "bar0" or "bar1"`);
    }
    if (op !== "r" && op !== "w") {
      fail("EINVAL", `trace record op ${describe(op)} is not "r" or "w"`);
    }
    if (width !== 1 && width !== 2 && width !== 4) {
      fail("EINVAL", `trace record width ${describe(width)} is not 1, 2 or 4`);
    }
    if (typeof offset !== "number" || !Number.isSafeInteger(offset) || offset < 0) {
      fail("EINVAL", `trace record offset ${describe(offset)} is not a non-negative integer`);
    }
    if (
      typeof value !== "number" || !Number.isInteger(value) || value < 0 ||
      value > 2 ** (8 * width) - 1
    ) {
      fail("EINVAL", `trace record value ${describe(value)} does not fit a ${width}-byte access`);
    }
    this.#append(a);
  }

  /** Appends one access as the BAR's tracer hands it (well formed). */
  #append(a: MmioAccess): void {
    if (this.#file === null || this.limited) return;
    const line = this.#kernel === null ? formatAccess(a) : this.#kernel.access(a);
    if (this.#bytes + line.length + 64 > this.#maxBytes) {
      this.limited = true;
      this.#onLimit?.(
        `trace ${this.path} reached its size limit of ${this.#maxBytes} bytes after ${this.#accesses} accesses: recording stopped (the file is a complete prefix; --trace-max raises the limit)`,
      );
      return;
    }
    this.#bytes += line.length + 1;
    this.#buffer.push(line);
    this.#accesses++;
    if (this.#buffer.length >= FLUSH_LINES) this.flush();
  }

  /**
   * Appends a comment line (line breaks become separate comment lines; a
   * line that would read as the footer gets two spaces after its `#`).
   */
  comment(text: string): void {
    if (typeof text !== "string") fail("EINVAL", `trace comment ${describe(text)} is not a string`);
    if (this.#file === null || this.limited) return;
    for (const l of text.split(/\r\n|\r|\n/)) {
      let line = `# ${l}`.slice(0, 4096);
      if (footerOf(line) !== null) line = `#  ${l}`.slice(0, 4096);
      if (this.#kernel !== null) line = this.#kernel.mark(l);
      if (this.#bytes + line.length + 64 > this.#maxBytes) return;
      this.#bytes += line.length + 1;
      this.#buffer.push(line);
    }
  }

  /** Writes the buffered lines to the file. */
  flush(): void {
    if (this.#file === null || this.#buffer.length === 0) return;
    const bytes = encoder.encode(this.#buffer.join("\n") + "\n");
    this.#buffer = [];
    let off = 0;
    while (off < bytes.length) off += this.#file.writeSync(bytes.subarray(off));
  }

  /** Flushes and closes the file; later records are dropped. Idempotent. */
  close(): void {
    if (this.#file === null) return;
    const end = `end accesses=${this.#accesses}${this.limited ? ` limit=${this.#maxBytes}` : ""}`;
    if (this.#kernel === null) this.#buffer.push(`# ${end}`);
    else this.#buffer.push(...this.#kernel.footer(end));
    this.flush();
    this.#file.close();
    this.#file = null;
  }

  /** Releases it at the end of a `using` scope (same as closing it explicitly). */
  [Symbol.dispose](): void {
    this.close();
  }
}

/** What a recording's PCIDEV and MAP lines say about the card (mmiotrace format). */
export interface TracePci {
  /** PCI address `0000:BB:DD.F` (default `0000:01:00.0`). */
  bdf?: string;
  /** PCI vendor id (default 0x10de). */
  vendor?: number;
  /** PCI device id (default 0x0000: unknown). */
  device?: number;
  /** BAR0 bytes (default 16 MiB). */
  bar0Size?: number;
  /** BAR1 bytes, a power of two (default 256 GiB: covers every chip's BAR1). */
  bar1Size?: number;
  /** BAR0 physical base (default 0xf2000000, aligned to its size). */
  bar0Base?: number;
  /** BAR1 physical base (default: 256 GiB or its size, whichever is larger). */
  bar1Base?: number;
}

/**
 * The `pci` option describing an open device: its BAR sizes, and on a card
 * its PCI address, ids and BAR bases (a simulator gets the defaults).
 *
 * @example
 * ```ts
 * import { openGpu } from "../mod.ts";
 * using gpu = await openGpu({ device: "sim:gh100" });
 * const w = new TraceWriter("s.txt", { device: "sim:gh100" }, {
 *   format: "mmiotrace",
 *   pci: tracePciOf(gpu.device),
 * });
 * w.close();
 * ```
 */
export function tracePciOf(device: {
  readonly bar0: { readonly size: number };
  readonly bar1: { readonly size: number };
  readonly pci: PciFunction | null;
}): TracePci {
  const d = checkObject(device, "tracePciOf device") as typeof device;
  const sizeOf = (b: unknown) => (b as { size?: unknown } | null)?.size;
  for (const [name, bar] of [["bar0", d.bar0], ["bar1", d.bar1]] as const) {
    const size = sizeOf(bar);
    if (typeof size !== "number" || !Number.isSafeInteger(size) || size <= 0) {
      fail(
        "EINVAL",
        `tracePciOf takes a Device (gpu.device): its ${name} size is ${describe(size)}`,
      );
    }
  }
  if (d.pci !== null && (typeof d.pci !== "object" || !Array.isArray(d.pci.bars))) {
    fail("EINVAL", `tracePciOf takes a Device (gpu.device): its pci is ${describe(d.pci)}`);
  }
  const out: TracePci = { bar0Size: d.bar0.size, bar1Size: d.bar1.size };
  const pci = d.pci;
  if (pci === null) return out;
  const base = (i: number) => pci.bars.find((b) => b.index === i)?.start;
  const b0 = base(0);
  const b1 = base(1);
  return {
    ...out,
    bdf: pci.bdf,
    vendor: pci.vendor,
    device: pci.device,
    ...(b0 === undefined ? {} : { bar0Base: Number(b0) }),
    ...(b1 === undefined ? {} : { bar1Base: Number(b1) }),
  };
}

/** Options of {@linkcode TraceWriter}. */
export interface TraceWriterOptions {
  /** Stop recording past this many bytes (default 1 GiB, at least 4096). */
  maxBytes?: number;
  /** Told once when the size bound stops the recording. */
  onLimit?: (message: string) => void;
  /**
   * `novamm` (this module's format, the default) or `mmiotrace`: the Linux
   * kernel's mmiotrace text (Documentation/trace/mmiotrace.rst, version
   * 20070824), which hw/snap/mmiotrace.ts imports back into a snapshot.
   */
  format?: "novamm" | "mmiotrace";
  /** With `mmiotrace`: the card the PCIDEV and MAP lines describe. */
  pci?: TracePci;
}

/** The mmiotrace map ids novamm's recordings use for BAR0 and BAR1. */
const KERNEL_MAP_IDS = { bar0: 1, bar1: 2 } as const;

function powerOfTwo(v: number): boolean {
  return Number.isSafeInteger(v) && v >= 4096 && Number.isInteger(Math.log2(v));
}

/**
 * The lines of a recording in the kernel's mmiotrace format, as
 * `kernel/trace/trace_mmiotrace.c` prints them: `VERSION 20070824`, one
 * `PCIDEV` line (bus/devfn, vendor/device, IRQ, seven resource starts with
 * their region flags, seven sizes, the driver), a `MAP` per BAR, then
 * `R`/`W` lines (width, `SECS.USEC` since the recording started, map id,
 * physical address, value, PC 0, PID 0); comments become `MARK` lines; the
 * close writes `UNMAP`s and a `MARK ... novamm end accesses=N` footer.
 */
class KernelLines {
  readonly #t0 = performance.now();
  readonly #bases: { bar0: number; bar1: number };
  readonly #sizes: { bar0: number; bar1: number };
  readonly #pci: Required<Pick<TracePci, "bdf" | "vendor" | "device">>;

  constructor(pci: TracePci) {
    checkOptions(pci, {
      bdf: "string",
      vendor: "number",
      device: "number",
      bar0Size: "number",
      bar1Size: "number",
      bar0Base: "number",
      bar1Base: "number",
    }, "TraceWriter options.pci");
    const bar0Size = pci.bar0Size ?? 2 ** 24;
    const bar1Size = pci.bar1Size ?? 2 ** 38;
    for (const [k, v] of [["bar0Size", bar0Size], ["bar1Size", bar1Size]] as const) {
      if (!powerOfTwo(v) || v > 2 ** 48) {
        fail(
          "EINVAL",
          `TraceWriter pci.${k} ${describe(v)} is not a power of two in [4 KiB, 2^48]`,
        );
      }
    }
    const bar0Base = pci.bar0Base ?? 0xf2000000 - (0xf2000000 % bar0Size);
    const bar1Base = pci.bar1Base ?? Math.max(2 ** 38, bar1Size);
    for (
      const [k, v, size] of [["bar0Base", bar0Base, bar0Size], [
        "bar1Base",
        bar1Base,
        bar1Size,
      ]] as const
    ) {
      if (!Number.isSafeInteger(v) || v <= 0 || v % size !== 0 || v + size > 2 ** 52) {
        fail(
          "EINVAL",
          `TraceWriter pci.${k} ${describe(v)} is not a non-zero address aligned to its BAR's size`,
        );
      }
    }
    if (bar0Base < bar1Base + bar1Size && bar1Base < bar0Base + bar0Size) {
      fail("EINVAL", `TraceWriter pci BAR0 and BAR1 overlap`);
    }
    const bdf = pci.bdf ?? "0000:01:00.0";
    if (!/^[0-9a-f]{4}:[0-9a-f]{2}:[01][0-9a-f]\.[0-7]$/.test(bdf)) {
      fail("EINVAL", `TraceWriter pci.bdf ${describe(bdf)} is not a PCI address like 0000:01:00.0`);
    }
    for (const k of ["vendor", "device"] as const) {
      const v = pci[k];
      if (v !== undefined && (!Number.isInteger(v) || v < 0 || v > 0xffff)) {
        fail("EINVAL", `TraceWriter pci.${k} ${describe(v)} is not a 16-bit id`);
      }
    }
    this.#bases = { bar0: bar0Base, bar1: bar1Base };
    this.#sizes = { bar0: bar0Size, bar1: bar1Size };
    this.#pci = { bdf, vendor: pci.vendor ?? 0x10de, device: pci.device ?? 0 };
  }

  #time(): string {
    const us = Math.max(0, Math.floor((performance.now() - this.#t0) * 1000));
    return `${Math.floor(us / 1e6)}.${String(us % 1e6).padStart(6, "0")}`;
  }

  header(): string[] {
    const [, bus, dev, fn] = /^[0-9a-f]{4}:([0-9a-f]{2}):([0-9a-f]{2})\.([0-7])$/.exec(
      this.#pci.bdf,
    )!;
    const devfn = (parseInt(dev, 16) << 3) | Number(fn);
    const h = (v: number) => v.toString(16);
    // Resource 0: 32-bit memory; resource 1: 64-bit prefetchable memory (flags 0xc).
    const starts = [h(this.#bases.bar0), h(this.#bases.bar1 + 0xc), "0", "0", "0", "0", "0"];
    const sizes = [h(this.#sizes.bar0), h(this.#sizes.bar1), "0", "0", "0", "0", "0"];
    const t = this.#time();
    return [
      "VERSION 20070824",
      `PCIDEV ${bus}${devfn.toString(16).padStart(2, "0")} ${
        this.#pci.vendor.toString(16).padStart(4, "0")
      }${this.#pci.device.toString(16).padStart(4, "0")} 0 ${starts.join(" ")} ${
        sizes.join(" ")
      } novamm`,
      ...(["bar0", "bar1"] as const).map((b) =>
        `MAP ${t} ${KERNEL_MAP_IDS[b]} 0x${h(this.#bases[b])} ${
          b === "bar0" ? "0xffffc90000000000" : "0xffffca0000000000"
        } 0x${h(this.#sizes[b])} 0x0 0`
      ),
    ];
  }

  /**
   * One access as an R/W line. An access the MAP lines do not cover (the
   * `pci` sizes were wrong) becomes a MARK saying so: a tracer never throws.
   */
  access(a: MmioAccess): string {
    const bar = a.bar === "bar0" || a.bar === "bar1" ? a.bar : null;
    if (bar === null || a.offset + a.width > this.#sizes[bar]) {
      return this.mark(
        `novamm: ${
          formatAccess(a)
        } is outside the MAP lines (give TraceWriter options.pci the BAR sizes)`,
      );
    }
    return `${a.op === "r" ? "R" : "W"} ${a.width} ${this.#time()} ${KERNEL_MAP_IDS[bar]} 0x${
      (this.#bases[bar] + a.offset).toString(16)
    } 0x${a.value.toString(16)} 0x0 0`;
  }

  /** A comment as a MARK line (the kernel's trace_marker). */
  mark(text: string): string {
    return `MARK ${this.#time()} ${text}`.slice(0, 4000);
  }

  /** UNMAP lines and the end marker. */
  footer(end: string): string[] {
    const t = this.#time();
    return [
      `UNMAP ${t} ${KERNEL_MAP_IDS.bar1} 0x0 0`,
      `UNMAP ${t} ${KERNEL_MAP_IDS.bar0} 0x0 0`,
      `MARK ${t} novamm ${end}`,
    ];
  }
}

/** Performs one access on a backend: null for a write, else the value read. */
function perform(bar: MmioBackend, e: TraceEntry): number | null {
  if (e.op === "w") {
    if (e.width === 4) bar.write32(e.offset, e.value);
    else if (e.width === 2) bar.write16(e.offset, e.value);
    else bar.write8(e.offset, e.value);
    return null;
  }
  return e.width === 4
    ? bar.read32(e.offset) >>> 0
    : e.width === 2
    ? bar.read16(e.offset)
    : bar.read8(e.offset);
}

/** Refuses an entry with no aperture to replay on, or one misaligned or past its end. */
function checkFits(e: TraceEntry, size: number | undefined): void {
  if (size === undefined) fail("EINVAL", `trace line ${e.line}: no ${e.bar} to replay on`);
  if (e.offset % e.width !== 0 || e.offset + e.width > size) {
    fail(
      "EINVAL",
      `trace line ${e.line}: ${e.width}-byte access at ${hex(e.offset)} is misaligned or past ` +
        `the end of the ${hex(size)}-byte ${e.bar}`,
      "replay on the device profile the trace was recorded with (--device sim:PROFILE)",
    );
  }
}

/** Replay counters; {@linkcode step} performs one entry and says whether its read diverged. */
class Replay {
  reads = 0;
  writes = 0;
  constructor(readonly bars: Readonly<Record<string, MmioBackend | undefined>>) {}

  /** Performs `e`: the value read when it differs from the trace, else null. */
  step(e: TraceEntry): number | null {
    const got = perform(this.bars[e.bar]!, e);
    if (got === null) {
      this.writes++;
      return null;
    }
    this.reads++;
    return got === e.value ? null : got;
  }
}

/** Where {@linkcode replayTrace} first saw a different value. */
export interface TraceDivergence {
  /** The trace entry (with its line number). */
  entry: TraceEntry;
  /** What the replay target returned. */
  got: number;
  /** The last `# > INPUT` comment before the entry, if any (which REPL input made it). */
  input?: string;
}

/** The outcome of {@linkcode replayTrace}. */
export interface ReplayResult {
  /** Reads performed (and compared). */
  reads: number;
  /** Writes performed. */
  writes: number;
  /** The first read that returned something else; absent when all matched. */
  divergence?: TraceDivergence;
}

/**
 * Performs a trace's accesses on raw backends, in order: every write, and
 * every read with its value compared. Stops at the first read that differs.
 *
 * @example
 * ```ts
 * import { createSimGpu } from "./sim/gpu.ts";
 * const text = Deno.readTextFileSync("s.trace");
 * const sim = createSimGpu({ profile: "ga102" });
 * const r = replayTrace(parseTrace(text), sim); // anything with bar0/bar1 backends
 * if (r.divergence) console.log(r.divergence.entry.line);
 * ```
 */
export function replayTrace(
  trace: Trace,
  bars: { readonly bar0?: MmioBackend; readonly bar1?: MmioBackend },
): ReplayResult {
  const t = checkObject(trace, "replayTrace trace");
  if (!Array.isArray(t.entries)) {
    fail("EINVAL", `replayTrace takes a parsed trace (parseTrace), not ${describe(trace)}`);
  }
  const b = checkObject(bars, "replayTrace bars");
  for (const k of ["bar0", "bar1"]) {
    const ap = b[k] as { read32?: unknown } | undefined;
    if (ap !== undefined && typeof ap?.read32 !== "function") {
      fail(
        "EINVAL",
        `replayTrace bars.${k} is not an aperture (something with read32), not ${describe(ap)}`,
      );
    }
  }
  const r = new Replay(bars as Readonly<Record<string, MmioBackend | undefined>>);
  // Validate every line against the apertures first, so a bad file fails before any access.
  for (const e of trace.entries) checkFits(e, r.bars[e.bar]?.size);
  let input: string | undefined;
  const inputs = [...trace.comments].filter(([, c]) => c.startsWith("> "));
  let next = 0;
  for (const e of trace.entries) {
    const got = r.step(e);
    if (got !== null) {
      while (next < inputs.length && inputs[next][0] < e.line) input = inputs[next++][1].slice(2);
      const { reads, writes } = r;
      return { reads, writes, divergence: { entry: e, got, ...(input ? { input } : {}) } };
    }
  }
  return { reads: r.reads, writes: r.writes };
}

/**
 * Yields the lines of a file without holding it in memory (1 MiB reads,
 * streaming UTF-8 decode): traces of any size replay in bounded memory.
 */
export function* readLines(path: string): Generator<string> {
  let file: Deno.FsFile;
  try {
    file = Deno.openSync(path, { read: true });
  } catch (e) {
    return fail(
      "ENOENT",
      `cannot read trace ${path}: ${e instanceof Error ? e.message : String(e)}`,
    );
  }
  try {
    const decoder = new TextDecoder();
    const buf = new Uint8Array(1 << 20);
    let rest = "";
    for (;;) {
      const n = file.readSync(buf);
      if (n === null) break;
      rest += decoder.decode(buf.subarray(0, n), { stream: true });
      let nl: number;
      while ((nl = rest.indexOf("\n")) >= 0) {
        yield rest.slice(0, nl);
        rest = rest.slice(nl + 1);
      }
      if (rest.length > 1 << 20) {
        fail("EINVAL", `${path}: a line longer than 1 MiB is no trace line`);
      }
    }
    rest += decoder.decode();
    if (rest !== "") yield rest;
  } finally {
    file.close();
  }
}

/** What {@linkcode replayTraceFile} reports besides the replay itself. */
export interface FileReplayResult extends ReplayResult {
  /** The header. */
  header: TraceHeader;
  /** The footer. */
  footer: TraceFooter;
}

/**
 * Replays a trace file in two streaming passes (bounded memory): the first
 * checks every line, the header, the footer and the accesses against the
 * apertures, so a bad or truncated file fails before any access; the second
 * performs the accesses. `makeBars` gets the header (the device to replay
 * on) once the first pass is done.
 *
 * @example
 * ```ts
 * import { createSimGpu } from "./sim/gpu.ts";
 * const r = replayTraceFile("s.trace", (h) => createSimGpu({ profile: "ga102" }));
 * ```
 */
export function replayTraceFile(
  path: string,
  makeBars: (header: TraceHeader) => { readonly bar0?: MmioBackend; readonly bar1?: MmioBackend },
): FileReplayResult {
  if (typeof path !== "string") fail("EINVAL", `trace path ${describe(path)} is not a string`);
  if (typeof makeBars !== "function") {
    fail(
      "EINVAL",
      `replayTraceFile needs a function making the apertures, not ${describe(makeBars)}`,
    );
  }
  let header: TraceHeader | null = null;
  let footer: TraceFooter | null = null;
  let accesses = 0;
  let bars: Readonly<Record<string, MmioBackend | undefined>> | null = null;
  let n = 0;
  let bad: unknown = null;
  for (const raw of readLines(path)) {
    n++;
    const line = withoutCr(raw);
    if (n === 1) {
      header = headerOf(line.trimEnd(), path);
      bars = makeBars(header);
      continue;
    }
    if (line === "") continue;
    if (bad !== null) throw bad; // a bad line with more after it: not a cut-off tail
    if (footer !== null) fail("EINVAL", `${path} line ${n}: text after the footer`);
    if (line.startsWith("#")) {
      footer = footerOf(line);
      continue;
    }
    let e: TraceEntry;
    try {
      e = entryOf(line, n, path);
    } catch (err) {
      bad = err; // the last line, cut in the middle by a crash, is truncation, not corruption
      continue;
    }
    checkFits(e, bars![e.bar]?.size); // bars is set: line 1 is the header
    accesses++;
  }
  if (header === null || bars === null) fail("EINVAL", `${path} is empty: no trace header`);
  if (footer === null) truncated(path, accesses);
  if (footer.accesses !== accesses) {
    fail(
      "EINVAL",
      `${path}: the footer says ${footer.accesses} accesses, the file holds ${accesses}`,
    );
  }
  // Second pass: perform them, remembering the last REPL input for a divergence.
  const r = new Replay(bars);
  let input: string | undefined;
  n = 0;
  for (const raw of readLines(path)) {
    n++;
    if (n === 1) continue;
    const line = withoutCr(raw);
    if (line === "") continue;
    if (line.startsWith("#")) {
      const c = line.slice(1).trim();
      if (c.startsWith("> ")) input = c.slice(2);
      continue;
    }
    const e = entryOf(line, n, path);
    const got = r.step(e);
    if (got !== null) {
      const { reads, writes } = r;
      return {
        header,
        footer,
        reads,
        writes,
        divergence: { entry: e, got, ...(input ? { input } : {}) },
      };
    }
  }
  return { header, footer, reads: r.reads, writes: r.writes };
}

/**
 * Parses a trace's first line (its header); EINVAL naming what is wrong.
 * For readers that stream a file line by line ({@linkcode readLines}).
 *
 * @example
 * ```ts
 * parseTraceHeader("# novamm trace v1 device=sim:gh100 chip=GH100").device; // "sim:gh100"
 * ```
 */
export function parseTraceHeader(line: string, options: { path?: string } = {}): TraceHeader {
  checkOptions(options, { path: "string" }, "parseTraceHeader options");
  return headerOf(withoutCr(String(line)).trimEnd(), options.path ?? "trace");
}

/**
 * Parses one line after the header: an access, a comment (`{ comment }`),
 * the footer (`{ footer }`) or nothing (an empty line). EINVAL names the line.
 *
 * @example
 * ```ts
 * parseTraceLine("r bar0 4 0x00000a00 0x172a1000", 2);
 * // { access: { line: 2, op: "r", bar: "bar0", width: 4, offset: 0xa00, value: 0x172a1000 } }
 * ```
 */
export function parseTraceLine(
  line: string,
  n: number,
  options: { path?: string } = {},
): { access?: TraceEntry; comment?: string; footer?: TraceFooter } {
  checkOptions(options, { path: "string" }, "parseTraceLine options");
  const l = withoutCr(String(line));
  if (l === "") return {};
  if (l.startsWith("#")) {
    const footer = footerOf(l);
    return footer === null ? { comment: l.slice(1).trim() } : { footer };
  }
  return { access: entryOf(l, n, options.path ?? "trace") };
}
