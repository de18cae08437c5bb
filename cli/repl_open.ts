/**
 * The device a REPL session opens from its flags, with its trace
 * ({@linkcode openTraced}): the evaluation thread opens it before it loads
 * the rest of the REPL, so it lives here, away from the session's heavier
 * modules (cli/repl_session.ts).
 *
 * @module
 */

import { fail } from "../hw/errors.ts";
import { checkOptions } from "../hw/validate.ts";
import type { MmioAccess } from "../hw/mmio.ts";
import type { TraceWriter } from "../hw/trace.ts";
import type { Gpu } from "../mm/gpu.ts";
import { openFromFlags } from "./common.ts";

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
 * leaves the accesses recorded so far on disk. `{ early: true }` opens it
 * with `openGpuEarly` (mm/gpu.ts): the REPL's worker shows the banner first
 * and loads the rest of the GPU code after it.
 *
 * @example
 * ```ts
 * const { gpu, trace } = await openTraced({ device: "sim", readOnly: false, force: false });
 * ```
 */
export async function openTraced(
  options: OpenSessionOptions,
  how: { early?: boolean } = {},
): Promise<OpenedDevice> {
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
  checkOptions(how, { early: "boolean" }, "openTraced options");
  const early = how.early === true;
  if (options.trace === undefined) {
    return { gpu: await openFromFlags(flags, { early }), trace: null };
  }
  const { TraceWriter, tracePciOf }: typeof import("../hw/trace.ts") = await import(
    new URL("../hw/trace.ts", import.meta.url).href
  );
  const boot: MmioAccess[] = [];
  let writer: TraceWriter | null = null;
  // Before the writer exists (the chip's name goes in its header) accesses wait in `boot`.
  const gpu = await openFromFlags(flags, {
    early,
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
