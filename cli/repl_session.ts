/**
 * A REPL session: open the GPU (with an optional MMIO trace), preload the
 * globals, then run the interactive prompt, one `--eval` expression or a
 * script; close everything in order at the end (`using` resources last
 * first, then the GPU, which restores the PRAMIN window, then the trace).
 *
 * @module
 */

import { fail, hex } from "../hw/errors.ts";
import { didYouMean } from "../hw/validate.ts";
import type { MmioAccess } from "../hw/mmio.ts";
import { TraceWriter } from "../hw/trace.ts";
import type { Gpu } from "../mm/gpu.ts";
import { colorError, colorsOn, formatError, isTty, openFromFlags, Progress } from "./common.ts";
import {
  bar1Pdb,
  buildGlobals,
  formatSize,
  installGlobals,
  layoutLines,
  memberNames,
  type ReplGlobals,
  scriptUsage,
  setScriptContext,
} from "./globals.ts";
import { Evaluator, shiftNotes } from "./repl_eval.ts";
import { classMembers, returnClass } from "./help.ts";
import { formatValue } from "./repl_format.ts";

/** Options for {@linkcode openSession}. */
export interface OpenSessionOptions {
  /** Device spec. */
  device: string;
  /** Map the BARs read-only. */
  readOnly: boolean;
  /** Open a card a kernel driver holds. */
  force: boolean;
  /** Record every MMIO access to this file. */
  trace?: string;
  /** Stop recording past this many bytes (default 1 GiB). */
  traceMax?: number;
}

/** An open session: the GPU, its globals, the evaluator and the trace. */
export class Session {
  /** The GPU. */
  readonly gpu: Gpu;
  /** The preloaded names. */
  readonly globals: ReplGlobals;
  /** The evaluator (holds `using` resources). */
  readonly evaluator: Evaluator = new Evaluator();
  /** The trace being written, if any. */
  readonly trace: TraceWriter | null;
  #closed = false;

  /** Constructs it (see the class documentation for who does and how). */
  constructor(gpu: Gpu, trace: TraceWriter | null) {
    this.gpu = gpu;
    this.trace = trace;
    this.globals = buildGlobals(gpu);
    if (isTty()) {
      // Long PRAMIN transfers typed at the prompt draw a progress line.
      let bar: Progress | null = null;
      gpu.pramin.progress = (done, total, what) => {
        bar ??= new Progress(`PRAMIN ${what} ${formatSize(total)}`, total);
        bar.update(done);
        if (done >= total) {
          bar.done();
          bar = null;
        }
      };
    }
  }

  /** Defines the preloaded names on globalThis (where inputs and scripts find them). */
  install(): void {
    installGlobals(this.globals);
  }

  /**
   * Disposes `using` resources (last first), closes the GPU (restoring the
   * PRAMIN window) and the trace. Returns the errors met; idempotent.
   */
  async close(): Promise<unknown[]> {
    if (this.#closed) return [];
    this.#closed = true;
    const errors = await this.evaluator.disposeAll();
    try {
      this.gpu.close();
    } catch (e) {
      errors.push(e);
    }
    this.trace?.close();
    return errors;
  }
}

/**
 * Opens the device and, with `trace`, records every MMIO access from the
 * first BOOT_0 read on.
 *
 * @example
 * ```ts
 * const s = await openSession({ device: "sim", readOnly: false, force: false, trace: "s.trace" });
 * ```
 */
export async function openSession(options: OpenSessionOptions): Promise<Session> {
  const flags = { device: options.device, readOnly: options.readOnly, force: options.force };
  if (options.trace === undefined) return new Session(await openFromFlags(flags), null);
  const boot: MmioAccess[] = [];
  const gpu = await openFromFlags(flags, { tracer: (a) => boot.push(a) });
  let writer: TraceWriter;
  try {
    writer = new TraceWriter(options.trace, {
      device: gpu.device.spec,
      chip: gpu.chip.name,
      start: "open",
    }, {
      ...(options.traceMax === undefined ? {} : { maxBytes: options.traceMax }),
      onLimit: (message) => console.error(`note: ${message}`),
    });
  } catch (e) {
    gpu.close();
    throw e;
  }
  for (const a of boot) writer.record(a);
  gpu.device.bar0.tracer = writer.tracer;
  gpu.device.bar1.tracer = writer.tracer;
  // A crash still leaves the accesses recorded so far on disk.
  globalThis.addEventListener("unload", () => writer.close());
  return new Session(gpu, writer);
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
    `GFW boot done (${gfw.register} = ${hex(gfw.value)}${
      gfw.waitedMs > 0 ? `, waited ${gfw.waitedMs} ms` : ""
    }) · ${bar1}`,
    `VRAM ${formatSize(vram.size)}, usable ${hex(usable.start)}-${hex(usable.end)} (${
      formatSize(usable.end - usable.start)
    }, ${vram.usableSource === "layout" ? "largest range firmware leaves" : vram.usableSource})`,
    ...layoutLines(vram.layout),
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

const KEYWORDS = [
  "await",
  "async",
  "break",
  "case",
  "catch",
  "class",
  "const",
  "continue",
  "delete",
  "do",
  "else",
  "false",
  "finally",
  "for",
  "function",
  "if",
  "import",
  "in",
  "instanceof",
  "let",
  "new",
  "null",
  "of",
  "return",
  "switch",
  "this",
  "throw",
  "true",
  "try",
  "typeof",
  "undefined",
  "using",
  "var",
  "void",
  "while",
  "yield",
];
const COMMANDS = [".break", ".exit", ".help"];
const MEMBER_RE = /([A-Za-z_$][\w$]*(?:\.[A-Za-z_$][\w$]*)*)\.([A-Za-z_$][\w$]*)?$/;
// `chain.method(args).partial`: members of what the method returns, from its documented type.
const CALL_RE = /([A-Za-z_$][\w$]*(?:\.[A-Za-z_$][\w$]*)*)\([^()]*\)\.([A-Za-z_$][\w$]*)?$/;

/** Follows `a.b.c` from globalThis reading properties (getters run, nothing is called). */
function lookup(chain: string): { found: boolean; value: unknown } {
  const parts = chain.split(".");
  const g = globalThis as Record<string, unknown>;
  if (!(parts[0] in g)) return { found: false, value: undefined };
  let obj: unknown = g[parts[0]];
  try {
    for (const p of parts.slice(1)) {
      if (obj === null || obj === undefined) return { found: false, value: undefined };
      obj = (obj as Record<string, unknown>)[p];
    }
  } catch {
    return { found: false, value: undefined };
  }
  return { found: true, value: obj };
}
const WORD_RE = /(?:^|[^\w$.])([A-Za-z_$][\w$]*)?$/;

/**
 * Tab completion: `gpu.pra` → `pramin` (the object before the dot is looked
 * up as a property chain of globals, calling nothing but getters), a bare
 * word → globals, keywords and preloaded names, `.e` → `.exit`. Returns
 * readline's `[candidates, text being completed]`.
 *
 * @example
 * ```ts
 * complete("gpu.pra", ["gpu"]); // [["pramin"], "pra"]
 * ```
 */
export function complete(line: string, preloaded: readonly string[] = []): [string[], string] {
  if (/^\s*\.\w*$/.test(line)) {
    const t = line.trim();
    return [COMMANDS.filter((c) => c.startsWith(t)), t];
  }
  const call = CALL_RE.exec(line);
  if (call !== null) {
    const partial = call[2] ?? "";
    const { found, value } = lookup(call[1]);
    const cls = found ? returnClass(value) : null;
    return [cls === null ? [] : classMembers(cls).filter((n) => n.startsWith(partial)), partial];
  }
  const m = MEMBER_RE.exec(line);
  if (m !== null) {
    const partial = m[2] ?? "";
    const { found, value } = lookup(m[1]);
    if (!found) return [[], partial];
    return [memberNames(value).filter((n) => n.startsWith(partial)), partial];
  }
  const w = WORD_RE.exec(line);
  const partial = w?.[1] ?? "";
  if (partial === "") return [[...preloaded], ""];
  const names = new Set<string>(preloaded);
  for (const n of Object.getOwnPropertyNames(globalThis)) {
    if (!n.startsWith("_") && /^[A-Za-z$][\w$]*$/.test(n)) names.add(n);
  }
  for (const k of KEYWORDS) names.add(k);
  return [[...names].filter((n) => n.startsWith(partial)).sort(), partial];
}

/** V8's words for assigning to a read-only global, said the way the prompt means it. */
function plainer(e: unknown): unknown {
  if (e instanceof TypeError) {
    const m =
      /^Cannot assign to read only property '([^']+)' of object '#<(Window|Object|DedicatedWorkerGlobalScope)>'$/
        .exec(
          e.message,
        );
    if (m !== null) {
      return new TypeError(
        `${m[1]} is a constant (declared with const or using); declare it again to replace it`,
      );
    }
  }
  return e;
}

/** "x is not defined": the preloaded or global name it is probably a typo of. */
function nearName(e: unknown): string | null {
  if (!(e instanceof ReferenceError)) return null;
  const m = /^([\w$]+) is not defined$/.exec(e.message);
  if (m === null) return null;
  const names = Object.getOwnPropertyNames(globalThis).filter((n) => /^[A-Za-z$][\w$]*$/.test(n));
  return didYouMean(m[1], names);
}

function errorText(e: unknown, colors: boolean): string {
  const near = nearName(e);
  const text = formatError(plainer(e)) + (near === null ? "" : `\nhint: did you mean ${near}?`);
  return colors ? colorError(text) : text;
}

function debugStack(e: unknown): void {
  if (Deno.env.get("NOVAMM_DEBUG") && e instanceof Error && e.stack) console.error(e.stack);
}

/**
 * Evaluates one complete input and prints its value (or its error, one line
 * plus hint); returns false on error.
 */
export async function evalAndPrint(
  session: Session,
  code: string,
  options: {
    colors: boolean;
    errorsTo: "stdout" | "stderr";
    rawStrings?: boolean;
    /** Prints an error its own way and returns true (else the usual one line is printed). */
    onError?: (e: unknown) => boolean;
  },
): Promise<boolean> {
  session.trace?.comment(code.split("\n").map((l) => `> ${l}`).join("\n"));
  for (const note of shiftNotes(code)) console.log(note);
  const g = globalThis as Record<string, unknown>;
  try {
    const r = await session.evaluator.evaluate(code);
    if (r.hasValue && r.value !== undefined) {
      g._ = r.value;
      // --eval prints a string as is (like `node -p`), so its output composes in a shell.
      const text = options.rawStrings && typeof r.value === "string"
        ? r.value
        : formatValue(r.value, { colors: options.colors });
      if (text !== null) console.log(text);
    }
    return true;
  } catch (e) {
    g._error = e;
    if (options.onError?.(e)) return false;
    const text = errorText(e, options.colors);
    if (options.errorsTo === "stdout") console.log(text);
    else console.error(text);
    debugStack(e);
    return false;
  }
}

/**
 * Runs a script with the session's globals on globalThis (and from
 * `scriptGlobals()`); returns the exit code.
 */
export async function runScript(session: Session, path: string, args: string[]): Promise<number> {
  const url = new URL(path, `file://${Deno.cwd()}/`);
  try {
    try {
      if (!Deno.statSync(url).isFile) fail("EINVAL", `${path} is not a file`);
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) {
        fail("ENOENT", `script ${path} not found`, "run `deno task repl --help` for the usage");
      }
      throw e;
    }
    if (args.includes("--help") || args.includes("-h")) {
      console.log(scriptUsage(url));
      return 0;
    }
    session.install();
    setScriptContext({ globals: session.globals, args });
    session.trace?.comment(`script ${path} ${args.join(" ")}`.trimEnd());
    await import(url.href);
    return 0;
  } catch (e) {
    console.error(errorText(e, colorsOn(Deno.stderr)));
    debugStack(e);
    return 1;
  } finally {
    setScriptContext(undefined);
  }
}
