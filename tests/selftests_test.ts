// Runs every self-test suite on every simulator profile under `deno test`.
import assert from "node:assert/strict";
import { openGpu } from "../mod.ts";
import { SIM_PROFILES, SIM_STATES } from "../hw/sim/profiles.ts";
import { runSelfTests } from "../selftests/selftest.ts";
import { SUITES } from "../selftests/selftest_suites.ts";
import { knobCombinations, runDeno } from "./util.ts";

/** Tests a state may skip: those that need firmware's tables, or virtual BAR1 on a console card. */
function allowedSkips(state: string): RegExp {
  return state === "vga" ? /./ : /^firmware mappings intact$/;
}

// Every profile × state (vga only where the chip has a display) × knob combination.
const runs: [string, string, string][] = [];
for (const [p, profile] of Object.entries(SIM_PROFILES)) {
  for (const s of SIM_STATES) {
    if (s === "vga" && !profile.display) continue;
    for (const k of knobCombinations(profile.mmuVersion)) runs.push([p, s, k]);
  }
}

/** BAR1 tests skip where BAR1 cannot be brought up: GB10x flushes only through GSP. */
function noBar1(profile: string): boolean {
  return SIM_PROFILES[profile].fbFlush === "gsp";
}

for (const [profile, state, knobs] of runs) {
  const device = `sim:${profile}${state === "bare" ? "" : `:${state}`}${
    knobs === "" ? "" : `?${knobs}`
  }`;
  Deno.test(`selftests on ${device}`, async () => {
    const gpu = await openGpu({ device });
    const found = gpu.bar1AtOpen.registers;
    try {
      const results = await runSelfTests(gpu, Object.values(SUITES));
      const failed = results.filter((r) =>
        r.status === "fail" ||
        r.status === "skip" &&
          !(state !== "gsp" && allowedSkips(state).test(r.name)) &&
          !(noBar1(profile) && r.suite === "bar1")
      );
      assert.deepEqual(failed, [], failed.map((r) => `${r.name}: ${r.detail}`).join("\n"));
      assert.deepEqual(gpu.sim!.errors(), [], "the simulator logged no driver errors");
    } finally {
      gpu.close();
    }
    // gpu.close() put the bind registers back as found.
    const sim = gpu.sim!;
    for (const r of found) {
      const raw = sim.bar0.read32(r.offset);
      const now = r.offset === 0xb80f60 ? raw & ~3 : raw; // LOW's status bits aside
      assert.equal(now >>> 0, r.value, `bind register ${r.offset.toString(16)} restored`);
    }
    assert.equal(sim.bar1Mode, gpu.bar1AtOpen.mode);
  });
}

Deno.test("selftest on a read-only session skips writing tests", async () => {
  const gpu = await openGpu({ device: "sim", readOnly: true });
  const results = await runSelfTests(gpu, [SUITES.pramin]);
  assert.ok(results.every((r) => r.status === "skip"));
  gpu.close();
});

Deno.test("deno task selftest --device sim:gh100 passes and stays under 200 MB RSS", async () => {
  const r = await runDeno("selftest.ts", ["--device", "sim:gh100", "--json"]);
  assert.equal(r.code, 0, r.stderr + r.stdout);
  const report = JSON.parse(r.stdout);
  assert.ok(report.results.length >= 6);
  assert.ok(report.rss < 200e6, `RSS ${report.rss}`);
});

Deno.test("selftest exits non-zero with a one-line error on an unknown device", async () => {
  const r = await runDeno("selftest.ts", ["--device", "sim:nv50"]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /^error: ENODEV: unknown simulator profile "nv50"/);
  assert.match(r.stderr, /hint: /);
});
