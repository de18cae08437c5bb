/**
 * Every script in examples/ runs, through `repl.ts` as users run it (and one
 * directly), on the simulator, and prints what it should.
 */

import assert from "node:assert/strict";
import { ROOT, runDeno } from "./util.ts";

Deno.test("examples: every script in examples/ is covered here", () => {
  const names = [...Deno.readDirSync(`${ROOT}examples`)].map((e) => e.name).sort();
  // bring_up.ipynb (a notebook) is executed by tests/notebook_test.ts.
  assert.deepEqual(names, [
    "bring_up.ipynb",
    "dump_bar1_tables.ts",
    "fill_verify.ts",
    "pramin_throughput.ts",
  ]);
});

Deno.test("examples: fill_verify fills and verifies, through repl.ts and directly", async () => {
  let r = await runDeno("repl.ts", [
    "examples/fill_verify.ts",
    "--device",
    "sim:gh100",
    "--size",
    "1M",
  ]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(
    r.stdout,
    /^filled and verified 1 MiB at \[0x[0-9a-f]+, 0x[0-9a-f]+\) on sim:gh100: .* 26214[4-9] MMIO reads, 26214[4-9] writes, \d window moves\n0 mismatches\n$/,
  );
  assert.equal(r.stderr, "", "no progress bar when piped");
  r = await runDeno("examples/fill_verify.ts", [
    "--device",
    "sim",
    "--start",
    "0x4000000",
    "--size",
    "64K",
  ]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /at \[0x4000000, 0x4010000\) on sim:ga102/);
  r = await runDeno("repl.ts", ["examples/fill_verify.ts", "--start", "0"]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /^error: EINVAL: range \[0x0, 0x1000000\) is outside the usable VRAM/);
});

Deno.test("examples: dump_bar1_tables prints the tree and checks BAR1 against PRAMIN", async () => {
  const r = await runDeno("repl.ts", [
    "examples/dump_bar1_tables.ts",
    "--device",
    "sim:gh100:gsp",
    "--walk",
    "0x1000",
  ]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(
    r.stdout,
    /^BAR1 128 GiB, virtual: bar1, instance block 0x13e0000000, PDB 0x13e0001000/,
  );
  assert.match(r.stdout, /^ {10}PD0\[0\] va 0x0 .*DualPDE v3/m);
  assert.match(r.stdout, /^5 mapped pages; BAR1 vs PRAMIN/m);
  assert.equal(r.stdout.match(/ ok$/gm)?.length, 5);
  assert.match(r.stdout, /^walk 0x1000 -> 0x13e0009000 video \(4 KiB page at PT\)$/m);
  // A bare card: BAR1 is brought up, four pages mapped, dumped and checked.
  const bare = await runDeno("repl.ts", ["examples/dump_bar1_tables.ts"]);
  assert.equal(bare.code, 0, bare.stderr);
  assert.match(bare.stdout, /^BAR1 is physical \(no driver bound it\): bringing it up/);
  assert.match(bare.stdout, /^4 mapped pages; BAR1 vs PRAMIN/m);
  assert.equal(bare.stdout.match(/ ok$/gm)?.length, 4);
});

Deno.test("examples: pramin_throughput measures PRAMIN and BAR1", async () => {
  const r = await runDeno("repl.ts", ["examples/pramin_throughput.ts", "--size", "1"]);
  assert.equal(r.code, 0, r.stderr);
  const rows = r.stdout.split("\n").filter((l) => /^(PRAMIN|BAR1) /.test(l));
  assert.deepEqual(rows.map((l) => l.split(/\s+/).slice(0, 2).join(" ")), [
    "PRAMIN write",
    "PRAMIN read",
    "BAR1 write",
    "BAR1 read",
  ]);
  // One 32-bit access per 4 bytes, whichever path: 262,144 per MiB.
  // One 32-bit access per 4 bytes whichever path (262,144 per MiB), plus a few window moves.
  for (const l of rows) {
    const perMiB = Number(l.split(/\s+/)[3]);
    assert.ok(perMiB >= 262144 && perMiB <= 262160, l);
  }
});
