/**
 * Fills a VRAM range through PRAMIN with an address-derived pattern, then
 * reads it back and verifies every word; a progress bar shows on a terminal.
 * On a card the range's old contents are saved first and written back after.
 *
 * ```sh
 * deno task repl examples/fill_verify.ts --device sim:gh100 --size 16M
 * deno run -A examples/fill_verify.ts --device sim --start 0x4000000 --size 1M
 * ```
 *
 * Options: `--start ADDR` (default: start of the usable region), `--size N`
 * (bytes; K/M/G suffixes; default 16M), `--seed S` (pattern seed).
 *
 * @module
 */

import { parseArgs } from "node:util";
import { Progress } from "../script.ts";
import { formatSize, scriptGlobals } from "../script.ts";
import { fail, hex } from "../script.ts";

const { gpu, args } = await scriptGlobals();
const { values } = parseArgs({
  args,
  options: {
    start: { type: "string" },
    size: { type: "string", default: "16M" },
    seed: { type: "string", default: "0x9e3779b9" },
  },
  strict: true,
});

/** "16M" → 16 MiB; plain numbers and 0x-hex too. */
function parseSize(text: string): number {
  const m = /^(0x[0-9a-f]+|\d+)([kmg]?)$/i.exec(text.trim());
  if (m === null) fail("EINVAL", `size ${JSON.stringify(text)} is not N, 0xN, NK, NM or NG`);
  const unit =
    { "": 1, k: 1024, m: 2 ** 20, g: 2 ** 30 }[m[2].toLowerCase() as "" | "k" | "m" | "g"];
  return Number(m[1]) * unit;
}

const MiB = 2 ** 20;
const { usable } = gpu.vram;
const start = values.start === undefined ? usable.start : parseSize(values.start);
const size = parseSize(values.size);
const seed = Number(values.seed) >>> 0;
if (start % 4 !== 0 || size % 4 !== 0 || size === 0) {
  fail("EINVAL", `start ${hex(start)} and size ${hex(size)} must be non-zero multiples of 4`);
}
if (start < usable.start || start + size > usable.end) {
  fail(
    "EINVAL",
    `range [${hex(start)}, ${hex(start + size)}) is outside the usable VRAM [${
      hex(usable.start)
    }, ${hex(usable.end)})`,
    "pick --start/--size inside the usable region (firmware owns the rest)",
  );
}

/** The word expected at `addr`: mixes address and seed, so aliasing or a stuck window shows. */
function word(addr: number): number {
  return (Math.imul((addr / 4) ^ seed, 0x9e3779b1) ^ (addr >>> 16)) >>> 0;
}

const chunk = Math.min(MiB, size);
const buffer = new Uint8Array(chunk);
const words = new Uint32Array(buffer.buffer);
const onCard = gpu.sim === null;
const saved: Uint8Array[] = [];
let mismatches = 0;
let firstBad = "";
const t0 = performance.now();
const before = gpu.stats();
{
  using w = gpu.pramin.window();
  const fill = new Progress(`fill ${formatSize(size)}`, size);
  for (let off = 0; off < size; off += chunk) {
    const n = Math.min(chunk, size - off);
    if (onCard) saved.push(w.readBytes(start + off, n));
    for (let i = 0; i < n / 4; i++) words[i] = word(start + off + i * 4);
    w.writeBytes(start + off, buffer.subarray(0, n));
    fill.update(off + n);
  }
  fill.done();
  const tFill = performance.now();
  const verify = new Progress(`verify ${formatSize(size)}`, size);
  for (let off = 0; off < size; off += chunk) {
    const n = Math.min(chunk, size - off);
    const got = new Uint32Array(w.readBytes(start + off, n).buffer);
    for (let i = 0; i < got.length; i++) {
      const want = word(start + off + i * 4);
      if (got[i] !== want) {
        if (mismatches === 0) {
          firstBad = `first at ${hex(start + off + i * 4)}: read ${hex(got[i], 8)}, wrote ${
            hex(want, 8)
          }`;
        }
        mismatches++;
      }
    }
    verify.update(off + n);
  }
  verify.done();
  const tVerify = performance.now();
  for (let i = 0; i < saved.length; i++) w.writeBytes(start + i * chunk, saved[i]);
  const s = gpu.stats();
  const rate = (ms: number) => `${(size / MiB / (ms / 1000)).toFixed(1)} MB/s`;
  console.log(
    `filled and verified ${formatSize(size)} at [${hex(start)}, ${
      hex(start + size)
    }) on ${gpu.device.spec}: write ${rate(tFill - t0)}, read ${rate(tVerify - tFill)}; ` +
      `${s.mmioReads - before.mmioReads} MMIO reads, ${s.mmioWrites - before.mmioWrites} writes, ` +
      `${s.windowMoves - before.windowMoves} window moves${
        onCard ? "; old contents restored" : ""
      }`,
  );
}
if (mismatches > 0) fail("EIO", `${mismatches} words differ (${firstBad})`);
console.log("0 mismatches");
