/**
 * The views: what the VRAM map, the address-space view, the walk and the
 * register view draw, where they draw it, how they stay small on a large
 * card, their argument checks, `show()`, the Jupyter display methods and
 * `report.ts`.
 */

import assert from "node:assert/strict";
import { openGpu } from "../mod.ts";
import { decode, loadRegisterDb } from "../hw/regdb/mod.ts";
import { formatSize } from "../hw/errors.ts";
import {
  addressSpaceHtml,
  drawAxis,
  drawLane,
  hexFast,
  inJupyter,
  installJupyterDisplay,
  JUPYTER_DISPLAY,
  type MimeBundle,
  pageHtml,
  registerHtml,
  reportHtml,
  show,
  showDirectory,
  view,
  VRAM_MAP_SCRIPT,
  vramMapHtml,
  vramModel,
  walkHtml,
} from "../views/mod.ts";
import { runDeno, throwsNova } from "./util.ts";

const MiB = 2 ** 20;
const GiB = 2 ** 30;

/** The data block a VRAM map embeds for its script. */
function mapData(html: string): { x0: number; pw: number; size: number } {
  const m = /<script type="application\/json" class="nm-data">(.*?)<\/script>/s.exec(html);
  assert.ok(m !== null, "the map embeds its data");
  return JSON.parse(m[1]);
}

/** The attributes of the first rect with data-s = `start`. */
function rectAt(html: string, start: number): Record<string, string> {
  const m = new RegExp(`<rect [^>]*data-s="0x${start.toString(16)}"[^>]*>`).exec(html);
  assert.ok(m !== null, `a rect starts at 0x${start.toString(16)}`);
  return Object.fromEntries([...m[0].matchAll(/([a-z-]+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
}

Deno.test("views: the VRAM map model has firmware's regions, allocations by kind, PRAMIN, BAR1", async () => {
  await using_(await openGpu({ device: "sim:ga102" }), (gpu) => {
    const m = vramModel(gpu);
    assert.deepEqual(m.lanes.map((l) => l.name), ["firmware", "buddy", "PRAMIN", "BAR1"]);
    assert.deepEqual(
      m.lanes[0].items.map((i) => [i.start, i.end]),
      gpu.vram.layout.map((r) => [r.start, r.end]),
    );
    assert.ok(m.lanes[0].items.length >= 1, "a GA102 has a VGA workspace");
    // Physical BAR1 reaches [0, BAR1 size).
    assert.deepEqual(m.lanes[3].items.map((i) => [i.start, i.end, i.kind]), [
      [0, gpu.device.bar1.size, "bar1"],
    ]);
    gpu.bar1.bringUp();
    const a = gpu.mm.buddy.alloc(4 * MiB);
    gpu.bar1.map(a);
    const after = vramModel(gpu);
    const kinds = new Set(after.lanes[1].items.map((i) => i.kind));
    assert.deepEqual([...kinds].sort(), ["alloc", "instance", "table"]);
    assert.ok(after.lanes[1].items.some((i) => i.label === "instance block of bar1"));
    // Virtual BAR1: the VRAM behind the mapping.
    assert.deepEqual(after.lanes[3].items.map((i) => [i.start, i.end]), [[
      a.start,
      a.start + a.size,
    ]]);
  });
});

Deno.test("views: an allocation is drawn at its address, scaled; hover titles say what it is", async () => {
  await using_(await openGpu({ device: "sim:gh100" }), (gpu) => {
    const a = gpu.mm.buddy.alloc(8 * GiB, { align: 8 * GiB, label: "big buffer" });
    const html = vramMapHtml(vramModel(gpu));
    const d = mapData(html);
    assert.equal(d.size, 80 * GiB);
    const r = rectAt(html, a.start);
    const x = d.x0 + a.start * d.pw / d.size;
    assert.ok(Math.abs(Number(r.x) - x) <= 0.01, `x ${r.x} vs ${x}`);
    assert.ok(Math.abs(Number(r.width) - a.size * d.pw / d.size) <= 0.01);
    assert.equal(r.class, "nm-k-alloc");
    assert.match(html, /<title>big buffer \[0x[0-9a-f]+, 0x[0-9a-f]+\) 8 GiB<\/title>/);
    // A narrower range shown: the same allocation lands further right and wider.
    const zoomed = vramMapHtml(vramModel(gpu), { range: { start: 0, end: 16 * GiB } });
    assert.ok(Number(rectAt(zoomed, a.start).width) >= 4.99 * Number(r.width));
  });
});

Deno.test("views: thousands of small allocations merge into a bounded number of pieces", async () => {
  await using_(await openGpu({ device: "sim:gh100" }), (gpu) => {
    for (let i = 0; i < 20_000; i++) gpu.mm.buddy.alloc(i % 2 ? 4096 : 65536, { align: 65536 });
    const html = vramMapHtml(vramModel(gpu), { width: 1000 });
    const rects = html.match(/<rect /g)?.length ?? 0;
    assert.ok(rects < 200, `${rects} rects for 20,000 allocations`);
    assert.match(html, /<title>20000 pieces, /);
    // Zoomed to 4 KiB pages, each one alone again.
    const near = vramMapHtml(vramModel(gpu), { range: { start: 0, end: 0x40000 } });
    assert.ok((near.match(/class="nm-k-alloc"/g)?.length ?? 0) >= 4);
  });
});

Deno.test("views: the address-space view shows levels, page sizes, firmware's tables, VA coverage", async () => {
  await using_(await openGpu({ device: "sim:ga102:gsp" }), (gpu) => {
    const vmm = gpu.bar1.vmm;
    const html = addressSpaceHtml(vmm);
    for (const level of ["PD3[0]", "PD2[0]", "PD1[0]", "PD0[0]"]) {
      assert.ok(html.includes(`<b>${level}</b>`), level);
    }
    assert.match(html, /\(firmware\)/);
    assert.match(html, /aria-label="VA coverage"/);
    assert.match(html, /PT\[0(\.\.\d+)?\] \d+×4 KiB/);
  });
  await using_(await openGpu({ device: "sim:gh100" }), (gpu) => {
    gpu.bar1.bringUp();
    const vmm = gpu.mm.createVmm({ vaSize: 1n << 40n, name: "space" });
    const big = gpu.mm.buddy.alloc(4 * MiB, { align: 2 * MiB });
    vmm.mapRange(big.start, 4 * MiB);
    const pages = gpu.mm.buddy.alloc(64 * 1024);
    for (let i = 0; i < 16; i++) vmm.mapPages([pages.start / 4096 + i]);
    const html = addressSpaceHtml(vmm, { maxRuns: 2 });
    assert.match(html, /2×2 MiB/);
    assert.match(html, /16×4 KiB/);
    assert.ok(!html.includes("(firmware)"), "novamm's own space has nothing of firmware's");
    // Few runs listed, the rest counted.
    assert.match(html, /… \d+ more runs \(16 PTEs in all\)|PT\[0\.\.15\] 16×4 KiB/);
    assert.match(html, /class="nm-strip"/);
    // At most maxTables directory entries drawn; the others counted (PD3..PD0 under PD4[0]).
    const few = addressSpaceHtml(vmm, { maxTables: 1 });
    assert.equal(few.match(/<details/g)?.length, 2, "the root and one entry");
    assert.match(few, /… 4 more directory entries not drawn/);
    throwsNova(() => addressSpaceHtml(vmm, { maxPtes: 0 }), "EINVAL", "maxPtes");
    throwsNova(() => addressSpaceHtml(vmm, { depth: 2 } as never), "EINVAL", "depth");
  });
});

Deno.test("views: a walk is drawn level by level to its page or to where it stopped", async () => {
  await using_(await openGpu({ device: "sim:gh100" }), (gpu) => {
    const a = gpu.mm.buddy.alloc(64 * 1024);
    const m = gpu.bar1.map(a);
    const r = gpu.walk(m.va);
    const html = walkHtml(r, gpu.format);
    assert.equal(html.match(/class="nm-step" data-level/g)?.length, r.steps.length);
    assert.match(html, /class="nm-step nm-end"/);
    assert.match(html, /<b>PD4<\/b><br>VA 56:56/);
    const miss = walkHtml(gpu.walk(m.va + 0x1000_0000n));
    assert.match(miss, /class="nm-step nm-stop"><b>unmapped<\/b>invalid-pde/);
    throwsNova(() => walkHtml({} as never), "EINVAL", "walk result");
  });
});

Deno.test("views: a register's fields, overlapping ones on a second tier", async () => {
  const db = await loadRegisterDb("GH100");
  const html = registerHtml(decode(db, "NV_PMC_BOOT_42", 0x180a1000));
  assert.match(html, /data-field="CHIP_ID"/);
  assert.match(html, /data-field="ARCHITECTURE"/);
  // CHIP_ID (29:20) overlaps ARCHITECTURE (29:24): drawn one tier lower (y 72).
  assert.match(html, /data-field="(CHIP_ID|ARCHITECTURE)"><rect x="\d+" y="72"/);
  assert.match(html, /<td>GH100<\/td>/);
  throwsNova(() => registerHtml({ name: "x" } as never), "EINVAL", "registerHtml");
});

Deno.test("views: view() draws what novamm hands out and refuses the rest", async () => {
  await using_(await openGpu({ device: "sim" }), (gpu) => {
    const a = gpu.mm.buddy.alloc(2 * MiB);
    const v = view(a, { gpu });
    assert.equal(v.text, String(a));
    assert.match(v.html, /class="nm-hl"/);
    assert.match(view(gpu).html, /data-nm-map="vram"/);
    throwsNova(() => view(gpu.mm.buddy), "EINVAL", "needs its GPU");
    throwsNova(() => view(42), "EINVAL", "no view draws number");
    throwsNova(() => view(a, { gpu: 1 } as never), "EINVAL", "gpu");
    throwsNova(() => view(a, { gpus: gpu } as never), "EINVAL", "gpus");
    throwsNova(() => vramMapHtml(vramModel(gpu), { width: 10 }), "EINVAL", "width 10");
    throwsNova(
      () => vramMapHtml(vramModel(gpu), { range: { start: 0, end: 2 ** 50 } }),
      "EINVAL",
      "range",
    );
  });
});

Deno.test("views: the report is one self-contained page whose script compiles", async () => {
  await using_(await openGpu({ device: "sim:gh100" }), async (gpu) => {
    gpu.bar1.map(gpu.mm.buddy.alloc(2 * MiB));
    const html = await reportHtml(gpu, { date: new Date(0) });
    assert.match(html, /^<!doctype html>/);
    for (const s of ["<h2>VRAM</h2>", "<h2>Address spaces</h2>", "<h2>Registers</h2>"]) {
      assert.ok(html.includes(s), s);
    }
    assert.match(html, /data-nm-vmm="bar1"/);
    assert.match(html, /class="nm nm-walkview"/);
    assert.match(html, /data-reg="NV_PMC_BOOT_0"/);
    assert.match(html, /1970-01-01T00:00:00.000Z/);
    // Nothing fetched: no src/href attributes, no URL but the SVG namespace.
    assert.ok(!/\s(src|href)=/.test(html));
    assert.deepEqual(
      [...new Set(html.match(/https?:\/\/[^\s"'<)]+/g))],
      ["http://www.w3.org/2000/svg"],
    );
    // The page script is valid JavaScript (it runs in the browser test), and the functions it
    // embeds by their source stand alone: the same results out of their own text.
    new Function(VRAM_MAP_SCRIPT);
    const alone = <T>(f: T): T => new Function(`return (${String(f)});`)() as T;
    assert.equal(alone(formatSize)(23.99 * GiB), formatSize(23.99 * GiB));
    assert.equal(alone(hexFast)(0x5fff00000), "0x5fff00000");
    const lane = { s: [0, 4096, 8192], e: [4096, 8192, 1 << 20], k: [0, 1, 0], l: [0, 0, 0] };
    const st = {
      kinds: ["a", "b"],
      colors: ["#000", "#fff"],
      label: () => "x",
      hex: hexFast,
      size: formatSize,
      tick: () => {},
    };
    const g = { x0: 10, pw: 500, y: 0, h: 9 };
    assert.equal(alone(drawLane)(lane, 0, 1 << 20, g, st), drawLane(lane, 0, 1 << 20, g, st));
    assert.equal(alone(drawAxis)(0, 1 << 20, g, st), drawAxis(0, 1 << 20, g, st));
    assert.equal(html.match(/<script>/g)?.length, 1);
    assert.match(pageHtml("t", ""), /<title>t<\/title>/);
  });
});

Deno.test("views: a read-only report shows what it can read and says what it cannot", async () => {
  await using_(await openGpu({ device: "sim:ga102:gsp", readOnly: true }), async (gpu) => {
    const before = gpu.stats();
    const html = await reportHtml(gpu);
    const after = gpu.stats();
    assert.equal(after.mmioWrites, before.mmioWrites, "nothing written");
    assert.match(html, /class="nm-err">BAR1 not drawn: EPERM: VRAM \[0x5f0000000/);
    assert.match(html, /data-nm-map="vram"/);
    assert.match(html, /<h2>Registers<\/h2>/);
  });
});

Deno.test("views: show() writes the page beside the history file and returns its path", async () => {
  const dir = Deno.makeTempDirSync();
  try {
    const before = Deno.env.get("NOVAMM_HISTORY");
    Deno.env.set("NOVAMM_HISTORY", `${dir}/hist`);
    try {
      assert.equal(showDirectory(), `${dir}/novamm_show`);
    } finally {
      if (before === undefined) Deno.env.delete("NOVAMM_HISTORY");
      else Deno.env.set("NOVAMM_HISTORY", before);
    }
    await using_(await openGpu({ device: "sim" }), async (gpu) => {
      const path = await show(gpu.mm.buddy, { gpu, dir, print: false });
      assert.ok(path.startsWith(`${dir}/`) && path.endsWith(".html"), path);
      assert.match(Deno.readTextFileSync(path), /data-nm-map="vram"/);
      const report = await show(undefined, { gpu, dir, print: false });
      assert.match(Deno.readTextFileSync(report), /<h2>Registers<\/h2>/);
      await assert.rejects(() => show(gpu.mm, { gpu, where: dir } as never), /where/);
      await assert.rejects(() => show(), /needs options.gpu/);
    });
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("views: Jupyter display methods return an HTML picture and the REPL's text", async () => {
  await using_(await openGpu({ device: "sim" }), (gpu) => {
    const classes = installJupyterDisplay(gpu);
    assert.ok(classes.includes("Allocation") && classes.includes("Vmm"));
    const a = gpu.mm.buddy.alloc(64 * MiB);
    const bundle = (a as unknown as Record<symbol, () => MimeBundle>)[JUPYTER_DISPLAY]();
    assert.equal(bundle["text/plain"], String(a));
    assert.match(bundle["text/html"], /<svg[^>]*aria-label="VRAM map"/);
    assert.match(bundle["text/html"], /class="nm-hl"/);
    gpu.bar1.bringUp();
    const vmm = gpu.bar1.vmm as unknown as Record<symbol, () => MimeBundle>;
    assert.match(vmm[JUPYTER_DISPLAY]()["text/html"], /class="nm-tree"/);
    throwsNova(() => installJupyterDisplay(42 as never), "EINVAL", "Gpu");
    assert.equal(inJupyter(), false, "deno test is no notebook");
  });
});

Deno.test("views: report.ts writes the page, and refuses bad flags with one line", async () => {
  const dir = Deno.makeTempDirSync();
  try {
    const out = `${dir}/r.html`;
    const r = await runDeno("report.ts", ["--device", "sim:gh100", "--bring-up", "-o", out]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^wrote .*r\.html \(\d+(\.\d+)? KiB\): GH100 on sim:gh100\n$/);
    const html = Deno.readTextFileSync(out);
    assert.match(html, /report buffer/);
    const bad = await runDeno("report.ts", ["--device", "sim", "--read-only", "--bring-up"]);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /^error: EINVAL: --bring-up writes to the card/);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

/** Runs fn with the GPU and closes it afterwards, whatever happens. */
async function using_<T extends { close(): void }>(
  gpu: T,
  fn: (gpu: T) => void | Promise<void>,
): Promise<void> {
  try {
    await fn(gpu);
  } finally {
    gpu.close();
  }
}
