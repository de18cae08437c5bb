/**
 * `deno task replay FILE [--device sim:PROFILE]`: plays an MMIO trace
 * (recorded with `deno task repl --trace FILE`) against a fresh simulator:
 * every write is performed, every read is performed and compared. Reports
 * the first read that returns something else (exit 1) or success (exit 0).
 * With `--decode` it prints the trace instead, each access with its register
 * and field names and the decoded value (hw/regdb/trace_decode.ts); it also
 * takes a Linux mmiotrace log (hw/snap/mmiotrace.ts), whose page-table writes
 * it marks with the VA they map.
 *
 * @module
 */

import { reportError } from "./cli/common.ts";
import { parseCommand } from "./cli/command.ts";
import { parseSimSpec } from "./hw/device.ts";
import { fail, hex } from "./hw/errors.ts";
import { createSimGpu } from "./hw/sim/gpu.ts";
import {
  DEFAULT_SIM_STATE,
  SIM_PROFILES,
  SIM_STATES,
  type SimCardState,
} from "./hw/sim/profiles.ts";
import {
  formatAccess,
  parseTraceHeader,
  parseTraceLine,
  readLines,
  replayTraceFile,
  type TraceEntry,
} from "./hw/trace.ts";
import {
  createTraceDecoder,
  decodeMmiotraceFile,
  isData,
  traceChip,
} from "./hw/regdb/trace_decode.ts";
import { isMmiotrace } from "./hw/snap/mmiotrace.ts";

const HELP = `deno task replay FILE [options]

Replays an MMIO trace recorded with \`deno task repl --trace FILE\` against a
fresh simulator, from boot: performs every write, performs every read and
compares its value. Prints the first divergence (line, access, expected and
actual value, and the REPL input that made it) and exits 1, or prints the
counts and exits 0. The trace format is documented in hw/trace.ts.

Options:
  -d, --device D   simulator to replay on: sim, ${
  Object.keys(SIM_PROFILES).map((p) => `sim:${p}`).join(", ")
},
                   each with an optional card state :${SIM_STATES.join(", :")}
                   (default: the device named in the trace header; a
                   \`booting\` trace depends on timing and may diverge)
      --decode     print the trace instead of replaying it: each access with
                   its register and field names and decoded value (from
                   NVIDIA's headers), PRAMIN accesses as VRAM addresses.
                   Also reads Linux mmiotrace logs (VERSION 20070824, any
                   driver): page-table writes are marked with the address
                   space, level, index and VA they map
      --chip C     with --decode: the chip (default: the trace's header or
                   its BOOT_0/BOOT_42 reads)
      --registers  with --decode: register accesses only (no PRAMIN/BAR1 data)
  -h, --help       this text`;

/** \`--decode\`: prints every access of \`path\` with names (streamed: any size). */
async function decodeFile(
  path: string,
  chip: string | undefined,
  registersOnly: boolean,
): Promise<number> {
  const lines = readLines(path);
  const first = lines.next();
  if (!first.done && isMmiotrace(first.value)) {
    lines.return(undefined);
    return await decodeKernelTrace(path, chip, registersOnly);
  }
  const header = parseTraceHeader(first.done ? "" : first.value, { path });
  // The chip: --chip, the header, else the BOOT reads among the first accesses.
  const head: TraceEntry[] = [];
  const buffered: string[] = [];
  let n = 1;
  const key = chip ?? (() => {
    try {
      return traceChip(header, []);
    } catch {
      for (const raw of lines) {
        buffered.push(raw);
        const p = parseTraceLine(raw, n + buffered.length, { path });
        if (p.access !== undefined) head.push(p.access);
        if (head.length >= 2) break;
      }
      return traceChip(header, head);
    }
  })();
  const dec = await createTraceDecoder(key);
  console.log(`# ${path}: device=${header.device}, decoded as ${dec.db.family}`);
  let footer = false;
  let accesses = 0;
  const out: string[] = [];
  const flush = () => {
    if (out.length > 0) console.log(out.join("\n"));
    out.length = 0;
  };
  for (
    const raw of (function* () {
      yield* buffered;
      yield* lines;
    })()
  ) {
    n++;
    const p = parseTraceLine(raw, n, { path });
    if (p.footer !== undefined) {
      footer = true;
      out.push(`# end accesses=${p.footer.accesses}`);
    } else if (p.comment !== undefined) {
      out.push(`# ${p.comment}`);
    } else if (p.access !== undefined) {
      accesses++;
      const d = dec.decode(p.access);
      if (!registersOnly || !isData(d)) {
        out.push(`${String(p.access.line).padStart(6)}  ${d.text}`);
      }
    }
    if (out.length >= 4096) flush();
  }
  flush();
  if (!footer) {
    console.log(`# no footer after ${accesses} accesses: the recording was cut short`);
    return 1;
  }
  return 0;
}

/** `--decode` of a Linux mmiotrace log: names, and page-table writes with their VA. */
async function decodeKernelTrace(
  path: string,
  chip: string | undefined,
  registersOnly: boolean,
): Promise<number> {
  const out: string[] = [];
  for await (
    const line of decodeMmiotraceFile(path, {
      ...(chip === undefined ? {} : { chip }),
      registersOnly,
    })
  ) {
    out.push(line);
    if (out.length >= 4096) {
      console.log(out.join("\n"));
      out.length = 0;
    }
  }
  if (out.length > 0) console.log(out.join("\n"));
  return 0;
}

/** Resolves the simulator profile and card state: the flag, else the trace header's device. */
function profileFor(
  flag: string | undefined,
  recorded: string,
): { profile?: string; state?: SimCardState } {
  const options = parseSimSpec(flag ?? recorded);
  if (options === null) {
    fail(
      "EINVAL",
      flag === undefined
        ? `the trace was recorded on ${recorded}, not a simulator`
        : `replay runs on the simulator only, not ${JSON.stringify(flag)}`,
      "pass --device sim:PROFILE (e.g. sim:ga102) to replay it on a simulated chip",
    );
  }
  return options;
}

/** Runs the command; returns the exit code. */
export async function main(args: string[]): Promise<number> {
  try {
    const parsed = parseCommand(
      args,
      {
        device: { type: "string", short: "d" },
        decode: { type: "boolean", default: false },
        chip: { type: "string" },
        registers: { type: "boolean", default: false },
      },
      HELP,
      { positionals: true },
    );
    if (typeof parsed === "number") return parsed;
    const { values, positionals } = parsed;
    if (positionals.length !== 1) {
      fail(
        "EINVAL",
        positionals.length === 0
          ? "no trace file given"
          : `one trace file at a time (got ${positionals.length})`,
        "usage: deno task replay FILE [--device sim:PROFILE]",
      );
    }
    const path = positionals[0];
    if (values.decode) return await decodeFile(path, values.chip, values.registers);
    if (values.chip !== undefined || values.registers) {
      fail("EINVAL", "--chip and --registers go with --decode");
    }
    const head = readLines(path);
    const first = head.next();
    head.return(undefined); // closes the file
    if (!first.done && isMmiotrace(first.value)) {
      fail(
        "EINVAL",
        `${path} is a Linux mmiotrace log, not a novamm trace: replay plays novamm's own format`,
        "list it with names: deno task replay --decode FILE",
      );
    }
    let sim: ReturnType<typeof createSimGpu> | null = null;
    const t0 = performance.now();
    // Streamed twice (checked, then played): a trace of any size replays in bounded memory.
    const r = replayTraceFile(path, (header) => {
      sim = createSimGpu(profileFor(values.device, header.device));
      return { bar0: sim.bar0, bar1: sim.bar1 };
    });
    sim = sim!;
    const ms = performance.now() - t0;
    const where = `sim:${sim.profile.name}${
      sim.boot.state === DEFAULT_SIM_STATE ? "" : `:${sim.boot.state}`
    }`;
    if (r.divergence !== undefined) {
      const { entry, got, input } = r.divergence;
      const digits = entry.width * 2;
      console.log(
        [
          `replay diverged at ${path}:${entry.line}: ${formatAccess(entry)}`,
          `  expected ${hex(entry.value, digits)}, got ${hex(got, digits)} on ${where}` +
          ` (after ${r.reads - 1} matching reads and ${r.writes} writes)`,
          ...(input === undefined ? [] : [`  made by REPL input: ${input}`]),
        ].join("\n"),
      );
      return 1;
    }
    const errors = sim.errors();
    console.log(
      `replay ok: ${r.reads + r.writes} accesses (${r.reads} reads matched, ${r.writes} writes) ` +
        `on ${where} in ${ms.toFixed(0)} ms`,
    );
    if (r.footer.limit !== null) {
      console.log(
        `  the recording stopped at its size limit (${r.footer.limit} bytes): this was the session's start`,
      );
    }
    if (errors.length > 0) {
      console.log(
        `  the simulator noted ${errors.length} driver errors; first: ${errors[0].message}`,
      );
    }
    return 0;
  } catch (e) {
    return reportError(e);
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
