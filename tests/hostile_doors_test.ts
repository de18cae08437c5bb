/**
 * The doors issue 9 found open, each shut and pinned here: strings at
 * registers, typos in option bags, writes back of PRI-error values, empty
 * resource files, tiny FB sizes, the object prototype as a profile, BAR1's
 * address space destroyed from under it, and hints for closed objects.
 */

import assert from "node:assert/strict";
import { NovaError, openGpu } from "../mod.ts";
import { formatError } from "../cli/common.ts";
import { bootedGa102Bar0, ga102, makeFakeSysfs } from "./fake_sysfs.ts";
import { runDeno, throwsNova, writeU32 } from "./util.ts";

Deno.test("doors: strings and bigints never reach a register; values must be numbers", async () => {
  using gpu = await openGpu();
  const before = gpu.stats();
  throwsNova(() => gpu.bar0.write32("0x1700" as never, 0x10), "EINVAL", '"0x1700" is a string');
  throwsNova(() => gpu.bar0.read32(4096n as never), "EINVAL", "0x1000n is a bigint");
  throwsNova(
    () => gpu.bar0.write32(0x1700, "16" as never),
    "EINVAL",
    '"16" is not an integer number',
  );
  throwsNova(
    () => gpu.pramin.writeBytes(0x100000, new Uint16Array(4) as never),
    "EINVAL",
    "Uint16Array",
  );
  assert.deepEqual(gpu.stats(), before, "no MMIO access for any of them");
  assert.equal(gpu.sim!.praminBase, 0);
});

Deno.test("doors: typos in option bags are EINVAL naming the key (and the likely one)", async () => {
  const e = await openGpu({ readonly: true } as never).catch((e) => e);
  assert.match(
    formatError(e),
    /unknown key "readonly" in openGpu options; known: .*\nhint: did you mean readOnly\?/,
  );
  using gpu = await openGpu();
  throwsNova(() => gpu.mm.createVmm({ vasize: 1n << 40n } as never), "EINVAL", '"vasize"');
  const a = gpu.mm.buddy.alloc(65536);
  throwsNova(() => gpu.bar1.map(a, { writeable: true } as never), "EINVAL", '"writeable"');
  throwsNova(() => gpu.bar1.map(a, { writable: "false" } as never), "EINVAL", "must be a boolean");
  assert.equal(gpu.bar1.mode, "physical", "a refused map brings nothing up");
  for (
    const [code, expr] of [
      ["EINVAL", "mm.createVmm({ vasize: 1n << 40n })"],
      ["EINVAL", "bar1.map(mm.buddy.alloc(65536), { writeable: true })"],
    ]
  ) {
    const r = await runDeno("repl.ts", ["--eval", expr]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, new RegExp(`^error: ${code}: unknown key "(vasize|writeable)"`));
  }
});

Deno.test("doors: a PRI-error window register is never saved or written back", async () => {
  using gpu = await openGpu();
  const sim = gpu.sim!;
  // Make the window register read a PRI error (a protected or dead register on a card).
  const real = sim.bar0.read32.bind(sim.bar0);
  (sim.bar0 as { read32: (o: number) => number }).read32 = (o) =>
    o === 0x1700 ? 0xbadf5040 : real(o);
  const writes = gpu.stats().mmioWrites;
  throwsNova(() => gpu.pramin.window(), "EIO", "NV_PBUS_BAR0_WINDOW (0x1700) read 0xbadf5040");
  assert.equal(gpu.stats().mmioWrites, writes);
  (sim.bar0 as { read32: (o: number) => number }).read32 = real;
});

Deno.test("doors: PRAMIN views past VRAM, pin after free, sim:constructor", async () => {
  using gpu = await openGpu();
  throwsNova(() => gpu.pramin.view(30 * 2 ** 30), "EINVAL", "past the end of VRAM");
  const a = gpu.mm.buddy.alloc(4096);
  a.free();
  throwsNova(() => a.pin("test"), "EINVAL", "has been freed");
  const e = await openGpu({ device: "sim:constructor" }).catch((e) => e);
  assert.ok(e instanceof NovaError && /unknown simulator profile "constructor"/.test(e.message));
});

Deno.test("doors: an empty resource file and a tiny FB are refused at open", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const fn = ga102("0000:65:00.0");
    fn.bars[0].fileSize = 0x1000000;
    const root = makeFakeSysfs(dir, [fn]);
    const bar0 = `${root}/0000:65:00.0/resource0`;
    bootedGa102Bar0(bar0, writeU32, { fbSizeMiB: 1 });
    const tiny = await openGpu({ device: "0000:65:00.0", sysfsRoot: root, lockDir: dir }).catch((
      e,
    ) => e);
    assert.match(
      String(tiny),
      /EIO: NV_USABLE_FB_SIZE_IN_MB reports 0x100000 bytes of VRAM \(expected 0x4000000/,
    );
    Deno.truncateSync(bar0, 0);
    const empty = await openGpu({ device: "0000:65:00.0", sysfsRoot: root, lockDir: dir }).catch((
      e,
    ) => e);
    assert.match(String(empty), /ENODEV: BAR0 of 0000:65:00.0: .*resource0 is empty \(0 bytes\)/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("doors: BAR1's address space refuses destroy; closed objects say so without a device hint", async () => {
  const gpu = await openGpu({ device: "sim:ga102:gsp" });
  throwsNova(() => gpu.mm.destroyVmm(gpu.bar1.vmm), "EPERM", "BAR1's address space");
  throwsNova(() => gpu.bar1.vmm.destroy(), "EPERM", "BAR1's address space");
  const bare = await openGpu();
  bare.bar1.bringUp();
  throwsNova(() => bare.bar1.vmm.destroy(), "EPERM", "novamm's BAR1 address space");
  bare.close();
  assert.equal(bare.sim!.bar1Mode, "physical", "close still tears it down");
  const w = gpu.pramin.window();
  w.close();
  const e = throwsNova(() => w.read32(0x100000), "ENODEV", "has been closed");
  assert.doesNotMatch(formatError(e), /deno task list/);
  gpu.close();
  const c = throwsNova(() => gpu.bar0.read32(0), "ENODEV", "is closed");
  assert.doesNotMatch(formatError(c), /hint/);
});

Deno.test("doors: an address space opened over an allocation pins it until destroyed", async () => {
  using gpu = await openGpu();
  const a = gpu.mm.buddy.alloc(4 * 4096);
  gpu.pramin.writeBytes(a.start, new Uint8Array(4096)); // an empty root
  const vmm = gpu.mm.openVmm({ pdb: a.start, vaSize: 1n << 30n, name: "hand-built" });
  throwsNova(() => a.free(), "EBUSY", "the page directory of hand-built");
  gpu.mm.destroyVmm(vmm);
  a.free();
});
