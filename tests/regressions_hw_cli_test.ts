// Review of the hardware layer, the simulator and the command line: each test
// pins one defect found in review (all fixed) so it stays fixed.
import assert from "node:assert/strict";
import { NovaError } from "../hw/errors.ts";
import { Mmio } from "../hw/mmio.ts";
import { isPriError } from "../hw/regs.ts";
import { openDevice } from "../hw/device.ts";
import { openBarMmio } from "../hw/mapped.ts";
import { checkDriver, findGpu, type PciFunction } from "../hw/pci.ts";
import { createSimGpu, type SimGpu } from "../hw/sim/gpu.ts";
import {
  bootedGa102Bar0,
  FLAGS_MEM32,
  FLAGS_MEM64_PREF,
  ga102,
  makeFakeSysfs,
} from "./fake_sysfs.ts";
import { ROOT, runDeno, writeU32 } from "./util.ts";

const BAR1_BLOCK = 0x1704;
const INVALIDATE_PDB = 0xb830a0;
const INVALIDATE_UPPER_PDB = 0xb830a4;
const INVALIDATE = 0xb830b0;

/** A fake GA102 whose whole 16 MiB BAR0 is a (sparse) file; BOOT registers set. */
function fakeCard(dir: string, fbSizeMiB: number): string {
  const fn = ga102("0000:65:00.0");
  fn.bars[0].fileSize = 0x1000000;
  const root = makeFakeSysfs(dir, [fn]);
  const bar0 = `${root}/0000:65:00.0/resource0`;
  bootedGa102Bar0(bar0, writeU32, { fbSizeMiB });
  return root;
}

function readFileU32(path: string, offset: number): number {
  using f = Deno.openSync(path, { read: true });
  f.seekSync(offset, Deno.SeekMode.Start);
  const b = new Uint8Array(4);
  f.readSync(b);
  return new DataView(b.buffer).getUint32(0, true);
}

/** A fake card with a sparse 8 GiB BAR1 file (no disk is spent on the holes). */
function bigBar1(dir: string): { root: string; file: string } {
  const root = makeFakeSysfs(dir, [{
    bdf: "0000:01:00.0",
    vendor: 0x10de,
    device: 0x2330,
    class: 0x030200,
    bars: [
      { index: 0, start: 0xfb000000n, size: 0x1000000n, flags: FLAGS_MEM32, fileSize: 0x1000 },
      {
        index: 1,
        start: 0x7000000000n,
        size: 0x200000000n,
        flags: FLAGS_MEM64_PREF,
        fileSize: 0x200000000,
      },
    ],
  }]);
  return { root, file: `${root}/0000:01:00.0/resource1` };
}

// ---------------------------------------------------------------- hw layer --

Deno.test("regression: isPriError never matches a 0xBADFxxxx value (signed & vs unsigned compare)", () => {
  // Expected: 0xBADF1100 (the simulator's PRI_ERROR) and any 0xBADFxxxx read is a PRI error.
  assert.equal(isPriError(0xbadf1100), true);
  assert.equal(isPriError(0xbadf0000), true);
  assert.equal(isPriError(0x172a1000), false);
});

Deno.test("regression: a PRI-error FB-size register opens a card with petabytes of VRAM", async () => {
  // Expected: openDevice refuses (EIO) and names NV_USABLE_FB_SIZE_IN_MB and the 0xbadf value.
  const dir = await Deno.makeTempDir();
  try {
    const root = fakeCard(dir, 0xbadf1100);
    let caught: unknown;
    try {
      openDevice({ device: "65:00.0", sysfsRoot: root, lockDir: dir }).close();
    } catch (e) {
      caught = e;
    }
    assert.ok(caught instanceof NovaError, "a 0xbadf1100 VRAM size was accepted");
    assert.match(caught.message, /NV_USABLE_FB_SIZE_IN_MB/);
    assert.match(caught.message, /0xbadf1100/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("regression: a VRAM-size register reading 0 opens a 0-byte card", async () => {
  // Expected: a zero FB size (firmware has not reported it) fails at open, naming the register.
  const dir = await Deno.makeTempDir();
  try {
    const root = fakeCard(dir, 0);
    let caught: unknown;
    try {
      openDevice({ device: "65:00.0", sysfsRoot: root, lockDir: dir }).close();
    } catch (e) {
      caught = e;
    }
    assert.ok(caught instanceof NovaError, "a card with 0 bytes of VRAM was opened");
    assert.match(caught.message, /NV_USABLE_FB_SIZE_IN_MB/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("regression: MappedBar wraps BAR offsets at 4 GiB (offset >>> 2), writing the wrong place", async () => {
  // Expected: a 32-bit write at BAR1 offset 4 GiB + 0x10 lands there, not at offset 0x10.
  const dir = await Deno.makeTempDir();
  try {
    const { root, file } = bigBar1(dir);
    const bar1 = openBarMmio(findGpu("01:00.0", { sysfsRoot: root }), 1);
    try {
      bar1.write32(0x1_0000_0010, 0xcafef00d);
    } finally {
      bar1.close();
    }
    assert.equal(readFileU32(file, 0x10), 0, "offset 0x10 was clobbered");
    assert.equal(readFileU32(file, 0x1_0000_0010), 0xcafef00d);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("regression: MappedBar's 16-bit view is empty on an 8 GiB BAR (length >>> 1 wraps)", async () => {
  // Expected: read16 at a low, in-bounds offset of a big BAR returns the data (no RangeError).
  const dir = await Deno.makeTempDir();
  try {
    const { root, file } = bigBar1(dir);
    writeU32(file, 0x10, 0x1234abcd);
    const bar1 = openBarMmio(findGpu("01:00.0", { sysfsRoot: root }), 1);
    try {
      assert.equal(bar1.read16(0x10), 0xabcd);
    } finally {
      bar1.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("regression: a card bound to nova-core (sysfs driver name NovaCore) is not refused", () => {
  // Expected: EBUSY. nova-core registers its PCI driver as "NovaCore" (module_pci_driver! name
  // in drivers/gpu/nova-core/nova_core.rs), which is the basename of the `driver` link.
  const fn: PciFunction = {
    bdf: "0000:65:00.0",
    path: "/sys/bus/pci/devices/0000:65:00.0",
    vendor: 0x10de,
    device: 0x2204,
    class: 0x030000,
    driver: "NovaCore",
    bars: [],
    bootVga: false,
    wc: [],
    subsystemVendor: null,
    subsystemDevice: null,
  };
  let caught: unknown;
  try {
    checkDriver(fn);
  } catch (e) {
    caught = e;
  }
  assert.ok(caught instanceof NovaError && caught.code === "EBUSY", "NovaCore-bound card accepted");
});

Deno.test("regression: a card with memory decoding off fails with no word about the enable file", async () => {
  // Expected: all-ones BOOT reads on a card whose sysfs `enable` is 0 are either fixed by
  // enabling it (pci.ts enableDevice, never called) or the error/hint says to enable it.
  const dir = await Deno.makeTempDir();
  try {
    const fn = ga102("0000:b3:00.0");
    fn.bars[0].fileSize = 0x1000000;
    const root = makeFakeSysfs(dir, [fn]); // `enable` is "0"
    const bar0 = `${root}/0000:b3:00.0/resource0`;
    writeU32(bar0, 0x0, 0xffffffff);
    writeU32(bar0, 0xa00, 0xffffffff);
    let caught: unknown;
    try {
      openDevice({ device: "b3:00.0", sysfsRoot: root, lockDir: dir }).close();
    } catch (e) {
      caught = e;
    }
    assert.ok(caught instanceof NovaError);
    assert.match(`${caught.message} ${caught.hint ?? ""}`, /enable/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("regression: raw BAR0 pokes of the window register are not counted as window moves", () => {
  // Expected: MmioCounters.windowMoves counts every write that changes the window base,
  // in the shared Mmio layer (issue 2), also a REPL user's `bar0.write32(0x1700, ...)`.
  const dev = openDevice({ device: "sim" });
  try {
    const before = dev.counters.windowMoves;
    dev.bar0.write32(0x1700, 0x20);
    dev.bar0.write32(0x1700, 0x30);
    assert.equal(dev.counters.windowMoves - before, 2);
  } finally {
    dev.close();
  }
});

// --------------------------------------------------------------- simulator --

interface SimBars {
  sim: SimGpu;
  bar0: Mmio;
  bar1: Mmio;
}

function simBars(): SimBars {
  const sim = createSimGpu({ profile: "ga102", state: "gsp" });
  return { sim, bar0: new Mmio("bar0", sim.bar0), bar1: new Mmio("bar1", sim.bar1) };
}

/** v2 tables of the firmware for VA 0: PD0 slot address and the small PT address. */
function v2Path(sim: SimGpu): { pd0: number; smallPt: number } {
  const vram = sim.vram;
  let table = sim.firmware!.bar1Pdb;
  for (let level = 0; level < 3; level++) {
    table = ((vram.read32(table) >>> 8) + (vram.read32(table + 4) & 1) * 2 ** 24) * 4096;
  }
  const hi = vram.read32(table + 8);
  const smallPt = ((hi >>> 8) + (vram.read32(table + 12) & 1) * 2 ** 24) * 4096;
  return { pd0: table, smallPt };
}

function flush(bar0: Mmio, pdbWord: number, upper: number, control: number): void {
  bar0.write32(INVALIDATE_PDB, pdbWord);
  bar0.write32(INVALIDATE_UPPER_PDB, upper);
  bar0.write32(INVALIDATE, control);
  for (let i = 0; i < 16 && (bar0.read32(INVALIDATE) >>> 31) === 1; i++) {
    // poll until TRIGGER clears
  }
}

/** Caches VA `page` × 4 KiB, then points its PTE at firmware page 3 (pattern +3), no flush. */
function stalePage(page: number): SimBars & { pdb: number; va: number } {
  const s = simBars();
  const pdb = s.sim.firmware!.bar1Pdb;
  const va = page * 0x1000;
  assert.equal(s.bar1.read32(va), 0xf1a50000 + page);
  const { smallPt } = v2Path(s.sim);
  s.sim.vram.write64(smallPt + page * 8, s.sim.vram.read64(smallPt + 3 * 8));
  assert.equal(s.bar1.read32(va), 0xf1a50000 + page, "stale until flushed");
  return { ...s, pdb, va };
}

Deno.test("regression: sim keeps translating BAR1 through the boot PDB after BAR1_BLOCK is rewritten", () => {
  // Expected: writing NV_PBUS_BAR1_BLOCK rebinds BAR1 (the comment says the binding is latched
  // on that write); BAR1 VA 0 then follows the new instance block's tables.
  const { sim, bar0, bar1 } = simBars();
  const vram = sim.vram;
  const inst = 0x100000;
  const root = 0x101000;
  const page = 0x106000;
  // Instance block, written whole (unscrubbed VRAM is not zero): PDB word = TARGET 0 | VER2 |
  // 64 KiB big pages | root address.
  for (let a = inst; a < page; a += 4) vram.write32(a, 0); // the block and every table

  vram.write32(inst + 0x200, root | (1 << 10) | (1 << 11));
  vram.write32(inst + 0x204, 0);
  vram.write32(inst + 0x208, 0x0fffffff); // ADR_LIMIT: 256 MiB of VA, low 12 bits all ones
  vram.write32(inst + 0x20c, 0);
  // PD3 -> PD2 -> PD1 -> PD0 (small half) -> PT -> page, v2 encodings (facts §5.1-5.3).
  for (let t = root; t < 0x104000; t += 0x1000) {
    vram.write64(t, (BigInt((t + 0x1000) / 4096) << 8n) | 2n);
  }
  vram.write64(0x104000 + 8, (BigInt(0x105000 / 4096) << 8n) | 2n);
  vram.write64(0x105000, (BigInt(page / 4096) << 8n) | 1n);
  vram.write32(page, 0x5a5a5a5a);
  bar0.write32(BAR1_BLOCK, 0x80000000 | (inst / 4096)); // MODE virtual, TARGET vid
  assert.equal(sim.bar1Pdb(), root);
  assert.equal(bar1.read32(0), 0x5a5a5a5a, "BAR1 still walks the firmware's tables");
});

Deno.test("regression: sim TLB flush naming a SYS_MEM PDB drops the VRAM PDB's translations", () => {
  // Expected: INVALIDATE_PDB APERTURE=1 (SYS_MEM) names a sysmem directory; the VRAM PDB at
  // the same number stays cached (stale) until a video-memory flush names it.
  const { sim, bar0, bar1, pdb, va } = stalePage(0);
  flush(bar0, ((pdb / 4096) * 16) | 2, 0, 0x80000001);
  assert.equal(bar1.read32(va), 0xf1a50000, "a sysmem-PDB flush invalidated a VRAM PDB");
  flush(bar0, (pdb / 4096) * 16, 0, 0x80000001);
  assert.equal(bar1.read32(va), 0xf1a50003);
  assert.equal(sim.flushes.length, 2);
});

Deno.test("regression: sim TLB flush without ALL_VA (a targeted VA flush) silently drops everything", () => {
  // Expected: with ALL_VA=0 the hardware invalidates only the VA in the (unsimulated) VADDR
  // registers; the simulator should log it as an error or leave unrelated VAs stale.
  // VA 0x2000, not 0: an unprogrammed VADDR register would name VA 0.
  const { sim, bar0, bar1, pdb, va } = stalePage(2);
  flush(bar0, (pdb / 4096) * 16, 0, 0x80000000);
  const stale = bar1.read32(va) === 0xf1a50002;
  assert.ok(stale || sim.errors().length > 0, "ALL_VA=0 flushed the whole PDB, nothing logged");
});

Deno.test("regression: sim TLB caches only leaf translations: a changed valid PD0 entry needs no flush", () => {
  // Expected: like silicon's PDE caches (CACHE_LEVEL exists for them), a walk caches the
  // directory entries it used; repointing PD0 is not seen until a flush names the PDB.
  const { sim, bar0, bar1 } = simBars();
  const vram = sim.vram;
  const pdb = sim.firmware!.bar1Pdb;
  const { pd0, smallPt } = v2Path(sim);
  assert.equal(bar1.read32(0), 0xf1a50000); // walks PD3..PD0 for VA 0
  const copy = 0x200000; // a new small PT: VA 0x1000 -> firmware page 3
  for (let i = 0; i < 4; i++) vram.write64(copy + i * 8, vram.read64(smallPt + i * 8));
  vram.write64(copy + 8, vram.read64(smallPt + 3 * 8));
  vram.write64(pd0 + 8, (BigInt(copy / 4096) << 8n) | 2n);
  assert.equal(bar1.read32(0x1000), 0xf1a50001, "the new PD0 entry was used without a flush");
  flush(bar0, (pdb / 4096) * 16, 0, 0x80000001);
  assert.equal(bar1.read32(0x1000), 0xf1a50003);
});

// ------------------------------------------------------------ command line --

Deno.test("regression: the REPL dies on an unhandled promise rejection (GPU never closed)", async () => {
  // Expected: like Deno's and Node's REPLs, an un-awaited rejection is reported and the
  // session goes on; it must not kill the process with a stack trace.
  const r = await runDeno("repl.ts", [], {
    input: 'Promise.reject(new Error("lost")); 1\n' +
      "await new Promise((r) => setTimeout(r, 50))\n" +
      '"alive"\n',
  });
  assert.match(r.stdout, /"alive"/, r.stderr);
  assert.equal(r.code, 0, r.stderr);
});

Deno.test("regression: --eval exits 0 and says nothing when a promise rejects unhandled", async () => {
  // Expected: an error in --eval, also an un-awaited rejection, exits 1 with a one-line message.
  const r = await runDeno("repl.ts", ["--eval", 'Promise.reject(new Error("lost")); 1']);
  assert.equal(r.code, 1, r.stdout);
  assert.match(r.stderr, /lost/);
});

Deno.test("regression: selftest --read-only fails: the firmware test moves the PRAMIN window", async () => {
  // Expected: a read-only self-test run passes or skips every test (exit 0), never FAILs on EPERM.
  const r = await runDeno("selftest.ts", ["--read-only"]);
  assert.doesNotMatch(r.stdout, /FAIL/);
  assert.equal(r.code, 0, r.stdout);
});

Deno.test("regression: examples reject --help although the error's hint says to run --help", async () => {
  // Expected: every example (a command users run) prints its usage for --help and exits 0.
  for (const e of ["fill_verify", "dump_bar1_tables", "pramin_throughput"]) {
    const r = await runDeno("repl.ts", [`examples/${e}.ts`, "--help"]);
    assert.equal(r.code, 0, `${e}: ${r.stderr}`);
    assert.match(r.stdout, /usage|options/i, e);
  }
});

Deno.test("regression: a read-only VRAM read outside the window says 'refused write ... to write'", async () => {
  // Expected: the error explains that reading there needs a PRAMIN window move (a register
  // write), not a bare write refusal whose hint is "reopen without --read-only to write".
  const r = await runDeno("repl.ts", ["--read-only", "--eval", "hexdump(0x5f0001000, 16)"]);
  if (r.code !== 0) {
    assert.match(r.stderr, /window|PRAMIN/i);
    assert.doesNotMatch(r.stderr, /to write/);
  }
});

function haveScript(): boolean {
  try {
    return new Deno.Command("script", { args: ["--version"], stdout: "null", stderr: "null" })
      .outputSync().success;
  } catch {
    return false;
  }
}

Deno.test({
  name: "regression: no progress on a long bulk fill typed at the REPL on a terminal",
  ignore: !haveScript(),
  async fn() {
    // Expected (issue 5 item 5): a 256 MiB fill (seconds on the simulator, a minute on a card)
    // draws a progress line on a TTY.
    const expr = 'using w = pramin.window(); w.fill(0x100000, 256 << 20, 0xaa); "done"';
    const cmd = `'${Deno.execPath()}' run -A repl.ts --eval '${expr}'`;
    const out = await new Deno.Command("script", {
      args: ["-qec", cmd, "/dev/null"],
      cwd: ROOT,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      env: { NOVAMM_HISTORY: "" },
    }).output();
    const text = new TextDecoder().decode(out.stdout);
    assert.match(text, /done/, text);
    assert.match(text, /\d+%/, "no progress was drawn");
  },
});
