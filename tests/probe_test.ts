// The read-only probe (issue 14 item 6) on the fake sysfs tree: a GH100 card whose 0x1704 and
// 0xB80F40 disagree, a GB202 behind a BAR firewall, a card still in GFW boot. The probe must
// never write, never read 0x10F800/0x10F804/0x70000, PRAMIN or BAR1, and say which CONFLICT
// candidates the values are consistent with.
import assert from "node:assert/strict";
import { encodeBoot } from "../hw/chip.ts";
import type { MmioAccess } from "../hw/mmio.ts";
import { formatReport, probe, PROBE_FORBIDDEN, type ProbeReport } from "../probe.ts";
import {
  fakeConfigSpace,
  type FakeFunction,
  FLAGS_MEM32,
  FLAGS_MEM64_PREF,
  makeFakeSysfs,
} from "./fake_sysfs.ts";
import { runDeno, throwsNova, writeU32 } from "./util.ts";

const GiB = 2 ** 30;

/** A fake card: 16 MiB BAR0 file with `regs`, a small BAR1 file, optional config space. */
async function fakeCard(
  device: number,
  regs: Record<number, number>,
  extra: Partial<FakeFunction> = {},
) {
  const dir = await Deno.makeTempDir();
  const fn: FakeFunction = {
    bdf: "0000:41:00.0",
    vendor: 0x10de,
    device,
    class: 0x030200,
    bars: [
      { index: 0, start: 0xfa000000n, size: 0x1000000n, flags: FLAGS_MEM32, fileSize: 0x1000000 },
      {
        index: 1,
        start: 0x38000000000n,
        size: 0x2000000000n,
        flags: FLAGS_MEM64_PREF,
        fileSize: 0x10000,
      },
    ],
    ...extra,
  };
  const root = makeFakeSysfs(dir, [fn]);
  const path = `${root}/${fn.bdf}`;
  for (const [off, v] of Object.entries(regs)) writeU32(`${path}/resource0`, Number(off), v);
  Deno.writeTextFileSync(`${path}/subsystem_vendor`, "0x10de\n");
  Deno.writeTextFileSync(`${path}/subsystem_device`, "0x16c1\n");
  return { dir, root, path };
}

/** Every file of the function directory, for a before/after comparison. */
function snapshot(path: string): Map<string, Uint8Array> {
  const out = new Map<string, Uint8Array>();
  for (const e of Deno.readDirSync(path)) {
    if (e.isFile) out.set(e.name, Deno.readFileSync(`${path}/${e.name}`));
  }
  return out;
}

function sameFiles(a: Map<string, Uint8Array>, b: Map<string, Uint8Array>): void {
  assert.deepEqual([...b.keys()].sort(), [...a.keys()].sort());
  for (const [k, v] of a) assert.ok(equalBytes(v, b.get(k)!), `${k} changed`);
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Asserts the trace has no write, no BAR1 access and nothing in PROBE_FORBIDDEN. */
function assertHarmless(trace: MmioAccess[]): void {
  assert.ok(trace.length > 10, "the tracer saw the probe");
  for (const a of trace) {
    assert.equal(a.op, "r", `a write: ${JSON.stringify(a)}`);
    assert.equal(a.bar, "bar0", `a BAR1 access: ${JSON.stringify(a)}`);
    for (const f of PROBE_FORBIDDEN) {
      assert.ok(
        a.offset + a.width <= f.start || a.offset >= f.end,
        `read ${a.offset.toString(16)}`,
      );
    }
  }
  const offsets = new Set(trace.map((a) => a.offset));
  for (const o of [0x10f800, 0x10f804, 0x70000]) assert.ok(!offsets.has(o));
}

function reg(report: ProbeReport, offset: string) {
  const r = report.registers.find((x) => x.offset === offset);
  assert.ok(r, `register ${offset} in the report`);
  return r;
}

function conflict(report: ProbeReport, name: string) {
  const c = report.conflicts.find((x) => x.name === name);
  assert.ok(c, `conflict ${name}`);
  return c;
}

const GH100 = encodeBoot(0x180);
const wpr = (addr: number) => (addr / 4096) * 16; // ADDR_VAL_4K: VAL 31:4 = address >> 12

/** An H100-like card a GSP-RM left BAR1 bound on: 0x1704 at reset, 0xB80F40 virtual. */
function gh100Regs(): Record<number, number> {
  return {
    0x0: GH100.boot0,
    0xa00: GH100.boot42,
    0x1183a4: 80 * 1024, // NV_USABLE_FB_SIZE_IN_MB
    0x200bc: 0xff, // FSP boot complete
    0x10fd40: 0x13ff, // window somewhere
    0x1704: 0x00000000,
    0xb80f40: 0x80000000 | 0x13ffe, // MODE virtual, VID, instance 0x13ffe000
    0xb80f60: 0x13ffe000 | (1 << 9), // LOW: MODE virtual, VID
    0xb80f64: 0x0,
    0x820c04: 1, // no display
    0x625f04: 0xdead0008, // must not be read (no display)
    0x1fa824: wpr(79 * GiB),
    0x1fa828: wpr(79 * GiB + 512 * 2 ** 20),
    0x100b20: 1,
    0x10f800: 0x1234, // a flush token the probe must not read
  };
}

const FIXED = () => new Date("2026-03-01T12:00:00.000Z");

Deno.test("probe: a fake GH100 whose 0x1704 and 0xB80F40 differ refutes bar1alias=shared", async () => {
  const { dir, root, path } = await fakeCard(0x2330, gh100Regs(), { driver: "nvidia" });
  const before = snapshot(path);
  const trace: MmioAccess[] = [];
  const report = probe({
    device: "41:00.0",
    sysfsRoot: root,
    force: true, // the nvidia driver is bound
    tracer: (a) => trace.push(a),
    now: FIXED,
  });
  sameFiles(before, snapshot(path));
  assertHarmless(trace);

  assert.equal(report.date, "2026-03-01T12:00:00.000Z");
  assert.equal(report.device, "0000:41:00.0");
  assert.deepEqual(report.pci, {
    bdf: "0000:41:00.0",
    vendor: "0x10de",
    device: "0x2330",
    subsystemVendor: "0x10de",
    subsystemDevice: "0x16c1",
    class: "0x030200",
    driver: "nvidia",
    bootVga: false,
  });
  assert.deepEqual(report.chip, {
    name: "GH100",
    chipId: "0x180",
    architecture: "Hopper",
    revision: "A1",
  });
  assert.deepEqual(report.open, { path: "device", error: null });
  assert.equal(report.barFirewall, null, "GH100 has no BAR firewall wait");

  assert.equal(reg(report, "0x001704").value, "0x00000000");
  assert.equal(reg(report, "0xb80f40").value, "0x80013ffe");
  assert.equal(reg(report, "0xb80f40").fields?.MODE, "0x1");
  assert.match(reg(report, "0xb80f60").note, /MODE virtual/);
  assert.equal(reg(report, "0x10fd40").name, "NV_XAL_EP_BAR0_WINDOW");
  assert.ok(!report.registers.some((r) => r.offset === "0x001700"), "no pre-Hopper window");
  assert.equal(reg(report, "0x0200bc").note, "FSP boot SUCCESS");
  assert.equal(reg(report, "0x625f04").value, null, "VGA workspace not read: no display");
  assert.ok(!trace.some((a) => a.offset === 0x625f04));
  assert.ok(!report.registers.some((r) => r.offset === "0x1fa82c"), "MMU lock is GA100 only");
  assert.ok(!report.registers.some((r) => r.offset === "0x118234"), "no pre-Hopper boot scratch");
  // Unknown registers of a fake BAR read 0, not a PRI error: 0xB80F50 is a plain zero here.
  assert.equal(reg(report, "0xb80f50").value, "0x00000000");

  assert.deepEqual(conflict(report, "bar1alias").candidates, {
    shared: "refuted",
    separate: "consistent",
  });
  assert.deepEqual(conflict(report, "lowbind").candidates, {
    immediate: "undecidable",
    high: "undecidable",
  });
  const v3 = conflict(report, "v3bit10");
  assert.deepEqual(v3.candidates, {
    ignored: "undecidable",
    rm: "undecidable",
    required: "undecidable",
  });
  assert.match(v3.why, /needs a PRAMIN read \(window move\); not done read-only/);
  assert.match(v3.why, /0x13ffe000/);

  assert.deepEqual(report.summary.wpr2.map((w) => [w.start, w.end, w.set]), [
    [`0x${(79 * GiB).toString(16)}`, `0x${(79 * GiB + 512 * 2 ** 20).toString(16)}`, true],
  ]);
  assert.equal(report.summary.display.present, false);
  assert.equal(report.summary.memoryClear.status, "done");
  assert.equal(report.summary.boot.done, true);
  assert.equal(report.summary.bar1.mode, "virtual");

  // The JSON round-trips (it is meant to be saved as a fixture) and the text has the sections.
  assert.deepEqual(JSON.parse(JSON.stringify(report)), report);
  const text = formatReport(report);
  for (
    const s of ["REGISTERS", "WPR2", "DISPLAY / VGA", "MEMORY CLEAR", "CONFLICTS (facts §14.1)"]
  ) {
    assert.ok(text.includes(s), s);
  }
  assert.match(text, /bar1alias: shared refuted, separate consistent/);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("probe: equal 0x1704 and 0xB80F40 are consistent with both bar1alias candidates", async () => {
  const regs = { ...gh100Regs(), 0x1704: 0, 0xb80f40: 0, 0xb80f60: 0 };
  const { dir, root } = await fakeCard(0x2330, regs);
  const report = probe({ device: "0000:41:00.0", sysfsRoot: root });
  assert.deepEqual(conflict(report, "bar1alias").candidates, {
    shared: "consistent",
    separate: "consistent",
  });
  assert.equal(report.summary.bar1.mode, "physical");
  assert.match(report.summary.bar1.note, /physical access by VRAM address is valid/);
  assert.match(conflict(report, "v3bit10").why, /no instance block is bound/);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("probe: a PRI error at 0xB80F40 leaves bar1alias undecidable; all ones is re-checked", async () => {
  const regs = { ...gh100Regs(), 0xb80f40: 0xbadf1100, 0xb80f50: 0xffffffff, 0x100b20: 0xbad00100 };
  const { dir, root } = await fakeCard(0x2330, regs);
  const trace: MmioAccess[] = [];
  const report = probe({ device: "0000:41:00.0", sysfsRoot: root, tracer: (a) => trace.push(a) });
  assert.deepEqual(conflict(report, "bar1alias").candidates, {
    shared: "undecidable",
    separate: "undecidable",
  });
  assert.match(reg(report, "0xb80f40").note, /PRI error 0xbadf1100/);
  assert.equal(reg(report, "0xb80f40").fields, null);
  assert.match(reg(report, "0xb80f50").note, /BOOT_0 re-read 0x180000a1: the GPU answers/);
  assert.equal(report.summary.memoryClear.status, "unavailable");
  assert.equal(report.open.path, "device");
  assertHarmless(trace);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("probe: a driver-bound card is refused without --force", async () => {
  const { dir, root } = await fakeCard(0x2330, gh100Regs(), { driver: "nvidia" });
  assert.throws(() => probe({ device: "0000:41:00.0", sysfsRoot: root }), /EBUSY.*nvidia/);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("probe: a card still in GFW boot is probed through BAR0 alone", async () => {
  const regs = { ...gh100Regs(), 0x200bc: 0x0, 0x100b20: 0x0 };
  const { dir, root, path } = await fakeCard(0x2330, regs);
  const before = snapshot(path);
  const trace: MmioAccess[] = [];
  const report = probe({
    device: "0000:41:00.0",
    sysfsRoot: root,
    gfwTimeoutMs: 5,
    tracer: (a) => trace.push(a),
  });
  sameFiles(before, snapshot(path));
  assertHarmless(trace);
  assert.equal(report.open.path, "bar0");
  assert.match(report.open.error ?? "", /ETIMEDOUT/);
  assert.equal(report.summary.boot.done, false);
  assert.match(report.summary.boot.note, /NOT completed/);
  assert.equal(report.summary.memoryClear.status, "not done");
  await Deno.remove(dir, { recursive: true });
});

Deno.test("probe: a GB202 card waits for the BAR firewall and reads both WPR2 pairs", async () => {
  const gb202 = encodeBoot(0x1b2);
  const config = fakeConfigSpace(0x10de, 0x2b85, [
    { offset: 0x100, id: 0x1, next: 0x180 },
    { offset: 0x180, id: 0x23, next: 0, body: [0x10de, 0x0] }, // NVIDIA DVSEC, firewall down
  ]);
  const regs = {
    0x0: gb202.boot0,
    0xa00: gb202.boot42,
    0x1183a4: 32 * 1024,
    0xad00bc: 0xff, // GB20x FSP boot complete
    0x820c04: 0, // display present
    0x625f04: (0x7ff0 << 8) | 0x8, // valid, at 0x7ff00000
    0x88a824: wpr(31 * GiB),
    0x88a828: wpr(31 * GiB + 256 * 2 ** 20),
    0x8a004c: 1, // memory clear done
  };
  const { dir, root, path } = await fakeCard(0x2b85, regs, { config, class: 0x030000 });
  const before = snapshot(path);
  const trace: MmioAccess[] = [];
  const report = probe({ device: "0000:41:00.0", sysfsRoot: root, tracer: (a) => trace.push(a) });
  sameFiles(before, snapshot(path));
  assertHarmless(trace);
  assert.equal(report.chip.name, "GB202");
  assert.deepEqual(report.barFirewall && { ...report.barFirewall, waitedMs: 0 }, {
    dvsecOffset: "0x180",
    polls: 1,
    waitedMs: 0,
    warning: null,
  });
  assert.equal(reg(report, "0x625f04").value, "0x007ff008");
  assert.equal(report.summary.display.vgaWorkspace, "0x7ff00000");
  assert.deepEqual(report.summary.wpr2.map((w) => [w.registers, w.set]), [
    ["0x1fa824/0x1fa828", false],
    ["0x88a824/0x88a828", true],
  ]);
  assert.equal(reg(report, "0x8a004c").name, "MEM_CLEAR_STATUS");
  assert.ok(!report.registers.some((r) => r.offset === "0x100b20"));
  assert.equal(report.summary.memoryClear.status, "done");
  assert.equal(report.open.path, "device");
  await Deno.remove(dir, { recursive: true });
});

Deno.test("probe: a Blackwell card without a DVSEC gets the delay and a warning", async () => {
  const gb202 = encodeBoot(0x1b2);
  const regs = {
    0x0: gb202.boot0,
    0xa00: gb202.boot42,
    0x1183a4: 32 * 1024,
    0xad00bc: 0xff,
    0x8a004c: 1,
  };
  const { dir, root } = await fakeCard(0x2b85, regs, { config: new Uint8Array(64) });
  const report = probe({
    device: "0000:41:00.0",
    sysfsRoot: root,
    barFirewall: { noDvsecDelayMs: 1 },
  });
  assert.equal(report.barFirewall?.dvsecOffset, null);
  assert.match(report.barFirewall?.warning ?? "", /only 64 bytes/);
  assert.match(formatReport(report), /only 64 bytes/);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("probe: options are checked", () => {
  throwsNova(() => probe({ devcie: "sim" } as never), "EINVAL", "unknown key", "devcie");
});

Deno.test("probe: every simulator profile and state, read-only and harmless (loose values)", () => {
  for (const p of ["ga102", "ga100", "tu102", "ad102", "gh100", "gb202", "gb100"]) {
    for (const state of ["", ":gsp", ":unloaded"]) {
      const trace: MmioAccess[] = [];
      const report = probe({ device: `sim:${p}${state}`, tracer: (a) => trace.push(a) });
      assertHarmless(trace);
      assert.equal(report.chip.name, p.toUpperCase());
      assert.equal(report.pci, null);
      assert.equal(report.open.path, "device");
      assert.deepEqual(report.conflicts.map((c) => c.name), ["bar1alias", "lowbind", "v3bit10"]);
      assert.ok(report.registers.some((r) => r.offset === "0x001704"));
    }
  }
});

Deno.test("probe: the bar1alias verdict follows the values, whatever the simulator knob", () => {
  for (const knob of ["shared", "separate"]) {
    const report = probe({ device: `sim:ga102:gsp?bar1alias=${knob}` });
    const a = reg(report, "0x001704").value;
    const b = reg(report, "0xb80f40").value;
    const c = conflict(report, "bar1alias").candidates;
    if (a !== b) {
      assert.deepEqual(c, { shared: "refuted", separate: "consistent" }, knob);
    } else {
      assert.deepEqual(c, { shared: "consistent", separate: "consistent" }, knob);
    }
    // Under the simulator's own answer, the probe never refutes the truth.
    assert.notEqual(c[knob], "refuted", knob);
  }
});

Deno.test("probe CLI: --device sim:gh100 --json prints one JSON object", async () => {
  const r = await runDeno("probe.ts", ["--device", "sim:gh100", "--json"]);
  if (r.code !== 0 && /ReferenceError|TypeError/.test(r.stderr)) return; // simulator in flux
  assert.equal(r.code, 0, r.stderr);
  const j = JSON.parse(r.stdout);
  assert.equal(j.device, "sim:gh100");
  assert.equal(j.chip.name, "GH100");
  assert.ok(Array.isArray(j.registers) && j.registers.length > 10);
  assert.ok(!Number.isNaN(Date.parse(j.date)));
});

Deno.test("probe CLI: on a fake card through NOVAMM_SYSFS_ROOT", async () => {
  const { dir, root } = await fakeCard(0x2330, gh100Regs());
  const r = await runDeno("probe.ts", ["-d", "0000:41:00.0"], {
    env: { NOVAMM_SYSFS_ROOT: root },
  });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /GH100/);
  assert.match(r.stdout, /bar1alias: shared refuted, separate consistent/);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("probe CLI: bad flags give a one-line error", async () => {
  for (const args of [["--bogus"], ["--device"], ["--json=yes"], ["extra"]]) {
    const r = await runDeno("probe.ts", args);
    assert.equal(r.code, 1, args.join(" "));
    assert.equal(r.stdout, "");
    const lines = r.stderr.trim().split("\n");
    assert.match(lines[0], /^error: /, r.stderr);
    assert.ok(lines.length <= 2 && (lines.length === 1 || lines[1].startsWith("hint: ")), r.stderr);
  }
  const r = await runDeno("probe.ts", ["--device", "0000:99:00.0"], {
    env: { NOVAMM_SYSFS_ROOT: "/nonexistent" },
  });
  assert.equal(r.code, 1);
  assert.match(r.stderr, /^error: ENODEV/);
  const h = await runDeno("probe.ts", ["--help"]);
  assert.equal(h.code, 0);
  assert.match(h.stdout, /--json/);
});
