/**
 * Command-line parsing for `repl.ts`: the device flags and the REPL's own
 * (`--trace`, `--eval`) may come before or after a script path; anything
 * else after the script (and everything after `--`) is the script's. It
 * imports nothing but hw/errors.ts: `repl.ts` parses its arguments with it
 * before it loads anything else, to start the prompt's worker first.
 *
 * @module
 */

import { fail } from "../hw/errors.ts";

/** What `repl.ts` was asked to do. */
export interface ReplArgs {
  /** `sim`, `sim:PROFILE` or a PCI address. */
  device: string;
  /** Map the BARs read-only. */
  readOnly: boolean;
  /** Open a card a kernel driver holds. */
  force: boolean;
  /** Record MMIO to this file. */
  trace?: string;
  /** Stop recording when the trace file would pass this size (`--trace-max 512M`). */
  traceMax?: string;
  /** `--trace-format novamm|mmiotrace` (default novamm). */
  traceFormat?: string;
  /** Expression to evaluate and print. */
  eval?: string;
  /** Script to run (first positional), or `list`. */
  script?: string;
  /** Arguments for the script (or for `list`). */
  args: string[];
  /** `--help` was given (before any script). */
  help: boolean;
  /** `--no-history`: do not read or write the history file. */
  noHistory: boolean;
}

const VALUE_FLAGS: Record<string, "device" | "trace" | "traceMax" | "traceFormat" | "eval"> = {
  "-d": "device",
  "--device": "device",
  "--trace": "trace",
  "--trace-max": "traceMax",
  "--trace-format": "traceFormat",
  "-e": "eval",
  "--eval": "eval",
};
const BOOL_FLAGS: Record<string, "readOnly" | "force" | "help" | "noHistory"> = {
  "--read-only": "readOnly",
  "--force": "force",
  "-h": "help",
  "--help": "help",
  "--no-history": "noHistory",
};

/**
 * Parses `repl.ts` arguments. Unknown options before the script fail with
 * EINVAL; after it they belong to the script. `list` as the first positional
 * hands every later argument to the list command.
 *
 * @example
 * ```ts
 * parseReplArgs(["examples/fill_verify.ts", "--device", "sim:gh100", "--size", "1M"]);
 * // { script: "examples/fill_verify.ts", device: "sim:gh100", args: ["--size", "1M"], ... }
 * ```
 */
export function parseReplArgs(argv: readonly string[]): ReplArgs {
  const out: ReplArgs = {
    device: "sim",
    readOnly: false,
    force: false,
    args: [],
    help: false,
    noHistory: false,
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (out.script === "list") {
      out.args.push(arg);
      continue;
    }
    if (arg === "--") {
      const rest = argv.slice(i + 1);
      if (out.script === undefined && rest.length > 0) {
        out.script = rest[0];
        out.args.push(...rest.slice(1));
      } else {
        out.args.push(...rest);
      }
      break;
    }
    const eq = arg.startsWith("--") ? arg.indexOf("=") : -1;
    const name = eq > 0 ? arg.slice(0, eq) : arg;
    const valueFlag = VALUE_FLAGS[name];
    const boolFlag = BOOL_FLAGS[name];
    if (boolFlag !== undefined && !(boolFlag === "help" && out.script !== undefined)) {
      if (eq > 0) fail("EINVAL", `option ${name} takes no value (got ${JSON.stringify(arg)})`);
      out[boolFlag] = true;
      continue;
    }
    if (valueFlag !== undefined) {
      let value: string | undefined;
      if (eq > 0) value = arg.slice(eq + 1);
      else value = argv[++i];
      if (value === undefined) fail("EINVAL", `option ${name} needs a value`);
      out[valueFlag] = value;
      continue;
    }
    if (out.script !== undefined) {
      out.args.push(arg);
      continue;
    }
    if (arg.startsWith("-") && arg !== "-") {
      fail("EINVAL", `unknown option ${JSON.stringify(arg)}`, "see `deno task repl --help`");
    }
    out.script = arg;
  }
  if (out.eval !== undefined && out.script !== undefined && out.script !== "list") {
    fail("EINVAL", `--eval and a script (${out.script}) do not go together; pick one`);
  }
  return out;
}

/**
 * `--strict` is the REPL's when it comes before a script (or `--`); after a
 * script it is the script's argument. Returns the arguments without it.
 *
 * @example
 * ```ts
 * takeStrict(["--strict", "--eval", "1"]); // [["--eval", "1"], true]
 * takeStrict(["s.ts", "--strict"]); // [["s.ts", "--strict"], false]: the script's
 * ```
 */
export function takeStrict(argv: string[]): [string[], boolean] {
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === "--") break;
    if (argv[i] !== "--strict") continue;
    let before: ReplArgs;
    try {
      before = parseReplArgs(argv.slice(0, i));
    } catch {
      break; // a flag before it wants a value: leave the arguments as they are
    }
    if (before.script !== undefined) break;
    return [[...argv.slice(0, i), ...argv.slice(i + 1)], true];
  }
  return [argv, false];
}

const EARLY_PREFIX = "novamm-repl ";

/** The device an early worker opens before the UI thread asks (see {@linkcode earlyWorkerName}). */
export interface EarlyOpen {
  /** Device spec. */
  device: string;
  /** Map the BARs read-only. */
  readOnly: boolean;
  /** Open a card a kernel driver holds. */
  force: boolean;
}

/**
 * The name repl.ts gives the prompt's worker when it starts it, before anything else loads:
 * it carries the device flags, so the worker opens the device while the UI thread is still
 * loading (cli/repl_worker.ts reads it back with {@linkcode earlyOpenOf}). Only without
 * `--trace` (whose options the UI thread checks first); otherwise just a name.
 *
 * @example
 * ```ts
 * const name = earlyWorkerName(parseReplArgs(["--device", "sim:gh100"]));
 * earlyOpenOf(name); // { device: "sim:gh100", readOnly: false, force: false }
 * ```
 */
export function earlyWorkerName(args: ReplArgs): string {
  if (args.trace !== undefined || args.traceMax !== undefined || args.traceFormat !== undefined) {
    return EARLY_PREFIX.trim();
  }
  const open: EarlyOpen = { device: args.device, readOnly: args.readOnly, force: args.force };
  return EARLY_PREFIX + JSON.stringify(open);
}

/** The device flags {@linkcode earlyWorkerName} put in a worker's name, or null. */
export function earlyOpenOf(name: string): EarlyOpen | null {
  if (!name.startsWith(EARLY_PREFIX)) return null;
  try {
    const o = JSON.parse(name.slice(EARLY_PREFIX.length));
    return typeof o?.device === "string" && typeof o.readOnly === "boolean" &&
        typeof o.force === "boolean"
      ? { device: o.device, readOnly: o.readOnly, force: o.force }
      : null;
  } catch {
    return null;
  }
}
