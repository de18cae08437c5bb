// Runs every self-test suite on every simulator profile under `deno test`.
import assert from "node:assert/strict";
import { openGpu } from "../mod.ts";
import { SIM_PROFILES } from "../hw/sim/profiles.ts";
import { runSelfTests } from "../selftests/selftest.ts";
import { SUITES } from "../selftests/selftest_suites.ts";
import { runDeno } from "./util.ts";

/** Tests a state may skip: those that need firmware's tables, or virtual BAR1 on a console card. */
function allowedSkips(state: string): RegExp {
  return state === "vga" ? /./ : /^firmware mappings intact$/;
}

const runs: [string, string][] = Object.keys(SIM_PROFILES).map((p) => [p, "bare"]);
// The card states on one chip of each MMU version.
for (const p of ["ga102", "gh100"]) for (const s of ["gsp", "unloaded", "vga"]) runs.push([p, s]);

for (const [profile, state] of runs) {
  for (const suite of Object.values(SUITES)) {
    const device = state === "bare" ? `sim:${profile}` : `sim:${profile}:${state}`;
    Deno.test(`selftest ${suite.name} on ${device}`, async () => {
      const gpu = await openGpu({ device });
      const found = gpu.bar1AtOpen.registers;
      try {
        const results = await runSelfTests(gpu, [suite]);
        const failed = results.filter((r) =>
          r.status === "fail" ||
          r.status === "skip" && !(state !== "gsp" && allowedSkips(state).test(r.name))
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
