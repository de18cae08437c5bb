/**
 * Making page-table writes visible to the GPU, in the order §13.3 of the
 * facts gives: the FB flush (posted CPU writes reach the frame buffer; the
 * mechanism is the chip family's: NV_UFLUSH_FB_FLUSH on Turing..Ada, a read
 * of NV_XAL_EP_ZB_UFLUSH_FB_FLUSH and a token poll on GH100/GB20x, none on
 * GB10x — see `hw/family/fb_flush.ts`), then the TLB invalidate through the
 * NV_VIRTUAL_FUNCTION_PRIV_MMU_INVALIDATE registers — started only once no
 * earlier invalidate is pending, and polled until TRIGGER clears.
 *
 * The control value is what NVIDIA's RM writes (facts §14.1,
 * `kern_gmmu_gm107.c`): TRIGGER | ALL_VA, plus HUBTLB_ONLY for a BAR address
 * space (nouveau: 0x80000001 / 0x80000005); SYS_MEMBAR and ACK_GLOBALLY go
 * together, only for PTE downgrades (unmap), only on TU10x; ALL_PDB replaces
 * the PDB for a flush of every address space. The PDB goes as RM encodes it:
 * ADDR = PDB >> 12 in bits 31:4 with APERTURE 0 (video memory), and
 * UPPER_PDB = PDB >> 40 in its full 20 bits (D13).
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
  NV_PMC_BOOT_0,
  NV_PMC_BOOT_42,
  NV_VIRTUAL_FUNCTION_PRIV_MMU_INVALIDATE,
  NV_VIRTUAL_FUNCTION_PRIV_MMU_INVALIDATE_PDB,
  NV_VIRTUAL_FUNCTION_PRIV_MMU_INVALIDATE_UPPER_PDB,
  setField,
} from "../hw/regs.ts";
import { decodeChip } from "../hw/chip.ts";
import { type ChipFamily, chipFamily } from "../hw/family/mod.ts";
import { checkMmio, checkObject, checkOptions } from "../hw/validate.ts";

/** The family of the chip behind `bar0`, from BOOT_0/BOOT_42 (two reads). */
function familyOf(bar0: Mmio): ChipFamily {
  return chipFamily(decodeChip(bar0.read32(NV_PMC_BOOT_0), bar0.read32(NV_PMC_BOOT_42)));
}

function checkFamily(v: unknown, k: string): void {
  const f = checkObject(v, k);
  if (
    typeof f.name !== "string" || typeof (f.fbFlush as { flush?: unknown })?.flush !== "function"
  ) {
    fail("EINVAL", `${k} ${describe(v)} is not a chip-family table (hw/family)`);
  }
}

/** A VRAM size: a multiple of 4 KiB in 4 KiB..2^40 (the VRAM address space). */
function checkVramSize(v: unknown, k: string): void {
  if (
    typeof v !== "number" || !Number.isSafeInteger(v) || v < 4096 || v > 2 ** 40 || v % 4096 !== 0
  ) {
    fail(
      "EINVAL",
      `Tlb options.${k} ${
        describe(v)
      } is not a VRAM size (a multiple of 0x1000 in 0x1000..0x10000000000)`,
    );
  }
}

/**
 * Flushes posted CPU writes to the frame buffer the way the chip's family
 * does (see the module doc) and waits for completion (2 s). Page-table and
 * instance-block writes made through PRAMIN or BAR1 are not seen by the GPU
 * before this completes. Without `family` the chip is read from BOOT_0/42.
 * Returns the status polls made.
 *
 * @example
 * ```ts
 * import { openGpu } from "../mod.ts";
 * using gpu = await openGpu({ device: "sim" });
 * fbFlush(gpu.bar0);
 * ```
 */
export function fbFlush(
  bar0: Mmio,
  options: { timeoutMs?: number; family?: ChipFamily } = {},
): number {
  checkMmio(bar0, "fbFlush bar0");
  checkOptions(options, { timeoutMs: "number", family: checkFamily }, "fbFlush options");
  const timeoutMs = checkTimeout(options.timeoutMs ?? 2000, "FB flush timeout");
  const family = options.family ?? familyOf(bar0);
  return family.fbFlush.flush(bar0, timeoutMs);
}

/** Options for {@linkcode Tlb}. */
export interface TlbOptions {
  /** Poll timeout in milliseconds (nova-core and nouveau use 2 s). */
  timeoutMs?: number;
  /** VRAM size, to refuse a PDB outside VRAM. */
  vramSize?: number;
  /** The chip family (its FB flush and invalidate rules); read from BOOT_0/42 when absent. */
  family?: ChipFamily;
}

/** Options for {@linkcode Tlb.flush}. */
export interface FlushOptions {
  /** Invalidate only the hub TLB (the one BAR1 and BAR2 translate through): for BAR address spaces. */
  hubOnly?: boolean;
  /**
   * The change took permissions away (an unmap): on TU10x RM then adds
   * SYS_MEMBAR | ACK_GLOBALLY (facts §14.1); elsewhere it changes nothing.
   */
  downgrade?: boolean;
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
  #family: ChipFamily | null;
  /** Flushes completed since open. */
  flushes = 0;

  /** Constructs it (see the class documentation for who does and how). */
  constructor(bar0: Mmio, options: TlbOptions = {}) {
    checkMmio(bar0, "Tlb bar0");
    checkOptions(
      options,
      { timeoutMs: "number", vramSize: checkVramSize, family: checkFamily },
      "Tlb options",
    );
    this.#bar0 = bar0;
    this.#timeoutMs = checkTimeout(options.timeoutMs ?? 2000, "TLB timeout");
    this.#vramSize = options.vramSize ?? 2 ** 40;
    this.#family = options.family ?? null;
  }

  /** The chip family whose mechanics this TLB uses. */
  get family(): ChipFamily {
    this.#family ??= familyOf(this.#bar0);
    return this.#family;
  }

  /** The FB flush alone (see {@linkcode fbFlush}). */
  fbFlush(): void {
    this.family.fbFlush.flush(this.#bar0, this.#timeoutMs);
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
    checkOptions(options, { hubOnly: "boolean", downgrade: "boolean" }, what);
    let control = setField(0, MMU_INVALIDATE.ALL_VA, 1);
    if (options.downgrade && this.family.invalidate.membarOnDowngrade) {
      control = setField(control, MMU_INVALIDATE.SYS_MEMBAR, 1);
      control = setField(control, MMU_INVALIDATE.ACK, MMU_INVALIDATE_ACK_GLOBALLY);
    }
    if (options.hubOnly) control = setField(control, MMU_INVALIDATE.HUBTLB_ONLY, 1);
    // An address space's invalidate names its scope (GA100+); ALL_PDB goes with ALL_TLBS (0).
    const scope = this.family.invalidate.scope;
    if (scope !== null && pdb !== "all") {
      control = setField(control, MMU_INVALIDATE.INVAL_SCOPE, scope);
    }
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
