/**
 * Traces with names: each access of a recorded MMIO trace (hw/trace.ts) with
 * the register and field names and the decoded value, PRAMIN accesses
 * resolved to VRAM addresses through the window register's moves, and PRI
 * error values named. Used by `deno task replay --decode` and by the REPL's
 * trace view.
 *
 * Names come from the register database of the trace's chip; an offset no
 * header defines but novamm itself uses (hw/regs.ts, e.g. MEM_CLEAR_STATUS,
 * or a register the headers publish for other chips only) is named from
 * hw/regs.ts and marked `[novamm]`.
 *
 * @module
 */

import { decodeChip } from "../chip.ts";
import {
  accessesOf,
  importMmiotraceFile,
  type MmiotraceImportOptions,
  parseMmiotraceLine,
  snapshotTables,
} from "../snap/mmiotrace.ts";
import { readLines } from "../trace.ts";
import { fail, hex } from "../errors.ts";
import type { MmioAccess } from "../mmio.ts";
export type { MmioAccess, Width } from "../mmio.ts";
import { describePriError } from "../pri_error.ts";
import * as regs from "../regs.ts";
import { checkOptions } from "../validate.ts";
import { decode, formatDecoded, lookup, regdbChipKey, type RegisterDb } from "./mod.ts";
import { loadRegisterDb } from "./mod.ts";

/** Offsets hw/regs.ts names that are BAR0 registers (not instance-block words or apertures). */
function novammNames(): Map<number, string> {
  const out = new Map<number, string>();
  for (const [name, v] of Object.entries(regs)) {
    if (typeof v !== "number" || !/^(NV_|MEM_CLEAR_STATUS)/.test(name)) continue;
    if (/^NV_RAMIN_|^NV_PRAMIN$|_BASE$/.test(name)) continue;
    const clean = name.replace(/_(TU102|GA100|GB20X|GB)$/, "");
    if (!out.has(v)) out.set(v, clean);
  }
  return out;
}

let fallback: Map<number, string> | undefined;

/** One decoded access. */
export interface DecodedAccess {
  /** The access. */
  readonly access: MmioAccess;
  /** What it touched: a register name (`NV_X`, `NV_X(3)`), `PRAMIN`, `BAR1`, or null when unknown. */
  readonly name: string | null;
  /** One line: the access with names and decoded value. */
  readonly text: string;
  /** The VRAM address a PRAMIN access reached (window base known), else absent. */
  readonly vram?: number;
}

/** The PRAMIN window state a decoder tracks. */
interface WindowState {
  /** VRAM address the window's base points at, or null until the trace shows it. */
  base: number | null;
}

/**
 * Decodes accesses one at a time (state: the chip, the PRAMIN window base).
 * Create it with {@linkcode createTraceDecoder}.
 */
export interface TraceDecoder {
  /** The register database used. */
  readonly db: RegisterDb;
  /** Decodes one access (and follows window moves). */
  decode(a: MmioAccess): DecodedAccess;
}

/**
 * A decoder for accesses of a `chip` (a name such as `GA102`, or the trace's
 * `device=sim:gh100`). BAR0 register accesses get their register and fields;
 * the PRAMIN aperture (BAR0 0x700000..0x7FFFFF) gets the VRAM address the
 * window maps it to; BAR1 accesses are shown by offset.
 *
 * @example
 * ```ts
 * const dec = await createTraceDecoder("GA102");
 * dec.decode({ bar: "bar0", op: "r", width: 4, offset: 0, value: 0x172000a1 }).text;
 * ```
 */
export async function createTraceDecoder(chip: string | number): Promise<TraceDecoder> {
  const db = await loadRegisterDb(chip);
  fallback ??= novammNames();
  const names = fallback;
  const archOf: Record<string, string> = {
    tu102: "Turing",
    ga100: "Ampere",
    ga102: "Ampere",
    ad102: "Ada",
    gh100: "Hopper",
    gb100: "Blackwell",
    gb202: "Blackwell",
  };
  const win = regs.windowRegister(archOf[db.chip]);
  const state: WindowState = { base: null };
  return {
    db,
    decode(a: MmioAccess): DecodedAccess {
      const op = a.op === "r" ? "r" : "w";
      const head = `${op} ${a.bar} ${a.width} ${hex(a.offset, 8)}`;
      const v = hex(a.value, a.width * 2);
      if (a.bar !== "bar0") {
        const bar = a.bar.toUpperCase();
        return { access: a, name: bar, text: `${head}  ${bar}+${hex(a.offset)} = ${v}` };
      }
      if (a.offset >= regs.NV_PRAMIN && a.offset < regs.NV_PRAMIN + regs.PRAMIN_SIZE) {
        const off = a.offset - regs.NV_PRAMIN;
        const where = state.base === null
          ? `PRAMIN+${hex(off)} (window base not seen yet)`
          : `PRAMIN -> VRAM ${hex(state.base + off)}`;
        const text = `${head}  ${where} = ${v}`;
        return state.base === null
          ? { access: a, name: "PRAMIN", text }
          : { access: a, name: "PRAMIN", text, vram: state.base + off };
      }
      let text: string;
      let name: string | null;
      const hits = a.width === 4 ? lookup(db, a.offset) : [];
      if (hits.length > 0) {
        const best = hits.reduce((x, y) =>
          y.register.fields.length > x.register.fields.length ? y : x
        );
        name = best.name;
        text = formatDecoded(decode(db, best, a.value));
        const others = hits.filter((h) => h !== best).map((h) => h.name);
        if (others.length > 0) text += `  (also ${others.join(", ")})`;
      } else if (names.has(a.offset)) {
        name = names.get(a.offset)!;
        const pri = a.width === 4 ? describePriError(a.value) : null;
        text = `${name} = ${v}${pri === null ? "" : ` (${pri})`} [novamm]`;
      } else {
        name = null;
        const pri = a.width === 4 ? describePriError(a.value) : null;
        text = `${hex(a.offset)} = ${v}${pri === null ? "" : ` (${pri})`} (no register here)`;
      }
      if (a.width === 4 && a.offset === win.offset) {
        const base = regs.getField(a.value, win.base) * 2 ** regs.PRAMIN_BASE_SHIFT;
        const before = state.base;
        state.base = base;
        if (before !== base) text += `  -> PRAMIN window at VRAM ${hex(base)}`;
      }
      return { access: a, name, text: `${head}  ${text}` };
    },
  };
}

/**
 * The chip of a trace: its header's `chip=` (e.g. `GA102`), else the device
 * spec (`sim:gh100`), else the BOOT_0/BOOT_42 reads at its start.
 *
 * @example
 * ```ts
 * traceChip({ device: "sim:gh100" }, []); // "gh100"
 * ```
 */
export function traceChip(
  header: { device: string; chip?: string },
  first: readonly MmioAccess[],
): string {
  for (const c of [header.chip, header.device]) {
    if (c === undefined) continue;
    try {
      return regdbChipKey(c);
    } catch { /* next */ }
  }
  const boot0 = first.find((a) => a.bar === "bar0" && a.offset === 0 && a.op === "r");
  const boot42 = first.find((a) => a.bar === "bar0" && a.offset === 0xa00 && a.op === "r");
  if (boot0 !== undefined && boot42 !== undefined) {
    return regdbChipKey(decodeChip(boot0.value, boot42.value).chipId);
  }
  return fail(
    "EINVAL",
    `cannot tell the trace's chip: header device=${header.device} names none and the trace ` +
      "does not start with the BOOT_0/BOOT_42 reads",
    "pass --chip NAME (e.g. --chip GA102)",
  );
}

/** Options of {@linkcode decodeAccesses}. */
export interface DecodeAccessesOptions {
  /** Skip PRAMIN and BAR1 data accesses (show registers only). */
  registersOnly?: boolean;
}

/**
 * Decodes a list of accesses (e.g. `parseTrace(text).entries`) into lines.
 *
 * @example
 * ```ts
 * const lines = await decodeAccesses("GH100", [
 *   { bar: "bar0", op: "r", width: 4, offset: 0x10f804, value: 0x80000003 },
 * ]);
 * // ["r bar0 4 0x0010f804  NV_XAL_EP_ZB_UFLUSH_FB_FLUSH_COMPLETED = 0x80000003 { TOKEN=0x3 (...) STATUS=0x1 (BUSY) }"]
 * ```
 */
export async function decodeAccesses(
  chip: string | number,
  accesses: readonly MmioAccess[],
  options: DecodeAccessesOptions = {},
): Promise<string[]> {
  checkOptions(options, { registersOnly: "boolean" }, "decodeAccesses options");
  const dec = await createTraceDecoder(chip);
  const out: string[] = [];
  for (const a of accesses) {
    const d = dec.decode(a);
    if (options.registersOnly && isData(d)) continue;
    out.push(d.text);
  }
  return out;
}

/** True for an access that carries VRAM data (PRAMIN, BAR1, BAR2), not a register. */
export function isData(d: DecodedAccess): boolean {
  return d.name === "PRAMIN" || d.name === "BAR1" || d.name === "BAR2";
}

/** Options of {@linkcode decodeMmiotraceFile}. */
export interface DecodeMmiotraceOptions {
  /** The chip's register database to use (default: the trace's BOOT_0/BOOT_42). */
  chip?: string;
  /** Skip PRAMIN, BAR1 and BAR2 data accesses (except page-table writes). */
  registersOnly?: boolean;
  /** Passed to the import (PCIDEV choice, BAR bases, caps). */
  import?: Omit<MmiotraceImportOptions, "path">;
}

/**
 * Lists a Linux mmiotrace log (hw/snap/mmiotrace.ts) with names, in two
 * streamed passes: the first imports it (the card's BARs, the chip, the
 * address spaces the driver bound and the page tables they reach in the
 * VRAM the trace wrote); the second prints each line: accesses as
 * {@linkcode createTraceDecoder} names them, and a PRAMIN write that lands
 * in one of those page tables marked with its address space, level, index
 * and the VA the entry maps (`[bar1 PT[5] VA 0x5000]`), one in an instance
 * block bound to a BAR with its offset (`[bar1 instance block +0x200]`). MAP, UNMAP and MARK
 * lines are shown as `#` lines; accesses to other devices are left out.
 *
 * @example
 * ```ts
 * for await (const line of decodeMmiotraceFile("nvidia-load.txt")) console.log(line);
 * ```
 */
export async function* decodeMmiotraceFile(
  path: string,
  options: DecodeMmiotraceOptions = {},
): AsyncGenerator<string> {
  checkOptions(
    options,
    { chip: "string", registersOnly: "boolean", import: "object" },
    "decodeMmiotraceFile options",
  );
  const { snapshot, bars, stats } = importMmiotraceFile(path, options.import ?? {});
  const chipName = options.chip ?? decodeChip(snapshot.chip.boot0, snapshot.chip.boot42).name;
  const dec = await createTraceDecoder(chipName);
  const tables = snapshotTables(snapshot);
  yield `# ${path}: mmiotrace of ${
    snapshot.chip.pci?.bdf ?? "a card"
  }, decoded as ${dec.db.family}; ${stats.reads} reads, ${stats.writes} writes; ${tables.tables.length} page tables in ${snapshot.addressSpaces.length} address spaces`;
  for (const s of snapshot.addressSpaces) {
    yield `#   ${s.name}: PDB ${hex(s.pdb)} MMU v${s.mmuVersion}${
      s.instanceBlock === null ? "" : ` instance block ${hex(s.instanceBlock)}`
    }`;
  }
  let n = 0;
  for (const raw of readLines(path)) {
    n++;
    const r = parseMmiotraceLine(raw, n, { path });
    const num = String(n).padStart(6);
    if (r.kind === "mark") yield `# MARK ${r.text}`;
    else if (r.kind === "map") {
      const bar = accessesOf({ ...r, kind: "rw", op: "r", width: 1, value: 0, high: 0 }, bars);
      yield `# MAP id ${r.id} [${hex(r.phys)}, ${hex(r.phys + r.length)}): ${
        bar === null ? "another device" : bar[0].bar.toUpperCase()
      }`;
    } else if (r.kind === "unmap") yield `# UNMAP id ${r.id}`;
    else if (r.kind === "unknown") yield `${num}  UNKNOWN instruction at ${hex(r.phys)}`;
    const accesses = accessesOf(r, bars);
    if (accesses === null) continue;
    for (const a of accesses) {
      const d = dec.decode(a);
      let mark = "";
      if (d.vram !== undefined && a.op === "w") {
        const hit = tables.at(d.vram);
        const inst = snapshot.addressSpaces.find((s) =>
          s.instanceBlock !== null && d.vram! >= s.instanceBlock && d.vram! < s.instanceBlock + 4096
        );
        if (inst !== undefined) {
          mark = `  [${inst.name} instance block +${hex(d.vram - inst.instanceBlock!)}]`;
        } else if (hit !== null) {
          const { table, index } = hit;
          const va = table.va + BigInt(index) * table.span;
          const half = table.level === "PD0"
            ? ((d.vram - table.addr) % 16 < 8 ? " big" : " small")
            : "";
          mark = `  [${table.space} ${table.level}[${index}]${half} VA ${hex(va)}]`;
        }
      }
      if (options.registersOnly && isData(d) && mark === "") continue;
      yield `${num}  ${d.text}${mark}`;
    }
  }
}
