/**
 * Layout rules: product code (mod.ts, repl.ts, selftest.ts, replay.ts,
 * script.ts, cli/, hw/, mm/, selftests/) and examples never import from
 * tests/; examples import only public modules (mod.ts, script.ts) besides
 * the standard library.
 */

import assert from "node:assert/strict";
import { ROOT } from "./util.ts";

function imports(path: string): string[] {
  const text = Deno.readTextFileSync(`${ROOT}${path}`);
  return [...text.matchAll(/^\s*(?:import|export)[^"']*?from\s+["']([^"']+)["']/gm)].map((m) =>
    m[1]
  );
}

function files(dir: string): string[] {
  const out: string[] = [];
  for (const e of Deno.readDirSync(`${ROOT}${dir}`)) {
    const p = `${dir}/${e.name}`;
    if (e.isDirectory) out.push(...files(p));
    else if (e.name.endsWith(".ts")) out.push(p);
  }
  return out;
}

Deno.test("layout: product code and examples never import from tests/", () => {
  const product = [
    "mod.ts",
    "repl.ts",
    "selftest.ts",
    "replay.ts",
    "script.ts",
    ...["cli", "hw", "mm", "selftests", "examples", "bench"].flatMap(files),
  ];
  for (const f of product) {
    for (const spec of imports(f)) {
      assert.ok(!/(^|\/)tests\//.test(spec), `${f} imports ${spec}`);
    }
  }
});

Deno.test("layout: examples import only public modules", () => {
  for (const f of files("examples")) {
    for (const spec of imports(f)) {
      assert.ok(
        spec.startsWith("node:") || spec === "../mod.ts" || spec === "../script.ts",
        `${f} imports ${spec}`,
      );
    }
  }
});
