/**
 * `deno task repl`: the bring-up REPL, one-line `--eval`, scripts, and `list`.
 *
 * ```sh
 * deno task repl --device sim:gh100                 # interactive, everything preloaded
 * deno task repl --eval 'gpu.vram'                  # print one value and exit
 * deno task repl examples/fill_verify.ts --size 4M  # run a script with the same globals
 * deno task repl --trace s.trace                    # record every MMIO access (see hw/trace.ts)
 * deno task list                                    # the NVIDIA GPUs on this machine
 * ```
 *
 * @module
 */

import { earlyWorkerName, parseReplArgs, type ReplArgs, takeStrict } from "./cli/repl_args.ts";

/**
 * The interactive prompt's evaluation worker, started as the first thing this program does when
 * the arguments ask for the prompt: a worker takes tens of milliseconds to start and load the GPU
 * code, and that overlaps this thread loading the UI (`interactive` takes it over).
 */
const early: Worker | null = import.meta.main ? startEarly(Deno.args) : null;

function startEarly(argv: string[]): Worker | null {
  let args: ReplArgs;
  try {
    args = parseReplArgs(takeStrict(argv)[0]);
  } catch {
    return null; // main() reports it
  }
  if (args.help || args.eval !== undefined || args.script !== undefined) return null;
  // cli/repl_ui.ts's startWorker(), which is not loaded yet; its name carries the device flags,
  // so it opens the device without waiting for this thread.
  return new Worker(new URL("./cli/repl_worker.ts", import.meta.url).href, {
    type: "module",
    name: earlyWorkerName(args),
  });
}

let earlyTaken = false;
/** The early worker, once (null when there is none or it was taken). */
function takeEarly(): Worker | null {
  if (earlyTaken) return null;
  earlyTaken = true;
  return early;
}

/** Runs the command; returns the exit code. */
export async function main(argv: string[]): Promise<number> {
  // A literal specifier: Deno reads the module with this one and runs it only now, after the
  // worker started (this module imports nothing heavier than the argument parser for that).
  const { replMain } = await import("./cli/repl_main.ts");
  return await replMain(argv, takeEarly);
}

if (import.meta.main) Deno.exit(await main(Deno.args));
