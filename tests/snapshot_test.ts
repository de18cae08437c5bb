/**
 * Snapshots: the file format (round trip; truncated, bit-flipped, hostile and
 * foreign files refused with the offset and reason), the capture (registers
 * safe to read, BAR1's and each address space's tables as VRAM holds them,
 * the budget), and `snap:FILE` devices (walks equal the live card's;
 * firmware's tables byte-identical; what was not captured is an error;
 * `?scratch` writes to a copy).
 */

import assert from "node:assert/strict";
import { openGpu } from "../mm/gpu.ts";
import { NovaError } from "../hw/errors.ts";
import {
  crc32,
  decodeSnapshot,
  encodeSnapshot,
  readSnapshotFile,
  SNAPSHOT_MAGIC,
  writeSnapshotFile,
} from "../hw/snap/format.ts";
import { type Snapshot, SNAPSHOT_FORMAT, SNAPSHOT_VERSION } from "../hw/snap/types.ts";
import { parseSnapSpec } from "../hw/snap/device.ts";
import { openDevice } from "../hw/device.ts";
import { takeSnapshot } from "../mm/snapshot.ts";
import { readRegisters } from "../hw/reg_dump.ts";
import { parseSnapshotRange } from "../snapshot.ts";
import { prng } from "../testing/prng.ts";
import { runDeno, throwsNova } from "./util.ts";

const PAGE = 4096;

async function rejects(
  p: Promise<unknown>,
  code: string,
  ...patterns: RegExp[]
): Promise<NovaError> {
  let caught: unknown = null;
  try {
    await p;
  } catch (e) {
    caught = e;
  }
  assert.ok(caught instanceof NovaError, `expected NovaError ${code}, got ${String(caught)}`);
  assert.equal(caught.code, code, caught.message);
  for (const re of patterns) assert.match(caught.message, re);
  return caught;
}

function sample(): Snapshot {
  const data = new Uint8Array(8192);
  for (let i = 0; i < data.length; i++) data[i] = (i * 7 + 3) & 0xff;
  return {
    format: SNAPSHOT_FORMAT,
    version: SNAPSHOT_VERSION,
    source: { kind: "sim", spec: "sim:ga102", takenAt: "2026-01-01T00:00:00.000Z", tool: "novamm" },
    chip: {
      boot0: 0x172000a1,
      boot42: 0x17200000,
      pci: {
        bdf: null,
        vendor: 0x10de,
        device: 0x2204,
        subsystemVendor: null,
        subsystemDevice: null,
      },
      barSizes: { bar0: 1 << 24, bar1: 1 << 28 },
      vramSize: 1 << 30,
    },
    state: { note: "x", nested: { a: [1, 2] } },
    registers: new Map([[0x0, 0x172000a1], [0x1700, 0x12], [0xa00, 0x17200000]]),
    vram: [
      { addr: 0x1000, data: data.subarray(0, 4096), why: "PD3 of bar1" },
      { addr: 0x10000, data: data.slice(4096), why: "user" },
    ],
    addressSpaces: [{ name: "bar1", pdb: 0x1000, mmuVersion: 2, instanceBlock: null }],
  };
}

/** Gzip of raw bytes (to build hostile bodies behind a valid gzip layer). */
async function gzip(body: Uint8Array): Promise<Uint8Array> {
  const s = new Blob([body as BlobPart]).stream().pipeThrough(new CompressionStream("gzip"));
  return new Uint8Array(await new Response(s).arrayBuffer());
}

async function gunzip(bytes: Uint8Array): Promise<Uint8Array> {
  const s = new Blob([bytes as BlobPart]).stream().pipeThrough(new DecompressionStream("gzip"));
  return new Uint8Array(await new Response(s).arrayBuffer());
}

/** A body with `header` (as JSON) and `rest` after the prefix. */
function body(header: unknown, rest: Uint8Array = new Uint8Array(0)): Uint8Array {
  const json = new TextEncoder().encode(JSON.stringify(header));
  const out = new Uint8Array(12 + json.length + rest.length);
  out.set(new TextEncoder().encode(SNAPSHOT_MAGIC));
  new DataView(out.buffer).setUint32(8, json.length, true);
  out.set(json, 12);
  out.set(rest, 12 + json.length);
  return out;
}

Deno.test("snapshot format: crc32 is gzip's", () => {
  assert.equal(crc32(new TextEncoder().encode("123456789")), 0xcbf43926);
});

Deno.test("snapshot format: round trip keeps every field and byte", async () => {
  const s = sample();
  const back = await decodeSnapshot(await encodeSnapshot(s), { path: "x.snap" });
  assert.deepStrictEqual(back.source, s.source);
  assert.deepStrictEqual(back.chip, s.chip);
  assert.deepStrictEqual(back.state, s.state);
  assert.deepStrictEqual([...back.registers], [...s.registers].sort((a, b) => a[0] - b[0]));
  assert.deepStrictEqual(back.addressSpaces, s.addressSpaces);
  assert.equal(back.vram.length, 2);
  for (const [i, r] of back.vram.entries()) {
    assert.equal(r.addr, s.vram[i].addr);
    assert.equal(r.why, s.vram[i].why);
    assert.deepStrictEqual(r.data, s.vram[i].data);
  }
});

Deno.test("snapshot format: a bad model is refused before anything is written", async () => {
  const s = sample();
  s.vram = [s.vram[1], s.vram[0]];
  await rejects(encodeSnapshot(s), "EINVAL", /starts before the end/);
  const t = sample();
  t.registers.set(0x3, 1);
  await rejects(encodeSnapshot(t), "EINVAL", /0x3.*aligned/);
});

Deno.test("snapshot format: truncation at every section boundary and random cuts", async () => {
  const file = await encodeSnapshot(sample());
  const raw = await gunzip(file);
  const headerLen = new DataView(raw.buffer).getUint32(8, true);
  const regEnd = 12 + headerLen + 3 * 8;
  // Section boundaries of the uncompressed body, re-compressed whole (a clean gzip of a short body).
  for (
    const cut of [
      0,
      4,
      8,
      11,
      12,
      13,
      12 + headerLen - 1,
      12 + headerLen,
      regEnd - 4,
      regEnd,
      regEnd + 4096,
      raw.length - 1,
    ]
  ) {
    const e = await rejects(
      decodeSnapshot(await gzip(raw.subarray(0, cut)), { path: "t.snap" }),
      "EINVAL",
    );
    assert.match(e.message, /t\.snap: byte \d+/);
    assert.match(e.message, /ends|magic/);
  }
  // Cuts of the compressed file itself.
  const rand = prng(7);
  const cuts = [0, 1, 2, 10, 17, 18, file.length - 8, file.length - 4, file.length - 1];
  for (let i = 0; i < 40; i++) cuts.push(Math.floor(rand() * file.length));
  for (const cut of cuts) {
    const e = await rejects(decodeSnapshot(file.subarray(0, cut), { path: "t.snap" }), "EINVAL");
    assert.match(e.message, /t\.snap: (compressed )?byte \d+/);
  }
});

Deno.test("snapshot format: bit flips are refused, never crash", async () => {
  const file = await encodeSnapshot(sample());
  const raw = await gunzip(file);
  const rand = prng(11);
  for (let i = 0; i < 60; i++) {
    // In the compressed file (gzip's own checks) ...
    const f = file.slice();
    f[Math.floor(rand() * f.length)] ^= 1 << Math.floor(rand() * 8);
    try {
      await decodeSnapshot(f);
    } catch (e) {
      assert.ok(e instanceof NovaError, String(e));
      assert.equal(e.code, "EINVAL");
    }
    // ... and in the body behind a valid gzip layer (ours).
    const b = raw.slice();
    const at = Math.floor(rand() * b.length);
    b[at] ^= 1 << Math.floor(rand() * 8);
    await rejects(decodeSnapshot(await gzip(b)), "EINVAL", /byte \d+/);
  }
  // A flip in a VRAM payload names the range and the checksum.
  const b = raw.slice();
  b[b.length - 10] ^= 0x40;
  await rejects(decodeSnapshot(await gzip(b)), "EINVAL", /0x10000 \(user\): checksum mismatch/);
});

Deno.test("snapshot format: huge declared lengths and hostile headers are refused before allocating", async () => {
  const raw = await gunzip(await encodeSnapshot(sample()));
  const headerLen = new DataView(raw.buffer).getUint32(8, true);
  const header = JSON.parse(new TextDecoder().decode(raw.subarray(12, 12 + headerLen)));
  const rest = raw.subarray(12 + headerLen);
  const edit = (f: (h: Record<string, unknown>) => void) => {
    const h = structuredClone(header);
    f(h);
    if (h.totalBytes === header.totalBytes) {
      // Keep the total consistent with the edited header, so the edit itself is what is refused.
      for (let k = 0; k < 4; k++) {
        h.totalBytes = 12 + new TextEncoder().encode(JSON.stringify(h)).length + rest.length;
      }
    }
    return gzip(body(h, rest));
  };
  // A header length of 4 GiB.
  const huge = raw.slice();
  new DataView(huge.buffer).setUint32(8, 0xffffffff, true);
  await rejects(decodeSnapshot(await gzip(huge)), "EINVAL", /byte 8 .*header length 4294967295/);
  // A VRAM range of 2^40 bytes; a total over the limit; a register count of 2^26.
  await rejects(
    decodeSnapshot(
      await edit((h) => {
        (h.vram as { length: number }[])[1].length = 2 ** 40;
      }),
    ),
    "EINVAL",
    /vram\[1\]\.length/,
  );
  await rejects(
    decodeSnapshot(
      await edit((h) => {
        h.totalBytes = 2 ** 40;
      }),
    ),
    "EINVAL",
    /declares 1099511627776 bytes .*over the limit/,
  );
  await rejects(
    decodeSnapshot(
      await edit((h) => {
        (h.registers as { count: number }).count = 2 ** 25;
      }),
    ),
    "EINVAL",
    /totalBytes is \d+, but/,
  );
  // The limit option caps what is accepted.
  await rejects(
    decodeSnapshot(await encodeSnapshot(sample()), { maxBytes: 1000 }),
    "EINVAL",
    /over the limit of 1000/,
  );
  // Overlapping ranges, wrong types, a trailing byte.
  await rejects(
    decodeSnapshot(
      await edit((h) => {
        (h.vram as { addr: number }[])[1].addr = 0x1800;
      }),
    ),
    "EINVAL",
    /overlaps/,
  );
  await rejects(
    decodeSnapshot(
      await edit((h) => {
        (h.chip as { boot0: unknown }).boot0 = "x";
      }),
    ),
    "EINVAL",
    /chip\.boot0 must be/,
  );
  await rejects(
    decodeSnapshot(
      await edit((h) => {
        h.addressSpaces = [{ name: "a", pdb: 0, mmuVersion: 4, instanceBlock: null }];
      }),
    ),
    "EINVAL",
    /mmuVersion/,
  );
  const trailing = new Uint8Array(raw.length + 1);
  trailing.set(raw);
  await rejects(
    decodeSnapshot(await gzip(trailing)),
    "EINVAL",
    /past the total the header declares/,
  );
  // A gzip bomb: a million zero bytes behind a tiny header length.
  const bomb = new Uint8Array(1 << 20);
  bomb.set(new TextEncoder().encode(SNAPSHOT_MAGIC));
  await rejects(
    decodeSnapshot(await gzip(bomb), { maxBytes: 4096 }),
    "EINVAL",
    /byte 8 .*header length 0/,
  );
});

Deno.test("snapshot format: wrong magic, version, format, or not gzip", async () => {
  const raw = await gunzip(await encodeSnapshot(sample()));
  const m = raw.slice();
  m[0] = 0x58;
  await rejects(decodeSnapshot(await gzip(m)), "EINVAL", /byte 0 .*wrong magic/);
  const headerLen = new DataView(raw.buffer).getUint32(8, true);
  const header = JSON.parse(new TextDecoder().decode(raw.subarray(12, 12 + headerLen)));
  const rest = raw.subarray(12 + headerLen);
  await rejects(
    decodeSnapshot(await gzip(body({ ...header, version: SNAPSHOT_VERSION + 1 }, rest))),
    "EINVAL",
    /format version 2 is not one this novamm reads/,
  );
  await rejects(
    decodeSnapshot(await gzip(body({ ...header, format: "other" }, rest))),
    "EINVAL",
    /format must be/,
  );
  await rejects(decodeSnapshot(raw), "EINVAL", /compressed byte 0: not a gzip stream/);
  await rejects(decodeSnapshot(new Uint8Array(0)), "EINVAL", /not a gzip stream/);
  await rejects(readSnapshotFile("/nonexistent/x.snap"), "ENOENT", /does not exist/);
});

/** Brings BAR1 up and maps a 4 KiB, a 64 KiB and a 2 MiB allocation; returns [va, pa] pairs. */
function mapThree(gpu: Awaited<ReturnType<typeof openGpu>>): [bigint, number][] {
  gpu.bar1.bringUp();
  return [PAGE, 64 * 1024, 2 * 2 ** 20].map((size) => {
    const a = gpu.mm.buddy.alloc(size, { align: size });
    return [gpu.bar1.map(a).va, a.start];
  });
}

for (const profile of ["ga102", "gh100"]) {
  Deno.test(`snapshot sim:${profile}: three BAR1 mappings walk to the same pages when reopened`, async () => {
    const dir = await Deno.makeTempDir();
    const file = `${dir}/card.snap`;
    let pairs: [bigint, number][];
    let other: { pdb: number; va: bigint; pa: number };
    let live: string[];
    let recorded: Map<number, number>;
    {
      await using gpu = await openGpu({ device: `sim:${profile}` });
      pairs = mapThree(gpu);
      // An address space of the session besides BAR1 is captured too.
      const v = gpu.mm.createVmm({ vaSize: 1n << 32n, name: "chan" });
      const a = gpu.mm.buddy.alloc(64 * 1024, { align: 64 * 1024 });
      const m = v.mapRange(a.start, a.size, { writable: true });
      other = { pdb: v.pdb, va: m.va, pa: a.start };
      live = pairs.map(([va]) => JSON.stringify(gpu.walk(va).steps.map((s) => String(s.raw))));
      const r = await gpu.snapshot(file);
      assert.ok(r.bytes > 0);
      recorded = r.snapshot.registers;
      assert.deepStrictEqual(r.snapshot.addressSpaces.map((s) => s.name), ["bar1", "chan"]);
    }
    await using snap = await openGpu({ device: `snap:${file}` });
    assert.equal(snap.device.kind, "snap");
    assert.ok(snap.device.readOnly);
    for (const [i, [va, pa]] of pairs.entries()) {
      const w = snap.walk(va);
      assert.ok(w.mapped, `VA ${va} does not translate in the snapshot`);
      assert.equal(w.pa, pa);
      assert.equal(JSON.stringify(w.steps.map((s) => String(s.raw))), live[i]);
    }
    const w = snap.walk(other.va, { pdb: other.pdb });
    assert.ok(w.mapped);
    assert.equal(w.pa, other.pa);
    // The session's space reopened over the recorded tables, and a dump from VRAM.
    const v = snap.mm.openVmm({ pdb: other.pdb, vaSize: 1n << 32n });
    assert.equal(v.translate(other.va)?.pa, other.pa);
    const dump = v.dump({ fromHardware: true });
    assert.ok(
      JSON.stringify(dump, (_k, x) => typeof x === "bigint" ? String(x) : x).includes(
        `"va":"${other.va}"`,
      ),
    );
    // regs(): every register novamm knows reads as recorded.
    const known = readRegisters(snap.bar0, snap.chip.architecture, snap.chip.chipId);
    assert.ok(known.length > 10);
    for (const r of known) assert.equal(r.value, recorded.get(r.offset), r.name);
    // Uncaptured VRAM and registers are errors naming the offset, never made-up values.
    throwsNova(() => snap.pramin.read32(0x100), "EIO", "VRAM 0x100", "not in the snapshot");
    throwsNova(
      () => snap.bar0.read32(0x123450),
      "EIO",
      "register BAR0 0x123450 is not in the snapshot",
    );
    // Read-only: a write is refused, BAR1 CPU access too.
    throwsNova(() => snap.bar0.write32(0x0, 1), "EPERM", "read-only");
    throwsNova(() => snap.device.bar1.read32(0), "ENOTSUP", "BAR1");
    await Deno.remove(dir, { recursive: true });
  });
}

for (const profile of ["ga102", "gh100"]) {
  Deno.test(`snapshot of a gsp card (sim:${profile}:gsp): firmware's tables are byte-identical when reopened`, async () => {
    const dir = await Deno.makeTempDir();
    const file = `${dir}/gsp.snap`;
    const fw = await (async () => {
      await using gpu = await openGpu({ device: `sim:${profile}:gsp` });
      const f = gpu.sim!.firmware!;
      const snap = await takeSnapshot(gpu);
      await writeSnapshotFile(file, snap);
      // The walked tables: the instance block and one table per level, straight from VRAM.
      const words = (addr: number, n: number) =>
        Array.from({ length: n }, (_, i) => gpu.sim!.vram.read32(addr + 4 * i));
      return {
        info: f,
        tables: snap.vram.map((r) => ({ addr: r.addr, words: words(r.addr, r.data.length / 4) })),
        walks: f.mappings.map((m) => gpu.walk(m.va)),
      };
    })();
    await using snap = await openGpu({ device: `snap:${file}` });
    assert.equal(snap.bar1Binding?.pdb, fw.info.bar1Pdb);
    assert.equal(snap.bar1Binding?.instanceBlock, fw.info.instanceBlock);
    assert.ok(
      fw.tables.some((t) =>
        t.addr <= fw.info.instanceBlock && fw.info.instanceBlock < t.addr + t.words.length * 4
      ),
    );
    {
      using w = snap.pramin.window();
      for (const t of fw.tables) {
        assert.deepStrictEqual(
          Array.from(w.readWords(t.addr, t.words.length)),
          t.words,
          `range ${t.addr}`,
        );
      }
    }
    for (const [i, m] of fw.info.mappings.entries()) {
      const r = snap.walk(m.va);
      assert.ok(r.mapped);
      assert.equal(r.pa, m.pa);
      assert.deepStrictEqual(
        r.steps.map((s) => String(s.raw)),
        fw.walks[i].steps.map((s) => String(s.raw)),
      );
    }
    // A reopen reads the file again.
    const again = await snap.reopen();
    assert.equal(again.walk(fw.info.mappings[0].va).mapped, true);
    again.close();
    await Deno.remove(dir, { recursive: true });
  });
}

Deno.test("snapshot capture: safe registers only, user ranges, budget refused before reading", async () => {
  await using gpu = await openGpu({ device: "sim:gh100" });
  const snap = await takeSnapshot(gpu, { ranges: [{ addr: 0x200002, size: 6 }] });
  // Never a read that injects an XAL flush (0x10F800), never the PRAMIN aperture.
  assert.ok(!snap.registers.has(0x10f800));
  assert.ok(snap.registers.has(0x10f804)); // _COMPLETED is safe
  assert.ok([...snap.registers.keys()].every((o) => o < 0x700000 || o >= 0x800000));
  assert.deepStrictEqual(snap.vram.map((r) => [r.addr, r.data.length, r.why]), [[
    0x200000,
    8,
    "user",
  ]]);
  const before = gpu.stats().mmioReads;
  await rejects(
    takeSnapshot(gpu, { maxBytes: 1 << 20, ranges: [{ addr: 0, size: 2 << 20 }] }),
    "ENOSPC",
    /over maxBytes 1 MiB \(1048576 bytes\)/,
  );
  await rejects(
    takeSnapshot(gpu, { ranges: [{ addr: 0, size: 0 }] }),
    "EINVAL",
    /empty or past the end/,
  );
  await rejects(takeSnapshot(gpu, { bogus: 1 } as never), "EINVAL", /unknown key "bogus"/);
  assert.equal(gpu.stats().mmioReads, before, "refused captures read nothing");
});

Deno.test("snapshot capture on a read-only open: no write, VRAM outside the window skipped", async () => {
  await using gpu = await openGpu({ device: "sim:ga102:gsp", readOnly: true });
  const writes = gpu.stats().mmioWrites;
  const snap = await takeSnapshot(gpu, { ranges: [{ addr: 0, size: PAGE }] });
  assert.equal(gpu.stats().mmioWrites, writes);
  assert.deepStrictEqual(snap.vram.map((r) => r.addr), [0]);
  const skipped = snap.state.skipped as { addr: number; reason: string }[];
  assert.equal(skipped[0].addr, gpu.sim!.firmware!.instanceBlock);
  assert.match(skipped[0].reason, /read-only session refuses/);
});

Deno.test("snap:FILE?scratch writes to a copy: captured VRAM and registers only", async () => {
  const dir = await Deno.makeTempDir();
  const file = `${dir}/s.snap`;
  let original: number;
  {
    await using gpu = await openGpu({ device: "sim:ga102" });
    await gpu.snapshot(file, { ranges: [{ addr: 0x300000, size: PAGE }] });
    original = gpu.pramin.read32(0x300010);
  }
  {
    await using g = await openGpu({ device: `snap:${file}?scratch` });
    assert.equal(g.device.readOnly, false);
    g.pramin.write32(0x300010, 0xcafe);
    assert.equal(g.pramin.read32(0x300010), 0xcafe);
    throwsNova(() => g.pramin.write32(0x400000, 1), "EIO", "VRAM 0x400000", "not in the snapshot");
    const win = g.pramin.register.offset;
    throwsNova(() => g.bar0.write32(0x123450, 1), "EPERM", "not in the snapshot");
    assert.equal(typeof g.bar0.read32(win), "number");
  }
  // The file is unchanged.
  await using ro = await openGpu({ device: `snap:${file}` });
  assert.equal(ro.pramin.read32(0x300010), original);
  assert.notEqual(original, 0xcafe);
  throwsNova(() => ro.pramin.write32(0x300010, 1), "EPERM", "read-only");
  await Deno.remove(dir, { recursive: true });
});

Deno.test("snap: specs and options are checked", async () => {
  assert.deepStrictEqual(parseSnapSpec("snap:a.snap?scratch"), { path: "a.snap", scratch: true });
  assert.equal(parseSnapSpec("sim:ga102"), null);
  throwsNova(() => parseSnapSpec("snap:a?write"), "ENODEV", "?write");
  throwsNova(() => parseSnapSpec("snap:"), "ENODEV", "no file name");
  throwsNova(() => openDevice({ device: "snap:x.snap" }), "EINVAL", "pass the decoded snapshot");
  throwsNova(
    () => openDevice({ device: "snap:x.snap", snapshot: { ...sample(), registers: {} } as never }),
    "EINVAL",
    "no registers Map",
  );
  const unsorted = sample();
  unsorted.vram.reverse();
  throwsNova(() => openDevice({ device: "snap:x.snap", snapshot: unsorted }), "EINVAL", "vram[1]");
  throwsNova(
    () => openDevice({ device: "sim", snapshot: sample() }),
    "EINVAL",
    "snap:FILE devices",
  );
  await rejects(
    openGpu({ device: "snap:/nonexistent/x.snap" }),
    "ENOENT",
    /x\.snap does not exist/,
  );
  assert.deepStrictEqual(parseSnapshotRange("0x100000:64K"), { addr: 0x100000, size: 65536 });
  throwsNova(() => parseSnapshotRange("0x100000"), "EINVAL", "ADDR:SIZE");
});

Deno.test("snap: a snapshot without what the open reads opens; what it lacks is unknown, and reading it is refused naming the offset", async () => {
  const dir = await Deno.makeTempDir();
  const file = `${dir}/thin.snap`;
  {
    await using gpu = await openGpu({ device: "sim:gh100" });
    const s = await takeSnapshot(gpu);
    // Only the identity: no PRAMIN window register (0x10FD40 on Hopper), no bind or layout registers.
    s.registers = new Map([[0x0, s.registers.get(0x0)!], [0xa00, s.registers.get(0xa00)!]]);
    await writeSnapshotFile(file, s);
    s.chip.vramSize = 4096;
    await writeSnapshotFile(`${file}2`, s);
  }
  {
    using gpu = await openGpu({ device: `snap:${file}` });
    assert.deepStrictEqual(gpu.vram.unknown, [
      "NV_PFB_PRI_MMU_WPR2_ADDR_LO (0x1fa824): not in the snapshot",
      "NV_PFB_PRI_MMU_WPR2_ADDR_HI (0x1fa828): not in the snapshot",
    ]);
    assert.equal(gpu.vram.usableSource, "recorded in the snapshot");
    assert.match(gpu.bar1AtOpen.problem!, /none of the BAR1 bind registers .* is in the snapshot/);
    assert.equal(gpu.bar1Binding, null);
    throwsNova(() => gpu.walk(0n), "EINVAL", /BAR1 has none \(none of the BAR1 bind registers/);
    throwsNova(
      () => gpu.bar0.read32(0x10fd40),
      "EIO",
      /register BAR0 0x10fd40 is not in the snapshot/,
    );
    throwsNova(() => gpu.pramin.read32(0x1000), "EIO", /BAR0 0x10fd40 is not in the snapshot/);
  }
  await rejects(openGpu({ device: `snap:${file}2` }), "EINVAL", /records 0x1000 bytes of VRAM/);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("snapshot capture: progress is reported, an abort stops it before anything is written", async () => {
  await using gpu = await openGpu({ device: "sim:gh100" });
  const seen = new Set<string>();
  await takeSnapshot(gpu, {
    ranges: [{ addr: 0, size: 3 << 20 }],
    onProgress: (_done, _total, what) => seen.add(what),
  });
  assert.deepStrictEqual([...seen].sort(), ["VRAM ranges", "registers"]);
  const abort = new AbortController();
  abort.abort();
  const dir = await Deno.makeTempDir();
  await rejects(
    gpu.snapshot(`${dir}/x.snap`, { signal: abort.signal }),
    "EINTR",
    /nothing was written/,
  );
  assert.deepStrictEqual([...Deno.readDirSync(dir)], []);
  await rejects(gpu.snapshot(""), "EINVAL", /non-empty string/);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("deno task snapshot: writes a file snap: reopens; bad flags and budgets are one-line errors", async () => {
  const dir = await Deno.makeTempDir();
  const file = `${dir}/cli.snap`;
  const ok = await runDeno("snapshot.ts", [
    "-d",
    "sim:ga102:gsp",
    "-o",
    file,
    "--range",
    "0x100000:64K",
  ]);
  assert.equal(ok.code, 0, ok.stderr);
  assert.match(
    ok.stdout,
    /snapshot of sim:ga102:gsp: \d+ registers, \d+ VRAM ranges .*1 address spaces \(bar1 @0x5f0001000\)/,
  );
  const walk = await runDeno("repl.ts", [
    "--device",
    `snap:${file}`,
    "-e",
    "walk(0x10000n).mapped",
  ]);
  assert.equal(walk.stdout.trim(), "true", walk.stderr);
  const again = await runDeno("snapshot.ts", [
    "-d",
    `snap:${file}`,
    "-o",
    `${file}2`,
    "--range",
    "0x200000:4K",
  ]);
  assert.equal(again.code, 1);
  assert.match(again.stderr, /VRAM 0x200000 \(through PRAMIN\) is not in the snapshot/);
  const big = await runDeno("snapshot.ts", ["-d", "sim", "-o", `${file}3`, "--max-bytes", "4K"]);
  assert.equal(big.code, 1);
  assert.match(big.stderr, /over maxBytes 4 KiB \(4096 bytes\)/);
  const none = await runDeno("snapshot.ts", ["-d", "sim"]);
  assert.match(none.stderr, /no output file/);
  const typo = await runDeno("snapshot.ts", ["-d", `snp:${file}`, "-o", `${file}4`]);
  assert.match(typo.stderr, /did you mean --device snap:/);
  await Deno.remove(dir, { recursive: true });
});
