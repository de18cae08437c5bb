/**
 * Command-line parsing for `repl.ts`: the device flags and the REPL's own
 * (`--trace`, `--eval`) may come before or after a script path; anything
 * else after the script (and everything after `--`) is the script's. And
 * the device those flags open, with its trace ({@linkcode openTraced}): the
 * evaluation thread opens it before it loads the rest of the REPL, so it
 * lives here, away from the session's heavier modules (cli/repl_session.ts).
 *
 * @module
 */

import { fail } from "../hw/errors.ts";
import { checkOptions } from "../hw/validate.ts";
import type { MmioAccess } from "../hw/mmio.ts";
import type { TraceWriter } from "../hw/trace.ts";
import type { Gpu } from "../mm/gpu.ts";
import { openFromFlags } from "./common.ts";

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

/** What a REPL session opens (the device flags, `--trace` and `--trace-max`). */
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
  /** Trace file format: novamm's (default) or the kernel's mmiotrace text. */
  traceFormat?: "novamm" | "mmiotrace";
}

/** A device opened for a session, and the trace recording its accesses. */
export interface OpenedDevice {
  /** The GPU. */
  gpu: Gpu;
  /** The trace being written, or null (no `trace` option). */
  trace: TraceWriter | null;
}

/**
 * Opens the device and, with `trace`, records every MMIO access from the
 * first BOOT_0 read on (the trace code loads only then). A crash still
 * leaves the accesses recorded so far on disk.
 *
 * @example
 * ```ts
 * const { gpu, trace } = await openTraced({ device: "sim", readOnly: false, force: false });
 * ```
 */
export async function openTraced(options: OpenSessionOptions): Promise<OpenedDevice> {
  checkOptions(options, {
    device: "string",
    readOnly: "boolean",
    force: "boolean",
    trace: "string",
    traceMax: "number",
    traceFormat: "string",
  }, "session options");
  if (
    options.traceFormat !== undefined && options.traceFormat !== "novamm" &&
    options.traceFormat !== "mmiotrace"
  ) {
    fail(
      "EINVAL",
      `trace format ${JSON.stringify(options.traceFormat)} is not novamm or mmiotrace`,
    );
  }
  const flags = { device: options.device, readOnly: options.readOnly, force: options.force };
  if (options.trace === undefined) return { gpu: await openFromFlags(flags), trace: null };
  const { TraceWriter, tracePciOf }: typeof import("../hw/trace.ts") = await import(
    new URL("../hw/trace.ts", import.meta.url).href
  );
  const boot: MmioAccess[] = [];
  let writer: TraceWriter | null = null;
  // Before the writer exists (the chip's name goes in its header) accesses wait in `boot`.
  const gpu = await openFromFlags(flags, {
    tracer: (a) => writer === null ? boot.push(a) : writer.record(a),
  });
  try {
    writer = new TraceWriter(options.trace, {
      device: gpu.device.spec,
      chip: gpu.chip.name,
      start: "open",
    }, {
      ...(options.traceMax === undefined ? {} : { maxBytes: options.traceMax }),
      ...(options.traceFormat === "mmiotrace"
        ? { format: "mmiotrace" as const, pci: tracePciOf(gpu.device) }
        : {}),
      onLimit: (message) => console.error(`note: ${message}`),
    });
  } catch (e) {
    gpu.close();
    throw e;
  }
  const w = writer;
  for (const a of boot) w.record(a);
  gpu.device.bar0.tracer = w.tracer;
  gpu.device.bar1.tracer = w.tracer;
  globalThis.addEventListener("unload", () => w.close());
  return { gpu, trace: w };
}
