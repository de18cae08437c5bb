/**
 * Where BAR1's tables are, as an instance block tells: {@linkcode readInstanceBlock}
 * reads the root page directory a BAR1 instance block names. Apart from
 * mm/bar_user.ts (which re-exports both) so that an open GPU can name its
 * BAR1 root before the BAR1 code is loaded (the REPL's banner).
 *
 * @module
 */

import { fail, hex } from "../hw/errors.ts";
import {
  getField,
  NV_RAMIN_PAGE_DIR_BASE_HI,
  NV_RAMIN_PAGE_DIR_BASE_LO,
  RAMIN_PDB,
} from "../hw/regs.ts";
import type { Pramin } from "./pramin.ts";

/** Where BAR1's tables are. */
export interface Bar1Binding {
  /** VRAM address of the BAR1 instance block. */
  instanceBlock: number;
  /** VRAM address of the BAR1 root page directory. */
  pdb: number;
}

const PAGE = 4096;

/** Reads the PDB an instance block names (through PRAMIN); refuses formats novamm cannot map. */
export function readInstanceBlock(
  pramin: Pramin,
  inst: number,
  options: { mmuVersion: 2 | 3 },
): Bar1Binding | null {
  using w = pramin.borrow();
  const word = w.read32(inst + NV_RAMIN_PAGE_DIR_BASE_LO);
  if (getField(word, RAMIN_PDB.TARGET) !== 0) return null;
  // novamm's formats are the v2/v3 page tables with 64 KiB big pages: refuse
  // anything else rather than map with the wrong layout.
  if (getField(word, RAMIN_PDB.BIG_PAGE_SIZE) !== 1) {
    fail(
      "ENOTSUP",
      `the BAR1 instance block at ${hex(inst)} selects 128 KiB big pages (PAGE_DIR_BASE ${
        hex(word, 8)
      }); only 64 KiB is supported`,
    );
  }
  if (options.mmuVersion === 2 && getField(word, RAMIN_PDB.USE_VER2_PT_FORMAT) !== 1) {
    fail(
      "ENOTSUP",
      `the BAR1 instance block at ${hex(inst)} does not use the version 2 page-table format`,
    );
  }
  const pdb = getField(word, RAMIN_PDB.LO) * PAGE +
    w.read32(inst + NV_RAMIN_PAGE_DIR_BASE_HI) * 2 ** 32;
  return { instanceBlock: inst, pdb };
}
