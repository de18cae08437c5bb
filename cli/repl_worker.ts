/**
 * The REPL's evaluation thread. The interactive prompt (cli/repl_ui.ts) runs
 * readline on the main thread and evaluates every input here, in a worker,
 * so that the main thread stays free to take Ctrl-C while an input runs:
 *
 * - the first Ctrl-C sets a word in shared memory that every MMIO access
 *   checks (`setInterruptWord` in hw/mmio.ts): the input stops with EINTR at
 *   its next access, `using` guards unwind (the window is restored), and the
 *   session lives on;
 * - an input that makes no MMIO access (a pure JavaScript loop) is stopped by
 *   a second Ctrl-C: the UI terminates this worker, puts the card's registers
 *   back from what {@linkcode ReadyMessage.card} recorded at open, and starts
 *   a fresh one.
 *
 * Everything the session prints (console.*, results, errors, errors thrown in
 * timers and promise rejections) is sent to the UI thread as messages, so
 * output that arrives while the prompt is shown is drawn above it.
 *
 * Startup comes in two steps, so the prompt shows as early as it can: this
 * module loads only what opening the device and drawing the banner need
 * (and starts loading the GPU code at once, before the UI thread says what
 * to open); it reports {@linkcode ReadyMessage} as soon as the device is
 * open, and only then loads the rest (the evaluator, the preloaded names,
 * `help`) and makes the session. Inputs that arrive meanwhile wait for it,
 * in order.
 *
 * @module
 */

/// <reference lib="deno.worker" />

import { setInterruptWord } from "../hw/mmio.ts";
import { NovaError } from "../hw/errors.ts";
import { isGpuGone, isPriError, windowRegister } from "../hw/regs.ts";
import type { Device } from "../hw/device.ts";
import type { Bar1BindState } from "../mm/bar_user.ts";
import type { Gpu } from "../mm/gpu.ts";
import { formatError } from "./common.ts";
import { type OpenedDevice, type OpenSessionOptions, openTraced } from "./repl_open.ts";
import { type EarlyOpen, earlyOpenOf } from "./repl_args.ts";
import { banner, promptFor } from "./repl_format.ts";
import type { Session } from "./repl_session.ts";

/**
 * The device repl.ts named in this worker's name (`earlyWorkerName`), opening now, while the UI
 * thread is still loading: the "open" message takes it when it asks for the same device. Else
 * the GPU code starts loading now (openTraced imports it when the "open" message comes, and
 * finds it loaded or loading; a failure shows there).
 */
let early: { options: EarlyOpen; opened: Promise<OpenedDevice> } | null = null;
{
  const options = earlyOpenOf(self.name);
  if (options !== null) {
    const opened = openTraced(options, { early: true });
    opened.catch(() => {}); // reported when the "open" message comes
    early = { options, opened };
  } else {
    import(new URL("../mm/gpu.ts", import.meta.url).href).catch(() => {});
  }
}

/** Opens what the UI thread asked for: the early open when it is that device, else anew. */
async function openAsked(options: OpenSessionOptions): Promise<OpenedDevice> {
  const pre = early;
  early = null;
  if (pre !== null) {
    const same = options.trace === undefined && options.device === pre.options.device &&
      options.readOnly === pre.options.readOnly && options.force === pre.options.force;
    if (same) return await pre.opened;
    // Not what was asked (repl.ts and the UI thread parse the same arguments): put it back.
    const o = await pre.opened.catch(() => null);
    o?.gpu.close();
  }
  return await openTraced(options, { early: true });
}

/** What the UI thread needs to put a card back after killing this worker. */
export interface SavedCard {
  /**
   * `pci`, or `sim` / `snap` (nothing to restore: the simulated card, or the reopened
   * snapshot, dies with the worker).
   */
  kind: Device["kind"];
  /** Device spec as opened. */
  spec: string;
  /** Opened read-only (nothing was written, nothing to restore). */
  readOnly: boolean;
  /** Page-table format version (for the BAR1 bind registers). */
  mmuVersion: 2 | 3;
  /** The PRAMIN window register and the value it held at open (null when that read failed). */
  window: { offset: number; value: number } | null;
  /** The BAR1 bind registers at open. */
  bind: Bar1BindState;
  /** The fd holding the card's lock file (process-wide: the UI thread closes it to take the card). */
  lockFd: number | null;
  /** The fd holding the flock on the card's resource0 (the UI thread closes it too). */
  cardLockFd: number | null;
}

/** Sent once the session is open. */
export interface ReadyMessage {
  /** Message kind. */
  t: "ready";
  /** The banner text. */
  banner: string;
  /** The prompt (`ga102> `). */
  prompt: string;
  /** What to restore if this worker must be killed. */
  card: SavedCard;
}

/** Messages from the UI thread. */
export type ToWorker =
  | { t: "open"; options: OpenSessionOptions; interrupt: SharedArrayBuffer; colors: boolean }
  | { t: "eval"; id: number; code: string }
  | { t: "complete"; id: number; line: string }
  | { t: "reopen"; id: number }
  | { t: "save"; id: number; file: string }
  | { t: "close" };

/** Messages to the UI thread. */
export type FromWorker =
  | ReadyMessage
  | { t: "open-failed"; text: string }
  | { t: "out"; text: string; err: boolean; during: boolean }
  | { t: "done"; id: number; ok: boolean }
  | { t: "completion"; id: number; result: [string[], string] }
  | { t: "card"; card: SavedCard; prompt: string }
  | { t: "session" }
  | { t: "closed"; errors: string[] };

const post = (m: FromWorker) => self.postMessage(m);
/** The rest of the REPL, loaded after the prompt is shown. */
interface Loaded {
  session: typeof import("./repl_session.ts");
  globals: typeof import("./globals.ts");
  watch: typeof import("./watch.ts");
}
let code: Loaded | null = null;
/**
 * The session, once the rest of the REPL has loaded; or the error that kept it from starting.
 * Null until the device is open.
 */
let session: Promise<Session | string> | null = null;
/** The session's preloaded names (completion of bare words), set when it opens. */
let preloaded: string[] = [];
let colors = false;
let evaluating = false;

function show(args: unknown[]): string {
  return args.map((a) => typeof a === "string" ? a : Deno.inspect(a, { colors, depth: 4 })).join(
    " ",
  );
}

// Everything printed goes to the UI thread, in order.
for (
  const [name, err] of [["log", false], ["info", false], ["debug", false], ["warn", true], [
    "error",
    true,
  ]] as const
) {
  console[name] = (...args: unknown[]) =>
    post({ t: "out", text: show(args), err, during: evaluating });
}

function asyncError(where: string, e: unknown): void {
  const text = formatError(e).replace(/^error: /, `error: (${where}) `);
  post({ t: "out", text, err: false, during: evaluating });
}

// An error in a timer, an event handler or an un-awaited promise keeps the session.
self.addEventListener("error", (ev) => {
  ev.preventDefault();
  asyncError("in a timer or event handler", (ev as ErrorEvent).error ?? (ev as ErrorEvent).message);
});
self.addEventListener("unhandledrejection", (ev) => {
  ev.preventDefault();
  asyncError("unhandled rejection", ev.reason);
});

async function evaluate(s: Session, id: number, input: string): Promise<void> {
  const { evalAndPrint } = code!.session;
  const before = s.cardMark();
  const stats = s.gpu.stats();
  evaluating = true;
  let ok = false;
  try {
    ok = await evalAndPrint(s, input, {
      colors,
      errorsTo: "stdout",
      onError: (e) => {
        if (!(e instanceof NovaError && e.code === "EINTR")) return false;
        s.endProgress();
        const now = s.gpu.stats();
        const n = now.mmioReads + now.mmioWrites - stats.mmioReads - stats.mmioWrites;
        console.log(`interrupted after ${n} MMIO access${n === 1 ? "" : "es"}`);
        return true;
      },
    });
    for (const line of s.cardEvents(before)) console.log(line);
    for (const line of code!.watch.pollWatches(colors)) console.log(line);
  } catch (e) {
    console.log(formatError(e));
  } finally {
    s.endProgress();
    evaluating = false;
    post({ t: "done", id, ok });
  }
}

function savedCard(gpu: Gpu): SavedCard {
  const reg = windowRegister(gpu.chip.architecture);
  let window: SavedCard["window"] = null;
  try {
    const v = gpu.bar0.read32(reg.offset);
    if (!isPriError(v) && !isGpuGone(v)) window = { offset: reg.offset, value: v };
  } catch {
    // unreadable: never written back
  }
  return {
    kind: gpu.device.kind,
    spec: gpu.device.spec,
    readOnly: gpu.device.readOnly,
    mmuVersion: gpu.chip.mmuVersion,
    window,
    bind: gpu.bar1AtOpen,
    lockFd: gpu.device.lock?.fd ?? null,
    cardLockFd: gpu.device.lock?.card?.fd ?? null,
  };
}

/**
 * Loads the rest of the REPL and makes the session of the open device (after the prompt is
 * shown). When that fails the device is closed (restoring the card) and the error is kept: each
 * input then answers with it.
 */
async function startSession(opened: OpenedDevice): Promise<Session | string> {
  try {
    // Computed specifiers on purpose: a literal one would have Deno read these modules (and
    // all they import) before this worker starts, which the prompt would wait for. Reading them
    // now, with the prompt shown, may let Deno's loading indicator clear the prompt's line on a
    // terminal (not under `deno run -q`, as `deno task repl` runs): the UI thread draws the
    // prompt again on "session".
    const here = (path: string) => new URL(path, import.meta.url).href;
    const [sessionCode, globals, watch] = await Promise.all([
      import(here("./repl_session.ts")) as Promise<typeof import("./repl_session.ts")>,
      import(here("./globals.ts")) as Promise<typeof import("./globals.ts")>,
      import(here("./watch.ts")) as Promise<typeof import("./watch.ts")>,
      (import(here("../mm/gpu.ts")) as Promise<typeof import("../mm/gpu.ts")>).then((m) =>
        m.loadGpuModules()
      ),
    ]);
    code = { session: sessionCode, globals, watch };
    const s = new sessionCode.Session(opened.gpu, opened.trace);
    s.install();
    // `.reopen` or gpu.reopen() typed at the prompt: the UI needs the new card's details.
    s.onReopen = (gpu) => post({ t: "card", card: savedCard(gpu), prompt: promptFor(gpu) });
    preloaded = globals.globalEntries(s.globals).map((e) => e.name);
    return s;
  } catch (e) {
    try {
      opened.gpu.close();
    } finally {
      opened.trace?.close();
    }
    const text = `${
      formatError(e)
    }\nthe session could not start (the device was closed); .exit quits`;
    console.log(text);
    return text;
  }
}

/** Reports an input that cannot run because the session never started. */
function notStarted(id: number, text: string): void {
  console.log(text);
  post({ t: "done", id, ok: false });
}

self.onmessage = async (ev: MessageEvent<ToWorker>) => {
  const m = ev.data;
  if (m.t === "open") {
    colors = m.colors;
    let opened: OpenedDevice;
    try {
      opened = await openAsked(m.options);
    } catch (e) {
      post({ t: "open-failed", text: formatError(e) });
      return;
    }
    setInterruptWord(new Int32Array(m.interrupt));
    post({
      t: "ready",
      banner: banner(opened.gpu),
      prompt: promptFor(opened.gpu),
      card: savedCard(opened.gpu),
    });
    session = startSession(opened);
    // Loading it may have cleared the prompt's line (see startSession): the UI draws it again.
    session.finally(() => post({ t: "session" }));
    return;
  }
  // Anything else waits for the session (messages that came while it loaded keep their order).
  const s = session === null ? "error: the device is not open" : await session;
  switch (m.t) {
    case "eval":
      if (typeof s === "string") return notStarted(m.id, s);
      await evaluate(s, m.id, m.code);
      return;
    case "reopen": {
      if (typeof s === "string") return notStarted(m.id, s);
      evaluating = true;
      let ok = false;
      try {
        const gpu = await s.reopen();
        console.log(banner(gpu));
        ok = true;
      } catch (e) {
        console.log(formatError(e));
        console.log("the session has no open GPU now; .reopen tries again, .exit quits");
      } finally {
        evaluating = false;
        post({ t: "done", id: m.id, ok });
      }
      return;
    }
    case "save": {
      if (typeof s === "string") return notStarted(m.id, s);
      evaluating = true;
      let ok = false;
      try {
        const last = (globalThis as Record<string, unknown>)._;
        if (last === undefined) console.log("error: no value to save yet (`_` is undefined)");
        else {
          console.log(code!.session.saveValue(last, m.file));
          ok = true;
        }
      } catch (e) {
        console.log(formatError(e));
      } finally {
        evaluating = false;
        post({ t: "done", id: m.id, ok });
      }
      return;
    }
    case "complete":
      post({
        t: "completion",
        id: m.id,
        result: typeof s === "string" ? [[], ""] : code!.session.complete(m.line, preloaded),
      });
      return;
    case "close": {
      const errors = typeof s === "string" ? [] : await s.close();
      post({ t: "closed", errors: errors.map((e) => formatError(e)) });
      return;
    }
  }
};
