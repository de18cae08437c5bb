/**
 * PRAMIN: CPU access to VRAM through the 1 MiB aperture at BAR0 + 0x700000,
 * positioned over VRAM by the BAR0 window register (facts §2).
 *
 * Two layers, as nova-core's reviewers asked:
 * - {@linkcode PraminView}: a plain "1 MiB of VRAM at a 64 KiB-aligned base";
 *   accesses outside it are errors.
 * - {@linkcode PraminWindow}: the auto-positioning guard above it. It moves the
 *   window only when an access falls outside the current 1 MiB (nova-core v7
 *   moves on every 64 KiB block), so a sequential sweep costs one move per MiB
 *   in either direction, and it restores the saved window base on dispose.
 *
 * Every access is 32-bit MMIO; 64-bit values go as two 32-bit accesses, low
 * half first (what NVIDIA's RM does, facts D3); bulk transfers use 8/16-bit
 * accesses only at unaligned edges.
 *
 * @module
 */

import { describe, fail, formatSize, hex } from "../hw/errors.ts";
import { u64 } from "./types.ts";
import { checkBytes, checkOptions, checkUint } from "../hw/validate.ts";
import { interruptPoint, type Mmio } from "../hw/mmio.ts";
import {
  getField,
  isGpuGone,
  isPriError,
  NV_PMC_BOOT_0,
  NV_PMC_BOOT_42,
  NV_PRAMIN,
  PRAMIN_BASE_SHIFT,
  PRAMIN_SIZE,
  setField,
  type WindowRegister,
} from "../hw/regs.ts";

const BLOCK = 2 ** PRAMIN_BASE_SHIFT; // 64 KiB window granularity

function alignDown(x: number, a: number): number {
  return x - (x % a);
}

function alignUp(x: number, a: number): number {
  return alignDown(x + a - 1, a);
}

/** Refuses a value that does not fit the access width (before anything moves). */
function checkValue(value: number, max: number, bits: number): void {
  if (!Number.isInteger(value) || value > max || value < -(max + 1) / 2) {
    fail("EINVAL", `value ${describe(value)} does not fit in ${bits} bits`);
  }
}

/**
 * One position of the PRAMIN aperture: VRAM [base, base + 1 MiB). Addresses
 * are VRAM byte addresses; the view checks they fall inside it.
 */
export class PraminView {
  /** VRAM address of the first byte of the aperture (64 KiB aligned). */
  readonly base: number;
  readonly #bar0: Mmio;
  readonly #current: (() => number) | null;
  readonly #policed: ((addr: number, len: number, what: string) => void) | null;

  #w(addr: number, len: number, what: string, align = 1): number {
    const at = this.#at(addr, len, align);
    this.#policed?.(addr, len, `PRAMIN view ${what}`);
    return at;
  }

  /**
   * Constructs it. `current` says where the window points now: a view made by
   * {@linkcode Pramin.view} refuses every access once the window has moved
   * away from `base` (by a window guard, another view or a raw register
   * write), instead of reading or writing someone else's VRAM.
   */
  constructor(
    bar0: Mmio,
    base: number,
    current: (() => number) | null = null,
    policed: ((addr: number, len: number, what: string) => void) | null = null,
  ) {
    if (!Number.isSafeInteger(base) || base < 0 || base % BLOCK !== 0) {
      fail("EINVAL", `PRAMIN base ${describe(base)} is not a 64 KiB-aligned VRAM address`);
    }
    if (current !== null && typeof current !== "function") {
      fail("EINVAL", `PraminView current ${describe(current)} is not a function`);
    }
    this.#bar0 = bar0;
    this.base = base;
    this.#current = current;
    if (policed !== null && typeof policed !== "function") {
      fail("EINVAL", `PraminView policy ${describe(policed)} is not a function`);
    }
    this.#policed = policed;
  }

  /** True while the window still points at this view's base (always for a view without `current`). */
  get valid(): boolean {
    return this.#current === null || this.#current() === this.base;
  }

  /** True when [addr, addr + len) lies inside this view. */
  contains(addr: number, len: number): boolean {
    if (typeof addr !== "number" || typeof len !== "number") {
      checkUint(addr, "VRAM address");
      checkUint(len, "length");
    }
    return addr >= this.base && addr + len <= this.base + PRAMIN_SIZE;
  }

  #at(addr: number, len: number, align = 1): number {
    if (typeof addr !== "number" || !Number.isSafeInteger(addr) || addr < 0) {
      checkUint(addr, "VRAM address");
    }
    if (addr % align !== 0) {
      fail("EINVAL", `VRAM address ${hex(addr)} is not aligned to the ${align}-byte access width`);
    }
    if (!this.valid) {
      const now = this.#current!();
      fail(
        "EFAULT",
        `this PRAMIN view was made for VRAM ${hex(this.base)}.., but the window now points at ${
          now < 0 ? "system memory" : hex(now)
        }: refused ${hex(addr)} (it would reach other VRAM)`,
        `pramin.view(${hex(this.base)}) again, or use a window guard (pramin.window())`,
      );
    }
    if (!this.contains(addr, len)) {
      fail(
        "EINVAL",
        `VRAM ${hex(addr)} + ${len} is outside the PRAMIN view [${hex(this.base)}, ${
          hex(this.base + PRAMIN_SIZE)
        })`,
      );
    }
    return NV_PRAMIN + (addr - this.base);
  }

  /** 8-bit read at a VRAM address inside the view. */
  read8(addr: number): number {
    return this.#bar0.read8(this.#at(addr, 1));
  }

  /** 16-bit read. */
  read16(addr: number): number {
    return this.#bar0.read16(this.#at(addr, 2, 2));
  }

  /** 32-bit read. */
  read32(addr: number): number {
    return this.#bar0.read32(this.#at(addr, 4, 4));
  }

  /** 8-bit write. */
  write8(addr: number, value: number): void {
    this.#bar0.write8(this.#w(addr, 1, "write8"), value);
  }

  /** 16-bit write. */
  write16(addr: number, value: number): void {
    this.#bar0.write16(this.#w(addr, 2, "write16", 2), value);
  }

  /** 32-bit write. */
  write32(addr: number, value: number): void {
    this.#bar0.write32(this.#w(addr, 4, "write32", 4), value);
  }

  /**
   * Moves bytes between VRAM [addr, addr + len) (inside the view) and
   * `host[at..]`: 32-bit accesses for aligned words, 8/16-bit at the edges.
   */
  transfer(addr: number, host: Uint8Array, at: number, len: number, write: boolean): void {
    checkBytes(host, "transfer host buffer");
    checkUint(at, "transfer host offset");
    checkUint(len, "transfer length");
    if (typeof write !== "boolean") {
      fail("EINVAL", `transfer write ${describe(write)} is not a boolean`);
    }
    if (at + len > host.length) {
      fail(
        "EINVAL",
        `transfer of ${len} bytes at host offset ${at} is past the ${host.length}-byte buffer`,
      );
    }
    let off = write ? this.#w(addr, len, "transfer") : this.#at(addr, len);
    const end = off + len;
    const bar = this.#bar0;
    const dv = new DataView(host.buffer, host.byteOffset, host.byteLength);
    let i = at;
    // One 16-bit (when aligned and room) or 8-bit access at an unaligned edge.
    const edge = (): void => {
      const n = off % 2 === 0 && off + 2 <= end ? 2 : 1;
      if (n === 2) {
        if (write) bar.write16(off, dv.getUint16(i, true));
        else dv.setUint16(i, bar.read16(off), true);
      } else if (write) bar.write8(off, host[i]);
      else host[i] = bar.read8(off);
      off += n;
      i += n;
    };
    while (off < end && off % 4 !== 0) edge();
    const wordsEnd = Math.max(off, end - (end % 4));
    if ((host.byteOffset + i) % 4 === 0) {
      // Host side aligned: index a Uint32Array (little-endian hosts only, as x86/arm64 Linux are).
      // One bulk MMIO call per window: counted and traced as the single accesses.
      const words = new Uint32Array(host.buffer, host.byteOffset + i, (wordsEnd - off) / 4);
      if (words.length > 0) {
        if (write) bar.writeWords(off, words);
        else bar.readWords(off, words);
      }
      i += words.length * 4;
      off = wordsEnd;
    } else if (write) {
      for (; off < wordsEnd; off += 4, i += 4) bar.write32(off, dv.getUint32(i, true));
    } else {
      for (; off < wordsEnd; off += 4, i += 4) dv.setUint32(i, bar.read32(off), true);
    }
    while (off < end) edge();
  }

  /** Fills VRAM [addr, addr + len) inside the view with `byte`. */
  fill(addr: number, len: number, byte: number): void {
    checkUint(len, "fill length");
    if (!Number.isInteger(byte) || byte < 0 || byte > 0xff) {
      fail("EINVAL", `fill byte ${describe(byte)} is not 0..0xff`);
    }
    let off = this.#w(addr, len, "fill");
    const end = off + len;
    const bar = this.#bar0;
    const word = (byte * 0x01010101) >>> 0;
    while (off < end && off % 4 !== 0) bar.write8(off++, byte);
    const wordsEnd = Math.max(off, end - (end % 4));
    if (wordsEnd > off) {
      const pattern = fillPattern(word, Math.min((wordsEnd - off) / 4, FILL_WORDS));
      while (off < wordsEnd) {
        const n = Math.min(pattern.length, (wordsEnd - off) / 4);
        bar.writeWords(off, n === pattern.length ? pattern : pattern.subarray(0, n));
        off += n * 4;
      }
    }
    while (off < end) bar.write8(off++, byte);
  }

  /** Reads 32-bit words at `addr` (4-byte aligned, inside the view) into `out`, in one bulk call. */
  readWords(addr: number, out: Uint32Array): Uint32Array {
    if (!(out instanceof Uint32Array)) {
      fail("EINVAL", `readWords takes a Uint32Array, not ${describe(out)}`);
    }
    checkUint(addr, "VRAM address");
    if (addr % 4 !== 0) fail("EINVAL", `VRAM address ${hex(addr)} is not 4-byte aligned`);
    return this.#bar0.readWords(this.#at(addr, out.length * 4), out);
  }

  /** Writes 32-bit words at `addr` (4-byte aligned, inside the view), in one bulk call. */
  writeWords(addr: number, words: Uint32Array): void {
    if (!(words instanceof Uint32Array)) {
      fail("EINVAL", `writeWords takes a Uint32Array, not ${describe(words)}`);
    }
    checkUint(addr, "VRAM address");
    if (addr % 4 !== 0) fail("EINVAL", `VRAM address ${hex(addr)} is not 4-byte aligned`);
    this.#bar0.writeWords(this.#w(addr, words.length * 4, "writeWords"), words);
  }
}

/** Words per bulk fill call (64 KiB). */
const FILL_WORDS = 16384;
let fillCache: Uint32Array | null = null;

/** A buffer of at least `n` words all equal to `word` (reused between fills). */
function fillPattern(word: number, n: number): Uint32Array {
  if (fillCache === null || fillCache.length < n) fillCache = new Uint32Array(FILL_WORDS);
  if (fillCache[0] !== word || fillCache[fillCache.length - 1] !== word) fillCache.fill(word);
  return fillCache;
}

/** Options for {@linkcode Pramin}. */
export interface PraminOptions {
  /** The window register of this chip (`windowRegister(architecture)` in hw/regs.ts). */
  register: WindowRegister;
  /** Bytes of VRAM; accesses at or past this are refused. */
  vramSize: number;
  /**
   * The write policy (see `mm/vram_policy.ts`): user writes (windows from
   * {@linkcode Pramin.window}, views from {@linkcode Pramin.view}, the
   * one-shot writes) into VRAM it names are refused unless forced.
   */
  policy?: () =>
    | { checkWrite(addr: number, len: number, what: string, force?: boolean): void }
    | null;
}

/**
 * The PRAMIN owner for one GPU. Hands out one {@linkcode PraminWindow} at a time.
 *
 * @example
 * ```ts
 * import { openGpu } from "../mod.ts";
 * using gpu = await openGpu({ device: "sim" });
 * using w = gpu.pramin.window();
 * w.write32(0x1000, 0xdeadbeef);
 * w.read32(0x1000); // 0xdeadbeef
 * ```
 */
export class Pramin {
  /** BAR0, through which every access goes. */
  readonly bar0: Mmio;
  /** The window register. */
  readonly register: WindowRegister;
  /** Bytes of VRAM. */
  readonly vramSize: number;
  /** Highest address + 1 the window register can reach. */
  readonly reach: number;
  /**
   * Called during bulk transfers of 8 MiB or more, after each window's worth
   * (the REPL draws a progress line with it on a terminal); null for none.
   */
  progress: ((done: number, total: number, what: string) => void) | null = null;
  #cached: number | null = null; // last value written to / read from the register
  #base = -1; // the VRAM base #cached selects; -1 until known
  #active: PraminWindow | null = null;
  readonly #policy: PraminOptions["policy"];

  /** Constructs it (see the class documentation for who does and how). */
  constructor(bar0: Mmio, options: PraminOptions) {
    this.bar0 = bar0;
    this.#policy = options.policy;
    this.register = options.register;
    this.vramSize = options.vramSize;
    this.reach = 2 ** (options.register.base.hi - options.register.base.lo + 1 + PRAMIN_BASE_SHIFT);
    // Every write of the window register (ours, or a raw poke) updates what we
    // know (the device layer counts the moves).
    bar0.watch(options.register.offset, (raw) => this.#remember(raw));
  }

  /** @internal EPERM when a user write of [addr, addr + len) touches VRAM the policy names. */
  checkWrite(addr: number, len: number, what: string, force = false): void {
    checkUint(addr, "VRAM address");
    checkUint(len, "length");
    if (typeof what !== "string") {
      fail("EINVAL", `checkWrite what ${describe(what)} is not a string`);
    }
    if (force) return;
    this.#policy?.()?.checkWrite(addr, len, what);
  }

  /** Reads the window register (one MMIO read) and returns the VRAM base it selects. */
  readBase(): number {
    this.#remember(this.bar0.read32(this.register.offset));
    return this.#base;
  }

  #remember(raw: number): void {
    this.#cached = raw;
    const t = this.register.target;
    // A window aimed at system memory (TARGET != VID_MEM) is no VRAM window: base -1.
    this.#base = t === null || getField(raw, t) === 0
      ? getField(raw, this.register.base) * BLOCK
      : -1;
  }

  /**
   * The VRAM base of the window as last seen or set (no MMIO once known); -1
   * when the register aims the aperture at system memory.
   */
  get base(): number {
    return this.#cached === null ? this.readBase() : this.#base;
  }

  /** @internal The window register's value as last written or read (null: not read yet). */
  get registerValue(): number | null {
    return this.#cached;
  }

  /** True while a window guard is open. */
  get busy(): boolean {
    return this.#active !== null;
  }

  /**
   * The open window guard, if any (at most one): also one an input opened
   * without keeping it, which would otherwise block every later window.
   * Close it with `.close()` (the saved base is restored).
   */
  windows(): PraminWindow[] {
    const list = this.#active === null ? [] : [this.#active];
    return Object.defineProperty(list, Symbol.for("Deno.customInspect"), {
      value: () =>
        list.length === 0
          ? "no PRAMIN window open"
          : list.map((w) =>
            `PraminWindow at ${hex(this.#base)} (restores ${hex(w.savedBase)} on close)`
          ).join("\n"),
    });
  }

  /**
   * Opens the window guard. It saves the register now and restores it when
   * disposed, also when an exception escapes the `using` scope. A second
   * guard while one is open fails with EBUSY.
   */
  window(options: { force?: boolean } = {}): PraminWindow {
    checkOptions(options, { force: "boolean" }, "pramin.window options");
    return this.#openWindow(options.force ? "forced" : "user");
  }

  #openWindow(kind: "user" | "forced" | "internal"): PraminWindow {
    if (this.#active !== null) {
      fail(
        "EBUSY",
        "a PRAMIN window is already open; dispose it (leave its `using` scope) before opening another",
        "pramin.windows() shows the open one; pramin.windows()[0].close() closes it (restoring the base)",
      );
    }
    const saved = this.bar0.read32(this.register.offset);
    if (isPriError(saved) || isGpuGone(saved)) {
      // Saving it would mean writing it back on close: a PRI error value aims the window
      // somewhere nobody chose (TARGET bits set: system memory).
      fail(
        "EIO",
        `${this.register.name} (${hex(this.register.offset)}) read ${hex(saved, 8)} (${
          isGpuGone(saved) ? "all ones: the GPU is gone" : "a PRI error"
        }): refusing to open a window that would write it back`,
      );
    }
    this.#remember(saved);
    const w = new PraminWindow(this, saved, (raw) => this.#release(w, raw), null, kind);
    this.#active = w;
    return w;
  }

  /**
   * A window for library code: the open window's aperture when one is open
   * (say, a user's `using w = pramin.window()` at the prompt), else a new
   * window. A borrowed window shares the one aperture — whoever uses it next
   * repositions it — and its dispose neither restores nor releases anything;
   * the owner's dispose restores the saved base as usual.
   */
  borrow(): PraminWindow {
    if (this.#active === null) return this.#openWindow("internal");
    return new PraminWindow(this, this.#cached ?? 0, () => {}, this.#active, "internal");
  }

  /** Points the aperture at `base` (64 KiB aligned) and returns the view; writes only if it moves. */
  view(base: number, options: { force?: boolean } = {}): PraminView {
    checkOptions(options, { force: "boolean" }, "pramin.view options");
    const force = options.force === true;
    return this.#view(base, (addr, len, what) => this.checkWrite(addr, len, what, force));
  }

  /** @internal A view for a window guard (its writes were checked by the window). */
  internalView(base: number): PraminView {
    return this.#view(base, null);
  }

  #view(
    base: number,
    policed: ((addr: number, len: number, what: string) => void) | null,
  ): PraminView {
    const v = new PraminView(this.bar0, base, () => this.base, policed);
    if (base >= this.vramSize) {
      fail("EINVAL", `PRAMIN base ${hex(base)} is past the end of VRAM (${hex(this.vramSize)})`);
    }
    if (base >= this.reach) {
      fail(
        "EINVAL",
        `PRAMIN base ${hex(base)} is beyond the ${this.register.name} reach ${hex(this.reach)}`,
      );
    }
    const current = this.base;
    if (current !== base) {
      if (this.bar0.readOnly) {
        const at = current < 0
          ? "system memory"
          : `[${hex(current)}, ${hex(current + PRAMIN_SIZE)})`;
        fail(
          "EPERM",
          `VRAM [${hex(base)}, ${
            hex(base + PRAMIN_SIZE)
          }) is outside the PRAMIN window (now at ${at}); moving it is a write of ${this.register.name}, which a read-only session refuses`,
          "reopen without --read-only to move it (read-only, only VRAM inside the current window can be read)",
        );
      }
      let raw = setField(this.#cached!, this.register.base, base / BLOCK);
      if (this.register.target !== null) raw = setField(raw, this.register.target, 0);
      this.#writeRegister(raw);
    }
    return v;
  }

  #writeRegister(raw: number): void {
    this.bar0.write32(this.register.offset, raw); // the watcher remembers and counts it
  }

  #release(w: PraminWindow, saved: number): void {
    if (this.#active !== w) return;
    this.#active = null;
    if (this.#cached !== saved) this.#writeRegister(saved);
  }

  /** Closes an open window (restoring the saved base); called when the GPU closes. */
  close(): void {
    this.#active?.close();
  }

  /**
   * Checks a one-shot access before a window is opened for it (opening one
   * reads the window register): bad input touches nothing.
   */
  #pre(addr: unknown, len: number, align: number): void {
    if (typeof addr !== "number" || !Number.isSafeInteger(addr) || addr < 0) {
      checkUint(addr, "VRAM address");
    }
    const a = addr as number;
    if (a % align !== 0) {
      fail("EINVAL", `VRAM address ${hex(a)} is not aligned to the ${align}-byte access width`);
    }
    const limit = Math.min(this.vramSize, this.reach);
    if (a + len > limit) {
      fail("EINVAL", `VRAM ${hex(a)} + ${hex(len)} is past the end of VRAM (${hex(limit)} bytes)`);
    }
  }

  #oneShot(addr: number, len: number, what: string, options: { force?: boolean }): void {
    checkOptions(options, { force: "boolean" }, `${what} options`);
    this.checkWrite(addr, len, what, options.force === true);
  }

  /** One-shot 32-bit read (through the open window, or one opened and closed for it). */
  read32(addr: number): number {
    this.#pre(addr, 4, 4);
    using w = this.borrow();
    return w.read32(addr);
  }

  /** One-shot 32-bit write (opens and closes a window); `{ force: true }` for VRAM the policy names. */
  write32(addr: number, value: number, options: { force?: boolean } = {}): void {
    this.#pre(addr, 4, 4);
    checkValue(value, 0xffffffff, 32);
    this.#oneShot(addr, 4, "pramin.write32", options);
    using w = this.borrow();
    w.write32(addr, value);
  }

  /** One-shot 64-bit read. */
  read64(addr: number): bigint {
    this.#pre(addr, 8, 8);
    using w = this.borrow();
    return w.read64(addr);
  }

  /** One-shot 64-bit write. */
  write64(addr: number, value: bigint | number, options: { force?: boolean } = {}): void {
    this.#pre(addr, 8, 8);
    u64(value, "value");
    this.#oneShot(addr, 8, "pramin.write64", options);
    using w = this.borrow();
    w.write64(addr, value);
  }

  /** One-shot bulk read. */
  readBytes(addr: number, len: number): Uint8Array {
    checkUint(len, "read length");
    this.#pre(addr, len, 1);
    using w = this.borrow();
    return w.readBytes(addr, len);
  }

  /** One-shot bulk write. */
  writeBytes(addr: number, bytes: Uint8Array, options: { force?: boolean } = {}): void {
    checkBytes(bytes, "writeBytes bytes");
    this.#pre(addr, bytes.length, 1);
    this.#oneShot(addr, bytes.length, "pramin.writeBytes", options);
    using w = this.borrow();
    w.writeBytes(addr, bytes);
  }

  /** One-shot bulk read into `out` (see {@linkcode PraminWindow.readInto}). */
  readInto(addr: number, out: Uint8Array): Uint8Array {
    checkBytes(out, "readInto buffer");
    this.#pre(addr, out.length, 1);
    using w = this.borrow();
    return w.readInto(addr, out);
  }

  // --- VRAM images: save, load, compare ---------------------------------------

  /** Checks a VRAM range for an image: 4-byte aligned, non-empty, inside VRAM. */
  #imageRange(addr: unknown, size: unknown, what: string): void {
    checkUint(addr, `${what} VRAM address`);
    checkUint(size, `${what} size`);
    const a = addr as number;
    const n = size as number;
    if (a % 4 !== 0) fail("EINVAL", `${what} VRAM address ${hex(a)} is not 4-byte aligned`);
    if (n === 0 || n % 4 !== 0) {
      fail("EINVAL", `${what} size ${hex(n)} is not a non-zero multiple of 4 bytes`);
    }
    const limit = Math.min(this.vramSize, this.reach);
    if (a + n > limit) {
      fail(
        "EINVAL",
        `${what} range [${hex(a)}, ${hex(a + n)}) is past the end of VRAM (${hex(limit)} bytes)`,
      );
    }
  }

  /** BOOT_0 and BOOT_42 as read now (two register reads), for an image's header. */
  #chipWords(): [number, number] {
    return [this.bar0.read32(NV_PMC_BOOT_0), this.bar0.read32(NV_PMC_BOOT_42)];
  }

  /**
   * Saves VRAM [addr, addr + size) to `file` as a VRAM image (the format is
   * in {@linkcode VRAM_IMAGE_MAGIC}'s documentation: a 64-byte header naming
   * the address, size and chip, then the bytes). Reads through PRAMIN 1 MiB at
   * a time (bounded memory, whatever the size), into `file.partial`, renamed
   * to `file` once complete (an interrupted save leaves no file). `addr` and
   * `size` are 4-byte aligned and inside VRAM; bad input touches nothing.
   *
   * @example
   * ```ts
   * import { openGpu } from "../mod.ts";
   * using gpu = await openGpu({ device: "sim" });
   * const a = gpu.mm.buddy.alloc(64 << 10);
   * const file = Deno.makeTempFileSync();
   * gpu.pramin.save(a.start, a.size, file); // saved [0x..., 0x...) (64 KiB) to /tmp/...
   * gpu.pramin.compare(a.start, file).same; // true
   * ```
   */
  save(addr: number, size: number, file: string): VramImageResult {
    this.#imageRange(addr, size, "pramin.save");
    checkPath(file, "pramin.save");
    const partial = `${file}.partial`;
    let out: Deno.FsFile;
    try {
      out = Deno.openSync(partial, { write: true, create: true, truncate: true });
    } catch (e) {
      return fail(
        "EIO",
        `pramin.save: cannot create ${partial}: ${errorText(e)}`,
      );
    }
    let done = false;
    let chip: [number, number];
    try {
      // The file exists before the first MMIO access: a bad path costs none.
      chip = this.#chipWords();
      writeAll(out, encodeImageHeader({ addr, size, boot0: chip[0], boot42: chip[1] }), partial);
      using w = this.borrow();
      for (const [at, part] of this.#imageChunks(size, "save")) {
        w.readInto(addr + at, part);
        writeAll(out, part, partial);
      }
      done = true;
    } finally {
      out.close();
      if (!done) removeQuietly(partial);
    }
    try {
      Deno.renameSync(partial, file);
    } catch (e) {
      removeQuietly(partial);
      fail("EIO", `pramin.save: cannot rename ${partial} to ${file}: ${errorText(e)}`);
    }
    return imageResult("saved", file, addr, size, { addr, size, boot0: chip[0], boot42: chip[1] });
  }

  /**
   * `size` bytes of an image in chunks of one reused buffer, as [offset, part]: Ctrl-C is heard
   * before each, progress drawn after each (8 MiB and more).
   */
  *#imageChunks(size: number, what: string): Generator<[number, Uint8Array]> {
    const chunk = new Uint8Array(Math.min(size, IMAGE_CHUNK));
    for (let at = 0; at < size; at += chunk.length) {
      interruptPoint();
      const n = Math.min(chunk.length, size - at);
      yield [at, n === chunk.length ? chunk : chunk.subarray(0, n)];
      if (size >= 8 * 2 ** 20) this.progress?.(at + n, size, `pramin.${what}`);
    }
  }

  /**
   * Writes a VRAM image (or a raw file: all its bytes) at `addr`: the whole
   * file is checked first (header, version, length against the header,
   * alignment, the range inside VRAM) and the range against the write
   * policy — firmware's VRAM and novamm's own tables are refused (EPERM
   * naming the owner) unless `{ force: true }` — so a bad file or a refused
   * range writes nothing. A read-only session refuses (EPERM). The image may
   * go to another address than the one it was saved from.
   *
   * @example
   * ```ts
   * import { openGpu } from "../mod.ts";
   * using gpu = await openGpu({ device: "sim" });
   * const a = gpu.mm.buddy.alloc(4096);
   * const file = Deno.makeTempFileSync();
   * gpu.pramin.save(a.start, 4096, file);
   * gpu.pramin.load(a.start, file); // loaded [0x..., 0x...) (4 KiB) from /tmp/...
   * ```
   */
  load(addr: number, file: string, options: { force?: boolean } = {}): VramImageResult {
    checkOptions(options, { force: "boolean" }, "pramin.load options");
    checkUint(addr, "pramin.load VRAM address");
    checkPath(file, "pramin.load");
    if (this.bar0.readOnly) {
      fail(
        "EPERM",
        `pramin.load of ${file} to VRAM ${hex(addr)} refused: this session is read-only`,
        "reopen without --read-only to write VRAM",
      );
    }
    const input = openImage(file, "pramin.load");
    try {
      const { size, header } = input;
      this.#imageRange(addr, size, "pramin.load");
      this.checkWrite(addr, size, "pramin.load", options.force === true);
      using w = this.borrow();
      for (const [at, part] of this.#imageChunks(size, "load")) {
        readAll(input.file, part, file, input.dataOffset + at);
        w.writeBytes(addr + at, part);
      }
      return imageResult("loaded", file, addr, size, header);
    } finally {
      input.file.close();
    }
  }

  /**
   * Compares VRAM at `addr` with a VRAM image (or a raw file) word by word,
   * 1 MiB at a time, and returns how many 32-bit words differ, the differing
   * byte ranges `[start, end)` (consecutive words merged) and the first
   * differing words with the file's and VRAM's value; the lists stop at
   * `maxDifferences` (default 32), the counts do not. Reads only.
   *
   * @example
   * ```ts
   * import { openGpu } from "../mod.ts";
   * using gpu = await openGpu({ device: "sim" });
   * const a = gpu.mm.buddy.alloc(4096);
   * const file = Deno.makeTempFileSync();
   * gpu.pramin.save(a.start, 4096, file);
   * gpu.pramin.write32(a.start + 8, 0x1234);
   * gpu.pramin.compare(a.start, file); // 1 word differs in 1 range: [0x...8, 0x...c) ...
   * ```
   */
  compare(
    addr: number,
    file: string,
    options: { maxDifferences?: number } = {},
  ): VramCompareResult {
    checkOptions(options, { maxDifferences: "number" }, "pramin.compare options");
    const max = options.maxDifferences ?? 32;
    if (!Number.isSafeInteger(max) || max < 0 || max > 2 ** 20) {
      fail(
        "EINVAL",
        `pramin.compare maxDifferences ${describe(max)} is not an integer in 0..${hex(2 ** 20)}`,
      );
    }
    checkUint(addr, "pramin.compare VRAM address");
    checkPath(file, "pramin.compare");
    const input = openImage(file, "pramin.compare");
    try {
      const { size, header } = input;
      this.#imageRange(addr, size, "pramin.compare");
      const fromVram = new Uint8Array(Math.min(size, IMAGE_CHUNK));
      const b32 = new Uint32Array(fromVram.buffer);
      const words: VramWordDifference[] = [];
      const ranges: [number, number][] = [];
      let count = 0;
      let rangeCount = 0;
      let open = -1; // end of the range being extended, or -1
      using w = this.borrow();
      for (const [at, fromFile] of this.#imageChunks(size, "compare")) {
        const n = fromFile.length;
        const a32 = new Uint32Array(fromFile.buffer, 0, n / 4);
        readAll(input.file, fromFile, file, input.dataOffset + at);
        w.readInto(addr + at, fromVram.subarray(0, n));
        for (let i = 0; i < n / 4; i++) {
          if (a32[i] === b32[i]) continue;
          const where = addr + at + 4 * i;
          count++;
          if (words.length < max) words.push({ address: where, file: a32[i], vram: b32[i] });
          if (open === where) {
            // The range goes on; extend it in the list if it made the list.
            open += 4;
            const last = ranges.at(-1);
            if (last !== undefined && last[1] === where) last[1] = open;
            continue;
          }
          rangeCount++;
          open = where + 4;
          if (ranges.length < max) ranges.push([where, open]);
        }
      }
      const result: VramCompareResult = {
        file,
        addr,
        size,
        header,
        same: count === 0,
        differentWords: count,
        differentRanges: rangeCount,
        ranges,
        words,
      };
      return Object.defineProperty(result, Symbol.for("Deno.customInspect"), {
        value: () => formatCompare(result),
        enumerable: false,
      });
    } finally {
      input.file.close();
    }
  }
}

/**
 * The auto-positioning PRAMIN guard. Addresses are VRAM byte addresses (plain
 * numbers); the window follows them. Use with `using`.
 */
export class PraminWindow {
  readonly #pramin: Pramin;
  readonly #saved: number;
  readonly #release: (saved: number) => void;
  #view: PraminView | null = null;
  #open = true;
  /** `user` windows obey the write policy; `forced` ones were opened with `{ force: true }`. */
  readonly #kind: "user" | "forced" | "internal";
  readonly #owner: PraminWindow | null;

  /**
   * Made by {@linkcode Pramin.window} (an owner: restores `saved` through
   * `release`) or {@linkcode Pramin.borrow} (borrowing from `owner`: usable
   * while the owner is open).
   */
  constructor(
    pramin: Pramin,
    saved: number,
    release: (saved: number) => void,
    owner: PraminWindow | null = null,
    kind: "user" | "forced" | "internal" = "user",
  ) {
    this.#kind = kind;
    this.#pramin = pramin;
    this.#saved = saved;
    this.#release = release;
    this.#owner = owner;
  }

  /** The VRAM base the window register held when this guard opened. */
  get savedBase(): number {
    return getField(this.#saved, this.#pramin.register.base) * BLOCK;
  }

  /** The VRAM base the aperture points at now. */
  get base(): number {
    return this.#pramin.base;
  }

  /** Checks [addr, addr + len): integer, aligned, inside VRAM and the register's reach. */
  #check(addr: number, len: number, align: number): void {
    if (!this.#open) fail("ENODEV", "this PRAMIN window has been closed");
    if (this.#owner !== null && !this.#owner.#open) {
      fail("ENODEV", "the PRAMIN window this one borrowed from has been closed");
    }
    if (!Number.isSafeInteger(addr) || addr < 0) {
      fail("EINVAL", `VRAM address ${describe(addr)} is not a non-negative integer`);
    }
    if (addr % align !== 0) {
      fail("EINVAL", `VRAM address ${hex(addr)} is not aligned to the ${align}-byte access width`);
    }
    const limit = Math.min(this.#pramin.vramSize, this.#pramin.reach);
    if (addr + len > limit) {
      fail(
        "EINVAL",
        `VRAM ${hex(addr)} + ${hex(len)} is past the end of VRAM (${hex(limit)} bytes${
          limit < this.#pramin.vramSize ? `, the ${this.#pramin.register.name} reach` : ""
        })`,
      );
    }
  }

  /** Returns a view containing [addr, addr + len), moving the window only if it must. */
  #position(addr: number, len: number): PraminView {
    let v = this.#view;
    // The aperture may have been moved by a borrowed window since: compare bases.
    if (v !== null && v.base === this.#pramin.base && v.contains(addr, len)) return v;
    const current = this.#pramin.base;
    let base: number;
    // current is -1 while the window points at system memory: never reuse that.
    if (current >= 0 && addr >= current && addr + len <= current + PRAMIN_SIZE) {
      base = current;
    } else if (addr < current) {
      // Moving down: put the access at the top of the window so a descending
      // sweep also moves once per MiB.
      base = Math.min(
        alignDown(addr, BLOCK),
        Math.max(0, alignUp(addr + len - PRAMIN_SIZE, BLOCK)),
      );
    } else {
      base = alignDown(addr, BLOCK);
    }
    v = this.#pramin.internalView(base);
    this.#view = v;
    return v;
  }

  #locate(addr: number, len: number, align: number): PraminView {
    this.#check(addr, len, align);
    return this.#position(addr, len);
  }

  /** A write through a user window: checked against the write policy first. */
  #policed(addr: number, len: number, what: string): void {
    if (this.#kind === "user") this.#pramin.checkWrite(addr, len, `PRAMIN ${what}`);
  }

  #checkLength(len: number, what: string): void {
    if (!Number.isSafeInteger(len) || len < 0) {
      fail("EINVAL", `${what} length ${describe(len)} is not a non-negative integer`);
    }
    // Before anything is allocated for it: no read or write can be longer than VRAM.
    if (len > this.#pramin.vramSize) {
      fail(
        "EINVAL",
        `${what} length ${hex(len)} is more than all of VRAM (${hex(this.#pramin.vramSize)})`,
      );
    }
  }

  /** 8-bit read. */
  read8(addr: number): number {
    return this.#locate(addr, 1, 1).read8(addr);
  }

  /** 16-bit read (2-byte aligned). */
  read16(addr: number): number {
    return this.#locate(addr, 2, 2).read16(addr);
  }

  /** 32-bit read (4-byte aligned). */
  read32(addr: number): number {
    return this.#locate(addr, 4, 4).read32(addr);
  }

  /** 64-bit read (8-byte aligned) as two 32-bit reads, low half first. */
  read64(addr: number): bigint {
    const v = this.#locate(addr, 8, 8);
    const lo = v.read32(addr);
    const hi = v.read32(addr + 4);
    return (BigInt(hi) << 32n) | BigInt(lo);
  }

  /** 8-bit write. */
  write8(addr: number, value: number): void {
    checkValue(value, 0xff, 8);
    this.#check(addr, 1, 1);
    this.#policed(addr, 1, "write8");
    this.#locate(addr, 1, 1).write8(addr, value);
  }

  /** 16-bit write. */
  write16(addr: number, value: number): void {
    checkValue(value, 0xffff, 16);
    this.#check(addr, 2, 2);
    this.#policed(addr, 2, "write16");
    this.#locate(addr, 2, 2).write16(addr, value);
  }

  /** 32-bit write. */
  write32(addr: number, value: number): void {
    checkValue(value, 0xffffffff, 32);
    this.#check(addr, 4, 4);
    this.#policed(addr, 4, "write32");
    this.#locate(addr, 4, 4).write32(addr, value);
  }

  /** 64-bit write as two 32-bit writes, low half first. Accepts a bigint or a safe number. */
  write64(addr: number, value: bigint | number): void {
    const big = u64(value, "value");
    this.#check(addr, 8, 8);
    this.#policed(addr, 8, "write64");
    const v = this.#locate(addr, 8, 8);
    v.write32(addr, Number(big & 0xffffffffn));
    v.write32(addr + 4, Number(big >> 32n));
  }

  #bulk(
    what: string,
    addr: number,
    len: number,
    each: (v: PraminView, at: number, n: number) => void,
  ): void {
    this.#check(addr, len, 1);
    const end = addr + len;
    const report = len >= 8 * 2 ** 20 ? this.#pramin.progress : null;
    for (let pos = addr; pos < end;) {
      const v = this.#position(pos, 1);
      const n = Math.min(end, v.base + PRAMIN_SIZE) - pos;
      each(v, pos, n);
      pos += n;
      report?.(pos - addr, len, what);
    }
  }

  /** Reads `len` bytes starting at `addr`, crossing windows as needed. */
  readBytes(addr: number, len: number): Uint8Array {
    this.#checkLength(len, "read");
    const out = new Uint8Array(len);
    this.#bulk("read", addr, len, (v, at, n) => v.transfer(at, out, at - addr, n, false));
    return out;
  }

  /**
   * Reads `out.length` bytes starting at `addr` into `out` (no allocation:
   * for repeated reads of large ranges, where a fresh buffer's page faults
   * would cost more than the copy). Returns `out`.
   */
  readInto(addr: number, out: Uint8Array): Uint8Array {
    checkBytes(out, "readInto buffer");
    this.#bulk("read", addr, out.length, (v, at, n) => v.transfer(at, out, at - addr, n, false));
    return out;
  }

  /** Writes `bytes` starting at `addr`, crossing windows as needed. */
  writeBytes(addr: number, bytes: Uint8Array): void {
    checkBytes(bytes, "writeBytes bytes");
    this.#check(addr, bytes.length, 1);
    this.#policed(addr, bytes.length, "writeBytes");
    this.#bulk(
      "write",
      addr,
      bytes.length,
      (v, at, n) => v.transfer(at, bytes, at - addr, n, true),
    );
  }

  /**
   * Reads `count` 32-bit words at `addr` (4-byte aligned) into a new array
   * (or into `out`), one bulk MMIO call per window position.
   */
  readWords(addr: number, count: number, out?: Uint32Array): Uint32Array {
    this.#checkLength(count, "readWords");
    const dst = out ?? new Uint32Array(count);
    if (!(dst instanceof Uint32Array) || dst.length < count) {
      fail("EINVAL", `readWords needs a Uint32Array of at least ${count} words`);
    }
    this.#check(addr, count * 4, 4);
    const end = addr + count * 4;
    for (let pos = addr; pos < end;) {
      const v = this.#position(pos, 4);
      const n = (Math.min(end, v.base + PRAMIN_SIZE) - pos) / 4;
      const k = (pos - addr) / 4;
      v.readWords(pos, dst.subarray(k, k + n));
      pos += n * 4;
    }
    return dst;
  }

  /**
   * Writes `words` as 32-bit stores from `addr` (4-byte aligned), one bulk
   * MMIO call per window position; counted and traced as single stores.
   */
  writeWords(addr: number, words: Uint32Array): void {
    if (!(words instanceof Uint32Array)) fail("EINVAL", "writeWords takes a Uint32Array");
    this.#check(addr, words.length * 4, 4);
    this.#policed(addr, words.length * 4, "writeWords");
    const end = addr + words.length * 4;
    for (let pos = addr; pos < end;) {
      const v = this.#position(pos, 4);
      const n = (Math.min(end, v.base + PRAMIN_SIZE) - pos) / 4;
      const k = (pos - addr) / 4;
      v.writeWords(pos, k === 0 && n === words.length ? words : words.subarray(k, k + n));
      pos += n * 4;
    }
  }

  /** Fills `len` bytes at `addr` with `byte` (0..255). */
  fill(addr: number, len: number, byte: number): void {
    this.#checkLength(len, "fill");
    if (!Number.isInteger(byte) || byte < 0 || byte > 0xff) {
      fail("EINVAL", `fill byte ${describe(byte)} is not in 0..0xff`);
    }
    this.#check(addr, len, 1);
    this.#policed(addr, len, "fill");
    this.#bulk("fill", addr, len, (v, at, n) => v.fill(at, n, byte));
  }

  /** Restores the saved window base (if it moved) and releases PRAMIN. */
  close(): void {
    if (!this.#open) return;
    this.#open = false;
    this.#view = null;
    this.#release(this.#saved);
  }

  /** Releases it at the end of a `using` scope (same as closing it explicitly). */
  [Symbol.dispose](): void {
    this.close();
  }

  /** The one-line summary as text (`${x}` prints it, not `[object Object]`). */
  toString(): string {
    return (this as unknown as Record<symbol, () => string>)[Symbol.for("Deno.customInspect")]();
  }

  /** The one-line summary the REPL and `Deno.inspect` print. */
  [Symbol.for("Deno.customInspect")](): string {
    if (!this.#open) return "PraminWindow (closed)";
    const kind = this.#owner === null ? "" : " (borrowed)";
    return `PraminWindow${kind} at ${hex(this.base)}, restores ${hex(this.savedBase)} on close`;
  }
}

// --- VRAM image files ----------------------------------------------------------

/**
 * The first 8 bytes of a novamm VRAM image (`pramin.save`). The format,
 * version 1, all integers little-endian:
 *
 * | offset | bytes | field                                         |
 * |-------:|------:|-----------------------------------------------|
 * |      0 |     8 | magic `NVMMVRAM`                              |
 * |      8 |     4 | version (1; readers refuse newer)             |
 * |     12 |     4 | header bytes (64; the data starts here)       |
 * |     16 |     8 | VRAM address the bytes were saved from        |
 * |     24 |     8 | size of the data in bytes (a multiple of 4)   |
 * |     32 |     4 | NV_PMC_BOOT_0 of the chip saved from          |
 * |     36 |     4 | NV_PMC_BOOT_42                                |
 * |     40 |    24 | zero (reserved)                               |
 * |     64 |  size | the VRAM bytes, in address order              |
 *
 * A file that does not start with the magic is taken as raw bytes (a `dd`
 * image): `load` and `compare` use all of it (its length a multiple of 4).
 * The file must be exactly header + size bytes long: a truncated or padded
 * image is refused, naming the length found and the one the header gives.
 */
export const VRAM_IMAGE_MAGIC = "NVMMVRAM";
/** The VRAM image format version {@linkcode Pramin.save} writes. */
export const VRAM_IMAGE_VERSION = 1;
/** Bytes of a VRAM image header. */
export const VRAM_IMAGE_HEADER_BYTES = 64;

/** Bytes moved per step (one PRAMIN window): bounded memory whatever the image size. */
const IMAGE_CHUNK = 2 ** 20;
const MAGIC_BYTES = new TextEncoder().encode(VRAM_IMAGE_MAGIC);

/** What a VRAM image's header says. */
export interface VramImageHeader {
  /** VRAM address the bytes were saved from. */
  addr: number;
  /** Bytes of data. */
  size: number;
  /** NV_PMC_BOOT_0 of the chip saved from. */
  boot0: number;
  /** NV_PMC_BOOT_42 of the chip saved from. */
  boot42: number;
}

/** What {@linkcode Pramin.save} and {@linkcode Pramin.load} did. */
export interface VramImageResult {
  /** The file. */
  file: string;
  /** VRAM address written or read. */
  addr: number;
  /** Bytes. */
  size: number;
  /** The image's header (null: a raw file). */
  header: VramImageHeader | null;
}

/** One 32-bit word that differs between a file and VRAM. */
export interface VramWordDifference {
  /** VRAM byte address. */
  address: number;
  /** The word in the file. */
  file: number;
  /** The word in VRAM. */
  vram: number;
}

/** What {@linkcode Pramin.compare} found. */
export interface VramCompareResult extends VramImageResult {
  /** True when every word is the same. */
  same: boolean;
  /** Words that differ (all of them). */
  differentWords: number;
  /** Ranges of consecutive differing words (all of them). */
  differentRanges: number;
  /** The first differing ranges `[start, end)` (at most `maxDifferences`). */
  ranges: [number, number][];
  /** The first differing words (at most `maxDifferences`). */
  words: VramWordDifference[];
}

function checkPath(file: unknown, what: string): void {
  if (typeof file !== "string" || file.length === 0) {
    fail("EINVAL", `${what} file ${describe(file)} is not a non-empty path string`);
  }
}

function encodeImageHeader(h: VramImageHeader): Uint8Array {
  const out = new Uint8Array(VRAM_IMAGE_HEADER_BYTES);
  const dv = new DataView(out.buffer);
  out.set(MAGIC_BYTES, 0);
  dv.setUint32(8, VRAM_IMAGE_VERSION, true);
  dv.setUint32(12, VRAM_IMAGE_HEADER_BYTES, true);
  dv.setBigUint64(16, BigInt(h.addr), true);
  dv.setBigUint64(24, BigInt(h.size), true);
  dv.setUint32(32, h.boot0 >>> 0, true);
  dv.setUint32(36, h.boot42 >>> 0, true);
  return out;
}

/** An image opened for reading: where its data starts, how long it is, its header. */
interface OpenImage {
  file: Deno.FsFile;
  dataOffset: number;
  size: number;
  header: VramImageHeader | null;
}

/** Opens and checks a VRAM image or raw file (nothing is read past the header). */
function openImage(path: string, what: string): OpenImage {
  let file: Deno.FsFile;
  try {
    file = Deno.openSync(path, { read: true });
  } catch (e) {
    return fail(
      e instanceof Deno.errors.NotFound ? "ENOENT" : "EIO",
      `${what}: cannot open ${path}: ${errorText(e)}`,
    );
  }
  try {
    const info = file.statSync();
    if (!info.isFile) fail("EINVAL", `${what}: ${path} is not a regular file`);
    const length = info.size;
    const head = new Uint8Array(Math.min(length, VRAM_IMAGE_HEADER_BYTES));
    readAll(file, head, path, 0);
    const isImage = head.length >= MAGIC_BYTES.length &&
      MAGIC_BYTES.every((b, i) => head[i] === b);
    if (!isImage) {
      if (length === 0 || length % 4 !== 0) {
        fail(
          "EINVAL",
          `${what}: ${path} is not a VRAM image (no ${VRAM_IMAGE_MAGIC} header) and its length ${length} is not a non-zero multiple of 4 bytes`,
        );
      }
      return { file, dataOffset: 0, size: length, header: null };
    }
    if (head.length < VRAM_IMAGE_HEADER_BYTES) {
      fail(
        "EINVAL",
        `${what}: ${path} is cut short at offset ${length}: a VRAM image header is ${VRAM_IMAGE_HEADER_BYTES} bytes`,
      );
    }
    const dv = new DataView(head.buffer);
    const version = dv.getUint32(8, true);
    if (version === 0 || version > VRAM_IMAGE_VERSION) {
      fail(
        "EINVAL",
        `${what}: ${path} offset 8: VRAM image version ${version} is not one this novamm reads (1..${VRAM_IMAGE_VERSION})`,
      );
    }
    const headerBytes = dv.getUint32(12, true);
    if (headerBytes !== VRAM_IMAGE_HEADER_BYTES) {
      fail(
        "EINVAL",
        `${what}: ${path} offset 12: header size ${headerBytes} is not ${VRAM_IMAGE_HEADER_BYTES}`,
      );
    }
    const addr = dv.getBigUint64(16, true);
    const size = dv.getBigUint64(24, true);
    if (addr >= 1n << 53n || size === 0n || size >= 1n << 53n || size % 4n !== 0n) {
      fail(
        "EINVAL",
        `${what}: ${path} offset 16: address ${hex(addr)} / size ${
          hex(size)
        } are not a VRAM range (size a non-zero multiple of 4)`,
      );
    }
    if (BigInt(length) !== BigInt(VRAM_IMAGE_HEADER_BYTES) + size) {
      fail(
        "EINVAL",
        `${what}: ${path} is ${length} bytes, but its header says ${VRAM_IMAGE_HEADER_BYTES} + ${size} (${
          BigInt(length) < BigInt(VRAM_IMAGE_HEADER_BYTES) + size ? "cut short" : "trailing bytes"
        })`,
      );
    }
    const header: VramImageHeader = {
      addr: Number(addr),
      size: Number(size),
      boot0: dv.getUint32(32, true),
      boot42: dv.getUint32(36, true),
    };
    return { file, dataOffset: VRAM_IMAGE_HEADER_BYTES, size: header.size, header };
  } catch (e) {
    file.close();
    throw e;
  }
}

/** Reads exactly `out.length` bytes of `file` at `offset` (EIO when the file ends first). */
function readAll(file: Deno.FsFile, out: Uint8Array, path: string, offset: number): void {
  let got = 0;
  const read = () => {
    try {
      if (got === 0) file.seekSync(offset, Deno.SeekMode.Start);
      return file.readSync(out.subarray(got));
    } catch (e) {
      return fail("EIO", `cannot read ${path} at offset ${offset + got}: ${errorText(e)}`);
    }
  };
  while (got < out.length) {
    const n = read();
    if (n === null || n === 0) {
      fail("EIO", `${path} ended at offset ${offset + got}, ${out.length - got} bytes short`);
    }
    got += n;
  }
}

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** Writes all of `bytes` (EIO naming the file when the write fails: a full disk). */
function writeAll(file: Deno.FsFile, bytes: Uint8Array, path: string): void {
  try {
    for (let at = 0; at < bytes.length;) at += file.writeSync(bytes.subarray(at));
  } catch (e) {
    fail("EIO", `cannot write ${path}: ${errorText(e)}`);
  }
}

function removeQuietly(path: string): void {
  try {
    Deno.removeSync(path);
  } catch {
    // already gone: nothing to clean up
  }
}

function imageResult(
  verb: string,
  file: string,
  addr: number,
  size: number,
  header: VramImageHeader | null,
): VramImageResult {
  const r: VramImageResult = { file, addr, size, header };
  return Object.defineProperty(r, Symbol.for("Deno.customInspect"), {
    value: () =>
      `${verb} [${hex(addr)}, ${hex(addr + size)}) (${formatSize(size)}) ${
        verb === "saved" ? "to" : "from"
      } ${file}`,
    enumerable: false,
  });
}

function formatCompare(r: VramCompareResult): string {
  const span = `[${hex(r.addr)}, ${hex(r.addr + r.size)}) (${formatSize(r.size)})`;
  if (r.same) return `VRAM ${span} is the same as ${r.file}`;
  const lines = [
    `${r.differentWords} ${
      r.differentWords === 1 ? "word differs" : "words differ"
    } in ${r.differentRanges} ${
      r.differentRanges === 1 ? "range" : "ranges"
    }: VRAM ${span} vs ${r.file}`,
  ];
  for (const [s, e] of r.ranges) lines.push(`  [${hex(s)}, ${hex(e)}) ${formatSize(e - s)}`);
  if (r.differentRanges > r.ranges.length) {
    lines.push(`  … ${r.differentRanges - r.ranges.length} more ranges`);
  }
  for (const d of r.words) {
    lines.push(`  ${hex(d.address)}: file ${hex(d.file, 8)} vram ${hex(d.vram, 8)}`);
  }
  if (r.differentWords > r.words.length) {
    lines.push(`  … ${r.differentWords - r.words.length} more words (maxDifferences lists more)`);
  }
  return lines.join("\n");
}
