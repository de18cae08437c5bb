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
/** The unit a {@linkcode PostedWrites} snapshot covers: one 4 KiB page. */
const PAGE = 4096;
const PAGE_MASK = PAGE - 1;
const PAGE_WORDS = PAGE / 4;
const PAGES_PER_CHUNK = CHUNK / PAGE;

interface Chunk {
  u8: Uint8Array;
  u16: Uint16Array;
  u32: Uint32Array;
  /** This chunk's part of {@linkcode SparseMemory.hash}, or -1 once written since (recomputed lazily). */
  h: number;
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
 * A faulty memory cell (fault injection): the bits in `mask` of the 32-bit
 * word at `addr` read as the same bits of `value`, whatever was written.
 */
export interface VramStuckBits {
  /** Byte address of the word (a multiple of 4). */
  addr: number;
  /** The stuck bits. */
  mask: number;
  /** What they read as (only the bits in `mask` count). */
  value: number;
}

/** A dead range (fault injection): reads return `pattern` in every word, writes are dropped. */
export interface VramDeadRegion {
  /** First byte (a multiple of 4). */
  start: number;
  /** One past the last byte (a multiple of 4). */
  end: number;
  /** The 32-bit word every read returns. */
  pattern: number;
}

/**
 * An address-decoder fault (fault injection): accesses of
 * [`alias`, `alias` + `size`) reach the cells of [`addr`, `addr` + `size`),
 * so two VRAM addresses decode to one cell.
 */
export interface VramAlias {
  /** The cells (byte address, a multiple of 4). */
  addr: number;
  /** The address that also decodes to them (a multiple of 4). */
  alias: number;
  /** Bytes (a multiple of 4). */
  size: number;
}

/** The faults a {@linkcode SparseMemory} injects (see {@linkcode SparseMemory.setFaults}). */
export interface VramFaults {
  /** Stuck-at bits. */
  stuckBits: readonly VramStuckBits[];
  /** Dead ranges. */
  deadRegions: readonly VramDeadRegion[];
  /** Address aliases. */
  aliases: readonly VramAlias[];
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
  /** True while faults are injected: every access takes the checked path (one load otherwise). */
  #faulty = false;
  #stuck = new Map<number, { mask: number; value: number }>();
  #dead: readonly VramDeadRegion[] = [];
  #aliases: readonly VramAlias[] = [];

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

  /**
   * Injects faults (null or all lists empty: none). Every CPU and GPU access
   * sees them: aliases first (an access of an alias reaches its cells), then
   * dead ranges (reads return the pattern, writes are dropped), then stuck
   * bits on reads. Without faults the accessors keep their fast paths.
   * Arguments arrive checked (`SimGpu.knobs` checks them).
   */
  setFaults(faults: VramFaults | null): void {
    this.#stuck = new Map();
    for (const s of faults?.stuckBits ?? []) {
      const old = this.#stuck.get(s.addr);
      // Two entries for one word: the later one wins for the bits it names.
      const mask = ((old?.mask ?? 0) | s.mask) >>> 0;
      const value = (((old?.value ?? 0) & ~s.mask) | (s.value & s.mask)) >>> 0;
      this.#stuck.set(s.addr, { mask, value });
    }
    this.#dead = [...(faults?.deadRegions ?? [])];
    this.#aliases = [...(faults?.aliases ?? [])];
    this.#faulty = this.#stuck.size + this.#dead.length + this.#aliases.length > 0;
    this.#lastIndex = -1;
    this.#last = undefined;
  }

  /** The cell an access of `addr` reaches (aliases applied). */
  #cell(addr: number): number {
    for (const a of this.#aliases) {
      if (addr >= a.alias && addr < a.alias + a.size) return a.addr + (addr - a.alias);
    }
    return addr;
  }

  /** The dead range holding `cell`, or undefined. */
  #deadAt(cell: number): VramDeadRegion | undefined {
    for (const d of this.#dead) if (cell >= d.start && cell < d.end) return d;
    return undefined;
  }

  /** The stored word at `addr` (4-byte aligned), no faults applied. */
  #raw32(addr: number): number {
    const c = this.#get(addr, false);
    return c === undefined ? this.background32(addr) : c.u32[(addr & CHUNK_MASK) >>> 2];
  }

  /** A 32-bit read with the faults applied. */
  #faultRead32(addr: number): number {
    const cell = this.#cell(addr);
    const d = this.#deadAt(cell);
    if (d !== undefined) return d.pattern >>> 0;
    const v = this.#raw32(cell);
    const s = this.#stuck.get(cell);
    return s === undefined ? v : ((v & ~s.mask) | s.value) >>> 0;
  }

  /** A store of `value`'s bytes in `mask` into the word at `addr`, with the faults applied. */
  #faultWrite(addr: number, value: number, mask: number): void {
    const cell = this.#cell(addr);
    if (this.#deadAt(cell) !== undefined) return;
    const old = mask === 0xffffffff ? 0 : this.#raw32(cell);
    const v = ((old & ~mask) | (value & mask)) >>> 0;
    if (this.#get(cell, false) === undefined && v === this.background32(cell)) return;
    this.#get(cell, true)!.u32[(cell & CHUNK_MASK) >>> 2] = v;
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
    if (index === this.#lastIndex && (this.#last !== undefined || !create)) {
      if (create) this.#last!.h = -1; // written: its hash is stale
      return this.#last;
    }
    let c = this.#chunks.get(index);
    if (c === undefined) {
      if (!create) {
        this.#lastIndex = index; // remember the hole too: reads of untouched memory stay cheap
        this.#last = undefined;
        return undefined;
      }
      const buf = new ArrayBuffer(CHUNK);
      c = { u8: new Uint8Array(buf), u16: new Uint16Array(buf), u32: new Uint32Array(buf), h: -1 };
      if (this.background !== null) this.#fillBackground(index * CHUNK, c.u32, 0, CHUNK_WORDS);
      this.#chunks.set(index, c);
    }
    if (create) c.h = -1;
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
    if (this.#faulty) return (this.#faultRead32(addr - (addr & 3)) >>> ((addr & 3) * 8)) & 0xff;
    const c = this.#get(addr, false);
    if (c !== undefined) return c.u8[addr & CHUNK_MASK];
    return (this.background32(addr - (addr & 3)) >>> ((addr & 3) * 8)) & 0xff;
  }

  /** Reads an aligned 16-bit value. */
  read16(addr: number): number {
    if (this.#faulty) return (this.#faultRead32(addr - (addr & 3)) >>> ((addr & 2) * 8)) & 0xffff;
    const c = this.#get(addr, false);
    if (c !== undefined) return c.u16[(addr & CHUNK_MASK) >>> 1];
    return (this.background32(addr - (addr & 3)) >>> ((addr & 2) * 8)) & 0xffff;
  }

  /** Reads an aligned 32-bit value (unsigned). */
  read32(addr: number): number {
    if (this.#faulty) return this.#faultRead32(addr);
    const c = this.#get(addr, false);
    return c === undefined ? this.background32(addr) : c.u32[(addr & CHUNK_MASK) >>> 2];
  }

  /** Reads an aligned 64-bit value as bigint. */
  read64(addr: number): bigint {
    return (BigInt(this.read32(addr + 4)) << 32n) | BigInt(this.read32(addr));
  }

  /** Writes one byte. */
  write8(addr: number, value: number): void {
    if (this.#faulty) {
      const shift = (addr & 3) * 8;
      return this.#faultWrite(addr - (addr & 3), (value & 0xff) << shift, (0xff << shift) >>> 0);
    }
    this.#get(addr, true)!.u8[addr & CHUNK_MASK] = value;
  }

  /** Writes an aligned 16-bit value. */
  write16(addr: number, value: number): void {
    if (this.#faulty) {
      const shift = (addr & 2) * 8;
      return this.#faultWrite(
        addr - (addr & 3),
        (value & 0xffff) << shift,
        (0xffff << shift) >>> 0,
      );
    }
    this.#get(addr, true)!.u16[(addr & CHUNK_MASK) >>> 1] = value;
  }

  /** Writes an aligned 32-bit value. */
  write32(addr: number, value: number): void {
    if (this.#faulty) return this.#faultWrite(addr, value, 0xffffffff);
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
    if (this.#faulty) {
      for (let i = 0; i < out.length; i++) out[i] = this.#faultRead32(addr + i * 4);
      return;
    }
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
    if (this.#faulty) {
      for (let i = 0; i < words.length; i++) this.#faultWrite(addr + i * 4, words[i], 0xffffffff);
      return;
    }
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
      const c = this.#chunks.get(index)!;
      if (c.h < 0) {
        // Each chunk's part is kept until the chunk is written again: a hash costs only the
        // chunks written since the last one.
        const u32 = c.u32;
        const base = index * CHUNK;
        let part = 0;
        let changed = false;
        for (let i = 0; i < u32.length; i++) {
          const w = u32[i];
          if (w === (bg ? this.background32(base + i * 4) : 0)) continue;
          changed = true;
          part = (Math.imul(part ^ w ^ i, 0x01000193) + 1) | 0;
        }
        c.h = changed ? (part ^ index) >>> 0 : 0;
      }
      if (c.h !== 0) h = Math.imul(h ^ c.h, 0x01000193);
    }
    return h >>> 0;
  }

  /** A copy of the 64 KiB chunk holding `addr`, or null when it is untouched (it reads its background). */
  copyChunk(addr: number): Uint32Array | null {
    const c = this.#chunks.get(Math.floor(addr / CHUNK));
    return c === undefined ? null : c.u32.slice();
  }

  /**
   * Copies the 4 KiB page holding `addr` as stored (no faults applied) into
   * `out` from word `at`; false (nothing copied) when its chunk is untouched
   * (it reads its background).
   */
  copyPageInto(addr: number, out: Uint32Array, at: number): boolean {
    const c = this.#chunks.get(Math.floor(addr / CHUNK));
    if (c === undefined) return false;
    const from = (addr & CHUNK_MASK & ~PAGE_MASK) >>> 2;
    out.set(c.u32.subarray(from, from + PAGE_WORDS), at);
    return true;
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

/** Snapshot slots per arena block (256 KiB): the arena grows a block at a time, never by copying. */
const BLOCK_SHIFT = 6;
const BLOCK_SLOTS = 1 << BLOCK_SHIFT;
const BLOCK_MASK = BLOCK_SLOTS - 1;
/**
 * Arena blocks a {@linkcode PostedWrites} keeps allocated across flushes:
 * 4,096 page snapshots (16 MiB), what rewriting the page tables of 8 GiB of
 * 4 KiB pages takes. Kept only once a burst needed them, and only up to
 * this; {@linkcode PostedWrites.trim} gives them back. Without them each
 * large remap snapshots into fresh memory (the arena used to double into
 * a new 32 MiB array at 8 GiB and be dropped at the flush): thousands of
 * page faults, ~10 µs each on a VM, which made an 8 GiB scattered map cost
 * up to 2x per page what a 4 GiB one does (issue 20).
 */
const KEEP_BLOCKS = 4096 / BLOCK_SLOTS;
/** In a chunk's page list: no posted write to that page since the flush. */
const NOT_POSTED = -1;
/** In a chunk's page list: the chunk was untouched, the page read its background. */
const BACKGROUND = -2;

/**
 * Writes the CPU posted to the frame buffer (through PRAMIN or BAR1) that
 * the GPU's own clients — the MMU walking page tables, the bind fetching an
 * instance block — do not see until an FB flush completes (facts §13.3 items
 * 3 and 5). CPU reads see the new data at once; only {@linkcode PostedWrites.read32}
 * (the GPU's view) returns what VRAM held before.
 *
 * Kept per 4 KiB page: the first posted write to a page after a flush copies
 * that page (4 KiB, not its whole 64 KiB chunk) into a snapshot arena that is
 * reused from flush to flush, so a page-table update costs one small copy
 * and no allocation. The arena grows in blocks of 64 snapshots and keeps up
 * to 16 MiB of them across flushes ({@linkcode PostedWrites.retainedBytes},
 * {@linkcode PostedWrites.trim}). Pages no posted write reached (and pages
 * of chunks never written, which read their background) need no snapshot. The
 * buffer is bounded like a real write queue, counted in 64 KiB chunks: past
 * {@linkcode POSTED_CHUNKS} chunks with posted writes, the oldest chunk
 * drains (all its pages become visible) on its own.
 */
export class PostedWrites {
  readonly #vram: SparseMemory;
  /**
   * Chunk index → per page of it (16): the arena slot holding its contents
   * before the first unflushed write, {@linkcode BACKGROUND} or
   * {@linkcode NOT_POSTED}. Insertion order is the order chunks were first
   * written (the overflow drains the oldest).
   */
  #before = new Map<number, Int32Array>();
  /** Page snapshots: slot `s` is words [(s % 64) * 1024, +1024) of block `s / 64`. */
  #blocks: Uint32Array[] = [];
  /** Slots handed out since the last drain. */
  #used = 0;
  /** Slots given back by overflow drains, reused before new ones. */
  #free: number[] = [];
  #lastPage = -1;
  /** Chunks drained because the buffer was full (the flush came too late for them). */
  overflowed = 0;

  /** Constructs it over the VRAM it shadows. */
  constructor(vram: SparseMemory) {
    this.#vram = vram;
  }

  /** Call before CPU writes of [addr, addr + len) reach VRAM (one snapshot per 4 KiB page). */
  touchRange(addr: number, len: number): void {
    for (let a = addr - (addr % PAGE); a < addr + len; a += PAGE) this.touch(a);
  }

  /** Call before a CPU write of `addr` reaches VRAM. */
  touch(addr: number): void {
    const page = Math.floor(addr / PAGE);
    if (page === this.#lastPage) return;
    this.#lastPage = page;
    const chunk = Math.floor(page / PAGES_PER_CHUNK);
    let pages = this.#before.get(chunk);
    if (pages === undefined) {
      // A chunk untouched until this write reads its background, page by page, until the
      // flush: no page of it needs a copy (a new page-table chunk would copy 15 of 16).
      pages = new Int32Array(PAGES_PER_CHUNK).fill(
        this.#vram.isUntouched(chunk * CHUNK) ? BACKGROUND : NOT_POSTED,
      );
      this.#before.set(chunk, pages);
      if (this.#before.size > POSTED_CHUNKS) {
        const oldest = this.#before.keys().next().value!;
        for (const slot of this.#before.get(oldest)!) if (slot >= 0) this.#free.push(slot);
        this.#before.delete(oldest);
        this.overflowed++;
      }
    }
    const i = page - chunk * PAGES_PER_CHUNK;
    if (pages[i] !== NOT_POSTED) return;
    if (this.#vram.isUntouched(page * PAGE)) {
      // Sparse: a page of an untouched chunk reads its background; no snapshot.
      pages[i] = BACKGROUND;
      return;
    }
    const slot = this.#free.length > 0 ? this.#free.pop()! : this.#used++;
    const b = slot >> BLOCK_SHIFT;
    while (this.#blocks.length <= b) this.#blocks.push(new Uint32Array(BLOCK_SLOTS * PAGE_WORDS));
    this.#vram.copyPageInto(page * PAGE, this.#blocks[b], (slot & BLOCK_MASK) * PAGE_WORDS);
    pages[i] = slot;
  }

  /**
   * Bytes of snapshot memory held now: the blocks in use plus those kept
   * from earlier bursts (up to 16 MiB; the simulator's own memory, a card
   * needs none of it).
   */
  get retainedBytes(): number {
    return this.#blocks.length * BLOCK_SLOTS * PAGE;
  }

  /** Gives back the snapshot blocks no unflushed write needs (those kept for the next burst). */
  trim(): void {
    this.#blocks.length = (this.#used + BLOCK_MASK) >> BLOCK_SHIFT;
  }

  /** Chunks (64 KiB) with writes not yet flushed. */
  get pendingChunks(): number {
    return this.#before.size;
  }

  /**
   * The 32-bit word at `addr` as the GPU sees it: the pre-write value when
   * its page has unflushed writes, else VRAM.
   */
  read32(addr: number): number {
    if (this.#before.size === 0) return this.#vram.read32(addr);
    const pages = this.#before.get(Math.floor(addr / CHUNK));
    if (pages === undefined) return this.#vram.read32(addr);
    const slot = pages[(addr & CHUNK_MASK) >>> 12];
    if (slot === NOT_POSTED) return this.#vram.read32(addr);
    if (slot === BACKGROUND) return this.#vram.background32(addr);
    return this.#blocks[slot >> BLOCK_SHIFT][
      (slot & BLOCK_MASK) * PAGE_WORDS + ((addr & PAGE_MASK) >>> 2)
    ];
  }

  /** The FB flush completed: everything posted is visible. */
  drain(): void {
    this.#before.clear();
    this.#lastPage = -1;
    this.#used = 0;
    this.#free.length = 0;
    // A burst of unflushed writes keeps at most KEEP_BLOCKS of its arena for the next one.
    if (this.#blocks.length > KEEP_BLOCKS) this.#blocks.length = KEEP_BLOCKS;
  }
}
