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
 * @module
 */

import { describe, fail, hex } from "./errors.ts";
import { checkObject, checkOptions } from "./validate.ts";
import { type MmioAccess, type MmioBackend, type MmioTracer, type Width } from "./mmio.ts";

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

/** Formats the header line. */
export function formatHeader(header: TraceHeader): string {
  const pairs = Object.entries(header).map(([k, v]) => {
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
  const first = lines[0]?.trimEnd() ?? "";
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
  const entries: TraceEntry[] = [];
  const comments = new Map<number, string>();
  for (let i = 1; i < lines.length; i++) {
    const raw = lines[i];
    const line = raw.endsWith("\r") ? raw.slice(0, -1) : raw;
    if (line === "") continue;
    if (line.startsWith("#")) {
      comments.set(i + 1, line.slice(1).trim());
      continue;
    }
    const m = ACCESS_RE.exec(line);
    if (m === null) {
      fail(
        "EINVAL",
        `${where} line ${i + 1}: ${
          JSON.stringify(line.slice(0, 80))
        } is not "OP BAR WIDTH OFFSET VALUE" ` +
          `(e.g. "r bar0 4 0x00000a00 0x172a1000")`,
      );
    }
    const width = Number(m[3]) as Width;
    const offset = parseInt(m[4], 16);
    const value = parseInt(m[5], 16);
    if (!Number.isSafeInteger(offset)) fail("EINVAL", `${where} line ${i + 1}: offset past 2^53`);
    if (value > 2 ** (8 * width) - 1) {
      fail(
        "EINVAL",
        `${where} line ${i + 1}: value ${hex(value)} does not fit the ${width}-byte access`,
      );
    }
    entries.push({ line: i + 1, op: m[1] as "r" | "w", bar: m[2], width, offset, value });
  }
  return { header: header as TraceHeader, entries, comments };
}

const encoder = new TextEncoder();
const FLUSH_LINES = 8192;

/**
 * Writes a trace file: the header, then one line per access, buffered and
 * flushed every 8192 lines and on {@linkcode TraceWriter.close}.
 *
 * @example
 * ```ts
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

  /** Creates (truncates) `path` and writes the header. */
  constructor(path: string, header: TraceHeader) {
    const head = formatHeader(header);
    this.path = path;
    try {
      this.#file = Deno.openSync(path, { write: true, create: true, truncate: true });
    } catch (e) {
      const why = e instanceof Error ? e.message : String(e);
      fail("EIO", `cannot create trace file ${path}: ${why}`);
    }
    this.#buffer.push(head);
    this.tracer = (a) => this.record(a);
  }

  /** Accesses recorded so far. */
  get accesses(): number {
    return this.#accesses;
  }

  /** Appends one access. */
  record(a: MmioAccess): void {
    if (this.#file === null) return;
    this.#buffer.push(formatAccess(a));
    this.#accesses++;
    if (this.#buffer.length >= FLUSH_LINES) this.flush();
  }

  /** Appends a comment line (newlines become separate comment lines). */
  comment(text: string): void {
    if (this.#file === null) return;
    for (const l of text.split("\n")) this.#buffer.push(`# ${l}`);
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
    this.flush();
    this.#file.close();
    this.#file = null;
  }

  /** Releases it at the end of a `using` scope (same as closing it explicitly). */
  [Symbol.dispose](): void {
    this.close();
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
  checkOptions(bars, { bar0: "object", bar1: "object" }, "replayTrace bars");
  const byName = bars as Readonly<Record<string, MmioBackend | undefined>>;
  // Validate every line against the apertures first, so a bad file fails before any access.
  for (const e of trace.entries) {
    const bar = byName[e.bar];
    if (bar === undefined) fail("EINVAL", `trace line ${e.line}: no ${e.bar} to replay on`);
    if (e.offset % e.width !== 0 || e.offset + e.width > bar.size) {
      fail(
        "EINVAL",
        `trace line ${e.line}: ${e.width}-byte access at ${hex(e.offset)} is misaligned or past ` +
          `the end of the ${hex(bar.size)}-byte ${e.bar}`,
        "replay on the device profile the trace was recorded with (--device sim:PROFILE)",
      );
    }
  }
  let reads = 0;
  let writes = 0;
  let input: string | undefined;
  const inputs = [...trace.comments].filter(([, c]) => c.startsWith("> "));
  let next = 0;
  for (const e of trace.entries) {
    const bar = byName[e.bar]!;
    if (e.op === "w") {
      if (e.width === 4) bar.write32(e.offset, e.value);
      else if (e.width === 2) bar.write16(e.offset, e.value);
      else bar.write8(e.offset, e.value);
      writes++;
      continue;
    }
    const got = e.width === 4
      ? bar.read32(e.offset) >>> 0
      : e.width === 2
      ? bar.read16(e.offset)
      : bar.read8(e.offset);
    reads++;
    if (got !== e.value) {
      while (next < inputs.length && inputs[next][0] < e.line) input = inputs[next++][1].slice(2);
      return { reads, writes, divergence: { entry: e, got, ...(input ? { input } : {}) } };
    }
  }
  return { reads, writes };
}
