/**
 * Page-table formats as data (facts §1.2, §4.1) and the address types of
 * mm/types.ts.
 */

import assert from "node:assert/strict";
import { type LevelFormat, levelIndex, mmu, mmuFormat } from "../mm/pagetable/mod.ts";
import {
  addressToPfn,
  PAGE_256G,
  PAGE_2M,
  PAGE_4K,
  PAGE_512M,
  PAGE_64K,
  pfnToAddress,
  toSafeNumber,
  u64,
  virtualAddress,
  VRAM_ADDRESS_LIMIT,
  vramAddress,
} from "../mm/types.ts";
import { throwsNova } from "./util.ts";

type Row = [string, number, number, number, 8 | 16, number, boolean, number | null, number];

function rows(levels: readonly LevelFormat[]): Row[] {
  return levels.map((l) => [
    l.name,
    l.vaHi,
    l.vaLo,
    l.entries,
    l.entrySize,
    l.tableBytes,
    l.dual,
    l.hugePageSize,
    l.pageSize,
  ]);
}

const TiB = 2 ** 40;
const PiB = 2 ** 50;

/** The two leaf tables, the same in v2 and v3: 4 KiB pages (VA 20:12) and 64 KiB pages (20:16). */
const PT_ROWS: Row[] = [
  ["PT", 20, 12, 512, 8, 4096, false, null, PAGE_4K],
  ["PT64K", 20, 16, 32, 8, 256, false, null, PAGE_64K],
];

Deno.test("format: MMU v2 levels match NVIDIA's hardware layout (facts §4.1)", () => {
  const f = mmuFormat({ version: 2, architecture: "Ampere" });
  assert.equal(f.version, 2);
  assert.equal(f.vaBits, 49);
  assert.deepStrictEqual(rows(f.directories), [
    ["PD3", 48, 47, 4, 8, 32, false, null, 128 * TiB],
    ["PD2", 46, 38, 512, 8, 4096, false, null, PAGE_256G],
    ["PD1", 37, 29, 512, 8, 4096, false, PAGE_512M, PAGE_512M],
    ["PD0", 28, 21, 256, 16, 4096, true, PAGE_2M, PAGE_2M],
  ]);
  assert.deepStrictEqual(rows([f.smallPt, f.bigPt]), PT_ROWS);
  assert.equal(f.codec, mmu.v2);
});

Deno.test("format: MMU v3 levels match NVIDIA's hardware layout (facts §4.1)", () => {
  const f = mmuFormat({ version: 3, architecture: "Hopper" });
  assert.equal(f.vaBits, 57);
  assert.deepStrictEqual(rows(f.directories), [
    ["PD4", 56, 56, 2, 8, 16, false, null, 64 * PiB],
    ["PD3", 55, 47, 512, 8, 4096, false, null, 128 * TiB],
    ["PD2", 46, 38, 512, 8, 4096, false, null, PAGE_256G],
    ["PD1", 37, 29, 512, 8, 4096, false, PAGE_512M, PAGE_512M],
    ["PD0", 28, 21, 256, 16, 4096, true, PAGE_2M, PAGE_2M],
  ]);
  assert.deepStrictEqual(rows([f.smallPt, f.bigPt]), PT_ROWS);
  assert.equal(f.codec, mmu.v3);
});

Deno.test("format: huge-page levels per architecture (facts §1.2)", () => {
  const huge = (version: 2 | 3, architecture: Parameters<typeof mmuFormat>[0]["architecture"]) =>
    Object.fromEntries(
      mmuFormat({ version, architecture }).directories.map((l) => [l.name, l.hugePageSize]),
    );
  assert.deepStrictEqual(huge(2, "Turing"), { PD3: null, PD2: null, PD1: null, PD0: PAGE_2M });
  for (const arch of ["Ampere", "Ada"] as const) {
    assert.deepStrictEqual(huge(2, arch), {
      PD3: null,
      PD2: null,
      PD1: PAGE_512M,
      PD0: PAGE_2M,
    });
  }
  assert.deepStrictEqual(huge(3, "Hopper"), {
    PD4: null,
    PD3: null,
    PD2: null,
    PD1: PAGE_512M,
    PD0: PAGE_2M,
  });
  assert.deepStrictEqual(huge(3, "Blackwell"), {
    PD4: null,
    PD3: null,
    PD2: PAGE_256G,
    PD1: PAGE_512M,
    PD0: PAGE_2M,
  });
});

Deno.test("format: the levels tile the whole VA space without gaps or overlaps", () => {
  for (
    const [version, arch] of [[2, "Turing"], [2, "Ampere"], [2, "Ada"], [3, "Hopper"], [
      3,
      "Blackwell",
    ]] as const
  ) {
    const f = mmuFormat({ version, architecture: arch });
    let hi = f.vaBits - 1;
    for (const l of f.directories) {
      assert.equal(l.vaHi, hi, `${l.name} starts where the previous level ended`);
      assert.equal(l.entries * l.pageSize, 2 ** (l.vaHi + 1));
      assert.equal(l.tableBytes, l.entries * l.entrySize);
      assert.equal(l.entrySize, l.dual ? 16 : 8);
      hi = l.vaLo - 1;
    }
    assert.equal(f.smallPt.vaHi, hi);
    assert.equal(f.bigPt.vaHi, hi);
    assert.equal(f.smallPt.vaLo, 12);
    assert.equal(f.bigPt.vaLo, 16);
    assert.equal(f.directories.filter((l) => l.dual).length, 1);
    assert.ok(f.directories.at(-1)?.dual, "PD0 (dual) is the last directory");
  }
});

Deno.test("format: defaults, caching, freezing and bad options", () => {
  assert.equal(mmuFormat({ version: 2 }).architecture, "Ampere");
  assert.equal(mmuFormat({ version: 3 }).architecture, "Hopper");
  assert.equal(mmuFormat({ version: 2 }), mmuFormat({ version: 2, architecture: "Ampere" }));
  assert.notEqual(mmuFormat({ version: 2, architecture: "Turing" }), mmuFormat({ version: 2 }));
  const f = mmuFormat({ version: 3, architecture: "Blackwell" });
  assert.ok(Object.isFrozen(f) && Object.isFrozen(f.directories) && Object.isFrozen(f.bigPt));
  assert.ok(f.directories.every((l) => Object.isFrozen(l)));
  throwsNova(() => mmuFormat({ version: 2, architecture: "Hopper" }), "EINVAL", '"Hopper"', "v2");
  throwsNova(() => mmuFormat({ version: 3, architecture: "Ada" }), "EINVAL", '"Ada"', "v3");
  throwsNova(() => mmuFormat({ version: 4 as never }), "EINVAL", "4");
});

Deno.test("format: levelIndex uses the hardware bit ranges (not nova v7's 9-bit split)", () => {
  const [pd3, pd2, pd1, pd0] = mmuFormat({ version: 2 }).directories;
  // VA bit 29 selects PD1 entry 1; nova v7 put it into the PD0 index (facts D1).
  assert.equal(levelIndex(pd1, 1n << 29n), 1);
  assert.equal(levelIndex(pd0, 1n << 29n), 0);
  assert.equal(levelIndex(pd0, 0x0fe0_0000n), 0x7f);
  assert.equal(levelIndex(pd3, (1n << 49n) - 1n), 3);
  assert.equal(levelIndex(pd2, 1n << 38n), 1);
  assert.equal(levelIndex(pd2, 1n << 47n), 0);
  const f3 = mmuFormat({ version: 3 });
  const [pd4, pd3v3] = f3.directories;
  assert.equal(levelIndex(pd4, 1n << 56n), 1);
  assert.equal(levelIndex(pd3v3, 1n << 56n), 0);
  assert.equal(levelIndex(pd3v3, (1n << 56n) - 1n), 511);
  assert.equal(levelIndex(f3.bigPt, 0x1f_0000n), 31);
  assert.equal(levelIndex(f3.smallPt, 0x1f_f000n), 511);
  // The number fast path and the bigint path agree, above and below 2^53.
  for (let bit = 0; bit < 57; bit++) {
    const va = (1n << BigInt(bit)) | 0x15555n;
    for (const l of [...f3.directories, f3.smallPt, f3.bigPt]) {
      const expected = Number((va >> BigInt(l.vaLo)) & BigInt(l.entries - 1));
      assert.equal(levelIndex(l, va), expected, `${l.name} bit ${bit}`);
    }
  }
  throwsNova(() => levelIndex(pd0, -1n), "EINVAL", "-1");
});

// ---------------------------------------------------------------------------
// mm/types.ts

Deno.test("types: page-size constants", () => {
  assert.deepStrictEqual(
    [PAGE_4K, PAGE_64K, PAGE_2M, PAGE_512M, PAGE_256G, VRAM_ADDRESS_LIMIT],
    [4096, 65536, 2 * 2 ** 20, 512 * 2 ** 20, 256 * 2 ** 30, 2 ** 40],
  );
});

Deno.test("types: vramAddress checks range and type", () => {
  assert.equal(vramAddress(0), 0);
  assert.equal(vramAddress(2 ** 40 - 1), 2 ** 40 - 1);
  assert.equal(vramAddress(0x1000n), 0x1000);
  throwsNova(() => vramAddress(2 ** 40), "EOVERFLOW", "0x10000000000");
  throwsNova(() => vramAddress(2n ** 40n, "table"), "EOVERFLOW", "table", "0x10000000000n");
  throwsNova(() => vramAddress(-1), "EINVAL", "-1");
  throwsNova(() => vramAddress(1.5), "EINVAL", "1.5");
  throwsNova(() => vramAddress(-1n), "EINVAL", "-0x1n");
  throwsNova(() => vramAddress("4096" as never), "EINVAL", '"4096"');
});

Deno.test("types: virtualAddress checks against the VA width", () => {
  assert.equal(virtualAddress(0x1000, 49), 0x1000n);
  assert.equal(virtualAddress((1n << 49n) - 1n, 49), (1n << 49n) - 1n);
  assert.equal(virtualAddress(1n << 56n, 57), 1n << 56n);
  throwsNova(() => virtualAddress(1n << 49n, 49), "EOVERFLOW", "0x2000000000000", "49-bit");
  throwsNova(() => virtualAddress(1n << 57n, 57), "EOVERFLOW", "0x200000000000000");
  throwsNova(() => virtualAddress(-1, 49), "EINVAL", "-1");
  throwsNova(() => virtualAddress(-1n, 49), "EINVAL");
  throwsNova(() => virtualAddress(0.5, 49), "EINVAL", "0.5");
  throwsNova(() => virtualAddress(2 ** 60, 57), "EINVAL", "bigint");
});

Deno.test("types: frame numbers, safe numbers, u64", () => {
  assert.equal(pfnToAddress(0x1200), 0x1200000);
  assert.equal(addressToPfn(0x1200000), 0x1200);
  assert.equal(addressToPfn(pfnToAddress(2 ** 28 - 1)), 2 ** 28 - 1);
  throwsNova(() => pfnToAddress(2 ** 28), "EOVERFLOW", "0x10000000");
  throwsNova(() => pfnToAddress(-1), "EINVAL", "-1");
  throwsNova(() => addressToPfn(0x1001), "EINVAL", "0x1001", "4 KiB");
  throwsNova(() => addressToPfn(2 ** 40), "EOVERFLOW");
  assert.equal(toSafeNumber(2n ** 53n - 1n, "x"), 2 ** 53 - 1);
  assert.equal(toSafeNumber(-5n, "x"), -5);
  throwsNova(() => toSafeNumber(2n ** 53n, "offset"), "EOVERFLOW", "offset", "0x20000000000000");
  assert.equal(u64(5), 5n);
  assert.equal(u64((1n << 64n) - 1n), (1n << 64n) - 1n);
  throwsNova(() => u64(1n << 64n, "word"), "EINVAL", "word");
  throwsNova(() => u64(-1), "EINVAL", "-1");
});
