/**
 * The snapshot file: one gzip stream (Deno's built-in `CompressionStream`)
 * holding, uncompressed,
 *
 * | bytes          | what                                                            |
 * | -------------- | --------------------------------------------------------------- |
 * | 0..8           | magic `NVMMSNAP`                                                |
 * | 8..12          | header length H (u32, little-endian)                            |
 * | 12..12+H       | the JSON header (UTF-8)                                         |
 * | registers      | `registers.count` pairs of u32 (offset, value), offsets rising  |
 * | VRAM           | each range's bytes, in the order of the header's `vram` list    |
 *
 * The header is self-describing: `format`, `version`, `source`, `chip`,
 * `state`, `addressSpaces`, `registers: { count, crc32 }`, and the VRAM
 * directory `vram: [{ addr, length, offset, why, crc32 }]` (`offset` counts
 * from the start of the VRAM section), plus `totalBytes`, the uncompressed
 * size of the whole body. CRC-32 (IEEE, as gzip's) guards each payload.
 *
 * Reading refuses, with a NovaError naming the byte offset (in the
 * uncompressed body unless it says "compressed") and the reason, anything
 * that is not exactly such a file: a wrong magic or newer version, a header
 * whose fields have the wrong type, lengths that do not add up, ranges out of
 * order or overlapping, a checksum mismatch, a truncated or corrupt gzip
 * stream, trailing data. Nothing is allocated before its length has been
 * checked against the bytes that remain and the `maxBytes` limit; the
 * decompression stops as soon as the output passes the declared total.
 *
 * @module
 */

import { describe, fail, formatSize, hex, NovaError } from "../errors.ts";
import { interruptPoint } from "../mmio.ts";
import { checkBytes, checkObject, checkOptions, checkUint } from "../validate.ts";
import {
  type Snapshot,
  SNAPSHOT_FORMAT,
  SNAPSHOT_VERSION,
  type SnapshotAddressSpace,
  type SnapshotChip,
  type SnapshotSource,
  type SnapshotVramRange,
} from "./types.ts";

/** The 8 magic bytes at the start of the uncompressed body. */
export const SNAPSHOT_MAGIC = "NVMMSNAP";

/** The longest JSON header accepted (a header is a few KiB; this is a sanity bound). */
export const MAX_HEADER_BYTES = 16 * 2 ** 20;

/** Default limit on the uncompressed size a reader accepts (`maxBytes`). */
export const DEFAULT_MAX_SNAPSHOT_BYTES = 2 ** 31;

/** Most VRAM ranges one file may list. */
export const MAX_VRAM_RANGES = 1_000_000;

const PREFIX = 12;
const encoder = new TextEncoder();

// ---------------------------------------------------------------------------------------------
// CRC-32 (IEEE 802.3, reflected, polynomial 0xEDB88320: the one gzip uses, RFC 1952 §8).

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/**
 * CRC-32 (IEEE, as gzip and PNG) of `bytes`.
 *
 * @example
 * ```ts
 * crc32(new TextEncoder().encode("123456789")); // 0xcbf43926
 * ```
 */
export function crc32(bytes: Uint8Array): number {
  if (!(bytes instanceof Uint8Array)) {
    fail("EINVAL", `crc32 takes a Uint8Array, not ${describe(bytes)}`);
  }
  let c = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) {
    c = CRC_TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
    if ((i & 0xfffff) === 0xfffff) interruptPoint();
  }
  return (c ^ 0xffffffff) >>> 0;
}

// ---------------------------------------------------------------------------------------------
// Encoding.

/** The JSON header as written (see the module documentation). */
interface FileHeader {
  format: string;
  version: number;
  source: SnapshotSource;
  chip: SnapshotChip;
  state: Record<string, unknown>;
  addressSpaces: SnapshotAddressSpace[];
  registers: { count: number; crc32: number };
  vram: { addr: number; length: number; offset: number; why: string; crc32: number }[];
  totalBytes: number;
}

/** Checks the in-memory model before writing: what a reader would refuse is refused here. */
function checkModel(s: Snapshot): void {
  checkObject(s, "snapshot");
  if (s.format !== SNAPSHOT_FORMAT) {
    fail(
      "EINVAL",
      `snapshot.format is ${describe(s.format)}, not ${JSON.stringify(SNAPSHOT_FORMAT)}`,
    );
  }
  if (!(s.registers instanceof Map)) {
    fail(
      "EINVAL",
      `snapshot.registers must be a Map of offset to value, not ${describe(s.registers)}`,
    );
  }
  for (const [o, v] of s.registers) {
    if (!Number.isInteger(o) || o < 0 || o > 0xffffffff || o % 4 !== 0) {
      fail("EINVAL", `snapshot register offset ${describe(o)} is not a 4-byte aligned u32`);
    }
    if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) {
      fail("EINVAL", `snapshot register ${hex(o)} value ${describe(v)} is not a u32`);
    }
  }
  if (!Array.isArray(s.vram)) fail("EINVAL", `snapshot.vram must be an array`);
  let end = 0;
  for (const [i, r] of s.vram.entries()) {
    checkObject(r, `snapshot.vram[${i}]`);
    checkUint(r.addr, `snapshot.vram[${i}].addr`);
    checkBytes(r.data, `snapshot.vram[${i}].data`);
    if (r.addr % 4 !== 0 || r.data.length % 4 !== 0 || r.data.length === 0) {
      fail(
        "EINVAL",
        `snapshot.vram[${i}] at ${hex(r.addr)} +${
          hex(r.data.length)
        }: address and length must be non-zero multiples of 4`,
      );
    }
    if (r.addr < end) {
      fail(
        "EINVAL",
        `snapshot.vram[${i}] at ${hex(r.addr)} starts before the end ${
          hex(end)
        } of the range before it (sorted, no overlaps)`,
      );
    }
    end = r.addr + r.data.length;
  }
}

/**
 * The snapshot as the bytes of a file: the uncompressed body (magic, header,
 * registers, VRAM) gzip-compressed.
 *
 * @example
 * ```ts
 * import { SNAPSHOT_FORMAT, SNAPSHOT_VERSION } from "./types.ts";
 * const bytes = await encodeSnapshot({
 *   format: SNAPSHOT_FORMAT,
 *   version: SNAPSHOT_VERSION,
 *   source: { kind: "sim", spec: "sim:ga102", takenAt: new Date().toISOString(), tool: "novamm" },
 *   chip: { boot0: 0, boot42: 0, pci: null, barSizes: { bar0: 1 << 24, bar1: 1 << 28 }, vramSize: 1 << 30 },
 *   state: {},
 *   registers: new Map([[0x0, 0x172000a1]]),
 *   vram: [],
 *   addressSpaces: [],
 * });
 * (await decodeSnapshot(bytes)).registers.get(0); // 0x172000a1
 * ```
 */
export async function encodeSnapshot(s: Snapshot): Promise<Uint8Array> {
  checkModel(s);
  const regs = new Uint8Array(s.registers.size * 8);
  const rv = new DataView(regs.buffer);
  const sorted = [...s.registers].sort((a, b) => a[0] - b[0]);
  sorted.forEach(([o, v], i) => {
    rv.setUint32(i * 8, o, true);
    rv.setUint32(i * 8 + 4, v, true);
  });
  let offset = 0;
  const vram = s.vram.map((r) => {
    const e = {
      addr: r.addr,
      length: r.data.length,
      offset,
      why: String(r.why),
      crc32: crc32(r.data),
    };
    offset += r.data.length;
    return e;
  });
  const header: FileHeader = {
    format: SNAPSHOT_FORMAT,
    version: SNAPSHOT_VERSION,
    source: s.source,
    chip: s.chip,
    state: s.state,
    addressSpaces: s.addressSpaces,
    registers: { count: sorted.length, crc32: crc32(regs) },
    vram,
    totalBytes: 0,
  };
  // totalBytes depends on the header's own length: settle it (a digit more at most twice).
  // The header is padded with spaces (JSON whitespace) so that the payloads start 8-byte
  // aligned: a reader can view register pairs and VRAM words in place.
  const padded = (n: number) => Math.ceil((PREFIX + n) / 8) * 8 - PREFIX;
  let json = new Uint8Array(0);
  let total = 0;
  for (let k = 0;; k++) {
    header.totalBytes = total;
    json = encoder.encode(JSON.stringify(header));
    const next = PREFIX + padded(json.length) + regs.length + offset;
    if (next === total) break;
    if (k === 8) {
      fail("EIO", `the snapshot header size does not settle (${total} vs ${next} bytes)`);
    }
    total = next;
  }
  const head = new Uint8Array(padded(json.length)).fill(0x20);
  head.set(json);
  if (head.length > MAX_HEADER_BYTES) {
    fail(
      "EOVERFLOW",
      `the snapshot header is ${formatSize(head.length)}, over the ${
        formatSize(MAX_HEADER_BYTES)
      } a reader accepts`,
      "capture fewer VRAM ranges (they are listed one by one in the header)",
    );
  }
  const prefix = new Uint8Array(PREFIX);
  prefix.set(encoder.encode(SNAPSHOT_MAGIC));
  new DataView(prefix.buffer).setUint32(8, head.length, true);
  const parts: Uint8Array[] = [prefix, head, regs, ...s.vram.map((r) => r.data)];
  const stream = new Blob(parts as BlobPart[]).stream().pipeThrough(
    new CompressionStream("gzip"),
  );
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

// ---------------------------------------------------------------------------------------------
// Decoding.

/** Options for {@linkcode decodeSnapshot}. */
export interface DecodeSnapshotOptions {
  /** The file name, for messages. */
  path?: string;
  /** Largest uncompressed body accepted, in bytes (default 2 GiB). */
  maxBytes?: number;
}

const DECODE_OPTIONS = { path: "string", maxBytes: "number" } as const;

/** Refuses the file: `at` is the byte offset in the uncompressed body. */
function bad(where: string, at: number, why: string): never {
  return fail(
    "EINVAL",
    `${where}: byte ${at} (${hex(at)}): ${why}`,
    "the file is not a whole novamm snapshot",
  );
}

/**
 * Gunzips `bytes`, stopping with an error as soon as more than `limit`
 * bytes come out; `onPrefix` sees the output once at least `PREFIX` bytes
 * (and again with the header) are there and may lower the limit.
 */
async function gunzip(
  bytes: Uint8Array,
  where: string,
  limits: { max: number; headerLimit: (head: Uint8Array) => number | null },
): Promise<Uint8Array> {
  if (bytes.length < 18 || bytes[0] !== 0x1f || bytes[1] !== 0x8b) {
    return bytes.length < 2 || bytes[0] !== 0x1f || bytes[1] !== 0x8b
      ? fail(
        "EINVAL",
        `${where}: compressed byte 0: not a gzip stream (starts ${
          [...bytes.subarray(0, 4)].map((b) => b.toString(16).padStart(2, "0")).join(" ") || "empty"
        }, want 1f 8b)`,
        "a novamm snapshot is gzip-compressed: was this file written by `deno task snapshot`?",
      )
      : fail(
        "EINVAL",
        `${where}: compressed byte ${bytes.length}: the file ends inside the gzip header`,
      );
  }
  const ds = new DecompressionStream("gzip");
  const writer = ds.writable.getWriter();
  const reader = ds.readable.getReader();
  const CHUNK = 1 << 16;
  let fed = 0;
  // Feed in chunks so that an error can be placed near its compressed offset.
  const feeding = (async () => {
    for (; fed < bytes.length; fed = Math.min(bytes.length, fed + CHUNK)) {
      await writer.write(bytes.slice(fed, Math.min(bytes.length, fed + CHUNK)));
    }
    await writer.close();
  })();
  feeding.catch(() => {}); // surfaced through the reader
  const chunks: Uint8Array[] = [];
  let total = 0;
  let limit = limits.max;
  let headerSeen = false;
  let head: Uint8Array = new Uint8Array(0);
  let need = PREFIX;
  // Once the header has declared the total (checked against maxBytes), one buffer of that size.
  let out: Uint8Array | null = null;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      total += value.length;
      if (out === null) chunks.push(value);
      else if (total <= limit) out.set(value, total - value.length);
      if (!headerSeen && total >= need) {
        // The header's own checks (magic, version, declared total against maxBytes) come first.
        // Joined only once the bytes it needs are there (never once per chunk of a long header).
        head = concat(chunks, total);
        const declared = limits.headerLimit(head);
        if (declared !== null) {
          headerSeen = true;
          limit = declared;
          if (total <= limit) {
            out = new Uint8Array(limit);
            out.set(head);
            chunks.length = 0;
          }
        } else {
          need = PREFIX + new DataView(head.buffer, head.byteOffset, PREFIX).getUint32(8, true);
        }
      }
      if (total > limit) {
        await reader.cancel().catch(() => {});
        return fail(
          "EINVAL",
          `${where}: byte ${limit} (${hex(limit)}): the decompressed data goes on past ${
            headerSeen ? "the total the header declares" : "the limit"
          } (${limit} bytes)`,
          headerSeen
            ? "the file has trailing data or a corrupt header"
            : "raise maxBytes if the snapshot is really this big",
        );
      }
      interruptPoint();
    }
  } catch (e) {
    await reader.cancel().catch(() => {});
    if (e instanceof NovaError) throw e;
    return fail(
      "EINVAL",
      `${where}: compressed byte ${
        Math.min(fed, bytes.length)
      } of ${bytes.length} (decompressed ${total}): the gzip stream is truncated or corrupt (${
        e instanceof Error ? e.message : String(e)
      })`,
      "the file was cut short or damaged: take the snapshot again",
    );
  }
  return out !== null ? out.subarray(0, total) : concat(chunks, total);
}

function concat(chunks: Uint8Array[], total: number): Uint8Array {
  if (chunks.length === 1) return chunks[0];
  const out = new Uint8Array(total);
  let o = 0;
  for (const c of chunks) {
    out.set(c, o);
    o += c.length;
  }
  return out;
}

/** Type checks on the parsed header, each naming the field. */
class HeaderReader {
  constructor(readonly where: string, readonly at: number) {}
  no(field: string, want: string, got: unknown): never {
    return bad(this.where, this.at, `header field ${field} must be ${want}, not ${describe(got)}`);
  }
  obj(v: unknown, field: string): Record<string, unknown> {
    if (v === null || typeof v !== "object" || Array.isArray(v)) this.no(field, "an object", v);
    return v as Record<string, unknown>;
  }
  str(v: unknown, field: string, max = 4096): string {
    if (typeof v !== "string" || v.length > max) {
      this.no(field, `a string of at most ${max} characters`, v);
    }
    return v as string;
  }
  uint(v: unknown, field: string, max = Number.MAX_SAFE_INTEGER): number {
    if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 0 || v > max) {
      this.no(field, `an integer in 0..${max}`, v);
    }
    return v as number;
  }
  u32(v: unknown, field: string): number {
    return this.uint(v, field, 0xffffffff);
  }
  nullable<T>(v: unknown, f: (v: unknown) => T): T | null {
    return v === null ? null : f(v);
  }
}

function readSource(h: HeaderReader, v: unknown): SnapshotSource {
  const o = h.obj(v, "source");
  const kinds = ["sim", "pci", "mmiotrace", "snap"] as const;
  if (!kinds.includes(o.kind as typeof kinds[number])) h.no("source.kind", kinds.join("|"), o.kind);
  const s: SnapshotSource = {
    kind: o.kind as SnapshotSource["kind"],
    spec: h.str(o.spec, "source.spec"),
    takenAt: h.str(o.takenAt, "source.takenAt"),
    tool: h.str(o.tool, "source.tool"),
  };
  if (o.comment !== undefined) s.comment = h.str(o.comment, "source.comment", 65536);
  return s;
}

function readChip(h: HeaderReader, v: unknown): SnapshotChip {
  const o = h.obj(v, "chip");
  const bars = h.obj(o.barSizes, "chip.barSizes");
  const barSizes: SnapshotChip["barSizes"] = {
    bar0: h.uint(bars.bar0, "chip.barSizes.bar0"),
    bar1: h.uint(bars.bar1, "chip.barSizes.bar1"),
  };
  if (bars.bar2 !== undefined) barSizes.bar2 = h.uint(bars.bar2, "chip.barSizes.bar2");
  const pci = h.nullable(o.pci, (p) => {
    const q = h.obj(p, "chip.pci");
    return {
      bdf: h.nullable(q.bdf, (b) => h.str(b, "chip.pci.bdf", 64)),
      vendor: h.uint(q.vendor, "chip.pci.vendor", 0xffff),
      device: h.uint(q.device, "chip.pci.device", 0xffff),
      subsystemVendor: h.nullable(
        q.subsystemVendor,
        (x) => h.uint(x, "chip.pci.subsystemVendor", 0xffff),
      ),
      subsystemDevice: h.nullable(
        q.subsystemDevice,
        (x) => h.uint(x, "chip.pci.subsystemDevice", 0xffff),
      ),
    };
  });
  return {
    boot0: h.u32(o.boot0, "chip.boot0"),
    boot42: h.u32(o.boot42, "chip.boot42"),
    pci,
    barSizes,
    vramSize: h.uint(o.vramSize, "chip.vramSize", 2 ** 48),
  };
}

function readSpaces(h: HeaderReader, v: unknown): SnapshotAddressSpace[] {
  if (!Array.isArray(v) || v.length > 65536) h.no("addressSpaces", "an array of at most 65536", v);
  return (v as unknown[]).map((x, i) => {
    const o = h.obj(x, `addressSpaces[${i}]`);
    if (o.mmuVersion !== 2 && o.mmuVersion !== 3) {
      h.no(`addressSpaces[${i}].mmuVersion`, "2 or 3", o.mmuVersion);
    }
    return {
      name: h.str(o.name, `addressSpaces[${i}].name`, 256),
      pdb: h.uint(o.pdb, `addressSpaces[${i}].pdb`, 2 ** 52),
      mmuVersion: o.mmuVersion as 2 | 3,
      instanceBlock: h.nullable(
        o.instanceBlock,
        (b) => h.uint(b, `addressSpaces[${i}].instanceBlock`, 2 ** 52),
      ),
    };
  });
}

/** Parses magic + header; null while fewer bytes than the header are there. */
function parseHeader(
  body: Uint8Array,
  where: string,
  maxBytes: number,
): { header: FileHeader; headerEnd: number } | null {
  if (body.length < PREFIX) return null;
  const magic = new TextDecoder().decode(body.subarray(0, 8));
  if (magic !== SNAPSHOT_MAGIC) {
    bad(
      where,
      0,
      `wrong magic ${JSON.stringify(magic)} (want ${
        JSON.stringify(SNAPSHOT_MAGIC)
      }): not a novamm snapshot`,
    );
  }
  const len = new DataView(body.buffer, body.byteOffset, body.byteLength).getUint32(8, true);
  if (len > MAX_HEADER_BYTES || len < 2) {
    bad(where, 8, `header length ${len} is outside 2..${MAX_HEADER_BYTES}`);
  }
  if (body.length < PREFIX + len) return null;
  let raw: unknown;
  try {
    raw = JSON.parse(
      new TextDecoder("utf-8", { fatal: true }).decode(body.subarray(PREFIX, PREFIX + len)),
    );
  } catch (e) {
    return bad(
      where,
      PREFIX,
      `the header is not UTF-8 JSON (${e instanceof Error ? e.message : e})`,
    );
  }
  const h = new HeaderReader(where, PREFIX);
  const o = h.obj(raw, "(the header)");
  if (o.format !== SNAPSHOT_FORMAT) h.no("format", JSON.stringify(SNAPSHOT_FORMAT), o.format);
  const version = h.uint(o.version, "version", 2 ** 31);
  if (version < 1 || version > SNAPSHOT_VERSION) {
    bad(
      where,
      PREFIX,
      `format version ${version} is not one this novamm reads (1..${SNAPSHOT_VERSION}): written by a newer novamm?`,
    );
  }
  const total = h.uint(o.totalBytes, "totalBytes");
  if (total > maxBytes) {
    bad(
      where,
      PREFIX,
      `the header declares ${total} bytes (${formatSize(total)}), over the limit of ${maxBytes} (${
        formatSize(maxBytes)
      })`,
    );
  }
  const regs = h.obj(o.registers, "registers");
  const count = h.uint(regs.count, "registers.count", 2 ** 26);
  const regCrc = h.u32(regs.crc32, "registers.crc32");
  if (!Array.isArray(o.vram) || o.vram.length > MAX_VRAM_RANGES) {
    h.no("vram", `an array of at most ${MAX_VRAM_RANGES} ranges`, o.vram);
  }
  const vram: FileHeader["vram"] = [];
  let expectOffset = 0;
  let end = 0;
  for (const [i, x] of (o.vram as unknown[]).entries()) {
    const e = h.obj(x, `vram[${i}]`);
    const r = {
      addr: h.uint(e.addr, `vram[${i}].addr`, 2 ** 52),
      length: h.uint(e.length, `vram[${i}].length`, maxBytes),
      offset: h.uint(e.offset, `vram[${i}].offset`),
      why: h.str(e.why, `vram[${i}].why`, 1024),
      crc32: h.u32(e.crc32, `vram[${i}].crc32`),
    };
    if (r.addr % 4 !== 0 || r.length % 4 !== 0 || r.length === 0) {
      bad(
        where,
        PREFIX,
        `vram[${i}] at ${hex(r.addr)} +${hex(r.length)}: not a non-empty 4-byte aligned range`,
      );
    }
    if (r.offset !== expectOffset) {
      bad(
        where,
        PREFIX,
        `vram[${i}].offset is ${r.offset}, want ${expectOffset} (ranges are stored back to back)`,
      );
    }
    if (r.addr < end) {
      bad(
        where,
        PREFIX,
        `vram[${i}] at ${hex(r.addr)} overlaps or precedes the range before it (ends ${hex(end)})`,
      );
    }
    end = r.addr + r.length;
    expectOffset += r.length;
    vram.push(r);
  }
  const want = PREFIX + len + count * 8 + expectOffset;
  if (total !== want) {
    bad(
      where,
      PREFIX,
      `totalBytes is ${total}, but the header (${len}), ${count} registers and ${vram.length} VRAM ranges (${expectOffset} bytes) make ${want}`,
    );
  }
  const header: FileHeader = {
    format: SNAPSHOT_FORMAT,
    version,
    source: readSource(h, o.source),
    chip: readChip(h, o.chip),
    state: h.obj(o.state, "state"),
    addressSpaces: readSpaces(h, o.addressSpaces),
    registers: { count, crc32: regCrc },
    vram,
    totalBytes: total,
  };
  return { header, headerEnd: PREFIX + len };
}

/**
 * Reads a snapshot from the bytes of a file (see the module documentation
 * for what is refused, and how).
 *
 * @example
 * ```ts
 * try {
 *   await decodeSnapshot(new Uint8Array([1, 2, 3]), { path: "x.snap" });
 * } catch (e) {
 *   console.log(String(e)); // "EINVAL: x.snap: compressed byte 0: not a gzip stream ..."
 * }
 * ```
 */
export async function decodeSnapshot(
  bytes: Uint8Array,
  options: DecodeSnapshotOptions = {},
): Promise<Snapshot> {
  checkBytes(bytes, "snapshot bytes");
  checkOptions(options, DECODE_OPTIONS, "decodeSnapshot options");
  const maxBytes = options.maxBytes ?? DEFAULT_MAX_SNAPSHOT_BYTES;
  checkUint(maxBytes, "decodeSnapshot maxBytes");
  const where = options.path ?? "snapshot";
  let parsed: { header: FileHeader; headerEnd: number } | null = null;
  const body = await gunzip(bytes, where, {
    max: maxBytes,
    headerLimit: (head) => {
      parsed = parseHeader(head, where, maxBytes);
      return parsed === null ? null : parsed.header.totalBytes;
    },
  });
  if (parsed === null) parsed = parseHeader(body, where, maxBytes);
  if (parsed === null) {
    // Fewer bytes than the magic and header length say.
    const at = body.length;
    return bad(
      where,
      at,
      at < PREFIX
        ? `the data ends before the ${PREFIX}-byte magic and header length`
        : "the data ends inside the header",
    );
  }
  const { header, headerEnd } = parsed as { header: FileHeader; headerEnd: number };
  const regEnd = headerEnd + header.registers.count * 8;
  if (body.length < header.totalBytes) {
    const section = body.length < regEnd
      ? "the register section"
      : `the VRAM section (range ${
        header.vram.findIndex((r) => regEnd + r.offset + r.length > body.length)
      })`;
    bad(where, body.length, `the data ends inside ${section}: ${header.totalBytes} bytes declared`);
  }
  const regBytes = body.subarray(headerEnd, regEnd);
  if (crc32(regBytes) !== header.registers.crc32) {
    bad(
      where,
      headerEnd,
      `register section checksum mismatch (crc32 ${hex(crc32(regBytes), 8)}, header says ${
        hex(header.registers.crc32, 8)
      })`,
    );
  }
  const dv = new DataView(body.buffer, body.byteOffset, body.byteLength);
  const registers = new Map<number, number>();
  let last = -1;
  for (let i = 0; i < header.registers.count; i++) {
    const at = headerEnd + i * 8;
    const off = dv.getUint32(at, true);
    if (off <= last || off % 4 !== 0) {
      bad(
        where,
        at,
        `register offset ${hex(off)} is not 4-byte aligned or not above the one before (${
          hex(Math.max(last, 0))
        })`,
      );
    }
    last = off;
    registers.set(off, dv.getUint32(at + 4, true));
  }
  const vram: SnapshotVramRange[] = header.vram.map((r) => {
    const at = regEnd + r.offset;
    // A view of the one body buffer (a scratch device copies before it writes).
    const data = body.subarray(at, at + r.length);
    const sum = crc32(data);
    if (sum !== r.crc32) {
      bad(
        where,
        at,
        `VRAM range at ${hex(r.addr)} (${r.why}): checksum mismatch (crc32 ${
          hex(sum, 8)
        }, header says ${hex(r.crc32, 8)})`,
      );
    }
    return { addr: r.addr, data, why: r.why };
  });
  return {
    format: SNAPSHOT_FORMAT,
    version: header.version,
    source: header.source,
    chip: header.chip,
    state: header.state,
    registers,
    vram,
    addressSpaces: header.addressSpaces,
  };
}

/**
 * Writes `s` to `path` (see {@linkcode encodeSnapshot}); returns the bytes written.
 *
 * @example
 * ```ts
 * const snapshot = await readSnapshotFile(Deno.args[0] ?? "card.snap");
 * snapshot.source.comment = "the same, annotated";
 * await writeSnapshotFile(Deno.args[1] ?? "card2.snap", snapshot);
 * ```
 */
export async function writeSnapshotFile(path: string, s: Snapshot): Promise<number> {
  if (typeof path !== "string" || path === "") {
    fail("EINVAL", `a snapshot file name is a non-empty string, not ${describe(path)}`);
  }
  const bytes = await encodeSnapshot(s);
  await Deno.writeFile(path, bytes);
  return bytes.length;
}

/**
 * Reads and decodes the snapshot file at `path`; ENOENT/EACCES name the
 * file; a file larger than `maxBytes` is refused before it is read.
 *
 * @example
 * ```ts
 * const snap = await readSnapshotFile(Deno.args[0] ?? "card.snap", { maxBytes: 1 << 30 });
 * snap.addressSpaces.map((a) => a.name); // ["bar1", ...]
 * ```
 */
export async function readSnapshotFile(
  path: string,
  options: { maxBytes?: number } = {},
): Promise<Snapshot> {
  if (typeof path !== "string" || path === "") {
    fail("EINVAL", `a snapshot file name is a non-empty string, not ${describe(path)}`);
  }
  checkOptions(options, { maxBytes: "number" }, "readSnapshotFile options");
  const maxBytes = options.maxBytes ?? DEFAULT_MAX_SNAPSHOT_BYTES;
  checkUint(maxBytes, "readSnapshotFile maxBytes");
  let bytes: Uint8Array;
  try {
    const info = await Deno.stat(path);
    if (!info.isFile) fail("EINVAL", `snapshot ${path} is not a regular file`);
    if (info.size > maxBytes) {
      fail(
        "EINVAL",
        `snapshot ${path} is ${formatSize(info.size)}, over the ${
          formatSize(maxBytes)
        } limit (maxBytes)`,
      );
    }
    bytes = await Deno.readFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) fail("ENOENT", `snapshot file ${path} does not exist`);
    if (e instanceof Deno.errors.PermissionDenied) {
      fail("EACCES", `cannot read snapshot file ${path}`);
    }
    throw e;
  }
  return decodeSnapshot(bytes, { path, maxBytes });
}
