/**
 * `deno task regdb`: generates the register database (`hw/regdb/<chip>.ts`)
 * from NVIDIA's published register headers.
 *
 * ```sh
 * # from git directories (a bare mirror is enough) at a recorded tag or commit
 * deno task regdb --ogkm-git /path/open-gpu-kernel-modules.git --ogkm-rev 595.45.04 \
 *   --ogd-git /path/open-gpu-doc.git --ogd-rev HEAD
 * # or from extracted checkouts (then say which tag/commit they are)
 * deno task regdb --ogkm DIR --ogkm-tag 595.45.04 --ogkm-commit SHA [--ogd DIR --ogd-commit SHA]
 * deno task regdb ... --check   # compare with the committed files instead of writing
 * ```
 *
 * CI has no headers, so it never runs this; `tests/regdb_test.ts` re-runs it
 * when the headers are on the machine and always checks each committed
 * file's own hash and provenance.
 *
 * ## What it reads
 *
 * - NVIDIA/open-gpu-kernel-modules (OGKM), `src/common/inc/swref/published/`:
 *   `dev_*.h`, `hwproject.h`, `nv_ref.h` (MIT licensed).
 * - Optionally NVIDIA/open-gpu-doc (OGD), `manuals/<family>/<chip>/*.ref.txt`
 *   (the same `#define` format, richer: e.g. NV_PFB_PRI_MMU_CTRL, which no
 *   OGKM header has). The display, HDA, PCI config, PBDMA, PMGR and graphics
 *   manuals are left out (large and outside novamm's reach).
 *
 * ## Which headers make a chip
 *
 * NVIDIA publishes per chip only the headers (and often only the registers)
 * that differ from the chip RM's HAL derives it from, so a chip is its own
 * directory, then its ancestors' ({@linkcode CHAINS}), then a few named files
 * from other generations that RM itself uses on that chip ({@linkcode EXTRAS},
 * each with its reason), then `nv_ref.h`. They merge **register by register**:
 * where two files define the same register name, the earlier one wins (a
 * newer chip's `dev_vm.h` holding one register does not hide its parent's
 * hundred); fields and values merge by name the same way. Every register
 * keeps the file it came from.
 *
 * ## The define conventions
 *
 * `#define NAME VALUE /* ACCESS *\/` where ACCESS is five characters:
 * readable (`R`, or `C` constant) / writable (`W`) / reset class (`I` at
 * power-on, `E`, `B`, `D`, `C`, `A` in other reset domains, `X` undefined) /
 * size (`4` bytes for a register) or value kind / kind (`R` register, `A`
 * indexed register, `F` field, `V` value, `D` device range).
 *
 * - register: VALUE is an offset and ACCESS ends in R, or (no ACCESS) a hex
 *   offset with no field above it in the name;
 * - indexed register: `NAME(i)` `(0x100+(i)*4)` (also `(i,j)`), bounds from
 *   `NAME__SIZE_1` / `__SIZE_2`;
 * - field: VALUE `hi:lo`; its register is the longest register name that is
 *   a prefix of it (`_ZB` is ignored when matching: zero-based headers name
 *   fields without it);
 * - value: a number under a field (`_ENUM 0x1 /* RW--V *\/`); a value whose
 *   ACCESS has a reset class (third character not `-`/`X`) is that field's
 *   reset value (`_INIT`, `_RESET`). `_SHIFT`, `_ALIGNMENT`, `_MASK` and
 *   `__...` defines are constants, not values, and are left out.
 *
 * ## Base offsets ({@linkcode BASES})
 *
 * Zero-based (`_ZB`) and mirrored headers give offsets inside a block; the
 * generator adds the block's BAR0 base, each from the header that states it.
 * Registers of per-instance blocks (falcon, RISC-V, FBIF, PBDMA, CE, context
 * images) have no single BAR0 address: they keep their relative offset and a
 * `space` name, are found by name, and never by offset.
 *
 * @module
 */

import { parseArgs } from "node:util";

/** Bumped when the output format or the parsing rules change. */
export const GENERATOR_VERSION = 1;

/** Output format version (the `format` in each file's META). */
export const FORMAT_VERSION = 1;

/** The chips (families) written, with the names novamm uses for them. */
export const FAMILIES: Readonly<Record<string, string>> = {
  tu102: "TU10x",
  ga100: "GA100",
  ga102: "GA10x",
  ad102: "AD10x",
  gh100: "GH100",
  gb100: "GB10x",
  gb202: "GB20x",
};

/** Each chip's OGKM directory chain (under `published/`), own directory first. */
export const CHAINS: Readonly<Record<string, readonly string[]>> = {
  tu102: ["turing/tu102", "turing/tu104"],
  ga100: ["ampere/ga100", "turing/tu102", "turing/tu104"],
  ga102: ["ampere/ga102", "ampere/ga100", "turing/tu102", "turing/tu104"],
  ad102: ["ada/ad102", "ampere/ga102", "ampere/ga100", "turing/tu102", "turing/tu104"],
  gh100: ["hopper/gh100"],
  gb100: ["blackwell/gb100", "hopper/gh100"],
  gb202: ["blackwell/gb202", "blackwell/gb100", "hopper/gh100"],
};

/** Each chip's OGD manual directory chain (under `manuals/`); none exist for Hopper and later. */
export const OGD_CHAINS: Readonly<Record<string, readonly string[]>> = {
  tu102: ["turing/tu104"],
  ga100: ["ampere/ga100", "turing/tu104"],
  ga102: ["ampere/ga102", "ampere/ga100", "turing/tu104"],
  ad102: ["ampere/ga102", "ampere/ga100", "turing/tu104"],
  gh100: [],
  gb100: [],
  gb202: [],
};

/** The OGD directories read (every chain's). */
export const OGD_DIRS: string[] = [...new Set(Object.values(OGD_CHAINS).flat())].map((d) =>
  `manuals/${d}`
);

/** OGD manuals read (the rest are display, audio, PCI config, PBDMA, PMGR, graphics). */
const OGD_FILES = new Set([
  "dev_master.ref.txt",
  "dev_boot.ref.txt",
  "dev_bus.ref.txt",
  "dev_ctrl.ref.txt",
  "dev_fault.ref.txt",
  "dev_fifo.ref.txt",
  "dev_func.ref.txt",
  "dev_mmu_fault.ref.txt",
  "dev_runlist.ref.txt",
  "dev_timer.ref.txt",
  "dev_top.ref.txt",
  "dev_trim.ref.txt",
  "dev_usermode.ref.txt",
  "dev_vm.ref.txt",
  "pri_mmu_both.ref.txt",
  "pri_mmu_hub.ref.txt",
  "pri_mmu_hshub.ref.txt",
  "pri_mmu_gpc.ref.txt",
]);

/** Files from outside a chip's chain that RM uses on it (lower precedence than the chain). */
export const EXTRAS: Readonly<Record<string, readonly (readonly [string, string])[]>> = {
  tu102: [
    [
      "maxwell/gm107/dev_flush.h",
      "NV_UFLUSH_FB_FLUSH: RM's Turing..Ada FB flush (kbusFlush_GM107)",
    ],
    ["disp/v04_00/dev_disp.h", "NV_PDISP_VGA_WORKSPACE_BASE: kdispGetVgaWorkspaceBase_v04_00"],
  ],
  ga100: [
    [
      "maxwell/gm107/dev_flush.h",
      "NV_UFLUSH_FB_FLUSH: RM's Turing..Ada FB flush (kbusFlush_GM107)",
    ],
  ],
  ga102: [
    [
      "maxwell/gm107/dev_flush.h",
      "NV_UFLUSH_FB_FLUSH: RM's Turing..Ada FB flush (kbusFlush_GM107)",
    ],
    ["disp/v04_00/dev_disp.h", "NV_PDISP_VGA_WORKSPACE_BASE: kdispGetVgaWorkspaceBase_v04_00"],
  ],
  ad102: [
    [
      "maxwell/gm107/dev_flush.h",
      "NV_UFLUSH_FB_FLUSH: RM's Turing..Ada FB flush (kbusFlush_GM107)",
    ],
    ["disp/v04_00/dev_disp.h", "NV_PDISP_VGA_WORKSPACE_BASE: kdispGetVgaWorkspaceBase_v04_00"],
  ],
  gh100: [
    ["ampere/ga100/dev_fb.h", "RM's Hopper code includes it (NV_PFB_PRI_MMU_LOCK_*)"],
  ],
  gb100: [
    ["hopper/gh100/dev_nv_xal_ep_zb.h", "the XAL FB flush memops: RM's Blackwell code includes it"],
  ],
  gb202: [
    ["hopper/gh100/dev_nv_xal_ep_zb.h", "the XAL FB flush memops: RM's Blackwell code includes it"],
    ["disp/v04_00/dev_disp.h", "NV_PDISP_VGA_WORKSPACE_BASE: kdispGetVgaWorkspaceBase_v04_00"],
  ],
};

/** The PRI error code table (NV_PPRIV_SYS_PRI_ERROR_CODE, used by RM on every chip). */
export const PRI_ERROR_HEADER = "maxwell/gm107/dev_pri_ringstation_sys.h";

/**
 * How one block's offsets become BAR0 offsets. `file` matches a header's
 * name; `prefix` the register names; `base` is a number or the name of a
 * hwproject.h / device-range define that holds it; `below` (optional) only
 * rebases offsets under it (a few headers mix zero-based and absolute
 * offsets); `space` (instead of a base) keeps the block relative.
 */
export interface BaseRule {
  /** Header file name (basename). */
  readonly file: RegExp;
  /** Register name prefix. */
  readonly prefix: string;
  /** The base: a number, or a define (hwproject.h or a `D` range) that gives it. */
  readonly base?: number | string;
  /** Only offsets below this are rebased. */
  readonly below?: number;
  /** A relative space (no single BAR0 address). */
  readonly space?: string;
  /** Why, for the file's documentation. */
  readonly why: string;
}

/** The base rules, first match wins. */
export const BASES: readonly BaseRule[] = [
  {
    file: /^dev_vm\.h$/,
    prefix: "NV_VIRTUAL_FUNCTION",
    base: 0xb80000,
    below: 0x40000,
    why: "VF register space seen by the PF at NV_VIRTUAL_FUNCTION_FULL_PHYS_OFFSET " +
      "0xB80000 (tu102/gb100 dev_vm.h D range 0xBBFFFF:0xB80000); novamm's 0xB830A0, 0xB80F40",
  },
  {
    file: /^dev_vm\.h$/,
    prefix: "NV_VIRTUAL_FUNCTION",
    space: "vf",
    why: "VF offsets past 0x3FFFF (Blackwell JUMBO/REGION5): no PF mirror in the headers",
  },
  {
    file: /^dev_vm\.ref\.txt$/,
    prefix: "NV_VIRTUAL_FUNCTION",
    base: 0xb80000,
    below: 0x40000,
    why: "as dev_vm.h (OGD manuals give VF-relative offsets)",
  },
  {
    file: /^dev_nv_xal_ep_zb\.h$/,
    prefix: "NV_XAL_EP",
    base: "NV_XAL_BASE_ADDRESS",
    below: 0x1000,
    why: "XAL block (gh100 hwproject.h NV_XAL_BASE_ADDRESS 0x10F000; RM's Blackwell code " +
      "includes that header for it); gb100 also gives some absolute offsets (0x10F808..)",
  },
  {
    file: /^dev_nv_xal_ep_p2p_zb\.h$/,
    prefix: "NV_XAL_EP_P2P",
    base: "NV_XAL_P2P_BASE_ADDRESS",
    below: 0x1000,
    why: "XAL P2P block (gh100 hwproject.h NV_XAL_P2P_BASE_ADDRESS 0x826000)",
  },
  {
    file: /^dev_xtl_ep_pri\.h$/,
    prefix: "NV_XTL_EP_PRI",
    base: "NV_XTL_BASE_ADDRESS",
    why: "XTL block (hwproject.h NV_XTL_BASE_ADDRESS: gh100 0x91000, gb202 0x8A000)",
  },
  {
    file: /^dev_xtl_ep_pcfg_gpu\.h$/,
    prefix: "NV_EP_PCFG_GPU",
    base: "NV_EP_PCFGM",
    why: "PCI config space mirror (dev_xtl_ep_pri.h D range NV_EP_PCFGM 0x92000; " +
      "RM reads it at DEVICE_BASE(NV_EP_PCFGM) + offset)",
  },
  {
    file: /^dev_xtl_ep_pcfg_gpu\.h$/,
    prefix: "NV_EP_PCFG_GPU",
    space: "pcfg",
    why: "PCI config space (no NV_EP_PCFGM mirror base in this chip's headers)",
  },
  {
    file: /^dev_nv_xve\.h$/,
    prefix: "NV_XVE",
    base: "NV_PCFG",
    why: "PCI config space mirror (dev_nv_xve.h D range NV_PCFG 0x88000; " +
      "RM reads it at DEVICE_BASE(NV_PCFG) + offset)",
  },
  {
    file: /^dev_nv_xpl\.h$/,
    prefix: "NV_XPL",
    base: "NV_XPL_BASE_ADDRESS",
    why: "XPL block (gh100 hwproject.h NV_XPL_BASE_ADDRESS 0x84000)",
  },
  {
    file: /^dev_fuse_zb\.h$/,
    prefix: "NV_FUSE",
    base: "NV_FUSE0_PRI_BASE",
    why: "fuse block (hwproject.h NV_FUSE0_PRI_BASE 0x820000)",
  },
  {
    file: /^dev_boot_zb\.h$/,
    prefix: "NV_PMC",
    base: "NV_PMC0_PRI_BASE",
    why: "PMC block (gb100/gb202 hwproject.h NV_PMC0_PRI_BASE 0x0)",
  },
  {
    file: /^dev_bus_zb\.h$/,
    prefix: "NV_PBUS",
    base: "NV_PBUS0_PRI_BASE",
    why: "PBUS block (gb100 hwproject.h NV_PBUS0_PRI_BASE 0x1000)",
  },
  {
    file: /^dev_hubmmu_base\.h$/,
    prefix: "NV_HUBMMU",
    base: "NV_HUBMMU0_PRI_BASE",
    why: "HUBMMU block (gb100 hwproject.h NV_HUBMMU0_PRI_BASE 0x880000; novamm's WPR2 0x88A824)",
  },
  {
    file: /^dev_ltc_zb\.h$/,
    prefix: "NV_PLTC",
    base: "NV_LTC_PRI_BASE",
    why: "LTC0 (gb100 hwproject.h NV_LTC_PRI_BASE 0x140000; other LTCs at NV_LTC_PRI_STRIDE)",
  },
  {
    file: /^dev_tmr\.h$/,
    prefix: "NV_TMR",
    base: "NV_PTIMER0_PRI_BASE",
    why: "timer block (gb100 hwproject.h NV_PTIMER0_PRI_BASE 0x9000)",
  },
  {
    file: /^nv_ref\.h$/,
    prefix: "NV_CONFIG_PCI",
    space: "pcfg",
    why: "PCI config space offsets (nv_ref.h), not BAR0",
  },
  { file: /^dev_falcon_v4/, prefix: "NV_P", space: "falcon", why: "per falcon (GSP, SEC2, ...)" },
  { file: /^dev_falcon_second/, prefix: "NV_P", space: "falcon2", why: "per falcon" },
  { file: /^dev_fbif_v4/, prefix: "NV_P", space: "fbif", why: "per falcon FBIF" },
  { file: /^dev_riscv_pri/, prefix: "NV_P", space: "riscv", why: "per RISC-V core" },
  { file: /^dev_esched_pbdma/, prefix: "NV_PBDMA", space: "pbdma", why: "per PBDMA" },
  { file: /^dev_ce_base/, prefix: "NV_CE", space: "ce", why: "per copy engine" },
  { file: /^dev_runlist/, prefix: "NV_", space: "runlist", why: "per runlist (CHRAM)" },
  { file: /^dev_ctxsw_prog/, prefix: "NV_", space: "ctxsw", why: "context image, not MMIO" },
  { file: /^dev_ram/, prefix: "NV_", space: "ramin", why: "instance block in memory, not MMIO" },
  { file: /^dev_mmu\./, prefix: "NV_", space: "mmu", why: "page-table entries, not MMIO" },
  { file: /^dev_nv_xve3g_vf/, prefix: "NV_", space: "pcfg", why: "VF PCI config space" },
  {
    file: /^dev_nv_pcfg|^dev_pcfg_pf0|^dev_nv_pcie_config/,
    prefix: "NV_",
    space: "pcfg",
    why: "PCI config space",
  },
  {
    file: /_zb(_addendum)?\.h$/,
    prefix: "NV_",
    space: "zb",
    why: "zero-based block, base unknown",
  },
  { file: /^dev_top_addendum/, prefix: "NV_PTOP_ZB", space: "zb", why: "zero-based, base unknown" },
];

// --- reading sources -----------------------------------------------------------

/** Where one repository's files come from. */
export interface Source {
  /** `NVIDIA/open-gpu-kernel-modules` or `NVIDIA/open-gpu-doc`. */
  repo: string;
  /** Tag, when the commit has one (else ""). */
  tag: string;
  /** Full commit id. */
  commit: string;
  /** Reads a file under the repository root; null when absent. */
  read(path: string): string | null;
  /** Names in a directory under the repository root (files only); [] when absent. */
  list(dir: string): string[];
}

function git(gitDir: string, args: string[]): string {
  const out = new Deno.Command("git", { args: ["--git-dir", gitDir, ...args] }).outputSync();
  if (!out.success) {
    throw new Error(`git ${args.join(" ")}: ${new TextDecoder().decode(out.stderr).trim()}`);
  }
  return new TextDecoder().decode(out.stdout);
}

/**
 * A source read from a git directory at `rev`: one `git archive` of `paths`,
 * extracted to a temporary directory, read into memory, and removed.
 */
export function gitSource(repo: string, gitDir: string, rev: string, paths: string[]): Source {
  const commit = git(gitDir, ["rev-parse", `${rev}^{commit}`]).trim();
  let tag = "";
  try {
    tag = git(gitDir, ["describe", "--tags", "--exact-match", commit]).trim();
  } catch {
    tag = "";
  }
  const tmp = Deno.makeTempDirSync({ prefix: "regdb-" });
  const files = new Map<string, string>();
  try {
    const tarFile = `${tmp}/archive.tar`;
    git(gitDir, ["archive", "--format=tar", "-o", tarFile, commit, ...paths]);
    const tar = new Deno.Command("tar", { args: ["-xf", tarFile, "-C", tmp] }).outputSync();
    if (!tar.success) throw new Error(`tar -xf ${tarFile} failed`);
    const walk = (dir: string) => {
      for (const e of Deno.readDirSync(`${tmp}/${dir}`)) {
        const p = dir === "" ? e.name : `${dir}/${e.name}`;
        if (e.isDirectory) walk(p);
        else if (e.isFile && p !== "archive.tar") {
          files.set(p, Deno.readTextFileSync(`${tmp}/${p}`));
        }
      }
    };
    walk("");
  } finally {
    Deno.removeSync(tmp, { recursive: true });
  }
  return {
    repo,
    tag,
    commit,
    read: (path) => files.get(path) ?? null,
    list: (dir) =>
      [...files.keys()].filter((p) =>
        p.startsWith(`${dir}/`) && !p.slice(dir.length + 1).includes("/")
      )
        .map((p) => p.slice(dir.length + 1)).sort(),
  };
}

function readIn(root: string, path: string): string | null {
  try {
    return Deno.readTextFileSync(`${root}/${path}`);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw e;
  }
}

function listIn(root: string, dir: string): string[] {
  try {
    return [...Deno.readDirSync(`${root}/${dir}`)].filter((e) => e.isFile).map((e) => e.name)
      .sort();
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return [];
    throw e;
  }
}

/** A source read from an extracted checkout at `root` (tag and commit as recorded by the caller). */
export function dirSource(repo: string, root: string, tag: string, commit: string): Source {
  return {
    repo,
    tag,
    commit,
    read: (path) => readIn(root, path),
    list: (dir) => listIn(root, dir),
  };
}

// --- parsing -------------------------------------------------------------------

/** One `#define` line. */
interface Define {
  name: string;
  params: string[] | null;
  value: string;
  access: string;
}

const DEFINE_RE = /^\s*#define\s+([A-Za-z_][A-Za-z0-9_]*)(\([a-z, ]*\))?\s+(.*?)\s*$/;
const ACCESS_RE = /\/\*\s*([-A-Z0-9]{5})?\s*\*\/\s*$/;

function parseDefines(text: string): Define[] {
  const out: Define[] = [];
  for (const line of text.split("\n")) {
    const m = DEFINE_RE.exec(line);
    if (m === null) continue;
    let value = m[3];
    let access = "";
    const a = ACCESS_RE.exec(value);
    if (a !== null) {
      access = a[1] ?? "";
      value = value.slice(0, a.index).trim();
    } else if (value.includes("/*") || value.includes("//")) {
      value = value.replace(/\/\*.*$|\/\/.*$/, "").trim();
    }
    const params = m[2] ? m[2].slice(1, -1).split(",").map((p) => p.trim()) : null;
    out.push({ name: m[1], params, value, access });
  }
  return out;
}

/** Evaluates `+ - * ( )` over integers and the named variables; null when it is anything else. */
function evaluate(expr: string, vars: Record<string, number>): number | null {
  const tokens = expr.match(/0x[0-9a-fA-F]+|\d+|[a-z]+|[-+*()]|\S/g) ?? [];
  let i = 0;
  const num = (): number | null => {
    const t = tokens[i++];
    if (t === undefined) return null;
    if (t === "(") {
      const v = sum();
      if (tokens[i++] !== ")") return null;
      return v;
    }
    if (/^0x/.test(t)) return parseInt(t, 16);
    if (/^\d+$/.test(t)) return parseInt(t, 10);
    if (/^[a-z]+$/.test(t) && t in vars) return vars[t];
    return null;
  };
  const product = (): number | null => {
    let v = num();
    while (v !== null && tokens[i] === "*") {
      i++;
      const r = num();
      v = r === null ? null : v * r;
    }
    return v;
  };
  const sum = (): number | null => {
    let v = product();
    while (v !== null && (tokens[i] === "+" || tokens[i] === "-")) {
      const op = tokens[i++];
      const r = product();
      v = r === null ? null : op === "+" ? v + r : v - r;
    }
    return v;
  };
  const v = sum();
  return i === tokens.length ? v : null;
}

function scalar(value: string): number | null {
  const v = value.replace(/^\((.*)\)$/, "$1").replace(/[uUlL]+$/, "").trim();
  if (/^0x[0-9a-fA-F]+$/.test(v)) return parseInt(v, 16);
  if (/^\d+$/.test(v)) return parseInt(v, 10);
  return null;
}

/** Canonical name for matching fields to registers: the first `_ZB` dropped. */
function canon(name: string): string {
  return name.replace(/_ZB(?=_|$)/, "");
}

/**
 * The longest key of `map` that is a `_`-bounded proper prefix of `name`:
 * as written first, then in canonical form (`_ZB` dropped). Returns the key
 * and the rest of the name after it.
 */
function longestPrefix<T>(map: Map<string, T>, name: string): [string, T, string] | null {
  for (const n of name === canon(name) ? [name] : [name, canon(name)]) {
    for (let k = n.lastIndexOf("_"); k > 3; k = n.lastIndexOf("_", k - 1)) {
      const hit = map.get(n.slice(0, k));
      if (hit !== undefined) return [n.slice(0, k), hit, n.slice(k + 1)];
    }
  }
  return null;
}

/** Sets `key` (an exact name) and its canonical form (unless an exact name holds it). */
function setBoth<T>(map: Map<string, T>, exact: Set<string>, key: string, value: T): void {
  map.set(key, value);
  exact.add(key);
  const c = canon(key);
  if (c !== key && !exact.has(c)) map.set(c, value);
}

/** A value row: name, value, access. */
type ValueRow = [string, number, string];
/** A field row: name, hi, lo, access, values. */
type FieldRow = [string, number, number, string, ValueRow[]];

interface Reg {
  name: string;
  offset: number;
  access: string;
  file: number;
  space: string;
  dims: [number, number][];
  fields: Map<string, FieldRow>;
  rawOffset: number;
}

interface FileInput {
  /** `ogkm:turing/tu102/dev_bus.h`-style label (repository key + path under its root dir). */
  label: string;
  basename: string;
  text: string;
}

/** True when some field name in `fields` has `name` (canonical) as its register prefix. */
function hasField(fields: Set<string>, name: string): boolean {
  const c = canon(name) + "_";
  for (const f of fields) if (f.startsWith(c)) return true;
  return false;
}

const CONSTANT_SUFFIX = /_(SHIFT|ALIGNMENT|MASK|WIDTH|SIZE)$/;
const BAR0_SIZE = 0x1000000;

/** The registers of one chip from its files (in precedence order). */
function buildChip(
  files: FileInput[],
  symbols: Map<string, number>,
): { regs: Reg[]; bases: string[]; orphans: number } {
  const regs = new Map<string, Reg>(); // by exact name, and canonical name where free
  const exactRegs = new Set<string>();
  const order: Reg[] = [];
  const usedBases = new Set<string>();
  let orphans = 0;
  // Device ranges (D) from every file first: a base may be defined in another file.
  for (const f of files) {
    for (const d of parseDefines(f.text)) {
      const m = /^(0x[0-9a-fA-F]+):(0x[0-9a-fA-F]+)$/.exec(d.value);
      if (m !== null && !symbols.has(d.name)) symbols.set(d.name, parseInt(m[2], 16));
    }
  }
  const place = (f: FileInput, name: string, raw: number) => {
    for (const r of BASES) {
      if (!r.file.test(f.basename) || !name.startsWith(r.prefix)) continue;
      // Past `below` the header already gives the BAR0 offset.
      if (r.below !== undefined && raw >= r.below) return { offset: raw, space: "", rule: null };
      if (r.space !== undefined) return { offset: raw, space: r.space, rule: r };
      const base = typeof r.base === "number" ? r.base : symbols.get(r.base!);
      // A base the chip's headers do not give: keep the register relative, never guess.
      if (base === undefined) return { offset: raw, space: "unresolved", rule: r };
      return { offset: base + raw, space: "", rule: r };
    }
    return { offset: raw, space: "", rule: null };
  };
  files.forEach((f, fileIndex) => {
    const defs = parseDefines(f.text);
    const fieldNames = new Set(
      defs.filter((d) => d.params === null && /^\d+:\d+$/.test(d.value)).map((d) => canon(d.name)),
    );
    // Pass 1: registers.
    for (const d of defs) {
      if (d.name.includes("__") || !d.name.startsWith("NV")) continue;
      const kind = d.access.slice(4);
      let raw: number | null = null;
      let dims: [number, number][] = [];
      if (d.params !== null) {
        if (kind !== "" && kind !== "A") continue;
        const vars = Object.fromEntries(d.params.map((p) => [p, 0]));
        const b = evaluate(d.value, vars);
        if (b === null) continue;
        dims = d.params.map((p) => {
          const one = evaluate(d.value, { ...vars, [p]: 1 });
          return [one === null ? 0 : one - b, 0] as [number, number];
        });
        if (dims.some(([s]) => s < 4 || s % 4 !== 0)) continue; // bit indexes, not registers
        raw = b;
      } else {
        const v = scalar(d.value);
        if (v === null) continue;
        if (kind === "R") raw = v;
        else if (
          d.access === "" && /^\(?0x[0-9a-fA-F]{3,}/.test(d.value) &&
          hasField(fieldNames, d.name) &&
          longestPrefix(new Map([...fieldNames].map((n) => [n, 1])), d.name) === null &&
          !/_(INIT|RESET|DEFAULT)$/.test(d.name) && !CONSTANT_SUFFIX.test(d.name)
        ) raw = v;
        else continue;
      }
      if (raw % 4 !== 0 || raw >= BAR0_SIZE) continue;
      if (exactRegs.has(d.name)) continue; // an earlier file defined it
      const { offset, space, rule } = place(f, d.name, raw);
      if (rule !== null) {
        const why = space === "unresolved"
          ? `base ${String(rule.base)} is not in this chip's headers: kept relative`
          : rule.why;
        usedBases.add(`${rule.prefix}* in ${f.basename}: ${why}`);
      }
      const reg: Reg = {
        name: d.name,
        offset,
        access: d.access,
        file: fileIndex,
        space,
        dims,
        fields: new Map(),
        rawOffset: raw,
      };
      setBoth(regs, exactRegs, d.name, reg);
      order.push(reg);
    }
  });
  // Aliases: `#define NV_A NV_B` or `NV_B(3)` (an addendum naming a register or an instance).
  files.forEach((f, fileIndex) => {
    for (const d of parseDefines(f.text)) {
      const m = /^(NV\w+?)(?:\((\d+)\))?$/.exec(d.value);
      if (d.params !== null || m === null || exactRegs.has(d.name)) continue;
      const target = regs.get(m[1]) ?? regs.get(canon(m[1]));
      if (target === undefined) continue;
      const i = m[2] === undefined ? 0 : Number(m[2]);
      if ((m[2] === undefined) !== (target.dims.length === 0)) continue;
      const reg: Reg = {
        name: d.name,
        offset: target.offset + (target.dims.length > 0 ? i * target.dims[0][0] : 0),
        access: target.access,
        file: fileIndex,
        space: target.space,
        dims: [],
        fields: new Map(),
        rawOffset: target.rawOffset,
      };
      setBoth(regs, exactRegs, d.name, reg);
      order.push(reg);
    }
  });
  // Bounds of indexed registers (`__SIZE_1`, `__SIZE_2`), from any file; the first wins.
  for (const f of files) {
    for (const d of parseDefines(f.text)) {
      const m = /^(.*)__SIZE_([12])$/.exec(d.name);
      if (m === null) continue;
      const reg = regs.get(m[1]) ?? regs.get(canon(m[1]));
      const n = scalar(d.value);
      const dim = reg?.dims[Number(m[2]) - 1];
      if (dim !== undefined && n !== null && dim[1] === 0) dim[1] = n;
    }
  }
  // Pass 2: fields, then values, over every file (fields may sit in an addendum).
  const fieldsByKey = new Map<string, FieldRow>();
  const exactFields = new Set<string>();
  for (const f of files) {
    for (const d of parseDefines(f.text)) {
      if (d.params !== null || d.name.includes("__")) continue;
      const m = /^(\d+):(\d+)$/.exec(d.value);
      if (m === null) continue;
      const hi = Number(m[1]);
      const lo = Number(m[2]);
      if (hi < lo || hi > 31) continue;
      const parent = longestPrefix(regs, d.name);
      if (parent === null) {
        orphans++;
        continue;
      }
      const [, reg, fname] = parent;
      if (reg.fields.has(fname)) continue;
      const row: FieldRow = [fname, hi, lo, d.access, []];
      reg.fields.set(fname, row);
      setBoth(fieldsByKey, exactFields, `${reg.name}_${fname}`, row);
    }
  }
  for (const f of files) {
    for (const d of parseDefines(f.text)) {
      if (d.params !== null || d.name.includes("__") || CONSTANT_SUFFIX.test(d.name)) continue;
      const v = scalar(d.value);
      if (v === null) continue;
      const kind = d.access.slice(4);
      if (kind !== "" && kind !== "V" && kind !== "C" && kind !== "T") continue;
      const parent = longestPrefix(fieldsByKey, d.name);
      if (parent === null) continue;
      const [, field, vname] = parent;
      if (v > 2 ** (field[1] - field[2] + 1) - 1) continue;
      if (field[4].some((x) => x[0] === vname)) continue;
      field[4].push([vname, v, d.access]);
    }
  }
  return { regs: order, bases: [...usedBases].sort(), orphans };
}

/** The PRI error codes (NV_PPRIV_SYS_PRI_ERROR_CODE values) from the published table. */
function priCodes(text: string): [string, number][] {
  const out: [string, number][] = [];
  for (const d of parseDefines(text)) {
    const m = /^NV_PPRIV_SYS_PRI_ERROR_CODE_(\w+)$/.exec(d.name);
    const v = scalar(d.value);
    if (m !== null && v !== null) out.push([m[1], v]);
  }
  return out;
}

// --- output --------------------------------------------------------------------

/** SHA-256 of a string, hex. */
export async function sha256(text: string): Promise<string> {
  const h = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return [...new Uint8Array(h)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

function resetChar(access: string): boolean {
  const c = access[2];
  return c !== undefined && c !== "-" && c !== "X";
}

/** The body (JSON text, one register a line) of one chip's file. */
function body(
  chip: string,
  files: FileInput[],
  regs: Reg[],
  bases: string[],
  pri: [string, number][],
): string {
  const lines: string[] = [];
  lines.push(`{"chip":${JSON.stringify(chip)},"family":${JSON.stringify(FAMILIES[chip])},`);
  lines.push(`"files":${JSON.stringify(files.map((f) => f.label))},`);
  lines.push(`"bases":${JSON.stringify(bases)},`);
  lines.push(`"pri":${JSON.stringify(pri)},`);
  lines.push(`"regs":[`);
  const sorted = [...regs].sort((a, b) =>
    a.space === b.space
      ? a.offset - b.offset || (a.name < b.name ? -1 : 1)
      : a.space < b.space
      ? -1
      : 1
  );
  sorted.forEach((r, i) => {
    const fields = [...r.fields.values()].sort((a, b) => a[2] - b[2] || b[1] - a[1]).map((
      [n, hi, lo, acc, vals],
    ) => {
      // Reset values first (the loader takes the first), then by value.
      const vs = [...vals].sort((a, b) =>
        Number(resetChar(b[2])) - Number(resetChar(a[2])) || a[1] - b[1] || (a[0] < b[0] ? -1 : 1)
      );
      return vs.length === 0 ? [n, hi, lo, acc] : [n, hi, lo, acc, vs];
    });
    const row: unknown[] = [r.name, r.offset, r.access, r.file, fields];
    if (r.dims.length > 0 || r.space !== "") row.push(r.dims);
    if (r.space !== "") row.push(r.space);
    lines.push(JSON.stringify(row) + (i === sorted.length - 1 ? "" : ","));
  });
  lines.push(`]}`);
  return lines.join("\n");
}

/** One generated chip file: its text and what it holds. */
export interface GeneratedChip {
  /** Family key (`ga102`). */
  chip: string;
  /** The `.ts` file text. */
  text: string;
  /** Registers in it. */
  registers: number;
  /** Fields without a register in the headers (dropped). */
  orphans: number;
}

/** Generates every chip's file text from the sources (OGD optional). */
export async function generate(ogkm: Source, ogd: Source | null): Promise<GeneratedChip[]> {
  const P = "src/common/inc/swref/published";
  const priText = ogkm.read(`${P}/${PRI_ERROR_HEADER}`);
  if (priText === null) throw new Error(`${P}/${PRI_ERROR_HEADER} is missing from the OGKM source`);
  const pri = priCodes(priText);
  const out: GeneratedChip[] = [];
  for (const chip of Object.keys(FAMILIES)) {
    const files: FileInput[] = [];
    const symbols = new Map<string, number>();
    for (const dir of CHAINS[chip]) {
      // Every hwproject.h of the chain gives bases (the chip's own first).
      const hw = ogkm.read(`${P}/${dir}/hwproject.h`);
      for (const d of hw === null ? [] : parseDefines(hw)) {
        const v = scalar(d.value);
        if (v !== null && !symbols.has(d.name)) symbols.set(d.name, v);
      }
      for (const name of ogkm.list(`${P}/${dir}`)) {
        if (!name.endsWith(".h")) continue;
        const text = ogkm.read(`${P}/${dir}/${name}`)!;
        files.push({ label: `ogkm:${dir}/${name}`, basename: name, text });
      }
    }
    if (ogd !== null) {
      for (const dir of OGD_CHAINS[chip]) {
        for (const name of ogd.list(`manuals/${dir}`)) {
          if (!OGD_FILES.has(name)) continue;
          const text = ogd.read(`manuals/${dir}/${name}`)!;
          files.push({ label: `ogd:${dir}/${name}`, basename: name, text });
        }
      }
    }
    for (const [path] of EXTRAS[chip]) {
      const text = ogkm.read(`${P}/${path}`);
      if (text === null) throw new Error(`${P}/${path} is missing`);
      files.push({ label: `ogkm:${path}`, basename: path.split("/").pop()!, text });
    }
    // Blackwell's XAL base: RM takes it from gh100's hwproject.h.
    if (chip.startsWith("gb") && !symbols.has("NV_XAL_BASE_ADDRESS")) {
      for (const d of parseDefines(ogkm.read(`${P}/hopper/gh100/hwproject.h`)!)) {
        const v = scalar(d.value);
        if (v !== null && d.name.startsWith("NV_XAL_") && !symbols.has(d.name)) {
          symbols.set(d.name, v);
        }
      }
    }
    files.push({ label: "ogkm:nv_ref.h", basename: "nv_ref.h", text: ogkm.read(`${P}/nv_ref.h`)! });
    const { regs, bases, orphans } = buildChip(files, symbols);
    const b = body(chip, files, regs, bases, pri);
    const hash = await sha256(b);
    const sources = [ogkm, ...(ogd === null ? [] : [ogd])].map((s) =>
      [
        `    {`,
        `      repo: ${JSON.stringify(s.repo)},`,
        `      tag: ${JSON.stringify(s.tag)},`,
        `      commit: "${s.commit}",`,
        `    },`,
      ].join("\n")
    );
    const text = [
      `// Generated by tools/gen_regdb.ts from NVIDIA's published register headers. Do not edit:`,
      `// regenerate with \`deno task regdb\` (see tools/gen_regdb.ts).`,
      `// The headers are MIT licensed: Copyright (c) NVIDIA CORPORATION & AFFILIATES.`,
      ``,
      `/** Where this data came from; \`sha256\` is the hash of {@linkcode BODY}. */`,
      `export const META = {`,
      `  chip: ${JSON.stringify(chip)},`,
      `  format: ${FORMAT_VERSION},`,
      `  generator: ${GENERATOR_VERSION},`,
      `  sources: [`,
      ...sources,
      `  ],`,
      `  registers: ${regs.length},`,
      `  sha256: "${hash}",`,
      `} as const;`,
      ``,
      `/** The database as JSON text (parsed on first use by hw/regdb/mod.ts). */`,
      `export const BODY: string = String.raw\`${b}\`;`,
      ``,
    ].join("\n");
    out.push({ chip, text, registers: regs.length, orphans });
  }
  return out;
}

// --- command line --------------------------------------------------------------

const HELP =
  `deno task regdb (--ogkm-git DIR --ogkm-rev REV | --ogkm DIR --ogkm-tag T --ogkm-commit C)
                [--ogd-git DIR --ogd-rev REV | --ogd DIR --ogd-commit C] [--out DIR] [--check]`;

async function main(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      "ogkm-git": { type: "string" },
      "ogkm-rev": { type: "string" },
      "ogkm": { type: "string" },
      "ogkm-tag": { type: "string", default: "" },
      "ogkm-commit": { type: "string" },
      "ogd-git": { type: "string" },
      "ogd-rev": { type: "string" },
      "ogd": { type: "string" },
      "ogd-tag": { type: "string", default: "" },
      "ogd-commit": { type: "string" },
      out: { type: "string", default: new URL("../hw/regdb", import.meta.url).pathname },
      check: { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
    },
    strict: true,
  });
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  const OGKM = "NVIDIA/open-gpu-kernel-modules";
  const OGD = "NVIDIA/open-gpu-doc";
  let ogkm: Source;
  if (values["ogkm-git"] !== undefined) {
    ogkm = gitSource(OGKM, values["ogkm-git"], values["ogkm-rev"] ?? "HEAD", [
      "src/common/inc/swref/published",
    ]);
  } else if (values.ogkm !== undefined && values["ogkm-commit"] !== undefined) {
    ogkm = dirSource(OGKM, values.ogkm, values["ogkm-tag"], values["ogkm-commit"]);
  } else {
    console.error(HELP);
    return 2;
  }
  let ogd: Source | null = null;
  if (values["ogd-git"] !== undefined) {
    ogd = gitSource(OGD, values["ogd-git"], values["ogd-rev"] ?? "HEAD", OGD_DIRS);
  } else if (values.ogd !== undefined) {
    if (values["ogd-commit"] === undefined) {
      console.error("--ogd needs --ogd-commit");
      return 2;
    }
    ogd = dirSource(OGD, values.ogd, values["ogd-tag"], values["ogd-commit"]);
  }
  const chips = await generate(ogkm, ogd);
  let differ = 0;
  for (const c of chips) {
    const path = `${values.out}/${c.chip}.ts`;
    if (values.check) {
      let old = "";
      try {
        old = Deno.readTextFileSync(path);
      } catch { /* absent */ }
      if (old !== c.text) {
        differ++;
        console.log(`${path}: differs from what the headers give`);
      }
    } else {
      Deno.writeTextFileSync(path, c.text);
    }
    console.log(
      `${c.chip}: ${c.registers} registers, ${(c.text.length / 1024).toFixed(0)} KiB` +
        (c.orphans > 0 ? ` (${c.orphans} fields without a register dropped)` : ""),
    );
  }
  return differ === 0 ? 0 : 1;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
