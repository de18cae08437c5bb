// The real-hardware path (hw/libc.ts + hw/mapped.ts): open + mmap of sysfs
// resourceN files, exercised on a fake tree of ordinary files. The bytes are
// checked by reading the files independently of the mapping.

import assert from "node:assert/strict";
import { closeFd, mmapFile, munmap, openFile } from "../hw/libc.ts";
import { MappedBar, openBar, openBarMmio } from "../hw/mapped.ts";
import { Mmio, newCounters } from "../hw/mmio.ts";
import { findGpu, type PciFunction } from "../hw/pci.ts";
import { ga102, makeFakeSysfs } from "./fake_sysfs.ts";
import { throwsNova } from "./util.ts";

const BAR0_FILE = 0x60000; // ga102(): resource0 is 384 KiB, the BAR 16 MiB
const BAR1_FILE = 0x50000; // resource1 is 320 KiB, the BAR 32 GiB

interface Fixture {
  dir: string;
  root: string;
  /** Unbound GA102. */
  free: PciFunction;
  /** GA102 bound to nvidia. */
  bound: PciFunction;
  [Symbol.asyncDispose](): Promise<void>;
}

async function fixture(): Promise<Fixture> {
  const dir = await Deno.makeTempDir({ prefix: "novamm_mapped_" });
  const root = makeFakeSysfs(dir, [ga102("0000:17:00.0"), ga102("0000:65:00.0", "nvidia")]);
  return {
    dir,
    root,
    free: findGpu("17:00.0", { sysfsRoot: root }),
    bound: findGpu("65:00.0", { sysfsRoot: root }),
    async [Symbol.asyncDispose]() {
      await Deno.remove(dir, { recursive: true });
    },
  };
}

function fileBytes(path: string, offset: number, length: number): number[] {
  return [...Deno.readFileSync(path).subarray(offset, offset + length)];
}

function pokeFile(path: string, offset: number, bytes: number[]): void {
  using f = Deno.openSync(path, { write: true });
  f.seekSync(offset, Deno.SeekMode.Start);
  f.writeSync(new Uint8Array(bytes));
}

// Counts this process's fds open on files under `dir` (other test modules may
// run in parallel threads of this process, so a plain fd count would be racy).
function openFds(dir: string): number {
  let n = 0;
  for (const e of Deno.readDirSync("/proc/self/fd")) {
    try {
      if (Deno.readLinkSync(`/proc/self/fd/${e.name}`).startsWith(dir + "/")) n++;
    } catch {
      // closed meanwhile by another thread
    }
  }
  return n;
}

function mapsOf(path: string): number {
  return Deno.readTextFileSync("/proc/self/maps").split("\n").filter((l) => l.endsWith(path))
    .length;
}

Deno.test("openBar: size is min(BAR, file, length); a MmioBackend", async () => {
  await using fx = await fixture();
  const b0 = openBar(fx.free, 0);
  assert.ok(b0 instanceof MappedBar);
  assert.equal(b0.size, BAR0_FILE);
  assert.equal(b0.path, `${fx.free.path}/resource0`);
  assert.equal(b0.index, 0);
  assert.equal(b0.bdf, "0000:17:00.0");
  b0.close();
  using b1 = openBar(fx.free, 1);
  assert.equal(b1.size, BAR1_FILE); // the 32 GiB BAR is capped by the 320 KiB file
  using small = openBar(fx.free, 1, { length: 0x1000 });
  assert.equal(small.size, 0x1000);
  using odd = openBar(fx.free, 3, { length: 0x1006 });
  assert.equal(odd.size, 0x1006); // the 32-bit view stops at 0x1004
  assert.equal(odd.read32(0x1000), 0);
});

Deno.test("writes through Mmio land little-endian at the exact offsets of the file", async () => {
  await using fx = await fixture();
  using bar0 = openBarMmio(fx.free, 0);
  const file = `${fx.free.path}/resource0`;
  bar0.write32(0x1000, 0xdeadbeef);
  bar0.write16(0x1006, 0xcafe);
  bar0.write8(0x1009, 0xa5);
  bar0.write32(0x5fffc, 0x01020304); // last word of the mapping
  bar0.write32(0x2000, -1); // int32 -1 is 0xffffffff
  assert.deepEqual(fileBytes(file, 0x1000, 12), [
    0xef,
    0xbe,
    0xad,
    0xde,
    0,
    0,
    0xfe,
    0xca,
    0,
    0xa5,
    0,
    0,
  ]);
  assert.deepEqual(fileBytes(file, 0x5fffc, 4), [4, 3, 2, 1]);
  assert.deepEqual(fileBytes(file, 0x2000, 4), [0xff, 0xff, 0xff, 0xff]);
  // Nothing else in the file changed.
  const all = Deno.readFileSync(file);
  const touched = all.reduce((n, b) => n + (b !== 0 ? 1 : 0), 0);
  assert.equal(touched, 4 + 2 + 1 + 4 + 4);
  // The other BAR's file is separate.
  assert.equal(Deno.readFileSync(`${fx.free.path}/resource1`).some((b) => b !== 0), false);
});

Deno.test("reads see bytes written to the file independently, all widths", async () => {
  await using fx = await fixture();
  using bar1 = openBarMmio(fx.free, 1);
  const file = `${fx.free.path}/resource1`;
  pokeFile(file, 0x4ff0, [0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88]);
  assert.equal(bar1.read32(0x4ff0), 0x44332211);
  assert.equal(bar1.read32(0x4ff4), 0x88776655); // unsigned, bit 31 set
  assert.equal(bar1.read16(0x4ff2), 0x4433);
  assert.equal(bar1.read16(0x4ff6), 0x8877);
  assert.equal(bar1.read8(0x4ff5), 0x66);
  assert.equal(bar1.read8(0x4ff7), 0x88);
  // A second change to the same word is seen by the next read (no stale value).
  pokeFile(file, 0x4ff0, [0xaa]);
  assert.equal(bar1.read32(0x4ff0), 0x443322aa);
  assert.equal(bar1.read32(0x4ff0), 0x443322aa);
});

Deno.test("the raw backend reads back-to-back accesses from memory every time", async () => {
  await using fx = await fixture();
  using bar = openBar(fx.free, 0);
  const file = `${fx.free.path}/resource0`;
  for (let i = 0; i < 2000; i++) {
    pokeFile(file, 0x40, [i & 0xff, i >> 8]);
    const a = bar.read32(0x40);
    const b = bar.read16(0x40);
    const c = bar.read8(0x41);
    assert.equal(a, i);
    assert.equal(b, i);
    assert.equal(c, i >> 8);
    bar.write32(0x44, i);
    bar.write32(0x44, i + 1);
  }
  assert.deepEqual(fileBytes(file, 0x44, 2), [2000 & 0xff, 2000 >> 8]);
});

Deno.test("alignment and bounds errors come from Mmio before any access", async () => {
  await using fx = await fixture();
  const counters = newCounters();
  using bar0 = openBarMmio(fx.free, 0, { counters });
  const file = `${fx.free.path}/resource0`;
  throwsNova(() => bar0.read32(0x1002), "EINVAL", "not aligned to the 4-byte");
  throwsNova(() => bar0.write16(0x1001, 1), "EINVAL", "not aligned to the 2-byte");
  throwsNova(() => bar0.write32(0x1001, 1), "EINVAL", "0x1001");
  // The mapping ends at the file size, not at the 16 MiB the BAR claims.
  throwsNova(() => bar0.read32(BAR0_FILE), "EINVAL", "past the end of the 0x60000-byte");
  throwsNova(() => bar0.write8(BAR0_FILE, 1), "EINVAL", "past the end");
  throwsNova(() => bar0.read8(-1), "EINVAL");
  throwsNova(() => bar0.write32(0x100, 0x1_0000_0000), "EINVAL", "does not fit in 32 bits");
  throwsNova(() => bar0.write8(0x100, 0x100), "EINVAL", "does not fit in 8 bits");
  assert.deepEqual(counters, { mmioReads: 0, mmioWrites: 0, windowMoves: 0 });
  assert.equal(Deno.readFileSync(file).some((b) => b !== 0), false);
  assert.equal(bar0.read8(BAR0_FILE - 1), 0);
  assert.equal(bar0.read16(BAR0_FILE - 2), 0);
});

Deno.test("Mmio counts reads and writes over the mapped backend (shared between BARs)", async () => {
  await using fx = await fixture();
  const counters = newCounters();
  using bar0 = openBarMmio(fx.free, 0, { counters });
  using bar1 = new Mmio("bar1", openBar(fx.free, 1), { counters });
  assert.equal(bar0.name, "bar0");
  for (let i = 0; i < 10; i++) bar0.write32(i * 4, i);
  bar1.write16(0, 1);
  bar1.write8(3, 1);
  let sum = 0;
  for (let i = 0; i < 10; i++) sum += bar0.read32(i * 4);
  sum += bar1.read16(0) + bar1.read8(3);
  assert.equal(sum, 45 + 2);
  assert.deepEqual(counters, { mmioReads: 12, mmioWrites: 12, windowMoves: 0 });
  const seen: string[] = [];
  bar0.tracer = (a) => seen.push(`${a.op}${a.width * 8}@${a.offset.toString(16)}=${a.value}`);
  bar0.write32(0x40, 7);
  bar0.read32(0x40);
  assert.deepEqual(seen, ["w32@40=7", "r32@40=7"]);
});

Deno.test("driver refusal: nvidia-bound GPU is EBUSY; force maps it", async () => {
  await using fx = await fixture();
  const fds = openFds(fx.dir);
  throwsNova(
    () => openBar(fx.bound, 0),
    "EBUSY",
    "0000:65:00.0 is bound to the nvidia kernel driver; unbind it first: echo 0000:65:00.0 > ",
  );
  assert.equal(openFds(fx.dir), fds); // refused before open()
  using forced = openBarMmio(fx.bound, 0, { force: true, readOnly: true });
  assert.equal(forced.read32(0), 0);
});

Deno.test("read-only: O_RDONLY + PROT_READ; writes are EPERM, no SIGSEGV, file unchanged", async () => {
  await using fx = await fixture();
  const file = `${fx.free.path}/resource0`;
  pokeFile(file, 0x10, [1, 2, 3, 4]);
  const before = Deno.readFileSync(file);
  const counters = newCounters();
  using ro = openBarMmio(fx.free, 0, { readOnly: true, counters });
  assert.equal(ro.readOnly, true);
  assert.equal(ro.read32(0x10), 0x04030201);
  throwsNova(() => ro.write32(0x10, 0xdeadbeef), "EPERM", "read-only");
  throwsNova(() => ro.write16(0x10, 1), "EPERM");
  throwsNova(() => ro.write8(0x10, 1), "EPERM");
  assert.deepEqual(counters, { mmioReads: 1, mmioWrites: 0, windowMoves: 0 });
  // The backend itself refuses too: a store to a PROT_READ page would kill the process.
  using raw = openBar(fx.free, 0, { readOnly: true });
  throwsNova(() => raw.write32(0x10, 0), "EPERM", "BAR0 of 0000:17:00.0 is mapped read-only");
  throwsNova(() => raw.write16(0x10, 0), "EPERM");
  throwsNova(() => raw.write8(0x10, 0), "EPERM");
  assert.deepEqual(Deno.readFileSync(file), before);
  // Really PROT_READ: /proc/self/maps shows r--s for the mapping.
  const line = Deno.readTextFileSync("/proc/self/maps").split("\n").filter((l) => l.endsWith(file));
  assert.equal(line.length, 2);
  for (const l of line) assert.match(l.split(/\s+/)[1], /^r-[-]s$/);
});

Deno.test("bad BARs: absent, I/O port, out of range, bad length, missing file", async () => {
  await using fx = await fixture();
  const fds = openFds(fx.dir);
  throwsNova(() => openBar(fx.free, 2), "ENODEV", "BAR2 of 0000:17:00.0 does not exist");
  throwsNova(() => openBar(fx.free, 4), "ENODEV", "present: BAR0 (0x1000000 bytes), BAR1");
  throwsNova(() => openBar(fx.free, 5), "EINVAL", "BAR5 of 0000:17:00.0 is an I/O-port BAR");
  throwsNova(() => openBar(fx.free, 6), "EINVAL", "BAR index 0x6 is not one of 0..5");
  throwsNova(() => openBar(fx.free, 1.5), "EINVAL", "1.5");
  throwsNova(() => openBar(fx.free, 0, { length: 0 }), "EINVAL", "mapping length");
  Deno.removeSync(`${fx.free.path}/resource3`);
  throwsNova(() => openBar(fx.free, 3), "ENODEV", `no resource file ${fx.free.path}/resource3`);
  assert.equal(openFds(fx.dir), fds);
});

Deno.test("close: munmap + close once; later accesses are ENODEV, not a crash", async () => {
  await using fx = await fixture();
  const file = `${fx.free.path}/resource0`;
  const fds = openFds(fx.dir);
  const raw = openBar(fx.free, 0);
  const bar0 = new Mmio("bar0", raw);
  assert.equal(openFds(fx.dir), fds + 1);
  assert.equal(mapsOf(file), 1);
  bar0.write32(0, 5);
  bar0.close();
  bar0.close();
  raw.close();
  assert.equal(raw.closed, true);
  assert.equal(openFds(fx.dir), fds);
  assert.equal(mapsOf(file), 0);
  throwsNova(() => bar0.read32(0), "ENODEV", "closed");
  throwsNova(() => raw.read32(0), "ENODEV", "BAR0 of 0000:17:00.0 is unmapped");
  throwsNova(() => raw.write8(0, 1), "ENODEV");
  assert.deepEqual(fileBytes(file, 0, 4), [5, 0, 0, 0]);
  {
    using _scoped = openBar(fx.free, 1);
    assert.equal(openFds(fx.dir), fds + 1);
  }
  assert.equal(openFds(fx.dir), fds);
});

Deno.test("libc: open/mmap failures name errno, path and remedy", async () => {
  await using fx = await fixture();
  throwsNova(() => openFile(`${fx.dir}/missing`), "ENODEV", `no such file ${fx.dir}/missing`);
  throwsNova(() => openFile(fx.dir), "EIO", /EISDIR \(Is a directory\)/);
  throwsNova(() => openFile("a\0b"), "EINVAL", "NUL");
  const file = `${fx.free.path}/resource0`;
  const fd = openFile(file, { readOnly: true });
  try {
    // A writable shared mapping of an O_RDONLY fd is refused by the kernel.
    throwsNova(() => mmapFile(fd, 0x1000), "EPERM", /EACCES \(Permission denied\)/);
    throwsNova(() => mmapFile(fd, 0), "EINVAL", "mmap length");
    throwsNova(() => mmapFile(fd, 0x1000, { offset: 0x100 }), "EINVAL", "4 KiB page");
    const m = mmapFile(fd, 0x2000, { readOnly: true, offset: 0x1000 });
    pokeFile(file, 0x1004, [9]);
    assert.equal(new Uint8Array(Deno.UnsafePointerView.getArrayBuffer(m.pointer, 8))[4], 9);
    munmap(m);
  } finally {
    closeFd(fd);
  }
  // A closed fd number can be reused at once by a parallel test in this process: use one
  // far above any the process holds instead.
  const never = 1 << 20;
  throwsNova(() => mmapFile(never, 0x1000, { readOnly: true }), "EIO", /EBADF/);
  throwsNova(() => closeFd(never), "EIO", /close of fd \d+ failed: EBADF/);
});

async function runDeno(
  args: string[],
  options: { cwd: string; env?: Record<string, string>; asNobody?: boolean },
): Promise<{ code: number; out: string }> {
  const deno = [Deno.execPath(), ...args];
  const cmd = options.asNobody
    ? ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", ...deno]
    : deno;
  const out = await new Deno.Command(cmd[0], {
    args: cmd.slice(1),
    cwd: options.cwd,
    env: options.env,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  return { code: out.code, out: text };
}

// Prints the NovaError an openBar of 17:00.0 BAR0 raises, as JSON.
function probeScript(root: string): string {
  const pci = new URL("../hw/pci.ts", import.meta.url).href;
  const mapped = new URL("../hw/mapped.ts", import.meta.url).href;
  return `import { findGpu } from ${JSON.stringify(pci)};
import { openBar } from ${JSON.stringify(mapped)};
try {
  openBar(findGpu("17:00.0", { sysfsRoot: ${JSON.stringify(root)} }), 0).close();
  console.log(JSON.stringify({ code: "none" }));
} catch (e) {
  console.log(JSON.stringify({ code: e.code, message: e.message }));
}
`;
}

function lastJson(out: string): { code: string; message?: string } {
  const line = out.trim().split("\n").filter((l) => l.startsWith("{")).pop();
  assert.ok(line !== undefined, out);
  return JSON.parse(line);
}

Deno.test("without --allow-ffi the error says how to run", async () => {
  await using fx = await fixture();
  Deno.writeTextFileSync(`${fx.dir}/probe.ts`, probeScript(fx.root));
  const r = await runDeno(
    ["run", "--no-config", "--no-lock", "--allow-read", "--allow-write", "probe.ts"],
    { cwd: fx.dir },
  );
  assert.equal(r.code, 0, r.out);
  assert.deepEqual(lastJson(r.out), {
    code: "EPERM",
    message: "EPERM: Deno FFI is not allowed: run with --allow-ffi (or -A)",
  });
});

function canSwitchToNobody(): boolean {
  if (Deno.build.os !== "linux" || Deno.uid() !== 0) return false;
  try {
    const probe = ["--reuid=65534", "--regid=65534", "--clear-groups", "true"];
    return new Deno.Command("setpriv", { args: probe }).outputSync().success;
  } catch {
    return false;
  }
}

// Tests run as root, and chmod 000 does not stop root; so as root the case
// runs in a child process switched to uid 65534 (nobody) with setpriv, and is
// skipped only when that is impossible. Non-root runs it directly.
const IS_ROOT = Deno.build.os === "linux" && Deno.uid() === 0;
const AS_NOBODY = canSwitchToNobody();

Deno.test({
  name: "permission denied opening a resource file says to run as root",
  ignore: IS_ROOT && !AS_NOBODY,
  fn: async () => {
    await using fx = await fixture();
    const file = `${fx.free.path}/resource0`;
    Deno.chmodSync(file, 0o000);
    if (!IS_ROOT) {
      throwsNova(
        () => openBar(fx.free, 0),
        "EPERM",
        `permission denied opening ${file}: run as root (sudo) or grant access to the resource file`,
      );
      return;
    }
    Deno.chmodSync(fx.dir, 0o755);
    const home = `${fx.dir}/home`;
    Deno.mkdirSync(home, { mode: 0o777 });
    Deno.chmodSync(home, 0o777);
    Deno.writeTextFileSync(`${fx.dir}/probe.ts`, probeScript(fx.root));
    Deno.chmodSync(`${fx.dir}/probe.ts`, 0o644);
    const r = await runDeno(["run", "--no-config", "--no-lock", "-A", "probe.ts"], {
      cwd: fx.dir,
      env: { HOME: home, DENO_DIR: `${home}/deno`, NO_COLOR: "1" },
      asNobody: true,
    });
    assert.equal(r.code, 0, r.out);
    assert.deepEqual(lastJson(r.out), {
      code: "EPERM",
      message: `EPERM: permission denied opening ${file}: run as root (sudo) or grant access to ` +
        `the resource file`,
    });
  },
});

function twice(bar: MappedBar): number {
  return bar.read32(0x80) !== bar.read32(0x80) ? 1 : 0;
}

// A register read twice must reach the bus twice. V8 merges two back-to-back
// plain loads of one typed-array element once the code is optimised, so this
// watches a word that another thread keeps changing through its own mapping
// and requires the second of two adjacent reads to see a change at least once
// after warm-up. (It fails with plain `u32[i]` loads in MappedBar.)
Deno.test({
  name: "adjacent raw reads are not merged by the JIT (concurrent writer)",
  ignore: navigator.hardwareConcurrency < 2,
  fn: async () => {
    await using fx = await fixture();
    const workerSrc = `${fx.dir}/writer.ts`;
    const mapped = new URL("../hw/mapped.ts", import.meta.url).href;
    const pci = new URL("../hw/pci.ts", import.meta.url).href;
    Deno.writeTextFileSync(
      workerSrc,
      `import { openBar } from ${JSON.stringify(mapped)};
import { findGpu } from ${JSON.stringify(pci)};
self.onmessage = (e) => {
  const bar = openBar(findGpu("17:00.0", { sysfsRoot: e.data }), 0);
  const end = performance.now() + 600;
  let i = 0;
  while (performance.now() < end) bar.write32(0x80, i++ >>> 0);
  bar.close();
  self.postMessage(i);
};
`,
    );
    using bar = openBar(fx.free, 0);
    const worker = new Worker(new URL(`file://${workerSrc}`).href, { type: "module" });
    try {
      let writes = 0;
      const done = new Promise<void>((resolve) => {
        worker.onmessage = (e) => {
          writes = e.data;
          resolve();
        };
      });
      worker.postMessage(fx.root);
      // Wait for the writer to start.
      const start = performance.now();
      while (bar.read32(0x80) === 0 && performance.now() - start < 5000) {
        await new Promise((r) => setTimeout(r, 1));
      }
      const pairs = (n: number) => {
        let differ = 0;
        for (let i = 0; i < n; i++) differ += twice(bar);
        return differ;
      };
      pairs(200_000); // warm-up: let the JIT optimise
      let late = 0;
      const t = performance.now();
      while (performance.now() - t < 250) late += pairs(10_000);
      await done;
      assert.ok(writes > 0);
      assert.ok(late > 0, "two adjacent reads never differed: the second load was elided");
    } finally {
      worker.terminate();
    }
  },
});
