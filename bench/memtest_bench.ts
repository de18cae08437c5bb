/**
 * Memory-test throughput per path: bytes written and read back per second
 * (one `solid1` pass: a write of the range, a read back), with the MMIO
 * accesses per MiB (262,144 32-bit accesses each way whatever the path).
 *
 * On the simulator (always): 32 MiB through PRAMIN, physical BAR1 with a
 * PRAMIN or BAR1 read-back, and a BAR1 mapping with a PRAMIN read-back.
 * The simulator's BAR1 has no bulk copy (one call per 32-bit word), PRAMIN
 * has one, so the numbers rank the host-side cost of each path, not a card.
 *
 * On a card (`NOVAMM_BENCH_DEVICE=0000:65:00.0`, unbound from any driver; it
 * writes the free VRAM range `NOVAMM_BENCH_RANGE`, default 0x10000000+64M):
 * the same paths, and each as a fraction of the PCIe link bandwidth read
 * from sysfs (`current_link_speed` x `current_link_width`).
 */
import { openGpu } from "../mod.ts";
import type { Gpu } from "../mm/gpu.ts";
import { memtest, type MemtestOptions, readPcieLink } from "../mm/memtest.ts";

const MiB = 2 ** 20;

interface Case {
  name: string;
  device: string;
  start: number;
  size: number;
  options: MemtestOptions;
}

/** One timed solid1 pass (after a warm-up pass that also touches the simulator's sparse VRAM). */
async function measure(gpu: Gpu, c: Case): Promise<{ bps: number; path: string; perMiB: number }> {
  const opts: MemtestOptions = { ...c.options, patterns: ["solid1"] };
  await memtest(gpu, { start: c.start, size: c.size }, opts);
  gpu.resetStats();
  const r = await memtest(gpu, { start: c.start, size: c.size }, opts);
  const s = gpu.stats();
  if (r.errorCount !== 0) throw new Error(`${c.name}: ${r.summary}`);
  return {
    bps: r.bytesPerSecond,
    path: r.path,
    perMiB: (s.mmioReads + s.mmioWrites - s.windowMoves) / (r.bytes / MiB),
  };
}

function line(name: string, m: { bps: number; path: string; perMiB: number }, link: number | null) {
  const frac = link === null ? "" : `, ${(m.bps / link * 100).toFixed(1)}% of the PCIe link`;
  console.log(
    `memtest ${name.padEnd(34)} ${(m.bps / 1e6).toFixed(0).padStart(6)} MB/s${frac} ` +
      `(${m.perMiB.toFixed(0)} MMIO/MiB; ${m.path})`,
  );
}

const SIM: Case[] = [
  {
    name: "sim PRAMIN",
    device: "sim:ga102",
    start: 0x1000000,
    size: 32 * MiB,
    options: { path: "pramin" },
  },
  {
    name: "sim BAR1 physical, PRAMIN read-back",
    device: "sim:ga102",
    start: 0x1000000,
    size: 32 * MiB,
    options: { path: "bar1" },
  },
  {
    name: "sim BAR1 physical, BAR1 read-back",
    device: "sim:ga102",
    start: 0x1000000,
    size: 32 * MiB,
    options: { path: "bar1", readBack: "bar1" },
  },
  {
    name: "sim BAR1 mapping, PRAMIN read-back",
    device: "sim:ga102",
    start: 0x20000000,
    size: 32 * MiB,
    options: { path: "bar1" },
  },
];

const results = new Map<string, number>();
for (const c of SIM) {
  using gpu = await openGpu({ device: c.device });
  const m = await measure(gpu, c);
  results.set(c.name, m.bps);
  line(c.name, m, null);
}

const card = Deno.env.get("NOVAMM_BENCH_DEVICE");
if (card !== undefined && card !== "") {
  const [start, size] = (Deno.env.get("NOVAMM_BENCH_RANGE") ?? "0x10000000+64M").split("+");
  const bytes = Number(size.replace(/M$/i, "")) * (/M$/i.test(size) ? MiB : 1);
  using gpu = await openGpu({ device: card });
  const link = gpu.device.pci === null ? null : readPcieLink(gpu.device.pci.path);
  console.log(
    `card ${gpu.device.spec} ${gpu.chip.name}: link ${link?.speed ?? "?"} x${
      link?.width ?? "?"
    } = ${
      link?.bytesPerSecond == null ? "?" : (link.bytesPerSecond / 1e9).toFixed(2)
    } GB/s each way; BAR1 ${gpu.device.bar1.hasBlockCopies ? "write-combining" : "uncached"}`,
  );
  for (
    const [name, options] of [
      ["card BAR1, BAR1 read-back", { path: "bar1", readBack: "bar1" }],
      ["card BAR1, PRAMIN read-back", { path: "bar1" }],
      ["card PRAMIN", { path: "pramin" }],
    ] as const
  ) {
    const m = await measure(gpu, {
      name,
      device: card,
      start: Number(start),
      size: bytes,
      options,
    });
    line(name, m, link?.bytesPerSecond ?? null);
  }
}

// deno bench rows too: host time of one pass, relative to the PRAMIN floor (the baseline).
const benchGpu = await openGpu({ device: "sim:ga102" });
await memtest(benchGpu, { start: 0x1000000, size: 8 * MiB }, { patterns: ["solid1"] });
Deno.bench("memtest 8 MiB solid1: PRAMIN", {
  n: 5,
  warmup: 1,
  group: "memtest",
  baseline: true,
}, async () => {
  await memtest(benchGpu, { start: 0x1000000, size: 8 * MiB }, {
    patterns: ["solid1"],
    path: "pramin",
  });
});
Deno.bench(
  "memtest 8 MiB solid1: BAR1 physical + PRAMIN read-back",
  { n: 5, warmup: 1 },
  async () => {
    await memtest(benchGpu, { start: 0x1000000, size: 8 * MiB }, {
      patterns: ["solid1"],
      path: "bar1",
    });
  },
);
