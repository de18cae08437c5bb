/**
 * Named registers at the prompt, as m1n1's proxyclient has them: `reg.NAME`
 * for every register novamm knows on this chip (hw/reg_dump.ts, with its
 * fields from hw/regs.ts), read decoded, written whole or field by field;
 * and `set32` / `clear32` / `mask32` read-modify-writes for raw offsets.
 *
 * A read-modify-write never writes back a value that read as a PRI error or
 * all ones (EIO / ENODEV instead), and every write goes through the session's
 * BAR0, so a read-only session refuses it.
 *
 * @module
 */

import { describe, fail, hex } from "../hw/errors.ts";
import type { Mmio } from "../hw/mmio.ts";
import { type Field, getField, isGpuGone, isPriError, setField } from "../hw/regs.ts";
import type { KnownRegister } from "../hw/reg_dump.ts";
import { checkUint, didYouMean } from "../hw/validate.ts";

/** One read of a named register: the raw value and its fields. */
export interface RegisterValue {
  /** Register name. */
  name: string;
  /** BAR0 offset. */
  offset: number;
  /** The 32-bit value read. */
  value: number;
  /** Field values, or null when the read was a PRI error or all ones. */
  fields: Record<string, number> | null;
}

function checkWord(value: unknown, what: string): number {
  checkUint(value, what);
  if ((value as number) > 0xffffffff) {
    fail("EINVAL", `${what} ${describe(value)} does not fit in 32 bits (limit 0xffffffff)`);
  }
  return value as number;
}

function readForUpdate(bar0: Mmio, offset: number, name: string): number {
  const v = bar0.read32(offset);
  if (isGpuGone(v)) {
    fail("ENODEV", `${name} (${hex(offset)}) read 0xffffffff: the GPU is gone; nothing written`);
  }
  if (isPriError(v)) {
    fail(
      "EIO",
      `${name} (${hex(offset)}) read a PRI error ${
        hex(v, 8)
      }; a read-modify-write would write it back, so nothing was written`,
    );
  }
  return v;
}

/** The BAR0 of each register (kept off the object: a register is used through a Proxy). */
const BAR0 = new WeakMap<object, Mmio>();

function fieldOf(r: NamedRegister, name: unknown): Field {
  const f = typeof name === "string" && Object.hasOwn(r.fields, name) ? r.fields[name] : undefined;
  if (f === undefined) {
    const near = typeof name === "string" ? didYouMean(name, Object.keys(r.fields)) : null;
    fail(
      "EINVAL",
      `${r.name} has no field ${describe(name)}; fields: ${Object.keys(r.fields).join(", ")}`,
      near === null ? undefined : `did you mean ${r.name}.${near}?`,
    );
  }
  return f;
}

/**
 * A register with named fields: `read()`, `write(v)`, `set(field, v)`,
 * `clear(field)`, `mask(clear, set)`; and each field as a property, as
 * m1n1's proxyclient has them: `reg.X.FIELD` reads the register and returns
 * that field, `reg.X.FIELD = v` is a read-modify-write of that field (as
 * `set`). Assigning anything else is EINVAL with a did-you-mean.
 */
export class NamedRegister {
  /** NVIDIA's name. */
  readonly name: string;
  /** BAR0 offset. */
  readonly offset: number;
  /** Fields by name. */
  readonly fields: Readonly<Record<string, Field>>;

  /** Made by {@linkcode buildRegisters}. */
  constructor(bar0: Mmio, r: KnownRegister) {
    this.name = r.name;
    this.offset = r.offset;
    this.fields = r.fields;
    BAR0.set(this, bar0);
    const isField = (t: NamedRegister, key: string | symbol): key is string =>
      typeof key === "string" && Object.hasOwn(t.fields, key) && !(key in t);
    const proxy = new Proxy(this, {
      get(t, key) {
        return isField(t, key) ? t.field(key) : Reflect.get(t, key, t);
      },
      set(t, key, value) {
        if (isField(t, key)) {
          t.set(key, value);
          return true;
        }
        if (typeof key === "symbol") return Reflect.set(t, key, value, t);
        return fieldOf(t, key) === undefined;
      },
      has(t, key) {
        return isField(t, key) || Reflect.has(t, key);
      },
      ownKeys(t) {
        return [...Reflect.ownKeys(t), ...Object.keys(t.fields).filter((k) => isField(t, k))];
      },
      getOwnPropertyDescriptor(t, key) {
        if (!isField(t, key)) return Reflect.getOwnPropertyDescriptor(t, key);
        // Listed (completion sees the fields) but not read by listing.
        return { get: () => t.field(key), set: (v) => t.set(key, v), configurable: true };
      },
    });
    BAR0.set(proxy, bar0);
    return proxy;
  }

  /** One read, one field of it (what `reg.X.FIELD` returns); EIO on a PRI error, ENODEV on all ones. */
  field(name: string): number {
    const f = fieldOf(this, name);
    const v = BAR0.get(this)!.read32(this.offset);
    if (isGpuGone(v)) {
      fail("ENODEV", `${this.name} (${hex(this.offset)}) read 0xffffffff: the GPU is gone`);
    }
    if (isPriError(v)) {
      fail("EIO", `${this.name} (${hex(this.offset)}) read a PRI error ${hex(v, 8)}`);
    }
    return getField(v, f);
  }

  /** One 32-bit read, decoded field by field. */
  read(): RegisterValue {
    const value = BAR0.get(this)!.read32(this.offset);
    const bad = isPriError(value) || isGpuGone(value);
    const fields = bad
      ? null
      : Object.fromEntries(Object.entries(this.fields).map(([k, f]) => [k, getField(value, f)]));
    const r = { name: this.name, offset: this.offset, value, fields };
    return Object.defineProperty(r, Symbol.for("Deno.customInspect"), {
      value: () =>
        `${this.name} ${hex(this.offset)} = ${hex(value, 8)}  ${
          fields === null
            ? isGpuGone(value) ? "(all ones: GPU gone)" : "(PRI error)"
            : Object.entries(fields).map(([k, v]) => `${k}=${hex(v)}`).join(" ")
        }`,
    });
  }

  /** Writes the whole register. */
  write(value: number): void {
    BAR0.get(this)!.write32(this.offset, checkWord(value, `${this.name} value`));
  }

  /** Read-modify-write of one field. */
  set(field: string, value: number): void {
    const f = fieldOf(this, field);
    const max = f.hi - f.lo >= 31 ? 0xffffffff : 2 ** (f.hi - f.lo + 1) - 1;
    checkUint(value, `${this.name}.${field} value`);
    if (value > max) {
      fail(
        "EINVAL",
        `${this.name}.${field} value ${hex(value)} does not fit ${f.hi}:${f.lo} (max ${hex(max)})`,
      );
    }
    const bar0 = BAR0.get(this)!;
    const v = readForUpdate(bar0, this.offset, this.name);
    bar0.write32(this.offset, setField(v, f, value));
  }

  /** Read-modify-write setting one field to zero. */
  clear(field: string): void {
    this.set(field, 0);
  }

  /** Read-modify-write: clears the bits of `clear`, then sets those of `set`. */
  mask(clear: number, set: number): void {
    mask32(BAR0.get(this)!, this.offset, clear, set, this.name);
  }

  /** The one-line summary as text (`${x}` prints it, not `[object Object]`). */
  toString(): string {
    return (this as unknown as Record<symbol, () => string>)[Symbol.for("Deno.customInspect")]();
  }

  /** The one-line summary the REPL and `Deno.inspect` print. */
  [Symbol.for("Deno.customInspect")](): string {
    return `${this.name} ${hex(this.offset)} (fields ${
      Object.keys(this.fields).join(", ")
    }; .read() to read, .FIELD to read or set one)`;
  }
}

function checkOffset(bar0: Mmio, offset: unknown): number {
  checkUint(offset, "BAR0 offset");
  if ((offset as number) % 4 !== 0 || (offset as number) + 4 > bar0.size) {
    fail(
      "EINVAL",
      `BAR0 offset ${describe(offset)} must be 4-byte aligned and below ${hex(bar0.size)}`,
    );
  }
  return offset as number;
}

/** Read-modify-write of a raw BAR0 register: `(v & ~clear) | set`. */
export function mask32(
  bar0: Mmio,
  offset: number,
  clear: number,
  set: number,
  name?: string,
): void {
  checkOffset(bar0, offset);
  checkWord(clear, "clear mask");
  checkWord(set, "set mask");
  const v = readForUpdate(bar0, offset, name ?? `register ${hex(offset)}`);
  bar0.write32(offset, ((v & ~clear) | set) >>> 0);
}

/**
 * `reg` (the named registers), `set32`, `clear32` and `mask32` for one BAR0.
 *
 * @example
 * ```ts
 * import { knownRegisters, openGpu } from "../mod.ts";
 * using gpu = await openGpu({ device: "sim" });
 * const { reg, set32 } = buildRegisters(gpu.bar0, knownRegisters("Ampere", 0x172));
 * reg.NV_PBUS_BAR0_WINDOW.read();
 * set32(0x1700, 0x1);
 * ```
 */
export function buildRegisters(bar0: Mmio, known: readonly KnownRegister[]): {
  reg: Record<string, NamedRegister>;
  set32: (offset: number, bits: number) => void;
  clear32: (offset: number, bits: number) => void;
  mask32: (offset: number, clear: number, set: number) => void;
} {
  const reg: Record<string, NamedRegister> = {};
  for (const r of known) reg[r.name] = new NamedRegister(bar0, r);
  Object.defineProperty(reg, Symbol.for("Deno.customInspect"), {
    value: () =>
      Object.values(reg).map((r) => `${hex(r.offset, 6)}  ${r.name}`).join("\n") +
      "\n(reg.NAME.read(), .write(v), .set(field, v), .clear(field), .mask(clear, set))",
  });
  return {
    reg,
    set32: (offset, bits) => mask32(bar0, offset, 0, bits),
    clear32: (offset, bits) => mask32(bar0, offset, bits, 0),
    mask32: (offset, clear, set) => mask32(bar0, offset, clear, set),
  };
}
