/**
 * Snapshot of a 1 GiB-mapped session on the simulator (issue 18: under 2 s
 * and under 50 MiB). An address space maps 1 GiB in 4 KiB pages (262,144
 * PTEs: the worst case for table bytes), BAR1 is up with a mapping of its
 * own. Prints the capture time, the encode (gzip) time, the file size, and
 * each as a multiple of a floor measured in the same run: a plain PRAMIN read
 * of the same VRAM bytes the snapshot captured (one `readBytes` per range),
 * and a `CompressionStream` gzip of as many bytes. Plus the MMIO reads per
 * captured KiB, which hold on every machine.
 */
import { openGpu } from "../mod.ts";
import { takeSnapshot } from "../mm/snapshot.ts";
import { encodeSnapshot } from "../hw/snap/format.ts";
import { formatSize } from "../hw/errors.ts";

const GiB = 2 ** 30;
const PAGE = 4096;
const gpu = await openGpu({ device: "sim:ga102" });
gpu.bar1.bringUp();
gpu.bar1.map(gpu.mm.buddy.alloc(2 * 2 ** 20));
const vmm = gpu.mm.createVmm({ name: "big", vaSize: 1n << 40n });
const backing = gpu.mm.buddy.alloc(GiB, { align: 2 ** 21 });
// Every other page reversed within each 2 MiB: 4 KiB PTEs only, never a larger page.
const pfns = new Array<number>(GiB / PAGE);
for (let i = 0; i < pfns.length; i++) pfns[i] = backing.start / PAGE + (i ^ 1);
vmm.mapPages(pfns, { writable: true });

async function gzipMs(bytes: Uint8Array): Promise<number> {
  const t = performance.now();
  const s = new Blob([bytes as BlobPart]).stream().pipeThrough(new CompressionStream("gzip"));
  await new Response(s).arrayBuffer();
  return performance.now() - t;
}

async function once() {
  gpu.resetStats();
  let t = performance.now();
  const snap = await takeSnapshot(gpu, { maxBytes: 1 << 30 });
  const captureMs = performance.now() - t;
  const reads = gpu.stats().mmioReads;
  t = performance.now();
  const file = await encodeSnapshot(snap);
  const encodeMs = performance.now() - t;
  // The floors: the same VRAM bytes through PRAMIN, and the same number of bytes gzipped.
  const bytes = snap.vram.reduce((n, r) => n + r.data.length, 0);
  t = performance.now();
  {
    using w = gpu.pramin.window();
    for (const r of snap.vram) w.readBytes(r.addr, r.data.length);
  }
  const praminMs = performance.now() - t;
  const flat = new Uint8Array(bytes);
  let o = 0;
  for (const r of snap.vram) {
    flat.set(r.data, o);
    o += r.data.length;
  }
  const floorGzipMs = await gzipMs(flat);
  return { snap, captureMs, encodeMs, praminMs, floorGzipMs, bytes, file, reads };
}

// JIT warm-up, then the best of three (the machine is shared: the fastest run is the measure).
await once();
let m = await once();
for (let i = 0; i < 2; i++) {
  const n = await once();
  if (n.captureMs + n.encodeMs < m.captureMs + m.encodeMs) m = n;
}
const totalMs = m.captureMs + m.encodeMs;
const floorMs = m.praminMs + m.floorGzipMs;
console.log(
  `snapshot of a 1 GiB-mapped sim:ga102 session: ${m.snap.registers.size} registers, ${m.snap.vram.length} VRAM ranges (${
    formatSize(m.bytes)
  }), ${m.snap.addressSpaces.length} address spaces; capture ${
    m.captureMs.toFixed(0)
  } ms + encode ${m.encodeMs.toFixed(0)} ms = ${totalMs.toFixed(0)} ms (target < 2000) ${
    totalMs < 2000 ? "OK" : "MISSED"
  }; file ${formatSize(m.file.length)} (target < 50 MiB) ${
    m.file.length < 50 * 2 ** 20 ? "OK" : "MISSED"
  }`,
);
console.log(
  `floor (PRAMIN read of the same ${formatSize(m.bytes)} ${
    m.praminMs.toFixed(0)
  } ms + gzip of as many bytes ${m.floorGzipMs.toFixed(0)} ms): snapshot = ${
    (totalMs / floorMs).toFixed(2)
  }x the floor (capture ${(m.captureMs / m.praminMs).toFixed(2)}x the PRAMIN read, encode ${
    (m.encodeMs / m.floorGzipMs).toFixed(2)
  }x the gzip); MMIO reads ${
    (m.reads / (m.bytes / 1024)).toFixed(1)
  } per captured KiB (256 = one per word; registers add ${m.snap.registers.size})`,
);

Deno.bench("snapshot: capture + encode of a 1 GiB-mapped session (sim:ga102)", async (b) => {
  b.start();
  const snap = await takeSnapshot(gpu, { maxBytes: 1 << 30 });
  await encodeSnapshot(snap);
  b.end();
});
