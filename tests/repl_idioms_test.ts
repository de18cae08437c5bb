/**
 * Issue 17, items 2, 3 and 7: help for everything (properties without
 * their getter, codec functions with their fields, classes by name,
 * undefined), did-you-mean on members, register names, flags, suites and
 * device specs, and m1n1's idioms at the prompt (poll32, udelay/msleep,
 * `reg.X.FIELD`, hexdump of an allocation).
 */

import assert from "node:assert/strict";
import { buildGlobals } from "../cli/globals.ts";
import { flagSuggestion, formatError } from "../cli/common.ts";
import { loadRegisterDb, NovaError, openGpu } from "../mod.ts";
import { parseSimSpec } from "../hw/sim/spec.ts";
import { runDeno, throwsNova } from "./util.ts";

async function globals() {
  const gpu = await openGpu({ device: "sim:ga102" });
  await loadRegisterDb(gpu.chip);
  return { gpu, g: buildGlobals(gpu) };
}

Deno.test("help: a property without running its getter, by (obj, name) and by path", async () => {
  const { gpu, g } = await globals();
  try {
    for (const t of [g.help(g.bar1, "mode"), g.help("bar1.mode")]) {
      assert.match(t.text, /^bar1\.mode — BarUser\.mode: Bar1Mode/);
      assert.doesNotMatch(t.text, /String|charAt/);
    }
    const e = throwsNova(() => g.help(g.bar1, "bringup"), "EINVAL", "bar1.bringup");
    assert.match(e.hint ?? "", /did you mean bringUp\?/);
  } finally {
    gpu.close();
  }
});

Deno.test("help: codec functions with their field list; classes by name; registers", async () => {
  const { gpu, g } = await globals();
  try {
    const pte = g.help(g.mmu.v2.encodePte).text;
    assert.match(pte, /^mmu\.v2\.encodePte\(fields\): bigint/);
    assert.match(pte, /valid +bit 0 +boolean/);
    assert.match(pte, /kind +bits 63:56 +number/);
    assert.match(pte, /aperture +bits 2:1 +"video" \| "peer"/);
    const dual = g.help(g.mmu.v3.decodeDualPde).text;
    assert.match(dual, /small: \{/);
    assert.match(g.help("Vmm").text, /^class Vmm: /);
    assert.match(g.help("Vmm.mapPages").text, /^Vmm\.mapPages\(/);
    assert.match(g.help("Allocation").text, /^class Allocation: /);
    assert.match(g.help("NV_PMC_BOOT_0").text, /MAJOR_REVISION/);
    assert.match(g.help(g.reg.NV_PMC_BOOT_0).text, /MAJOR_REVISION/);
    const e = throwsNova(() => g.help("NV_PMC_BOOT_O"), "EINVAL");
    assert.match(e.hint ?? "", /did you mean "NV_PMC_BOOT_0"/);
  } finally {
    gpu.close();
  }
});

Deno.test("help(undefined) says so instead of printing the list", async () => {
  const { gpu, g } = await globals();
  try {
    throwsNova(() => g.help(undefined), "EINVAL", "got undefined — a misspelt member?");
    assert.match(g.help().text, /^Preloaded on sim:ga102/);
  } finally {
    gpu.close();
  }
});

Deno.test("did-you-mean: register names in strings, flags, suites, device specs", async () => {
  const { gpu, g } = await globals();
  try {
    let caught: unknown;
    try {
      g.watch("NV_PMC_BOOT_O");
    } catch (e) {
      caught = e;
    }
    assert.ok(caught instanceof NovaError);
    assert.equal(caught.hint, 'did you mean "NV_PMC_BOOT_0"?');
    const hits = await g.lookup("NV_PMC_BOOT_O");
    assert.match(Deno.inspect(hits), /did you mean "NV_PMC_BOOT_0"/);
  } finally {
    gpu.close();
  }
  assert.equal(flagSuggestion("--devcie", "selftest.ts"), "--device");
  assert.equal(flagSuggestion("--suit", "selftest.ts"), "--suite");
  assert.equal(flagSuggestion("--ranges", "memtest.ts"), "--range");
  assert.equal(flagSuggestion("--trace-mx", "repl.ts"), "--trace-max");
  assert.equal(flagSuggestion("--zzzzzz", "probe.ts"), null);
  assert.match(
    formatError(new NovaError("EINVAL", 'unknown option "--devcie"')),
    /hint: did you mean --device\?/,
  );
  assert.deepEqual(parseSimSpec("sim:GH100:GSP"), { profile: "gh100", state: "gsp" });
  const gh = await openGpu({ device: "sim:GH100" });
  try {
    assert.equal(gh.chip.name, "GH100");
  } finally {
    gh.close();
  }
});

Deno.test("did-you-mean: CLI flags and selftest suites from the commands", async () => {
  let r = await runDeno("selftest.ts", ["--devcie", "sim"]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /hint: did you mean --device\?/);
  r = await runDeno("memtest.ts", ["--devcie", "sim"]);
  assert.match(r.stderr, /hint: did you mean --device\?/);
  r = await runDeno("repl.ts", ["--devcie", "sim"]);
  assert.match(r.stderr, /hint: did you mean --device\?/);
  r = await runDeno("selftest.ts", ["--suite", "pramn"]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /hint: did you mean pramin\?/);
});

Deno.test("m1n1 idioms: poll32, udelay, msleep", async () => {
  const { gpu, g } = await globals();
  try {
    const boot0 = gpu.bar0.read32(0);
    const r = g.poll32("NV_PMC_BOOT_0", 0xff, boot0 & 0xff);
    assert.equal(r.value, boot0);
    assert.equal(g.poll32(g.reg.NV_PMC_BOOT_0, 0xf0, boot0 & 0xf0).value, boot0);
    assert.equal(g.poll32(0, 0xffffffff, boot0).polls, 1);
    const t0 = performance.now();
    throwsNova(
      () => g.poll32(0, 0xff, (boot0 + 1) & 0xff, { timeoutMs: 20 }),
      "ETIMEDOUT",
      `still reads 0x${boot0.toString(16)}`,
    );
    assert.ok(performance.now() - t0 >= 20);
    throwsNova(() => g.poll32(0, 0x0f, 0xf0), "EINVAL", "outside mask");
    throwsNova(() => g.poll32(2, 1, 1), "EINVAL", "aligned");
    throwsNova(() => g.poll32(0, 1, 1, { timeoutMs: -1 }), "EINVAL", "timeoutMs");
    let t = performance.now();
    g.msleep(15);
    assert.ok(performance.now() - t >= 15);
    t = performance.now();
    g.udelay(2000);
    assert.ok(performance.now() - t >= 2);
    throwsNova(() => g.msleep(-1), "EINVAL", "msleep");
    throwsNova(() => g.udelay(Number.NaN), "EINVAL", "udelay");
    // A PRI error stops the poll at once (as hw/poll.ts does).
    const sim = gpu.sim!;
    const real = sim.bar0.read32.bind(sim.bar0);
    (sim.bar0 as { read32: (o: number) => number }).read32 = (o) =>
      o === 0x1700 ? 0xbadf5040 : real(o);
    throwsNova(() => g.poll32(0x1700, 1, 1, { timeoutMs: 2000 }), "EIO", "PRI error");
  } finally {
    gpu.close();
  }
});

Deno.test("m1n1 idioms: reg.X.FIELD reads and sets one field by name", async () => {
  const { gpu, g } = await globals();
  try {
    const w = g.reg.NV_PBUS_BAR0_WINDOW as unknown as Record<string, number>;
    gpu.bar0.write32(0x1700, 0x0300_0000 | 0x10);
    w.BASE = 0x123;
    const v = gpu.bar0.read32(0x1700);
    assert.equal(v & 0xffffff, 0x123, "BASE written");
    assert.equal(v & 0x0300_0000, 0x0300_0000, "the other field kept");
    assert.equal(w.BASE, 0x123);
    assert.equal(w.BASE === 0x123, true);
    throwsNova(() => (w.BSAE = 1), "EINVAL", 'no field "BSAE"');
    throwsNova(() => (w.BASE = 2 ** 30), "EINVAL", "does not fit");
    assert.ok(Object.getOwnPropertyNames(w).includes("TARGET"), "completion lists the fields");
    assert.match(Deno.inspect(w), /NV_PBUS_BAR0_WINDOW 0x1700 \(fields BASE, TARGET/);
    assert.equal(g.reg.NV_PMC_BOOT_0.read().value, gpu.bar0.read32(0));
  } finally {
    gpu.close();
  }
});

Deno.test("m1n1 idioms: hexdump of an allocation", async () => {
  const { gpu, g } = await globals();
  try {
    const a = g.mm.buddy.alloc(4096);
    gpu.pramin.write32(a.start, 0x11223344);
    const text = g.hexdump(a, 16).text;
    assert.match(text, new RegExp(`^0x${a.start.toString(16).padStart(8, "0")}  44 33 22 11`));
    assert.equal(
      g.hexdump(a, 1 << 20).text.split("\n").length,
      4096 / 16 + 1,
      "the size bounds it",
    );
    assert.match(g.hexdump32(a, 4).text, / 11223344\n/);
    a.free();
    throwsNova(() => g.hexdump(a, 16), "ENODEV", "freed");
  } finally {
    gpu.close();
  }
});

Deno.test("repl: misspelt members name the member and the nearest ones", async () => {
  const input = [
    "bar1.bringup()",
    "ch = mm.createVmm({ vaSize: 2 ** 40 })",
    "help(ch.map)",
    "ch.mapPage([1])",
    "ch.mapp.x",
    'help("bar1.mode")',
    "reg.NV_PBUS_BAR0_WINDOW.BASE = 5",
    "reg.NV_PBUS_BAR0_WINDOW.BASE",
    "poll32(reg.NV_PBUS_BAR0_WINDOW, 0xff, 5)",
    ".exit",
  ].join("\n") + "\n";
  const r = await runDeno("repl.ts", [], { input });
  assert.equal(r.code, 0, r.stdout + r.stderr);
  const out = r.stdout;
  assert.match(
    out,
    /error: TypeError: bar1\.bringup is not a function\nhint: bar1\.bringup is undefined; did you mean bringUp\?/,
  );
  assert.match(
    out,
    /error: EINVAL: help got undefined — a misspelt member\?\nhint: ch\.map is undefined; did you mean [^\n]*mapPages \/ mapRange/,
  );
  assert.match(out, /hint: ch\.mapPage is undefined; did you mean mapPages\?/);
  assert.match(out, /reading 'x'\)\nhint: ch\.mapp is undefined; did you mean [^\n]*mapPages/);
  assert.match(out, /bar1\.mode — BarUser\.mode/);
  assert.match(out, /NV_PBUS_BAR0_WINDOW = 0x00000005 after 1 polls/);
});
