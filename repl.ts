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

import { DEVICE_HELP, formatError, parseSize, reportError } from "./cli/common.ts";
import { fail } from "./hw/errors.ts";
import { parseReplArgs, type ReplArgs } from "./cli/repl_args.ts";

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
  // cli/repl_ui.ts's startWorker(), which is not loaded yet.
  return new Worker(new URL("./cli/repl_worker.ts", import.meta.url).href, { type: "module" });
}

const HELP = `deno task repl [options] [--eval EXPR | SCRIPT.ts [script args] | list [list options]]

The novamm bring-up REPL: a JavaScript prompt with the GPU and its memory
management preloaded (gpu, bar0, pramin, tlb, mm, vmm, bar1, mmu, and the
helpers hex, hexdump, pte, pde, walk, stats, help). Top-level await works,
declarations persist across lines, Tab completes names and members, history
is kept in $NOVAMM_HISTORY (default ~/.novamm_history). The prompt takes
JavaScript (no type annotations); scripts may be TypeScript.

Options:
${DEVICE_HELP}
  -e, --eval EXPR  evaluate EXPR (statements allowed; the last expression's
                   awaited value is printed) and exit: 0, or 1 on error
      --trace FILE record every MMIO access of the session to FILE (format in
                   hw/trace.ts); replay it with \`deno task replay FILE\`
      --trace-max SIZE  stop recording when FILE would pass SIZE (e.g. 512M,
                   4G; default 1G); the file stays a complete, replayable prefix
      --trace-format F  novamm (default) or mmiotrace: the Linux kernel's
                   mmiotrace text, which \`deno task replay --decode\` lists and
                   --device snap:FILE reopens
      --no-history neither read nor write the history file
      --strict     with --eval or a script: what the card reported (simulator
                   errors, MMU faults, a lost GPU; printed to stderr after the
                   run either way) makes the exit status 1 (for CI)

At the prompt: .reopen opens the device again (after gpu.close() or a lost
GPU) keeping your declarations; EXPR ;> FILE writes EXPR's printed value to
FILE (;>> appends), .save FILE the last one; Ctrl-R searches the history.

SCRIPT.ts runs with the same names as globals (or \`scriptGlobals()\` from
cli/globals.ts); arguments after it that are not the options above are the
script's (\`args\`). \`list\` shows the GPUs here (\`deno task list --help\`).

Examples:
  deno task repl --device sim:gh100
  deno task repl --eval 'using w = pramin.window(); w.write32(0x100000, 0xdeadbeef); w.read32(0x100000)'
  deno task repl examples/fill_verify.ts --device sim --size 16M
  NOVAMM_DEBUG=1 deno task repl ...     (print stacks of errors)`;

/**
 * Imports one of this program's modules when it is needed. The specifier is computed on
 * purpose: Deno reads every module a literal `import("...")` names, with all they import,
 * before the program starts, and the prompt should not wait for code it may never run.
 */
function load<T>(path: string): Promise<T> {
  return import(new URL(path, import.meta.url).href);
}

async function run(args: ReplArgs, strict: boolean): Promise<number> {
  let traceMax: number | undefined;
  try {
    traceMax = args.traceMax === undefined ? undefined : parseSize(args.traceMax, "--trace-max");
    if (args.traceFormat !== undefined && args.trace === undefined) {
      fail("EINVAL", "--trace-format goes with --trace FILE");
    }
    if (
      args.traceFormat !== undefined && args.traceFormat !== "novamm" &&
      args.traceFormat !== "mmiotrace"
    ) {
      fail(
        "EINVAL",
        `--trace-format ${JSON.stringify(args.traceFormat)} is not novamm or mmiotrace`,
      );
    }
  } catch (e) {
    return reportError(e);
  }
  const sessionOptions = {
    device: args.device,
    readOnly: args.readOnly,
    force: args.force,
    trace: args.trace,
    traceMax,
    traceFormat: args.traceFormat as "novamm" | "mmiotrace" | undefined,
  };
  if (args.eval === undefined && args.script === undefined) {
    // The prompt evaluates in a worker, so Ctrl-C and signals reach this thread.
    const { interactive } = await load<typeof import("./cli/repl_ui.ts")>("./cli/repl_ui.ts");
    const worker = takeEarly();
    return await interactive(sessionOptions, {
      noHistory: args.noHistory,
      ...(worker === null ? {} : { worker }),
    });
  }
  takeEarly()?.terminate();
  const { openSession, evalAndPrint, runScript } = await load<
    typeof import("./cli/repl_session.ts")
  >("./cli/repl_session.ts");
  let session;
  try {
    session = await openSession(sessionOptions);
  } catch (e) {
    return reportError(e);
  }
  let code = 1;
  // An un-awaited rejection must not kill the session (the GPU would not be
  // closed and the PRAMIN window not restored): report it as one line, and
  // make --eval and scripts fail.
  let rejected = 0;
  const onRejection = (ev: PromiseRejectionEvent) => {
    ev.preventDefault();
    rejected++;
    console.error(formatError(ev.reason).replace(/^error: /, "error: (unhandled rejection) "));
  };
  globalThis.addEventListener("unhandledrejection", onRejection);
  // A script or --eval waiting on a timer or a promise can still be stopped cleanly: the
  // session closes (restoring the card) before the process exits. (A synchronous loop holds
  // this thread; the interactive prompt evaluates in a worker for that reason.)
  const stop = (signal: Deno.Signal, code: number) => async () => {
    for (const e of await session.close()) reportError(e);
    console.error(`(${signal}: the card was restored, exiting)`);
    Deno.exit(code);
  };
  const signals: [Deno.Signal, () => void][] = [
    ["SIGINT", stop("SIGINT", 130)],
    ["SIGTERM", stop("SIGTERM", 143)],
    ["SIGHUP", stop("SIGHUP", 129)],
  ];
  for (const [sig, fn] of signals) Deno.addSignalListener(sig, fn);
  // What the card reports during the run goes to stderr after it (and fails it under --strict).
  const mark = session.cardMark();
  try {
    if (args.eval !== undefined) {
      session.install();
      const colors = Deno.stdout.isTerminal() && !Deno.noColor;
      code =
        (await evalAndPrint(session, args.eval, { colors, errorsTo: "stderr", rawStrings: true }))
          ? 0
          : 1;
    } else {
      code = await runScript(session, args.script!, args.args);
    }
    // Let pending rejections surface: the runtime reports them at the end of an
    // event-loop turn, after that turn's timers, so one due timer can run first
    // (seen under load); the second timer fires in a later turn, after a report.
    for (let i = 0; i < 2; i++) await new Promise((r) => setTimeout(r, 0));
    if (rejected > 0) code = 1;
    const events = session.cardEvents(mark);
    for (const line of events) console.error(line);
    if (strict && events.length > 0) {
      console.error(
        `error: --strict: the card reported ${events.length} problem${
          events.length === 1 ? "" : "s"
        } (above)`,
      );
      code = 1;
    }
  } finally {
    for (const [sig, fn] of signals) Deno.removeSignalListener(sig, fn);
    globalThis.removeEventListener("unhandledrejection", onRejection);
    for (const e of await session.close()) {
      reportError(e);
      code = 1;
    }
  }
  return code;
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
  let args: ReplArgs;
  let strict = false;
  try {
    [argv, strict] = takeStrict(argv);
    args = parseReplArgs(argv);
  } catch (e) {
    return reportError(e);
  }
  if (args.script === "list") {
    const { main: list } = await load<typeof import("./cli/list.ts")>("./cli/list.ts");
    return list(args.args);
  }
  if (args.help) {
    console.log(HELP);
    return 0;
  }
  return await run(args, strict);
}

/**
 * `--strict` is the REPL's when it comes before a script (or `--`); after a
 * script it is the script's argument. Returns the arguments without it.
 */
function takeStrict(argv: string[]): [string[], boolean] {
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === "--") break;
    if (argv[i] !== "--strict") continue;
    let before: ReplArgs;
    try {
      before = parseReplArgs(argv.slice(0, i));
    } catch {
      break; // a flag before it wants a value: leave the arguments as they are
    }
    if (before.script !== undefined) break;
    return [[...argv.slice(0, i), ...argv.slice(i + 1)], true];
  }
  return [argv, false];
}

if (import.meta.main) Deno.exit(await main(Deno.args));
