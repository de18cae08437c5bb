/**
 * Entries as field tables: an MMU version declares each entry (PTE, PDE,
 * dual PDE) once as data, a list of named fields with their bit ranges and
 * encodings, and {@linkcode compileEntry} derives everything else from it:
 * the encoder (field-name, type, range, alignment and overlap checks), the
 * decoder, the set bits no field covers (`reserved`), the one-line summary
 * the decoded object prints as, the version-independent `pteInfo`, the
 * no-small-pages test and the fast VRAM encoders the mapper uses.
 *
 * Field encodings:
 * - {@linkcode flag}: one bit, a boolean.
 * - {@linkcode uint}: bits `hi:lo`, an unsigned number.
 * - {@linkcode aperture}: bits `hi:lo`, an index into a list of names. The
 *   aperture fields select the layout of the rest of the entry.
 * - {@linkcode address}: a byte address whose bits `hi:lo` hold
 *   `address >> shift`, with one {@linkcode AddressLayout} per aperture value
 *   (`null`: that aperture has no target, its bits are reserved).
 * - {@linkcode group}: a named sub-object (the `big` / `small` halves of a
 *   dual PDE) with its own fields and aperture.
 *
 * Overlapping fields are resolved with conditions: a field with `when` exists
 * only while an aperture field holds one of the listed values; otherwise it
 * decodes as its default and its bits are reserved (or belong to the field it
 * overlaps). {@linkcode compileEntry} checks, for every combination of
 * aperture values, that the fields that exist then do not overlap and fit
 * the entry, so a table with a clash fails when its codec is first used (the
 * codec tests use every one).
 *
 * Bit numbers count across the whole entry: a 128-bit dual PDE's high word
 * starts at bit 64.
 *
 * @module
 */

import {
  addressField,
  apertureField,
  checkAddressFits,
  checkFieldNames,
  describe,
  fail,
  flagField,
  hex,
  inspectable,
  numberIfSafe,
  type PteAperture,
  type PteInfo,
  reservedField,
  u64,
  uintField,
} from "../types.ts";

/** Only while the aperture field `field` (a path: `"aperture"`, `"big.aperture"`) is one of `is`. */
export interface FieldCondition {
  /** Path of the aperture field the condition reads. */
  readonly field: string;
  /** Aperture names for which the field exists. */
  readonly is: readonly string[];
  /** Why, for the error when the field is set while it does not exist. */
  readonly why?: string;
}

/** A one-bit boolean field. */
export interface FlagSpec {
  /** Encoding. */
  readonly kind: "flag";
  /** Field name (the key in fields and decoded objects). */
  readonly name: string;
  /** The bit. */
  readonly bit: number;
  /** Printed when set (nothing when absent). */
  readonly label?: string;
  /** Printed when clear (nothing when absent). */
  readonly offLabel?: string;
  /** The field exists only under this condition. */
  readonly when?: FieldCondition;
}

/** An unsigned integer field. */
export interface UintSpec {
  /** Encoding. */
  readonly kind: "uint";
  /** Field name. */
  readonly name: string;
  /** Highest bit (inclusive). */
  readonly hi: number;
  /** Lowest bit. */
  readonly lo: number;
  /** Key in the summary (`kind=0x6`); the name unless given. */
  readonly label?: string;
  /** When the summary shows it: always, when nonzero (default) or never. */
  readonly print?: "always" | "nonzero" | "never";
  /** Summary radix: 16 (default) or 10. */
  readonly radix?: 10 | 16;
  /** Value names printed after the value while the flag `whenClear` is clear. */
  readonly names?: { readonly whenClear: string; readonly values: readonly string[] };
  /** The field exists only under this condition. */
  readonly when?: FieldCondition;
}

/** An aperture field: the index of a name. */
export interface ApertureSpec {
  /** Encoding. */
  readonly kind: "aperture";
  /** Field name. */
  readonly name: string;
  /** Highest bit. */
  readonly hi: number;
  /** Lowest bit. */
  readonly lo: number;
  /** Names by hardware value; the first is the default. */
  readonly values: readonly string[];
}

/** Where an address field lives for one aperture value. */
export interface AddressLayout {
  /** NVIDIA's field name, for errors ("ADDRESS_VID"). */
  readonly hw: string;
  /** Highest bit. */
  readonly hi: number;
  /** Lowest bit: bits hi..lo hold `address >> shift`. */
  readonly lo: number;
  /** The address is aligned to 2^shift. */
  readonly shift: number;
}

/** A byte-address field laid out per aperture value. */
export interface AddressSpec {
  /** Encoding. */
  readonly kind: "address";
  /** Field name. */
  readonly name: string;
  /** Name of the aperture field (in the same group) that selects the layout. */
  readonly aperture: string;
  /** Layout per aperture value; `null`: no target (address 0, bits reserved). */
  readonly layouts: readonly (AddressLayout | null)[];
}

/** A field of an entry. */
export type FieldSpec = FlagSpec | UintSpec | ApertureSpec | AddressSpec;

/** A named sub-object of fields (a dual-PDE half). */
export interface GroupSpec {
  /** Encoding. */
  readonly kind: "group";
  /** Key of the sub-object. */
  readonly name: string;
  /** Its fields, in the key order of the decoded sub-object. */
  readonly fields: readonly FieldSpec[];
  /** Field names in summary order (default: `fields` order). */
  readonly print?: readonly string[];
}

/** One entry type of one MMU version, declared as data. */
export interface EntryTable {
  /** Summary prefix ("PTE v2"). */
  readonly title: string;
  /** Error prefix ("v2 PTE"). */
  readonly what: string;
  /** 64-bit words: 1, or 2 for the dual PDE (`[low, high]`). */
  readonly words: 1 | 2;
  /** Fields and groups, in the key order of decoded objects (`reserved` comes last). */
  readonly items: readonly (FieldSpec | GroupSpec)[];
  /** Top-level names in summary order (default: `items` order). */
  readonly print?: readonly string[];
}

/**
 * A flag field at `bit`.
 *
 * @example
 * ```ts
 * flag("valid", 0, { label: "valid", offLabel: "invalid" }).bit; // 0
 * ```
 */
export function flag(
  name: string,
  bit: number,
  options: { label?: string; offLabel?: string; when?: FieldCondition } = {},
): FlagSpec {
  return Object.freeze({ kind: "flag", name, bit, ...options });
}

/**
 * An unsigned field in bits `hi:lo`.
 *
 * @example
 * ```ts
 * uint("kind", 63, 56).lo; // 56
 * ```
 */
export function uint(
  name: string,
  hi: number,
  lo: number,
  options: Omit<UintSpec, "kind" | "name" | "hi" | "lo"> = {},
): UintSpec {
  return Object.freeze({ kind: "uint", name, hi, lo, ...options });
}

/**
 * An aperture field in bits `hi:lo` naming `values`.
 *
 * @example
 * ```ts
 * aperture("aperture", 2, 1, ["video", "peer", "sysCoherent", "sysNonCoherent"]).values[1]; // "peer"
 * ```
 */
export function aperture(
  name: string,
  hi: number,
  lo: number,
  values: readonly string[],
): ApertureSpec {
  return Object.freeze({ kind: "aperture", name, hi, lo, values });
}

/**
 * An address field: one layout (or `null`) per value of the aperture field
 * named `apertureName`.
 *
 * @example
 * ```ts
 * const vid = at("ADDRESS_VID", 32, 8, 12);
 * address("address", "aperture", [null, vid, vid, vid]).layouts[1]?.shift; // 12
 * ```
 */
export function address(
  name: string,
  apertureName: string,
  layouts: readonly (AddressLayout | null)[],
): AddressSpec {
  return Object.freeze({
    kind: "address",
    name,
    aperture: apertureName,
    layouts: Object.freeze([...layouts]),
  });
}

/**
 * An address layout: bits `hi:lo` hold `address >> shift`.
 *
 * @example
 * ```ts
 * at("ADDRESS_BIG", 51, 8, 8).hw; // "ADDRESS_BIG"
 * ```
 */
export function at(hw: string, hi: number, lo: number, shift: number): AddressLayout {
  return Object.freeze({ hw, hi, lo, shift });
}

/**
 * A named group of fields (decoded as a sub-object).
 *
 * @example
 * ```ts
 * group("big", [flag("vol", 3)]).fields.length; // 1
 * ```
 */
export function group(
  name: string,
  fields: readonly FieldSpec[],
  options: { print?: readonly string[] } = {},
): GroupSpec {
  return Object.freeze({
    kind: "group",
    name,
    fields: Object.freeze([...fields]),
    ...(options.print === undefined ? {} : { print: Object.freeze([...options.print]) }),
  });
}

// ---------------------------------------------------------------------------
// Compilation

/** One field, placed: where it sits in the decoded object and in the 32-bit words. */
interface Slot {
  readonly spec: FieldSpec;
  readonly index: number;
  /** Group name, or null at the top level. */
  readonly group: string | null;
  /** `name` or `group.name`. */
  readonly path: string;
  /** Error label ("v2 dual PDE big.aperture"). */
  readonly what: string;
  /** For flag / uint / aperture: bit range, and the 32-bit word when it fits one. */
  readonly lo: number;
  readonly width: number;
  readonly word: number; // -1 when the field spans words
  readonly shift: number; // within the word
  readonly mask: number; // width mask as a number (width <= 32)
  /** Bits of the field (flag / uint / aperture), as a bigint. */
  readonly bits: bigint;
  /** Condition, resolved to the aperture slot it reads. */
  readonly cond: { slot: number; is: readonly number[]; why?: string } | null;
  /** Address fields: the aperture slot. */
  readonly apSlot: number;
}

/** An address layout, compiled. */
interface Layout {
  readonly spec: AddressLayout;
  readonly lo: bigint;
  readonly shift: bigint;
  readonly widthMask: bigint;
  readonly bits: bigint;
  readonly label: string;
}

/** What exists for one combination of aperture values. */
interface Variant {
  /** Per slot: the field exists. */
  readonly active: readonly boolean[];
  /** Per slot: the address layout (address slots), else null. */
  readonly layouts: readonly (Layout | null)[];
  /** Set bits no existing field covers. */
  readonly free: bigint;
}

/** A compiled entry table: encode, decode and print one entry type. */
export interface CompiledEntry {
  /** The declared table. */
  readonly table: EntryTable;
  /** Encodes named fields to the raw entry (one word, or `[low, high]`). */
  encode(fields: object): bigint | [bigint, bigint];
  /** Decodes a raw entry given as its words (one, or low and high). */
  decodeWords(words: readonly bigint[]): Record<string, unknown>;
  /** The one-line summary of a decoded entry. */
  summary(decoded: Record<string, unknown>): string;
  /** The raw bits and the mask of the given field values (for markers such as no-small-PTE). */
  pattern(fields: Record<string, boolean | number | string>): { value: bigint; mask: bigint };
  /** Looks a field up by path. */
  slot(path: string): FieldSpec;
  /** The 32-bit word, bit shift and width of a narrow field (flag / uint / aperture) by path. */
  place(path: string): { word: number; shift: number; mask: number };
  /** The address layout of the address field `path` for aperture value `apertureIndex`. */
  layout(path: string, apertureIndex: number): AddressLayout | null;
}

function tableError(table: EntryTable, message: string): never {
  fail("EINVAL", `field table ${table.title}: ${message}`);
}

function bitsOf(hi: number, lo: number): bigint {
  return ((1n << BigInt(hi - lo + 1)) - 1n) << BigInt(lo);
}

function rangeOf(spec: FieldSpec): [number, number] {
  if (spec.kind === "flag") return [spec.bit, spec.bit];
  if (spec.kind === "address") return [0, -1];
  return [spec.hi, spec.lo];
}

function compileLayout(l: AddressLayout): Layout {
  const width = l.hi - l.lo + 1;
  return {
    spec: l,
    lo: BigInt(l.lo),
    shift: BigInt(l.shift),
    widthMask: (1n << BigInt(width)) - 1n,
    bits: bitsOf(l.hi, l.lo),
    label: `${l.hw} (${l.hi}:${l.lo})`,
  };
}

function quoteList(names: readonly string[]): string {
  const q = names.map((n) => `"${n}"`);
  return q.length <= 1 ? q.join("") : `${q.slice(0, -1).join(", ")} or ${q[q.length - 1]}`;
}

/**
 * Compiles an entry table, checking it: unique names, bit ranges inside the
 * entry, conditions that name an aperture field, and no two fields that
 * exist together sharing a bit under any combination of aperture values.
 *
 * @example
 * ```ts
 * const t = compileEntry({
 *   title: "PTE x", what: "x PTE", words: 1,
 *   items: [flag("valid", 0), uint("kind", 7, 4)],
 * });
 * t.encode({ valid: true, kind: 6 }); // 0x61n
 * ```
 */
export function compileEntry(table: EntryTable): CompiledEntry {
  const entryBits = 64 * table.words;
  const slots: Slot[] = [];
  const byPath = new Map<string, number>();
  const topKeys = new Set<string>();
  const groupKeys = new Map<string, Set<string>>();
  // Pass 1: place every field.
  const pending: { spec: FieldSpec; group: string | null }[] = [];
  for (const item of table.items) {
    if (topKeys.has(item.name) || item.name === "reserved") {
      tableError(table, `duplicate name ${item.name}`);
    }
    topKeys.add(item.name);
    if (item.kind === "group") {
      const keys = new Set<string>();
      for (const f of item.fields) {
        if (keys.has(f.name)) tableError(table, `duplicate name ${item.name}.${f.name}`);
        keys.add(f.name);
        pending.push({ spec: f, group: item.name });
      }
      groupKeys.set(item.name, keys);
    } else {
      pending.push({ spec: item, group: null });
    }
  }
  topKeys.add("reserved");
  for (const { spec, group } of pending) {
    const path = group === null ? spec.name : `${group}.${spec.name}`;
    byPath.set(path, slots.length);
    const [hi, lo] = rangeOf(spec);
    const width = hi - lo + 1;
    if (spec.kind !== "address" && (lo < 0 || hi >= entryBits || width < 1)) {
      tableError(table, `${path} bits ${hi}:${lo} are outside the ${entryBits}-bit entry`);
    }
    const word = spec.kind !== "address" && Math.floor(lo / 32) === Math.floor(hi / 32) &&
        width <= 31
      ? Math.floor(lo / 32)
      : -1;
    slots.push({
      spec,
      index: slots.length,
      group,
      path,
      what: `${table.what} ${path}`,
      lo,
      width,
      word,
      shift: lo % 32,
      mask: width >= 1 && width <= 31 ? 2 ** width - 1 : 0,
      bits: spec.kind === "address" ? 0n : bitsOf(hi, lo),
      cond: null,
      apSlot: -1,
    });
  }
  // Pass 2: resolve conditions and address apertures.
  const scoped = (s: Slot, name: string): number | undefined =>
    byPath.get(s.group === null ? name : `${s.group}.${name}`);
  for (let i = 0; i < slots.length; i++) {
    const s = slots[i];
    const spec = s.spec;
    if ((spec.kind === "flag" || spec.kind === "uint") && spec.when !== undefined) {
      const c = byPath.get(spec.when.field);
      const ap = c === undefined ? undefined : slots[c].spec;
      if (c === undefined || ap === undefined || ap.kind !== "aperture") {
        tableError(table, `${s.path} depends on ${spec.when.field}, which is no aperture field`);
      }
      const is = spec.when.is.map((n) => {
        const v = ap.values.indexOf(n);
        if (v < 0) tableError(table, `${s.path}: ${n} is not a value of ${spec.when!.field}`);
        return v;
      });
      slots[i] = { ...s, cond: { slot: c, is, why: spec.when.why } };
    } else if (spec.kind === "address") {
      const c = scoped(s, spec.aperture);
      const ap = c === undefined ? undefined : slots[c].spec;
      if (c === undefined || ap === undefined || ap.kind !== "aperture") {
        tableError(table, `${s.path} is laid out by ${spec.aperture}, which is no aperture field`);
      }
      if (spec.layouts.length !== ap.values.length) {
        tableError(table, `${s.path} needs one layout per value of ${spec.aperture}`);
      }
      for (const l of spec.layouts) {
        if (l !== null && (l.lo < 0 || l.hi >= entryBits || l.hi < l.lo)) {
          tableError(table, `${s.path} bits ${l.hi}:${l.lo} are outside the entry`);
        }
      }
      slots[i] = { ...s, apSlot: c };
    }
  }
  const selectors = slots.filter((s) => s.spec.kind === "aperture");
  const radix = selectors.map((s) => (s.spec as ApertureSpec).values.length);
  const layouts = slots.map((s) =>
    s.spec.kind === "address"
      ? s.spec.layouts.map((l) => (l === null ? null : compileLayout(l)))
      : null
  );
  const all = (1n << BigInt(entryBits)) - 1n;
  // Pass 3: one variant per combination of aperture values, checked for overlaps.
  const variants: Variant[] = [];
  const count = radix.reduce((a, b) => a * b, 1);
  for (let v = 0; v < count; v++) {
    const values = new Map<number, number>();
    let rest = v;
    selectors.forEach((s, k) => {
      values.set(s.index, rest % radix[k]);
      rest = Math.floor(rest / radix[k]);
    });
    const active: boolean[] = [];
    const lay: (Layout | null)[] = [];
    let covered = 0n;
    for (const s of slots) {
      let bitsHere = s.bits;
      let on = s.cond === null || s.cond.is.includes(values.get(s.cond.slot)!);
      let l: Layout | null = null;
      if (s.spec.kind === "address") {
        l = layouts[s.index]![values.get(s.apSlot)!];
        on = l !== null;
        bitsHere = l === null ? 0n : l.bits;
      }
      active.push(on);
      lay.push(l);
      if (!on) continue;
      if ((covered & bitsHere) !== 0n) {
        tableError(table, `${s.path} overlaps another field (bits ${hex(covered & bitsHere)})`);
      }
      covered |= bitsHere;
    }
    variants.push({ active, layouts: lay, free: all & ~covered });
  }
  const variantOf = (w: readonly number[]): Variant => {
    let v = 0;
    let scale = 1;
    for (let k = 0; k < selectors.length; k++) {
      const s = selectors[k];
      v += ((w[s.word] >>> s.shift) & s.mask) * scale;
      scale *= radix[k];
    }
    return variants[v];
  };
  for (const s of selectors) {
    if (s.word < 0) tableError(table, `aperture ${s.path} must lie within one 32-bit word`);
  }

  const narrow = (s: Slot, w: readonly number[], r: bigint): number =>
    s.word >= 0
      ? (w[s.word] >>> s.shift) & s.mask
      : Number((r >> BigInt(s.lo)) & ((1n << BigInt(s.width)) - 1n));

  function valueOf(s: Slot, variant: Variant, w: readonly number[], r: bigint): unknown {
    const spec = s.spec;
    if (spec.kind === "address") {
      const l = variant.layouts[s.index];
      return l === null ? 0 : numberIfSafe(((r >> l.lo) & l.widthMask) << l.shift);
    }
    if (spec.kind === "aperture") return spec.values[narrow(s, w, r)];
    const on = variant.active[s.index];
    if (spec.kind === "flag") return on && narrow(s, w, r) !== 0;
    return on ? narrow(s, w, r) : 0;
  }

  const topItems = table.items;
  const slotOf = (group: string | null, name: string): number =>
    byPath.get(group === null ? name : `${group}.${name}`)!;

  /** The decoded object's layout: top-level keys with their slot, or a group's keys and slots. */
  const plan = topItems.map((item) =>
    item.kind === "group"
      ? {
        name: item.name,
        slot: -1,
        sub: item.fields.map((f) => ({ name: f.name, slot: slotOf(item.name, f.name) })),
      }
      : { name: item.name, slot: slotOf(null, item.name), sub: [] }
  );

  function decodeWords(raw: readonly bigint[]): Record<string, unknown> {
    let r: bigint;
    let w: number[];
    if (raw.length === 1) {
      r = raw[0];
      w = [Number(r & 0xffff_ffffn), Number(r >> 32n)];
    } else {
      const [lo, hi] = raw;
      r = (hi << 64n) | lo;
      w = [
        Number(lo & 0xffff_ffffn),
        Number(lo >> 32n),
        Number(hi & 0xffff_ffffn),
        Number(hi >> 32n),
      ];
    }
    const variant = variantOf(w);
    const out: Record<string, unknown> = {};
    for (const item of plan) {
      if (item.slot < 0) {
        const sub: Record<string, unknown> = {};
        for (const f of item.sub) sub[f.name] = valueOf(slots[f.slot], variant, w, r);
        out[item.name] = sub;
      } else {
        out[item.name] = valueOf(slots[item.slot], variant, w, r);
      }
    }
    out.reserved = r & variant.free;
    return inspectable(out, summary);
  }

  function readInput(s: Slot, value: unknown): boolean | number | bigint | string {
    const spec = s.spec;
    switch (spec.kind) {
      case "flag":
        return flagField(value, s.what);
      case "uint":
        return uintField(value, s.width, s.what);
      case "aperture":
        return apertureField(value, spec.values, s.what);
      case "address":
        return addressField(value, s.what);
    }
  }

  /** Throws for a set field that does not exist under the entry's aperture values. */
  function absent(s: Slot, value: boolean | number | bigint | string, ap: number): never {
    const apSlot = s.spec.kind === "address" ? s.apSlot : s.cond!.slot;
    const apSpec = slots[apSlot].spec as ApertureSpec;
    const spec = s.spec;
    const names = spec.kind === "address"
      ? apSpec.values.filter((_, i) => spec.layouts[i] !== null)
      : s.cond!.is.map((i) => apSpec.values[i]);
    const why = spec.kind === "address" ? undefined : s.cond!.why;
    const shown = typeof value === "boolean" ? String(value) : hex(value as number | bigint);
    fail(
      "EINVAL",
      `${s.what} ${shown} needs ${slots[apSlot].path} ${quoteList(names)}, not "${
        apSpec.values[ap]
      }"${why === undefined ? "" : `: ${why}`}`,
    );
  }

  function encode(fields: object): bigint | [bigint, bigint] {
    checkFieldNames(fields, topKeys, table.what);
    const input: unknown[] = new Array(slots.length);
    const top = fields as Record<string, unknown>;
    for (const item of topItems) {
      const value = top[item.name];
      if (item.kind === "group") {
        if (value !== undefined) {
          checkFieldNames(value as object, groupKeys.get(item.name)!, `${table.what} ${item.name}`);
        }
        const sub = (value ?? {}) as Record<string, unknown>;
        for (const f of item.fields) input[slotOf(item.name, f.name)] = sub[f.name];
      } else {
        input[slotOf(null, item.name)] = value;
      }
    }
    const values: (boolean | number | bigint | string)[] = slots.map((s) =>
      readInput(s, input[s.index])
    );
    const w = [0, 0, 0, 0];
    for (const s of selectors) w[s.word] |= (values[s.index] as number) << s.shift;
    const variant = variantOf(w);
    let wide = 0n;
    for (const s of slots) {
      const v = values[s.index];
      const spec = s.spec;
      if (spec.kind === "address") {
        const a = v as bigint;
        const l = variant.layouts[s.index];
        if (l === null) {
          if (a !== 0n) absent(s, a, values[s.apSlot] as number);
          continue;
        }
        checkAddressFits(
          a,
          l.spec.shift,
          l.spec.shift + l.spec.hi - l.spec.lo + 1,
          s.what,
          l.label,
        );
        wide |= (a >> l.shift) << l.lo;
        continue;
      }
      if (spec.kind === "aperture") continue;
      const n = v === true ? 1 : v === false ? 0 : v as number;
      if (n === 0) continue;
      if (!variant.active[s.index]) absent(s, v, values[s.cond!.slot] as number);
      if (s.word >= 0) w[s.word] |= n << s.shift;
      else wide |= BigInt(n) << BigInt(s.lo);
    }
    const reserved = reservedField(top.reserved, variant.free, table.what);
    let r = wide | reserved;
    for (let k = 0; k < 2 * table.words; k++) {
      if (w[k] !== 0) r |= BigInt(w[k] >>> 0) << BigInt(32 * k);
    }
    if (table.words === 1) return r;
    return [r & 0xffff_ffff_ffff_ffffn, r >> 64n];
  }

  function isDefault(s: Slot, value: unknown): boolean {
    const spec = s.spec;
    if (spec.kind === "aperture") return value === spec.values[0];
    return value === false || value === 0 || value === 0n;
  }

  /** The value of the aperture slot `ap` in a decoded entry. */
  const apertureName = (ap: Slot, decoded: Record<string, unknown>): string =>
    (ap.group === null ? decoded : decoded[ap.group] as Record<string, unknown>)[
      ap.spec.name
    ] as string;

  function show(s: Slot, value: unknown, decoded: Record<string, unknown>): string | null {
    const spec = s.spec;
    switch (spec.kind) {
      case "aperture":
        return value as string;
      case "address":
        if (value === 0 && apertureName(slots[s.apSlot], decoded) === "invalid") return null;
        return hex(value as number | bigint);
      case "flag":
        return (value ? spec.label : spec.offLabel) ?? null;
      case "uint": {
        if (s.cond !== null) {
          const ap = slots[s.cond.slot];
          const index = (ap.spec as ApertureSpec).values.indexOf(apertureName(ap, decoded));
          if (!s.cond.is.includes(index)) return null;
        }
        const mode = spec.print ?? "nonzero";
        if (mode === "never" || (mode === "nonzero" && value === 0)) return null;
        const n = value as number;
        let text = `${spec.label ?? spec.name}=${spec.radix === 10 ? String(n) : hex(n)}`;
        if (spec.names !== undefined) {
          const holder = s.group === null ? decoded : decoded[s.group] as Record<string, unknown>;
          const name = holder[spec.names.whenClear] === false ? spec.names.values[n] : undefined;
          if (name !== undefined) text += ` (${name})`;
        }
        return text;
      }
    }
  }

  const order = table.print ?? topItems.map((i) => i.name);
  for (const name of order) {
    if (!topKeys.has(name) || name === "reserved") {
      tableError(table, `print names no field ${name}`);
    }
  }
  for (const item of topItems) {
    if (item.kind !== "group") continue;
    for (const f of item.print ?? []) {
      if (!byPath.has(`${item.name}.${f}`)) {
        tableError(table, `print names no field ${item.name}.${f}`);
      }
    }
  }

  function summary(decoded: Record<string, unknown>): string {
    let out = table.title;
    for (const name of order) {
      const item = topItems.find((i) => i.name === name)!;
      if (item.kind === "group") {
        const sub = decoded[name] as Record<string, unknown>;
        const parts: string[] = [];
        let plain = true;
        for (const f of item.print ?? item.fields.map((x) => x.name)) {
          const s = slots[slotOf(name, f)];
          if (!isDefault(s, sub[f])) plain = false;
          const text = show(s, sub[f], decoded);
          if (text !== null) parts.push(text);
        }
        out += ` ${name}=${plain ? "invalid" : parts.join(" ")}`;
      } else {
        const text = show(slots[slotOf(null, name)], decoded[name], decoded);
        if (text !== null) out += ` ${text}`;
      }
    }
    const reserved = decoded.reserved as bigint;
    if (reserved !== 0n) out += ` reserved=${hex(reserved)}`;
    return out;
  }

  function find(path: string): Slot {
    const i = byPath.get(path);
    if (i === undefined) tableError(table, `no field ${path}`);
    return slots[i];
  }

  return Object.freeze({
    table,
    encode,
    decodeWords,
    summary,
    pattern(fields: Record<string, boolean | number | string>) {
      let mask = 0n;
      for (const path of Object.keys(fields)) {
        const s = find(path);
        if (s.spec.kind === "address") tableError(table, `pattern cannot hold address ${path}`);
        mask |= s.bits;
      }
      const raw = encode(fields);
      const value = typeof raw === "bigint" ? raw : (raw[1] << 64n) | raw[0];
      return { value, mask };
    },
    slot: (path: string) => find(path).spec,
    place(path: string) {
      const s = find(path);
      if (s.word < 0) tableError(table, `${path} is not a narrow field`);
      return { word: s.word, shift: s.shift, mask: s.mask };
    },
    layout(path: string, apertureIndex: number) {
      const s = find(path);
      return s.spec.kind === "address" ? s.spec.layouts[apertureIndex] ?? null : null;
    },
  });
}

// ---------------------------------------------------------------------------
// Derived helpers for the codec: raw checks, pteInfo, fast VRAM encoders.

/** Decodes a 64-bit raw entry (bigint or safe number) with `entry`; throws EINVAL otherwise. */
export function decode64(entry: CompiledEntry, raw: bigint | number): Record<string, unknown> {
  return entry.decodeWords([u64(raw, entry.table.what)]);
}

/** Decodes a `[low, high]` 128-bit raw entry with `entry`; throws EINVAL otherwise. */
export function decode128(
  entry: CompiledEntry,
  raw: readonly [bigint | number, bigint | number],
): Record<string, unknown> {
  const what = entry.table.what;
  if (!Array.isArray(raw) || raw.length !== 2) {
    fail("EINVAL", `${what} must be [low, high] 64-bit words, got ${describe(raw)}`);
  }
  return entry.decodeWords([u64(raw[0], `${what} low word`), u64(raw[1], `${what} high word`)]);
}

/** A bit of a PTE field that `pteInfo` reads: a flag, or bit `bit` of a uint field. */
export interface BitRef {
  /** Field name. */
  readonly field: string;
  /** Bit of the field's value (uint fields). */
  readonly bit?: number;
}

/**
 * Builds `pteInfo` from a PTE table with fields `valid`, `aperture` and
 * `address`: `readOnly` clears `writable`, `privileged` sets `privileged`
 * (both only while valid).
 */
export function pteInfoOf(
  pte: CompiledEntry,
  bits: { readOnly: BitRef; privileged: BitRef },
  apertures: readonly PteAperture[],
): (raw: bigint) => PteInfo {
  const bitOf = (ref: BitRef): { word: number; bit: number } => {
    const p = pte.place(ref.field);
    return { word: p.word, bit: 2 ** (p.shift + (ref.bit ?? 0)) };
  };
  const valid = bitOf({ field: "valid" });
  const ro = bitOf(bits.readOnly);
  const priv = bitOf(bits.privileged);
  const ap = pte.place("aperture");
  const layouts = apertures.map((_, i) => {
    const l = pte.layout("address", i);
    return l === null ? null : compileLayout(l);
  });
  const test = (w: readonly number[], b: { word: number; bit: number }): boolean =>
    (w[b.word] & b.bit) !== 0;
  return (raw: bigint): PteInfo => {
    const w = [Number(raw & 0xffff_ffffn), Number(raw >> 32n)];
    const a = (w[ap.word] >>> ap.shift) & ap.mask;
    const l = layouts[a];
    const isValid = test(w, valid);
    return {
      valid: isValid,
      aperture: apertures[a],
      address: l === null ? 0 : numberIfSafe(((raw >> l.lo) & l.widthMask) << l.shift),
      writable: isValid && !test(w, ro),
      privileged: isValid && test(w, priv),
    };
  };
}

/**
 * A fast encoder for one entry shape: `template` fixes every field but the
 * address of group `group` (or of the entry) and optionally one uint field
 * `extra`; the result is `template + (address >> shift) << lo (+ extra)`,
 * computed in numbers when everything lies below bit 53 of one 64-bit word
 * (the hot path of the mapper), and with the full encoder otherwise.
 * Returns the word index the result lands in, the encoder and, in the
 * number case, the encoding as a {@linkcode VramLine} (no extra field).
 */
export function vramEncoderOf(
  entry: CompiledEntry,
  template: Record<string, unknown>,
  options: { group?: string; extra?: string } = {},
): {
  word: number;
  encode: (address: number, extra?: number) => bigint;
  line: VramLine | null;
} {
  const prefix = options.group === undefined ? "" : `${options.group}.`;
  const apPath = `${prefix}${(entry.slot(`${prefix}address`) as AddressSpec).aperture}`;
  const apSpec = entry.slot(apPath) as ApertureSpec;
  const tmplGroup = options.group === undefined
    ? template
    : (template[options.group] ?? {}) as Record<string, unknown>;
  const apIndex = Math.max(
    0,
    apSpec.values.indexOf(String(tmplGroup.aperture ?? apSpec.values[0])),
  );
  const layout = entry.layout(`${prefix}address`, apIndex);
  if (layout === null) tableError(entry.table, `${prefix}address has no layout for the template`);
  const l = compileLayout(layout);
  const what = `${entry.table.what} ${prefix}address`;
  const limitBits = layout.shift + layout.hi - layout.lo + 1;
  const raw = entry.encode(template);
  const words = typeof raw === "bigint" ? [raw] : raw;
  const word = Math.floor(layout.lo / 64);
  const base = words[word];
  const others = words.every((x, i) => i === word || x === 0n);
  const extra = options.extra === undefined ? null : entry.slot(options.extra) as UintSpec;
  const extraWidth = extra === null ? 0 : extra.hi - extra.lo + 1;
  const extraWhat = `${entry.table.what} ${options.extra}`;
  const lo = layout.lo - 64 * word;
  const fast = others && base < 2n ** 53n && layout.hi - 64 * word < 53 &&
    (extra === null || Math.floor(extra.lo / 64) === word);
  const baseN = Number(base);
  const addrScale = 2 ** (lo - layout.shift); // address / 2^shift * 2^lo
  const extraLo = extra === null ? 0 : extra.lo - 64 * word;
  const extraNumber = extra !== null && extraLo + extraWidth <= 53;
  const extraScale = 2 ** extraLo;
  const extraShift = BigInt(extraLo);
  const target: VramField = Object.freeze({
    alignBits: layout.shift,
    limitBits,
    what,
    field: l.label,
  });
  const check = (address: number): void => vramTarget(address, target);
  if (!fast) {
    return {
      word,
      line: null,
      encode(address: number, x?: number): bigint {
        check(address);
        const fields = { ...template } as Record<string, unknown>;
        if (options.group === undefined) fields.address = address;
        else fields[options.group] = { ...tmplGroup, address };
        if (options.extra !== undefined && x !== undefined) fields[options.extra] = x;
        const r = entry.encode(fields);
        return typeof r === "bigint" ? r : r[word];
      },
    };
  }
  return {
    word,
    line: Object.freeze({ base: baseN, scale: addrScale, target }),
    encode(address: number, x?: number): bigint {
      check(address);
      const n = baseN + address * addrScale;
      if (extra === null || x === undefined) return BigInt(n);
      const e = uintField(x, extraWidth, extraWhat);
      if (e === 0) return BigInt(n);
      return extraNumber ? BigInt(n + e * extraScale) : BigInt(n) | (BigInt(e) << extraShift);
    },
  };
}

/**
 * An entry whose fields but the address are fixed, as number arithmetic:
 * `base + address * scale` is the 64-bit word (exact, below 2^53) for every
 * address `target` accepts. The mapper encodes the constant part of a PTE
 * once per run this way and adds `pageSize * scale` per page: no bigint
 * per PTE.
 */
export interface VramLine {
  /** The word for address 0. */
  readonly base: number;
  /** Added per byte of address. */
  readonly scale: number;
  /** The addresses the line holds for (aligned, below the field's limit). */
  readonly target: VramField;
}

/** An entry field that holds a VRAM address, as the fast `vram*` encoders check it. */
export interface VramField {
  /** The address must be aligned to 2^alignBits (the field holds address >> alignBits). */
  readonly alignBits: number;
  /** The address must be below 2^limitBits. */
  readonly limitBits: number;
  /** What the address is, for errors ("v2 PTE address"). */
  readonly what: string;
  /** The hardware field, for errors ("ADDRESS_VID (32:8)"). */
  readonly field: string;
}

/**
 * Checks the VRAM target of a fast `vram*` encoder: a non-negative safe
 * integer that `target` can hold; throws EINVAL otherwise. The common case
 * costs only number arithmetic (pass a module-level `target`: no
 * allocation); bigints appear only to build the error.
 *
 * @example
 * ```ts
 * const PTE = { alignBits: 12, limitBits: 40, what: "PTE address", field: "ADDRESS_VID" };
 * vramTarget(0x1000, PTE); // ok
 * vramTarget(0x1800, PTE); // throws EINVAL: not aligned to 0x1000
 * ```
 */
export function vramTarget(address: number, target: VramField): void {
  const { alignBits, limitBits } = target;
  if (
    typeof address !== "number" || !Number.isSafeInteger(address) || address < 0 ||
    address % 2 ** alignBits !== 0 || address >= 2 ** limitBits
  ) {
    const a = typeof address === "number" && Number.isSafeInteger(address) && address >= 0
      ? BigInt(address)
      : fail("EINVAL", `${target.what} ${describe(address)} is not a non-negative safe integer`);
    checkAddressFits(a, alignBits, limitBits, target.what, target.field);
  }
}
