/**
 * The simulator's MMU (hw/sim/mmu.ts), BAR1 aperture and firmware boot,
 * checked against hand-encoded page tables. Entry words are written from the
 * facts file's bit layouts (§5), a few as the literal worked examples of §5.6.
 */

import assert from "node:assert/strict";
import { NovaError } from "../hw/errors.ts";
import { Mmio } from "../hw/mmio.ts";
import { bootFirmware } from "../hw/sim/firmware.ts";
import {
  BAR1_FAULT_VALUE,
  createBar1Backend,
  type SimArchitecture,
  SimMmu,
  type SimTranslation,
  type SimWalkFault,
} from "../hw/sim/mmu.ts";
import { SparseMemory } from "../hw/sim/vram.ts";
import { throwsNova } from "./util.ts";

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;

// --- hand encoders (facts §5) -------------------------------------------------

type Ap = "video" | "peer" | "sysCoherent" | "sysNonCoherent";
const PTE_AP: Record<Ap, bigint> = { video: 0n, peer: 1n, sysCoherent: 2n, sysNonCoherent: 3n };

/** v2 PDE: APERTURE 2:1 (1 video, 2 sys coh, 3 sys noncoh), ADDRESS 32:8 = addr >> 12. */
function v2Pde(addr: number, aperture = 1n): bigint {
  return (BigInt(addr / 4096) << 8n) | (aperture << 1n);
}
/** v2 dual low word, big half: ADDRESS_BIG 32:4 = addr >> 8. */
function v2Big(addr: number, aperture = 1n): bigint {
  return (BigInt(addr / 256) << 4n) | (aperture << 1n);
}
/** v2 PTE: VALID 0, APERTURE 2:1, PRIVILEGE 5, READ_ONLY 6, ADDRESS_VID 32:8 / SYS 53:8. */
function v2Pte(pa: number | bigint, o: { ro?: boolean; ap?: Ap } = {}): bigint {
  return (BigInt(pa) >> 12n << 8n) | (PTE_AP[o.ap ?? "video"] << 1n) | (o.ro ? 0x40n : 0n) | 1n;
}
/** v3 PDE: APERTURE 2:1, PCF 5:3, ADDRESS 51:12 in place. */
function v3Pde(addr: number, aperture = 1n, pcf = 0n): bigint {
  return BigInt(addr) | (pcf << 3n) | (aperture << 1n);
}
/** v3 dual low word, big half: ADDRESS_BIG 51:8 in place. */
function v3Big(addr: number, aperture = 1n): bigint {
  return BigInt(addr) | (aperture << 1n);
}
/** v3 PTE: VALID 0, APERTURE 2:1, PCF 7:3 (bit 2 = read-only), KIND 11:8, ADDRESS 51:12. */
function v3Pte(pa: number | bigint, o: { ro?: boolean; ap?: Ap; pcf?: bigint } = {}): bigint {
  const pcf = (o.pcf ?? 0n) | (o.ro ? 4n : 0n);
  return BigInt(pa) | (pcf << 3n) | (PTE_AP[o.ap ?? "video"] << 1n) | 1n;
}

interface Fmt {
  version: 2 | 3;
  /** Directory levels, root first, PD0 last: [name, VA shift, index mask]. */
  levels: [string, number, number][];
  pde(addr: number, aperture?: bigint): bigint;
  big(addr: number, aperture?: bigint): bigint;
  pte(pa: number | bigint, o?: { ro?: boolean; ap?: Ap }): bigint;
  /** Big-PT entry meaning "no valid 4 KiB page under me". */
  noSmall: bigint;
}

const V2: Fmt = {
  version: 2,
  levels: [["PD3", 47, 3], ["PD2", 38, 511], ["PD1", 29, 511], ["PD0", 21, 255]],
  pde: v2Pde,
  big: v2Big,
  pte: v2Pte,
  noSmall: 0x20n, // VALID 0 + PRIVILEGE
};
const V3: Fmt = {
  version: 3,
  levels: [["PD4", 56, 1], ["PD3", 47, 511], ["PD2", 38, 511], ["PD1", 29, 511], ["PD0", 21, 255]],
  pde: (a, ap) => v3Pde(a, ap),
  big: v3Big,
  pte: v3Pte,
  noSmall: 3n << 3n, // VALID 0 + PCF 3 NO_VALID_4KB_PAGE
};

function fmtOf(arch: SimArchitecture): Fmt {
  return arch === "Hopper" || arch === "Blackwell" ? V3 : V2;
}

/** A test rig: sparse VRAM, an MMU, a bump allocator for tables and the root at 0x10000. */
class Rig {
  readonly vram: SparseMemory;
  readonly mmu: SimMmu;
  readonly fmt: Fmt;
  readonly pdb = 0x10000;
  #next = 0x20000;

  constructor(arch: SimArchitecture, vramSize = 4 * GiB) {
    this.fmt = fmtOf(arch);
    this.vram = new SparseMemory(vramSize);
    this.mmu = new SimMmu({
      vram: this.vram,
      vramSize,
      version: this.fmt.version,
      architecture: arch,
    });
  }

  page(): number {
    const a = this.#next;
    this.#next += 0x1000;
    return a;
  }

  w64(addr: number, value: bigint): void {
    this.vram.write64(addr, value);
  }

  slot(table: number, level: number, va: bigint): number {
    const [, shift, mask] = this.fmt.levels[level];
    const size = level === this.fmt.levels.length - 1 ? 16 : 8;
    return table + Number((va >> BigInt(shift)) & BigInt(mask)) * size;
  }

  /** Builds (or reuses) PDEs for `va` from the root down to level `depth`; returns that table. */
  chain(va: bigint, depth: number): number {
    let table = this.pdb;
    for (let l = 0; l < depth; l++) {
      const s = this.slot(table, l, va);
      const cur = this.vram.read64(s);
      if (cur !== 0n) {
        table = this.fmt.version === 2
          ? Number((cur >> 8n) & 0x1ffffffn) * 4096
          : Number(cur & 0xffffffffff000n);
        continue;
      }
      const next = this.page();
      this.w64(s, this.fmt.pde(next));
      table = next;
    }
    return table;
  }

  /** The PD0 slot (16 bytes) for `va`, building the directories above it. */
  pd0Slot(va: bigint): number {
    const d = this.fmt.levels.length - 1;
    return this.slot(this.chain(va, d), d, va);
  }

  walk(va: bigint): SimTranslation | SimWalkFault {
    return this.mmu.walk(this.pdb, va);
  }
}

function ok(t: SimTranslation | SimWalkFault): SimTranslation {
  if ("fault" in t) throw new Error(`unexpected fault ${t.fault} at ${t.level}`);
  return t;
}

function faultOf(t: SimTranslation | SimWalkFault): string {
  return "fault" in t ? `${t.fault}@${t.level}` : `page ${t.level}`;
}

// --- encodings against the facts' worked examples ----------------------------

Deno.test("hand encoders reproduce the facts §5.6 worked examples", () => {
  assert.equal(v2Pte(0x12345000), 0x0000000001234501n);
  assert.equal(v2Pte(0x12345000, { ro: true }), 0x0000000001234541n);
  assert.equal(v2Pde(0x200000), 0x20002n);
  assert.equal(v2Big(0x200100), 0x20012n);
  assert.equal(v3Pte(0x12345000), 0x12345001n);
  assert.equal(v3Pte(0x12345000, { ro: true }), 0x12345021n);
  assert.equal(v3Pde(0x200000), 0x200002n);
  assert.equal(v3Big(0x200100), 0x200102n);
});

Deno.test("v2: literal worked-example words translate a 4 KiB page", () => {
  const vram = new SparseMemory(GiB);
  const mmu = new SimMmu({ vram, vramSize: GiB, version: 2, architecture: "Ampere" });
  // VA 0x7654321 -> PD3[0] PD2[0] PD1[0] PD0[0x3b] PT[0x54]
  vram.write64(0x100000, 0x20002n); // PD3[0] -> PD2 at 0x200000
  vram.write64(0x200000, 0x30002n); // PD2[0] -> PD1 at 0x300000
  vram.write64(0x300000, 0x40002n); // PD1[0] -> PD0 at 0x400000
  vram.write64(0x400000 + 0x3b * 16 + 8, 0x50002n); // PD0[0x3b] small -> PT at 0x500000
  vram.write64(0x500000 + 0x54 * 8, 0x0000000001234501n);
  const t = ok(mmu.walk(0x100000, 0x7654321n));
  assert.deepEqual(t, {
    pa: 0x12345321,
    aperture: "video",
    pageSize: 4096,
    level: "PT",
    readOnly: false,
    raw: 0x1234501n,
  });
});

Deno.test("v3: literal worked-example words translate a 4 KiB page", () => {
  const vram = new SparseMemory(GiB);
  const mmu = new SimMmu({ vram, vramSize: GiB, version: 3, architecture: "Hopper" });
  // VA (1 << 56) | 0x7654321 -> PD4[1] PD3[0] PD2[0] PD1[0] PD0[0x3b] PT[0x54]
  vram.write64(0x100000 + 8, 0x200002n);
  vram.write64(0x200000, 0x300002n);
  vram.write64(0x300000, 0x400002n);
  vram.write64(0x400000, 0x500002n);
  vram.write64(0x500000 + 0x3b * 16 + 8, 0x600002n);
  vram.write64(0x600000 + 0x54 * 8, 0x12345021n); // read-only
  const t = ok(mmu.walk(0x100000, (1n << 56n) | 0x7654321n));
  assert.equal(t.pa, 0x12345321);
  assert.equal(t.level, "PT");
  assert.equal(t.readOnly, true);
  assert.equal(faultOf(mmu.walk(0x100000, 0x7654321n)), "invalid-pde@PD4");
});

// --- page sizes ----------------------------------------------------------------

for (const arch of ["Turing", "Ampere", "Ada", "Hopper", "Blackwell"] as const) {
  Deno.test(`${arch}: 4 KiB, 64 KiB and 2 MiB pages`, () => {
    const r = new Rig(arch);
    const va4k = 0x1234_5678_9000n & ((1n << 49n) - 1n);
    const s = r.pd0Slot(va4k);
    const pt = r.page();
    r.w64(s + 8, r.fmt.pde(pt));
    r.w64(pt + Number((va4k >> 12n) & 511n) * 8, r.fmt.pte(0x4567_8000));
    const t = ok(r.walk(va4k + 0xabcn));
    assert.equal(t.pa, 0x4567_8abc);
    assert.equal(t.pageSize, 4096);
    assert.equal(t.level, "PT");
    assert.equal(t.aperture, "video");

    const va64k = 0x0000_4000_0000_0000n + 0x50000n; // PD3/PD2 index differs from va4k's
    const s64 = r.pd0Slot(va64k);
    const big = r.page() + 0x100; // big PTs need only 256 B alignment
    r.w64(s64, r.fmt.big(big));
    r.w64(big + 5 * 8, r.fmt.pte(0x9990_0000));
    const t64 = ok(r.walk(va64k + 0x1234n));
    assert.equal(t64.pa, 0x9990_1234);
    assert.equal(t64.pageSize, 0x10000);
    assert.equal(t64.level, "PT64K");

    const va2m = 0x0000_0040_0000_0000n + 0x600000n;
    const s2m = r.pd0Slot(va2m);
    r.w64(s2m, r.fmt.pte(0x7_0000_0000));
    const t2m = ok(r.walk(va2m + 0x1f_fffcn));
    assert.equal(t2m.pa, 0x7_001f_fffc);
    assert.equal(t2m.pageSize, 2 * MiB);
    assert.equal(t2m.level, "PD0");
  });

  Deno.test(`${arch}: 512 MiB and 256 GiB huge PTEs per chip`, () => {
    const r = new Rig(arch);
    const d = r.fmt.levels.length;
    const va512 = 0x0000_0080_6000_0000n + 0x1234_5678n; // PD1 index 3
    const pd1 = r.chain(va512, d - 2);
    r.w64(r.slot(pd1, d - 2, va512), r.fmt.pte(0x10_0000_0000));
    const t = r.walk(va512);
    if (arch === "Turing") {
      assert.equal(faultOf(t), "pte-at-non-leaf@PD1");
    } else {
      assert.equal(ok(t).pa, 0x10_1234_5678);
      assert.equal(ok(t).pageSize, 512 * MiB);
      assert.equal(ok(t).level, "PD1");
    }

    const va256 = 0x0000_0700_0000_0000n + 0x12_3456_789an; // PD2 index 0x1c
    const pd2 = r.chain(va256, d - 3);
    r.w64(r.slot(pd2, d - 3, va256), r.fmt.pte(0x40_0000_0000));
    const h = r.walk(va256);
    if (arch === "Blackwell") {
      assert.equal(ok(h).pa, 0x52_3456_789a);
      assert.equal(ok(h).pageSize, 256 * GiB);
      assert.equal(ok(h).level, "PD2");
    } else {
      assert.equal(faultOf(h), "pte-at-non-leaf@PD2");
    }

    // The root (and v3's PD3) never hold a PTE.
    r.w64(r.pdb, r.fmt.pte(0));
    assert.equal(faultOf(r.walk(0x1000n)), `pte-at-non-leaf@${r.fmt.levels[0][0]}`);
  });
}

for (const fmt of [V2, V3]) {
  const arch = fmt.version === 2 ? "Ampere" : "Blackwell";
  Deno.test(`v${fmt.version}: a big or huge PTE not aligned to its page size faults`, () => {
    const r = new Rig(arch, 2 ** 40);
    const d = r.fmt.levels.length;
    // 2 MiB PTE at a 64 KiB (not 2 MiB) aligned address, then one page off, then aligned.
    const va2m = 0x0000_0040_0000_0000n + 0x600000n;
    const s2m = r.pd0Slot(va2m);
    r.w64(s2m, fmt.pte(0x7_0001_0000));
    assert.deepEqual(r.walk(va2m + 0x1234n), { fault: "misaligned-pte", level: "PD0" });
    r.w64(s2m, fmt.pte(0x7_0000_1000));
    assert.equal(faultOf(r.walk(va2m)), "misaligned-pte@PD0");
    r.w64(s2m, fmt.pte(0x7_0020_0000));
    assert.equal(ok(r.walk(va2m + 0x1_2345n)).pa, 0x7_0021_2345);

    // 64 KiB PTE at a 4 KiB aligned address; a valid small PTE under it does not help.
    const va64k = 0x0000_4000_0000_0000n + 0x50000n;
    const s64 = r.pd0Slot(va64k);
    const big = r.page() + 0x100;
    const small = r.page();
    r.w64(s64, fmt.big(big));
    r.w64(s64 + 8, fmt.pde(small));
    r.w64(big + 5 * 8, fmt.pte(0x9990_1000));
    r.w64(small + Number((va64k >> 12n) & 511n) * 8, fmt.pte(0x1234_5000));
    assert.equal(faultOf(r.walk(va64k + 0x234n)), "misaligned-pte@PT64K");
    r.w64(big + 5 * 8, fmt.pte(0x9990_8000)); // 32 KiB aligned is not enough either
    assert.equal(faultOf(r.walk(va64k)), "misaligned-pte@PT64K");
    r.w64(big + 5 * 8, fmt.pte(0x9990_0000));
    const t64 = ok(r.walk(va64k + 0x1234n));
    assert.equal(t64.pa, 0x9990_1234);
    assert.equal(t64.level, "PT64K");
    // An access to a misaligned page faults with the walk's reason.
    r.w64(big + 5 * 8, fmt.pte(0x9990_1000));
    r.mmu.invalidate("all");
    assert.deepEqual(r.mmu.access(r.pdb, va64k, "read", 4), { fault: "misaligned-pte" });

    // 512 MiB at PD1 with a 2 MiB aligned address.
    const va512 = 0x0000_0080_6000_0000n;
    const pd1 = r.chain(va512, d - 2);
    r.w64(r.slot(pd1, d - 2, va512), fmt.pte(0x10_0020_0000));
    assert.equal(faultOf(r.walk(va512)), "misaligned-pte@PD1");
    r.w64(r.slot(pd1, d - 2, va512), fmt.pte(0x10_2000_0000));
    assert.equal(ok(r.walk(va512 + 0x10n)).pa, 0x10_2000_0010);
    if (fmt.version === 3) {
      // 256 GiB at PD2 (Blackwell) with a 512 MiB aligned address.
      const va256 = 0x0000_0700_0000_0000n;
      const pd2 = r.chain(va256, d - 3);
      r.w64(r.slot(pd2, d - 3, va256), fmt.pte(0x40_2000_0000));
      assert.equal(faultOf(r.walk(va256)), "misaligned-pte@PD2");
      r.w64(r.slot(pd2, d - 3, va256), fmt.pte(0x80_0000_0000));
      assert.equal(ok(r.walk(va256 + 0x123n)).pa, 0x80_0000_0123);
    }
  });
}

// --- dual PDE ------------------------------------------------------------------

for (const fmt of [V2, V3]) {
  const arch = fmt.version === 2 ? "Ampere" : "Hopper";
  const v = `v${fmt.version}`;

  Deno.test(`${v}: dual PD0 with both halves, and the no-small-page marker`, () => {
    const r = new Rig(arch);
    const base = 0x4000_0000n; // a fresh PD0 entry covering 0x40000000..0x401fffff
    const s = r.pd0Slot(base);
    const big = r.page();
    const small = r.page();
    r.w64(s, fmt.big(big));
    r.w64(s + 8, fmt.pde(small));
    // Big page 1 (VA +0x10000) valid; big page 2 invalid with the marker; others 0.
    r.w64(big + 8, fmt.pte(0x100_0000));
    r.w64(big + 16, fmt.noSmall);
    // Small PTEs everywhere in 0x00000..0x3ffff.
    for (let i = 0; i < 64; i++) r.w64(small + i * 8, fmt.pte(0x200_0000 + i * 0x1000));

    const small0 = ok(r.walk(base + 0x3008n));
    assert.equal(small0.level, "PT");
    assert.equal(small0.pa, 0x200_3008);
    const big1 = ok(r.walk(base + 0x1fffcn)); // the big page wins over small PTE 31
    assert.equal(big1.level, "PT64K");
    assert.equal(big1.pa, 0x100_fffc);
    assert.equal(faultOf(r.walk(base + 0x20000n)), "invalid-pte@PT64K"); // marker
    const small3 = ok(r.walk(base + 0x30000n)); // big PTE 3 is 0 -> small PTE 48
    assert.equal(small3.pa, 0x203_0000);
    assert.equal(faultOf(r.walk(base + 0x40000n)), "invalid-pte@PT"); // nothing anywhere

    // A sparse-looking but marker-less invalid big PTE still falls through to small.
    r.w64(big + 24, fmt.version === 2 ? 0x8n : 1n << 3n); // v2 VOL / v3 PCF SPARSE
    assert.equal(ok(r.walk(base + 0x30000n)).level, "PT");

    // Small half gone: the big pointer still serves page 1; the rest is an invalid big PTE.
    r.w64(s + 8, 0n);
    assert.equal(ok(r.walk(base + 0x10000n)).level, "PT64K");
    assert.equal(faultOf(r.walk(base)), "invalid-pte@PT64K");
    // Both halves gone.
    r.w64(s, 0n);
    assert.equal(faultOf(r.walk(base)), "invalid-pde@PD0");
    // Only the small half.
    r.w64(s + 8, fmt.pde(small));
    assert.equal(ok(r.walk(base + 0x10000n)).pa, 0x201_0000);
  });

  Deno.test(`${v}: sysmem tables, sys/peer PTEs, invalid and out-of-range tables`, () => {
    const vramSize = 256 * MiB;
    const r = new Rig(arch, vramSize);
    const d = fmt.levels.length;
    const va = 0x1234_5000n;
    // Invalid root entry.
    assert.equal(faultOf(r.walk(va)), `invalid-pde@${fmt.levels[0][0]}`);
    const pd1 = r.chain(va, d - 2);
    const pd1Slot = r.slot(pd1, d - 2, va);
    for (const ap of [2n, 3n]) {
      r.w64(pd1Slot, fmt.pde(0x300000, ap));
      assert.equal(faultOf(r.walk(va)), "sysmem-table@PD1");
    }
    // A table in the last page of VRAM fits; one a page later does not.
    r.w64(pd1Slot, fmt.pde(vramSize - 4096));
    assert.equal(faultOf(r.walk(va)), "invalid-pde@PD0");
    r.w64(pd1Slot, fmt.pde(vramSize));
    assert.equal(faultOf(r.walk(va)), "table-out-of-range@PD1");
    r.w64(pd1Slot, 0n);

    const s = r.pd0Slot(va);
    r.w64(s, fmt.big(0x300000, 2n));
    r.w64(s + 8, fmt.pde(0x400000));
    assert.equal(faultOf(r.walk(va)), "sysmem-table@PD0"); // big half is looked at first
    r.w64(s, 0n);
    r.w64(s + 8, fmt.pde(0x400000, 3n));
    assert.equal(faultOf(r.walk(va)), "sysmem-table@PD0");
    r.w64(s + 8, fmt.pde(vramSize));
    assert.equal(faultOf(r.walk(va)), "table-out-of-range@PD0");
    r.w64(s + 8, 0n);
    // A 256 B big PT in the last 256 bytes of VRAM is in range; one 256 B later is not.
    r.w64(s, fmt.big(vramSize - 256));
    const idx = Number((va >> 16n) & 31n);
    r.w64(vramSize - 256 + idx * 8, fmt.pte(0x5000_0000));
    assert.equal(ok(r.walk(va)).pa, 0x5000_0000 + Number(va & 0xffffn));
    r.w64(s, fmt.big(vramSize));
    assert.equal(faultOf(r.walk(va)), "table-out-of-range@PD0");
    r.w64(s, 0n);

    // System-memory and peer PTEs translate, but an access cannot reach them.
    const pt = r.page();
    r.w64(s + 8, fmt.pde(pt));
    const ptSlot = pt + Number((va >> 12n) & 511n) * 8;
    const sysPa = fmt.version === 2 ? 0x3_0000_0000_0000n : 0xf_ffff_f000n;
    r.w64(ptSlot, fmt.pte(sysPa, { ap: "sysCoherent" }));
    const sys = ok(r.walk(va + 4n));
    assert.equal(sys.aperture, "sysCoherent");
    assert.equal(BigInt(sys.pa), sysPa + 4n);
    assert.deepEqual(r.mmu.access(r.pdb, va + 4n, "read", 4), { fault: "not-vram" });
    if (fmt.version === 2) {
      // ADDRESS_SYS 53:8 reaches past 2^53: the PA comes back as a bigint.
      r.w64(ptSlot, fmt.pte(1n << 57n, { ap: "sysNonCoherent" }));
      const far = ok(r.walk(va + 8n));
      assert.equal(far.pa, (1n << 57n) + 8n);
      assert.equal(far.aperture, "sysNonCoherent");
    }
    r.w64(ptSlot, fmt.pte(0x7000, { ap: "peer" }));
    r.mmu.invalidate("all");
    assert.equal(ok(r.walk(va)).aperture, "peer");
    assert.deepEqual(r.mmu.access(r.pdb, va, "write", 4), { fault: "not-vram" });
    // A VRAM PTE past the end of VRAM.
    r.w64(ptSlot, fmt.pte(vramSize));
    r.mmu.invalidate("all");
    assert.equal(ok(r.walk(va)).pa, vramSize);
    assert.deepEqual(r.mmu.access(r.pdb, va, "read", 4), { fault: "pa-out-of-range" });
    // The PDB itself past the end of VRAM.
    assert.equal(faultOf(r.mmu.walk(vramSize, va)), `table-out-of-range@${fmt.levels[0][0]}`);
  });

  Deno.test(`${v}: VA range, address field widths and ignored bits`, () => {
    const r = new Rig(arch, 2 ** 40);
    const bits = fmt.version === 2 ? 49n : 57n;
    assert.equal(faultOf(r.walk(1n << bits)), `va-out-of-range@${fmt.levels[0][0]}`);
    assert.equal(faultOf(r.walk(-4096n)), `va-out-of-range@${fmt.levels[0][0]}`);
    assert.deepEqual(r.mmu.access(r.pdb, 1n << bits, "read", 4), { fault: "va-out-of-range" });
    // Top of the VA space.
    const top = (1n << bits) - 4096n;
    const s = r.pd0Slot(top);
    const pt = r.page();
    r.w64(s + 8, fmt.pde(pt));
    // Highest VRAM page the video address field can name, plus junk in ignored bits.
    const maxVid = fmt.version === 2 ? 2 ** 37 - 4096 : 2 ** 40 - 4096;
    const junk = fmt.version === 2
      ? (0x06n << 56n) | (0x5n << 33n) | 0x80n // KIND, peer index, ATOMIC_DISABLE
      : (0x6n << 8n) | (0x10n << 3n) | (0xfffn << 40n) | (5n << 61n); // KIND, PCF ACD, 51:40, PEER_ID
    r.w64(pt + 511 * 8, fmt.pte(maxVid) | junk);
    const t = ok(r.walk(top + 0xff8n));
    assert.equal(t.pa, maxVid + 0xff8);
    assert.equal(t.readOnly, false);
    assert.equal(t.raw, fmt.pte(maxVid) | junk);
  });
}

// --- access(), TLB ---------------------------------------------------------------

/** A rig with VA 0 -> 0x800000 (RW) and VA 0x1000 -> 0x900000 (RO) in a small PT. */
function mapped(fmt: Fmt, arch: SimArchitecture): { r: Rig; pt: number } {
  const r = new Rig(arch);
  const s = r.pd0Slot(0n);
  const pt = r.page();
  r.w64(s + 8, fmt.pde(pt));
  r.w64(pt, fmt.pte(0x800000));
  r.w64(pt + 8, fmt.pte(0x900000, { ro: true }));
  return { r, pt };
}

for (const fmt of [V2, V3]) {
  const arch = fmt.version === 2 ? "Ada" : "Blackwell";
  const v = `v${fmt.version}`;

  Deno.test(`${v}: access checks permissions and records faults`, () => {
    const { r, pt } = mapped(fmt, arch);
    const m = r.mmu;
    assert.deepEqual(m.access(r.pdb, 0x10n, "write", 4), { pa: 0x800010 });
    assert.deepEqual(m.access(r.pdb, 0x1010n, "read", 4), { pa: 0x900010 });
    assert.deepEqual(m.access(r.pdb, 0x1010n, "write", 2), { fault: "read-only" });
    assert.deepEqual(m.access(r.pdb, 0x2000n, "read", 8), { fault: "invalid-pte" });
    assert.equal(m.faultCount, 2);
    assert.deepEqual(m.faults, [
      { va: 0x1010n, access: "write", reason: "read-only", pdb: r.pdb, width: 2 },
      { va: 0x2000n, access: "read", reason: "invalid-pte", pdb: r.pdb, width: 8 },
    ]);
    // Faults are not cached: a PTE that appears is seen without a flush.
    const before = m.tlbStats();
    r.w64(pt + 16, fmt.pte(0xa00000));
    assert.deepEqual(m.access(r.pdb, 0x2000n, "read", 4), { pa: 0xa00000 });
    assert.equal(m.tlbStats().misses, before.misses + 1);
    // Bad arguments are errors, not faults.
    assert.throws(() => m.access(r.pdb, 0x2n, "read", 4), NovaError);
    assert.throws(() => m.access(r.pdb, 0x0n, "read", 3), NovaError);
    assert.throws(() => m.access(0x10010, 0x0n, "read", 4), NovaError);
    assert.throws(() => m.walk(-4096, 0n), NovaError);
    assert.throws(() => m.walk(r.pdb, 0.5), NovaError);
    assert.equal(m.faultCount, 2);
  });

  Deno.test(`${v}: TLB keeps stale translations until the PDB is invalidated`, () => {
    const { r, pt } = mapped(fmt, arch);
    const m = r.mmu;
    assert.deepEqual(m.access(r.pdb, 0x40n, "read", 4), { pa: 0x800040 });
    r.w64(pt, fmt.pte(0xc00000)); // retarget without a flush
    assert.deepEqual(m.access(r.pdb, 0x40n, "read", 4), { pa: 0x800040 });
    assert.equal(ok(m.walk(r.pdb, 0x40n)).pa, 0xc00040); // the uncached walk sees it
    m.invalidate(r.pdb + 0x1000); // another PDB does not help
    assert.deepEqual(m.access(r.pdb, 0x40n, "read", 4), { pa: 0x800040 });
    m.invalidate(r.pdb);
    assert.deepEqual(m.access(r.pdb, 0x40n, "read", 4), { pa: 0xc00040 });
    // Unmapping is not seen either until "all".
    r.w64(pt, 0n);
    assert.deepEqual(m.access(r.pdb, 0x40n, "write", 4), { pa: 0xc00040 });
    m.invalidate("all");
    assert.deepEqual(m.access(r.pdb, 0x40n, "write", 4), { fault: "invalid-pte" });
    // A read-only bit change is cached too.
    m.access(r.pdb, 0x1000n, "read", 4);
    r.w64(pt + 8, fmt.pte(0x900000));
    assert.deepEqual(m.access(r.pdb, 0x1000n, "write", 4), { fault: "read-only" });
    m.invalidate(r.pdb);
    assert.deepEqual(m.access(r.pdb, 0x1000n, "write", 4), { pa: 0x900000 });
    const st = m.tlbStats();
    assert.equal(st.invalidations, 4);
    assert.equal(st.entries, 1);
    assert.ok(st.hits >= 3);
  });

  Deno.test(`${v}: TLB entries are per PDB`, () => {
    const { r, pt } = mapped(fmt, arch);
    const m = r.mmu;
    // A second root sharing the lower tables.
    const pdb2 = r.page();
    r.vram.write64(pdb2, r.vram.read64(r.pdb));
    assert.deepEqual(m.access(r.pdb, 0n, "read", 4), { pa: 0x800000 });
    assert.deepEqual(m.access(pdb2, 0n, "read", 4), { pa: 0x800000 });
    r.w64(pt, fmt.pte(0xd00000));
    m.invalidate(pdb2);
    assert.deepEqual(m.access(pdb2, 0n, "read", 4), { pa: 0xd00000 });
    assert.deepEqual(m.access(r.pdb, 0n, "read", 4), { pa: 0x800000 });
  });
}

Deno.test("fault log is bounded but counts everything", () => {
  const r = new Rig("Ampere");
  for (let i = 0; i < 12_500; i++) r.mmu.access(r.pdb, BigInt(i * 4096), "read", 4);
  assert.equal(r.mmu.faultCount, 12_500);
  assert.ok(r.mmu.faults.length >= 10_000 && r.mmu.faults.length <= 11_024);
  assert.equal(r.mmu.faults.at(-1)!.va, BigInt(12_499 * 4096));
  r.mmu.clearFaults();
  assert.equal(r.mmu.faults.length, 0);
});

// --- BAR1 backend ------------------------------------------------------------------

for (const fmt of [V2, V3]) {
  const arch = fmt.version === 2 ? "Turing" : "Hopper";
  Deno.test(`v${fmt.version}: BAR1 backend translates, faults and returns the fault pattern`, () => {
    const r = new Rig(arch);
    const s = r.pd0Slot(0n);
    const pt = r.page();
    r.w64(s + 8, fmt.pde(pt));
    r.w64(pt + 8, fmt.pte(0x700000)); // VA 0x1000 -> 0x700000
    r.w64(pt + 16, fmt.pte(0x750000, { ro: true })); // VA 0x2000 -> 0x750000, RO
    let bound: number | null = r.pdb;
    const backend = createBar1Backend(r.mmu, { size: 16 * MiB, pdb: () => bound });
    assert.equal(backend.faultValue, 0xbad1fa17);
    assert.equal(BAR1_FAULT_VALUE, 0xbad1fa17);
    const bar1 = new Mmio("bar1", backend);

    bar1.write32(0x1ffc, 0xdeadbeef);
    assert.equal(r.vram.read32(0x700ffc), 0xdeadbeef);
    assert.equal(bar1.read8(0x1ffc), 0xef); // little-endian
    assert.equal(bar1.read16(0x1ffe), 0xdead);
    bar1.write8(0x1001, 0x5a);
    bar1.write16(0x1002, 0x1234);
    assert.equal(r.vram.read32(0x700000), 0x12345a00);
    r.vram.write32(0x750008, 0x01020304);
    assert.equal(bar1.read32(0x2008), 0x01020304);

    const touched = r.vram.touchedChunks;
    bar1.write32(0x2008, 0xffffffff); // read-only
    bar1.write32(0x3000, 0x11111111); // unmapped
    bar1.write8(0x3001, 0x22);
    assert.equal(r.vram.read32(0x750008), 0x01020304);
    assert.equal(r.vram.touchedChunks, touched);
    assert.equal(bar1.read32(0x3000), 0xbad1fa17);
    assert.equal(bar1.read16(0x3002), 0xfa17);
    assert.equal(bar1.read8(0x3003), 0x17);
    bound = null;
    assert.equal(bar1.read32(0x1000), 0xbad1fa17);
    bar1.write32(0x1000, 0);
    assert.equal(r.vram.read32(0x700000), 0x12345a00);
    const reasons = r.mmu.faults.map((f) =>
      `${f.access}:${f.width}:${f.va.toString(16)}:${f.reason}`
    );
    assert.deepEqual(reasons, [
      "write:4:2008:read-only",
      "write:4:3000:invalid-pte",
      "write:1:3001:invalid-pte",
      "read:4:3000:invalid-pte",
      "read:2:3002:invalid-pte",
      "read:1:3003:invalid-pte",
      "read:4:1000:bar1-unbound",
      "write:4:1000:bar1-unbound",
    ]);
    assert.equal(r.mmu.faults.at(-1)!.pdb, -1);
    assert.equal(r.mmu.faults[0].pdb, r.pdb);
    assert.throws(() => createBar1Backend(r.mmu, { size: 100, pdb: () => 0 }), NovaError);
  });
}

Deno.test("BAR1 bulk copy: one walk per page, the rest TLB hits", () => {
  const r = new Rig("Ampere");
  const s = r.pd0Slot(0n);
  const pt = r.page();
  r.w64(s + 8, V2.pde(pt));
  for (let i = 0; i < 256; i++) r.w64(pt + i * 8, V2.pte(0x1000_0000 + i * 0x1000));
  const bar1 = new Mmio("bar1", createBar1Backend(r.mmu, { size: 4 * MiB, pdb: () => r.pdb }));
  const words = 256 * 1024;
  for (let i = 0; i < words; i++) bar1.write32(i * 4, i);
  for (let i = 0; i < words; i += 997) assert.equal(r.vram.read32(0x1000_0000 + i * 4), i);
  const st = r.mmu.tlbStats();
  assert.equal(st.misses, 256);
  assert.equal(st.hits, words - 256);
  assert.equal(st.entries, 256);
});

// --- firmware ------------------------------------------------------------------------

const PROFILES = [
  { arch: "Ampere", version: 2, vramSize: 24 * GiB, bar1Size: 256 * MiB },
  { arch: "Hopper", version: 3, vramSize: 80 * GiB, bar1Size: 128 * GiB },
  { arch: "Turing", version: 2, vramSize: 11 * GiB, bar1Size: 256 * MiB },
  { arch: "Blackwell", version: 3, vramSize: 32 * GiB, bar1Size: 32 * GiB },
  { arch: "Ada", version: 2, vramSize: 64 * MiB, bar1Size: 128 * KiB },
] as const;

for (const p of PROFILES) {
  Deno.test(`firmware boot: ${p.arch} ${p.vramSize / MiB} MiB, BAR1 ${p.bar1Size / KiB} KiB`, () => {
    const vram = new SparseMemory(p.vramSize);
    const fw = bootFirmware(vram, {
      vramSize: p.vramSize,
      version: p.version,
      architecture: p.arch,
      bar1Size: p.bar1Size,
    });
    const mmu = new SimMmu({
      vram,
      vramSize: p.vramSize,
      version: p.version,
      architecture: p.arch,
    });
    // Layout.
    assert.ok(fw.usable.start < fw.usable.end && fw.usable.end <= fw.reservedStart);
    assert.ok(fw.reservedStart < p.vramSize);
    if (p.vramSize === 24 * GiB) assert.equal(p.vramSize - fw.reservedStart, 256 * MiB);
    if (p.vramSize === 80 * GiB) assert.equal(p.vramSize - fw.reservedStart, 512 * MiB);
    for (const a of [fw.instanceBlock, fw.bar1Pdb]) {
      assert.equal(a % 4096, 0);
      assert.ok(a >= fw.reservedStart && a + 4096 <= p.vramSize);
    }
    // Instance block: PDB word at 0x200 (TARGET 1:0, VER2 bit 10, BIG_PAGE_SIZE bit 11, LO 31:12).
    const lo = vram.read32(fw.instanceBlock + 0x200);
    const hi = vram.read32(fw.instanceBlock + 0x204);
    assert.equal(lo & 3, 0);
    // As RM writes it (facts §14.1): bit 10 only for MMU v2, ADR_LIMIT only on TU10x,
    // the ctxsw magic in word 131 on Blackwell.
    assert.equal((lo >>> 10) & 1, p.version === 2 ? 1 : 0);
    assert.equal((lo >>> 11) & 1, 1);
    const w208 = vram.read32(fw.instanceBlock + 0x208);
    const w20c = vram.read32(fw.instanceBlock + 0x20c);
    if (p.arch === "Turing") {
      const limit = (BigInt(p.bar1Size) - 1n) | 0xfffn;
      assert.deepEqual([w208, w20c], [Number(limit & 0xffffffffn), Number(limit >> 32n)]);
    } else if (p.arch === "Blackwell") {
      assert.deepEqual([w208, w20c], [0, 0xcafeca11]);
    } else {
      assert.deepEqual([w208, w20c], [0, 0]);
    }
    assert.equal((lo & 0xfffff000) >>> 0, fw.bar1Pdb % 2 ** 32);
    assert.equal(hi * 2 ** 32 + ((lo & 0xfffff000) >>> 0), fw.bar1Pdb);
    // Mappings: translate, stay inside the reserved area, hold their pattern via BAR1.
    const bar1 = new Mmio(
      "bar1",
      createBar1Backend(mmu, { size: p.bar1Size, pdb: () => fw.bar1Pdb }),
    );
    assert.ok(fw.mappings.some((m) => m.pageSize === 4096));
    assert.ok(fw.mappings.some((m) => m.pageSize === 0x10000));
    const patterns = new Set(fw.mappings.map((m) => m.pattern));
    assert.equal(patterns.size, fw.mappings.length);
    for (const m of fw.mappings) {
      assert.ok(m.pa >= fw.reservedStart && m.pa + m.size <= p.vramSize);
      for (let off = 0; off < m.size; off += m.pageSize) {
        const t = ok(mmu.walk(fw.bar1Pdb, m.va + BigInt(off)));
        assert.equal(t.pa, m.pa + off);
        assert.equal(t.pageSize, m.pageSize);
        assert.equal(t.level, m.pageSize === 4096 ? "PT" : "PT64K");
        assert.equal(t.readOnly, false);
        assert.equal(t.aperture, "video");
      }
      for (let off = 0; off < m.size; off += 4) {
        assert.equal(bar1.read32(Number(m.va) + off), m.pattern);
      }
    }
    // Both halves of one PD0 entry: VA 0 small, VA 0x10000 big.
    assert.equal(ok(mmu.walk(fw.bar1Pdb, 0n)).level, "PT");
    assert.equal(ok(mmu.walk(fw.bar1Pdb, 0x10000n)).level, "PT64K");
    assert.equal(mmu.faultCount, 0);
    // Everything else in BAR1 is unmapped.
    assert.equal(bar1.read32(0x4000), 0xbad1fa17);
    assert.equal(mmu.faults[0].reason, "invalid-pte");
    // Sparse: the 80 GiB board spent a couple of 64 KiB chunks.
    assert.ok(vram.touchedChunks <= 3, `touched ${vram.touchedChunks} chunks`);
  });
}

Deno.test("firmware boot validates everything before touching VRAM", () => {
  const vram = new SparseMemory(GiB);
  const good = { vramSize: GiB, version: 2, architecture: "Ampere", bar1Size: 256 * MiB } as const;
  const bad = [
    { ...good, vramSize: GiB + 4096 },
    { ...good, vramSize: 2 * GiB },
    { ...good, version: 3 as const },
    { ...good, architecture: "Hopper" as const },
    { ...good, bar1Size: 64 * KiB },
    { ...good, bar1Size: 256 * MiB + 4096 },
  ];
  for (const o of bad) {
    throwsNova(
      () => bootFirmware(vram, o),
      "EINVAL",
    );
  }
  assert.equal(vram.touchedChunks, 0);
  // Garbage left in the reserved area from a previous life is cleared by the boot.
  const fw0 = bootFirmware(vram, good);
  for (let a = fw0.bar1Pdb + 0x100; a < fw0.bar1Pdb + 0x8000; a += 4) {
    if (vram.read32(a) === 0) vram.write32(a, 0xffffffff);
  }
  const fw = bootFirmware(vram, good);
  const mmu = new SimMmu({ vram, vramSize: GiB, version: 2, architecture: "Ampere" });
  assert.equal(faultOf(mmu.walk(fw.bar1Pdb, 0x4000n)), "invalid-pte@PT");
  assert.equal(faultOf(mmu.walk(fw.bar1Pdb, 0x200000n)), "invalid-pde@PD0");
});

Deno.test("SimMmu rejects inconsistent options", () => {
  const vram = new SparseMemory(GiB);
  const mk = (o: object) => () =>
    new SimMmu({ vram, vramSize: GiB, version: 2, architecture: "Ampere", ...o });
  assert.throws(mk({ version: 3 }), NovaError);
  assert.throws(mk({ architecture: "Hopper" }), NovaError);
  assert.throws(mk({ architecture: "Volta" }), NovaError);
  assert.throws(mk({ vramSize: 2 * GiB }), NovaError);
  assert.throws(mk({ vramSize: 0 }), NovaError);
});

// --- garbage -------------------------------------------------------------------------

/** xorshift32: deterministic, seedable. */
function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return x >>> 0;
  };
}

for (const arch of ["Turing", "Ampere", "Hopper", "Blackwell"] as const) {
  Deno.test(`${arch}: random garbage tables never throw and always terminate`, () => {
    const vramSize = 16 * MiB;
    const vram = new SparseMemory(vramSize);
    const version = arch === "Hopper" || arch === "Blackwell" ? 3 : 2;
    const mmu = new SimMmu({ vram, vramSize, version, architecture: arch });
    const rand = rng(0x5eed + version);
    // Words biased towards in-range video pointers so walks go deep; some pure noise.
    // Three in four writes, pointers and roots fall in a 128 KiB hot region, dense
    // enough that many walks get past the root.
    const pages = vramSize / 4096;
    const page = () => rand() % 4 === 0 ? rand() % pages : rand() % 32;
    for (let i = 0; i < 64 * 1024; i++) {
      const addr = page() * 4096 + (rand() % 512) * 8;
      let target = page() * 4096;
      const kind = rand() % 4;
      let low = rand() & (version === 2 ? 0xff : 0xfff);
      if (kind === 1 || (kind === 2 && rand() % 2 === 0)) low = (low & ~7) | 2; // a video PDE
      if ((low & 1) !== 0 && rand() % 10 !== 0) {
        // A PTE: nine in ten aligned to a big or huge page size so those can map; the
        // rest keep 4 KiB alignment (mostly "misaligned-pte").
        target -= target % [64 * KiB, 2 * MiB, 512 * MiB, 256 * GiB][rand() % 4];
      }
      let lo: number;
      let hi: number;
      if (kind === 0) {
        lo = rand();
        hi = rand();
      } else if (version === 2) {
        lo = (((target / 4096) << 8) | low) >>> 0;
        hi = rand() & 0x1;
      } else {
        lo = ((target % 2 ** 32) | low) >>> 0;
        hi = kind === 3 ? rand() : 0;
      }
      vram.write32(addr, lo);
      vram.write32(addr + 4, hi);
    }
    const seen = new Map<string, number>();
    const mask = (1n << (version === 2 ? 49n : 57n)) - 1n;
    for (let i = 0; i < 20_000; i++) {
      const pdb = page() * 4096;
      const va = ((BigInt(rand()) << 32n) | BigInt(rand())) << BigInt(rand() % 26);
      const t = mmu.walk(pdb, i % 10 === 0 ? va : va & mask);
      const key = "fault" in t ? t.fault : t.level;
      seen.set(key, (seen.get(key) ?? 0) + 1);
      if (!("fault" in t)) {
        assert.ok([4096, 0x10000, 2 * MiB, 512 * MiB, 256 * GiB].includes(t.pageSize));
        assert.ok(typeof t.pa === "bigint" || Number.isSafeInteger(t.pa));
      }
      const a = mmu.access(pdb, (va & mask) & ~3n, i & 1 ? "write" : "read", 4);
      if ("pa" in a) assert.ok(a.pa >= 0 && a.pa + 4 <= vramSize);
    }
    // The garbage exercised deep walks and several outcomes, big or huge PTEs on both
    // sides of the alignment rule among them.
    assert.ok(seen.size >= 5, JSON.stringify([...seen]));
    assert.ok(seen.has("misaligned-pte"), JSON.stringify([...seen]));
    if (arch !== "Turing") assert.ok(seen.has("PD1"), JSON.stringify([...seen]));
  });
}
