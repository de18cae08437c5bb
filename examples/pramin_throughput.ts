/**
 * Measures VRAM throughput through PRAMIN and through a BAR1 mapping of the
 * same buffer (allocated from the buddy allocator, so nothing else's memory
 * is touched): MB/s, and what holds on every machine, MMIO accesses and
 * PRAMIN window moves per MiB.
 *
 * ```sh
 * deno task repl examples/pramin_throughput.ts --device sim:gh100 --size 8
 * ```
 *
 * Options: `--size MIB` (default 8).
 *
 * @module
 */

import { parseArgs } from "node:util";
import { scriptGlobals } from "../script.ts";
import { fail } from "../script.ts";

const { gpu, mm, bar1, args } = await scriptGlobals();
const { values } = parseArgs({
  args,
  options: { size: { type: "string", default: "8" } },
  strict: true,
});
const MiB = 2 ** 20;
const mib = Number(values.size);
if (!Number.isInteger(mib) || mib < 1 || mib > 1024) {
  fail("EINVAL", `--size ${values.size} is not 1..1024 MiB`);
}
const size = mib * MiB;

const data = new Uint8Array(size);
const words = new Uint32Array(data.buffer);
for (let i = 0; i < words.length; i++) words[i] = Math.imul(i, 0x9e3779b1) >>> 0;

interface Row {
  path: string;
  op: string;
  ms: number;
  reads: number;
  writes: number;
  moves: number;
}
const rows: Row[] = [];

function measure(path: string, op: string, fn: () => void): void {
  gpu.resetStats();
  const t = performance.now();
  fn();
  const ms = performance.now() - t;
  const s = gpu.stats();
  rows.push({ path, op, ms, reads: s.mmioReads, writes: s.mmioWrites, moves: s.windowMoves });
}

function check(got: Uint8Array, what: string): void {
  const g = new Uint32Array(got.buffer, got.byteOffset, got.byteLength / 4);
  for (let i = 0; i < g.length; i++) {
    if (g[i] !== words[i]) fail("EIO", `${what}: word ${i} reads ${g[i]}, wrote ${words[i]}`);
  }
}

const a = mm.buddy.alloc(size);
try {
  {
    using w = gpu.pramin.window();
    measure("PRAMIN", "write", () => w.writeBytes(a.start, data));
    let got: Uint8Array = new Uint8Array(0);
    measure("PRAMIN", "read", () => got = w.readBytes(a.start, size));
    check(got, "PRAMIN read-back");
  }
  {
    using m = bar1.map(a, { writable: true });
    measure("BAR1", "write", () => m.writeBytes(0, data));
    let got: Uint8Array = new Uint8Array(0);
    measure("BAR1", "read", () => got = m.readBytes(0, size));
    check(got, "BAR1 read-back");
  }
} finally {
  a.free();
}

console.log(
  `${mib} MiB on ${gpu.device.spec} (${gpu.chip.name}), buffer at VRAM 0x${a.start.toString(16)}:`,
);
console.log("path    op      MB/s   MMIO/MiB  moves/MiB");
for (const r of rows) {
  console.log(
    `${r.path.padEnd(7)} ${r.op.padEnd(5)} ${(mib / (r.ms / 1000)).toFixed(1).padStart(7)}  ${
      ((r.reads + r.writes) / mib).toFixed(0).padStart(9)
    }  ${(r.moves / mib).toFixed(2).padStart(9)}`,
  );
}
