/**
 * Register offsets (BAR0) and field helpers, named as in NVIDIA's headers.
 * Sources are in `shared/spec/nova-mm-facts.md`; each block names its own.
 *
 * @module
 */

import { fail, hex } from "./errors.ts";

/** A bit field `hi:lo` of a 32-bit register. */
export interface Field {
  /** Highest bit (inclusive). */
  readonly hi: number;
  /** Lowest bit. */
  readonly lo: number;
}

/** Makes a field description. */
export function field(hi: number, lo: number): Field {
  return { hi, lo };
}

function mask(f: Field): number {
  const bits = f.hi - f.lo + 1;
  return bits >= 32 ? 0xffffffff : (2 ** bits - 1);
}

/** Extracts `f` from a 32-bit register value. */
export function getField(reg: number, f: Field): number {
  return Math.floor((reg >>> 0) / 2 ** f.lo) % (mask(f) + 1);
}

/** Returns `reg` with field `f` replaced by `value` (which must fit). */
export function setField(reg: number, f: Field, value: number): number {
  const m = mask(f);
  if (!Number.isInteger(value) || value < 0 || value > m) {
    throw new RangeError(`value ${value} does not fit field ${f.hi}:${f.lo}`);
  }
  const cleared = (reg >>> 0) - getField(reg, f) * 2 ** f.lo;
  return (cleared + value * 2 ** f.lo) >>> 0;
}

// --- chip identification (OGKM nv_ref.h) -------------------------------------

/** NV_PMC_BOOT_0. */
export const NV_PMC_BOOT_0 = 0x000000;
/** NV_PMC_BOOT_42. */
export const NV_PMC_BOOT_42 = 0x000a00;
/** BOOT_0 fields. */
export const BOOT_0 = {
  MINOR_REVISION: field(3, 0),
  MAJOR_REVISION: field(7, 4),
  ARCHITECTURE_1: field(8, 8),
  IMPLEMENTATION: field(23, 20),
  ARCHITECTURE_0: field(28, 24),
} as const;
/** BOOT_42 fields. */
export const BOOT_42 = {
  MINOR_EXTENDED_REVISION: field(11, 8),
  MINOR_REVISION: field(15, 12),
  MAJOR_REVISION: field(19, 16),
  IMPLEMENTATION: field(23, 20),
  ARCHITECTURE: field(29, 24),
  CHIP_ID: field(29, 20),
} as const;

// --- PRAMIN (OGKM dev_ram.h, dev_bus.h, dev_nv_xal_ep_zb.h) -------------------

/** NV_PRAMIN: the 1 MiB VRAM aperture inside BAR0. */
export const NV_PRAMIN = 0x700000;
/** Size of the PRAMIN aperture. */
export const PRAMIN_SIZE = 0x100000;
/** The window base is in 64 KiB units (BASE_SHIFT 16). */
export const PRAMIN_BASE_SHIFT = 16;
/** NV_PBUS_BAR0_WINDOW (Turing, Ampere, Ada). */
export const NV_PBUS_BAR0_WINDOW = 0x001700;
/** NV_PBUS_BAR0_WINDOW fields; TARGET 0 = VID_MEM, 2 = SYS_MEM_COHERENT, 3 = SYS_MEM_NONCOHERENT. */
export const BAR0_WINDOW = {
  BASE: field(23, 0),
  TARGET: field(25, 24),
} as const;
/** TARGET value for video memory. */
export const BAR0_WINDOW_TARGET_VID_MEM = 0;
/** NV_XAL_EP_BAR0_WINDOW (Hopper and later; XAL base 0x10F000 + 0xD40). No TARGET field. */
export const NV_XAL_EP_BAR0_WINDOW = 0x10fd40;
/** XAL BAR0_WINDOW BASE on GH100 (bits 21:0, 256 GiB reach). */
export const XAL_BAR0_WINDOW_BASE_GH100 = field(21, 0);
/** XAL BAR0_WINDOW BASE on GB10x/GB20x (bits 22:0, 512 GiB reach). */
export const XAL_BAR0_WINDOW_BASE_GB100 = field(22, 0);

// --- VRAM size (Gnurou regs.rs / fb/hal) --------------------------------------

/** NV_PFB_PRI_MMU_LOCAL_MEMORY_RANGE (Turing): size = (mag << scale) MiB, ×15/16 with ECC. */
export const NV_PFB_PRI_MMU_LOCAL_MEMORY_RANGE = 0x100ce0;
/** LOCAL_MEMORY_RANGE fields. */
export const LOCAL_MEMORY_RANGE = {
  LOWER_SCALE: field(3, 0),
  LOWER_MAG: field(9, 4),
  ECC_MODE: field(30, 30),
} as const;
/** NV_PGC6_AON_SECURE_SCRATCH_GROUP_42 = NV_USABLE_FB_SIZE_IN_MB (GA102 and later). */
export const NV_USABLE_FB_SIZE_IN_MB = 0x1183a4;

// --- TLB invalidate (OGKM tu102/gb100 dev_vm.h; PF mirror at 0xB80000) -------

/** NV_VIRTUAL_FUNCTION_PRIV_MMU_INVALIDATE_PDB. */
export const NV_VIRTUAL_FUNCTION_PRIV_MMU_INVALIDATE_PDB = 0xb830a0;
/** NV_VIRTUAL_FUNCTION_PRIV_MMU_INVALIDATE_UPPER_PDB. */
export const NV_VIRTUAL_FUNCTION_PRIV_MMU_INVALIDATE_UPPER_PDB = 0xb830a4;
/** NV_VIRTUAL_FUNCTION_PRIV_MMU_INVALIDATE. */
export const NV_VIRTUAL_FUNCTION_PRIV_MMU_INVALIDATE = 0xb830b0;
/** INVALIDATE_PDB fields: APERTURE 0 = VID_MEM, 1 = SYS_MEM; ADDR = PDB >> 12. */
export const MMU_INVALIDATE_PDB = {
  APERTURE: field(1, 1),
  ADDR: field(31, 4),
} as const;
/** INVALIDATE_UPPER_PDB: ADDR = PDB >> 40. */
export const MMU_INVALIDATE_UPPER_PDB = { ADDR: field(19, 0) } as const;
/** INVALIDATE fields. */
export const MMU_INVALIDATE = {
  ALL_VA: field(0, 0),
  ALL_PDB: field(1, 1),
  HUBTLB_ONLY: field(2, 2),
  REPLAY: field(5, 3),
  SYS_MEMBAR: field(6, 6),
  ACK: field(8, 7),
  INVAL_SCOPE: field(16, 15),
  CACHE_LEVEL: field(26, 24),
  TRIGGER: field(31, 31),
} as const;
/** INVAL_SCOPE NON_LINK_TLBS (GA100 and later; RM `kgmmuSetTlbInvalidationScope_GA100`). */
export const MMU_INVALIDATE_SCOPE_NON_LINK_TLBS = 2;
/** ACK value GLOBALLY. */
export const MMU_INVALIDATE_ACK_GLOBALLY = 1;

// --- BAR1 instance block pointer (OGKM dev_bus.h, hopper dev_vm.h) -----------

/** NV_PBUS_BAR1_BLOCK (Turing, Ampere, Ada). */
export const NV_PBUS_BAR1_BLOCK = 0x001704;
/** BAR1_BLOCK fields: PTR = instance block >> 12; TARGET 0 VID; MODE 1 = virtual. */
export const BAR1_BLOCK = {
  PTR: field(27, 0),
  TARGET: field(29, 28),
  MODE: field(31, 31),
} as const;
/** NV_VIRTUAL_FUNCTION_PRIV_FUNC_BAR1_BLOCK_LOW_ADDR (Hopper and later, PF mirror). */
export const NV_VIRTUAL_FUNCTION_PRIV_FUNC_BAR1_BLOCK_LOW_ADDR = 0xb80f60;
/** NV_VIRTUAL_FUNCTION_PRIV_FUNC_BAR1_BLOCK_HIGH_ADDR (instance block bits 63:32). */
export const NV_VIRTUAL_FUNCTION_PRIV_FUNC_BAR1_BLOCK_HIGH_ADDR = 0xb80f64;
/** BAR1_BLOCK_LOW_ADDR fields: PTR = instance block bits 31:12 in place. */
export const BAR1_BLOCK_LOW = {
  PENDING: field(0, 0),
  OUTSTANDING: field(1, 1),
  MODE: field(9, 9),
  TARGET: field(11, 10),
  PTR: field(31, 12),
} as const;

// --- instance block (OGD tu104 dev_ram.ref.txt; OGKM gp100 dev_ram.h) ---------

/** Byte offset of the page-directory word in an instance block (NV_RAMIN_PAGE_DIR_BASE). */
export const NV_RAMIN_PAGE_DIR_BASE_LO = 0x200;
/** Byte offset of PAGE_DIR_BASE_HI (bits 63:32 of the PDB address). */
export const NV_RAMIN_PAGE_DIR_BASE_HI = 0x204;
/** Fields of the PAGE_DIR_BASE_LO word. TARGET: 0 VID, 1 INVALID, 2 SYS_COH, 3 SYS_NONCOH. */
export const RAMIN_PDB = {
  TARGET: field(1, 0),
  VOL: field(2, 2),
  FAULT_REPLAY_TEX: field(4, 4),
  FAULT_REPLAY_GCC: field(5, 5),
  USE_VER2_PT_FORMAT: field(10, 10),
  BIG_PAGE_SIZE: field(11, 11),
  LO: field(31, 12),
} as const;

// --- PRI errors (OGKM g_gpu_nvoc.h / gpu_access.c; facts §13.1) --------------

/**
 * True when a read value is a PRI error: `(v & 0xFFF00000) == 0xBAD00000`, as
 * NVIDIA's RM tests it (facts §13.1; the 0xBADFxxxx codes are a subset).
 */
export function isPriError(value: number): boolean {
  return (value >>> 20) === 0xbad; // unsigned: `&` would give a negative int32
}

/**
 * True when a read returned all ones. That is only *suspicious*: a register may
 * legitimately read all ones; the GPU is lost only when NV_PMC_BOOT_0 reads all
 * ones too (RM `gpu_access.c`; facts §14.1) — see {@linkcode gpuLost}.
 */
export function isGpuGone(value: number): boolean {
  return value >>> 0 === 0xffffffff;
}

/** Re-reads NV_PMC_BOOT_0: true when it reads all ones (the GPU fell off the bus or was lost). */
export function gpuLost(bar0: { read32(offset: number): number }): boolean {
  return isGpuGone(bar0.read32(NV_PMC_BOOT_0));
}

/**
 * True when `value`, read from `offset`, says the GPU is lost: all ones, and
 * (unless it was BOOT_0 itself) BOOT_0 re-read as all ones too. The one place
 * the rule of facts §14.1 is written.
 */
export function lostAt(
  bar0: { read32(offset: number): number },
  offset: number,
  value: number,
): boolean {
  return isGpuGone(value) && (offset === NV_PMC_BOOT_0 || gpuLost(bar0));
}

/**
 * One 32-bit read of `offset`; an all-ones value is re-checked through BOOT_0
 * and throws ENODEV when the GPU is lost (else it is the register's value).
 * PRI errors are returned: the caller decides what they mean there.
 */
export function readChecked(bar0: { read32(offset: number): number }, offset: number): number {
  const v = bar0.read32(offset);
  if (lostAt(bar0, offset, v)) {
    fail(
      "ENODEV",
      `register ${
        hex(offset)
      } and NV_PMC_BOOT_0 read 0xffffffff: the GPU is gone (fell off the bus, in reset, or lost after a BAR fault)`,
      "reopen the device; on a card, check dmesg and `lspci -vs` for the function",
    );
  }
  return v;
}

/**
 * One 32-bit read of `offset`; null when it reads as a PRI error, or all ones
 * while BOOT_0 also reads all ones (no value there). All ones with a live
 * BOOT_0 is the register's value.
 */
export function readValid(bar0: { read32(offset: number): number }, offset: number): number | null {
  const v = bar0.read32(offset);
  if (isPriError(v)) return null;
  if (lostAt(bar0, offset, v)) return null;
  return v;
}

// --- GFW boot (devinit) status (nova-core gfw.rs, regs.rs; facts §13.2) ------

/** NV_PGC6_AON_SECURE_SCRATCH_GROUP_05_PRIV_LEVEL_MASK (Turing, Ampere, Ada). */
export const NV_PGC6_AON_SECURE_SCRATCH_GROUP_05_PRIV_LEVEL_MASK = 0x118128;
/** Its READ_PROTECTION_LEVEL0 bit: set once the boot-progress scratch may be read. */
export const SCRATCH_GROUP_05_PLM = { READ_PROTECTION_LEVEL0: field(0, 0) } as const;
/** NV_PGC6_AON_SECURE_SCRATCH_GROUP_05_0_GFW_BOOT (Turing, Ampere, Ada): PROGRESS 7:0. */
export const NV_PGC6_AON_SECURE_SCRATCH_GROUP_05_0_GFW_BOOT = 0x118234;
/** GFW_BOOT fields. */
export const GFW_BOOT = { PROGRESS: field(7, 0) } as const;
/** PROGRESS value when devinit has completed. */
export const GFW_BOOT_PROGRESS_COMPLETED = 0xff;
/** NV_THERM_I2CS_SCRATCH_FSP_BOOT_COMPLETE (GH100, GB100, GB102): 0xFF when done. */
export const NV_THERM_I2CS_SCRATCH_FSP_BOOT_COMPLETE = 0x0200bc;
/** The same register on GB20x. */
export const NV_THERM_I2CS_SCRATCH_FSP_BOOT_COMPLETE_GB20X = 0xad00bc;
/** FSP_BOOT_COMPLETE value when boot has completed. */
export const FSP_BOOT_COMPLETE_SUCCESS = 0xff;

/** How one chip reports that GFW boot finished. */
export interface GfwBootRegisters {
  /** Register that must show `plmField` set before `progress` may be read; null from Hopper on. */
  plm: number | null;
  /** The progress / boot-complete register. */
  progress: number;
  /** Its name, for messages. */
  name: string;
  /** Bits compared with 0xFF. */
  field: Field;
}

/** The GFW-boot status registers of a chip (by BOOT_42 chip id; facts §13.2 item 1). */
export function gfwBootRegisters(chipId: number): GfwBootRegisters {
  const arch = chipId >> 4;
  if (arch === 0x16 || arch === 0x17 || arch === 0x19) {
    return {
      plm: NV_PGC6_AON_SECURE_SCRATCH_GROUP_05_PRIV_LEVEL_MASK,
      progress: NV_PGC6_AON_SECURE_SCRATCH_GROUP_05_0_GFW_BOOT,
      name: "NV_PGC6_AON_SECURE_SCRATCH_GROUP_05_0_GFW_BOOT",
      field: GFW_BOOT.PROGRESS,
    };
  }
  return {
    plm: null,
    progress: arch === 0x1b
      ? NV_THERM_I2CS_SCRATCH_FSP_BOOT_COMPLETE_GB20X
      : NV_THERM_I2CS_SCRATCH_FSP_BOOT_COMPLETE,
    name: "NV_THERM_I2CS_SCRATCH_FSP_BOOT_COMPLETE",
    field: field(31, 0),
  };
}

// --- firmware-owned VRAM (nova-core fb.rs, OGKM dev_fb.h, mem_mgr_ga100.c) ---

/** NV_PDISP_VGA_WORKSPACE_BASE: STATUS_VALID bit 3, ADDR 31:8 = VRAM address >> 16. */
export const NV_PDISP_VGA_WORKSPACE_BASE = 0x625f04;
/** VGA_WORKSPACE_BASE fields. */
export const VGA_WORKSPACE_BASE = { STATUS_VALID: field(3, 3), ADDR: field(31, 8) } as const;
/** NV_PFB_PRI_MMU_WPR2_ADDR_LO: VAL 31:4 = address >> 12. */
export const NV_PFB_PRI_MMU_WPR2_ADDR_LO = 0x1fa824;
/** NV_PFB_PRI_MMU_WPR2_ADDR_HI: VAL 31:4 = address >> 12 (non-zero while WPR2 is up). */
export const NV_PFB_PRI_MMU_WPR2_ADDR_HI = 0x1fa828;
/** NV_PFB_PRI_MMU_LOCK_CFG_PRIV_LEVEL_MASK: READ_PROTECTION_LEVEL0 bit 0 must be set to read the lock. */
export const NV_PFB_PRI_MMU_LOCK_CFG_PRIV_LEVEL_MASK = 0x1fa7c8;
/** NV_PFB_PRI_MMU_LOCK_ADDR_LO (GA100 and later): VAL 31:4 = address >> 12. */
export const NV_PFB_PRI_MMU_LOCK_ADDR_LO = 0x1fa82c;
/** NV_PFB_PRI_MMU_LOCK_ADDR_HI: VAL 31:4 = address >> 12; valid when HI >= LO. */
export const NV_PFB_PRI_MMU_LOCK_ADDR_HI = 0x1fa830;
/** The VAL field shared by the WPR2 and MMU lock address registers (ALIGNMENT 12). */
export const ADDR_VAL_4K = { VAL: field(31, 4) } as const;

// --- BAR1 binding and the FB flush (OGKM tu102 dev_vm.h, dev_bus.h; facts §13.3)

/** NV_VIRTUAL_FUNCTION_PRIV_BAR1_BLOCK (Turing, Ampere, Ada): the live BAR1 bind (BAR1_BLOCK fields). */
export const NV_VIRTUAL_FUNCTION_PRIV_BAR1_BLOCK = 0xb80f40;
/** NV_VIRTUAL_FUNCTION_PRIV_BIND_STATUS: BAR1 PENDING 0, OUTSTANDING 1 (BAR2: 2, 3). */
export const NV_VIRTUAL_FUNCTION_PRIV_BIND_STATUS = 0xb80f50;
/** NV_PBUS_BIND_STATUS: the legacy status register beside NV_PBUS_BAR1_BLOCK. */
export const NV_PBUS_BIND_STATUS = 0x001710;
/** BIND_STATUS fields. */
export const BIND_STATUS = {
  BAR1_PENDING: field(0, 0),
  BAR1_OUTSTANDING: field(1, 1),
  BAR2_PENDING: field(2, 2),
  BAR2_OUTSTANDING: field(3, 3),
} as const;
/**
 * NV_UFLUSH_FB_FLUSH (Turing, Ampere, Ada only: `gm107/dev_flush.h`; no Hopper or
 * Blackwell header has it): write 1 to flush posted FB writes; bit 1 reads 1 while pending.
 */
export const NV_UFLUSH_FB_FLUSH = 0x070000;
/** FB_FLUSH fields. */
export const UFLUSH_FB_FLUSH = { FLUSH: field(0, 0), PENDING: field(1, 1) } as const;

// --- instance block beyond the PDB (OGD tu104 dev_ram.ref.txt; nouveau gv100) ---

/** NV_RAMIN_ADR_LIMIT_LO: (VA limit - 1) bits 31:12 with 0xFFF in the low bits. */
export const NV_RAMIN_ADR_LIMIT_LO = 0x208;
/** NV_RAMIN_ADR_LIMIT_HI: VA limit - 1, bits 63:32. */
export const NV_RAMIN_ADR_LIMIT_HI = 0x20c;
/**
 * Word 135 (byte 0x21C): NV_RAMIN_ENABLE_ATS (bit 31) and NV_RAMIN_PASID (19:0)
 * (OGD ga100 `dev_ram.ref.txt`; facts §14.1). Zero for an address space without ATS.
 */
export const NV_RAMIN_ENABLE_ATS = 0x21c;
/** The fields of word 135. */
export const RAMIN_ATS = { PASID: field(19, 0), ENABLE_ATS: field(31, 31) } as const;
/**
 * Word 131 (byte 0x20C): NV_RAMIN_ENGINE_CTXSW_FW_MAGIC_VALUE on GB1xx/GB20x,
 * where RM writes {@linkcode RAMIN_CTXSW_FW_MAGIC} (the same word is ADR_LIMIT_HI on
 * TU10x; facts §14.1).
 */
export const NV_RAMIN_ENGINE_CTXSW_FW_MAGIC_VALUE = 0x20c;
/** The value RM writes into word 131 on Blackwell. */
export const RAMIN_CTXSW_FW_MAGIC = 0xcafeca11;
/** Subcontext valid mask (two words). */
export const NV_RAMIN_SC_PDB_VALID = 0x298;
/** First subcontext PDB copy; subcontext i at + i × 0x10. */
export const NV_RAMIN_SC_PAGE_DIR_BASE = 0x2a0;
/** Subcontexts in the table. */
export const RAMIN_SUBCONTEXTS = 64;

/** Where the PRAMIN window register lives on one architecture and how its fields sit. */
export interface WindowRegister {
  /** BAR0 offset. */
  offset: number;
  /** BASE field (VRAM address >> 16). */
  base: Field;
  /** TARGET field (0 = VID_MEM); null from Hopper on, where the field was removed. */
  target: Field | null;
  /** Register name, for messages. */
  name: string;
}

/**
 * The PRAMIN window register of an architecture (facts §2.1): NV_PBUS_BAR0_WINDOW
 * at 0x1700 before Hopper; NV_XAL_EP_BAR0_WINDOW at 0x10FD40 (BASE 21:0 on
 * Hopper, 22:0 on Blackwell) without a TARGET field from Hopper on.
 */
export function windowRegister(architecture: string): WindowRegister {
  switch (architecture) {
    case "Hopper":
      return {
        offset: NV_XAL_EP_BAR0_WINDOW,
        base: XAL_BAR0_WINDOW_BASE_GH100,
        target: null,
        name: "NV_XAL_EP_BAR0_WINDOW",
      };
    case "Blackwell":
      return {
        offset: NV_XAL_EP_BAR0_WINDOW,
        base: XAL_BAR0_WINDOW_BASE_GB100,
        target: null,
        name: "NV_XAL_EP_BAR0_WINDOW",
      };
    default:
      return {
        offset: NV_PBUS_BAR0_WINDOW,
        base: BAR0_WINDOW.BASE,
        target: BAR0_WINDOW.TARGET,
        name: "NV_PBUS_BAR0_WINDOW",
      };
  }
}

// --- Hopper/Blackwell FB flush (OGKM hopper/gh100 dev_nv_xal_ep_zb.h, hwproject.h;
// kern_bus_gh100.c kbusSendSysmembarSingle_GH100; facts §14.1) ---------------

/** NV_XAL_EP base (hwproject.h): the XAL block holding the window and the memops. */
export const NV_XAL_EP_BASE = 0x10f000;
/**
 * NV_XAL_EP_ZB_UFLUSH_FB_FLUSH (R--4R, GH100 and GB20x): a **read** injects an FB
 * flush and returns its start token (TOKEN 30:0). Never written; never read
 * except to flush.
 */
export const NV_XAL_EP_ZB_UFLUSH_FB_FLUSH = NV_XAL_EP_BASE + 0x800;
/** NV_XAL_EP_ZB_UFLUSH_FB_FLUSH_COMPLETED: the last completed token and whether one is busy. */
export const NV_XAL_EP_ZB_UFLUSH_FB_FLUSH_COMPLETED = NV_XAL_EP_BASE + 0x804;
/** Fields of the two XAL flush registers (STATUS only in _COMPLETED; 1 = BUSY). */
export const XAL_FB_FLUSH = { TOKEN: field(30, 0), STATUS: field(31, 31) } as const;
/** STATUS value while a memop is outstanding. */
export const XAL_FB_FLUSH_STATUS_BUSY = 1;
/** Tokens count modulo 2^31. */
export const XAL_TOKEN_MASK = 0x7fffffff;
/** NV_XAL_EP_ZB_MEMOP_MAX_OUTSTANDING (OGKM gh100 `dev_nv_xal_zb_addendum.h`): 140. */
export const XAL_MEMOP_MAX_OUTSTANDING = 140;

// --- display fuse (OGKM tu102/ga100 dev_fuse.h; kern_gpu_ga100.c; facts §14.1) --

/** NV_FUSE_STATUS_OPT_DISPLAY on Turing. */
export const NV_FUSE_STATUS_OPT_DISPLAY_TU102 = 0x021c04;
/** NV_FUSE_STATUS_OPT_DISPLAY from GA100 on. */
export const NV_FUSE_STATUS_OPT_DISPLAY_GA100 = 0x820c04;
/** DATA bit 0: 0 = display ENABLE, 1 = DISABLE (no display engine, no VGA workspace). */
export const FUSE_STATUS_OPT_DISPLAY = { DATA: field(0, 0) } as const;

// --- Blackwell WPR2 (OGKM gb100 hwproject.h, dev_hubmmu_base.h; kern_bus_gb100.c) --

/** NV_HUBMMU0_PRI_BASE on Blackwell. */
export const NV_HUBMMU0_PRI_BASE = 0x880000;
/** NV_HUBMMU_PRI_MMU_WPR2_ADDR_LO on Blackwell (VAL 31:4 = address >> 12). */
export const NV_HUBMMU_PRI_MMU_WPR2_ADDR_LO = NV_HUBMMU0_PRI_BASE + 0xa824;
/** NV_HUBMMU_PRI_MMU_WPR2_ADDR_HI on Blackwell: VAL 31:4 = exclusive end >> 12. */
export const NV_HUBMMU_PRI_MMU_WPR2_ADDR_HI = NV_HUBMMU0_PRI_BASE + 0xa828;

// --- memory clear after reset (NVIDIA gpu-admin-tools; no OGKM header; facts §14.2) --

/**
 * The register NVIDIA's gpu-admin-tools polls for 1 before its first BAR0-window
 * access after a reset (Turing..Hopper): the FB memory clear has started/finished.
 * Not in any published header, so its name here is descriptive; a PRI error there
 * means "not available".
 */
export const MEM_CLEAR_STATUS = 0x100b20;
/** The same on Blackwell. */
export const MEM_CLEAR_STATUS_GB = 0x8a004c;
