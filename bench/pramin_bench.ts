/**
 * PRAMIN throughput on the simulator: 64 MiB sequential write + read.
 * Prints MB/s, the speed as a fraction of a `Uint8Array.set` of 64 MiB
 * measured in the same run (target: at least 0.25 each way; the read into a
 * caller's buffer, `readInto`, as the copy it is compared with also writes
 * an existing buffer — `readBytes` allocates 64 MiB fresh, whose page
 * faults are shown separately) and, what holds on every machine, MMIO
 * accesses and window moves per MiB (262,144 32-bit accesses, 1 move per MiB
 * each way).
 */
import { openGpu } from "../mod.ts";

const MiB = 2 ** 20;
const SIZE = 64 * MiB;
const gpu = await openGpu({ device: "sim" });
const data = new Uint8Array(SIZE);
const words = new Uint32Array(data.buffer);
for (let i = 0; i < words.length; i++) words[i] = Math.imul(i, 0x9e3779b1) >>> 0;
const start = 16 * MiB;

const into = new Uint8Array(SIZE);

function once(): {
  writeMBs: number;
  readMBs: number;
  allocReadMBs: number;
  w: ReturnType<typeof gpu.stats>;
  r: ReturnType<typeof gpu.stats>;
} {
  using win = gpu.pramin.window();
  win.read32(start);
  gpu.resetStats();
  let t = performance.now();
  win.writeBytes(start, data);
  const writeMs = performance.now() - t;
  const w = gpu.stats();
  gpu.resetStats();
  t = performance.now();
  win.readInto(start, into);
  const readMs = performance.now() - t;
  const r = gpu.stats();
  t = performance.now();
  win.readBytes(start, SIZE);
  const allocMs = performance.now() - t;
  return {
    writeMBs: SIZE / MiB / (writeMs / 1000),
    readMBs: SIZE / MiB / (readMs / 1000),
    allocReadMBs: SIZE / MiB / (allocMs / 1000),
    w,
    r,
  };
}

const copyMs = (() => {
  const dst = new Uint8Array(SIZE);
  let min = Infinity;
  for (let i = 0; i < 5; i++) {
    const t = performance.now();
    dst.set(data);
    min = Math.min(min, performance.now() - t);
  }
  return min;
})();
const copyMBs = SIZE / MiB / (copyMs / 1000);

once(); // JIT warm-up
const m = once();
const share = (mbs: number) => mbs / copyMBs;
console.log(
  `pramin 64 MiB vs Uint8Array.set of 64 MiB (${copyMBs.toFixed(0)} MB/s): write ${
    share(m.writeMBs).toFixed(3)
  }, read ${share(m.readMBs).toFixed(3)} of it (target >= 0.25; readBytes with a fresh 64 MiB: ${
    share(m.allocReadMBs).toFixed(3)
  }) ${share(m.writeMBs) >= 0.25 && share(m.readMBs) >= 0.25 ? "OK" : "MISSED"}`,
);
const per = (n: number) => (n / (SIZE / MiB)).toFixed(2);
console.log(
  `pramin 64 MiB on sim:ga102: write ${m.writeMBs.toFixed(0)} MB/s, read ${
    m.readMBs.toFixed(0)
  } MB/s; ` +
    `per MiB: ${per(m.w.mmioWrites - m.w.windowMoves)} 32-bit writes + ${
      per(m.w.windowMoves)
    } window moves, ` +
    `${per(m.r.mmioReads)} reads + ${per(m.r.windowMoves)} window moves`,
);

Deno.bench("pramin: write 64 MiB sequential", { n: 3, warmup: 1 }, () => {
  using win = gpu.pramin.window();
  win.writeBytes(start, data);
});

Deno.bench("pramin: read 64 MiB sequential", { n: 3, warmup: 1 }, () => {
  using win = gpu.pramin.window();
  win.readInto(start, into);
});
