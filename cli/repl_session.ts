/**
 * A REPL session: open the GPU (with an optional MMIO trace), preload the
 * globals, then run the interactive prompt, one `--eval` expression or a
 * script; close everything in order at the end (`using` resources last
 * first, then the GPU, which restores the PRAMIN window, then the trace).
 *
 * @module
 */

import { fail, NovaError } from "../hw/errors.ts";
import { didYouMean } from "../hw/validate.ts";
import type { TraceWriter } from "../hw/trace.ts";
import type { Gpu } from "../mm/gpu.ts";
import { setWorkProgress } from "../mm/pagetable/tree.ts";
import { colorError, colorsOn, formatError, isTty, Progress } from "./common.ts";
import {
  buildGlobals,
  formatSize,
  HELP_UNDEFINED,
  installGlobals,
  memberNames,
  type ReplGlobals,
  scriptUsage,
  setScriptContext,
} from "./globals.ts";
import { Evaluator, shiftNotes, splitRedirect } from "./repl_eval.ts";
import { classMembers, nearMembers, returnClass } from "./help.ts";
import { formatValue } from "./repl_format.ts";
import { type OpenSessionOptions, openTraced } from "./repl_open.ts";

/** Options for {@linkcode openSession} (defined with the opening, in cli/repl_open.ts). */
export type { OpenSessionOptions };

/** What the card had reported when an input started (see {@linkcode Session.cardEvents}). */
export interface CardMark {
  /** The GPU it is about (a reopen makes a new one). */
  gpu: Gpu;
  /** Simulator log events so far. */
  events: number;
  /** MMU faults so far. */
  faults: number;
  /** The GPU was lost already. */
  lost: boolean;
}

/** An open session: the GPU, its globals, the evaluator and the trace. */
export class Session {
  /** The GPU (a new one after {@linkcode Session.reopen}). */
  gpu: Gpu;
  /** The preloaded names (rebuilt by a reopen). */
  globals: ReplGlobals;
  /** The evaluator (holds `using` resources). */
  readonly evaluator: Evaluator = new Evaluator();
  /** The trace being written, if any. */
  readonly trace: TraceWriter | null;
  /** Called with the new GPU after a reopen (the REPL worker tells the UI about the new card). */
  onReopen: ((gpu: Gpu) => void) | null = null;
  #closed = false;
  #installed = false;
  /** Each GPU's reports as it opened (events since then are this session's). */
  readonly #openMarks = new WeakMap<Gpu, CardMark>();
  /** The long non-MMIO work shown as a progress line now (see {@linkcode setWorkProgress}). */
  #work: { what: string; bar: Progress | null } | null = null;
  /**
   * When the first loop of the input being run reported (null: none yet). A
   * job of several loops (checking pfns, page tables, PTEs) draws its line
   * once the job, not each loop, has run a quarter of a second.
   */
  #workStart: number | null = null;

  /** Constructs it (see the class documentation for who does and how). */
  constructor(gpu: Gpu, trace: TraceWriter | null) {
    this.gpu = gpu;
    this.trace = trace;
    this.globals = buildGlobals(gpu);
    this.#adopt(gpu);
    if (isTty()) {
      // Long page-table work without MMIO (a big mapPages, a dump) draws the same line, once
      // it has run a quarter of a second.
      setWorkProgress((done, total, what) => {
        const now = performance.now();
        const start = this.#workStart ??= now;
        if (done >= total) return this.#endLine();
        if (this.#work === null || this.#work.what !== what) {
          this.#endLine();
          this.#work = { what, bar: null };
        }
        const w = this.#work;
        if (w.bar === null) {
          if (now - start < 250) return;
          w.bar = new Progress(`${what} (${total})`, total);
        }
        w.bar.update(done);
      });
    }
  }

  /** Hooks a (new) GPU up: the PRAMIN progress line, and reopen() rebinding this session. */
  #adopt(gpu: Gpu): void {
    this.#openMarks.set(gpu, markOf(gpu));
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
    gpu.reopenHooks = {
      // The `using` values of the input that made them belong to the old card: let them go
      // while it is still open.
      beforeClose: async () => {
        this.trace?.comment(`reopen ${gpu.device.spec}`);
        for (const e of await this.evaluator.disposeAll()) {
          console.error(formatError(e).replace(/^error: /, "note: (releasing a using value) "));
        }
      },
      opened: (next) => this.#rebind(next),
    };
  }

  #rebind(next: Gpu): void {
    this.gpu = next;
    if (this.trace !== null) {
      next.device.bar0.tracer = this.trace.tracer;
      next.device.bar1.tracer = this.trace.tracer;
    }
    this.globals = buildGlobals(next);
    this.#adopt(next);
    if (this.#installed) this.install();
    this.onReopen?.(next);
  }

  /** Clears a progress line an interrupted loop left drawn. */
  endProgress(): void {
    this.#endLine();
    this.#workStart = null;
  }

  /** Clears the line of the loop that ended (the next loop of the same input draws at once). */
  #endLine(): void {
    this.#work?.bar?.done();
    this.#work = null;
  }

  /** Defines the preloaded names on globalThis (where inputs and scripts find them). */
  install(): void {
    installGlobals(this.globals);
    this.#installed = true;
  }

  /**
   * Reopens the same device (after a close, or a lost GPU): `using` values
   * are released, the old GPU is closed (restoring the card; a lost one is
   * only unmapped), the device opened again with the same options, and the
   * preloaded names rebound to the new objects. Declarations made at the
   * prompt stay (objects of the old card in them are dead). Returns the new GPU.
   */
  async reopen(): Promise<Gpu> {
    return await this.gpu.reopen();
  }

  /** Where the card's reports stand now (before an input). */
  cardMark(): CardMark {
    return markOf(this.gpu);
  }

  /**
   * What the card reported since `before` ({@linkcode Session.cardMark}):
   * simulator errors (one line per kind), MMU faults, a lost GPU. One line
   * each, with where the details are.
   */
  cardEvents(before: CardMark): string[] {
    const lines = eventsOf(before);
    // Reopened meanwhile: what the new card reported since it opened, too.
    const opened = this.#openMarks.get(this.gpu);
    if (this.gpu !== before.gpu && opened !== undefined) lines.push(...eventsOf(opened));
    return lines;
  }

  /**
   * Disposes `using` resources (last first), closes the GPU (restoring the
   * PRAMIN window) and the trace. Returns the errors met; idempotent.
   */
  async close(): Promise<unknown[]> {
    if (this.#closed) return [];
    this.#closed = true;
    this.endProgress();
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

function markOf(gpu: Gpu): CardMark {
  const sim = gpu.sim;
  return {
    gpu,
    events: sim?.eventCount ?? 0,
    faults: sim?.mmu.faultCount ?? 0,
    lost: sim?.lost != null,
  };
}

/** What `before.gpu` reported since `before`: one line per kind of error, faults, a loss. */
function eventsOf(before: CardMark): string[] {
  const sim = before.gpu.sim;
  if (sim === null) return [];
  const lines: string[] = [];
  const fresh = Math.min(sim.eventCount - before.events, sim.log.length);
  const errors = fresh <= 0
    ? []
    : sim.log.slice(sim.log.length - fresh).filter((e) => e.severity === "error");
  const byKind = new Map<string, { n: number; first: string }>();
  for (const e of errors) {
    const k = byKind.get(e.kind);
    if (k === undefined) byKind.set(e.kind, { n: 1, first: e.message });
    else k.n++;
  }
  for (const [kind, { n, first }] of byKind) {
    if (kind === "gpu-lost") continue;
    lines.push(`card: ${n === 1 ? "" : `${n}× `}${kind}: ${first} (sim.errors() for all)`);
  }
  const faults = sim.mmu.faultCount - before.faults;
  if (faults > 0) {
    const last = sim.mmu.faults.at(-1)!;
    lines.push(
      `card: ${faults} MMU fault${faults === 1 ? "" : "s"}, last ${last.access} of VA 0x${
        last.va.toString(16)
      }: ${last.reason} (sim.mmu.faults)`,
    );
  }
  if (sim.lost !== null && !before.lost) {
    lines.push(
      `card: the GPU is lost: ${sim.lost}; it reads all ones until reopened (.reopen, or gpu.reopen())`,
    );
  }
  return lines;
}

/**
 * Opens the device (with `trace`, recording every MMIO access from the first
 * BOOT_0 read on: {@linkcode openTraced}) and makes a session of it.
 *
 * @example
 * ```ts
 * const s = await openSession({ device: "sim", readOnly: false, force: false, trace: "s.trace" });
 * ```
 */
export async function openSession(options: OpenSessionOptions): Promise<Session> {
  const { gpu, trace } = await openTraced(options);
  try {
    return new Session(gpu, trace);
  } catch (e) {
    gpu.close();
    trace?.close();
    throw e;
  }
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
const COMMANDS = [".break", ".exit", ".help", ".reopen", ".save"];
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

/**
 * The hint for a misspelt name: "x is not defined" → the preloaded or global
 * name it is probably a typo of; "bar1.bringup is not a function", reading a
 * property of undefined, or `help(ch.map)` getting undefined → the first
 * member of the input (`code`) that does not exist, with the object's members
 * nearest to it (own, prototype getters and methods).
 */
function nearName(e: unknown, code?: string): string | null {
  if (e instanceof ReferenceError) {
    const m = /^([\w$]+) is not defined$/.exec(e.message);
    if (m === null) return null;
    const names = Object.getOwnPropertyNames(globalThis).filter((n) => /^[A-Za-z$][\w$]*$/.test(n));
    const near = didYouMean(m[1], names);
    return near === null ? null : `did you mean ${near}?`;
  }
  const helpUndefined = e instanceof NovaError && e.message.includes(HELP_UNDEFINED);
  if (!(e instanceof TypeError) && !helpUndefined) return null;
  // The member the message names ("a.b.c is not a function"), else every chain in the input.
  const named = e instanceof TypeError ? /^([\w$.]+) is not a function/.exec(e.message)?.[1] : null;
  const chains = named ? [named] : [];
  if (code !== undefined) {
    chains.push(...(code.match(/(?<![\w$.])[A-Za-z_$][\w$]*(?:\.[A-Za-z_$][\w$]*)+/g) ?? []));
  }
  for (const chain of chains) {
    const parts = chain.split(".");
    for (let i = parts.length - 1; i >= 1; i--) {
      const parent = lookup(parts.slice(0, i).join("."));
      if (
        !parent.found || parent.value === null || typeof parent.value !== "object" &&
          typeof parent.value !== "function"
      ) continue;
      const name = parts[i];
      let has = false;
      try {
        has = name in Object(parent.value);
      } catch {
        has = true;
      }
      if (has) break;
      const near = nearMembers(name, memberNames(parent.value));
      const what = parts.slice(0, i + 1).join(".");
      return near.length === 0
        ? `${what} is undefined: help(${parts.slice(0, i).join(".")}) lists its members`
        : `${what} is undefined; did you mean ${near.join(" / ")}?`;
    }
  }
  return null;
}

function errorText(e: unknown, colors: boolean, code?: string): string {
  let near: string | null = null;
  try {
    near = nearName(e, code);
  } catch {
    near = null;
  }
  let text: string;
  if (near !== null && e instanceof NovaError) {
    // The member the input misspelt says more than the error's own advice.
    text = `error: ${e.message}\nhint: ${near}`;
  } else {
    text = formatError(plainer(e)) + (near === null ? "" : `\nhint: ${near}`);
  }
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
  const redirect = splitRedirect(code);
  if (redirect !== null) code = redirect.code;
  for (const note of shiftNotes(code)) console.log(note);
  const g = globalThis as Record<string, unknown>;
  try {
    const r = await session.evaluator.evaluate(code);
    const has = r.hasValue && r.value !== undefined;
    if (has) g._ = r.value;
    if (redirect !== null) {
      console.log(saveValue(has ? r.value : undefined, redirect.file, redirect.append));
    } else if (has) {
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
    const text = errorText(e, options.colors, code);
    if (options.errorsTo === "stdout") console.log(text);
    else console.error(text);
    debugStack(e);
    return false;
  }
}

/**
 * Writes a value's printed form (as the prompt prints it, without colours)
 * to `file` (`append`: after what it holds); returns the line that says so.
 * A string is written as is. Used by `EXPR ;> FILE` and `.save FILE`.
 */
export function saveValue(value: unknown, file: string, append = false): string {
  const text = value === undefined
    ? ""
    : typeof value === "string"
    ? value
    : formatValue(value, { colors: false }) ?? "";
  const body = text === "" || text.endsWith("\n") ? text : text + "\n";
  try {
    Deno.writeTextFileSync(file, body, { append });
  } catch (e) {
    fail(
      "EIO",
      `cannot write ${file}: ${e instanceof Error ? e.message : String(e)}`,
      "check the directory exists and is writable",
    );
  }
  const lines = body === "" ? 0 : body.split("\n").length - 1;
  return `${append ? "appended" : "wrote"} ${lines} line${lines === 1 ? "" : "s"} (${
    formatSize(new TextEncoder().encode(body).length)
  }) to ${file}`;
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
    // gpu.reopen() in the script: scriptGlobals() hands out the new objects too.
    session.onReopen = () => setScriptContext({ globals: session.globals, args });
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
