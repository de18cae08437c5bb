// The README's transcripts are what the program prints today (issue 17 item 11): every fenced
// block made of `$ deno task repl ...` commands is run on the simulator and compared line by line,
// interactive sessions by feeding their `prompt> ` inputs through a pipe. Blocks whose output
// depends on the machine (throughput, times) or elides lines are listed and skipped.
import assert from "node:assert/strict";

const README = new URL("../README.md", import.meta.url);
const ROOT = new URL("..", import.meta.url).pathname;

/** Output that depends on the machine: such a command is run but not compared. */
const VOLATILE = /MB\/s|GB\/s|\d+(\.\d+)? ms\b|\d\.\d s\b|…|\.\.\. }|^\s*\.\.\.$/;

interface Command {
  line: number;
  argv: string[];
  expected: string[];
}

/** Splits a shell command line the way the README writes them (single quotes, # comments). */
function shellWords(cmd: string): string[] {
  const out: string[] = [];
  let cur = "";
  let quoted = false;
  let inWord = false;
  for (let i = 0; i < cmd.length; i++) {
    const c = cmd[i];
    if (quoted) {
      if (c === "'") quoted = false;
      else cur += c;
    } else if (c === "'") {
      quoted = true;
      inWord = true;
    } else if (c === "#" && !inWord) {
      break;
    } else if (c === " ") {
      if (inWord) out.push(cur);
      cur = "";
      inWord = false;
    } else {
      cur += c;
      inWord = true;
    }
  }
  if (inWord) out.push(cur);
  return out;
}

function commands(): Command[] {
  const lines = Deno.readTextFileSync(README).split("\n");
  const out: Command[] = [];
  let inBlock = false;
  let cur: Command | null = null;
  for (const [i, l] of lines.entries()) {
    if (l.startsWith("```")) {
      if (cur !== null) out.push(cur);
      cur = null;
      inBlock = !inBlock;
      continue;
    }
    if (!inBlock) continue;
    const prompt = /^([a-z0-9]+)> /.exec(l);
    if (cur === null && prompt !== null && !lines[i - 1].startsWith("$")) {
      // A block of prompt lines alone: a session on the simulated chip the prompt names.
      cur = { line: i + 1, argv: ["--device", `sim:${prompt[1]}`], expected: [] };
    }
    if (l.startsWith("$ ")) {
      if (cur !== null) out.push(cur);
      const argv = shellWords(l.slice(2));
      cur = argv[0] === "deno" && argv[1] === "task" && argv[2] === "repl"
        ? { line: i + 1, argv: argv.slice(3), expected: [] }
        : null;
      continue;
    }
    cur?.expected.push(l);
  }
  return out;
}

async function run(args: string[], stdin: string | null): Promise<string> {
  const p = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "repl.ts", ...args],
    cwd: ROOT,
    stdin: stdin === null ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1", NOVAMM_HISTORY: "/dev/null" },
  }).spawn();
  if (stdin !== null) {
    const w = p.stdin.getWriter();
    await w.write(new TextEncoder().encode(stdin));
    await w.close();
  }
  const o = await p.output();
  const dec = new TextDecoder();
  // deno-lint-ignore no-control-regex
  return (dec.decode(o.stdout) + dec.decode(o.stderr)).replace(/\x1b\[[0-9;]*m/g, "");
}

const trimEnd = (ls: string[]) => ls.map((l) => l.trimEnd()).join("\n").trimEnd();

for (const c of commands()) {
  if (c.argv.some((a) => a.startsWith("--trace"))) continue; // writes files other commands read
  if (c.expected.some((l) => l.startsWith("^C"))) continue; // needs a terminal: tests/repl_test.ts
  const volatile = c.expected.some((l) => VOLATILE.test(l));
  const interactive = !c.argv.includes("--eval") && !c.argv.includes("-e") &&
    !c.argv.some((a) => a.endsWith(".ts"));
  Deno.test(`README:${c.line}: deno task repl ${c.argv.join(" ").slice(0, 60)}`, async () => {
    if (interactive) {
      // The banner, then `prompt> input` lines each followed by what the input printed.
      const first = c.expected.findIndex((l) => /^[a-z0-9]+(\(ro\))?> /.test(l));
      assert.ok(first >= 0, "a transcript with inputs");
      const prompt = /^([a-z0-9]+(\(ro\))?> )/.exec(c.expected[first])![1];
      const banner = c.expected.slice(0, first);
      const inputs: string[] = [];
      const outputs: string[][] = [];
      for (const l of c.expected.slice(first)) {
        if (l.startsWith(prompt)) {
          inputs.push(l.slice(prompt.length));
          outputs.push([]);
        } else outputs.at(-1)!.push(l);
      }
      const got = await run(c.argv, inputs.join("\n") + "\n");
      const parts = got.split(prompt);
      // A transcript may start at the first input (the banner is shown elsewhere).
      if (first > 0) assert.equal(trimEnd(parts[0].split("\n")), trimEnd(banner), "the banner");
      if (volatile) return;
      for (const [k, input] of inputs.entries()) {
        assert.equal(
          trimEnd((parts[k + 1] ?? "").split("\n")),
          trimEnd(outputs[k]),
          `what \`${input}\` prints (README line ${c.line})`,
        );
      }
      return;
    }
    const got = await run(c.argv, null);
    if (volatile) return;
    assert.equal(trimEnd(got.split("\n")), trimEnd(c.expected), `README line ${c.line}`);
  });
}
