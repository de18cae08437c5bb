/**
 * MMIO traces: the line format, the writer, capturing the accesses made while
 * a device opens, replay on a fresh simulator, and the `--trace` / `replay`
 * round trip as a user runs it.
 */

import assert from "node:assert/strict";
import { formatAccess, parseTrace, replayTrace, TraceWriter } from "../hw/trace.ts";
import type { MmioAccess } from "../hw/mmio.ts";
import { createSimGpu } from "../hw/sim/gpu.ts";
import { NovaError, openGpu } from "../mod.ts";
import { runDeno } from "./util.ts";

Deno.test("trace: access lines format and parse back", () => {
  const a: MmioAccess = { bar: "bar0", op: "r", width: 4, offset: 0xa00, value: 0x172a1000 };
  assert.equal(formatAccess(a), "r bar0 4 0x00000a00 0x172a1000");
  assert.equal(
    formatAccess({ bar: "bar1", op: "w", width: 1, offset: 0x1_0000_0003, value: 0xf }),
    "w bar1 1 0x100000003 0x0f",
  );
  const t = parseTrace(
    "# novamm trace v1 device=sim:gh100 chip=GH100\n" +
      "r bar0 4 0x00000a00 0x172a1000\n# > w.read16(2)\n\nr bar1 2 0x00000002 0xbeef\r\n" +
      "# end accesses=2\n",
  );
  assert.deepEqual(t.header, { device: "sim:gh100", chip: "GH100" });
  assert.deepEqual(t.entries, [
    { line: 2, ...a },
    { line: 5, bar: "bar1", op: "r", width: 2, offset: 2, value: 0xbeef },
  ]);
  assert.equal(t.comments.get(3), "> w.read16(2)");
  assert.deepEqual(t.footer, { accesses: 2, limit: null });
});

Deno.test("trace: malformed files name the line", () => {
  const bad = (text: string, re: RegExp) =>
    assert.throws(() => parseTrace(text, { path: "x.trace" }), (e: unknown) => {
      assert.ok(e instanceof NovaError);
      assert.match(e.message, re);
      return true;
    });
  bad("hello\n", /x\.trace line 1 is not a novamm trace header/);
  bad("# novamm trace v2 device=sim\n", /version "v2"/);
  bad("# novamm trace v1 chip=GA102\n", /no device=/);
  bad("# novamm trace v1 device=sim\nr bar0 4 0x0 0x1\nr bar2 4 0x0 0x1\n", /line 3: "r bar2/);
  bad("# novamm trace v1 device=sim\nr bar0 1 0x0 0x100\n", /line 2: value 0x100 does not fit/);
  // Cut short: no footer, or a footer that disagrees, or text after it.
  bad(
    "# novamm trace v1 device=sim\nr bar0 4 0x0 0x1\n",
    /ends without its footer after 1 accesses/,
  );
  bad(
    "# novamm trace v1 device=sim\nr bar0 4 0x0 0x1\n# end accesses=2\n",
    /footer says 2 accesses, the file holds 1/,
  );
  bad(
    "# novamm trace v1 device=sim\n# end accesses=0\nr bar0 4 0x0 0x1\n",
    /line 3: text after the footer/,
  );
});

Deno.test("trace: the writer buffers and closes; the tracer option sees the boot reads", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const boot: MmioAccess[] = [];
    const gpu = await openGpu({ device: "sim:gh100", tracer: (a) => boot.push(a) });
    // BOOT_0 then BOOT_42 come first, then the VRAM size register.
    assert.deepEqual(boot.slice(0, 2).map((a) => a.offset), [0x0, 0xa00]);
    assert.equal(boot[0].value, gpu.chip.boot0);
    // The tracer stays on the BARs until replaced.
    const n = boot.length;
    gpu.bar0.read32(0);
    assert.equal(boot.length, n + 1);
    gpu.bar0.tracer = undefined;

    const path = `${dir}/t.trace`;
    const w = new TraceWriter(path, { device: gpu.device.spec, chip: gpu.chip.name });
    for (const a of boot) w.record(a);
    gpu.device.bar0.tracer = w.tracer;
    {
      using win = gpu.pramin.window();
      win.write32(0x100000, 0xcafe);
      assert.equal(win.read32(0x100000), 0xcafe);
    }
    w.comment("done");
    gpu.close();
    w.close();
    w.record({ bar: "bar0", op: "r", width: 4, offset: 0, value: 0 }); // dropped after close
    const t = parseTrace(await Deno.readTextFile(path));
    assert.equal(t.header.device, "sim:gh100");
    assert.equal(t.entries.length, w.accesses);
    assert.ok(t.entries.some((e) => e.op === "w" && e.value === 0xcafe));
    assert.deepEqual(replayTrace(t, createSimGpu({ profile: "gh100" })).divergence, undefined);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("trace: replay stops at the first read that differs, and checks lines first", () => {
  const text = "# novamm trace v1 device=sim:ga102\n" +
    "r bar0 4 0x00000000 0x172000a1\n" +
    "# > peek\n" +
    "r bar0 4 0x00000a00 0x12345678\n" +
    "r bar0 4 0x00000a00 0x172a1000\n# end accesses=3\n";
  const r = replayTrace(parseTrace(text), createSimGpu());
  assert.equal(r.reads, 2);
  assert.equal(r.divergence?.entry.line, 4);
  assert.equal(r.divergence?.got, 0x172a1000);
  assert.equal(r.divergence?.input, "peek");
  const past =
    "# novamm trace v1 device=sim:ga102\nw bar0 4 0x00000000 0x0\nr bar1 4 0x10000000 0x0\n" +
    "# end accesses=2\n";
  const sim = createSimGpu();
  assert.throws(() => replayTrace(parseTrace(past), sim), /line 3: 4-byte access at 0x10000000/);
  assert.equal(sim.log.length, 0, "nothing was replayed before the bad line was found");
});

Deno.test("trace: record a REPL session, replay it, tamper with a read, replay names it", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/session.trace`;
    const input = [
      "using w = pramin.window()",
      "for (let i = 0; i < 64; i++) w.write32(0x200000 + 4 * i, i * 0x01010101)",
      "w.read32(0x200000 + 4 * 7)",
      "w.readBytes(0x200000, 16).length",
      "walk(0x10000n).mapped",
      ".exit",
    ].join("\n") + "\n";
    const rec = await runDeno("repl.ts", ["--device", "sim:gh100", "--trace", path], { input });
    assert.equal(rec.code, 0, rec.stdout + rec.stderr);
    assert.match(rec.stdout, /0x7070707 \(117901063\)/);
    const text = await Deno.readTextFile(path);
    const lines = text.split("\n");
    assert.equal(lines[0], "# novamm trace v1 device=sim:gh100 chip=GH100 start=open");
    assert.equal(lines[1], "r bar0 4 0x00000000 0x180000a1"); // BOOT_0 first
    assert.ok(lines.includes("# > w.read32(0x200000 + 4 * 7)"));
    // At exit the `using` window was disposed: the last access restores the window register.
    assert.equal(lines.filter((l) => l !== "").at(-2), "w bar0 4 0x0010fd40 0x00000000");
    assert.match(lines.filter((l) => l !== "").at(-1)!, /^# end accesses=\d+$/);

    let r = await runDeno("replay.ts", [path]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(
      r.stdout,
      /^replay ok: \d+ accesses \(\d+ reads matched, \d+ writes\) on sim:gh100/,
    );

    // Change the value of the read that w.read32() made.
    const at = lines.findIndex((l) => l === "r bar0 4 0x0070001c 0x07070707");
    assert.ok(at > 0, "the traced read is in the file");
    lines[at] = "r bar0 4 0x0070001c 0x07070708";
    const tampered = `${dir}/tampered.trace`;
    await Deno.writeTextFile(tampered, lines.join("\n"));
    r = await runDeno("replay.ts", [tampered]);
    assert.equal(r.code, 1);
    assert.equal(
      r.stdout.split("\n").slice(0, 3).join("\n").replace(
        /after \d+ matching reads and \d+ writes/,
        "after N",
      ),
      `replay diverged at ${tampered}:${at + 1}: r bar0 4 0x0070001c 0x07070708\n` +
        "  expected 0x07070708, got 0x07070707 on sim:gh100 (after N)\n" +
        "  made by REPL input: w.read32(0x200000 + 4 * 7)",
    );

    // Replaying on another chip diverges at BOOT_0; a card's trace needs --device.
    r = await runDeno("replay.ts", [path, "--device", "sim:ga102"]);
    assert.equal(r.code, 1);
    assert.match(r.stdout, /diverged at .*:2: r bar0 4 0x00000000 0x180000a1/);
    const card = `${dir}/card.trace`;
    await Deno.writeTextFile(card, "# novamm trace v1 device=0000:65:00.0\n");
    r = await runDeno("replay.ts", [card]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /recorded on 0000:65:00\.0, not a simulator\nhint: pass --device sim:/);
    r = await runDeno("replay.ts", [`${dir}/none.trace`]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^error: ENOENT: cannot read trace/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("trace: a session on a gsp card replays on the same card state (bind, map, close)", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/gsp.trace`;
    const rec = await runDeno("repl.ts", [
      "--device",
      "sim:ga102:gsp",
      "--trace",
      path,
      "--eval",
      "const a = mm.buddy.alloc(4096); using m = bar1.map(a, { writable: true }); m.write32(0, 5); bar1.unbind(); bar1.bringUp(); m.read32(0)",
    ]);
    assert.equal(rec.code, 0, rec.stderr);
    assert.match((await Deno.readTextFile(path)).split("\n")[0], /device=sim:ga102:gsp /);
    const r = await runDeno("replay.ts", [path]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /^replay ok: .* on sim:ga102:gsp in/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("trace: a truncated file is refused; --trace-max stops recording with a complete prefix that replays", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/big.trace`;
    const rec = await runDeno("repl.ts", [
      "--trace",
      path,
      "--trace-max",
      "64K",
      "--eval",
      "pramin.readBytes(0x100000, 256 * 1024).length",
    ]);
    assert.equal(rec.code, 0, rec.stderr);
    assert.match(
      rec.stderr,
      /note: trace .* reached its size limit of 65536 bytes after \d+ accesses: recording stopped/,
    );
    const size = (await Deno.stat(path)).size;
    assert.ok(size <= 65536 + 64, `trace is ${size} bytes`);
    const text = await Deno.readTextFile(path);
    assert.match(text, /\n# end accesses=\d+ limit=65536\n$/);
    let r = await runDeno("replay.ts", [path]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /replay ok: .*\n {2}the recording stopped at its size limit/);
    // Cut off the footer and the last lines, as a crash would.
    await Deno.writeTextFile(path, text.slice(0, text.length - 200));
    r = await runDeno("replay.ts", [path]);
    assert.equal(r.code, 1);
    assert.match(
      r.stderr,
      /ends without its footer after \d+ accesses: the recording was cut short/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
