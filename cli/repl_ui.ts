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
import { colorError, colorsOn, formatError } from "./common.ts";
import { hex } from "../hw/errors.ts";
import type { OpenSessionOptions } from "./repl_open.ts";
import type { FromWorker, ReadyMessage, SavedCard, ToWorker } from "./repl_worker.ts";

/**
 * Imports one of this program's modules when it is needed. The specifier is computed on
 * purpose: Deno reads every module a literal `import("...")` names, with all they import,
 * before the program starts, and the prompt should not wait for code it may never run (the
 * device code that puts a card back after a kill).
 */
function load<T>(path: string): Promise<T> {
  return import(new URL(path, import.meta.url).href);
}

/** Options for {@linkcode interactive}. */
export interface InteractiveOptions {
  /** Do not read or append the history file. */
  noHistory?: boolean;
  /**
   * The evaluation worker, started early (`repl.ts` starts it before it loads anything else, so
   * its start overlaps this thread's): {@linkcode startWorker}'s, not yet sent anything. Default:
   * one is started here.
   */
  worker?: Worker;
}

/** Starts an evaluation worker (cli/repl_worker.ts); {@linkcode interactive} talks to it. */
export function startWorker(): Worker {
  return new Worker(new URL("./repl_worker.ts", import.meta.url).href, { type: "module" });
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
  /** Called once the session has loaded (after the prompt was first shown). */
  onSession: () => void = () => {};
  /** Called when the session reopened its device (`.reopen`, `gpu.reopen()`). */
  onCard: (card: SavedCard, prompt: string) => void = () => {};
  /** The input running now, if any. */
  running: number | null = null;

  constructor(options: OpenSessionOptions, colors: boolean, worker: Worker = startWorker()) {
    this.worker = worker;
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
        case "card":
          this.onCard(m.card, m.prompt);
          break;
        case "session":
          this.onSession();
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
    return this.#run((id) => ({ t: "eval", id, code }));
  }

  /** `.reopen`: the session opens its device again. */
  reopen(): Promise<boolean> {
    return this.#run((id) => ({ t: "reopen", id }));
  }

  /** `.save FILE`: the last value's printed form to FILE. */
  save(file: string): Promise<boolean> {
    return this.#run((id) => ({ t: "save", id, file }));
  }

  #run(message: (id: number) => ToWorker): Promise<boolean> {
    const id = this.#next++;
    Atomics.store(this.interrupt, 0, 0);
    this.running = id;
    this.#send(message(id));
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
export async function restoreKilledCard(
  card: SavedCard,
  options: OpenSessionOptions,
): Promise<string> {
  if (card.kind === "sim") {
    return "the simulated card went with it; a fresh one is opened";
  }
  if (card.kind === "snap") return "the snapshot's state went with it; it is opened again";
  if (card.readOnly) return "the session was read-only: nothing on the card to put back";
  // Loaded only now: the prompt does not wait for the device code (the worker has its own).
  const [{ openDevice }, { closeFd }, { restoreBar1Bind }] = await Promise.all([
    load<typeof import("../hw/device.ts")>("../hw/device.ts"),
    load<typeof import("../hw/libc.ts")>("../hw/libc.ts"),
    load<typeof import("../mm/bar_user.ts")>("../mm/bar_user.ts"),
  ]);
  // The killed worker's fds live on in this process: closing its lock fd drops its flock.
  for (const fd of [card.lockFd, card.cardLockFd]) {
    if (fd === null) continue;
    try {
      closeFd(fd);
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
  // Deno's own test, not `process.stdin.isTTY`: node's stdin stream takes milliseconds to make,
  // and it is made after the prompt is shown (with the line editor).
  const terminal = Deno.stdin.isTerminal();
  const colors = colorsOn(Deno.stdout);
  let ev = new Evaluation(sessionOptions, colors, options.worker);
  let ready = await ev.ready();
  if (typeof ready === "string") {
    console.error(ready);
    ev.worker.terminate();
    return 1;
  }
  // The banner and the prompt go out at once; the line editor comes up right after (node's
  // stdin stream and readline take a dozen milliseconds to make) and draws the prompt again in
  // place. The terminal is raw from now on, as readline keeps it: what is typed meanwhile
  // (Ctrl-C and Ctrl-D included) waits for it as keys, unechoed.
  if (terminal) Deno.stdin.setRaw(true);
  Deno.stdout.writeSync(new TextEncoder().encode(`${ready.banner}\n${ready.prompt}`));
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
  let buffer = "";
  let lines = 0; // lines of the input being typed (for one history item)
  let lastSigint = false;
  /** When the first Ctrl-C of the running input came (NOVAMM_TIMING=1 prints how long it took). */
  let sigintAt: number | null = null;
  const timing = Deno.env.get("NOVAMM_TIMING") === "1";
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
    e.onCard = (card, p) => {
      if (typeof ready !== "string") ready = { ...ready, card };
      prompt = p;
      if (buffer === "") setPrompt(p);
    };
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
    // The worker loaded the rest of the session after the prompt was drawn; Deno's loading
    // indicator may have cleared the prompt's line meanwhile (not under `deno run -q`).
    e.onSession = () => {
      if (e.running !== null || !terminal || closed) return;
      readline.clearLine(process.stdout, 0);
      readline.cursorTo(process.stdout, 0);
      rl.prompt(true);
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
      what = card === null ? "" : await restoreKilledCard(card, sessionOptions);
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
      sigintAt ??= performance.now();
      if (Atomics.load(ev.interrupt, 0) !== 0) {
        // Still set: the input made no MMIO access since the last Ctrl-C. Kill it.
        void kill();
        return;
      }
      Atomics.store(ev.interrupt, 0, 1);
      // A progress line the input drew (on stderr, no newline) is cleared first.
      process.stdout.write(
        `${
          terminal ? "\r\x1b[2K" : ""
        }^C (stops at the next MMIO access; Ctrl-C again to kill the input)\n`,
      );
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

  if (terminal) reverseSearch(rl, history, () => current);

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
      if (typeof ready !== "string") await restoreKilledCard(ready.card, sessionOptions);
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

  // Written with the banner already: a terminal's line editor draws it again (in place, with
  // anything typed meanwhile); piped, it stands.
  if (terminal) showPrompt();
  // The parser (for inputs that go on over lines) runs its code after the prompt is shown. The
  // specifier is literal on purpose: Deno reads the module and its npm package with this one,
  // before the prompt, so nothing it may print resolving them can come after it.
  const parser = import("./repl_eval.ts");
  let code = 0;
  for await (const line of rl) {
    lastSigint = false;
    const command = buffer === "" ? /^\s*\.([A-Za-z]\w*)(?:\s+(\S.*?))?\s*$/.exec(line) : null;
    if (command !== null) {
      const [, cmd, arg] = command;
      if (cmd === "exit") break;
      if (hist !== null && arg !== undefined) {
        try {
          Deno.writeTextFileSync(hist, line.trim() + "\n", { append: true });
        } catch {
          // a convenience only
        }
      }
      if (cmd === "help") {
        console.log(COMMAND_HELP);
        await ev.evaluate("help()");
      } else if (cmd === "break" || cmd === "clear") reset();
      else if (cmd === "reopen") {
        await ev.reopen();
        if (killing !== null) await killing;
      } else if (cmd === "save" && arg !== undefined) await ev.save(arg);
      else if (cmd === "save") console.log("error: .save needs a file: .save /tmp/dump.txt");
      else {
        console.log(`error: unknown command .${cmd}; try .help, .reopen, .save FILE or .exit`);
      }
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
    const state = (await parser).checkInput(input);
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
      sigintAt = null;
      await ev.evaluate(input);
      if (killing !== null) await killing; // the prompt comes back once the fresh session is up
      if (timing && sigintAt !== null) {
        console.log(`(Ctrl-C answered in ${(performance.now() - sigintAt).toFixed(1)} ms)`);
      }
      sigintAt = null;
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

/** What `.help` lists before the preloaded names. */
const COMMAND_HELP = `Commands:
  .help          this list, then help()
  .reopen        close the device and open it again (after gpu.close() or a lost GPU); your
                 declarations stay, the preloaded names (gpu, pramin, mm, ...) name the new objects
  .save FILE     write the last value (_) as printed to FILE
  EXPR ;> FILE   print EXPR's value to FILE instead of the screen (;>> FILE appends):
                 vmm.dump() ;> /tmp/dump.txt
  .break         drop a multi-line input
  .exit          quit (Ctrl-D too)
Keys: Tab completes; Up/Down walk the history; Ctrl-R searches it backwards (type to narrow,
Ctrl-R again for older matches, Enter runs the match, Esc or Ctrl-G gives up); Ctrl-C stops
the running input.`;

/** readline's internals the reverse search drives (node:readline, as Deno ships it). */
interface RlInternals {
  line: string;
  cursor: number;
  _ttyWrite(s: string | undefined, key: KeyInfo | undefined): void;
  _refreshLine(): void;
  setPrompt(p: string): void;
}

/** A key as readline's keypress decoder reports it. */
interface KeyInfo {
  name?: string;
  ctrl?: boolean;
  meta?: boolean;
  shift?: boolean;
  sequence?: string;
}

/**
 * Ctrl-R: an incremental reverse search of the history, as bash and
 * readline do it (what is typed when it starts is the first query). The
 * prompt becomes `(reverse-i-search)\`QUERY': ` with the
 * newest entry containing QUERY on the line, updated as QUERY is typed;
 * Ctrl-R again goes to older matches; when there is none the prompt says
 * `(failed reverse-i-search)` (and the terminal bell rings). Enter runs the
 * match; Esc or Ctrl-G restores the line as it was; any other key (arrows,
 * Ctrl-A/E, Tab, ...) takes the match onto the line and acts on it.
 */
export function reverseSearch(
  rl: readline.Interface,
  history: () => string[],
  prompt: () => string,
): void {
  const r = rl as unknown as RlInternals;
  const ttyWrite = r._ttyWrite.bind(r);
  let search: {
    query: string;
    index: number;
    failed: boolean;
    line: string;
    cursor: number;
  } | null = null;
  let lastQuery = "";
  const entry = (i: number) => history()[i].replaceAll("\n", " ");
  const find = (from: number, query: string): number => {
    const h = history();
    for (let i = Math.max(0, from); i < h.length; i++) if (h[i].includes(query)) return i;
    return -1;
  };
  const render = () => {
    const st = search!;
    r.setPrompt(`(${st.failed ? "failed " : ""}reverse-i-search)\`${st.query}': `);
    const text = st.index >= 0 ? entry(st.index) : st.line;
    r.line = text;
    const at = st.query === "" ? -1 : text.indexOf(st.query);
    r.cursor = at >= 0 ? at : text.length;
    r._refreshLine();
  };
  const leave = (keep: boolean) => {
    const st = search!;
    search = null;
    lastQuery = st.query === "" ? lastQuery : st.query;
    r.setPrompt(prompt());
    r.line = keep && st.index >= 0 ? entry(st.index) : st.line;
    r.cursor = keep && st.index >= 0 ? r.line.length : st.cursor;
    r._refreshLine();
  };
  const bell = () => Deno.stdout.writeSync(new TextEncoder().encode("\x07"));
  r._ttyWrite = (s, key) => {
    const ctrlR = key?.ctrl === true && key.name === "r";
    if (search === null) {
      if (!ctrlR) return ttyWrite(s, key);
      // What is typed already is the first query (Ctrl-R on "pramin" finds the newest use).
      const query = r.line.trim();
      const index = query === "" ? -1 : find(0, query);
      search = { query, index, failed: query !== "" && index < 0, line: r.line, cursor: r.cursor };
      if (search.failed) bell();
      render();
      return;
    }
    const st = search;
    // The next match from `from`: the line shows it, or a bell and the failing mark.
    const seek = (from: number) => {
      const i = find(from, st.query);
      if (i < 0) {
        st.failed = true;
        bell();
      } else {
        st.index = i;
        st.failed = false;
      }
      render();
    };
    if (ctrlR) {
      if (st.query === "" && lastQuery !== "") st.query = lastQuery;
      seek(st.index + 1);
      return;
    }
    if (key?.name === "escape" || (key?.ctrl === true && key.name === "g")) {
      leave(false);
      return;
    }
    if (key?.name === "backspace") {
      st.query = st.query.slice(0, -1);
      const i = st.query === "" ? -1 : find(0, st.query);
      st.index = i;
      st.failed = st.query !== "" && i < 0;
      render();
      return;
    }
    const printable = s !== undefined && s.length > 0 && !key?.ctrl && !key?.meta &&
      [...s].every((c) => c >= " " && c !== "\x7f");
    if (printable) {
      st.query += s;
      seek(st.index);
      return;
    }
    // Enter runs the match; any other key takes it onto the line first.
    leave(true);
    ttyWrite(s, key);
  };
}
