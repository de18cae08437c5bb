/**
 * The self-test harness: suites of checks that take an open {@linkcode Gpu}
 * and run unchanged on the simulator and on a card. `deno task selftest`
 * runs them with a progress line per test; `tests/selftests_test.ts` runs
 * them under `deno test` on every simulator profile.
 *
 * @module
 */

import { fail, NovaError } from "../hw/errors.ts";
import type { Gpu } from "../mm/gpu.ts";

/** One self-test. */
export interface SelfTest {
  /** Short name shown in the progress line and summary. */
  name: string;
  /** Throws (via {@linkcode expect} or any error) on failure. */
  run(gpu: Gpu): void | Promise<void>;
  /**
   * Set when the test writes VRAM or registers (moving the PRAMIN window is a
   * register write); it is skipped on a read-only session.
   */
  writes?: boolean;
  /** Returns why the test does not apply to this card (it is then skipped), or null. */
  skip?(gpu: Gpu): string | null;
}

/** A named list of self-tests. */
export interface SelfTestSuite {
  /** Suite name (`pramin`, `bar1`). */
  name: string;
  /** The tests, run in order. */
  tests: SelfTest[];
}

/** Fails the running self-test with EIO when `ok` is false. */
export function expect(ok: boolean, message: string): asserts ok {
  if (!ok) fail("EIO", `self-test check failed: ${message}`);
}

/** Checks `fn` throws a NovaError with `code`; returns it. */
export function expectError(code: string, fn: () => unknown, what: string): NovaError {
  try {
    fn();
  } catch (e) {
    if (e instanceof NovaError && e.code === code) return e;
    fail("EIO", `${what}: expected ${code}, got ${e instanceof Error ? e.message : String(e)}`);
  }
  fail("EIO", `${what}: expected ${code}, but it succeeded`);
}

/** The outcome of one test. */
export interface SelfTestResult {
  /** Suite name. */
  suite: string;
  /** Test name. */
  name: string;
  /** `pass`, `fail` or `skip`. */
  status: "pass" | "fail" | "skip";
  /** Milliseconds. */
  ms: number;
  /** MMIO accesses the test made. */
  mmio: number;
  /** Failure message or skip reason. */
  detail?: string;
}

/** Options for {@linkcode runSelfTests}. */
export interface SelfTestOptions {
  /** Called before each test. */
  onStart?: (suite: string, name: string) => void;
  /** Called after each test. */
  onResult?: (r: SelfTestResult) => void;
  /**
   * On the boot VGA device, let the tests bind BAR1 (`bar1.bringUp()` and
   * `bar1.bind()` run with `{ force: true }`): the console's physical BAR1
   * is taken for the run, and `gpu.close()` puts the bind registers back.
   * Without it the virtual-mode tests are skipped there.
   */
  force?: boolean;
}

/**
 * With `force` on the boot VGA device, BAR1's bringUp/bind take `{ force: true }`
 * until the returned function puts them back.
 */
function forceBar1(gpu: Gpu, force: boolean | undefined): (() => void) | null {
  if (!force || !gpu.device.bootVga || gpu.family.fbFlush.mechanism === "gsp") return null;
  const bar1 = gpu.bar1 as unknown as Record<string, unknown>;
  const bringUp = gpu.bar1.bringUp;
  const bind = gpu.bar1.bind;
  bar1.bringUp = (o: { force?: boolean } = {}) => bringUp.call(gpu.bar1, { force: true, ...o });
  bar1.bind = (v: Parameters<typeof bind>[0], o: { force?: boolean } = {}) =>
    bind.call(gpu.bar1, v, { force: true, ...o });
  return () => {
    delete bar1.bringUp;
    delete bar1.bind;
  };
}

/** Runs suites against a GPU, calling `onResult` after each test. */
export async function runSelfTests(
  gpu: Gpu,
  suites: SelfTestSuite[],
  options: SelfTestOptions = {},
): Promise<SelfTestResult[]> {
  const unforce = forceBar1(gpu, options.force && !gpu.device.readOnly);
  try {
    return await runAll(gpu, suites, options, unforce !== null);
  } finally {
    unforce?.();
  }
}

async function runAll(
  gpu: Gpu,
  suites: SelfTestSuite[],
  options: SelfTestOptions,
  forced: boolean,
): Promise<SelfTestResult[]> {
  const results: SelfTestResult[] = [];
  for (const suite of suites) {
    for (const t of suite.tests) {
      options.onStart?.(suite.name, t.name);
      const before = gpu.stats();
      const t0 = performance.now();
      let r: SelfTestResult;
      let why = t.writes && gpu.device.readOnly ? "read-only session" : t.skip?.(gpu) ?? null;
      if (forced && why !== null && /boot VGA/.test(why)) {
        // --force: bind BAR1 (forced) so that the test sees a virtual BAR1 and runs.
        gpu.bar1.bringUp();
        why = t.skip?.(gpu) ?? null;
      }
      if (why !== null) {
        r = { suite: suite.name, name: t.name, status: "skip", ms: 0, mmio: 0, detail: why };
      } else {
        try {
          await t.run(gpu);
          r = { suite: suite.name, name: t.name, status: "pass", ms: 0, mmio: 0 };
        } catch (e) {
          r = {
            suite: suite.name,
            name: t.name,
            status: "fail",
            ms: 0,
            mmio: 0,
            detail: e instanceof Error ? e.message : String(e),
          };
        }
        const after = gpu.stats();
        r.ms = performance.now() - t0;
        r.mmio = after.mmioReads + after.mmioWrites - before.mmioReads - before.mmioWrites;
      }
      results.push(r);
      options.onResult?.(r);
    }
  }
  return results;
}

/**
 * Runs `fn` with a scratch VRAM range of `size` bytes (2 MiB aligned) inside
 * the usable region. On a card the range's old contents are saved first and
 * written back afterwards, so a self-test leaves VRAM as it found it.
 */
export function withScratch<T>(gpu: Gpu, size: number, fn: (start: number) => T): T {
  const align = 2 * 2 ** 20;
  const start = Math.ceil(gpu.vram.usable.start / align) * align;
  expect(
    start + size <= gpu.vram.usable.end,
    `usable VRAM too small for a ${size}-byte scratch range`,
  );
  const saved = gpu.device.kind === "pci" ? gpu.pramin.readBytes(start, size) : null;
  try {
    return fn(start);
  } finally {
    if (saved !== null) gpu.pramin.writeBytes(start, saved);
  }
}
