/**
 * Linux mmiotrace logs: a hand-written kernel-format fixture (from
 * Documentation/trace/mmiotrace.rst and the printf formats of
 * kernel/trace/trace_mmiotrace.c) imports into exact registers and VRAM;
 * malformed and hostile logs are refused with the line and the reason, in
 * bounded memory; a novamm session recorded as mmiotrace and imported gives
 * the live session's BAR1 tables.
 */

import assert from "node:assert/strict";
import { type Gpu, openGpu } from "../mod.ts";
import type { MmioAccess } from "../hw/mmio.ts";
import {
  importMmiotrace,
  importMmiotraceFile,
  isMmiotrace,
  parseMmiotraceLine,
  snapshotTables,
} from "../hw/snap/mmiotrace.ts";
import type { Snapshot } from "../hw/snap/types.ts";
import { writeSnapshotFile } from "../hw/snap/format.ts";
import type { DumpNode } from "../mm/vmm.ts";
import { tracePciOf, TraceWriter } from "../hw/trace.ts";
import { runDeno, throwsNova } from "./util.ts";

const FIXTURE = new URL("./fixtures/mmiotrace_basic.txt", import.meta.url).pathname;
const PAGE = 4096;

/** The bytes the snapshot holds at [addr, addr + len), or null when not all captured. */
function snapBytes(s: Snapshot, addr: number, len: number): Uint8Array | null {
  const r = s.vram.find((r) => r.addr <= addr && addr + len <= r.addr + r.data.length);
  return r === undefined ? null : r.data.subarray(addr - r.addr, addr - r.addr + len);
}

function le32(...words: number[]): number[] {
  return words.flatMap((w) => [w & 0xff, (w >>> 8) & 0xff, (w >>> 16) & 0xff, w >>> 24]);
}

Deno.test("mmiotrace fixture: VERSION, PCIDEV, MAP, 8/16/32/64-bit accesses, MARK, UNMAP import exactly", () => {
  const { snapshot: s, stats } = importMmiotraceFile(FIXTURE);
  // Registers: every 32-bit BAR0 register as last read or written; the 16-bit read of
  // 0x88000 covers half a word and is left out (never made up).
  assert.deepEqual(
    [...s.registers],
    [
      [0x000000, 0x172000a1],
      [0x000a00, 0x172a1000],
      [0x001700, 0x10],
      [0x001704, 0],
      [0x1183a4, 0x6000],
      [0xb80f40, 0x80000101],
      [0xb80f50, 0],
      [0xb830a0, 0x1020],
      [0xb830a4, 0],
      [0xb830b0, 0x80000001],
    ],
  );
  // VRAM: PRAMIN through window 0x10 (VRAM 0x100000), the 8-bit write over the 32-bit one,
  // the 64-bit write as two words, BAR1 in physical mode (offset = VRAM address), writes
  // and reads alike; the word only one 8-bit write touched (0x100304) is left out.
  assert.deepEqual(
    s.vram.map((r) => [r.addr, [...r.data]]),
    [
      [0x100100, le32(0x112233ab)],
      [0x100108, le32(0x44332211, 0x88776655)],
      [0x101200, le32(0x00102c00, 0)],
      [0x102000, le32(0x00010302, 0)],
      [0x200000, le32(0xcafef00d, 0x12345678)],
    ],
  );
  assert.deepEqual(s.addressSpaces, [
    { name: "bar1", pdb: 0x102000, mmuVersion: 2, instanceBlock: 0x101000 },
  ]);
  assert.equal(s.source.kind, "mmiotrace");
  assert.equal(s.chip.boot0, 0x172000a1);
  assert.equal(s.chip.vramSize, 0x6000 * 2 ** 20, "NV_USABLE_FB_SIZE_IN_MB was read");
  assert.deepEqual(s.chip.pci, {
    bdf: "0000:01:00.0",
    vendor: 0x10de,
    device: 0x2204,
    subsystemVendor: null,
    subsystemDevice: null,
  });
  assert.deepEqual(s.chip.barSizes, { bar0: 0x1000000, bar1: 0x10000000, bar2: 0x2000000 });
  const st = s.state as Record<string, Record<string, unknown>>;
  assert.deepEqual(st.trace.marks, [
    { line: 11, text: "nvidia: probe done" },
    { line: 35, text: "X is up" },
  ]);
  assert.equal(st.trace.otherDeviceAccesses, 1, "the i915 write is another device's");
  assert.deepEqual(Object.values(st.trace.skipped as object), [1], "the UNKNOWN line");
  assert.deepEqual(st.vram.unmirrored, {
    "bar1 virtual: its tables are not all in the trace": 1,
  });
  assert.equal(st.vram.partialWords, 1);
  assert.deepEqual(st.registers, { count: 10, partial: 1 });
  assert.deepEqual(st.bar1, { mode: "virtual", instanceBlock: "0x101000" });
  // As read before the driver first wrote a bind register (lines 12-13): a reopen's layout.
  assert.deepEqual(st.bar1AtStart, { mode: "physical", instanceBlock: null, line: 13 });
  assert.deepEqual(st.tlbInvalidates, [{ pdb: "0x102000", count: 1 }]);
  assert.equal(stats.reads + stats.writes, 24);
  // The text importer agrees with the streamed one.
  const again = importMmiotrace(Deno.readTextFileSync(FIXTURE)).snapshot;
  assert.deepEqual([...again.registers], [...s.registers]);
  assert.deepEqual(again.vram, s.vram);
});

Deno.test("replay --decode of the fixture: names, the card's accesses only, table writes marked", async () => {
  const r = await runDeno("replay.ts", ["--decode", FIXTURE]);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  const out = r.stdout;
  assert.match(out, /^# .*mmiotrace of 0000:01:00\.0, decoded as GA10x; 9 reads, 15 writes; /);
  assert.match(out, /\n# {3}bar1: PDB 0x102000 MMU v2 instance block 0x101000\n/);
  assert.match(out, /\n {5}8 {2}r bar0 4 0x00000000 {2}NV_PMC_BOOT_0 = 0x172000a1 \{/);
  assert.match(out, /\n# MARK nvidia: probe done\n/);
  assert.match(out, /\n# MAP id 1 \[0xf4000000, 0xf5000000\): another device\n/);
  assert.match(out, /\n# MAP id 3 \[0xe0000000, 0xe1000000\): BAR1\n/);
  assert.match(
    out,
    /\n {4}14 {2}w bar0 4 0x00001700 {2}NV_PBUS_BAR0_WINDOW = 0x00000010 .*-> PRAMIN window at VRAM 0x100000/,
  );
  assert.match(
    out,
    /\n {4}15 {2}w bar0 4 0x00701200 {2}PRAMIN -> VRAM 0x101200 = 0x00102c00 {2}\[bar1 instance block \+0x200\]/,
  );
  assert.match(
    out,
    /\n {4}17 {2}w bar0 4 0x00702000 {2}PRAMIN -> VRAM 0x102000 = 0x00010302 {2}\[bar1 PD3\[0\] VA 0x0\]/,
  );
  assert.match(out, /\n {4}25 {2}w bar1 4 0x00200000 {2}BAR1\+0x200000 = 0xcafef00d/);
  assert.match(out, /\n {4}33 {2}UNKNOWN instruction at 0xf6000200/);
  // The 64-bit write as two 32-bit accesses; the i915 write (line 6) is not the card's.
  assert.equal(out.match(/\n {4}34 {2}w bar0 4 /g)?.length, 2);
  assert.doesNotMatch(out, /\n {5}6 {2}/);
  const plain = await runDeno("replay.ts", [FIXTURE]);
  assert.equal(plain.code, 1);
  assert.match(plain.stdout + plain.stderr, /is a Linux mmiotrace log, not a novamm trace/);
  const regs = await runDeno("replay.ts", ["--decode", "--registers", FIXTURE]);
  assert.equal(regs.code, 0);
  assert.doesNotMatch(regs.stdout, /0x11223344|BAR1\+/, "data accesses left out");
  assert.match(regs.stdout, /\[bar1 PD3\[0\] VA 0x0\]/, "table writes kept");
});

Deno.test("mmiotrace lines: the kernel's formats parse, anything else is refused with line and reason", () => {
  assert.ok(isMmiotrace("VERSION 20070824"));
  assert.ok(!isMmiotrace("# novamm trace v1 device=sim"));
  const w = parseMmiotraceLine("W 8 1.000001 3 0xf6700108 0x8877665544332211 0x0 0", 7);
  assert.deepEqual(w, {
    kind: "rw",
    line: 7,
    op: "w",
    width: 8,
    time: 1.000001,
    id: 3,
    phys: 0xf6700108,
    value: 0x44332211,
    high: 0x88776655,
  });
  assert.deepEqual(parseMmiotraceLine("MARK 0.000000 Lost 12 events.", 2), {
    kind: "mark",
    line: 2,
    time: 0,
    text: "Lost 12 events.",
  });
  assert.equal(parseMmiotraceLine("rw what?", 3).kind, "skip");
  const cases: [string, RegExp][] = [
    ["R 3 1.0 1 0xf6000000 0x0 0x0 0", /line 9: width "3" is not 1, 2, 4 or 8/],
    ["R 4 1.0 1 0xf6000002 0x0 0x0 0", /line 9: 4-byte access at 0xf6000002 is misaligned/],
    ["R 1 1.0 1 0xf6000000 0x100 0x0 0", /line 9: value 0x100 does not fit a 1-byte access/],
    ["W 4 1.000100 2 0xf6001700 0x1", /line 9: a W record has 7 arguments, this one 5/],
    ["W 4 1.0 2 f6001700 0x1 0x0 0", /line 9: physical address "f6001700" is not 0x-prefixed hex/],
    ["W 4 x 2 0xf6001700 0x1 0x0 0", /line 9: timestamp "x" is not SECONDS.MICROSECONDS/],
    ["MAP 1.0 1 0xf6000000 0x0 0x0 0x0 0", /line 9: a MAP of 0 bytes/],
    ["MAP 1.0 1 0xfffffffffffff000 0x0 0x1000 0x0 0", /line 9: physical address .* past 2\^53/],
    ["VERSION 20990101", /line 9: log version "20990101" is not 20070824/],
    ["PCIDEV 0100 10de2204", /line 9: a PCIDEV record has 17 arguments/],
    ["HELLO 1 2", /line 9: "HELLO" is no mmiotrace record/],
    ["x".repeat(5000), /line 9: a line of 5000 characters/],
  ];
  for (const [line, re] of cases) throwsNova(() => parseMmiotraceLine(line, 9), "EINVAL", re);
});

const HEAD = [
  "VERSION 20070824",
  "PCIDEV 0100 10de2204 8e f6000000 e000000c 0 f000000c 0 e001 f7000000 1000000 10000000 0 2000000 0 80 80000 nvidia",
  "MAP 1.000000 1 0xf6000000 0xffffc90001000000 0x1000000 0x0 0",
  "R 4 1.000001 1 0xf6000000 0x172000a1 0x0 0",
  "R 4 1.000002 1 0xf6000a00 0x172a1000 0x0 0",
];

Deno.test("mmiotrace hostile logs: refused with line and reason, before a snapshot is made", () => {
  const bad = (lines: string[], re: RegExp) =>
    throwsNova(() => importMmiotrace(lines.join("\n"), { path: "t.txt" }), "EINVAL", re);
  bad(["R 4 1.0 1 0xf6000000 0x0 0x0 0"], /t\.txt line 1: the log does not start with "VERSION/);
  bad([""], /t\.txt is empty: no "VERSION 20070824" line/);
  bad([...HEAD, "R 4 1.1 9 0xf6000000 0x0 0x0 0"], /line 6: access through map id 9, which no MAP/);
  bad(
    [...HEAD, "R 4 1.1 1 0xf7000000 0x0 0x0 0"],
    /line 6: access at 0xf7000000 is outside map id 1/,
  );
  bad(
    [...HEAD, "UNMAP 1.2 1 0x0 0", "R 4 1.3 1 0xf6000000 0x0 0x0 0"],
    /line 7: access through map id 1/,
  );
  bad([...HEAD, "UNMAP 1.2 4 0x0 0"], /line 6: UNMAP of map id 4, which is not mapped/);
  bad([...HEAD, "MAP 1.0 1 0xf6000000 0x0 0x1000 0x0 0"], /line 6: map id 1 is mapped twice/);
  bad([...HEAD, "MAP 1.0 2 0xf6fff000 0x0 0x2000 0x0 0"], /line 6: MAP .* straddles a BAR's end/);
  bad([...HEAD, "VERSION 20070824"], /line 6: a second VERSION line/);
  // A log cut in the middle of its last line.
  bad([...HEAD, "W 4 1.000100 1 0xf6001700 0x1"], /line 6: a W record has 7 arguments, this one 5/);
  // No NVIDIA BAR0 mapped; no BOOT reads; unknown chip.
  bad([HEAD[0], HEAD[2]], /no MAP line maps the BAR0 of an NVIDIA GPU \(0 PCIDEV lines/);
  bad(HEAD.slice(0, 3), /never reads NV_PMC_BOOT_0 and NV_PMC_BOOT_42/);
  bad([...HEAD.slice(0, 4), "R 4 1.0 1 0xf6000a00 0x999a1000 0x0 0"], /name no chip novamm knows/);
  // Options are checked before anything is read.
  throwsNova(() => importMmiotrace("", { maxVramBytes: 1 }), "EINVAL", /maxVramBytes 0x1/);
  throwsNova(() => importMmiotrace("", { bar1: 0xe0000000 }), "EINVAL", /need the bar0 base/);
  throwsNova(() => importMmiotrace("", { colour: 1 } as never), "EINVAL", /unknown key "colour"/);
  // Without PCIDEV lines the BAR bases come from the options.
  const s = importMmiotrace([HEAD[0], ...HEAD.slice(2)].join("\n"), { bar0: 0xf6000000 });
  assert.equal(s.snapshot.registers.get(0), 0x172000a1);
});

Deno.test("mmiotrace bounds: mirrored VRAM stops at its cap, registers at theirs; lost events are reported", () => {
  // 20,000 PRAMIN writes on distinct pages (window moved each time): 80 MiB of pages if kept.
  const lines = [...HEAD, "W 4 1.0 1 0xf6001700 0x0 0x0 0"];
  for (let i = 0; i < 20_000; i++) {
    lines.push(`W 4 1.0 1 0xf6001700 0x${(i * 16).toString(16)} 0x0 0`);
    lines.push(`W 4 1.0 1 0xf6700000 0x${i.toString(16)} 0x0 0`);
  }
  for (let i = 0; i < 10; i++) {
    lines.push(`R 4 1.0 1 0xf6${(0x200000 + i * 4).toString(16)} 0x1 0x0 0`);
  }
  lines.push("MARK 0.000000 Lost 7 events.");
  const { snapshot, stats } = importMmiotrace(lines.join("\n"), {
    maxVramBytes: 64 * PAGE,
    maxRegisters: 8,
  });
  assert.equal(snapshot.vram.length, 64, "one captured word on each of 64 pages");
  assert.deepEqual([...snapshot.vram[1].data], le32(1));
  const st = snapshot.state as Record<string, Record<string, unknown>>;
  assert.equal(st.vram.capped, true);
  assert.deepEqual(st.vram.unmirrored, {
    "past the mirrored-VRAM cap (maxVramBytes)": 20_000 - 64,
  });
  assert.equal(snapshot.registers.size, 8);
  assert.ok(Object.keys(st.trace.skipped as object).some((k) => /register cap/.test(k)));
  assert.equal(stats.lostEvents, 7);
  assert.equal(st.trace.complete, false);
});

Deno.test("mmiotrace BAR2, earlier bindings and TLB roots become address spaces", () => {
  const lines = [
    ...HEAD,
    "W 4 1.0 1 0xf6001700 0x1 0x0 0", // window at VRAM 0x10000
    // Instance blocks at 0x11000 (PDB 0x20000) and 0x12000 (PDB 0x30000), BAR2 bound to the
    // first, then to the second; BAR1 bound to the first; a TLB invalidate names 0x40000.
    "W 4 1.0 1 0xf6701200 0x20c00 0x0 0",
    "W 4 1.0 1 0xf6701204 0x0 0x0 0",
    "W 4 1.0 1 0xf6702200 0x30c00 0x0 0",
    "W 4 1.0 1 0xf6702204 0x0 0x0 0",
    "W 4 1.0 1 0xf6b80f48 0x80000011 0x0 0",
    "W 4 1.0 1 0xf6b80f48 0x80000012 0x0 0",
    "W 4 1.0 1 0xf6b80f40 0x80000011 0x0 0",
    "W 4 1.0 1 0xf6b830a0 0x400 0x0 0",
    "W 4 1.0 1 0xf6b830b0 0x80000000 0x0 0",
    // ALL_PDB invalidates name no root.
    "W 4 1.0 1 0xf6b830a0 0x500 0x0 0",
    "W 4 1.0 1 0xf6b830b0 0x80000002 0x0 0",
  ];
  const { snapshot } = importMmiotrace(lines.join("\n"));
  assert.deepEqual(snapshot.addressSpaces, [
    { name: "bar2", pdb: 0x30000, mmuVersion: 2, instanceBlock: 0x12000 },
    { name: "bar1", pdb: 0x20000, mmuVersion: 2, instanceBlock: 0x11000 },
    { name: "bar2-1", pdb: 0x20000, mmuVersion: 2, instanceBlock: 0x11000 },
    { name: "tlb0", pdb: 0x40000, mmuVersion: 2, instanceBlock: null },
  ]);
});

/** Opens `device` recording mmiotrace to `path`, as the REPL's --trace does (BOOT reads first). */
async function recordSession(device: string, path: string): Promise<{ gpu: Gpu; w: TraceWriter }> {
  let w: TraceWriter | null = null;
  const boot: MmioAccess[] = [];
  const gpu = await openGpu({ device, tracer: (a) => w === null ? boot.push(a) : w.record(a) });
  w = new TraceWriter(path, { device }, {
    format: "mmiotrace",
    pci: { ...tracePciOf(gpu.device), device: 0x2204 },
  });
  for (const a of boot) w.record(a);
  return { gpu, w };
}

const TABLE_BYTES: Record<string, number> = { PT64K: 256 };

/** A dump tree without the `foreign` marks (a reopened snapshot did not make its tables). */
function unforeign(n: DumpNode): unknown {
  const { foreign: _, children, ...rest } = n;
  return { ...rest, children: children.map(unforeign) };
}

for (const device of ["sim:ga102", "sim:gh100"]) {
  Deno.test(`mmiotrace round trip on ${device}: record, import, same BAR1 tables and PDB as the live session`, async () => {
    const dir = await Deno.makeTempDir();
    try {
      const path = `${dir}/session.txt`;
      const { gpu, w } = await recordSession(device, path);
      using _closed = { [Symbol.dispose]: () => gpu.close() };
      gpu.bar1.bringUp();
      const maps = [];
      for (const [size, align] of [[3 * PAGE, PAGE], [2 * 65536, 65536], [2 * 2 ** 20, 2 ** 21]]) {
        maps.push(gpu.bar1.map(gpu.mm.buddy.alloc(size, { align }), { writable: true }));
      }
      // Data through BAR1 in virtual mode: the importer translates it through the rebuilt tables.
      maps[0].write32(0x1004, 0x5eed1234);
      maps[2].write32(0x10_0000, 0x0ddba11);
      const live = gpu.bar1.binding!;
      w.close();
      const text = Deno.readTextFileSync(path);
      assert.match(text, /^VERSION 20070824\nPCIDEV 0100 10de2204 0 f2000000 /);
      assert.match(text, /\nMARK \d+\.\d{6} novamm end accesses=\d+\n$/);

      const { snapshot: s } = importMmiotraceFile(path);
      assert.deepEqual(s.addressSpaces.find((a) => a.name === "bar1"), {
        name: "bar1",
        pdb: live.pdb,
        mmuVersion: gpu.chip.mmuVersion,
        instanceBlock: live.instanceBlock,
      });
      const vram = gpu.sim!.vram;
      // The instance block, then every table each mapping's walk passes through, whole.
      const tables = new Map<number, number>([[live.instanceBlock, PAGE]]);
      for (const m of maps) {
        for (const step of gpu.bar1.vmm.walk(m.va).steps) {
          const size = step.level === "PD0" ? 16 : 8;
          const base = step.entryAddress - step.index * size;
          const top = step.level === "PD3" && gpu.chip.mmuVersion === 2
            ? 32
            : step.level === "PD4"
            ? 16
            : TABLE_BYTES[step.level] ?? PAGE;
          tables.set(base, top);
        }
      }
      assert.ok(tables.size >= 6, `${tables.size} tables`);
      for (const [addr, len] of tables) {
        const got = snapBytes(s, addr, len);
        assert.ok(got !== null, `table at 0x${addr.toString(16)} (${len} bytes) was not captured`);
        assert.deepEqual(got, vram.readBytes(addr, len), `table at 0x${addr.toString(16)}`);
      }
      // The imported tables walk like the live ones: every table found from the PDB is one.
      const found = snapshotTables(s).tables.filter((t) => t.space === "bar1");
      assert.deepEqual(
        found.map((t) => t.addr).sort(),
        [...tables.keys()].filter((a) => a !== live.instanceBlock).sort(),
      );
      // BAR1 data writes landed at their physical addresses.
      assert.deepEqual(
        snapBytes(s, maps[0].mapping.physicalAddress(0x1004), 4),
        new Uint8Array(le32(0x5eed1234)),
      );
      assert.deepEqual(
        snapBytes(s, maps[2].mapping.physicalAddress(0x10_0000), 4),
        new Uint8Array(le32(0x0ddba11)),
      );
      assert.deepEqual((s.state as { vram: { unmirrored: object } }).vram.unmirrored, {});
      // Written as a snapshot file and reopened with snap:, it walks and dumps like the live card.
      const file = `${dir}/session.snap`;
      await writeSnapshotFile(file, s);
      for (const spec of [`snap:${file}`, `snap:${path}`]) {
        using off = await openGpu({ device: spec });
        assert.equal(off.device.kind, "snap");
        assert.ok(off.device.readOnly);
        // The usable region novamm's open computed, from the registers as the trace first read
        // them (BAR1 was physical then: the tables it built are not firmware's).
        assert.deepEqual(off.vram.usable, gpu.vram.usable);
        assert.equal(off.vram.usableSource, "layout (BAR1 as the trace first read it)");
        assert.deepEqual(off.vram.unknown, []);
        assert.deepEqual(off.bar1Binding, live);
        for (const m of maps) {
          for (const at of [0, m.size - PAGE]) {
            const r = off.walk(m.va + BigInt(at));
            assert.ok(r.mapped, `${spec}: VA 0x${(m.va + BigInt(at)).toString(16)} maps`);
            assert.equal(r.pa, m.mapping.physicalAddress(at));
          }
        }
        // BAR1's address space as gpu.bar1 adopts it; the trace itself through openVmm({ pdb }).
        const vmm = spec.endsWith(".snap")
          ? off.bar1.vmm
          : off.mm.openVmm({ pdb: live.pdb, vaSize: BigInt(gpu.bar1.size) });
        assert.deepEqual(
          unforeign(vmm.dump({ fromHardware: true })),
          unforeign(gpu.bar1.vmm.dump({ fromHardware: true })),
        );
      }
      // replay --decode lists it with names and marks the page-table writes with their VA.
      const r = await runDeno("replay.ts", ["--decode", path]);
      assert.equal(r.code, 0, r.stdout + r.stderr);
      assert.match(r.stdout, /NV_PMC_BOOT_42 = 0x[0-9a-f]{8} \{/);
      assert.match(
        r.stdout,
        /PRAMIN -> VRAM 0x[0-9a-f]+ = 0x[0-9a-f]{8} {2}\[bar1 PT\[\d+\] VA 0x[0-9a-f]+\]/,
      );
      assert.match(r.stdout, /# {3}bar1: PDB 0x[0-9a-f]+ MMU v[23] instance block 0x/);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
}

Deno.test("TraceWriter mmiotrace format: options are checked; a comment is a MARK", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const p = `${dir}/t.txt`;
    throwsNova(
      () => new TraceWriter(p, { device: "sim" }, { format: "kernel" as never }),
      "EINVAL",
      /trace format "kernel" is not "novamm" or "mmiotrace"/,
    );
    throwsNova(
      () => new TraceWriter(p, { device: "sim" }, { pci: {} }),
      "EINVAL",
      /options.pci goes with format "mmiotrace"/,
    );
    throwsNova(
      () => new TraceWriter(p, { device: "sim" }, { format: "mmiotrace", pci: { bar1Size: 3000 } }),
      "EINVAL",
      /pci.bar1Size 0xbb8 is not a power of two/,
    );
    const w = new TraceWriter(p, { device: "sim" }, {
      format: "mmiotrace",
      pci: { bar1Size: 2 ** 28 },
    });
    w.record({ bar: "bar0", op: "r", width: 4, offset: 0, value: 0x172000a1 });
    w.comment("> gpu.bar1.bringUp()");
    w.record({ bar: "bar1", op: "w", width: 1, offset: 0x10, value: 0xab });
    w.tracer({ bar: "bar1", op: "w", width: 4, offset: 2 ** 28, value: 1 });
    w.close();
    const lines = Deno.readTextFileSync(p).trim().split("\n");
    assert.match(lines[4], /^MARK \d+\.\d{6} novamm trace v1 device=sim$/);
    assert.match(lines[5], /^R 4 \d+\.\d{6} 1 0xf2000000 0x172000a1 0x0 0$/);
    assert.match(lines[6], /^MARK \d+\.\d{6} > gpu\.bar1\.bringUp\(\)$/);
    assert.match(lines[7], /^W 1 \d+\.\d{6} 2 0x4000000010 0xab 0x0 0$/);
    assert.match(lines[8], /^MARK .* is outside the MAP lines/);
    for (const [i, l] of lines.entries()) parseMmiotraceLine(l, i + 1);
    // A card's PCI identity and BAR bases go in the PCIDEV and MAP lines.
    const bar = (index: number, start: bigint, size: number) => ({
      index,
      start,
      size,
      flags: 0,
      prefetchable: index === 1,
      is64bit: index === 1,
      io: false,
    });
    const pci = tracePciOf({
      bar0: { size: 2 ** 24 },
      bar1: { size: 2 ** 34 },
      pci: {
        bdf: "0000:65:00.0",
        path: "/sys/bus/pci/devices/0000:65:00.0",
        vendor: 0x10de,
        device: 0x2330,
        class: 0x030200,
        driver: null,
        bars: [bar(0, 0xd4000000n, 2 ** 24), bar(1, 0x38000000000n, 2 ** 34)],
        bootVga: false,
        wc: [1],
        subsystemVendor: null,
        subsystemDevice: null,
      },
    });
    const q = `${dir}/card.txt`;
    new TraceWriter(q, { device: "0000:65:00.0" }, { format: "mmiotrace", pci }).close();
    const card = Deno.readTextFileSync(q).split("\n");
    assert.equal(
      card[1],
      "PCIDEV 6500 10de2330 0 d4000000 3800000000c 0 0 0 0 0 1000000 400000000 0 0 0 0 0 novamm",
    );
    assert.match(card[3], /^MAP \d+\.\d{6} 2 0x38000000000 0xffffca0000000000 0x400000000 0x0 0$/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("mmiotrace fixture reopened with snap:: the binding, layout registers it lacks reported unknown, walks stop at what is missing", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const file = `${dir}/fixture.snap`;
    await writeSnapshotFile(file, importMmiotraceFile(FIXTURE).snapshot);
    for (const spec of [`snap:${file}`, `snap:${FIXTURE}`]) {
      using gpu = await openGpu({ device: spec });
      assert.equal(gpu.chip.name, "GA102");
      // The trace never read the display fuse, the VGA workspace or WPR2: unknown, not made up.
      assert.deepEqual(gpu.vram.unknown, [
        "NV_FUSE_STATUS_OPT_DISPLAY (0x820c04): not in the snapshot",
        "NV_PDISP_VGA_WORKSPACE_BASE (0x625f04): not in the snapshot",
        "NV_PFB_PRI_MMU_WPR2_ADDR_LO (0x1fa824): not in the snapshot",
        "NV_PFB_PRI_MMU_WPR2_ADDR_HI (0x1fa828): not in the snapshot",
      ]);
      assert.match(
        gpu.vram.layout.find((r) => r.name === "vga-workspace")!.source,
        /NV_PDISP_VGA_WORKSPACE_BASE not in the snapshot: the top 1 MiB assumed; NV_FUSE_STATUS_OPT_DISPLAY not in the snapshot: display assumed/,
      );
      // BAR1 read physical before the driver bound it: its tables are not firmware's.
      assert.deepEqual(gpu.vram.usable, { start: 0x40000, end: 0x6000 * 2 ** 20 - 2 ** 20 });
      assert.deepEqual(gpu.bar1Binding, { instanceBlock: 0x101000, pdb: 0x102000 });
      // Reading them explicitly still errors; the captured ones read as recorded.
      throwsNova(() => gpu.bar0.read32(0x820c04), "EIO", /BAR0 0x820c04 is not in the snapshot/);
      assert.equal(gpu.bar0.read32(0xb80f40), 0x80000101);
      // PD3[0] was captured; the PD2 it points at was not: the walk says where, never guesses.
      throwsNova(
        () => gpu.walk(0n),
        "EIO",
        /VRAM 0x103000 \(through PRAMIN\) is not in the snapshot/,
      );
      throwsNova(() => gpu.walk(2n ** 47n), "EIO", /VRAM 0x102008 .* is not in the snapshot/);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a hand-written trace with whole tables reopens with snap: and walks to the page", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const w = (off: number, v: number) =>
      `W 4 1.0 1 0x${(0xf6000000 + off).toString(16)} 0x${v.toString(16)} 0x0 0`;
    const lines = [
      ...HEAD,
      "R 4 1.0 1 0xf61183a4 0x6000 0x0 0", // NV_USABLE_FB_SIZE_IN_MB: 24 GiB
      "R 4 1.0 1 0xf6b80f40 0x0 0x0 0", // BAR1 physical before the driver binds it
      "R 4 1.0 1 0xf6001704 0x0 0x0 0",
      w(0x1700, 0x10), // PRAMIN window at VRAM 0x100000
      w(0x701200, 0x102c00), // instance block 0x101000: PDB 0x102000, v2 format, 64 KiB big pages
      w(0x701204, 0),
      w(0x702000, 0x10302), // PD3[0] -> PD2 at 0x103000 (video)
      w(0x702004, 0),
      w(0x703000, 0x10402), // PD2[0] -> PD1 at 0x104000
      w(0x703004, 0),
      w(0x704000, 0x10502), // PD1[0] -> PD0 at 0x105000
      w(0x704004, 0),
      w(0x705010, 0x20001), // PD0[1]: a valid 2 MiB PTE, video 0x200000
      w(0x705014, 0),
      w(0x705018, 0),
      w(0x70501c, 0),
      w(0xb80f40, 0x80000101), // BAR1 virtual, instance block 0x101000
    ];
    const path = `${dir}/hand.txt`;
    Deno.writeTextFileSync(path, lines.join("\n") + "\n");
    using gpu = await openGpu({ device: `snap:${path}` });
    assert.deepEqual(gpu.bar1Binding, { instanceBlock: 0x101000, pdb: 0x102000 });
    const r = gpu.walk(0x234000n);
    assert.ok(r.mapped);
    assert.equal(r.pa, 0x234000);
    assert.equal(r.pageSize, 2 ** 21);
    assert.deepEqual(r.steps.map((s) => s.level), ["PD3", "PD2", "PD1", "PD0"]);
    // The write path is closed: a snapshot opens read-only.
    throwsNova(() => gpu.bar0.write32(0xb80f40, 0), "EPERM", /refused/);
    // Bound without being read first: the binding at the start is unknown, so the tables are
    // taken as firmware's (as on a card bound by another driver); walks need no allocator.
    const bound = `${dir}/bound.txt`;
    Deno.writeTextFileSync(
      bound,
      lines.filter((l) => !/ 0xf6(b80f40|001704) 0x0 /.test(l)).join("\n"),
    );
    using other = await openGpu({ device: `snap:${bound}` });
    assert.deepEqual(other.vram.usable, { start: 0, end: 0 });
    assert.equal(other.vram.usableSource, "layout");
    assert.equal((other.walk(0x234000n) as { pa: number }).pa, 0x234000);
    // Read-only: a GpuMm without an allocator (it opens tables: snapshot_offline_test); an
    // allocation says why there is none.
    assert.match(
      other.mm.noAllocator ?? "",
      /no usable VRAM on snap:.*bar1-tables \[0x0, 0x600000000\).* read-only/,
    );
    throwsNova(() => other.mm.buddy, "EPERM", /no VRAM allocator: .*no usable VRAM/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
