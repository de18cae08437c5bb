/**
 * What an MMU entry codec is, independent of the version: the one
 * {@linkcode EntryCodec} interface, the version-independent decoded shapes it
 * returns, and {@linkcode makeCodec}, which builds a whole codec from a
 * version's field tables (`fields.ts` derives encode, decode, validation and
 * printing from them). `ver2.ts` and `ver3.ts` hold nothing but their tables,
 * their field types and the few constants the tables cannot say (the PCF
 * nouveau writes, the no-small-pages marker).
 *
 * Adding an MMU version of the same shape (PTE, PDE, 128-bit dual PD0, the
 * same page sizes) touches exactly:
 * 1. a codec file `verN.ts`: the field tables of its PTE, PDE and dual PDE
 *    (names, bit ranges, encodings, conditions for overlapping fields), its
 *    field and decoded types, and a {@linkcode makeCodec} call;
 * 2. a format row in `format.ts`: its levels (VA bits per level), the
 *    architectures that use it and its codec in `CODECS`, plus the version
 *    number in {@linkcode MmuVersion};
 * 3. the exports of `mod.ts` (`mmu.vN` and the types).
 *
 * Nothing in the tree (`tree.ts`), the cursor and mapper, the walker or
 * `vmm.ts` changes: they see the format's levels and the `EntryCodec`
 * interface only.
 *
 * @module
 */

import { type PdeAperture, type PteAperture, type PteInfo, u64 } from "../types.ts";
import { describe, fail } from "../../hw/errors.ts";
import { checkObject, checkOptions } from "../../hw/validate.ts";
import {
  type BitRef,
  compileEntry,
  decode128,
  decode64,
  type EntryTable,
  pteInfoOf,
  vramEncoderOf,
  type VramLine,
} from "./fields.ts";
import type { V2DualPdeFields, V2PdeFields, V2PteFields } from "./ver2.ts";
import type { V3DualPdeFields, V3PdeFields, V3PteFields } from "./ver3.ts";

/** Page-table format version: 2 (Turing, Ampere, Ada) or 3 (Hopper, Blackwell). */
export type MmuVersion = 2 | 3;

/** The common fields of a decoded PTE of either version. */
export interface DecodedPte {
  /** VALID bit. */
  valid: boolean;
  /** Where the page lives. */
  aperture: PteAperture;
  /** Page byte address (a number when safe). */
  address: number | bigint;
  /** Set bits no field covers. */
  reserved: bigint;
}

/** The common fields of a decoded PDE of either version. */
export interface DecodedPde {
  /** IS_PTE bit: the entry is a huge PTE. */
  isPte: boolean;
  /** Where the next table lives ("invalid": nowhere). */
  aperture: PdeAperture;
  /** Next table byte address. */
  address: number | bigint;
  /** Set bits no field covers. */
  reserved: bigint;
}

/** The common fields of one decoded dual-PDE half. */
export interface DecodedDualHalf {
  /** Where the page table lives ("invalid": nowhere). */
  aperture: PdeAperture;
  /** Page table byte address. */
  address: number | bigint;
}

/** The common fields of a decoded dual PDE of either version. */
export interface DecodedDualPde {
  /** IS_PTE bit: the entry is a 2 MiB PTE. */
  isPte: boolean;
  /** Pointer to the 64 KiB-page table. */
  big: DecodedDualHalf;
  /** Pointer to the 4 KiB-page table. */
  small: DecodedDualHalf;
  /** Set bits no field covers (128-bit). */
  reserved: bigint;
}

/** The field tables a codec is built from, one per entry type. */
export interface EntryTables {
  /** The PTE. */
  readonly pte: EntryTable;
  /** The PDE (directory levels above PD0). */
  readonly pde: EntryTable;
  /** The 128-bit dual PDE at PD0. */
  readonly dualPde: EntryTable;
}

/**
 * What every entry codec provides (`mmu.v2`, `mmu.v3`), over its own field
 * types (`PteFields`, `PdeFields`, `DualFields`) and decoded types (`Pte`,
 * `Pde`, `Dual`); without type arguments, the codec of either version (what
 * `MmuFormat.codec` holds). `EntryCodecOf` in `mod.ts` is another name for
 * this type. Encoders validate and throw EINVAL naming the field that is out
 * of range or misplaced; decoders never throw on a 64-bit (or `[low, high]`
 * 128-bit) value. Raw entries are bigint (safe numbers are accepted as
 * input).
 *
 * @example
 * ```ts
 * function firstPage<P, D, X>(codec: EntryCodec<P, D, X>, raw: bigint): number | bigint {
 *   return codec.decodePte(raw).address;
 * }
 * ```
 */
export interface EntryCodec<
  PteFields = V2PteFields | V3PteFields,
  PdeFields = V2PdeFields | V3PdeFields,
  DualFields = V2DualPdeFields | V3DualPdeFields,
  Pte extends DecodedPte = DecodedPte,
  Pde extends DecodedPde = DecodedPde,
  Dual extends DecodedDualPde = DecodedDualPde,
> {
  /** MMU format version. */
  readonly version: MmuVersion;
  /** The field tables encode, decode and printing come from (the field lists). */
  readonly tables: EntryTables;
  /** The invalid PTE (0n). */
  readonly invalidPte: bigint;
  /** The invalid PDE (0n; nova's 0x1 would be a huge PTE at PD0/PD1, facts D14). */
  readonly invalidPde: bigint;
  /** A big-page PTE telling the MMU not to look at the small-page table. */
  readonly noSmallPte: bigint;
  /** Encodes a PTE from named fields. */
  encodePte(fields: PteFields): bigint;
  /** Decodes any 64-bit value as a PTE. */
  decodePte(raw: bigint | number): Pte;
  /** Encodes a PDE (a non-dual directory entry) from named fields. */
  encodePde(fields: PdeFields): bigint;
  /** Decodes any 64-bit value as a PDE. */
  decodePde(raw: bigint | number): Pde;
  /** Encodes a 128-bit PD0 dual PDE as `[low, high]`. */
  encodeDualPde(fields: DualFields): [bigint, bigint];
  /** Decodes a PD0 dual PDE given as `[low, high]`. */
  decodeDualPde(raw: readonly [bigint | number, bigint | number]): Dual;
  /** A valid read-write or read-only PTE to a VRAM page (kind 0 unless given). */
  vramPte(address: number, options: { writable: boolean; kind?: number }): bigint;
  /** A PDE pointing to a VRAM table. */
  vramPde(address: number): bigint;
  /** A dual PDE to VRAM big and/or small tables (`[0n, 0n]` for neither). */
  vramDualPde(tables: { big?: number; small?: number }): [bigint, bigint];
  /** Version-independent view of a raw PTE: valid / aperture / address / writable / privileged. */
  pteInfo(raw: bigint): PteInfo;
  /** True for the big-page "no small pages" marker. */
  isNoSmallPte(raw: bigint): boolean;
}

/** What an MMU version declares to get its codec from {@linkcode makeCodec}. */
export interface CodecSpec<V extends MmuVersion> {
  /** MMU format version. */
  readonly version: V;
  /** The PTE, PDE and dual-PDE field tables. */
  readonly tables: EntryTables;
  /** The big-page "no small pages" marker as PTE field values (its test reads only these fields). */
  readonly noSmallPte: Readonly<Record<string, boolean | number | string>>;
  /** The PTE bits `pteInfo` reads: read-only (clears `writable`) and privileged. */
  readonly pteInfo: { readonly readOnly: BitRef; readonly privileged: BitRef };
  /** The fixed fields of the fast VRAM encoders (the address is added per call). */
  readonly vram: {
    /** `vramPte(…, { writable: true })`. */
    readonly pteWritable: Readonly<Record<string, unknown>>;
    /** `vramPte(…, { writable: false })`. */
    readonly pteReadOnly: Readonly<Record<string, unknown>>;
    /** The uint PTE field `vramPte` takes as `kind`. */
    readonly kindField: string;
    /** `vramPde`. */
    readonly pde: Readonly<Record<string, unknown>>;
    /** Each used half of `vramDualPde` (`big` / `small`). */
    readonly dualHalf: Readonly<Record<string, unknown>>;
  };
  /**
   * A hand-written `vramPte` for the mapper's hot loop, where the bench shows
   * the derived one costs (one call per PTE run). {@linkcode makeCodec}
   * checks it against the encoder derived from `vram` and the PTE table at
   * load (both permissions, kind 0 and its maximum, the lowest and highest
   * address, and the errors for a misaligned and a too-high address).
   */
  readonly fastVramPte?: (address: number, options: { writable: boolean; kind?: number }) => bigint;
}

const VRAM_PTE_OPTIONS = { writable: "boolean", kind: "number" } as const;

/**
 * The options of `vramPte`: `writable` a boolean (required: a string such as
 * `"false"` must not make a writable entry), `kind` a number, nothing else.
 * The mapper calls it once per PTE run, so the common case is a few `typeof`s.
 */
function checkVramPteOptions(options: { writable: boolean; kind?: number }): void {
  if (
    options === null || typeof options !== "object" || typeof options.writable !== "boolean" ||
    (options.kind !== undefined && typeof options.kind !== "number")
  ) {
    checkOptions(options, VRAM_PTE_OPTIONS, "vramPte options");
    fail(
      "EINVAL",
      `vramPte options.writable must be true or false, not ${
        describe((options as { writable?: unknown } | undefined)?.writable)
      }`,
    );
  }
  for (const key in options) {
    if (key !== "writable" && key !== "kind") {
      checkOptions(options, VRAM_PTE_OPTIONS, "vramPte options");
    }
  }
}

function thrown(fn: () => unknown): string | null {
  try {
    fn();
    return null;
  } catch (e) {
    return e instanceof Error ? e.message : String(e);
  }
}

/** Throws unless the hand-written `vramPte` agrees with the derived one on the edge cases. */
function checkFastPte(
  what: string,
  fast: (address: number, options: { writable: boolean; kind?: number }) => bigint,
  derived: (address: number, options: { writable: boolean; kind?: number }) => bigint,
  target: { align: number; limit: number; kindMax: number },
): void {
  const cases: [number, { writable: boolean; kind?: number }][] = [];
  for (const address of [0, target.align, target.limit - target.align]) {
    for (const writable of [true, false]) {
      for (const kind of [undefined, 0, 1, target.kindMax]) {
        cases.push([address, { writable, kind }]);
      }
    }
  }
  for (const [address, options] of cases) {
    const a = fast(address, options);
    const b = derived(address, options);
    if (a !== b) {
      throw new Error(
        `${what}: the fast vramPte gives ${a} for ${address} ${
          JSON.stringify(options)
        }, the table ${b}`,
      );
    }
  }
  for (const address of [target.align / 2, target.limit, -target.align]) {
    const a = thrown(() => fast(address, { writable: true }));
    const b = thrown(() => derived(address, { writable: true }));
    if (a === null || b === null) {
      throw new Error(`${what}: vramPte accepts ${address} (fast: ${a}, table: ${b})`);
    }
  }
}

const PTE_APERTURE_NAMES: readonly PteAperture[] = [
  "video",
  "peer",
  "sysCoherent",
  "sysNonCoherent",
];

/**
 * Builds an entry codec from a version's field tables: encoders and decoders
 * (with their checks and summaries) come from the tables, `pteInfo` and
 * `isNoSmallPte` from the named PTE fields, and the mapper's `vramPte` /
 * `vramPde` / `vramDualPde` are specialised from the tables once, so that a
 * call is number arithmetic and one BigInt. All of that happens on the
 * codec's first use (a table that does not hold together throws then), not
 * when the module that makes it loads.
 *
 * @example
 * ```ts
 * import { v3 } from "./ver3.ts";
 * const again = makeCodec({
 *   version: 3,
 *   tables: v3.tables,
 *   noSmallPte: { valid: false, pcf: 3 },
 *   pteInfo: { readOnly: { field: "pcf", bit: 2 }, privileged: { field: "pcf", bit: 1 } },
 *   vram: {
 *     pteWritable: { valid: true, pcf: 0x10 },
 *     pteReadOnly: { valid: true, pcf: 0x14 },
 *     kindField: "kind",
 *     pde: { aperture: "video", pcf: 2 },
 *     dualHalf: { aperture: "video", pcf: 2 },
 *   },
 * });
 * again.vramPde(0x200000); // 0x200012n
 * ```
 */
export function makeCodec<
  V extends MmuVersion,
  PteFields,
  PdeFields,
  DualFields,
  Pte extends DecodedPte,
  Pde extends DecodedPde,
  Dual extends DecodedDualPde,
>(
  spec: CodecSpec<V>,
): EntryCodec<PteFields, PdeFields, DualFields, Pte, Pde, Dual> & { readonly version: V } {
  type Codec = EntryCodec<PteFields, PdeFields, DualFields, Pte, Pde, Dual>;
  // Built on first use, not when the module loads: compiling the tables and checking the
  // fast encoders is most of what loading the MMU code costs, and opening a GPU (the REPL's
  // first prompt) needs neither codec. The codec tests build both.
  let built: Codec | null = null;
  const b = (): Codec => built ??= buildCodec(spec, codec) as unknown as Codec;
  const codec: EntryCodec<PteFields, PdeFields, DualFields, Pte, Pde, Dual> & {
    readonly version: V;
  } = Object.freeze({
    version: spec.version,
    tables: spec.tables,
    invalidPte: 0n,
    invalidPde: 0n,
    get noSmallPte(): bigint {
      return b().noSmallPte;
    },
    encodePte: (fields: PteFields) => b().encodePte(fields),
    decodePte: (raw: bigint | number) => b().decodePte(raw),
    encodePde: (fields: PdeFields) => b().encodePde(fields),
    decodePde: (raw: bigint | number) => b().decodePde(raw),
    encodeDualPde: (fields: DualFields) => b().encodeDualPde(fields),
    decodeDualPde: (raw: readonly [bigint | number, bigint | number]) => b().decodeDualPde(raw),
    vramPte: (address: number, options: { writable: boolean; kind?: number }) =>
      b().vramPte(address, options),
    vramPde: (address: number) => b().vramPde(address),
    vramDualPde: (tables: { big?: number; small?: number }) => b().vramDualPde(tables),
    pteInfo: (raw: bigint) => b().pteInfo(raw),
    isNoSmallPte: (raw: bigint) => b().isNoSmallPte(raw),
    // Printed as the codec it stands for (`mmu.v2` at the prompt).
    [Symbol.for("Deno.customInspect")]: (
      inspect: (value: unknown, options: unknown) => string,
      options: unknown,
    ) => inspect(b(), options),
  });
  BUILDERS.set(codec, b);
  return codec;
}

/** How each codec {@linkcode makeCodec} made builds itself (for {@linkcode vramPteLine}). */
const BUILDERS = new WeakMap<object, () => unknown>();

/**
 * The codec behind {@linkcode makeCodec}'s facade (typed by the facade), its lines registered
 * under `facade`.
 */
function buildCodec(
  spec: CodecSpec<MmuVersion>,
  facade: object,
): EntryCodec<object, object, object> {
  const pte = compileEntry(spec.tables.pte);
  const pde = compileEntry(spec.tables.pde);
  const dual = compileEntry(spec.tables.dualPde);
  const marker = pte.pattern(spec.noSmallPte);
  const { vram } = spec;
  const rwEncoder = vramEncoderOf(pte, vram.pteWritable, { extra: vram.kindField });
  const roEncoder = vramEncoderOf(pte, vram.pteReadOnly, { extra: vram.kindField });
  const rw = rwEncoder.encode;
  const ro = roEncoder.encode;
  const pdeFast = vramEncoderOf(pde, vram.pde).encode;
  const big = vramEncoderOf(dual, { big: vram.dualHalf }, { group: "big" });
  const small = vramEncoderOf(dual, { small: vram.dualHalf }, { group: "small" });
  const pteInfo = pteInfoOf(pte, spec.pteInfo, PTE_APERTURE_NAMES);
  const derivedPte = (address: number, options: { writable: boolean; kind?: number }): bigint =>
    (options.writable ? rw : ro)(address, options.kind);
  const kindSpec = spec.tables.pte.items.find((f) => f.name === vram.kindField);
  const kindMax = kindSpec?.kind === "uint" ? 2 ** (kindSpec.hi - kindSpec.lo + 1) - 1 : 0;
  const addressSpec = pte.layout("address", 0);
  if (spec.fastVramPte !== undefined && addressSpec !== null) {
    checkFastPte(`MMU v${spec.version}`, spec.fastVramPte, derivedPte, {
      align: 2 ** addressSpec.shift,
      limit: 2 ** (addressSpec.shift + addressSpec.hi - addressSpec.lo + 1),
      kindMax,
    });
  }
  const vramPte = spec.fastVramPte ?? derivedPte;
  const lines = {
    rw: checkLine(`MMU v${spec.version}`, rwEncoder.line, vramPte, true),
    ro: checkLine(`MMU v${spec.version}`, roEncoder.line, vramPte, false),
  };
  const codec = Object.freeze({
    version: spec.version,
    tables: spec.tables,
    invalidPte: 0n,
    invalidPde: 0n,
    noSmallPte: marker.value,
    encodePte: (fields: object) => pte.encode(fields) as bigint,
    decodePte: (raw: bigint | number) => decode64(pte, raw) as unknown as DecodedPte,
    encodePde: (fields: object) => pde.encode(fields) as bigint,
    decodePde: (raw: bigint | number) => decode64(pde, raw) as unknown as DecodedPde,
    encodeDualPde: (fields: object) => dual.encode(fields) as [bigint, bigint],
    decodeDualPde: (raw: readonly [bigint | number, bigint | number]) =>
      decode128(dual, raw) as unknown as DecodedDualPde,
    vramPte: (address: number, options: { writable: boolean; kind?: number }): bigint => {
      checkVramPteOptions(options);
      return vramPte(address, options);
    },
    vramPde: (address: number) => pdeFast(address),
    vramDualPde(tables: { big?: number; small?: number }): [bigint, bigint] {
      checkObject(tables, "vramDualPde tables");
      checkOptions(tables, { big: "number", small: "number" }, "vramDualPde tables");
      const words: [bigint, bigint] = [0n, 0n];
      if (tables.big !== undefined) words[big.word] |= big.encode(tables.big);
      if (tables.small !== undefined) words[small.word] |= small.encode(tables.small);
      return words;
    },
    pteInfo: (raw: bigint) => pteInfo(u64(raw, "PTE")),
    isNoSmallPte: (raw: bigint) => (u64(raw, "PTE") & marker.mask) === marker.value,
  });
  PTE_LINES.set(facade, lines);
  return codec;
}

/** The number form of each codec's `vramPte` (kind 0), by permission. */
const PTE_LINES = new WeakMap<object, { rw: VramLine | null; ro: VramLine | null }>();

/**
 * Throws unless `line` gives what `vramPte` gives (at the lowest, one
 * aligned step, the middle and the highest address it holds for); the line,
 * or null when the encoder has none.
 */
function checkLine(
  what: string,
  line: VramLine | null,
  vramPte: (address: number, options: { writable: boolean; kind?: number }) => bigint,
  writable: boolean,
): VramLine | null {
  if (line === null) return null;
  const align = 2 ** line.target.alignBits;
  const top = 2 ** line.target.limitBits - align;
  for (const address of [0, align, Math.floor(top / 2 / align) * align, top]) {
    const want = vramPte(address, { writable });
    const got = line.base + address * line.scale;
    if (!Number.isSafeInteger(got) || BigInt(got) !== want) {
      throw new Error(
        `${what}: the number form of vramPte gives ${got} for ${address} (writable ${writable}), vramPte ${want}`,
      );
    }
  }
  return line;
}

/**
 * `codec.vramPte(address, { writable })` as number arithmetic
 * (`line.base + address * line.scale`, exact for the addresses
 * `line.target` accepts), or null when the codec has no number form. For
 * the mapper's hot loop: the constant part of a PTE is encoded once per
 * run, never a bigint per PTE. Checked against `vramPte` when the codec is
 * built (on its first use).
 *
 * @example
 * ```ts
 * import { v2 } from "./ver2.ts";
 * const line = vramPteLine(v2, false)!;
 * line.base + 0x12345000 * line.scale; // 0x1234541
 * ```
 */
export function vramPteLine(codec: EntryCodec, writable: boolean): VramLine | null {
  BUILDERS.get(codec)?.();
  const lines = PTE_LINES.get(codec);
  if (lines === undefined) return null;
  return writable ? lines.rw : lines.ro;
}
