/**
 * Watches, as m1n1's RegMonitor: registers (by name, by offset, or a
 * `reg.NAME`) and VRAM words polled after every REPL input — and, with
 * `{ every: ms }`, on a timer — printing only what changed, old → new, the
 * changed hex digits highlighted on a terminal.
 *
 * One registry per thread (the REPL's evaluation worker has one session).
 *
 * @module
 */

import { describe, fail, hex } from "../hw/errors.ts";
import { isGpuGone, isPriError } from "../hw/regs.ts";
import type { KnownRegister } from "../hw/reg_dump.ts";
import { loadedRegisterDb, lookup, sideEffect } from "../hw/regdb/mod.ts";
import { checkOptions, checkUint } from "../hw/validate.ts";
import type { Gpu } from "../mm/gpu.ts";

/** One watch. */
export interface Watch {
  /** What it shows (`NV_PBUS_BAR0_WINDOW`, `VRAM 0x100000`). */
  label: string;
  /** `bar0` register or `vram` word. */
  kind: "bar0" | "vram";
  /** Offset or VRAM address. */
  address: number;
  /** Last value seen (null before the first read or after a failed one). */
  last: number | null;
  /** Poll interval in ms, when it polls on a timer too. */
  every: number | null;
}

interface Entry extends Watch {
  read(): number;
  timer: ReturnType<typeof setInterval> | null;
}

const watches: Entry[] = [];
let printer: (line: string) => void = (l) => console.log(l);

/** Where timer-driven changes are printed (default console.log). */
export function setWatchPrinter(fn: (line: string) => void): void {
  printer = fn;
}

function word(v: number): string {
  if (isGpuGone(v)) return `${hex(v, 8)} (all ones)`;
  if (isPriError(v)) return `${hex(v, 8)} (PRI error)`;
  return hex(v, 8);
}

/** `old → new`, the hex digits that changed in inverse video when `colors`. */
export function changeText(old: number, now: number, colors: boolean): string {
  const a = hex(old, 8).slice(2);
  const b = hex(now, 8).slice(2);
  let out = "0x";
  for (let i = 0; i < b.length; i++) {
    out += colors && a[i] !== b[i] ? `\x1b[7m${b[i]}\x1b[27m` : b[i];
  }
  const tail = isPriError(now) || isGpuGone(now) ? word(now).slice(10) : "";
  return `${word(old)} -> ${out}${tail}`;
}

function poll(e: Entry, colors: boolean): string | null {
  let v: number;
  try {
    v = e.read();
  } catch (err) {
    const was = e.last;
    e.last = null;
    return was === null
      ? null
      : `watch ${e.label}: read failed: ${err instanceof Error ? err.message : String(err)}`;
  }
  const old = e.last;
  e.last = v;
  if (old === null || old === v) return null;
  return `watch ${e.label}: ${changeText(old, v, colors)}`;
}

/** Polls every watch once; returns a line per change (what the REPL prints after an input). */
export function pollWatches(colors: boolean): string[] {
  const out: string[] = [];
  for (const e of watches) {
    const line = poll(e, colors);
    if (line !== null) out.push(line);
  }
  return out;
}

/** Options for `watch()`. */
export interface WatchOptions {
  /** The number is a VRAM address (a 32-bit word read through PRAMIN), not a BAR0 offset. */
  vram?: boolean;
  /** Also poll every this many milliseconds (at least 10). */
  every?: number;
  /** A label for the printed lines. */
  label?: string;
}

/**
 * `watch`, `unwatch` and `watches` for one GPU, with `known` the named
 * registers (hw/reg_dump.ts).
 *
 * @example
 * ```ts
 * import { knownRegisters, openGpu } from "../mod.ts";
 * using gpu = await openGpu({ device: "sim" });
 * const { watch } = watchHelpers(gpu, knownRegisters("Ampere", 0x172));
 * watch("NV_PBUS_BAR0_WINDOW");
 * watch(0x100000, { vram: true, every: 500 });
 * ```
 */
export function watchHelpers(gpu: Gpu, known: readonly KnownRegister[]): {
  watch: (
    target: string | number | { offset: number; name: string },
    options?: WatchOptions,
  ) => Watch;
  unwatch: (target?: string | number | { offset: number }) => number;
  watches: () => Watch[];
} {
  const byName = new Map(known.map((r) => [r.name.toUpperCase(), r]));
  const nameOf = (offset: number) => known.find((r) => r.offset === offset)?.name;
  const watch = (
    target: string | number | { offset: number; name: string },
    options: WatchOptions = {},
  ): Watch => {
    checkOptions(options, { vram: "boolean", every: "number", label: "string" }, "watch options");
    let kind: Entry["kind"] = "bar0";
    let address: number;
    let label: string;
    if (typeof target === "string") {
      let r: { name: string; offset: number } | undefined = byName.get(target.toUpperCase()) ??
        byName.get(`NV_${target.toUpperCase()}`);
      if (r === undefined) {
        // Any register of the chip, by NVIDIA's name (the header database, once loaded).
        const db = loadedRegisterDb(gpu.chip);
        const name = target.toUpperCase();
        const hit = db === undefined
          ? undefined
          : lookup(db, name, { limit: 2 }).find((h) => h.name === name || h.name === `NV_${name}`);
        if (hit !== undefined && hit.register.space === null) {
          const why = sideEffect(hit.register);
          if (why !== null) {
            fail("EPERM", `watch ${hit.name}: polling it would have a side effect (${why})`);
          }
          r = { name: hit.name, offset: hit.offset };
        }
      }
      if (r === undefined) {
        fail(
          "EINVAL",
          `no register named ${JSON.stringify(target)} on this chip`,
          "reg lists them (Tab after `reg.`); or watch(offset)",
        );
      }
      address = r.offset;
      label = `${r.name} (${hex(r.offset)})`;
    } else if (typeof target === "object" && target !== null && typeof target.offset === "number") {
      address = target.offset;
      label = `${target.name} (${hex(target.offset)})`;
    } else if (typeof target === "number") {
      checkUint(target, options.vram ? "VRAM address" : "BAR0 offset");
      if (target % 4 !== 0) fail("EINVAL", `watch address ${hex(target)} is not 4-byte aligned`);
      address = target;
      if (options.vram) {
        kind = "vram";
        if (target + 4 > gpu.vram.size) {
          fail("EINVAL", `VRAM ${hex(target)} is past the end of VRAM (${hex(gpu.vram.size)})`);
        }
        label = `VRAM ${hex(target)}`;
      } else {
        if (target + 4 > gpu.bar0.size) {
          fail("EINVAL", `BAR0 offset ${hex(target)} is past the ${hex(gpu.bar0.size)}-byte BAR0`);
        }
        const n = nameOf(target);
        label = n === undefined ? `BAR0 ${hex(target)}` : `${n} (${hex(target)})`;
      }
    } else {
      fail(
        "EINVAL",
        `watch takes a register name, a reg.NAME, a BAR0 offset or a VRAM address, not ${
          describe(target)
        }`,
      );
    }
    if (options.label !== undefined) label = options.label;
    const every = options.every ?? null;
    if (every !== null && (!Number.isFinite(every) || every < 10 || every > 3_600_000)) {
      fail("EINVAL", `watch every ${describe(every)} ms is not in 10..3600000`);
    }
    const read = kind === "vram"
      ? () => gpu.pramin.read32(address)
      : () => gpu.bar0.read32(address);
    const e: Entry = { label, kind, address, last: null, every, read, timer: null };
    e.last = read();
    watches.push(e);
    if (every !== null) {
      e.timer = setInterval(() => {
        if (gpu.bar0.closed) return void unwatchEntry(e);
        const line = poll(e, false);
        if (line !== null) printer(line);
      }, every);
    }
    const w = publicWatch(e);
    return Object.defineProperty(w, Symbol.for("Deno.customInspect"), {
      value: () =>
        `watching ${e.label}: ${word(e.last!)}${every === null ? "" : ` (every ${every} ms)`}`,
    });
  };
  const unwatchEntry = (e: Entry) => {
    if (e.timer !== null) clearInterval(e.timer);
    watches.splice(watches.indexOf(e), 1);
  };
  const unwatch = (target?: string | number | { offset: number }): number => {
    const matches = watches.filter((e) => {
      if (target === undefined) return true;
      if (typeof target === "number") return e.address === target;
      if (typeof target === "string") {
        return e.label.toUpperCase().startsWith(target.toUpperCase()) ||
          e.label.toUpperCase().startsWith(`NV_${target.toUpperCase()}`);
      }
      return e.kind === "bar0" && e.address === target.offset;
    });
    for (const e of matches) unwatchEntry(e);
    return matches.length;
  };
  const list = (): Watch[] => {
    const out = watches.map(publicWatch);
    return Object.defineProperty(out, Symbol.for("Deno.customInspect"), {
      value: () =>
        out.length === 0
          ? "no watches (watch(name | offset | reg.NAME | vram address, { vram: true }))"
          : out.map((w) =>
            `${w.label}: ${w.last === null ? "unread" : word(w.last)}${
              w.every === null ? "" : ` every ${w.every} ms`
            }`
          ).join("\n"),
    });
  };
  return { watch, unwatch, watches: list };
}

function publicWatch(e: Entry): Watch {
  return { label: e.label, kind: e.kind, address: e.address, last: e.last, every: e.every };
}
