/**
 * The page-table walker over hand-built tables in a Map-backed fake VRAM, for
 * both MMU versions: 4 KiB, 64 KiB, 2 MiB, 512 MiB and 256 GiB pages, dual PDEs
 * with both halves, the no-small-pages marker, system-memory and out-of-range
 * tables, and random garbage tables (which must never make it throw).
 */

import assert from "node:assert/strict";
import {
  type EntryReader,
  formatStep,
  type MmuFormat,
  mmuFormat,
  walk,
  type WalkMapped,
  type WalkResult,
} from "../mm/pagetable/mod.ts";
import { PAGE_256G, PAGE_2M, PAGE_4K, PAGE_512M, PAGE_64K } from "../mm/types.ts";
import { prng } from "../testing/prng.ts";
import { throwsNova } from "./util.ts";

const GiB = 2 ** 30;

/** Sparse 64-bit VRAM that refuses reads a real MMU could not make. */
class FakeVram implements EntryReader {
  readonly words = new Map<number, bigint>();
  reads = 0;
  constructor(readonly size: number, readonly fallback?: (address: number) => bigint) {}

  read64(address: number): bigint {
    if (!Number.isSafeInteger(address) || address % 8 !== 0) {
      throw new Error(`misaligned read at ${address}`);
    }
    if (address < 0 || address + 8 > this.size) {
      throw new Error(`read outside VRAM at 0x${address.toString(16)}`);
    }
    this.reads++;
    return this.words.get(address) ?? this.fallback?.(address) ?? 0n;
  }

  write64(address: number, value: bigint): void {
    this.words.set(address, value);
  }
}

/** Builds page tables with the codecs' helpers (a tiny independent mapper). */
class Tables {
  readonly mem: FakeVram;
  readonly pdb: number;
  #next: number;

  constructor(readonly format: MmuFormat, vramSize = 64 * GiB) {
    this.mem = new FakeVram(vramSize);
    this.#next = 0x10_0000;
    this.pdb = this.alloc(4096);
  }

  alloc(bytes: number, align = 4096): number {
    const at = Math.ceil(this.#next / align) * align;
    this.#next = at + bytes;
    return at;
  }

  index(depth: number, va: bigint): number {
    const l = depth < this.format.directories.length
      ? this.format.directories[depth]
      : this.format.smallPt;
    return Number((va >> BigInt(l.vaLo)) & BigInt(l.entries - 1));
  }

  /** Entry address at directory `depth` for `va`, creating the PDEs above it. */
  slot(va: bigint, depth: number): number {
    const dirs = this.format.directories;
    const codec = this.format.codec;
    let table = this.pdb;
    for (let d = 0; d < depth; d++) {
      const at = table + this.index(d, va) * 8;
      let raw = this.mem.words.get(at) ?? 0n;
      if (raw === 0n) {
        raw = codec.vramPde(this.alloc(dirs[d + 1].tableBytes));
        this.mem.write64(at, raw);
      }
      table = Number(codec.decodePde(raw).address);
    }
    return table + this.index(depth, va) * dirs[depth].entrySize;
  }

  pd0(va: bigint): number {
    return this.slot(va, this.format.directories.length - 1);
  }

  /** The big (64 KiB) or small (4 KiB) page table under PD0 for `va`, created on demand. */
  pt(va: bigint, big: boolean): number {
    const at = this.pd0(va);
    const codec = this.format.codec;
    const lo = this.mem.words.get(at) ?? 0n;
    const hi = this.mem.words.get(at + 8) ?? 0n;
    const dual = codec.decodeDualPde([lo, hi]);
    const half = big ? dual.big : dual.small;
    if (half.aperture === "video") return Number(half.address);
    const table = this.alloc(big ? 256 : 4096, big ? 256 : 4096);
    const tables = {
      big: big ? table : dual.big.aperture === "video" ? Number(dual.big.address) : undefined,
      small: !big
        ? table
        : dual.small.aperture === "video"
        ? Number(dual.small.address)
        : undefined,
    };
    const [nlo, nhi] = codec.vramDualPde(tables);
    this.mem.write64(at, nlo);
    this.mem.write64(at + 8, nhi);
    return table;
  }

  map4k(va: bigint, pa: number, writable = true): void {
    const pt = this.pt(va, false);
    this.mem.write64(pt + this.index(99, va) * 8, this.format.codec.vramPte(pa, { writable }));
  }

  map64k(va: bigint, pa: number): void {
    const pt = this.pt(va, true);
    const i = Number((va >> 16n) & 31n);
    this.mem.write64(pt + i * 8, this.format.codec.vramPte(pa, { writable: true }));
  }

  markNoSmall(va: bigint): void {
    const pt = this.pt(va, true);
    this.mem.write64(pt + Number((va >> 16n) & 31n) * 8, this.format.codec.noSmallPte);
  }

  /** A PTE at directory `depth` (PD0: a 2 MiB PTE in the dual entry's low word). */
  mapHuge(va: bigint, pa: number, depth: number): void {
    const at = this.slot(va, depth);
    this.mem.write64(at, this.format.codec.vramPte(pa, { writable: true }));
  }

  walk(va: bigint | number, vramSize?: number): WalkResult {
    return walk(this.mem, { format: this.format, pdb: this.pdb, va, vramSize });
  }
}

function expectMapped(
  r: WalkResult,
  pa: number | bigint,
  pageSize: number,
  level: string,
): asserts r is WalkMapped {
  assert.ok(r.mapped, `expected a mapping, got ${String(r)}`);
  assert.equal(r.pa, pa, String(r));
  assert.equal(r.pageSize, pageSize);
  assert.equal(r.level, level);
}

function expectStop(r: WalkResult, reason: string, level: string): void {
  assert.ok(!r.mapped, `expected no mapping, got ${String(r)}`);
  assert.equal(r.reason, reason, String(r));
  assert.equal(r.level, level, String(r));
}

const V2 = mmuFormat({ version: 2, architecture: "Ampere" });
const V3 = mmuFormat({ version: 3, architecture: "Hopper" });
const BOTH = [V2, V3];

function names(f: MmuFormat): string[] {
  return f.directories.map((l) => l.name);
}

// ---------------------------------------------------------------------------

Deno.test("walk: 4 KiB page, every step recorded", () => {
  for (const f of BOTH) {
    const t = new Tables(f);
    const va = 0x1234_5678_9000n & ((1n << 48n) - 1n);
    t.map4k(va, 0x4567_8000);
    t.mem.reads = 0;
    const r = t.walk(va + 0xabcn);
    expectMapped(r, 0x4567_8abc, PAGE_4K, "PT");
    assert.equal(r.aperture, "video");
    assert.deepStrictEqual(r.steps.map((s) => s.level), [...names(f), "PT"]);
    assert.equal(r.va, va + 0xabcn);
    // One read per directory, two for the dual PD0, one PTE.
    assert.equal(t.mem.reads, f.directories.length + 2);
    assert.equal(r.steps[0].entryAddress, t.pdb + t.index(0, va) * 8);
    for (const [d, s] of r.steps.entries()) {
      assert.equal(s.index, t.index(d < f.directories.length ? d : 99, va), s.level);
    }
    const pd0 = r.steps[f.directories.length - 1];
    assert.ok(Array.isArray(pd0.raw), "the dual step carries [low, high]");
    assert.equal(pd0.entryAddress, t.pd0(va));
    const pte = r.steps.at(-1)!;
    assert.equal(pte.raw, f.codec.vramPte(0x4567_8000, { writable: true }));
    assert.equal(r.pte.address, 0x4567_8000);
    assert.ok(f.codec.pteInfo(pte.raw as bigint).writable);
  }
});

Deno.test("walk: VA bit 29 selects PD1, not PD0 (hardware bit ranges, facts D1)", () => {
  for (const f of BOTH) {
    const t = new Tables(f);
    t.map4k(0n, 0x20_0000);
    t.map4k(1n << 29n, 0x30_0000);
    expectMapped(t.walk(0), 0x20_0000, PAGE_4K, "PT");
    const r = t.walk(1n << 29n);
    expectMapped(r, 0x30_0000, PAGE_4K, "PT");
    assert.equal(r.steps.find((s) => s.level === "PD1")?.index, 1);
    assert.equal(r.steps.find((s) => s.level === "PD0")?.index, 0);
  }
});

Deno.test("walk: 64 KiB big page via the dual PDE's big half", () => {
  for (const f of BOTH) {
    const t = new Tables(f);
    const va = 0x4000_0000n + 0x3_0000n;
    t.map64k(va, 0x80_0000);
    t.mem.reads = 0;
    const r = t.walk(va + 0xfedcn);
    expectMapped(r, 0x80_fedc, PAGE_64K, "PT64K");
    assert.equal(r.steps.at(-1)?.index, 3);
    assert.equal(t.mem.reads, f.directories.length + 2);
    // The big table is 256 bytes and 256 B aligned.
    const big = f.codec.decodeDualPde(r.steps.at(-2)!.raw as [bigint, bigint]).big;
    assert.equal(big.aperture, "video");
    assert.equal(Number(big.address) % 256, 0);
  }
});

Deno.test("walk: v2 big table at a 256 B (not 512 B) aligned address", () => {
  const t = new Tables(V2);
  const va = 0x1_0000n;
  const at = t.pd0(va);
  const bigPt = 0x7_0300; // address bit 9 set: lands on the NO_ATS bit position
  t.mem.write64(at, V2.codec.vramDualPde({ big: bigPt })[0]);
  t.mem.write64(bigPt + 8, V2.codec.vramPte(0x9_0000, { writable: true }));
  expectMapped(t.walk(va + 5n), 0x9_0005, PAGE_64K, "PT64K");
});

Deno.test("walk: dual PDE with both halves; the no-small-pages marker", () => {
  for (const f of BOTH) {
    const t = new Tables(f);
    const base = 0x2_0000_0000n; // one PD0 entry = 2 MiB at base
    t.map64k(base, 0x100_0000); // big slot 0 valid
    t.map4k(base + 0x1_0000n, 0x200_0000); // big slot 1 invalid -> small
    t.map4k(base + 0x2_0000n, 0x300_0000);
    t.markNoSmall(base + 0x2_0000n); // big slot 2: marker hides the valid small PTE
    t.map4k(base + 0x3_0000n, 0x400_0000);
    t.map64k(base + 0x3_0000n, 0x500_0000); // big slot 3 valid wins over small

    expectMapped(t.walk(base + 0x123n), 0x100_0123, PAGE_64K, "PT64K");
    const small = t.walk(base + 0x1_0456n);
    expectMapped(small, 0x200_0456, PAGE_4K, "PT");
    // Steps: dirs, the (invalid) big PTE, then the small PTE.
    assert.deepStrictEqual(small.steps.slice(-2).map((s) => s.level), ["PT64K", "PT"]);
    const hidden = t.walk(base + 0x2_0000n);
    expectStop(hidden, "invalid-pte", "PT64K");
    assert.equal(hidden.steps.at(-1)?.raw, f.codec.noSmallPte);
    expectMapped(t.walk(base + 0x3_0010n), 0x500_0010, PAGE_64K, "PT64K");
    // A 4 KiB slot with no small PTE under an invalid big PTE.
    expectStop(t.walk(base + 0x1_1000n), "invalid-pte", "PT");
    // Only a big table and its PTE invalid: the walk ends at the big PTE.
    const u = new Tables(f);
    u.map64k(base, 0x100_0000);
    expectStop(u.walk(base + 0x1_0000n), "invalid-pte", "PT64K");
  }
});

Deno.test("walk: 2 MiB page at PD0 reads only the low word", () => {
  for (const f of BOTH) {
    const t = new Tables(f);
    const va = 0x7fe0_0000n;
    t.mapHuge(va, 0x1_2340_0000, f.directories.length - 1);
    t.mem.reads = 0;
    const r = t.walk(va + 0x1_2345n);
    expectMapped(r, 0x1_2341_2345, PAGE_2M, "PD0");
    assert.equal(t.mem.reads, f.directories.length);
    assert.equal(typeof r.steps.at(-1)?.raw, "bigint");
    assert.equal(r.steps.length, f.directories.length);
  }
});

Deno.test("walk: 512 MiB page at PD1 on Ampere/Ada/Hopper, not Turing", () => {
  const va = 0x6000_0000n; // PD1 index 3
  for (const arch of ["Ampere", "Ada"] as const) {
    const t = new Tables(mmuFormat({ version: 2, architecture: arch }));
    t.mapHuge(va, 0x2000_0000, 2);
    expectMapped(t.walk(va + 0x123_4567n), 0x2123_4567, PAGE_512M, "PD1");
  }
  const h = new Tables(V3);
  h.mapHuge(va, 0x4000_0000, 3);
  expectMapped(h.walk(va + 0x1fff_ffffn), 0x5fff_ffff, PAGE_512M, "PD1");
  const tu = new Tables(mmuFormat({ version: 2, architecture: "Turing" }));
  tu.mapHuge(va, 0x2000_0000, 2);
  const r = tu.walk(va);
  expectStop(r, "pte-at-non-leaf", "PD1");
  assert.equal(r.steps.length, 3);
});

Deno.test("walk: 256 GiB page at PD2 on Blackwell only", () => {
  const va = 0x40_0000_0000n * 3n; // PD2 index 3
  const bw = new Tables(mmuFormat({ version: 3, architecture: "Blackwell" }), 2 ** 40);
  bw.mapHuge(va, 0, 2);
  const r = bw.walk(va + 0x12_3456_7890n);
  expectMapped(r, 0x12_3456_7890, PAGE_256G, "PD2");
  assert.equal(r.steps.length, 3);
  const hopper = new Tables(V3);
  hopper.mapHuge(va, 0, 2);
  expectStop(hopper.walk(va), "pte-at-non-leaf", "PD2");
  const ampere = new Tables(V2);
  ampere.mapHuge(va, 0, 1); // v2 PD2 is depth 1
  expectStop(ampere.walk(va), "pte-at-non-leaf", "PD2");
  // Roots never hold PTEs.
  const root = new Tables(V2);
  root.mem.write64(root.pdb, 1n);
  expectStop(root.walk(0), "pte-at-non-leaf", "PD3");
});

Deno.test("walk: a big or huge PTE not aligned to its page size stops the walk", () => {
  for (const f of BOTH) {
    const t = new Tables(f);
    const pd0 = f.directories.length - 1;
    // 2 MiB PTE at a 64 KiB (not 2 MiB) aligned address: stops at PD0, reads only the low word.
    const va2m = 0x7fe0_0000n;
    t.mapHuge(va2m, 0x1_2341_0000, pd0);
    t.mem.reads = 0;
    const huge = t.walk(va2m + 0x1_2345n);
    expectStop(huge, "misaligned-pte", "PD0");
    assert.equal(t.mem.reads, f.directories.length);
    assert.equal(huge.steps.at(-1)?.raw, f.codec.vramPte(0x1_2341_0000, { writable: true }));
    assert.match(String(huge), /^walk 0x7fe12345 -> unmapped: misaligned-pte at PD0\n/);
    // Off by one 4 KiB page is misaligned too; the aligned neighbour maps.
    t.mapHuge(va2m, 0x1_2340_1000, pd0);
    expectStop(t.walk(va2m), "misaligned-pte", "PD0");
    t.mapHuge(va2m, 0x1_2340_0000, pd0);
    expectMapped(t.walk(va2m + 0x1_2345n), 0x1_2341_2345, PAGE_2M, "PD0");

    // 64 KiB PTE at a 4 KiB aligned address: stops at PT64K, and a valid small PTE
    // under the same 64 KiB range does not rescue it (the valid big PTE decides).
    const va64 = 0x4000_0000n + 0x3_0000n;
    t.map64k(va64, 0x80_1000);
    t.map4k(va64 + 0x2000n, 0x90_0000);
    const big = t.walk(va64 + 0x2fedn);
    expectStop(big, "misaligned-pte", "PT64K");
    assert.deepStrictEqual(big.steps.map((s) => s.level), [...names(f), "PT64K"]);
    t.map64k(va64, 0x80_8000); // 32 KiB aligned: still not 64 KiB
    expectStop(t.walk(va64), "misaligned-pte", "PT64K");
    t.map64k(va64, 0x81_0000);
    expectMapped(t.walk(va64 + 0x2fedn), 0x81_2fed, PAGE_64K, "PT64K");
    // The rule is about big and huge pages only: a 4 KiB PTE needs nothing more.
    t.map4k(0x5000n, 0xa_3000);
    expectMapped(t.walk(0x5004n), 0xa_3004, PAGE_4K, "PT");
  }
  // 512 MiB at PD1 (2 MiB aligned is not enough) and 256 GiB at PD2 on Blackwell.
  for (const f of [V2, V3]) {
    const t = new Tables(f);
    const va = 0x6000_0000n;
    t.mapHuge(va, 0x2020_0000, f.directories.length - 2);
    expectStop(t.walk(va + 0x10n), "misaligned-pte", "PD1");
    t.mapHuge(va, 0x2000_0000, f.directories.length - 2);
    expectMapped(t.walk(va + 0x10n), 0x2000_0010, PAGE_512M, "PD1");
  }
  const bw = new Tables(mmuFormat({ version: 3, architecture: "Blackwell" }), 2 ** 40);
  const va256 = 0x40_0000_0000n * 3n;
  bw.mapHuge(va256, PAGE_512M, 2);
  expectStop(bw.walk(va256 + 0x123n), "misaligned-pte", "PD2");
  bw.mapHuge(va256, PAGE_256G, 2);
  expectMapped(bw.walk(va256 + 0x123n), PAGE_256G + 0x123, PAGE_256G, "PD2");
});

Deno.test("walk: invalid PDEs and PTEs stop where they are", () => {
  for (const f of BOTH) {
    const t = new Tables(f);
    const empty = t.walk(0x1000);
    expectStop(empty, "invalid-pde", names(f)[0]);
    assert.equal(empty.steps.length, 1);
    t.map4k(0n, 0x10_0000);
    expectStop(t.walk(0x1000), "invalid-pte", "PT");
    expectStop(t.walk(1n << 38n), "invalid-pde", "PD2"); // PD2 index 1 empty
    expectStop(t.walk(1n << 21n), "invalid-pde", "PD0"); // PD0 index 1: both halves invalid
  }
});

Deno.test("walk: tables in system memory are not followed", () => {
  for (const f of BOTH) {
    const t = new Tables(f);
    t.map4k(0n, 0x10_0000);
    // Redirect PD1 index 1 to a system-memory table.
    const pd1 = t.slot(1n << 29n, f.directories.length - 2);
    t.mem.write64(pd1, f.codec.encodePde({ aperture: "sysCoherent", address: 0x5000 }));
    expectStop(t.walk(1n << 29n), "sysmem-table", "PD1");
    // PD0 small half in system memory.
    const pd0 = t.pd0(1n << 21n);
    const [lo, hi] = f.codec.encodeDualPde({
      small: { aperture: "sysNonCoherent", address: 0x7000 },
    });
    t.mem.write64(pd0, lo);
    t.mem.write64(pd0 + 8, hi);
    expectStop(t.walk(1n << 21n), "sysmem-table", "PD0");
    // PD0 big half in system memory: the MMU would consult it first.
    const pd0b = t.pd0(2n << 21n);
    const [blo, bhi] = f.codec.encodeDualPde({
      big: { aperture: "sysCoherent", address: 0x7000 },
      small: { aperture: "video", address: 0x20_0000 },
    });
    t.mem.write64(pd0b, blo);
    t.mem.write64(pd0b + 8, bhi);
    expectStop(t.walk(2n << 21n), "sysmem-table", "PD0");
  }
});

Deno.test("walk: a PTE to system or peer memory is still a mapping", () => {
  for (const f of BOTH) {
    const t = new Tables(f);
    const pt = t.pt(0n, false);
    t.mem.write64(
      pt + 8,
      f.codec.encodePte({ valid: true, aperture: "sysCoherent", address: 0xab_cdef_0000n }),
    );
    t.mem.write64(pt + 16, f.codec.encodePte({ valid: true, aperture: "peer", address: 0x5000 }));
    const r = t.walk(0x1010);
    expectMapped(r, 0xab_cdef_0010, PAGE_4K, "PT");
    assert.equal(r.aperture, "sysCoherent");
    const p = t.walk(0x2020);
    expectMapped(p, 0x5020, PAGE_4K, "PT");
    assert.equal(p.aperture, "peer");
  }
  // v2 system addresses above 2^53 come back as a bigint.
  const t = new Tables(V2);
  const pt = t.pt(0n, false);
  const high = 0x3ff_ffff_ffff_f000n;
  t.mem.write64(pt, V2.codec.encodePte({ valid: true, aperture: "sysCoherent", address: high }));
  expectMapped(t.walk(0x10), high + 0x10n, PAGE_4K, "PT");
});

Deno.test("walk: tables beyond VRAM are never read", () => {
  for (const f of BOTH) {
    const size = 0x100_0000; // 16 MiB
    const t = new Tables(f, size);
    t.map4k(0n, 0x10_0000);
    // A PDE pointing past the end.
    const slot = t.slot(1n << 29n, f.directories.length - 2);
    t.mem.write64(slot, f.codec.vramPde(size));
    expectStop(t.walk(1n << 29n, size), "table-out-of-range", "PD1");
    // A table that starts inside but does not end inside.
    t.mem.write64(slot, f.codec.vramPde(size - 4096));
    assert.equal(t.walk(1n << 29n, size).mapped, false); // in range: reads zeroes
    // Dual halves past the end.
    const pd0 = t.pd0(1n << 21n);
    const [lo, hi] = f.codec.vramDualPde({ small: size });
    t.mem.write64(pd0, lo);
    t.mem.write64(pd0 + 8, hi);
    expectStop(t.walk(1n << 21n, size), "table-out-of-range", "PD0");
    t.mem.write64(pd0, f.codec.vramDualPde({ big: size })[0]);
    expectStop(t.walk(1n << 21n, size), "table-out-of-range", "PD0");
    // Big table exactly at the end (256 bytes fit).
    t.mem.write64(pd0, f.codec.vramDualPde({ big: size - 256 })[0]);
    t.mem.write64(pd0 + 8, 0n);
    expectStop(t.walk(1n << 21n, size), "invalid-pte", "PT64K");
    // The PDB itself.
    const r = walk(t.mem, { format: f, pdb: size, va: 0, vramSize: size });
    expectStop(r, "table-out-of-range", names(f)[0]);
    assert.equal(r.steps.length, 0);
    // Without vramSize the 2^40 limit applies (v3 PDEs can name 2^52).
    if (f.version === 3) {
      t.mem.write64(slot, f.codec.encodePde({ aperture: "video", address: 2 ** 41 }));
      expectStop(t.walk(1n << 29n), "table-out-of-range", "PD1");
    }
  }
});

Deno.test("walk: bad inputs throw NovaError", () => {
  const t = new Tables(V2);
  throwsNova(() => t.walk(1n << 49n), "EOVERFLOW");
  throwsNova(() => t.walk(-1), "EINVAL");
  throwsNova(() => walk(t.mem, { format: V2, pdb: 0x1800, va: 0 }), "EINVAL");
  throwsNova(() => walk(t.mem, { format: V2, pdb: 2 ** 40, va: 0 }), "EOVERFLOW");
  throwsNova(() => t.walk(0, 0), "EINVAL");
  throwsNova(() => t.walk(0, 2 ** 41), "EINVAL");
  // 57-bit VAs are fine on v3.
  assert.equal(new Tables(V3).walk((1n << 57n) - 1n).mapped, false);
});

Deno.test("walk: results print one indented line per step", () => {
  const t = new Tables(V2);
  t.map4k(0x1_2345_6000n, 0x7_8000);
  const r = t.walk(0x1_2345_6789n);
  const lines = String(r).split("\n");
  assert.equal(lines[0], "walk 0x123456789 -> 0x78789 video (4 KiB page at PT)");
  assert.equal(lines.length, 1 + r.steps.length);
  assert.match(lines[1], /^ {2}PD3 +\[ *0\] @0x100000 0x[0-9a-f]{16} {2}PDE v2 video 0x/);
  assert.match(lines[4], /^ {2}PD0 .* 0x[0-9a-f]{16} 0x[0-9a-f]{16} {2}DualPDE v2 big=invalid/);
  assert.match(
    lines[5],
    /PT +\[ *86\] @0x[0-9a-f]+ 0x0000000000007801 {2}PTE v2 valid video 0x78000$/,
  );
  assert.equal(Deno.inspect(r), String(r));
  const miss = t.walk(1n << 40n);
  assert.match(String(miss), /^walk 0x10000000000 -> unmapped: invalid-pde at PD2\n {2}PD3/);
  assert.equal(formatStep(r.steps[0]), lines[1].trim());
});

// ---------------------------------------------------------------------------
// Random properties

Deno.test("walk: random mappings translate as a reference model says", () => {
  for (const f of [V2, V3, mmuFormat({ version: 2, architecture: "Turing" })]) {
    const r = prng(f.version * 7 + f.architecture.length);
    const int = (n: number) => Math.floor(r() * n);
    const t = new Tables(f);
    // Reference: VA page -> { pa, size, level }, "hidden" (marker) or a misaligned PTE.
    type Ref = { pa: number; size: number; level: string } | "hidden" | { misaligned: string };
    const ref = new Map<bigint, Ref>(); // keyed by the 4 KiB VA page
    const put = (va: bigint, size: number, value: Ref) => {
      for (let o = 0; o < size; o += PAGE_4K) ref.set(va + BigInt(o), value);
    };
    let pa = 0x1000_0000;
    /**
     * Maps one big or huge page: usually at a page-size-aligned address, one in
     * ten deliberately 4 KiB-aligned only (the walk must then stop on that PTE).
     */
    const mapBig = (va: bigint, size: number, level: string, map: (pa: number) => void) => {
      pa = Math.ceil(pa / size) * size;
      if (int(10) === 0) {
        map(pa + (1 + int(size / PAGE_4K - 1)) * PAGE_4K);
        put(va, size, { misaligned: level });
      } else {
        map(pa);
        put(va, size, { pa, size, level });
      }
      pa += size;
    };
    const vaBits = BigInt(Math.min(f.vaBits, 48));
    const used = new Set<bigint>();
    for (let region = 0; region < 150; region++) {
      const va2m = (BigInt(int(2 ** 26)) << 21n) & ((1n << vaBits) - 1n);
      if (used.has(va2m)) continue;
      used.add(va2m);
      const kind = int(3);
      if (kind === 0) {
        mapBig(va2m, PAGE_2M, "PD0", (p) => t.mapHuge(va2m, p, f.directories.length - 1));
        continue;
      }
      for (let slot = 0; slot < 32; slot++) {
        const va64 = va2m + BigInt(slot * PAGE_64K);
        const what = int(kind === 1 ? 3 : 5);
        if (what === 0) {
          mapBig(va64, PAGE_64K, "PT64K", (p) => t.map64k(va64, p));
        } else if (what === 1 || what === 3) {
          for (let p = 0; p < 16; p++) {
            if (int(2) === 0) continue;
            const va4 = va64 + BigInt(p * PAGE_4K);
            t.map4k(va4, pa);
            ref.set(va4, { pa, size: PAGE_4K, level: "PT" });
            pa += PAGE_4K;
          }
        } else if (what === 4) {
          t.map4k(va64, pa);
          pa += PAGE_4K;
          t.markNoSmall(va64);
          put(va64, PAGE_64K, "hidden");
        }
      }
    }
    const keys = [...ref.keys()];
    let mappedCount = 0;
    let misalignedCount = 0;
    for (let i = 0; i < 4000; i++) {
      const va = i % 4 === 3
        ? BigInt(int(2 ** 30)) * 4096n + BigInt(int(4096))
        : keys[int(keys.length)] + BigInt(int(4096));
      const got = t.walk(va);
      const want = ref.get(va & ~0xfffn);
      if (want === undefined) {
        assert.ok(!got.mapped, `0x${va.toString(16)} should not translate: ${String(got)}`);
        assert.ok(["invalid-pde", "invalid-pte"].includes(got.reason));
      } else if (want === "hidden") {
        expectStop(got, "invalid-pte", "PT64K");
      } else if ("misaligned" in want) {
        expectStop(got, "misaligned-pte", want.misaligned);
        misalignedCount++;
      } else {
        const offset = Number(va % BigInt(want.size));
        expectMapped(got, want.pa + offset, want.size, want.level);
        mappedCount++;
      }
    }
    assert.ok(mappedCount > 2000, `only ${mappedCount} mapped walks`);
    assert.ok(misalignedCount > 50, `only ${misalignedCount} walks hit a misaligned PTE`);
  }
});

Deno.test("walk: garbage tables never throw and always terminate", () => {
  const formats = [
    ...["Turing", "Ampere", "Ada"].map((a) =>
      mmuFormat({ version: 2, architecture: a as "Turing" })
    ),
    ...["Hopper", "Blackwell"].map((a) => mmuFormat({ version: 3, architecture: a as "Hopper" })),
  ];
  const r = prng(0xbad);
  const u32 = () => Math.floor(r() * 2 ** 32);
  const reasons = new Map<string, number>();
  for (const f of formats) {
    for (let i = 0; i < 2000; i++) {
      const seed = u32();
      const sparse = i % 3;
      const size = [0x100_0000, 0x4000_0000, 2 ** 37, 2 ** 40][i % 4];
      // Deterministic garbage per address. Half of the words are plausible pointers
      // (a VRAM-ish address with noisy flag bits) so walks get deep; the rest is noise.
      const word = (address: number): bigint => {
        let h = Math.imul(address ^ seed, 0x9e3779b1) ^ (address / 2 ** 32);
        h = Math.imul(h ^ (h >>> 16), 0x85ebca6b) >>> 0;
        const hi = Math.imul(h ^ 0x27d4eb2d, 0x165667b1) >>> 0;
        if ((h & 15) < 11 + sparse * 2) {
          // 256 B-aligned target, mostly inside VRAM, sometimes just past it.
          let target = (hi % (size / 256 + 64)) * 256;
          let flags = (h >>> 8) & 0xff;
          if ((h & 15) < 9) flags = (flags & ~7) | 2; // bit 0 clear, aperture 1
          if ((flags & 1) !== 0 && (h >>> 20) % 10 !== 0) {
            // A PTE: nine in ten aligned to a big or huge page size, so those levels can
            // map; the rest keep their 256 B alignment (mostly "misaligned-pte").
            const align = [PAGE_64K, PAGE_2M, PAGE_512M, PAGE_256G][(h >>> 16) & 3];
            target -= target % align;
          }
          const bits = f.version === 2 ? BigInt(Math.floor(target / 16)) : BigInt(target);
          return (bits & ~0xffn) | BigInt(flags);
        }
        let w = (BigInt(hi) << 32n) | BigInt(h);
        if (sparse === 1) w &= 0x0000_000f_ffff_f0ffn;
        if (sparse === 2) w &= 0x0000_0000_0007_f03fn;
        return w;
      };
      const mem = new FakeVram(size, word);
      const pdb = Math.floor(r() * (size / 4096 - 1)) * 4096;
      const va = (BigInt(u32()) << 32n | BigInt(u32())) & ((1n << BigInt(f.vaBits)) - 1n);
      const res = walk(mem, { format: f, pdb, va, vramSize: size });
      assert.ok(res.steps.length <= f.directories.length + 2);
      assert.ok(mem.reads <= f.directories.length + 3);
      assert.equal(typeof String(res), "string");
      const key = res.mapped ? `mapped@${res.level}` : `${res.reason}@${res.level}`;
      reasons.set(key, (reasons.get(key) ?? 0) + 1);
      if (res.mapped) {
        assert.ok([PAGE_4K, PAGE_64K, PAGE_2M, PAGE_512M, PAGE_256G].includes(res.pageSize));
        assert.equal(res.pte.valid, true);
      }
    }
  }
  // The garbage reached every kind of outcome.
  for (
    const k of [
      "mapped@PT",
      "mapped@PT64K",
      "mapped@PD0",
      "mapped@PD1",
      "invalid-pde@PD0",
      "invalid-pte@PT",
      "invalid-pte@PT64K",
      "sysmem-table@PD0",
      "table-out-of-range@PD0",
      "pte-at-non-leaf@PD3",
      "misaligned-pte@PT64K",
      "misaligned-pte@PD0",
      "misaligned-pte@PD1",
    ]
  ) {
    assert.ok((reasons.get(k) ?? 0) > 0, `no garbage walk ended in ${k}: ${[...reasons]}`);
  }
});

Deno.test("walk: tables that point at themselves terminate", () => {
  for (const f of BOTH) {
    const mem = new FakeVram(2 ** 30);
    const pdb = 0x10_0000;
    // Every entry of the one table points back to the table itself, both halves too.
    const pde = f.codec.vramPde(pdb);
    const [lo, hi] = f.codec.vramDualPde({ big: pdb, small: pdb });
    for (let o = 0; o < 4096; o += 16) {
      mem.write64(pdb + o, o % 32 === 0 ? pde : lo);
      mem.write64(pdb + o + 8, o % 32 === 0 ? pde : hi);
    }
    for (const va of [0n, 0x1234_5678n, (1n << BigInt(f.vaBits)) - 1n]) {
      const r = walk(mem, { format: f, pdb, va });
      assert.ok(r.steps.length <= f.directories.length + 2, String(r));
    }
  }
});
