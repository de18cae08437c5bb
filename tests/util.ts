/**
 * Helpers shared by the test files: NovaError assertions, running the
 * project's commands as a user does, and poking fake BAR files.
 *
 * @module
 */

import { SIM_CONFLICT_MMU, SIM_CONFLICTS } from "../hw/sim/profiles.ts";
import assert from "node:assert/strict";
import { NovaError } from "../hw/errors.ts";

/** The repository root, as a path ending in "/". */
export const ROOT: string = new URL("..", import.meta.url).pathname;

/**
 * Asserts that `fn` throws a NovaError with `code` whose message contains
 * every string of `patterns` and matches every RegExp; returns the error for
 * further checks.
 *
 * @example
 * ```ts
 * import { vramAddress } from "../mm/types.ts";
 * const e = throwsNova(() => vramAddress(-1), "EINVAL", "VRAM address", /-1/);
 * e.code; // "EINVAL"
 * ```
 */
export function throwsNova(
  fn: () => unknown,
  code: string,
  ...patterns: (string | RegExp)[]
): NovaError {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  assert.ok(caught instanceof NovaError, `expected NovaError ${code}, got ${String(caught)}`);
  assert.equal(caught.code, code, caught.message);
  for (const p of patterns) {
    if (typeof p === "string") {
      assert.ok(caught.message.includes(p), `"${caught.message}" lacks "${p}"`);
    } else {
      assert.match(caught.message, p);
    }
  }
  return caught;
}

/**
 * The NovaError code `fn` throws, or "none" when it returns; any other
 * exception propagates.
 *
 * @example
 * ```ts
 * import { vramAddress } from "../mm/types.ts";
 * errorCode(() => vramAddress(1.5)); // "EINVAL"
 * errorCode(() => vramAddress(0x1000)); // "none"
 * ```
 */
export function errorCode(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    if (e instanceof NovaError) return e.code;
    throw e;
  }
  return "none";
}

/** What a finished command printed. */
export interface RunResult {
  /** Exit code. */
  code: number;
  /** Standard output. */
  stdout: string;
  /** Standard error. */
  stderr: string;
}

/**
 * Runs `deno run -A SCRIPT ARGS` in the repository root as a user would, with
 * `input` on stdin (closed at once when there is none), NO_COLOR=1 and no
 * REPL history file, plus `env`.
 *
 * @example
 * ```ts
 * const r = await runDeno("repl.ts", ["-e", "1 + 1"]);
 * r.stdout; // "2\n"
 * ```
 */
export async function runDeno(
  script: string,
  args: readonly string[],
  options: { input?: string; env?: Record<string, string> } = {},
): Promise<RunResult> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", script, ...args],
    cwd: ROOT,
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1", NOVAMM_HISTORY: "", ...options.env },
  }).spawn();
  const writer = child.stdin.getWriter();
  if (options.input !== undefined) await writer.write(new TextEncoder().encode(options.input));
  await writer.close();
  const out = await child.output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

/**
 * Writes a 32-bit little-endian value at byte `offset` of `file` (a register
 * of a fake sysfs BAR file), leaving the rest of the file as it is.
 *
 * @example
 * ```ts
 * const file = await Deno.makeTempFile();
 * writeU32(file, 0xa00, 0x172a1000); // NV_PMC_BOOT_42 of a GA102
 * ```
 */
export function writeU32(file: string, offset: number, value: number): void {
  using f = Deno.openSync(file, { write: true });
  f.seekSync(offset, Deno.SeekMode.Start);
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, value, true);
  f.writeSync(b);
}

/**
 * Every combination of the simulator's CONFLICT knobs that apply to an MMU
 * version (facts §14.1), as device-spec query strings ("" = the defaults).
 */
export function knobCombinations(mmuVersion: 2 | 3): string[] {
  let combos = [""];
  for (const [key, values] of Object.entries(SIM_CONFLICTS)) {
    if (SIM_CONFLICT_MMU[key as keyof typeof SIM_CONFLICT_MMU] !== mmuVersion) continue;
    combos = combos.flatMap((c) => values.map((v) => `${c}${c === "" ? "" : "&"}${key}=${v}`));
  }
  return combos;
}
