/**
 * The one MMIO interface. A real BAR (libc mmap of a sysfs `resourceN` file)
 * and a simulated BAR are both a {@linkcode MmioBackend}; {@linkcode Mmio}
 * wraps either with the checks, the access counters and the trace hook, so
 * counting and tracing behave the same on a card and on the simulator.
 *
 * Every register access is a single naturally aligned 8/16/32-bit access
 * (principle 2 of the design guide). The one exception is
 * {@linkcode Mmio.readBytes}/{@linkcode Mmio.writeBytes} on an aperture
 * whose backend offers block copies: a card's framebuffer BAR mapped
 * write-combining (`resource1_wc`), where wide copies are legal. BAR0 never
 * has them. Counters and traces still see one 32-bit access per word.
 *
 * @module
 */

import { describe, fail, hex } from "./errors.ts";
import { checkBytes, checkUint } from "./validate.ts";

/** What a device behind a BAR must do: single aligned accesses, nothing more. */
export interface MmioBackend {
  /** Bytes in the aperture. */
  readonly size: number;
  /** One 8-bit load. Offsets arrive checked. */
  read8(offset: number): number;
  /** One aligned 16-bit load. */
  read16(offset: number): number;
  /** One aligned 32-bit load (unsigned result). */
  read32(offset: number): number;
  /** One 8-bit store. */
  write8(offset: number, value: number): void;
  /** One aligned 16-bit store. */
  write16(offset: number, value: number): void;
  /** One aligned 32-bit store (value is unsigned 32-bit). */
  write32(offset: number, value: number): void;
  /** Releases the mapping (munmap/close on a card). */
  close?(): void;
  /**
   * Optional wide copy out of the aperture (framebuffer apertures only):
   * `offset` and `out.length` are multiples of 4 and arrive checked.
   */
  readBlock?(offset: number, out: Uint8Array): void;
  /** Optional wide copy into the aperture, ordered before any later access. */
  writeBlock?(offset: number, data: Uint8Array): void;
  /**
   * Optional bulk 32-bit loads into `out` (a simulator copies whole chunks; a
   * card's BAR0 has none and gets single 32-bit accesses). `offset` is a
   * multiple of 4 and the range arrives checked.
   */
  readWords?(offset: number, out: Uint32Array): void;
  /** Optional bulk 32-bit stores of `words`, in ascending order, as single stores would be. */
  writeWords?(offset: number, words: Uint32Array): void;
}

/**
 * Decides whether an access may reach the aperture; throws (a NovaError) to
 * refuse it before it does. BAR1 uses one so that the CPU never touches a
 * page outside a live mapping while BAR1 is virtual.
 */
export type MmioGuard = (offset: number, length: number, op: "r" | "w") => void;

/** Access counters shared by all BARs of one GPU (`gpu.stats()`). */
export interface MmioCounters {
  /** MMIO loads on any BAR. */
  mmioReads: number;
  /** MMIO stores on any BAR. */
  mmioWrites: number;
  /** Writes of the PRAMIN window register that changed its base. */
  windowMoves: number;
}

/** Makes a zeroed counter set. */
export function newCounters(): MmioCounters {
  return { mmioReads: 0, mmioWrites: 0, windowMoves: 0 };
}

let installGuardImpl: (mmio: Mmio, guard: MmioGuard) => void = () => {};

/**
 * Installs the guard every access to `mmio` must pass before it reaches the
 * backend. Once: a guard cannot be replaced or removed (BAR1's guard keeps the
 * CPU off unmapped pages while BAR1 is virtual; switching it off by accident
 * would fault the card). Not part of the public API (mod.ts does not export it).
 */
export function installGuard(mmio: Mmio, guard: MmioGuard): void {
  if (!(mmio instanceof Mmio)) fail("EINVAL", `installGuard takes an Mmio, not ${describe(mmio)}`);
  if (typeof guard !== "function") {
    fail("EINVAL", `an Mmio guard is a function, not ${describe(guard)}`);
  }
  installGuardImpl(mmio, guard);
}

/** Access widths in bytes. */
export type Width = 1 | 2 | 4;

/** One recorded MMIO access (see `hw/trace.ts` for the file format). */
export interface MmioAccess {
  /** The BAR name, e.g. `"bar0"`. */
  bar: string;
  /** `"r"` or `"w"`. */
  op: "r" | "w";
  /** 1, 2 or 4 bytes. */
  width: Width;
  /** Byte offset inside the BAR. */
  offset: number;
  /** The value read or written (unsigned). */
  value: number;
}

/** Called after every access when tracing is on. */
export type MmioTracer = (access: MmioAccess) => void;

/** Options for {@linkcode Mmio}. */
export interface MmioOptions {
  /** Refuse every write with EPERM before it reaches the backend. */
  readOnly?: boolean;
  /** Counter set to add to (shared between the BARs of one GPU). */
  counters?: MmioCounters;
}

const LIMIT = [0, 0xff, 0xffff, 0, 0xffffffff] as const;

/**
 * The interrupt word: when set (by {@linkcode setInterruptWord}) and non-zero,
 * the next MMIO access on any aperture throws EINTR instead of reaching the
 * device. The REPL evaluates in a worker and sets the word from the UI thread
 * on Ctrl-C, so a long loop of MMIO stops at its next access, with `using`
 * guards unwinding (the word is cleared before the throw, so their own
 * accesses go through).
 */
let interruptWord: Int32Array | null = null;

/** Installs (or with null removes) the shared word that interrupts MMIO; see {@linkcode Mmio}. */
export function setInterruptWord(word: Int32Array | null): void {
  interruptWord = word;
}

function interrupted(): never {
  Atomics.store(interruptWord!, 0, 0);
  return fail("EINTR", "interrupted (Ctrl-C) before the next MMIO access");
}

/** EINTR when Ctrl-C set the shared word (one load; inlined on the access paths). */
function checkInterrupt(): void {
  if (interruptWord !== null && Atomics.load(interruptWord, 0) !== 0) interrupted();
}

/**
 * The interrupt check for long loops that make no MMIO access (building
 * extents, choosing pages, walking the shadow or the buddy tree, dumps):
 * EINTR when Ctrl-C set the shared word, else nothing (one load). Call it
 * every few thousand iterations, where stopping leaves state consistent.
 */
export function interruptPoint(): void {
  if (interruptWord !== null && Atomics.load(interruptWord, 0) !== 0) interrupted();
}

/**
 * A checked, counted MMIO aperture.
 *
 * @example
 * ```ts
 * import { openGpu } from "../mod.ts";
 * using gpu = await openGpu({ device: "sim" });
 * const boot0 = gpu.bar0.read32(0x0);
 * ```
 */
export class Mmio {
  /** BAR name used in messages and traces (`bar0`, `bar1`). */
  readonly name: string;
  /** Aperture size in bytes. */
  readonly size: number;
  /** True when writes are refused. */
  readonly readOnly: boolean;
  /** The counters this aperture adds to. */
  readonly counters: MmioCounters;
  /** Set to record every access; `undefined` for none. */
  tracer: MmioTracer | undefined = undefined;
  #guard: MmioGuard | null = null;
  #watchers = new Map<number, ((value: number) => void)[]>();
  #backend: MmioBackend;
  #closed = false;

  /** Constructs it (see the class documentation for who does and how). */
  constructor(name: string, backend: MmioBackend, options: MmioOptions = {}) {
    this.name = name;
    this.size = backend.size;
    this.readOnly = options.readOnly ?? false;
    this.counters = options.counters ?? newCounters();
    this.#backend = backend;
  }

  #check(offset: number, width: Width): void {
    if (this.#closed) fail("ENODEV", `${this.name} is closed (its GPU was closed)`, "");
    // Offsets are numbers, never strings or bigints: "0x1700" must not reach a register.
    checkUint(offset, `${this.name} offset`);
    if (offset % width !== 0) {
      fail(
        "EINVAL",
        `${this.name} offset ${hex(offset)} is not aligned to the ${width}-byte access width`,
      );
    }
    if (offset + width > this.size) {
      fail(
        "EINVAL",
        `${this.name} offset ${hex(offset)} + ${width} is past the end of the ${
          hex(this.size)
        }-byte aperture`,
      );
    }
  }

  #checkWrite(offset: number, width: Width, value: number): number {
    if (this.readOnly) {
      fail(
        "EPERM",
        `${this.name} is open read-only: refused ${width * 8}-bit write of ${describe(value)} at ${
          hex(offset)
        }`,
        "reopen without --read-only to write",
      );
    }
    this.#check(offset, width);
    const max = LIMIT[width];
    if (typeof value !== "number" || !Number.isInteger(value)) {
      fail("EINVAL", `value ${describe(value)} is not an integer number (${width * 8}-bit write)`);
    }
    if (value > max || value < -(max + 1) / 2) {
      fail(
        "EINVAL",
        `value ${describe(value)} does not fit in ${width * 8} bits (max ${hex(max)})`,
      );
    }
    return width === 4 ? value >>> 0 : value & max;
  }

  #trace(op: "r" | "w", width: Width, offset: number, value: number): void {
    this.tracer?.({ bar: this.name, op, width, offset, value });
  }

  /** One 8-bit read. */
  read8(offset: number): number {
    if (
      this.#closed ||
      !(typeof offset === "number" && offset >= 0 && offset + 1 <= this.size && offset % 1 === 0)
    ) {
      this.#check(offset, 1);
    }
    if (this.#guard !== null) this.#guard(offset, 1, "r");
    checkInterrupt();
    this.counters.mmioReads++;
    const v = this.#backend.read8(offset);
    if (this.tracer) this.#trace("r", 1, offset, v);
    return v;
  }

  /** One aligned 16-bit read. */
  read16(offset: number): number {
    if (
      this.#closed ||
      !(typeof offset === "number" && offset >= 0 && offset + 2 <= this.size && offset % 2 === 0)
    ) {
      this.#check(offset, 2);
    }
    if (this.#guard !== null) this.#guard(offset, 2, "r");
    checkInterrupt();
    this.counters.mmioReads++;
    const v = this.#backend.read16(offset);
    if (this.tracer) this.#trace("r", 2, offset, v);
    return v;
  }

  /** One aligned 32-bit read; the result is unsigned. */
  read32(offset: number): number {
    if (
      this.#closed ||
      !(typeof offset === "number" && offset >= 0 && offset + 4 <= this.size && offset % 4 === 0)
    ) {
      this.#check(offset, 4);
    }
    if (this.#guard !== null) this.#guard(offset, 4, "r");
    checkInterrupt();
    this.counters.mmioReads++;
    const v = this.#backend.read32(offset);
    if (this.tracer) this.#trace("r", 4, offset, v);
    return v;
  }

  /** One 8-bit write. */
  write8(offset: number, value: number): void {
    const v = !this.readOnly && !this.#closed && typeof offset === "number" && offset >= 0 &&
        offset + 1 <= this.size &&
        offset % 1 === 0 && typeof value === "number" && value >= 0 &&
        value <= 0xff && Number.isInteger(value)
      ? value
      : this.#checkWrite(offset, 1, value);
    if (this.#guard !== null) this.#guard(offset, 1, "w");
    if (this.#watchers.size !== 0) this.#narrowWatched(offset, 1);
    checkInterrupt();
    this.counters.mmioWrites++;
    this.#backend.write8(offset, v);
    if (this.tracer) this.#trace("w", 1, offset, v);
  }

  /** One aligned 16-bit write. */
  write16(offset: number, value: number): void {
    const v = !this.readOnly && !this.#closed && typeof offset === "number" && offset >= 0 &&
        offset + 2 <= this.size &&
        offset % 2 === 0 && typeof value === "number" && value >= 0 &&
        value <= 0xffff && Number.isInteger(value)
      ? value
      : this.#checkWrite(offset, 2, value);
    if (this.#guard !== null) this.#guard(offset, 2, "w");
    if (this.#watchers.size !== 0) this.#narrowWatched(offset, 2);
    checkInterrupt();
    this.counters.mmioWrites++;
    this.#backend.write16(offset, v);
    if (this.tracer) this.#trace("w", 2, offset, v);
  }

  /** One aligned 32-bit write; negative int32 values are taken as their unsigned bits. */
  write32(offset: number, value: number): void {
    const v = !this.readOnly && !this.#closed && typeof offset === "number" && offset >= 0 &&
        offset + 4 <= this.size &&
        offset % 4 === 0 && typeof value === "number" && value >= 0 &&
        value <= 0xffffffff && Number.isInteger(value)
      ? value
      : this.#checkWrite(offset, 4, value);
    if (this.#guard !== null) this.#guard(offset, 4, "w");
    checkInterrupt();
    this.counters.mmioWrites++;
    this.#backend.write32(offset, v);
    if (this.#watchers.size !== 0) {
      const fns = this.#watchers.get(offset);
      if (fns !== undefined) { for (const fn of fns) fn(v); }
    }
    if (this.tracer) this.#trace("w", 4, offset, v);
  }

  /**
   * Reads `len` bytes at `offset`: 8-bit accesses at unaligned edges, 32-bit
   * words between them — in one bulk call ({@linkcode Mmio.readWords}: a wide
   * copy where the backend has one and no tracer is set) when the host bytes
   * are word aligned. Counted as the word accesses either way.
   */
  readBytes(offset: number, len: number): Uint8Array {
    this.#range(offset, len);
    if (this.#guard !== null && len > 0) this.#guard(offset, len, "r");
    const out = new Uint8Array(len);
    let i = 0;
    for (; i < len && (offset + i) % 4 !== 0; i++) out[i] = this.read8(offset + i);
    const words = Math.floor((len - i) / 4);
    if (words > 0) {
      if ((out.byteOffset + i) % 4 === 0) {
        this.#readWordsRaw(offset + i, new Uint32Array(out.buffer, out.byteOffset + i, words));
        i += words * 4;
      } else if (this.#backend.readBlock !== undefined && this.tracer === undefined) {
        checkInterrupt();
        this.#backend.readBlock(offset + i, out.subarray(i, i + words * 4));
        this.counters.mmioReads += words;
        i += words * 4;
      } else {
        const dv = new DataView(out.buffer);
        for (const end = i + words * 4; i < end; i += 4) {
          dv.setUint32(i, this.read32(offset + i), true);
        }
      }
    }
    for (; i < len; i++) out[i] = this.read8(offset + i);
    return out;
  }

  /** Writes `bytes` at `offset`, the same way {@linkcode Mmio.readBytes} reads. */
  writeBytes(offset: number, bytes: Uint8Array): void {
    checkBytes(bytes, `${this.name} writeBytes bytes`);
    const len = bytes.length;
    if (this.readOnly) this.#checkWrite(offset, 1, 0);
    this.#range(offset, len);
    if (this.#guard !== null && len > 0) this.#guard(offset, len, "w");
    let i = 0;
    for (; i < len && (offset + i) % 4 !== 0; i++) this.write8(offset + i, bytes[i]);
    const words = Math.floor((len - i) / 4);
    if (words > 0) {
      if ((bytes.byteOffset + i) % 4 === 0) {
        this.#writeWordsRaw(offset + i, new Uint32Array(bytes.buffer, bytes.byteOffset + i, words));
        i += words * 4;
      } else if (this.#backend.writeBlock !== undefined && this.tracer === undefined) {
        checkInterrupt();
        this.#backend.writeBlock(offset + i, bytes.subarray(i, i + words * 4));
        this.counters.mmioWrites += words;
        i += words * 4;
      } else {
        const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
        for (const end = i + words * 4; i < end; i += 4) {
          this.write32(offset + i, dv.getUint32(i, true));
        }
      }
    }
    for (; i < len; i++) this.write8(offset + i, bytes[i]);
  }

  /**
   * Reads `out.length` consecutive 32-bit words at `offset` (4-byte aligned):
   * one range check and one guard call for the whole range, then the
   * backend's bulk copy where it has one (a simulator's `readWords`, a
   * write-combining framebuffer's `readBlock`) and no tracer is set, else
   * single 32-bit loads. Counters (and a tracer) see one 32-bit access per
   * word either way.
   */
  readWords(offset: number, out: Uint32Array): Uint32Array {
    if (!(out instanceof Uint32Array)) {
      fail("EINVAL", `${this.name} readWords takes a Uint32Array, not ${describe(out)}`);
    }
    const len = out.length * 4;
    this.#range(offset, len);
    this.#wordAligned(offset);
    if (len === 0) return out;
    if (this.#guard !== null) this.#guard(offset, len, "r");
    this.#readWordsRaw(offset, out);
    return out;
  }

  /** readWords after the checks and the guard. */
  #readWordsRaw(offset: number, out: Uint32Array): void {
    const b = this.#backend;
    const len = out.length * 4;
    checkInterrupt();
    if (this.tracer === undefined) {
      if (b.readWords !== undefined) {
        b.readWords(offset, out);
        this.counters.mmioReads += out.length;
        return;
      }
      if (b.readBlock !== undefined) {
        b.readBlock(offset, new Uint8Array(out.buffer, out.byteOffset, len));
        this.counters.mmioReads += out.length;
        return;
      }
    }
    const c = this.counters;
    for (let i = 0; i < out.length; i++) {
      const at = offset + i * 4;
      if ((i & 1023) === 1023) checkInterrupt();
      c.mmioReads++;
      const v = b.read32(at);
      out[i] = v;
      if (this.tracer) this.#trace("r", 4, at, v);
    }
  }

  /**
   * Writes `words` as consecutive 32-bit stores at `offset` (4-byte aligned),
   * the bulk counterpart of {@linkcode Mmio.readWords}. A range that covers a
   * watched register goes word by word, so registers keep single-access
   * semantics (their watchers run after each write).
   */
  writeWords(offset: number, words: Uint32Array): void {
    if (!(words instanceof Uint32Array)) {
      fail("EINVAL", `${this.name} writeWords takes a Uint32Array, not ${describe(words)}`);
    }
    const len = words.length * 4;
    if (this.readOnly) this.#checkWrite(offset, 4, words[0] ?? 0);
    this.#range(offset, len);
    this.#wordAligned(offset);
    if (len === 0) return;
    if (this.#guard !== null) this.#guard(offset, len, "w");
    this.#writeWordsRaw(offset, words);
  }

  /** writeWords after the checks and the guard. */
  #writeWordsRaw(offset: number, words: Uint32Array): void {
    const b = this.#backend;
    const len = words.length * 4;
    checkInterrupt();
    let watched = false;
    for (const at of this.#watchers.keys()) if (at >= offset && at < offset + len) watched = true;
    if (this.tracer === undefined && !watched) {
      if (b.writeWords !== undefined) {
        b.writeWords(offset, words);
        this.counters.mmioWrites += words.length;
        return;
      }
      if (b.writeBlock !== undefined) {
        b.writeBlock(offset, new Uint8Array(words.buffer, words.byteOffset, len));
        this.counters.mmioWrites += words.length;
        return;
      }
    }
    const c = this.counters;
    for (let i = 0; i < words.length; i++) {
      const at = offset + i * 4;
      const v = words[i];
      if ((i & 1023) === 1023) checkInterrupt();
      c.mmioWrites++;
      b.write32(at, v);
      if (watched) {
        const fns = this.#watchers.get(at);
        if (fns !== undefined) { for (const fn of fns) fn(v); }
      }
      if (this.tracer) this.#trace("w", 4, at, v);
    }
  }

  /**
   * A watched register (the window, a bind register) takes single 32-bit
   * writes only: a narrow write would change it behind its watchers.
   */
  #narrowWatched(offset: number, width: Width): void {
    const word = offset - (offset % 4);
    if (!this.#watchers.has(word)) return;
    fail(
      "EINVAL",
      `${this.name} ${width * 8}-bit write at ${hex(offset)}: register ${
        hex(word)
      } takes single 32-bit writes only (write32)`,
    );
  }

  #wordAligned(offset: number): void {
    if (offset % 4 !== 0) {
      fail("EINVAL", `${this.name} offset ${hex(offset)} is not aligned to the 4-byte word width`);
    }
  }

  #range(offset: number, len: number): void {
    if (this.#closed) fail("ENODEV", `${this.name} is closed (its GPU was closed)`, "");
    checkUint(offset, `${this.name} offset`);
    checkUint(len, `${this.name} length`);
    if (offset + len > this.size) {
      fail(
        "EINVAL",
        `${this.name} range ${hex(offset)} +${hex(len)} is past the end of the ${
          hex(this.size)
        }-byte aperture`,
      );
    }
  }

  /** True when the backend moves bulk data with wide copies (a write-combining mapping). */
  get hasBlockCopies(): boolean {
    return this.#backend.readBlock !== undefined;
  }

  /** @internal See {@linkcode installGuard}. */
  static {
    installGuardImpl = (mmio, guard) => {
      if (mmio.#guard !== null) {
        fail("EBUSY", `${mmio.name} already has its guard (one owner: BAR1)`);
      }
      mmio.#guard = guard;
    };
  }

  /**
   * Calls `fn` after every 32-bit write of the register at `offset`, whoever
   * makes it: the device counts PRAMIN window moves this way, the PRAMIN
   * owner keeps its idea of the window current and BAR1 follows its bind
   * registers, also when a REPL user pokes them.
   */
  watch(offset: number, fn: (value: number) => void): void {
    checkUint(offset, `${this.name} watch offset`);
    if (typeof fn !== "function") fail("EINVAL", `a watcher is a function, not ${describe(fn)}`);
    const fns = this.#watchers.get(offset);
    if (fns === undefined) this.#watchers.set(offset, [fn]);
    else fns.push(fn);
  }

  /** Unmaps the BAR; later accesses fail with ENODEV. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#backend.close?.();
  }

  /** True once {@linkcode Mmio.close} ran. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Releases it at the end of a `using` scope (same as closing it explicitly). */
  [Symbol.dispose](): void {
    this.close();
  }
}
