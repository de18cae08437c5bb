/**
 * `deno task memtest [--device D] [--range R] [--patterns P] [--json]`: a
 * VRAM memory test (see `mm/memtest.ts`). Prints every failing address with
 * expected/found/XOR, the failing bits per lane and per 1 MiB region, the
 * path used and a summary line; a progress line with GB/s on a terminal.
 * Ctrl-C stops at the next block with everything unmapped and freed and
 * prints what was found so far. Exit code 0 when no error was found, 1 when
 * one was (or the command failed), 130 when interrupted.
 *
 * @module
 */

import {
  closeForCommand,
  DEVICE_HELP,
  DEVICE_OPTIONS,
  isTty,
  openForCommand,
  parseSize,
  reportError,
  sigintAbort,
} from "./cli/common.ts";
import { parseCommand } from "./cli/command.ts";
import { fail, formatSize } from "./hw/errors.ts";
import {
  formatMemtestReport,
  memtest,
  MEMTEST_PATTERNS,
  MEMTEST_QUICK,
  type MemtestPattern,
  type MemtestProgress,
  type MemtestTarget,
} from "./mm/memtest.ts";

const HELP = `deno task memtest [options]

Tests VRAM: writes each pattern over the target, reads it back and reports
every failing word. Default target: all free usable VRAM, in chunks (each
allocated, mapped through BAR1, tested, unmapped and freed).

Options:
${DEVICE_HELP}
  -r, --range R      VRAM to test instead: START+SIZE or START:END, e.g.
                     0x10000000+256M or 0x10000000:0x20000000 (4 KiB aligned)
  -p, --patterns P   comma-separated patterns, "quick" (${MEMTEST_QUICK.join(",")})
                     or "all" (default): ${MEMTEST_PATTERNS.join(", ")}
      --seed N       seed of the random pattern (default 1)
      --chunk SIZE   bytes mapped at a time, a power of two 1M..1G (default 64M)
      --max-errors N stop after N failing words (default 1000)
      --path P       auto (default: BAR1, else PRAMIN), bar1, or pramin
      --read-back P  pramin (default: defeats CPU caching) or bar1
      --json         print the result as JSON`;

/** Parses `--range`: `START+SIZE` or `START:END` (sizes as parseSize takes them). */
export function parseRange(text: string): { start: number; size: number } {
  const plus = text.indexOf("+");
  const colon = text.indexOf(":");
  if (plus > 0) {
    return {
      start: parseSize(text.slice(0, plus), "--range start"),
      size: parseSize(text.slice(plus + 1), "--range size"),
    };
  }
  if (colon > 0) {
    const start = parseSize(text.slice(0, colon), "--range start");
    const end = parseSize(text.slice(colon + 1), "--range end");
    if (end <= start) {
      fail("EINVAL", `--range ${JSON.stringify(text)}: the end is not above the start`);
    }
    return { start, size: end - start };
  }
  return fail(
    "EINVAL",
    `--range ${JSON.stringify(text)} is not START+SIZE or START:END (e.g. 0x10000000+256M)`,
  );
}

/** Parses `--patterns`: names, `quick` or `all`. */
export function parsePatterns(text: string): MemtestPattern[] {
  if (text === "all") return [...MEMTEST_PATTERNS];
  if (text === "quick") return [...MEMTEST_QUICK];
  const names = text.split(",").map((s) => s.trim()).filter((s) => s !== "");
  for (const n of names) {
    if (!(MEMTEST_PATTERNS as readonly string[]).includes(n)) {
      fail(
        "EINVAL",
        `unknown pattern ${JSON.stringify(n)}; known: ${MEMTEST_PATTERNS.join(", ")}, quick, all`,
      );
    }
  }
  if (names.length === 0) fail("EINVAL", "--patterns names no pattern");
  return names as MemtestPattern[];
}

function parseCount(text: string | undefined, what: string): number | undefined {
  if (text === undefined) return undefined;
  const n = Number(text);
  if (!/^(0x[0-9a-f]+|\d+)$/i.test(text.trim()) || !Number.isSafeInteger(n)) {
    fail("EINVAL", `${what} ${JSON.stringify(text)} is not a non-negative integer`);
  }
  return n;
}

const encoder = new TextEncoder();

/** A progress line with throughput; redrawn at most every 100 ms, only on a terminal. */
function progressLine(enabled: boolean): { update(p: MemtestProgress): void; done(): void } {
  let last = 0;
  return {
    update(p) {
      if (!enabled) return;
      const now = performance.now();
      if (now - last < 100 && p.done < p.total) return;
      last = now;
      const frac = p.total === 0 ? 1 : Math.min(1, p.done / p.total);
      const filled = Math.round(frac * 30);
      Deno.stderr.writeSync(encoder.encode(
        `\r\x1b[2K${p.pattern.padEnd(12)} [${"#".repeat(filled)}${"-".repeat(30 - filled)}] ${
          (frac * 100).toFixed(0).padStart(3)
        }% ${(p.elapsedMs / 1000).toFixed(1)}s ${
          (p.bytesPerSecond / 1e9).toFixed(2)
        } GB/s ${p.errors} errors`,
      ));
    },
    done() {
      if (enabled) Deno.stderr.writeSync(encoder.encode("\r\x1b[2K"));
    },
  };
}

/** Runs the command; returns the exit code. */
export async function main(args: string[]): Promise<number> {
  const parsed = parseCommand(args, {
    ...DEVICE_OPTIONS,
    range: { type: "string", short: "r" },
    patterns: { type: "string", short: "p" },
    seed: { type: "string" },
    chunk: { type: "string" },
    "max-errors": { type: "string" },
    path: { type: "string" },
    "read-back": { type: "string" },
    json: { type: "boolean", default: false },
  }, HELP);
  if (typeof parsed === "number") return parsed;
  const { values } = parsed;
  let target: MemtestTarget;
  let options;
  try {
    target = values.range === undefined ? "all" : parseRange(values.range);
    options = {
      patterns: values.patterns === undefined ? undefined : parsePatterns(values.patterns),
      seed: parseCount(values.seed, "--seed"),
      chunkSize: values.chunk === undefined ? undefined : parseSize(values.chunk, "--chunk"),
      maxErrors: parseCount(values["max-errors"], "--max-errors"),
      path: values.path as "auto" | "bar1" | "pramin" | undefined,
      readBack: values["read-back"] as "pramin" | "bar1" | undefined,
      force: values.force,
    };
  } catch (e) {
    return reportError(e);
  }
  const gpu = await openForCommand(values);
  if (typeof gpu === "number") return gpu;
  const json = values.json;
  const bar = progressLine(isTty() && !json);
  using ctrlC = sigintAbort();
  try {
    const result = await memtest(gpu, target, {
      ...options,
      signal: ctrlC.signal,
      onProgress: (p) => bar.update(p),
    });
    bar.done();
    if (!json) {
      console.log(
        `memtest on ${gpu.device.spec}: ${gpu.chip.name} (${gpu.chip.architecture}), VRAM ${
          formatSize(gpu.vram.size)
        }, BAR1 ${formatSize(gpu.device.bar1.size)} ${gpu.bar1.mode}${
          gpu.device.bar1.hasBlockCopies ? " (write-combining)" : ""
        }`,
      );
    }
    if (json) console.log(JSON.stringify(result, null, 2));
    else console.log(formatMemtestReport(result).join("\n"));
    return result.errorCount > 0 ? 1 : result.interrupted ? 130 : 0;
  } catch (e) {
    bar.done();
    return reportError(e);
  } finally {
    closeForCommand(gpu);
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
