/**
 * `help(x)` at the prompt: signatures, the first paragraph of the JSDoc and
 * an example for any class, method, getter or function novamm exports —
 * taken from `cli/help_data.json`, which `tools/gen_help.ts` generates from
 * the source (a test fails when it is stale), so nothing is typed twice.
 *
 * Methods are found by identity: every exported class's prototype chain is
 * indexed once, so `help(pramin.read32)` or `help(w.fill)` names the class
 * the function belongs to without calling anything.
 *
 * @module
 */

import data from "./help_data.json" with { type: "json" };
import * as api from "../mod.ts";
import type { HelpData, HelpEntry } from "../tools/gen_help.ts";
import { fail } from "../hw/errors.ts";
import { didYouMean } from "../hw/validate.ts";
import type { EntryTables } from "../mm/pagetable/codec.ts";
import type { FieldSpec, GroupSpec } from "../mm/pagetable/fields.ts";

const help = data as HelpData;

interface Owner {
  cls: string;
  member: string;
}

let index: Map<unknown, Owner> | null = null;
const classes = new Map<unknown, string>();
const functions = new Map<unknown, string>();

function build(): Map<unknown, Owner> {
  const map = new Map<unknown, Owner>();
  for (const [name, value] of Object.entries(api)) {
    if (typeof value !== "function") continue;
    if (help.functions[name] !== undefined) functions.set(value, name);
    if (help.classes[name] === undefined) continue;
    classes.set(value, name);
    const proto = (value as { prototype?: object }).prototype;
    if (proto === undefined) continue;
    for (const key of Object.getOwnPropertyNames(proto)) {
      const d = Object.getOwnPropertyDescriptor(proto, key)!;
      for (const fn of [d.value, d.get]) {
        if (typeof fn === "function" && !map.has(fn)) map.set(fn, { cls: name, member: key });
      }
    }
  }
  return map;
}

function owners(): Map<unknown, Owner> {
  index ??= build();
  return index;
}

/** The exported class an object is an instance of (nearest on its prototype chain), or null. */
export function classOf(value: unknown): string | null {
  owners();
  let p = value !== null && typeof value === "object" ? Object.getPrototypeOf(value) : null;
  while (p !== null && p !== Object.prototype) {
    const name = classes.get(p.constructor);
    if (name !== undefined) return name;
    p = Object.getPrototypeOf(p);
  }
  return null;
}

/** Where a function is documented: `{ cls, member }`, an exported function name, or null. */
export function ownerOf(fn: unknown): Owner | { fn: string } | null {
  const o = owners().get(fn);
  if (o !== undefined) return o;
  const f = functions.get(fn);
  return f === undefined ? null : { fn: f };
}

/** The documentation entry of a member of an exported class. */
export function memberHelp(cls: string, member: string): HelpEntry | undefined {
  return help.classes[cls]?.members[member];
}

/**
 * The class a member returns (for completion after a call: `mm.buddy.alloc(4096).`
 * completes an `Allocation`'s members), or null when it is not one class.
 */
export function returnClass(fn: unknown): string | null {
  const o = ownerOf(fn);
  if (o === null) return null;
  const e = "fn" in o ? help.functions[o.fn] : memberHelp(o.cls, o.member);
  const r = e?.returns;
  return r !== undefined && help.classes[r] !== undefined ? r : null;
}

/** Member names of a documented class (public ones, as the docs list them). */
export function classMembers(cls: string): string[] {
  return Object.keys(help.classes[cls]?.members ?? {}).sort();
}

function entryText(title: string, e: HelpEntry): string {
  const lines = [title, `  ${e.doc}`];
  if (e.example !== undefined) {
    lines.push(
      "  e.g.",
      ...e.example.split("\n").map((l) => `    ${l}`),
    );
  }
  return lines.join("\n");
}

/**
 * The help text for a value, or null when novamm does not document it: a
 * method or getter (signature, doc, example), an exported function, a class
 * or an instance of one (its doc and every member's signature, one a line).
 */
export function helpFor(value: unknown): string | null {
  if (typeof value === "function") {
    const o = ownerOf(value);
    if (o !== null && "fn" in o) return entryText(help.functions[o.fn].sig, help.functions[o.fn]);
    if (o !== null) {
      const e = memberHelp(o.cls, o.member);
      if (e !== undefined) return entryText(`${o.cls}.${e.sig}`, e);
    }
    const cls = classes.get(value);
    if (cls !== undefined) return classText(cls);
    return null;
  }
  const cls = classOf(value);
  return cls === null ? null : classText(cls);
}

function classText(cls: string): string {
  const c = help.classes[cls];
  const lines = [`class ${cls}: ${c.doc}`];
  if (c.example !== undefined) {
    lines.push(
      "  e.g.",
      ...c.example.split("\n").map((l) => `    ${l}`),
    );
  }
  lines.push("members:");
  const entries = Object.values(c.members).sort((a, b) => a.sig.localeCompare(b.sig));
  const w = Math.min(60, Math.max(...entries.map((e) => e.sig.length)));
  for (const e of entries) {
    const sig = e.sig.length > w ? e.sig : e.sig.padEnd(w);
    lines.push(`  ${sig}  ${e.doc.length > 90 ? `${e.doc.slice(0, 87)}...` : e.doc}`);
  }
  lines.push(`(help(obj.member) for one member with its example)`);
  return lines.join("\n");
}

/** The parameter list of a plain function from its source text (for the preloaded helpers). */
export function paramsOf(fn: (...args: never[]) => unknown): string {
  const src = Function.prototype.toString.call(fn);
  const m = /^(?:async\s*)?(?:function\s*[\w$]*\s*)?\(([^)]*)\)/.exec(src) ??
    /^(?:async\s*)?([\w$]+)\s*=>/.exec(src);
  if (m === null) return "(...)";
  return `(${m[1].replace(/\s+/g, " ").trim()})`;
}

/** The exported classes `help("Name")` knows. */
export function classNames(): string[] {
  return Object.keys(help.classes).sort();
}

/**
 * `help("Vmm")` / `help("Vmm.map")`: an exported class, or one of its
 * members, by name; null when there is no such class.
 */
export function classHelp(cls: string, member?: string): string | null {
  if (help.classes[cls] === undefined) return null;
  if (member === undefined) return classText(cls);
  const e = memberHelp(cls, member);
  if (e !== undefined) return entryText(`${cls}.${e.sig}`, e);
  const near = didYouMean(member, classMembers(cls));
  return fail(
    "EINVAL",
    `class ${cls} has no documented member ${JSON.stringify(member)}`,
    near === null ? `help("${cls}") lists them` : `did you mean ${cls}.${near}?`,
  );
}

/** What each codec function takes and returns, and which field table it reads. */
const CODEC_FUNCTIONS: Record<string, [string, string, keyof EntryTables | null]> = {
  encodePte: ["encodePte(fields): bigint", "Encodes a PTE from named fields.", "pte"],
  decodePte: ["decodePte(raw): Pte", "Decodes any 64-bit value as a PTE.", "pte"],
  encodePde: ["encodePde(fields): bigint", "Encodes a PDE (above PD0) from named fields.", "pde"],
  decodePde: ["decodePde(raw): Pde", "Decodes any 64-bit value as a PDE.", "pde"],
  encodeDualPde: [
    "encodeDualPde(fields): [low, high]",
    "Encodes a 128-bit PD0 dual PDE.",
    "dualPde",
  ],
  decodeDualPde: ["decodeDualPde([low, high]): DualPde", "Decodes a PD0 dual PDE.", "dualPde"],
  vramPte: [
    "vramPte(address, { writable, kind? }): bigint",
    "A valid PTE to a VRAM page (kind 0 unless given).",
    "pte",
  ],
  vramPde: ["vramPde(address): bigint", "A PDE pointing to a VRAM table.", "pde"],
  vramDualPde: [
    "vramDualPde({ big?, small? }): [low, high]",
    "A dual PDE to VRAM big and/or small tables.",
    "dualPde",
  ],
  pteInfo: [
    "pteInfo(raw): PteInfo",
    "Version-independent view of a raw PTE: valid, aperture, address, writable, privileged.",
    "pte",
  ],
  isNoSmallPte: [
    "isNoSmallPte(raw): boolean",
    'True for the big-page "no small pages" marker.',
    null,
  ],
};

function fieldLines(items: readonly (FieldSpec | GroupSpec)[], indent: string): string[] {
  const out: string[] = [];
  for (const f of items) {
    switch (f.kind) {
      case "group":
        out.push(`${indent}${f.name}: {`, ...fieldLines(f.fields, `${indent}  `), `${indent}}`);
        break;
      case "flag":
        out.push(`${indent}${f.name.padEnd(12)} bit ${f.bit}  boolean`);
        break;
      case "uint":
        out.push(`${indent}${f.name.padEnd(12)} bits ${f.hi}:${f.lo}  number`);
        break;
      case "aperture":
        out.push(
          `${indent}${f.name.padEnd(12)} bits ${f.hi}:${f.lo}  ${
            f.values.map((v) => JSON.stringify(v)).join(" | ")
          }`,
        );
        break;
      case "address": {
        const ap = items.find((a) => a.kind === "aperture" && a.name === f.aperture);
        const per = f.layouts.map((l, i) =>
          l === null
            ? null
            : `${ap?.kind === "aperture" ? ap.values[i] : i}: bits ${l.hi}:${l.lo} << ${l.shift}`
        ).filter((x) => x !== null);
        out.push(`${indent}${f.name.padEnd(12)} byte address (${per.join("; ")})`);
        break;
      }
    }
  }
  return out;
}

/**
 * `help(mmu.v2.encodePte)`: a function of an MMU codec with the field list
 * of the entry it encodes or decodes (from the codec's own field tables), or
 * null when `value` is not one.
 */
export function codecHelp(value: unknown): string | null {
  if (typeof value !== "function") return null;
  for (const [v, codec] of Object.entries(api.mmu)) {
    for (const [fn, [sig, doc, table]] of Object.entries(CODEC_FUNCTIONS)) {
      if ((codec as unknown as Record<string, unknown>)[fn] !== value) continue;
      const lines = [`mmu.${v}.${sig}`, `  ${doc}`];
      if (table !== null) {
        const t = codec.tables[table];
        lines.push(
          `  fields of the ${t.title} (${t.words * 64} bits):`,
          ...fieldLines(t.items, "    "),
        );
      }
      return lines.join("\n");
    }
  }
  return null;
}

/**
 * `help(obj, "member")`: a member described without reading it (a getter is
 * not run): its documentation when its class is documented, else what kind
 * of member it is; EINVAL with a did-you-mean when there is none.
 */
export function propertyHelp(obj: unknown, member: string, label: string): string {
  owners();
  if (obj === null || obj === undefined) {
    fail("EINVAL", `help: ${label} is ${obj}, it has no member ${member}`);
  }
  let p: object | null = Object(obj);
  let d: PropertyDescriptor | undefined;
  while (p !== null) {
    d = Object.getOwnPropertyDescriptor(p, member);
    if (d !== undefined) break;
    p = Object.getPrototypeOf(p);
  }
  if (d === undefined) {
    const names: string[] = [];
    for (
      let q: object | null = Object(obj);
      q !== null && q !== Object.prototype;
      q = Object.getPrototypeOf(q)
    ) {
      names.push(...Object.getOwnPropertyNames(q));
    }
    const near = nearMembers(member, names);
    return fail(
      "EINVAL",
      `${label}.${member} is not a member of ${label}`,
      near.length === 0 ? `help(${label}) lists its members` : `did you mean ${near.join(" / ")}?`,
    );
  }
  // The documented class that declares it (nearest on the chain).
  for (let q: object | null = Object(obj); q !== null; q = Object.getPrototypeOf(q)) {
    const cls = classes.get((q as { constructor?: unknown }).constructor);
    if (cls === undefined) continue;
    const e = memberHelp(cls, member);
    if (e !== undefined) return entryText(`${label}.${member} — ${cls}.${e.sig}`, e);
  }
  if (typeof d.value === "function") {
    const h = helpFor(d.value) ?? codecHelp(d.value);
    if (h !== null) return h;
    return `${label}.${member}${paramsOf(d.value)}: a function (undocumented)`;
  }
  if (d.get !== undefined) return `${label}.${member}: a getter (undocumented; not read by help)`;
  const v = d.value;
  const kind = v === null ? "null" : Array.isArray(v) ? "an array" : typeof v;
  return `${label}.${member}: ${kind === "object" ? "an object" : `a ${kind}`} property${
    typeof v === "object" && v !== null ? ` (help(${label}.${member}) for its members)` : ""
  }`;
}

/** Candidates for a misspelt member: the nearest name and those the word starts, up to four. */
export function nearMembers(word: string, names: Iterable<string>): string[] {
  const all = [...new Set(names)].filter((n) =>
    n !== word && n !== "constructor" && !n.startsWith("_") && /^[A-Za-z$][\w$]*$/.test(n)
  );
  const out: string[] = [];
  const best = didYouMean(word, all);
  if (best !== null) out.push(best);
  const w = word.toLowerCase();
  for (const n of all.sort()) {
    if (w.length >= 2 && n.toLowerCase().startsWith(w) && !out.includes(n)) out.push(n);
  }
  return out.slice(0, 4);
}
