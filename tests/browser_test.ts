/**
 * The report in a real browser: headless Chromium loads the page made for
 * sim:ga102 and sim:gh100 (BAR1 brought up, a known buffer allocated and
 * mapped), and the test checks what the browser did with it — the page
 * script ran without an error (it marks the document `data-nm-ready`, and
 * the console has no "Uncaught"), the script redrew the VRAM map itself
 * (its range label carries the size only the script writes), the SVG is
 * not empty, and the known buffer's element sits where its address scaled
 * to the plot puts it. A screenshot is taken and must be a non-trivial PNG.
 *
 * Skipped, saying so, when no Chromium is installed (Debian:
 * `apt-get install -y chromium`; `$CHROMIUM` names another binary).
 */

import assert from "node:assert/strict";
import { openGpu } from "../mod.ts";
import { reportHtml } from "../views/mod.ts";

function findChromium(): string | null {
  const candidates = [
    Deno.env.get("CHROMIUM"),
    "chromium",
    "chromium-browser",
    "google-chrome",
    "google-chrome-stable",
  ];
  for (const c of candidates) {
    if (c === undefined || c === "") continue;
    try {
      const r = new Deno.Command(c, { args: ["--version"], stdout: "null", stderr: "null" })
        .outputSync();
      if (r.success) return c;
    } catch {
      // not this one
    }
  }
  return null;
}

const CHROMIUM = findChromium();
if (CHROMIUM === null) {
  console.warn(
    "browser_test: SKIPPED: no Chromium found (apt-get install -y chromium, or set $CHROMIUM)",
  );
}

const MiB = 2 ** 20;

/** Runs headless Chromium on `file` with `args`; returns its stdout and stderr. */
async function chromium(file: string, args: string[], profile: string) {
  const out = await new Deno.Command(CHROMIUM!, {
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--no-first-run",
      "--disable-dev-shm-usage",
      "--hide-scrollbars",
      `--user-data-dir=${profile}`,
      "--enable-logging=stderr",
      "--v=0",
      ...args,
      `file://${file}`,
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

/** The report of `device` with a known buffer; where that buffer must be drawn. */
async function makeReport(device: string, dir: string) {
  const gpu = await openGpu({ device });
  try {
    // A buffer at a quarter of VRAM, big enough to be drawn alone at any card size.
    const size = 2 ** Math.ceil(Math.log2(gpu.vram.size / 64));
    const buffer = gpu.mm.buddy.alloc(size, {
      align: size,
      range: { start: gpu.vram.size / 4, end: gpu.vram.usable.end },
      label: "browser test buffer",
    });
    gpu.bar1.map(gpu.mm.buddy.alloc(2 * MiB), { writable: true });
    const html = await reportHtml(gpu);
    const file = `${dir}/${device.replace(/\W/g, "_")}.html`;
    Deno.writeTextFileSync(file, html);
    return { file, start: buffer.start, size: buffer.size, vram: gpu.vram.size };
  } finally {
    gpu.close();
  }
}

/**
 * Drives the page as a user would, after the page script: hovers the known
 * buffer (the status line must name it), then zooms in with the button and
 * the wheel and back out to the whole card (so the picture ends as it
 * began), recording the range label after each step on the body.
 */
const DRIVE = `<script>(function () {
  var out = {};
  try {
    var first = document.querySelector(".nm-map"), second = first;
    var buf = first.querySelector('rect[data-s="' + document.body.getAttribute("data-buffer") + '"]');
    var b = buf.getBoundingClientRect();
    first.querySelector("svg").dispatchEvent(new MouseEvent("mousemove",
      { clientX: b.left + b.width / 2, clientY: b.top + b.height / 2, bubbles: true }));
    out.status = first.querySelector(".nm-status").textContent;
    var range = function () { return second.querySelector(".nm-range").textContent; };
    out.ranges = [range()];
    second.querySelector('button[data-z="in"]').click();
    out.ranges.push(range());
    var svg = second.querySelector("svg"), r = svg.getBoundingClientRect();
    svg.dispatchEvent(new WheelEvent("wheel", { deltaY: -100, clientX: r.left + r.width / 2,
      clientY: r.top + 30, bubbles: true, cancelable: true }));
    out.ranges.push(range());
    second.querySelector('button[data-z="all"]').click();
    out.ranges.push(range());
  } catch (e) { out.error = String(e); }
  document.body.setAttribute("data-drive", JSON.stringify(out));
})();</script>`;

/** The checks on the DOM Chromium dumped after the page script ran. */
function checkPage(
  device: string,
  dom: { code: number; stdout: string; stderr: string },
  r: { start: number; size: number; vram: number },
): void {
  assert.equal(dom.code, 0, `${device}: ${dom.stderr}`);
  const page = dom.stdout;
  // No script error: none in the console, none caught by the page script.
  assert.ok(!/Uncaught/.test(dom.stderr), dom.stderr.match(/.*Uncaught.*/)?.[0]);
  const caught = /<html[^>]* data-nm-error="([^"]*)"/.exec(page);
  assert.equal(caught, null, caught?.[1]);
  assert.match(page, /^<html[^>]* data-nm-ready="1"/m);
  assert.match(page, /class="nm nm-map" data-nm-map="vram"[^>]* data-nm-ready="1"/);
  // The script redrew the map: only it writes the size after the range.
  const vram = `0x${r.vram.toString(16)}`;
  assert.match(page, new RegExp(`<span class="nm-range mono">\\[0x0, ${vram}\\) \\d+ GiB`));
  // A non-empty SVG.
  const plot = /<g class="nm-plot">(.*?)<\/g>/s.exec(page)?.[1] ?? "";
  assert.ok((plot.match(/<rect /g)?.length ?? 0) >= 3, `${device}: the map has pieces`);
  // The known buffer, where its address puts it.
  const data = JSON.parse(
    /<script type="application\/json" class="nm-data">(.*?)<\/script>/s.exec(page)![1],
  );
  const rect = new RegExp(`<rect class="nm-k-alloc" data-s="0x${r.start.toString(16)}"[^>]*>`)
    .exec(plot)?.[0];
  assert.ok(
    rect !== undefined,
    `${device}: no element for the buffer at 0x${r.start.toString(16)}`,
  );
  const attr = (n: string) => Number(new RegExp(` ${n}="([^"]+)"`).exec(rect!)![1]);
  const scale = data.pw / r.vram;
  assert.ok(Math.abs(attr("x") - (data.x0 + r.start * scale)) < 0.01, rect);
  assert.ok(Math.abs(attr("width") - r.size * scale) < 0.01, rect);
  assert.equal(attr("y"), data.rows[1].y, "on the buddy row");
}

Deno.test({
  name: "browser: the sim:ga102 and sim:gh100 reports render in headless Chromium, script and all",
  ignore: CHROMIUM === null,
  async fn() {
    const dir = Deno.makeTempDirSync();
    try {
      const ga = await makeReport("sim:ga102", dir);
      // The ga102 page is also driven (hover, zoom); the gh100 page is left as made.
      const page = Deno.readTextFileSync(ga.file)
        .replace('<body class="nm">', `<body class="nm" data-buffer="0x${ga.start.toString(16)}">`)
        .replace("</body>", `${DRIVE}</body>`);
      Deno.writeTextFileSync(ga.file, page);
      const gh = await makeReport("sim:gh100", dir);
      const shot = `${dir}/shot.png`;
      // Three browsers at once (start-up dominates): both DOMs, one screenshot.
      const [domGa, domGh, pic] = await Promise.all([
        chromium(ga.file, ["--dump-dom"], `${dir}/p1`),
        chromium(gh.file, ["--dump-dom"], `${dir}/p2`),
        chromium(gh.file, [`--screenshot=${shot}`, "--window-size=1280,1400"], `${dir}/p3`),
      ]);
      checkPage("sim:ga102", domGa, ga);
      const drive = JSON.parse(
        /<body [^>]*data-drive="([^"]*)"/.exec(domGa.stdout)![1].replaceAll("&quot;", '"'),
      );
      assert.equal(drive.error, undefined, drive.error);
      assert.match(drive.status, /buddy: browser test buffer \[0x[0-9a-f]+, 0x[0-9a-f]+\)/);
      const spans = drive.ranges.map((t: string) => {
        const m = /^\[(0x[0-9a-f]+), (0x[0-9a-f]+)\)/.exec(t)!;
        return Number(m[2]) - Number(m[1]);
      });
      // The button zooms 4x, the wheel 1.25x more, "whole card" shows all of VRAM.
      assert.ok(Math.abs(spans[1] - spans[0] / 4) <= 2, `${spans}`);
      assert.ok(Math.abs(spans[2] - spans[1] * 0.8) <= 2, `${spans}`);
      assert.equal(spans[3], ga.vram);
      checkPage("sim:gh100", domGh, gh);
      // The screenshot: a PNG of some substance.
      assert.equal(pic.code, 0, pic.stderr);
      const png = Deno.readFileSync(shot);
      assert.deepEqual([...png.subarray(1, 4)], [0x50, 0x4e, 0x47], "a PNG");
      assert.ok(png.length > 20_000, `screenshot of ${png.length} bytes`);
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  },
});
