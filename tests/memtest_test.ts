// The VRAM memory test (issue 21): each fault the simulator injects is found
// at the right address and bit by the pattern meant to find it, a healthy
// card reports nothing, 1 GiB completes, an interrupted run leaves nothing
// mapped or allocated, bad input touches nothing, and on a fake card the
// write-combining BAR1 path is chosen.
//
// The 1 GiB run uses one pattern through PRAMIN: on the simulator BAR1 moves
// one 32-bit word per call (~0.1 GB/s) and first touches of sparse VRAM
// cost a hash per word, so all patterns over 1 GiB would take minutes.

import assert from "node:assert/strict";
import { openGpu } from "../mod.ts";
import type { Gpu } from "../mm/gpu.ts";
import { setInterruptWord } from "../hw/mmio.ts";
import {
  addressWord,
  formatMemtestReport,
  memtest,
  MEMTEST_PATTERNS,
  type MemtestPattern,
  type MemtestResult,
  pcieBandwidth,
  randomWord,
  readPcieLink,
} from "../mm/memtest.ts";
import { main, parsePatterns, parseRange } from "../memtest.ts";
import { bootedGa102Bar0, ga102, makeFakeSysfs } from "./fake_sysfs.ts";
import { writeU32 } from "./util.ts";

const MiB = 2 ** 20;
const CHIPS = ["sim:ga102", "sim:gh100"];
/** A free range in every profile's usable region, below physical BAR1's reach. */
const BASE = 0x1000000;

async function run(
  gpu: Gpu,
  patterns: MemtestPattern[],
  size = 4 * MiB,
  extra: Record<string, unknown> = {},
): Promise<MemtestResult> {
  return await memtest(gpu, { start: BASE, size }, { patterns, ...extra });
}

function addresses(r: MemtestResult): number[] {
  return [...new Set(r.errors.map((e) => e.address))];
}

for (const device of CHIPS) {
  Deno.test(`memtest ${device}: a healthy card reports no error under any pattern`, async () => {
    using gpu = await openGpu({ device });
    const before = gpu.mm.buddy.stats();
    const r = await run(gpu, [...MEMTEST_PATTERNS], 2 * MiB);
    assert.equal(r.errorCount, 0, formatMemtestReport(r).join("\n"));
    assert.deepEqual(r.patterns, [...MEMTEST_PATTERNS]);
    assert.equal(r.interrupted, false);
    assert.match(r.path, /^BAR1 physical \(uncached\) -> PRAMIN read-back$/);
    assert.match(r.summary, /^memtest PASS: VRAM 0x1000000 \+2 MiB, 8 patterns, 0 errors, /);
    assert.deepEqual(gpu.mm.buddy.stats(), before, "the range was allocated for the run and freed");
  });

  Deno.test(`memtest ${device}: stuck-at-0 and stuck-at-1 bits are found at their address and bit`, async () => {
    using gpu = await openGpu({ device });
    const stuck0 = BASE + 0x123454; // bit 5 reads 0
    const stuck1 = BASE + 0x2fff8; // bit 30 reads 1
    gpu.sim!.knobs.stuckBits = [
      { addr: stuck0, mask: 1 << 5, value: 0 },
      { addr: stuck1, mask: 1 << 30, value: 1 << 30 },
    ];
    const s0 = await run(gpu, ["solid0"], 2 * MiB);
    assert.deepEqual(addresses(s0), [stuck1], "solid0 finds the bit stuck at 1 only");
    assert.deepEqual(s0.errors[0], {
      address: stuck1,
      expected: 0,
      found: 0x40000000,
      xor: 0x40000000,
      pattern: "solid0",
    });
    const s1 = await run(gpu, ["solid1"], 2 * MiB);
    assert.deepEqual(addresses(s1), [stuck0], "solid1 finds the bit stuck at 0 only");
    assert.equal(s1.errors[0].xor, 1 << 5);
    assert.equal(s1.errors[0].found, 0xffffffdf);
    const w1 = await run(gpu, ["walking1"], 2 * MiB);
    // Walking ones: the stuck-at-0 bit fails once (pass 5); the stuck-at-1 bit in the 31 other passes.
    assert.deepEqual(
      w1.errors.filter((e) => e.address === stuck0).map((e) => [e.expected, e.xor]),
      [[1 << 5, 1 << 5]],
    );
    assert.equal(w1.errors.filter((e) => e.address === stuck1).length, 31);
    assert.ok(w1.errors.every((e) => e.xor === 1 << 5 || e.xor === 1 << 30));
    assert.equal(w1.bitLanes[5], 1);
    assert.equal(w1.bitLanes[30], 31);
    assert.deepEqual(w1.regions, [
      { start: BASE, errors: 31, bits: 1 << 30 },
      { start: BASE + MiB, errors: 1, bits: 1 << 5 },
    ]);
    for (const p of ["checkerboard", "walking0", "inversions", "random"] as const) {
      const r = await run(gpu, [p], 2 * MiB);
      assert.deepEqual(addresses(r).sort((a, b) => a - b), [stuck1, stuck0], `${p} finds both`);
      assert.ok(r.errors.every((e) => e.xor === 1 << 5 || e.xor === 1 << 30), p);
    }
    const addr = await run(gpu, ["address"], 2 * MiB);
    assert.ok(addr.errors.every((e) => e.xor === 1 << 5 || e.xor === 1 << 30));
    gpu.sim!.knobs.stuckBits = [];
    assert.equal((await run(gpu, ["solid0", "solid1"])).errorCount, 0, "healthy again");
  });

  Deno.test(`memtest ${device}: a dead region reads its pattern everywhere; writes are dropped`, async () => {
    using gpu = await openGpu({ device });
    const dead = BASE + 3 * MiB + 0x1000;
    gpu.sim!.knobs.deadRegion = { start: dead, size: 0x40, pattern: 0x12345678 };
    const r = await run(gpu, ["solid0", "solid1"]);
    const words = Array.from({ length: 16 }, (_, i) => dead + i * 4);
    assert.deepEqual(addresses(r), words);
    assert.equal(r.errorCount, 32, "every word, in both passes");
    assert.ok(r.errors.every((e) => e.found === 0x12345678));
    assert.deepEqual(r.regions, [{ start: BASE + 3 * MiB, errors: 32, bits: 0xffffffff }]);
    // Bounded: a dead MiB stops at maxErrors.
    gpu.sim!.knobs.deadRegion = { start: BASE, size: MiB };
    const capped = await run(gpu, ["solid0"], 4 * MiB, { maxErrors: 10 });
    assert.equal(capped.errorCount, 10);
    assert.equal(capped.stoppedAfterMaxErrors, true);
    assert.deepEqual(addresses(capped), Array.from({ length: 10 }, (_, i) => BASE + i * 4));
    assert.match(capped.summary, /FAIL.*10\+ errors.*stopped after max errors/);
  });

  Deno.test(`memtest ${device}: address aliasing is found by the address pattern only`, async () => {
    using gpu = await openGpu({ device });
    // Two cells decode to one, within a chunk and across chunks (chunks of 1 MiB here).
    const a = BASE + 0x10000;
    const near = BASE + 0x10400;
    const b = BASE + 0x200100;
    const far = BASE + 0x3ff000;
    gpu.sim!.knobs.aliases = [{ addr: a, alias: near }, { addr: b, alias: far, size: 8 }];
    for (const p of ["solid0", "solid1", "checkerboard", "walking1"] as const) {
      const r = await run(gpu, [p], 4 * MiB, { chunkSize: MiB });
      assert.equal(r.errorCount, 0, `${p} cannot see aliasing`);
    }
    const r = await run(gpu, ["address"], 4 * MiB, { chunkSize: MiB });
    // Written in ascending order: the alias's pattern lands in the lower cell, reported there.
    assert.deepEqual(addresses(r), [a, b, b + 4]);
    assert.equal(r.errorCount, 6, "three words, in the pass and its inverse");
    const first = r.errors[0];
    assert.equal(first.expected, addressWord(a));
    assert.equal(first.found, addressWord(near));
    assert.equal(first.xor, (addressWord(a) ^ addressWord(near)) >>> 0);
    assert.equal(first.holdsPatternOf, near, "the report names the alias");
    assert.equal(r.errors.find((e) => e.address === b + 4)!.holdsPatternOf, far + 4);
    assert.ok(
      formatMemtestReport(r).some((l) =>
        l.includes(`holds the address pattern of 0x${near.toString(16)}`)
      ),
    );
  });
}

Deno.test("memtest: 1 GiB completes with progress (one pattern, PRAMIN), and everything is freed", async () => {
  using gpu = await openGpu({ device: "sim:gh100" });
  const before = gpu.mm.buddy.stats();
  const seen: number[] = [];
  let total = 0;
  const r = await memtest(gpu, { start: 0x40000000, size: 2 ** 30 }, {
    patterns: ["solid1"],
    path: "pramin",
    chunkSize: 256 * MiB,
    onProgress: (p) => {
      seen.push(p.done);
      total = p.total;
      assert.ok(p.bytesPerSecond >= 0 && p.elapsedMs >= 0);
    },
  });
  assert.equal(r.errorCount, 0);
  assert.equal(r.bytes, 2 ** 30);
  assert.equal(r.path, "PRAMIN");
  assert.equal(total, 2 * 2 ** 30, "write + read of 1 GiB");
  assert.equal(seen.at(-1), total);
  assert.equal(seen.length, 2 * 1024, "one report per 1 MiB block");
  assert.equal(r.bytesMoved, total);
  assert.deepEqual(gpu.mm.buddy.stats(), before);
});

Deno.test("memtest: Ctrl-C (the interrupt word) stops it with everything unmapped and freed", async () => {
  using gpu = await openGpu({ device: "sim:ga102" });
  gpu.bar1.bringUp(); // BAR1's own tables first, so the baseline includes them
  const before = gpu.mm.buddy.stats();
  const word = new Int32Array(new SharedArrayBuffer(4));
  setInterruptWord(word);
  try {
    let blocks = 0;
    // Above physical BAR1's 256 MiB: each chunk is mapped through BAR1 while tested.
    const r = await memtest(gpu, { start: 0x20000000, size: 64 * MiB }, {
      patterns: ["solid0", "solid1"],
      chunkSize: 16 * MiB,
      onProgress: () => {
        if (++blocks === 20) Atomics.store(word, 0, 1); // mid-chunk, mid-pattern
      },
    });
    assert.equal(r.interrupted, true);
    assert.match(r.summary, /^memtest INTERRUPTED: .*interrupted \(solid0\)/);
    assert.match(r.path, /^BAR1 mapping/);
    assert.ok(blocks >= 20 && blocks < 40, `stopped soon after (${blocks} blocks)`);
    assert.deepEqual(gpu.mm.buddy.stats(), before, "buddy back to where it started");
    assert.deepEqual(gpu.bar1.vmm.mappings(), [], "no BAR1 mapping left");
    assert.equal(gpu.pramin.busy, false, "the PRAMIN window was released");
    assert.equal(Atomics.load(word, 0), 0, "the interrupt was consumed");
    // And the GPU is fine afterwards.
    const again = await memtest(gpu, { start: 0x20000000, size: 16 * MiB }, {
      patterns: ["solid1"],
    });
    assert.equal(again.errorCount, 0);
  } finally {
    setInterruptWord(null);
  }
});

Deno.test("memtest: an AbortSignal stops it; all free VRAM is tested in chunks and given back", async () => {
  using gpu = await openGpu({ device: "sim:ga102" });
  gpu.bar1.bringUp(); // BAR1's own tables first (memtest "all" would bring it up itself)
  // Leave 48 MiB free (in two pieces) so "all" stays small.
  const buddy = gpu.mm.buddy;
  const hold = (start: number, end: number) => {
    const free = buddy.freeBlocks({ range: { start, end } }).reduce(
      (n, b) => n + Math.min(b.start + b.size, end) - Math.max(b.start, start),
      0,
    );
    return buddy.alloc(free, { contiguous: false, range: { start, end } });
  };
  const held = [
    hold(buddy.start, 0x7800000),
    hold(0x8000000, 0x10000000),
    hold(0x10000000 + 40 * MiB, buddy.end),
  ];
  const before = gpu.mm.buddy.stats();
  assert.equal(before.free, 48 * MiB);
  const r = await memtest(gpu, "all", { patterns: ["address"], chunkSize: 16 * MiB });
  assert.equal(r.errorCount, 0);
  // Chunks above physical BAR1's reach are mapped: 1 MiB stays free for their page tables.
  assert.equal(r.bytes, 47 * MiB);
  assert.deepEqual(r.extents, [
    { start: 0x8000000 - 8 * MiB, size: 8 * MiB },
    { start: 0x10000000, size: 39 * MiB },
  ]);
  assert.match(r.target, /^all free usable VRAM \(47 MiB\)$/);
  assert.match(r.notes[0], /^1 MiB at 0x12700000 left free for BAR1's page tables/);
  assert.match(r.path, /^BAR1 mapping \(uncached\) -> PRAMIN read-back$/);
  assert.deepEqual(gpu.mm.buddy.stats(), before);
  const abort = new AbortController();
  let n = 0;
  const stopped = await memtest(gpu, "all", {
    patterns: ["solid0"],
    signal: abort.signal,
    onProgress: () => {
      if (++n === 5) abort.abort();
    },
  });
  assert.equal(stopped.interrupted, true);
  assert.equal(n, 5, "stopped before the next block");
  assert.deepEqual(gpu.mm.buddy.stats(), before);
  for (const a of held) a.free();
});

Deno.test("memtest: bad input is refused before any MMIO or allocation", async () => {
  using gpu = await openGpu({ device: "sim:ga102" });
  const a = gpu.mm.buddy.alloc(2 * MiB);
  const buddy = gpu.mm.buddy.stats();
  gpu.resetStats();
  const bad: [unknown, unknown, RegExp][] = [
    [
      { start: BASE, size: MiB },
      { pattern: ["solid0"] },
      /EINVAL: unknown key "pattern" in memtest options; known: patterns, seed/,
    ],
    [{ start: BASE, size: MiB }, { patterns: ["solid2"] }, /EINVAL: .*unknown pattern "solid2"/],
    [{ start: BASE, size: MiB }, { patterns: [] }, /EINVAL: .*non-empty array/],
    [{ start: BASE, size: MiB }, { seed: -1 }, /EINVAL: memtest options.seed -1/],
    [{ start: BASE, size: MiB }, { chunkSize: 3 * MiB }, /EINVAL: .*chunkSize 0x300000/],
    [{ start: BASE, size: MiB }, { maxErrors: 0 }, /EINVAL: .*maxErrors 0x0 must be at least 1/],
    [
      { start: BASE, size: MiB },
      { path: "pcie" },
      /EINVAL: .*path "pcie" is not one of auto, bar1, pramin/,
    ],
    [{ start: BASE, size: MiB }, { readBack: "cache" }, /EINVAL: .*readBack/],
    [{ start: BASE, size: MiB }, { signal: 1 }, /EINVAL: .*AbortSignal/],
    [{ start: BASE, size: MiB }, "fast", /EINVAL: memtest options must be an object/],
    [{ start: BASE + 4, size: MiB }, {}, /EINVAL: .*4 KiB aligned/],
    [
      { start: BASE, size: "1M" },
      {},
      /EINVAL: memtest target range.size must be a number, not "1M"/,
    ],
    [{ start: BASE, size: MiB, end: 5 }, {}, /EINVAL: unknown key "end" in memtest target range/],
    [{ start: 2 ** 40, size: MiB }, {}, /EINVAL: .*past the end of VRAM/],
    ["everything", {}, /EINVAL: memtest target "everything"/],
    [{ start: a.start, size: MiB }, {}, /EBUSY: .*is in use \(Allocation/],
    [{ start: 0, size: 0x1000 }, {}, /EPERM: memtest of VRAM 0x0/],
  ];
  for (const [target, options, re] of bad) {
    await assert.rejects(memtest(gpu, target as never, options as never), re);
  }
  await assert.rejects(memtest(null as never, "all"), /EINVAL: memtest takes a Gpu/);
  assert.deepEqual(gpu.stats(), { mmioReads: 0, mmioWrites: 0, windowMoves: 0 }, "no MMIO");
  assert.deepEqual(gpu.mm.buddy.stats(), buddy, "no allocation");
  a.free();
  const freed = gpu.mm.buddy.alloc(MiB);
  freed.free();
  await assert.rejects(memtest(gpu, freed), /EINVAL: memtest target .* has been freed/);
});

Deno.test("memtest: an allocation is tested in place; a forced range overwrites what is there", async () => {
  using gpu = await openGpu({ device: "sim:gh100" });
  const a = gpu.mm.buddy.alloc(3 * MiB, { contiguous: false, align: MiB });
  const r = await memtest(gpu, a, { patterns: ["random", "address"], seed: 7 });
  assert.equal(r.errorCount, 0);
  assert.equal(r.bytes, 3 * MiB);
  assert.equal(r.seed, 7);
  assert.ok(a.live, "the caller's allocation stays");
  const forced = await memtest(gpu, { start: a.start, size: MiB }, {
    patterns: ["solid0"],
    force: true,
  });
  assert.equal(forced.errorCount, 0);
  // Through GpuMm too (PRAMIN only unless the Gpu hands itself over as memtestHost).
  const viaMm = await gpu.mm.memtest(a, { patterns: ["solid1"] });
  assert.equal(viaMm.errorCount, 0);
  a.free();
});

Deno.test("memtest: read-only sessions are refused; BAR1 refused falls back to PRAMIN with a note", async () => {
  {
    using ro = await openGpu({ device: "sim:ga102", readOnly: true });
    await assert.rejects(memtest(ro, { start: BASE, size: MiB }), /EPERM: memtest writes VRAM/);
  }
  {
    // The boot VGA device: bar1.map() would take the console's physical BAR1 away.
    using gpu = await openGpu({ device: "sim:ga102:vga" });
    const r = await memtest(gpu, { start: 0x20000000, size: 2 * MiB }, { patterns: ["solid0"] });
    assert.equal(r.errorCount, 0);
    assert.equal(r.path, "PRAMIN");
    assert.match(r.notes[0], /BAR1 not used \(EPERM: BAR1 is physical on the boot VGA device/);
    await assert.rejects(
      memtest(gpu, { start: 0x20000000, size: 2 * MiB }, { path: "bar1" }),
      /EPERM: BAR1 is physical on the boot VGA device/,
    );
    assert.equal(gpu.bar1.mode, "physical", "left as found");
  }
  {
    // GB10x: BAR1 stays physical (no CPU-side FB flush).
    using gpu = await openGpu({ device: "sim:gb100" });
    const reach = gpu.bar1.physical.reach;
    const start = Math.min(reach, gpu.vram.usable.end - 4 * MiB);
    const r = await memtest(gpu, { start: start - (start % MiB), size: 2 * MiB }, {
      patterns: ["solid1"],
    });
    assert.equal(r.errorCount, 0);
  }
});

Deno.test("memtest: PCIe link bandwidth from sysfs strings", () => {
  const gb = (s: string, w: string) => pcieBandwidth(s, w)! / 1e9;
  assert.equal(gb("2.5 GT/s PCIe", "1"), 0.25);
  assert.equal(gb("5.0 GT/s PCIe", "16"), 8);
  assert.ok(Math.abs(gb("8.0 GT/s PCIe", "16") - 15.754) < 0.001);
  assert.ok(Math.abs(gb("16.0 GT/s PCIe", "16") - 31.508) < 0.001);
  assert.ok(Math.abs(gb("32.0 GT/s PCIe", "16") - 63.015) < 0.001);
  assert.ok(Math.abs(gb("64.0 GT/s PCIe", "16") - 121) < 0.001);
  assert.ok(Math.abs(gb("8 GT/s", "x8") - 7.877) < 0.001, "older kernels: no decimals, no PCIe");
  assert.equal(pcieBandwidth("Unknown", "16"), null);
  assert.equal(pcieBandwidth("16.0 GT/s PCIe", "0"), null);
  assert.throws(() => pcieBandwidth(16 as never, "16"), /EINVAL/);
});

Deno.test("memtest: on a fake card with resource1_wc the write-combining path is chosen; link read from sysfs", async () => {
  for (const wc of [true, false]) {
    const dir = await Deno.makeTempDir();
    const fn = { ...ga102("0000:65:00.0"), wc, link: { speed: "16.0 GT/s PCIe", width: "16" } };
    fn.bars[0].fileSize = 0x1000000;
    const root = makeFakeSysfs(dir, [fn]);
    bootedGa102Bar0(`${root}/0000:65:00.0/resource0`, writeU32);
    {
      using gpu = await openGpu({ device: "0000:65:00.0", sysfsRoot: root, lockDir: dir });
      assert.equal(gpu.device.bar1.hasBlockCopies, wc);
      const link = readPcieLink(gpu.device.pci!.path)!;
      assert.deepEqual(
        { speed: link.speed, width: link.width },
        { speed: "16.0 GT/s PCIe", width: "16" },
      );
      assert.ok(Math.abs(link.bytesPerSecond! - 31.5e9) < 0.01e9);
      // The fake BAR1 file (320 KiB) is all physical BAR1 reaches; PRAMIN is another file
      // here, so read back through BAR1.
      const r = await memtest(gpu, { start: 0x40000, size: 0x10000 }, {
        patterns: ["solid0", "address", "random"],
        readBack: "bar1",
      });
      assert.equal(r.errorCount, 0, formatMemtestReport(r).join("\n"));
      assert.equal(
        r.path,
        `BAR1 physical (${wc ? "write-combining" : "uncached"}) -> BAR1 read-back`,
      );
      const file = new DataView(Deno.readFileSync(`${root}/0000:65:00.0/resource1`).buffer);
      assert.equal(
        file.getUint32(0x40010, true),
        (~randomWord(1, 0x40010)) >>> 0,
        "the last pass (inverse random) is in the BAR",
      );
    }
    assert.equal(readPcieLink(`${dir}/nothing`), null);
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("memtest CLI: flags parse; a run prints the path and the summary; --json", async () => {
  assert.deepEqual(parseRange("0x1000000+64M"), { start: 0x1000000, size: 64 * MiB });
  assert.deepEqual(parseRange("0x1000000:0x2000000"), { start: 0x1000000, size: 0x1000000 });
  assert.throws(() => parseRange("0x1000000"), /EINVAL: --range "0x1000000" is not START\+SIZE/);
  assert.throws(() => parseRange("0x2000:0x1000"), /the end is not above the start/);
  assert.deepEqual(parsePatterns("quick"), ["solid0", "solid1", "address"]);
  assert.equal(parsePatterns("all").length, 8);
  assert.throws(() => parsePatterns("solid0,bogus"), /unknown pattern "bogus"/);
  const out: string[] = [];
  const log = console.log;
  const err = console.error;
  console.log = (...a: unknown[]) => void out.push(...a.join(" ").split("\n"));
  console.error = (...a: unknown[]) => void out.push(...a.join(" ").split("\n"));
  try {
    assert.equal(await main(["--range", "0x1000000+2M", "-p", "solid0,address"]), 0);
    assert.ok(out.some((l) => l.startsWith("path: BAR1 physical (uncached) -> PRAMIN read-back")));
    assert.match(out.at(-1)!, /^memtest PASS: VRAM 0x1000000 \+2 MiB, 2 patterns, 0 errors/);
    out.length = 0;
    assert.equal(
      await main(["-d", "sim:gh100", "-r", "0x1000000+1M", "-p", "solid1", "--json"]),
      0,
    );
    const json = JSON.parse(out.join("\n"));
    assert.equal(json.device, "sim:gh100");
    assert.equal(json.errorCount, 0);
    out.length = 0;
    assert.equal(await main(["--range", "0x1000000+2M", "--max-errors", "x"]), 1);
    assert.match(out.join("\n"), /error: EINVAL: --max-errors "x"/);
  } finally {
    console.log = log;
    console.error = err;
  }
});
