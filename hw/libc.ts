/**
 * The few libc calls a real BAR needs, through Deno FFI: `open`, `mmap`,
 * `munmap`, `close`, `flock`, `ftruncate`, `pread` and `pwrite` (the per-card
 * lock, which works on its fd only, never by path), plus `errno` (glibc/musl
 * `__errno_location`) and `strerror` to turn a failure into a message that
 * says what to do.
 *
 * libc is loaded lazily on the first call, so importing this module costs
 * nothing and needs no `--allow-ffi` until a card is actually opened.
 *
 * The flag values are those of Linux on x86_64; they are the asm-generic
 * values, which aarch64 Linux shares except for `O_NOFOLLOW` (chosen by
 * architecture below). Other systems have no PCI sysfs and are refused
 * before any call.
 *
 * @module
 */

import { describe, type ErrorCode, fail, hex, NovaError } from "./errors.ts";

/** `O_RDONLY` (Linux). */
export const O_RDONLY = 0;
/** `O_RDWR` (Linux). */
export const O_RDWR = 0o2;
/** `O_SYNC` (Linux asm-generic, x86_64: `__O_SYNC | O_DSYNC`). */
export const O_SYNC = 0o4010000;
/** `O_CLOEXEC` (Linux asm-generic, x86_64). */
export const O_CLOEXEC = 0o2000000;
/** `O_CREAT` (Linux). */
export const O_CREAT = 0o100;
/** `O_EXCL` (Linux). */
export const O_EXCL = 0o200;
/** `O_NOCTTY` (Linux). */
export const O_NOCTTY = 0o400;
/** `O_NONBLOCK` (Linux). */
export const O_NONBLOCK = 0o4000;
/** `O_NOFOLLOW` (Linux: 0o400000 asm-generic / x86_64, 0o100000 on arm64). */
export const O_NOFOLLOW = Deno.build.arch === "aarch64" ? 0o100000 : 0o400000;
/** `PROT_READ`. */
export const PROT_READ = 0x1;
/** `PROT_WRITE`. */
export const PROT_WRITE = 0x2;
/** `MAP_SHARED`. */
export const MAP_SHARED = 0x1;
/** `LOCK_EX` (flock). */
export const LOCK_EX = 2;
/** `LOCK_NB` (flock). */
export const LOCK_NB = 4;

// x86_64 Linux errno numbers (asm-generic/errno-base.h, errno.h): enough to name
// what open/mmap/munmap/close can return.
const ERRNO_NAMES: Record<number, string> = {
  1: "EPERM",
  2: "ENOENT",
  4: "EINTR",
  5: "EIO",
  6: "ENXIO",
  9: "EBADF",
  11: "EAGAIN",
  12: "ENOMEM",
  13: "EACCES",
  14: "EFAULT",
  16: "EBUSY",
  17: "EEXIST",
  19: "ENODEV",
  20: "ENOTDIR",
  21: "EISDIR",
  22: "EINVAL",
  23: "ENFILE",
  24: "EMFILE",
  26: "ETXTBSY",
  27: "EFBIG",
  28: "ENOSPC",
  30: "EROFS",
  36: "ENAMETOOLONG",
  40: "ELOOP",
  75: "EOVERFLOW",
  95: "EOPNOTSUPP",
  122: "EDQUOT",
};

// How a libc errno is reported as a NovaError code (the rest become EIO).
const ERRNO_CODES: Record<string, ErrorCode> = {
  EPERM: "EPERM",
  EACCES: "EPERM",
  ENOENT: "ENODEV",
  ENXIO: "ENODEV",
  ENODEV: "ENODEV",
  ENOMEM: "ENOMEM",
  EINVAL: "EINVAL",
  EBUSY: "EBUSY",
  EOVERFLOW: "EOVERFLOW",
  EFAULT: "EFAULT",
};

const SYMBOLS = {
  // open(2) is variadic; its third (mode) argument is an int read only with O_CREAT. On
  // x86_64 and aarch64 Linux a variadic int travels as a fixed one does, so a fixed
  // three-argument signature passes it.
  open: { parameters: ["buffer", "i32", "i32"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
  flock: { parameters: ["i32", "i32"], result: "i32" },
  ftruncate: { parameters: ["i32", "i64"], result: "i32" },
  pread: { parameters: ["i32", "buffer", "usize", "i64"], result: "isize" },
  pwrite: { parameters: ["i32", "buffer", "usize", "i64"], result: "isize" },
  mmap: { parameters: ["pointer", "usize", "i32", "i32", "i32", "i64"], result: "pointer" },
  munmap: { parameters: ["pointer", "usize"], result: "i32" },
  geteuid: { parameters: [], result: "u32" },
  __errno_location: { parameters: [], result: "pointer" },
  strerror: { parameters: ["i32"], result: "pointer" },
} as const;

type Libc = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];

const LIBC_NAMES = ["libc.so.6", "libc.so"] as const;
const MAP_FAILED = 0xffffffffffffffffn;
const encoder = new TextEncoder();

let libc: Libc | undefined;

/** A live `mmap` of a file: the address and the number of bytes mapped. */
export interface Mapping {
  /** Start of the mapping (page aligned). */
  readonly pointer: Deno.PointerObject;
  /** Bytes mapped. */
  readonly length: number;
}

/** Options for {@linkcode openFile}. */
export interface OpenFileOptions {
  /** Open `O_RDONLY` instead of `O_RDWR | O_SYNC`. */
  readOnly?: boolean;
}

/** Options for {@linkcode mmapFile}. */
export interface MmapOptions {
  /** Map `PROT_READ` only (the fd may then be read-only). */
  readOnly?: boolean;
  /** File offset of the mapping; a multiple of the 4 KiB page size. */
  offset?: number;
}

/** True for the errors Deno throws when a permission flag is missing. */
export function isPermissionError(error: unknown): boolean {
  // NotCapable is Deno 2's "flag not granted"; PermissionDenied is what Deno 1
  // threw for the same thing (and what an OS EACCES becomes, handled by callers).
  return error instanceof Deno.errors.NotCapable ||
    (error instanceof Deno.errors.PermissionDenied && /--allow-|Requires/.test(error.message));
}

function load(): Libc {
  if (libc !== undefined) return libc;
  if (Deno.build.os !== "linux") {
    fail(
      "ENODEV",
      `real GPUs are reached through Linux sysfs; this is ${Deno.build.os}`,
      "use --device sim",
    );
  }
  const tried: string[] = [];
  for (const name of LIBC_NAMES) {
    try {
      const c = Deno.dlopen(name, SYMBOLS).symbols;
      // This thread's errno, located once (it does not move): a failed call's errno is read
      // straight after it, with no other library call in between that could set it again.
      const where = c.__errno_location();
      errnoView = where === null ? null : new Deno.UnsafePointerView(where);
      errnoView?.getInt32(); // the read path warm before the first failure needs it
      libc = c;
      return libc;
    } catch (error) {
      if (isPermissionError(error)) {
        throw new NovaError("EPERM", "Deno FFI is not allowed: run with --allow-ffi (or -A)", {
          hint: "FFI is how novamm calls mmap on a PCI resource file",
          cause: error,
        });
      }
      tried.push(`${name}: ${error instanceof Error ? error.message : String(error)}`);
    }
  }
  return fail("ENODEV", `cannot load libc (${tried.join("; ")})`);
}

/** This thread's `errno` (set up by `load`). */
let errnoView: Deno.UnsafePointerView | null = null;

function errno(): number {
  return errnoView === null ? 0 : errnoView.getInt32();
}

function errnoName(n: number): string {
  return ERRNO_NAMES[n] ?? `errno ${n}`;
}

function errnoText(c: Libc, n: number): string {
  const text = c.strerror(n);
  return text === null ? "unknown error" : Deno.UnsafePointerView.getCString(text);
}

function checkLength(what: string, value: number): void {
  if (!Number.isSafeInteger(value) || value <= 0) {
    fail("EINVAL", `${what} ${describe(value)} is not a positive safe integer`);
  }
}

/**
 * Opens a file for mapping: `O_RDWR | O_SYNC` (or `O_RDONLY`), always
 * `O_CLOEXEC`. Returns the file descriptor.
 *
 * @example
 * ```ts
 * const fd = openFile("/sys/bus/pci/devices/0000:65:00.0/resource0", { readOnly: true });
 * ```
 */
export function openFile(path: string, options: OpenFileOptions = {}): number {
  if (path.length === 0 || path.includes("\0")) {
    fail("EINVAL", `file name ${JSON.stringify(path)} is empty or contains a NUL byte`);
  }
  const c = load();
  const flags = (options.readOnly ? O_RDONLY : O_RDWR | O_SYNC) | O_CLOEXEC;
  const fd = c.open(encoder.encode(path + "\0"), flags, 0);
  if (fd >= 0) return fd;
  const n = errno();
  const name = errnoName(n);
  if (name === "EACCES" || name === "EPERM") {
    fail(
      "EPERM",
      `permission denied opening ${path}: run as root (sudo) or grant access to the resource file`,
      options.readOnly ? undefined : "or open read-only if only reads are needed",
    );
  }
  if (name === "ENOENT") fail("ENODEV", `no such file ${path}`);
  return fail(ERRNO_CODES[name] ?? "EIO", `cannot open ${path}: ${name} (${errnoText(c, n)})`);
}

/**
 * Maps `length` bytes of an open file `MAP_SHARED`, `PROT_READ | PROT_WRITE`
 * (or `PROT_READ` alone when `readOnly`).
 *
 * @example
 * ```ts
 * const fd = openFile("/sys/bus/pci/devices/0000:65:00.0/resource0");
 * const m = mmapFile(fd, 16 << 20);
 * const regs = new Uint32Array(Deno.UnsafePointerView.getArrayBuffer(m.pointer, m.length));
 * ```
 */
export function mmapFile(fd: number, length: number, options: MmapOptions = {}): Mapping {
  const offset = options.offset ?? 0;
  if (!Number.isInteger(fd) || fd < 0) {
    fail("EINVAL", `file descriptor ${describe(fd)} is not valid`);
  }
  checkLength("mmap length", length);
  if (!Number.isSafeInteger(offset) || offset < 0 || offset % 4096 !== 0) {
    fail("EINVAL", `mmap offset ${describe(offset)} is not a multiple of the 4 KiB page`);
  }
  const c = load();
  const prot = options.readOnly ? PROT_READ : PROT_READ | PROT_WRITE;
  const pointer = c.mmap(null, BigInt(length), prot, MAP_SHARED, fd, BigInt(offset));
  if (pointer !== null && BigInt(Deno.UnsafePointer.value(pointer)) !== MAP_FAILED) {
    return { pointer, length };
  }
  const n = errno();
  const name = errnoName(n);
  return fail(
    ERRNO_CODES[name] ?? "EIO",
    `mmap of ${hex(length)} bytes at offset ${hex(offset)} (fd ${fd}, ${
      options.readOnly ? "PROT_READ" : "PROT_READ|PROT_WRITE"
    }) failed: ${name} (${errnoText(c, n)})`,
    name === "EACCES" ? "a writable mapping needs a file opened read-write" : undefined,
  );
}

/** Unmaps a mapping made by {@linkcode mmapFile}; every view over it is dead afterwards. */
export function munmap(mapping: Mapping): void {
  const c = load();
  if (c.munmap(mapping.pointer, BigInt(mapping.length)) === 0) return;
  const n = errno();
  fail(
    "EIO",
    `munmap of ${hex(mapping.length)} bytes failed: ${errnoName(n)} (${errnoText(c, n)})`,
  );
}

/** Closes a file descriptor from {@linkcode openFile}. */
export function closeFd(fd: number): void {
  const c = load();
  if (c.close(fd) === 0) return;
  const n = errno();
  fail("EIO", `close of fd ${fd} failed: ${errnoName(n)} (${errnoText(c, n)})`);
}

/**
 * Takes an exclusive `flock` on an open file without waiting: true when this
 * process now holds it, false when another open file description does (a
 * live session). The kernel drops the lock when the fd closes or the process
 * dies, so a dead session never leaves a lock behind.
 *
 * @example
 * ```ts
 * const fd = openFile("/tmp/novamm-0000_65_00.0.lock");
 * if (!tryLockFd(fd)) console.log("in use");
 * ```
 */
export function tryLockFd(fd: number): boolean {
  const c = load();
  if (c.flock(fd, LOCK_EX | LOCK_NB) === 0) return true;
  const n = errno();
  if (errnoName(n) === "EAGAIN") return false; // EWOULDBLOCK
  return fail("EIO", `flock of fd ${fd} failed: ${errnoName(n)} (${errnoText(c, n)})`);
}

/**
 * Opens `path` read-write for a lock file: created with `mode` when absent
 * (`O_CREAT`), never through a symbolic link at its last component
 * (`O_NOFOLLOW`: a link fails with ELOOP), `O_CLOEXEC`, `O_NONBLOCK` and
 * `O_NOCTTY`. Returns the fd, or
 * the errno name (`"ELOOP"`, `"EACCES"`, `"EISDIR"`, ...) when the open
 * failed, for the caller to word.
 *
 * @example
 * ```ts
 * const fd = openNoFollow("/run/lock/novamm/novamm-0000_65_00.0.lock", 0o600);
 * if (typeof fd === "string") console.log(`refused: ${fd}`);
 * ```
 */
export function openNoFollow(path: string, mode: number): number | string {
  if (typeof path !== "string" || path.length === 0 || path.includes("\0")) {
    fail("EINVAL", `file name ${describe(path)} is empty or contains a NUL byte`);
  }
  if (!Number.isInteger(mode) || mode < 0 || mode > 0o7777) {
    fail("EINVAL", `file mode ${describe(mode)} is not a permission mode (0..0o7777)`);
  }
  const c = load();
  // O_NONBLOCK | O_NOCTTY: a FIFO or a terminal planted there cannot block or adopt the open
  // before the caller sees it is no regular file.
  const flags = O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK | O_NOCTTY;
  const fd = c.open(encoder.encode(path + "\0"), flags, mode);
  return fd >= 0 ? fd : errnoName(errno());
}

/** Sets the size of an open file (`ftruncate`); EIO naming the errno on failure. */
export function truncateFd(fd: number, length: number): void {
  if (!Number.isSafeInteger(length) || length < 0) {
    fail("EINVAL", `ftruncate length ${describe(length)} is not a non-negative safe integer`);
  }
  const c = load();
  if (c.ftruncate(fd, BigInt(length)) === 0) return;
  const n = errno();
  fail("EIO", `ftruncate of fd ${fd} failed: ${errnoName(n)} (${errnoText(c, n)})`);
}

/** Writes all of `bytes` at `offset` of an open file (`pwrite`); EIO naming the errno on failure. */
export function pwriteFd(fd: number, bytes: Uint8Array, offset: number): void {
  const c = load();
  let done = 0;
  while (done < bytes.length) {
    const part = bytes.subarray(done);
    const n = Number(c.pwrite(fd, part, BigInt(part.length), BigInt(offset + done)));
    if (n <= 0) {
      const e = errno();
      if (n < 0 && errnoName(e) === "EINTR") continue;
      fail("EIO", `pwrite of fd ${fd} failed: ${errnoName(e)} (${errnoText(c, e)})`);
    }
    done += n;
  }
}

/** Reads up to `length` bytes at `offset` of an open file (`pread`); fewer at its end. */
export function preadFd(fd: number, length: number, offset: number): Uint8Array {
  checkLength("pread length", length);
  const c = load();
  const buf = new Uint8Array(length);
  for (;;) {
    const n = Number(c.pread(fd, buf, BigInt(length), BigInt(offset)));
    if (n >= 0) return buf.subarray(0, n);
    const e = errno();
    if (errnoName(e) === "EINTR") continue;
    return fail("EIO", `pread of fd ${fd} failed: ${errnoName(e)} (${errnoText(c, e)})`);
  }
}

/** The effective user id of this process (`geteuid`): whose files the lock may use. */
export function effectiveUid(): number {
  return load().geteuid();
}
