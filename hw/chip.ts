/**
 * Chip identification from NV_PMC_BOOT_0 / NV_PMC_BOOT_42 (facts §1).
 *
 * BOOT_42 carries the chip id (architecture << 4 | implementation) in bits
 * 29:20; BOOT_0 carries the same architecture split in two fields and is used
 * to cross-check and to reject pre-Fermi parts, as nova-core does.
 *
 * @module
 */

import { BOOT_0, BOOT_42, getField } from "./regs.ts";
import { describe, fail, hex } from "./errors.ts";
import { checkUint } from "./validate.ts";

/** GPU architectures novamm knows. */
export type Architecture = "Turing" | "Ampere" | "Ada" | "Hopper" | "Blackwell";

/** What BOOT_0/BOOT_42 say about a chip. */
export interface ChipInfo {
  /** Chip name, e.g. `"GA102"`. */
  name: string;
  /** Architecture family. */
  architecture: Architecture;
  /** Page-table format: 2 (Turing, Ampere, Ada) or 3 (Hopper, Blackwell). */
  mmuVersion: 2 | 3;
  /** BOOT_42 CHIP_ID, e.g. 0x172. */
  chipId: number;
  /** Revision as printed by NVIDIA tools, e.g. `"A1"`. */
  revision: string;
  /** Raw NV_PMC_BOOT_0. */
  boot0: number;
  /** Raw NV_PMC_BOOT_42. */
  boot42: number;
}

const ARCH: Record<number, Architecture> = {
  0x16: "Turing",
  0x17: "Ampere",
  0x18: "Hopper",
  0x19: "Ada",
  0x1a: "Blackwell",
  0x1b: "Blackwell",
};

/** Chip ids from nova-core's chipset table (facts §1.2). */
export const CHIPS: Readonly<Record<number, string>> = {
  0x162: "TU102",
  0x164: "TU104",
  0x166: "TU106",
  0x167: "TU117",
  0x168: "TU116",
  0x170: "GA100",
  0x172: "GA102",
  0x173: "GA103",
  0x174: "GA104",
  0x176: "GA106",
  0x177: "GA107",
  0x180: "GH100",
  0x192: "AD102",
  0x193: "AD103",
  0x194: "AD104",
  0x196: "AD106",
  0x197: "AD107",
  0x1a0: "GB100",
  0x1a2: "GB102",
  0x1a3: "GB110",
  0x1a4: "GB112",
  0x1b2: "GB202",
  0x1b3: "GB203",
  0x1b5: "GB205",
  0x1b6: "GB206",
  0x1b7: "GB207",
};

/**
 * Decodes the two boot registers.
 *
 * @example
 * ```ts
 * decodeChip(0x172000a1, 0x172a1000).name; // "GA102"
 * ```
 */
export function decodeChip(boot0: number, boot42: number): ChipInfo {
  for (const [v, what] of [[boot0, "BOOT_0"], [boot42, "BOOT_42"]] as const) {
    if (checkUint(v, what) > 0xffffffff) {
      fail("EINVAL", `${what} ${describe(v)} is not a 32-bit value`);
    }
  }
  const raw = `BOOT_0=${hex(boot0 >>> 0, 8)} BOOT_42=${hex(boot42 >>> 0, 8)}`;
  if ((boot0 >>> 0) === 0xffffffff || (boot42 >>> 0) === 0xffffffff) {
    fail("ENODEV", `the GPU does not answer (${raw}): it fell off the bus or is in reset`);
  }
  const arch0 = (getField(boot0, BOOT_0.ARCHITECTURE_1) << 5) |
    getField(boot0, BOOT_0.ARCHITECTURE_0);
  if (
    getField(boot0, BOOT_0.ARCHITECTURE_1) === 0 && getField(boot0, BOOT_0.ARCHITECTURE_0) < 0xc
  ) {
    fail("ENODEV", `pre-Fermi GPU (${raw}) is not supported`);
  }
  const chipId = getField(boot42, BOOT_42.CHIP_ID);
  const arch = getField(boot42, BOOT_42.ARCHITECTURE);
  const architecture = ARCH[arch];
  const name = CHIPS[chipId];
  if (architecture === undefined || name === undefined) {
    fail(
      "ENODEV",
      `unknown chip id ${hex(chipId)} (architecture ${hex(arch)}) from ${raw}; ` +
        "known: Turing 0x16x, Ampere 0x17x, Hopper 0x180, Ada 0x19x, Blackwell 0x1ax/0x1bx",
    );
  }
  if (arch0 !== arch) {
    fail(
      "ENODEV",
      `BOOT_0 architecture ${hex(arch0)} disagrees with BOOT_42 ${hex(arch)} (${raw})`,
    );
  }
  const major = getField(boot42, BOOT_42.MAJOR_REVISION);
  const minor = getField(boot42, BOOT_42.MINOR_REVISION);
  return {
    name,
    architecture,
    mmuVersion: architecture === "Hopper" || architecture === "Blackwell" ? 3 : 2,
    chipId,
    revision: `${major.toString(16).toUpperCase()}${minor.toString(16)}`,
    boot0: boot0 >>> 0,
    boot42: boot42 >>> 0,
  };
}

/** Encodes BOOT_0/BOOT_42 for a chip id at revision A1 (what the simulator reports; facts §1.3). */
export function encodeBoot(chipId: number): { boot0: number; boot42: number } {
  const arch = chipId >> 4;
  const impl = chipId & 0xf;
  const boot0 = (((arch & 0x1f) << 24) | (impl << 20) | ((arch >> 5) << 8) | 0xa1) >>> 0;
  const boot42 = ((chipId << 20) | (0xa << 16) | (1 << 12)) >>> 0;
  return { boot0, boot42 };
}
