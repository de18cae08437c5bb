/**
 * Verify: compares a shadow tree ({@linkcode ShadowTree}) with what VRAM
 * holds and lists every 64-bit word that differs, with its level, index,
 * table address, the VA the entry covers, the word expected (the shadow) and
 * the word found (VRAM), both decoded. `Vmm.verify()` is the entry point; a
 * BAR address space also checks the page-directory words of its instance
 * block ({@linkcode verifyInstanceBlock}).
 *
 * What is compared, per table the shadow holds:
 * - only tables already in VRAM (`written`): a table a pending prepare made
 *   is not there yet, and neither is anything below it;
 * - the entries the address space can reach (those whose VA starts below
 *   `vaSize`), read in one bulk call per table, as the firmware scan reads
 *   them (`scan.ts`): the same number of MMIO reads;
 * - a link to a child that is not in VRAM yet is expected as zero (the
 *   mapper writes it as zero until the child is complete: `mapper.ts`);
 * - at PD0 both 64-bit words of the 128-bit dual entry, each on its own (the
 *   big-page half is the low word, the small-page half the high word); a
 *   difference names the half and prints the whole entry decoded.
 *
 * Nothing is written. Ctrl-C is heard once per table ({@linkcode workStep}).
 *
 * @module
 */

import { checkObject, checkOptions, checkUint } from "../../hw/validate.ts";
import { describe, fail, hex } from "../../hw/errors.ts";
import { instanceBlockWords, pdbWord } from "../../hw/family/instance_block.ts";
import type { InstanceBlockRules } from "../../hw/family/types.ts";
import {
  getField,
  NV_RAMIN_ADR_LIMIT_HI,
  NV_RAMIN_ADR_LIMIT_LO,
  NV_RAMIN_PAGE_DIR_BASE_HI,
  NV_RAMIN_PAGE_DIR_BASE_LO,
  RAMIN_PDB,
} from "../../hw/regs.ts";
import { VRAM_ADDRESS_LIMIT } from "../types.ts";
import type { DecodedDualPde, DecodedPde, DecodedPte, MmuFormat } from "./format.ts";
import { BIG_HALF, dualSlot, type PtTable, type ShadowTree, workDone, workStep } from "./tree.ts";
import { tableFits } from "./walk.ts";

/** Bulk source of 32-bit VRAM words (a PRAMIN window provides this). */
export interface WordReader {
  /** Reads `count` 32-bit words at VRAM byte address `addr` (4-byte aligned) into `out`. */
  readWords(addr: number, count: number, out?: Uint32Array): Uint32Array;
}

/** One 64-bit page-table word that VRAM holds differently from the shadow. */
export interface VerifyDifference {
  /** Level name of the table (`PD3`, `PD0`, `PT64K`, `PT`, ...). */
  level: string;
  /** Entry index in the table. */
  index: number;
  /** At PD0, the half of the 128-bit entry whose word differs; null elsewhere. */
  half: "big" | "small" | null;
  /** VRAM address of the table. */
  tableAddress: number;
  /** VRAM address of the 64-bit word that differs. */
  entryAddress: number;
  /** First VA the entry covers. */
  va: bigint;
  /** Bytes of VA the entry covers. */
  vaSize: number;
  /** The word the shadow holds (what novamm wrote or scanned). */
  expected: bigint;
  /** The word VRAM holds. */
  found: bigint;
  /** The entry decoded from the shadow (at PD0 the whole 128-bit entry, or its 2 MiB PTE). */
  expectedDecoded: DecodedPte | DecodedPde | DecodedDualPde;
  /** The entry decoded from VRAM. */
  foundDecoded: DecodedPte | DecodedPde | DecodedDualPde;
}

/** One instance-block word that does not hold what the address space needs. */
export interface InstanceBlockDifference {
  /** Register-style name of the word (`NV_RAMIN_PAGE_DIR_BASE_LO`). */
  name: string;
  /** VRAM address of the word. */
  address: number;
  /** The word expected. */
  expected: number;
  /** The word found. */
  found: number;
  /** The fields that differ, `NAME expected -> found` (PAGE_DIR_BASE_LO only). */
  fields: string[];
}

/** What {@linkcode verifyTree} found. */
export interface VerifyReport {
  /** The address space (for the printed header). */
  name: string;
  /** Its root. */
  pdb: number;
  /** Tables compared (in VRAM and in the shadow). */
  tables: number;
  /** 64-bit words compared. */
  words: number;
  /** Tables of pending prepares, not in VRAM yet (not compared). */
  pending: number;
  /** Differing words, in table order (at most `maxDifferences`). */
  differences: VerifyDifference[];
  /** Differing words in all, also those past `maxDifferences`. */
  differenceCount: number;
  /** The instance block's words that differ; null when no instance block was checked. */
  instanceBlock: InstanceBlockDifference[] | null;
  /** True when a failed write left words VRAM may lack (a flush writes them): they differ until then. */
  unsynced: boolean;
  /** True when nothing differs. */
  ok: boolean;
}

/** Options of {@linkcode verifyTree}. */
export interface VerifyTreeOptions {
  /** Bytes of VA the address space manages (entries whose VA starts at or past it are not read). */
  vaSize: bigint;
  /** VRAM size: a table that does not lie wholly below it is reported, not read. Default 2^40. */
  vramSize?: number;
  /** Differences listed at most (default 1000; the count includes the rest). */
  maxDifferences?: number;
  /** Name printed in the header. */
  name?: string;
  /** VRAM address of an instance block that should point at this tree's root (BAR1's). */
  instanceBlock?: number;
  /**
   * The chip family's instance-block rules (`gpu.family.instanceBlock`): with
   * them every word novamm writes in an instance block is checked (PDB,
   * ADR_LIMIT on TU10x, the Blackwell magic); without, only the PDB words.
   */
  instanceBlockRules?: InstanceBlockRules;
}

/** The most differences one report may list (each is an object). */
export const MAX_VERIFY_DIFFERENCES = 2 ** 20;

const OPTION_KINDS = {
  vaSize: "bigint",
  vramSize: "number",
  maxDifferences: "number",
  name: "string",
  instanceBlock: "number",
  instanceBlockRules: "object",
} as const;

function checkReader(reader: unknown, what: string): WordReader {
  const r = reader as { readWords?: unknown } | null;
  if (r === null || typeof r !== "object" || typeof r.readWords !== "function") {
    fail(
      "EINVAL",
      `${what} reads VRAM through something with readWords (a PRAMIN window), not ${
        describe(reader)
      }`,
    );
  }
  return reader as WordReader;
}

/** The word pair [lo, hi] of a 64-bit word as a bigint. */
function word64(lo: number, hi: number): bigint {
  return hi === 0 ? BigInt(lo) : (BigInt(hi) << 32n) | BigInt(lo);
}

/**
 * Compares every table of `tree` that is in VRAM with VRAM, read through
 * `reader` in one bulk read per table, and lists the words that differ (see
 * the module documentation). With `instanceBlock`, also the instance block's
 * page-directory words ({@linkcode verifyInstanceBlock}). Validates
 * everything before the first read; reads only.
 *
 * @example
 * ```ts
 * import { openGpu } from "../../mod.ts";
 * import { Mapper } from "./mapper.ts";
 * import { ExtentList } from "./extents.ts";
 * import { mmuFormat } from "./mod.ts";
 * using gpu = await openGpu({ device: "sim" });
 * const { pramin, buddy, vramSize } = gpu.mm;
 * const root = buddy.alloc(4096);
 * const mapper = new Mapper(mmuFormat({ version: 2 }), root.start, root, { pramin, buddy, vramSize });
 * const data = buddy.alloc(64 << 10);
 * const hold = { newTables: [], pinned: [] };
 * const runs = mapper.prepare(ExtentList.range(data.start, data.size, vramSize), 0n, undefined, hold);
 * mapper.write({ va: 0n, runs, writable: true, ...hold }, () => {});
 * using w = pramin.window();
 * const report = verifyTree(mapper.tree, w, { vaSize: 1n << 30n, vramSize });
 * report.ok; // true
 * console.log(report); // "verify vmm@...: 5 tables, ... 0 differences"
 * ```
 */
export function verifyTree(
  tree: ShadowTree,
  reader: WordReader,
  options: VerifyTreeOptions,
): VerifyReport {
  const checked = checkVerify(tree, options);
  checkReader(reader, "verifyTree");
  return runVerify(tree, reader, checked);
}

/** verifyTree's options, checked. */
interface Checked {
  vaSize: bigint;
  vramSize: number;
  max: number;
  name: string;
  inst: number | undefined;
  rules: InstanceBlockRules | undefined;
}

/** Every check {@linkcode verifyTree} makes before its first read. */
function checkVerify(tree: ShadowTree, options: VerifyTreeOptions): Checked {
  const t0 = tree as { root?: unknown; format?: unknown; tables?: unknown } | null;
  if (
    t0 === null || typeof t0 !== "object" || typeof t0.tables !== "function" ||
    typeof t0.root !== "object" || typeof t0.format !== "object"
  ) {
    fail("EINVAL", `verifyTree takes a shadow tree (ShadowTree), not ${describe(tree)}`);
  }
  checkObject(options, "verify options");
  checkOptions(options, OPTION_KINDS, "verify options");
  const format = tree.format;
  const maxVa = 1n << BigInt(format.vaBits);
  const vaSize = options.vaSize;
  if (typeof vaSize !== "bigint" || vaSize <= 0n || vaSize > maxVa) {
    fail(
      "EINVAL",
      `verify options.vaSize ${describe(vaSize)} is not a bigint in 1..${
        hex(maxVa)
      } (${format.vaBits}-bit VA)`,
    );
  }
  const vramSize = options.vramSize ?? VRAM_ADDRESS_LIMIT;
  if (!Number.isSafeInteger(vramSize) || vramSize <= 0 || vramSize > VRAM_ADDRESS_LIMIT) {
    fail(
      "EINVAL",
      `verify options.vramSize ${describe(vramSize)} is not an integer in 1..${
        hex(VRAM_ADDRESS_LIMIT)
      }`,
    );
  }
  const max = options.maxDifferences ?? 1000;
  if (!Number.isSafeInteger(max) || max < 0 || max > MAX_VERIFY_DIFFERENCES) {
    fail(
      "EINVAL",
      `verify options.maxDifferences ${describe(max)} is not an integer in 0..${
        hex(MAX_VERIFY_DIFFERENCES)
      }`,
    );
  }
  const inst = options.instanceBlock;
  if (inst !== undefined) checkInstanceBlockAddress(inst, vramSize);
  if (options.instanceBlockRules !== undefined) checkRules(options.instanceBlockRules);
  if (options.instanceBlockRules !== undefined && inst === undefined) {
    fail("EINVAL", "verify options.instanceBlockRules without options.instanceBlock");
  }
  return {
    vaSize,
    vramSize,
    max,
    name: options.name ?? `vmm@${hex(tree.root.addr)}`,
    inst,
    rules: options.instanceBlockRules,
  };
}

/** The comparison itself (arguments checked). */
function runVerify(tree: ShadowTree, reader: WordReader, c: Checked): VerifyReport {
  const { vaSize, vramSize, max, name, inst } = c;
  const format = tree.format;
  const codec = format.codec;
  const dirs = format.directories.length;
  const differences: VerifyDifference[] = [];
  let differenceCount = 0;
  let words = 0;
  let compared = 0;
  let pending = 0;
  let total = 0;
  for (const _ of tree.tables()) total++;

  const decodeEntry = (t: PtTable, lo: bigint, hi: bigint) => {
    if (t.level.dual) {
      return (lo & 1n) === 1n ? codec.decodePte(lo) : codec.decodeDualPde([lo, hi]);
    }
    return t.depth >= dirs || (lo & 1n) === 1n ? codec.decodePte(lo) : codec.decodePde(lo);
  };
  let found = new Uint32Array(1024);
  let seen = 0;

  const visit = (t: PtTable, base: bigint) => {
    workStep(seen++, total, "verify");
    if (!t.written) {
      // Not in VRAM yet (a pending prepare's table); nor is anything below it.
      pending++;
      return;
    }
    if (!tableFits(t.addr, t.level.tableBytes, vramSize)) {
      fail(
        "EINVAL",
        `the shadow's ${t.level.name} at ${hex(t.addr)} is not wholly inside VRAM (${
          hex(vramSize)
        })`,
      );
    }
    const level = t.level;
    const span = 1n << BigInt(level.vaLo);
    const count = Math.min(level.entries, Number((vaSize - base + span - 1n) / span));
    if (count <= 0) return;
    const perEntry = level.dual ? 4 : 2; // 32-bit words per entry
    const n = count * perEntry;
    if (found.length < n) found = new Uint32Array(n);
    const got = reader.readWords(t.addr, n, found);
    compared++;
    words += n / 2;
    const raw = t.raw;
    const children = t.children;
    for (let w = 0; w < n; w += 2) {
      let eLo = raw[w];
      let eHi = raw[w + 1];
      const slot = w >> 1;
      // A link to a table not in VRAM yet goes as zero (mapper.ts writeTable).
      const child = slot < children.length ? children[slot] : null;
      if (child !== null && !child.written) eLo = eHi = 0;
      if (got[w] === eLo && got[w + 1] === eHi) continue;
      differenceCount++;
      if (differences.length >= max) continue;
      const idx = level.dual ? slot >> 1 : slot;
      const half = level.dual ? (slot === dualSlot(idx, BIG_HALF) ? "big" : "small") : null;
      const expected = word64(eLo, eHi);
      const foundWord = word64(got[w], got[w + 1]);
      // Decode the whole entry: at PD0 both words (the other half as it is on each side).
      let expectedDecoded, foundDecoded;
      if (level.dual) {
        const e0 = 4 * idx;
        const exp = [word64(raw[e0], raw[e0 + 1]), word64(raw[e0 + 2], raw[e0 + 3])];
        const c0 = children[2 * idx];
        const c1 = children[2 * idx + 1];
        if (c0 !== null && !c0.written) exp[0] = 0n;
        if (c1 !== null && !c1.written) exp[1] = 0n;
        expectedDecoded = decodeEntry(t, exp[0], exp[1]);
        foundDecoded = decodeEntry(
          t,
          word64(got[e0], got[e0 + 1]),
          word64(got[e0 + 2], got[e0 + 3]),
        );
      } else {
        expectedDecoded = decodeEntry(t, expected, 0n);
        foundDecoded = decodeEntry(t, foundWord, 0n);
      }
      differences.push({
        level: level.name,
        index: idx,
        half,
        tableAddress: t.addr,
        entryAddress: t.addr + slot * 8,
        va: base + BigInt(idx) * span,
        vaSize: level.pageSize,
        expected,
        found: foundWord,
        expectedDecoded,
        foundDecoded,
      });
    }
    for (let s = 0; s < children.length; s++) {
      const c = children[s];
      if (c === null) continue;
      const idx = level.dual ? s >> 1 : s;
      if (idx >= count) continue; // beyond vaSize: not reachable
      visit(c, base + BigInt(idx) * span);
    }
  };
  visit(tree.root, 0n);
  workDone(total, "verify");

  let instanceBlock: InstanceBlockDifference[] | null = null;
  if (inst !== undefined) {
    instanceBlock = verifyInstanceBlock(reader, {
      instanceBlock: inst,
      pdb: tree.root.addr,
      format,
      vaSize,
      rules: c.rules,
      vramSize,
    });
  }
  const report: VerifyReport = {
    name,
    pdb: tree.root.addr,
    tables: compared,
    words,
    pending,
    differences,
    differenceCount,
    instanceBlock,
    unsynced: false,
    ok: differenceCount === 0 && (instanceBlock === null || instanceBlock.length === 0),
  };
  Object.defineProperty(report, Symbol.for("Deno.customInspect"), {
    value: () => formatVerify(report, format),
    enumerable: false,
  });
  Object.defineProperty(report, "toString", {
    value: () => formatVerify(report, format),
    enumerable: false,
  });
  return report;
}

/** Options of `Vmm.verify()` ({@linkcode verifyShadow}). */
export interface VerifyOptions {
  /** Differences listed at most (default 1000; the count includes the rest). */
  maxDifferences?: number;
  /** VRAM address of an instance block that should point at this space's root (BAR1's). */
  instanceBlock?: number;
  /** The family's instance-block rules (`gpu.family.instanceBlock`): check every word novamm writes. */
  instanceBlockRules?: InstanceBlockRules;
}

/** The address space {@linkcode verifyShadow} verifies. */
export interface VerifiedSpace {
  /** Its name (the report's header). */
  name: string;
  /** Bytes of VA it manages. */
  vaSize: bigint;
  /** VRAM size. */
  vramSize: number;
  /** True when a failed write left words VRAM may lack (they show as differences until a flush). */
  unsynced?: boolean;
}

/**
 * What `Vmm.verify()` runs: checks `options` (the keys of
 * {@linkcode VerifyOptions} only), then reads through a window borrowed from
 * `pramin` (the user's open window, or one opened and restored for it) and
 * returns {@linkcode verifyTree}'s report. Bad options touch nothing (no
 * MMIO: not even the window register).
 *
 * @example
 * ```ts
 * import { openGpu } from "../../mod.ts";
 * import { Mapper } from "./mapper.ts";
 * import { mmuFormat } from "./mod.ts";
 * using gpu = await openGpu({ device: "sim" });
 * const { pramin, buddy, vramSize } = gpu.mm;
 * const root = buddy.alloc(4096);
 * pramin.writeBytes(root.start, new Uint8Array(32), { force: true });
 * const mapper = new Mapper(mmuFormat({ version: 2 }), root.start, root, { pramin, buddy, vramSize });
 * verifyShadow(mapper.tree, pramin, { name: "mine", vaSize: 1n << 40n, vramSize }).ok; // true
 * ```
 */
export function verifyShadow(
  tree: ShadowTree,
  pramin: { borrow(): WordReader & Disposable },
  space: VerifiedSpace,
  options: VerifyOptions = {},
): VerifyReport {
  checkOptions(
    options,
    { maxDifferences: "number", instanceBlock: "number", instanceBlockRules: "object" },
    "verify options",
  );
  checkObject(space, "verified space");
  checkOptions(
    space,
    { name: "string", vaSize: "bigint", vramSize: "number", unsynced: "boolean" },
    "verified space",
  );
  const p = pramin as { borrow?: unknown } | null;
  if (p === null || typeof p !== "object" || typeof p.borrow !== "function") {
    fail("EINVAL", `verifyShadow reads through PRAMIN (gpu.pramin), not ${describe(pramin)}`);
  }
  const all: VerifyTreeOptions = {
    ...options,
    vaSize: space.vaSize,
    vramSize: space.vramSize,
    name: space.name,
  };
  // Everything is checked before the window opens (opening one reads its register).
  const checked = checkVerify(tree, all);
  using w = pramin.borrow();
  const report = runVerify(tree, w, checked);
  if (space.unsynced === true) report.unsynced = true;
  return report;
}

function checkInstanceBlockAddress(inst: unknown, vramSize: number): void {
  checkUint(inst, "instance block address");
  const a = inst as number;
  if (a % 4096 !== 0) fail("EINVAL", `instance block address ${hex(a)} is not 4 KiB aligned`);
  if (a + 4096 > vramSize) {
    fail("EINVAL", `instance block ${hex(a)} is past the end of VRAM (${hex(vramSize)})`);
  }
}

function checkRules(rules: unknown): void {
  const r = checkObject(rules, "instance-block rules");
  if ((r.ver2Bit !== 0 && r.ver2Bit !== 1) || typeof r.adrLimit !== "boolean") {
    fail(
      "EINVAL",
      `instance-block rules ${describe(rules)} are not a family's (gpu.family.instanceBlock)`,
    );
  }
}

/** Options of {@linkcode verifyInstanceBlock}. */
export interface VerifyInstanceBlockOptions {
  /** VRAM address of the instance block (4 KiB aligned). */
  instanceBlock: number;
  /** The root directory it should name. */
  pdb: number;
  /** The address space's format (MMU v2 needs USE_VER2_PT_FORMAT). */
  format: MmuFormat;
  /** The address space's VA size (ADR_LIMIT on TU10x, with `rules`). */
  vaSize: bigint;
  /** The family's rules: check every word novamm writes; without, the PDB words only. */
  rules?: InstanceBlockRules;
  /** VRAM size (default 2^40). */
  vramSize?: number;
}

const LO_FIELDS = ["TARGET", "USE_VER2_PT_FORMAT", "BIG_PAGE_SIZE", "LO"] as const;

/**
 * Checks the words of an instance block that point the MMU at an address
 * space (one bulk read of NV_RAMIN_PAGE_DIR_BASE_LO through ADR_LIMIT_HI):
 * without `rules`, PAGE_DIR_BASE_LO's TARGET (VID), BIG_PAGE_SIZE (64 KiB),
 * the address, USE_VER2_PT_FORMAT on MMU v2, and PAGE_DIR_BASE_HI; with the
 * family's `rules`, the exact words novamm writes there
 * (`hw/family/instance_block.ts`: also ADR_LIMIT on TU10x and the Blackwell
 * magic). Returns the words that differ (empty: it points where it should).
 *
 * @example
 * ```ts
 * import { openGpu } from "../../mod.ts";
 * using gpu = await openGpu({ device: "sim:ga102" });
 * gpu.bar1.bringUp();
 * const b = gpu.bar1.binding!;
 * using w = gpu.pramin.window();
 * verifyInstanceBlock(w, {
 *   instanceBlock: b.instanceBlock,
 *   pdb: b.pdb,
 *   format: gpu.format,
 *   vaSize: gpu.bar1.vmm.vaSize,
 *   rules: gpu.family.instanceBlock,
 * }); // []
 * ```
 */
export function verifyInstanceBlock(
  reader: WordReader,
  options: VerifyInstanceBlockOptions,
): InstanceBlockDifference[] {
  checkReader(reader, "verifyInstanceBlock");
  checkObject(options, "verifyInstanceBlock options");
  checkOptions(
    options,
    {
      instanceBlock: "number",
      pdb: "number",
      format: "object",
      vaSize: "bigint",
      rules: "object",
      vramSize: "number",
    },
    "verifyInstanceBlock options",
  );
  const vramSize = options.vramSize ?? VRAM_ADDRESS_LIMIT;
  checkInstanceBlockAddress(options.instanceBlock, vramSize);
  const pdb = checkUint(options.pdb, "verifyInstanceBlock pdb");
  if (pdb % 4096 !== 0) fail("EINVAL", `pdb ${hex(pdb)} is not 4 KiB aligned`);
  const format = options.format;
  if (format === null || typeof format !== "object" || format.codec === undefined) {
    fail("EINVAL", `verifyInstanceBlock format is not an MMU format, not ${describe(format)}`);
  }
  if (options.rules !== undefined) checkRules(options.rules);
  if (typeof options.vaSize !== "bigint" || options.vaSize < 4096n) {
    fail(
      "EINVAL",
      `verifyInstanceBlock vaSize ${describe(options.vaSize)} is not a bigint ≥ 4 KiB`,
    );
  }
  const inst = options.instanceBlock;
  const first = NV_RAMIN_PAGE_DIR_BASE_LO;
  const count = (NV_RAMIN_ADR_LIMIT_HI + 4 - first) / 4;
  const got = reader.readWords(inst + first, count);
  const at = (offset: number) => got[(offset - first) / 4];
  const out: InstanceBlockDifference[] = [];
  const rules = options.rules;
  const ver2Bit = format.version === 2 ? 1 : 0;
  const expectLo = pdbWord(rules ?? { ver2Bit, adrLimit: false, ctxswMagic: false }, pdb);
  const expectHi = Math.floor(pdb / 2 ** 32);
  const lo = at(NV_RAMIN_PAGE_DIR_BASE_LO);
  // Fields novamm relies on; without the rules, a v3 space's VER2 bit is not checked.
  const fields = LO_FIELDS.filter((f) =>
    (f !== "USE_VER2_PT_FORMAT" || rules !== undefined || ver2Bit === 1) &&
    getField(lo, RAMIN_PDB[f]) !== getField(expectLo, RAMIN_PDB[f])
  );
  const loDiffers = rules !== undefined ? lo !== expectLo : fields.length > 0;
  if (loDiffers) {
    out.push({
      name: "NV_RAMIN_PAGE_DIR_BASE_LO",
      address: inst + NV_RAMIN_PAGE_DIR_BASE_LO,
      expected: expectLo,
      found: lo,
      fields: LO_FIELDS.filter((f) =>
        getField(lo, RAMIN_PDB[f]) !== getField(expectLo, RAMIN_PDB[f])
      )
        .map((f) =>
          `${f} ${hex(getField(expectLo, RAMIN_PDB[f]))} -> ${hex(getField(lo, RAMIN_PDB[f]))}`
        ),
    });
  }
  const word = (name: string, offset: number, expected: number) => {
    const v = at(offset);
    if (v !== expected) {
      out.push({ name, address: inst + offset, expected, found: v, fields: [] });
    }
  };
  word("NV_RAMIN_PAGE_DIR_BASE_HI", NV_RAMIN_PAGE_DIR_BASE_HI, expectHi);
  if (rules !== undefined && (rules.adrLimit || rules.ctxswMagic)) {
    const all = instanceBlockWords(rules, { pdb, vaSize: options.vaSize });
    if (rules.adrLimit) {
      word("NV_RAMIN_ADR_LIMIT_LO", NV_RAMIN_ADR_LIMIT_LO, all[NV_RAMIN_ADR_LIMIT_LO / 4]);
    }
    word(
      rules.adrLimit ? "NV_RAMIN_ADR_LIMIT_HI" : "NV_RAMIN_ENGINE_CTXSW_FW_MAGIC_VALUE",
      NV_RAMIN_ADR_LIMIT_HI,
      all[NV_RAMIN_ADR_LIMIT_HI / 4],
    );
  }
  return out;
}

/** One difference as the report prints it. */
export function formatDifference(d: VerifyDifference): string {
  const o = d as Partial<VerifyDifference> | null;
  if (
    o === null || typeof o !== "object" || typeof o.level !== "string" ||
    typeof o.va !== "bigint" || typeof o.expected !== "bigint" || typeof o.found !== "bigint"
  ) {
    fail("EINVAL", `formatDifference takes one of verify()'s differences, not ${describe(d)}`);
  }
  const half = d.half === null ? "" : ` ${d.half} half`;
  return `${d.level}[${d.index}]${half} @${hex(d.entryAddress)} (table ${
    hex(d.tableAddress)
  }) va [${hex(d.va)}, ${hex(d.va + BigInt(d.vaSize))}): expected ${hex(d.expected, 16)} found ${
    hex(d.found, 16)
  }\n      expected ${String(d.expectedDecoded)}\n      found    ${String(d.foundDecoded)}`;
}

function formatVerify(r: VerifyReport, format: MmuFormat): string {
  const lines = [
    `verify ${r.name}: MMU v${format.version} PDB ${
      hex(r.pdb)
    }: ${r.tables} tables, ${r.words} words compared${
      r.pending > 0 ? ` (${r.pending} tables of pending prepares not in VRAM yet)` : ""
    }: ${r.differenceCount} ${r.differenceCount === 1 ? "difference" : "differences"}`,
  ];
  if (r.unsynced) {
    lines.push(
      "  (a failed write left words to rewrite: flush() writes them; they differ until then)",
    );
  }
  for (const d of r.differences) lines.push(`  ${formatDifference(d)}`);
  if (r.differenceCount > r.differences.length) {
    lines.push(
      `  … ${
        r.differenceCount - r.differences.length
      } more (verify({ maxDifferences }) lists more)`,
    );
  }
  if (r.instanceBlock !== null) {
    if (r.instanceBlock.length === 0) lines.push("  instance block: points at this PDB");
    for (const d of r.instanceBlock) {
      lines.push(
        `  instance block ${d.name} @${hex(d.address)}: expected ${hex(d.expected, 8)} found ${
          hex(d.found, 8)
        }${d.fields.length > 0 ? ` (${d.fields.join(", ")})` : ""}`,
      );
    }
  }
  return lines.join("\n");
}
