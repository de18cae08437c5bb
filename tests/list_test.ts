/**
 * `deno task list` on a fake sysfs tree (the real sysfs parsing and the real
 * read-only BAR0 mmap run on ordinary files) and on an empty machine.
 */

import assert from "node:assert/strict";
import { formatRows, listRows } from "../cli/list.ts";
import { ga102, makeFakeSysfs } from "./fake_sysfs.ts";
import { runDeno, writeU32 } from "./util.ts";

/**
 * Two GA102s of different boards (subsystem 10de:147d and 1043:87b3): one answers
 * BOOT_0/BOOT_42 (nvidia bound), one reads all zeroes.
 */
async function fakeMachine(): Promise<{ dir: string; root: string }> {
  const dir = await Deno.makeTempDir();
  const root = makeFakeSysfs(dir, [
    ga102("0000:65:00.0", "nvidia"),
    { ...ga102("0000:b3:00.0"), subsystem: { vendor: 0x1043, device: 0x87b3 } },
  ]);
  writeU32(`${root}/0000:65:00.0/resource0`, 0x0, 0x172000a1);
  writeU32(`${root}/0000:65:00.0/resource0`, 0xa00, 0x172a1000);
  return { dir, root };
}

Deno.test("list: rows from a fake sysfs, chip read through a read-only BAR0 mapping", async () => {
  const { dir, root } = await fakeMachine();
  try {
    const rows = listRows({ sysfsRoot: root });
    assert.deepEqual(rows.map((r) => [r.bdf, r.device, r.chip, r.driver]), [
      ["0000:65:00.0", 0x2204, "GA102 (Ampere)", "nvidia"],
      ["0000:b3:00.0", 0x2204, null, null],
    ]);
    assert.match(rows[1].chipError!, /^ENODEV: pre-Fermi GPU \(BOOT_0=0x00000000/);
    // The I/O-port BAR5 is not listed; the ROM is not a BAR.
    assert.deepEqual(rows[0].bars.map((b) => [b.index, b.size]), [
      [0, 16 * 2 ** 20],
      [1, 32 * 2 ** 30],
      [3, 32 * 2 ** 20],
    ]);
    // The mapping was read-only: the fake BAR file is unchanged.
    const bytes = await Deno.readFile(`${root}/0000:65:00.0/resource0`);
    assert.equal(new DataView(bytes.buffer).getUint32(0xa00, true), 0x172a1000);
    assert.equal(formatRows(rows).split("\n").length, 4);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("list: the command prints a table, JSON, or a friendly line when there is no GPU", async () => {
  const { dir, root } = await fakeMachine();
  try {
    let r = await runDeno("repl.ts", ["list", "--sysfs-root", root]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(
      r.stdout.split("\n\nSimulated GPUs")[0],
      [
        "PCI address   vendor:device  subsystem  chip            driver  BARs",
        "0000:65:00.0  10de:2204      10de:147d  GA102 (Ampere)  nvidia  BAR0 16 MiB, BAR1 32 GiB, BAR3 32 MiB",
        "0000:b3:00.0  10de:2204      1043:87b3  ?               (none)  BAR0 16 MiB, BAR1 32 GiB, BAR3 32 MiB",
        "0000:b3:00.0: chip ?: ENODEV: pre-Fermi GPU (BOOT_0=0x00000000 BOOT_42=0x00000000) is not supported",
      ].join("\n"),
    );
    // The simulated GPUs beside the cards: every profile, the states, the CONFLICT knobs.
    assert.match(r.stdout, /^sim:gh100 +GH100 \(Hopper, MMU v3\) +80 GiB/m);
    assert.match(r.stdout, /^states: bare \(default\), gsp, unloaded, booting, vga/m);
    assert.match(r.stdout, /^knobs: bar1alias=shared\|separate \(MMU v2\), lowbind=/m);
    r = await runDeno("repl.ts", ["list", "--sysfs-root", root, "--json"]);
    assert.deepEqual(JSON.parse(r.stdout).map((x: { chip: string | null }) => x.chip), [
      "GA102 (Ampere)",
      null,
    ]);
    assert.deepEqual(
      JSON.parse(r.stdout).map((
        x: { vendor: number; device: number; subsystemVendor: number; subsystemDevice: number },
      ) => [x.vendor, x.device, x.subsystemVendor, x.subsystemDevice]),
      [[0x10de, 0x2204, 0x10de, 0x147d], [0x10de, 0x2204, 0x1043, 0x87b3]],
    );
    const empty = `${dir}/empty`;
    await Deno.mkdir(empty);
    r = await runDeno("repl.ts", ["list", "--sysfs-root", empty]);
    assert.equal(r.code, 0);
    assert.equal(
      r.stdout.split("\n\nSimulated GPUs")[0],
      `no NVIDIA GPUs found under ${empty}; use --device sim (or sim:ga102, sim:gh100) for the simulated GPU`,
    );
    assert.match(r.stdout, /^sim:ga102 .*= sim$/m);
    r = await runDeno("repl.ts", ["list", "--sysfs-root", `${dir}/missing`]);
    assert.match(r.stdout, /the directory does not exist.*use --device sim/);
    r = await runDeno("repl.ts", ["list", "--nope"]);
    assert.equal(r.code, 1);
    assert.equal(
      r.stderr,
      "error: Unknown option '--nope'\nhint: run the command with --help for its options\n",
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("list: a broken entry under the sysfs root is skipped with its reason, the healthy card still lists and opens", async () => {
  const { bootedGa102Bar0 } = await import("./fake_sysfs.ts");
  const { openGpu } = await import("../mod.ts");
  const dir = await Deno.makeTempDir();
  try {
    const good = ga102("0000:65:00.0");
    good.bars[0].fileSize = 0x1000000;
    const root = makeFakeSysfs(dir, [good, ga102("0000:b3:00.0")]);
    bootedGa102Bar0(`${root}/0000:65:00.0/resource0`, writeU32);
    await Deno.remove(`${root}/0000:b3:00.0/resource`); // a half-removed device
    const rows = listRows({ sysfsRoot: root });
    assert.deepEqual(rows.map((r) => [r.bdf, r.skipped ?? r.chip]), [
      ["0000:65:00.0", "GA102 (Ampere)"],
      [
        "0000:b3:00.0",
        "0000:b3:00.0/resource: no resource file".replace(/^/, `${root}/`).replace(
          `${root}/0000:b3:00.0/resource: no resource file`,
          `${root}/0000:b3:00.0 has no resource file`,
        ),
      ],
    ]);
    assert.match(formatRows(rows), /^0000:b3:00\.0: skipped: .* has no resource file$/m);
    const gpu = await openGpu({ device: "0000:65:00.0", sysfsRoot: root, lockDir: dir });
    assert.equal(gpu.chip.name, "GA102");
    gpu.close();
    await assert.rejects(
      openGpu({ device: "0000:b3:00.0", sysfsRoot: root, lockDir: dir }),
      /ENODEV: 0000:b3:00\.0 cannot be read: .* has no resource file/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("list: subsystem ids missing, malformed or past 16 bits show as ? (null in JSON), never an error", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const root = makeFakeSysfs(dir, [
      { ...ga102("0000:01:00.0"), subsystem: null },
      { ...ga102("0000:02:00.0"), subsystem: "garbage\n" },
      { ...ga102("0000:03:00.0"), subsystem: "0x10000\n" },
      { ...ga102("0000:04:00.0"), subsystem: { vendor: 0x10de, device: 0x1467 } },
    ]);
    // An unreadable file (a directory where the attribute should be) is null too.
    Deno.removeSync(`${root}/0000:04:00.0/subsystem_device`);
    Deno.mkdirSync(`${root}/0000:04:00.0/subsystem_device`);
    const rows = listRows({ sysfsRoot: root });
    assert.deepEqual(rows.map((r) => [r.bdf, r.subsystemVendor, r.subsystemDevice]), [
      ["0000:01:00.0", null, null],
      ["0000:02:00.0", null, null],
      ["0000:03:00.0", null, null],
      ["0000:04:00.0", 0x10de, null],
    ]);
    assert.ok(rows.every((r) => r.skipped === undefined), "no entry skipped for its subsystem");
    const table = formatRows(rows).split("\n");
    const cells = (line: string) => line.split(/ {2,}/).slice(0, 3);
    assert.deepEqual(cells(table[1]), ["0000:01:00.0", "10de:2204", "?"]);
    assert.deepEqual(cells(table[4]), ["0000:04:00.0", "10de:2204", "10de:?"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
