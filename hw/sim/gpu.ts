/**
 * The simulated GPU: a BAR0 register file exact to the facts, sparse VRAM, a
 * translating BAR1 and the state the firmware leaves at boot.
 *
 * Written from `shared/spec/nova-mm-facts.md` only; it never imports `mm/`
 * (the simulator is the oracle `mm/` is tested against).
 *
 * What it checks and logs (see {@linkcode SimGpu.log}):
 * - unknown registers read as a PRI error (0xBADF1100) and are logged;
 * - 8/16-bit accesses to registers (only PRAMIN takes them) and misaligned
 *   accesses are logged as errors;
 * - PRAMIN accesses past the end of VRAM read {@linkcode PRAMIN_FAULT} and are
 *   logged; writes there are dropped;
 * - writes to read-only registers (BOOT_0, ...) are logged and ignored.
 *
 * @module
 */

import type { MmioBackend } from "../mmio.ts";
import {
  BAR1_BLOCK,
  BAR1_BLOCK_LOW,
  getField,
  LOCAL_MEMORY_RANGE,
  MMU_INVALIDATE,
  MMU_INVALIDATE_PDB,
  MMU_INVALIDATE_UPPER_PDB,
  NV_PBUS_BAR1_BLOCK,
  NV_PFB_PRI_MMU_LOCAL_MEMORY_RANGE,
  NV_PMC_BOOT_0,
  NV_PMC_BOOT_42,
  NV_PRAMIN,
  NV_RAMIN_PAGE_DIR_BASE_HI,
  NV_RAMIN_PAGE_DIR_BASE_LO,
  NV_USABLE_FB_SIZE_IN_MB,
  NV_VIRTUAL_FUNCTION_PRIV_FUNC_BAR1_BLOCK_HIGH_ADDR,
  NV_VIRTUAL_FUNCTION_PRIV_FUNC_BAR1_BLOCK_LOW_ADDR,
  NV_VIRTUAL_FUNCTION_PRIV_MMU_INVALIDATE,
  NV_VIRTUAL_FUNCTION_PRIV_MMU_INVALIDATE_PDB,
  NV_VIRTUAL_FUNCTION_PRIV_MMU_INVALIDATE_UPPER_PDB,
  PRAMIN_BASE_SHIFT,
  PRAMIN_SIZE,
  RAMIN_PDB,
  setField,
  type WindowRegister,
  windowRegister,
} from "../regs.ts";
import { encodeBoot } from "../chip.ts";
import { fail, hex } from "../errors.ts";
import { SparseMemory } from "./vram.ts";
import { createBar1Backend, SimMmu } from "./mmu.ts";
import { bootFirmware, type SimFirmwareInfo } from "./firmware.ts";
import { DEFAULT_SIM_PROFILE, SIM_PROFILES, type SimProfile } from "./profiles.ts";

/** BAR0 aperture size (16 MiB, facts §11). */
export const BAR0_SIZE = 16 * 2 ** 20;
/** What an unknown register reads as (a PRI decode-error pattern). */
export const PRI_ERROR = 0xbadf1100;
/** What a PRAMIN read past the end of VRAM returns. */
export const PRAMIN_FAULT = 0xbad0ac00;
const LOG_LIMIT = 10_000;

/** One thing the simulator noticed. */
export interface SimEvent {
  /** `error` = the driver did something silicon would not like; `info` = notable. */
  severity: "error" | "info";
  /** Short machine-readable kind, e.g. `unknown-register`, `pramin-past-vram`, `tlb-flush`. */
  kind: string;
  /** What happened, for people. */
  message: string;
}

/** A completed TLB invalidate, as the simulator saw it. */
export interface SimFlush {
  /** PDB named by the flush, or `"all"` for ALL_PDB. */
  pdb: number | "all";
  /** PDB aperture bit (0 = video memory). */
  aperture: number;
  /** The value written to NV_VIRTUAL_FUNCTION_PRIV_MMU_INVALIDATE. */
  value: number;
}

/** Knobs for fault-injection tests. */
export interface SimKnobs {
  /** A TLB invalidate never completes (TRIGGER stays set). */
  tlbHang: boolean;
  /** Reads of the invalidate register that still report TRIGGER=1 after a trigger. */
  tlbLatencyReads: number;
}

/** Options for {@linkcode createSimGpu}. */
export interface SimGpuOptions {
  /** Profile name (`ga102`, `gh100`, ...); default `ga102`. */
  profile?: string;
}

/**
 * A software GPU. Its `bar0` and `bar1` are {@linkcode MmioBackend}s that the
 * shared `Mmio` layer wraps exactly like a card's mmap'd BARs.
 */
export class SimGpu {
  /** The board. */
  readonly profile: SimProfile;
  /** Sparse VRAM contents. */
  readonly vram: SparseMemory;
  /** The simulator's own MMU (walker + TLB). */
  readonly mmu: SimMmu;
  /** What the firmware reported at boot (GSP's static info). */
  readonly firmware: SimFirmwareInfo;
  /** BAR0 register file + PRAMIN aperture. */
  readonly bar0: MmioBackend;
  /** Translating BAR1 aperture. */
  readonly bar1: MmioBackend;
  /** Events worth knowing (bounded to the last 10,000). */
  readonly log: SimEvent[] = [];
  /** Completed TLB flushes, oldest first. */
  readonly flushes: SimFlush[] = [];
  /** Fault-injection knobs. */
  readonly knobs: SimKnobs = { tlbHang: false, tlbLatencyReads: 1 };
  #regs = new Map<number, number>();
  #window: WindowRegister;
  #praminBase = 0;
  #bar1Pdb: number | null = null;
  #pendingReads = 0;

  /** Constructs it (see the class documentation for who does and how). */
  constructor(profile: SimProfile) {
    this.profile = profile;
    this.vram = new SparseMemory(profile.vramSize);
    this.mmu = new SimMmu({
      vram: this.vram,
      vramSize: profile.vramSize,
      version: profile.mmuVersion,
      architecture: profile.architecture,
    });
    this.firmware = bootFirmware(this.vram, {
      vramSize: profile.vramSize,
      version: profile.mmuVersion,
      architecture: profile.architecture,
      bar1Size: profile.bar1Size,
    });
    const { boot0, boot42 } = encodeBoot(profile.chipId);
    this.#regs.set(NV_PMC_BOOT_0, boot0);
    this.#regs.set(NV_PMC_BOOT_42, boot42);
    if (profile.architecture === "Turing") {
      this.#regs.set(NV_PFB_PRI_MMU_LOCAL_MEMORY_RANGE, encodeLocalMemoryRange(profile.vramSize));
    } else {
      this.#regs.set(NV_USABLE_FB_SIZE_IN_MB, Math.floor(profile.vramSize / 2 ** 20));
    }
    this.#window = windowRegister(profile.architecture);
    if (profile.mmuVersion === 2) {
      let block = setField(0, BAR1_BLOCK.PTR, this.firmware.instanceBlock / 4096);
      block = setField(block, BAR1_BLOCK.MODE, 1);
      this.#regs.set(NV_PBUS_BAR1_BLOCK, block);
    } else {
      const inst = this.firmware.instanceBlock;
      let low = setField(0, BAR1_BLOCK_LOW.PTR, (inst % 2 ** 32) / 4096);
      low = setField(low, BAR1_BLOCK_LOW.MODE, 1);
      this.#regs.set(NV_VIRTUAL_FUNCTION_PRIV_FUNC_BAR1_BLOCK_LOW_ADDR, low);
      this.#regs.set(
        NV_VIRTUAL_FUNCTION_PRIV_FUNC_BAR1_BLOCK_HIGH_ADDR,
        Math.floor(inst / 2 ** 32),
      );
    }
    this.#regs.set(this.#window.offset, 0);
    this.#regs.set(NV_VIRTUAL_FUNCTION_PRIV_MMU_INVALIDATE_PDB, 0);
    this.#regs.set(NV_VIRTUAL_FUNCTION_PRIV_MMU_INVALIDATE_UPPER_PDB, 0);
    this.#regs.set(NV_VIRTUAL_FUNCTION_PRIV_MMU_INVALIDATE, 0);
    this.bar0 = this.#makeBar0();
    this.#bar1Pdb = this.bar1Pdb();
    this.bar1 = createBar1Backend(this.mmu, {
      size: profile.bar1Size,
      // The binding is latched when BAR1_BLOCK is written, as the hardware fetches the instance block then.
      pdb: () => this.#bar1Pdb,
    });
  }

  /** The VRAM address the PRAMIN aperture starts at now (decoded when the register is written). */
  get praminBase(): number {
    return this.#praminBase;
  }

  /** Errors logged so far (the driver misbehaved). */
  errors(): SimEvent[] {
    return this.log.filter((e) => e.severity === "error");
  }

  /** The PDB the BAR1 instance block points at now (read from VRAM afresh); null if unbound. */
  bar1Pdb(): number | null {
    let inst: number;
    if (this.profile.mmuVersion === 2) {
      const v = this.#regs.get(NV_PBUS_BAR1_BLOCK)!;
      if (getField(v, BAR1_BLOCK.MODE) !== 1 || getField(v, BAR1_BLOCK.TARGET) !== 0) return null;
      inst = getField(v, BAR1_BLOCK.PTR) * 4096;
    } else {
      const lo = this.#regs.get(NV_VIRTUAL_FUNCTION_PRIV_FUNC_BAR1_BLOCK_LOW_ADDR)!;
      if (getField(lo, BAR1_BLOCK_LOW.MODE) !== 1 || getField(lo, BAR1_BLOCK_LOW.TARGET) !== 0) {
        return null;
      }
      const hi = this.#regs.get(NV_VIRTUAL_FUNCTION_PRIV_FUNC_BAR1_BLOCK_HIGH_ADDR)!;
      inst = getField(lo, BAR1_BLOCK_LOW.PTR) * 4096 + hi * 2 ** 32;
    }
    if (inst + 4096 > this.profile.vramSize) return null;
    const word = this.vram.read32(inst + NV_RAMIN_PAGE_DIR_BASE_LO);
    if (getField(word, RAMIN_PDB.TARGET) !== 0) return null;
    return getField(word, RAMIN_PDB.LO) * 4096 +
      this.vram.read32(inst + NV_RAMIN_PAGE_DIR_BASE_HI) * 2 ** 32;
  }

  #note(severity: SimEvent["severity"], kind: string, message: string): void {
    if (this.log.length >= LOG_LIMIT) this.log.shift();
    this.log.push({ severity, kind, message });
  }

  #makeBar0(): MmioBackend {
    const vram = this.vram;
    const size = this.profile.vramSize;
    // PRAMIN: resolve a BAR0 offset to a VRAM address, or -1 past the end of VRAM.
    const pramin = (offset: number, width: number): number => {
      const addr = this.#praminBase + (offset - NV_PRAMIN);
      if (addr + width > size) {
        this.#note(
          "error",
          "pramin-past-vram",
          `PRAMIN ${width * 8}-bit access at VRAM ${hex(addr)} is past the end of VRAM (${
            hex(size)
          })`,
        );
        return -1;
      }
      return addr;
    };
    const inPramin = (offset: number) => offset >= NV_PRAMIN && offset < NV_PRAMIN + PRAMIN_SIZE;
    const misaligned = (offset: number, width: number) => {
      if (offset % width === 0) return false;
      this.#note(
        "error",
        "misaligned",
        `misaligned ${width * 8}-bit BAR0 access at ${hex(offset)}`,
      );
      return true;
    };
    const narrowRegister = (offset: number, width: number, op: string) => {
      this.#note(
        "error",
        "register-width",
        `${width * 8}-bit ${op} of register ${hex(offset)}: registers take 32-bit accesses only`,
      );
      return width === 1 ? PRI_ERROR & 0xff : PRI_ERROR & 0xffff;
    };
    return {
      size: BAR0_SIZE,
      read8: (offset) => {
        if (!inPramin(offset)) return narrowRegister(offset, 1, "read");
        const a = pramin(offset, 1);
        return a < 0 ? PRAMIN_FAULT & 0xff : vram.read8(a);
      },
      read16: (offset) => {
        if (misaligned(offset, 2)) return 0xffff;
        if (!inPramin(offset)) return narrowRegister(offset, 2, "read");
        const a = pramin(offset, 2);
        return a < 0 ? PRAMIN_FAULT & 0xffff : vram.read16(a);
      },
      read32: (offset) => {
        if (misaligned(offset, 4)) return 0xffffffff;
        if (inPramin(offset)) {
          const a = pramin(offset, 4);
          return a < 0 ? PRAMIN_FAULT : vram.read32(a);
        }
        return this.#readRegister(offset);
      },
      write8: (offset, value) => {
        if (!inPramin(offset)) return void narrowRegister(offset, 1, "write");
        const a = pramin(offset, 1);
        if (a >= 0) vram.write8(a, value);
      },
      write16: (offset, value) => {
        if (misaligned(offset, 2)) return;
        if (!inPramin(offset)) return void narrowRegister(offset, 2, "write");
        const a = pramin(offset, 2);
        if (a >= 0) vram.write16(a, value);
      },
      write32: (offset, value) => {
        if (misaligned(offset, 4)) return;
        if (inPramin(offset)) {
          const a = pramin(offset, 4);
          if (a >= 0) vram.write32(a, value);
          return;
        }
        this.#writeRegister(offset, value);
      },
    };
  }

  #readRegister(offset: number): number {
    const v = this.#regs.get(offset);
    if (v === undefined) {
      this.#note("error", "unknown-register", `read of unknown register ${hex(offset)}`);
      return PRI_ERROR;
    }
    if (offset === NV_VIRTUAL_FUNCTION_PRIV_MMU_INVALIDATE && getField(v, MMU_INVALIDATE.TRIGGER)) {
      if (this.knobs.tlbHang) return v;
      if (this.#pendingReads > 0) {
        this.#pendingReads--;
        return v;
      }
      const done = setField(v, MMU_INVALIDATE.TRIGGER, 0);
      this.#regs.set(offset, done);
      return done;
    }
    return v;
  }

  #writeRegister(offset: number, value: number): void {
    switch (offset) {
      case NV_PMC_BOOT_0:
      case NV_PMC_BOOT_42:
      case NV_USABLE_FB_SIZE_IN_MB:
      case NV_PFB_PRI_MMU_LOCAL_MEMORY_RANGE:
        if (this.#regs.has(offset)) {
          this.#note("error", "read-only-register", `write of read-only register ${hex(offset)}`);
          return;
        }
        break;
      case this.#window.offset: {
        const w = this.#window;
        // Bits outside the defined fields are not stored, as on silicon.
        let stored = setField(0, w.base, getField(value, w.base));
        if (w.target !== null) {
          const target = getField(value, w.target);
          if (target !== 0) {
            this.#note(
              "error",
              "pramin-target",
              `${w.name} TARGET ${target}: only VID_MEM (0) is simulated`,
            );
          }
          stored = setField(stored, w.target, target);
        }
        this.#regs.set(offset, stored);
        this.#praminBase = getField(stored, w.base) * 2 ** PRAMIN_BASE_SHIFT;
        return;
      }
      case NV_VIRTUAL_FUNCTION_PRIV_MMU_INVALIDATE:
        this.#regs.set(offset, value >>> 0);
        if (getField(value, MMU_INVALIDATE.TRIGGER)) this.#flush(value);
        return;
    }
    if (!this.#regs.has(offset)) {
      this.#note(
        "error",
        "unknown-register",
        `write of ${hex(value)} to unknown register ${hex(offset)}`,
      );
      return;
    }
    this.#regs.set(offset, value >>> 0);
    if (
      offset === NV_PBUS_BAR1_BLOCK ||
      offset === NV_VIRTUAL_FUNCTION_PRIV_FUNC_BAR1_BLOCK_LOW_ADDR ||
      offset === NV_VIRTUAL_FUNCTION_PRIV_FUNC_BAR1_BLOCK_HIGH_ADDR
    ) {
      // Binding BAR1 fetches the instance block now; its PDB is latched until the next bind.
      this.#bar1Pdb = this.bar1Pdb();
      this.mmu.invalidate("all");
      this.#note(
        "info",
        "bar1-bind",
        `BAR1 bound to PDB ${this.#bar1Pdb === null ? "none" : hex(this.#bar1Pdb)}`,
      );
    }
  }

  #flush(value: number): void {
    const pdbReg = this.#regs.get(NV_VIRTUAL_FUNCTION_PRIV_MMU_INVALIDATE_PDB)!;
    const upper = this.#regs.get(NV_VIRTUAL_FUNCTION_PRIV_MMU_INVALIDATE_UPPER_PDB)!;
    const all = getField(value, MMU_INVALIDATE.ALL_PDB) === 1;
    const pdb = getField(pdbReg, MMU_INVALIDATE_PDB.ADDR) * 4096 +
      getField(upper, MMU_INVALIDATE_UPPER_PDB.ADDR) * 2 ** 40;
    const aperture = getField(pdbReg, MMU_INVALIDATE_PDB.APERTURE);
    this.#pendingReads = this.knobs.tlbLatencyReads;
    if (this.knobs.tlbHang) {
      this.#note(
        "info",
        "tlb-hang",
        "TLB invalidate triggered while tlbHang is set: never completes",
      );
      return;
    }
    if (getField(value, MMU_INVALIDATE.ALL_VA) !== 1) {
      // A targeted invalidate needs the VA registers, which are not simulated: nothing is dropped.
      this.#note(
        "error",
        "tlb-targeted",
        `TLB invalidate ${hex(value)} without ALL_VA is not simulated`,
      );
    } else if (!all && aperture !== 0) {
      // A system-memory PDB is another address space than the VRAM PDB of the same number.
      this.#note(
        "error",
        "tlb-sysmem-pdb",
        `TLB invalidate of a SYS_MEM PDB ${hex(pdb)}: not simulated`,
      );
    } else {
      this.mmu.invalidate(all ? "all" : pdb);
    }
    this.flushes.push({ pdb: all ? "all" : pdb, aperture, value: value >>> 0 });
    this.#note("info", "tlb-flush", `TLB invalidate ${all ? "all PDBs" : `PDB ${hex(pdb)}`}`);
  }
}

/** Encodes NV_PFB_PRI_MMU_LOCAL_MEMORY_RANGE for a size: (mag << scale) MiB. */
function encodeLocalMemoryRange(size: number): number {
  let mib = size / 2 ** 20;
  let scale = 0;
  while (mib > 63 && mib % 2 === 0) {
    mib /= 2;
    scale++;
  }
  if (mib > 63 || !Number.isInteger(mib)) fail("EINVAL", `VRAM size ${hex(size)} not encodable`);
  return setField(
    setField(0, LOCAL_MEMORY_RANGE.LOWER_SCALE, scale),
    LOCAL_MEMORY_RANGE.LOWER_MAG,
    mib,
  );
}

/**
 * Builds a simulated GPU.
 *
 * @example
 * ```ts
 * const sim = createSimGpu({ profile: "gh100" });
 * ```
 */
export function createSimGpu(options: SimGpuOptions = {}): SimGpu {
  const name = options.profile ?? DEFAULT_SIM_PROFILE;
  const profile = SIM_PROFILES[name];
  if (profile === undefined) {
    fail(
      "ENODEV",
      `unknown simulator profile ${JSON.stringify(name)}; known: ${
        Object.keys(SIM_PROFILES).map((p) => `sim:${p}`).join(", ")
      }`,
    );
  }
  return new SimGpu(profile);
}
