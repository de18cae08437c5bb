/**
 * `deno task selftest [--device D]`: runs the PRAMIN and BAR1 self-tests on a
 * device, with a progress line per test and a summary table. Exit code 0 when
 * every test passed (or was skipped), 1 otherwise.
 *
 * `--device all` (every NVIDIA card here; every simulator profile when there
 * is none) or a comma-separated list runs one worker per device, all at
 * once, and prints one table: a row per test, a column per device.
 *
 * @module
 */

import {
  DEVICE_HELP,
  DEVICE_OPTIONS,
  formatError,
  formatTable,
  isTty,
  openForCommand,
  openFromFlags,
  reportError,
} from "./cli/common.ts";
import { parseCommand } from "./cli/command.ts";
import { scanGpus } from "./hw/pci.ts";
import { SIM_PROFILES } from "./hw/sim/profiles.ts";
import { runSelfTests, type SelfTestResult, type SelfTestSuite } from "./selftests/selftest.ts";
import { SUITES } from "./selftests/selftest_suites.ts";
import { didYouMean } from "./hw/validate.ts";

const HELP = `deno task selftest [options]

Runs the self-tests (${Object.keys(SUITES).join(", ")}) on a device and prints a summary.
Self-tests only write inside the usable VRAM region; on a card the scratch
range's old contents are restored afterwards.

Options:
${DEVICE_HELP}
                   --device all: every NVIDIA card here (every simulator
                   profile when there is none); sim:all: every simulator
                   profile; a comma-separated list (sim:ga102,sim:gh100,
                   0000:65:00.0): each device in its own worker, in parallel,
                   one summary table. --force also lets the BAR1 tests bind
                   BAR1 on the boot VGA device (the console's physical BAR1
                   is taken for the run and put back at the end)
      --suite S    comma-separated suites to run (default: all)
      --json       print the results as JSON instead of a table`;

/** What one device's run produced (a worker's answer). */
export interface DeviceRun {
  /** The device as asked for. */
  device: string;
  /** Chip and architecture, when it opened. */
  chip?: string;
  /** The results, in order. */
  results: SelfTestResult[];
  /** Why the device could not be tested (it did not open). */
  error?: string;
}

/** Messages of a selftest worker (this module, loaded as a worker). */
type FromWorker =
  | { t: "result"; result: SelfTestResult }
  | { t: "done"; run: DeviceRun };

interface WorkerJob {
  device: string;
  readOnly: boolean;
  force: boolean;
  suites: string[];
}

/** The devices `--device` names: `all`, `sim:all`, or a comma-separated list. */
export function expandDevices(spec: string, options: { sysfsRoot?: string } = {}): string[] {
  const sims = Object.keys(SIM_PROFILES).map((p) => `sim:${p}`);
  const out: string[] = [];
  for (const d of spec.split(",").map((s) => s.trim()).filter((s) => s !== "")) {
    if (d.toLowerCase() === "sim:all") out.push(...sims);
    else if (d.toLowerCase() === "all") {
      let cards: string[] = [];
      try {
        cards = scanGpus(options).gpus.map((g) => g.bdf);
      } catch {
        // no sysfs (not Linux): the simulator only
      }
      out.push(...(cards.length > 0 ? cards : sims));
    } else out.push(d);
  }
  return [...new Set(out)];
}

/** Runs the command; returns the exit code. */
export async function main(args: string[]): Promise<number> {
  const parsed = parseCommand(args, {
    ...DEVICE_OPTIONS,
    suite: { type: "string" },
    json: { type: "boolean", default: false },
  }, HELP);
  if (typeof parsed === "number") return parsed;
  const { values } = parsed;
  const names = values.suite?.split(",") ?? Object.keys(SUITES);
  const suites: SelfTestSuite[] = [];
  for (const n of names) {
    const s = SUITES[n];
    if (s === undefined) {
      const near = didYouMean(n, Object.keys(SUITES));
      console.error(
        `error: unknown suite ${JSON.stringify(n)}; known: ${Object.keys(SUITES).join(", ")}${
          near === null ? "" : `\nhint: did you mean ${near}?`
        }`,
      );
      return 1;
    }
    suites.push(s);
  }
  const spec = values.device;
  if (spec.includes(",") || /^(sim:)?all$/i.test(spec.trim())) {
    const devices = expandDevices(spec);
    if (devices.length === 0) return reportError(new Error(`--device ${spec} names no device`));
    return await many(devices, {
      readOnly: values["read-only"],
      force: values.force,
      suites: names,
      json: values.json,
    });
  }
  const gpu = await openForCommand(values);
  if (typeof gpu === "number") return gpu;
  const total = suites.reduce((n, s) => n + s.tests.length, 0);
  const tty = isTty();
  let index = 0;
  if (!values.json) {
    console.log(
      `self-test on ${gpu.device.spec}: ${gpu.chip.name} (${gpu.chip.architecture}, MMU v${gpu.chip.mmuVersion})`,
    );
  }
  const results = await runSelfTests(gpu, suites, {
    force: values.force,
    onStart(suite, name) {
      index++;
      if (tty && !values.json) {
        Deno.stderr.writeSync(
          new TextEncoder().encode(`[${index}/${total}] ${suite}: ${name} ...`),
        );
      }
    },
    onResult(r) {
      if (values.json) return;
      if (tty) Deno.stderr.writeSync(new TextEncoder().encode("\r\x1b[2K"));
      const mark = r.status === "pass" ? "ok  " : r.status === "skip" ? "skip" : "FAIL";
      console.log(
        `[${index}/${total}] ${mark} ${r.suite}: ${r.name} (${r.ms.toFixed(1)} ms, ${r.mmio} MMIO)${
          r.detail ? `\n       ${r.detail}` : ""
        }`,
      );
    },
  });
  const rss = Deno.memoryUsage().rss;
  gpu.close();
  if (values.json) {
    console.log(JSON.stringify({ device: gpu.device.spec, rss, results }, null, 2));
  } else {
    printSummary(results, rss);
  }
  return results.some((r) => r.status === "fail") ? 1 : 0;
}

/** Every device in its own worker, at once; one table at the end. */
async function many(
  devices: string[],
  options: { readOnly: boolean; force: boolean; suites: string[]; json: boolean },
): Promise<number> {
  const tty = isTty() && !options.json;
  const done = new Map<string, number>();
  const draw = () => {
    if (!tty) return;
    const parts = devices.map((d) => `${d} ${done.get(d) ?? 0}`);
    Deno.stderr.writeSync(new TextEncoder().encode(`\r\x1b[2K${parts.join(" · ")}`));
  };
  if (!options.json) {
    console.log(`self-test on ${devices.length} devices in parallel: ${devices.join(", ")}`);
  }
  const runs = await Promise.all(devices.map((device) =>
    new Promise<DeviceRun>((resolve) => {
      const w = new Worker(import.meta.url, { type: "module" });
      const job: WorkerJob = { device, ...options };
      w.onmessage = (ev: MessageEvent<FromWorker>) => {
        const m = ev.data;
        if (m.t === "result") {
          done.set(device, (done.get(device) ?? 0) + 1);
          draw();
          if (m.result.status === "fail" && !options.json) {
            if (tty) Deno.stderr.writeSync(new TextEncoder().encode("\r\x1b[2K"));
            console.log(`FAIL ${device} ${m.result.suite}: ${m.result.name}: ${m.result.detail}`);
          }
          return;
        }
        w.terminate();
        resolve(m.run);
      };
      w.onerror = (ev) => {
        ev.preventDefault();
        w.terminate();
        resolve({ device, results: [], error: `the worker failed: ${ev.message}` });
      };
      w.postMessage(job);
    })
  ));
  if (tty) Deno.stderr.writeSync(new TextEncoder().encode("\r\x1b[2K"));
  if (options.json) console.log(JSON.stringify({ devices: runs }, null, 2));
  else console.log(summaryTable(runs));
  return runs.some((r) => r.error !== undefined || r.results.some((x) => x.status === "fail"))
    ? 1
    : 0;
}

/**
 * One table for many devices: a row per test, a column per device
 * (PASS / FAIL / skip / - when the device did not run it), totals below and
 * the devices that did not open.
 */
export function summaryTable(runs: DeviceRun[]): string {
  const tests: [string, string][] = [];
  const seen = new Set<string>();
  for (const r of runs) {
    for (const x of r.results) {
      const k = `${x.suite}\0${x.name}`;
      if (!seen.has(k)) {
        seen.add(k);
        tests.push([x.suite, x.name]);
      }
    }
  }
  const cell = (r: DeviceRun, suite: string, name: string) => {
    if (r.error !== undefined) return "ERROR";
    const x = r.results.find((x) => x.suite === suite && x.name === name);
    return x === undefined ? "-" : x.status === "skip" ? "skip" : x.status.toUpperCase();
  };
  const rows = tests.map((
    [suite, name],
  ) => [suite, name, ...runs.map((r) => cell(r, suite, name))]);
  const count = (r: DeviceRun, s: string) => r.results.filter((x) => x.status === s).length;
  rows.push(
    [
      "",
      "passed / failed / skipped",
      ...runs.map((r) =>
        r.error !== undefined
          ? "ERROR"
          : `${count(r, "pass")}/${count(r, "fail")}/${count(r, "skip")}`
      ),
    ],
  );
  const lines = [
    "",
    ...formatTable(["suite", "test", ...runs.map((r) => r.device)], rows, { rule: true }),
  ];
  for (const r of runs) {
    if (r.chip !== undefined) lines.push(`${r.device}: ${r.chip}`);
    if (r.error !== undefined) lines.push(`${r.device}: ${r.error.replace(/\n/g, "; ")}`);
  }
  const failed = runs.filter((r) => r.error !== undefined || count(r, "fail") > 0).length;
  lines.push(
    `\n${runs.length - failed} of ${runs.length} device${runs.length === 1 ? "" : "s"} passed`,
  );
  return lines.join("\n");
}

function printSummary(results: SelfTestResult[], rss: number): void {
  const rows = results.map((
    r,
  ) => [r.suite, r.name, r.status.toUpperCase(), `${r.ms.toFixed(1)}`, `${r.mmio}`]);
  console.log(
    "\n" + formatTable(["suite", "test", "result", "ms", "MMIO"], rows, { rule: true }).join("\n"),
  );
  const count = (s: string) => results.filter((r) => r.status === s).length;
  console.log(
    `\n${count("pass")} passed, ${count("fail")} failed, ${count("skip")} skipped (RSS ${
      (rss / 2 ** 20).toFixed(0)
    } MiB)`,
  );
}

/** The worker side: one device, its results posted one by one, then the whole run. */
function workerMain(): void {
  const scope = self as unknown as {
    postMessage(m: FromWorker): void;
    onmessage: (ev: MessageEvent<WorkerJob>) => void;
  };
  const post = (m: FromWorker) => scope.postMessage(m);
  scope.onmessage = async (ev: MessageEvent<WorkerJob>) => {
    const job = ev.data;
    const run: DeviceRun = { device: job.device, results: [] };
    let gpu;
    try {
      gpu = await openFromFlags(job);
    } catch (e) {
      post({ t: "done", run: { ...run, error: formatError(e).replace(/^error: /, "") } });
      return;
    }
    try {
      run.chip = `${gpu.chip.name} (${gpu.chip.architecture}, MMU v${gpu.chip.mmuVersion})`;
      run.results = await runSelfTests(gpu, job.suites.map((n) => SUITES[n]), {
        force: job.force,
        onResult: (result) => post({ t: "result", result }),
      });
    } catch (e) {
      run.error = formatError(e).replace(/^error: /, "");
    } finally {
      try {
        gpu.close();
      } catch (e) {
        run.error ??= `closing: ${formatError(e).replace(/^error: /, "")}`;
      }
    }
    post({ t: "done", run });
  };
}

if (import.meta.main) {
  if ("WorkerGlobalScope" in globalThis) workerMain();
  else Deno.exit(await main(Deno.args));
}
