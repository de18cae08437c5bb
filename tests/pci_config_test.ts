// PCI config space and the Blackwell BAR firewall wait (facts §14.2 item 3) on the fake sysfs
// tree: the DVSEC walk, polling bit 20 until it clears, the no-DVSEC delay, garbage chains.
import assert from "node:assert/strict";
import {
  blackwellChipOfDeviceId,
  findNvidiaDvsec,
  isBlackwellDeviceId,
  listExtendedCapabilities,
  readPciConfig,
  waitBarFirewall,
} from "../hw/pci_config.ts";
import { findGpu } from "../hw/pci.ts";
import { fakeConfigSpace, type FakeFunction, FLAGS_MEM32, makeFakeSysfs } from "./fake_sysfs.ts";
import { throwsNova } from "./util.ts";

const FIREWALL = 1 << 20;

/** A GB202-like function (RTX 5090 device id) with the given config space. */
async function fakeBlackwell(config?: Uint8Array) {
  const dir = await Deno.makeTempDir();
  const fn: FakeFunction = {
    bdf: "0000:01:00.0",
    vendor: 0x10de,
    device: 0x2b85,
    class: 0x030000,
    bars: [{ index: 0, start: 0xfb000000n, size: 0x1000000n, flags: FLAGS_MEM32 }],
    config,
  };
  const root = makeFakeSysfs(dir, [fn]);
  return { dir, root, fn: findGpu("0000:01:00.0", { sysfsRoot: root }) };
}

/** Config space with a PCIe AER cap, a foreign DVSEC, then NVIDIA's DVSEC at 0x180. */
function blackwellConfig(firewallDword: number): Uint8Array {
  return fakeConfigSpace(0x10de, 0x2b85, [
    { offset: 0x100, id: 0x0001, next: 0x140 }, // AER
    { offset: 0x140, id: 0x23, next: 0x180, body: [0x8086, 0x0000] }, // Intel DVSEC id 0
    { offset: 0x180, id: 0x23, next: 0, body: [0x10de, firewallDword] },
  ]);
}

function setDword(file: string, offset: number, value: number): void {
  const bytes = Deno.readFileSync(file);
  new DataView(bytes.buffer).setUint32(offset, value >>> 0, true);
  Deno.writeFileSync(file, bytes);
}

Deno.test("pci_config: findNvidiaDvsec skips other capabilities and other vendors' DVSECs", () => {
  const cfg = blackwellConfig(0);
  assert.deepEqual(listExtendedCapabilities(cfg).map((c) => [c.offset, c.id]), [
    [0x100, 0x1],
    [0x140, 0x23],
    [0x180, 0x23],
  ]);
  assert.equal(findNvidiaDvsec(cfg), 0x180);
  // NVIDIA DVSEC with another id is not it.
  const other = fakeConfigSpace(0x10de, 0x2b85, [
    { offset: 0x100, id: 0x23, next: 0, body: [0x10de, 0x0001] },
  ]);
  assert.equal(findNvidiaDvsec(other), null);
  // Bits 31:16 of DVSEC header 2 (where the firewall bit lives) do not change the id.
  assert.equal(findNvidiaDvsec(blackwellConfig(FIREWALL | 0xffff0000)), 0x180);
});

Deno.test("pci_config: 256-byte, 64-byte, empty and all-ones config spaces have no DVSEC", () => {
  const cfg = blackwellConfig(0);
  assert.equal(findNvidiaDvsec(cfg.slice(0, 256)), null);
  assert.equal(findNvidiaDvsec(cfg.slice(0, 64)), null);
  assert.equal(findNvidiaDvsec(new Uint8Array(0)), null);
  assert.equal(findNvidiaDvsec(new Uint8Array(4096).fill(0xff)), null);
  assert.equal(findNvidiaDvsec(new Uint8Array(4096)), null);
  throwsNova(() => findNvidiaDvsec([1, 2, 3] as unknown as Uint8Array), "EINVAL", "Uint8Array");
});

Deno.test("pci_config: garbage capability chains terminate", () => {
  // A loop: 0x100 -> 0x140 -> 0x100.
  const loop = fakeConfigSpace(0x10de, 0x2b85, [
    { offset: 0x100, id: 0x1, next: 0x140 },
    { offset: 0x140, id: 0x2, next: 0x100 },
  ]);
  assert.equal(listExtendedCapabilities(loop).length, 2);
  assert.equal(findNvidiaDvsec(loop), null);
  // A self loop.
  const self = fakeConfigSpace(0x10de, 0x2b85, [{ offset: 0x100, id: 0x23, next: 0x100 }]);
  assert.equal(listExtendedCapabilities(self).length, 1);
  // A next pointer into standard config space (below 0x100) ends the list.
  const low = fakeConfigSpace(0x10de, 0x2b85, [{ offset: 0x100, id: 0x1, next: 0x40 }]);
  assert.equal(listExtendedCapabilities(low).length, 1);
  // A next pointer past a truncated image ends the list.
  const past = fakeConfigSpace(0x10de, 0x2b85, [{ offset: 0x100, id: 0x1, next: 0xffc }]);
  assert.equal(listExtendedCapabilities(past.slice(0, 0x200)).length, 1);
  // A DVSEC header at the very end: its DVSEC headers do not fit, so it is skipped.
  const edge = fakeConfigSpace(0x10de, 0x2b85, [
    { offset: 0x100, id: 0x1, next: 0x1fc },
  ]);
  new DataView(edge.buffer).setUint32(0x1fc, 0x00010023, true);
  assert.equal(findNvidiaDvsec(edge.slice(0, 0x200)), null);
  // Random bytes: always terminates, never more entries than fit.
  let seed = 12345;
  for (let i = 0; i < 200; i++) {
    const cfg = new Uint8Array(4096);
    for (let j = 0; j < cfg.length; j++) {
      seed = (seed * 1103515245 + 12345) >>> 0;
      cfg[j] = seed >>> 24;
    }
    const caps = listExtendedCapabilities(cfg);
    assert.ok(caps.length <= 960);
    assert.equal(new Set(caps.map((c) => c.offset)).size, caps.length);
    findNvidiaDvsec(cfg);
  }
  // A long chain through every dword ends at the bound.
  const chain = new Uint8Array(4096);
  const v = new DataView(chain.buffer);
  for (let o = 0x100; o < 0x1000; o += 4) {
    v.setUint32(o, ((o + 4 < 0x1000 ? o + 4 : 0) << 20 | 0x10001) >>> 0, true);
  }
  assert.equal(listExtendedCapabilities(chain).length, 960);
});

Deno.test("pci_config: readPciConfig reads the sysfs file; a missing one is ENOENT", async () => {
  const { dir, fn } = await fakeBlackwell(blackwellConfig(0));
  assert.equal(readPciConfig(fn).length, 4096);
  assert.equal(findNvidiaDvsec(readPciConfig(fn)), 0x180);
  await Deno.remove(dir, { recursive: true });
  const none = await fakeBlackwell();
  throwsNova(() => readPciConfig(none.fn), "ENOENT", "/config");
  await Deno.remove(none.dir, { recursive: true });
});

Deno.test("pci_config: waitBarFirewall returns at once when bit 20 is clear", async () => {
  const { dir, fn } = await fakeBlackwell(blackwellConfig(0x0000_0000));
  const r = waitBarFirewall(fn, { timeoutMs: 1000 });
  assert.deepEqual({ ...r, waitedMs: 0 }, {
    dvsecOffset: 0x180,
    polls: 1,
    waitedMs: 0,
    value: 0,
    warning: null,
  });
  await Deno.remove(dir, { recursive: true });
});

Deno.test("pci_config: waitBarFirewall polls the file until bit 20 clears", async () => {
  const { dir, fn } = await fakeBlackwell(blackwellConfig(FIREWALL | 0x12200000));
  const file = `${fn.path}/config`;
  const before = Deno.readFileSync(file);
  const seen: number[] = [];
  const r = waitBarFirewall(fn, {
    timeoutMs: 5000,
    pollIntervalMs: 1,
    onPoll: ({ poll, value, offset }) => {
      assert.equal(offset, 0x188);
      seen.push(value);
      if (poll === 3) setDword(file, 0x188, 0x12200000); // firmware lifts the firewall
    },
  });
  assert.equal(r.polls, 4, "three reads with the bit set, then one clear");
  assert.equal(r.dvsecOffset, 0x180);
  assert.equal(r.value, 0x12200000);
  assert.equal(r.warning, null);
  assert.deepEqual(seen, [
    0x12200000 | FIREWALL,
    0x12200000 | FIREWALL,
    0x12200000 | FIREWALL,
    0x12200000,
  ]);
  // Nothing but the test wrote the file: the wait only reads.
  const after = Deno.readFileSync(file);
  new DataView(before.buffer).setUint32(0x188, 0x12200000, true);
  assert.deepEqual(after, before);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("pci_config: waitBarFirewall times out naming the value", async () => {
  const { dir, fn } = await fakeBlackwell(blackwellConfig(FIREWALL));
  const e = throwsNova(
    () => waitBarFirewall(fn, { timeoutMs: 30, pollIntervalMs: 1 }),
    "ETIMEDOUT",
    "0000:01:00.0",
    "0x00100000",
    "0x188",
    "bit 20",
  );
  assert.ok(e.hint);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("pci_config: no DVSEC or a short config space: the delay, then a warning", async () => {
  const noDvsec = await fakeBlackwell(
    fakeConfigSpace(0x10de, 0x2b85, [{ offset: 0x100, id: 0x1, next: 0 }]),
  );
  const t0 = performance.now();
  const r = waitBarFirewall(noDvsec.fn, { noDvsecDelayMs: 40 });
  assert.ok(performance.now() - t0 >= 35, "the delay was waited");
  assert.equal(r.dvsecOffset, null);
  assert.equal(r.polls, 0);
  assert.equal(r.value, null);
  assert.match(r.warning ?? "", /no NVIDIA DVSEC.*waited 40 ms/);
  await Deno.remove(noDvsec.dir, { recursive: true });

  // What an unprivileged reader sees: 64 bytes.
  const short = await fakeBlackwell(blackwellConfig(FIREWALL).slice(0, 64));
  const s = waitBarFirewall(short.fn, { noDvsecDelayMs: 1 });
  assert.equal(s.dvsecOffset, null);
  assert.match(s.warning ?? "", /only 64 bytes.*unprivileged/);
  await Deno.remove(short.dir, { recursive: true });
});

Deno.test("pci_config: waitBarFirewall checks its options before reading anything", async () => {
  const { dir, fn } = await fakeBlackwell(blackwellConfig(0));
  throwsNova(
    () => waitBarFirewall(fn, { timeout: 5 } as never),
    "EINVAL",
    "unknown key",
    "timeout",
  );
  throwsNova(() => waitBarFirewall(fn, { timeoutMs: -1 }), "EINVAL", "BAR firewall timeout");
  throwsNova(() => waitBarFirewall(fn, { noDvsecDelayMs: NaN }), "EINVAL", "no-DVSEC delay");
  throwsNova(() => waitBarFirewall(fn, { pollIntervalMs: 5000 }), "EINVAL", "poll interval");
  throwsNova(() => waitBarFirewall(fn, { onPoll: 1 } as never), "EINVAL", "onPoll");
  await Deno.remove(dir, { recursive: true });
});

Deno.test("pci_config: Blackwell is decided from the PCI device id (GAT's table)", () => {
  for (
    const [id, chip] of [
      [0x2901, "GB100"], // B200
      [0x2941, "GB100"],
      [0x29bc, "GB102"],
      [0x2b85, "GB202"], // RTX 5090
      [0x2c02, "GB203"], // RTX 5080
      [0x2f04, "GB205"], // RTX 5070
      [0x2d04, "GB206"], // RTX 5060 Ti
      [0x2d83, "GB207"],
      [0x3182, "GB110"],
      [0x3200, "GB112"],
    ] as const
  ) {
    assert.equal(isBlackwellDeviceId(id), true, `${id.toString(16)}`);
    assert.equal(blackwellChipOfDeviceId(id), chip);
  }
  for (const id of [0x2330, 0x2335, 0x233d, 0x2684, 0x2204, 0x20b0, 0x1e04, 0x2a00, 0x2e00, 0x0]) {
    assert.equal(isBlackwellDeviceId(id), false, `${id.toString(16)}`);
  }
  throwsNova(() => isBlackwellDeviceId(0x10000), "EINVAL", "device id");
  throwsNova(() => isBlackwellDeviceId("0x2b85" as never), "EINVAL", "device id");
});
