/**
 * `deno task repl` after its first step (repl.ts parses the arguments and
 * starts the prompt's worker, then loads this): the help text, `--eval`,
 * scripts, `list`, and the hand-over to the interactive prompt.
 *
 * @module
 */

import { DEVICE_HELP, formatError, parseSize, reportError } from "./common.ts";
import { fail } from "../hw/errors.ts";
import { parseReplArgs, type ReplArgs, takeStrict } from "./repl_args.ts";

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

async function run(
  args: ReplArgs,
  strict: boolean,
  takeEarly: () => Worker | null,
): Promise<number> {
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
    const { interactive } = await load<typeof import("./repl_ui.ts")>("./repl_ui.ts");
    const worker = takeEarly();
    return await interactive(sessionOptions, {
      noHistory: args.noHistory,
      ...(worker === null ? {} : { worker }),
    });
  }
  takeEarly()?.terminate();
  const { openSession, evalAndPrint, runScript } = await load<
    typeof import("./repl_session.ts")
  >("./repl_session.ts");
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

/**
 * Runs the command; returns the exit code. `takeEarly` hands over the worker repl.ts started
 * for the prompt (once; null when there is none).
 */
export async function replMain(
  argv: string[],
  takeEarly: () => Worker | null,
): Promise<number> {
  let args: ReplArgs;
  let strict = false;
  try {
    [argv, strict] = takeStrict(argv);
    args = parseReplArgs(argv);
  } catch (e) {
    return reportError(e);
  }
  if (args.script === "list") {
    const { main: list } = await load<typeof import("./list.ts")>("./list.ts");
    return list(args.args);
  }
  if (args.help) {
    console.log(HELP);
    return 0;
  }
  return await run(args, strict, takeEarly);
}
