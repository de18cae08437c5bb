/**
 * Time to the REPL's first prompt in a pseudo-terminal (issue 17 item 10: under 150 ms, median
 * of 5 warm runs). Not a `deno bench` benchmark (it spawns processes and times wall clock, so
 * its name keeps it out of `deno task bench`):
 *
 * ```sh
 * deno run -A bench/startup.ts            # REPL prompt, `--eval 1`, and `deno eval` floor
 * deno run -A bench/startup.ts --runs 9
 * ```
 *
 * Each command runs under `script` (util-linux), so its stdout is a terminal; the time is from
 * spawning it to the first byte of the prompt (`ga102> `) reaching the pseudo-terminal's reader.
 * Ctrl-D (EOF) then ends the session.
 *
 * Where the time goes and what was done about it: the worker starts before the main thread loads
 * anything else (repl.ts), loads only what opening the device and drawing the banner need, and
 * loads the rest after the prompt (cli/repl_worker.ts); the register database is parsed on first
 * use (hw/regdb/mod.ts). Measured 2026-12-03 on the shared CI machine (issue 17 item 10 notes):
 * 277 ms before, medians of 164 to 208 ms after over several quiet runs, `deno eval` floor 64 to
 * 71 ms in the same runs; loading mm/gpu.ts's module graph in the worker (about 45 ms) is most
 * of what is left.
 *
 * @module
 */

const ROOT = new URL("..", import.meta.url).pathname;
const DENO = Deno.execPath();

/** Spawns `command` in a pty; ms until the output matches `done`. */
export async function timeToOutput(command: string, done: RegExp): Promise<number> {
  const t0 = performance.now();
  const child = new Deno.Command("script", {
    args: ["-qfec", command, "/dev/null"],
    cwd: ROOT,
    env: { NO_COLOR: "1", NOVAMM_HISTORY: "" },
    stdin: "piped",
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const decoder = new TextDecoder();
  let text = "";
  let at: number | null = null;
  const reader = child.stdout.getReader();
  while (true) {
    const { value, done: eof } = await reader.read();
    if (eof) break;
    text += decoder.decode(value, { stream: true });
    if (at === null && done.test(text)) {
      at = performance.now() - t0;
      // EOF at the prompt ends the session (Ctrl-D).
      await child.stdin.getWriter().write(new TextEncoder().encode("\x04"));
    }
  }
  await child.status;
  if (at === null) throw new Error(`${command}: never printed ${done}; output:\n${text}`);
  return at;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

if (import.meta.main) {
  const i = Deno.args.indexOf("--runs");
  const runs = i >= 0 ? Number(Deno.args[i + 1]) : 5;
  const cases: [string, string, RegExp][] = [
    ["deno eval (floor)", `${DENO} eval "console.log('x> ')"`, /x> /],
    ["repl --eval 1", `${DENO} run -A repl.ts --eval 1`, /0x1|1/],
    // deno-lint-ignore no-control-regex
    ["repl prompt", `${DENO} run -A repl.ts`, /quits\.\r?\n(\x1b\[[0-9]*[A-Za-z])*\w+> /],
  ];
  for (const [name, command, done] of cases) {
    await timeToOutput(command, done); // warm the caches
    const times: number[] = [];
    for (let r = 0; r < runs; r++) times.push(await timeToOutput(command, done));
    console.log(
      `${name.padEnd(20)} median ${median(times).toFixed(0).padStart(4)} ms  (${
        times.map((t) => t.toFixed(0)).join(", ")
      })`,
    );
  }
}
