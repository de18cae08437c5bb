/**
 * The register database (hw/regdb): each committed data file's own provenance
 * and hash; the generator reproduces the files from the recorded commits when
 * NVIDIA's headers are on this machine (skipped with a message otherwise, as
 * in CI); the queries; the PRI error table; and hw/regs.ts checked against
 * NVIDIA's headers, with every deliberate exception listed and explained.
 */

import assert from "node:assert/strict";
import * as R from "../hw/regs.ts";
import type { Field } from "../hw/regs.ts";
import { NovaError } from "../hw/errors.ts";
import { describePriError, PRI_ERROR_CODES } from "../hw/pri_error.ts";
import {
  buildRegisterDb,
  decode,
  describeRegister,
  formatDecoded,
  loadedRegisterDb,
  loadRegisterDb,
  lookup,
  REGDB_CHIPS,
  regdbChipKey,
  registerByName,
  type RegisterDbMeta,
  registerFacts,
  sideEffect,
  sideEffectFree,
  suggestRegister,
} from "../hw/regdb/mod.ts";
import {
  dirSource,
  FAMILIES,
  FORMAT_VERSION,
  generate,
  GENERATOR_VERSION,
  gitSource,
  sha256,
} from "../tools/gen_regdb.ts";
import { ROOT } from "./util.ts";

const OGKM = "NVIDIA/open-gpu-kernel-modules";
const OGD = "NVIDIA/open-gpu-doc";
/** The tag the committed data was generated from. */
const OGKM_TAG = "595.45.04";

async function dataModule(chip: string): Promise<{ META: RegisterDbMeta; BODY: string }> {
  return await import(`../hw/regdb/${chip}.ts`);
}

function nova(code: string, re: RegExp): (e: unknown) => boolean {
  return (e: unknown) => {
    assert.ok(e instanceof NovaError, String(e));
    assert.equal(e.code, code, e.message);
    assert.match(e.message, re);
    return true;
  };
}

// --- provenance --------------------------------------------------------------

Deno.test("regdb: every data file carries its provenance and the hash of its body", async () => {
  assert.deepEqual(REGDB_CHIPS, Object.keys(FAMILIES));
  for (const chip of REGDB_CHIPS) {
    const { META, BODY } = await dataModule(chip);
    assert.equal(META.chip, chip);
    assert.equal(META.format, FORMAT_VERSION);
    assert.equal(META.generator, GENERATOR_VERSION);
    assert.equal(await sha256(BODY), META.sha256, `${chip}: body edited by hand?`);
    const ogkm = META.sources.find((s) => s.repo === OGKM);
    assert.ok(ogkm, chip);
    assert.equal(ogkm.tag, OGKM_TAG);
    assert.match(ogkm.commit, /^[0-9a-f]{40}$/);
    for (const s of META.sources) assert.match(s.commit, /^[0-9a-f]{40}$/);
    const db = buildRegisterDb(META, BODY);
    assert.equal(db.registers.length, META.registers);
    assert.equal(db.family, FAMILIES[chip]);
    // Every file named is one of the sources' (ogkm:/ogd: prefixes) and registers point at one.
    assert.ok(db.files.every((f) => /^(ogkm|ogd):/.test(f)));
    assert.ok(db.registers.every((r) => db.files.includes(r.file)));
    // Small enough to load per chip without slowing the suite.
    const size = (await Deno.stat(`${ROOT}hw/regdb/${chip}.ts`)).size;
    assert.ok(size < 256 * 1024, `${chip}.ts is ${size} bytes`);
  }
});

/** Where the headers may be: env vars, else the mirrors a session fetches. */
function gitDir(env: string, fallback: string): string | null {
  const dir = Deno.env.get(env) ?? fallback;
  try {
    Deno.statSync(dir);
    return dir;
  } catch {
    return null;
  }
}

const OGKM_GIT = gitDir("NOVAMM_OGKM_GIT", "/work/.mirror/NVIDIA+open-gpu-kernel-modules/repo");
const OGD_GIT = gitDir("NOVAMM_OGD_GIT", "/work/.mirror/NVIDIA+open-gpu-doc/repo");
const OGKM_DIR = Deno.env.get("NOVAMM_OGKM_DIR"); // an extracted checkout at the recorded commit
const OGD_DIR = Deno.env.get("NOVAMM_OGD_DIR");
const HEADERS = OGKM_GIT !== null || OGKM_DIR !== undefined;

if (!HEADERS) {
  console.log(
    "regdb: NVIDIA's headers are not on this machine (set NOVAMM_OGKM_GIT / NOVAMM_OGD_GIT to " +
      "git dirs, or NOVAMM_OGKM_DIR / NOVAMM_OGD_DIR to checkouts): the regeneration check is skipped",
  );
}

Deno.test({
  name: "regdb: the generator reproduces the committed data from the recorded commits",
  ignore: !HEADERS,
  async fn() {
    const { META } = await dataModule("ga102");
    const rec = (repo: string) => META.sources.find((s) => s.repo === repo);
    const ogkmRec = rec(OGKM)!;
    const ogdRec = rec(OGD);
    const ogkm = OGKM_DIR !== undefined
      ? dirSource(OGKM, OGKM_DIR, ogkmRec.tag, ogkmRec.commit)
      : gitSource(OGKM, OGKM_GIT!, ogkmRec.commit, ["src/common/inc/swref/published"]);
    let ogd = null;
    if (ogdRec !== undefined) {
      if (OGD_DIR !== undefined) ogd = dirSource(OGD, OGD_DIR, ogdRec.tag, ogdRec.commit);
      else if (OGD_GIT !== null) {
        const { OGD_DIRS } = await import("../tools/gen_regdb.ts");
        ogd = gitSource(OGD, OGD_GIT, ogdRec.commit, OGD_DIRS);
      }
      if (ogd === null) {
        console.log("regdb: open-gpu-doc is not here; only the OGKM part cannot be checked alone");
        return;
      }
    }
    const chips = await generate(ogkm, ogd);
    for (const c of chips) {
      const committed = await Deno.readTextFile(`${ROOT}hw/regdb/${c.chip}.ts`);
      assert.ok(
        committed === c.text,
        `hw/regdb/${c.chip}.ts differs from what tools/gen_regdb.ts makes from the headers; ` +
          "run `deno task regdb` (see tools/gen_regdb.ts)",
      );
    }
  },
});

// --- the done-when checks ----------------------------------------------------

Deno.test("regdb: 0x10F804 on GH100 is NV_XAL_EP_ZB_UFLUSH_FB_FLUSH_COMPLETED (TOKEN 30:0, STATUS 31:31)", async () => {
  const db = await loadRegisterDb("sim:gh100");
  const hits = lookup(db, 0x10f804);
  assert.deepEqual(hits.map((h) => h.name), ["NV_XAL_EP_ZB_UFLUSH_FB_FLUSH_COMPLETED"]);
  const r = hits[0].register;
  assert.equal(r.access, "R--4R");
  assert.deepEqual(
    r.fields.map((f) => [f.name, f.hi, f.lo]),
    [["TOKEN", 30, 0], ["STATUS", 31, 31]],
  );
  assert.equal(r.fields[1].values.find((v) => v.value === 1)?.name, "BUSY");
  assert.equal(r.reset, 0);
  assert.match(describeRegister(hits[0]), /@ 0x10f804 {2}R--4R {2}reset 0x00000000/);
  assert.equal(lookup(db, "0x10F804")[0].name, hits[0].name);
});

Deno.test("regdb: decode NV_PMC_BOOT_0 names every field on every chip", async () => {
  for (const chip of REGDB_CHIPS) {
    const db = await loadRegisterDb(chip);
    const d = decode(db, "NV_PMC_BOOT_0", 0x192000a1);
    const f = Object.fromEntries(d.fields.map((x) => [x.name, x.value]));
    assert.equal(f.ARCHITECTURE_0, 0x19, chip);
    assert.equal(f.IMPLEMENTATION, 2, chip);
    assert.equal(f.MAJOR_REVISION, 0xa, chip);
    assert.equal(f.MINOR_REVISION, 1, chip);
    assert.equal(f.ARCHITECTURE_1, 0, chip);
    assert.equal(d.priError, null);
    assert.match(formatDecoded(d), /^NV_PMC_BOOT_0 = 0x192000a1 \{ .*ARCHITECTURE_0=0x19/);
  }
  const ga = await loadRegisterDb("GA102");
  assert.match(formatDecoded(decode(ga, 0, 0x192000a1)), /ARCHITECTURE=0x19 \(AD100\)/);
  assert.match(formatDecoded(decode(ga, 0, 0x192000a1), { multiline: true }), /\n {2}28:24 +ARCH/);
});

Deno.test("regdb: NV_PFB_PRI_MMU_CTRL exists on every chip whose published files have it", async () => {
  // OGD's turing/tu104 pri_mmu_both.ref.txt defines it (TU10x, and GA100/GA10x/AD10x by
  // inheritance); no Hopper or Blackwell file NVIDIA publishes does.
  for (const chip of REGDB_CHIPS) {
    const db = await loadRegisterDb(chip);
    const has = db.byName.get("NV_PFB_PRI_MMU_CTRL");
    if (["gh100", "gb100", "gb202"].includes(chip)) {
      assert.equal(has, undefined, chip);
      continue;
    }
    assert.ok(has, chip);
    assert.equal(has.offset, 0x100c80);
    assert.deepEqual(lookup(db, 0x100c80).map((h) => h.name), ["NV_PFB_PRI_MMU_CTRL"]);
    assert.ok(lookup(db, "MMU_CTRL").some((h) => h.name === "NV_PFB_PRI_MMU_CTRL"));
  }
});

// --- queries -----------------------------------------------------------------

Deno.test("regdb: lookup by offset, indexed instance, glob and substring; did-you-mean", async () => {
  const db = await loadRegisterDb("GA104"); // a GA10x chip
  assert.equal(db.chip, "ga102");
  assert.equal(loadedRegisterDb(0x174), db);
  assert.deepEqual(lookup(db, 0xb830a0).map((h) => h.name), [
    "NV_VIRTUAL_FUNCTION_PRIV_MMU_INVALIDATE_PDB",
  ]);
  assert.deepEqual(lookup(db, 0xb80f40).map((h) => h.name), [
    "NV_VIRTUAL_FUNCTION_PRIV_BAR1_BLOCK",
  ]);
  // NV_VIRTUAL_FUNCTION_PRIV_CPU_INTR_LEAF(i) at VF 0x1000 + i*4, 8 instances.
  const leaf = registerByName(db, "NV_VIRTUAL_FUNCTION_PRIV_CPU_INTR_LEAF(3)");
  assert.equal(leaf.offset, 0xb8100c);
  assert.deepEqual(lookup(db, 0xb8100c).map((h) => h.name), [
    "NV_VIRTUAL_FUNCTION_PRIV_CPU_INTR_LEAF(3)",
  ]);
  assert.deepEqual(lookup(db, 0xb81020).map((h) => h.name), []); // past __SIZE_1 = 8
  assert.throws(
    () => registerByName(db, "NV_VIRTUAL_FUNCTION_PRIV_CPU_INTR_LEAF(8)"),
    nova("EINVAL", /index 8 is past its bound 8/),
  );
  const glob = lookup(db, "NV_PFB_PRI_MMU_WPR2_*").map((h) => h.name);
  assert.deepEqual(glob, ["NV_PFB_PRI_MMU_WPR2_ADDR_LO", "NV_PFB_PRI_MMU_WPR2_ADDR_HI"]);
  assert.ok(lookup(db, "bar0_window").some((h) => h.name === "NV_PBUS_BAR0_WINDOW"));
  assert.equal(lookup(db, "NV_*", { limit: 3 }).length, 3);
  assert.equal(suggestRegister(db, "NV_PBUS_BAR0_WINDW"), "NV_PBUS_BAR0_WINDOW");
  assert.equal(suggestRegister(db, "PBUS_BAR0_WINDOW"), "NV_PBUS_BAR0_WINDOW");
  assert.throws(
    () => registerByName(db, "NV_PBUS_BAR0_WINDW"),
    (e: unknown) =>
      e instanceof NovaError && e.code === "ENOENT" && /NV_PBUS_BAR0_WINDOW/.test(e.hint ?? ""),
  );
  // Relative blocks are found by name, never by offset.
  const falcon = lookup(db, "NV_PFALCON_FALCON_MAILBOX0")[0];
  assert.equal(falcon.register.space, "falcon");
  assert.ok(!lookup(db, falcon.offset).some((h) => h.register === falcon.register));
});

Deno.test("regdb: bad input fails with EINVAL naming the value; options are checked", async () => {
  const db = await loadRegisterDb("tu102");
  await assert.rejects(() => loadRegisterDb("GK104"), nova("EINVAL", /"GK104"/));
  await assert.rejects(() => loadRegisterDb(0x123), nova("EINVAL", /0x123/));
  assert.throws(() => regdbChipKey("GA1O2"), nova("EINVAL", /GA1O2/));
  assert.throws(() => lookup(db, -4), nova("EINVAL", /-4/));
  assert.throws(() => lookup(db, ""), nova("EINVAL", /""/));
  assert.throws(() => lookup(db, 0, { limt: 3 } as never), nova("EINVAL", /unknown key "limt"/));
  assert.throws(() => decode(db, "NV_PMC_BOOT_0", 2 ** 32), nova("EINVAL", /0x100000000/));
  assert.throws(() => decode(db, 0x3ffffc, 0), nova("ENOENT", /0x3ffffc/));
  assert.throws(() => lookup({} as never, 0), nova("EINVAL", /register database/));
  assert.throws(
    () => formatDecoded(decode(db, 0, 0), { multi: true } as never),
    nova("EINVAL", /unknown key "multi"/),
  );
});

Deno.test("regdb: the side-effect rule keeps glob reads off memops, ports, pops and write-only registers", async () => {
  const gh = await loadRegisterDb("GH100");
  const flush = registerByName(gh, "NV_XAL_EP_ZB_UFLUSH_FB_FLUSH").register;
  assert.match(sideEffect(flush)!, /injects a flush/);
  assert.ok(!sideEffectFree(flush));
  assert.ok(sideEffectFree(registerByName(gh, "NV_XAL_EP_ZB_UFLUSH_FB_FLUSH_COMPLETED").register));
  assert.ok(sideEffectFree(registerByName(gh, "NV_PMC_BOOT_0").register));
  // Every XAL memop in 0x10F800..0x10F8FF but the _COMPLETED ones and the constant ZEROS.
  for (const h of lookup(gh, "NV_XAL_EP*")) {
    const r = h.register;
    if (r.offset >= 0x10f800 && r.offset < 0x10f900) {
      assert.equal(sideEffectFree(r), /_COMPLETED$|_ZEROS$/.test(r.name), r.name);
    }
  }
  const base = registerByName(gh, "NV_PMC_BOOT_0").register;
  const fake = (name: string, access = "RW-4R") => ({ ...base, name, access, fields: [] });
  assert.match(sideEffect(fake("NV_PGSP_FALCON_DMEMD(0)"))!, /auto-increments/);
  assert.match(sideEffect(fake("NV_PFOO_QUEUE_DATA"))!, /pop/);
  assert.match(sideEffect(fake("NV_PFOO_INTR_CLEAR"))!, /clear/);
  assert.match(sideEffect(fake("NV_PFOO_TRIGGER", "-W-4R"))!, /write-only/);
  const falcon = lookup(gh, "NV_PFALCON_FALCON_MAILBOX0")[0].register;
  assert.match(sideEffect(falcon)!, /not a BAR0 register/);
});

Deno.test("regdb: registerFacts lists each BAR0 register with its reset value and fields", async () => {
  const facts = await registerFacts("GH100");
  assert.ok(facts.every((f) => f.offset < 0x1000000));
  const win = facts.find((f) => f.name === "NV_XAL_EP_ZB_BAR0_WINDOW")!;
  assert.equal(win.offset, 0x10fd40);
  assert.deepEqual(win.fields, [{ name: "BASE", hi: 21, lo: 0 }]);
  const done = facts.find((f) => f.name === "NV_XAL_EP_ZB_UFLUSH_FB_FLUSH_COMPLETED")!;
  assert.deepEqual([done.reset, done.resetMask], [0, 0xffffffff]);
});

// --- PRI errors --------------------------------------------------------------

Deno.test("regdb: PRI errors decode from the published table; unknown codes show raw", async () => {
  assert.equal(
    describePriError(0xbadf5040),
    "PRI error FECS_PRI_CLIENT_ERR (code 0xbadf50, sub-code 0x40)",
  );
  assert.match(describePriError(0xbadf1100)!, /FECS_PRI_DECODE/);
  assert.match(describePriError(0xbad00100)!, /HOST_PRI_TIMEOUT/);
  assert.match(describePriError(0xbadf5108)!, /0xbadf5108 \(code 0xbadf51 not in NVIDIA's table/);
  assert.match(describePriError(0xbadf0200)!, /SCPM_PRI_DUMMY_DATA/);
  assert.match(describePriError(0xbad00200)!, /code 0xbad002 not in NVIDIA's table/);
  assert.match(describePriError(0xbadf4123)!, /PRIV target mask locked/);
  assert.equal(describePriError(0x172000a1), null);
  assert.equal(describePriError(0xffffffff), null);
  assert.throws(() => describePriError("x" as never), nova("EINVAL", /"x"/));
  // The table in hw/pri_error.ts is the one the generator parsed from the header.
  for (const chip of REGDB_CHIPS) {
    const db = await loadRegisterDb(chip);
    assert.deepEqual(
      Object.fromEntries(db.priCodes.map(([n, c]) => [c, n])),
      PRI_ERROR_CODES,
      chip,
    );
  }
  const db = await loadRegisterDb("ga102");
  assert.match(formatDecoded(decode(db, "NV_PMC_BOOT_0", 0xbadf5040)), /FECS_PRI_CLIENT_ERR/);
});

// --- hw/regs.ts against NVIDIA's headers ------------------------------------

const ALL = [...REGDB_CHIPS];
const PRE_HOPPER = ["tu102", "ga100", "ga102", "ad102"];
const HOPPER_ON = ["gh100", "gb100", "gb202"];

/**
 * hw/regs.ts constants, the header name, the fields to compare, the chips
 * regs.ts says they apply to, and header field names where novamm's differ.
 */
const CHECKED: [string, string, Record<string, Field> | null, string[], Record<string, string>?][] =
  [
    ["NV_PMC_BOOT_0", "NV_PMC_BOOT_0", R.BOOT_0, ALL],
    ["NV_PMC_BOOT_42", "NV_PMC_BOOT_42", R.BOOT_42, ALL],
    ["NV_PBUS_BAR0_WINDOW", "NV_PBUS_BAR0_WINDOW", R.BAR0_WINDOW, PRE_HOPPER],
    ["NV_XAL_EP_BAR0_WINDOW", "NV_XAL_EP_ZB_BAR0_WINDOW", { BASE: R.XAL_BAR0_WINDOW_BASE_GH100 }, [
      "gh100",
    ]],
    ["NV_XAL_EP_BAR0_WINDOW", "NV_XAL_EP_ZB_BAR0_WINDOW", { BASE: R.XAL_BAR0_WINDOW_BASE_GB100 }, [
      "gb100",
      "gb202",
    ]],
    [
      "NV_PFB_PRI_MMU_LOCAL_MEMORY_RANGE",
      "NV_PFB_PRI_MMU_LOCAL_MEMORY_RANGE",
      R.LOCAL_MEMORY_RANGE,
      [
        "tu102",
      ],
    ],
    ["NV_USABLE_FB_SIZE_IN_MB", "NV_USABLE_FB_SIZE_IN_MB", null, ["ga102", "ad102", ...HOPPER_ON]],
    [
      "NV_VIRTUAL_FUNCTION_PRIV_MMU_INVALIDATE_PDB",
      "NV_VIRTUAL_FUNCTION_PRIV_MMU_INVALIDATE_PDB",
      R.MMU_INVALIDATE_PDB,
      ALL,
    ],
    [
      "NV_VIRTUAL_FUNCTION_PRIV_MMU_INVALIDATE_UPPER_PDB",
      "NV_VIRTUAL_FUNCTION_PRIV_MMU_INVALIDATE_UPPER_PDB",
      R.MMU_INVALIDATE_UPPER_PDB,
      ALL,
    ],
    [
      "NV_VIRTUAL_FUNCTION_PRIV_MMU_INVALIDATE",
      "NV_VIRTUAL_FUNCTION_PRIV_MMU_INVALIDATE",
      R.MMU_INVALIDATE,
      ALL,
    ],
    ["NV_PBUS_BAR1_BLOCK", "NV_PBUS_BAR1_BLOCK", R.BAR1_BLOCK, PRE_HOPPER],
    [
      "NV_VIRTUAL_FUNCTION_PRIV_FUNC_BAR1_BLOCK_LOW_ADDR",
      "NV_VIRTUAL_FUNCTION_PRIV_FUNC_BAR1_BLOCK_LOW_ADDR",
      R.BAR1_BLOCK_LOW,
      HOPPER_ON,
      { PENDING: "BAR1_PENDING", OUTSTANDING: "BAR1_OUTSTANDING" },
    ],
    [
      "NV_VIRTUAL_FUNCTION_PRIV_FUNC_BAR1_BLOCK_HIGH_ADDR",
      "NV_VIRTUAL_FUNCTION_PRIV_FUNC_BAR1_BLOCK_HIGH_ADDR",
      null,
      HOPPER_ON,
    ],
    [
      "NV_PGC6_AON_SECURE_SCRATCH_GROUP_05_PRIV_LEVEL_MASK",
      "NV_PGC6_AON_SECURE_SCRATCH_GROUP_05_PRIV_LEVEL_MASK",
      R.SCRATCH_GROUP_05_PLM,
      PRE_HOPPER,
    ],
    [
      "NV_PGC6_AON_SECURE_SCRATCH_GROUP_05_0_GFW_BOOT",
      "NV_PGC6_AON_SECURE_SCRATCH_GROUP_05_0_GFW_BOOT",
      R.GFW_BOOT,
      PRE_HOPPER,
    ],
    [
      "NV_THERM_I2CS_SCRATCH_FSP_BOOT_COMPLETE",
      "NV_THERM_I2CS_SCRATCH_FSP_BOOT_COMPLETE",
      null,
      ["gh100", "gb100"],
    ],
    [
      "NV_THERM_I2CS_SCRATCH_FSP_BOOT_COMPLETE_GB20X",
      "NV_THERM_I2CS_SCRATCH_FSP_BOOT_COMPLETE",
      null,
      ["gb202"],
    ],
    [
      "NV_PDISP_VGA_WORKSPACE_BASE",
      "NV_PDISP_VGA_WORKSPACE_BASE",
      R.VGA_WORKSPACE_BASE,
      ["tu102", "ga102", "ad102", "gb202"],
      { STATUS_VALID: "STATUS" },
    ],
    ["NV_PFB_PRI_MMU_WPR2_ADDR_LO", "NV_PFB_PRI_MMU_WPR2_ADDR_LO", R.ADDR_VAL_4K, [
      ...PRE_HOPPER,
      "gh100",
    ]],
    ["NV_PFB_PRI_MMU_WPR2_ADDR_HI", "NV_PFB_PRI_MMU_WPR2_ADDR_HI", R.ADDR_VAL_4K, [
      ...PRE_HOPPER,
      "gh100",
    ]],
    [
      "NV_PFB_PRI_MMU_LOCK_CFG_PRIV_LEVEL_MASK",
      "NV_PFB_PRI_MMU_LOCK_CFG_PRIV_LEVEL_MASK",
      null,
      ["ga100", "ga102", "ad102", "gh100"],
    ],
    ["NV_PFB_PRI_MMU_LOCK_ADDR_LO", "NV_PFB_PRI_MMU_LOCK_ADDR_LO", R.ADDR_VAL_4K, [
      "ga100",
      "ga102",
      "ad102",
      "gh100",
    ]],
    ["NV_PFB_PRI_MMU_LOCK_ADDR_HI", "NV_PFB_PRI_MMU_LOCK_ADDR_HI", R.ADDR_VAL_4K, [
      "ga100",
      "ga102",
      "ad102",
      "gh100",
    ]],
    [
      "NV_VIRTUAL_FUNCTION_PRIV_BAR1_BLOCK",
      "NV_VIRTUAL_FUNCTION_PRIV_BAR1_BLOCK",
      R.BAR1_BLOCK,
      PRE_HOPPER,
    ],
    [
      "NV_VIRTUAL_FUNCTION_PRIV_BIND_STATUS",
      "NV_VIRTUAL_FUNCTION_PRIV_BIND_STATUS",
      R.BIND_STATUS,
      PRE_HOPPER,
    ],
    ["NV_PBUS_BIND_STATUS", "NV_PBUS_BIND_STATUS", R.BIND_STATUS, PRE_HOPPER],
    ["NV_UFLUSH_FB_FLUSH", "NV_UFLUSH_FB_FLUSH", R.UFLUSH_FB_FLUSH, PRE_HOPPER],
    [
      "NV_XAL_EP_ZB_UFLUSH_FB_FLUSH",
      "NV_XAL_EP_ZB_UFLUSH_FB_FLUSH",
      { TOKEN: R.XAL_FB_FLUSH.TOKEN },
      HOPPER_ON,
    ],
    [
      "NV_XAL_EP_ZB_UFLUSH_FB_FLUSH_COMPLETED",
      "NV_XAL_EP_ZB_UFLUSH_FB_FLUSH_COMPLETED",
      R.XAL_FB_FLUSH,
      HOPPER_ON,
    ],
    [
      "NV_FUSE_STATUS_OPT_DISPLAY_TU102",
      "NV_FUSE_STATUS_OPT_DISPLAY",
      R.FUSE_STATUS_OPT_DISPLAY,
      ["tu102"],
    ],
    [
      "NV_FUSE_STATUS_OPT_DISPLAY_GA100",
      "NV_FUSE_STATUS_OPT_DISPLAY",
      R.FUSE_STATUS_OPT_DISPLAY,
      ["ga100", "ga102", "ad102", ...HOPPER_ON],
    ],
    ["NV_HUBMMU_PRI_MMU_WPR2_ADDR_LO", "NV_HUBMMU_PRI_MMU_WPR2_ADDR_LO", R.ADDR_VAL_4K, [
      "gb100",
      "gb202",
    ]],
    ["NV_HUBMMU_PRI_MMU_WPR2_ADDR_HI", "NV_HUBMMU_PRI_MMU_WPR2_ADDR_HI", R.ADDR_VAL_4K, [
      "gb100",
      "gb202",
    ]],
  ];

/** Registers hw/regs.ts uses that no header NVIDIA publishes defines, with why. */
const IN_NO_HEADER: Record<string, string> = {
  MEM_CLEAR_STATUS: "gpu-admin-tools' post-reset memory-clear poll (0x100B20); facts §14.2",
  MEM_CLEAR_STATUS_GB: "the same on Blackwell (0x8A004C); facts §14.2",
};

/**
 * `chip:register` (or `chip:register.FIELD`) pairs where the database has no
 * such register (or field) although regs.ts uses it there, with the reason.
 */
const NOT_IN_HEADERS: Record<string, string> = {
  "tu102:NV_PFB_PRI_MMU_LOCAL_MEMORY_RANGE":
    "published only in pascal/gp102 and blackwell/gb100 dev_fb.h (nova-core regs.rs gives the Turing offset)",
  "gh100:NV_USABLE_FB_SIZE_IN_MB": "published in ampere/ga102 dev_gc6_island_addendum.h only",
  "gb100:NV_USABLE_FB_SIZE_IN_MB": "published in ampere/ga102 dev_gc6_island_addendum.h only",
  "gb202:NV_USABLE_FB_SIZE_IN_MB": "published in ampere/ga102 dev_gc6_island_addendum.h only",
  "gh100:NV_VIRTUAL_FUNCTION_PRIV_MMU_INVALIDATE_PDB":
    "gh100 dev_vm.h publishes no TLB invalidate registers (gb100's has them at these offsets)",
  "gh100:NV_VIRTUAL_FUNCTION_PRIV_MMU_INVALIDATE_UPPER_PDB": "as above",
  "gh100:NV_VIRTUAL_FUNCTION_PRIV_MMU_INVALIDATE": "as above",
  "tu102:NV_VIRTUAL_FUNCTION_PRIV_MMU_INVALIDATE.INVAL_SCOPE":
    "INVAL_SCOPE came with GA100; novamm sets it from GA100 on only",
  "tu102:NV_UFLUSH_FB_FLUSH.FLUSH": "maxwell/gm107 dev_flush.h defines the register without fields",
  "tu102:NV_UFLUSH_FB_FLUSH.PENDING": "as above",
  "ga100:NV_UFLUSH_FB_FLUSH.FLUSH": "as above",
  "ga100:NV_UFLUSH_FB_FLUSH.PENDING": "as above",
  "ga102:NV_UFLUSH_FB_FLUSH.FLUSH": "as above",
  "ga102:NV_UFLUSH_FB_FLUSH.PENDING": "as above",
  "ad102:NV_UFLUSH_FB_FLUSH.FLUSH": "as above",
  "ad102:NV_UFLUSH_FB_FLUSH.PENDING": "as above",
  "tu102:NV_FUSE_STATUS_OPT_DISPLAY":
    "Turing's is only in maxwell/gm107 dev_fuse.h, outside Turing's chain (RM kern_gpu_ga100.c)",
  "gh100:NV_FUSE_STATUS_OPT_DISPLAY": "no Hopper/Blackwell header publishes it",
  "gb100:NV_FUSE_STATUS_OPT_DISPLAY": "no Hopper/Blackwell header publishes it",
  "gb202:NV_FUSE_STATUS_OPT_DISPLAY": "no Hopper/Blackwell header publishes it",
};

/** Fields whose position differs between the database and regs.ts, with why. */
const FIELD_DIFFERS: Record<string, string> = {
  "NV_PMC_BOOT_42.ARCHITECTURE":
    "OGD tu104 dev_master.ref.txt (ahead of nv_ref.h in TU10x..AD10x's chain) gives 28:24; " +
    "OGKM nv_ref.h, which regs.ts and RM follow, gives 29:24 (bit 29 is 0 on every chip so far)",
  "NV_PMC_BOOT_42.CHIP_ID": "as ARCHITECTURE: 28:20 in OGD's manual, 29:20 in nv_ref.h",
};

Deno.test("regdb: hw/regs.ts offsets and field positions agree with NVIDIA's headers", async () => {
  const seenExceptions = new Set<string>();
  const regsTs = R as unknown as Record<string, unknown>;
  for (const [constName, dbName, fields, chips, renames] of CHECKED) {
    const offset = regsTs[constName];
    assert.equal(typeof offset, "number", constName);
    for (const chip of chips) {
      const db = await loadRegisterDb(chip);
      const r = db.byName.get(dbName);
      const key = `${chip}:${dbName}`;
      if (r === undefined) {
        assert.ok(
          key in NOT_IN_HEADERS,
          `${key}: not in the database and not listed as an exception`,
        );
        seenExceptions.add(key);
        continue;
      }
      assert.equal(r.offset, offset, `${key}: regs.ts ${constName} vs ${r.file}`);
      for (const [name, f] of Object.entries(fields ?? {})) {
        const hname = renames?.[name] ?? name;
        const df = r.fields.find((x) => x.name === hname);
        const fkey = `${key}.${name}`;
        if (df === undefined) {
          assert.ok(fkey in NOT_IN_HEADERS, `${fkey}: no such field in ${r.file}`);
          seenExceptions.add(fkey);
          continue;
        }
        if (df.hi !== f.hi || df.lo !== f.lo) {
          const why = `${dbName}.${name}`;
          assert.ok(
            why in FIELD_DIFFERS,
            `${fkey}: regs.ts ${f.hi}:${f.lo}, ${r.file} ${df.hi}:${df.lo}`,
          );
          seenExceptions.add(why);
        }
      }
    }
  }
  // Every listed exception is still needed (a header update may fix one).
  for (const k of [...Object.keys(NOT_IN_HEADERS), ...Object.keys(FIELD_DIFFERS)]) {
    assert.ok(seenExceptions.has(k), `exception ${k} is no longer needed`);
  }
  // The registers in no header are in no chip's database at their offsets.
  for (const name of Object.keys(IN_NO_HEADER)) {
    const offset = regsTs[name] as number;
    for (const chip of ALL) {
      assert.deepEqual(lookup(await loadRegisterDb(chip), offset), [], `${chip} ${name}`);
    }
  }
});
