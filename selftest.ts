/**
 * `deno task selftest [--device D]`: runs the PRAMIN and BAR1 self-tests on a
 * device, with a progress line per test and a summary table. Exit code 0 when
 * every test passed (or was skipped), 1 otherwise.
 *
 * @module
 */

import { parseArgs } from "node:util";
import {
  DEVICE_HELP,
  DEVICE_OPTIONS,
  formatTable,
  isTty,
  openFromFlags,
  reportError,
} from "./cli/common.ts";
import { runSelfTests, type SelfTestResult, type SelfTestSuite } from "./selftests/selftest.ts";
import { SUITES } from "./selftests/selftest_suites.ts";

const HELP = `deno task selftest [options]

Runs the self-tests (${Object.keys(SUITES).join(", ")}) on a device and prints a summary.
Self-tests only write inside the usable VRAM region; on a card the scratch
range's old contents are restored afterwards.

Options:
${DEVICE_HELP}
      --suite S    comma-separated suites to run (default: all)
      --json       print the results as JSON instead of a table`;

/** Runs the command; returns the exit code. */
export async function main(args: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args,
      options: {
        ...DEVICE_OPTIONS,
        suite: { type: "string" },
        json: { type: "boolean", default: false },
      },
      strict: true,
    }));
  } catch (e) {
    return reportError(e);
  }
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  const names = values.suite?.split(",") ?? Object.keys(SUITES);
  const suites: SelfTestSuite[] = [];
  for (const n of names) {
    const s = SUITES[n];
    if (s === undefined) {
      console.error(
        `error: unknown suite ${JSON.stringify(n)}; known: ${Object.keys(SUITES).join(", ")}`,
      );
      return 1;
    }
    suites.push(s);
  }
  let gpu;
  try {
    gpu = await openFromFlags({
      device: values.device,
      readOnly: values["read-only"],
      force: values.force,
    });
  } catch (e) {
    return reportError(e);
  }
  const total = suites.reduce((n, s) => n + s.tests.length, 0);
  const tty = isTty();
  let index = 0;
  if (!values.json) {
    console.log(
      `self-test on ${gpu.device.spec}: ${gpu.chip.name} (${gpu.chip.architecture}, MMU v${gpu.chip.mmuVersion})`,
    );
  }
  const results = await runSelfTests(gpu, suites, {
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

if (import.meta.main) Deno.exit(await main(Deno.args));
