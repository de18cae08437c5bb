// PCI sysfs enumeration (hw/pci.ts) on a fake tree of ordinary files.

import assert from "node:assert/strict";
import {
  checkDriver,
  enableDevice,
  findGpu,
  KERNEL_GPU_DRIVERS,
  listGpus,
  noGpusMessage,
  parseBdf,
  parseResource,
  type PciFunction,
} from "../hw/pci.ts";
import {
  FLAGS_IO,
  FLAGS_MEM32,
  FLAGS_MEM64_PREF,
  ga102,
  makeFakeSysfs,
  resourceText,
} from "./fake_sysfs.ts";
import { throwsNova } from "./util.ts";

async function tree(): Promise<{ dir: string; root: string }> {
  const dir = await Deno.makeTempDir({ prefix: "novamm_pci_" });
  const root = makeFakeSysfs(dir, [
    ga102("0000:65:00.0", "nvidia"),
    // The card's HDMI audio function: NVIDIA, but class 0x040300.
    {
      bdf: "0000:65:00.1",
      vendor: 0x10de,
      device: 0x1aef,
      class: 0x040300,
      driver: "snd_hda_intel",
      bars: [{ index: 0, start: 0xfc080000n, size: 0x4000n, flags: FLAGS_MEM32 }],
    },
    // An Intel NIC.
    {
      bdf: "0000:00:1f.6",
      vendor: 0x8086,
      device: 0x15bc,
      class: 0x020000,
      driver: "e1000e",
      bars: [{ index: 0, start: 0xfd000000n, size: 0x20000n, flags: FLAGS_MEM32 }],
    },
    // A 3D-controller-class H100 with no driver; sorts first.
    {
      bdf: "0000:17:00.0",
      vendor: 0x10de,
      device: 0x2330,
      class: 0x030200,
      bars: [
        { index: 0, start: 0xe2000000n, size: 0x1000000n, flags: FLAGS_MEM32 },
        { index: 2, start: 0x200000000000n, size: 0x2000000000n, flags: FLAGS_MEM64_PREF },
        { index: 4, start: 0x202000000000n, size: 0x2000000n, flags: FLAGS_MEM64_PREF },
      ],
    },
    // Another domain, bound to vfio-pci; sorts last despite bus 01.
    ga102("0001:01:00.0", "vfio-pci"),
  ]);
  return { dir, root };
}

Deno.test("listGpus: NVIDIA display functions only, sorted by address", async () => {
  const { dir, root } = await tree();
  try {
    const gpus = listGpus({ sysfsRoot: root });
    assert.deepEqual(gpus.map((g) => g.bdf), ["0000:17:00.0", "0000:65:00.0", "0001:01:00.0"]);
    const g = gpus[1];
    assert.equal(g.path, `${root}/0000:65:00.0`);
    assert.equal(g.vendor, 0x10de);
    assert.equal(g.device, 0x2204);
    assert.equal(g.class, 0x030000);
    assert.equal(g.driver, "nvidia");
    assert.equal(gpus[0].driver, null);
    assert.equal(gpus[0].class, 0x030200);
    assert.equal(gpus[2].driver, "vfio-pci");
    // A trailing slash on the root changes nothing.
    assert.deepEqual(
      listGpus({ sysfsRoot: root + "/" }).map((x) => x.path),
      gpus.map((x) => x.path),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("listGpus: BARs parsed from resource (64-bit prefetchable, I/O, ROM skipped)", async () => {
  const { dir, root } = await tree();
  try {
    const [h100, ga] = listGpus({ sysfsRoot: root });
    assert.deepEqual(ga.bars, [
      {
        index: 0,
        start: 0xfb000000n,
        size: 0x1000000,
        flags: FLAGS_MEM32,
        prefetchable: false,
        is64bit: false,
        io: false,
      },
      {
        index: 1,
        start: 0x7000000000n,
        size: 0x800000000,
        flags: FLAGS_MEM64_PREF,
        prefetchable: true,
        is64bit: true,
        io: false,
      },
      {
        index: 3,
        start: 0x7800000000n,
        size: 0x2000000,
        flags: FLAGS_MEM64_PREF,
        prefetchable: true,
        is64bit: true,
        io: false,
      },
      {
        index: 5,
        start: 0xf000n,
        size: 0x80,
        flags: FLAGS_IO,
        prefetchable: false,
        is64bit: false,
        io: true,
      },
    ]);
    assert.deepEqual(h100.bars.map((b) => [b.index, b.size]), [
      [0, 0x1000000],
      [2, 0x2000000000],
      [4, 0x2000000],
    ]);
    assert.equal(h100.bars[1].start, 0x200000000000n);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("parseResource: empty lines, only BARs 0..5, malformed input", () => {
  assert.deepEqual(parseResource(""), []);
  assert.deepEqual(parseResource(resourceText([])), []);
  // A BAR at index 6+ (ROM, SR-IOV) is not a standard BAR.
  assert.deepEqual(parseResource(resourceText([], [0xfc000000n, 0x80000n])), []);
  const one = parseResource("0x0000000000001000 0x0000000000001fff 0x0000000000000200\n");
  assert.equal(one.length, 1);
  assert.equal(one[0].size, 0x1000);
  throwsNova(() => parseResource("0x1000 0x1fff\n", { path: "/x/resource" }), "EIO", "/x/resource");
  throwsNova(() => parseResource("0x1000 zz 0x200\n"), "EIO", "line 1");
  throwsNova(() => parseResource("0x2000 0x1fff 0x200\n"), "EIO", "before its start");
  throwsNova(
    () => parseResource("0x0 0xffffffffffffffff 0x200\n"),
    "EOVERFLOW",
    "0x10000000000000000",
  );
});

Deno.test("parseBdf: short form, case, invalid syntax", () => {
  assert.equal(parseBdf("65:00.0"), "0000:65:00.0");
  assert.equal(parseBdf("0000:B3:1F.7"), "0000:b3:1f.7");
  assert.equal(parseBdf("10000:01:00.0"), "10000:01:00.0");
  for (const bad of ["", "65:00", "65:0.0", "0000:65:00.8", "0000:65:20.0", "x:65:00.0", "sim"]) {
    throwsNova(() => parseBdf(bad), "EINVAL", JSON.stringify(bad));
  }
});

Deno.test("findGpu: full and short BDF; unknown and non-GPU addresses say what exists", async () => {
  const { dir, root } = await tree();
  try {
    assert.equal(findGpu("0000:65:00.0", { sysfsRoot: root }).device, 0x2204);
    assert.equal(findGpu("65:00.0", { sysfsRoot: root }).bdf, "0000:65:00.0");
    assert.equal(findGpu("17:00.0", { sysfsRoot: root }).class, 0x030200);
    const e = throwsNova(() => findGpu("0000:99:00.0", { sysfsRoot: root }), "ENODEV");
    assert.equal(
      e.message,
      "ENODEV: no NVIDIA GPU at 0000:99:00.0 (found: 0000:17:00.0, 0000:65:00.0, 0001:01:00.0)",
    );
    throwsNova(
      () => findGpu("65:00.1", { sysfsRoot: root }),
      "ENODEV",
      "vendor 0x10de class 0x040300, not an NVIDIA display",
    );
    throwsNova(() => findGpu("00:1f.6", { sysfsRoot: root }), "ENODEV", "vendor 0x8086");
    throwsNova(() => findGpu("65-00.0", { sysfsRoot: root }), "EINVAL", '"65-00.0"');
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("no GPUs: empty list, friendly message pointing at --device sim", async () => {
  const dir = await Deno.makeTempDir({ prefix: "novamm_pci_" });
  try {
    const missing = `${dir}/nope`;
    assert.deepEqual(listGpus({ sysfsRoot: missing }), []);
    assert.match(noGpusMessage({ sysfsRoot: missing }), /does not exist/);
    const root = makeFakeSysfs(dir, [{
      bdf: "0000:00:02.0",
      vendor: 0x8086,
      device: 0x9a49,
      class: 0x030000,
      bars: [],
    }]);
    assert.deepEqual(listGpus({ sysfsRoot: root }), []);
    const msg = noGpusMessage({ sysfsRoot: root });
    assert.equal(msg.startsWith(`no NVIDIA GPUs found under ${root}`), true, msg);
    assert.match(msg, /--device sim/);
    assert.doesNotMatch(msg, /does not exist/);
    const e = throwsNova(() => findGpu("65:00.0", { sysfsRoot: root }), "ENODEV", "(found: none)");
    assert.match(e.hint ?? "", /--device sim/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("listGpus: a malformed sysfs entry is skipped, with the file named in scanGpus", async () => {
  const dir = await Deno.makeTempDir({ prefix: "novamm_pci_" });
  try {
    const root = makeFakeSysfs(dir, [ga102("0000:65:00.0")]);
    Deno.writeTextFileSync(`${root}/0000:65:00.0/class`, "display\n");
    assert.deepEqual(listGpus({ sysfsRoot: root }), []);
    const { scanGpus } = await import("../hw/pci.ts");
    assert.match(
      scanGpus({ sysfsRoot: root }).skipped[0].reason,
      new RegExp(`${root}/0000:65:00.0/class`),
    );
    Deno.writeTextFileSync(`${root}/0000:65:00.0/class`, "0x030000\n");
    Deno.removeSync(`${root}/0000:65:00.0/resource`);
    assert.match(scanGpus({ sysfsRoot: root }).skipped[0].reason, /no resource file/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("checkDriver: kernel GPU drivers refused with the unbind command; force and vfio pass", async () => {
  const { dir, root } = await tree();
  try {
    const g = findGpu("65:00.0", { sysfsRoot: root });
    const e = throwsNova(() => checkDriver(g), "EBUSY");
    assert.equal(
      e.message,
      `EBUSY: 0000:65:00.0 is bound to the nvidia kernel driver; unbind it first: ` +
        `echo 0000:65:00.0 > ${root}/0000:65:00.0/driver/unbind ` +
        `(or pass --force to open it anyway, read-only recommended)`,
    );
    checkDriver(g, { force: true });
    for (const driver of KERNEL_GPU_DRIVERS) {
      const fn: PciFunction = { ...g, driver };
      throwsNova(() => checkDriver(fn), "EBUSY", `the ${driver} kernel driver`);
      checkDriver(fn, { force: true });
    }
    checkDriver(findGpu("0001:01:00.0", { sysfsRoot: root })); // vfio-pci
    checkDriver(findGpu("17:00.0", { sysfsRoot: root })); // unbound
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("listGpus: subsystem ids from subsystem_vendor/subsystem_device; null when missing, unreadable or malformed", async () => {
  const dir = await Deno.makeTempDir({ prefix: "novamm_pci_" });
  try {
    const root = makeFakeSysfs(dir, [
      ga102("0000:01:00.0"), // 10de:147d
      { ...ga102("0000:02:00.0"), subsystem: { vendor: 0x1458, device: 0x403b } },
      { ...ga102("0000:03:00.0"), subsystem: null }, // no files
      { ...ga102("0000:04:00.0"), subsystem: "0x12 34\n" }, // malformed
      { ...ga102("0000:05:00.0"), subsystem: "0x1ffff\n" }, // past 16 bits
      { ...ga102("0000:06:00.0"), subsystem: "0X10DE\n" }, // no 0x prefix as Linux writes it
      { ...ga102("0000:07:00.0"), subsystem: { vendor: 0x10de, device: 0x1467 } },
    ]);
    // Unreadable: a directory where the file should be.
    Deno.removeSync(`${root}/0000:07:00.0/subsystem_vendor`);
    Deno.mkdirSync(`${root}/0000:07:00.0/subsystem_vendor`);
    const gpus = listGpus({ sysfsRoot: root });
    assert.deepEqual(gpus.map((g) => [g.bdf, g.subsystemVendor, g.subsystemDevice]), [
      ["0000:01:00.0", 0x10de, 0x147d],
      ["0000:02:00.0", 0x1458, 0x403b],
      ["0000:03:00.0", null, null],
      ["0000:04:00.0", null, null],
      ["0000:05:00.0", null, null],
      ["0000:06:00.0", null, null],
      ["0000:07:00.0", null, 0x1467],
    ]);
    // The default of a fake function: the vendor and device themselves (a reference board).
    const plain = makeFakeSysfs(`${dir}/plain`, [{
      bdf: "0000:09:00.0",
      vendor: 0x10de,
      device: 0x2330,
      class: 0x030200,
      bars: [{ index: 0, start: 0xe2000000n, size: 0x1000000n, flags: FLAGS_MEM32 }],
    }]);
    const h = findGpu("09:00.0", { sysfsRoot: plain });
    assert.deepEqual([h.subsystemVendor, h.subsystemDevice], [0x10de, 0x2330]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("checkDriver: the message matches the real sysfs path", () => {
  const fn: PciFunction = {
    bdf: "0000:65:00.0",
    path: "/sys/bus/pci/devices/0000:65:00.0",
    vendor: 0x10de,
    device: 0x2204,
    class: 0x030000,
    driver: "nvidia",
    bars: [],
    bootVga: false,
    wc: [],
    subsystemVendor: null,
    subsystemDevice: null,
  };
  throwsNova(
    () => checkDriver(fn),
    "EBUSY",
    "0000:65:00.0 is bound to the nvidia kernel driver; unbind it first: echo 0000:65:00.0 > " +
      "/sys/bus/pci/devices/0000:65:00.0/driver/unbind (or pass --force to open it anyway, " +
      "read-only recommended)",
  );
});

Deno.test("enableDevice: writes 1 to a disabled function's enable file once", async () => {
  const { dir, root } = await tree();
  try {
    const g = findGpu("17:00.0", { sysfsRoot: root });
    assert.equal(enableDevice(g), true);
    assert.equal(Deno.readTextFileSync(`${g.path}/enable`), "1\n");
    assert.equal(enableDevice(g), false);
    Deno.removeSync(`${g.path}/enable`);
    throwsNova(() => enableDevice(g), "ENODEV", "no enable file");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
