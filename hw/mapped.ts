/**
 * A real BAR: the `mmap` of a sysfs `resourceN` file, as an
 * {@linkcode MmioBackend}. Wrap it in {@linkcode Mmio} (or use
 * {@linkcode openBarMmio}) for checks, counters and tracing.
 *
 * Every access is one naturally aligned load or store of exactly its width,
 * through a `Uint8Array`/`Uint16Array`/`Uint32Array` view of the mapping —
 * never `DataView` byte loops, `TypedArray.set` or `copyWithin`, which may
 * split or widen accesses. Loads go through `Atomics.load`: it compiles to the
 * same single `mov`, but optimised V8 code merges two back-to-back plain loads
 * of one element into one (tests/mapped_test.ts catches it with a concurrent
 * writer), and a register read twice must reach the bus twice. Stores stay
 * plain element stores (not merged by V8 today): `Atomics.store` is a locked
 * `xchg` on x86, a read-modify-write that must not hit a register.
 *
 * Mapping length: `min(length option, BAR size, file size)`. On a real card
 * the `resourceN` file's size is the BAR size; a fake sysfs tree of ordinary
 * files may be smaller than the BAR its `resource` file claims, and a mapping
 * past the end of a regular file faults (SIGBUS) on access, so the file size
 * caps it.
 *
 * @module
 */

import { describe, fail, hex } from "./errors.ts";
import { closeFd, type Mapping, mmapFile, munmap, openFile } from "./libc.ts";
import { Mmio, type MmioBackend, type MmioCounters } from "./mmio.ts";
import { checkDriver, type PciFunction } from "./pci.ts";

/** Options for {@linkcode openBar}. */
export interface OpenBarOptions {
  /** Map `PROT_READ` from an `O_RDONLY` fd; every write is refused with EPERM. */
  readOnly?: boolean;
  /** Open even if a kernel GPU driver is bound (see `checkDriver`). */
  force?: boolean;
  /** Map at most this many bytes from the start of the BAR. */
  length?: number;
  /**
   * Also map `resourceN_wc` (when sysfs has it) and move bulk data through it
   * with wide copies. Only for framebuffer apertures (BAR1), never BAR0.
   */
  writeCombining?: boolean;
}

/** Options for {@linkcode openBarMmio}: those of {@linkcode openBar} plus the wrapper's. */
export interface OpenBarMmioOptions extends OpenBarOptions {
  /** Name in messages and traces; default `bar<index>`. */
  name?: string;
  /** Counter set to add to (shared by the BARs of one GPU). */
  counters?: MmioCounters;
}

/**
 * One mapped BAR of a PCI function. Offsets arrive checked by {@linkcode Mmio};
 * this class still refuses writes on a read-only mapping and any access after
 * {@linkcode MappedBar.close}, because either would kill the process with a
 * signal instead of an error.
 */
export class MappedBar implements MmioBackend {
  /** Bytes mapped (the aperture {@linkcode Mmio} sees). */
  readonly size: number;
  /** PCI address of the function. */
  readonly bdf: string;
  /** BAR index (`N` of `resourceN`). */
  readonly index: number;
  /** The mapped `resourceN` file. */
  readonly path: string;
  /** Mapped `PROT_READ` only. */
  readonly readOnly: boolean;
  #u8: Uint8Array;
  #u16: Uint16Array;
  #u32: Uint32Array;
  #mapping: Mapping;
  #fd: number;
  #closed = false;
  #wc: { mapping: Mapping; fd: number; u8: Uint8Array } | null = null;
  /** Wide copy out (present only with a write-combining mapping). */
  readonly readBlock?: (offset: number, out: Uint8Array) => void;
  /** Wide copy in, fenced (present only with a write-combining mapping). */
  readonly writeBlock?: (offset: number, data: Uint8Array) => void;

  /** Wraps an existing mapping; use {@linkcode openBar} to make one. */
  constructor(
    mapping: Mapping,
    fd: number,
    info: {
      bdf: string;
      index: number;
      path: string;
      readOnly: boolean;
      wc?: { mapping: Mapping; fd: number };
    },
  ) {
    this.size = mapping.length;
    this.bdf = info.bdf;
    this.index = info.index;
    this.path = info.path;
    this.readOnly = info.readOnly;
    this.#mapping = mapping;
    this.#fd = fd;
    const buffer = Deno.UnsafePointerView.getArrayBuffer(mapping.pointer, mapping.length);
    this.#u8 = new Uint8Array(buffer);
    this.#u16 = new Uint16Array(buffer, 0, Math.floor(mapping.length / 2));
    this.#u32 = new Uint32Array(buffer, 0, Math.floor(mapping.length / 4));
    if (info.wc !== undefined) {
      const wc = info.wc;
      const length = Math.min(wc.mapping.length, mapping.length);
      this.#wc = {
        mapping: wc.mapping,
        fd: wc.fd,
        u8: new Uint8Array(Deno.UnsafePointerView.getArrayBuffer(wc.mapping.pointer, length)),
      };
      this.readBlock = (offset, out) => {
        if (this.#closed) this.#gone();
        // A wide copy from the write-combining mapping (memcpy): legal on the framebuffer.
        out.set(this.#wc!.u8.subarray(offset, offset + out.length));
      };
      this.writeBlock = (offset, data) => {
        if (this.#closed) this.#gone();
        if (this.readOnly) this.#refuse(data.length, offset, 0);
        this.#wc!.u8.set(data, offset);
        // A locked instruction drains this core's write-combining buffers, so the
        // copy lands before any later access (Atomics.store is a locked xchg on x86).
        Atomics.store(FENCE, 0, 0);
      };
    }
  }

  #gone(): never {
    return fail("ENODEV", `BAR${this.index} of ${this.bdf} is unmapped (closed)`);
  }

  #refuse(width: number, offset: number, value: number): never {
    return fail(
      "EPERM",
      `BAR${this.index} of ${this.bdf} is mapped read-only: refused ${width * 8}-bit write of ${
        hex(value >>> 0)
      } at ${hex(offset)}`,
      "reopen without --read-only to write",
    );
  }

  /** One 8-bit load. */
  read8(offset: number): number {
    if (this.#closed) this.#gone();
    return Atomics.load(this.#u8, offset);
  }

  /** One aligned 16-bit load. */
  read16(offset: number): number {
    if (this.#closed) this.#gone();
    return Atomics.load(this.#u16, offset / 2);
  }

  /** One aligned 32-bit load (unsigned). */
  read32(offset: number): number {
    if (this.#closed) this.#gone();
    return Atomics.load(this.#u32, offset / 4);
  }

  /** One 8-bit store. */
  write8(offset: number, value: number): void {
    if (this.#closed) this.#gone();
    if (this.readOnly) this.#refuse(1, offset, value);
    this.#u8[offset] = value;
  }

  /** One aligned 16-bit store. */
  write16(offset: number, value: number): void {
    if (this.#closed) this.#gone();
    if (this.readOnly) this.#refuse(2, offset, value);
    this.#u16[offset / 2] = value;
  }

  /** One aligned 32-bit store. */
  write32(offset: number, value: number): void {
    if (this.#closed) this.#gone();
    if (this.readOnly) this.#refuse(4, offset, value);
    this.#u32[offset / 4] = value;
  }

  /** Unmaps and closes the file; idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    // Drop the views first: after munmap they point at nothing.
    this.#u8 = new Uint8Array(0);
    this.#u16 = new Uint16Array(0);
    this.#u32 = new Uint32Array(0);
    const wc = this.#wc;
    this.#wc = null;
    try {
      munmap(this.#mapping);
    } finally {
      closeFd(this.#fd);
      if (wc !== null) {
        try {
          munmap(wc.mapping);
        } finally {
          closeFd(wc.fd);
        }
      }
    }
  }

  /** True once {@linkcode MappedBar.close} ran. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Same as {@linkcode MappedBar.close}, for `using`. */
  [Symbol.dispose](): void {
    this.close();
  }
}

/** A private word for the store that fences write-combining copies. */
const FENCE = new Int32Array(new SharedArrayBuffer(4));

function fileSize(path: string, bar: string): number {
  try {
    return Deno.statSync(path).size;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      fail("ENODEV", `${bar} has no resource file ${path}`);
    }
    // Anything else (no --allow-read, EACCES) is reported by open() below.
    return 0;
  }
}

/**
 * Maps BAR `barIndex` of a GPU through its sysfs `resourceN` file.
 *
 * @example
 * ```ts
 * import { Mmio } from "./mmio.ts";
 * import { findGpu } from "./pci.ts";
 * const fn = findGpu("0000:65:00.0");
 * const bar0 = new Mmio("bar0", openBar(fn, 0, { readOnly: true }), { readOnly: true });
 * bar0.read32(0x0); // NV_PMC_BOOT_0
 * bar0.close();
 * ```
 */
export function openBar(
  fn: PciFunction,
  barIndex: number,
  options: OpenBarOptions = {},
): MappedBar {
  const readOnly = options.readOnly ?? false;
  if (!Number.isInteger(barIndex) || barIndex < 0 || barIndex > 5) {
    fail("EINVAL", `BAR index ${describe(barIndex)} is not one of 0..5`);
  }
  const length = options.length;
  if (length !== undefined && (!Number.isSafeInteger(length) || length <= 0)) {
    fail("EINVAL", `mapping length ${describe(length)} is not a positive safe integer`);
  }
  checkDriver(fn, { force: options.force });
  const name = `BAR${barIndex} of ${fn.bdf}`;
  const bar = fn.bars.find((b) => b.index === barIndex);
  if (bar === undefined || bar.size === 0) {
    const have = fn.bars.map((b) => `BAR${b.index} (${hex(b.size)} bytes)`).join(", ") || "none";
    fail("ENODEV", `${name} does not exist or is empty (present: ${have})`);
  }
  if (bar.io) {
    fail("EINVAL", `${name} is an I/O-port BAR (flags ${hex(bar.flags)}); only memory BARs map`);
  }
  const path = `${fn.path}/resource${barIndex}`;
  const onDisk = fileSize(path, name);
  if (onDisk === 0 && Deno.statSync(path).isFile) {
    // A regular empty file (a broken or fake sysfs entry): mapping it would SIGBUS on access.
    fail("ENODEV", `${name}: ${path} is empty (0 bytes); nothing to map`);
  }
  let bytes = Math.min(length ?? bar.size, bar.size);
  if (onDisk > 0) bytes = Math.min(bytes, onDisk);
  const fd = openFile(path, { readOnly });
  let mapping: Mapping;
  try {
    mapping = mmapFile(fd, bytes, { readOnly });
  } catch (error) {
    closeFd(fd);
    throw error;
  }
  let wc: { mapping: Mapping; fd: number } | undefined;
  if (options.writeCombining && fn.wc.includes(barIndex)) {
    const wcPath = `${path}_wc`;
    const wcOnDisk = fileSize(wcPath, name);
    const wcBytes = wcOnDisk > 0 ? Math.min(bytes, wcOnDisk) : bytes;
    const wcFd = openFile(wcPath, { readOnly });
    try {
      wc = { mapping: mmapFile(wcFd, wcBytes, { readOnly }), fd: wcFd };
    } catch (error) {
      closeFd(wcFd);
      munmap(mapping);
      closeFd(fd);
      throw error;
    }
  }
  return new MappedBar(mapping, fd, { bdf: fn.bdf, index: barIndex, path, readOnly, wc });
}

/**
 * {@linkcode openBar} wrapped in a checked, counted {@linkcode Mmio} whose
 * read-only flag matches the mapping's.
 *
 * @example
 * ```ts
 * import { findGpu } from "./pci.ts";
 * using bar0 = openBarMmio(findGpu("65:00.0"), 0, { readOnly: true });
 * bar0.read32(0xa00); // NV_PMC_BOOT_42
 * ```
 */
export function openBarMmio(
  fn: PciFunction,
  barIndex: number,
  options: OpenBarMmioOptions = {},
): Mmio {
  const backend = openBar(fn, barIndex, options);
  return new Mmio(options.name ?? `bar${barIndex}`, backend, {
    readOnly: options.readOnly ?? false,
    counters: options.counters,
  });
}
