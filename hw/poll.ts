/**
 * Polling a status register until a condition holds, with a timeout, the way
 * drivers wait for the TLB invalidate, the FB flush and a BAR1 bind (RM,
 * nouveau and nova-core all use 2 s). A read that returns a PRI error, or all
 * ones while NV_PMC_BOOT_0 reads all ones too (the GPU is lost), stops the
 * wait at once instead of spinning until the timeout.
 *
 * @module
 */

import { fail, hex } from "./errors.ts";
import type { Mmio } from "./mmio.ts";
import { isPriError, lostAt } from "./regs.ts";

/** Options for {@linkcode pollRegister}. */
export interface PollOptions {
  /** Give up after this many milliseconds (default 2000). */
  timeoutMs?: number;
  /** What is being waited for, for the timeout message ("TLB invalidate of PDB 0x…"). */
  what?: string;
  /** Extra register state for the timeout message. */
  state?: () => string;
}

/** What a completed poll saw. */
export interface PollResult {
  /** The last value read (the one that satisfied the condition). */
  value: number;
  /** Reads made. */
  polls: number;
}

/** Checks a poll timeout: a finite number of milliseconds in 0..60000. */
export function checkTimeout(ms: unknown, what: string): number {
  if (typeof ms !== "number" || !Number.isFinite(ms) || ms < 0 || ms > 60_000) {
    fail("EINVAL", `${what} ${String(ms)} is not a number of milliseconds in 0..60000`);
  }
  return ms;
}

/**
 * Reads `offset` until `done(value)`; ETIMEDOUT naming the register and its
 * value after `timeoutMs`; EIO on a PRI error, ENODEV when the GPU is gone.
 *
 * @example
 * ```ts
 * import { openGpu } from "../mod.ts";
 * using gpu = await openGpu({ device: "sim" });
 * pollRegister(gpu.bar0, 0x70000, "NV_UFLUSH_FB_FLUSH", (v) => (v & 2) === 0);
 * ```
 */
export function pollRegister(
  bar0: Mmio,
  offset: number,
  name: string,
  done: (value: number) => boolean,
  options: PollOptions = {},
): PollResult {
  const timeoutMs = options.timeoutMs ?? 2000;
  const deadline = performance.now() + timeoutMs;
  let polls = 0;
  for (;;) {
    const v = bar0.read32(offset);
    polls++;
    // All ones is suspicious, not proof: only a BOOT_0 that reads all ones too means the GPU
    // is lost (facts §14.1); a status register may read all ones (an XAL token of 0x7FFFFFFF, BUSY).
    if (lostAt(bar0, offset, v)) {
      fail(
        "ENODEV",
        `${name} (${hex(offset)}) read 0xffffffff while waiting for ${
          options.what ?? "it"
        }: the GPU is gone`,
        "reopen the device",
      );
    }
    if (isPriError(v)) {
      fail("EIO", `${name} (${hex(offset)}) read a PRI error ${hex(v, 8)} while polling`);
    }
    if (done(v)) return { value: v, polls };
    if (performance.now() > deadline) {
      const extra = options.state === undefined ? "" : ` (${options.state()})`;
      fail(
        "ETIMEDOUT",
        `${options.what ?? name} did not complete in ${timeoutMs} ms: ${name} (${
          hex(offset)
        }) still reads ${hex(v, 8)} after ${polls} polls${extra}`,
      );
    }
  }
}
