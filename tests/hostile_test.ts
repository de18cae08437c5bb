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
  // Creates the file its argument names (a hostile "0x1000" would land in the working
  // directory): its refusals are tested in tests/pramin_save_test.ts.
  "save",
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
      // A view aimed where the window already is: its methods must validate (issue 15).
      ["pramin.view", gpu.pramin.view(gpu.pramin.base < 0 ? 0 : gpu.pramin.base)],
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

/**
 * The surfaces the prototype walk above cannot call safely — constructors
 * (TraceWriter would create files, Tlb is made by openGpu) and callback
 * registrations (a stored non-function breaks unmap and close later) — with
 * every hostile value in every position: each call is either one of the
 * values that site accepts (listed) or a NovaError naming the value; a raw
 * JavaScript error and a silent acceptance both fail, and refused calls
 * leave no file, no record, no callback and no pin behind.
 */
Deno.test("hostile matrix: TraceWriter, Tlb construction, Mapping and Vmm callbacks", async () => {
  const dir = await Deno.makeTempDir();
  const gpu = await api.openGpu({ device: "sim:ga102" });
  const raw: string[] = [];
  const silent: string[] = [];
  const refused: string[] = [];
  const unnamed: string[] = [];
  let calls = 0;
  const prim = (v: unknown) =>
    typeof v === "number" || typeof v === "bigint" || typeof v === "string";
  /** Calls `fn`; `ok` says whether the value is one this site takes. Returns what it returned. */
  const call = (label: string, hv: unknown, ok: boolean, fn: () => unknown): unknown => {
    calls++;
    try {
      const r = fn();
      if (!ok) silent.push(label);
      return r;
    } catch (e) {
      if (!(e instanceof NovaError)) {
        raw.push(`${label}: ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}`);
      } else if (ok) {
        refused.push(`${label}: ${e.message}`);
      } else if (
        prim(hv) && !e.message.includes(describe(hv)) && !e.message.includes(String(hv)) &&
        !/string|bigint|number|integer|NaN|Infinity/.test(e.message)
      ) {
        unnamed.push(`${label}: ${e.message}`);
      }
      return undefined;
    }
  };
  const isPlainEmpty = (v: unknown) =>
    v !== null && typeof v === "object" && !Array.isArray(v) && !ArrayBuffer.isView(v) &&
    Object.keys(v).length === 0;
  try {
    const vmm = gpu.mm.createVmm({ vaSize: 1n << 32n, name: "callbacks" });
    const a = gpu.mm.buddy.alloc(65536);
    const m = vmm.mapPages([a.start / 4096], { writable: true });
    gpu.bar1.bringUp();
    const bm = gpu.bar1.map(a, { writable: false });
    const pinnedBy = [...a.users]; // the BAR1 mapping
    const path = `${dir}/t.trace`;
    const w = new api.TraceWriter(path, { device: "sim:ga102" });
    let n = 0;
    for (const [hl, hv] of HOSTILE) {
      const isFn = typeof hv === "function";
      const isNum = typeof hv === "number";
      // Tlb: the aperture, the bag, and each option.
      call(`new Tlb(${hl})`, hv, false, () => new api.Tlb(hv as never));
      call(
        `new Tlb(bar0, ${hl})`,
        hv,
        hv === undefined || isPlainEmpty(hv),
        () => new api.Tlb(gpu.bar0, hv as never),
      );
      call(
        `new Tlb(bar0, { vramSize: ${hl} })`,
        hv,
        hv === undefined || hv === 2 ** 40,
        () => new api.Tlb(gpu.bar0, { vramSize: hv as never }),
      );
      call(
        `new Tlb(bar0, { timeoutMs: ${hl} })`,
        hv,
        hv === undefined || (isNum && (hv as number) >= 0 && (hv as number) <= 60_000),
        () => new api.Tlb(gpu.bar0, { timeoutMs: hv as never }),
      );
      call(
        `new Tlb(bar0, { family: ${hl} })`,
        hv,
        hv === undefined,
        () => new api.Tlb(gpu.bar0, { family: hv as never }),
      );
      // TraceWriter: path, header, options; a refused one makes no file.
      const p = `${dir}/h${n++}.trace`;
      call(`new TraceWriter(path, ${hl})`, hv, false, () => new api.TraceWriter(p, hv as never));
      if (typeof hv !== "string" || hv === "") {
        call(
          `new TraceWriter(${hl}, header)`,
          hv,
          false,
          () => new api.TraceWriter(hv as never, { device: "sim" }),
        );
      }
      const made = call(
        `new TraceWriter(path, header, ${hl})`,
        hv,
        hv === undefined || isPlainEmpty(hv),
        () => new api.TraceWriter(p, { device: "sim" }, hv as never),
      ) as api.TraceWriter | undefined;
      made?.close();
      if (made === undefined) {
        assert.throws(() => Deno.statSync(p), Deno.errors.NotFound, `${hl}: a file was made`);
      }
      call(`writer.record(${hl})`, hv, false, () => w.record(hv as never));
      call(`writer.comment(${hl})`, hv, typeof hv === "string", () => w.comment(hv as never));
      // Callbacks: only a function is stored.
      call(`mapping.whenUnmapped(${hl})`, hv, isFn, () => m.whenUnmapped(hv as never));
      call(
        `barMapping.mapping.whenUnmapped(${hl})`,
        hv,
        isFn,
        () => bm.mapping.whenUnmapped(hv as never),
      );
      call(`vmm.whenDestroyed(${hl})`, hv, isFn, () => vmm.whenDestroyed(hv as never));
      // pin: a non-empty string naming the user.
      const release = call(
        `allocation.pin(${hl})`,
        hv,
        typeof hv === "string" && hv !== "",
        () => a.pin(hv as never),
      ) as (() => void) | undefined;
      release?.();
      assert.deepEqual(a.users, pinnedBy, `${hl}: pin left a user behind`);
    }
    assert.equal(w.accesses, 0, "no refused record was written");
    w.close();
    assert.equal(api.parseTrace(Deno.readTextFileSync(path)).footer.accesses, 0);
    // What was stored is callable: unmap, destroy and close run it without a raw error.
    bm.unmap();
    m.unmap();
    a.free();
    gpu.mm.destroyVmm(vmm);
  } finally {
    gpu.close();
    await Deno.remove(dir, { recursive: true });
  }
  assert.ok(calls > 300, `only ${calls} calls`);
  const report = (what: string, xs: string[]) =>
    `${xs.length} ${what}:\n${[...new Set(xs)].slice(0, 40).join("\n")}`;
  assert.deepEqual(raw, [], report("raw JavaScript errors", raw));
  assert.deepEqual(silent, [], report("silent acceptances", silent));
  assert.deepEqual(refused, [], report("valid values refused", refused));
  assert.deepEqual(unnamed, [], report("errors not naming the value", unnamed));
});
