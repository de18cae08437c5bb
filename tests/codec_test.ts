/**
 * MMU v2/v3 entry codecs: NVIDIA-derived vectors both ways, the facts §5.6
 * worked examples, hand-computed vectors for every field, error messages,
 * round-trip properties over random fields and random raw words.
 */

import assert from "node:assert/strict";
import { inspect } from "node:util";
import { mmu, v2, v3 } from "../mm/pagetable/mod.ts";
import { compileEntry, flag, uint } from "../mm/pagetable/fields.ts";
import { prng } from "../testing/prng.ts";
import { throwsNova } from "./util.ts";

type Fields = Record<string, unknown>;
type Entry = "pte" | "pde" | "dualPde";
interface Vector {
  mmu: 2 | 3;
  entry: Entry;
  fields: Fields;
  raw: string | [string, string];
}

// ---------------------------------------------------------------------------
// Helpers

const HALF_DEFAULTS: Record<2 | 3, Fields> = {
  2: { aperture: "invalid", vol: false, address: 0 },
  3: { aperture: "invalid", pcf: 0, address: 0 },
};

const DEFAULTS: Record<2 | 3, Record<Entry, Fields>> = {
  2: {
    pte: {
      valid: false,
      aperture: "video",
      vol: false,
      encrypted: false,
      privilege: false,
      readOnly: false,
      atomicDisable: false,
      address: 0,
      peerId: 0,
      comptagline: 0,
      kind: 0,
      reserved: 0n,
    },
    pde: { isPte: false, aperture: "invalid", vol: false, noAts: false, address: 0, reserved: 0n },
    dualPde: { isPte: false, big: {}, noAts: false, small: {}, reserved: 0n },
  },
  3: {
    pte: {
      valid: false,
      aperture: "video",
      pcf: 0,
      kind: 0,
      address: 0,
      peerId: 0,
      reserved: 0n,
    },
    pde: { isPte: false, aperture: "invalid", pcf: 0, address: 0, reserved: 0n },
    dualPde: { isPte: false, big: {}, small: {}, reserved: 0n },
  },
};

function safe(value: bigint): number | bigint {
  return value <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(value) : value;
}

/** Vector fields -> codec input: hex addresses to numbers/bigints, v2 "peer" -> "peerId". */
function normalize(fields: Fields): Fields {
  const out: Fields = {};
  for (const [key, value] of Object.entries(fields)) {
    if (key === "address") out.address = safe(BigInt(value as string | number | bigint));
    // The shared vectors spell the v2 peer index "peer"; the codecs call it peerId in both versions.
    else if (key === "peer") out.peerId = value;
    else if (key === "big" || key === "small") out[key] = normalize(value as Fields);
    else out[key] = value;
  }
  return out;
}

/** What decode must return for `fields`: every field, defaults filled, addresses normalized. */
function filled(version: 2 | 3, entry: Entry, fields: Fields): Fields {
  const f = normalize(fields);
  const out: Fields = { ...DEFAULTS[version][entry], ...f };
  if (entry === "dualPde") {
    out.big = { ...HALF_DEFAULTS[version], ...(f.big as Fields | undefined) };
    out.small = { ...HALF_DEFAULTS[version], ...(f.small as Fields | undefined) };
  }
  return out;
}

function encode(version: 2 | 3, entry: Entry, fields: Fields): bigint | [bigint, bigint] {
  const c = version === 2 ? v2 : v3;
  if (entry === "pte") return c.encodePte(fields);
  if (entry === "pde") return c.encodePde(fields);
  return c.encodeDualPde(fields);
}

function decode(version: 2 | 3, entry: Entry, raw: bigint | [bigint, bigint]): unknown {
  const c = version === 2 ? v2 : v3;
  if (entry === "dualPde") return c.decodeDualPde(raw as [bigint, bigint]);
  return entry === "pte" ? c.decodePte(raw as bigint) : c.decodePde(raw as bigint);
}

function parseRaw(raw: string | [string, string]): bigint | [bigint, bigint] {
  return typeof raw === "string" ? BigInt(raw) : [BigInt(raw[0]), BigInt(raw[1])];
}

/** Plain copy (drops the non-enumerable inspect hooks) for deepStrictEqual. */
function plain(value: unknown): unknown {
  return JSON.parse(
    JSON.stringify(value, (_k, v) => typeof v === "bigint" ? `${v}n` : v),
  );
}

function checkVector(v: Vector, label: string): void {
  const fields = normalize(v.fields);
  const raw = parseRaw(v.raw);
  const what = `${label} v${v.mmu} ${v.entry} ${JSON.stringify(v.fields)}`;
  assert.deepStrictEqual(encode(v.mmu, v.entry, fields), raw, `encode ${what}`);
  const decoded = decode(v.mmu, v.entry, raw);
  assert.deepStrictEqual(decoded, filled(v.mmu, v.entry, v.fields), `decode ${what}`);
  // Plain-data check: the decoded object equals a literal (inspect hooks are not enumerable).
  assert.deepStrictEqual(plain(decoded), plain(filled(v.mmu, v.entry, v.fields)));
}

function randomTools(seed: number) {
  const r = prng(seed);
  const int = (n: number) => Math.floor(r() * n);
  const bits = (n: number): bigint => {
    let v = 0n;
    for (let i = 0; i < n; i += 16) v = (v << 16n) | BigInt(int(0x10000));
    return v & ((1n << BigInt(n)) - 1n);
  };
  /** A 64-bit word, often sparse or dense so that every field sees zeros and ones. */
  const word = (): bigint => {
    const a = bits(64);
    switch (int(4)) {
      case 0:
        return a & bits(64) & bits(64);
      case 1:
        return a | bits(64) | bits(64);
      default:
        return a;
    }
  };
  const bool = () => r() < 0.5;
  /** Randomly a number (when safe) or a bigint, to exercise both input kinds. */
  const addr = (v: bigint): number | bigint =>
    bool() && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
  const maybe = <T>(v: T): T | undefined => (r() < 0.25 ? undefined : v);
  return { int, bits, word, bool, addr, maybe };
}

function prune(fields: Fields): Fields {
  return Object.fromEntries(Object.entries(fields).filter(([, v]) => v !== undefined));
}

const APERTURES_PTE = ["video", "peer", "sysCoherent", "sysNonCoherent"] as const;
const APERTURES_PDE = ["invalid", "video", "sysCoherent", "sysNonCoherent"] as const;

// ---------------------------------------------------------------------------
// Vectors

function loadVectors(url: URL): Vector[] | null {
  let text: string;
  try {
    text = Deno.readTextFileSync(url);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw e;
  }
  const data = JSON.parse(text) as { vectors: Vector[] };
  assert.ok(Array.isArray(data.vectors) && data.vectors.length > 0, `${url} has no vectors`);
  return data.vectors;
}

Deno.test("codec: in-repo NVIDIA-derived vectors encode and decode both ways", () => {
  const vectors = loadVectors(new URL("./vectors/mmu_entries.json", import.meta.url));
  assert.ok(vectors !== null, "tests/vectors/mmu_entries.json is missing");
  vectors.forEach((v, i) => checkVector(v, `tests/vectors #${i}`));
  const kinds = new Set(vectors.map((v) => `${v.mmu}:${v.entry}`));
  assert.equal(kinds.size, 6, "vectors cover PTE, PDE and dual PDE of both versions");
});

Deno.test("codec: shared vectors (../shared/vectors, when present) pass too", () => {
  // Repo root is tests/..; the shared folder sits beside it.
  const vectors = loadVectors(new URL("../../shared/vectors/mmu_entries.json", import.meta.url));
  if (vectors === null) return;
  vectors.forEach((v, i) => checkVector(v, `shared #${i}`));
  // The in-repo copy (re-indented by deno fmt) must hold the same vectors.
  const local = loadVectors(new URL("./vectors/mmu_entries.json", import.meta.url));
  assert.deepStrictEqual(
    local,
    vectors,
    "tests/vectors/mmu_entries.json differs from the shared copy",
  );
});

Deno.test("codec: facts §5.6 worked examples", () => {
  const page = 0x12345000;
  const table = 0x200000;
  // v2
  assert.equal(v2.encodePte({ valid: true, address: page }), 0x0000000001234501n);
  assert.equal(v2.encodePte({ valid: true, address: page, readOnly: true }), 0x0000000001234541n);
  assert.equal(v2.encodePte({ valid: true, address: page, kind: 6 }), 0x0600000001234501n);
  assert.equal(v2.encodePde({ aperture: "video", address: table }), 0x0000000000020002n);
  assert.equal(
    v2.encodePde({ aperture: "video", address: table, noAts: true }),
    0x0000000000020022n,
  );
  assert.deepStrictEqual(
    v2.encodeDualPde({ small: { aperture: "video", address: table } }),
    [0n, 0x0000000000020002n],
  );
  assert.deepStrictEqual(
    v2.encodeDualPde({ big: { aperture: "video", address: 0x200100 } }),
    [0x20012n, 0n],
  );
  // v3
  assert.equal(v3.encodePte({ valid: true, address: page }), 0x0000000012345001n);
  assert.equal(v3.encodePte({ valid: true, address: page, pcf: 0x04 }), 0x0000000012345021n);
  assert.equal(v3.encodePte({ valid: true, address: page, pcf: 0x08 }), 0x0000000012345041n);
  assert.equal(v3.encodePte({ valid: true, address: page, pcf: 0x0c }), 0x0000000012345061n);
  assert.equal(v3.encodePte({ valid: true, address: page, pcf: 0x10 }), 0x0000000012345081n);
  assert.equal(v3.encodePde({ aperture: "video", address: table }), 0x0000000000200002n);
  assert.equal(v3.encodePde({ aperture: "video", address: table, pcf: 2 }), 0x0000000000200012n);
  assert.deepStrictEqual(
    v3.encodeDualPde({ small: { aperture: "video", address: table } }),
    [0n, 0x0000000000200002n],
  );
  assert.deepStrictEqual(
    v3.encodeDualPde({ big: { aperture: "video", address: 0x200100 } }),
    [0x200102n, 0n],
  );
});

// Hand-computed from the header bit positions (not from the codec).
const OWN_VECTORS: Vector[] = [
  // v2 PTE: COMPTAGLINE 55:36 (Turing width, 20 bits).
  {
    mmu: 2,
    entry: "pte",
    fields: { valid: true, aperture: "video", address: "0x1000", comptagline: 0xabcde },
    raw: "0x00abcde000000101",
  },
  // v2 PTE: peer aperture, ADDRESS_VID_PEER 35:33.
  {
    mmu: 2,
    entry: "pte",
    fields: { valid: true, aperture: "peer", address: "0x5000", peerId: 7 },
    raw: "0x0000000e00000503",
  },
  // v2 PTE: peer with comptagline (both fields coexist).
  {
    mmu: 2,
    entry: "pte",
    fields: { valid: true, aperture: "peer", address: "0x1ffffff000", peerId: 1, comptagline: 1 },
    raw: "0x00000013ffffff03",
  },
  { mmu: 2, entry: "pte", fields: { valid: true, encrypted: true }, raw: "0x0000000000000011" },
  { mmu: 2, entry: "pte", fields: { vol: true }, raw: "0x0000000000000008" },
  { mmu: 2, entry: "pte", fields: { valid: true, kind: 0xff }, raw: "0xff00000000000001" },
  // v2 PTE: largest ADDRESS_SYS (46 bits << 12 = 2^58 - 4 KiB; decodes to a bigint).
  {
    mmu: 2,
    entry: "pte",
    fields: { valid: true, aperture: "sysNonCoherent", address: "0x3fffffffffff000" },
    raw: "0x003fffffffffff07",
  },
  // v2 PTE: largest ADDRESS_VID (2^37 - 4 KiB).
  {
    mmu: 2,
    entry: "pte",
    fields: { valid: true, address: "0x1ffffff000" },
    raw: "0x00000001ffffff01",
  },
  // v2 PDE: NO_ATS, VOL, IS_PTE.
  {
    mmu: 2,
    entry: "pde",
    fields: { aperture: "video", address: "0x1000", noAts: true },
    raw: "0x0000000000000122",
  },
  {
    mmu: 2,
    entry: "pde",
    fields: { aperture: "sysCoherent", address: "0x1000", vol: true },
    raw: "0x000000000000010c",
  },
  { mmu: 2, entry: "pde", fields: { isPte: true }, raw: "0x0000000000000001" },
  // v2 dual: big table 256 B aligned at 0x300: address bit 9 lands on bit 5 (the NO_ATS position).
  {
    mmu: 2,
    entry: "dualPde",
    fields: { big: { aperture: "video", address: "0x300" } },
    raw: ["0x0000000000000032", "0x0000000000000000"],
  },
  // v2 dual: NO_ATS with the big half invalid.
  {
    mmu: 2,
    entry: "dualPde",
    fields: { noAts: true, small: { aperture: "video", address: "0x1000" } },
    raw: ["0x0000000000000020", "0x0000000000000102"],
  },
  // v2 dual: VOL_BIG and VOL_SMALL with system apertures.
  {
    mmu: 2,
    entry: "dualPde",
    fields: {
      big: { aperture: "sysCoherent", address: "0x100", vol: true },
      small: { aperture: "sysNonCoherent", address: "0x2000", vol: true },
    },
    raw: ["0x000000000000001c", "0x000000000000020e"],
  },
  // v2 dual: VOL_BIG on an invalid big half (nouveau's sparse PD0).
  {
    mmu: 2,
    entry: "dualPde",
    fields: { big: { vol: true } },
    raw: ["0x0000000000000008", "0x0000000000000000"],
  },
  // v3 PTE: PEER_ID 63:61, KIND 11:8 max, PCF 7:3 max, ADDRESS_VID max.
  {
    mmu: 3,
    entry: "pte",
    fields: { valid: true, aperture: "peer", address: "0x3000", peerId: 7 },
    raw: "0xe000000000003003",
  },
  {
    mmu: 3,
    entry: "pte",
    fields: { valid: true, address: "0x1000", kind: 15 },
    raw: "0x0000000000001f01",
  },
  {
    mmu: 3,
    entry: "pte",
    fields: { valid: true, address: "0x1000", pcf: 0x1f },
    raw: "0x00000000000010f9",
  },
  {
    mmu: 3,
    entry: "pte",
    fields: { valid: true, address: "0xfffffff000" },
    raw: "0x000000fffffff001",
  },
  // v3 PTE: the big-page "no valid 4 KiB page" marker (VALID=0, PCF=3).
  { mmu: 3, entry: "pte", fields: { pcf: 3 }, raw: "0x0000000000000018" },
  // v3 PDE: IS_PTE, PCF 5:3 max.
  { mmu: 3, entry: "pde", fields: { isPte: true }, raw: "0x0000000000000001" },
  {
    mmu: 3,
    entry: "pde",
    fields: { aperture: "video", address: "0x2000", pcf: 7 },
    raw: "0x000000000000203a",
  },
  // v3 dual: PCF_BIG/PCF_SMALL, ADDRESS_BIG 256 B aligned, ADDRESS_SMALL max.
  {
    mmu: 3,
    entry: "dualPde",
    fields: {
      big: { aperture: "video", address: "0x100", pcf: 3 },
      small: { aperture: "sysNonCoherent", address: "0xffffffffff000", pcf: 1 },
    },
    raw: ["0x000000000000011a", "0x000ffffffffff00e"],
  },
];

Deno.test("codec: hand-computed vectors for every field", () => {
  OWN_VECTORS.forEach((v, i) => checkVector(v, `own #${i}`));
});

// ---------------------------------------------------------------------------
// Errors

Deno.test("codec: encode errors name the field, the value and the limit", () => {
  throwsNova(() => v2.encodePte({ kind: 256 }), "EINVAL", "kind", "0x100", "0xff");
  throwsNova(() => v3.encodePte({ kind: 16 }), "EINVAL", "kind", "0x10", "0xf");
  throwsNova(() => v3.encodePte({ pcf: 32 }), "EINVAL", "pcf", "0x20");
  throwsNova(() => v3.encodePde({ pcf: 8 }), "EINVAL", "pcf", "0x8");
  throwsNova(() => v2.encodePte({ peerId: 8, aperture: "peer" }), "EINVAL", "peerId", "0x8");
  throwsNova(() => v2.encodePte({ comptagline: 2 ** 20 }), "EINVAL", "comptagline", "0x100000");
  throwsNova(() => v2.encodePte({ kind: 1.5 }), "EINVAL", "kind", "1.5");
  throwsNova(() => v2.encodePte({ kind: -1 }), "EINVAL", "kind");
  // Misaligned and unrepresentable addresses.
  throwsNova(() => v2.encodePte({ address: 0x1234 }), "EINVAL", "0x1234", "aligned");
  throwsNova(() => v3.encodePde({ address: 0x1800 }), "EINVAL", "0x1800", "aligned");
  throwsNova(
    () => v2.encodeDualPde({ big: { aperture: "video", address: 0x180 } }),
    "EINVAL",
    "0x180",
    "0x100",
  );
  throwsNova(
    () => v2.encodePte({ address: 2 ** 37 }),
    "EINVAL",
    "0x2000000000",
    "ADDRESS_VID",
  );
  throwsNova(
    () => v3.encodePte({ address: 2 ** 40 }),
    "EINVAL",
    "0x10000000000",
    "ADDRESS_VID",
  );
  throwsNova(
    () => v3.encodePte({ aperture: "sysCoherent", address: 1n << 52n }),
    "EINVAL",
    "0x10000000000000",
  );
  throwsNova(() => v2.encodePte({ address: -4096 }), "EINVAL", "-4096");
  throwsNova(() => v2.encodePte({ address: 2 ** 60 }), "EINVAL", "address");
  // Fields that do not belong to the aperture.
  throwsNova(() => v2.encodePte({ peerId: 1 }), "EINVAL", "peerId", "peer");
  throwsNova(() => v3.encodePte({ peerId: 1, aperture: "sysCoherent" }), "EINVAL", "peerId");
  throwsNova(
    () => v2.encodePte({ aperture: "sysCoherent", comptagline: 1 }),
    "EINVAL",
    "comptagline",
    "ADDRESS_SYS",
  );
  throwsNova(
    () => v2.encodeDualPde({ noAts: true, big: { aperture: "video", address: 0x1000 } }),
    "EINVAL",
    "noAts",
  );
  throwsNova(() => v2.encodePde({ address: 0x1000 }), "EINVAL", "0x1000", "aperture");
  // Names and types.
  throwsNova(() => v2.encodePte({ aperture: "vram" as never }), "EINVAL", '"vram"');
  throwsNova(() => v3.encodePde({ aperture: "peer" as never }), "EINVAL", '"peer"');
  throwsNova(() => v2.encodePte({ readonly: true } as never), "EINVAL", '"readonly"');
  throwsNova(() => v3.encodeDualPde({ big: { vol: true } } as never), "EINVAL", '"vol"');
  throwsNova(() => v2.encodePte({ valid: 1 } as never), "EINVAL", "valid");
  throwsNova(() => v3.encodePte({ reserved: 1n }), "EINVAL", "reserved", "0x1");
  throwsNova(() => v2.encodePte({ reserved: 1n << 8n }), "EINVAL", "reserved", "0x100");
});

Deno.test("codec: reserved bits are accepted only where no field lives", () => {
  // Video PTE: 35:33 are free (ADDRESS_VID_PEER is only a peer field).
  assert.equal(v2.encodePte({ reserved: 7n << 33n }), 7n << 33n);
  assert.equal(v2.decodePte(7n << 33n).reserved, 7n << 33n);
  // System PTE: 55:54 are free (COMPTAGLINE is not a field there).
  const sys = (3n << 54n) | 4n;
  assert.equal(v2.decodePte(sys).reserved, 3n << 54n);
  assert.equal(v2.decodePte(sys).comptagline, 0);
  // v3 video PTE: ADDRESS bits 51:40 are reserved (ADDRESS_VID is 39:12).
  assert.equal(v3.decodePte(1n << 45n).reserved, 1n << 45n);
  assert.equal(v3.decodePte(1n << 45n).address, 0);
  assert.equal(v3.decodePte((1n << 45n) | 4n).address, 2 ** 45);
});

Deno.test("codec: decode rejects values that are not 64-bit words", () => {
  throwsNova(() => v2.decodePte(-1n), "EINVAL", "-0x1");
  throwsNova(() => v3.decodePte(1n << 64n), "EINVAL", "0x10000000000000000");
  throwsNova(() => v3.decodePde(1.5), "EINVAL", "1.5");
  throwsNova(() => v2.decodeDualPde([0n] as never), "EINVAL", "[low, high]");
  assert.equal(v2.decodePte(0x1234501).address, 0x12345000); // safe numbers are accepted
});

// ---------------------------------------------------------------------------
// Printing

Deno.test("codec: decoded entries print as one readable line", () => {
  const pte = v3.decodePte(0x12345681n);
  assert.equal(Deno.inspect(pte), "PTE v3 valid video 0x12345000 pcf=0x10 kind=0x6");
  assert.equal(inspect(pte), "PTE v3 valid video 0x12345000 pcf=0x10 kind=0x6");
  assert.equal(String(pte), "PTE v3 valid video 0x12345000 pcf=0x10 kind=0x6");
  assert.equal(
    String(v3.decodePte(0x18n)),
    "PTE v3 invalid video 0x0 pcf=0x3 (NO_VALID_4KB_PAGE) kind=0x0",
  );
  assert.equal(
    String(v2.decodePte(0x06000000000001e1n)),
    "PTE v2 valid video 0x1000 priv ro noAtomic kind=0x6",
  );
  assert.equal(String(v2.decodePde(0x20002n)), "PDE v2 video 0x200000");
  assert.equal(String(v2.decodePde(0n)), "PDE v2 invalid");
  assert.equal(String(v3.decodePde(0x200012n)), "PDE v3 video 0x200000 pcf=0x2");
  assert.equal(
    String(v2.decodeDualPde([0x1012n, 0x30002n])),
    "DualPDE v2 big=video 0x10100 small=video 0x300000",
  );
  assert.equal(
    String(v3.decodeDualPde([0n, 0x300012n])),
    "DualPDE v3 big=invalid small=video 0x300000 pcf=0x2",
  );
  assert.match(String(v2.decodePte(1n << 34n)), /reserved=0x400000000/);
  // Fields stay enumerable plain data; the hooks do not show up as keys.
  assert.deepStrictEqual(Object.keys(v3.decodePte(0n)), [
    "valid",
    "aperture",
    "pcf",
    "kind",
    "address",
    "peerId",
    "reserved",
  ]);
});

// ---------------------------------------------------------------------------
// Helpers for the mapper and walker

Deno.test("codec: vramPte / vramPde / vramDualPde agree with the field encoders", () => {
  for (const a of [0, 0x1000, 0x12345000, 2 ** 37 - 4096]) {
    assert.equal(v2.vramPte(a, { writable: true }), v2.encodePte({ valid: true, address: a }));
    assert.equal(
      v2.vramPte(a, { writable: false, kind: 6 }),
      v2.encodePte({ valid: true, address: a, readOnly: true, kind: 6 }),
    );
    assert.equal(v2.vramPde(a), v2.encodePde({ aperture: "video", address: a }));
    assert.deepStrictEqual(
      v2.vramDualPde({ big: a + 0x100, small: a }),
      v2.encodeDualPde({
        big: { aperture: "video", address: a + 0x100 },
        small: { aperture: "video", address: a },
      }),
    );
  }
  for (const a of [0, 0x1000, 0x12345000, 2 ** 40 - 4096]) {
    assert.equal(
      v3.vramPte(a, { writable: true }),
      v3.encodePte({ valid: true, address: a, pcf: 0x10 }),
    );
    assert.equal(
      v3.vramPte(a, { writable: false, kind: 6 }),
      v3.encodePte({ valid: true, address: a, pcf: 0x14, kind: 6 }),
    );
    assert.equal(v3.vramPde(a), v3.encodePde({ aperture: "video", address: a, pcf: 2 }));
    assert.deepStrictEqual(
      v3.vramDualPde({ big: a + 0x300, small: a }),
      v3.encodeDualPde({
        big: { aperture: "video", address: a + 0x300, pcf: 2 },
        small: { aperture: "video", address: a, pcf: 2 },
      }),
    );
  }
  // Literal values (facts §5.6, nouveau column).
  assert.equal(v2.vramPte(0x12345000, { writable: true }), 0x1234501n);
  assert.equal(v2.vramPte(0x12345000, { writable: false }), 0x1234541n);
  assert.equal(v3.vramPte(0x12345000, { writable: true }), 0x12345081n);
  assert.equal(v3.vramPte(0x12345000, { writable: false }), 0x123450a1n);
  assert.equal(v3.vramPde(0x200000), 0x200012n);
  assert.deepStrictEqual(v2.vramDualPde({}), [0n, 0n]);
  assert.deepStrictEqual(v3.vramDualPde({ small: 0x200000 }), [0n, 0x200012n]);
  // Errors.
  throwsNova(() => v2.vramPte(0x1001, { writable: true }), "EINVAL", "0x1001");
  throwsNova(() => v2.vramPte(2 ** 37, { writable: true }), "EINVAL", "0x2000000000");
  throwsNova(() => v3.vramPte(2 ** 40, { writable: true }), "EINVAL", "0x10000000000");
  throwsNova(() => v3.vramPte(0x1000, { writable: true, kind: 16 }), "EINVAL", "kind");
  throwsNova(() => v2.vramDualPde({ big: 0x180 }), "EINVAL", "0x180");
  throwsNova(() => v3.vramPde(-4096), "EINVAL", "-4096");
});

Deno.test("codec: pteInfo reads valid/aperture/address/writable/privileged", () => {
  assert.deepStrictEqual(v2.pteInfo(0x1234501n), {
    valid: true,
    aperture: "video",
    address: 0x12345000,
    writable: true,
    privileged: false,
  });
  assert.deepStrictEqual(
    v2.pteInfo(v2.encodePte({ valid: true, readOnly: true, privilege: true })),
    {
      valid: true,
      aperture: "video",
      address: 0,
      writable: false,
      privileged: true,
    },
  );
  // v3: PCF bit 2 = read-only, bit 1 = privileged (NVIDIA's table, facts D6).
  assert.equal(v3.pteInfo(v3.encodePte({ valid: true, pcf: 0x14 })).writable, false);
  assert.equal(v3.pteInfo(v3.encodePte({ valid: true, pcf: 0x10 })).writable, true);
  assert.equal(v3.pteInfo(v3.encodePte({ valid: true, pcf: 0x02 })).privileged, true);
  assert.equal(v3.pteInfo(v3.encodePte({ valid: true, pcf: 0x10 })).privileged, false);
  // An invalid PTE is neither writable nor privileged, whatever its PCF says.
  assert.deepStrictEqual(v3.pteInfo(0x18n), {
    valid: false,
    aperture: "video",
    address: 0,
    writable: false,
    privileged: false,
  });
  const sys = v3.encodePte({ valid: true, aperture: "sysCoherent", address: 0xabcdef000000n });
  assert.deepStrictEqual(v3.pteInfo(sys).address, 0xabcdef000000);
  const big = v2.encodePte({ valid: true, aperture: "sysCoherent", address: 0x3fffffffffff000n });
  assert.equal(v2.pteInfo(big).address, 0x3fffffffffff000n);
});

Deno.test("codec: no-small-pages marker and invalid entries", () => {
  assert.equal(v2.noSmallPte, v2.encodePte({ privilege: true }));
  assert.equal(v3.noSmallPte, v3.encodePte({ pcf: 3 }));
  assert.ok(v2.isNoSmallPte(v2.noSmallPte) && v3.isNoSmallPte(v3.noSmallPte));
  assert.ok(!v2.isNoSmallPte(0x21n) && !v2.isNoSmallPte(0n) && !v2.isNoSmallPte(0x8n));
  assert.ok(!v3.isNoSmallPte(0x19n) && !v3.isNoSmallPte(0x10n) && !v3.isNoSmallPte(0x58n));
  assert.ok(v3.isNoSmallPte(0x12345018n)); // address bits do not matter
  assert.equal(v2.invalidPde, 0n);
  assert.equal(v3.invalidPde, 0n);
  assert.equal(v2.decodePde(v2.invalidPde).aperture, "invalid");
  assert.equal(mmu.v2, v2);
  assert.equal(mmu.v3, v3);
});

// ---------------------------------------------------------------------------
// Properties

function randomV2(t: ReturnType<typeof randomTools>, entry: Entry): Fields {
  if (entry === "pte") {
    const ap = t.int(4);
    const sys = ap >= 2;
    return prune({
      valid: t.maybe(t.bool()),
      aperture: ap === 0 ? t.maybe("video") : APERTURES_PTE[ap],
      vol: t.maybe(t.bool()),
      encrypted: t.maybe(t.bool()),
      privilege: t.maybe(t.bool()),
      readOnly: t.maybe(t.bool()),
      atomicDisable: t.maybe(t.bool()),
      address: t.maybe(t.addr(t.bits(sys ? 46 : 25) << 12n)),
      peerId: ap === 1 ? t.maybe(t.int(8)) : undefined,
      comptagline: sys ? undefined : t.maybe(t.int(2 ** 20)),
      kind: t.maybe(t.int(256)),
    });
  }
  const half = (shift: number): Fields => {
    const ap = t.int(4);
    const width = ap >= 2 ? 58 - shift : 37 - shift;
    return prune({
      aperture: APERTURES_PDE[ap],
      vol: t.maybe(t.bool()),
      address: ap === 0 ? undefined : t.maybe(t.addr(t.bits(width) << BigInt(shift))),
    });
  };
  if (entry === "pde") {
    return prune({ isPte: t.maybe(t.bool()), noAts: t.maybe(t.bool()), ...half(12) });
  }
  const big = t.maybe(half(8));
  const bigInvalid = big === undefined || big.aperture === "invalid";
  return prune({
    isPte: t.maybe(t.bool()),
    big,
    noAts: bigInvalid ? t.maybe(t.bool()) : undefined,
    small: t.maybe(half(12)),
  });
}

function randomV3(t: ReturnType<typeof randomTools>, entry: Entry): Fields {
  if (entry === "pte") {
    const ap = t.int(4);
    return prune({
      valid: t.maybe(t.bool()),
      aperture: APERTURES_PTE[ap],
      pcf: t.maybe(t.int(32)),
      kind: t.maybe(t.int(16)),
      address: t.maybe(t.addr(t.bits(ap === 0 ? 28 : 40) << 12n)),
      peerId: ap === 1 ? t.maybe(t.int(8)) : undefined,
    });
  }
  const half = (shift: number): Fields =>
    prune({
      aperture: t.maybe(APERTURES_PDE[t.int(4)]),
      pcf: t.maybe(t.int(8)),
      address: t.maybe(t.addr(t.bits(52 - shift) << BigInt(shift))),
    });
  if (entry === "pde") return prune({ isPte: t.maybe(t.bool()), ...half(12) });
  return prune({ isPte: t.maybe(t.bool()), big: t.maybe(half(8)), small: t.maybe(half(12)) });
}

Deno.test("codec: decode(encode(fields)) = fields with defaults, 20000 random entries", () => {
  const t = randomTools(0x5eed);
  let n = 0;
  for (const version of [2, 3] as const) {
    for (const entry of ["pte", "pde", "dualPde"] as const) {
      for (let i = 0; i < 3400; i++) {
        const fields = version === 2 ? randomV2(t, entry) : randomV3(t, entry);
        const raw = encode(version, entry, fields);
        const expected = filled(version, entry, fields);
        assert.deepStrictEqual(
          decode(version, entry, raw),
          expected,
          JSON.stringify(plain(fields)),
        );
        n++;
      }
    }
  }
  assert.ok(n >= 20000);
});

Deno.test("codec: random raw words decode without throwing and re-encode exactly", () => {
  const t = randomTools(0xc0dec);
  for (let i = 0; i < 20000; i++) {
    const lo = t.word();
    const hi = t.word();
    for (const c of [v2, v3]) {
      const pte = c.decodePte(lo);
      assert.equal(c.encodePte(pte as never), lo, `v${c.version} PTE ${lo.toString(16)}`);
      const pde = c.decodePde(lo);
      assert.equal(c.encodePde(pde as never), lo, `v${c.version} PDE ${lo.toString(16)}`);
      const dual = c.decodeDualPde([lo, hi]);
      assert.deepStrictEqual(c.encodeDualPde(dual as never), [lo, hi]);
      assert.equal(typeof String(pte), "string");
      assert.equal(typeof String(dual), "string");
      const info = c.pteInfo(lo);
      assert.equal(info.valid, pte.valid);
      assert.equal(info.aperture, pte.aperture);
      assert.equal(info.address, pte.address);
    }
  }
  // Extremes.
  for (const c of [v2, v3]) {
    for (const w of [0n, (1n << 64n) - 1n, 1n << 63n, 1n]) {
      assert.equal(c.encodePte(c.decodePte(w) as never), w);
      assert.equal(c.encodePde(c.decodePde(w) as never), w);
      assert.deepStrictEqual(c.encodeDualPde(c.decodeDualPde([w, w]) as never), [w, w]);
    }
  }
});

// ---------------------------------------------------------------------------
// Field tables

Deno.test("codec: decoded keys are the field tables' names, in table order", () => {
  for (const c of [v2, v3]) {
    const names = (t: typeof c.tables.pte) => [...t.items.map((i) => i.name), "reserved"];
    assert.deepStrictEqual(Object.keys(c.decodePte(0n)), names(c.tables.pte));
    assert.deepStrictEqual(Object.keys(c.decodePde(0n)), names(c.tables.pde));
    const dual = c.decodeDualPde([0n, 0n]);
    assert.deepStrictEqual(Object.keys(dual), names(c.tables.dualPde));
    for (const item of c.tables.dualPde.items) {
      if (item.kind !== "group") continue;
      const half = (dual as unknown as Record<string, object>)[item.name];
      assert.deepStrictEqual(Object.keys(half), item.fields.map((f) => f.name));
    }
  }
});

Deno.test("codec: a field table with overlapping or misplaced fields fails to compile", () => {
  const table = (items: Parameters<typeof compileEntry>[0]["items"]) => ({
    title: "PTE t",
    what: "t PTE",
    words: 1 as const,
    items,
  });
  throwsNova(
    () => compileEntry(table([uint("a", 3, 0), uint("b", 4, 2)])),
    "EINVAL",
    "b",
    "overlaps",
  );
  throwsNova(() => compileEntry(table([uint("a", 64, 60)])), "EINVAL", "a", "64:60");
  throwsNova(() => compileEntry(table([flag("a", 0), flag("a", 1)])), "EINVAL", "duplicate");
  throwsNova(
    () => compileEntry(table([flag("a", 0, { when: { field: "nope", is: ["x"] } })])),
    "EINVAL",
    "nope",
  );
  const ok = compileEntry(table([flag("valid", 0), uint("kind", 7, 4, { print: "always" })]));
  assert.equal(ok.encode({ valid: true, kind: 6 }), 0x61n);
  assert.equal(String(ok.decodeWords([0x61n])), "PTE t kind=0x6");
  assert.deepStrictEqual(ok.decodeWords([0x102n]).reserved, 0x102n);
});

Deno.test("codec: a field set where its condition does not hold names the condition", () => {
  throwsNova(
    () => v2.encodePte({ aperture: "sysCoherent", comptagline: 1 }),
    "EINVAL",
    'needs aperture "video" or "peer", not "sysCoherent"',
    "COMPTAGLINE (55:36) overlaps ADDRESS_SYS (53:8)",
  );
  throwsNova(
    () => v2.encodePde({ address: 0x1000 }),
    "EINVAL",
    'v2 PDE address 0x1000 needs aperture "video", "sysCoherent" or "sysNonCoherent", not "invalid"',
  );
});
