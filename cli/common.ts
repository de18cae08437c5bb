/**
 * What every command shares: device flags, opening, one-line errors with a
 * hint, and progress output that shows only on a terminal.
 *
 * @module
 */

import { SIM_PROFILES } from "../hw/sim/profiles.ts";
import { fail, NovaError } from "../hw/errors.ts";
import type { Gpu } from "../mm/gpu.ts";
import type { MmioTracer } from "../hw/mmio.ts";
import { didYouMean } from "../hw/validate.ts";

/** The device flags every command takes. */
export interface DeviceFlags {
  /** `sim`, `sim:PROFILE`, `snap:FILE` or a PCI address. */
  device: string;
  /** Map BARs read-only. */
  readOnly: boolean;
  /** Open a card a kernel driver is bound to. */
  force: boolean;
}

/** parseArgs option specs for the device flags. */
export const DEVICE_OPTIONS = {
  device: { type: "string", short: "d", default: "sim" },
  "read-only": { type: "boolean", default: false },
  force: { type: "boolean", default: false },
  help: { type: "boolean", short: "h", default: false },
} as const;

/** Help text lines for the device flags. */
export const DEVICE_HELP =
  `  -d, --device D   sim:PROFILE[:STATE][?KNOB=V&...] or a PCI address such as
                   0000:65:00.0 (default: sim = sim:ga102, a bare card).
                   Profiles: ${Object.keys(SIM_PROFILES).join(", ")}. States: bare (no
                   driver ever bound: BAR1 physical), gsp (GSP-RM's BAR1 tables
                   and report), unloaded (after the nvidia driver: WPR2 still
                   set), booting (GFW boot still running), vga (bare, and the
                   boot VGA device; chips with a display). Knobs (facts §14
                   CONFLICTs): bar1alias=shared|separate (MMU v2),
                   lowbind=immediate|high, v3bit10=ignored|rm (MMU v3).
                   E.g. sim:gh100, sim:ga102:gsp, sim:gh100?lowbind=high
                   (profile and state in any case: sim:GH100 is sim:gh100)
                   snap:FILE reopens a snapshot offline, read-only
                   (snap:FILE?scratch: writes go to an in-memory copy)
      --read-only  map the BARs read-only; every write is refused
      --force      open a card even though a kernel GPU driver is bound to it
  -h, --help       this text`;

/**
 * Opens the GPU the flags name. The GPU code loads here, on first use, so the commands that
 * import this module only for their flags and errors start without it. (The specifier is
 * computed: Deno reads every module a literal `import("...")` names, and all they import,
 * before the importing program starts.) `early`: open with `openGpuEarly` (the caller loads
 * the rest of the code with `loadGpuModules` once it has shown the GPU).
 */
export async function openFromFlags(
  flags: DeviceFlags,
  options: { tracer?: MmioTracer; early?: boolean } = {},
): Promise<Gpu> {
  const { openGpu, openGpuEarly }: typeof import("../mm/gpu.ts") = await import(
    new URL("../mm/gpu.ts", import.meta.url).href
  );
  return await (options.early === true ? openGpuEarly : openGpu)({
    device: flags.device,
    readOnly: flags.readOnly,
    force: flags.force,
    tracer: options.tracer,
  });
}

/**
 * A command's open from its parsed `--device`/`--read-only`/`--force` values:
 * the GPU, or the exit code after the error was reported as one line.
 */
export async function openForCommand(
  values: { device: string; "read-only": boolean; force: boolean },
): Promise<Gpu | number> {
  try {
    return await openFromFlags({
      device: values.device,
      readOnly: values["read-only"],
      force: values.force,
    });
  } catch (e) {
    return reportError(e);
  }
}

/**
 * A command's Ctrl-C as an abort signal while the guard lives (`using ctrlC = sigintAbort()`):
 * SIGINT aborts `ctrlC.signal` instead of ending the process, so the command stops at its next
 * check and puts the card back. Where signals cannot be listened to, Ctrl-C ends the process
 * as usual.
 *
 * @example
 * ```ts
 * using ctrlC = sigintAbort();
 * ctrlC.signal.aborted; // false until Ctrl-C
 * ```
 */
export function sigintAbort(): { signal: AbortSignal; [Symbol.dispose](): void } {
  const abort = new AbortController();
  const onSigint = () => abort.abort();
  let listening = false;
  try {
    Deno.addSignalListener("SIGINT", onSigint);
    listening = true;
  } catch {
    // No signals here (Windows without a console): Ctrl-C ends the process as usual.
  }
  return {
    signal: abort.signal,
    [Symbol.dispose]: () => {
      if (listening) Deno.removeSignalListener("SIGINT", onSigint);
      listening = false;
    },
  };
}

/** Closes a command's GPU; an error closing it is reported, not thrown (the exit code stands). */
export function closeForCommand(gpu: Gpu): void {
  try {
    gpu.close();
  } catch (e) {
    reportError(e);
  }
}

/** Hints for errors that carry none of their own. */
function defaultHint(e: NovaError): string | undefined {
  switch (e.code) {
    case "ENODEV":
      // A closed, destroyed or unmapped object needs no advice about devices.
      if (/has been (unmapped|destroyed|closed|freed)|is closed/.test(e.message)) return undefined;
      return "run `deno task list` to see the GPUs here, or use --device sim";
    case "EPERM":
    case "EACCES":
      return "run as root, or use --device sim";
    case "EBUSY":
      // Only the driver-bound EBUSY; others (an open PRAMIN window) have their own remedy.
      return /driver/.test(e.message)
        ? "unbind the kernel driver, or pass --force (with --read-only) to look anyway"
        : undefined;
    default:
      return undefined;
  }
}

/**
 * The long options of each command, for the did-you-mean of an unknown flag
 * (the command is the main module's file name; any other gets them all).
 */
export const COMMAND_FLAGS: Readonly<Record<string, readonly string[]>> = {
  "repl.ts": [
    "device",
    "trace",
    "trace-max",
    "trace-format",
    "eval",
    "read-only",
    "force",
    "help",
    "no-history",
  ],
  "selftest.ts": [...Object.keys(DEVICE_OPTIONS), "suite", "json"],
  "probe.ts": [...Object.keys(DEVICE_OPTIONS), "json"],
  "report.ts": [...Object.keys(DEVICE_OPTIONS), "output", "bring-up", "no-registers"],
  "snapshot.ts": [...Object.keys(DEVICE_OPTIONS), "output", "range", "pdb", "max-bytes", "comment"],
  "diff.ts": ["json", "max-items", "help"],
  "memtest.ts": [
    ...Object.keys(DEVICE_OPTIONS),
    "range",
    "patterns",
    "seed",
    "chunk",
    "max-errors",
    "path",
    "read-back",
    "json",
  ],
};

/**
 * "did you mean --device?" for an unknown long option `flag` of `command`
 * (a main module's file name; by default this process's), or null.
 *
 * @example
 * ```ts
 * flagSuggestion("--devcie", "selftest.ts"); // "--device"
 * ```
 */
export function flagSuggestion(flag: string, command?: string): string | null {
  let main = command;
  if (main === undefined) {
    try {
      main = Deno.mainModule.split("/").pop();
    } catch {
      main = undefined;
    }
  }
  const known = COMMAND_FLAGS[main ?? ""] ?? [...new Set(Object.values(COMMAND_FLAGS).flat())];
  const near = didYouMean(flag.replace(/^-+/, "").split("=")[0], known);
  return near === null ? null : `--${near}`;
}

/** The unknown option a parse error names (parseArgs' or repl.ts's own), or null. */
function unknownFlag(message: string): string | null {
  const m = /^Unknown option '(--?[^']+)'/.exec(message) ??
    /unknown option "(--[^"]+)"/.exec(message);
  return m === null || !m[1].startsWith("--") ? null : m[1];
}

/** Formats an error as one line plus, when known, a hint line. */
export function formatError(e: unknown): string {
  if (e instanceof NovaError) {
    // An empty hint means "none": a closed object needs no device advice.
    let hint = e.hint ?? defaultHint(e);
    const flag = e.code === "EINVAL" ? unknownFlag(e.message) : null;
    const near = flag === null ? null : flagSuggestion(flag);
    if (near !== null) hint = `did you mean ${near}? (${hint ?? "--help lists the options"})`;
    return `error: ${e.message}${hint === undefined || hint === "" ? "" : `\nhint: ${hint}`}`;
  }
  if (e instanceof Error && String((e as { code?: unknown }).code).startsWith("ERR_PARSE_ARGS")) {
    // node:util parseArgs: a usage mistake, not a crash.
    const flag = unknownFlag(e.message);
    const near = flag === null ? null : flagSuggestion(flag);
    return `error: ${e.message}\nhint: ${
      near === null ? "" : `did you mean ${near}? `
    }run the command with --help for its options`;
  }
  if (e instanceof Error) return `error: ${e.name}: ${e.message}`;
  return `error: ${String(e)}`;
}

/** Prints an error the CLI way and returns exit code 1. */
export function reportError(e: unknown): number {
  console.error(formatError(e));
  return 1;
}

/** True when stderr is a terminal (progress is drawn only then). */
export function isTty(): boolean {
  try {
    return Deno.stderr.isTerminal();
  } catch {
    return false;
  }
}

/** True when `stream` is a terminal and colours are not turned off (NO_COLOR). */
export function colorsOn(stream: { isTerminal(): boolean }): boolean {
  try {
    return stream.isTerminal() && !Deno.noColor;
  } catch {
    return false;
  }
}

/** Colours a {@linkcode formatError} text for a terminal: `error:` red, `hint:` cyan. */
export function colorError(text: string): string {
  return text.replace(/^error:/, "\x1b[31merror:\x1b[39m").replace(
    /\nhint:/,
    "\n\x1b[36mhint:\x1b[39m",
  );
}

const encoder = new TextEncoder();

/**
 * A progress line on stderr for long operations; silent when stderr is not a
 * terminal. Redraws at most every 100 ms.
 */
export class Progress {
  readonly #label: string;
  readonly #total: number;
  readonly #enabled: boolean;
  #last = 0;
  #t0 = performance.now();

  /** A progress line for `total` units of `label`; drawn only on a terminal unless `enabled` says. */
  constructor(label: string, total: number, options: { enabled?: boolean } = {}) {
    this.#label = label;
    this.#total = total;
    this.#enabled = options.enabled ?? isTty();
  }

  /** Reports `done` of `total`. */
  update(done: number): void {
    if (!this.#enabled) return;
    const now = performance.now();
    if (now - this.#last < 100 && done < this.#total) return;
    this.#last = now;
    const frac = this.#total === 0 ? 1 : Math.min(1, done / this.#total);
    const width = 30;
    const filled = Math.round(frac * width);
    const bar = "#".repeat(filled) + "-".repeat(width - filled);
    const secs = ((now - this.#t0) / 1000).toFixed(1);
    Deno.stderr.writeSync(
      encoder.encode(`\r${this.#label} [${bar}] ${(frac * 100).toFixed(0).padStart(3)}% ${secs}s`),
    );
  }

  /** Clears the line. */
  done(): void {
    if (this.#enabled) Deno.stderr.writeSync(encoder.encode("\r\x1b[2K"));
  }
}

/** Lays out a table in columns two spaces apart; `rule` adds a dashed line under the head. */
export function formatTable(
  head: string[],
  rows: string[][],
  options: { rule?: boolean } = {},
): string[] {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i])).join("  ").trimEnd();
  const rule = options.rule ? [widths.map((w) => "-".repeat(w)).join("  ")] : [];
  return [line(head), ...rule, ...rows.map(line)];
}

/**
 * A size as people type it: `4096`, `0x1000`, `64K`, `512M`, `4G` (binary
 * units); EINVAL naming the flag otherwise.
 *
 * @example
 * ```ts
 * parseSize("512M", "--trace-max"); // 536870912
 * ```
 */
export function parseSize(text: string, what: string): number {
  const m = /^(0x[0-9a-f]+|\d+)([kmgt]?)(i?b)?$/i.exec(text.trim());
  if (m === null) {
    fail("EINVAL", `${what} ${JSON.stringify(text)} is not a size (e.g. 4096, 64K, 512M, 4G)`);
  }
  const unit = {
    "": 1,
    k: 2 ** 10,
    m: 2 ** 20,
    g: 2 ** 30,
    t: 2 ** 40,
  }[m[2].toLowerCase() as "" | "k"]!;
  const n = Number(m[1]) * unit;
  if (!Number.isSafeInteger(n)) {
    fail("EINVAL", `${what} ${JSON.stringify(text)} is past 2^53 bytes`);
  }
  return n;
}
