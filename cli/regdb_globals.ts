/**
 * Every register of the chip at the prompt, from the database generated out
 * of NVIDIA's published headers (`hw/regdb/`): `reg.NAME` (Tab completes;
 * indexed ones as `reg.NAME(i)`), `lookup(offset | "GLOB" | "substring")`,
 * `decode(name | offset, value)`, and `regs("NV_PFB_*")`, which reads a group
 * — only registers whose reads have no side effect (`sideEffect` in
 * hw/regdb/mod.ts: write-only, falcon memory ports, FIFO pops, clear
 * registers, the XAL memop range) unless `{ force: true }`.
 *
 * The database loads in the background when the session starts (it is one
 * dynamic import of the chip's data): until it is there, `reg` has the
 * registers novamm itself uses and `lookup`/`decode` return a promise.
 *
 * @module
 */

import { describe, fail, hex } from "../hw/errors.ts";
import type { Mmio } from "../hw/mmio.ts";
import type { Field } from "../hw/regs.ts";
import { checkOptions } from "../hw/validate.ts";
import {
  decode as decodeValue,
  type DecodedValue,
  describeRegister,
  formatDecoded,
  loadedRegisterDb,
  loadRegisterDb,
  lookup as lookupDb,
  registerByName,
  type RegisterDb,
  type RegisterDef,
  type RegisterHit,
  sideEffect,
  suggestRegister,
} from "../hw/regdb/mod.ts";
import { NamedRegister } from "./registers.ts";

/** The chip a session's database belongs to. */
type ChipRef = { chipId: number };

function fieldsOf(def: RegisterDef): Record<string, Field> {
  return Object.fromEntries(def.fields.map((f) => [f.name, { hi: f.hi, lo: f.lo }]));
}

/** A named register made from a database hit (instance offsets resolved). */
function namedFrom(bar0: Mmio, hit: RegisterHit): NamedRegister {
  const r = new NamedRegister(bar0, {
    name: hit.name,
    offset: hit.offset,
    fields: fieldsOf(hit.register),
  });
  // help(reg.NAME) shows the header's definition.
  Object.defineProperty(r, HELP, { value: () => describeRegister(hit) });
  return r;
}

const INSPECT = Symbol.for("Deno.customInspect");

/** Where a register's definition text is kept for `help()`. */
export const HELP = Symbol.for("novamm.register.help");

/**
 * `reg`: every register of the chip. Known ones (novamm's own) at once; the
 * rest once the database has loaded. An unknown name is an error with a
 * did-you-mean, not `undefined`.
 */
export function registerProxy(
  bar0: Mmio,
  chip: ChipRef,
  known: Record<string, NamedRegister>,
): Record<string, NamedRegister> {
  const made = new Map<string, unknown>();
  const db = () => loadedRegisterDb(chip);
  const names = (): string[] => {
    const d = db();
    const all = new Set(Object.keys(known));
    if (d !== undefined) { for (const r of d.registers) if (r.space === null) all.add(r.name); }
    return [...all].sort();
  };
  const make = (name: string): unknown => {
    if (Object.hasOwn(known, name)) return known[name];
    const d = db();
    const def = d?.byName.get(name);
    if (d === undefined || def === undefined || def.space !== null) return undefined;
    if (def.dims.length === 0) return namedFrom(bar0, registerByName(d, name));
    // Indexed: reg.NAME(i[, j]) gives the instance.
    const f = (...index: number[]) =>
      namedFrom(bar0, registerByName(d, `${name}(${index.join(",")})`));
    Object.defineProperty(f, "name", { value: name });
    Object.defineProperty(f, HELP, {
      value: () =>
        describeRegister({ register: def, name: `${name}(i)`, offset: def.offset, index: [] }),
    });
    return f;
  };
  const target: Record<string, NamedRegister> = {};
  Object.defineProperty(target, INSPECT, {
    value: () => {
      const d = db();
      return `reg: ${names().length} registers of ${d?.family ?? "this chip"}${
        d === undefined ? " (novamm's own; the header database is still loading)" : ""
      } — reg.NAME.read(), .write(v), .set(field, v); lookup("NAME*") to search`;
    },
  });
  return new Proxy(target, {
    get(t, key) {
      if (typeof key === "symbol") return Reflect.get(t, key);
      if (made.has(key)) return made.get(key);
      const v = make(key);
      if (v !== undefined) {
        made.set(key, v);
        return v;
      }
      if (key === "then" || key === "toJSON" || key === "constructor") return undefined;
      const d = db();
      const near = d === undefined ? null : suggestRegister(d, key);
      fail(
        "EINVAL",
        `no register ${key} on this chip${
          d === undefined ? " (the header database is still loading)" : ""
        }`,
        near === null
          ? `lookup("${key.split("_").slice(0, 3).join("_")}*") lists what there is`
          : `did you mean reg.${near}?`,
      );
    },
    has(_t, key) {
      return typeof key === "string" && make(key) !== undefined;
    },
    ownKeys() {
      return [...names(), INSPECT];
    },
    getOwnPropertyDescriptor(t, key) {
      if (typeof key !== "string") return Reflect.getOwnPropertyDescriptor(t, key);
      const v = made.get(key) ?? make(key);
      if (v === undefined) return undefined;
      made.set(key, v);
      return { value: v, enumerable: true, configurable: true, writable: false };
    },
    set() {
      fail("EPERM", "reg is read-only: reg.NAME.write(v) or .set(field, v) writes a register");
    },
  });
}

/** The database of the session's chip (loaded once). */
function dbOf(chip: ChipRef): RegisterDb | Promise<RegisterDb> {
  return loadedRegisterDb(chip) ?? loadRegisterDb(chip);
}

function printed<T extends object>(value: T, text: () => string): T {
  return Object.defineProperty(value, Symbol.for("Deno.customInspect"), { value: text });
}

/** `lookup(x)`: registers by offset, name, glob or substring, with their definitions. */
export function lookupFor(chip: ChipRef) {
  const run = (db: RegisterDb, query: number | string): RegisterHit[] => {
    const hits = lookupDb(db, query, { limit: 200 });
    // A name with no hit: the nearest register name, as decode and reg.NAME say it.
    const near = hits.length === 0 && typeof query === "string" && /^NV_\w+$/.test(query)
      ? suggestRegister(db, query)
      : null;
    return printed(
      hits,
      () =>
        hits.length === 0
          ? `no register matches ${typeof query === "number" ? hex(query) : JSON.stringify(query)}${
            near === null ? "" : `; did you mean "${near}"?`
          }`
          : hits.length === 1
          ? describeRegister(hits[0])
          : hits.map((h) => `${hex(h.offset, 6)}  ${h.name}  ${h.register.access}`).join("\n"),
    );
  };
  return (query: number | string): RegisterHit[] | Promise<RegisterHit[]> => {
    if (typeof query !== "number" && typeof query !== "string") {
      fail("EINVAL", `lookup takes an offset or a name pattern, not ${describe(query)}`);
    }
    const db = dbOf(chip);
    return db instanceof Promise ? db.then((d) => run(d, query)) : run(db, query);
  };
}

/** `decode(name | offset, value)`: every field with its named value. */
export function decodeFor(chip: ChipRef) {
  const run = (db: RegisterDb, register: string | number, value: number): DecodedValue => {
    const d = decodeValue(db, register, value);
    return printed(d, () => formatDecoded(d, { multiline: true }));
  };
  return (register: string | number, value: number): DecodedValue | Promise<DecodedValue> => {
    const db = dbOf(chip);
    return db instanceof Promise
      ? db.then((d) => run(d, register, value))
      : run(db, register, value);
  };
}

/** One register read by `regs(glob)`: decoded, or skipped with the reason. */
export interface GroupReading {
  /** Register (instance) name. */
  name: string;
  /** BAR0 offset. */
  offset: number;
  /** The value read, or null when it was not read. */
  value: number | null;
  /** Why it was not read (a side effect), or the decoded fields. */
  text: string;
}

/**
 * `regs("NV_PFB_*")`: reads every register the glob names once and decodes
 * it — only those whose read has no side effect, unless `{ force: true }`.
 */
export function readGroup(
  bar0: Mmio,
  db: RegisterDb,
  glob: string,
  options: { force?: boolean } = {},
): GroupReading[] {
  if (typeof glob !== "string") fail("EINVAL", `regs takes a name glob, not ${describe(glob)}`);
  checkOptions(options, { force: "boolean" }, "regs options");
  const hits = lookupDb(db, glob, { limit: 2000 }).filter((h) => h.register.space === null);
  const out: GroupReading[] = [];
  for (const h of hits) {
    const why = sideEffect(h.register);
    if (why !== null && !options.force) {
      out.push({ name: h.name, offset: h.offset, value: null, text: `not read: ${why}` });
      continue;
    }
    if (h.offset + 4 > bar0.size) continue;
    const v = bar0.read32(h.offset);
    out.push({
      name: h.name,
      offset: h.offset,
      value: v,
      text: formatDecoded(decodeValue(db, h, v)),
    });
  }
  return printed(out, () => {
    const w = Math.max(0, ...out.map((r) => r.name.length));
    return out.map((r) =>
      `${hex(r.offset, 6)}  ${r.name.padEnd(w)}  ${
        r.value === null ? "          " : hex(r.value, 8)
      }  ${r.text}`
    ).join("\n") || `no register matches ${JSON.stringify(glob)}`;
  });
}

/**
 * For `help(x)`: the header definition of a register from `reg` (or of one
 * of novamm's own named registers, once the database has loaded), or null.
 */
export function registerHelp(value: unknown, chip: ChipRef): string | null {
  if (
    (typeof value === "object" || typeof value === "function") && value !== null && HELP in value
  ) {
    return (value as Record<symbol, () => string>)[HELP]();
  }
  if (value instanceof NamedRegister) {
    const db = loadedRegisterDb(chip);
    if (db === undefined) return null;
    if (db.byName.has(value.name)) return describeRegister(registerByName(db, value.name));
    // novamm's name for it may differ from the header's (NV_XAL_EP_BAR0_WINDOW): by offset.
    const hit = lookupDb(db, value.offset, { limit: 1 })[0];
    if (hit !== undefined) {
      return `${value.name} is ${hit.name} in NVIDIA's headers:\n${describeRegister(hit)}`;
    }
  }
  return null;
}
