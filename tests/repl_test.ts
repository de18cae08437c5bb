/**
 * The REPL driven as a user drives it: piped stdin, --eval, scripts, --help,
 * and (when tmux is installed) a real terminal for completion, history and
 * Ctrl-C / Ctrl-D. Plus the pieces underneath: the evaluator's rewriting,
 * value printing, completion and argument parsing.
 */

import assert from "node:assert/strict";
import { checkInput, Evaluator, rewrite } from "../cli/repl_eval.ts";
import { formatInteger, formatValue, hexdumpText } from "../cli/repl_format.ts";
import { parseReplArgs } from "../cli/repl_args.ts";
import { complete } from "../cli/repl_session.ts";
import { buildGlobals, globalEntries } from "../cli/globals.ts";
import { NovaError, openGpu } from "../mod.ts";
import { ROOT, runDeno, throwsNova } from "./util.ts";
import { haveTmux, Terminal } from "./terminal.ts";

// --- the evaluator ----------------------------------------------------------

Deno.test("repl eval: complete, incomplete and wrong input", () => {
  assert.equal(checkInput("1 + 1").state, "complete");
  assert.equal(checkInput("").state, "complete");
  for (const s of ["function f() {", "[1,", "foo(", "`abc", "/* note", "const a =", "{"]) {
    assert.equal(checkInput(s).state, "incomplete", s);
  }
  for (const s of ["1 +* 2", "a b", "'abc", ")"]) assert.equal(checkInput(s).state, "error", s);
});

Deno.test("repl eval: declarations persist, const is read-only, last expression returns", async () => {
  const ev = new Evaluator();
  const g = globalThis as Record<string, unknown>;
  assert.deepEqual((await ev.evaluate("const replT1 = 40; let replT2 = 2")).declared, [
    "replT1",
    "replT2",
  ]);
  assert.equal((await ev.evaluate("replT1 + replT2")).value, 42);
  await assert.rejects(ev.evaluate("replT1 = 5"), TypeError);
  await ev.evaluate("replT2 = 5");
  assert.equal(g.replT2, 5);
  await ev.evaluate("const replT1 = 7"); // redeclaring at the prompt replaces
  assert.equal(g.replT1, 7);
  await ev.evaluate(
    "const { replT3, replT4: [, replT5 = 9], ...replT6 } = { replT3: 1, replT4: [0], z: 2 }",
  );
  assert.deepEqual([g.replT3, g.replT5, g.replT6], [1, 9, { z: 2 }]);
  await ev.evaluate("function replF(x) { return replG(x) * 2 }\nclass ReplC { v = 3 }");
  await ev.evaluate("function replG(x) { return x + 1 }");
  assert.equal((await ev.evaluate("replF(1) + new ReplC().v")).value, 7);
  const r = await ev.evaluate("const x1 = await Promise.resolve(5n); x1 * 2n");
  assert.deepEqual([r.value, r.hasValue], [10n, true]);
  assert.equal((await ev.evaluate("const replT7 = 1")).hasValue, false);
  assert.deepEqual((await ev.evaluate("{ a: 1, b: [2] }")).value, { a: 1, b: [2] });
  // A top-level `name = value` declares a new name; elsewhere strict mode still applies.
  assert.equal((await ev.evaluate("replT8 = 6; replT8 = replT8 + 1")).value, 7);
  assert.equal(g.replT8, 7);
  await assert.rejects(ev.evaluate("replT1 = 8"), TypeError);
  await assert.rejects(ev.evaluate("(() => { replNoSuchName = 1 })()"), ReferenceError);
  assert.throws(() => rewrite("export const q = 1"), SyntaxError);
  const made = "replT1 replT2 replT3 replT5 replT6 replF replG ReplC x1 replT7 replT8";
  for (const k of made.split(" ")) {
    delete g[k];
  }
});

Deno.test("repl eval: using lives until disposeAll, last first; import works at the prompt", async () => {
  const ev = new Evaluator({ baseUrl: new URL("../", import.meta.url).href });
  const log: string[] = [];
  (globalThis as Record<string, unknown>).replLog = log;
  await ev.evaluate(
    "using replU1 = { [Symbol.dispose]() { replLog.push('u1') } }\n" +
      "await using replU2 = { async [Symbol.asyncDispose]() { replLog.push('u2') } }",
  );
  assert.equal(ev.held, 2);
  assert.deepEqual(log, []);
  await assert.rejects(ev.evaluate("using replU3 = 5"), TypeError);
  await assert.rejects(ev.evaluate("replU1 = 1"), TypeError);
  assert.deepEqual(await ev.disposeAll(), []);
  assert.deepEqual(log, ["u2", "u1"]);
  await ev.evaluate('import { hex as replHex } from "./hw/errors.ts"');
  assert.equal((await ev.evaluate("replHex(255)")).value, "0xff");
  const m = await ev.evaluate('(await import("./hw/errors.ts")).hex(16)');
  assert.equal(m.value, "0x10");
  for (const k of ["replLog", "replU1", "replU2", "replHex"]) {
    delete (globalThis as Record<string, unknown>)[k];
  }
});

// --- printing ----------------------------------------------------------------

Deno.test("repl format: bigints in hex, numbers by size, nested addresses, custom inspect", () => {
  assert.equal(formatValue(0x12345000n), "0x12345000n");
  assert.equal(formatValue(undefined), null);
  assert.equal(formatInteger(0xdeadbeef), "0xdeadbeef (3735928559)");
  assert.equal(formatInteger(4096), "0x1000 (4096)", "hex first at every size");
  assert.equal(formatInteger(42), "0x2a (42)");
  assert.equal(formatInteger(7), "0x7");
  assert.equal(
    formatValue({ index: 12, flags: 12 }),
    "{ index: 12, flags: 0xc }",
    "counts in decimal",
  );
  assert.equal(formatValue(1.5), "1.5");
  assert.equal(
    formatValue({ size: 2 ** 30, mmioReads: 70000, raw: [1n, 2n] }),
    "{ size: 0x40000000, mmioReads: 70000, raw: [ 0x1n, 0x2n ] }",
  );
  const custom = { [Symbol.for("Deno.customInspect")]: () => "Thing 0x1000" };
  assert.equal(formatValue(custom), "Thing 0x1000");
  assert.equal(formatValue({ inner: custom }), "{ inner: Thing 0x1000 }");
  const dump = formatValue(new Uint8Array([0x41, 0x42, 0, 0xff]))!;
  assert.match(dump, /^Uint8Array\(4\)\n0x00000000 {2}41 42 00 ff .*\|AB\.\.\|\n0x00000004$/);
});

Deno.test("repl format: hexdump collapses repeated lines like hexdump -C", () => {
  const bytes = new Uint8Array(64);
  bytes[0] = 0xef;
  const lines = hexdumpText(bytes, 0x1000).split("\n");
  assert.deepEqual(lines.map((l) => l.slice(0, 10)), [
    "0x00001000",
    "0x00001010",
    "*",
    "0x00001040",
  ]);
  assert.match(
    lines[0],
    /^0x00001000 {2}ef( 00){7} {2}00( 00){7} {2}\|\.{16}\|$/,
  );
});

// --- completion and arguments --------------------------------------------------

Deno.test("repl completion: globals, members, commands", async () => {
  const gpu = await openGpu({ device: "sim" });
  const g = globalThis as Record<string, unknown>;
  g.replGpu = gpu;
  try {
    assert.deepEqual(complete("replGpu.pra"), [["pramin"], "pra"]);
    assert.deepEqual(complete("x = replGpu.pramin.win"), [["window", "windows"], "win"]);
    const [all] = complete("replGpu.");
    for (const n of ["bar0", "chip", "close", "pramin", "stats", "vram"]) {
      assert.ok(all.includes(n), n);
    }
    assert.ok(!all.some((n) => n.startsWith("_") || n === "constructor"));
    assert.deepEqual(complete("replGp"), [["replGpu"], "replGp"]);
    assert.ok(complete("cons")[0].includes("const"));
    assert.deepEqual(complete(".ex"), [[".exit"], ".ex"]);
    assert.deepEqual(complete("noSuchThing.fo"), [[], "fo"]);
    assert.deepEqual(complete("", ["gpu", "pramin"]), [["gpu", "pramin"], ""]);
  } finally {
    delete g.replGpu;
    gpu.close();
  }
});

Deno.test("repl args: flags before or after the script, script args, list, errors", () => {
  const a = parseReplArgs([
    "examples/x.ts",
    "--device",
    "sim:gh100",
    "--size",
    "1M",
    "--read-only",
  ]);
  assert.deepEqual(
    [a.script, a.device, a.readOnly, a.args],
    ["examples/x.ts", "sim:gh100", true, ["--size", "1M"]],
  );
  assert.deepEqual(parseReplArgs(["-e", "1+1", "--trace=t.trace"]).trace, "t.trace");
  assert.deepEqual(parseReplArgs(["list", "--sysfs-root", "/x"]).args, ["--sysfs-root", "/x"]);
  assert.deepEqual(parseReplArgs(["s.ts", "--", "--device", "y"]).args, ["--device", "y"]);
  assert.throws(() => parseReplArgs(["--bogus"]), NovaError);
  assert.throws(() => parseReplArgs(["--device"]), /needs a value/);
  assert.throws(() => parseReplArgs(["-e", "1", "s.ts"]), /do not go together/);
});

Deno.test("repl globals: every preloaded name has help; lazy ones are made on use", async () => {
  using gpu = await openGpu({ device: "sim:gh100:gsp" });
  const g = buildGlobals(gpu);
  const names = globalEntries(g).map((e) => e.name);
  for (
    const n of [
      "gpu",
      "pramin",
      "tlb",
      "mm",
      "vmm",
      "bar1",
      "mmu",
      "hex",
      "hexdump",
      "pte",
      "pde",
      "walk",
      "stats",
      "help",
    ]
  ) {
    assert.ok(names.includes(n), n);
  }
  const before = gpu.stats().mmioReads;
  const text = String(g.help());
  assert.equal(gpu.stats().mmioReads, before, "help() must not touch the GPU");
  for (const n of names) assert.match(text, new RegExp(`^  ${n} `, "m"));
  assert.match(String(g.pte(0x13e0010681n)), /valid video 0x13e0010000/);
  assert.equal(g.hex(4096), "0x1000");
  assert.match(String(g.walk(0x10000n)), /-> 0x13e0010000 video \(64 KiB page at PT64K\)/);
  assert.match(String(g.hexdump(new Uint8Array([1, 2]), 2, 0x40)), /^0x00000040 {2}01 02/);
  assert.throws(() => g.hexdump({} as never), /hexdump takes/);
  {
    // A window held at the prompt is shared by the helpers, and restored when it closes.
    using w = gpu.pramin.window();
    w.write32(0x100000, 0x04030201);
    w.write32(0x5000000, 0x5eed5eed); // the user's window sits at 80 MiB
    assert.match(String(g.hexdump(0x100000, 16)), /^0x00100000 {2}01 02 03 04/);
    assert.equal(
      w.read32(0x5000000),
      0x5eed5eed,
      "the user's window repositions after the helper moved it",
    );
    throwsNova(() => gpu.pramin.window(), "EBUSY");
  }
  assert.equal(gpu.pramin.readBase(), 0, "restored when the user's window closed");
  const vmm = g.vmm; // firmware's BAR1 tables, scanned when walk() first needed BAR1
  assert.match(Deno.inspect(vmm), /Vmm bar1 MMU v3/);
  assert.equal(g.vmm, vmm);
  // `vmm` follows what BAR1 is bound to.
  const ch = gpu.mm.createVmm({ vaSize: BigInt(gpu.bar1.size) });
  gpu.bar1.bind(ch);
  assert.equal(g.vmm, ch);
  gpu.bar1.unbind();
  throwsNova(() => g.vmm, "ENODEV");
  gpu.bar1.bringUp();
  assert.equal(g.vmm, vmm);
});

Deno.test("repl globals: on a bare card vmm is there once bar1.bringUp() ran", async () => {
  using gpu = await openGpu({ device: "sim:ga102" });
  const g = buildGlobals(gpu);
  throwsNova(() => g.vmm, "ENODEV");
  g.bar1.bringUp();
  assert.match(Deno.inspect(g.vmm), /Vmm bar1 MMU v2/);
  assert.match(String(g.walk(0n)), /walk 0x0 -> unmapped: invalid-pde at PD3/);
});

// --- the command, as a user runs it -------------------------------------------

Deno.test("repl: piped session — values, multi-line, persistence, await, errors, using", async () => {
  const input = [
    "1 + 1",
    "const a = gpu.vram.size",
    "a / 2",
    "function twice(x) {",
    "  return x * 2;",
    "}",
    "twice(21)",
    "await Promise.resolve(0x12345000n)",
    "using w = pramin.window()",
    "w.write32(0x100000, 0xdeadbeef)",
    "w.read32(0x100000)",
    "w.read32(0x100001)",
    "a = 1",
    "help()",
    "gpu.chip.name",
    "[1,",
    "2))",
    ".exit",
  ].join("\n") + "\n";
  const r = await runDeno("repl.ts", [], { input });
  assert.equal(r.code, 0, r.stdout + r.stderr);
  const out = r.stdout;
  assert.match(out, /^novamm REPL · sim:ga102 · GA102 A1 \(Ampere, MMU v2\) · read-write$/m);
  assert.match(
    out,
    /^GFW boot done \(NV_PGC6_AON_SECURE_SCRATCH_GROUP_05_0_GFW_BOOT = 0xff\) · BAR1 256 MiB physical /m,
  );
  assert.match(
    out,
    /^VRAM 24 GiB, usable \[0x40000, 0x5fff00000\) \(23\.99 GiB, largest range firmware leaves\)$/m,
  );
  assert.match(
    out,
    /^ {2}vga-workspace \[0x5fff00000, 0x600000000\) {2}NV_PDISP_VGA_WORKSPACE_BASE = /m,
  );
  assert.match(out, /ga102> 0x2\n/);
  assert.match(out, /ga102> 0x300000000 \(12884901888\)\n/);
  assert.match(out, /(\.\.\. ){2}ga102> 0x2a \(42\)\n/); // two continuation prompts
  assert.match(out, /ga102> 0x12345000n\n/);
  assert.match(out, /ga102> 0xdeadbeef \(3735928559\)\n/);
  assert.match(
    out,
    /ga102> error: EINVAL: VRAM address 0x100001 is not aligned to the 4-byte access width\n/,
  );
  assert.match(out, /ga102> error: TypeError: a is a constant/);
  assert.match(out, /^ {2}hexdump +hex dump of VRAM/m);
  assert.match(out, /ga102> "GA102"\n/);
  assert.match(out, /ga102> \.\.\. error: SyntaxError: Unexpected token/);
});

Deno.test("repl: --eval prints the awaited value and exits 0; errors exit 1 with one line", async () => {
  let r = await runDeno("repl.ts", [
    "--device",
    "sim:gh100",
    "--eval",
    "const c = gpu.chip; [c.name, c.mmuVersion]",
  ]);
  assert.deepEqual([r.code, r.stdout, r.stderr], [0, '[ "GH100", 0x3 ]\n', ""]);
  r = await runDeno("repl.ts", ["-e", "await Promise.resolve(gpu.vram.usable)"]);
  assert.equal(r.stdout, "{ start: 0x40000, end: 0x5fff00000 }\n");
  r = await runDeno("repl.ts", ["--device", "sim:ga102:gsp", "-e", "gpu.vram.usable"]);
  assert.equal(r.stdout, "{ start: 0x100000, end: 0x5f0000000 }\n", "GSP's report on a gsp card");
  r = await runDeno("repl.ts", ["-e", "pramin.read32(2 ** 41)"]);
  assert.equal(r.code, 1);
  assert.equal(r.stdout, "");
  assert.match(r.stderr, /^error: EINVAL: .*0x20000000000.*\n$/);
  r = await runDeno("repl.ts", ["-e", "1 +* 2"]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /^error: SyntaxError: Unexpected token \(1:3\)\n$/);
  r = await runDeno("repl.ts", ["--device", "sim:nope", "-e", "1"]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /^error: ENODEV: unknown simulator profile "nope"; known: sim:ga102, /);
  r = await runDeno("repl.ts", ["--device", "0000:01:00.0", "-e", "1"]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /^error: ENODEV: no NVIDIA GPU at 0000:01:00\.0.*\nhint: .*--device sim/);
  r = await runDeno("repl.ts", ["--read-only", "-e", "pramin.write32(0x100000, 1)"]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /^error: EPERM: .*read-only.*\nhint: reopen without --read-only/);
});

Deno.test("repl: a script runs with the globals, its own args, and its exit status", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const ok = `${dir}/ok.ts`;
    await Deno.writeTextFile(
      ok,
      `import { scriptGlobals } from "${ROOT}cli/globals.ts";\n` +
        `const g = await scriptGlobals();\n` +
        `// deno-lint-ignore no-explicit-any\n` +
        `const bare = (globalThis as any).gpu;\n` +
        `console.log(g.gpu === bare, bare.chip.name, JSON.stringify(g.args));\n`,
    );
    let r = await runDeno("repl.ts", [ok, "--device", "sim:gh100", "--size", "1M", "x"]);
    assert.deepEqual([r.code, r.stdout], [0, 'true GH100 ["--size","1M","x"]\n']);
    const bad = `${dir}/bad.ts`;
    await Deno.writeTextFile(
      bad,
      "// deno-lint-ignore no-explicit-any\n(globalThis as any).pramin.read32(3);\n",
    );
    r = await runDeno("repl.ts", [bad]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^error: EINVAL: VRAM address 0x3 is not aligned/);
    r = await runDeno("repl.ts", [`${dir}/missing.ts`]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^error: ENOENT: script .*missing\.ts not found/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("repl: every command has --help; bad options are one line plus a hint", async () => {
  for (
    const [script, args, want] of [
      ["repl.ts", ["--help"], /^deno task repl \[options\]/],
      ["repl.ts", ["list", "--help"], /^deno task list \[options\]/],
      ["replay.ts", ["--help"], /^deno task replay FILE/],
    ] as const
  ) {
    const r = await runDeno(script, [...args]);
    assert.equal(r.code, 0);
    assert.match(r.stdout, want);
    assert.match(r.stdout, /-h, --help/);
  }
  const r = await runDeno("repl.ts", ["--bogus"]);
  assert.equal(r.code, 1);
  assert.equal(
    r.stderr,
    'error: EINVAL: unknown option "--bogus"\nhint: see `deno task repl --help`\n',
  );
});

Deno.test("repl: the prompt comes up fast", async () => {
  // Time to the first prompt, Deno's own start-up included (about 0.1 s warm).
  const t0 = performance.now();
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "repl.ts"],
    cwd: ROOT,
    stdin: "piped",
    stdout: "piped",
    stderr: "null",
    env: { NO_COLOR: "1", NOVAMM_HISTORY: "" },
  }).spawn();
  const reader = child.stdout.getReader();
  let text = "";
  while (!text.includes("ga102> ")) {
    const { value, done } = await reader.read();
    if (done) break;
    text += new TextDecoder().decode(value);
  }
  const ms = performance.now() - t0;
  reader.releaseLock();
  await child.stdin.close();
  await child.stdout.cancel();
  await child.status;
  assert.ok(text.includes("ga102> "), text);
  assert.ok(ms < 3000, `prompt after ${ms.toFixed(0)} ms`);
});

Deno.test({
  name: "repl: in a terminal — completion, history, Ctrl-C, Ctrl-D",
  ignore: !haveTmux(),
  async fn() {
    const dir = await Deno.makeTempDir();
    const history = `${dir}/history`;
    const term = await Terminal.start(`${Deno.execPath()} run -A repl.ts`, {
      env: { NOVAMM_HISTORY: history },
    });
    try {
      await term.waitFor(/^ga102>$/m); // tmux drops trailing spaces
      await term.type("gpu.pra");
      await term.keys("Tab");
      await term.waitFor("ga102> gpu.pramin");
      await term.type(".vramS");
      await term.keys("Tab");
      await term.keys("Enter");
      await term.waitFor("ga102> gpu.pramin.vramSize\n0x600000000 (25769803776)");
      await term.type("using w = pramin.window()");
      await term.keys("Enter");
      await term.type("w.rea");
      await term.keys("Tab", "Tab");
      await term.waitFor(/read16 +read32 +read64 +read8 +readBytes/);
      await term.type("32(0x100000)"); // Tab completed the common prefix "read"
      await term.keys("Enter");
      // Unscrubbed VRAM reads the simulator's pattern, not zero.
      await term.waitFor(/ga102> w\.read32\(0x100000\)\n0x[0-9a-f]+ \(\d+\)\n/);
      await term.type("if (true) {");
      await term.keys("Enter");
      await term.waitFor(/^\.\.\.$/m);
      await term.keys("C-c");
      await term.waitFor(/^\.\.\. \^C\nga102>$/m);
      await term.type("junk on the line");
      await term.keys("C-c");
      await term.type("7 * 6");
      await term.keys("Enter");
      await term.waitFor(/ga102> 7 \* 6\n0x2a \(42\)\n/);
      await term.keys("C-d");
      await term.waitFor("[exit 0]");
      const saved = await Deno.readTextFile(history);
      assert.match(saved, /^using w = pramin\.window\(\)$/m);
      assert.match(saved, /^7 \* 6$/m);
      await term.close();

      // History comes back in the next session: Up recalls the last line.
      const again = await Terminal.start(`${Deno.execPath()} run -A repl.ts`, {
        env: { NOVAMM_HISTORY: history },
      });
      try {
        await again.waitFor(/^ga102>$/m);
        await again.keys("Up");
        await again.waitFor("ga102> 7 * 6");
        await again.keys("C-u");
        await again.type(".exit");
        await again.keys("Enter");
        await again.waitFor("[exit 0]");
      } finally {
        await again.close();
      }
    } finally {
      await term.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

// --- the REPL as a bench instrument (issue: Ctrl-C, watches, help) ------------------

Deno.test({
  name: "repl: Ctrl-C stops an endless PRAMIN loop at its next access, the window is restored",
  ignore: !haveTmux(),
  async fn() {
    const term = await Terminal.start(`${Deno.execPath()} run -A repl.ts --no-history`);
    try {
      await term.waitFor(/^ga102>$/m);
      await term.type("const keep = 41; bar0.read32(0x1700)");
      await term.keys("Enter");
      await term.waitFor(/read32\(0x1700\)\n0x0\n/);
      await term.type(
        "{ using w = pramin.window(); for (let i = 0; ; i++) w.read32(0x10000000 + (i % 4096) * 4096) }",
      );
      await term.keys("Enter");
      await new Promise((r) => setTimeout(r, 400));
      const t0 = performance.now();
      await term.keys("C-c");
      await term.waitFor(/interrupted after \d+ MMIO accesses\nga102>$/m, 3000);
      assert.ok(performance.now() - t0 < 1500, "back at the prompt within a second or so");
      await term.type("[bar0.read32(0x1700), keep + 1]");
      await term.keys("Enter");
      await term.waitFor(/\[ 0x0, 0x2a \]/); // window back where it was; the session lives

      // A loop with no MMIO access: the first Ctrl-C cannot stop it, the second kills it.
      await term.type("for (;;) {}");
      await term.keys("Enter");
      await new Promise((r) => setTimeout(r, 300));
      await term.keys("C-c");
      await term.waitFor("stops at the next MMIO access; Ctrl-C again to kill the input");
      await term.keys("C-c");
      await term.waitFor(/killed: .*context was discarded.*fresh one is opened/s, 5000);
      await term.waitFor(/^ga102>$/m);
      await term.type("typeof keep");
      await term.keys("Enter");
      await term.waitFor('"undefined"');
      await term.type("gpu.chip.name");
      await term.keys("Enter");
      await term.waitFor('"GA102"');
      await term.keys("C-d");
      await term.waitFor("[exit 0]");
    } finally {
      await term.close();
    }
  },
});

Deno.test({
  name: "repl: a timer error keeps the session; watches print changes; help shows signatures",
  ignore: !haveTmux(),
  async fn() {
    const term = await Terminal.start(`${Deno.execPath()} run -A repl.ts --no-history`);
    try {
      await term.waitFor(/^ga102>$/m);
      await term.type("setTimeout(() => pramin.read32(-1), 10)");
      await term.keys("Enter");
      await term.waitFor(/error: \(in a timer or event handler\) EINVAL: VRAM address -1/);
      await term.type("1 + 1");
      await term.keys("Enter");
      await term.waitFor(/1 \+ 1\n0x2\n/);
      await term.type('watch("NV_PBUS_BAR0_WINDOW")');
      await term.keys("Enter");
      await term.waitFor("watching NV_PBUS_BAR0_WINDOW (0x1700): 0x00000000");
      await term.type("using w = pramin.window(); w.read32(0x30000000)");
      await term.keys("Enter");
      await term.waitFor("watch NV_PBUS_BAR0_WINDOW (0x1700): 0x00000000 -> 0x00003000");
      // A change found by a timer-driven watch is drawn above the prompt, which keeps what
      // was typed.
      await term.type(
        "pramin.write32(0x100000, 0); watch(0x100000, { vram: true, every: 50 }); setTimeout(() => pramin.write32(0x100000, 5), 400)",
      );
      await term.keys("Enter");
      await term.type("abc");
      await term.waitFor(/watch VRAM 0x100000: 0x00000000 -> 0x00000005\nga102> abc/, 4000);
      await term.keys("C-u");
      await term.type("help(pramin.read32)");
      await term.keys("Enter");
      await term.waitFor("Pramin.read32(addr: number): number");
      await term.type("mm.buddy.alloc(4096).");
      await term.keys("Tab", "Tab");
      await term.waitFor(/blocks +contiguous +free/);
      await term.keys("C-u");
      await term.type(".exit");
      await term.keys("Enter");
      await term.waitFor("[exit 0]");
    } finally {
      await term.close();
    }
  },
});

Deno.test("repl: SIGTERM puts a card's PRAMIN window back before the process exits", async () => {
  const { makeFakeSysfs, ga102, bootedGa102Bar0 } = await import("./fake_sysfs.ts");
  const { writeU32 } = await import("./util.ts");
  const dir = await Deno.makeTempDir();
  try {
    const fn = ga102("0000:65:00.0");
    fn.bars[0].fileSize = 0x1000000;
    const root = makeFakeSysfs(dir, [fn]);
    const bar0 = `${root}/0000:65:00.0/resource0`;
    bootedGa102Bar0(bar0, writeU32);
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "repl.ts", "--device", "0000:65:00.0", "--no-history"],
      cwd: ROOT,
      env: { NOVAMM_SYSFS_ROOT: root, NOVAMM_LOCK_DIR: dir, NO_COLOR: "1" },
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const writer = child.stdin.getWriter();
    await writer.write(
      new TextEncoder().encode("using w = pramin.window(); w.read32(0x30000000)\n"),
    );
    const window = () => new DataView(Deno.readFileSync(bar0).buffer).getUint32(0x1700, true);
    const t0 = performance.now();
    while (window() !== 0x3000 && performance.now() - t0 < 20_000) {
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.equal(window(), 0x3000, "the session moved the window");
    child.kill("SIGTERM");
    const out = await child.output();
    const stderr = new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 143, stderr);
    assert.match(stderr, /SIGTERM: the card was restored, exiting/);
    assert.equal(window(), 0, "the window register is back where the session found it");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
