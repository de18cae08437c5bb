/**
 * Opening a device by spec: `"sim"`, `"sim:ga102"`, `"sim:gh100:gsp"`, ... or
 * a PCI address (`"0000:65:00.0"`, `"65:00.0"`). Either way the result is two
 * {@linkcode Mmio} apertures (BAR0, BAR1) sharing one counter set, the chip
 * decoded from BOOT_0/BOOT_42, GFW boot waited for, and the VRAM size read
 * from the register VBIOS devinit fills on that chip — the same code for a
 * card and for the simulator.
 *
 * @module
 */

import { type ChipInfo, decodeChip } from "./chip.ts";
import { type ChipFamily, chipFamily } from "./family/mod.ts";
import { describe, fail, hex, NovaError } from "./errors.ts";
import { Mmio, type MmioBackend, type MmioCounters, type MmioTracer, newCounters } from "./mmio.ts";
import {
  FSP_BOOT_COMPLETE_SUCCESS,
  getField,
  GFW_BOOT_PROGRESS_COMPLETED,
  isGpuGone,
  isPriError,
  LOCAL_MEMORY_RANGE,
  lostAt,
  NV_PFB_PRI_MMU_LOCAL_MEMORY_RANGE,
  NV_PMC_BOOT_0,
  NV_PMC_BOOT_42,
  NV_USABLE_FB_SIZE_IN_MB,
  SCRATCH_GROUP_05_PLM,
  windowRegister,
} from "./regs.ts";
import { createSimGpu, type SimGpu } from "./sim/gpu.ts";
import { formatSimSpec, type ParsedSimSpec, parseSimSpec as parseSim } from "./sim/spec.ts";
import { DEFAULT_SIM_PROFILE, SIM_PROFILES, SIM_STATES } from "./sim/profiles.ts";
import {
  loadedRegisterDb,
  lookup as lookupRegisters,
  type RegisterDb,
  registerDbLoading,
} from "./regdb/mod.ts";
import { enableDevice, findGpu, type PciFunction } from "./pci.ts";
import { openBar } from "./mapped.ts";
import { checkTimeout } from "./poll.ts";
import {
  closeFd,
  effectiveUid,
  openFile,
  openNoFollow,
  preadFd,
  pwriteFd,
  truncateFd,
  tryLockFd,
} from "./libc.ts";
import { checkOptions, didYouMean } from "./validate.ts";
import { parseSnapSpec, snapBackends } from "./snap/device.ts";
import type { Snapshot } from "./snap/types.ts";
import { type BarFirewallResult, isBlackwellDeviceId, waitBarFirewall } from "./pci_config.ts";

/** Options for {@linkcode openDevice}. */
export interface OpenDeviceOptions {
  /** `sim`, `sim:PROFILE`, `snap:FILE[?scratch]` or a PCI address; default `sim`. */
  device?: string;
  /**
   * The decoded snapshot of a `snap:FILE` device (`openGpu` reads the file and
   * passes it; `openDevice` is synchronous and does not read files).
   */
  snapshot?: Snapshot;
  /** Map BARs read-only and refuse every write. */
  readOnly?: boolean;
  /** Open a card even though a kernel GPU driver is bound to it. */
  force?: boolean;
  /** sysfs PCI devices directory (tests point it at a fake tree). */
  sysfsRoot?: string;
  /**
   * Where per-card lock files go (default $NOVAMM_LOCK_DIR, else a private directory: see
   * `defaultLockDir`). Whatever it is, a writing open also flocks the card's resource0, so
   * sessions with different lock directories still exclude each other (see `lockCard`).
   */
  lockDir?: string;
  /** Called for every MMIO access from the first BOOT_0 read on (see hw/trace.ts). */
  tracer?: MmioTracer;
  /** How long to wait for GFW boot (devinit) to finish; default 4000 ms as nova-core. */
  gfwTimeoutMs?: number;
}

/** What the GFW-boot wait at open saw. */
export interface GfwStatus {
  /** The register that reported completion. */
  register: string;
  /** Its last value. */
  value: number;
  /** Milliseconds spent waiting (0 when the first read said boot had finished). */
  waitedMs: number;
  /** Status polls made. */
  polls: number;
}

/** An open GPU at the byte level: BARs, chip, VRAM size. Knows nothing about page tables. */
export interface Device {
  /** The spec it was opened with, normalised (`sim:ga102`, `0000:65:00.0`). */
  readonly spec: string;
  /** `sim`, `pci` or `snap` (a snapshot reopened offline). */
  readonly kind: "sim" | "pci" | "snap";
  /** BAR0: registers and PRAMIN. */
  readonly bar0: Mmio;
  /** BAR1: the VRAM aperture translated by the BAR1 page tables. */
  readonly bar1: Mmio;
  /** MMIO counters shared by both BARs. */
  readonly counters: MmioCounters;
  /** Decoded BOOT_0/BOOT_42. */
  readonly chip: ChipInfo;
  /** VRAM bytes, read from the FB size register of this chip. */
  readonly vramSize: number;
  /** True when opened read-only. */
  readonly readOnly: boolean;
  /** The usable VRAM region as firmware reported it, when the device can say (a `gsp` simulator). */
  readonly firmwareUsable: { start: number; end: number } | null;
  /** The boot VGA device (sysfs `boot_vga` = 1): a console scans out through physical BAR1. */
  readonly bootVga: boolean;
  /** GFW boot as the open saw it. */
  readonly gfw: GfwStatus;
  /** The Blackwell PCIe BAR-firewall wait before the first BAR0 access (null: not Blackwell, or the simulator). */
  readonly barFirewall: BarFirewallResult | null;
  /** The post-reset memory-clear wait as the open saw it. */
  readonly memClear: MemClearStatus;
  /** The chip family's mechanics (FB flush, bind registers, layout registers, boot waits). */
  readonly family: ChipFamily;
  /** The simulator behind a `sim` device; null for a card. */
  readonly sim: SimGpu | null;
  /** The PCI function behind a card; null for the simulator. */
  readonly pci: PciFunction | null;
  /** The snapshot behind a `snap:` device (a private copy with `?scratch`); null otherwise. */
  readonly snapshot: Snapshot | null;
  /** The per-card lock this session holds (writing sessions on a card), else null. */
  readonly lock: CardLock | null;
  /** Unmaps both BARs. */
  close(): void;
}

/**
 * Throws ENODEV, as {@linkcode readRegister} does, when `value` read from
 * `offset` is all ones and BOOT_0 reads all ones too (a register may
 * legitimately read all ones; facts §14.1).
 */
function checkNotGone(bar0: Mmio, value: number, offset: number, name: string): void {
  if (lostAt(bar0, offset, value)) {
    fail(
      "ENODEV",
      `${name} (${
        hex(offset)
      }) read 0xffffffff: the GPU is gone (fell off the bus, in reset, or lost after a BAR fault)`,
      "reopen the device; on a card, check dmesg and `lspci -vs` for the function",
    );
  }
}

/**
 * Reads a register and refuses a PRI-error value (`(v & 0xFFF00000) ==
 * 0xBAD00000`, EIO) or all ones (the GPU fell off the bus, ENODEV) instead of
 * returning it as data.
 */
export function readRegister(bar0: Mmio, offset: number, name: string): number {
  const v = bar0.read32(offset);
  checkNotGone(bar0, v, offset, name);
  if (isPriError(v)) {
    fail("EIO", `${name} (${hex(offset)}) read a PRI error value ${hex(v, 8)}`);
  }
  return v;
}

/** True for chips whose VBIOS reports VRAM in NV_PFB_PRI_MMU_LOCAL_MEMORY_RANGE (Turing, GA100). */
function vramInLocalMemoryRange(chip: ChipInfo): boolean {
  return chip.architecture === "Turing" || chip.chipId === 0x170;
}

/** Reads the VRAM size the way nova-core does for this chip (facts §1.4, §13.1). */
export function readVramSize(bar0: Mmio, chip: ChipInfo): number {
  let size: number;
  let name: string;
  if (vramInLocalMemoryRange(chip)) {
    name = "NV_PFB_PRI_MMU_LOCAL_MEMORY_RANGE";
    const v = readRegister(bar0, NV_PFB_PRI_MMU_LOCAL_MEMORY_RANGE, name);
    const mib = getField(v, LOCAL_MEMORY_RANGE.LOWER_MAG) *
      2 ** getField(v, LOCAL_MEMORY_RANGE.LOWER_SCALE);
    size = getField(v, LOCAL_MEMORY_RANGE.ECC_MODE) ? mib * 2 ** 20 / 16 * 15 : mib * 2 ** 20;
  } else {
    name = "NV_USABLE_FB_SIZE_IN_MB";
    size = readRegister(bar0, NV_USABLE_FB_SIZE_IN_MB, name) * 2 ** 20;
  }
  // The smallest boards novamm's chips come with have gigabytes; 64 MiB is a floor no real
  // card is below, so a tiny value is a register that was not filled in.
  if (size < 64 * 2 ** 20 || size > 2 ** 40) {
    fail(
      "EIO",
      `${name} reports ${hex(size)} bytes of VRAM (expected 0x4000000..0x10000000000)`,
      "VBIOS devinit has not reported the VRAM size: did GFW boot complete? (regs() shows it)",
    );
  }
  return size;
}

function identify(bar0: Mmio): ChipInfo {
  return decodeChip(bar0.read32(NV_PMC_BOOT_0), bar0.read32(NV_PMC_BOOT_42));
}

/** NVIDIA's BAR0 register aperture: 16 MiB (facts §11). */
const BAR0_BYTES = 16 * 2 ** 20;

/**
 * Parses a simulator device spec (`sim`, `sim:PROFILE`, `sim:PROFILE:STATE`,
 * each optionally followed by `?knob=value&...`, the CONFLICT knobs of facts
 * §14.1) into {@linkcode createSimGpu} options; null when `spec` is not of
 * that form. The profile and state are not checked here (createSimGpu does).
 */
export function parseSimSpec(spec: string): ParsedSimSpec | null {
  return parseSim(spec);
}

/**
 * What NVIDIA's headers say about a BAR0 offset of a simulated chip, from the
 * register database when it is loaded (`openGpu` loads it first; a direct
 * `openDevice` uses it when some earlier call did): the simulator answers
 * registers it does not model with their header reset value. While a load is
 * under way (`openGpuEarly` starts it and opens at once) the answer waits for
 * it: an access the simulator does not model fails EAGAIN until it has
 * loaded (answered as a PRI error if the load fails), never answered
 * differently for being early.
 */
function simHeaders(
  profile: string | undefined,
): ((offset: number) => { name: string; reset: number | null } | null) | undefined {
  const chipId = simProfileChipId(profile);
  if (chipId === null) return undefined; // createSimGpu says why
  const answer = (db: RegisterDb, offset: number) => {
    const hit = lookupRegisters(db, offset, { limit: 1 })[0];
    return hit === undefined ? null : { name: hit.name, reset: hit.register.reset };
  };
  const db = loadedRegisterDb(chipId);
  if (db !== undefined) return (offset) => answer(db, offset);
  if (!registerDbLoading(chipId)) return undefined;
  return (offset) => {
    const now = loadedRegisterDb(chipId);
    if (now !== undefined) return answer(now, offset);
    if (!registerDbLoading(chipId)) return null; // the load failed: no headers
    fail(
      "EAGAIN",
      `BAR0 ${
        hex(offset)
      }: the simulator does not model it, and NVIDIA's register database for this chip is still loading`,
      "await loadGpuModules() first (openGpu waits for it)",
    );
  };
}

/** The chip id of a simulator profile name (default `sim`), or null for an unknown one. */
export function simProfileChipId(profile: string | undefined): number | null {
  const name = profile ?? DEFAULT_SIM_PROFILE;
  return Object.hasOwn(SIM_PROFILES, name) ? SIM_PROFILES[name].chipId : null;
}

/** Sleeps the thread for `ms` (the open is synchronous; polls must not spin on a card). */
function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/**
 * Waits until GFW boot (VBIOS devinit, memory training) has finished, as
 * nova-core's `gfw::wait_gfw_boot_completion` does (facts §13.2 item 1):
 * Turing..Ada poll the scratch's privilege mask, then its progress byte for
 * 0xFF; Hopper on poll FSP_BOOT_COMPLETE for 0xFF. 1 ms between polls.
 */
export function waitGfwBoot(
  bar0: Mmio,
  chip: ChipInfo,
  options: { timeoutMs?: number } = {},
): GfwStatus {
  const boot = chipFamily(chip).boot;
  const timeoutMs = checkTimeout(options.timeoutMs ?? boot.gfwTimeoutMs, "GFW boot timeout");
  const regs = boot.gfw;
  const start = performance.now();
  let polls = 0;
  let value = 0;
  let what = regs.name;
  for (;;) {
    polls++;
    let done = false;
    if (regs.plm !== null) {
      what = "NV_PGC6_AON_SECURE_SCRATCH_GROUP_05_PRIV_LEVEL_MASK";
      value = bar0.read32(regs.plm);
      checkNotGone(bar0, value, regs.plm, what);
      if (!isPriError(value) && getField(value, SCRATCH_GROUP_05_PLM.READ_PROTECTION_LEVEL0)) {
        what = regs.name;
        value = bar0.read32(regs.progress);
        done = !isPriError(value) && getField(value, regs.field) === GFW_BOOT_PROGRESS_COMPLETED;
      }
    } else {
      value = bar0.read32(regs.progress);
      checkNotGone(bar0, value, regs.progress, what);
      done = getField(value, regs.field) === FSP_BOOT_COMPLETE_SUCCESS;
    }
    const waited = performance.now() - start;
    // Done at the first look is no wait, however long that one read took (cold code, a busy
    // machine): the banner says "waited" only when the firmware made it wait.
    if (done) {
      return { register: regs.name, value, waitedMs: polls === 1 ? 0 : Math.round(waited), polls };
    }
    if (waited > timeoutMs) {
      const reg = what === regs.name ? regs.progress : regs.plm!;
      fail(
        "ETIMEDOUT",
        `GFW boot did not complete in ${timeoutMs} ms: ${what} (${hex(reg)}) reads ${
          hex(value, 8)
        } after ${polls} polls (want ${what === regs.name ? "0xff" : "bit 0 set"})`,
        "devinit is still running or failed: wait and reopen, or reset the function (sysfs reset)",
      );
    }
    sleepSync(1);
  }
}

/** What the memory-clear wait at open saw. */
export interface MemClearStatus {
  /** The register polled. */
  offset: number;
  /** Its last value; null when it read a PRI error (not available on this chip or firmware). */
  value: number | null;
  /** Milliseconds spent waiting (0 when the first read said done). */
  waitedMs: number;
}

/**
 * Waits until the frame buffer's post-reset memory clear is done, as NVIDIA's
 * gpu-admin-tools does before its first BAR0-window access (facts §14.2 item
 * 2): the family's register (0x100B20; 0x8A004C on Blackwell) reads exactly 1,
 * 5 s. Writes made while the clear runs may be wiped. The register is in no
 * published header, so a PRI error there means "not available" and is no
 * failure; all ones is checked against BOOT_0.
 */
export function waitMemClear(
  bar0: Mmio,
  chip: ChipInfo,
  options: { timeoutMs?: number } = {},
): MemClearStatus {
  const timeoutMs = checkTimeout(options.timeoutMs ?? 5000, "memory-clear timeout");
  const offset = chipFamily(chip).boot.memClear;
  const start = performance.now();
  let polls = 0;
  for (;;) {
    const v = bar0.read32(offset);
    polls++;
    checkNotGone(bar0, v, offset, "memory-clear status");
    // As for GFW: done at the first look is no wait.
    const waitedMs = polls === 1 ? 0 : Math.round(performance.now() - start);
    if (isPriError(v)) return { offset, value: null, waitedMs };
    if (v === 1) return { offset, value: v, waitedMs };
    if (performance.now() - start > timeoutMs) {
      fail(
        "ETIMEDOUT",
        `the post-reset memory clear did not finish in ${timeoutMs} ms: ${hex(offset)} reads ${
          hex(v, 8)
        } after ${polls} polls (want 1)`,
        "the frame buffer is still being cleared or the clear failed: wait and reopen, or reset the function",
      );
    }
    sleepSync(1);
  }
}

/**
 * A per-card lock this process holds: the lock file and the fd whose `flock`
 * it is, and the flock on the card's own sysfs `resource0` (the one every
 * writing session meets on, whatever its user or lock directory).
 */
export interface CardLock {
  /** The lock file. */
  path: string;
  /** The fd holding the lock file's flock (closing it releases that lock). */
  fd: number;
  /**
   * The card file flocked (`<sysfs function>/resource0`) and the fd holding
   * that flock; null when the lock was taken without one ({@linkcode lockCard}
   * with no `cardFile`). A process that must drop a lock it cannot
   * `release()` (the REPL's killed worker) closes both fds.
   */
  card: { path: string; fd: number } | null;
  /** Releases both locks (idempotent). */
  release(): void;
}

/** Where the default lock directory is looked for (tests point these elsewhere). */
export interface LockDirRoots {
  /** The system lock directory; default `/run/lock`. */
  runLock?: string;
  /** The user's runtime directory; default `$XDG_RUNTIME_DIR`. */
  xdgRuntimeDir?: string;
  /** Whose directories count as the user's; default the effective uid. */
  uid?: number;
}

function lstatOrNull(path: string): Deno.FileInfo | null {
  try {
    return Deno.lstatSync(path);
  } catch {
    return null;
  }
}

function statOrNull(path: string): Deno.FileInfo | null {
  try {
    return Deno.statSync(path);
  } catch {
    return null;
  }
}

/** The uid of this process, for ownership checks (0 where it cannot be read: not Linux). */
function myUid(): number {
  return Deno.build.os === "linux" ? effectiveUid() : Deno.uid() ?? 0;
}

/**
 * The directory lock files go in when neither the `lockDir` option nor
 * `$NOVAMM_LOCK_DIR` names one: a private `novamm` directory (mode 0700,
 * created by {@linkcode lockCard}), `/run/lock/novamm` — one place for every
 * session of the machine, so that two root sessions (one from `sudo`, one
 * from a login shell) always meet on the same file — or, for a user other
 * than root who cannot have that one (it exists and is someone else's),
 * `$XDG_RUNTIME_DIR/novamm` when that directory is set and the user's own.
 */
export function defaultLockDir(roots: LockDirRoots = {}): string {
  const runLock = roots.runLock ?? "/run/lock";
  const xdg = roots.xdgRuntimeDir ?? Deno.env.get("XDG_RUNTIME_DIR");
  const uid = roots.uid ?? myUid();
  const system = `${runLock}/novamm`;
  const ours = (p: string) => {
    const i = lstatOrNull(p);
    return i !== null && i.isDirectory && i.uid === uid;
  };
  const systemFree = statOrNull(runLock)?.isDirectory === true &&
    (lstatOrNull(system) === null || ours(system));
  if (uid === 0 || systemFree) return system;
  if (xdg !== undefined && xdg.startsWith("/") && ours(xdg)) return `${xdg}/novamm`;
  return system; // refused by lockCard, naming it
}

/**
 * The lock file of a card: `<dir>/novamm-<bdf>.lock` in `dir` (the
 * `lockDir` option), else `$NOVAMM_LOCK_DIR`, else {@linkcode defaultLockDir}.
 */
export function lockPath(bdf: string, dir?: string): string {
  const d = dir ?? Deno.env.get("NOVAMM_LOCK_DIR") ?? defaultLockDir();
  return `${d}/novamm-${bdf.replaceAll(":", "_")}.lock`;
}

const octal = (mode: number) => `0${(mode & 0o7777).toString(8).padStart(3, "0")}`;

/**
 * Refuses a lock directory others could plant files in: one writable by its
 * group or by everyone, or owned by another user, unless it is sticky (like
 * /tmp: nobody can then rename or remove another user's file) and owned by
 * root or the user. `info` is its stat (its lstat for the default directory,
 * which must not be a link).
 */
function checkLockDir(dir: string, info: Deno.FileInfo, uid: number): void {
  if (info.isSymlink) {
    fail(
      "EPERM",
      `lock directory ${dir} is a symbolic link: refused (the default lock directory must be a real directory)`,
      `remove it, or set NOVAMM_LOCK_DIR to a private directory`,
    );
  }
  if (!info.isDirectory) fail("EINVAL", `lock directory ${dir} is not a directory`);
  const mode = info.mode ?? 0;
  const sticky = (mode & 0o1000) !== 0;
  const owner = info.uid ?? uid;
  const hint = "use a directory of your own with mode 0700, or unset NOVAMM_LOCK_DIR";
  if (sticky) {
    if (owner !== 0 && owner !== uid) {
      fail(
        "EPERM",
        `lock directory ${dir} (sticky, mode ${
          octal(mode)
        }) is owned by uid ${owner}, who can remove or replace any file in it`,
        hint,
      );
    }
    return;
  }
  if ((mode & 0o022) !== 0) {
    fail(
      "EPERM",
      `lock directory ${dir} is writable by ${
        (mode & 0o002) !== 0 ? "every user" : "its group"
      } (mode ${octal(mode)}) without the sticky bit: others could plant a link to a file there`,
      hint,
    );
  }
  if (owner !== uid) {
    fail(
      "EPERM",
      `lock directory ${dir} is owned by uid ${owner}, not by this user (uid ${uid})`,
      hint,
    );
  }
}

/**
 * Opens the lock file safely: created with mode 0600 when absent, never
 * through a symbolic link (O_NOFOLLOW), and refused unless it is a regular
 * file of this user with one name (a hard link to another file would make
 * the lock write that file). Returns the fd.
 */
function openLockFile(path: string, dir: string, uid: number): number {
  const opened = openNoFollow(path, 0o600);
  if (typeof opened === "string") {
    const existing = lstatOrNull(path);
    switch (opened) {
      case "ELOOP":
        fail(
          "EPERM",
          `lock path ${path} is a symbolic link: refused (following it would write its target)`,
          "remove the link; someone may have planted it",
        );
        break;
      case "EISDIR":
        fail("EINVAL", `lock path ${path} is not a regular file (a directory)`);
        break;
      case "EACCES":
      case "EPERM":
      case "EROFS":
        fail(
          "EACCES",
          existing === null
            ? `cannot create the lock file ${path}: the directory ${dir} is not writable by uid ${uid} (${opened})`
            : `cannot open the lock file ${path} (owner uid ${existing.uid}, mode ${
              octal(existing.mode ?? 0)
            }) for writing as uid ${uid} (${opened})`,
          "set NOVAMM_LOCK_DIR (or lockDir) to a directory you can write, mode 0700",
        );
        break;
      default:
        fail("EIO", `cannot open the lock file ${path}: ${opened}`);
    }
  }
  const fd = opened as number;
  let info: Deno.FileInfo;
  try {
    // What the fd is: the file opened, whatever the name points to by now.
    info = Deno.statSync(`/proc/self/fd/${fd}`);
  } catch (e) {
    closeFd(fd);
    return fail(
      "EIO",
      `cannot check the lock file ${path} through /proc/self/fd: ${
        e instanceof Error ? e.message : String(e)
      }`,
    );
  }
  let why: string | null = null;
  let code: "EPERM" | "EINVAL" = "EPERM";
  if (!info.isFile) {
    why = "is not a regular file";
    code = "EINVAL";
  } else if (info.uid !== uid) why = `is owned by uid ${info.uid}, not by this user (uid ${uid})`;
  else if (info.nlink !== 1) why = `has ${info.nlink} names (hard links to one file)`;
  if (why !== null) {
    closeFd(fd);
    fail(code, `lock path ${path} ${why}: refused`, "remove it; novamm creates its own");
  }
  return fd;
}

/**
 * Makes sure `dir` may hold lock files: the default directory is created
 * (mode 0700) when absent and must not be a link; any directory is checked
 * as {@linkcode lockCard} says (ENOENT when missing, EPERM when others could
 * plant files in it, EACCES when it cannot be created).
 */
export function prepareLockDir(dir: string, options: { isDefault: boolean; uid?: number }): void {
  const uid = options.uid ?? myUid();
  if (options.isDefault && lstatOrNull(dir) === null) {
    try {
      Deno.mkdirSync(dir, { mode: 0o700 });
    } catch (e) {
      if (!(e instanceof Deno.errors.AlreadyExists)) {
        const denied = e instanceof Deno.errors.PermissionDenied;
        fail(
          denied ? "EACCES" : "EIO",
          `cannot create the lock directory ${dir}: ${e instanceof Error ? e.message : e}`,
          "set NOVAMM_LOCK_DIR to a directory of your own (mode 0700)",
        );
      }
    }
  }
  // The default directory sits in a world-writable one: it must not be a link.
  const info = options.isDefault ? lstatOrNull(dir) : statOrNull(dir);
  if (info === null) {
    fail("ENOENT", `lock directory ${dir} does not exist`, "set NOVAMM_LOCK_DIR to a directory");
  }
  checkLockDir(dir, info, uid);
}

const decoder = new TextDecoder();

/**
 * Takes the per-card lock that keeps two writing sessions off one card (the
 * PRAMIN window register is global state): an exclusive, non-blocking
 * `flock` on the lock file, held by the kernel for as long as the fd is open.
 * A session that died released it with its fds, so a stale file is simply
 * taken; two racing sessions can never both win. The file records the pid of
 * the holder, for the message the loser gets.
 *
 * The file is `<dir>/novamm-<bdf>.lock` (see {@linkcode lockPath}; the
 * default directory is made private, mode 0700). Nothing is done by path
 * after the open: it is opened with O_NOFOLLOW (a planted link is refused,
 * EPERM naming it), checked to be a regular file of this user, and written
 * and emptied through its fd. A directory others could plant files in is
 * refused (EPERM), an unwritable one is EACCES naming the path.
 *
 * With `cardFile` (the card's sysfs `resource0`; {@linkcode openDevice}
 * always passes it) the card's own file is flocked too, after the lock file:
 * lock files of different users or lock directories are different files, the
 * card's inode is one, so every writing session on the PCI function excludes
 * every other (EBUSY naming the card, the holder's pid as /proc/locks shows
 * it, and the file). Any failure releases what was taken.
 *
 * @example
 * ```ts
 * const lock = lockCard("0000:65:00.0", {
 *   cardFile: "/sys/bus/pci/devices/0000:65:00.0/resource0",
 * });
 * lock.release();
 * ```
 */
export function lockCard(
  bdf: string,
  options: { dir?: string; cardFile?: string } = {},
): CardLock {
  if (typeof bdf !== "string" || bdf === "" || bdf.includes("/") || bdf.includes("\0")) {
    fail("EINVAL", `lockCard takes a PCI address such as "0000:65:00.0", not ${describe(bdf)}`);
  }
  checkOptions(options, { dir: "string", cardFile: "string" }, "lockCard options");
  const cardFile = options.cardFile;
  if (cardFile === "") fail("EINVAL", "lockCard's cardFile is an empty string");
  const explicit = options.dir ?? Deno.env.get("NOVAMM_LOCK_DIR");
  if (explicit === "") fail("EINVAL", "the lock directory is an empty string");
  const uid = myUid();
  const dir = explicit ?? defaultLockDir({ uid });
  prepareLockDir(dir, { isDefault: explicit === undefined, uid });
  const path = `${dir}/novamm-${bdf.replaceAll(":", "_")}.lock`;
  const fd = openLockFile(path, dir, uid);
  let held: boolean;
  try {
    held = tryLockFd(fd);
  } catch (e) {
    closeFd(fd);
    throw e;
  }
  if (!held) {
    let pid = "";
    try {
      pid = decoder.decode(preadFd(fd, 32, 0)).trim();
    } catch {
      // the holder is writing it
    }
    closeFd(fd);
    fail(
      "EBUSY",
      `${bdf} is in use by another novamm session (${
        pid === "" ? "pid unknown" : `pid ${pid}`
      }, lock ${path})`,
      "close that session, or open this one with --read-only",
    );
  }
  let card: { path: string; fd: number } | null = null;
  try {
    if (cardFile !== undefined) card = { path: cardFile, fd: lockCardFile(bdf, cardFile) };
    truncateFd(fd, 0);
    pwriteFd(fd, new TextEncoder().encode(`${Deno.pid}\n`), 0);
  } catch (e) {
    if (card !== null) closeQuietly(card.fd);
    closeFd(fd);
    throw e;
  }
  let done = false;
  return {
    path,
    fd,
    card,
    release: () => {
      if (done) return;
      done = true;
      try {
        truncateFd(fd, 0); // through the fd: never a path that may point elsewhere now
      } catch {
        // the flock is what counted
      }
      try {
        closeFd(fd); // drops the lock file's flock
      } finally {
        if (card !== null) closeFd(card.fd); // drops the card's
      }
    },
  };
}

/** Closes an fd on an error path, where the first error is the one to report. */
function closeQuietly(fd: number): void {
  try {
    closeFd(fd);
  } catch {
    // the error being thrown says more
  }
}

/**
 * Takes the exclusive, non-blocking `flock` on the card's own file (its sysfs
 * `resource0`, opened read-only: flock needs no write access, and every
 * writing session maps that file read-write anyway). Lock files live in a
 * directory that depends on the user (`/run/lock/novamm` for root,
 * `$XDG_RUNTIME_DIR/novamm` for others) and on `$NOVAMM_LOCK_DIR`; this
 * inode is the one every session on the PCI function shares, so a root
 * session and a group-granted user's session still exclude each other. flock
 * is VFS-level: it works on sysfs (Linux fs/kernfs/file.c `kernfs_file_fops`
 * sets no `.flock`, so flock(2) takes the generic inode lock; a read-only open
 * of a BAR file is allowed since it has `mmap`) and on the regular files of a
 * fake tree. Returns the fd; EBUSY naming the card and
 * the holder's pid (from /proc/locks, when it shows one) if another open
 * file holds it.
 */
function lockCardFile(bdf: string, cardFile: string): number {
  const fd = openFile(cardFile, { readOnly: true });
  let held: boolean;
  try {
    held = tryLockFd(fd);
  } catch (e) {
    closeQuietly(fd);
    throw e;
  }
  if (held) return fd;
  let pids: number[] = [];
  try {
    pids = flockHolders(Deno.statSync(`/proc/self/fd/${fd}`));
  } catch {
    // no /proc: the holder stays unknown
  }
  closeFd(fd);
  return fail(
    "EBUSY",
    `${bdf} is in use by another novamm session (${
      pids.length === 0 ? "pid unknown" : `pid ${pids.join(", ")}`
    }, flock on ${cardFile})`,
    "close that session, or open this one with --read-only",
  );
}

/**
 * The pids /proc/locks shows holding a FLOCK write lock on the file `info`
 * describes (lines `N: FLOCK  ADVISORY  WRITE <pid> <maj>:<min>:<ino> 0 EOF`,
 * major and minor in hex; fs/locks.c `lock_get_status`). A pid of 0 or -1
 * (a holder in another pid namespace, or an fd passed on) is left out.
 */
function flockHolders(info: Pick<Deno.FileInfo, "dev" | "ino">): number[] {
  if (info.ino === null) return [];
  const dev = BigInt(info.dev);
  // glibc's major()/minor() of st_dev.
  const major = ((dev >> 8n) & 0xfffn) | ((dev >> 32n) & ~0xfffn);
  const minor = (dev & 0xffn) | ((dev >> 12n) & ~0xffn & 0xffffffffn);
  const want = `${major.toString(16).padStart(2, "0")}:${minor.toString(16).padStart(2, "0")}:${
    BigInt(info.ino)
  }`;
  const pids: number[] = [];
  for (const line of Deno.readTextFileSync("/proc/locks").split("\n")) {
    const f = line.trim().split(/\s+/);
    // A blocked waiter's line has "->" after the number; non-blocking locks never wait.
    if (f[1] !== "FLOCK" || f[3] !== "WRITE" || f[5] !== want) continue;
    const pid = Number(f[4]);
    if (Number.isSafeInteger(pid) && pid > 0 && !pids.includes(pid)) pids.push(pid);
  }
  return pids;
}

/**
 * Opens a device.
 *
 * @example
 * ```ts
 * const dev = openDevice({ device: "sim:gh100" });
 * dev.chip.name; // "GH100"
 * ```
 */
export function openDevice(options: OpenDeviceOptions = {}): Device {
  const spec = options.device ?? "sim";
  const snapSpec = parseSnapSpec(spec);
  if (snapSpec !== null) return openSnapshot(spec, snapSpec, options);
  if (options.snapshot !== undefined) {
    fail("EINVAL", `the snapshot option is for snap:FILE devices, not ${JSON.stringify(spec)}`);
  }
  const simOptions = parseSimSpec(spec);
  if (simOptions !== null) {
    const sim = createSimGpu({ ...simOptions, headers: simHeaders(simOptions.profile) });
    const state = sim.boot.state;
    return assemble(() => [sim.bar0, sim.bar1], options, {
      spec: formatSimSpec(sim.profile.name, state, sim.conflicts),
      kind: "sim",
      // Only GSP reports a usable region; a card without it has none to give.
      firmwareUsable: state === "gsp" && sim.firmware !== null ? { ...sim.firmware.usable } : null,
      bootVga: sim.boot.bootVga,
      barFirewall: null,
      sim,
      pci: null,
      snapshot: null,
      lock: null,
      release: () => {},
    });
  }
  if (spec.startsWith("sim")) {
    fail(
      "ENODEV",
      `bad simulator spec ${
        JSON.stringify(spec)
      }: use sim, sim:PROFILE or sim:PROFILE:STATE, optionally ?knob=value&... (e.g. sim:gh100, sim:ga102:gsp, sim:gh100?lowbind=high; states ${
        SIM_STATES.join(", ")
      })`,
    );
  }
  const bare = /^([a-z0-9]+)(?::([a-z]+))?$/.exec(spec);
  if (bare !== null && Object.hasOwn(SIM_PROFILES, bare[1])) {
    // "gh100" or "gh100:gsp": a simulator profile without the sim: prefix.
    fail(
      "ENODEV",
      `${JSON.stringify(spec)} is neither a PCI address nor a device spec`,
      `did you mean --device sim:${spec}?`,
    );
  }
  checkDeviceWord(spec);
  const fn = findGpu(spec, options.sysfsRoot === undefined ? {} : { sysfsRoot: options.sysfsRoot });
  const readOnly = options.readOnly ?? false;
  const force = options.force ?? false;
  // Writing sessions lock the card's lock file and its own resource0 (the one file every
  // writing session maps, whatever its user or lock directory): see lockCard.
  const lock = readOnly ? null : lockCard(fn.bdf, {
    ...(options.lockDir === undefined ? {} : { dir: options.lockDir }),
    cardFile: `${fn.path}/resource0`,
  });
  const release = () => lock?.release();
  // Blackwell: the PCIe BAR firewall must drop before the first BAR0 access (facts §14.2
  // item 3, gpu-admin-tools `wait_for_bar_firewall`). Without the DVSEC, BOOT_0 decides below.
  let firewall: BarFirewallResult | null = null;
  if (isBlackwellDeviceId(fn.device)) {
    try {
      firewall = waitBarFirewall(fn, { noDvsecDelayMs: 0 });
    } catch (e) {
      release();
      throw e;
    }
  }
  if (!readOnly && fn.driver === null) {
    // An unbound card may have memory decoding off (every read all ones): turn it on,
    // as tinygrad does. A failure here shows up as the all-ones error below.
    try {
      enableDevice(fn);
    } catch {
      // reported through the BOOT read, with the hint
    }
  }
  const open = (): [MmioBackend, MmioBackend] => {
    const bar0 = openBar(fn, 0, { readOnly, force });
    if (bar0.size < BAR0_BYTES) {
      // The registers novamm uses reach 0xB830B0: a shorter BAR0 would fault past its end.
      bar0.close();
      fail(
        "ENODEV",
        `BAR0 of ${fn.bdf} maps ${hex(bar0.size)} bytes; NVIDIA's BAR0 is ${hex(BAR0_BYTES)}`,
        `check ${fn.path}/resource0 and the BAR0 line of ${fn.path}/resource`,
      );
    }
    try {
      return [bar0, openBar(fn, 1, { readOnly, force, writeCombining: true })];
    } catch (e) {
      bar0.close();
      throw e;
    }
  };
  try {
    return assemble(open, options, {
      spec: fn.bdf,
      kind: "pci",
      firmwareUsable: null,
      bootVga: fn.bootVga,
      barFirewall: firewall,
      sim: null,
      pci: fn,
      snapshot: null,
      lock,
      release,
      beforeIdentify: firewall?.warning == null ? undefined : (bar0) => {
        // gpu-admin-tools: no DVSEC and BOOT_0 all ones → the firewall may be up: 3 s, then retry.
        if (!isGpuGone(bar0.read32(NV_PMC_BOOT_0))) return;
        console.warn(`warning: ${firewall!.warning}; BOOT_0 reads all ones: waiting 3 s`);
        sleepSync(3000);
      },
    });
  } catch (e) {
    if (e instanceof NovaError && e.code === "ENODEV" && e.message.includes("does not answer")) {
      throw new NovaError("ENODEV", e.message.replace(/^ENODEV: /, ""), {
        hint:
          `check that memory decoding is on: ${fn.path}/enable must read 1 (echo 1 > ${fn.path}/enable)`,
        cause: e,
      });
    }
    throw e;
  }
}

/**
 * ENODEV with a did-you-mean for a spec that is plainly no PCI address: a
 * misspelt kind (`snp:card.snap`, `simm:ga102`) or a bare snapshot file name.
 */
function checkDeviceWord(spec: string): void {
  const kinds = "sim[:PROFILE[:STATE]], snap:FILE[?scratch] or a PCI address such as 0000:65:00.0";
  const m = /^([a-z][a-z0-9]*):(.*)$/i.exec(spec);
  if (m !== null && !/^[0-9a-f]+$/i.test(m[1])) {
    const near = didYouMean(m[1].toLowerCase(), ["sim", "snap"]);
    fail(
      "ENODEV",
      `${JSON.stringify(spec)} is neither a PCI address nor a device spec (${kinds})`,
      near === null ? undefined : `did you mean --device ${near}:${m[2]}?`,
    );
  }
  if (!spec.includes(":") && /\.snap$/i.test(spec)) {
    fail(
      "ENODEV",
      `${JSON.stringify(spec)} is neither a PCI address nor a device spec (${kinds})`,
      `did you mean --device snap:${spec}?`,
    );
  }
}

/** EINVAL unless `s` is shaped as a decoded snapshot: a register Map, sorted disjoint VRAM ranges. */
function checkSnapshotModel(spec: string, s: Snapshot): void {
  const bad = (why: string): never => fail("EINVAL", `${spec}: the snapshot option ${why}`);
  if (s === null || typeof s !== "object") bad(`is ${describe(s)}, not a Snapshot`);
  if (!(s.registers instanceof Map)) bad("has no registers Map");
  if (s.chip === null || typeof s.chip !== "object") bad("has no chip");
  if (s.state === null || typeof s.state !== "object") bad("has no state object");
  if (!Array.isArray(s.vram)) bad("has no vram array");
  let end = 0;
  for (const [i, r] of s.vram.entries()) {
    if (
      r === null || typeof r !== "object" || !(r.data instanceof Uint8Array) ||
      !Number.isSafeInteger(r.addr) || r.addr < end || r.addr % 4 !== 0 || r.data.length % 4 !== 0
    ) {
      bad(`vram[${i}] is not a 4-byte aligned range after the one before it (sorted, disjoint)`);
    }
    end = r.addr + r.data.length;
  }
}

/**
 * Opens a snapshot as a device (see hw/snap/device.ts): read-only unless
 * `?scratch` (and `readOnly` not set). Nothing waits: GFW and the memory
 * clear are reported as recorded, the VRAM size is the recorded one.
 */
function openSnapshot(
  spec: string,
  parsed: { path: string; scratch: boolean },
  options: OpenDeviceOptions,
): Device {
  const snapshot = options.snapshot;
  if (snapshot === undefined) {
    fail(
      "EINVAL",
      `${spec}: openDevice does not read files; pass the decoded snapshot as { snapshot }`,
      'openGpu({ device: "snap:FILE" }) reads the file for you',
    );
  }
  checkSnapshotModel(spec, snapshot);
  const vramSize = snapshot.chip.vramSize;
  if (!Number.isSafeInteger(vramSize) || vramSize < 64 * 2 ** 20 || vramSize > 2 ** 40) {
    fail(
      "EINVAL",
      `${spec}: the snapshot records ${
        hex(vramSize)
      } bytes of VRAM (expected 0x4000000..0x10000000000)`,
    );
  }
  const scratch = parsed.scratch && options.readOnly !== true;
  const backends = snapBackends(snapshot, { scratch, label: parsed.path });
  const state = backends.snapshot.state;
  // The usable region the capturing session worked with (its allocator's range), else the
  // firmware's report: a reopened snapshot must not re-derive it from a binding it made.
  const vramState = state.vram as { usable?: { start?: unknown; end?: unknown } } | undefined;
  const usable = (vramState?.usable ?? state.firmwareUsable) as
    | { start?: unknown; end?: unknown }
    | null
    | undefined;
  return assemble(() => [backends.bar0, backends.bar1], { ...options, readOnly: false }, {
    spec: `snap:${parsed.path}${scratch ? "?scratch" : ""}`,
    kind: "snap",
    firmwareUsable: usable !== null && typeof usable === "object" &&
        Number.isSafeInteger(usable.start) && Number.isSafeInteger(usable.end) &&
        (usable.start as number) >= 0 && (usable.start as number) < (usable.end as number) &&
        (usable.end as number) <= vramSize
      ? { start: usable.start as number, end: usable.end as number }
      : null,
    bootVga: state.bootVga === true,
    barFirewall: null,
    sim: null,
    pci: null,
    snapshot: backends.snapshot,
    lock: null,
    release: () => {},
    recorded: { snapshot: backends.snapshot, readOnly: !scratch },
  });
}

/**
 * Counts writes of the PRAMIN window register that change where it points
 * (its BASE and TARGET fields), whoever makes them, in `counters.windowMoves`.
 * Reads the register once to know where it starts (not on a snapshot that
 * did not record it).
 */
function countWindowMoves(bar0: Mmio, chip: ChipInfo, snapshot?: Snapshot): void {
  const reg = windowRegister(chip.architecture);
  const where = (raw: number) =>
    `${getField(raw, reg.base)}:${reg.target === null ? 0 : getField(raw, reg.target)}`;
  // A snapshot that never recorded the window: where it points is unknown until it is set.
  let last = snapshot !== undefined && !snapshot.registers.has(reg.offset)
    ? "unknown"
    : where(bar0.read32(reg.offset));
  bar0.watch(reg.offset, (raw) => {
    const now = where(raw);
    if (now !== last) bar0.counters.windowMoves++;
    last = now;
  });
}

/**
 * Wraps two BAR backends in counted, traced `Mmio`s, reads the chip and the
 * VRAM size; on any failure everything opened so far is closed and `release`
 * runs (the card lock).
 */
function assemble(
  open: () => [MmioBackend, MmioBackend],
  options: OpenDeviceOptions,
  info:
    & Pick<
      Device,
      | "spec"
      | "kind"
      | "firmwareUsable"
      | "bootVga"
      | "barFirewall"
      | "sim"
      | "pci"
      | "snapshot"
      | "lock"
    >
    & {
      release: () => void;
      beforeIdentify?: (bar0: Mmio) => void;
      /** A snapshot device: no waits, the recorded values; `readOnly` is the device's. */
      recorded?: { snapshot: Snapshot; readOnly: boolean };
    },
): Device {
  const readOnly = options.readOnly ?? false;
  const counters = newCounters();
  let backends: [MmioBackend, MmioBackend];
  try {
    backends = open();
  } catch (e) {
    info.release();
    throw e;
  }
  const bar0 = new Mmio("bar0", backends[0], { readOnly, counters });
  const bar1 = new Mmio("bar1", backends[1], { readOnly, counters });
  bar0.tracer = bar1.tracer = options.tracer;
  const close = () => {
    bar0.close();
    bar1.close();
    info.release();
  };
  try {
    info.beforeIdentify?.(bar0);
    const chip = identify(bar0);
    countWindowMoves(bar0, chip, info.recorded?.snapshot);
    // VRAM and the FB registers are not to be used before devinit is done (facts §13.2),
    // nor VRAM written while the post-reset memory clear may still wipe it (§14.2 item 2).
    const rec = info.recorded;
    const gfw = rec === undefined
      ? waitGfwBoot(bar0, chip, { timeoutMs: options.gfwTimeoutMs })
      : recordedGfw(rec.snapshot, chip);
    const memClear = rec === undefined
      ? waitMemClear(bar0, chip)
      : recordedMemClear(rec.snapshot, chip);
    const { release: _, beforeIdentify: __, recorded: ___, ...rest } = info;
    return {
      ...rest,
      bar0,
      bar1,
      counters,
      chip,
      family: chipFamily(chip),
      gfw,
      memClear,
      vramSize: rec === undefined ? readVramSize(bar0, chip) : rec.snapshot.chip.vramSize,
      readOnly: rec === undefined ? readOnly : rec.readOnly,
      close,
    };
  } catch (e) {
    close();
    throw e;
  }
}

/** GFW boot status as a snapshot recorded it (no wait; 0 polls when the register was not captured). */
function recordedGfw(snap: Snapshot, chip: ChipInfo): GfwStatus {
  const regs = chipFamily(chip).boot.gfw;
  const value = snap.registers.get(regs.progress);
  return {
    register: regs.name,
    value: value ?? 0,
    waitedMs: 0,
    polls: value === undefined ? 0 : 1,
  };
}

/** The memory-clear status as a snapshot recorded it (null: not captured, or a PRI error). */
function recordedMemClear(snap: Snapshot, chip: ChipInfo): MemClearStatus {
  const offset = chipFamily(chip).boot.memClear;
  const v = snap.registers.get(offset);
  return { offset, value: v === undefined || isPriError(v) ? null : v, waitedMs: 0 };
}
