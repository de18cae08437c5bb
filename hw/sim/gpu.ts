/**
 * The simulated GPU: a BAR0 register file exact to the facts, sparse VRAM, a
 * BAR1 that is physical at reset and translating once bound, and the state
 * the card is in at open (bare, gsp, unloaded, booting, vga; facts §13).
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
 * - writes to read-only registers (BOOT_0, ...) are logged and ignored;
 * - CPU writes through PRAMIN or BAR1 are posted: the MMU and the BAR1 bind
 *   see them only after an FB flush (NV_UFLUSH_FB_FLUSH) completes;
 * - a TLB invalidate or a BAR1 bind started while the previous one is
 *   pending, and a BAR1 access while a bind is pending, are logged;
 * - any fault of a CPU access through BAR1 in virtual mode is fatal: the
 *   GPU is lost and reads all ones until it is reopened (facts §13.3 item 7).
 *
 * @module
 */

import type { MmioBackend } from "../mmio.ts";
import {
  ADDR_VAL_4K,
  BAR1_BLOCK,
  BAR1_BLOCK_LOW,
  getField,
  type GfwBootRegisters,
  gfwBootRegisters,
  LOCAL_MEMORY_RANGE,
  MMU_INVALIDATE,
  MMU_INVALIDATE_PDB,
  MMU_INVALIDATE_UPPER_PDB,
  NV_PBUS_BAR1_BLOCK,
  NV_PBUS_BIND_STATUS,
  NV_PDISP_VGA_WORKSPACE_BASE,
  NV_PFB_PRI_MMU_LOCAL_MEMORY_RANGE,
  NV_PFB_PRI_MMU_LOCK_ADDR_HI,
  NV_PFB_PRI_MMU_LOCK_ADDR_LO,
  NV_PFB_PRI_MMU_LOCK_CFG_PRIV_LEVEL_MASK,
  NV_PFB_PRI_MMU_WPR2_ADDR_HI,
  NV_PFB_PRI_MMU_WPR2_ADDR_LO,
  NV_PMC_BOOT_0,
  NV_PMC_BOOT_42,
  NV_PRAMIN,
  NV_RAMIN_ADR_LIMIT_HI,
  NV_RAMIN_ADR_LIMIT_LO,
  NV_RAMIN_PAGE_DIR_BASE_HI,
  NV_RAMIN_PAGE_DIR_BASE_LO,
  NV_UFLUSH_FB_FLUSH,
  NV_USABLE_FB_SIZE_IN_MB,
  NV_VIRTUAL_FUNCTION_PRIV_BAR1_BLOCK,
  NV_VIRTUAL_FUNCTION_PRIV_BIND_STATUS,
  NV_VIRTUAL_FUNCTION_PRIV_FUNC_BAR1_BLOCK_HIGH_ADDR,
  NV_VIRTUAL_FUNCTION_PRIV_FUNC_BAR1_BLOCK_LOW_ADDR,
  NV_VIRTUAL_FUNCTION_PRIV_MMU_INVALIDATE,
  NV_VIRTUAL_FUNCTION_PRIV_MMU_INVALIDATE_PDB,
  NV_VIRTUAL_FUNCTION_PRIV_MMU_INVALIDATE_UPPER_PDB,
  PRAMIN_BASE_SHIFT,
  PRAMIN_SIZE,
  RAMIN_PDB,
  setField,
  UFLUSH_FB_FLUSH,
  VGA_WORKSPACE_BASE,
  type WindowRegister,
  windowRegister,
} from "../regs.ts";
import { encodeBoot } from "../chip.ts";
import { fail, hex } from "../errors.ts";
import { didYouMean } from "../validate.ts";
import { PostedWrites, SparseMemory } from "./vram.ts";
import { SimMmu } from "./mmu.ts";
import { bootFirmware, type SimFirmwareInfo } from "./firmware.ts";
import {
  DEFAULT_SIM_PROFILE,
  DEFAULT_SIM_STATE,
  GFW_BOOT_MS,
  SIM_PROFILES,
  SIM_STATES,
  type SimCardState,
  type SimProfile,
} from "./profiles.ts";

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
  /** An FB flush never completes (PENDING stays set). */
  fbFlushHang: boolean;
  /** Reads of NV_UFLUSH_FB_FLUSH that still report PENDING after a flush is started. */
  fbFlushLatencyReads: number;
  /** A BAR1 bind never completes (PENDING/OUTSTANDING stay set). */
  bindHang: boolean;
  /** Reads of the bind status that still report PENDING after a bind is started. */
  bindLatencyReads: number;
}

/** Options for {@linkcode createSimGpu}. */
export interface SimGpuOptions {
  /** Profile name (`ga102`, `gh100`, ...); default `ga102`. */
  profile?: string;
  /** Card state at open (default `bare`: a card no driver has booted). */
  state?: SimCardState;
}

/** What the simulated VBIOS/firmware left in VRAM and the FB registers (facts §13.2). */
export interface SimBootInfo {
  /** The state the card was created in. */
  state: SimCardState;
  /** VGA workspace base reported by NV_PDISP_VGA_WORKSPACE_BASE. */
  vgaWorkspace: number;
  /** The region NV_PFB_PRI_MMU_LOCK_ADDR locks: [start, end), or null (Turing). */
  mmuLock: { start: number; end: number } | null;
  /** WPR2 [start, end) while set (gsp, unloaded), else null. */
  wpr2: { start: number; end: number } | null;
  /** True for the boot VGA device (state `vga`): a console scans out from VRAM 0. */
  bootVga: boolean;
}

/** What a BAR access hits while the GPU is lost (it fell off the bus). */
export const GPU_LOST = 0xffffffff;
/** What a physical-mode BAR1 read past the end of VRAM returns. */
export const BAR1_PAST_VRAM = 0xbad0fb00;

const MiB = 2 ** 20;
/** Bytes the simulated kernel console scans out at VRAM 0 on the boot VGA device. */
const CONSOLE_BYTES = 8 * MiB;
/** Pattern of the console's pixels (ARGB dark grey). */
export const CONSOLE_PATTERN = 0xff202020;

/**
 * A software GPU. Its `bar0` and `bar1` are {@linkcode MmioBackend}s that the
 * shared `Mmio` layer wraps exactly like a card's mmap'd BARs.
 */
export class SimGpu {
  /** The board. */
  readonly profile: SimProfile;
  /** Sparse VRAM contents. */
  readonly vram: SparseMemory;
  /** CPU writes the GPU does not see until an FB flush completes. */
  readonly posted: PostedWrites;
  /** The simulator's own MMU (walker + TLB); it reads tables through {@linkcode posted}. */
  readonly mmu: SimMmu;
  /** What GSP-RM reported and built (states `gsp` and `unloaded`), else null. */
  readonly firmware: SimFirmwareInfo | null;
  /** What VBIOS and firmware left in the FB registers and VRAM. */
  readonly boot: SimBootInfo;
  /** BAR0 register file + PRAMIN aperture. */
  readonly bar0: MmioBackend;
  /** BAR1: VRAM by address in physical mode, translated by the MMU in virtual mode. */
  readonly bar1: MmioBackend;
  /** Events worth knowing (bounded to the last 10,000). */
  readonly log: SimEvent[] = [];
  /** Completed TLB flushes, oldest first. */
  readonly flushes: SimFlush[] = [];
  /** Completed FB flushes. */
  fbFlushes = 0;
  /** Events noted since creation (also those dropped from the bounded {@linkcode SimGpu.log}). */
  eventCount = 0;
  /** Fault-injection knobs. */
  readonly knobs: SimKnobs = {
    tlbHang: false,
    tlbLatencyReads: 1,
    fbFlushHang: false,
    fbFlushLatencyReads: 1,
    bindHang: false,
    bindLatencyReads: 2,
  };
  #regs = new Map<number, number>();
  #window: WindowRegister;
  #gfw: GfwBootRegisters;
  #gfwDoneAt: number;
  #praminBase = 0;
  /** Latched at bind: null = physical mode; else the bound PDB (-1: virtual, nothing valid bound). */
  #bar1: { pdb: number; limit: number } | null = null;
  #pendingReads = 0;
  #fbPendingReads = -1;
  #bindPendingReads = 0;
  #bindStatus = 0;
  #lost: string | null = null;

  /** Constructs it (see the class documentation for who does and how). */
  constructor(profile: SimProfile, state: SimCardState = DEFAULT_SIM_STATE) {
    if (!SIM_STATES.includes(state)) {
      fail(
        "ENODEV",
        `unknown simulator card state ${JSON.stringify(state)}; known: ${SIM_STATES.join(", ")}`,
      );
    }
    this.profile = profile;
    this.vram = new SparseMemory(profile.vramSize);
    this.posted = new PostedWrites(this.vram);
    this.mmu = new SimMmu({
      vram: this.vram,
      vramSize: profile.vramSize,
      version: profile.mmuVersion,
      architecture: profile.architecture,
      tables: this.posted,
    });
    const withGsp = state === "gsp" || state === "unloaded";
    this.firmware = withGsp
      ? bootFirmware(this.vram, {
        vramSize: profile.vramSize,
        version: profile.mmuVersion,
        architecture: profile.architecture,
        bar1Size: profile.bar1Size,
      })
      : null;
    const { boot0, boot42 } = encodeBoot(profile.chipId);
    this.#regs.set(NV_PMC_BOOT_0, boot0);
    this.#regs.set(NV_PMC_BOOT_42, boot42);
    if (profile.vramSizeRegister === "localMemoryRange") {
      this.#regs.set(NV_PFB_PRI_MMU_LOCAL_MEMORY_RANGE, encodeLocalMemoryRange(profile.vramSize));
    } else {
      this.#regs.set(NV_USABLE_FB_SIZE_IN_MB, Math.floor(profile.vramSize / MiB));
    }
    this.#window = windowRegister(profile.architecture);
    this.#gfw = gfwBootRegisters(profile.chipId);
    this.#gfwDoneAt = state === "booting" ? performance.now() + GFW_BOOT_MS : -Infinity;
    if (this.#gfw.plm !== null) this.#regs.set(this.#gfw.plm, 0);
    this.#regs.set(this.#gfw.progress, 0);
    this.boot = this.#firmwareRegions(state);

    // Reset values (facts §13.2 item 2): BAR1 physical, pointer 0, target VID.
    if (profile.mmuVersion === 2) {
      this.#regs.set(NV_PBUS_BAR1_BLOCK, 0);
      this.#regs.set(NV_PBUS_BIND_STATUS, 0);
      this.#regs.set(NV_VIRTUAL_FUNCTION_PRIV_BAR1_BLOCK, 0);
      this.#regs.set(NV_VIRTUAL_FUNCTION_PRIV_BIND_STATUS, 0);
    } else {
      this.#regs.set(NV_VIRTUAL_FUNCTION_PRIV_FUNC_BAR1_BLOCK_LOW_ADDR, 0);
      this.#regs.set(NV_VIRTUAL_FUNCTION_PRIV_FUNC_BAR1_BLOCK_HIGH_ADDR, 0);
    }
    this.#regs.set(this.#window.offset, 0);
    this.#regs.set(NV_VIRTUAL_FUNCTION_PRIV_MMU_INVALIDATE_PDB, 0);
    this.#regs.set(NV_VIRTUAL_FUNCTION_PRIV_MMU_INVALIDATE_UPPER_PDB, 0);
    this.#regs.set(NV_VIRTUAL_FUNCTION_PRIV_MMU_INVALIDATE, 0);
    this.#regs.set(NV_UFLUSH_FB_FLUSH, 0);
    this.bar0 = this.#makeBar0();
    this.bar1 = this.#makeBar1();
    if (state === "gsp") {
      // GSP-RM binds through the VF register (RM's TU102 HAL); the legacy 0x1704 stays zero.
      const inst = this.firmware!.instanceBlock;
      if (profile.mmuVersion === 2) {
        let block = setField(0, BAR1_BLOCK.PTR, inst / 4096);
        block = setField(block, BAR1_BLOCK.MODE, 1);
        this.#regs.set(NV_VIRTUAL_FUNCTION_PRIV_BAR1_BLOCK, block);
      } else {
        let low = setField(0, BAR1_BLOCK_LOW.PTR, (inst % 2 ** 32) / 4096);
        low = setField(low, BAR1_BLOCK_LOW.MODE, 1);
        this.#regs.set(NV_VIRTUAL_FUNCTION_PRIV_FUNC_BAR1_BLOCK_LOW_ADDR, low);
        this.#regs.set(
          NV_VIRTUAL_FUNCTION_PRIV_FUNC_BAR1_BLOCK_HIGH_ADDR,
          Math.floor(inst / 2 ** 32),
        );
      }
      this.#bar1 = this.#fetchBinding(inst);
    }
  }

  /** Sets the FB registers and VRAM contents firmware leaves, and says what they are. */
  #firmwareRegions(state: SimCardState): SimBootInfo {
    const size = this.profile.vramSize;
    // VGA workspace in the top MiB, valid (nova-core fb.rs reads it this way).
    const vgaWorkspace = size - MiB;
    let vga = setField(0, VGA_WORKSPACE_BASE.ADDR, vgaWorkspace / 2 ** 16);
    vga = setField(vga, VGA_WORKSPACE_BASE.STATUS_VALID, 1);
    this.#regs.set(NV_PDISP_VGA_WORKSPACE_BASE, vga);
    // The top 2 MiB locked by VBIOS (GA100+): HI names the last 4 KiB page (RM aligns it up).
    let mmuLock: SimBootInfo["mmuLock"] = null;
    if (this.profile.mmuLock) {
      mmuLock = { start: size - 2 * MiB, end: size };
      this.#regs.set(NV_PFB_PRI_MMU_LOCK_CFG_PRIV_LEVEL_MASK, 1);
      this.#regs.set(NV_PFB_PRI_MMU_LOCK_ADDR_LO, addr4k(mmuLock.start));
      this.#regs.set(NV_PFB_PRI_MMU_LOCK_ADDR_HI, addr4k(mmuLock.end - 4096));
    }
    const wpr2 = this.firmware?.wpr2 ?? null;
    this.#regs.set(NV_PFB_PRI_MMU_WPR2_ADDR_LO, wpr2 === null ? 0 : addr4k(wpr2.start));
    this.#regs.set(NV_PFB_PRI_MMU_WPR2_ADDR_HI, wpr2 === null ? 0 : addr4k(wpr2.end - 4096));
    const bootVga = state === "vga";
    if (bootVga) {
      for (let a = 0; a < CONSOLE_BYTES; a += 4) this.vram.write32(a, CONSOLE_PATTERN);
    }
    return {
      state,
      vgaWorkspace,
      mmuLock,
      wpr2,
      bootVga,
    };
  }

  /** The VRAM address the PRAMIN aperture starts at now (decoded when the register is written). */
  get praminBase(): number {
    return this.#praminBase;
  }

  /** Why the GPU was lost (it then reads all ones until reopened), or null. */
  get lost(): string | null {
    return this.#lost;
  }

  /** `"physical"` or `"virtual"`: how BAR1 translates CPU accesses now. */
  get bar1Mode(): "physical" | "virtual" {
    return this.#bar1 === null ? "physical" : "virtual";
  }

  /** True once GFW boot (devinit) has completed. */
  get gfwBootDone(): boolean {
    return performance.now() >= this.#gfwDoneAt;
  }

  /** Errors logged so far (the driver misbehaved). */
  errors(): SimEvent[] {
    return this.log.filter((e) => e.severity === "error");
  }

  /** The PDB BAR1 is bound to now (latched at the last bind), or null in physical mode or unbound. */
  bar1Pdb(): number | null {
    const b = this.#bar1;
    return b === null || b.pdb < 0 ? null : b.pdb;
  }

  #note(severity: SimEvent["severity"], kind: string, message: string): void {
    this.eventCount++;
    if (this.log.length >= LOG_LIMIT) this.log.shift();
    this.log.push({ severity, kind, message });
  }

  /** What silicon does on a BAR fault in virtual mode: the GPU is gone (facts §13.3 item 7). */
  #lose(message: string): void {
    if (this.#lost !== null) return;
    this.#lost = message;
    this.#note("error", "gpu-lost", `${message}: BAR fault, the GPU is lost until reopened`);
  }

  #makeBar0(): MmioBackend {
    const vram = this.vram;
    const posted = this.posted;
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
    const lost = () => this.#lost !== null;
    // The whole range inside the PRAMIN aperture and inside VRAM: one bulk copy is exactly
    // what the single accesses would do. Anything else goes word by word (registers, edges).
    const bulkVram = (offset: number, words: number): number => {
      if (lost() || offset < NV_PRAMIN || offset + words * 4 > NV_PRAMIN + PRAMIN_SIZE) return -1;
      const addr = this.#praminBase + (offset - NV_PRAMIN);
      return addr + words * 4 > size ? -1 : addr;
    };
    return {
      size: BAR0_SIZE,
      readWords: (offset, out) => {
        const a = bulkVram(offset, out.length);
        if (a >= 0) return void vram.readWords(a, out);
        for (let i = 0; i < out.length; i++) out[i] = this.bar0.read32(offset + i * 4);
      },
      writeWords: (offset, words) => {
        const a = bulkVram(offset, words.length);
        if (a >= 0) {
          posted.touchRange(a, words.length * 4);
          vram.writeWords(a, words);
          return;
        }
        for (let i = 0; i < words.length; i++) this.bar0.write32(offset + i * 4, words[i]);
      },
      read8: (offset) => {
        if (lost()) return 0xff;
        if (!inPramin(offset)) return narrowRegister(offset, 1, "read");
        const a = pramin(offset, 1);
        return a < 0 ? PRAMIN_FAULT & 0xff : vram.read8(a);
      },
      read16: (offset) => {
        if (lost()) return 0xffff;
        if (misaligned(offset, 2)) return 0xffff;
        if (!inPramin(offset)) return narrowRegister(offset, 2, "read");
        const a = pramin(offset, 2);
        return a < 0 ? PRAMIN_FAULT & 0xffff : vram.read16(a);
      },
      read32: (offset) => {
        if (lost()) return GPU_LOST;
        if (misaligned(offset, 4)) return 0xffffffff;
        if (inPramin(offset)) {
          const a = pramin(offset, 4);
          return a < 0 ? PRAMIN_FAULT : vram.read32(a);
        }
        return this.#readRegister(offset);
      },
      write8: (offset, value) => {
        if (lost()) return;
        if (!inPramin(offset)) return void narrowRegister(offset, 1, "write");
        const a = pramin(offset, 1);
        if (a >= 0) {
          posted.touch(a);
          vram.write8(a, value);
        }
      },
      write16: (offset, value) => {
        if (lost()) return;
        if (misaligned(offset, 2)) return;
        if (!inPramin(offset)) return void narrowRegister(offset, 2, "write");
        const a = pramin(offset, 2);
        if (a >= 0) {
          posted.touch(a);
          vram.write16(a, value);
        }
      },
      write32: (offset, value) => {
        if (lost()) return;
        if (misaligned(offset, 4)) return;
        if (inPramin(offset)) {
          const a = pramin(offset, 4);
          if (a >= 0) {
            posted.touch(a);
            vram.write32(a, value);
          }
          return;
        }
        this.#writeRegister(offset, value);
      },
    };
  }

  /**
   * BAR1: in physical mode byte offset X is VRAM address X; in virtual mode
   * every access is translated by the MMU through the latched PDB, and a
   * fault (unmapped, read-only, past ADR_LIMIT, nothing bound) loses the GPU.
   */
  #makeBar1(): MmioBackend {
    const vram = this.vram;
    const posted = this.posted;
    const mmu = this.mmu;
    const vramSize = this.profile.vramSize;
    const physical = (offset: number, width: number, op: string): number => {
      if (offset + width <= vramSize) return offset;
      this.#note(
        "error",
        "bar1-past-vram",
        `physical-mode BAR1 ${width * 8}-bit ${op} at ${hex(offset)} is past the end of VRAM (${
          hex(vramSize)
        })`,
      );
      return -1;
    };
    // The VRAM address behind a BAR1 access, or -1 (the access is dropped / reads `fill`).
    const resolve = (offset: number, width: number, write: boolean): number => {
      if (this.#lost !== null) return -1;
      const b = this.#bar1;
      if (b === null) return physical(offset, width, write ? "write" : "read");
      if (this.#bindPendingReads > 0 || this.knobs.bindHang && this.#bindStatus !== 0) {
        this.#note(
          "error",
          "bar1-bind-pending",
          `BAR1 access at ${hex(offset)} while a BAR1 bind is still pending`,
        );
      }
      const op = write ? "write" : "read";
      if (b.pdb < 0) {
        mmu.resolve(null, offset, op, width);
        this.#lose(`CPU ${op} of BAR1 VA ${hex(offset)} with no valid instance block bound`);
        return -1;
      }
      if (offset + width - 1 > b.limit) {
        this.#lose(
          `CPU ${op} of BAR1 VA ${hex(offset)} is past the instance block's ADR_LIMIT ${
            hex(b.limit)
          }`,
        );
        return -1;
      }
      const pa = mmu.resolve(b.pdb, offset, op, width);
      if (pa < 0) {
        this.#lose(`CPU ${op} of BAR1 VA ${hex(offset)} faulted (${mmu.lastFault})`);
        return -1;
      }
      return pa;
    };
    const fillFor = (mask: number) => (this.#lost !== null ? GPU_LOST : BAR1_PAST_VRAM) & mask;
    return {
      size: this.profile.bar1Size,
      read8: (offset) => {
        const a = resolve(offset, 1, false);
        return a < 0 ? fillFor(0xff) : vram.read8(a);
      },
      read16: (offset) => {
        const a = resolve(offset, 2, false);
        return a < 0 ? fillFor(0xffff) : vram.read16(a);
      },
      read32: (offset) => {
        const a = resolve(offset, 4, false);
        return a < 0 ? fillFor(0xffffffff) >>> 0 : vram.read32(a);
      },
      write8: (offset, value) => {
        const a = resolve(offset, 1, true);
        if (a < 0) return;
        posted.touch(a);
        vram.write8(a, value);
      },
      write16: (offset, value) => {
        const a = resolve(offset, 2, true);
        if (a < 0) return;
        posted.touch(a);
        vram.write16(a, value);
      },
      write32: (offset, value) => {
        const a = resolve(offset, 4, true);
        if (a < 0) return;
        posted.touch(a);
        vram.write32(a, value);
      },
    };
  }

  #readRegister(offset: number): number {
    if (offset === this.#gfw.progress || offset === this.#gfw.plm) return this.#readGfw(offset);
    const v = this.#regs.get(offset);
    if (v === undefined) {
      this.#note("error", "unknown-register", `read of unknown register ${hex(offset)}`);
      return PRI_ERROR;
    }
    switch (offset) {
      case NV_VIRTUAL_FUNCTION_PRIV_MMU_INVALIDATE: {
        if (!getField(v, MMU_INVALIDATE.TRIGGER)) return v;
        if (this.knobs.tlbHang) return v;
        if (this.#pendingReads > 0) {
          this.#pendingReads--;
          return v;
        }
        const done = setField(v, MMU_INVALIDATE.TRIGGER, 0);
        this.#regs.set(offset, done);
        return done;
      }
      case NV_UFLUSH_FB_FLUSH: {
        if (this.#fbPendingReads < 0) return v;
        if (this.knobs.fbFlushHang) return setField(0, UFLUSH_FB_FLUSH.PENDING, 1);
        if (this.#fbPendingReads > 0) {
          this.#fbPendingReads--;
          return setField(0, UFLUSH_FB_FLUSH.PENDING, 1);
        }
        // The flush completes when a poll sees it done: what was posted is visible now.
        this.#fbPendingReads = -1;
        this.posted.drain();
        this.fbFlushes++;
        this.#note("info", "fb-flush", "FB flush completed: posted writes visible to the GPU");
        return 0;
      }
      case NV_PBUS_BIND_STATUS:
      case NV_VIRTUAL_FUNCTION_PRIV_BIND_STATUS:
        return this.#bindStatusRead();
      case NV_VIRTUAL_FUNCTION_PRIV_FUNC_BAR1_BLOCK_LOW_ADDR:
        return ((v & ~3) | this.#bindStatusRead()) >>> 0;
    }
    return v;
  }

  /** Bind PENDING/OUTSTANDING as a status read sees them; they clear after the bind latency. */
  #bindStatusRead(): number {
    if (this.#bindStatus === 0) return 0;
    if (this.knobs.bindHang) return this.#bindStatus;
    if (this.#bindPendingReads > 0) {
      this.#bindPendingReads--;
      return this.#bindStatus;
    }
    this.#bindStatus = 0;
    return 0;
  }

  #readGfw(offset: number): number {
    const done = this.gfwBootDone;
    if (offset === this.#gfw.plm) return done ? 1 : 0;
    // Before devinit lowers the protection, the boot scratch is not readable at level 0.
    if (this.#gfw.plm !== null && !done) return PRI_ERROR;
    return done ? 0xff : 0x3; // 0x3: some early progress step
  }

  #writeRegister(offset: number, value: number): void {
    switch (offset) {
      case NV_PMC_BOOT_0:
      case NV_PMC_BOOT_42:
      case NV_USABLE_FB_SIZE_IN_MB:
      case NV_PFB_PRI_MMU_LOCAL_MEMORY_RANGE:
      case NV_PDISP_VGA_WORKSPACE_BASE:
      case NV_PFB_PRI_MMU_WPR2_ADDR_LO:
      case NV_PFB_PRI_MMU_WPR2_ADDR_HI:
      case NV_PFB_PRI_MMU_LOCK_CFG_PRIV_LEVEL_MASK:
      case NV_PFB_PRI_MMU_LOCK_ADDR_LO:
      case NV_PFB_PRI_MMU_LOCK_ADDR_HI:
      case NV_PBUS_BIND_STATUS:
      case NV_VIRTUAL_FUNCTION_PRIV_BIND_STATUS:
      case this.#gfw.progress:
      case this.#gfw.plm:
        if (this.#regs.has(offset)) {
          // Firmware-owned or level-protected: a CPU write at level 0 does not land.
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
      case NV_VIRTUAL_FUNCTION_PRIV_MMU_INVALIDATE: {
        const before = this.#regs.get(offset)!;
        if (
          getField(value, MMU_INVALIDATE.TRIGGER) && getField(before, MMU_INVALIDATE.TRIGGER) &&
          (this.knobs.tlbHang || this.#pendingReads > 0)
        ) {
          this.#note(
            "error",
            "tlb-overlap",
            `TLB invalidate ${hex(value)} triggered while the previous one is still pending`,
          );
        }
        this.#regs.set(offset, value >>> 0);
        if (getField(value, MMU_INVALIDATE.TRIGGER)) this.#flush(value);
        return;
      }
      case NV_UFLUSH_FB_FLUSH:
        if (getField(value, UFLUSH_FB_FLUSH.FLUSH)) {
          this.#fbPendingReads = this.knobs.fbFlushLatencyReads;
        }
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
    switch (offset) {
      case NV_PBUS_BAR1_BLOCK:
      case NV_VIRTUAL_FUNCTION_PRIV_BAR1_BLOCK: {
        // Either register starts a bind with its own value (the VF one is what RM uses).
        this.#regs.set(offset, value >>> 0);
        const mode = getField(value, BAR1_BLOCK.MODE);
        const target = getField(value, BAR1_BLOCK.TARGET);
        this.#bind(mode, target, getField(value, BAR1_BLOCK.PTR) * 4096, hex(offset));
        return;
      }
      case NV_VIRTUAL_FUNCTION_PRIV_FUNC_BAR1_BLOCK_LOW_ADDR: {
        // PENDING and OUTSTANDING are read-only status; a LOW write alone binds nothing.
        if (value & 3) {
          this.#note(
            "error",
            "read-only-field",
            `BAR1_BLOCK_LOW_ADDR write ${hex(value)} sets the read-only PENDING/OUTSTANDING bits`,
          );
        }
        this.#regs.set(offset, (value & ~3) >>> 0);
        return;
      }
      case NV_VIRTUAL_FUNCTION_PRIV_FUNC_BAR1_BLOCK_HIGH_ADDR: {
        // The HIGH write starts the bind (facts §13.3 item 4).
        this.#regs.set(offset, value >>> 0);
        const lo = this.#regs.get(NV_VIRTUAL_FUNCTION_PRIV_FUNC_BAR1_BLOCK_LOW_ADDR)!;
        this.#bind(
          getField(lo, BAR1_BLOCK_LOW.MODE),
          getField(lo, BAR1_BLOCK_LOW.TARGET),
          getField(lo, BAR1_BLOCK_LOW.PTR) * 4096 + (value >>> 0) * 2 ** 32,
          hex(offset),
        );
        return;
      }
    }
    this.#regs.set(offset, value >>> 0);
  }

  /** A BAR1 bind: physical, or fetch the instance block (as the GPU sees VRAM) and latch its PDB. */
  #bind(mode: number, target: number, inst: number, via: string): void {
    if (this.#bindStatus !== 0 && (this.knobs.bindHang || this.#bindPendingReads > 0)) {
      this.#note("error", "bind-overlap", `BAR1 bind through ${via} while one is still pending`);
    }
    this.#bindStatus = 3; // PENDING | OUTSTANDING
    this.#bindPendingReads = this.knobs.bindLatencyReads;
    this.mmu.invalidate("all");
    if (mode === 0) {
      this.#bar1 = null;
      this.#note("info", "bar1-bind", `BAR1 set to physical mode through ${via}`);
      return;
    }
    if (target !== 0) {
      this.#note(
        "error",
        "bar1-bind",
        `BAR1 bind with TARGET ${target}: only VID_MEM is simulated`,
      );
      this.#bar1 = { pdb: -1, limit: -1 };
      return;
    }
    this.#bar1 = this.#fetchBinding(inst);
    this.#note(
      "info",
      "bar1-bind",
      `BAR1 bound through ${via} to instance block ${hex(inst)}: ${
        this.#bar1.pdb < 0 ? "no valid PDB" : `PDB ${hex(this.#bar1.pdb)}`
      }, ADR_LIMIT ${hex(this.#bar1.limit)}`,
    );
  }

  /** Reads an instance block through the GPU's view of VRAM (unflushed writes unseen). */
  #fetchBinding(inst: number): { pdb: number; limit: number } {
    if (inst + 4096 > this.profile.vramSize) {
      this.#note("error", "bar1-bind", `instance block ${hex(inst)} is past the end of VRAM`);
      return { pdb: -1, limit: -1 };
    }
    const read = (off: number) => this.posted.read32(inst + off);
    const word = read(NV_RAMIN_PAGE_DIR_BASE_LO);
    const pdb = getField(word, RAMIN_PDB.LO) * 4096 + read(NV_RAMIN_PAGE_DIR_BASE_HI) * 2 ** 32;
    const limit = (read(NV_RAMIN_ADR_LIMIT_LO) >>> 0) + read(NV_RAMIN_ADR_LIMIT_HI) * 2 ** 32;
    const problems: string[] = [];
    if (getField(word, RAMIN_PDB.TARGET) !== 0) problems.push("PDB TARGET is not VID_MEM");
    if (getField(word, RAMIN_PDB.USE_VER2_PT_FORMAT) !== 1) problems.push("VER2 format bit clear");
    if (getField(word, RAMIN_PDB.BIG_PAGE_SIZE) !== 1) problems.push("128 KiB big pages");
    if ((limit & 0xfff) !== 0xfff) problems.push(`ADR_LIMIT ${hex(limit)} low bits not 0xfff`);
    if (pdb + 4096 > this.profile.vramSize) problems.push(`PDB ${hex(pdb)} past VRAM`);
    if (problems.length > 0) {
      this.#note(
        "error",
        "bad-instance-block",
        `instance block ${hex(inst)} (as the GPU sees VRAM): ${problems.join("; ")}`,
      );
      return { pdb: -1, limit: -1 };
    }
    return { pdb, limit };
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
      // HUBTLB_ONLY drops the hub TLB, the one BAR1 uses: for this simulator the same TLB.
      this.mmu.invalidate(all ? "all" : pdb);
    }
    this.flushes.push({ pdb: all ? "all" : pdb, aperture, value: value >>> 0 });
    this.#note("info", "tlb-flush", `TLB invalidate ${all ? "all PDBs" : `PDB ${hex(pdb)}`}`);
  }
}

/** A 4 KiB-aligned address in the VAL 31:4 form of the WPR2 / MMU lock registers. */
function addr4k(addr: number): number {
  return setField(0, ADDR_VAL_4K.VAL, Math.floor(addr / 4096));
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

function nearProfile(name: string): string | undefined {
  const near = didYouMean(name, Object.keys(SIM_PROFILES));
  return near === null
    ? undefined
    : `did you mean sim:${near}? (\`deno task list\` shows the GPUs here)`;
}

/**
 * Builds a simulated GPU.
 *
 * @example
 * ```ts
 * const sim = createSimGpu({ profile: "gh100", state: "bare" });
 * sim.bar1Mode; // "physical"
 * ```
 */
export function createSimGpu(options: SimGpuOptions = {}): SimGpu {
  const name = options.profile ?? DEFAULT_SIM_PROFILE;
  const profile = Object.hasOwn(SIM_PROFILES, name) ? SIM_PROFILES[name] : undefined; // not "constructor"
  if (profile === undefined) {
    fail(
      "ENODEV",
      `unknown simulator profile ${JSON.stringify(name)}; known: ${
        Object.keys(SIM_PROFILES).map((p) => `sim:${p}`).join(", ")
      }`,
      nearProfile(name),
    );
  }
  return new SimGpu(profile, options.state ?? DEFAULT_SIM_STATE);
}
