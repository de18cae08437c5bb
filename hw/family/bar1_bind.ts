/**
 * The BAR1 bind registers and their sequences (facts §13.3 item 4, §14.1,
 * §14.2 item 1), one set per register layout:
 *
 * - **VF** (Turing, Ampere, Ada): NV_VIRTUAL_FUNCTION_PRIV_BAR1_BLOCK 0xB80F40
 *   is what RM binds through (`kbusBar1InstBlkBind_TU102`), with
 *   NV_VIRTUAL_FUNCTION_PRIV_BIND_STATUS 0xB80F50 as status. Whether the
 *   legacy NV_PBUS_BAR1_BLOCK 0x1704 is the same register is a CONFLICT
 *   (RM's unload writes only 0x1704 to go physical; tinygrad does too), so:
 *   both are read (BAR1 is virtual if either says so), a bind writes the VF
 *   register, going physical writes both, a restore writes both as found
 *   (the live one last). NV_PBUS_BIND_STATUS 0x1710 exists only in the
 *   gm107 header and RM never polls it on Turing+: it is not touched.
 * - **LOW/HIGH** (Hopper, Blackwell): LOW 0xB80F60 (MODE 9, TARGET 11:10,
 *   PTR 31:12; PENDING/OUTSTANDING 1:0 read-only), HIGH 0xB80F64 (address
 *   63:32). Whether a LOW write alone changes the binding is a CONFLICT, so
 *   every change writes LOW then HIGH (which starts the bind), then polls
 *   LOW's status bits.
 *
 * Physical mode is usable only when MODE is physical **and** TARGET is VID:
 * with another TARGET the aperture reaches system memory (RM's teardown sets
 * VID "so we don't accidentally corrupt sysmem"); such a state is reported in
 * {@linkcode Bar1BindState.problem} and BAR1 is not touched.
 *
 * @module
 */

import { describe, fail, hex } from "../errors.ts";
import type { Mmio } from "../mmio.ts";
import { pollRegister } from "../poll.ts";
import {
  BAR1_BLOCK,
  BAR1_BLOCK_LOW,
  BIND_STATUS,
  type Field,
  getField,
  NV_PBUS_BAR1_BLOCK,
  NV_VIRTUAL_FUNCTION_PRIV_BAR1_BLOCK,
  NV_VIRTUAL_FUNCTION_PRIV_BIND_STATUS,
  NV_VIRTUAL_FUNCTION_PRIV_FUNC_BAR1_BLOCK_HIGH_ADDR,
  NV_VIRTUAL_FUNCTION_PRIV_FUNC_BAR1_BLOCK_LOW_ADDR,
  readValid,
  setField,
} from "../regs.ts";
import { checkObject, checkUint } from "../validate.ts";

/** How BAR1 translates CPU accesses. */
export type Bar1Mode = "physical" | "virtual";

/** The BAR1 bind registers as read: what the live binding is and the raw values to restore. */
export interface Bar1BindState {
  /** Physical or virtual. */
  mode: Bar1Mode;
  /** The bound instance block in VRAM (virtual mode, TARGET VID), else null. */
  instanceBlock: number | null;
  /** The register the live binding came from, for messages. */
  via: string;
  /** Each bind register's offset and value (PRI-error reads are left out: never written back). */
  registers: { offset: number; value: number }[];
  /**
   * Why BAR1 may not be used as found, or null: physical mode with a TARGET
   * other than VID (the aperture reaches system memory), virtual mode with an
   * instance block outside VRAM, or bind registers that cannot be read.
   */
  problem: string | null;
}

/** One register layout's bind sequences. */
export interface Bar1BindOps {
  /** `vf` (0xB80F40, Turing..Ada) or `lowhigh` (0xB80F60/64, Hopper on). */
  readonly kind: "vf" | "lowhigh";
  /** Registers whose writes start a bind (a raw write of one changes the binding). */
  readonly watched: readonly number[];
  /** Reads the bind registers (single reads, nothing written). */
  read(bar0: Mmio): Bar1BindState;
  /** Binds BAR1 to the VRAM instance block `inst` and polls the bind status. */
  bind(bar0: Mmio, inst: number, timeoutMs: number): void;
  /** Puts BAR1 in physical mode, TARGET VID, in every bind register; polls each bind. */
  unbind(bar0: Mmio, timeoutMs: number): void;
  /**
   * Writes back the registers as {@linkcode Bar1BindOps.read} found them,
   * skipping those that still hold their value; the register the live binding
   * came from goes last; each bind is polled to completion before the next.
   * `always`: write them even when they read as found (LOW/HIGH: register
   * values do not prove the live binding when a LOW write alone may not bind).
   */
  restore(
    bar0: Mmio,
    found: Bar1BindState,
    timeoutMs: number,
    options?: { always?: boolean },
  ): void;
}

const PAGE = 4096;
const TARGETS = ["VID_MEM", "INVALID", "SYS_MEM_COHERENT", "SYS_MEM_NONCOHERENT"];

/** Polls a bind status (or LOW) register until BAR1 PENDING and OUTSTANDING are clear. */
function pollBind(bar0: Mmio, offset: number, name: string, timeoutMs: number): void {
  pollRegister(
    bar0,
    offset,
    name,
    (v) =>
      getField(v, BIND_STATUS.BAR1_PENDING) === 0 &&
      getField(v, BIND_STATUS.BAR1_OUTSTANDING) === 0,
    { timeoutMs, what: "BAR1 bind" },
  );
}

/** Decodes one bind register value into a state (or null for MODE physical, TARGET VID). */
function decode(
  name: string,
  value: number,
  f: { MODE: Field; TARGET: Field; PTR: Field },
  inst: (v: number) => number,
): { mode: Bar1Mode; instanceBlock: number | null; problem: string | null } {
  const mode = getField(value, f.MODE);
  const target = getField(value, f.TARGET);
  const raw = `${name} = ${hex(value, 8)}`;
  if (mode === 1) {
    return target === 0 ? { mode: "virtual", instanceBlock: inst(value), problem: null } : {
      mode: "virtual",
      instanceBlock: null,
      problem: `${raw}: virtual mode with the instance block in ${
        TARGETS[target]
      } (TARGET ${target}), not VRAM`,
    };
  }
  return {
    mode: "physical",
    instanceBlock: null,
    problem: target === 0
      ? null
      : `${raw}: physical mode with TARGET ${target} (${
        TARGETS[target]
      }): BAR1 reaches system memory, not VRAM`,
  };
}

function checkFound(found: Bar1BindState): void {
  const f = checkObject(found, "restore found");
  if (!Array.isArray(f.registers) || typeof f.via !== "string") {
    fail("EINVAL", `restore takes what read() returned, not ${describe(found)}`);
  }
  for (const r of f.registers as unknown[]) {
    const reg = checkObject(r, "a bind register");
    checkUint(reg.offset, "bind register offset");
    checkUint(reg.value, "bind register value");
  }
}

const VF_NAME = "NV_VIRTUAL_FUNCTION_PRIV_BAR1_BLOCK";
const LEGACY_NAME = "NV_PBUS_BAR1_BLOCK";
const STATUS_NAME = "NV_VIRTUAL_FUNCTION_PRIV_BIND_STATUS";

/** Turing, Ampere, Ada: the VF register and the legacy one (facts §14.1 CONFLICT). */
export const VF_BIND: Bar1BindOps = {
  kind: "vf",
  watched: [NV_VIRTUAL_FUNCTION_PRIV_BAR1_BLOCK, NV_PBUS_BAR1_BLOCK],
  read(bar0) {
    const regs = [
      { offset: NV_VIRTUAL_FUNCTION_PRIV_BAR1_BLOCK, name: VF_NAME },
      { offset: NV_PBUS_BAR1_BLOCK, name: LEGACY_NAME },
    ];
    const registers: Bar1BindState["registers"] = [];
    const states = [];
    for (const r of regs) {
      const v = readValid(bar0, r.offset);
      if (v === null) continue;
      registers.push({ offset: r.offset, value: v });
      states.push({
        via: r.name,
        ...decode(r.name, v, BAR1_BLOCK, (x) => getField(x, BAR1_BLOCK.PTR) * PAGE),
      });
    }
    if (states.length === 0) {
      return {
        mode: "virtual",
        instanceBlock: null,
        via: VF_NAME,
        registers,
        problem: `${VF_NAME} and ${LEGACY_NAME} both read PRI errors: the binding is unknown`,
      };
    }
    // Virtual if either says so (the VF register, RM's, first): the safe reading of the CONFLICT.
    const live = states.find((s) => s.mode === "virtual") ??
      states.find((s) => s.problem !== null) ??
      states[0];
    return { ...live, registers };
  },
  bind(bar0, inst, timeoutMs) {
    let v = setField(0, BAR1_BLOCK.PTR, inst / PAGE);
    v = setField(v, BAR1_BLOCK.MODE, 1);
    bar0.write32(NV_VIRTUAL_FUNCTION_PRIV_BAR1_BLOCK, v);
    pollBind(bar0, NV_VIRTUAL_FUNCTION_PRIV_BIND_STATUS, STATUS_NAME, timeoutMs);
  },
  unbind(bar0, timeoutMs) {
    // Both registers: if they are two, either could keep BAR1 virtual.
    for (const offset of [NV_VIRTUAL_FUNCTION_PRIV_BAR1_BLOCK, NV_PBUS_BAR1_BLOCK]) {
      if (bar0.read32(offset) === 0) continue;
      bar0.write32(offset, 0);
      pollBind(bar0, NV_VIRTUAL_FUNCTION_PRIV_BIND_STATUS, STATUS_NAME, timeoutMs);
    }
  },
  restore(bar0, found, timeoutMs) {
    checkFound(found);
    const live = found.via === LEGACY_NAME
      ? NV_PBUS_BAR1_BLOCK
      : NV_VIRTUAL_FUNCTION_PRIV_BAR1_BLOCK;
    const regs = [...found.registers].sort((a, b) =>
      Number(a.offset === live) - Number(b.offset === live)
    );
    for (const r of regs) {
      if (bar0.read32(r.offset) === r.value) continue;
      bar0.write32(r.offset, r.value);
      pollBind(bar0, NV_VIRTUAL_FUNCTION_PRIV_BIND_STATUS, STATUS_NAME, timeoutMs);
    }
  },
};

const LOW_NAME = "NV_VIRTUAL_FUNCTION_PRIV_FUNC_BAR1_BLOCK_LOW_ADDR";
const HIGH_NAME = "NV_VIRTUAL_FUNCTION_PRIV_FUNC_BAR1_BLOCK_HIGH_ADDR";

/** Hopper, Blackwell: LOW then HIGH (the HIGH write starts the bind), poll LOW. */
export const LOWHIGH_BIND: Bar1BindOps = {
  kind: "lowhigh",
  watched: [
    NV_VIRTUAL_FUNCTION_PRIV_FUNC_BAR1_BLOCK_LOW_ADDR,
    NV_VIRTUAL_FUNCTION_PRIV_FUNC_BAR1_BLOCK_HIGH_ADDR,
  ],
  read(bar0) {
    const lo = readValid(bar0, NV_VIRTUAL_FUNCTION_PRIV_FUNC_BAR1_BLOCK_LOW_ADDR);
    const hi = readValid(bar0, NV_VIRTUAL_FUNCTION_PRIV_FUNC_BAR1_BLOCK_HIGH_ADDR);
    if (lo === null || hi === null) {
      return {
        mode: "virtual",
        instanceBlock: null,
        via: LOW_NAME,
        registers: [],
        problem: `${lo === null ? LOW_NAME : HIGH_NAME} reads a PRI error: the binding is unknown`,
      };
    }
    // PENDING/OUTSTANDING are status: never written back.
    const low = (lo & ~3) >>> 0;
    const registers = [
      { offset: NV_VIRTUAL_FUNCTION_PRIV_FUNC_BAR1_BLOCK_LOW_ADDR, value: low },
      { offset: NV_VIRTUAL_FUNCTION_PRIV_FUNC_BAR1_BLOCK_HIGH_ADDR, value: hi },
    ];
    const s = decode(
      LOW_NAME,
      low,
      BAR1_BLOCK_LOW,
      (v) => getField(v, BAR1_BLOCK_LOW.PTR) * PAGE + hi * 2 ** 32,
    );
    return { ...s, via: LOW_NAME, registers };
  },
  bind(bar0, inst, timeoutMs) {
    let lo = setField(0, BAR1_BLOCK_LOW.PTR, (inst % 2 ** 32) / PAGE);
    lo = setField(lo, BAR1_BLOCK_LOW.MODE, 1);
    writeLowHigh(bar0, lo, Math.floor(inst / 2 ** 32), timeoutMs);
  },
  unbind(bar0, timeoutMs) {
    writeLowHigh(bar0, 0, 0, timeoutMs);
  },
  restore(bar0, found, timeoutMs, options = {}) {
    checkFound(found);
    if (found.registers.length !== 2) return; // unreadable at open: nothing safe to write back
    const [low, high] = found.registers;
    const now = [(bar0.read32(low.offset) & ~3) >>> 0, bar0.read32(high.offset)];
    if (!options.always && now[0] === low.value && now[1] === high.value) return;
    writeLowHigh(bar0, low.value, high.value, timeoutMs);
  },
};

/** LOW, then HIGH (which starts the bind), then LOW's status polled clear. */
function writeLowHigh(bar0: Mmio, low: number, high: number, timeoutMs: number): void {
  bar0.write32(NV_VIRTUAL_FUNCTION_PRIV_FUNC_BAR1_BLOCK_LOW_ADDR, low);
  bar0.write32(NV_VIRTUAL_FUNCTION_PRIV_FUNC_BAR1_BLOCK_HIGH_ADDR, high);
  pollBind(
    bar0,
    NV_VIRTUAL_FUNCTION_PRIV_FUNC_BAR1_BLOCK_LOW_ADDR,
    "BAR1_BLOCK_LOW_ADDR",
    timeoutMs,
  );
}
