/**
 * The per-card lock is a kernel flock: eight processes racing over a stale
 * lock file (the pid of a dead session in it) find exactly one writer, in
 * each of 50 rounds; eight processes each with its own lock directory (root's
 * and users' sessions, other NOVAMM_LOCK_DIRs) meet on the card's own file and
 * find exactly one writer too. The processes start once; the rounds are paced
 * by files.
 */

import assert from "node:assert/strict";
import { ROOT } from "./util.ts";

const RACER = `
import { lockCard } from "${ROOT}hw/device.ts";
// mode "dir": one lock directory per round, shared; "card": a directory per racer, one card file.
const [dir, id, rounds, mode] = Deno.args;
const exists = (p) => { try { Deno.statSync(p); return true; } catch { return false; } };
const wait = async (p) => { while (!exists(p)) await new Promise((r) => setTimeout(r, 2)); };
for (let r = 0; r < Number(rounds); r++) {
  await wait(dir + "/go-" + r);
  let lock = null;
  let err = "";
  const options = mode === "card"
    ? { dir: dir + "/locks-" + r + "-" + id, cardFile: dir + "/resource0" }
    : { dir: dir + "/locks-" + r };
  try { lock = lockCard("0000:65:00.0", options); }
  catch (e) { if (e?.code !== "EBUSY") err = String(e); }
  // Written aside and renamed, so the test never reads a half-written answer.
  const answer = dir + "/r-" + r + "-" + id;
  Deno.writeTextFileSync(answer + ".tmp", err || (lock === null ? "lost" : "won"));
  Deno.renameSync(answer + ".tmp", answer);
  await wait(dir + "/end-" + r);
  lock?.release();
}
`;

/** Runs the racers over `rounds` rounds in `mode` (see RACER) and checks one winner a round. */
async function race(mode: "dir" | "card", ROUNDS: number): Promise<void> {
  const dir = await Deno.makeTempDir();
  const N = 8;
  try {
    const script = `${dir}/racer.mjs`;
    await Deno.writeTextFile(script, RACER);
    // The card's resource0 (a fake sysfs file: flock works the same on sysfs).
    await Deno.writeFile(`${dir}/resource0`, new Uint8Array(4096));
    for (let r = 0; r < ROUNDS; r++) {
      for (const sub of mode === "card" ? [...Array(N).keys()].map((i) => `-${i}`) : [""]) {
        await Deno.mkdir(`${dir}/locks-${r}${sub}`, { mode: 0o700 });
        // Stale: a session that died (pid 1 is never a novamm session) left its pid behind.
        await Deno.writeTextFile(`${dir}/locks-${r}${sub}/novamm-0000_65_00.0.lock`, "1\n");
      }
    }
    const procs = Array.from({ length: N }, (_, id) =>
      new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", script, dir, String(id), String(ROUNDS), mode],
        stdout: "null",
        stderr: "piped",
      }).spawn());
    const exists = (p: string) => {
      try {
        Deno.statSync(p);
        return true;
      } catch {
        return false;
      }
    };
    for (let r = 0; r < ROUNDS; r++) {
      await Deno.writeTextFile(`${dir}/go-${r}`, "");
      const t0 = performance.now();
      const files = Array.from({ length: N }, (_, id) => `${dir}/r-${r}-${id}`);
      while (!files.every(exists)) {
        if (performance.now() - t0 > 30_000) throw new Error(`round ${r}: racers did not answer`);
        await new Promise((res) => setTimeout(res, 5));
      }
      const answers = files.map((f) => Deno.readTextFileSync(f));
      assert.ok(answers.every((a) => a === "won" || a === "lost"), `round ${r}: ${answers}`);
      const won = answers.filter((a) => a === "won").length;
      assert.equal(won, 1, `round ${r}: ${won} writers`);
      await Deno.writeTextFile(`${dir}/end-${r}`, "");
    }
    for (const p of procs) {
      const s = await p.output();
      assert.equal(s.code, 0, new TextDecoder().decode(s.stderr));
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("lock: eight processes over a stale lock file, 50 rounds, exactly one writer each", async () => {
  await race("dir", 50);
});

Deno.test("lock: eight processes, each its own lock directory, one card file: exactly one writer, 20 rounds", async () => {
  await race("card", 20);
});

Deno.test("lock: a live holder's pid is named; the lock is gone once its holder closes", async () => {
  const { lockCard } = await import("../hw/device.ts");
  const dir = await Deno.makeTempDir();
  try {
    const a = lockCard("0000:01:00.0", { dir });
    assert.throws(
      () => lockCard("0000:01:00.0", { dir }),
      new RegExp(`EBUSY: 0000:01:00.0 is in use by another novamm session \\(pid ${Deno.pid}`),
    );
    a.release();
    lockCard("0000:01:00.0", { dir }).release();
    assert.throws(
      () => lockCard("0000:01:00.0", { dir: `${dir}/missing` }),
      /ENOENT: lock directory/,
    );
    await Deno.mkdir(`${dir}/novamm-0000_02_00.0.lock`);
    assert.throws(
      () => lockCard("0000:02:00.0", { dir }),
      /EINVAL: lock path .* is not a regular file/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** Reads a file's bytes and mode, to show a refused lock left it as it was. */
function snapshot(path: string): { text: string; mode: number; size: number } {
  const info = Deno.statSync(path);
  return { text: Deno.readTextFileSync(path), mode: info.mode! & 0o7777, size: info.size };
}

Deno.test("lock: a planted symlink in the lock directory is refused and its target untouched", async () => {
  const { lockCard } = await import("../hw/device.ts");
  const { NovaError } = await import("../hw/errors.ts");
  const dir = await Deno.makeTempDir();
  const victims = await Deno.makeTempDir();
  try {
    const victim = `${victims}/precious`;
    Deno.writeTextFileSync(victim, "do not overwrite\n", { mode: 0o644 });
    const before = snapshot(victim);
    const link = `${dir}/novamm-0000_01_00.0.lock`;
    // A private directory, then a /tmp-like one (sticky, writable by all): the link is refused.
    for (const mode of [0o700, 0o1777]) {
      Deno.chmodSync(dir, mode);
      Deno.symlinkSync(victim, link);
      const e = (() => {
        try {
          lockCard("0000:01:00.0", { dir });
        } catch (e) {
          return e;
        }
      })();
      assert.ok(e instanceof NovaError, String(e));
      assert.equal(e.code, "EPERM");
      assert.match(e.message, new RegExp(`lock path ${link} is a symbolic link`));
      assert.deepEqual(snapshot(victim), before, "the link's target is untouched");
      Deno.removeSync(link);
    }
    // A dangling link: nothing is created at its target.
    Deno.symlinkSync(`${victims}/created`, link);
    assert.throws(() => lockCard("0000:01:00.0", { dir }), /EPERM: lock path .* symbolic link/);
    assert.throws(() => Deno.statSync(`${victims}/created`), Deno.errors.NotFound);
    Deno.removeSync(link);
    // A hard link to the victim (same owner): two names, refused.
    Deno.linkSync(victim, link);
    assert.throws(() => lockCard("0000:01:00.0", { dir }), /EPERM: lock path .* has 2 names/);
    assert.deepEqual(snapshot(victim), before);
    Deno.removeSync(link);
    // And once the name is free, the lock is taken, mode 0600, pid written through the fd.
    const lock = lockCard("0000:01:00.0", { dir });
    assert.equal(snapshot(lock.path).mode, 0o600);
    assert.equal(snapshot(lock.path).text, `${Deno.pid}\n`);
    lock.release();
    assert.equal(snapshot(lock.path).size, 0);
  } finally {
    await Deno.remove(dir, { recursive: true });
    await Deno.remove(victims, { recursive: true });
  }
});

Deno.test("lock: a directory others can plant files in is refused, naming it", async () => {
  const { lockCard } = await import("../hw/device.ts");
  const dir = await Deno.makeTempDir();
  try {
    for (const [mode, what] of [[0o777, "every user"], [0o770, "its group"]] as const) {
      Deno.chmodSync(dir, mode);
      assert.throws(
        () => lockCard("0000:01:00.0", { dir }),
        new RegExp(
          `EPERM: lock directory ${dir} is writable by ${what} \\(mode 0${
            mode.toString(8)
          }\\) without the sticky bit`,
        ),
      );
    }
    Deno.chmodSync(dir, 0o700);
    lockCard("0000:01:00.0", { dir }).release();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

const root = Deno.uid() === 0;

Deno.test({
  name: "lock: another user's directory or lock file is refused (as root: chown)",
  ignore: !root,
  fn: async () => {
    const { lockCard } = await import("../hw/device.ts");
    const dir = await Deno.makeTempDir();
    try {
      // A lock file someone else made: refused, and left as it was.
      const path = `${dir}/novamm-0000_01_00.0.lock`;
      Deno.writeTextFileSync(path, "4242\n", { mode: 0o666 });
      Deno.chmodSync(path, 0o666);
      Deno.chownSync(path, 65534, 65534);
      const before = snapshot(path);
      assert.throws(
        () => lockCard("0000:01:00.0", { dir }),
        new RegExp(`EPERM: lock path ${path} is owned by uid 65534, not by this user \\(uid 0\\)`),
      );
      assert.deepEqual(snapshot(path), before);
      Deno.removeSync(path);
      // A directory of another user: refused, sticky or not.
      Deno.chownSync(dir, 65534, 65534);
      assert.throws(
        () => lockCard("0000:01:00.0", { dir }),
        new RegExp(`EPERM: lock directory ${dir} is owned by uid 65534, not by this user`),
      );
      Deno.chmodSync(dir, 0o1777);
      assert.throws(
        () => lockCard("0000:01:00.0", { dir }),
        new RegExp(`EPERM: lock directory ${dir} \\(sticky, mode 01777\\) is owned by uid 65534`),
      );
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

/**
 * Runs `lockCard(bdf, { dir, cardFile })` as uid 65534 (setpriv), printing the error; null
 * without setpriv.
 */
async function lockAsNobody(dir: string, cardFile?: string): Promise<string | null> {
  const denoDir = await Deno.makeTempDir();
  const script = `${denoDir}/lock.mjs`;
  Deno.writeTextFileSync(
    script,
    `import { lockCard } from "${ROOT}hw/device.ts";
const cardFile = Deno.args[1];
try { lockCard("0000:01:00.0", { dir: Deno.args[0], ...(cardFile ? { cardFile } : {}) }); console.log("won"); }
catch (e) { console.log(e.name + " " + e.message); }`,
  );
  Deno.chmodSync(script, 0o644);
  Deno.chownSync(denoDir, 65534, 65534);
  try {
    const out = await new Deno.Command("setpriv", {
      args: [
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        Deno.execPath(),
        "run",
        "-A",
        script,
        dir,
        ...(cardFile === undefined ? [] : [cardFile]),
      ],
      env: { DENO_DIR: denoDir, NO_COLOR: "1" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    return new TextDecoder().decode(out.stdout).trim() + new TextDecoder().decode(out.stderr);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw e;
  } finally {
    await Deno.remove(denoDir, { recursive: true });
  }
}

Deno.test("lock: an unwritable lock directory is EACCES naming the path", async () => {
  const { lockCard } = await import("../hw/device.ts");
  const dir = await Deno.makeTempDir();
  try {
    Deno.chmodSync(dir, 0o500);
    const want = new RegExp(
      `EACCES: cannot create the lock file ${dir}/novamm-0000_01_00.0.lock: the directory ${dir} is not writable by uid \\d+`,
    );
    if (!root) {
      assert.throws(() => lockCard("0000:01:00.0", { dir }), want);
      return;
    }
    // Root writes anywhere: the directory belongs to uid 65534, who runs the lock.
    Deno.chownSync(dir, 65534, 65534);
    const out = await lockAsNobody(dir);
    if (out === null) return; // no setpriv here
    assert.match(out, want);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("lock: the default directory is private: /run/lock/novamm for root, else $XDG_RUNTIME_DIR/novamm", async () => {
  const { defaultLockDir, prepareLockDir } = await import("../hw/device.ts");
  const runLock = await Deno.makeTempDir();
  const xdg = await Deno.makeTempDir();
  try {
    assert.equal(defaultLockDir({ runLock, xdgRuntimeDir: xdg, uid: 0 }), `${runLock}/novamm`);
    // Created 0700 on first use; a second use finds it.
    prepareLockDir(`${runLock}/novamm`, { isDefault: true, uid: Deno.uid()! });
    assert.equal(Deno.statSync(`${runLock}/novamm`).mode! & 0o7777, 0o700);
    prepareLockDir(`${runLock}/novamm`, { isDefault: true, uid: Deno.uid()! });
    const uid = Deno.uid()!;
    // A user who is not root, /run/lock/novamm someone else's: their own runtime directory.
    const other = uid === 0 ? 1000 : uid;
    if (uid === 0) Deno.chownSync(xdg, other, other);
    if (uid === 0) {
      assert.equal(defaultLockDir({ runLock, xdgRuntimeDir: xdg, uid: other }), `${xdg}/novamm`);
      // ... but not a runtime directory that is not theirs.
      assert.equal(
        defaultLockDir({ runLock, xdgRuntimeDir: runLock, uid: other }),
        `${runLock}/novamm`,
      );
    }
    // No /run/lock at all: the runtime directory.
    assert.equal(
      defaultLockDir({ runLock: `${runLock}/missing`, xdgRuntimeDir: xdg, uid: other }),
      `${xdg}/novamm`,
    );
    // A link planted where the default directory goes is refused, not followed.
    Deno.removeSync(`${runLock}/novamm`);
    Deno.symlinkSync(xdg, `${runLock}/novamm`);
    assert.throws(
      () => prepareLockDir(`${runLock}/novamm`, { isDefault: true, uid }),
      new RegExp(`EPERM: lock directory ${runLock}/novamm is a symbolic link`),
    );
  } finally {
    await Deno.remove(runLock, { recursive: true });
    await Deno.remove(xdg, { recursive: true });
  }
});

Deno.test({
  name: "lock: a root session and another user's session (own lock directories) exclude each other",
  ignore: !root,
  fn: async () => {
    const { lockCard } = await import("../hw/device.ts");
    const dir = await Deno.makeTempDir();
    try {
      // A udev rule may give a group access to the resource files: here everyone may read it.
      Deno.chmodSync(dir, 0o755);
      const card = `${dir}/resource0`;
      Deno.writeFileSync(card, new Uint8Array(4096), { mode: 0o644 });
      Deno.chmodSync(card, 0o644);
      const rootDir = `${dir}/root-locks`;
      const userDir = `${dir}/user-locks`;
      Deno.mkdirSync(rootDir, { mode: 0o700 });
      Deno.mkdirSync(userDir, { mode: 0o700 });
      Deno.chownSync(userDir, 65534, 65534);
      const held = lockCard("0000:01:00.0", { dir: rootDir, cardFile: card });
      const out = await lockAsNobody(userDir, card);
      if (out === null) {
        held.release();
        return; // no setpriv here
      }
      assert.match(
        out,
        new RegExp(
          `EBUSY: 0000:01:00.0 is in use by another novamm session \\(pid ${Deno.pid}, flock on ${card}\\)`,
        ),
      );
      held.release();
      assert.equal(await lockAsNobody(userDir, card), "won");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
