/**
 * Sparse simulated VRAM: memory is spent only on the 64 KiB chunks that were
 * written. What untouched memory reads is its *background*: zero for a plain
 * {@linkcode SparseMemory}, and for a simulated card a deterministic non-zero
 * pattern computed from the address ({@linkcode backgroundWord}), because
 * VRAM nobody scrubbed is not zero (facts §14.2 item 5; design "The
 * simulator"). The first write to a chunk fills it from the background.
 *
 * @module
 */

/** Bytes per backing chunk. */
export const CHUNK_SHIFT = 16;
const CHUNK = 1 << CHUNK_SHIFT;
const CHUNK_MASK = CHUNK - 1;
const CHUNK_WORDS = CHUNK / 4;

interface Chunk {
  u8: Uint8Array;
  u16: Uint16Array;
  u32: Uint32Array;
}

/** What untouched memory of a {@linkcode SparseMemory} reads as. */
export interface VramBackground {
  /** Selects the pattern (see {@linkcode backgroundWord}); different seeds, different data. */
  seed: number;
  /** A range firmware scrubbed: it reads zero, [start, end) in bytes. */
  scrubbed?: { start: number; end: number };
}

/**
 * The 32-bit word unscrubbed VRAM holds at `addr` (a multiple of 4) under
 * `seed`: a cheap hash of the word address, never zero, never all ones and
 * never a PRI-error value (top 12 bits 0xBAD), so it reads as plain garbage.
 *
 * @example
 * ```ts
 * backgroundWord(1, 0x1000) === backgroundWord(1, 0x1000); // deterministic
 * backgroundWord(1, 0x1000) !== 0;                         // never zero
 * ```
 */
export function backgroundWord(seed: number, addr: number): number {
  const w = Math.floor(addr / 4);
  let h = Math.imul((w ^ seed) | 0, 0x9e3779b1) ^
    Math.imul(Math.floor(w / 2 ** 32) + seed, 0x85ebca6b);
  h ^= h >>> 16;
  h = Math.imul(h, 0x7feb352d);
  h ^= h >>> 15;
  h = Math.imul(h, 0x846ca68b);
  h ^= h >>> 16;
  h >>>= 0;
  if (h === 0 || h === 0xffffffff || (h >>> 20) === 0xbad) h = (h ^ 0x01010101 ^ 0x00400000) >>> 0;
  return h === 0 ? 0x5a5a5a5a : h;
}

/** Options for {@linkcode SparseMemory}. */
export interface SparseMemoryOptions {
  /** What untouched memory reads (default: zero everywhere). */
  background?: VramBackground;
}

/**
 * Little-endian sparse memory of `size` bytes. Callers check bounds; this class
 * only asserts them (the simulator's aperture code decides what an
 * out-of-range access means).
 */
export class SparseMemory {
  /** Size in bytes. */
  readonly size: number;
  /** What untouched memory reads as; null = zero. */
  readonly background: Readonly<VramBackground> | null;
  #chunks = new Map<number, Chunk>();
  #lastIndex = -1;
  #last: Chunk | undefined = undefined;
  #seed: number;
  #scrubStart: number;
  #scrubEnd: number;

  /** Constructs it (see the class documentation for who does and how). */
  constructor(size: number, options: SparseMemoryOptions = {}) {
    this.size = size;
    const bg = options.background;
    this.background = bg === undefined
      ? null
      : { seed: bg.seed, ...(bg.scrubbed ? { scrubbed: { ...bg.scrubbed } } : {}) };
    this.#seed = bg === undefined ? -1 : bg.seed | 0;
    this.#scrubStart = bg?.scrubbed?.start ?? 0;
    this.#scrubEnd = bg?.scrubbed?.end ?? 0;
  }

  /** Number of chunks that hold data (for memory-use tests). */
  get touchedChunks(): number {
    return this.#chunks.size;
  }

  /** The word untouched memory holds at `addr` (4-byte aligned): 0 without a background. */
  background32(addr: number): number {
    if (this.background === null) return 0;
    if (addr >= this.#scrubStart && addr < this.#scrubEnd) return 0;
    return backgroundWord(this.#seed, addr);
  }

  /** True when memory is untouched at `addr` (it reads its background). */
  isUntouched(addr: number): boolean {
    return !this.#chunks.has(Math.floor(addr / CHUNK));
  }

  #get(addr: number, create: boolean): Chunk | undefined {
    const index = Math.floor(addr / CHUNK);
    if (index === this.#lastIndex && (this.#last !== undefined || !create)) return this.#last;
    let c = this.#chunks.get(index);
    if (c === undefined) {
      if (!create) {
        this.#lastIndex = index; // remember the hole too: reads of untouched memory stay cheap
        this.#last = undefined;
        return undefined;
      }
      const buf = new ArrayBuffer(CHUNK);
      c = { u8: new Uint8Array(buf), u16: new Uint16Array(buf), u32: new Uint32Array(buf) };
      if (this.background !== null) this.#fillBackground(index * CHUNK, c.u32, 0, CHUNK_WORDS);
      this.#chunks.set(index, c);
    }
    this.#lastIndex = index;
    this.#last = c;
    return c;
  }

  /** Writes the background of [addr, addr + 4n) into out[from, from + n). */
  #fillBackground(addr: number, out: Uint32Array, from: number, n: number): void {
    if (this.background === null) {
      out.fill(0, from, from + n);
      return;
    }
    for (let i = 0; i < n; i++) out[from + i] = this.background32(addr + i * 4);
  }

  /** Reads one byte. */
  read8(addr: number): number {
    const c = this.#get(addr, false);
    if (c !== undefined) return c.u8[addr & CHUNK_MASK];
    return (this.background32(addr - (addr & 3)) >>> ((addr & 3) * 8)) & 0xff;
  }

  /** Reads an aligned 16-bit value. */
  read16(addr: number): number {
    const c = this.#get(addr, false);
    if (c !== undefined) return c.u16[(addr & CHUNK_MASK) >>> 1];
    return (this.background32(addr - (addr & 3)) >>> ((addr & 2) * 8)) & 0xffff;
  }

  /** Reads an aligned 32-bit value (unsigned). */
  read32(addr: number): number {
    const c = this.#get(addr, false);
    return c === undefined ? this.background32(addr) : c.u32[(addr & CHUNK_MASK) >>> 2];
  }

  /** Reads an aligned 64-bit value as bigint. */
  read64(addr: number): bigint {
    return (BigInt(this.read32(addr + 4)) << 32n) | BigInt(this.read32(addr));
  }

  /** Writes one byte. */
  write8(addr: number, value: number): void {
    this.#get(addr, true)!.u8[addr & CHUNK_MASK] = value;
  }

  /** Writes an aligned 16-bit value. */
  write16(addr: number, value: number): void {
    this.#get(addr, true)!.u16[(addr & CHUNK_MASK) >>> 1] = value;
  }

  /** Writes an aligned 32-bit value. */
  write32(addr: number, value: number): void {
    // Keep memory sparse: storing what untouched memory already reads changes nothing.
    if (this.#get(addr, false) === undefined && (value >>> 0) === this.background32(addr)) return;
    this.#get(addr, true)!.u32[(addr & CHUNK_MASK) >>> 2] = value;
  }

  /** Writes an aligned 64-bit value. */
  write64(addr: number, value: bigint): void {
    this.write32(addr, Number(value & 0xffffffffn));
    this.write32(addr + 4, Number((value >> 32n) & 0xffffffffn));
  }

  /**
   * Reads `out.length` aligned 32-bit words from `addr` (a bulk copy per
   * chunk; untouched memory reads its background).
   */
  readWords(addr: number, out: Uint32Array): void {
    let i = 0;
    while (i < out.length) {
      const a = addr + i * 4;
      const inChunk = (a & CHUNK_MASK) >>> 2;
      const n = Math.min(out.length - i, CHUNK_WORDS - inChunk);
      const c = this.#get(a, false);
      if (c === undefined) this.#fillBackground(a, out, i, n);
      else out.set(c.u32.subarray(inChunk, inChunk + n), i);
      i += n;
    }
  }

  /** Writes `words` as aligned 32-bit words from `addr` (the background into untouched memory stays sparse). */
  writeWords(addr: number, words: Uint32Array): void {
    let i = 0;
    while (i < words.length) {
      const a = addr + i * 4;
      const inChunk = (a & CHUNK_MASK) >>> 2;
      const n = Math.min(words.length - i, CHUNK_WORDS - inChunk);
      const part = words.subarray(i, i + n);
      if (
        this.#get(a, false) !== undefined || part.some((w, j) => w !== this.background32(a + j * 4))
      ) {
        this.#get(a, true)!.u32.set(part, inChunk);
      }
      i += n;
    }
  }

  /**
   * A hash of every byte (FNV-1a over the words that differ from the
   * background, by address): equal contents, equal hash.
   */
  hash(): number {
    let h = 0x811c9dc5;
    const bg = this.background !== null;
    for (const index of [...this.#chunks.keys()].sort((a, b) => a - b)) {
      const u32 = this.#chunks.get(index)!.u32;
      const base = index * CHUNK;
      let changed = false;
      for (let i = 0; i < u32.length; i++) {
        const w = u32[i];
        if (w === (bg ? this.background32(base + i * 4) : 0)) continue;
        changed = true;
        h = Math.imul(h ^ w ^ i, 0x01000193);
      }
      if (changed) h = Math.imul(h ^ index, 0x01000193);
    }
    return h >>> 0;
  }

  /** A copy of the 64 KiB chunk holding `addr`, or null when it is untouched (it reads its background). */
  copyChunk(addr: number): Uint32Array | null {
    const c = this.#chunks.get(Math.floor(addr / CHUNK));
    return c === undefined ? null : c.u32.slice();
  }

  /** Copies `len` bytes starting at `addr` out (for tests and the simulator's own use). */
  readBytes(addr: number, len: number): Uint8Array {
    const out = new Uint8Array(len);
    for (let i = 0; i < len; i++) out[i] = this.read8(addr + i);
    return out;
  }
}

/** Chunks a {@linkcode PostedWrites} buffer holds before it drains its oldest. */
export const POSTED_CHUNKS = 1024;

/**
 * Writes the CPU posted to the frame buffer (through PRAMIN or BAR1) that
 * the GPU's own clients — the MMU walking page tables, the bind fetching an
 * instance block — do not see until an FB flush completes (facts §13.3 items
 * 3 and 5). CPU reads see the new data at once; only {@linkcode PostedWrites.read32}
 * (the GPU's view) returns what VRAM held before.
 *
 * Kept per 64 KiB chunk: the first posted write to a chunk snapshots it.
 * The buffer is bounded like a real write queue: past {@linkcode POSTED_CHUNKS}
 * chunks the oldest drains (becomes visible) on its own.
 */
export class PostedWrites {
  readonly #vram: SparseMemory;
  /** Chunk index → its contents before the first unflushed write (null: it was untouched). */
  #before = new Map<number, Uint32Array | null>();
  #lastChunk = -1;
  /** Chunks drained because the buffer was full (the flush came too late for them). */
  overflowed = 0;

  /** Constructs it over the VRAM it shadows. */
  constructor(vram: SparseMemory) {
    this.#vram = vram;
  }

  /** Call before CPU writes of [addr, addr + len) reach VRAM (one snapshot per chunk). */
  touchRange(addr: number, len: number): void {
    for (let a = addr - (addr % CHUNK); a < addr + len; a += CHUNK) this.touch(a);
  }

  /** Call before a CPU write of `addr` reaches VRAM. */
  touch(addr: number): void {
    const chunk = Math.floor(addr / CHUNK);
    if (chunk === this.#lastChunk) return;
    this.#lastChunk = chunk;
    if (this.#before.has(chunk)) return;
    // Sparse: an untouched chunk is remembered as null (it read its background).
    this.#before.set(chunk, this.#vram.copyChunk(chunk * CHUNK));
    if (this.#before.size > POSTED_CHUNKS) {
      const oldest = this.#before.keys().next().value!;
      this.#before.delete(oldest);
      this.overflowed++;
    }
  }

  /** Chunks with writes not yet flushed. */
  get pendingChunks(): number {
    return this.#before.size;
  }

  /**
   * The 32-bit word at `addr` as the GPU sees it: the pre-write value when
   * the chunk has unflushed writes, else VRAM.
   */
  read32(addr: number): number {
    if (this.#before.size === 0) return this.#vram.read32(addr);
    const snap = this.#before.get(Math.floor(addr / CHUNK));
    if (snap === undefined) return this.#vram.read32(addr);
    return snap === null ? this.#vram.background32(addr) : snap[(addr & CHUNK_MASK) >>> 2];
  }

  /** The FB flush completed: everything posted is visible. */
  drain(): void {
    this.#before.clear();
    this.#lastChunk = -1;
  }
}
