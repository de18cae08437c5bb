/**
 * Writing sessions on one card exclude each other whatever their lock
 * directory (a root session in /run/lock/novamm, a user's in
 * $XDG_RUNTIME_DIR/novamm, another NOVAMM_LOCK_DIR): they also flock the
 * card's own sysfs resource0, one inode for all of them. Run on a fake sysfs
 * tree, through the real open path (hw/device.ts openDevice).
 */

import assert from "node:assert/strict";
import { type Device, lockCard, openDevice } from "../hw/device.ts";
import { closeFd } from "../hw/libc.ts";
import { bootedGa102Bar0, ga102, makeFakeSysfs } from "./fake_sysfs.ts";
import { ROOT, throwsNova, writeU32 } from "./util.ts";

const BDF = "0000:65:00.0";

/** A booted fake GA102 and two private lock directories. */
async function fakeCard(): Promise<{ dir: string; root: string; bar0: string; locks: string[] }> {
  const dir = await Deno.makeTempDir({ prefix: "novamm_card_lock_" });
  const fn = ga102(BDF);
  fn.bars[0].fileSize = 0x1000000; // the whole 16 MiB BAR0 (sparse)
  const root = makeFakeSysfs(dir, [fn]);
  const bar0 = `${root}/${BDF}/resource0`;
  bootedGa102Bar0(bar0, writeU32);
  const locks = [`${dir}/lock-a`, `${dir}/lock-b`];
  for (const l of locks) Deno.mkdirSync(l, { mode: 0o700 });
  return { dir, root, bar0, locks };
}

function open(root: string, lockDir: string, extra: { readOnly?: boolean } = {}): Device {
  return openDevice({ device: BDF, sysfsRoot: root, lockDir, ...extra });
}

Deno.test("card lock: two writing opens with different lock directories exclude each other", async () => {
  const { dir, root, bar0, locks } = await fakeCard();
  try {
    const a = open(root, locks[0]);
    assert.equal(a.lock?.card?.path, bar0, "the card's resource0 is flocked");
    const e = throwsNova(() => open(root, locks[1]), "EBUSY");
    assert.match(
      e.message,
      new RegExp(
        `^EBUSY: ${BDF} is in use by another novamm session \\(pid ${Deno.pid}, flock on ${bar0}\\)$`,
      ),
    );
    assert.match(e.hint ?? "", /--read-only/);
    // The refused open left its own lock file free: a third directory's session is refused by
    // the card flock too, not by a lock file the second one kept.
    throwsNova(() => open(root, locks[1]), "EBUSY", `flock on ${bar0}`);
    // Read-only sessions take no lock and are not refused.
    const ro = open(root, locks[1], { readOnly: true });
    assert.equal(ro.lock, null);
    ro.close();
    a.close();
    const b = open(root, locks[1]);
    assert.equal(b.chip.name, "GA102");
    // And the other way round, from the first directory.
    throwsNova(() => open(root, locks[0]), "EBUSY", `flock on ${bar0}`);
    b.close();
    open(root, locks[0]).close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("card lock: a read-only session does not hold the card against a writer", async () => {
  const { dir, root, locks } = await fakeCard();
  try {
    const ro = open(root, locks[0], { readOnly: true });
    const w = open(root, locks[1]);
    assert.notEqual(w.lock, null);
    w.close();
    ro.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("card lock: a failed open releases the card flock and the lock file", async () => {
  const { dir, root, bar0, locks } = await fakeCard();
  try {
    // BOOT_0 reads 0: the open fails after both locks were taken (in identify).
    writeU32(bar0, 0x0, 0);
    for (let i = 0; i < 2; i++) throwsNova(() => open(root, locks[i]), "ENODEV", "pre-Fermi GPU");
    // GFW boot never completes: the open fails in the wait, after the mapping.
    writeU32(bar0, 0x0, 0x172000a1);
    writeU32(bar0, 0x118234, 0);
    throwsNova(
      () => openDevice({ device: BDF, sysfsRoot: root, lockDir: locks[0], gfwTimeoutMs: 5 }),
      "ETIMEDOUT",
      "GFW boot did not complete",
    );
    writeU32(bar0, 0x118234, 0xff);
    // BAR0 shorter than 16 MiB: the open fails mapping it.
    Deno.truncateSync(bar0, 0x10000);
    throwsNova(() => open(root, locks[1]), "ENODEV", "BAR0 of 0000:65:00.0 maps 0x10000 bytes");
    Deno.truncateSync(bar0, 0x1000000);
    bootedGa102Bar0(bar0, writeU32); // the registers past 64 KiB went with the truncation
    // Nothing stayed locked: both directories open the card now, one after the other.
    open(root, locks[0]).close();
    open(root, locks[1]).close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("card lock: lockCard with a cardFile, release, and closing both fds (a killed REPL worker)", async () => {
  const { dir, bar0, locks } = await fakeCard();
  try {
    const a = lockCard(BDF, { dir: locks[0], cardFile: bar0 });
    assert.equal(a.card?.path, bar0);
    assert.notEqual(a.card?.fd, a.fd);
    throwsNova(() => lockCard(BDF, { dir: locks[1], cardFile: bar0 }), "EBUSY", `flock on ${bar0}`);
    // Without a cardFile only the lock file counts (the old behaviour, kept for lockCard alone).
    const lone = lockCard(BDF, { dir: locks[1] });
    assert.equal(lone.card, null);
    lone.release();
    a.release();
    a.release(); // idempotent
    // What the REPL's UI thread does when it kills a worker: close the fds it was given.
    const b = lockCard(BDF, { dir: locks[1], cardFile: bar0 });
    closeFd(b.fd);
    closeFd(b.card!.fd);
    const c = lockCard(BDF, { dir: locks[0], cardFile: bar0 });
    c.release();
    // Bad options change nothing and are refused by name.
    throwsNova(() => lockCard(BDF, { dir: locks[0], cardFile: "" }), "EINVAL", "cardFile");
    throwsNova(
      () => lockCard(BDF, { dir: locks[0], cardFile: 5 as unknown as string }),
      "EINVAL",
      "cardFile",
    );
    // A card file that is not there: ENODEV, and the lock file taken first is free again.
    throwsNova(
      () => lockCard(BDF, { dir: locks[0], cardFile: `${dir}/missing/resource0` }),
      "ENODEV",
      `${dir}/missing/resource0`,
    );
    lockCard(BDF, { dir: locks[0], cardFile: bar0 }).release();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

const HOLDER = `
import { lockCard } from "${ROOT}hw/device.ts";
const lock = lockCard("${BDF}", { dir: Deno.args[0], cardFile: Deno.args[1] });
console.log("held");
// Held until stdin closes.
for await (const _ of Deno.stdin.readable) { /* wait */ }
lock.release();
`;

Deno.test("card lock: another process's session, other lock directory, is named by its pid", async () => {
  const { dir, root, bar0, locks } = await fakeCard();
  const script = `${dir}/holder.mjs`;
  Deno.writeTextFileSync(script, HOLDER);
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", script, locks[0], bar0],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  try {
    const reader = child.stdout.getReader();
    const first = await reader.read();
    assert.equal(new TextDecoder().decode(first.value).trim(), "held");
    reader.releaseLock();
    throwsNova(
      () => open(root, locks[1]),
      "EBUSY",
      `${BDF} is in use by another novamm session (pid ${child.pid}, flock on ${bar0})`,
    );
    await child.stdin.close();
    const status = await child.output();
    assert.equal(status.code, 0, new TextDecoder().decode(status.stderr));
    open(root, locks[1]).close(); // the holder exited: free
  } finally {
    try {
      child.kill();
    } catch {
      // exited
    }
    await Deno.remove(dir, { recursive: true });
  }
});
