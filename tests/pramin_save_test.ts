// pramin.save / load / compare: VRAM ranges to files and back (issue 18 item 3).
import assert from "node:assert/strict";
import { openGpu } from "../mod.ts";
import { VRAM_IMAGE_HEADER_BYTES, VRAM_IMAGE_MAGIC, VRAM_IMAGE_VERSION } from "../mm/pramin.ts";
import { setInterruptWord } from "../hw/mmio.ts";
import { throwsNova } from "./util.ts";

const KiB = 1024;
const MiB = 2 ** 20;

function pattern(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  let x = seed >>> 0;
  for (let i = 0; i < n; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    out[i] = x >>> 24;
  }
  return out;
}

function tempDir(): string {
  return Deno.makeTempDirSync({ prefix: "novamm-pramin-save-" });
}

Deno.test("pramin.save writes the documented header and the bytes; load puts them back; compare agrees", async () => {
  for (const device of ["sim:ga102", "sim:gh100"]) {
    const gpu = await openGpu({ device });
    const dir = tempDir();
    const file = `${dir}/a.vram`;
    // Crosses PRAMIN windows: 2 MiB + 12 KiB from a 64 KiB boundary.
    const size = 2 * MiB + 12 * KiB;
    const a = gpu.mm.buddy.alloc(4 * MiB);
    const data = pattern(size, 7);
    gpu.pramin.writeBytes(a.start, data);
    gpu.resetStats();
    const saved = gpu.pramin.save(a.start, size, file);
    assert.equal(saved.size, size);
    assert.match(Deno.inspect(saved), /^saved \[0x[0-9a-f]+, 0x[0-9a-f]+\) \(2\.01 MiB\) to /);
    const s = gpu.stats();
    assert.equal(s.mmioReads, size / 4 + 2 + 1, "the words, BOOT_0/BOOT_42, the window register");
    const bytes = Deno.readFileSync(file);
    assert.equal(bytes.length, VRAM_IMAGE_HEADER_BYTES + size);
    assert.equal(new TextDecoder().decode(bytes.subarray(0, 8)), VRAM_IMAGE_MAGIC);
    const dv = new DataView(bytes.buffer);
    assert.equal(dv.getUint32(8, true), VRAM_IMAGE_VERSION);
    assert.equal(dv.getUint32(12, true), 64);
    assert.equal(dv.getBigUint64(16, true), BigInt(a.start));
    assert.equal(dv.getBigUint64(24, true), BigInt(size));
    assert.equal(dv.getUint32(32, true), gpu.chip.boot0);
    assert.equal(dv.getUint32(36, true), gpu.chip.boot42);
    assert.deepEqual(bytes.subarray(64), data);
    assert.equal(gpu.pramin.compare(a.start, file).same, true);
    assert.match(Deno.inspect(gpu.pramin.compare(a.start, file)), /is the same as/);

    // Scribble two places, compare finds them, load restores.
    gpu.pramin.write32(a.start + 0x100, 0xdeadbeef ^ gpu.pramin.read32(a.start + 0x100));
    gpu.pramin.writeBytes(a.start + MiB, new Uint8Array(16).fill(0x5a));
    const c = gpu.pramin.compare(a.start, file);
    assert.equal(c.same, false);
    assert.equal(c.differentRanges, 2);
    assert.equal(c.differentWords, 5);
    assert.deepEqual(c.ranges, [[a.start + 0x100, a.start + 0x104], [
      a.start + MiB,
      a.start + MiB + 16,
    ]]);
    assert.deepEqual(c.words[0], {
      address: a.start + 0x100,
      file: dv.getUint32(64 + 0x100, true),
      vram: gpu.pramin.read32(a.start + 0x100),
    });
    assert.match(Deno.inspect(c), /^5 words differ in 2 ranges: VRAM \[/);
    const loaded = gpu.pramin.load(a.start, file);
    assert.equal(loaded.header!.addr, a.start);
    assert.match(Deno.inspect(loaded), /^loaded \[0x/);
    assert.deepEqual(gpu.pramin.readBytes(a.start, size), data);
    // To another address.
    gpu.pramin.load(a.start + 64 * KiB, file);
    assert.deepEqual(gpu.pramin.readBytes(a.start + 64 * KiB, size), data);
    Deno.removeSync(dir, { recursive: true });
    gpu.close();
  }
});

Deno.test("pramin.load/compare take a raw file (no header): all its bytes", async () => {
  const gpu = await openGpu();
  const dir = tempDir();
  const a = gpu.mm.buddy.alloc(64 * KiB);
  const raw = pattern(12 * KiB, 3);
  Deno.writeFileSync(`${dir}/raw.bin`, raw);
  const r = gpu.pramin.load(a.start, `${dir}/raw.bin`);
  assert.equal(r.header, null);
  assert.equal(r.size, raw.length);
  assert.deepEqual(gpu.pramin.readBytes(a.start, raw.length), raw);
  assert.equal(gpu.pramin.compare(a.start, `${dir}/raw.bin`).same, true);
  Deno.writeFileSync(`${dir}/odd.bin`, new Uint8Array(6));
  throwsNova(() => gpu.pramin.load(a.start, `${dir}/odd.bin`), "EINVAL", "multiple of 4");
  Deno.removeSync(dir, { recursive: true });
  gpu.close();
});

Deno.test("pramin.compare: the lists stop at maxDifferences, the counts do not", async () => {
  const gpu = await openGpu();
  const dir = tempDir();
  const a = gpu.mm.buddy.alloc(64 * KiB);
  gpu.pramin.writeBytes(a.start, new Uint8Array(64 * KiB));
  gpu.pramin.save(a.start, 64 * KiB, `${dir}/z.vram`);
  // 100 separate words and one run of 8 words.
  for (let i = 0; i < 100; i++) gpu.pramin.write32(a.start + i * 64, 1);
  gpu.pramin.writeBytes(a.start + 32 * KiB, new Uint8Array(32).fill(9));
  const c = gpu.pramin.compare(a.start, `${dir}/z.vram`, { maxDifferences: 3 });
  assert.equal(c.differentWords, 108);
  assert.equal(c.differentRanges, 101);
  assert.equal(c.words.length, 3);
  assert.equal(c.ranges.length, 3);
  assert.match(Deno.inspect(c), /… 98 more ranges/);
  assert.match(Deno.inspect(c), /… 105 more words/);
  const all = gpu.pramin.compare(a.start, `${dir}/z.vram`, { maxDifferences: 1000 });
  assert.deepEqual(all.ranges.at(-1), [a.start + 32 * KiB, a.start + 32 * KiB + 32]);
  throwsNova(
    () => gpu.pramin.compare(a.start, `${dir}/z.vram`, { maxDifferences: -1 }),
    "EINVAL",
    "maxDifferences",
  );
  throwsNova(() => gpu.pramin.compare(a.start, `${dir}/z.vram`, { max: 1 } as never), "EINVAL");
  Deno.removeSync(dir, { recursive: true });
  gpu.close();
});

Deno.test("pramin.load obeys the write policy (firmware's and novamm's VRAM refused unless forced) and read-only sessions", async () => {
  const gpu = await openGpu({ device: "sim:ga102" });
  const dir = tempDir();
  const file = `${dir}/p.vram`;
  Deno.writeFileSync(file, pattern(4 * KiB, 11));
  const vga = gpu.vram.layout[0];
  const before = gpu.pramin.readBytes(vga.start, 4 * KiB);
  gpu.resetStats();
  const e = throwsNova(() => gpu.pramin.load(vga.start, file), "EPERM", vga.name, "pramin.load");
  assert.match(String(e.hint), /force: true/);
  assert.equal(gpu.stats().mmioWrites, 0, "nothing written");
  assert.deepEqual(gpu.pramin.readBytes(vga.start, 4 * KiB), before);
  // novamm's own page tables too.
  gpu.bar1.bringUp();
  const pdb = gpu.bar1.binding!.pdb;
  throwsNova(() => gpu.pramin.load(pdb, file), "EPERM", "page table");
  gpu.pramin.load(vga.start, file, { force: true });
  assert.deepEqual(gpu.pramin.readBytes(vga.start, 4 * KiB), pattern(4 * KiB, 11));
  gpu.pramin.writeBytes(vga.start, before, { force: true });
  gpu.close();

  const ro = await openGpu({ readOnly: true });
  throwsNova(() => ro.pramin.load(ro.mm.buddy.alloc(4096).start, file), "EPERM", "read-only");
  ro.close();
  Deno.removeSync(dir, { recursive: true });
});

Deno.test("pramin.save/load/compare: bad arguments and hostile files change nothing", async () => {
  const gpu = await openGpu();
  const dir = tempDir();
  const a = gpu.mm.buddy.alloc(64 * KiB);
  const good = `${dir}/good.vram`;
  gpu.pramin.save(a.start, 4 * KiB, good);
  const bytes = Deno.readFileSync(good);
  gpu.resetStats();
  const end = gpu.mm.vramSize;
  throwsNova(() => gpu.pramin.save(a.start + 2, 4096, `${dir}/x`), "EINVAL", "4-byte aligned");
  throwsNova(() => gpu.pramin.save(a.start, 0, `${dir}/x`), "EINVAL", "multiple of 4");
  throwsNova(() => gpu.pramin.save(a.start, 6, `${dir}/x`), "EINVAL", "multiple of 4");
  throwsNova(() => gpu.pramin.save(end - 4096, 8192, `${dir}/x`), "EINVAL", "past the end");
  throwsNova(() => gpu.pramin.save(-4, 4, `${dir}/x`), "EINVAL");
  throwsNova(() => gpu.pramin.save(a.start, 4096, ""), "EINVAL", "path");
  throwsNova(() => gpu.pramin.save(a.start, 4096, 7 as never), "EINVAL", "path");
  throwsNova(() => gpu.pramin.load(a.start, `${dir}/missing`), "ENOENT", "missing");
  throwsNova(() => gpu.pramin.load(a.start, dir), "EINVAL", "not a regular file");
  throwsNova(() => gpu.pramin.compare(a.start, dir), "EINVAL", "not a regular file");
  throwsNova(() => gpu.pramin.save(a.start, 4096, `${dir}/no/such/dir/x`), "EIO", "cannot create");
  throwsNova(() => gpu.pramin.load(end - 1024, good), "EINVAL", "past the end");
  throwsNova(() => gpu.pramin.load(a.start + 1, good), "EINVAL", "aligned");
  throwsNova(() => gpu.pramin.load(a.start, good, { forse: true } as never), "EINVAL", "forse");
  const hostile = (name: string, edit: (b: Uint8Array, dv: DataView) => Uint8Array) => {
    const copy = bytes.slice();
    const out = edit(copy, new DataView(copy.buffer));
    Deno.writeFileSync(`${dir}/${name}`, out);
    return `${dir}/${name}`;
  };
  const cut = hostile("cut", (b) => b.subarray(0, b.length - 4));
  throwsNova(() => gpu.pramin.load(a.start, cut), "EINVAL", "cut short");
  throwsNova(() => gpu.pramin.compare(a.start, cut), "EINVAL", "cut short");
  const pad = hostile("pad", (b) => new Uint8Array([...b, 0, 0, 0, 0]));
  throwsNova(() => gpu.pramin.load(a.start, pad), "EINVAL", "trailing");
  const newer = hostile("newer", (b, dv) => (dv.setUint32(8, 99, true), b));
  throwsNova(() => gpu.pramin.load(a.start, newer), "EINVAL", "offset 8", "version 99");
  const head = hostile("head", (b) => b.subarray(0, 20));
  throwsNova(() => gpu.pramin.load(a.start, head), "EINVAL", "cut short at offset 20");
  const huge = hostile("huge", (b, dv) => (dv.setBigUint64(24, 1n << 60n, true), b));
  throwsNova(() => gpu.pramin.load(a.start, huge), "EINVAL", "offset 16");
  const hdr = hostile("hdr", (b, dv) => (dv.setUint32(12, 4096, true), b));
  throwsNova(() => gpu.pramin.load(a.start, hdr), "EINVAL", "offset 12");
  const s = gpu.stats();
  assert.equal(s.mmioReads + s.mmioWrites, 0, "no MMIO for any of them");
  assert.deepEqual(
    [...Deno.readDirSync(dir)].map((e) => e.name).filter((n) => n.startsWith("x")),
    [],
  );
  Deno.removeSync(dir, { recursive: true });
  gpu.close();
});

Deno.test("pramin.save: Ctrl-C stops it and leaves no file (nor a partial one)", async () => {
  const gpu = await openGpu();
  const dir = tempDir();
  const a = gpu.mm.buddy.alloc(16 * MiB);
  const word = new Int32Array(new SharedArrayBuffer(4));
  let calls = 0;
  gpu.pramin.progress = (done) => {
    calls++;
    if (done >= 4 * MiB) Atomics.store(word, 0, 1);
  };
  setInterruptWord(word);
  try {
    throwsNova(() => gpu.pramin.save(a.start, 16 * MiB, `${dir}/big.vram`), "EINTR");
  } finally {
    setInterruptWord(null);
    gpu.pramin.progress = null;
  }
  assert.equal(calls, 4, "progress per MiB until the interrupt");
  assert.deepEqual([...Deno.readDirSync(dir)], []);
  assert.equal(gpu.pramin.busy, false, "the window was given back");
  Deno.removeSync(dir, { recursive: true });
  gpu.close();
});
