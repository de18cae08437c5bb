// Runs every self-test suite on every simulator profile under `deno test`.
import assert from "node:assert/strict";
import { openGpu } from "../mod.ts";
import { SIM_PROFILES } from "../hw/sim/profiles.ts";
import { runSelfTests } from "./selftest.ts";
import { SUITES } from "./selftest_suites.ts";
import { runDeno } from "./util.ts";

for (const profile of Object.keys(SIM_PROFILES)) {
  for (const suite of Object.values(SUITES)) {
    Deno.test(`selftest ${suite.name} on sim:${profile}`, async () => {
      const gpu = await openGpu({ device: `sim:${profile}` });
      try {
        const results = await runSelfTests(gpu, [suite]);
        const failed = results.filter((r) => r.status !== "pass");
        assert.deepEqual(failed, [], failed.map((r) => `${r.name}: ${r.detail}`).join("\n"));
        assert.deepEqual(gpu.sim!.errors(), [], "the simulator logged no driver errors");
      } finally {
        gpu.close();
      }
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
