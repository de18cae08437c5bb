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
