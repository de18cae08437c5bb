/**
 * Sparse simulated VRAM: memory is spent only on the 64 KiB chunks that were
 * written. Untouched memory reads as zero, as freshly scrubbed VRAM would.
 *
 * @module
 */

/** Bytes per backing chunk. */
export const CHUNK_SHIFT = 16;
const CHUNK = 1 << CHUNK_SHIFT;
const CHUNK_MASK = CHUNK - 1;

interface Chunk {
  u8: Uint8Array;
  u16: Uint16Array;
  u32: Uint32Array;
}

/**
 * Little-endian sparse memory of `size` bytes. Callers check bounds; this class
 * only asserts them (the simulator's aperture code decides what an
 * out-of-range access means).
 */
export class SparseMemory {
  /** Size in bytes. */
  readonly size: number;
  #chunks = new Map<number, Chunk>();
  #lastIndex = -1;
  #last: Chunk | undefined = undefined;

  /** Constructs it (see the class documentation for who does and how). */
  constructor(size: number) {
    this.size = size;
  }

  /** Number of chunks that hold data (for memory-use tests). */
  get touchedChunks(): number {
    return this.#chunks.size;
  }

  #get(addr: number, create: boolean): Chunk | undefined {
    const index = Math.floor(addr / CHUNK);
    if (index === this.#lastIndex && (this.#last !== undefined || !create)) return this.#last;
    let c = this.#chunks.get(index);
    if (c === undefined) {
      if (!create) {
        this.#lastIndex = index; // remember the hole too: zero reads of untouched memory stay cheap
        this.#last = undefined;
        return undefined;
      }
      const buf = new ArrayBuffer(CHUNK);
      c = { u8: new Uint8Array(buf), u16: new Uint16Array(buf), u32: new Uint32Array(buf) };
      this.#chunks.set(index, c);
    }
    this.#lastIndex = index;
    this.#last = c;
    return c;
  }

  /** Reads one byte. */
  read8(addr: number): number {
    const c = this.#get(addr, false);
    return c === undefined ? 0 : c.u8[addr & CHUNK_MASK];
  }

  /** Reads an aligned 16-bit value. */
  read16(addr: number): number {
    const c = this.#get(addr, false);
    return c === undefined ? 0 : c.u16[(addr & CHUNK_MASK) >>> 1];
  }

  /** Reads an aligned 32-bit value (unsigned). */
  read32(addr: number): number {
    const c = this.#get(addr, false);
    return c === undefined ? 0 : c.u32[(addr & CHUNK_MASK) >>> 2];
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
    if (value === 0 && this.#get(addr, false) === undefined) return; // keep zeros sparse
    this.#get(addr, true)!.u32[(addr & CHUNK_MASK) >>> 2] = value;
  }

  /** Writes an aligned 64-bit value. */
  write64(addr: number, value: bigint): void {
    this.write32(addr, Number(value & 0xffffffffn));
    this.write32(addr + 4, Number((value >> 32n) & 0xffffffffn));
  }

  /**
   * Reads `out.length` aligned 32-bit words from `addr` (a bulk copy per
   * chunk; untouched memory reads as zero).
   */
  readWords(addr: number, out: Uint32Array): void {
    let i = 0;
    while (i < out.length) {
      const a = addr + i * 4;
      const inChunk = (a & CHUNK_MASK) >>> 2;
      const n = Math.min(out.length - i, CHUNK / 4 - inChunk);
      const c = this.#get(a, false);
      if (c === undefined) out.fill(0, i, i + n);
      else out.set(c.u32.subarray(inChunk, inChunk + n), i);
      i += n;
    }
  }

  /** Writes `words` as aligned 32-bit words from `addr` (zeros into untouched memory stay sparse). */
  writeWords(addr: number, words: Uint32Array): void {
    let i = 0;
    while (i < words.length) {
      const a = addr + i * 4;
      const inChunk = (a & CHUNK_MASK) >>> 2;
      const n = Math.min(words.length - i, CHUNK / 4 - inChunk);
      const part = words.subarray(i, i + n);
      if (this.#get(a, false) !== undefined || part.some((w) => w !== 0)) {
        this.#get(a, true)!.u32.set(part, inChunk);
      }
      i += n;
    }
  }

  /** A hash of every byte (FNV-1a over the touched chunks, by address): equal contents, equal hash. */
  hash(): number {
    let h = 0x811c9dc5;
    for (const index of [...this.#chunks.keys()].sort((a, b) => a - b)) {
      const u32 = this.#chunks.get(index)!.u32;
      let nonZero = false;
      for (let i = 0; i < u32.length; i++) {
        const w = u32[i];
        if (w === 0) continue;
        nonZero = true;
        h = Math.imul(h ^ w ^ i, 0x01000193);
      }
      if (nonZero) h = Math.imul(h ^ index, 0x01000193);
    }
    return h >>> 0;
  }

  /** A copy of the 64 KiB chunk holding `addr`, or null when it has no backing memory. */
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
  /** Chunk index → its contents before the first unflushed write (null: it was all zeros). */
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
    // Sparse: an untouched chunk is remembered as all zeros.
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
    return snap === null ? 0 : snap[(addr & CHUNK_MASK) >>> 2];
  }

  /** The FB flush completed: everything posted is visible. */
  drain(): void {
    this.#before.clear();
    this.#lastChunk = -1;
  }
}
