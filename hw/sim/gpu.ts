/**
 * The simulated GPU: a BAR0 register file exact to the facts, sparse VRAM, a
 * BAR1 that is physical at reset and translating once bound, and the state
 * the card is in at open (bare, gsp, unloaded, booting, vga; facts §13, §14).
 *
 * Written from `shared/spec/nova-mm-facts.md` only; it never imports `mm/`
 * (the simulator is the oracle `mm/` is tested against). Where §14 and §13
 * disagree, §14 (RM's per-chip HALs) wins; where the sources disagree (a
 * CONFLICT), the card offers each candidate as a knob chosen at creation
 * ({@linkcode SimConflicts}, `sim.conflicts`).
 *
 * What it checks and logs (see {@linkcode SimGpu.log}):
 * - unknown registers read as a PRI error (0xBADF1100) and are logged; that
 *   includes registers a chip does not have: NV_UFLUSH_FB_FLUSH off
 *   Turing/Ampere/Ada, the XAL flush registers off GH100/GB20x, the MMU lock
 *   off GA100, the VGA workspace on chips without display, the Blackwell WPR2
 *   copy elsewhere, and NV_PBUS_BIND_STATUS 0x1710 everywhere (§14.1);
 * - 8/16-bit accesses to registers (only PRAMIN takes them) and misaligned
 *   accesses are logged as errors;
 * - PRAMIN accesses past the end of VRAM read {@linkcode PRAMIN_FAULT} and are
 *   logged; writes there are dropped;
 * - writes to read-only registers (BOOT_0, the XAL flush registers, ...) are
 *   logged and ignored;
 * - CPU writes through PRAMIN or BAR1 are posted: the MMU and the BAR1 bind
 *   see them only after an FB flush completes (NV_UFLUSH_FB_FLUSH write + poll,
 *   or on GH100/GB20x a read of NV_XAL_EP_ZB_UFLUSH_FB_FLUSH and a token poll of
 *   _COMPLETED; GB10x has no CPU-side flush; §14.1);
 * - a TLB invalidate or a BAR1 bind started while the previous one is
 *   pending, an invalidate with exactly one of SYS_MEMBAR and ACK_GLOBALLY,
 *   and a BAR1 access while a bind is pending, are logged;
 * - the bind fetches the instance block as the GPU sees it and refuses a bad
 *   one (PDB TARGET, BIG_PAGE_SIZE, bit 10, ENABLE_ATS, the subcontext PDB
 *   copies); ADR_LIMIT is not checked (§14.1);
 * - physical BAR1 with TARGET other than VID goes to system memory, which is
 *   not simulated: every access is an error (`bar1-sysmem`; §14.2 item 1);
 * - firmware-owned VRAM (WPR2 while set, the GA100 MMU lock) drops CPU writes
 *   and reads {@linkcode FIRMWARE_VRAM_READ} (§14.2 item 6);
 * - writes made while the post-reset memory clear runs are logged (§14.2
 *   item 2); unscrubbed VRAM reads a non-zero pattern (§14.2 item 5);
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
  FUSE_STATUS_OPT_DISPLAY,
  getField,
  type GfwBootRegisters,
  gfwBootRegisters,
  LOCAL_MEMORY_RANGE,
  MEM_CLEAR_STATUS,
  MEM_CLEAR_STATUS_GB,
  MMU_INVALIDATE,
  MMU_INVALIDATE_ACK_GLOBALLY,
  MMU_INVALIDATE_PDB,
  MMU_INVALIDATE_UPPER_PDB,
  NV_FUSE_STATUS_OPT_DISPLAY_GA100,
  NV_FUSE_STATUS_OPT_DISPLAY_TU102,
  NV_HUBMMU_PRI_MMU_WPR2_ADDR_HI,
  NV_HUBMMU_PRI_MMU_WPR2_ADDR_LO,
  NV_PBUS_BAR1_BLOCK,
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
  NV_RAMIN_ENABLE_ATS,
  NV_RAMIN_PAGE_DIR_BASE_HI,
  NV_RAMIN_PAGE_DIR_BASE_LO,
  NV_RAMIN_SC_PAGE_DIR_BASE,
  NV_RAMIN_SC_PDB_VALID,
  NV_UFLUSH_FB_FLUSH,
  NV_USABLE_FB_SIZE_IN_MB,
  NV_VIRTUAL_FUNCTION_PRIV_BAR1_BLOCK,
  NV_VIRTUAL_FUNCTION_PRIV_BIND_STATUS,
  NV_VIRTUAL_FUNCTION_PRIV_FUNC_BAR1_BLOCK_HIGH_ADDR,
  NV_VIRTUAL_FUNCTION_PRIV_FUNC_BAR1_BLOCK_LOW_ADDR,
  NV_VIRTUAL_FUNCTION_PRIV_MMU_INVALIDATE,
  NV_VIRTUAL_FUNCTION_PRIV_MMU_INVALIDATE_PDB,
  NV_VIRTUAL_FUNCTION_PRIV_MMU_INVALIDATE_UPPER_PDB,
  NV_XAL_EP_ZB_UFLUSH_FB_FLUSH,
  NV_XAL_EP_ZB_UFLUSH_FB_FLUSH_COMPLETED,
  PRAMIN_BASE_SHIFT,
  PRAMIN_SIZE,
  RAMIN_ATS,
  RAMIN_PDB,
  RAMIN_SUBCONTEXTS,
  setField,
  UFLUSH_FB_FLUSH,
  VGA_WORKSPACE_BASE,
  type WindowRegister,
  windowRegister,
  XAL_FB_FLUSH,
  XAL_TOKEN_MASK,
} from "../regs.ts";
import { CHIPS, encodeBoot } from "../chip.ts";
import { fail, hex } from "../errors.ts";
import { didYouMean } from "../validate.ts";
import { PostedWrites, SparseMemory, type VramBackground } from "./vram.ts";
import { SimMmu } from "./mmu.ts";
import { bootFirmware, type SimFirmwareInfo } from "./firmware.ts";
import {
  DEFAULT_SIM_CONFLICTS,
  DEFAULT_SIM_PROFILE,
  DEFAULT_SIM_STATE,
  GFW_BOOT_MS,
  MEM_CLEAR_MS,
  SIM_CONFLICT_MMU,
  SIM_CONFLICTS,
  SIM_PROFILES,
  SIM_STATES,
  type SimCardState,
  type SimConflicts,
  type SimProfile,
} from "./profiles.ts";
import { formatSimSpec, resolveSimConflicts } from "./spec.ts";

export { DEFAULT_SIM_CONFLICTS, SIM_CONFLICT_MMU, SIM_CONFLICTS, type SimConflicts };

/** BAR0 aperture size (16 MiB, facts §11). */
export const BAR0_SIZE = 16 * 2 ** 20;
/** What an unknown register reads as (a PRI decode-error pattern). */
export const PRI_ERROR = 0xbadf1100;
/** What a PRAMIN read past the end of VRAM returns. */
export const PRAMIN_FAULT = 0xbad0ac00;
/**
 * What a CPU read of firmware-owned VRAM (WPR2 while set, the GA100 MMU lock)
 * returns: a PRI-error pattern (facts §14.2 item 6, the conservative model).
 */
export const FIRMWARE_VRAM_READ = 0xbad0f0e0;
/** What a BAR1 read returns while BAR1 is physical with a system-memory TARGET (not simulated). */
export const BAR1_SYSMEM = 0xbad0b5e0;
/**
 * The first token the XAL FB flush of GH100/GB20x completes at open: flushes
 * count up from here modulo 2^31, so the eighth flush wraps to 0 (a driver
 * comparing tokens without the modulo is caught).
 */
export const XAL_FIRST_TOKEN = 0x7ffffff8;
/** Background seeds of simulated VRAM (see {@linkcode backgroundWord} in `vram.ts`). */
export const VRAM_SEEDS = {
  /** Never-scrubbed VRAM after power-on (`bare`, `booting`, `vga`, `gsp`). */
  unscrubbed: 0x5eed0001,
  /** The data the previous driver left (`unloaded`). */
  previousDriver: 0x5eed0002,
} as const;
/** GH100's firmware scrubs the last 256 MiB of FB before GSP-RM runs (facts §14.2 item 5). */
export const GH100_SCRUBBED_TOP = 256 * 2 ** 20;
const LOG_LIMIT = 10_000;

/** One thing the simulator noticed. */
export interface SimEvent {
  /** `error` = the driver did something silicon would not like; `info` = notable. */
  severity: "error" | "info";
  /**
   * Short machine-readable kind, e.g. `unknown-register`, `pramin-past-vram`,
   * `tlb-flush`, `tlb-membar-ack`, `fb-flush`, `bar1-bind`, `bad-instance-block`,
   * `bar1-sysmem`, `firmware-vram-write`, `firmware-vram-read`,
   * `write-during-memclear`, `gpu-lost`.
   */
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

/** Knobs for fault-injection tests (mutable at any time, unlike {@linkcode SimConflicts}). */
export interface SimKnobs {
  /** A TLB invalidate never completes (TRIGGER stays set). */
  tlbHang: boolean;
  /** Reads of the invalidate register that still report TRIGGER=1 after a trigger. */
  tlbLatencyReads: number;
  /** An FB flush never completes (PENDING, or the XAL STATUS BUSY, stays set). */
  fbFlushHang: boolean;
  /**
   * Reads of the completion register (NV_UFLUSH_FB_FLUSH, or on GH100/GB20x
   * NV_XAL_EP_ZB_UFLUSH_FB_FLUSH_COMPLETED) that still report the flush busy.
   */
  fbFlushLatencyReads: number;
  /** A BAR1 bind never completes (PENDING/OUTSTANDING stay set). */
  bindHang: boolean;
  /** Reads of the bind status that still report PENDING after a bind is started. */
  bindLatencyReads: number;
  /**
   * Stuck-at bits (memory-test fault injection): the bits in `mask` of the
   * VRAM word at `addr` (a multiple of 4) read as those of `value`, through
   * PRAMIN, BAR1 and the GPU's own MMU alike. Assign a new array to change it.
   */
  stuckBits: readonly SimStuckBits[];
  /**
   * A dead VRAM range (fault injection): every word reads `pattern` (default
   * {@linkcode DEAD_VRAM_PATTERN}), writes are dropped; null for none.
   */
  deadRegion: SimDeadRegion | null;
  /**
   * Address aliasing (fault injection): accesses of [`alias`, `alias` +
   * `size`) reach the cells of [`addr`, `addr` + `size`) (`size` default 4), as
   * a broken address line would: two VRAM addresses decode to one cell.
   */
  aliases: readonly SimAlias[];
}

/** One stuck word for {@linkcode SimKnobs.stuckBits}. */
export interface SimStuckBits {
  /** VRAM byte address of the word (a multiple of 4). */
  addr: number;
  /** The stuck bits. */
  mask: number;
  /** What the stuck bits read as (bits outside `mask` are ignored). */
  value: number;
}

/** A dead range for {@linkcode SimKnobs.deadRegion}. */
export interface SimDeadRegion {
  /** First byte (a multiple of 4). */
  start: number;
  /** Bytes (a positive multiple of 4). */
  size: number;
  /** What every word reads (default {@linkcode DEAD_VRAM_PATTERN}). */
  pattern?: number;
}

/** One aliased range for {@linkcode SimKnobs.aliases}. */
export interface SimAlias {
  /** The cells (VRAM byte address, a multiple of 4). */
  addr: number;
  /** The other address that decodes to them (a multiple of 4). */
  alias: number;
  /** Bytes (a positive multiple of 4; default 4, one word). */
  size?: number;
}

/** What a dead VRAM range reads as unless {@linkcode SimDeadRegion.pattern} says otherwise. */
export const DEAD_VRAM_PATTERN = 0xdead0dea;

/** Options for {@linkcode createSimGpu}. */
export interface SimGpuOptions {
  /** Profile name (`ga102`, `gh100`, ...); default `ga102`. */
  profile?: string;
  /** Card state at open (default `bare`: a card no driver has booted). */
  state?: SimCardState;
  /**
   * The answers to the CONFLICT facts (default {@linkcode DEFAULT_SIM_CONFLICTS});
   * a knob of the other MMU version is refused (ENODEV).
   */
  conflicts?: Partial<SimConflicts>;
  /**
   * NVIDIA's register headers for this chip (`hw/regdb`): a register they
   * define that the simulator does not model reads its header reset value (0
   * where none is given) and takes writes that change nothing, each reported
   * once as `unmodeled`; offsets no header defines stay a PRI error. Without
   * it every unmodeled offset is a PRI error.
   */
  headers?: (offset: number) => { name: string; reset: number | null } | null;
}

/** A range of VRAM the firmware owns: [start, end). */
export interface SimRegion {
  /** First byte. */
  start: number;
  /** One past the last byte. */
  end: number;
}

/** What the simulated VBIOS/firmware left in VRAM and the FB registers (facts §13.2, §14). */
export interface SimBootInfo {
  /** The state the card was created in. */
  state: SimCardState;
  /**
   * VGA workspace base reported by NV_PDISP_VGA_WORKSPACE_BASE; null on chips
   * without display (no such register there).
   */
  vgaWorkspace: number | null;
  /** The region NV_PFB_PRI_MMU_LOCK_ADDR locks: [start, end), or null (every chip but GA100). */
  mmuLock: SimRegion | null;
  /** WPR2 [start, end) while set (gsp, unloaded), else null. HI is the exclusive end. */
  wpr2: SimRegion | null;
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

/** BAR1's translation now: physical (by TARGET) or virtual (pdb -1: nothing valid bound). */
type Bar1State = { mode: "physical"; target: number } | { mode: "virtual"; pdb: number };

const PHYSICAL_VID: Bar1State = { mode: "physical", target: 0 };
/** Return codes of the aperture resolvers below (any VRAM address is >= 0). */
const DROPPED = -1;
const FIRMWARE = -2;
const SYSMEM = -3;

/**
 * A software GPU. Its `bar0` and `bar1` are {@linkcode MmioBackend}s that the
 * shared `Mmio` layer wraps exactly like a card's mmap'd BARs.
 */
export class SimGpu {
  /** The board. */
  readonly profile: SimProfile;
  /** The CONFLICT knobs this card was created with (all keys; fixed for its life). */
  readonly conflicts: Readonly<SimConflicts>;
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
  /**
   * Events worth knowing, oldest first, bounded to the newest 10,000. The
   * same array every time (clear it with `sim.log.length = 0`); adding an
   * event costs O(1): the oldest are dropped in batches, and a read of
   * `log` trims what is past the bound, so read `sim.log` afresh rather than
   * holding it across later events.
   */
  get log(): SimEvent[] {
    this.#trimLog();
    return this.#log;
  }
  /** Completed TLB flushes, oldest first. */
  readonly flushes: SimFlush[] = [];
  /** Completed FB flushes. */
  fbFlushes = 0;
  /** Events noted since creation (also those dropped from the bounded {@linkcode SimGpu.log}). */
  eventCount = 0;
  /** Fault-injection knobs. */
  readonly knobs: SimKnobs = this.#makeKnobs();
  /** The log's storage: the events are #log[#logHead..]; the first #logHead are dropped ones. */
  readonly #log: SimEvent[] = [];
  #logHead = 0;
  #regs = new Map<number, number>();
  #window: WindowRegister;
  #gfw: GfwBootRegisters;
  #gfwDoneAt: number;
  #memClearReg: number;
  #memClearDoneAt: number;
  /** True until the memory clear of a `booting` card is seen over (keeps the write paths cheap). */
  #clearing: boolean;
  #praminBase = 0;
  #bar1: Bar1State = PHYSICAL_VID;
  #pendingReads = 0;
  #fbPendingReads = -1;
  #xalIssued = XAL_FIRST_TOKEN;
  #xalCompleted = XAL_FIRST_TOKEN;
  #xalPendingReads = -1;
  #bindPendingReads = 0;
  #bindStatus = 0;
  /** The last bind was a LOW write switching to physical at once (lowbind=immediate). */
  #lowSwitch = false;
  #lost: string | null = null;
  readonly #headers: SimGpuOptions["headers"] | null;
  /** Unmodeled registers already reported (once each). */
  #unmodeledSeen = new Set<number>();

  /** Firmware-owned VRAM; #ownedLo/#ownedHi bound them all so the common case is two compares. */
  #owned: { start: number; end: number; name: string }[] = [];
  #ownedLo = Infinity;
  #ownedHi = -Infinity;

  /** Constructs it (see the class documentation for who does and how). */
  constructor(
    profile: SimProfile,
    state: SimCardState = DEFAULT_SIM_STATE,
    conflicts: Partial<SimConflicts> = {},
    headers: SimGpuOptions["headers"] = undefined,
  ) {
    this.#headers = headers ?? null;
    if (!SIM_STATES.includes(state)) {
      fail(
        "ENODEV",
        `unknown simulator card state ${JSON.stringify(state)}; known: ${SIM_STATES.join(", ")}`,
      );
    }
    const chip = CHIPS[profile.chipId] ?? profile.name.toUpperCase();
    if (state === "vga" && !profile.display) {
      fail(
        "ENODEV",
        `sim:${profile.name}:vga: ${chip} has no display engine (NV_FUSE_STATUS_OPT_DISPLAY reads DISABLE), so it has no VGA workspace and cannot be the boot VGA device`,
        `use sim:${profile.name} or a chip with display (${
          Object.values(SIM_PROFILES).filter((p) => p.display).map((p) => p.name).join(", ")
        })`,
      );
    }
    this.conflicts = Object.freeze(resolveSimConflicts(profile.mmuVersion, conflicts, chip));
    this.profile = profile;
    this.vram = new SparseMemory(profile.vramSize, { background: backgroundOf(profile, state) });
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
    // The post-reset memory clear (facts §14.2 item 2): over shortly after GFW boot.
    this.#memClearReg = profile.architecture === "Blackwell"
      ? MEM_CLEAR_STATUS_GB
      : MEM_CLEAR_STATUS;
    this.#regs.set(this.#memClearReg, 1);
    this.#clearing = state === "booting";
    this.#memClearDoneAt = this.#clearing ? this.#gfwDoneAt + MEM_CLEAR_MS : -Infinity;
    // The display fuse: DATA 0 = display present (facts §14.1).
    this.#regs.set(
      profile.architecture === "Turing"
        ? NV_FUSE_STATUS_OPT_DISPLAY_TU102
        : NV_FUSE_STATUS_OPT_DISPLAY_GA100,
      setField(0, FUSE_STATUS_OPT_DISPLAY.DATA, profile.display ? 0 : 1),
    );
    this.boot = this.#firmwareRegions(state);

    // Reset values (facts §13.2 item 2): BAR1 physical, pointer 0, target VID.
    if (profile.mmuVersion === 2) {
      // Under bar1alias=shared 0x1704 is an alias of the VF register (no storage of its own).
      if (this.conflicts.bar1alias === "separate") this.#regs.set(NV_PBUS_BAR1_BLOCK, 0);
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
    if (profile.fbFlush === "uflush") this.#regs.set(NV_UFLUSH_FB_FLUSH, 0);
    if (profile.fbFlush === "xal") {
      this.#regs.set(NV_XAL_EP_ZB_UFLUSH_FB_FLUSH, 0);
      this.#regs.set(NV_XAL_EP_ZB_UFLUSH_FB_FLUSH_COMPLETED, 0);
    }
    this.bar0 = this.#makeBar0();
    this.bar1 = this.#makeBar1();
    if (withGsp) this.#gspBinding(state === "unloaded");
  }

  /**
   * The BAR1 registers GSP-RM left: bound as RM binds (v2: the VF register;
   * v3: LOW then HIGH), and for `unloaded` after RM's teardown (v2: only 0x1704
   * written MODE physical TARGET VID; v3: only LOW written physical).
   *
   * Under `bar1alias=separate` RM's teardown alone would leave the VF register
   * virtual, and under `lowbind=high` a LOW write alone changes nothing; the
   * `unloaded` state is physical under every knob, so it is built as if those
   * registers had been returned to physical too (the VF copy keeps its stale
   * pointer with MODE physical; HIGH keeps its stale value).
   */
  #gspBinding(unloaded: boolean): void {
    const inst = this.firmware!.instanceBlock;
    if (this.profile.mmuVersion === 2) {
      const block = setField(setField(0, BAR1_BLOCK.PTR, inst / 4096), BAR1_BLOCK.MODE, 1);
      const separate = this.conflicts.bar1alias === "separate";
      if (!unloaded) {
        // RM's TU102 bind writes only the VF register; under "shared" 0x1704 reads the same.
        this.#regs.set(NV_VIRTUAL_FUNCTION_PRIV_BAR1_BLOCK, block);
        this.#bar1 = { mode: "virtual", pdb: this.#fetchBinding(inst) };
        return;
      }
      // kbusTeardownMailbox_GM107: NV_PBUS_BAR1_BLOCK = MODE physical | TARGET VID.
      if (separate) {
        this.#regs.set(NV_PBUS_BAR1_BLOCK, 0);
        this.#regs.set(NV_VIRTUAL_FUNCTION_PRIV_BAR1_BLOCK, setField(block, BAR1_BLOCK.MODE, 0));
      } else {
        // A read-modify-write: MODE physical, TARGET VID, the stale pointer kept.
        this.#regs.set(NV_VIRTUAL_FUNCTION_PRIV_BAR1_BLOCK, setField(block, BAR1_BLOCK.MODE, 0));
      }
      this.#bar1 = PHYSICAL_VID;
      return;
    }
    const low = setField(
      setField(0, BAR1_BLOCK_LOW.PTR, (inst % 2 ** 32) / 4096),
      BAR1_BLOCK_LOW.MODE,
      1,
    );
    this.#regs.set(NV_VIRTUAL_FUNCTION_PRIV_FUNC_BAR1_BLOCK_HIGH_ADDR, Math.floor(inst / 2 ** 32));
    if (!unloaded) {
      this.#regs.set(NV_VIRTUAL_FUNCTION_PRIV_FUNC_BAR1_BLOCK_LOW_ADDR, low);
      this.#bar1 = { mode: "virtual", pdb: this.#fetchBinding(inst) };
      return;
    }
    // kbusTeardownMailbox_GH100: a read-modify-write of LOW (MODE physical, TARGET VID, the
    // pointer kept); HIGH untouched.
    this.#regs.set(
      NV_VIRTUAL_FUNCTION_PRIV_FUNC_BAR1_BLOCK_LOW_ADDR,
      setField(low, BAR1_BLOCK_LOW.MODE, 0),
    );
    this.#bar1 = PHYSICAL_VID;
  }

  /** Sets the FB registers and VRAM contents firmware leaves, and says what they are. */
  #firmwareRegions(state: SimCardState): SimBootInfo {
    const size = this.profile.vramSize;
    // VGA workspace in the top MiB, valid (nova-core fb.rs reads it this way); display chips only.
    let vgaWorkspace: number | null = null;
    if (this.profile.display) {
      vgaWorkspace = size - MiB;
      let vga = setField(0, VGA_WORKSPACE_BASE.ADDR, vgaWorkspace / 2 ** 16);
      vga = setField(vga, VGA_WORKSPACE_BASE.STATUS_VALID, 1);
      this.#regs.set(NV_PDISP_VGA_WORKSPACE_BASE, vga);
    }
    // GA100 only: the top 2 MiB locked by VBIOS. HI is inclusive: the region is
    // [LO << 12, align_up(HI << 12, 64 KiB)), so HI names the last 4 KiB page.
    let mmuLock: SimRegion | null = null;
    if (this.profile.mmuLock) {
      mmuLock = { start: size - 2 * MiB, end: size };
      this.#regs.set(NV_PFB_PRI_MMU_LOCK_CFG_PRIV_LEVEL_MASK, 1);
      this.#regs.set(NV_PFB_PRI_MMU_LOCK_ADDR_LO, addr4k(mmuLock.start));
      this.#regs.set(NV_PFB_PRI_MMU_LOCK_ADDR_HI, addr4k(mmuLock.end - 4096));
      this.#own(mmuLock, "the MMU-locked region");
    }
    // WPR2: HI is the exclusive end (facts §14.1). Blackwell has it at both offsets.
    const wpr2 = this.firmware === null ? null : { ...this.firmware.wpr2 };
    // Reset values: GH100's header gives LO VAL_INIT 0x0FFFFFFF (reads 0xFFFFFFF0), HI 0
    // (OGKM hopper/gh100 dev_fb.h, which Blackwell's register set inherits); an empty WPR2
    // is end == 0 or start == end.
    const loReset = this.profile.architecture === "Hopper" ||
        this.profile.architecture === "Blackwell"
      ? 0xfffffff0
      : 0;
    const lo = wpr2 === null ? loReset : addr4k(wpr2.start);
    const hi = wpr2 === null ? 0 : addr4k(wpr2.end);
    this.#regs.set(NV_PFB_PRI_MMU_WPR2_ADDR_LO, lo);
    this.#regs.set(NV_PFB_PRI_MMU_WPR2_ADDR_HI, hi);
    if (this.profile.architecture === "Blackwell") {
      this.#regs.set(NV_HUBMMU_PRI_MMU_WPR2_ADDR_LO, lo);
      this.#regs.set(NV_HUBMMU_PRI_MMU_WPR2_ADDR_HI, hi);
    }
    if (wpr2 !== null) this.#own(wpr2, "WPR2");
    const bootVga = state === "vga";
    if (bootVga) {
      for (let a = 0; a < CONSOLE_BYTES; a += 4) this.vram.write32(a, CONSOLE_PATTERN);
    }
    return { state, vgaWorkspace, mmuLock, wpr2, bootVga };
  }

  #own(region: SimRegion, name: string): void {
    this.#owned.push({ start: region.start, end: region.end, name });
    this.#ownedLo = Math.min(this.#ownedLo, region.start);
    this.#ownedHi = Math.max(this.#ownedHi, region.end);
  }

  /** The normalised device spec of this card (`sim:gh100:gsp?lowbind=high`). */
  get spec(): string {
    return formatSimSpec(this.profile.name, this.boot.state, this.conflicts);
  }

  /** The VRAM address the PRAMIN aperture starts at now (decoded when the register is written). */
  get praminBase(): number {
    return this.#praminBase;
  }

  /**
   * The registers the simulator models, with the values they hold now (raw
   * storage: no read side effects), for the cross-check against NVIDIA's headers.
   */
  get modeledRegisters(): { offset: number; value: number }[] {
    return [...this.#regs].map(([offset, value]) => ({ offset, value })).sort((a, b) =>
      a.offset - b.offset
    );
  }

  /** Why the GPU was lost (it then reads all ones until reopened), or null. */
  get lost(): string | null {
    return this.#lost;
  }

  /** `"physical"` or `"virtual"`: how BAR1 translates CPU accesses now. */
  get bar1Mode(): "physical" | "virtual" {
    return this.#bar1.mode;
  }

  /** Where physical-mode BAR1 goes: the TARGET latched at the last bind (0 = VID); null while virtual. */
  get bar1PhysicalTarget(): number | null {
    const b = this.#bar1;
    return b.mode === "physical" ? b.target : null;
  }

  /** True once GFW boot (devinit) has completed. */
  get gfwBootDone(): boolean {
    return performance.now() >= this.#gfwDoneAt;
  }

  /** True once the post-reset memory clear is over (its status register reads 1). */
  get memClearDone(): boolean {
    return performance.now() >= this.#memClearDoneAt;
  }

  /** Firmware-owned VRAM the CPU may not touch now (WPR2 while set, the GA100 MMU lock). */
  get firmwareOwned(): readonly (SimRegion & { name: string })[] {
    return this.#owned.map((r) => ({ ...r }));
  }

  /** Errors logged so far (the driver misbehaved). */
  errors(): SimEvent[] {
    return this.log.filter((e) => e.severity === "error");
  }

  /** The PDB BAR1 is bound to now (latched at the last bind), or null in physical mode or unbound. */
  bar1Pdb(): number | null {
    const b = this.#bar1;
    return b.mode === "physical" || b.pdb < 0 ? null : b.pdb;
  }

  #note(severity: SimEvent["severity"], kind: string, message: string): void {
    this.eventCount++;
    const log = this.#log;
    if (this.#logHead > log.length) this.#logHead = 0; // a caller holding `log` cleared it
    log.push({ severity, kind, message });
    // Past the bound the oldest only count as dropped; once as many are dropped as kept,
    // they go in one move (amortized O(1) an event, where a shift each time moves 10,000).
    if (log.length - this.#logHead > LOG_LIMIT) this.#logHead = log.length - LOG_LIMIT;
    if (this.#logHead >= LOG_LIMIT) this.#trimLog();
  }

  /** Drops the events past the bound from the log's storage (after a clear by the caller too). */
  #trimLog(): void {
    const log = this.#log;
    if (this.#logHead > log.length) this.#logHead = 0; // the caller shortened it
    if (log.length - this.#logHead > LOG_LIMIT) this.#logHead = log.length - LOG_LIMIT;
    if (this.#logHead === 0) return;
    log.copyWithin(0, this.#logHead);
    log.length -= this.#logHead;
    this.#logHead = 0;
  }

  /** What silicon does on a BAR fault in virtual mode: the GPU is gone (facts §13.3 item 7). */
  #lose(message: string): void {
    if (this.#lost !== null) return;
    this.#lost = message;
    this.#note("error", "gpu-lost", `${message}: BAR fault, the GPU is lost until reopened`);
  }

  /** The firmware-owned region [addr, addr + len) overlaps first, or undefined. */
  #ownedAt(addr: number, len: number): { start: number; end: number; name: string } | undefined {
    if (addr + len <= this.#ownedLo || addr >= this.#ownedHi) return undefined;
    return this.#owned.find((r) => addr + len > r.start && addr < r.end);
  }

  /** Logs a CPU access of firmware-owned VRAM (one event per access call). */
  #noteOwned(
    r: { name: string },
    addr: number,
    len: number,
    write: boolean,
    via: string,
  ): void {
    const what = `${via} ${write ? "write" : "read"} of VRAM ${hex(addr)}${
      len > 4 ? ` (+${hex(len)})` : ""
    } in ${r.name}, which firmware owns`;
    if (write) this.#note("error", "firmware-vram-write", `${what}: dropped`);
    else this.#note("info", "firmware-vram-read", `${what}: reads ${hex(FIRMWARE_VRAM_READ)}`);
  }

  /** A CPU write while the post-reset memory clear still runs (it may wipe it; §14.2 item 2). */
  #checkClear(addr: number, via: string): void {
    if (performance.now() >= this.#memClearDoneAt) {
      this.#clearing = false;
      return;
    }
    this.#note(
      "error",
      "write-during-memclear",
      `${via} write of VRAM ${hex(addr)} before the memory clear is over (${
        hex(this.#memClearReg)
      } reads 0): the clear may wipe it`,
    );
  }

  /**
   * The knobs: plain fields, and for the VRAM faults accessors that check a
   * new value and hand it to the VRAM (frozen copies: change them by assigning).
   */
  #makeKnobs(): SimKnobs {
    let stuck: readonly SimStuckBits[] = Object.freeze([]);
    let dead: SimDeadRegion | null = null;
    let aliases: readonly SimAlias[] = Object.freeze([]);
    const apply = () => {
      this.vram.setFaults({
        stuckBits: stuck.map((s) => ({ addr: s.addr, mask: s.mask >>> 0, value: s.value >>> 0 })),
        deadRegions: dead === null ? [] : [{
          start: dead.start,
          end: dead.start + dead.size,
          pattern: (dead.pattern ?? DEAD_VRAM_PATTERN) >>> 0,
        }],
        aliases: aliases.map((a) => ({ addr: a.addr, alias: a.alias, size: a.size ?? 4 })),
      });
    };
    const size = () => this.profile.vramSize;
    const knobs = {
      tlbHang: false,
      tlbLatencyReads: 1,
      fbFlushHang: false,
      fbFlushLatencyReads: 1,
      bindHang: false,
      bindLatencyReads: 2,
    } as SimKnobs;
    Object.defineProperties(knobs, {
      stuckBits: {
        enumerable: true,
        get: () => stuck,
        set: (v: unknown) => {
          stuck = checkStuckBits(v, size());
          apply();
        },
      },
      deadRegion: {
        enumerable: true,
        get: () => dead,
        set: (v: unknown) => {
          dead = checkDeadRegion(v, size());
          apply();
        },
      },
      aliases: {
        enumerable: true,
        get: () => aliases,
        set: (v: unknown) => {
          aliases = checkAliases(v, size());
          apply();
        },
      },
    });
    return knobs;
  }

  #makeBar0(): MmioBackend {
    const vram = this.vram;
    const posted = this.posted;
    const size = this.profile.vramSize;
    // PRAMIN: resolve a BAR0 offset to a VRAM address, DROPPED past the end of VRAM, FIRMWARE
    // in firmware-owned VRAM (logged here).
    const pramin = (offset: number, width: number, write: boolean): number => {
      const addr = this.#praminBase + (offset - NV_PRAMIN);
      if (addr + width > size) {
        this.#note(
          "error",
          "pramin-past-vram",
          `PRAMIN ${width * 8}-bit access at VRAM ${hex(addr)} is past the end of VRAM (${
            hex(size)
          })`,
        );
        return DROPPED;
      }
      if (addr + width > this.#ownedLo && addr < this.#ownedHi) {
        const r = this.#ownedAt(addr, width);
        if (r !== undefined) {
          this.#noteOwned(r, addr, width, write, "PRAMIN");
          return FIRMWARE;
        }
      }
      if (write && this.#clearing) this.#checkClear(addr, "PRAMIN");
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
    const readFill = (a: number, mask: number) =>
      ((a === FIRMWARE ? FIRMWARE_VRAM_READ : PRAMIN_FAULT) & mask) >>> 0;
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
        if (a < 0) {
          for (let i = 0; i < out.length; i++) out[i] = this.bar0.read32(offset + i * 4);
          return;
        }
        vram.readWords(a, out);
        const len = out.length * 4;
        if (this.#ownedAt(a, len) === undefined) return;
        // Word by word where firmware owns VRAM; one event for the call.
        let first: { name: string } | undefined;
        for (let i = 0; i < out.length; i++) {
          const r = this.#ownedAt(a + i * 4, 4);
          if (r === undefined) continue;
          first ??= r;
          out[i] = FIRMWARE_VRAM_READ;
        }
        this.#noteOwned(first!, a, len, false, "PRAMIN bulk");
      },
      writeWords: (offset, words) => {
        const a = bulkVram(offset, words.length);
        if (a < 0) {
          for (let i = 0; i < words.length; i++) this.bar0.write32(offset + i * 4, words[i]);
          return;
        }
        const len = words.length * 4;
        if (this.#clearing && len > 0) this.#checkClear(a, "PRAMIN bulk");
        if (this.#ownedAt(a, len) === undefined) {
          posted.touchRange(a, len);
          vram.writeWords(a, words);
          return;
        }
        let first: { name: string } | undefined;
        for (let i = 0; i < words.length; i++) {
          const addr = a + i * 4;
          const r = this.#ownedAt(addr, 4);
          if (r !== undefined) {
            first ??= r;
            continue;
          }
          posted.touch(addr);
          vram.write32(addr, words[i]);
        }
        this.#noteOwned(first!, a, len, true, "PRAMIN bulk");
      },
      read8: (offset) => {
        if (lost()) return 0xff;
        if (!inPramin(offset)) return narrowRegister(offset, 1, "read");
        const a = pramin(offset, 1, false);
        return a < 0 ? readFill(a, 0xff) : vram.read8(a);
      },
      read16: (offset) => {
        if (lost()) return 0xffff;
        if (misaligned(offset, 2)) return 0xffff;
        if (!inPramin(offset)) return narrowRegister(offset, 2, "read");
        const a = pramin(offset, 2, false);
        return a < 0 ? readFill(a, 0xffff) : vram.read16(a);
      },
      read32: (offset) => {
        if (lost()) return GPU_LOST;
        if (misaligned(offset, 4)) return 0xffffffff;
        if (inPramin(offset)) {
          const a = pramin(offset, 4, false);
          return a < 0 ? readFill(a, 0xffffffff) : vram.read32(a);
        }
        return this.#readRegister(offset);
      },
      write8: (offset, value) => {
        if (lost()) return;
        if (!inPramin(offset)) return void narrowRegister(offset, 1, "write");
        const a = pramin(offset, 1, true);
        if (a >= 0) {
          posted.touch(a);
          vram.write8(a, value);
        }
      },
      write16: (offset, value) => {
        if (lost()) return;
        if (misaligned(offset, 2)) return;
        if (!inPramin(offset)) return void narrowRegister(offset, 2, "write");
        const a = pramin(offset, 2, true);
        if (a >= 0) {
          posted.touch(a);
          vram.write16(a, value);
        }
      },
      write32: (offset, value) => {
        if (lost()) return;
        if (misaligned(offset, 4)) return;
        if (inPramin(offset)) {
          const a = pramin(offset, 4, true);
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
   * BAR1: in physical mode byte offset X is VRAM address X (TARGET VID) or
   * system memory (any other TARGET: not simulated, every access an error);
   * in virtual mode every access is translated by the MMU through the latched
   * PDB, and a fault (unmapped, read-only, nothing bound) loses the GPU.
   * ADR_LIMIT is not checked (no source says hardware does; facts §14.1).
   */
  #makeBar1(): MmioBackend {
    const vram = this.vram;
    const posted = this.posted;
    const mmu = this.mmu;
    const vramSize = this.profile.vramSize;
    // The VRAM address behind a BAR1 access, or DROPPED / FIRMWARE / SYSMEM (logged here).
    const resolve = (offset: number, width: number, write: boolean): number => {
      if (this.#lost !== null) return DROPPED;
      const b = this.#bar1;
      const op = write ? "write" : "read";
      let a: number;
      if (b.mode === "physical") {
        if (b.target !== 0) {
          this.#note(
            "error",
            "bar1-sysmem",
            `BAR1 ${width * 8}-bit ${op} at ${
              hex(offset)
            } while BAR1 is physical with TARGET ${b.target} (system memory, not simulated): dropped`,
          );
          return SYSMEM;
        }
        if (offset + width > vramSize) {
          this.#note(
            "error",
            "bar1-past-vram",
            `physical-mode BAR1 ${width * 8}-bit ${op} at ${hex(offset)} is past the end of VRAM (${
              hex(vramSize)
            })`,
          );
          return DROPPED;
        }
        a = offset;
      } else {
        if (this.#bindPendingReads > 0 || this.knobs.bindHang && this.#bindStatus !== 0) {
          this.#note(
            "error",
            "bar1-bind-pending",
            `BAR1 access at ${hex(offset)} while a BAR1 bind is still pending`,
          );
        }
        if (b.pdb < 0) {
          mmu.resolve(null, offset, op, width);
          this.#lose(`CPU ${op} of BAR1 VA ${hex(offset)} with no valid instance block bound`);
          return DROPPED;
        }
        a = mmu.resolve(b.pdb, offset, op, width);
        if (a < 0) {
          this.#lose(`CPU ${op} of BAR1 VA ${hex(offset)} faulted (${mmu.lastFault})`);
          return DROPPED;
        }
      }
      if (a + width > this.#ownedLo && a < this.#ownedHi) {
        const r = this.#ownedAt(a, width);
        if (r !== undefined) {
          this.#noteOwned(r, a, width, write, `BAR1 (${b.mode})`);
          return FIRMWARE;
        }
      }
      if (write && this.#clearing) this.#checkClear(a, "BAR1");
      return a;
    };
    const fillFor = (a: number, mask: number) =>
      ((this.#lost !== null
        ? GPU_LOST
        : a === FIRMWARE
        ? FIRMWARE_VRAM_READ
        : a === SYSMEM
        ? BAR1_SYSMEM
        : BAR1_PAST_VRAM) & mask) >>> 0;
    return {
      size: this.profile.bar1Size,
      read8: (offset) => {
        const a = resolve(offset, 1, false);
        return a < 0 ? fillFor(a, 0xff) : vram.read8(a);
      },
      read16: (offset) => {
        const a = resolve(offset, 2, false);
        return a < 0 ? fillFor(a, 0xffff) : vram.read16(a);
      },
      read32: (offset) => {
        const a = resolve(offset, 4, false);
        return a < 0 ? fillFor(a, 0xffffffff) : vram.read32(a);
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

  /** The storage offset of a register (0x1704 is the VF register under bar1alias=shared). */
  #alias(offset: number): number {
    return offset === NV_PBUS_BAR1_BLOCK && this.profile.mmuVersion === 2 &&
        this.conflicts.bar1alias === "shared"
      ? NV_VIRTUAL_FUNCTION_PRIV_BAR1_BLOCK
      : offset;
  }

  #readRegister(offset: number): number {
    if (offset === this.#gfw.progress || offset === this.#gfw.plm) return this.#readGfw(offset);
    const v = this.#regs.get(this.#alias(offset));
    if (v === undefined) {
      const h = this.#headers?.(offset) ?? null;
      if (h !== null) return this.#unmodeled(offset, h, "read") ?? 0;
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
        this.#fbFlushDone("NV_UFLUSH_FB_FLUSH");
        return 0;
      }
      case NV_XAL_EP_ZB_UFLUSH_FB_FLUSH: {
        // R--4R: the read injects a flush and returns its start token (facts §14.1).
        this.#xalIssued = (this.#xalIssued + 1) & XAL_TOKEN_MASK;
        this.#xalPendingReads = Math.max(0, this.knobs.fbFlushLatencyReads);
        this.#note(
          "info",
          "fb-flush-start",
          `FB flush injected by a read of NV_XAL_EP_ZB_UFLUSH_FB_FLUSH: token ${
            hex(this.#xalIssued)
          }`,
        );
        return this.#xalIssued;
      }
      case NV_XAL_EP_ZB_UFLUSH_FB_FLUSH_COMPLETED: {
        if (this.#xalPendingReads < 0) return this.#xalCompleted;
        const busy = (setField(0, XAL_FB_FLUSH.STATUS, 1) | this.#xalCompleted) >>> 0;
        if (this.knobs.fbFlushHang) return busy;
        if (this.#xalPendingReads > 0) {
          this.#xalPendingReads--;
          return busy;
        }
        this.#xalPendingReads = -1;
        this.#xalCompleted = this.#xalIssued;
        this.#fbFlushDone(`NV_XAL_EP_ZB_UFLUSH_FB_FLUSH token ${hex(this.#xalCompleted)}`);
        return this.#xalCompleted;
      }
      case NV_VIRTUAL_FUNCTION_PRIV_BIND_STATUS:
        return this.#bindStatusRead();
      case NV_VIRTUAL_FUNCTION_PRIV_FUNC_BAR1_BLOCK_LOW_ADDR:
        return ((v & ~3) | this.#bindStatusRead()) >>> 0;
      case this.#memClearReg:
        return this.memClearDone ? 1 : 0;
    }
    return v;
  }

  /** An FB flush completed: what was posted is visible to the GPU now. */
  #fbFlushDone(via: string): void {
    this.posted.drain();
    this.fbFlushes++;
    this.#note("info", "fb-flush", `FB flush (${via}) completed: posted writes visible to the GPU`);
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

  /** A register the headers define and the simulator does not model: reset value, reported once. */
  #unmodeled(
    offset: number,
    h: { name: string; reset: number | null },
    what: string,
  ): number | null {
    if (!this.#unmodeledSeen.has(offset)) {
      this.#unmodeledSeen.add(offset);
      this.#note(
        "info",
        "unmodeled",
        `${what} of ${h.name} (${
          hex(offset)
        }): defined in NVIDIA's headers, not modelled; reads its reset value ${
          hex(h.reset ?? 0, 8)
        }, writes change nothing`,
      );
    }
    return h.reset;
  }

  #writeRegister(offset: number, value: number): void {
    const key = this.#alias(offset);
    if (!this.#regs.has(key)) {
      const h = this.#headers?.(offset) ?? null;
      if (h !== null) {
        this.#unmodeled(offset, h, `write of ${hex(value)}`);
        return;
      }
      this.#note(
        "error",
        "unknown-register",
        `write of ${hex(value)} to unknown register ${hex(offset)}`,
      );
      return;
    }
    switch (offset) {
      case NV_PMC_BOOT_0:
      case NV_PMC_BOOT_42:
      case NV_USABLE_FB_SIZE_IN_MB:
      case NV_PFB_PRI_MMU_LOCAL_MEMORY_RANGE:
      case NV_PDISP_VGA_WORKSPACE_BASE:
      case NV_PFB_PRI_MMU_WPR2_ADDR_LO:
      case NV_PFB_PRI_MMU_WPR2_ADDR_HI:
      case NV_HUBMMU_PRI_MMU_WPR2_ADDR_LO:
      case NV_HUBMMU_PRI_MMU_WPR2_ADDR_HI:
      case NV_PFB_PRI_MMU_LOCK_CFG_PRIV_LEVEL_MASK:
      case NV_PFB_PRI_MMU_LOCK_ADDR_LO:
      case NV_PFB_PRI_MMU_LOCK_ADDR_HI:
      case NV_VIRTUAL_FUNCTION_PRIV_BIND_STATUS:
      case NV_FUSE_STATUS_OPT_DISPLAY_TU102:
      case NV_FUSE_STATUS_OPT_DISPLAY_GA100:
      case NV_XAL_EP_ZB_UFLUSH_FB_FLUSH:
      case NV_XAL_EP_ZB_UFLUSH_FB_FLUSH_COMPLETED:
      case this.#memClearReg:
      case this.#gfw.progress:
      case this.#gfw.plm:
        // Firmware-owned, level-protected or read-only (R--4R): a CPU write does not land.
        this.#note("error", "read-only-register", `write of read-only register ${hex(offset)}`);
        return;
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
      case NV_PBUS_BAR1_BLOCK:
      case NV_VIRTUAL_FUNCTION_PRIV_BAR1_BLOCK: {
        this.#regs.set(key, value >>> 0);
        if (this.conflicts.bar1alias === "shared") {
          // One register at two offsets: the write binds with its value.
          this.#bind(
            getField(value, BAR1_BLOCK.MODE),
            getField(value, BAR1_BLOCK.TARGET),
            getField(value, BAR1_BLOCK.PTR) * 4096,
            hex(offset),
          );
          return;
        }
        // Two registers: virtual if either says so (the VF one wins), physical only when both do.
        const vf = this.#regs.get(NV_VIRTUAL_FUNCTION_PRIV_BAR1_BLOCK)!;
        const pbus = this.#regs.get(NV_PBUS_BAR1_BLOCK)!;
        const [eff, name] = getField(vf, BAR1_BLOCK.MODE)
          ? [vf, hex(NV_VIRTUAL_FUNCTION_PRIV_BAR1_BLOCK)]
          : getField(pbus, BAR1_BLOCK.MODE)
          ? [pbus, hex(NV_PBUS_BAR1_BLOCK)]
          : [getField(vf, BAR1_BLOCK.TARGET) !== 0 ? vf : pbus, "0x1704 + 0xb80f40"];
        this.#bind(
          getField(eff, BAR1_BLOCK.MODE),
          getField(eff, BAR1_BLOCK.TARGET),
          getField(eff, BAR1_BLOCK.PTR) * 4096,
          `${hex(offset)} (in effect: ${name})`,
        );
        return;
      }
      case NV_VIRTUAL_FUNCTION_PRIV_FUNC_BAR1_BLOCK_LOW_ADDR: {
        // PENDING and OUTSTANDING are read-only status.
        if (value & 3) {
          this.#note(
            "error",
            "read-only-field",
            `BAR1_BLOCK_LOW_ADDR write ${hex(value)} sets the read-only PENDING/OUTSTANDING bits`,
          );
        }
        const low = (value & ~3) >>> 0;
        this.#regs.set(offset, low);
        // lowbind=immediate: MODE physical takes effect at once; otherwise LOW only stores.
        if (this.conflicts.lowbind === "immediate" && getField(low, BAR1_BLOCK_LOW.MODE) === 0) {
          this.#bind(0, getField(low, BAR1_BLOCK_LOW.TARGET), 0, hex(offset));
          this.#lowSwitch = true;
        } else {
          this.#lowSwitch = false;
        }
        return;
      }
      case NV_VIRTUAL_FUNCTION_PRIV_FUNC_BAR1_BLOCK_HIGH_ADDR: {
        // The HIGH write starts the bind with LOW's MODE/TARGET/PTR (facts §13.3 item 4).
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

  /** A BAR1 bind: physical (by TARGET), or fetch the instance block (as the GPU sees VRAM). */
  #bind(mode: number, target: number, inst: number, via: string): void {
    // The HIGH write right after an immediate LOW switch to physical repeats that switch
    // (facts §14.1: "to go physical write LOW then HIGH, then poll"): not an overlap.
    const repeat = this.#lowSwitch && mode === 0;
    this.#lowSwitch = false;
    if (
      !repeat && this.#bindStatus !== 0 && (this.knobs.bindHang || this.#bindPendingReads > 0)
    ) {
      this.#note("error", "bind-overlap", `BAR1 bind through ${via} while one is still pending`);
    }
    this.#bindStatus = 3; // PENDING | OUTSTANDING
    this.#bindPendingReads = this.knobs.bindLatencyReads;
    this.mmu.invalidate("all");
    if (mode === 0) {
      this.#bar1 = target === 0 ? PHYSICAL_VID : { mode: "physical", target };
      this.#note(
        "info",
        "bar1-bind",
        `BAR1 set to physical mode through ${via}${
          target === 0 ? "" : ` with TARGET ${target}: system memory, BAR1 accesses not simulated`
        }`,
      );
      return;
    }
    if (target !== 0) {
      this.#note(
        "error",
        "bar1-bind",
        `BAR1 bind through ${via} with instance-block TARGET ${target}: only VID_MEM is simulated; virtual with nothing valid bound`,
      );
      this.#bar1 = { mode: "virtual", pdb: -1 };
      return;
    }
    const pdb = this.#fetchBinding(inst);
    this.#bar1 = { mode: "virtual", pdb };
    this.#note(
      "info",
      "bar1-bind",
      `BAR1 bound through ${via} to instance block ${hex(inst)}: ${
        pdb < 0 ? "no valid PDB" : `PDB ${hex(pdb)}`
      }`,
    );
  }

  /**
   * Reads an instance block through the GPU's view of VRAM (unflushed writes
   * unseen) and returns its PDB, or -1 when it is not a valid BAR instance
   * block (logged as `bad-instance-block`).
   */
  #fetchBinding(inst: number): number {
    if (inst + 4096 > this.profile.vramSize) {
      this.#note("error", "bar1-bind", `instance block ${hex(inst)} is past the end of VRAM`);
      return -1;
    }
    const read = (off: number) => this.posted.read32(inst + off) >>> 0;
    const word = read(NV_RAMIN_PAGE_DIR_BASE_LO);
    const wordHi = read(NV_RAMIN_PAGE_DIR_BASE_HI);
    const pdb = getField(word, RAMIN_PDB.LO) * 4096 + wordHi * 2 ** 32;
    const problems: string[] = [];
    if (getField(word, RAMIN_PDB.TARGET) !== 0) {
      problems.push(`PDB TARGET ${getField(word, RAMIN_PDB.TARGET)} is not VID_MEM`);
    }
    const ver2 = getField(word, RAMIN_PDB.USE_VER2_PT_FORMAT);
    if (this.profile.mmuVersion === 2 && ver2 !== 1) {
      problems.push("USE_VER2_PT_FORMAT (bit 10) clear: MMU v2 requires the new format");
    } else if (this.profile.mmuVersion === 3 && this.conflicts.v3bit10 === "rm" && ver2 !== 0) {
      problems.push("USE_VER2_PT_FORMAT (bit 10) set: v3bit10=rm accepts only RM's 0 on MMU v3");
    }
    if (getField(word, RAMIN_PDB.BIG_PAGE_SIZE) !== 1) problems.push("128 KiB big pages");
    if (pdb + 4096 > this.profile.vramSize) problems.push(`PDB ${hex(pdb)} past VRAM`);
    const ats = read(NV_RAMIN_ENABLE_ATS);
    if (getField(ats, RAMIN_ATS.ENABLE_ATS) !== 0) {
      problems.push(`ENABLE_ATS set in word 135 (${hex(ats)}) for a BAR address space`);
    }
    // Subcontexts whose valid bit is set must hold a copy of the PDB words.
    const masks = [read(NV_RAMIN_SC_PDB_VALID), read(NV_RAMIN_SC_PDB_VALID + 4)];
    const bad: string[] = [];
    let badCount = 0;
    for (let i = 0; i < RAMIN_SUBCONTEXTS; i++) {
      if (((masks[i >>> 5] >>> (i & 31)) & 1) === 0) continue;
      const at = NV_RAMIN_SC_PAGE_DIR_BASE + i * 0x10;
      const lo = read(at);
      const hi = read(at + 4);
      if (lo === word && hi === wordHi) continue;
      badCount++;
      if (bad.length < 3) bad.push(`${i} (${hex(hi, 8)}_${hex(lo, 8).slice(2)})`);
    }
    if (badCount > 0) {
      problems.push(
        `valid mask ${hex(masks[1], 8)}_${hex(masks[0], 8).slice(2)} marks ${badCount} subcontext${
          badCount === 1 ? "" : "s"
        } whose PDB copy differs from the PDB word ${hex(wordHi, 8)}_${hex(word, 8).slice(2)}: ${
          bad.join(", ")
        }${badCount > bad.length ? ", ..." : ""}`,
      );
    }
    if (problems.length > 0) {
      this.#note(
        "error",
        "bad-instance-block",
        `instance block ${hex(inst)} (as the GPU sees VRAM): ${problems.join("; ")}`,
      );
      return -1;
    }
    return pdb;
  }

  #flush(value: number): void {
    const pdbReg = this.#regs.get(NV_VIRTUAL_FUNCTION_PRIV_MMU_INVALIDATE_PDB)!;
    const upper = this.#regs.get(NV_VIRTUAL_FUNCTION_PRIV_MMU_INVALIDATE_UPPER_PDB)!;
    const all = getField(value, MMU_INVALIDATE.ALL_PDB) === 1;
    const pdb = getField(pdbReg, MMU_INVALIDATE_PDB.ADDR) * 4096 +
      getField(upper, MMU_INVALIDATE_UPPER_PDB.ADDR) * 2 ** 40;
    const aperture = getField(pdbReg, MMU_INVALIDATE_PDB.APERTURE);
    // RM sets SYS_MEMBAR and ACK_GLOBALLY only together (facts §14.1).
    const membar = getField(value, MMU_INVALIDATE.SYS_MEMBAR) === 1;
    const ackGlobally = getField(value, MMU_INVALIDATE.ACK) === MMU_INVALIDATE_ACK_GLOBALLY;
    if (membar !== ackGlobally) {
      this.#note(
        "error",
        "tlb-membar-ack",
        `TLB invalidate ${hex(value)} sets ${
          membar ? "SYS_MEMBAR without ACK_GLOBALLY" : "ACK_GLOBALLY without SYS_MEMBAR"
        }: RM sets them only together`,
      );
    }
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

/**
 * What never-written VRAM of a card in `state` reads (facts §14.2 item 5):
 * the unscrubbed pattern, with GH100's top 256 MiB scrubbed by firmware; on
 * an `unloaded` card the previous driver's data everywhere.
 */
function backgroundOf(profile: SimProfile, state: SimCardState): VramBackground {
  if (state === "unloaded") return { seed: VRAM_SEEDS.previousDriver };
  if (profile.architecture === "Hopper") {
    return {
      seed: VRAM_SEEDS.unscrubbed,
      scrubbed: { start: profile.vramSize - GH100_SCRUBBED_TOP, end: profile.vramSize },
    };
  }
  return { seed: VRAM_SEEDS.unscrubbed };
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
 * Builds a simulated GPU. Unknown profiles, unknown states, `vga` on a chip
 * without display, and knobs that are unknown or belong to the other MMU
 * version fail with ENODEV.
 *
 * @example
 * ```ts
 * const sim = createSimGpu({ profile: "gh100", state: "bare", conflicts: { lowbind: "high" } });
 * sim.bar1Mode;  // "physical"
 * sim.spec;      // "sim:gh100?lowbind=high"
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
  return new SimGpu(
    profile,
    options.state ?? DEFAULT_SIM_STATE,
    options.conflicts ?? {},
    options.headers,
  );
}

/** A word-aligned VRAM range of a fault knob, or EINVAL naming the knob. */
function checkFaultRange(start: unknown, size: unknown, vramSize: number, what: string): void {
  if (typeof start !== "number" || !Number.isSafeInteger(start) || start < 0 || start % 4 !== 0) {
    fail("EINVAL", `${what} address ${describeValue(start)} is not a multiple of 4`);
  }
  if (typeof size !== "number" || !Number.isSafeInteger(size) || size <= 0 || size % 4 !== 0) {
    fail("EINVAL", `${what} size ${describeValue(size)} is not a positive multiple of 4`);
  }
  if (start + size > vramSize) {
    fail(
      "EINVAL",
      `${what} ${hex(start)} +${hex(size)} is past the end of VRAM (${hex(vramSize)})`,
    );
  }
}

function describeValue(v: unknown): string {
  return typeof v === "number" ? hex(v) : typeof v === "string" ? JSON.stringify(v) : String(v);
}

function checkWord(v: unknown, what: string): number {
  if (typeof v !== "number" || !Number.isInteger(v) || v < 0 || v > 0xffffffff) {
    fail("EINVAL", `${what} ${describeValue(v)} is not a 32-bit unsigned integer`);
  }
  return v;
}

function checkKeys(v: unknown, keys: string[], what: string): Record<string, unknown> {
  if (v === null || typeof v !== "object" || Array.isArray(v)) {
    fail("EINVAL", `${what} must be an object with ${keys.join(", ")}, not ${describeValue(v)}`);
  }
  for (const k of Object.keys(v)) {
    if (!keys.includes(k)) {
      fail("EINVAL", `unknown key ${JSON.stringify(k)} in ${what}; known: ${keys.join(", ")}`);
    }
  }
  return v as Record<string, unknown>;
}

function checkList(v: unknown, what: string): readonly unknown[] {
  if (!Array.isArray(v)) {
    fail("EINVAL", `sim.knobs.${what} must be an array, not ${describeValue(v)}`);
  }
  return v;
}

/** Checks {@linkcode SimKnobs.stuckBits} and returns a frozen copy. */
function checkStuckBits(v: unknown, vramSize: number): readonly SimStuckBits[] {
  return Object.freeze(
    checkList(v, "stuckBits").map((e, i) => {
      const what = `sim.knobs.stuckBits[${i}]`;
      const o = checkKeys(e, ["addr", "mask", "value"], what);
      checkFaultRange(o.addr, 4, vramSize, what);
      const mask = checkWord(o.mask, `${what}.mask`);
      const value = checkWord(o.value, `${what}.value`);
      return Object.freeze({ addr: o.addr as number, mask, value });
    }),
  );
}

/** Checks {@linkcode SimKnobs.deadRegion} and returns a frozen copy. */
function checkDeadRegion(v: unknown, vramSize: number): SimDeadRegion | null {
  if (v === null) return null;
  const o = checkKeys(v, ["start", "size", "pattern"], "sim.knobs.deadRegion");
  checkFaultRange(o.start, o.size, vramSize, "sim.knobs.deadRegion");
  const pattern = o.pattern === undefined
    ? DEAD_VRAM_PATTERN
    : checkWord(o.pattern, "sim.knobs.deadRegion.pattern");
  return Object.freeze({ start: o.start as number, size: o.size as number, pattern });
}

/** Checks {@linkcode SimKnobs.aliases} and returns a frozen copy. */
function checkAliases(v: unknown, vramSize: number): readonly SimAlias[] {
  return Object.freeze(
    checkList(v, "aliases").map((e, i) => {
      const what = `sim.knobs.aliases[${i}]`;
      const o = checkKeys(e, ["addr", "alias", "size"], what);
      const size = o.size ?? 4;
      checkFaultRange(o.addr, size, vramSize, what);
      checkFaultRange(o.alias, size, vramSize, `${what} alias`);
      const [a, b, n] = [o.addr as number, o.alias as number, size as number];
      if (a < b + n && b < a + n) {
        fail("EINVAL", `${what}: ${hex(a)} and its alias ${hex(b)} overlap (+${hex(n)})`);
      }
      return Object.freeze({ addr: a, alias: b, size: n });
    }),
  );
}
