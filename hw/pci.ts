/**
 * NVIDIA GPUs as Linux sysfs shows them: `/sys/bus/pci/devices/<BDF>/` holds
 * `vendor`, `device`, `class`, `subsystem_vendor`, `subsystem_device` (text
 * hex), `resource` (one line per resource:
 * start, end and flags) and a `driver` symlink when a driver is bound. The
 * BARs themselves are the `resource0` … `resource5` files, mapped by
 * `hw/mapped.ts`.
 *
 * Every function takes a `sysfsRoot`, so tests run the same code on a fake
 * tree of ordinary files.
 *
 * @module
 */

import { fail, hex, NovaError } from "./errors.ts";
import { isPermissionError } from "./libc.ts";
import { checkOptions } from "./validate.ts";

/** Where Linux lists PCI functions. */
export const DEFAULT_SYSFS_ROOT = "/sys/bus/pci/devices";

/** The sysfs PCI directory used when none is given: `$NOVAMM_SYSFS_ROOT`, else the real one. */
function defaultRoot(): string {
  try {
    return Deno.env.get("NOVAMM_SYSFS_ROOT") || DEFAULT_SYSFS_ROOT;
  } catch {
    return DEFAULT_SYSFS_ROOT; // no --allow-env
  }
}
/** PCI vendor id of NVIDIA. */
export const NVIDIA_VENDOR_ID = 0x10de;
/** PCI base class "display controller" (VGA 0x0300xx, 3D 0x0302xx). */
export const DISPLAY_BASE_CLASS = 0x03;

/** `IORESOURCE_IO` (include/linux/ioport.h): an I/O-port BAR. */
export const IORESOURCE_IO = 0x100;
/** `IORESOURCE_MEM`: a memory BAR. */
export const IORESOURCE_MEM = 0x200;
/** `IORESOURCE_PREFETCH`: prefetchable memory. */
export const IORESOURCE_PREFETCH = 0x2000;
/** `IORESOURCE_MEM_64`: a 64-bit memory BAR (it uses two BAR slots). */
export const IORESOURCE_MEM_64 = 0x100000;

/**
 * Kernel drivers that own the GPU when bound; opening a BAR behind their back
 * races them. `vfio-pci` is not listed: it does not touch the card itself.
 */
export const KERNEL_GPU_DRIVERS: readonly string[] = [
  "nvidia",
  "nouveau",
  "NovaCore", // nova-core's PCI driver name, as the sysfs `driver` link shows it
  "nova-core",
  "nova_core",
  "nova",
];

/** Driver names compared without case, `-` or `_` ("NovaCore" = "nova-core"). */
function driverKey(name: string): string {
  return name.toLowerCase().replace(/[-_]/g, "");
}

const KERNEL_DRIVER_KEYS = new Set(KERNEL_GPU_DRIVERS.map(driverKey));

// The standard BARs; the lines after them in `resource` are the ROM, SR-IOV
// and bridge windows, which have no `resourceN` file to map.
const STD_BARS = 6;
const BDF_RE = /^(?:([0-9a-fA-F]{4,8}):)?([0-9a-fA-F]{2}):([0-9a-fA-F]{2})\.([0-7])$/;
const HEX_RE = /^0x[0-9a-fA-F]+$/;

/** One BAR of a PCI function, from the `resource` file. */
export interface PciBar {
  /** BAR index: the `N` of `resourceN` (a 64-bit BAR takes N and N+1; N+1 is then absent). */
  index: number;
  /** CPU physical start address. */
  start: bigint;
  /** Size in bytes. */
  size: number;
  /** Raw `IORESOURCE_*` flags. */
  flags: number;
  /** `IORESOURCE_PREFETCH` is set. */
  prefetchable: boolean;
  /** `IORESOURCE_MEM_64` is set. */
  is64bit: boolean;
  /** `IORESOURCE_IO`: an I/O-port BAR (cannot be mapped). */
  io: boolean;
}

/** One NVIDIA display function found in sysfs. */
export interface PciFunction {
  /** Full address, `dddd:bb:dd.f`, lower case. */
  bdf: string;
  /** Its sysfs directory. */
  path: string;
  /** PCI vendor id (0x10de). */
  vendor: number;
  /** PCI device id. */
  device: number;
  /**
   * PCI subsystem vendor id (sysfs `subsystem_vendor`: who built the board, e.g.
   * 0x10de for NVIDIA's own, 0x1043 ASUS); null when the file is missing,
   * unreadable or malformed.
   */
  subsystemVendor: number | null;
  /** PCI subsystem device id (sysfs `subsystem_device`: the board variant); null as above. */
  subsystemDevice: number | null;
  /** 24-bit class code (0x030000 VGA, 0x030200 3D controller). */
  class: number;
  /** Name of the bound driver (basename of the `driver` link), or null. */
  driver: string | null;
  /** The non-empty standard BARs, by index. */
  bars: PciBar[];
  /** sysfs `boot_vga` reads 1: the firmware console scans out through this card's BAR1. */
  bootVga: boolean;
  /** BAR indices whose write-combining mapping `resourceN_wc` exists (prefetchable BARs). */
  wc: number[];
}

/** Options naming the sysfs tree to look in. */
export interface SysfsOptions {
  /** Directory of PCI functions; default `/sys/bus/pci/devices`. */
  sysfsRoot?: string;
}

/** Options for {@linkcode checkDriver}. */
export interface CheckDriverOptions {
  /** Accept a function bound to a kernel GPU driver. */
  force?: boolean;
}

/**
 * Checks and normalises a PCI address: `65:00.0` → `0000:65:00.0`.
 *
 * @example
 * ```ts
 * parseBdf("65:00.0"); // "0000:65:00.0"
 * ```
 */
export function parseBdf(bdf: string): string {
  const m = typeof bdf === "string" ? BDF_RE.exec(bdf.trim()) : null;
  if (m === null || parseInt(m[3], 16) > 0x1f) {
    fail(
      "EINVAL",
      `invalid PCI address ${JSON.stringify(bdf)}: expected [domain:]bus:device.function in hex, ` +
        `device <= 0x1f, function <= 7 (e.g. 0000:65:00.0)`,
    );
  }
  const domain = (m[1] ?? "0000").toLowerCase().padStart(4, "0");
  return `${domain}:${m[2].toLowerCase()}:${m[3].toLowerCase()}.${m[4]}`;
}

function bdfKey(bdf: string): number[] {
  const m = BDF_RE.exec(bdf)!;
  return [parseInt(m[1] ?? "0", 16), parseInt(m[2], 16), parseInt(m[3], 16), parseInt(m[4], 16)];
}

function compareBdf(a: string, b: string): number {
  const ka = bdfKey(a);
  const kb = bdfKey(b);
  for (let i = 0; i < 4; i++) if (ka[i] !== kb[i]) return ka[i] - kb[i];
  return 0;
}

function sysfsError(path: string, error: unknown, write = false): never {
  if (error instanceof NovaError) throw error;
  const verb = write ? "writing" : "reading";
  if (isPermissionError(error)) {
    const flag = write ? "--allow-write" : "--allow-read";
    throw new NovaError(
      "EPERM",
      `${verb} ${path} needs Deno permission: run with ${flag} (or -A)`,
      {
        cause: error,
      },
    );
  }
  if (error instanceof Deno.errors.PermissionDenied) {
    throw new NovaError("EPERM", `permission denied ${verb} ${path}: run as root (sudo)`, {
      cause: error,
    });
  }
  const why = error instanceof Error ? error.message : String(error);
  throw new NovaError("EIO", `cannot ${write ? "write" : "read"} ${path}: ${why}`, {
    cause: error,
  });
}

/** Reads a sysfs text file; null when it does not exist. */
function readText(path: string): string | null {
  try {
    return Deno.readTextFileSync(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return null;
    return sysfsError(path, error);
  }
}

function readHex(path: string): number | null {
  const text = readText(path);
  if (text === null) return null;
  const t = text.trim();
  if (!HEX_RE.test(t)) {
    fail("EIO", `malformed ${path}: ${JSON.stringify(t)} is not 0x-prefixed hex`);
  }
  return parseInt(t, 16);
}

/**
 * A 16-bit id of an optional attribute (`subsystem_vendor`, `subsystem_device`):
 * null when the file is missing, unreadable (EACCES, EIO from the device), not
 * 0x-prefixed hex or past 0xffff — never an error.
 */
function readId16OrNull(path: string): number | null {
  try {
    const v = readHex(path);
    return v !== null && v <= 0xffff ? v : null;
  } catch {
    return null;
  }
}

function readDriver(path: string): string | null {
  try {
    const target = Deno.readLinkSync(`${path}/driver`);
    const name = target.replace(/\/+$/, "").split("/").pop();
    return name === undefined || name === "" ? null : name;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return null;
    return sysfsError(`${path}/driver`, error);
  }
}

/**
 * Parses the text of a sysfs `resource` file (lines `0x<start> 0x<end> 0x<flags>`)
 * into the non-empty standard BARs 0..5.
 *
 * @example
 * ```ts
 * parseResource("0x00000000fb000000 0x00000000fbffffff 0x0000000000040200\n");
 * // [{ index: 0, start: 0xfb000000n, size: 0x1000000, flags: 0x40200, ... }]
 * ```
 */
export function parseResource(text: string, options: { path?: string } = {}): PciBar[] {
  const where = options.path ?? "resource";
  const bars: PciBar[] = [];
  const lines = text.split("\n").filter((l) => l.trim() !== "");
  for (let index = 0; index < Math.min(lines.length, STD_BARS); index++) {
    const fields = lines[index].trim().split(/\s+/);
    if (fields.length !== 3 || !fields.every((f) => HEX_RE.test(f))) {
      fail("EIO", `malformed line ${index + 1} of ${where}: ${JSON.stringify(lines[index])}`);
    }
    const [start, end, flagsBig] = fields.map((f) => BigInt(f));
    if (end === 0n) continue;
    if (end < start) {
      fail("EIO", `BAR${index} in ${where} ends at ${hex(end)} before its start ${hex(start)}`);
    }
    const size = end - start + 1n;
    if (size > BigInt(Number.MAX_SAFE_INTEGER)) {
      fail("EOVERFLOW", `BAR${index} in ${where} is ${hex(size)} bytes, past 2^53`);
    }
    const flags = Number(flagsBig & 0xffffffffn);
    bars.push({
      index,
      start,
      size: Number(size),
      flags,
      prefetchable: (flags & IORESOURCE_PREFETCH) !== 0,
      is64bit: (flags & IORESOURCE_MEM_64) !== 0,
      io: (flags & IORESOURCE_IO) !== 0,
    });
  }
  return bars;
}

function readFunction(root: string, bdf: string): PciFunction | null {
  const path = `${root}/${bdf}`;
  if (readHex(`${path}/vendor`) !== NVIDIA_VENDOR_ID) return null;
  const cls = readHex(`${path}/class`);
  if (cls === null || cls >>> 16 !== DISPLAY_BASE_CLASS) return null;
  const device = readHex(`${path}/device`);
  if (device === null) fail("EIO", `${path} has no device file`);
  const resource = readText(`${path}/resource`);
  if (resource === null) fail("EIO", `${path} has no resource file`);
  return {
    bdf,
    path,
    vendor: NVIDIA_VENDOR_ID,
    device,
    subsystemVendor: readId16OrNull(`${path}/subsystem_vendor`),
    subsystemDevice: readId16OrNull(`${path}/subsystem_device`),
    class: cls,
    driver: readDriver(path),
    bars: parseResource(resource, { path: `${path}/resource` }),
    bootVga: readText(`${path}/boot_vga`)?.trim() === "1",
    wc: [0, 1, 2, 3, 4, 5].filter((i) => exists(`${path}/resource${i}_wc`)),
  };
}

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

function listBdfs(root: string): string[] | null {
  try {
    const names: string[] = [];
    for (const entry of Deno.readDirSync(root)) {
      if (BDF_RE.test(entry.name) && entry.name.includes(":")) names.push(entry.name.toLowerCase());
    }
    return names;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return null;
    return sysfsError(root, error);
  }
}

/**
 * Lists the NVIDIA display functions (vendor 0x10de, class 0x03xxxx) under a
 * sysfs PCI directory, sorted by address. The HDMI audio and USB functions of
 * a card are skipped. A missing directory (no PCI, /sys not mounted) gives [].
 *
 * @example
 * ```ts
 * import { hex } from "./errors.ts";
 * for (const g of listGpus()) console.log(g.bdf, hex(g.device), g.driver ?? "no driver");
 * ```
 */
export function listGpus(options: SysfsOptions = {}): PciFunction[] {
  return scanGpus(options).gpus;
}

/** What {@linkcode scanGpus} found: the GPUs, and the entries it could not read (with why). */
export interface GpuScan {
  /** The readable NVIDIA display functions, by address. */
  gpus: PciFunction[];
  /** Entries that look like NVIDIA displays but could not be read; never fatal to the rest. */
  skipped: { bdf: string; reason: string }[];
}

/**
 * {@linkcode listGpus}, also saying which entries were skipped and why: one
 * broken entry under the sysfs root (a half-removed device, a bad `resource`
 * file) must not hide the healthy card next to it.
 */
export function scanGpus(options: SysfsOptions = {}): GpuScan {
  checkOptions(options, { sysfsRoot: "string" }, "listGpus options");
  const root = (options.sysfsRoot ?? defaultRoot()).replace(/\/+$/, "");
  const names = listBdfs(root) ?? [];
  const gpus: PciFunction[] = [];
  const skipped: GpuScan["skipped"] = [];
  for (const bdf of names) {
    try {
      const fn = readFunction(root, bdf);
      if (fn !== null) gpus.push(fn);
    } catch (e) {
      skipped.push({
        bdf,
        reason: e instanceof Error ? e.message.replace(/^E[A-Z]+: /, "") : String(e),
      });
    }
  }
  return { gpus: gpus.sort((a, b) => compareBdf(a.bdf, b.bdf)), skipped };
}

/**
 * The message to show when {@linkcode listGpus} finds nothing.
 *
 * @example
 * ```ts
 * if (listGpus().length === 0) console.log(noGpusMessage());
 * ```
 */
export function noGpusMessage(options: SysfsOptions = {}): string {
  const root = options.sysfsRoot ?? defaultRoot();
  let missing = false;
  try {
    missing = listBdfs(root.replace(/\/+$/, "")) === null;
  } catch {
    // Unreadable root: the plain message still applies.
  }
  return `no NVIDIA GPUs found under ${root}${
    missing ? " (the directory does not exist: not Linux, or /sys not mounted)" : ""
  }; use --device sim (or sim:ga102, sim:gh100) for the simulated GPU`;
}

/**
 * Finds the NVIDIA GPU at a PCI address (`0000:65:00.0` or short `65:00.0`).
 *
 * @example
 * ```ts
 * const fn = findGpu("65:00.0");
 * fn.bars.find((b) => b.index === 1)?.size; // BAR1 aperture bytes
 * ```
 */
export function findGpu(bdf: string, options: SysfsOptions = {}): PciFunction {
  const want = parseBdf(bdf);
  const root = (options.sysfsRoot ?? defaultRoot()).replace(/\/+$/, "");
  const scan = scanGpus({ sysfsRoot: root });
  const gpus = scan.gpus;
  const hit = gpus.find((g) => g.bdf === want);
  if (hit !== undefined) return hit;
  const broken = scan.skipped.find((s) => s.bdf === want);
  if (broken !== undefined) fail("ENODEV", `${want} cannot be read: ${broken.reason}`);
  const found = gpus.length === 0 ? "none" : gpus.map((g) => g.bdf).join(", ");
  // Say what is there instead, if the address exists but is not a GPU.
  const vendor = readHex(`${root}/${want}/vendor`);
  const cls = vendor === null ? null : readHex(`${root}/${want}/class`);
  const what = vendor === null
    ? ""
    : `: that function is vendor ${hex(vendor, 4)} class ${
      hex(cls ?? 0, 6)
    }, not an NVIDIA display`;
  return fail(
    "ENODEV",
    `no NVIDIA GPU at ${want}${what} (found: ${found})`,
    gpus.length === 0 ? noGpusMessage({ sysfsRoot: root }) : undefined,
  );
}

/**
 * Refuses (EBUSY) a function that a kernel GPU driver is bound to, unless
 * `force` is set: two owners of one card corrupt each other's state.
 *
 * @example
 * ```ts
 * checkDriver(findGpu("65:00.0"), { force: Deno.args.includes("--force") });
 * ```
 */
export function checkDriver(fn: PciFunction, options: CheckDriverOptions = {}): void {
  if (fn.driver === null || options.force || !KERNEL_DRIVER_KEYS.has(driverKey(fn.driver))) return;
  fail(
    "EBUSY",
    `${fn.bdf} is bound to the ${fn.driver} kernel driver; unbind it first: echo ${fn.bdf} > ` +
      `${fn.path}/driver/unbind (or pass --force to open it anyway, read-only recommended)`,
  );
}

/**
 * Turns on memory decoding through the sysfs `enable` file (needs root). An
 * unbound card may have it off, and then every BAR read returns all ones.
 * Returns true if the device had to be enabled.
 *
 * @example
 * ```ts
 * enableDevice(findGpu("65:00.0"));
 * ```
 */
export function enableDevice(fn: PciFunction): boolean {
  const path = `${fn.path}/enable`;
  const text = readText(path);
  if (text === null) fail("ENODEV", `${fn.bdf} has no enable file (${path})`);
  if (text.trim() !== "0") return false;
  try {
    Deno.writeTextFileSync(path, "1\n");
  } catch (error) {
    sysfsError(path, error, true);
  }
  return true;
}
