/**
 * Traces with names: a bare-card BAR1 bring-up recorded on the simulator and
 * printed by `deno task replay --decode` names every BAR0 access (from
 * NVIDIA's headers, or novamm's own hw/regs.ts where no header has the
 * register — each such case listed here with its reason) and resolves PRAMIN
 * accesses to VRAM addresses.
 */

import assert from "node:assert/strict";
import { openGpu } from "../mod.ts";
import { TraceWriter } from "../hw/trace.ts";
import { decodeAccesses } from "../hw/regdb/trace_decode.ts";
import { runDeno } from "./util.ts";

/** Offsets named from hw/regs.ts in these traces, because the chip's headers lack them. */
const NOVAMM_NAMED: Record<string, Record<string, string>> = {
  ga102: {
    MEM_CLEAR_STATUS: "gpu-admin-tools' register; in no published header (facts §14.2)",
  },
  gh100: {
    MEM_CLEAR_STATUS: "gpu-admin-tools' register; in no published header (facts §14.2)",
    NV_USABLE_FB_SIZE_IN_MB: "published for GA102 only (dev_gc6_island_addendum.h)",
    NV_VIRTUAL_FUNCTION_PRIV_MMU_INVALIDATE: "gh100 dev_vm.h has no TLB invalidate registers",
    NV_VIRTUAL_FUNCTION_PRIV_MMU_INVALIDATE_PDB: "as above",
    NV_VIRTUAL_FUNCTION_PRIV_MMU_INVALIDATE_UPPER_PDB: "as above",
  },
};

async function record(device: string, dir: string): Promise<string> {
  const path = `${dir}/${device.replace(":", "_")}.trace`;
  const w = new TraceWriter(path, { device });
  try {
    const gpu = await openGpu({ device, tracer: w.tracer });
    try {
      gpu.bar1.bringUp();
    } finally {
      gpu.close();
    }
  } finally {
    w.close();
  }
  return path;
}

for (const chip of ["ga102", "gh100"]) {
  Deno.test(`replay --decode: a bare-card BAR1 bring-up on sim:${chip} names every BAR0 access`, async () => {
    const dir = await Deno.makeTempDir();
    try {
      const path = await record(`sim:${chip}`, dir);
      const r = await runDeno("replay.ts", ["--decode", path]);
      assert.equal(r.code, 0, r.stdout + r.stderr);
      const lines = r.stdout.split("\n").filter((l) => /^\s+\d+ {2}[rw] bar0 /.test(l));
      assert.ok(lines.length > 100, r.stdout.slice(0, 500));
      const novamm = new Set<string>();
      for (const l of lines) {
        assert.doesNotMatch(l, /no register here/, l);
        if (/ {2}PRAMIN /.test(l)) {
          assert.match(l, /PRAMIN -> VRAM 0x[0-9a-f]+ = /, l);
          continue;
        }
        assert.match(l, / {2}(NV_\w+|MEM_CLEAR_STATUS)(\(\d+(,\d+)?\))? = 0x/, l);
        const m = / {2}(\w+) = \S+.*\[novamm\]$/.exec(l);
        if (m !== null) novamm.add(m[1]);
      }
      assert.deepEqual([...novamm].sort(), Object.keys(NOVAMM_NAMED[chip]).sort());
      // Field names and enum names appear; the window register shows the move.
      assert.match(r.stdout, /NV_PMC_BOOT_42 = 0x[0-9a-f]{8} \{ .*CHIP_ID=/);
      assert.match(r.stdout, /-> PRAMIN window at VRAM 0x/);
      if (chip === "gh100") {
        assert.match(r.stdout, /NV_XAL_EP_ZB_UFLUSH_FB_FLUSH_COMPLETED = 0x[0-9a-f]+ \{ TOKEN=/);
      } else {
        assert.match(
          r.stdout,
          /NV_VIRTUAL_FUNCTION_PRIV_BAR1_BLOCK = 0x80[0-9a-f]+ \{.*MODE=0x1 \(VIRTUAL\)/,
        );
      }
      // --registers leaves the PRAMIN data out; the plain replay still works.
      const regsOnly = await runDeno("replay.ts", ["--decode", "--registers", path]);
      assert.equal(regsOnly.code, 0);
      assert.doesNotMatch(regsOnly.stdout, / {2}PRAMIN /);
      const plain = await runDeno("replay.ts", [path]);
      assert.equal(plain.code, 0, plain.stdout + plain.stderr);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
}

Deno.test("replay --decode: PRI errors are named, unknown offsets say so, a cut trace is flagged", async () => {
  const lines = await decodeAccesses("GA102", [
    { bar: "bar0", op: "r", width: 4, offset: 0x100c80, value: 0xbadf5040 },
    { bar: "bar0", op: "r", width: 4, offset: 0x3ffffc, value: 0xbadf1100 },
    { bar: "bar0", op: "w", width: 4, offset: 0x1700, value: 0x10 },
    { bar: "bar0", op: "r", width: 4, offset: 0x700010, value: 1 },
  ]);
  assert.match(lines[0], /NV_PFB_PRI_MMU_CTRL = 0xbadf5040 \(PRI error FECS_PRI_CLIENT_ERR/);
  assert.match(
    lines[1],
    /0x3ffffc = 0xbadf1100 \(PRI error FECS_PRI_DECODE .*\) \(no register here\)/,
  );
  assert.match(lines[2], /BASE=0x10 .*-> PRAMIN window at VRAM 0x100000/);
  assert.match(lines[3], /PRAMIN -> VRAM 0x100010 = 0x00000001/);

  const dir = await Deno.makeTempDir();
  try {
    const cut = `${dir}/cut.trace`;
    await Deno.writeTextFile(
      cut,
      "# novamm trace v1 device=sim:gh100\nr bar0 4 0x00000000 0x180000a1\n",
    );
    const r = await runDeno("replay.ts", ["--decode", cut]);
    assert.equal(r.code, 1);
    assert.match(r.stdout, /NV_PMC_BOOT_0 = 0x180000a1/);
    assert.match(r.stdout, /no footer after 1 accesses/);
    const bad = await runDeno("replay.ts", ["--chip", "GA102", cut]);
    assert.notEqual(bad.code, 0);
    assert.match(bad.stdout + bad.stderr, /--chip and --registers go with --decode/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
