/**
 * The interactive prompt's main thread: readline, history, completion and
 * printing here; evaluation in a worker (cli/repl_worker.ts), so this thread
 * is free to act on Ctrl-C and signals while an input runs.
 *
 * - Ctrl-C while an input runs: the interrupt word is set; the input stops
 *   at its next MMIO access (EINTR), `using` guards unwind, and the prompt
 *   comes back with the session intact ("interrupted after N MMIO
 *   accesses").
 * - A second Ctrl-C (the input made no MMIO access since): the worker is
 *   terminated — its JavaScript context is lost, and the prompt says so —
 *   the card's PRAMIN window register and BAR1 bind registers are written
 *   back as found at open (on a card; a simulated card dies with the
 *   worker), and a fresh session starts.
 * - SIGTERM / SIGHUP: the session is closed (which restores the card) before
 *   the process exits, interrupting or killing a running input first.
 * - Output the worker sends while the prompt is shown (timers, watches on an
 *   interval) is drawn above the prompt, which is redrawn with what was typed.
 *
 * @module
 */

import readline from "node:readline";
import process from "node:process";
import { openDevice } from "../hw/device.ts";
import { closeFd } from "../hw/libc.ts";
import { checkInput } from "./repl_eval.ts";
import { colorError, colorsOn, formatError } from "./common.ts";
import { restoreBar1Bind } from "../mm/bar_user.ts";
import { hex } from "../hw/errors.ts";
import type { OpenSessionOptions } from "./repl_session.ts";
import type { FromWorker, ReadyMessage, SavedCard, ToWorker } from "./repl_worker.ts";

/** Options for {@linkcode interactive}. */
export interface InteractiveOptions {
  /** Do not read or append the history file. */
  noHistory?: boolean;
}

/** Where history lives: `$NOVAMM_HISTORY` (empty: none), else `~/.novamm_history`. */
export function historyPath(): string | null {
  const env = Deno.env.get("NOVAMM_HISTORY");
  if (env !== undefined) return env === "" ? null : env;
  const home = Deno.env.get("HOME") ?? Deno.env.get("USERPROFILE");
  return home === undefined ? null : `${home}/.novamm_history`;
}

const HISTORY_SIZE = 1000;

/** History file lines, newest first; a multi-line input is one line (joined by `\n` escapes). */
function loadHistory(path: string): string[] {
  try {
    const lines = Deno.readTextFileSync(path).split("\n").filter((l) => l.trim() !== "");
    if (lines.length > HISTORY_SIZE * 2) {
      // Keep the file from growing without bound.
      Deno.writeTextFileSync(path, lines.slice(-HISTORY_SIZE).join("\n") + "\n");
    }
    return lines.slice(-HISTORY_SIZE).reverse();
  } catch {
    return [];
  }
}

/** One evaluation worker and the protocol around it. */
class Evaluation {
  readonly worker: Worker;
  readonly interrupt = new Int32Array(new SharedArrayBuffer(4));
  #next = 1;
  #done = new Map<number, (ok: boolean) => void>();
  #completions = new Map<number, (r: [string[], string]) => void>();
  #closed: ((errors: string[]) => void) | null = null;
  #ready: Promise<ReadyMessage | string>;
  /** Called for output (during an input, or between inputs). */
  onOutput: (text: string, err: boolean, during: boolean) => void = () => {};
  /** The input running now, if any. */
  running: number | null = null;

  constructor(options: OpenSessionOptions, colors: boolean) {
    this.worker = new Worker(new URL("./repl_worker.ts", import.meta.url).href, {
      type: "module",
    });
    let resolveReady!: (m: ReadyMessage | string) => void;
    this.#ready = new Promise((r) => resolveReady = r);
    this.worker.onmessage = (ev: MessageEvent<FromWorker>) => {
      const m = ev.data;
      switch (m.t) {
        case "ready":
          resolveReady(m);
          break;
        case "open-failed":
          resolveReady(m.text);
          break;
        case "out":
          this.onOutput(m.text, m.err, m.during);
          break;
        case "done":
          this.running = null;
          Atomics.store(this.interrupt, 0, 0); // a Ctrl-C the input never met must not hit the next
          this.#done.get(m.id)?.(m.ok);
          this.#done.delete(m.id);
          break;
        case "completion":
          this.#completions.get(m.id)?.(m.result);
          this.#completions.delete(m.id);
          break;
        case "closed":
          this.#closed?.(m.errors);
          break;
      }
    };
    this.worker.onerror = (ev) => {
      ev.preventDefault();
      this.onOutput(`error: (evaluation thread) ${ev.message}`, true, false);
    };
    this.#send({
      t: "open",
      options,
      interrupt: this.interrupt.buffer as SharedArrayBuffer,
      colors,
    });
  }

  #send(m: ToWorker): void {
    this.worker.postMessage(m);
  }

  ready(): Promise<ReadyMessage | string> {
    return this.#ready;
  }

  evaluate(code: string): Promise<boolean> {
    const id = this.#next++;
    Atomics.store(this.interrupt, 0, 0);
    this.running = id;
    this.#send({ t: "eval", id, code });
    return new Promise((r) => this.#done.set(id, r));
  }

  /** Resolves the running input as failed (its worker was killed). */
  abandon(): void {
    for (const [, r] of this.#done) r(false);
    this.#done.clear();
    for (const [, r] of this.#completions) r([[], ""]);
    this.#completions.clear();
    this.running = null;
  }

  complete(line: string): Promise<[string[], string]> {
    const id = this.#next++;
    this.#send({ t: "complete", id, line });
    return new Promise((r) => this.#completions.set(id, r));
  }

  /** Closes the session (restoring the card); resolves with its errors, or null on timeout. */
  close(timeoutMs: number): Promise<string[] | null> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(null), timeoutMs);
      this.#closed = (errors) => {
        clearTimeout(timer);
        resolve(errors);
      };
      this.#send({ t: "close" });
    });
  }
}

/**
 * Puts a card's registers back from the main thread after its evaluation
 * worker had to be killed: the PRAMIN window register and the BAR1 bind
 * registers as found at open. Returns what was done, for the user.
 */
export function restoreKilledCard(card: SavedCard, options: OpenSessionOptions): string {
  if (card.kind === "sim") {
    return "the simulated card went with it; a fresh one is opened";
  }
  if (card.readOnly) return "the session was read-only: nothing on the card to put back";
  // The killed worker's fds live on in this process: closing its lock fd drops its flock.
  if (card.lockFd !== null) {
    try {
      closeFd(card.lockFd);
    } catch {
      // already closed
    }
  }
  const dev = openDevice({ device: card.spec, force: options.force });
  try {
    const done: string[] = [];
    if (card.window !== null) {
      dev.bar0.write32(card.window.offset, card.window.value);
      done.push(`window register ${hex(card.window.offset)} = ${hex(card.window.value, 8)}`);
    }
    // The session that died may have bound BAR1 behind equal-looking registers: rewrite them.
    restoreBar1Bind(dev.bar0, card.bind, { mmuVersion: card.mmuVersion, always: true });
    done.push(`BAR1 bind registers as found (${card.bind.mode})`);
    return `the card was put back: ${done.join(", ")}`;
  } finally {
    dev.close();
  }
}

/**
 * The interactive prompt. Ends on Ctrl-D, `.exit` or the end of piped input;
 * returns the exit code (1 when the session could not open, or piped input
 * ended inside an unfinished input).
 */
export async function interactive(
  sessionOptions: OpenSessionOptions,
  options: InteractiveOptions = {},
): Promise<number> {
  const terminal = process.stdin.isTTY === true;
  const colors = colorsOn(Deno.stdout);
  let ev = new Evaluation(sessionOptions, colors);
  let ready = await ev.ready();
  if (typeof ready === "string") {
    console.error(ready);
    ev.worker.terminate();
    return 1;
  }
  const hist = terminal && !options.noHistory ? historyPath() : null;
  let prompt = ready.prompt;
  const rl = readline.createInterface({
    input: process.stdin,
    output: process.stdout,
    terminal,
    prompt,
    completer: (line: string, cb: (err: null, r: [string[], string]) => void) => {
      ev.complete(line).then((r) => cb(null, r));
    },
    history: hist === null ? [] : loadHistory(hist).map((l) => l.replaceAll("\\n", "\n")),
    historySize: HISTORY_SIZE,
    removeHistoryDuplicates: true,
  });
  const history = () => (rl as unknown as { history: string[] }).history;
  console.log(ready.banner);
  let buffer = "";
  let lines = 0; // lines of the input being typed (for one history item)
  let lastSigint = false;
  let closed = false;
  rl.on("close", () => closed = true);
  // Piped input may reach its end (closing readline) while an input still runs: the
  // prompt is then written by hand, so the transcript reads like a terminal's.
  let current = prompt;
  const showPrompt = () => {
    if (terminal && !closed) rl.prompt(true);
    else if (!terminal) process.stdout.write(current);
  };
  const setPrompt = (p: string) => {
    current = p;
    if (!closed) rl.setPrompt(p);
  };
  const reset = () => {
    buffer = "";
    lines = 0;
    setPrompt(prompt);
  };
  // Output: during an input straight out; between inputs above the prompt.
  const wire = (e: Evaluation) => {
    e.onOutput = (text, err, during) => {
      const stream = err ? process.stderr : process.stdout;
      if (during || e.running !== null || !terminal || closed) {
        stream.write(text + "\n");
        return;
      }
      readline.clearLine(process.stdout, 0);
      readline.cursorTo(process.stdout, 0);
      stream.write(text + "\n");
      rl.prompt(true); // redraw with what was typed
    };
  };
  wire(ev);

  /** Set while a kill is under way: the input loop waits for the fresh session. */
  let killing: Promise<void> | null = null;
  /** Kills the running input's worker, puts the card back, starts a fresh session. */
  const kill = () => {
    killing ??= killNow().finally(() => killing = null);
    return killing;
  };
  const killNow = async () => {
    const card = typeof ready !== "string" ? ready.card : null;
    ev.worker.terminate();
    ev.abandon();
    let what: string;
    try {
      what = card === null ? "" : restoreKilledCard(card, sessionOptions);
    } catch (e) {
      what = `putting the card back failed: ${formatError(e)}`;
    }
    console.log(
      `killed: the input never reached an MMIO access, so its JavaScript context was discarded ` +
        `(declarations, using values, allocations and mappings of this session are gone); ${what}`,
    );
    ev = new Evaluation(sessionOptions, colors);
    wire(ev);
    ready = await ev.ready();
    if (typeof ready === "string") {
      console.error(ready);
      rl.close();
      return;
    }
    prompt = ready.prompt;
    reset();
  };

  rl.on("SIGINT", () => {
    if (ev.running !== null) {
      if (Atomics.load(ev.interrupt, 0) !== 0) {
        // Still set: the input made no MMIO access since the last Ctrl-C. Kill it.
        void kill();
        return;
      }
      Atomics.store(ev.interrupt, 0, 1);
      process.stdout.write("^C (stops at the next MMIO access; Ctrl-C again to kill the input)\n");
      return;
    }
    const typed = (rl as unknown as { line: string }).line;
    if (typed === "" && buffer === "") {
      if (lastSigint) {
        rl.close();
        return;
      }
      lastSigint = true;
      process.stdout.write("\n(To exit, press Ctrl-C again, Ctrl-D, or type .exit)\n");
    } else {
      lastSigint = false;
      process.stdout.write("^C\n");
    }
    reset();
    // Drop what was typed on the line: readline keeps it otherwise.
    rl.write(null, { ctrl: true, name: "u" });
    showPrompt();
  });

  // Ctrl-R: the newest history entry containing what is typed (again: older ones).
  let search: { query: string; from: number } | null = null;
  if (terminal) {
    process.stdin.on("keypress", (_s: string, key: { ctrl?: boolean; name?: string }) => {
      if (!(key?.ctrl && key.name === "r")) {
        search = null;
        return;
      }
      const line = (rl as unknown as { line: string }).line;
      if (search === null) search = { query: line, from: 0 };
      const h = history();
      for (let i = search.from; i < h.length; i++) {
        if (h[i].includes(search.query) && h[i] !== line) {
          search.from = i + 1;
          rl.write(null, { ctrl: true, name: "u" });
          rl.write(h[i].replaceAll("\n", " "));
          return;
        }
      }
      process.stdout.write("\x07"); // no older match
    });
  }

  /**
   * Closes the session (which restores the card) and prints its errors; when
   * it does not close within `timeoutMs`, terminates the worker and puts the
   * card back from here. Returns the errors, or null on timeout.
   */
  const closeSession = async (timeoutMs: number, onTimeout = () => {}) => {
    const errors = await ev.close(timeoutMs);
    if (errors === null) {
      onTimeout();
      ev.worker.terminate();
      if (typeof ready !== "string") restoreKilledCard(ready.card, sessionOptions);
    } else for (const e of errors) console.error(e);
    return errors;
  };

  // SIGTERM / SIGHUP: restore the card, then exit.
  const onSignal = (signal: Deno.Signal, code: number) => async () => {
    if (ev.running !== null) {
      Atomics.store(ev.interrupt, 0, 1);
      const t0 = performance.now();
      while (ev.running !== null && performance.now() - t0 < 1000) {
        await new Promise((r) => setTimeout(r, 10));
      }
      if (ev.running !== null) await kill();
    }
    await closeSession(3000);
    console.error(`(${signal}: the card was restored, exiting)`);
    Deno.exit(code);
  };
  const signals: [Deno.Signal, () => void][] = [
    ["SIGTERM", onSignal("SIGTERM", 143)],
    ["SIGHUP", onSignal("SIGHUP", 129)],
  ];
  for (const [s, fn] of signals) Deno.addSignalListener(s, fn);

  showPrompt();
  let code = 0;
  for await (const line of rl) {
    lastSigint = false;
    if (buffer === "" && /^\s*\.\w+\s*$/.test(line)) {
      const cmd = line.trim();
      if (cmd === ".exit") break;
      if (cmd === ".help") await ev.evaluate("help()");
      else if (cmd === ".break" || cmd === ".clear") reset();
      else console.log(`error: unknown command ${cmd}; try .help, .break or .exit`);
      showPrompt();
      continue;
    }
    if (buffer !== "" && line.trim() === ".break") {
      reset();
      showPrompt();
      continue;
    }
    const input = buffer === "" ? line : `${buffer}\n${line}`;
    lines++;
    const state = checkInput(input);
    if (state.state === "incomplete") {
      buffer = input;
      setPrompt("... ");
      showPrompt();
      continue;
    }
    const n = lines;
    reset();
    if (n > 1 && terminal) {
      // One history item for a multi-line input (readline added one per line).
      const h = history();
      h.splice(0, n, input);
    }
    if (hist !== null && input.trim() !== "") {
      try {
        Deno.writeTextFileSync(hist, input.replaceAll("\n", "\\n") + "\n", { append: true });
      } catch {
        // History is a convenience; an unwritable file must not stop the session.
      }
    }
    if (state.state === "error") {
      const text = formatError(state.error);
      console.log(colors ? colorError(text) : text);
    } else if (input.trim() !== "") {
      await ev.evaluate(input);
      if (killing !== null) await killing; // the prompt comes back once the fresh session is up
    }
    showPrompt();
  }
  if (buffer !== "") {
    console.log("error: input ended inside an unfinished statement (it was not run)");
    code = 1;
  }
  rl.close();
  if (terminal) process.stdout.write("\n");
  const errors = await closeSession(10_000, () => {
    console.error("error: the session did not close in 10 s; putting the card back from here");
  });
  if (errors === null || errors.length > 0) code = 1;
  ev.worker.terminate();
  for (const [s, fn] of signals) Deno.removeSignalListener(s, fn);
  return code;
}
