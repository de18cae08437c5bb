/**
 * The hostile-input matrix: every public call site a user can reach — the
 * methods of every object the REPL preloads or hands out (found by walking
 * their prototypes, so a new method is covered without listing it), the
 * REPL helpers and the functions mod.ts exports — called with each of the
 * hostile values below in each argument position, on both MMU versions.
 *
 * Each call either succeeds, or throws a NovaError (never a raw TypeError or
 * RangeError) whose message names the value when it is a primitive; after a
 * failure the state fingerprint (allocator, mappings, VA ranges, tables,
 * MMIO writes, window register, simulator errors, a VRAM hash) is what it
 * was before.
 */

import assert from "node:assert/strict";
import { describe, NovaError } from "../hw/errors.ts";
import * as api from "../mod.ts";
import type { Gpu } from "../mod.ts";
import { buildGlobals } from "../cli/globals.ts";

/** What an attacker types. */
const HOSTILE: [string, unknown][] = [
  ["-1", -1],
  ["1.5", 1.5],
  ["NaN", NaN],
  ["Infinity", Infinity],
  ["-Infinity", -Infinity],
  ["-0", -0],
  ["2^53", 2 ** 53],
  ["2^53 + 2", 2 ** 53 + 2],
  ["2^64", 2 ** 64],
  ["4096n", 4096n],
  ["-1n", -1n],
  ["2^64n", 2n ** 64n],
  ['"0x1000"', "0x1000"],
  ['""', ""],
  ["null", null],
  ["undefined", undefined],
  ["{}", {}],
  ["{ bogus }", { bogus: 1 }],
  ["[]", []],
  ["[1.5]", [1.5]],
  ["huge array", { length: 2 ** 40 }],
  ["0x1001", 0x1001],
  ["2^40", 2 ** 40],
  ["true", true],
  ["Symbol", Symbol("x")],
  ["a function", () => 1],
  ["a Uint16Array", new Uint16Array(2)],
];

/** Methods that end or reset the session, or only print: called with no hostile arguments. */
const SKIP = new Set([
  "constructor",
  "close",
  "destroy",
  "destroyVmm",
  "resetStats",
  "unbind",
  "restore",
  "cancel",
  "unmap",
  "free",
  "retire",
  "release",
  "drain",
  "clearFaults",
  // Wiring, not a user call: a success would rewire the aperture (it still validates).
  "setGuard",
  "setWatchPrinter",
  "hold",
  "protect",
  "pin",
  "whenDestroyed",
  "whenUnmapped",
]);

interface Fingerprint {
  free: number;
  extents: number;
  live: number;
  mappings: number;
  ranges: string;
  tables: string;
  writes: number;
  window: number;
  windowOpen: boolean;
  lost: string | null;
  vram: number;
}

function fingerprint(gpu: Gpu, vmms: () => api.Vmm[]): Fingerprint {
  const sim = gpu.sim!;
  const b = gpu.mm.buddy.stats();
  const live = vmms().filter((v) => !v.destroyed);
  return {
    free: b.free,
    extents: b.freeExtents,
    live: b.liveAllocations,
    mappings: live.reduce((n, v) => n + v.mappings().length, 0),
    ranges: live.map((v) => v.ranges.list().length).join(","),
    tables: live.map((v) => JSON.stringify(v.tableCounts())).join(","),
    writes: gpu.stats().mmioWrites,
    window: sim.praminBase,
    windowOpen: gpu.pramin.busy,
    lost: sim.lost,
    vram: sim.vram.hash(),
  };
}

/** Own and inherited methods of an object (not Object's), by name. */
function methods(obj: object): string[] {
  const out = new Set<string>();
  let p: object | null = obj;
  while (p !== null && p !== Object.prototype && p !== Function.prototype) {
    for (const k of Object.getOwnPropertyNames(p)) {
      const d = Object.getOwnPropertyDescriptor(p, k)!;
      if (typeof d.value === "function" && !SKIP.has(k) && !k.startsWith("_")) out.add(k);
    }
    p = Object.getPrototypeOf(p);
  }
  return [...out].sort();
}

interface Outcome {
  calls: number;
  raw: string[];
  unnamed: string[];
  changed: string[];
}

/** Objects the matrix made and keeps: a call that returns one of them does not own it. */
const keep = new WeakSet<object>();

function tryCall(
  label: string,
  fn: (...a: unknown[]) => unknown,
  self: unknown,
  args: unknown[],
  hostile: unknown,
  state: () => Fingerprint,
  out: Outcome,
): void {
  const before = state();
  out.calls++;
  try {
    const r = fn.apply(self, args);
    if (r instanceof Promise) r.catch(() => {});
    // A success may change state on purpose (it did what was asked): nothing to compare.
    // Undo what is cheap to undo so later calls start alike.
    if (r !== null && typeof r === "object" && keep.has(r)) return; // an existing object handed back
    if (r instanceof api.Allocation) r.free();
    else if (r !== null && typeof r === "object" && Symbol.dispose in r) {
      (r as { [Symbol.dispose](): void })[Symbol.dispose](); // windows, mappings
    }
    return;
  } catch (e) {
    if (!(e instanceof NovaError)) {
      out.raw.push(`${label}: ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}`);
      return;
    }
    const prim = (v: unknown) =>
      typeof v === "number" || typeof v === "bigint" || typeof v === "string";
    // The refusal must name what it refused: the hostile value, or another argument of the
    // call when that one was checked first (spelled as given, or in hex).
    const names = (v: unknown) =>
      prim(v) && (e.message.includes(describe(v)) || e.message.includes(String(v)) ||
        (typeof v !== "string" && Number.isInteger(Number(v)) &&
          new RegExp(`0x0*${(v as number | bigint).toString(16).replace("-", "")}`).test(
            e.message,
          )));
    if (prim(hostile) && !args.some(names)) {
      if (!/string|bigint|number|integer|NaN|Infinity/.test(e.message)) {
        out.unnamed.push(`${label}: ${e.message}`);
      }
    }
    const after = state();
    if (JSON.stringify(after) !== JSON.stringify(before)) {
      const diff = Object.keys(after).filter((k) =>
        JSON.stringify((after as unknown as Record<string, unknown>)[k]) !==
          JSON.stringify((before as unknown as Record<string, unknown>)[k])
      );
      out.changed.push(`${label}: ${diff.join(", ")} changed (${e.message})`);
    }
  }
}

async function matrix(device: string): Promise<Outcome> {
  const gpu = await api.openGpu({ device });
  const out: Outcome = { calls: 0, raw: [], unnamed: [], changed: [] };
  try {
    // The calls below use 0x1000 as a plausible address in every other argument, and a
    // valid call writes there: keep novamm's own tables out of the first MiB (on a chip
    // without display, usable VRAM starts at 0).
    const { start } = gpu.vram.usable;
    if (start < 0x100000) {
      keep.add(gpu.mm.buddy.alloc(0x100000 - start, { range: { start, end: 0x100000 } }));
    }
    gpu.bar1.bringUp();
    const ch = gpu.mm.createVmm({ vaSize: 1n << 36n, name: "matrix" });
    const a = gpu.mm.buddy.alloc(64 * 1024);
    const m = ch.mapPages([a.start / 4096], { writable: true });
    const bm = gpu.bar1.map(a, { writable: true });
    for (const o of [a, m, bm, bm.mapping, ch, gpu.bar1.vmm, gpu.pramin, gpu.bar0]) keep.add(o);
    const vmms = () => gpu.mm.vmms();
    const state = () => fingerprint(gpu, vmms);
    const g = buildGlobals(gpu) as unknown as Record<string, unknown>;
    const objects: [string, object][] = [
      ["gpu", gpu],
      ["bar0", gpu.bar0],
      ["pramin", gpu.pramin],
      ["tlb", gpu.tlb],
      ["mm", gpu.mm],
      ["buddy", gpu.mm.buddy],
      ["allocation", a],
      ["bar1", gpu.bar1],
      ["bar1.physical", gpu.bar1.physical],
      ["bar1.vmm", gpu.bar1.vmm],
      ["vmm", ch],
      ["vmm.ranges", ch.ranges],
      ["mapping", m],
      ["barMapping", bm],
      ["mmu.v2", api.mmu.v2],
      ["mmu.v3", api.mmu.v3],
      ["reg.window", Object.values(g.reg as Record<string, object>)[2]],
    ];
    const helpers = Object.entries(g).filter(([, v]) => typeof v === "function") as [
      string,
      (...a: unknown[]) => unknown,
    ][];
    const exported = Object.entries(api).filter(([n, v]) =>
      typeof v === "function" && !/^[A-Z]/.test(n) &&
      !["openGpu", "openDevice", "lockCard"].includes(n)
    ) as [string, (...a: unknown[]) => unknown][];
    const sites: [string, (...a: unknown[]) => unknown, unknown][] = [];
    for (const [name, obj] of objects) {
      for (const k of methods(obj)) {
        sites.push([`${name}.${k}`, (obj as Record<string, (...a: unknown[]) => unknown>)[k], obj]);
      }
    }
    for (const [name, fn] of helpers) if (name !== "help") sites.push([name, fn, undefined]);
    for (const [name, fn] of exported) sites.push([`mod.${name}`, fn, undefined]);
    for (const [label, fn, self] of sites) {
      const arity = Math.max(1, Math.min(fn.length, 3));
      for (let pos = 0; pos < arity; pos++) {
        for (const [hl, hv] of HOSTILE) {
          const args: unknown[] = [];
          // Other positions: a plausible value (a small aligned address) so the hostile one is
          // what the call meets.
          for (let i = 0; i < arity; i++) args.push(i === pos ? hv : 0x1000);
          tryCall(`${label}(${pos}: ${hl})`, fn, self, args, hv, state, out);
        }
      }
    }
    bm.unmap();
    m.unmap();
    a.free();
    gpu.mm.destroyVmm(ch);
  } finally {
    gpu.close();
  }
  return out;
}

for (const device of ["sim:ga102", "sim:gh100"]) {
  Deno.test(`hostile matrix on ${device}: NovaErrors naming the value, nothing changed on failure`, async () => {
    const out = await matrix(device);
    if (Deno.env.get("NOVAMM_MATRIX_DUMP")) {
      Deno.writeTextFileSync(Deno.env.get("NOVAMM_MATRIX_DUMP")!, JSON.stringify(out, null, 1));
    }
    assert.ok(out.calls > 3000, `only ${out.calls} calls`);
    const report = (what: string, xs: string[]) =>
      `${xs.length} ${what}:\n${[...new Set(xs)].slice(0, 40).join("\n")}`;
    assert.deepEqual(out.raw, [], report("raw JavaScript errors", out.raw));
    assert.deepEqual(out.changed, [], report("state changes on failure", out.changed));
    assert.deepEqual(out.unnamed, [], report("errors not naming the value", out.unnamed));
  });
}
