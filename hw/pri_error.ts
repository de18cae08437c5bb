/**
 * PRI error values: what a register read returns when the access failed on
 * the GPU's priv ring instead of reaching a register. RM treats
 * `(v & 0xFFF00000) == 0xBAD00000` as one (facts §13.1); bits 31:8 are the
 * error code (NV_PPRIV_SYS_PRI_ERROR_CODE), bits 7:0 extra information.
 *
 * The code table is NVIDIA's published one (OGKM
 * `maxwell/gm107/dev_pri_ringstation_sys.h`, which RM's
 * `gpuGetSanityCheckRegReadError_GM107` applies to every chip); the register
 * database carries the same table as parsed from the header and
 * `tests/regdb_test.ts` checks the two agree. Two more patterns come from
 * NVIDIA's own code and are labelled so; other codes are shown raw.
 *
 * @module
 */

import { describe, fail, hex } from "./errors.ts";

/** NV_PPRIV_SYS_PRI_ERROR_CODE values (bits 31:8 of the read value), from the published header. */
export const PRI_ERROR_CODES: Readonly<Record<number, string>> = {
  0xbad00f: "HOST_FECS_ERR",
  0xbad001: "HOST_PRI_TIMEOUT",
  0xbad0b0: "HOST_FB_ACK_TIMEOUT",
  0xbadf10: "FECS_PRI_TIMEOUT",
  0xbadf11: "FECS_PRI_DECODE",
  0xbadf12: "FECS_PRI_RESET",
  0xbadf13: "FECS_PRI_FLOORSWEEP",
  0xbadf14: "FECS_PRI_STUCK_ACK",
  0xbadf15: "FECS_PRI_0_EXPECTED_ACK",
  0xbadf16: "FECS_PRI_FENCE_ERROR",
  0xbadf17: "FECS_PRI_SUBID_ERROR",
  0xbadf20: "FECS_PRI_ORPHAN",
  0xbadf30: "FECS_DEAD_RING",
  0xbadf40: "FECS_TRAP",
  0xbadf50: "FECS_PRI_CLIENT_ERR",
};

/** Patterns NVIDIA's code names outside the code table: [value, mask, meaning]. */
const KNOWN_PATTERNS: readonly (readonly [number, number, string])[] = [
  [
    0xbadf0200,
    0xffffffff,
    "SCPM_PRI_DUMMY_DATA: a security-protected (priv-level) read, Hopper/Blackwell " +
    "(NV_XAL_EP_ZB_SCPM_PRI_DUMMY_DATA_PATTERN_INIT, gh100/gb100 dev_nv_xal_ep_zb.h)",
  ],
  [
    0xbadf4100,
    0xffffff00,
    "PRIV target mask locked: the block is held by firmware (RM kern_fsp_gh100.c)",
  ],
];

/** True when `value` is a PRI error pattern (`(v & 0xFFF00000) == 0xBAD00000`). */
export function isPriErrorValue(value: number): boolean {
  return typeof value === "number" && Number.isInteger(value) && value >>> 20 === 0xbad &&
    value >= 0 && value <= 0xffffffff;
}

/**
 * What a PRI error value means, or null when `value` is not one. Codes in
 * the published table are named with their sub-code (bits 7:0); unknown codes
 * are shown raw.
 *
 * @example
 * ```ts
 * describePriError(0xbadf5040); // "PRI error FECS_PRI_CLIENT_ERR (code 0xbadf50, sub-code 0x40)"
 * describePriError(0xbadf5108); // "PRI error 0xbadf5108 (code 0xbadf51 not in NVIDIA's table, sub-code 0x08)"
 * describePriError(0x12345678); // null
 * ```
 */
export function describePriError(value: number): string | null {
  if (typeof value !== "number" || !Number.isInteger(value)) {
    fail("EINVAL", `describePriError takes a 32-bit read value, not ${describe(value)}`);
  }
  if (!isPriErrorValue(value)) return null;
  for (const [v, mask, what] of KNOWN_PATTERNS) {
    if (((value & mask) >>> 0) === v) {
      return `PRI error ${hex(value, 8)}: ${what}`;
    }
  }
  const code = Math.floor(value / 256);
  const sub = hex(value & 0xff, 2);
  const name = PRI_ERROR_CODES[code];
  return name === undefined
    ? `PRI error ${hex(value, 8)} (code ${hex(code)} not in NVIDIA's table, sub-code ${sub})`
    : `PRI error ${name} (code ${hex(code)}, sub-code ${sub})`;
}
