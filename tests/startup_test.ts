/**
 * Issue 17 item 10, what makes the first prompt come early (the time itself is measured by
 * `bench/startup.ts`, not here): a GPU opened with `openGpuEarly` works before the memory code
 * has loaded and refuses what needs it; the worker opens the device repl.ts names in its
 * name; keys typed the moment the prompt shows (before readline is up) are neither lost nor
 * fatal; the prompt is there again after the session has loaded behind it.
 */

import assert from "node:assert/strict";
import { earlyOpenOf, earlyWorkerName, parseReplArgs } from "../cli/repl_args.ts";
import { runDeno } from "./util.ts";
import { haveTmux, Terminal } from "./terminal.ts";

Deno.test("openGpuEarly: chip, layout, BAR1's root and walks at once; mm, bar1 and unmodelled registers after loadGpuModules", async () => {
  // A process of its own: here mod.ts (and so the memory code) is loaded already.
  const script = await Deno.makeTempFile({ suffix: ".ts" });
  try {
    await Deno.writeTextFile(
      script,
      `
import { loadGpuModules, openGpuEarly } from ${
        JSON.stringify(new URL("../mm/gpu.ts", import.meta.url).href)
      };
const gpu = await openGpuEarly({ device: "sim:ga102:gsp" });
const out: Record<string, unknown> = { chip: gpu.chip.name, usable: gpu.vram.usable.end > gpu.vram.usable.start };
const early = gpu.bar1Binding;
out.pdb = early?.pdb ?? null;
out.walk = gpu.walk(0x10000n).mapped;
// NV_PMC_INTR(0): defined in NVIDIA's headers, not modelled: its answer waits for the database.
try {
  out.unmodelled = gpu.bar0.read32(0x100);
} catch (e) {
  out.unmodelled = (e as Error).message;
}
for (const what of ["mm", "bar1"] as const) {
  try {
    void gpu[what];
    out[what] = "no error";
  } catch (e) {
    out[what] = (e as Error).message;
  }
}
await loadGpuModules();
out.after = gpu.bar1.binding?.pdb === early?.pdb && gpu.mm.buddy.stats().free > 0;
out.unmodelledAfter = gpu.bar0.read32(0x100);
gpu.close();
console.log(JSON.stringify(out));
`,
    );
    const r = await runDeno(script, []);
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout.trim().split("\n").pop()!);
    assert.equal(out.chip, "GA102");
    assert.equal(out.usable, true);
    assert.ok(
      typeof out.pdb === "number" && out.pdb > 0,
      `BAR1's root before the code: ${out.pdb}`,
    );
    assert.equal(out.walk, true);
    assert.match(out.mm, /^EAGAIN: gpu\.mm: .*not loaded yet/);
    assert.match(out.bar1, /^EAGAIN: gpu\.bar1: /);
    assert.equal(out.after, true);
    assert.match(
      out.unmodelled,
      /^EAGAIN: BAR0 0x100: the simulator does not model it, .*still loading/,
    );
    assert.equal(out.unmodelledAfter, 0); // its reset value in the headers
  } finally {
    await Deno.remove(script);
  }
});

Deno.test("repl args: the early worker's name carries the device flags, never a trace", () => {
  const name = earlyWorkerName(parseReplArgs(["--device", "sim:gh100", "--read-only"]));
  assert.deepEqual(earlyOpenOf(name), { device: "sim:gh100", readOnly: true, force: false });
  // --trace options are checked by the UI thread first: no early open then.
  assert.equal(earlyOpenOf(earlyWorkerName(parseReplArgs(["--trace", "/tmp/x.trace"]))), null);
  assert.equal(earlyOpenOf("novamm-repl {not json"), null);
  assert.equal(earlyOpenOf(""), null);
});

Deno.test({
  name:
    "repl: keys typed the moment the prompt shows are taken; the prompt stays after the session loads",
  ignore: !haveTmux(),
  async fn() {
    // Not -q: Deno's loading indicator may clear the prompt's line while the session loads;
    // nothing typed, the prompt must be there once it has loaded.
    const t0 = await Terminal.start(`${Deno.execPath()} run -A repl.ts --device sim:gh100`);
    try {
      // (tmux drops a line's trailing blanks)
      await t0.waitFor(/^gh100>$/m, 20000);
      await new Promise((r) => setTimeout(r, 1000));
      const lines = (await t0.screen()).trimEnd().split("\n");
      assert.equal(lines.at(-1), "gh100>", lines.slice(-3).join("\n"));
    } finally {
      await t0.close();
    }
    // A line typed the moment the prompt shows (before readline is up) runs.
    const term = await Terminal.start(`${Deno.execPath()} run -A repl.ts --device sim:gh100`);
    try {
      await term.waitFor(/^gh100>$/m, 20000);
      await term.line("6 * 7");
      await term.waitFor(/^gh100> 6 \* 7\n0x2a \(42\)\ngh100>$/m);
    } finally {
      await term.close();
    }
    // Ctrl-D the moment the prompt shows ends the session, not after a hang.
    const t2 = await Terminal.start(`${Deno.execPath()} run -A repl.ts`);
    try {
      await t2.waitFor(/^ga102>$/m, 20000);
      await t2.keys("C-d");
      await t2.waitFor("[exit 0]", 10000);
    } finally {
      await t2.close();
    }
  },
});
