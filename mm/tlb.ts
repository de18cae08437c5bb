/**
 * Making page-table writes visible to the GPU, in the order §13.3 of the
 * facts gives: the FB flush (NV_UFLUSH_FB_FLUSH: posted CPU writes reach the
 * frame buffer), then the TLB invalidate through the
 * NV_VIRTUAL_FUNCTION_PRIV_MMU_INVALIDATE registers — started only once no
 * earlier invalidate is pending, and polled until TRIGGER clears.
 *
 * The control value is ALL_VA | ACK_GLOBALLY | TRIGGER (0x80000081), what
 * nova-core settled on in v11 (facts D12), plus HUBTLB_ONLY for a BAR
 * address space (nouveau writes 0x80000005 there; facts §13.1); ALL_PDB
 * replaces the PDB for a flush of every address space. The PDB goes as
 * NVIDIA's RM encodes it: ADDR = PDB >> 12 in bits 31:4 with APERTURE 0
 * (video memory), and UPPER_PDB = PDB >> 40 in its full 20 bits (D13).
 *
 * @module
 */

import { describe, fail, hex } from "../hw/errors.ts";
import type { Mmio } from "../hw/mmio.ts";
import { checkTimeout, pollRegister } from "../hw/poll.ts";
import {
  getField,
  MMU_INVALIDATE,
  MMU_INVALIDATE_ACK_GLOBALLY,
  MMU_INVALIDATE_PDB,
  MMU_INVALIDATE_UPPER_PDB,
  NV_UFLUSH_FB_FLUSH,
  NV_VIRTUAL_FUNCTION_PRIV_MMU_INVALIDATE,
  NV_VIRTUAL_FUNCTION_PRIV_MMU_INVALIDATE_PDB,
  NV_VIRTUAL_FUNCTION_PRIV_MMU_INVALIDATE_UPPER_PDB,
  setField,
  UFLUSH_FB_FLUSH,
} from "../hw/regs.ts";
import { checkMmio, checkOptions } from "../hw/validate.ts";

/** Options for {@linkcode Tlb}. */
export interface TlbOptions {
  /** Poll timeout in milliseconds (nova-core and nouveau use 2 s). */
  timeoutMs?: number;
  /** VRAM size, to refuse a PDB outside VRAM. */
  vramSize?: number;
}

/** Options for {@linkcode Tlb.flush}. */
export interface FlushOptions {
  /** Invalidate only the hub TLB (the one BAR1 and BAR2 translate through): for BAR address spaces. */
  hubOnly?: boolean;
}

/** What one flush did. */
export interface FlushResult {
  /** The PDB named, or `"all"`. */
  pdb: number | "all";
  /** Reads of the invalidate register until TRIGGER cleared. */
  polls: number;
}

/**
 * Flushes posted CPU writes to the frame buffer: writes FLUSH, polls PENDING
 * clear (nouveau `g84_bar_flush`, 2 s). Page-table and instance-block writes
 * made through PRAMIN or BAR1 are not seen by the GPU before this completes.
 *
 * @example
 * ```ts
 * import { openGpu } from "../mod.ts";
 * using gpu = await openGpu({ device: "sim" });
 * fbFlush(gpu.bar0);
 * ```
 */
export function fbFlush(bar0: Mmio, options: { timeoutMs?: number } = {}): number {
  checkMmio(bar0, "fbFlush bar0");
  checkOptions(options, { timeoutMs: "number" }, "fbFlush options");
  const timeoutMs = checkTimeout(options.timeoutMs ?? 2000, "FB flush timeout");
  bar0.write32(NV_UFLUSH_FB_FLUSH, setField(0, UFLUSH_FB_FLUSH.FLUSH, 1));
  return pollRegister(
    bar0,
    NV_UFLUSH_FB_FLUSH,
    "NV_UFLUSH_FB_FLUSH",
    (v) => getField(v, UFLUSH_FB_FLUSH.PENDING) === 0,
    { timeoutMs, what: "FB flush" },
  ).polls;
}

/**
 * The TLB of one GPU.
 *
 * @example
 * ```ts
 * import { openGpu } from "../mod.ts";
 * using gpu = await openGpu({ device: "sim:ga102:gsp" }); // BAR1 on the tables GSP built
 * gpu.tlb.flush(gpu.bar1.pdb, { hubOnly: true });
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
    this.#timeoutMs = checkTimeout(options.timeoutMs ?? 2000, "TLB timeout");
    this.#vramSize = options.vramSize ?? 2 ** 40;
  }

  /** The FB flush alone (see {@linkcode fbFlush}). */
  fbFlush(): void {
    fbFlush(this.#bar0, { timeoutMs: this.#timeoutMs });
  }

  /**
   * Makes page-table changes visible: FB flush, wait until no invalidate is
   * pending, then invalidate the translations of one address space (PDB) or
   * of all (`"all"`) and poll until done.
   */
  flush(pdb: number | "all", options: FlushOptions = {}): FlushResult {
    const control = this.#control(pdb, options, "tlb.flush options");
    this.fbFlush();
    return this.#invalidate(pdb, control);
  }

  /**
   * The invalidate half of {@linkcode Tlb.flush}, without its FB flush: for a
   * caller that has just flushed and written nothing to VRAM since (a BAR1
   * bind flushes before it writes the bind register).
   */
  invalidate(pdb: number | "all", options: FlushOptions = {}): FlushResult {
    return this.#invalidate(pdb, this.#control(pdb, options, "tlb.invalidate options"));
  }

  /** Checks the arguments and builds the MMU_INVALIDATE word. */
  #control(pdb: number | "all", options: FlushOptions, what: string): number {
    checkOptions(options, { hubOnly: "boolean" }, what);
    let control = setField(0, MMU_INVALIDATE.ALL_VA, 1);
    control = setField(control, MMU_INVALIDATE.ACK, MMU_INVALIDATE_ACK_GLOBALLY);
    if (options.hubOnly) control = setField(control, MMU_INVALIDATE.HUBTLB_ONLY, 1);
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
    }
    return control;
  }

  #invalidate(pdb: number | "all", control: number): FlushResult {
    const what = `TLB invalidate of ${pdb === "all" ? "all PDBs" : `PDB ${hex(pdb)}`}`;
    const pending = (v: number) => getField(v, MMU_INVALIDATE.TRIGGER) === 0;
    const state = () =>
      [
        `INVALIDATE_PDB=${hex(this.#bar0.read32(NV_VIRTUAL_FUNCTION_PRIV_MMU_INVALIDATE_PDB), 8)}`,
        `UPPER_PDB=${hex(this.#bar0.read32(NV_VIRTUAL_FUNCTION_PRIV_MMU_INVALIDATE_UPPER_PDB), 8)}`,
      ].join(" ");
    // RM first waits for an earlier invalidate to finish (facts §13.1).
    pollRegister(this.#bar0, NV_VIRTUAL_FUNCTION_PRIV_MMU_INVALIDATE, "MMU_INVALIDATE", pending, {
      timeoutMs: this.#timeoutMs,
      what: `the previous TLB invalidate (before the ${what})`,
      state,
    });
    if (pdb !== "all") {
      const lo = setField(0, MMU_INVALIDATE_PDB.ADDR, (pdb % 2 ** 40) / 4096);
      this.#bar0.write32(NV_VIRTUAL_FUNCTION_PRIV_MMU_INVALIDATE_PDB, lo);
      this.#bar0.write32(
        NV_VIRTUAL_FUNCTION_PRIV_MMU_INVALIDATE_UPPER_PDB,
        setField(0, MMU_INVALIDATE_UPPER_PDB.ADDR, Math.floor(pdb / 2 ** 40)),
      );
    }
    this.#bar0.write32(NV_VIRTUAL_FUNCTION_PRIV_MMU_INVALIDATE, control);
    const { polls } = pollRegister(
      this.#bar0,
      NV_VIRTUAL_FUNCTION_PRIV_MMU_INVALIDATE,
      "MMU_INVALIDATE",
      pending,
      { timeoutMs: this.#timeoutMs, what, state },
    );
    this.flushes++;
    return { pdb, polls };
  }
}
