/**
 * A real terminal for the REPL's tests: a command in a tmux pane (its own tmux server, its own
 * socket directory), keys typed one group at a time, the screen read back. Tests that use it
 * skip where tmux is missing (`haveTmux()`; CI installs it).
 *
 * ```ts
 * const term = await Terminal.start(`${Deno.execPath()} run -A repl.ts`);
 * try {
 *   await term.waitFor(/^ga102>$/m); // tmux drops trailing spaces
 *   await term.line("1 + 1");
 *   await term.waitFor(/^0x2$/m);
 * } finally {
 *   await term.close();
 * }
 * ```
 *
 * @module
 */

import { ROOT } from "./util.ts";

/** True when tmux is on PATH (CI installs it; terminal tests skip without it). */
export function haveTmux(): boolean {
  try {
    return new Deno.Command("tmux", { args: ["-V"], stdout: "null", stderr: "null" }).outputSync()
      .success;
  } catch {
    return false;
  }
}

/** Options for {@linkcode Terminal.start}. */
export interface TerminalOptions {
  /**
   * Environment for the command, over `NO_COLOR=1` and `NOVAMM_HISTORY=` (no history file):
   * `{ NOVAMM_HISTORY: path }` keeps one.
   */
  env?: Record<string, string>;
  /** Columns (default 120). */
  cols?: number;
  /** Rows (default 40). */
  rows?: number;
}

/** A command running in a tmux pane: a real terminal, keys typed one group at a time. */
export class Terminal {
  readonly #dir: string;

  private constructor(dir: string) {
    this.#dir = dir;
  }

  /**
   * Starts `command` (run by the shell, in the repository root) in a fresh tmux server. The
   * pane stays open after the command ends, with `[exit N]` under its output, so its last
   * screen can be read.
   */
  static async start(command: string, options: TerminalOptions = {}): Promise<Terminal> {
    const t = new Terminal(await Deno.makeTempDir({ prefix: "novamm-tmux-" }));
    const exports = Object.entries({ NO_COLOR: "1", NOVAMM_HISTORY: "", ...options.env })
      .map(([k, v]) => `${k}='${v.replaceAll("'", "'\\''")}'`).join(" ");
    await t.#tmux(
      "new-session",
      "-d",
      "-x",
      String(options.cols ?? 120),
      "-y",
      String(options.rows ?? 40),
      "-c",
      ROOT,
      `env ${exports} ${command}; echo "[exit $?]"; sleep 30`,
    );
    return t;
  }

  async #tmux(...args: string[]): Promise<string> {
    const out = await new Deno.Command("tmux", {
      args: ["-L", "novamm", ...args],
      env: { TMUX_TMPDIR: this.#dir },
      stdout: "piped",
      stderr: "piped",
    }).output();
    return new TextDecoder().decode(out.stdout);
  }

  /** Types keys (tmux key names such as `Tab`, `Enter`, `C-c` are keys, not text). */
  async keys(...keys: string[]): Promise<void> {
    // One key group per send, with a pause: readline takes a multi-character chunk as a paste.
    for (const k of keys) {
      await this.#tmux("send-keys", "-t", "0", k);
      await pause();
    }
  }

  /** Types text literally. */
  async type(text: string): Promise<void> {
    await this.#tmux("send-keys", "-t", "0", "-l", text);
    await pause();
  }

  /** Types a line and presses Enter. */
  async line(text: string): Promise<void> {
    await this.type(text);
    await this.keys("Enter");
  }

  /** The screen now, with up to 200 lines scrolled off above it. */
  screen(): Promise<string> {
    return this.#tmux("capture-pane", "-p", "-t", "0", "-S", "-200");
  }

  /** Forgets the scrolled-off lines and clears the screen (Ctrl-L). */
  async clear(): Promise<void> {
    await this.#tmux("clear-history", "-t", "0");
    await this.keys("C-l");
  }

  /**
   * Waits until the screen (with what scrolled off) matches, polling every 10 ms; returns it.
   * Throws with the screen after `ms`.
   */
  async waitFor(pattern: RegExp | string, ms = 15000): Promise<string> {
    const end = performance.now() + ms;
    let s = "";
    while (performance.now() < end) {
      s = await this.screen();
      if (typeof pattern === "string" ? s.includes(pattern) : pattern.test(s)) return s;
      await new Promise((r) => setTimeout(r, 10));
    }
    throw new Error(`terminal never showed ${String(pattern)}; screen:\n${s}`);
  }

  /** Ends the tmux server and removes its socket directory; idempotent. */
  async close(): Promise<void> {
    await this.#tmux("kill-server");
    await Deno.remove(this.#dir, { recursive: true }).catch(() => {});
  }
}

/** The pause after each key group. */
function pause(): Promise<void> {
  return new Promise((r) => setTimeout(r, 50));
}
