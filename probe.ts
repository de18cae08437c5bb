/**
 * `deno task probe --device BDF [--read-only] [--force] [--json]`: a read-only
 * look at a card for the day one is lent (facts §13, §14; issue 14 item 6).
 *
 * It opens the device read-only, always (a driver may own the card; `--force`
 * allows a driver-bound one), never writes anything, and reads a fixed list
 * of side-effect-free BAR0 registers chosen by chip family: the boot
 * registers, the PRAMIN window register, both BAR1 block registers and the
 * Hopper LOW/HIGH pair, the bind status, the VRAM size registers, the display
 * fuse (and the VGA workspace only when it says there is a display), WPR2 in
 * both places, the GA100 MMU lock, the boot-status registers and the
 * memory-clear register. It never reads 0x10F800 (a read there injects an FB
 * flush), 0x10F804, 0x70000, PRAMIN or BAR1 (see {@linkcode PROBE_FORBIDDEN}).
 * Then it says, for each CONFLICT of facts §14.1, which candidate behaviours
 * the values read are consistent with. `--json` prints one object meant to
 * be saved as a test fixture.
 *
 * On a Blackwell card (decided from the PCI device id) it first waits for the
 * BAR firewall through PCI config space (`hw/pci_config.ts`). When the full
 * open fails on a card because GFW boot has not finished or the VRAM size
 * register is not filled in, it maps BAR0 alone, read-only, and probes
 * anyway (the boot-status registers are then the interesting ones).
 *
 * @module
 */

import { DEVICE_OPTIONS, reportError } from "./cli/common.ts";
import { parseCommand } from "./cli/command.ts";
import { type ChipInfo, decodeChip } from "./hw/chip.ts";
import { openDevice, parseSimSpec } from "./hw/device.ts";
import { fail, formatSize, hex, NovaError } from "./hw/errors.ts";
import { openBar } from "./hw/mapped.ts";
import { Mmio, type MmioTracer } from "./hw/mmio.ts";
import { findGpu, type PciFunction } from "./hw/pci.ts";
import {
  type BarFirewallOptions,
  type BarFirewallResult,
  isBlackwellDeviceId,
  waitBarFirewall,
} from "./hw/pci_config.ts";
import {
  ADDR_VAL_4K,
  BAR1_BLOCK,
  BAR1_BLOCK_LOW,
  BIND_STATUS,
  BOOT_0,
  BOOT_42,
  type Field,
  field,
  FUSE_STATUS_OPT_DISPLAY,
  getField,
  GFW_BOOT,
  isGpuGone,
  isPriError,
  LOCAL_MEMORY_RANGE,
  MEM_CLEAR_STATUS,
  MEM_CLEAR_STATUS_GB,
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
  NV_PGC6_AON_SECURE_SCRATCH_GROUP_05_0_GFW_BOOT,
  NV_PGC6_AON_SECURE_SCRATCH_GROUP_05_PRIV_LEVEL_MASK,
  NV_PMC_BOOT_0,
  NV_PMC_BOOT_42,
  NV_PRAMIN,
  NV_THERM_I2CS_SCRATCH_FSP_BOOT_COMPLETE,
  NV_THERM_I2CS_SCRATCH_FSP_BOOT_COMPLETE_GB20X,
  NV_UFLUSH_FB_FLUSH,
  NV_USABLE_FB_SIZE_IN_MB,
  NV_VIRTUAL_FUNCTION_PRIV_BAR1_BLOCK,
  NV_VIRTUAL_FUNCTION_PRIV_BIND_STATUS,
  NV_VIRTUAL_FUNCTION_PRIV_FUNC_BAR1_BLOCK_HIGH_ADDR,
  NV_VIRTUAL_FUNCTION_PRIV_FUNC_BAR1_BLOCK_LOW_ADDR,
  NV_XAL_EP_ZB_UFLUSH_FB_FLUSH,
  NV_XAL_EP_ZB_UFLUSH_FB_FLUSH_COMPLETED,
  PRAMIN_BASE_SHIFT,
  PRAMIN_SIZE,
  SCRATCH_GROUP_05_PLM,
  VGA_WORKSPACE_BASE,
  windowRegister,
} from "./hw/regs.ts";
import { checkOptions } from "./hw/validate.ts";

/**
 * BAR0 ranges the probe never reads, with why: `[start, end)`. Checked before
 * every read the probe itself makes (a bug in the list is an error, not an
 * access).
 */
export const PROBE_FORBIDDEN: readonly { start: number; end: number; why: string }[] = [
  {
    start: NV_XAL_EP_ZB_UFLUSH_FB_FLUSH,
    end: NV_XAL_EP_ZB_UFLUSH_FB_FLUSH + 4,
    why: "a read of NV_XAL_EP_ZB_UFLUSH_FB_FLUSH injects an FB flush (facts §14.1)",
  },
  {
    start: NV_XAL_EP_ZB_UFLUSH_FB_FLUSH_COMPLETED,
    end: NV_XAL_EP_ZB_UFLUSH_FB_FLUSH_COMPLETED + 4,
    why: "the flush token register belongs to a flush in progress",
  },
  {
    start: NV_UFLUSH_FB_FLUSH,
    end: NV_UFLUSH_FB_FLUSH + 4,
    why: "NV_UFLUSH_FB_FLUSH is a flush trigger (and absent on Hopper/Blackwell)",
  },
  {
    start: NV_PRAMIN,
    end: NV_PRAMIN + PRAMIN_SIZE,
    why: "PRAMIN is VRAM (unscrubbed HBM may raise ECC events; facts §14.2)",
  },
];

/** EINVAL when `offset` is one the probe must never touch. */
function checkProbeSafe(offset: number): void {
  const bad = PROBE_FORBIDDEN.find((r) => offset >= r.start && offset < r.end);
  if (bad !== undefined) {
    fail("EINVAL", `probe refuses to read ${hex(offset)}: ${bad.why}`);
  }
}

/** One register of the probe's list. */
interface ProbeRegisterSpec {
  offset: number;
  name: string;
  fields: Readonly<Record<string, Field>>;
}

const WHOLE = { VALUE: field(31, 0) } as const;

/** The chip's family as the register list needs it. */
function family(chip: ChipInfo): "pre-hopper" | "hopper" | "gb10x" | "gb20x" {
  if (chip.architecture === "Hopper") return "hopper";
  if (chip.architecture === "Blackwell") return chip.chipId >> 4 === 0x1b ? "gb20x" : "gb10x";
  return "pre-hopper";
}

/**
 * The fixed register list of a chip, in the order they are read (the VGA
 * workspace is added only when the display fuse says there is a display).
 */
function registerList(chip: ChipInfo): ProbeRegisterSpec[] {
  const fam = family(chip);
  const win = windowRegister(chip.architecture);
  const list: ProbeRegisterSpec[] = [
    { offset: NV_PMC_BOOT_0, name: "NV_PMC_BOOT_0", fields: BOOT_0 },
    { offset: NV_PMC_BOOT_42, name: "NV_PMC_BOOT_42", fields: BOOT_42 },
    {
      offset: win.offset,
      name: win.name,
      fields: win.target === null ? { BASE: win.base } : { BASE: win.base, TARGET: win.target },
    },
    { offset: NV_PBUS_BAR1_BLOCK, name: "NV_PBUS_BAR1_BLOCK", fields: BAR1_BLOCK },
    {
      offset: NV_VIRTUAL_FUNCTION_PRIV_BAR1_BLOCK,
      name: "NV_VIRTUAL_FUNCTION_PRIV_BAR1_BLOCK",
      fields: BAR1_BLOCK,
    },
    {
      offset: NV_VIRTUAL_FUNCTION_PRIV_BIND_STATUS,
      name: "NV_VIRTUAL_FUNCTION_PRIV_BIND_STATUS",
      fields: BIND_STATUS,
    },
  ];
  if (fam !== "pre-hopper") {
    list.push(
      {
        offset: NV_VIRTUAL_FUNCTION_PRIV_FUNC_BAR1_BLOCK_LOW_ADDR,
        name: "NV_VIRTUAL_FUNCTION_PRIV_FUNC_BAR1_BLOCK_LOW_ADDR",
        fields: BAR1_BLOCK_LOW,
      },
      {
        offset: NV_VIRTUAL_FUNCTION_PRIV_FUNC_BAR1_BLOCK_HIGH_ADDR,
        name: "NV_VIRTUAL_FUNCTION_PRIV_FUNC_BAR1_BLOCK_HIGH_ADDR",
        fields: { ADDR: field(31, 0) },
      },
    );
  }
  list.push(
    {
      offset: NV_PFB_PRI_MMU_LOCAL_MEMORY_RANGE,
      name: "NV_PFB_PRI_MMU_LOCAL_MEMORY_RANGE",
      fields: LOCAL_MEMORY_RANGE,
    },
    {
      offset: NV_USABLE_FB_SIZE_IN_MB,
      name: "NV_USABLE_FB_SIZE_IN_MB",
      fields: { MB: field(31, 0) },
    },
    {
      offset: chip.architecture === "Turing"
        ? NV_FUSE_STATUS_OPT_DISPLAY_TU102
        : NV_FUSE_STATUS_OPT_DISPLAY_GA100,
      name: "NV_FUSE_STATUS_OPT_DISPLAY",
      fields: FUSE_STATUS_OPT_DISPLAY,
    },
    {
      offset: NV_PFB_PRI_MMU_WPR2_ADDR_LO,
      name: "NV_PFB_PRI_MMU_WPR2_ADDR_LO",
      fields: ADDR_VAL_4K,
    },
    {
      offset: NV_PFB_PRI_MMU_WPR2_ADDR_HI,
      name: "NV_PFB_PRI_MMU_WPR2_ADDR_HI",
      fields: ADDR_VAL_4K,
    },
  );
  if (chip.architecture === "Blackwell") {
    list.push(
      {
        offset: NV_HUBMMU_PRI_MMU_WPR2_ADDR_LO,
        name: "NV_HUBMMU_PRI_MMU_WPR2_ADDR_LO",
        fields: ADDR_VAL_4K,
      },
      {
        offset: NV_HUBMMU_PRI_MMU_WPR2_ADDR_HI,
        name: "NV_HUBMMU_PRI_MMU_WPR2_ADDR_HI",
        fields: ADDR_VAL_4K,
      },
    );
  }
  if (chip.chipId === 0x170) {
    list.push(
      {
        offset: NV_PFB_PRI_MMU_LOCK_CFG_PRIV_LEVEL_MASK,
        name: "NV_PFB_PRI_MMU_LOCK_CFG_PRIV_LEVEL_MASK",
        fields: WHOLE,
      },
      {
        offset: NV_PFB_PRI_MMU_LOCK_ADDR_LO,
        name: "NV_PFB_PRI_MMU_LOCK_ADDR_LO",
        fields: ADDR_VAL_4K,
      },
      {
        offset: NV_PFB_PRI_MMU_LOCK_ADDR_HI,
        name: "NV_PFB_PRI_MMU_LOCK_ADDR_HI",
        fields: ADDR_VAL_4K,
      },
    );
  }
  if (fam === "pre-hopper") {
    list.push(
      {
        offset: NV_PGC6_AON_SECURE_SCRATCH_GROUP_05_PRIV_LEVEL_MASK,
        name: "NV_PGC6_AON_SECURE_SCRATCH_GROUP_05_PRIV_LEVEL_MASK",
        fields: SCRATCH_GROUP_05_PLM,
      },
      {
        offset: NV_PGC6_AON_SECURE_SCRATCH_GROUP_05_0_GFW_BOOT,
        name: "NV_PGC6_AON_SECURE_SCRATCH_GROUP_05_0_GFW_BOOT",
        fields: GFW_BOOT,
      },
    );
  } else {
    list.push({
      offset: fam === "gb20x"
        ? NV_THERM_I2CS_SCRATCH_FSP_BOOT_COMPLETE_GB20X
        : NV_THERM_I2CS_SCRATCH_FSP_BOOT_COMPLETE,
      name: "NV_THERM_I2CS_SCRATCH_FSP_BOOT_COMPLETE",
      fields: WHOLE,
    });
  }
  list.push({
    offset: chip.architecture === "Blackwell" ? MEM_CLEAR_STATUS_GB : MEM_CLEAR_STATUS,
    name: "MEM_CLEAR_STATUS",
    fields: WHOLE,
  });
  return list;
}

/** One register as the report gives it (hex strings, so the JSON reads like a dump). */
export interface ProbeRegister {
  /** BAR0 offset, `0x001704`. */
  offset: string;
  /** NVIDIA's name (or a descriptive one where no header names it). */
  name: string;
  /** Raw value `0x00000000`; null when it was deliberately not read. */
  value: string | null;
  /** Decoded fields (hex); null for a PRI error, all ones or a register not read. */
  fields: Record<string, string> | null;
  /** What the value means (PRI error, all ones, decoded meaning, why not read). */
  note: string;
}

/** What a candidate behaviour of a CONFLICT is, given the values read. */
export type CandidateVerdict = "consistent" | "refuted" | "undecidable";

/** One CONFLICT of facts §14.1 against the reading. */
export interface ProbeConflict {
  /**
   * `bar1alias`, `lowbind` or `v3bit10`: the simulator's knob names (`sim:…?bar1alias=separate`),
   * and the candidates use its values where it has them.
   */
  name: string;
  /** Each candidate and the verdict. */
  candidates: Record<string, CandidateVerdict>;
  /** Why: what each candidate predicts and what was read. */
  why: string;
}

/** A VRAM range in a summary (hex strings; `end` exclusive). */
export interface ProbeRange {
  /** Registers it came from. */
  registers: string;
  /** Start address. */
  start: string;
  /** Exclusive end address. */
  end: string;
  /** False when the registers read zero / an empty range / could not be read. */
  set: boolean;
  /** How it was read. */
  note: string;
}

/** The probe's result: what `--json` prints. */
export interface ProbeReport {
  /** When it was taken (ISO 8601). */
  date: string;
  /** The device spec as opened (`0000:65:00.0`, `sim:gh100`). */
  device: string;
  /** PCI identity of a card (hex strings); null for the simulator. */
  pci: {
    bdf: string;
    vendor: string;
    device: string;
    subsystemVendor: string | null;
    subsystemDevice: string | null;
    class: string;
    driver: string | null;
    bootVga: boolean;
  } | null;
  /** The chip from BOOT_0/BOOT_42. */
  chip: { name: string; chipId: string; architecture: string; revision: string };
  /** How the card was opened: `device` (openDevice, read-only) or `bar0` (BAR0 alone, after `error`). */
  open: { path: "device" | "bar0"; error: string | null };
  /** The Blackwell BAR-firewall wait, when one was made. */
  barFirewall:
    | { dvsecOffset: string | null; polls: number; waitedMs: number; warning: string | null }
    | null;
  /** Every register of the list, in read order. */
  registers: ProbeRegister[];
  /** Readings summarised: WPR2, MMU lock, display, memory clear, boot, BAR1. */
  summary: {
    wpr2: ProbeRange[];
    mmuLock: ProbeRange | null;
    display: { present: boolean | null; vgaWorkspace: string | null; note: string };
    memoryClear: {
      value: string | null;
      status: "done" | "not done" | "unavailable";
      note: string;
    };
    boot: { done: boolean | null; note: string };
    bar1: { mode: "physical" | "virtual" | "unknown"; note: string };
  };
  /** The CONFLICTs of facts §14.1. */
  conflicts: ProbeConflict[];
}

/** Options for {@linkcode probe}. */
export interface ProbeOptions {
  /** `sim[:PROFILE[:STATE]]` or a PCI address; default `sim`. */
  device?: string;
  /** Open a card a kernel driver is bound to (still read-only). */
  force?: boolean;
  /** sysfs PCI devices directory (tests point it at a fake tree). */
  sysfsRoot?: string;
  /** Called for every MMIO access, from the first BOOT_0 read of the open on. */
  tracer?: MmioTracer;
  /** Options for the Blackwell BAR-firewall wait (tests use a short delay). */
  barFirewall?: BarFirewallOptions;
  /** GFW boot wait of the open, ms (default openDevice's). */
  gfwTimeoutMs?: number;
  /** The clock for `date` (tests fix it). */
  now?: () => Date;
}

const h4 = (v: number) => hex(v, 4);
const h8 = (v: number) => hex(v >>> 0, 8);

const BAR1_TARGET = ["VID_MEM", "(1)", "SYS_MEM_COHERENT", "SYS_MEM_NONCOHERENT"];

/** Reading state shared by the note writers. */
class Reader {
  readonly values = new Map<number, number>();
  #boot0Reread: number | null = null;
  constructor(readonly bar0: Mmio) {}

  read(offset: number): number {
    checkProbeSafe(offset);
    const v = this.bar0.read32(offset) >>> 0;
    if (!this.values.has(offset)) this.values.set(offset, v);
    return v;
  }

  /** The value, or null for a PRI error / all ones / not read. */
  valid(offset: number): number | null {
    const v = this.values.get(offset);
    return v === undefined || isPriError(v) || isGpuGone(v) ? null : v;
  }

  /** BOOT_0 re-read once, to judge an all-ones value (facts §14.1). */
  boot0Again(): number {
    if (this.#boot0Reread === null) this.#boot0Reread = this.read(NV_PMC_BOOT_0);
    return this.#boot0Reread;
  }
}

function rangeOf(
  lo: number | null,
  hi: number | null,
  registers: string,
  note: string,
): ProbeRange {
  if (lo === null || hi === null) {
    return { registers, start: "0x0", end: "0x0", set: false, note: `${note}; unreadable` };
  }
  const start = getField(lo, ADDR_VAL_4K.VAL) * 4096;
  const end = getField(hi, ADDR_VAL_4K.VAL) * 4096;
  const set = end > start;
  return {
    registers,
    start: hex(start),
    end: hex(end),
    set,
    note: set
      ? `${note}: [${hex(start)}, ${hex(end)}) = ${formatSize(end - start)}`
      : `${note}: not set`,
  };
}

/** The meaning of one register value, for its note. */
function meaning(spec: ProbeRegisterSpec, v: number, chip: ChipInfo): string {
  switch (spec.offset) {
    case NV_PMC_BOOT_0:
    case NV_PMC_BOOT_42:
      return `${chip.name} ${chip.revision}`;
    case NV_PBUS_BAR1_BLOCK:
    case NV_VIRTUAL_FUNCTION_PRIV_BAR1_BLOCK: {
      const mode = getField(v, BAR1_BLOCK.MODE) ? "virtual" : "physical";
      const target = BAR1_TARGET[getField(v, BAR1_BLOCK.TARGET)];
      return mode === "physical" && v === 0
        ? "MODE physical, TARGET VID_MEM (the reset value)"
        : `MODE ${mode}, TARGET ${target}, instance block ${
          hex(getField(v, BAR1_BLOCK.PTR) * 4096)
        }`;
    }
    case NV_VIRTUAL_FUNCTION_PRIV_FUNC_BAR1_BLOCK_LOW_ADDR: {
      const mode = getField(v, BAR1_BLOCK_LOW.MODE) ? "virtual" : "physical";
      return `MODE ${mode}, TARGET ${BAR1_TARGET[getField(v, BAR1_BLOCK_LOW.TARGET)]}, PTR ${
        hex(getField(v, BAR1_BLOCK_LOW.PTR) * 4096)
      } (low 32 bits), PENDING ${getField(v, BAR1_BLOCK_LOW.PENDING)} OUTSTANDING ${
        getField(v, BAR1_BLOCK_LOW.OUTSTANDING)
      }`;
    }
    case NV_VIRTUAL_FUNCTION_PRIV_BIND_STATUS:
      return `BAR1 pending ${getField(v, BIND_STATUS.BAR1_PENDING)} outstanding ${
        getField(v, BIND_STATUS.BAR1_OUTSTANDING)
      }`;
    case NV_PFB_PRI_MMU_LOCAL_MEMORY_RANGE: {
      const mib = getField(v, LOCAL_MEMORY_RANGE.LOWER_MAG) *
        2 ** getField(v, LOCAL_MEMORY_RANGE.LOWER_SCALE);
      const ecc = getField(v, LOCAL_MEMORY_RANGE.ECC_MODE);
      return `${formatSize(mib * 2 ** 20)}${ecc ? " (ECC on: × 15/16)" : ""}`;
    }
    case NV_USABLE_FB_SIZE_IN_MB:
      return formatSize(v * 2 ** 20);
    case NV_FUSE_STATUS_OPT_DISPLAY_TU102:
    case NV_FUSE_STATUS_OPT_DISPLAY_GA100:
      return getField(v, FUSE_STATUS_OPT_DISPLAY.DATA)
        ? "display DISABLED (no display engine, no VGA workspace)"
        : "display ENABLED";
    case NV_PDISP_VGA_WORKSPACE_BASE:
      return getField(v, VGA_WORKSPACE_BASE.STATUS_VALID)
        ? `valid, at ${hex(getField(v, VGA_WORKSPACE_BASE.ADDR) * 2 ** 16)}`
        : "not valid (firmware's VGA workspace assumed in the top 1 MiB)";
    case NV_PGC6_AON_SECURE_SCRATCH_GROUP_05_PRIV_LEVEL_MASK:
      return getField(v, SCRATCH_GROUP_05_PLM.READ_PROTECTION_LEVEL0)
        ? "READ_PROTECTION_LEVEL0 open"
        : "READ_PROTECTION_LEVEL0 closed (GFW boot not done)";
    case NV_PGC6_AON_SECURE_SCRATCH_GROUP_05_0_GFW_BOOT:
      return getField(v, GFW_BOOT.PROGRESS) === 0xff
        ? "GFW boot COMPLETED"
        : `GFW boot progress ${hex(getField(v, GFW_BOOT.PROGRESS))}`;
    case NV_THERM_I2CS_SCRATCH_FSP_BOOT_COMPLETE:
    case NV_THERM_I2CS_SCRATCH_FSP_BOOT_COMPLETE_GB20X:
      return v === 0xff ? "FSP boot SUCCESS" : "FSP boot not complete";
    case MEM_CLEAR_STATUS:
    case MEM_CLEAR_STATUS_GB:
      return v === 1 ? "reads 1: what GAT waits for" : "not 1: GAT would still wait";
    default:
      if (spec.offset === windowRegister(chip.architecture).offset) {
        return `window at VRAM ${
          hex(getField(v, windowRegister(chip.architecture).base) * 2 ** PRAMIN_BASE_SHIFT)
        }`;
      }
      if (spec.fields === ADDR_VAL_4K) return `address ${hex(getField(v, ADDR_VAL_4K.VAL) * 4096)}`;
      return "";
  }
}

function decodeFields(spec: ProbeRegisterSpec, v: number): Record<string, string> {
  return Object.fromEntries(
    Object.entries(spec.fields).map(([k, f]) => [k, hex(getField(v, f))]),
  );
}

function registerEntry(r: Reader, spec: ProbeRegisterSpec, chip: ChipInfo): ProbeRegister {
  const v = r.values.get(spec.offset)!;
  let note: string;
  let fields: Record<string, string> | null = null;
  if (isGpuGone(v)) {
    const b0 = r.boot0Again();
    note = isGpuGone(b0)
      ? "all ones, and BOOT_0 re-read all ones: the GPU is lost (off the bus or in reset)"
      : `all ones (BOOT_0 re-read ${h8(b0)}: the GPU answers, so this is the register's value)`;
    if (!isGpuGone(b0)) fields = decodeFields(spec, v);
  } else if (isPriError(v)) {
    note = `PRI error ${h8(v)}: not readable here (absent on this chip, or privilege-protected)`;
  } else {
    fields = decodeFields(spec, v);
    note = meaning(spec, v, chip);
  }
  return { offset: hex(spec.offset, 6), name: spec.name, value: h8(v), fields, note };
}

interface Bar1State {
  /** Where the BAR1 binding lives on this chip. */
  lowHigh: boolean;
  mode: "physical" | "virtual" | "unknown";
  target: number | null;
  instance: number | null;
  note: string;
}

function bar1State(r: Reader, chip: ChipInfo): Bar1State {
  if (family(chip) !== "pre-hopper") {
    const low = r.valid(NV_VIRTUAL_FUNCTION_PRIV_FUNC_BAR1_BLOCK_LOW_ADDR);
    const high = r.valid(NV_VIRTUAL_FUNCTION_PRIV_FUNC_BAR1_BLOCK_HIGH_ADDR);
    if (low === null) {
      return {
        lowHigh: true,
        mode: "unknown",
        target: null,
        instance: null,
        note: "LOW 0xb80f60 unreadable",
      };
    }
    const mode = getField(low, BAR1_BLOCK_LOW.MODE) ? "virtual" : "physical";
    const target = getField(low, BAR1_BLOCK_LOW.TARGET);
    const instance = high === null
      ? null
      : high * 2 ** 32 + getField(low, BAR1_BLOCK_LOW.PTR) * 4096;
    return {
      lowHigh: true,
      mode,
      target,
      instance,
      note: `LOW ${h8(low)}: MODE ${mode}, TARGET ${BAR1_TARGET[target]}${
        instance === null || mode === "physical" ? "" : `, instance block ${hex(instance)}`
      }`,
    };
  }
  const vf = r.valid(NV_VIRTUAL_FUNCTION_PRIV_BAR1_BLOCK);
  if (vf === null) {
    return {
      lowHigh: false,
      mode: "unknown",
      target: null,
      instance: null,
      note: "0xb80f40 unreadable",
    };
  }
  const mode = getField(vf, BAR1_BLOCK.MODE) ? "virtual" : "physical";
  const target = getField(vf, BAR1_BLOCK.TARGET);
  return {
    lowHigh: false,
    mode,
    target,
    instance: getField(vf, BAR1_BLOCK.PTR) * 4096,
    note: `0xb80f40 ${h8(vf)}: MODE ${mode}, TARGET ${BAR1_TARGET[target]}${
      mode === "virtual" ? `, instance block ${hex(getField(vf, BAR1_BLOCK.PTR) * 4096)}` : ""
    }`,
  };
}

function conflicts(
  r: Reader,
  chip: ChipInfo,
  again: { legacy: number; vf: number },
  bar1: Bar1State,
): ProbeConflict[] {
  const out: ProbeConflict[] = [];
  // (1) bar1alias: 0x1704 and 0xB80F40 one register, or two.
  {
    const raw1704 = r.values.get(NV_PBUS_BAR1_BLOCK)!;
    const rawVf = r.values.get(NV_VIRTUAL_FUNCTION_PRIV_BAR1_BLOCK)!;
    const a = r.valid(NV_PBUS_BAR1_BLOCK);
    const b = r.valid(NV_VIRTUAL_FUNCTION_PRIV_BAR1_BLOCK);
    const hopperNote = bar1.lowHigh
      ? " (On this chip BAR1 is bound through LOW/HIGH 0xb80f60/64, so neither register may be " +
        "in use.)"
      : "";
    const values = `0x1704 reads ${h8(raw1704)}, 0xb80f40 reads ${h8(rawVf)}`;
    let cand: Record<string, CandidateVerdict>;
    let why: string;
    if (a === null || b === null) {
      cand = { shared: "undecidable", separate: "undecidable" };
      why = `${values}: a PRI error or all ones at one offset says nothing about aliasing ` +
        "(either may be absent or privilege-protected).";
    } else if (again.legacy !== a || again.vf !== b) {
      cand = { shared: "undecidable", separate: "undecidable" };
      why = `${values}, then ${h8(again.legacy)} and ${
        h8(again.vf)
      } on a second read: they changed while probed (a driver is active); probe again idle.`;
    } else if (a === b) {
      cand = { shared: "consistent", separate: "consistent" };
      why = `${values} (twice): shared predicts 0x1704 == 0xb80f40 always, so equal values are ` +
        "consistent with it; separate allows them to be equal (both at the reset value, or a " +
        `driver wrote both), so they are consistent with it too. Only different values decide.`;
    } else {
      cand = { shared: "refuted", separate: "consistent" };
      why = `${values} (twice): one register seen at two offsets cannot read two values, so ` +
        "shared is refuted; separate allows them to differ (RM's TU102 bind writes only " +
        "0xb80f40; RM's unload writes only 0x1704).";
    }
    out.push({ name: "bar1alias", candidates: cand, why: why + hopperNote });
  }
  // (2) lowbind: does a LOW write alone (MODE physical) take effect?
  {
    const why = bar1.lowHigh
      ? `Not decidable read-only (${bar1.note}). It takes a write experiment: with BAR1 virtual, ` +
        "write LOW 0xb80f60 with MODE=physical and no HIGH write, then read LOW and access BAR1 " +
        "by VRAM address: `immediate` predicts BAR1 is physical at once; `high` predicts the " +
        "old virtual binding stays in force (accesses still translate) until HIGH 0xb80f64 is " +
        "written."
      : `Not applicable on ${chip.name}: there is no LOW/HIGH pair before Hopper (BAR1 binds ` +
        "through 0xb80f40 in one write); and not decidable read-only on any chip (it needs a " +
        "LOW write without a HIGH write).";
    out.push({
      name: "lowbind",
      candidates: { immediate: "undecidable", high: "undecidable" },
      why,
    });
  }
  // (3) v3bit10: which PDB bit 10 does an MMU v3 instance block need? Candidates as the
  // simulator's knob (`ignored`: either value works; `rm`: only RM's 0) plus nouveau's 1.
  {
    let why: string;
    const what = "Candidates: `ignored` (bit 10 may be 0 or 1), `rm` (only RM's value, 0 on " +
      "v3, works), `required` (only nouveau's 1 works). ";
    if (chip.mmuVersion === 2) {
      why = `Not applicable on ${chip.name} (MMU v2: bit 10, USE_VER2_PT_FORMAT, is required; ` +
        "the CONFLICT is about v3 only).";
    } else if (bar1.mode === "virtual" && bar1.target === 0 && bar1.instance !== null) {
      why = what +
        `BAR1 is virtual, bound to the VID instance block at ${
          hex(bar1.instance)
        }; its PDB word at ${
          hex(bar1.instance + 0x200)
        } would show the bit 10 of a working binding (0 refutes \`required\`, 1 refutes \`rm\`), ` +
        "but reading it needs a PRAMIN read (window move); not done read-only.";
    } else if (bar1.mode === "virtual") {
      why = what + `BAR1 is virtual but its instance block is not in VRAM (${bar1.note}): ` +
        "PRAMIN cannot reach it; not decidable read-only.";
    } else {
      why = what + `BAR1 is ${bar1.mode} (${bar1.note}): no instance block is bound, so there ` +
        "is no PDB word to look at; deciding needs a bind experiment (a write).";
    }
    out.push({
      name: "v3bit10",
      candidates: { ignored: "undecidable", rm: "undecidable", required: "undecidable" },
      why,
    });
  }
  return out;
}

function summarize(
  r: Reader,
  chip: ChipInfo,
  bar1: Bar1State,
  bootVga: boolean | null,
): ProbeReport["summary"] {
  const wpr2 = [rangeOf(
    r.valid(NV_PFB_PRI_MMU_WPR2_ADDR_LO),
    r.valid(NV_PFB_PRI_MMU_WPR2_ADDR_HI),
    "0x1fa824/0x1fa828",
    "WPR2 (start = LO.VAL << 12, exclusive end = HI.VAL << 12)",
  )];
  if (chip.architecture === "Blackwell") {
    wpr2.push(rangeOf(
      r.valid(NV_HUBMMU_PRI_MMU_WPR2_ADDR_LO),
      r.valid(NV_HUBMMU_PRI_MMU_WPR2_ADDR_HI),
      "0x88a824/0x88a828",
      "Blackwell WPR2 (hubmmu)",
    ));
  }
  let mmuLock: ProbeRange | null = null;
  if (chip.chipId === 0x170) {
    const lo = r.valid(NV_PFB_PRI_MMU_LOCK_ADDR_LO);
    const hi = r.valid(NV_PFB_PRI_MMU_LOCK_ADDR_HI);
    if (lo === null || hi === null) {
      mmuLock = {
        registers: "0x1fa82c/0x1fa830",
        start: "0x0",
        end: "0x0",
        set: false,
        note: "MMU lock unreadable",
      };
    } else {
      const start = getField(lo, ADDR_VAL_4K.VAL) * 4096;
      const incl = getField(hi, ADDR_VAL_4K.VAL) * 4096;
      const end = Math.ceil(incl / 0x10000) * 0x10000; // HI inclusive, 64 KiB aligned up
      const set = end > start;
      mmuLock = {
        registers: "0x1fa82c/0x1fa830",
        start: hex(start),
        end: hex(end),
        set,
        note: set
          ? `MMU lock: [${hex(start)}, ${hex(end)}) = ${formatSize(end - start)}`
          : "MMU lock: not set",
      };
    }
  }
  const fuseOffset = chip.architecture === "Turing"
    ? NV_FUSE_STATUS_OPT_DISPLAY_TU102
    : NV_FUSE_STATUS_OPT_DISPLAY_GA100;
  const fuse = r.valid(fuseOffset);
  const present = fuse === null ? null : getField(fuse, FUSE_STATUS_OPT_DISPLAY.DATA) === 0;
  const vga = r.valid(NV_PDISP_VGA_WORKSPACE_BASE);
  const vgaAddr = vga !== null && getField(vga, VGA_WORKSPACE_BASE.STATUS_VALID)
    ? getField(vga, VGA_WORKSPACE_BASE.ADDR) * 2 ** 16
    : null;
  const bootVgaText = bootVga === null ? "" : `; sysfs boot_vga ${bootVga ? 1 : 0}`;
  const display = {
    present,
    vgaWorkspace: vgaAddr === null ? null : hex(vgaAddr),
    note: present === null
      ? `display fuse ${hex(fuseOffset)} unreadable: VGA workspace not read${bootVgaText}`
      : present
      ? `display present; VGA workspace ${
        vgaAddr === null ? "not valid (top 1 MiB assumed firmware's)" : `at ${hex(vgaAddr)}`
      }${bootVgaText}`
      : `no display (fuse DATA=1): no VGA workspace, no console; 0x625f04 not read${bootVgaText}`,
  };
  const mcOffset = chip.architecture === "Blackwell" ? MEM_CLEAR_STATUS_GB : MEM_CLEAR_STATUS;
  const mcRaw = r.values.get(mcOffset)!;
  const mc = r.valid(mcOffset);
  const memoryClear = {
    value: h8(mcRaw),
    status: mc === null ? "unavailable" as const : mc === 1 ? "done" as const : "not done" as const,
    note: mc === null
      ? `${hex(mcOffset)} reads ${h8(mcRaw)}: not available here (not a failure; facts §14.2)`
      : mc === 1
      ? `${hex(mcOffset)} reads 1: the post-reset memory clear has started/finished`
      : `${hex(mcOffset)} reads ${h8(mc)}: a memory clear may still be running (GAT waits for 1)`,
  };
  let boot: { done: boolean | null; note: string };
  if (family(chip) === "pre-hopper") {
    const plm = r.valid(NV_PGC6_AON_SECURE_SCRATCH_GROUP_05_PRIV_LEVEL_MASK);
    const prog = r.valid(NV_PGC6_AON_SECURE_SCRATCH_GROUP_05_0_GFW_BOOT);
    const done = plm === null || prog === null
      ? null
      : getField(plm, SCRATCH_GROUP_05_PLM.READ_PROTECTION_LEVEL0) === 1 &&
        getField(prog, GFW_BOOT.PROGRESS) === 0xff;
    boot = {
      done,
      note: done === null
        ? "GFW boot status unreadable"
        : `GFW boot ${done ? "completed" : "NOT completed"} (0x118128 ${h8(plm!)}, 0x118234 ${
          h8(prog!)
        })`,
    };
  } else {
    const off = family(chip) === "gb20x"
      ? NV_THERM_I2CS_SCRATCH_FSP_BOOT_COMPLETE_GB20X
      : NV_THERM_I2CS_SCRATCH_FSP_BOOT_COMPLETE;
    const v = r.valid(off);
    boot = {
      done: v === null ? null : v === 0xff,
      note: v === null
        ? `FSP boot status ${hex(off)} unreadable (${h8(r.values.get(off)!)})`
        : `FSP boot ${v === 0xff ? "completed" : "NOT completed"} (${hex(off)} ${h8(v)})`,
    };
  }
  const physicalOk = bar1.mode === "physical" && bar1.target === 0;
  return {
    wpr2,
    mmuLock,
    display,
    memoryClear,
    boot,
    bar1: {
      mode: bar1.mode,
      note: `${bar1.note}; ${
        physicalOk
          ? "physical access by VRAM address is valid (MODE physical and TARGET VID)"
          : bar1.mode === "physical"
          ? "physical but TARGET is not VID: BAR1 access by VRAM address is NOT valid"
          : "not physical: BAR1 access by VRAM address is NOT valid"
      }`,
    },
  };
}

/** Maps BAR0 alone, read-only, for a card whose full open failed (GFW boot, VRAM size). */
function openBar0Only(fn: PciFunction, force: boolean, tracer?: MmioTracer): Mmio {
  const bar = openBar(fn, 0, { readOnly: true, force });
  const mmio = new Mmio("bar0", bar, { readOnly: true });
  mmio.tracer = tracer;
  return mmio;
}

/**
 * Probes a device read-only and returns the report (see the module
 * documentation). Opens with `readOnly: true` always; never writes.
 *
 * @example
 * ```ts
 * const report = probe({ device: "sim:gh100" });
 * report.chip.name; // "GH100"
 * report.conflicts.map((c) => c.name); // ["bar1alias", "lowbind", "v3bit10"]
 * ```
 */
export function probe(options: ProbeOptions = {}): ProbeReport {
  checkOptions(options, {
    device: "string",
    force: "boolean",
    sysfsRoot: "string",
    tracer: "function",
    barFirewall: "object",
    gfwTimeoutMs: "number",
    now: "function",
  }, "probe options");
  const spec = options.device ?? "sim";
  const force = options.force ?? false;
  const sysfs = options.sysfsRoot === undefined ? {} : { sysfsRoot: options.sysfsRoot };
  const date = (options.now ?? (() => new Date()))().toISOString();
  let fn: PciFunction | null = null;
  if (parseSimSpec(spec) === null && !spec.startsWith("sim")) {
    try {
      fn = findGpu(spec, sysfs);
    } catch {
      fn = null; // openDevice says why, with its hints
    }
  }
  let firewall: BarFirewallResult | null = null;
  if (fn !== null && isBlackwellDeviceId(fn.device)) {
    // Before the first BAR0 access (facts §14.2 item 3).
    firewall = waitBarFirewall(fn, options.barFirewall ?? {});
  }
  let bar0: Mmio;
  let chip: ChipInfo;
  let close: () => void;
  let open: ProbeReport["open"];
  let opened = spec;
  try {
    const dev = openDevice({
      device: spec,
      readOnly: true,
      force,
      ...sysfs,
      tracer: options.tracer,
      ...(options.gfwTimeoutMs === undefined ? {} : { gfwTimeoutMs: options.gfwTimeoutMs }),
    });
    bar0 = dev.bar0;
    chip = dev.chip;
    opened = dev.spec;
    fn = dev.pci ?? fn;
    close = () => dev.close();
    open = { path: "device", error: null };
  } catch (e) {
    // A card that has not finished GFW boot, or whose VRAM size register is empty, is what a
    // probe is for: map BAR0 alone and look. Anything else (no such card, a driver, the GPU
    // gone) is the answer.
    if (fn === null || !(e instanceof NovaError) || (e.code !== "ETIMEDOUT" && e.code !== "EIO")) {
      throw e;
    }
    bar0 = openBar0Only(fn, force, options.tracer);
    try {
      checkProbeSafe(NV_PMC_BOOT_0);
      chip = decodeChip(bar0.read32(NV_PMC_BOOT_0), bar0.read32(NV_PMC_BOOT_42));
    } catch (e2) {
      bar0.close();
      throw e2;
    }
    opened = fn.bdf;
    const m = bar0;
    close = () => m.close();
    open = { path: "bar0", error: e.message };
  }
  try {
    const r = new Reader(bar0);
    const list = registerList(chip);
    const entries: ProbeRegister[] = [];
    const fuseOffset = chip.architecture === "Turing"
      ? NV_FUSE_STATUS_OPT_DISPLAY_TU102
      : NV_FUSE_STATUS_OPT_DISPLAY_GA100;
    for (const spec of list) {
      r.read(spec.offset);
      entries.push(registerEntry(r, spec, chip));
      if (spec.offset === fuseOffset) {
        const vgaSpec: ProbeRegisterSpec = {
          offset: NV_PDISP_VGA_WORKSPACE_BASE,
          name: "NV_PDISP_VGA_WORKSPACE_BASE",
          fields: VGA_WORKSPACE_BASE,
        };
        const fuse = r.valid(fuseOffset);
        if (fuse !== null && getField(fuse, FUSE_STATUS_OPT_DISPLAY.DATA) === 0) {
          r.read(NV_PDISP_VGA_WORKSPACE_BASE);
          entries.push(registerEntry(r, vgaSpec, chip));
        } else {
          entries.push({
            offset: hex(NV_PDISP_VGA_WORKSPACE_BASE, 6),
            name: vgaSpec.name,
            value: null,
            fields: null,
            note: fuse === null
              ? "not read: the display fuse is unreadable"
              : "not read: the display fuse says there is no display",
          });
        }
      }
    }
    // The two BAR1 block registers once more, back to back, to see whether they move.
    const again = {
      legacy: r.read(NV_PBUS_BAR1_BLOCK),
      vf: r.read(NV_VIRTUAL_FUNCTION_PRIV_BAR1_BLOCK),
    };
    const bar1 = bar1State(r, chip);
    const subsystemVendor = fn?.subsystemVendor ?? null;
    const subsystemDevice = fn?.subsystemDevice ?? null;
    return {
      date,
      device: opened,
      pci: fn === null ? null : {
        bdf: fn.bdf,
        vendor: h4(fn.vendor),
        device: h4(fn.device),
        subsystemVendor: subsystemVendor === null ? null : h4(subsystemVendor),
        subsystemDevice: subsystemDevice === null ? null : h4(subsystemDevice),
        class: hex(fn.class, 6),
        driver: fn.driver,
        bootVga: fn.bootVga,
      },
      chip: {
        name: chip.name,
        chipId: hex(chip.chipId),
        architecture: chip.architecture,
        revision: chip.revision,
      },
      open,
      barFirewall: firewall === null ? null : {
        dvsecOffset: firewall.dvsecOffset === null ? null : hex(firewall.dvsecOffset),
        polls: firewall.polls,
        waitedMs: firewall.waitedMs,
        warning: firewall.warning,
      },
      registers: entries,
      summary: summarize(r, chip, bar1, fn === null ? null : fn.bootVga),
      conflicts: conflicts(r, chip, again, bar1),
    };
  } finally {
    close();
  }
}

/** The report as text: registers, summaries, then the CONFLICTS section. */
export function formatReport(report: ProbeReport): string {
  const lines: string[] = [];
  const p = report.pci;
  lines.push(
    `probe of ${report.device}${
      p === null
        ? ""
        : ` (${p.vendor.slice(2)}:${p.device.slice(2)}${
          p.subsystemVendor !== null && p.subsystemDevice !== null
            ? ` sub ${p.subsystemVendor.slice(2)}:${p.subsystemDevice.slice(2)}`
            : ""
        }, driver ${p.driver ?? "none"})`
    }: ${report.chip.name} ${report.chip.revision} (${report.chip.architecture}, chip ${report.chip.chipId}), read-only, ${report.date}`,
  );
  if (report.open.error !== null) {
    lines.push(`full open failed (${report.open.error}); probed through BAR0 alone`);
  }
  if (report.barFirewall !== null) {
    const f = report.barFirewall;
    lines.push(
      f.warning ??
        `BAR firewall: down (NVIDIA DVSEC at ${f.dvsecOffset}, ${f.polls} polls, ${f.waitedMs} ms)`,
    );
  }
  lines.push("", "REGISTERS");
  const width = Math.max(...report.registers.map((r) => r.name.length));
  for (const r of report.registers) {
    const fields = r.fields === null
      ? ""
      : Object.entries(r.fields).map(([k, v]) => `${k}=${v}`).join(" ");
    lines.push(
      `  ${r.offset}  ${r.name.padEnd(width)}  ${(r.value ?? "(not read)").padEnd(10)}  ${fields}`,
    );
    if (r.note !== "") lines.push(`  ${" ".repeat(8)}  ${" ".repeat(width)}  ${r.note}`);
  }
  const s = report.summary;
  lines.push("", "WPR2");
  for (const w of s.wpr2) lines.push(`  ${w.registers}: ${w.note}`);
  if (s.mmuLock !== null) lines.push("", "MMU LOCK (GA100)", `  ${s.mmuLock.note}`);
  lines.push("", "DISPLAY / VGA", `  ${s.display.note}`);
  lines.push("", "MEMORY CLEAR", `  ${s.memoryClear.note}`);
  lines.push("", "BOOT STATUS", `  ${s.boot.note}`);
  lines.push("", "BAR1", `  ${s.bar1.note}`);
  lines.push("", "CONFLICTS (facts §14.1)");
  for (const c of report.conflicts) {
    lines.push(
      `  ${c.name}: ${Object.entries(c.candidates).map(([k, v]) => `${k} ${v}`).join(", ")}`,
    );
    lines.push(`    ${c.why}`);
  }
  return lines.join("\n");
}

const HELP = `deno task probe --device D [options]

Reads a fixed list of side-effect-free registers of a GPU and says what they
mean for the open questions of facts §14.1 (CONFLICTS). The device is always
opened read-only: nothing is written, and 0x10F800 (a read there flushes),
0x10F804, 0x70000, PRAMIN and BAR1 are never touched. On a Blackwell card the
BAR firewall is waited for through PCI config space first.

Options:
  -d, --device D   a PCI address such as 0000:65:00.0, or sim:PROFILE[:STATE]
                   (default: sim)
      --read-only  accepted for symmetry: the probe is always read-only
      --force      look at a card even though a kernel GPU driver is bound to it
      --json       print one JSON object (date, device, pci, chip, registers,
                   summary, conflicts): save it as a test fixture
  -h, --help       this text`;

/** Runs the command; returns the exit code. */
export function main(args: string[]): number {
  const parsed = parseCommand(args, {
    ...DEVICE_OPTIONS,
    json: { type: "boolean", default: false },
  }, HELP);
  if (typeof parsed === "number") return parsed;
  const { values } = parsed;
  let report: ProbeReport;
  try {
    report = probe({ device: values.device, force: values.force });
  } catch (e) {
    return reportError(e);
  }
  console.log(values.json ? JSON.stringify(report, null, 2) : formatReport(report));
  return 0;
}

if (import.meta.main) Deno.exit(main(Deno.args));
