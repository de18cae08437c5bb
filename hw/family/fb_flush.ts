/**
 * The FB flush per chip family (facts §13.3 item 3, §14.1): what makes CPU
 * writes to VRAM (through PRAMIN or BAR1) visible to the GPU's own clients —
 * the MMU walking page tables, a bind fetching an instance block.
 *
 * - **uflush** (Turing, Ampere, Ada): write FLUSH to NV_UFLUSH_FB_FLUSH
 *   0x70000, poll PENDING clear (nouveau `g84_bar_flush`; `gm107/dev_flush.h`).
 * - **xal** (GH100, GB20x): no 0x70000 exists. **Read**
 *   NV_XAL_EP_ZB_UFLUSH_FB_FLUSH 0x10F800: the read injects the flush and
 *   returns its start token; then poll NV_XAL_EP_ZB_UFLUSH_FB_FLUSH_COMPLETED
 *   0x10F804 until STATUS is no longer BUSY, or — while BUSY — until
 *   `(start − completed) & 0x7FFFFFFF` exceeds NV_XAL_EP_ZB_MEMOP_MAX_OUTSTANDING
 *   (140): the completed token has moved past the start token (RM
 *   `kbusSendSysmembarSingle_GH100`; equal tokens keep it waiting while BUSY,
 *   exactly as RM's loop). Neither register is ever written.
 * - **gsp** (GB100, GB102, GB110, GB112): the flush is an RPC to GSP-RM
 *   (`kbusSendSysmembarSingle_KERNEL`); there is no CPU-side register, so a
 *   flush is refused with ENOTSUP and BAR1 cannot be brought up without GSP.
 *
 * @module
 */

import { fail, hex } from "../errors.ts";
import type { Mmio } from "../mmio.ts";
import { pollRegister } from "../poll.ts";
import {
  getField,
  isPriError,
  NV_UFLUSH_FB_FLUSH,
  NV_XAL_EP_ZB_UFLUSH_FB_FLUSH,
  NV_XAL_EP_ZB_UFLUSH_FB_FLUSH_COMPLETED,
  readChecked,
  setField,
  UFLUSH_FB_FLUSH,
  XAL_FB_FLUSH,
  XAL_FB_FLUSH_STATUS_BUSY,
  XAL_MEMOP_MAX_OUTSTANDING,
  XAL_TOKEN_MASK,
} from "../regs.ts";

/** One family's FB flush. */
export interface FbFlushOps {
  /** `uflush`, `xal` or `gsp` (see the module doc). */
  readonly mechanism: "uflush" | "xal" | "gsp";
  /** One line for banners and help: the registers and the direction of each access. */
  readonly description: string;
  /** Flushes and waits (ETIMEDOUT after `timeoutMs`); returns the status polls made. */
  flush(bar0: Mmio, timeoutMs: number): number;
}

/** Turing, Ampere, Ada: write 0x70000, poll PENDING (bit 1) clear. */
export const UFLUSH: FbFlushOps = {
  mechanism: "uflush",
  description: "write NV_UFLUSH_FB_FLUSH 0x70000 = 1, poll bit 1 (PENDING) clear",
  flush(bar0, timeoutMs) {
    bar0.write32(NV_UFLUSH_FB_FLUSH, setField(0, UFLUSH_FB_FLUSH.FLUSH, 1));
    return pollRegister(
      bar0,
      NV_UFLUSH_FB_FLUSH,
      "NV_UFLUSH_FB_FLUSH",
      (v) => getField(v, UFLUSH_FB_FLUSH.PENDING) === 0,
      { timeoutMs, what: "FB flush" },
    ).polls;
  },
};

/**
 * RM's exit test while BUSY: the completed token is outside
 * [start − MAX_OUTSTANDING, start] (31-bit tokens that wrap), i.e. past the start token.
 */
export function tokenPassed(completed: number, start: number): boolean {
  return ((start - completed) & XAL_TOKEN_MASK) > XAL_MEMOP_MAX_OUTSTANDING;
}

/** GH100, GB20x: read 0x10F800 (the read flushes), poll 0x10F804. */
export const XAL: FbFlushOps = {
  mechanism: "xal",
  description:
    "read NV_XAL_EP_ZB_UFLUSH_FB_FLUSH 0x10F800 (the read flushes; start token), poll 0x10F804 until not BUSY or its token is past the start token",
  flush(bar0, timeoutMs) {
    const raw = readChecked(bar0, NV_XAL_EP_ZB_UFLUSH_FB_FLUSH);
    if (isPriError(raw)) {
      fail(
        "EIO",
        `NV_XAL_EP_ZB_UFLUSH_FB_FLUSH (${hex(NV_XAL_EP_ZB_UFLUSH_FB_FLUSH)}) read a PRI error ${
          hex(raw, 8)
        }: no FB flush was started`,
      );
    }
    const start = getField(raw, XAL_FB_FLUSH.TOKEN);
    return pollRegister(
      bar0,
      NV_XAL_EP_ZB_UFLUSH_FB_FLUSH_COMPLETED,
      "NV_XAL_EP_ZB_UFLUSH_FB_FLUSH_COMPLETED",
      (v) =>
        getField(v, XAL_FB_FLUSH.STATUS) !== XAL_FB_FLUSH_STATUS_BUSY ||
        tokenPassed(getField(v, XAL_FB_FLUSH.TOKEN), start),
      { timeoutMs, what: `FB flush (start token ${hex(start)})` },
    ).polls;
  },
};

/** GB10x: the flush is a GSP RPC; refused. */
export const GSP_ONLY: FbFlushOps = {
  mechanism: "gsp",
  description: "an RPC to GSP-RM (no CPU-side register): not available without GSP",
  flush() {
    fail(
      "ENOTSUP",
      "this chip (GB10x) flushes the frame buffer only through a GSP-RM call (RM kbusSendSysmembarSingle_KERNEL); there is no CPU-side flush register, so page-table and instance-block writes cannot be made visible to the GPU",
      "BAR1 stays physical on GB10x without GSP: use gpu.bar1.physical and PRAMIN",
    );
  },
};
