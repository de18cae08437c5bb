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
 * Ctrl-D (EOF) is sent the moment the prompt shows and must end the session (a prompt that
 * cannot take a key yet hangs here). The cases run round-robin; each median is also given as a
 * multiple of the `deno eval` floor of the same run.
 *
 * Where the time goes (measured with timestamps from both threads, 2026-12-03): the process
 * starts (~50 ms), `new Worker` blocks the main thread ~30 ms while the worker's isolate is made,
 * the worker loads the GPU code and opens the device, the main thread loads node's readline
 * (~25 ms for node's first module, ~10 ms for its stdin stream). What was done about it:
 * - repl.ts imports nothing but the argument parser before it starts the worker, and names the
 *   device in the worker's name, so the worker opens it without waiting for the UI thread
 *   (cli/repl_args.ts `earlyWorkerName`, cli/repl_worker.ts);
 * - the worker opens with `openGpuEarly` (mm/gpu.ts): the allocator, address spaces, BAR1 and
 *   snapshot code (`loadGpuModules`) load after the prompt, with the session, help and globals;
 *   those specifiers are computed, so Deno does not read them before the worker starts;
 * - the MMU codecs build their tables on first use (mm/pagetable/codec.ts; 6-13 ms at load);
 * - a simulated chip's register database (5-7 ms) loads with the rest, after the prompt; until
 *   then the simulator answers a register it does not model with EAGAIN;
 * - the UI writes banner and prompt as soon as the worker is ready, puts the terminal in raw
 *   mode (keys typed meanwhile wait for readline), and makes node's stdin stream and readline
 *   after; the parser (an npm package) runs its code after the prompt.
 * Medians over the work: 277 ms (before issue 17), 176-184 ms, now 136-140 ms with a `deno
 * eval` floor of 64-70 ms (2.0x; 145 ms before the register database moved, A/B the same
 * minute).
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
  // deno-lint-ignore no-control-regex
  const prompt = /quits\.\r?\n(\x1b\[[0-9]*[A-Za-z])*\w+> /;
  const cases: [string, string, RegExp][] = [
    ["deno eval (floor)", `${DENO} eval "console.log('x> ')"`, /x> /],
    ["repl --eval 1", `${DENO} run -A repl.ts --eval 1`, /0x1|1/],
    ["repl prompt", `${DENO} run -A repl.ts`, prompt],
    // What `deno task repl` runs (without the task runner's own start).
    ["repl prompt -q", `${DENO} run -q -A repl.ts`, prompt],
  ];
  for (const [command, done] of cases.map((c) => c.slice(1) as [string, RegExp])) {
    await timeToOutput(command, done); // warm the caches
  }
  // Round-robin, so that a busy moment of the machine costs every case alike.
  const times: number[][] = cases.map(() => []);
  for (let r = 0; r < runs; r++) {
    for (const [k, [, command, done]] of cases.entries()) {
      times[k].push(await timeToOutput(command, done));
    }
  }
  const floor = median(times[0]);
  for (const [k, [name]] of cases.entries()) {
    console.log(
      `${name.padEnd(20)} median ${median(times[k]).toFixed(0).padStart(4)} ms = ${
        (median(times[k]) / floor).toFixed(2)
      }x the floor  (${times[k].map((t) => t.toFixed(0)).join(", ")})`,
    );
  }
}
