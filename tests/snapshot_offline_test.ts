/**
 * Working offline on a reopened snapshot (`snap:FILE`, read-only): whose the
 * tables are (firmware's only where the layout or the BAR1 firmware had bound
 * says so; a recorded session's own tables are "not this session's"), and
 * opening an address space by its PDB when the recorded layout leaves novamm
 * no usable VRAM (a GpuMm without an allocator: reads work, every allocation
 * is refused with the reason, nothing is written).
 */

import assert from "node:assert/strict";
import { type Gpu, openGpu } from "../mm/gpu.ts";
import { takeSnapshot } from "../mm/snapshot.ts";
import { writeSnapshotFile } from "../hw/snap/format.ts";
import { type DumpNode, dumpTree, type Foreign, foreignLabel } from "../mm/pagetable/dump.ts";
import { scanTables } from "../mm/pagetable/scan.ts";
import { ShadowTree } from "../mm/pagetable/tree.ts";
import { mmuFormat } from "../mm/pagetable/format.ts";
import type { WalkResult } from "../mm/pagetable/walk.ts";
import { addressSpaceHtml } from "../views/address_space.ts";
import { vramModel } from "../views/model.ts";
import { throwsNova } from "./util.ts";

const PAGE = 4096;

/** The physical address a walk ends at, or null when the VA does not map. */
function paOf(r: WalkResult): number | null {
  return r.mapped ? Number(r.pa) : null;
}

/** Every node of a dump tree, root first. */
function nodes(root: DumpNode): DumpNode[] {
  const out: DumpNode[] = [];
  const visit = (n: DumpNode) => {
    out.push(n);
    for (const c of n.children) visit(c);
  };
  visit(root);
  return out;
}

/**
 * The tree at `pdb` as a reopened session reads it (a fresh scan through PRAMIN, nothing
 * of it made here), labelled by the GPU's rule: what `vmm.dump({ fromHardware: true })`
 * prints for a space this session did not build.
 */
function scannedDump(gpu: Gpu, pdb: number, vaSize: bigint): DumpNode {
  const tree = new ShadowTree(gpu.format, pdb, null);
  {
    using w = gpu.pramin.borrow();
    scanTables(tree, w, vaSize, gpu.vram.size);
  }
  return dumpTree(tree, {
    maxPtes: 4096,
    tableForeign: () => true,
    pteForeign: () => true,
    tableFirmware: (t) => gpu.mm.firmwareTable(t.addr, pdb),
    header: `scan of ${pdb}`,
  });
}

/** The VRAM address of the table a node's entry points to (its first child's table), or null. */
function tableOf(n: DumpNode, entryBytes: (level: string) => number): number | null {
  const c = n.children[0];
  return c === undefined ? null : c.address - c.index * entryBytes(c.level);
}

Deno.test("dump labels: a foreign entry says whose it is, as far as known", () => {
  assert.equal(foreignLabel("firmware"), "firmware");
  assert.equal(foreignLabel("other"), "not this session's");
  assert.equal(foreignLabel(false), "");
  const tree = new ShadowTree(mmuFormat({ version: 2 }), 0x200000, null);
  const mark = (tableForeign: boolean, tableFirmware?: boolean): Foreign =>
    dumpTree(tree, {
      maxPtes: 1,
      tableForeign: () => tableForeign,
      pteForeign: () => false,
      ...(tableFirmware === undefined ? {} : { tableFirmware: () => tableFirmware }),
      header: "t",
    }).foreign;
  assert.equal(mark(false, true), false, "ours");
  assert.equal(mark(true, true), "firmware");
  assert.equal(mark(true, false), "other");
  assert.equal(mark(true), "firmware", "without a rule: as before, firmware's");
});

/** A sim:ga102 session that brings BAR1 up itself, maps through it and builds a channel space. */
async function selfBoundSnapshot(dir: string) {
  const gpu = await openGpu({ device: "sim:ga102" });
  try {
    assert.equal(gpu.bar1AtOpen.instanceBlock, null, "bare: BAR1 physical at open");
    gpu.bar1.bringUp();
    const maps = [
      gpu.bar1.map(gpu.mm.buddy.alloc(3 * PAGE), { writable: true }),
      gpu.bar1.map(gpu.mm.buddy.alloc(2 ** 21, { align: 2 ** 21 }), { writable: true }),
    ];
    const ch = gpu.mm.createVmm({ vaSize: 1n << 37n, name: "ch" });
    const m = ch.mapPages([0x1200, 0x1201], { writable: true });
    const snap = await takeSnapshot(gpu);
    const file = `${dir}/self.snap`;
    await writeSnapshotFile(file, snap);
    return {
      file,
      snap,
      layout: gpu.vram.layout.map((r) => r.name),
      usable: { ...gpu.vram.usable },
      bar1: gpu.bar1.binding!,
      bar1Size: BigInt(gpu.bar1.size),
      vas: maps.map((x) => ({ va: x.va, pa: x.mapping.physicalAddress(0) })),
      ch: { pdb: ch.pdb, vaSize: ch.vaSize, va: m.va, pa: m.physicalAddress(0) },
      liveDump: String(Deno.inspect(gpu.bar1.vmm.dump())),
    };
  } finally {
    gpu.close();
  }
}

Deno.test("snapshot offline: BAR1 the recorded session brought up itself is not firmware's when reopened", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const rec = await selfBoundSnapshot(dir);
    assert.ok(!rec.liveDump.includes("(firmware)"), "live: novamm's own tables");
    // The recorded session's binding at open (physical) is in the file: the reopen's layout
    // is the recorded session's, without a firmware BAR1 region over its own tables.
    assert.deepEqual((rec.snap.state as { bar1AtStart: unknown }).bar1AtStart, {
      mode: "physical",
      via: (rec.snap.state as { bar1AtStart: { via: string } }).bar1AtStart.via,
      instanceBlock: null,
      problem: null,
    });
    await using off = await openGpu({ device: `snap:${rec.file}` });
    assert.ok(off.device.readOnly);
    assert.deepEqual(off.vram.layout.map((r) => r.name), rec.layout);
    assert.ok(!off.vram.layout.some((r) => r.name === "bar1-tables"));
    assert.deepEqual(off.vram.usable, rec.usable);
    assert.equal(off.vram.usableSource, "recorded in the snapshot");
    assert.equal(off.mm.noAllocator, null);
    // A snapshot of the reopened one carries the recorded session's binding at open on.
    assert.deepEqual(
      (await takeSnapshot(off)).state.bar1AtStart,
      (rec.snap.state as { bar1AtStart: unknown }).bar1AtStart,
    );
    // Every table of BAR1's and the channel's trees: not firmware's, not this session's.
    for (
      const [pdb, vaSize] of [[rec.bar1.pdb, rec.bar1Size], [rec.ch.pdb, rec.ch.vaSize]] as const
    ) {
      const d = scannedDump(off, pdb, vaSize);
      const all = nodes(d);
      assert.ok(all.length >= 5, `${all.length} nodes`);
      for (const n of all) assert.equal(n.foreign, "other", `${n.level}[${n.index}] @${n.address}`);
      const text = Deno.inspect(d);
      assert.match(text, /\(not this session's\)/);
      assert.doesNotMatch(text, /\(firmware\)/);
      assert.equal(off.mm.firmwareTable(pdb, pdb), false);
    }
    // The firmware rule itself: the layout's regions and what lies outside usable VRAM.
    assert.equal(off.mm.firmwareTable(0, rec.bar1.pdb), true, "vga-memory");
    assert.equal(off.mm.firmwareTable(off.vram.size - PAGE, rec.bar1.pdb), true, "top");
    // Walks of the recorded mappings.
    for (const v of rec.vas) assert.equal(paOf(off.walk(v.va)), v.pa);
    const ch = off.mm.openVmm({ pdb: rec.ch.pdb, vaSize: rec.ch.vaSize, name: "ch" });
    assert.equal(ch.translate(rec.ch.va)?.pa, rec.ch.pa);
    assert.equal(ch.verify().differenceCount, 0);
    {
      for (const vmm of [off.bar1.vmm, ch]) {
        for (const fromHardware of [false, true]) {
          const text = Deno.inspect(vmm.dump({ fromHardware }));
          assert.match(text, /\(not this session's\)/, `${vmm.name} ${fromHardware}`);
          assert.doesNotMatch(text, /\(firmware\)/, `${vmm.name} ${fromHardware}`);
        }
        const html = addressSpaceHtml(vmm);
        assert.match(html, /\(not this session&#39;s\)|\(not this session's\)/);
        assert.ok(!html.includes("(firmware)"));
      }
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

for (const profile of ["ga102", "gh100"]) {
  Deno.test(`snapshot offline: a gsp card's BAR1 tables (sim:${profile}:gsp) stay firmware's when reopened`, async () => {
    const dir = await Deno.makeTempDir();
    try {
      const file = `${dir}/gsp.snap`;
      let fw: { pdb: number; usable: { start: number; end: number }; va: bigint; pa: number };
      {
        await using gpu = await openGpu({ device: `sim:${profile}:gsp` });
        const f = gpu.sim!.firmware!;
        // novamm maps through firmware's tree (its tables, if any, in usable VRAM).
        const m = gpu.bar1.map(gpu.mm.buddy.alloc(PAGE), { writable: true });
        fw = {
          pdb: f.bar1Pdb,
          usable: { ...gpu.vram.usable },
          va: m.va,
          pa: m.mapping.physicalAddress(0),
        };
        await writeSnapshotFile(file, await takeSnapshot(gpu));
      }
      await using off = await openGpu({ device: `snap:${file}` });
      assert.equal(off.bar1Binding?.pdb, fw.pdb);
      assert.equal(paOf(off.walk(fw.va)), fw.pa);
      const d = scannedDump(off, fw.pdb, BigInt(off.device.bar1.size));
      assert.equal(d.foreign, "firmware", "firmware's root");
      const entryBytes = (level: string) => level === "PD0" ? 16 : 8;
      let firmware = 0;
      for (const n of nodes(d)) {
        // A PDE's mark is the table it points to; a PTE's the table holding it.
        const at = n.children.length > 0 ? tableOf(n, entryBytes)! : n.address;
        const inUsable = at >= fw.usable.start && at < fw.usable.end;
        assert.equal(n.foreign, inUsable ? "other" : "firmware", `${n.level}[${n.index}]`);
        if (!inUsable) firmware++;
      }
      assert.ok(firmware >= 4, `${firmware} firmware's entries`);
      assert.match(Deno.inspect(d), /\(firmware\)/);
      {
        assert.match(Deno.inspect(off.bar1.vmm.dump()), /PD\d\[0\] .*\(firmware\)/);
        assert.match(addressSpaceHtml(off.bar1.vmm), /\(firmware\)/);
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
}

Deno.test("snapshot offline: no usable VRAM recorded: openVmm({ pdb }) reads, dumps, walks and verifies; allocations are refused", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const rec = await selfBoundSnapshot(dir);
    // As if firmware had BAR1 bound at the bottom of VRAM when the session opened: its
    // reserved region covers all of VRAM and the recorded session had no usable VRAM.
    const state = rec.snap.state as Record<string, unknown>;
    state.bar1AtStart = {
      mode: "virtual",
      instanceBlock: `0x${rec.bar1.instanceBlock.toString(16)}`,
    };
    state.vram = { ...(state.vram as object), usable: { start: 0, end: 0 } };
    state.firmwareUsable = null;
    const file = `${dir}/empty.snap`;
    await writeSnapshotFile(file, rec.snap);
    const bytes = await Deno.readFile(file);

    {
      await using off = await openGpu({ device: `snap:${file}` });
      assert.ok(off.device.readOnly);
      assert.ok(off.vram.usable.end <= off.vram.usable.start, JSON.stringify(off.vram.usable));
      assert.ok(off.vram.layout.some((r) => r.name === "bar1-tables" && r.start === 0));
      assert.match(off.mm.noAllocator ?? "", /no usable VRAM .*read-only/);
      assert.match(String(off.mm), /no allocator/);
      const stats = off.stats();
      const ch = off.mm.openVmm({ pdb: rec.ch.pdb, vaSize: rec.ch.vaSize, name: "ch" });
      const dump = ch.dump();
      assert.ok(
        nodes(dump).some((n) => n.va === rec.ch.va && n.children.length === 0),
        Deno.inspect(dump),
      );
      assert.equal(ch.translate(rec.ch.va)?.pa, rec.ch.pa);
      assert.equal(paOf(ch.walk(rec.ch.va)), rec.ch.pa);
      assert.equal(ch.verify().differenceCount, 0);
      assert.ok(nodes(ch.dump({ fromHardware: true })).length >= 5);
      // Everything lies in firmware's region: firmware's by the layout.
      assert.equal(off.mm.firmwareTable(rec.ch.pdb, rec.ch.pdb), true);
      // BAR1 as the snapshot left it (adopted), and its mappings walk.
      for (const v of rec.vas) assert.equal(off.bar1.vmm.translate(v.va)?.pa, v.pa);
      // Allocations: refused with the reason, nothing changed.
      const before = Deno.inspect(ch.dump());
      throwsNova(() => off.mm.buddy, "EPERM", "no VRAM allocator", "read-only");
      throwsNova(() => off.mm.createVmm(), "EPERM", "no VRAM allocator");
      throwsNova(() => ch.mapPages([0x3000], { va: 1n << 36n }), "EPERM");
      await assert.rejects(off.mm.memtest(), /EPERM: no VRAM allocator/);
      assert.equal(Deno.inspect(ch.dump()), before);
      assert.equal(off.stats().mmioWrites, stats.mmioWrites, "nothing written");
      // Views draw it (no allocations).
      assert.equal(vramModel(off).lanes[1].items.length, 0);
      assert.match(addressSpaceHtml(ch), /nm-tree/);
      ch.destroy();
    }
    assert.deepEqual(await Deno.readFile(file), bytes, "the file is unchanged");
    // A writable device with no usable VRAM still refuses: there is no allocator to write with.
    await using scratch = await openGpu({ device: `snap:${file}?scratch` });
    assert.equal(scratch.device.readOnly, false);
    throwsNova(() => scratch.mm, "ENOSPC", "no usable VRAM", "no allocator");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
