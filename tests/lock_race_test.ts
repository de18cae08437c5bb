/**
 * The per-card lock is a kernel flock: eight processes racing over a stale
 * lock file (the pid of a dead session in it) find exactly one writer, in
 * each of 50 rounds. The processes start once; the rounds are paced by files.
 */

import assert from "node:assert/strict";
import { ROOT } from "./util.ts";

const RACER = `
import { lockCard } from "${ROOT}hw/device.ts";
const [dir, id, rounds] = Deno.args;
const exists = (p) => { try { Deno.statSync(p); return true; } catch { return false; } };
const wait = async (p) => { while (!exists(p)) await new Promise((r) => setTimeout(r, 2)); };
for (let r = 0; r < Number(rounds); r++) {
  await wait(dir + "/go-" + r);
  let lock = null;
  let err = "";
  try { lock = lockCard("0000:65:00.0", { dir: dir + "/locks-" + r }); }
  catch (e) { if (e?.code !== "EBUSY") err = String(e); }
  // Written aside and renamed, so the test never reads a half-written answer.
  const answer = dir + "/r-" + r + "-" + id;
  Deno.writeTextFileSync(answer + ".tmp", err || (lock === null ? "lost" : "won"));
  Deno.renameSync(answer + ".tmp", answer);
  await wait(dir + "/end-" + r);
  lock?.release();
}
`;

Deno.test("lock: eight processes over a stale lock file, 50 rounds, exactly one writer each", async () => {
  const dir = await Deno.makeTempDir();
  const N = 8;
  const ROUNDS = 50;
  try {
    const script = `${dir}/racer.mjs`;
    await Deno.writeTextFile(script, RACER);
    for (let r = 0; r < ROUNDS; r++) {
      await Deno.mkdir(`${dir}/locks-${r}`);
      // Stale: a session that died (pid 1 is never a novamm session) left its pid behind.
      await Deno.writeTextFile(`${dir}/locks-${r}/novamm-0000_65_00.0.lock`, "1\n");
    }
    const procs = Array.from({ length: N }, (_, id) =>
      new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", script, dir, String(id), String(ROUNDS)],
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
