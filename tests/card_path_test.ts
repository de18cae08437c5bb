// The real card path end to end on a fake sysfs tree: openGpu() by PCI address
// mmaps resource0/resource1 files through libc and runs the same code above hw/.
import assert from "node:assert/strict";
import { openGpu } from "../mod.ts";
import { bootedGa102Bar0, ga102, makeFakeSysfs } from "./fake_sysfs.ts";
import { writeU32 } from "./util.ts";

function readU32(file: string, offset: number): number {
  return new DataView(Deno.readFileSync(file).buffer).getUint32(offset, true);
}

async function fakeCard(driver?: string, extra: { bootVga?: boolean; wc?: boolean } = {}) {
  const dir = await Deno.makeTempDir();
  const fn = { ...ga102("0000:65:00.0", driver), ...extra };
  fn.bars[0].fileSize = 0x1000000; // the whole 16 MiB BAR0 (sparse file)
  const root = makeFakeSysfs(dir, [fn]);
  const bar0 = `${root}/0000:65:00.0/resource0`;
  bootedGa102Bar0(bar0, writeU32);
  return { dir, root, bar0 };
}

Deno.test("card path: openGpu on a fake card decodes the chip and reaches PRAMIN through mmap", async () => {
  const { dir, root, bar0 } = await fakeCard();
  const gpu = await openGpu({ device: "65:00.0", sysfsRoot: root, lockDir: dir });
  assert.equal(gpu.device.kind, "pci");
  assert.equal(gpu.chip.name, "GA102");
  assert.equal(gpu.vram.size, 24 * 2 ** 30);
  assert.equal(gpu.bar1Binding, null, "BAR1_BLOCK reads 0: BAR1 is in physical mode");
  assert.equal(gpu.bar1.mode, "physical");
  // NV_PDISP_VGA_WORKSPACE_BASE reads 0 (not valid): the top MiB is assumed firmware's.
  assert.ok(gpu.vram.usable.end <= gpu.vram.size - 2 ** 20, "usable region kept clear of firmware");
  assert.equal(gpu.vram.usable.start, 256 * 1024, "above the first 256 KiB");
  {
    using w = gpu.pramin.window({ force: true }); // test data anywhere, tables too
    w.write32(0x1000, 0xdeadbeef);
    assert.equal(w.read32(0x1000), 0xdeadbeef);
  }
  gpu.close();
  assert.equal(readU32(bar0, 0x700000 + 0x1000), 0xdeadbeef, "the write landed in the aperture");
  assert.equal(readU32(bar0, 0x1700), 0, "window register at base 0");
  await Deno.remove(dir, { recursive: true });
});

Deno.test("card path: a second writing session is refused by the lock file; read-only is fine", async () => {
  const { dir, root } = await fakeCard();
  const a = await openGpu({ device: "0000:65:00.0", sysfsRoot: root, lockDir: dir });
  await assert.rejects(
    openGpu({ device: "0000:65:00.0", sysfsRoot: root, lockDir: dir }),
    /EBUSY: 0000:65:00.0 is in use by another novamm session \(pid \d+/,
  );
  const ro = await openGpu({
    device: "0000:65:00.0",
    sysfsRoot: root,
    lockDir: dir,
    readOnly: true,
  });
  assert.equal(ro.chip.name, "GA102");
  assert.throws(() => ro.bar0.write32(0x1700, 1), /EPERM/);
  ro.close();
  a.close();
  const b = await openGpu({ device: "0000:65:00.0", sysfsRoot: root, lockDir: dir });
  b.close();
  await Deno.remove(dir, { recursive: true });
});

Deno.test("card path: a snapshot of a card records its PCI subsystem ids (null when sysfs has none)", async () => {
  const { takeSnapshot } = await import("../mod.ts");
  const { encodeSnapshot, decodeSnapshot } = await import("../hw/snap/format.ts");
  const { dir, root } = await fakeCard();
  try {
    let gpu = await openGpu({ device: "65:00.0", sysfsRoot: root, lockDir: dir, readOnly: true });
    try {
      assert.deepEqual(
        [gpu.device.pci!.subsystemVendor, gpu.device.pci!.subsystemDevice],
        [0x10de, 0x147d],
      );
      const snap = await takeSnapshot(gpu);
      assert.deepEqual(snap.chip.pci, {
        bdf: "0000:65:00.0",
        vendor: 0x10de,
        device: 0x2204,
        subsystemVendor: 0x10de,
        subsystemDevice: 0x147d,
      });
      // They survive the file format.
      const back = await decodeSnapshot(await encodeSnapshot(snap));
      assert.deepEqual(back.chip.pci, snap.chip.pci);
    } finally {
      gpu.close();
    }
    Deno.removeSync(`${root}/0000:65:00.0/subsystem_vendor`);
    Deno.writeTextFileSync(`${root}/0000:65:00.0/subsystem_device`, "junk\n");
    gpu = await openGpu({ device: "65:00.0", sysfsRoot: root, lockDir: dir, readOnly: true });
    try {
      const snap = await takeSnapshot(gpu);
      assert.equal(snap.chip.pci!.subsystemVendor, null);
      assert.equal(snap.chip.pci!.subsystemDevice, null);
    } finally {
      gpu.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("card path: a card bound to nvidia is refused unless forced", async () => {
  const { dir, root } = await fakeCard("nvidia");
  await assert.rejects(
    openGpu({ device: "0000:65:00.0", sysfsRoot: root, lockDir: dir }),
    /EBUSY: 0000:65:00.0 is bound to the nvidia kernel driver/,
  );
  const gpu = await openGpu({
    device: "0000:65:00.0",
    sysfsRoot: root,
    lockDir: dir,
    force: true,
    readOnly: true,
  });
  assert.equal(gpu.chip.name, "GA102");
  gpu.close();
  await Deno.remove(dir, { recursive: true });
});

Deno.test("card path: read-only open works when BAR1 is virtual (the window cannot move to read it)", async () => {
  const { dir, root, bar0 } = await fakeCard();
  // NV_PBUS_BAR1_BLOCK: virtual mode, instance block at 23 GiB (outside the PRAMIN window at 0).
  writeU32(bar0, 0x1704, (0x80000000 | (23 * 2 ** 30) / 4096) >>> 0);
  const gpu = await openGpu({
    device: "0000:65:00.0",
    sysfsRoot: root,
    lockDir: dir,
    readOnly: true,
  });
  assert.equal(gpu.chip.name, "GA102");
  assert.ok(gpu.vram.usable.end <= 23 * 2 ** 30, "below the bound instance block");
  assert.throws(
    () => gpu.bar1Binding,
    /EPERM: VRAM \[0x5c0000000, 0x5c0100000\) is outside the PRAMIN window \(now at \[0x0, 0x100000\)\)/,
  );
  gpu.close();
  await Deno.remove(dir, { recursive: true });
});

Deno.test("card path: physical BAR1 bulk copies go through resource1_wc, counted per 32-bit word", async () => {
  for (const wc of [true, false]) {
    const { dir, root } = await fakeCard(undefined, { wc, bootVga: true });
    const gpu = await openGpu({ device: "0000:65:00.0", sysfsRoot: root, lockDir: dir });
    assert.equal(gpu.device.pci!.wc.includes(1), wc);
    assert.equal(gpu.device.bar1.hasBlockCopies, wc, "wide copies only through the WC mapping");
    assert.equal(gpu.device.bar0.hasBlockCopies, false, "never on BAR0");
    assert.equal(gpu.device.bootVga, true, "sysfs boot_vga = 1");
    assert.ok(gpu.vram.layout.some((r) => r.name === "console"));
    // The fake BAR1 file is 320 KiB: physical BAR1 reaches VRAM below it; usable starts higher
    // on a boot VGA card, so reach it with the forced view.
    const phys = gpu.bar1.physical.forced;
    const data = new Uint8Array(0x10000).map((_, i) => (i * 31 + 7) & 0xff);
    const before = gpu.stats();
    phys.writeBytes(0x40000, data);
    const after = gpu.stats();
    assert.equal(after.mmioWrites - before.mmioWrites, 0x10000 / 4, "one count per 32-bit word");
    const file = Deno.readFileSync(`${root}/0000:65:00.0/resource1`).subarray(0x40000, 0x50000);
    assert.deepEqual(file, data, "the bytes are in the BAR (the file behind both mappings)");
    assert.deepEqual(phys.readBytes(0x40000, 0x10000), data);
    assert.equal(phys.read32(0x40004), new DataView(data.buffer).getUint32(4, true));
    phys.writeBytes(0x40001, new Uint8Array([1, 2, 3, 4, 5, 6]));
    assert.deepEqual(
      phys.readBytes(0x40000, 8),
      new Uint8Array([data[0], 1, 2, 3, 4, 5, 6, data[7]]),
    );
    assert.throws(() => gpu.bar1.map([0x40]), /EPERM: BAR1 is physical on the boot VGA device/);
    gpu.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("card path: a Blackwell card waits for the BAR firewall (NVIDIA DVSEC + 0x8 bit 20) before BAR0", async () => {
  const { encodeBoot } = await import("../hw/chip.ts");
  const { fakeConfigSpace, FLAGS_MEM32, FLAGS_MEM64_PREF } = await import("./fake_sysfs.ts");
  const gb202 = encodeBoot(0x1b2);
  for (const dvsec of [true, false]) {
    const dir = await Deno.makeTempDir();
    const config = dvsec
      ? fakeConfigSpace(0x10de, 0x2b85, [
        { offset: 0x100, id: 0x1, next: 0x180 },
        { offset: 0x180, id: 0x23, next: 0, body: [0x10de, 0x0] }, // firewall down (bit 20 clear)
      ])
      : new Uint8Array(64); // an unprivileged read: no extended config space
    const root = makeFakeSysfs(dir, [{
      bdf: "0000:41:00.0",
      vendor: 0x10de,
      device: 0x2b85,
      class: 0x030000,
      config,
      bars: [
        { index: 0, start: 0xfa000000n, size: 0x1000000n, flags: FLAGS_MEM32, fileSize: 0x1000000 },
        { index: 1, start: 0x38000000000n, size: 0x800000000n, flags: FLAGS_MEM64_PREF },
      ],
    }]);
    const bar0 = `${root}/0000:41:00.0/resource0`;
    for (
      const [off, v] of [
        [0x0, gb202.boot0],
        [0xa00, gb202.boot42],
        [0x1183a4, 32 * 1024],
        [0xad00bc, 0xff], // GB20x FSP boot complete
        [0x8a004c, 1], // memory clear done
        [0xb80f60, 0],
        [0xb80f64, 0],
        [0x820c04, 1], // display fused off: nothing to read at 0x625F04
      ]
    ) writeU32(bar0, off, v);
    const gpu = await openGpu({ device: "41:00.0", sysfsRoot: root, lockDir: dir });
    try {
      assert.equal(gpu.chip.name, "GB202");
      const fw = gpu.device.barFirewall!;
      assert.equal(fw.dvsecOffset, dvsec ? 0x180 : null);
      // Without the DVSEC, BOOT_0 answered: no 3 s wait (gpu-admin-tools does the same).
      assert.ok(fw.waitedMs < 1000);
      assert.equal(fw.warning === null, dvsec);
      assert.equal(gpu.device.memClear.value, 1);
      assert.equal(gpu.family.name, "GB20x");
    } finally {
      gpu.close();
      await Deno.remove(dir, { recursive: true });
    }
  }
});
