// verify: novamm's shadow page tables against what VRAM holds (issue 18 item 3).
import assert from "node:assert/strict";
import { openGpu } from "../mod.ts";
import type { Gpu } from "../mm/gpu.ts";
import { Mapper, type TableHold } from "../mm/pagetable/mapper.ts";
import { ExtentList } from "../mm/pagetable/extents.ts";
import {
  verifyInstanceBlock,
  type VerifyReport,
  verifyShadow,
  verifyTree,
  type WordReader,
} from "../mm/pagetable/verify.ts";
import { Vmm } from "../mm/vmm.ts";
import { BarUser } from "../mm/bar_user.ts";
import { setInterruptWord } from "../hw/mmio.ts";
import { NV_RAMIN_PAGE_DIR_BASE_HI, NV_RAMIN_PAGE_DIR_BASE_LO } from "../hw/regs.ts";
import { throwsNova } from "./util.ts";
import { walk } from "../mm/pagetable/walk.ts";
import type { PraminWindow } from "../mm/pramin.ts";
import type { DecodedPte } from "../mm/pagetable/format.ts";

const KiB = 1024;
const MiB = 2 ** 20;
const VA_SIZE = 1n << 32n;

/** A Mapper over the GPU's allocator, as a Vmm builds one (root zeroed in VRAM). */
function newMapper(gpu: Gpu): Mapper {
  const { pramin, buddy, vramSize } = gpu.mm;
  const root = buddy.alloc(4096);
  pramin.writeBytes(root.start, new Uint8Array(gpu.format.directories[0].tableBytes), {
    force: true,
  });
  return new Mapper(gpu.format, root.start, root, { pramin, buddy, vramSize });
}

/** Maps [pa, pa + size) at `va` through the mapper's prepare and write, as Vmm.mapRange does. */
function mapAt(gpu: Gpu, mapper: Mapper, va: bigint, pa: number, size: number, pageSize?: number) {
  const hold: TableHold = { newTables: [], pinned: [] };
  const runs = mapper.prepare(ExtentList.range(pa, size, gpu.mm.vramSize), va, pageSize, hold);
  mapper.write({ va, runs, writable: true, ...hold }, () => mapper.abandon(hold));
  return runs;
}

/** Verifies `mapper`'s shadow through a PRAMIN window, counting the MMIO reads. */
function verify(gpu: Gpu, mapper: Mapper, options: Record<string, unknown> = {}) {
  using w = gpu.pramin.window();
  return verifyTree(mapper.tree, w, { vaSize: VA_SIZE, vramSize: gpu.mm.vramSize, ...options });
}

for (const device of ["sim:ga102", "sim:gh100"]) {
  Deno.test(`verify ${device}: three mappings verify clean; one PTE poked behind novamm's back is the one difference`, async () => {
    const gpu = await openGpu({ device });
    const sim = gpu.sim!;
    const mapper = newMapper(gpu);
    const a = gpu.mm.buddy.alloc(16 * KiB);
    const b = gpu.mm.buddy.alloc(128 * KiB, { align: 64 * KiB });
    const c = gpu.mm.buddy.alloc(2 * MiB, { align: 2 * MiB });
    mapAt(gpu, mapper, 0x10_0000n, a.start, a.size); // 4 KiB pages
    mapAt(gpu, mapper, 0x20_0000n, b.start, b.size); // 64 KiB pages
    mapAt(gpu, mapper, 0x40_0000n, c.start, c.size); // a 2 MiB PTE at PD0
    const clean = verify(gpu, mapper);
    assert.equal(clean.ok, true, String(clean));
    assert.equal(clean.differenceCount, 0);
    assert.ok(clean.tables >= gpu.format.directories.length + 2, `${clean.tables} tables`);
    assert.match(String(clean), /0 differences/);

    // Poke the second 4 KiB PTE of the first mapping directly in the simulator's VRAM.
    const va = 0x10_1000n;
    const steps = walkSteps(gpu, mapper, va);
    const pte = steps.at(-1)!;
    assert.equal(pte.level, "PT");
    const old = sim.vram.read64(pte.entryAddress);
    const poked = old ^ (1n << 40n) ^ 0x1000n; // another page (and a reserved-ish high bit)
    sim.vram.write64(pte.entryAddress, poked);
    const r = verify(gpu, mapper);
    assert.equal(r.ok, false);
    assert.equal(r.differenceCount, 1, String(r));
    const [d] = r.differences;
    assert.equal(d.level, "PT");
    assert.equal(d.index, 257); // VA bits 20:12
    assert.equal(d.half, null);
    assert.equal(d.va, va);
    assert.equal(d.vaSize, 4096);
    assert.equal(d.entryAddress, pte.entryAddress);
    assert.equal(d.tableAddress, pte.entryAddress - 257 * 8);
    assert.equal(d.expected, old);
    assert.equal(d.found, poked);
    assert.equal((d.expectedDecoded as DecodedPte).address, a.start + 0x1000);
    assert.notEqual((d.foundDecoded as DecodedPte).address, a.start + 0x1000);
    assert.match(
      String(r),
      /PT\[257\] @0x[0-9a-f]+ \(table 0x[0-9a-f]+\) va \[0x101000, 0x102000\)/,
    );
    assert.match(String(r), /1 difference\b/);
    sim.vram.write64(pte.entryAddress, old);
    assert.equal(verify(gpu, mapper).ok, true);
    gpu.close();
  });

  Deno.test(`verify ${device}: the 128-bit dual PDE, each half on its own; the 2 MiB PTE in the low word`, async () => {
    const gpu = await openGpu({ device });
    const sim = gpu.sim!;
    const mapper = newMapper(gpu);
    const small = gpu.mm.buddy.alloc(8 * KiB);
    const big = gpu.mm.buddy.alloc(64 * KiB, { align: 64 * KiB });
    const huge = gpu.mm.buddy.alloc(2 * MiB, { align: 2 * MiB });
    // Both halves of one PD0 entry: 4 KiB pages and 64 KiB pages in the same 2 MiB block.
    mapAt(gpu, mapper, 0x60_0000n, small.start, small.size, 4096);
    mapAt(gpu, mapper, 0x61_0000n, big.start, big.size, 64 * KiB);
    mapAt(gpu, mapper, 0x80_0000n, huge.start, huge.size);
    assert.equal(verify(gpu, mapper).ok, true);
    const pd0 = walkSteps(gpu, mapper, 0x60_0000n).find((s) => s.level === "PD0")!;
    const at = pd0.entryAddress;
    const index = pd0.index;
    // Small half: the high 64-bit word of the 128-bit entry.
    const hi = sim.vram.read64(at + 8);
    sim.vram.write64(at + 8, 0n);
    let r = verify(gpu, mapper);
    assert.equal(r.differenceCount, 1, String(r));
    assert.deepEqual(
      [r.differences[0].level, r.differences[0].index, r.differences[0].half],
      ["PD0", index, "small"],
    );
    assert.equal(r.differences[0].entryAddress, at + 8);
    assert.equal(r.differences[0].va, 0x60_0000n);
    assert.equal(r.differences[0].vaSize, 2 * MiB);
    assert.equal(r.differences[0].expected, hi);
    assert.equal(r.differences[0].found, 0n);
    const dual = r.differences[0].foundDecoded as { small: { aperture: string } };
    assert.equal(dual.small.aperture, "invalid");
    sim.vram.write64(at + 8, hi);
    // Big half: the low word.
    const lo = sim.vram.read64(at);
    sim.vram.write64(at, lo ^ 0x100n);
    r = verify(gpu, mapper);
    assert.equal(r.differenceCount, 1, String(r));
    assert.deepEqual([r.differences[0].half, r.differences[0].entryAddress], ["big", at]);
    sim.vram.write64(at, lo);
    // The 2 MiB PTE at PD0: the big (low) word, decoded as a PTE.
    const hugeAt = walkSteps(gpu, mapper, 0x80_0000n).at(-1)!;
    assert.equal(hugeAt.level, "PD0");
    const pte = sim.vram.read64(hugeAt.entryAddress);
    sim.vram.write64(hugeAt.entryAddress, 0n);
    r = verify(gpu, mapper);
    assert.equal(r.differenceCount, 1, String(r));
    const d = r.differences[0];
    assert.deepEqual([d.level, d.half, d.va, d.expected], ["PD0", "big", 0x80_0000n, pte]);
    assert.equal((d.expectedDecoded as { valid: boolean }).valid, true, "decoded as a PTE");
    gpu.close();
  });
}

function walkSteps(gpu: Gpu, mapper: Mapper, va: bigint) {
  using w = gpu.pramin.window();
  return walkAt(w, gpu, mapper.tree.root.addr, va);
}

function walkAt(w: PraminWindow, gpu: Gpu, pdb: number, va: bigint) {
  const r = walk(w, { format: gpu.format, pdb, va, vramSize: gpu.mm.vramSize });
  assert.ok(r.mapped, `${va} maps`);
  return r.steps;
}

Deno.test("verify: one bulk read per table (as the scan), nothing written; a pending prepare's tables are not compared", async () => {
  const gpu = await openGpu({ device: "sim:ga102" });
  const mapper = newMapper(gpu);
  const a = gpu.mm.buddy.alloc(64 * KiB);
  mapAt(gpu, mapper, 0x10_0000n, a.start, a.size, 4096);
  using w = gpu.pramin.window();
  w.read32(0); // the window is positioned; count only what verify does
  gpu.resetStats();
  const r = verifyTree(mapper.tree, w, { vaSize: VA_SIZE, vramSize: gpu.mm.vramSize });
  assert.equal(r.ok, true, String(r));
  const s = gpu.stats();
  assert.equal(s.mmioWrites - s.windowMoves, 0, "only window moves are written");
  // Reads: the entries below VA_SIZE of each table (v2: PD3 1, PD2 4, PD1 4 entries...).
  assert.equal(s.mmioReads, 2 * r.words, `${s.mmioReads} reads for ${r.words} words`);
  // A prepare not executed: its new tables are linked in the shadow, not in VRAM.
  const b = gpu.mm.buddy.alloc(4096);
  const hold: TableHold = { newTables: [], pinned: [] };
  mapper.prepare(ExtentList.range(b.start, b.size, gpu.mm.vramSize), 1n << 31n, undefined, hold);
  assert.ok(hold.newTables.length > 0);
  const p = verifyTree(mapper.tree, w, { vaSize: VA_SIZE, vramSize: gpu.mm.vramSize });
  assert.equal(p.ok, true, String(p));
  assert.equal(p.pending, 1, "the top new table (and nothing below it) is skipped");
  assert.match(String(p), /pending prepares not in VRAM yet/);
  mapper.abandon(hold);
  gpu.close();
});

Deno.test("verify: maxDifferences bounds the list, the count is whole", async () => {
  const gpu = await openGpu({ device: "sim:gh100" });
  const mapper = newMapper(gpu);
  const a = gpu.mm.buddy.alloc(64 * KiB);
  mapAt(gpu, mapper, 0x10_0000n, a.start, a.size, 4096);
  const pt = walkSteps(gpu, mapper, 0x10_0000n).at(-1)!.entryAddress;
  for (let i = 0; i < 16; i++) gpu.sim!.vram.write64(pt + i * 8, 0n);
  const r = verify(gpu, mapper, { maxDifferences: 3 });
  assert.equal(r.differenceCount, 16);
  assert.equal(r.differences.length, 3);
  assert.deepEqual(r.differences.map((d) => d.index), [256, 257, 258]);
  assert.match(String(r), /… 13 more/);
  gpu.close();
});

Deno.test("verify: BAR1 up with three mappings: tables and instance block agree; poking either is reported", async () => {
  for (const device of ["sim:ga102", "sim:gh100"]) {
    const gpu = await openGpu({ device });
    const sim = gpu.sim!;
    gpu.bar1.bringUp();
    const allocs = [4 * KiB, 64 * KiB, 2 * MiB].map((n) => gpu.mm.buddy.alloc(n, { align: n }));
    const maps = allocs.map((a) => gpu.bar1.map(a, { writable: true }));
    const binding = gpu.bar1.binding!;
    const vmm = gpu.bar1.vmm;
    // The shadow a Vmm keeps is private: verify BAR1's tables against a scan of them
    // (the tree dump({ fromHardware }) makes), and its instance block against the rules.
    const shadow = new Mapper(gpu.format, binding.pdb, null, {
      pramin: gpu.mm.pramin,
      buddy: gpu.mm.buddy,
      vramSize: gpu.mm.vramSize,
    });
    shadow.scan(vmm.vaSize);
    const run = () => {
      using w = gpu.pramin.window();
      return verifyTree(shadow.tree, w, {
        vaSize: vmm.vaSize,
        vramSize: gpu.mm.vramSize,
        name: vmm.name,
        instanceBlock: binding.instanceBlock,
        instanceBlockRules: gpu.family.instanceBlock,
      });
    };
    const clean = run();
    assert.equal(clean.ok, true, String(clean));
    assert.deepEqual(clean.instanceBlock, []);
    assert.match(String(clean), /instance block: points at this PDB/);
    // A PTE of the second mapping.
    const steps = (() => {
      using w = gpu.pramin.window();
      return walkAt(w, gpu, binding.pdb, maps[1].va);
    })();
    const pte = steps.at(-1)!;
    const old = sim.vram.read64(pte.entryAddress);
    sim.vram.write64(pte.entryAddress, 0n);
    let r = run();
    assert.equal(r.differenceCount, 1, String(r));
    assert.deepEqual(
      [r.differences[0].level, r.differences[0].va, r.differences[0].expected],
      [pte.level, maps[1].va, old],
    );
    sim.vram.write64(pte.entryAddress, old);
    // The instance block's PDB pointer moved one page.
    const loAt = binding.instanceBlock + NV_RAMIN_PAGE_DIR_BASE_LO;
    const lo = sim.vram.read32(loAt);
    sim.vram.write32(loAt, lo + 0x1000);
    r = run();
    assert.equal(r.differenceCount, 0);
    assert.equal(r.ok, false);
    assert.equal(r.instanceBlock!.length, 1, String(r));
    assert.equal(r.instanceBlock![0].name, "NV_RAMIN_PAGE_DIR_BASE_LO");
    assert.deepEqual(r.instanceBlock![0].fields, [
      "LO 0x" + (lo >>> 12).toString(16) + " -> 0x" + ((lo >>> 12) + 1).toString(16),
    ]);
    sim.vram.write32(loAt, lo);
    // Without the rules, only the PDB words: HI changed is still caught.
    const hiAt = binding.instanceBlock + NV_RAMIN_PAGE_DIR_BASE_HI;
    sim.vram.write32(hiAt, 1);
    {
      using w = gpu.pramin.window();
      const ib = verifyInstanceBlock(w, {
        instanceBlock: binding.instanceBlock,
        pdb: binding.pdb,
        format: gpu.format,
        vaSize: vmm.vaSize,
      });
      assert.deepEqual(ib.map((d) => [d.name, d.expected, d.found]), [
        ["NV_RAMIN_PAGE_DIR_BASE_HI", 0, 1],
      ]);
    }
    sim.vram.write32(hiAt, 0);
    for (const m of maps) m.unmap();
    gpu.close();
  }
});

Deno.test("verify: Ctrl-C between tables stops it (EINTR), with a reader that makes no MMIO access", async () => {
  const gpu = await openGpu({ device: "sim:ga102" });
  const sim = gpu.sim!;
  const mapper = newMapper(gpu);
  const a = gpu.mm.buddy.alloc(4 * MiB, { align: 2 * MiB });
  mapAt(gpu, mapper, 0x100_0000n, a.start, a.size, 4096); // two page tables
  const word = new Int32Array(new SharedArrayBuffer(4));
  let reads = 0;
  const reader: WordReader = {
    readWords(addr, count, out = new Uint32Array(count)) {
      for (let i = 0; i < count; i++) out[i] = sim.vram.read32(addr + 4 * i);
      if (++reads === 2) Atomics.store(word, 0, 1); // Ctrl-C after the second table
      return out;
    },
  };
  setInterruptWord(word);
  try {
    throwsNova(
      () => verifyTree(mapper.tree, reader, { vaSize: VA_SIZE, vramSize: gpu.mm.vramSize }),
      "EINTR",
    );
    assert.equal(reads, 2, "stopped before the third table");
  } finally {
    setInterruptWord(null);
  }
  assert.equal(verifyTree(mapper.tree, reader, { vaSize: VA_SIZE }).ok, true);
  gpu.close();
});

Deno.test("verify: bad arguments are refused before any read", async () => {
  const gpu = await openGpu({ device: "sim:ga102" });
  const mapper = newMapper(gpu);
  let reads = 0;
  const reader: WordReader = {
    readWords: (_a, count) => {
      reads++;
      return new Uint32Array(count);
    },
  };
  const t = mapper.tree;
  throwsNova(() => verifyTree(t, reader, { vaSize: 0n }), "EINVAL", "vaSize");
  throwsNova(() => verifyTree(t, reader, { vaSize: 1n << 50n }), "EINVAL", "49-bit");
  throwsNova(
    () => verifyTree(t, reader, { vaSize: VA_SIZE, maxDiffs: 1 } as never),
    "EINVAL",
    "maxDiffs",
  );
  throwsNova(
    () => verifyTree(t, reader, { vaSize: VA_SIZE, maxDifferences: -1 }),
    "EINVAL",
    "maxDifferences",
  );
  throwsNova(
    () => verifyTree(t, reader, { vaSize: VA_SIZE, instanceBlock: 0x1001 }),
    "EINVAL",
    "4 KiB",
  );
  throwsNova(
    () => verifyTree(t, reader, { vaSize: VA_SIZE, vramSize: 2 ** 30, instanceBlock: 2 ** 30 }),
    "EINVAL",
    "past the end of VRAM",
  );
  throwsNova(() => verifyTree(t, {} as WordReader, { vaSize: VA_SIZE }), "EINVAL", "readWords");
  throwsNova(() => verifyTree({} as never, reader, { vaSize: VA_SIZE }), "EINVAL", "shadow tree");
  assert.equal(reads, 0);
  gpu.close();
});

Deno.test("verify: verifyShadow (what vmm.verify() runs) borrows a window, checks options before any MMIO", async () => {
  const gpu = await openGpu({ device: "sim:gh100" });
  const mapper = newMapper(gpu);
  const a = gpu.mm.buddy.alloc(64 * KiB, { align: 64 * KiB });
  mapAt(gpu, mapper, 0x10_0000n, a.start, a.size);
  const space = { name: "mine", vaSize: VA_SIZE, vramSize: gpu.mm.vramSize };
  gpu.resetStats();
  throwsNova(
    () => verifyShadow(mapper.tree, gpu.pramin, space, { maxDiffs: 1 } as never),
    "EINVAL",
    "maxDiffs",
  );
  throwsNova(
    () => verifyShadow(mapper.tree, gpu.pramin, space, { instanceBlock: 0x1234 }),
    "EINVAL",
    "4 KiB",
  );
  assert.equal(gpu.stats().mmioReads + gpu.stats().mmioWrites, 0, "no MMIO, not even the window");
  const r = verifyShadow(mapper.tree, gpu.pramin, { ...space, unsynced: true });
  assert.equal(r.ok, true);
  assert.equal(r.unsynced, true);
  assert.match(String(r), /^verify mine: MMU v3 /);
  assert.match(String(r), /flush\(\) writes them/);
  assert.equal(gpu.pramin.busy, false, "the borrowed window is closed again");
  gpu.close();
});

// Runs once the lead adds Vmm.verify() (the method text is in the helper's report).
const hasVerify = typeof (Vmm.prototype as unknown as { verify?: unknown }).verify === "function";
Deno.test({
  name: "verify: vmm.verify() on BAR1 with three mappings, one PTE poked (sim:ga102, sim:gh100)",
  ignore: !hasVerify,
  fn: async () => {
    for (const device of ["sim:ga102", "sim:gh100"]) {
      const gpu = await openGpu({ device });
      gpu.bar1.bringUp();
      const allocs = [4 * KiB, 64 * KiB, 2 * MiB].map((n) => gpu.mm.buddy.alloc(n, { align: n }));
      const maps = allocs.map((a) => gpu.bar1.map(a, { writable: true }));
      const vmm = gpu.bar1.vmm as unknown as {
        verify(o?: Record<string, unknown>): VerifyReport;
        walk(va: bigint): { steps: { entryAddress: number; level: string }[] };
      };
      const inst = gpu.bar1.binding!.instanceBlock;
      assert.equal(vmm.verify({ instanceBlock: inst }).ok, true);
      const pte = vmm.walk(maps[0].va).steps.at(-1)!;
      const old = gpu.sim!.vram.read64(pte.entryAddress);
      gpu.sim!.vram.write64(pte.entryAddress, old ^ 0x1000n);
      const r = vmm.verify({ instanceBlock: inst });
      assert.equal(r.differenceCount, 1, String(r));
      assert.deepEqual(
        [r.differences[0].level, r.differences[0].va, r.differences[0].expected],
        [pte.level, maps[0].va, old],
      );
      assert.equal(r.differences[0].found, old ^ 0x1000n);
      gpu.sim!.vram.write64(pte.entryAddress, old);
      for (const m of maps) m.unmap();
      gpu.close();
    }
  },
});

Deno.test("verify: firmware's BAR1 tables (gsp card), scanned as an adopted space is: clean, then one poked PTE", async () => {
  for (const device of ["sim:ga102:gsp", "sim:gh100:gsp"]) {
    const gpu = await openGpu({ device });
    gpu.bar1.bringUp(); // adopts firmware's binding
    const b = gpu.bar1.binding!;
    assert.equal(b.instanceBlock, gpu.sim!.firmware!.instanceBlock);
    const shadow = new Mapper(gpu.format, b.pdb, null, {
      pramin: gpu.mm.pramin,
      buddy: gpu.mm.buddy,
      vramSize: gpu.mm.vramSize,
    });
    shadow.scan(gpu.bar1.vmm.vaSize);
    const run = () =>
      verifyShadow(shadow.tree, gpu.pramin, {
        name: "bar1",
        vaSize: gpu.bar1.vmm.vaSize,
        vramSize: gpu.mm.vramSize,
      }, { instanceBlock: b.instanceBlock });
    const clean = run();
    assert.equal(clean.ok, true, String(clean));
    assert.ok(clean.tables >= gpu.format.directories.length + 1);
    // Firmware's first mapped PTE.
    let leaf: { table: { addr: number; level: { name: string } }; index: number } | null = null;
    for (const t of shadow.tree.tables()) {
      if (t.depth < gpu.format.directories.length) continue;
      const i = [...Array(t.level.entries).keys()].find((k) => t.raw[2 * k] !== 0);
      if (i !== undefined) {
        leaf = { table: t, index: i };
        break;
      }
    }
    assert.ok(leaf !== null, "firmware maps something through BAR1");
    const at = leaf.table.addr + 8 * leaf.index;
    const old = gpu.sim!.vram.read64(at);
    gpu.sim!.vram.write64(at, 0n);
    const r = run();
    assert.equal(r.differenceCount, 1, String(r));
    assert.deepEqual(
      [
        r.differences[0].level,
        r.differences[0].index,
        r.differences[0].expected,
        r.differences[0].found,
      ],
      [leaf.table.level.name, leaf.index, old, 0n],
    );
    gpu.sim!.vram.write64(at, old);
    gpu.close();
  }
});

// Runs once the lead adds BarUser.verify() (the method text is in the helper's report).
const hasBarVerify =
  typeof (BarUser.prototype as unknown as { verify?: unknown }).verify === "function";
Deno.test({
  name: "verify: bar1.verify() checks BAR1's space and its instance block on every family",
  ignore: !hasBarVerify,
  fn: async () => {
    for (const device of ["sim:tu102", "sim:ga102", "sim:gh100", "sim:gb202", "sim:ga102:gsp"]) {
      const gpu = await openGpu({ device });
      const bar1 = gpu.bar1 as unknown as { verify(o?: object): VerifyReport };
      if (gpu.bar1.mode === "physical") throwsNova(() => bar1.verify(), "ENODEV");
      gpu.bar1.bringUp();
      const a = gpu.mm.buddy.alloc(64 * KiB, { align: 64 * KiB });
      const m = gpu.bar1.map(a);
      assert.equal(bar1.verify().ok, true, `${device}: ${String(bar1.verify())}`);
      const inst = gpu.bar1.binding!.instanceBlock;
      const lo = gpu.sim!.vram.read32(inst + NV_RAMIN_PAGE_DIR_BASE_LO);
      gpu.sim!.vram.write32(inst + NV_RAMIN_PAGE_DIR_BASE_LO, lo ^ 0x800); // BIG_PAGE_SIZE
      const r = bar1.verify();
      assert.deepEqual(r.instanceBlock!.map((d) => d.fields[0]), ["BIG_PAGE_SIZE 0x1 -> 0x0"]);
      gpu.sim!.vram.write32(inst + NV_RAMIN_PAGE_DIR_BASE_LO, lo);
      m.unmap();
      gpu.close();
    }
  },
});
