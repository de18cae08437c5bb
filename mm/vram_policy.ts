/**
 * One write policy for VRAM that is not the user's (issue 15): firmware's
 * regions (every region of `gpu.vram.layout`: VGA memory and workspace, the
 * console, GA100's MMU-locked region, WPR2, firmware's BAR1 tables), novamm's
 * own instance blocks and page tables, and the tables of an adopted firmware
 * address space. Reads are allowed anywhere; CPU writes there through PRAMIN
 * (`pramin.window()`, `pramin.view()`, the one-shot `pramin.write*`),
 * `bar1.physical` and `bar1.map({ writable: true })` are refused with EPERM
 * naming the region, unless the caller passes `{ force: true }` (the one
 * option name for all three; `bar1.physical.forced` is the forced view).
 * novamm's own table and instance-block writes go through its internal paths
 * and are not subject to it.
 *
 * @module
 */

import { describe, fail, hex } from "../hw/errors.ts";
import { checkUint } from "../hw/validate.ts";

/** A range of VRAM someone other than the user owns. */
export interface OwnedRange {
  /** What it is (`wpr2`, `vga-workspace`, `page table of bar1`, ...). */
  name: string;
  /** First byte. */
  start: number;
  /** One past the last byte. */
  end: number;
}

/** Where the policy learns what is owned. */
export interface VramPolicySources {
  /** Firmware's regions (the layout): fixed for the session. */
  regions: readonly OwnedRange[];
  /** novamm's and adopted firmware tables and instance blocks, as they are now. */
  dynamic: () => Iterable<OwnedRange>;
  /** A number that changes whenever `dynamic` would return something else. */
  version: () => number;
}

/**
 * The policy of one GPU.
 *
 * @example
 * ```ts
 * import { openGpu } from "../mod.ts";
 * using gpu = await openGpu({ device: "sim" });
 * gpu.vram.policy.ownerOf(0, 4)?.name; // "vga-memory"
 * ```
 */
export class VramPolicy {
  readonly #src: VramPolicySources;
  #cacheVersion = -1;
  #cache: OwnedRange[] = [];

  /** Made by the Gpu. */
  constructor(sources: VramPolicySources) {
    this.#src = sources;
  }

  /** Everything owned now: firmware's regions, then the tables and instance blocks by address. */
  owned(): readonly OwnedRange[] {
    return [...this.#src.regions, ...this.#dynamic()];
  }

  #dynamic(): OwnedRange[] {
    const v = this.#src.version();
    if (v !== this.#cacheVersion) {
      this.#cache = [...this.#src.dynamic()].sort((a, b) => a.start - b.start);
      this.#cacheVersion = v;
    }
    return this.#cache;
  }

  /**
   * The first owned range [addr, addr + len) touches, or null: the few
   * firmware regions one by one, the tables and instance blocks (disjoint
   * allocations) by binary search.
   */
  ownerOf(addr: number, len: number): OwnedRange | null {
    checkUint(addr, "VRAM address");
    checkUint(len, "length");
    if (len === 0) return null;
    const end = addr + len;
    // The most specific owner names itself (WPR2 inside the reserved top, a table inside it).
    let best: OwnedRange | null = null;
    const consider = (r: OwnedRange) => {
      if (best === null || r.end - r.start < best.end - best.start) best = r;
    };
    for (const r of this.#src.regions) if (r.end > addr && r.start < end) consider(r);
    const list = this.#dynamic();
    // The last range starting below `end`: disjoint and sorted, it is the only one that can
    // reach past `addr`.
    let lo = 0;
    let hi = list.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (list[mid].start < end) lo = mid + 1;
      else hi = mid;
    }
    const r = list[lo - 1];
    if (r !== undefined && r.end > addr) consider(r);
    return best;
  }

  /** EPERM naming the owner when [addr, addr + len) touches owned VRAM (unless forced). */
  checkWrite(addr: number, len: number, what: string, force = false): void {
    if (typeof what !== "string") {
      fail("EINVAL", `checkWrite what ${describe(what)} is not a string`);
    }
    if (typeof force !== "boolean") {
      fail("EINVAL", `checkWrite force ${describe(force)} is not a boolean`);
    }
    if (force) return;
    const r = this.ownerOf(addr, len);
    if (r === null) return;
    fail(
      "EPERM",
      `${what} of VRAM ${hex(addr)} (+${hex(len)}) refused: it is ${r.name} [${hex(r.start)}, ${
        hex(r.end)
      }), not the user's`,
      "pass { force: true } if you mean it (pramin.window({ force: true }), bar1.physical.forced, bar1.map(..., { force: true }))",
    );
  }
}
