/**
 * PCI configuration space through sysfs (`<function>/config`), for what a
 * Blackwell card needs before its first BAR0 access: the BAR firewall wait
 * that NVIDIA's gpu-admin-tools (GAT) does (facts §14.2 item 3).
 *
 * - The extended capability list starts at 0x100; each header holds the
 *   capability id (15:0), version (19:16) and the next offset (31:20).
 * - A Designated Vendor-Specific Extended Capability (DVSEC, id 0x23) holds
 *   the vendor in DVSEC header 1 (+0x4, bits 15:0) and the DVSEC id in DVSEC
 *   header 2 (+0x8, bits 15:0). NVIDIA's is vendor 0x10DE, id 0.
 * - On Blackwell, bit 20 of the dword at NVIDIA's DVSEC + 0x8 reads 1 while
 *   the BAR firewall is up; BAR0 is not to be touched until it reads 0.
 *
 * Reading config space has no effect on the card; nothing here writes it.
 * Unprivileged readers see only the first 64 bytes of `config` (and a card
 * behind a bridge without extended config space shows 256): then there is
 * no capability list to walk, and the wait falls back to a fixed delay, as
 * GAT does when the DVSEC is missing.
 *
 * @module
 */

import { describe, fail, hex, NovaError } from "./errors.ts";
import type { PciFunction } from "./pci.ts";
import { checkTimeout } from "./poll.ts";
import { checkOptions } from "./validate.ts";

/** Where the extended capability list starts (PCI_CFG_SPACE_SIZE). */
export const PCI_EXT_CAP_START = 0x100;
/** The size of extended config space (PCI_CFG_SPACE_EXP_SIZE). */
export const PCI_EXT_CFG_SIZE = 0x1000;
/** Extended capability id of a DVSEC (PCI_EXT_CAP_ID_DVSEC). */
export const PCI_EXT_CAP_ID_DVSEC = 0x23;
/** NVIDIA's PCI vendor id, as the DVSEC vendor. */
export const NVIDIA_DVSEC_VENDOR = 0x10de;
/** The DVSEC id of NVIDIA's DVSEC that carries the BAR firewall status. */
export const NVIDIA_DVSEC_ID = 0;
/** Byte offset, inside NVIDIA's DVSEC, of the dword whose bit 20 is the BAR firewall (GAT). */
export const BAR_FIREWALL_DVSEC_OFFSET = 0x8;
/** The BAR firewall bit in that dword: 1 while BAR0 is firewalled. */
export const BAR_FIREWALL_BIT = 20;

/** One extended capability found in config space. */
export interface ExtendedCapability {
  /** Byte offset of its header. */
  offset: number;
  /** Capability id (header bits 15:0). */
  id: number;
  /** Capability version (header bits 19:16). */
  version: number;
  /** Next pointer as read (header bits 31:20); 0 ends the list. */
  next: number;
}

/** Little-endian dword of `config` at `offset`; null when it does not fit. */
function dword(config: Uint8Array, offset: number): number | null {
  if (offset < 0 || offset + 4 > config.length) return null;
  return (config[offset] | (config[offset + 1] << 8) | (config[offset + 2] << 16) |
    (config[offset + 3] << 24)) >>> 0;
}

function checkConfig(config: unknown, what: string): Uint8Array {
  if (!(config instanceof Uint8Array)) {
    fail("EINVAL", `${what} must be a Uint8Array of config space bytes, not ${describe(config)}`);
  }
  return config;
}

/**
 * Walks the extended capability list of a config-space image. Pure and
 * bounded: it stops at a next pointer of 0, at one below 0x100, past the end
 * of `config`, at an offset already seen (a loop), at a header of 0 or all
 * ones (no list; a function that fell off the bus), and after at most
 * (4096 − 256) / 4 entries. A 256-byte (or shorter) image has no list.
 *
 * @example
 * ```ts
 * const cfg = new Uint8Array(4096);
 * new DataView(cfg.buffer).setUint32(0x100, 0x00010023, true); // DVSEC v1, last
 * listExtendedCapabilities(cfg); // [{ offset: 0x100, id: 0x23, version: 1, next: 0 }]
 * ```
 */
export function listExtendedCapabilities(config: Uint8Array): ExtendedCapability[] {
  checkConfig(config, "listExtendedCapabilities config");
  const out: ExtendedCapability[] = [];
  const seen = new Set<number>();
  const maxEntries = (PCI_EXT_CFG_SIZE - PCI_EXT_CAP_START) / 4;
  let offset = PCI_EXT_CAP_START;
  while (out.length < maxEntries) {
    if (offset < PCI_EXT_CAP_START || offset % 4 !== 0 || seen.has(offset)) break;
    const header = dword(config, offset);
    if (header === null || header === 0 || header === 0xffffffff) break;
    seen.add(offset);
    const next = header >>> 20; // 12 bits
    out.push({ offset, id: header & 0xffff, version: (header >>> 16) & 0xf, next });
    if (next === 0) break;
    offset = next & 0xffc; // the low two bits are reserved, as Linux and GAT mask them
  }
  return out;
}

/**
 * The offset of NVIDIA's DVSEC (vendor 0x10DE, DVSEC id 0) in a config-space
 * image, or null when there is none (or the image is 256 bytes or less, as
 * an unprivileged read of sysfs `config` gives). Pure; bounded on garbage
 * and loops (see {@linkcode listExtendedCapabilities}).
 *
 * @example
 * ```ts
 * const cfg = new Uint8Array(4096);
 * const v = new DataView(cfg.buffer);
 * v.setUint32(0x100, 0x00010023, true); // DVSEC, version 1, next 0
 * v.setUint32(0x104, 0x10de, true); // DVSEC header 1: vendor
 * v.setUint32(0x108, 0x0, true); // DVSEC header 2: id 0
 * findNvidiaDvsec(cfg); // 0x100
 * ```
 */
export function findNvidiaDvsec(config: Uint8Array): number | null {
  for (const cap of listExtendedCapabilities(config)) {
    if (cap.id !== PCI_EXT_CAP_ID_DVSEC) continue;
    const h1 = dword(config, cap.offset + 4);
    const h2 = dword(config, cap.offset + BAR_FIREWALL_DVSEC_OFFSET);
    if (h1 === null || h2 === null) continue;
    if ((h1 & 0xffff) === NVIDIA_DVSEC_VENDOR && (h2 & 0xffff) === NVIDIA_DVSEC_ID) {
      return cap.offset;
    }
  }
  return null;
}

/** What the config-space readers need of a PCI function. */
export type ConfigFunction = Pick<PciFunction, "path" | "bdf">;

function configPath(fn: ConfigFunction): string {
  if (fn === null || typeof fn !== "object" || typeof fn.path !== "string") {
    fail("EINVAL", `expected a PCI function with a sysfs path, not ${describe(fn)}`);
  }
  return `${fn.path}/config`;
}

function configError(e: unknown, path: string): never {
  if (e instanceof NovaError) throw e;
  if (e instanceof Deno.errors.NotFound) {
    fail("ENOENT", `${path} does not exist`, "is this a sysfs PCI function directory?");
  }
  if (e instanceof Deno.errors.PermissionDenied) {
    fail("EACCES", `cannot read ${path}: permission denied`, "run as root");
  }
  fail("EIO", `cannot read ${path}: ${e instanceof Error ? e.message : String(e)}`);
}

/**
 * Reads the function's config space from sysfs (`<path>/config`): 4096 bytes
 * for root on a PCIe function, 256 without extended config space, 64 for an
 * unprivileged reader. Reading has no effect on the card.
 */
export function readPciConfig(fn: ConfigFunction): Uint8Array {
  const path = configPath(fn);
  try {
    return Deno.readFileSync(path);
  } catch (e) {
    return configError(e, path);
  }
}

/** Reads one dword of config space at `offset` (a fresh read of the file each call). */
function readConfigDword(fn: ConfigFunction, offset: number): number {
  const path = configPath(fn);
  let file: Deno.FsFile | null = null;
  try {
    file = Deno.openSync(path, { read: true });
    file.seekSync(offset, Deno.SeekMode.Start);
    const buf = new Uint8Array(4);
    let got = 0;
    while (got < 4) {
      const n = file.readSync(buf.subarray(got));
      if (n === null || n === 0) break;
      got += n;
    }
    if (got < 4) {
      fail("EIO", `${path}: short read of the dword at ${hex(offset)} (${got} of 4 bytes)`);
    }
    return dword(buf, 0)!;
  } catch (e) {
    return configError(e, path);
  } finally {
    file?.close();
  }
}

/** One poll of the BAR firewall bit, as {@linkcode BarFirewallOptions.onPoll} sees it. */
export interface BarFirewallPoll {
  /** 1 for the first read. */
  poll: number;
  /** The dword read at DVSEC + 0x8. */
  value: number;
  /** The config-space offset that was read (DVSEC + 0x8). */
  offset: number;
}

/** Options for {@linkcode waitBarFirewall}. */
export interface BarFirewallOptions {
  /** Give up (ETIMEDOUT) after this many ms of bit 20 set; default 5000 (GAT's 5 s). */
  timeoutMs?: number;
  /** Without the DVSEC, wait this long instead and warn; default 3000 (GAT's 3 s). */
  noDvsecDelayMs?: number;
  /** Sleep between polls, ms (0..1000); default 5. */
  pollIntervalMs?: number;
  /**
   * Called after every read of the firewall dword, before it is judged (a test
   * rewrites the fake `config` file here to lift the firewall).
   */
  onPoll?: (poll: BarFirewallPoll) => void;
}

/** What {@linkcode waitBarFirewall} saw. */
export interface BarFirewallResult {
  /** Offset of NVIDIA's DVSEC, or null when config space showed none. */
  dvsecOffset: number | null;
  /** Reads of the firewall dword (0 without a DVSEC). */
  polls: number;
  /** Milliseconds spent (polling, or the fallback delay). */
  waitedMs: number;
  /** The last dword read at DVSEC + 0x8 (bit 20 clear), or null without a DVSEC. */
  value: number | null;
  /** Why the wait was a blind delay (no DVSEC, or config space too short), else null. */
  warning: string | null;
}

/** Sleeps the thread (the open path is synchronous; polls must not spin). */
function sleepSync(ms: number): void {
  if (ms > 0) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/**
 * Waits until a Blackwell card's BAR firewall is down, before the first BAR0
 * access, as GAT's `wait_for_bar_firewall` does: find NVIDIA's DVSEC (vendor
 * 0x10DE, id 0) in config space and poll the dword at DVSEC + 0x8, re-reading
 * the sysfs `config` file each time, until bit 20 reads 0; ETIMEDOUT naming
 * the value after `timeoutMs`. Without the DVSEC (or when config space shows
 * 256 bytes or less, e.g. an unprivileged read), it sleeps `noDvsecDelayMs`
 * and returns a warning. (GAT sleeps there only when BOOT_0 reads all ones;
 * this wait does not touch BAR0 at all, so it always sleeps.) Synchronous, so
 * the synchronous open path can call it. Only reads config space.
 *
 * @example
 * ```ts ignore
 * import { findGpu } from "./pci.ts";
 * const fn = findGpu("0000:65:00.0");
 * const r = waitBarFirewall(fn); // { dvsecOffset: 0x..., polls: 1, waitedMs: 0, ... }
 * if (r.warning) console.warn(r.warning);
 * ```
 */
export function waitBarFirewall(
  fn: ConfigFunction,
  options: BarFirewallOptions = {},
): BarFirewallResult {
  checkOptions(options, {
    timeoutMs: "number",
    noDvsecDelayMs: "number",
    pollIntervalMs: "number",
    onPoll: "function",
  }, "waitBarFirewall options");
  const timeoutMs = checkTimeout(options.timeoutMs ?? 5000, "BAR firewall timeout");
  const delayMs = checkTimeout(options.noDvsecDelayMs ?? 3000, "BAR firewall no-DVSEC delay");
  const interval = options.pollIntervalMs ?? 5;
  if (!Number.isFinite(interval) || interval < 0 || interval > 1000) {
    fail("EINVAL", `BAR firewall poll interval ${String(interval)} is not in 0..1000 ms`);
  }
  const path = configPath(fn);
  const config = readPciConfig(fn);
  const start = performance.now();
  const dvsec = findNvidiaDvsec(config);
  if (dvsec === null) {
    const why = config.length <= PCI_EXT_CAP_START
      ? `${path} shows only ${config.length} bytes (no extended config space: an unprivileged ` +
        "read, or no extended config access)"
      : `${path} has no NVIDIA DVSEC (vendor 0x10de, id 0)`;
    sleepSync(delayMs);
    return {
      dvsecOffset: null,
      polls: 0,
      waitedMs: Math.round(performance.now() - start),
      value: null,
      warning: `${why}: cannot see the Blackwell BAR firewall; waited ${delayMs} ms instead`,
    };
  }
  const offset = dvsec + BAR_FIREWALL_DVSEC_OFFSET;
  const bit = 1 << BAR_FIREWALL_BIT;
  let polls = 0;
  for (;;) {
    // The first read uses the image just read; later ones re-read the file.
    const value = polls === 0 ? dword(config, offset)! : readConfigDword(fn, offset);
    polls++;
    options.onPoll?.({ poll: polls, value, offset });
    const waited = performance.now() - start;
    if ((value & bit) === 0) {
      return { dvsecOffset: dvsec, polls, waitedMs: Math.round(waited), value, warning: null };
    }
    if (waited > timeoutMs) {
      fail(
        "ETIMEDOUT",
        `BAR firewall of ${fn.bdf ?? path} still up after ${timeoutMs} ms: config ${
          hex(offset)
        } (NVIDIA DVSEC ${hex(dvsec)} + 0x8) reads ${
          hex(value, 8)
        } (bit 20 set) after ${polls} polls`,
        "the card's firmware has not opened BAR0: wait and retry, or reset the function",
      );
    }
    sleepSync(interval);
  }
}

/**
 * PCI device-id ranges of Blackwell chips, from NVIDIA gpu-admin-tools
 * `gpu/devid_chips.py` (`GPU_DEVID_CHIPS`, release v2025.10.20), which GAT
 * uses to recognise Blackwell before any BAR0 access. Inclusive bounds.
 * Spot-checked against pci.ids (0x2B85 GB202 RTX 5090, 0x2C02 GB203 RTX 5080,
 * 0x2F04 GB205 RTX 5070, 0x2D04 GB206 RTX 5060 Ti).
 */
export const BLACKWELL_DEVICE_IDS: readonly { first: number; last: number; chip: string }[] = [
  { first: 0x2900, last: 0x297f, chip: "GB100" },
  { first: 0x2980, last: 0x29ff, chip: "GB102" },
  { first: 0x2b80, last: 0x2bff, chip: "GB202" },
  { first: 0x2c00, last: 0x2c7f, chip: "GB203" },
  { first: 0x2d00, last: 0x2d7f, chip: "GB206" },
  { first: 0x2d80, last: 0x2dff, chip: "GB207" },
  { first: 0x2f00, last: 0x2f7f, chip: "GB205" },
  { first: 0x3180, last: 0x31ff, chip: "GB110" },
  { first: 0x3200, last: 0x327f, chip: "GB112" },
];

function checkDeviceId(deviceId: unknown): number {
  if (
    typeof deviceId !== "number" || !Number.isInteger(deviceId) || deviceId < 0 || deviceId > 0xffff
  ) {
    fail("EINVAL", `PCI device id ${describe(deviceId)} is not an integer in 0..0xffff`);
  }
  return deviceId;
}

/**
 * The Blackwell chip a PCI device id belongs to (`"GB202"`), or null when it
 * is not one of {@linkcode BLACKWELL_DEVICE_IDS}.
 */
export function blackwellChipOfDeviceId(deviceId: number): string | null {
  const id = checkDeviceId(deviceId);
  return BLACKWELL_DEVICE_IDS.find((r) => id >= r.first && id <= r.last)?.chip ?? null;
}

/**
 * True when an NVIDIA PCI device id is a Blackwell chip (GB100/GB102
 * data-center 0x29xx, GB110/GB112 0x318x–0x327x, GB20x consumer 0x2B8x–0x2Fxx),
 * decided before any BAR0 access, as GAT does. Source: NVIDIA gpu-admin-tools
 * `gpu/devid_chips.py` (see {@linkcode BLACKWELL_DEVICE_IDS}).
 *
 * @example
 * ```ts
 * isBlackwellDeviceId(0x2b85); // true (RTX 5090, GB202)
 * isBlackwellDeviceId(0x2330); // false (H100 SXM, GH100)
 * ```
 */
export function isBlackwellDeviceId(deviceId: number): boolean {
  return blackwellChipOfDeviceId(deviceId) !== null;
}
