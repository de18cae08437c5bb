/**
 * The simulator against NVIDIA's per-chip HALs (facts §14): FB flush per
 * family, the instance-block checks of the bind, the CONFLICT knobs, WPR2 and
 * the MMU lock, display, firmware-owned and unscrubbed VRAM, the memory clear
 * and the invalidate word. Everything here drives the simulator through its
 * raw BARs (`createSimGpu(...).bar0/.bar1`), never through `mm/`.
 */

import assert from "node:assert/strict";
import {
  BAR1_SYSMEM,
  createSimGpu,
  DEFAULT_SIM_CONFLICTS,
  FIRMWARE_VRAM_READ,
  GH100_SCRUBBED_TOP,
  GPU_LOST,
  PRI_ERROR,
  SIM_CONFLICTS,
  type SimConflicts,
  type SimGpu,
  VRAM_SEEDS,
  XAL_FIRST_TOKEN,
} from "../hw/sim/gpu.ts";
import { GFW_BOOT_MS, MEM_CLEAR_MS, SIM_PROFILES, SIM_STATES } from "../hw/sim/profiles.ts";
import { formatSimSpec, parseSimSpec } from "../hw/sim/spec.ts";
import { backgroundWord, SparseMemory } from "../hw/sim/vram.ts";
import { decodeChip } from "../hw/chip.ts";
import { isPriError } from "../hw/regs.ts";
import { throwsNova } from "./util.ts";

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;

// Register offsets written out from the facts file (§13, §14), not imported, so a
// wrong constant in hw/regs.ts would show here.
const R = {
  window2: 0x1700,
  window3: 0x10fd40,
  pramin: 0x700000,
  pbusBar1: 0x1704,
  pbusBindStatus: 0x1710,
  vfBar1: 0xb80f40,
  vfBindStatus: 0xb80f50,
  low: 0xb80f60,
  high: 0xb80f64,
  uflush: 0x70000,
  xalFlush: 0x10f800,
  xalCompleted: 0x10f804,
  invPdb: 0xb830a0,
  invUpper: 0xb830a4,
  inv: 0xb830b0,
  wpr2Lo: 0x1fa824,
  wpr2Hi: 0x1fa828,
  wpr2LoGb: 0x88a824,
  wpr2HiGb: 0x88a828,
  lockPlm: 0x1fa7c8,
  lockLo: 0x1fa82c,
  lockHi: 0x1fa830,
  fuseTu: 0x21c04,
  fuseGa: 0x820c04,
  vgaWorkspace: 0x625f04,
  memClear: 0x100b20,
  memClearGb: 0x8a004c,
} as const;

/** Raw access to one simulated card through its BARs. */
class Card {
  readonly sim: SimGpu;
  readonly v3: boolean;
  constructor(profile: string, state?: (typeof SIM_STATES)[number], c?: Partial<SimConflicts>) {
    this.sim = createSimGpu({ profile, state, conflicts: c });
    this.v3 = this.sim.profile.mmuVersion === 3;
  }
  rd(off: number): number {
    return this.sim.bar0.read32(off);
  }
  wr(off: number, v: number): void {
    this.sim.bar0.write32(off, v >>> 0);
  }
  /** Moves the PRAMIN window to the 64 KiB block holding `addr`; returns the BAR0 offset of addr. */
  at(addr: number): number {
    this.wr(this.v3 ? R.window3 : R.window2, Math.floor(addr / 65536));
    return R.pramin + (addr % 65536);
  }
  w32(addr: number, v: number): void {
    this.wr(this.at(addr), v);
  }
  r32(addr: number): number {
    return this.rd(this.at(addr));
  }
  /** Writes whole words through the PRAMIN bulk path (inside one 1 MiB aperture). */
  words(addr: number, words: Uint32Array): void {
    this.sim.bar0.writeWords!(this.at(addr), words);
  }
  /** A whole 4 KiB page: zeros with `entries` (word index → value) set. */
  page(addr: number, entries: Record<number, number> = {}): void {
    const p = new Uint32Array(1024);
    for (const [i, v] of Object.entries(entries)) p[Number(i)] = v >>> 0;
    this.words(addr, p);
  }
  /** The FB flush this chip's CPU has (facts §14.1); returns the polls it took. */
  flush(): number {
    let polls = 0;
    if (this.sim.profile.fbFlush === "uflush") {
      this.wr(R.uflush, 1);
      while (this.rd(R.uflush) & 2) polls++;
    } else if (this.sim.profile.fbFlush === "xal") {
      const start = this.rd(R.xalFlush);
      for (;;) {
        const c = this.rd(R.xalCompleted);
        polls++;
        if ((c >>> 31) === 0 || ((start - c) & 0x7fffffff) > 16) break;
      }
    } else {
      throw new Error("no CPU-side FB flush on this chip");
    }
    return polls;
  }
  bindStatus(): number {
    return this.v3 ? this.rd(R.low) & 3 : this.rd(R.vfBindStatus) & 3;
  }
  waitBind(): void {
    for (let i = 0; i < 10 && this.bindStatus() !== 0; i++);
    assert.equal(this.bindStatus(), 0, "bind completes");
  }
  /** Binds BAR1 to `inst` as RM does (v2: the VF register; v3: LOW then HIGH). */
  bind(inst: number, via: number = R.vfBar1): void {
    if (this.v3) {
      this.wr(R.low, ((inst % 2 ** 32) & 0xfffff000) | (1 << 9));
      this.wr(R.high, Math.floor(inst / 2 ** 32));
    } else {
      this.wr(via, 0x80000000 | (inst / 4096));
    }
    this.waitBind();
  }
  /** Back to physical: v2 writes both registers, v3 LOW then HIGH (what §14.1 advises). */
  physical(): void {
    if (this.v3) {
      this.wr(R.low, 0);
      this.wr(R.high, 0);
    } else {
      this.wr(R.pbusBar1, 0);
      this.wr(R.vfBar1, 0);
    }
    this.waitBind();
  }
  invalidate(value = 0x80000005): void {
    this.wr(R.invPdb, 0);
    this.wr(R.inv, value);
    while (this.rd(R.inv) >>> 31);
  }
  pdbWord(root: number, bit10 = this.v3 ? 0 : 1): number {
    return ((root % 2 ** 32) & 0xfffff000 | (1 << 11) | (bit10 << 10)) >>> 0;
  }
  /**
   * Instance block at `base`, tables from base + 4 KiB, VA 0 → `pa` (4 KiB page),
   * every page written whole. `ib` patches instance-block words.
   */
  tables(base: number, pa: number, ib: Record<number, number> = {}, bit10?: number): number {
    const root = base + 0x1000;
    const levels = this.v3 ? 5 : 4; // directory levels, PD0 last
    for (let i = 0; i < levels; i++) {
      const t = root + i * 0x1000;
      const next = t + 0x1000;
      const last = i === levels - 1;
      const pde = this.v3 ? (next | 2) : ((next / 4096) << 8 | 2);
      // PD0 is dual: the small half in the high 8 bytes.
      this.page(t, last ? { 2: pde } : { 0: pde });
    }
    const pt = root + levels * 0x1000;
    this.page(pt, { 0: this.v3 ? (pa | 1) : ((pa / 4096) << 8 | 1) });
    this.page(base, {
      [0x200 / 4]: this.pdbWord(root, bit10),
      [0x204 / 4]: Math.floor(root / 2 ** 32),
      ...ib,
    });
    return root;
  }
}

function kinds(sim: SimGpu): string[] {
  return sim.errors().map((e) => e.kind);
}

const PROFILE_NAMES = Object.keys(SIM_PROFILES);
const BASE = 0x400000; // 4 MiB: usable VRAM on every profile and state

// --- 1. profiles -------------------------------------------------------------------

Deno.test("profiles: display, MMU lock and FB flush per chip (facts §14.1); GB100", () => {
  const want: Record<string, [boolean, boolean, string]> = {
    tu102: [true, false, "uflush"],
    ga100: [false, true, "uflush"],
    ga102: [true, false, "uflush"],
    ad102: [true, false, "uflush"],
    gh100: [false, false, "xal"],
    gb100: [false, false, "gsp"],
    gb202: [true, false, "xal"],
  };
  for (const [name, [display, lock, flush]] of Object.entries(want)) {
    const p = SIM_PROFILES[name];
    assert.deepEqual([p.display, p.mmuLock, p.fbFlush], [display, lock, flush], name);
  }
  const gb = SIM_PROFILES.gb100;
  assert.deepEqual(
    [gb.chipId, gb.architecture, gb.mmuVersion, gb.vramSize, gb.bar1Size, gb.vramSizeRegister],
    [0x1a0, "Blackwell", 3, 192 * GiB, 256 * GiB, "usableFbSizeInMb"],
  );
  const c = new Card("gb100");
  const chip = decodeChip(c.rd(0), c.rd(0xa00));
  assert.equal(chip.name, "GB100");
  assert.equal(c.rd(0x1183a4), 192 * 1024, "NV_USABLE_FB_SIZE_IN_MB");
  assert.equal(c.rd(0x200bc), 0xff, "FSP boot complete (GB100 uses the GH100 register)");
  assert.deepEqual(kinds(c.sim), []);
});

// --- 2. FB flush ---------------------------------------------------------------------

Deno.test("FB flush: 0x70000 only on Turing/Ampere/Ada; elsewhere a PRI error", () => {
  for (const name of PROFILE_NAMES) {
    const c = new Card(name);
    const has = c.sim.profile.fbFlush === "uflush";
    c.w32(BASE, 0x1234);
    assert.equal(c.sim.posted.pendingChunks, 1);
    c.wr(R.uflush, 1);
    const v = c.rd(R.uflush);
    if (has) {
      assert.equal(v & 2, 2, `${name}: pending after the write`);
      assert.equal(c.rd(R.uflush), 0);
      assert.equal(c.sim.fbFlushes, 1);
      assert.equal(c.sim.posted.pendingChunks, 0);
      assert.deepEqual(kinds(c.sim), []);
    } else {
      assert.equal(v, PRI_ERROR, name);
      assert.deepEqual(kinds(c.sim), ["unknown-register", "unknown-register"], name);
      assert.equal(c.sim.fbFlushes, 0);
      assert.equal(c.sim.posted.pendingChunks, 1, `${name}: nothing flushed`);
    }
  }
});

Deno.test("FB flush on GH100/GB20x: a read of 0x10F800 injects it, 0x10F804 reports the token", () => {
  for (const name of ["gh100", "gb202"]) {
    const c = new Card(name);
    c.sim.knobs.fbFlushLatencyReads = 2;
    const first = c.rd(R.xalCompleted);
    assert.equal(first, XAL_FIRST_TOKEN, "idle: the last completed token, STATUS 0");
    assert.notEqual(first, 0);
    c.w32(BASE, 0xabcd);
    const start = c.rd(R.xalFlush);
    assert.equal(start, (first + 1) & 0x7fffffff);
    const polls = [1, 2, 3].map(() => c.rd(R.xalCompleted));
    const busy = (0x80000000 | first) >>> 0;
    assert.deepEqual(
      polls,
      [busy, busy, start],
      `${name}: busy with the previous token, then done`,
    );
    assert.equal(c.sim.fbFlushes, 1);
    assert.equal(c.sim.posted.pendingChunks, 0);
    assert.equal(c.rd(R.xalCompleted), start, "stays done");
    // Tokens count modulo 2^31: the eighth flush from the first token wraps to 0.
    c.sim.knobs.fbFlushLatencyReads = 0;
    const tokens: number[] = [start];
    for (let i = 0; i < 8; i++) {
      tokens.push(c.rd(R.xalFlush));
      assert.equal(c.rd(R.xalCompleted), tokens.at(-1));
    }
    assert.ok(tokens.includes(0) && tokens.every((t) => t <= 0x7fffffff), tokens.join(","));
    // Writes are ignored and logged (R--4R).
    c.wr(R.xalFlush, 1);
    c.wr(R.xalCompleted, 0);
    assert.deepEqual(kinds(c.sim), ["read-only-register", "read-only-register"]);
    assert.equal(c.sim.fbFlushes, 9, "a write started nothing");
    // fbFlushHang: busy forever, nothing drains.
    c.sim.knobs.fbFlushHang = true;
    c.w32(BASE, 1);
    const t = c.rd(R.xalFlush);
    for (let i = 0; i < 5; i++) assert.equal(c.rd(R.xalCompleted) >>> 31, 1);
    assert.equal(c.sim.posted.pendingChunks, 1);
    c.sim.knobs.fbFlushHang = false;
    assert.equal(c.rd(R.xalCompleted), t);
    assert.equal(c.sim.posted.pendingChunks, 0);
  }
});

Deno.test("FB flush on GB10x: no CPU-side register at all (a GSP call)", () => {
  const c = new Card("gb100");
  for (const off of [R.uflush, R.xalFlush, R.xalCompleted]) assert.equal(c.rd(off), PRI_ERROR);
  assert.deepEqual(kinds(c.sim), ["unknown-register", "unknown-register", "unknown-register"]);
  assert.equal(c.sim.fbFlushes, 0);
});

// --- 3. the bind's instance-block checks; no ADR_LIMIT ------------------------------

Deno.test("bind: the GPU fetches the instance block through posted writes; no ADR_LIMIT check", () => {
  for (const name of ["ga102", "gh100", "tu102", "gb202"]) {
    const c = new Card(name);
    const pa = BASE + 0x20000;
    c.tables(BASE, pa); // ADR_LIMIT words stay 0: no source says BAR1 accesses are checked
    c.bind(BASE);
    assert.equal(c.sim.bar1Mode, "virtual");
    assert.equal(c.sim.bar1Pdb(), null, `${name}: unflushed, the GPU saw garbage`);
    assert.ok(kinds(c.sim).includes("bad-instance-block"));
    c.physical();
    c.flush();
    c.sim.log.length = 0;
    c.bind(BASE);
    assert.equal(c.sim.bar1Pdb(), BASE + 0x1000, name);
    c.sim.bar1.write32(0xffc, 0x600dcafe);
    assert.equal(c.r32(pa + 0xffc), 0x600dcafe);
    assert.equal(c.sim.bar1.read32(0xffc), 0x600dcafe);
    assert.deepEqual(kinds(c.sim), [], name);
    assert.equal(c.sim.lost, null);
    // Any fault in virtual mode still loses the GPU.
    c.sim.bar1.read32(0x1000);
    assert.match(c.sim.lost!, /faulted \(invalid-pte\)/);
    assert.equal(c.rd(0), GPU_LOST);
  }
});

Deno.test("bind: instance-block checks (TARGET, big pages, bit 10, ENABLE_ATS, subcontexts)", () => {
  const cases: {
    name: string;
    profile: string;
    ok: boolean;
    c?: Partial<SimConflicts>;
    bit10?: number;
    ib?: (root: number, word: number) => Record<number, number>;
    why?: RegExp;
  }[] = [
    { name: "v2 bit 10 clear", profile: "ga102", ok: false, bit10: 0, why: /bit 10/ },
    { name: "v2 bit 10 set", profile: "ad102", ok: true, bit10: 1 },
    { name: "v3 bit 10 = 0 (ignored)", profile: "gh100", ok: true, bit10: 0 },
    { name: "v3 bit 10 = 1 (ignored)", profile: "gh100", ok: true, bit10: 1 },
    {
      name: "v3 bit 10 = 1 (rm)",
      profile: "gb202",
      ok: false,
      bit10: 1,
      c: { v3bit10: "rm" },
      why: /v3bit10=rm/,
    },
    { name: "v3 bit 10 = 0 (rm)", profile: "gb202", ok: true, bit10: 0, c: { v3bit10: "rm" } },
    {
      name: "PDB target sysmem",
      profile: "ga102",
      ok: false,
      ib: (_, w) => ({ [0x200 / 4]: w | 2 }),
      why: /TARGET 2/,
    },
    {
      name: "128 KiB big pages",
      profile: "gh100",
      ok: false,
      ib: (_, w) => ({ [0x200 / 4]: w & ~(1 << 11) }),
      why: /128 KiB/,
    },
    {
      name: "ENABLE_ATS",
      profile: "ga102",
      ok: false,
      ib: () => ({ [0x21c / 4]: 0x80000000 }),
      why: /ENABLE_ATS/,
    },
    { name: "PASID alone", profile: "ga102", ok: true, ib: () => ({ [0x21c / 4]: 0x12 }) },
    {
      name: "subcontext 0 valid, copy right (nouveau)",
      profile: "ga102",
      ok: true,
      ib: (root, w) => ({
        [0x298 / 4]: 1,
        [0x2a0 / 4]: w,
        [0x2a4 / 4]: Math.floor(root / 2 ** 32),
      }),
    },
    {
      name: "subcontext 1 valid, copy invalid",
      profile: "gh100",
      ok: false,
      ib: (_root, w) => ({ [0x298 / 4]: 3, [0x2a0 / 4]: w, [0x2b0 / 4]: 1, [0x2b4 / 4]: 1 }),
      why: /subcontext/,
    },
    {
      name: "subcontext 40 valid (high mask word), copy missing",
      profile: "tu102",
      ok: false,
      ib: () => ({ [0x29c / 4]: 1 << 8 }),
      why: /1 subcontext whose PDB copy differs/,
    },
  ];
  for (const t of cases) {
    const c = new Card(t.profile, "bare", t.c);
    const root = c.tables(BASE, BASE + 0x20000, {}, t.bit10);
    if (t.ib) {
      const w = c.pdbWord(root, t.bit10);
      for (const [i, v] of Object.entries(t.ib(root, w))) c.w32(BASE + Number(i) * 4, v);
    }
    c.flush();
    c.bind(BASE);
    assert.equal(c.sim.bar1Pdb(), t.ok ? root : null, t.name);
    if (!t.ok) {
      const e = c.sim.errors().find((x) => x.kind === "bad-instance-block");
      assert.ok(e, t.name);
      assert.match(e.message, t.why!, t.name);
    } else {
      assert.deepEqual(kinds(c.sim), [], t.name);
    }
  }
});

Deno.test("bind: an instance block written only where the PDB is reads a garbage valid mask", () => {
  for (const name of ["ga102", "gh100"]) {
    const c = new Card(name);
    const root = c.tables(BASE, BASE + 0x20000);
    // A second instance block of which only the PDB words were written (unscrubbed VRAM).
    const inst = BASE + 0x80000;
    c.w32(inst + 0x200, c.pdbWord(root));
    c.w32(inst + 0x204, 0);
    c.flush();
    c.bind(inst);
    assert.equal(c.sim.bar1Pdb(), null, name);
    assert.match(c.sim.errors().at(-1)!.message, /valid mask .* subcontext/);
  }
});

// --- 4. CONFLICT knobs and the device spec -------------------------------------------

Deno.test("spec: parse and format sim[:PROFILE[:STATE]][?key=value&...]", () => {
  assert.deepEqual(parseSimSpec("sim"), {});
  assert.deepEqual(parseSimSpec("sim:gh100:gsp?lowbind=high&v3bit10=rm"), {
    profile: "gh100",
    state: "gsp",
    conflicts: { lowbind: "high", v3bit10: "rm" },
  });
  assert.deepEqual(parseSimSpec("sim?bar1alias=separate"), {
    conflicts: { bar1alias: "separate" },
  });
  assert.equal(parseSimSpec("0000:65:00.0"), null);
  assert.equal(parseSimSpec("simulator"), null);
  assert.equal(parseSimSpec("gh100"), null);
  throwsNova(
    () => parseSimSpec("sim?lowbnd=high"),
    "ENODEV",
    "lowbnd",
    "bar1alias=shared|separate",
  );
  throwsNova(() => parseSimSpec("sim:gh100?lowbind=later"), "ENODEV", "immediate, high");
  throwsNova(() => parseSimSpec("sim:gh100?lowbind"), "ENODEV", "no value");
  throwsNova(() => parseSimSpec("sim?bar1alias=shared&bar1alias=separate"), "ENODEV", "twice");
  throwsNova(() => parseSimSpec("sim?"), "ENODEV");
  // A knob of the other MMU version is refused when the card is made.
  throwsNova(
    () => createSimGpu({ profile: "ga102", conflicts: { lowbind: "high" } }),
    "ENODEV",
    "MMU v3",
    "GA102",
  );
  throwsNova(
    () => createSimGpu({ profile: "gh100", conflicts: { bar1alias: "shared" } }),
    "ENODEV",
    "MMU v2",
  );
  throwsNova(
    () => createSimGpu({ conflicts: { bar1alias: "both" as SimConflicts["bar1alias"] } }),
    "ENODEV",
    "shared, separate",
  );

  assert.equal(formatSimSpec("ga102", "bare", {}), "sim:ga102");
  assert.equal(formatSimSpec(undefined, undefined), "sim:ga102");
  assert.equal(
    formatSimSpec("gh100", "gsp", { v3bit10: "rm", lowbind: "high" }),
    "sim:gh100:gsp?lowbind=high&v3bit10=rm",
  );
  assert.equal(formatSimSpec("gh100", "gsp", DEFAULT_SIM_CONFLICTS), "sim:gh100:gsp");
  const s = createSimGpu({ profile: "gb202", state: "unloaded", conflicts: { lowbind: "high" } });
  assert.equal(s.spec, "sim:gb202:unloaded?lowbind=high");
  assert.deepEqual(s.conflicts, { ...DEFAULT_SIM_CONFLICTS, lowbind: "high" });
  assert.ok(Object.isFrozen(s.conflicts), "chosen at creation");
  const round = parseSimSpec(s.spec)!;
  assert.equal(formatSimSpec(round.profile, round.state, round.conflicts), s.spec);
  assert.deepEqual(SIM_CONFLICTS.bar1alias[0], DEFAULT_SIM_CONFLICTS.bar1alias);
});

Deno.test("bar1alias=shared: 0x1704 and 0xB80F40 are one register", () => {
  const c = new Card("ga102", "bare", { bar1alias: "shared" });
  const root = c.tables(BASE, BASE + 0x20000);
  c.flush();
  c.bind(BASE, R.pbusBar1); // binding through 0x1704 works too
  assert.equal(c.sim.bar1Pdb(), root);
  const v = (0x80000000 | (BASE / 4096)) >>> 0;
  assert.deepEqual([c.rd(R.pbusBar1), c.rd(R.vfBar1)], [v, v]);
  c.wr(R.vfBar1, 0); // physical through the other offset
  assert.equal(c.rd(R.vfBindStatus) & 3, 3, "status in 0xB80F50");
  c.waitBind();
  assert.deepEqual([c.rd(R.pbusBar1), c.rd(R.vfBar1), c.sim.bar1Mode], [0, 0, "physical"]);
  assert.deepEqual(kinds(c.sim), []);
});

Deno.test("bar1alias=separate: two registers; virtual if either is, the VF one wins", () => {
  const c = new Card("ad102", "bare", { bar1alias: "separate" });
  const root = c.tables(BASE, BASE + 0x20000);
  const other = BASE + 0x100000;
  const root2 = c.tables(other, BASE + 0x30000);
  c.flush();
  c.bind(BASE, R.vfBar1);
  assert.deepEqual([c.rd(R.pbusBar1), c.sim.bar1Pdb()], [0, root]);
  c.bind(other, R.pbusBar1); // both virtual: the VF one wins
  assert.equal(c.sim.bar1Pdb(), root);
  c.wr(R.vfBar1, 0);
  assert.equal(c.rd(R.vfBindStatus) & 3, 3, "any write re-evaluates and starts a bind");
  c.waitBind();
  assert.deepEqual([c.sim.bar1Mode, c.sim.bar1Pdb()], ["virtual", root2], "0x1704 still virtual");
  c.wr(R.pbusBar1, 0);
  c.waitBind();
  assert.equal(c.sim.bar1Mode, "physical", "physical only when both say so");
  assert.deepEqual(kinds(c.sim), []);
});

Deno.test("CONFLICT: a driver that goes physical through one register only fails under one candidate", () => {
  // RM's own unload writes only 0x1704 (kbusTeardownMailbox_GM107): physical under "shared",
  // still virtual under "separate" (GSP-RM bound through the VF register).
  const result: Record<string, string> = {};
  for (const alias of SIM_CONFLICTS.bar1alias) {
    const c = new Card("ga102", "gsp", { bar1alias: alias });
    c.wr(R.pbusBar1, 0);
    c.waitBind();
    result[alias] = c.sim.bar1Mode;
  }
  assert.deepEqual(result, { shared: "physical", separate: "virtual" });
  const low: Record<string, string> = {};
  // A Hopper driver that writes only LOW to go physical: fine under "immediate", not under "high".
  for (const lowbind of SIM_CONFLICTS.lowbind) {
    const c = new Card("gh100", "gsp", { lowbind });
    c.wr(R.low, 0);
    low[lowbind] = c.sim.bar1Mode;
  }
  assert.deepEqual(low, { immediate: "physical", high: "virtual" });
});

Deno.test("lowbind: immediate = a physical LOW write binds at once; high = only HIGH binds", () => {
  for (const lowbind of SIM_CONFLICTS.lowbind) {
    const c = new Card("gb202", "bare", { lowbind });
    const root = c.tables(BASE, BASE + 0x20000);
    c.flush();
    // LOW with MODE virtual only stores, under both.
    c.wr(R.low, BASE | (1 << 9));
    assert.deepEqual([c.sim.bar1Mode, c.rd(R.low) & 3], ["physical", 0], lowbind);
    c.wr(R.high, 0); // HIGH binds with LOW's MODE/TARGET/PTR
    c.waitBind();
    assert.equal(c.sim.bar1Pdb(), root, lowbind);
    c.wr(R.low, 0); // MODE physical
    if (lowbind === "immediate") {
      assert.equal(c.sim.bar1Mode, "physical");
      assert.equal(c.rd(R.low) & 3, 3, "bind status pending as for a bind");
      c.waitBind();
    } else {
      assert.deepEqual([c.sim.bar1Mode, c.rd(R.low) & 3], ["virtual", 0]);
      c.wr(R.high, 0);
      c.waitBind();
      assert.equal(c.sim.bar1Mode, "physical");
    }
    assert.deepEqual(kinds(c.sim), [], lowbind);
  }
});

Deno.test("states gsp and unloaded under every knob: bound as RM binds, physical after RM's teardown", () => {
  for (const name of PROFILE_NAMES) {
    const p = SIM_PROFILES[name];
    const keys = (Object.keys(SIM_CONFLICTS) as (keyof SimConflicts)[]).filter((k) =>
      (k === "bar1alias") === (p.mmuVersion === 2)
    );
    const combos: Partial<SimConflicts>[] = [{}];
    for (const k of keys) {
      for (const v of SIM_CONFLICTS[k].slice(1)) {
        for (const base of [...combos]) combos.push({ ...base, [k]: v });
      }
    }
    for (const conflicts of combos) {
      const label = `${name} ${JSON.stringify(conflicts)}`;
      const g = new Card(name, "gsp", conflicts);
      const fw = g.sim.firmware!;
      assert.equal(g.sim.bar1Pdb(), fw.bar1Pdb, label);
      assert.equal(g.sim.bar1.read32(0), fw.mappings[0].pattern, label);
      const inst = fw.instanceBlock;
      if (p.mmuVersion === 2) {
        const vf = (0x80000000 | (inst / 4096)) >>> 0;
        assert.equal(g.rd(R.vfBar1), vf, label);
        assert.equal(g.rd(R.pbusBar1), conflicts.bar1alias === "separate" ? 0 : vf, label);
      } else {
        assert.equal(g.rd(R.low), ((inst % 2 ** 32) | (1 << 9)) >>> 0, label);
        assert.equal(g.rd(R.high), Math.floor(inst / 2 ** 32), label);
      }
      // RM's instance block (bit 10 only on v2, ctxsw magic on Blackwell).
      const word = g.sim.vram.read32(inst + 0x200);
      assert.equal((word >>> 10) & 1, p.mmuVersion === 2 ? 1 : 0, label);
      if (p.architecture === "Blackwell") assert.equal(g.sim.vram.read32(inst + 0x20c), 0xcafeca11);
      assert.deepEqual(kinds(g.sim), [], label);

      const u = new Card(name, "unloaded", conflicts);
      assert.equal(u.sim.bar1Mode, "physical", label);
      assert.equal(u.sim.bar1PhysicalTarget, 0, label);
      // RM's teardown is a read-modify-write: MODE physical, TARGET VID, the pointer kept.
      const mode = p.mmuVersion === 2 ? (u.rd(R.pbusBar1) >>> 31) : ((u.rd(R.low) >>> 9) & 1);
      const target = p.mmuVersion === 2 ? (u.rd(R.pbusBar1) >>> 28) & 3 : (u.rd(R.low) >>> 10) & 3;
      assert.deepEqual([mode, target], [0, 0], label);
      u.sim.bar1.write32(BASE, 0x5a5a5a5a); // physical BAR1 = VRAM by address
      assert.equal(u.r32(BASE), 0x5a5a5a5a, label);
      assert.deepEqual(kinds(u.sim), [], label);
    }
  }
});

// --- 5, 6. bind status, physical TARGET ----------------------------------------------

Deno.test("NV_PBUS_BIND_STATUS 0x1710 does not exist on Turing+; bind status lives in 0xB80F50 / LOW", () => {
  for (const name of PROFILE_NAMES) {
    const c = new Card(name);
    assert.equal(c.rd(R.pbusBindStatus), PRI_ERROR, name);
    const v2 = c.sim.profile.mmuVersion === 2;
    // v2 has 0xB80F50 and no LOW/HIGH; v3 the other way round.
    assert.equal(isPriError(c.rd(R.vfBindStatus)), !v2, name);
    assert.equal(isPriError(c.rd(R.low)), v2, name);
    assert.equal(isPriError(c.rd(R.pbusBar1)), !v2, name);
  }
});

Deno.test("physical BAR1 honours TARGET: sysmem is not simulated, every access an error", () => {
  for (const name of ["ga102", "gh100"]) {
    const c = new Card(name);
    c.w32(0x1000, 0x11223344);
    if (c.v3) {
      c.wr(R.low, 2 << 10); // MODE physical, TARGET 2 (coherent sysmem)
      c.wr(R.high, 0);
    } else {
      c.wr(R.vfBar1, 2 << 28);
    }
    c.waitBind();
    assert.deepEqual([c.sim.bar1Mode, c.sim.bar1PhysicalTarget], ["physical", 2], name);
    assert.equal(c.sim.bar1.read32(0x1000), BAR1_SYSMEM);
    assert.ok(isPriError(BAR1_SYSMEM));
    c.sim.bar1.write32(0x1000, 0);
    assert.equal(c.r32(0x1000), 0x11223344, "the write went nowhere in VRAM");
    assert.deepEqual(kinds(c.sim), ["bar1-sysmem", "bar1-sysmem"], name);
    assert.equal(c.sim.lost, null, "physical mode: no BAR fault");
    // MODE virtual with a non-VID instance block: virtual, nothing valid bound.
    if (c.v3) {
      c.wr(R.low, (1 << 9) | (2 << 10) | BASE);
      c.wr(R.high, 0);
    } else {
      c.wr(R.vfBar1, 0x80000000 | (2 << 28) | (BASE / 4096));
    }
    c.waitBind();
    assert.deepEqual([c.sim.bar1Mode, c.sim.bar1Pdb()], ["virtual", null]);
    c.sim.bar1.read32(0);
    assert.notEqual(c.sim.lost, null);
  }
});

// --- 7. WPR2 and the MMU lock --------------------------------------------------------

Deno.test("WPR2: HI is the exclusive end; Blackwell reports it at both offsets", () => {
  for (const name of PROFILE_NAMES) {
    const c = new Card(name, "gsp");
    const w = c.sim.firmware!.wpr2;
    const lo = c.rd(R.wpr2Lo);
    const hi = c.rd(R.wpr2Hi);
    assert.deepEqual([(lo >>> 4) * 4096, (hi >>> 4) * 4096], [w.start, w.end], name);
    assert.deepEqual(c.sim.boot.wpr2, w);
    const blackwell = c.sim.profile.architecture === "Blackwell";
    const gb = [c.rd(R.wpr2LoGb), c.rd(R.wpr2HiGb)];
    if (blackwell) assert.deepEqual(gb, [lo, hi], name);
    else assert.deepEqual(gb, [PRI_ERROR, PRI_ERROR], name);
    c.wr(R.wpr2Hi, 0);
    assert.equal(c.rd(R.wpr2Hi), hi, "the CPU cannot move WPR2");
    const bare = new Card(name);
    assert.deepEqual(
      [bare.rd(R.wpr2Lo), bare.rd(R.wpr2Hi)],
      // GH100's header resets LO's VAL to 0x0FFFFFFF; HI 0 either way (not up).
      [SIM_PROFILES[name].mmuVersion === 3 ? 0xfffffff0 : 0, 0],
      `${name}: clear on a cold boot`,
    );
    assert.equal(bare.sim.boot.wpr2, null);
  }
});

Deno.test("MMU lock: GA100 only, HI inclusive (aligned up to 64 KiB): the top 2 MiB", () => {
  for (const name of PROFILE_NAMES) {
    const c = new Card(name);
    const regs = [c.rd(R.lockPlm), c.rd(R.lockLo), c.rd(R.lockHi)];
    if (name !== "ga100") {
      assert.deepEqual(regs, [PRI_ERROR, PRI_ERROR, PRI_ERROR], name);
      assert.equal(c.sim.boot.mmuLock, null);
      continue;
    }
    const size = c.sim.profile.vramSize;
    const start = (regs[1] >>> 4) * 4096;
    const end = Math.ceil(((regs[2] >>> 4) * 4096) / 65536) * 65536;
    assert.equal(regs[0] & 1, 1, "readable at level 0");
    assert.deepEqual([start, end], [size - 2 * MiB, size]);
    assert.deepEqual(c.sim.boot.mmuLock, { start, end });
  }
});

// --- 8. display -----------------------------------------------------------------------

Deno.test("display: the fuse says which chips have one; VGA workspace and `vga` only there", () => {
  for (const name of PROFILE_NAMES) {
    const p = SIM_PROFILES[name];
    const c = new Card(name);
    const fuse = p.architecture === "Turing" ? R.fuseTu : R.fuseGa;
    const other = p.architecture === "Turing" ? R.fuseGa : R.fuseTu;
    assert.equal(c.rd(fuse) & 1, p.display ? 0 : 1, name);
    assert.equal(c.rd(other), PRI_ERROR, name);
    const vga = c.rd(R.vgaWorkspace);
    if (p.display) {
      assert.equal((vga >>> 3) & 1, 1, "valid");
      assert.equal((vga >>> 8) * 65536, p.vramSize - MiB);
      assert.equal(c.sim.boot.vgaWorkspace, p.vramSize - MiB);
      assert.equal(new Card(name, "vga").sim.boot.bootVga, true);
    } else {
      assert.equal(vga, PRI_ERROR, name);
      assert.equal(c.sim.boot.vgaWorkspace, null);
      const chip = name.toUpperCase();
      throwsNova(() => createSimGpu({ profile: name, state: "vga" }), "ENODEV", chip, "no display");
    }
  }
});

// --- 9. firmware-owned VRAM ------------------------------------------------------------

Deno.test("firmware-owned VRAM: PRAMIN writes into WPR2 dropped and reported (sim:ga102:unloaded)", () => {
  const c = new Card("ga102", "unloaded");
  const w = c.sim.boot.wpr2!;
  const before = c.sim.vram.read32(w.start + 0x40);
  c.w32(w.start + 0x40, 0xdeadbeef);
  assert.equal(c.sim.vram.read32(w.start + 0x40), before, "dropped");
  assert.deepEqual(kinds(c.sim), ["firmware-vram-write"]);
  assert.match(c.sim.errors()[0].message, /WPR2/);
  assert.equal(c.r32(w.start + 0x40), FIRMWARE_VRAM_READ);
  assert.ok(isPriError(FIRMWARE_VRAM_READ));
  assert.equal(c.sim.log.at(-1)!.kind, "firmware-vram-read");
  assert.equal(c.sim.log.at(-1)!.severity, "info");
  // Just below and just past the region: ordinary VRAM.
  c.w32(w.start - 4, 1);
  c.w32(w.end, 2);
  assert.deepEqual([c.r32(w.start - 4), c.r32(w.end)], [1, 2]);
  assert.equal(c.sim.errors().length, 1);
  // Bulk paths: word by word at the edge, one event per call.
  const off = c.at(w.start - 0x20); // the window holds both sides
  const words = new Uint32Array(16).fill(0x77777777);
  c.sim.log.length = 0;
  c.sim.bar0.writeWords!(off, words);
  assert.deepEqual(kinds(c.sim), ["firmware-vram-write"]);
  const out = new Uint32Array(16);
  c.sim.bar0.readWords!(off, out);
  assert.deepEqual([...out], [...Array(8).fill(0x77777777), ...Array(8).fill(FIRMWARE_VRAM_READ)]);
  assert.equal(c.sim.log.filter((e) => e.kind === "firmware-vram-read").length, 1);
  assert.equal(c.sim.vram.read32(w.start), c.sim.vram.background32(w.start), "nothing landed");
});

Deno.test("firmware-owned VRAM: BAR1 (physical and translated) and the GA100 MMU lock", () => {
  // GA100: 64 GiB BAR1 over 40 GiB VRAM, so physical BAR1 reaches WPR2 and the lock.
  const c = new Card("ga100", "unloaded");
  const w = c.sim.boot.wpr2!;
  const lock = c.sim.boot.mmuLock!;
  c.sim.bar1.write32(w.start, 1);
  c.sim.bar1.write32(lock.start + 0x100, 2);
  assert.deepEqual(kinds(c.sim), ["firmware-vram-write", "firmware-vram-write"]);
  assert.equal(c.sim.bar1.read32(lock.end - 4), FIRMWARE_VRAM_READ);
  assert.equal(c.sim.bar1.read16(w.start + 2), FIRMWARE_VRAM_READ & 0xffff);
  assert.equal(c.r32(lock.start), FIRMWARE_VRAM_READ, "PRAMIN too");
  assert.equal(c.sim.lost, null);
  // Through a mapping of BAR1 onto WPR2: dropped too (not a BAR fault).
  const g = new Card("ga102", "gsp");
  const wp = g.sim.boot.wpr2!;
  const root = g.tables(BASE, wp.start);
  g.flush();
  g.bind(BASE);
  assert.equal(g.sim.bar1Pdb(), root);
  g.sim.bar1.write32(0, 0x1234);
  assert.equal(g.sim.bar1.read32(0), FIRMWARE_VRAM_READ);
  assert.deepEqual(kinds(g.sim), ["firmware-vram-write"]);
  assert.equal(g.sim.lost, null);
  // No firmware-owned VRAM on a bare card but the GA100 lock.
  assert.deepEqual(new Card("ga102").sim.firmwareOwned, []);
  assert.deepEqual(new Card("ga100").sim.firmwareOwned.map((r) => r.start), [lock.start]);
});

// --- 10. unscrubbed VRAM ------------------------------------------------------------------

Deno.test("unscrubbed VRAM reads a deterministic non-zero pattern (GH100: top 256 MiB scrubbed)", () => {
  for (const name of PROFILE_NAMES) {
    const c = new Card(name);
    const size = c.sim.profile.vramSize;
    for (const a of [0, 0x1234 * 4, BASE, size / 2, size - GH100_SCRUBBED_TOP - 4, size - 4]) {
      const want = name === "gh100" && a >= size - GH100_SCRUBBED_TOP
        ? 0
        : backgroundWord(VRAM_SEEDS.unscrubbed, a);
      assert.equal(c.sim.vram.read32(a), want, `${name} ${a.toString(16)}`);
      if (a < size - 2 * MiB) assert.equal(c.r32(a), want, `${name} ${a.toString(16)} (PRAMIN)`);
      if (want !== 0) assert.ok(!isPriError(want) && want !== 0xffffffff);
    }
    assert.equal(c.sim.vram.touchedChunks, 0, "reads allocate nothing");
  }
  const u = new Card("gh100", "unloaded");
  const size = u.sim.profile.vramSize;
  assert.equal(u.r32(size - 4), backgroundWord(VRAM_SEEDS.previousDriver, size - 4));
  assert.notEqual(u.r32(BASE), new Card("gh100").r32(BASE), "the previous driver's data");
  // The stale tables are still there and still walk.
  const fw = u.sim.firmware!;
  assert.equal(u.sim.mmu.walk(fw.bar1Pdb, 0x1000n).level, "PT");
});

Deno.test("unscrubbed VRAM: narrow reads, the first write, posted snapshots and hash", () => {
  const c = new Card("ga102");
  const a = BASE + 0x100;
  const bg = c.sim.vram.background32(a);
  assert.equal(c.sim.bar1.read8(a + 1), (bg >>> 8) & 0xff);
  assert.equal(c.sim.bar1.read16(a + 2), bg >>> 16);
  const h0 = c.sim.vram.hash();
  c.sim.bar1.write8(a + 0x40, 0x99); // the chunk fills from the background
  assert.equal(c.sim.vram.touchedChunks, 1);
  assert.equal(c.sim.bar1.read32(a), bg, "neighbours keep their pattern");
  // The GPU's view of the untouched data is the pattern too, not zeros.
  assert.equal(c.sim.posted.read32(a + 0x40), c.sim.vram.background32(a + 0x40));
  assert.equal(c.sim.posted.read32(a), bg);
  // Zero is a real value now, and writing the background back restores the hash.
  c.sim.bar1.write32(a + 0x80, 0);
  assert.equal(c.sim.bar1.read32(a + 0x80), 0);
  assert.notEqual(c.sim.vram.hash(), h0);
  c.sim.bar1.write32(a + 0x80, c.sim.vram.background32(a + 0x80));
  c.sim.bar1.write32(a + 0x40, c.sim.vram.background32(a + 0x40));
  assert.equal(c.sim.vram.hash(), h0, "equal contents, equal hash");
  // A plain SparseMemory still reads zero.
  assert.equal(new SparseMemory(MiB).read32(0x100), 0);
});

// --- 11. memory clear ----------------------------------------------------------------

Deno.test("memory clear: reads 1 except while a booting card clears; writes during it are errors", async () => {
  for (const name of PROFILE_NAMES) {
    const c = new Card(name);
    const gb = c.sim.profile.architecture === "Blackwell";
    assert.equal(c.rd(gb ? R.memClearGb : R.memClear), 1, name);
    assert.equal(c.rd(gb ? R.memClear : R.memClearGb), PRI_ERROR, name);
  }
  const c = new Card("ga102", "booting");
  assert.equal(c.rd(R.memClear), 0);
  c.w32(BASE, 1);
  c.sim.bar1.write32(BASE + 4, 2);
  assert.deepEqual(kinds(c.sim), ["write-during-memclear", "write-during-memclear"]);
  c.wr(R.memClear, 1);
  assert.equal(kinds(c.sim).at(-1), "read-only-register");
  await new Promise((r) => setTimeout(r, GFW_BOOT_MS + MEM_CLEAR_MS + 20));
  assert.equal(c.rd(R.memClear), 1);
  c.sim.log.length = 0;
  c.w32(BASE, 3);
  assert.deepEqual(kinds(c.sim), []);
});

// --- 12. TLB invalidate ---------------------------------------------------------------

Deno.test("TLB invalidate: SYS_MEMBAR and ACK_GLOBALLY only together", () => {
  const c = new Card("tu102");
  const cases: [number, string[]][] = [
    [0x80000005, []], // RM for a BAR: TRIGGER | HUBTLB_ONLY | ALL_VA
    [0x80000001, []],
    [0x800000c1, []], // SYS_MEMBAR | ACK_GLOBALLY (PTE downgrade on TU10x)
    [0x80000041, ["tlb-membar-ack"]],
    [0x80000081, ["tlb-membar-ack"]],
  ];
  for (const [value, want] of cases) {
    c.sim.log.length = 0;
    c.invalidate(value);
    assert.deepEqual(kinds(c.sim), want, value.toString(16));
    assert.equal(c.sim.flushes.at(-1)!.value, value, "still completes");
  }
});
