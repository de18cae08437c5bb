/**
 * GPU TLB invalidation through the NV_VIRTUAL_FUNCTION_PRIV_MMU_INVALIDATE
 * registers (facts §3): name the PDB, trigger, poll TRIGGER until the
 * hardware clears it.
 *
 * The control value is ALL_VA | ACK_GLOBALLY | TRIGGER (0x80000081), what
 * nova-core settled on in v11 (facts D12); ALL_PDB replaces the PDB for a
 * flush of every address space. The PDB goes as NVIDIA's RM encodes it:
 * ADDR = PDB >> 12 in bits 31:4 with APERTURE 0 (video memory), and
 * UPPER_PDB = PDB >> 40 in its full 20 bits (nova's 8 bits are too few, D13).
 *
 * @module
 */

import { describe, fail, hex } from "../hw/errors.ts";
import type { Mmio } from "../hw/mmio.ts";
import {
  MMU_INVALIDATE,
  MMU_INVALIDATE_ACK_GLOBALLY,
  MMU_INVALIDATE_PDB,
  MMU_INVALIDATE_UPPER_PDB,
  NV_VIRTUAL_FUNCTION_PRIV_MMU_INVALIDATE,
  NV_VIRTUAL_FUNCTION_PRIV_MMU_INVALIDATE_PDB,
  NV_VIRTUAL_FUNCTION_PRIV_MMU_INVALIDATE_UPPER_PDB,
  setField,
} from "../hw/regs.ts";

/** Options for {@linkcode Tlb}. */
export interface TlbOptions {
  /** Poll timeout in milliseconds (nova-core and nouveau use 2 s). */
  timeoutMs?: number;
  /** VRAM size, to refuse a PDB outside VRAM. */
  vramSize?: number;
}

/** What one flush did. */
export interface FlushResult {
  /** The PDB named, or `"all"`. */
  pdb: number | "all";
  /** Reads of the invalidate register until TRIGGER cleared. */
  polls: number;
}

/**
 * The TLB of one GPU.
 *
 * @example
 * ```ts
 * gpu.tlb.flush(gpu.bar1.pdb);
 * gpu.tlb.flush("all");
 * ```
 */
export class Tlb {
  readonly #bar0: Mmio;
  readonly #timeoutMs: number;
  readonly #vramSize: number;
  /** Flushes completed since open. */
  flushes = 0;

  /** Constructs it (see the class documentation for who does and how). */
  constructor(bar0: Mmio, options: TlbOptions = {}) {
    this.#bar0 = bar0;
    this.#timeoutMs = options.timeoutMs ?? 2000;
    this.#vramSize = options.vramSize ?? 2 ** 40;
  }

  /** Invalidates the translations of one address space (PDB) or of all (`"all"`). */
  flush(pdb: number | "all"): FlushResult {
    let control = setField(0, MMU_INVALIDATE.ALL_VA, 1);
    control = setField(control, MMU_INVALIDATE.ACK, MMU_INVALIDATE_ACK_GLOBALLY);
    control = setField(control, MMU_INVALIDATE.TRIGGER, 1);
    if (pdb === "all") {
      control = setField(control, MMU_INVALIDATE.ALL_PDB, 1);
    } else {
      if (!Number.isSafeInteger(pdb) || pdb < 0 || pdb % 4096 !== 0) {
        fail("EINVAL", `PDB ${describe(pdb)} is not a 4 KiB-aligned VRAM address`);
      }
      if (pdb >= this.#vramSize) {
        fail("EINVAL", `PDB ${hex(pdb)} is past the end of VRAM (${hex(this.#vramSize)})`);
      }
      const lo = setField(0, MMU_INVALIDATE_PDB.ADDR, (pdb % 2 ** 40) / 4096);
      this.#bar0.write32(NV_VIRTUAL_FUNCTION_PRIV_MMU_INVALIDATE_PDB, lo);
      this.#bar0.write32(
        NV_VIRTUAL_FUNCTION_PRIV_MMU_INVALIDATE_UPPER_PDB,
        setField(0, MMU_INVALIDATE_UPPER_PDB.ADDR, Math.floor(pdb / 2 ** 40)),
      );
    }
    this.#bar0.write32(NV_VIRTUAL_FUNCTION_PRIV_MMU_INVALIDATE, control);
    const deadline = performance.now() + this.#timeoutMs;
    let polls = 0;
    for (;;) {
      const v = this.#bar0.read32(NV_VIRTUAL_FUNCTION_PRIV_MMU_INVALIDATE);
      polls++;
      if ((v & 0x80000000) === 0) break;
      if (performance.now() > deadline) {
        const state = [
          `INVALIDATE=${hex(v, 8)}`,
          `INVALIDATE_PDB=${
            hex(this.#bar0.read32(NV_VIRTUAL_FUNCTION_PRIV_MMU_INVALIDATE_PDB), 8)
          }`,
          `UPPER_PDB=${
            hex(this.#bar0.read32(NV_VIRTUAL_FUNCTION_PRIV_MMU_INVALIDATE_UPPER_PDB), 8)
          }`,
        ].join(" ");
        fail(
          "ETIMEDOUT",
          `TLB invalidate of ${
            pdb === "all" ? "all PDBs" : `PDB ${hex(pdb)}`
          } did not complete in ${this.#timeoutMs} ms after ${polls} polls (${state})`,
        );
      }
    }
    this.flushes++;
    return { pdb, polls };
  }
}
