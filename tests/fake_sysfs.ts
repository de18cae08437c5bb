/**
 * A fake `/sys/bus/pci` tree of ordinary files, so the real sysfs parsing and
 * the real open/mmap path run in CI (tinygrad's mock PCI device does the same).
 *
 * Layout under `dir`: `bus/pci/devices/<bdf>/{vendor,device,class,
 * subsystem_vendor,subsystem_device,resource,resource<N>,enable}` and `bus/pci/drivers/<name>/` with a relative `driver`
 * symlink, as Linux has it.
 *
 * @module
 */

/** One BAR line of the fake `resource` file. */
export interface FakeBar {
  /** BAR index 0..5. */
  index: number;
  /** Physical start. */
  start: bigint;
  /** Size in bytes (the `resource` file says this). */
  size: bigint;
  /** Raw IORESOURCE_* flags. */
  flags: number;
  /** Bytes of the `resourceN` file; default min(size, 256 KiB); 0 for no file. */
  fileSize?: number;
}

/** One fake PCI function. */
export interface FakeFunction {
  /** `dddd:bb:dd.f`. */
  bdf: string;
  /** Vendor id. */
  vendor: number;
  /** Device id. */
  device: number;
  /** 24-bit class code. */
  class: number;
  /**
   * `subsystem_vendor` / `subsystem_device` (the board maker and variant). Default: present,
   * equal to `vendor` / `device` (a reference board); null: no files (an old kernel, a
   * half-removed device); a string: written as is into both (a malformed entry).
   */
  subsystem?: { vendor: number; device: number } | string | null;
  /** Driver to bind (a `driver` symlink), if any. */
  driver?: string;
  /** Standard BARs. */
  bars: FakeBar[];
  /** ROM line (index 6) to add to `resource`: [start, size]. */
  rom?: [bigint, bigint];
  /** Content of `boot_vga` (Linux writes it for VGA-class functions); absent when undefined. */
  bootVga?: boolean;
  /**
   * Make `resourceN_wc` for prefetchable memory BARs, as Linux does (default
   * true): a symlink to `resourceN`, since on a card both map the same BAR.
   */
  wc?: boolean;
  /** Content of the `config` file (PCI config space); no file when undefined. */
  config?: Uint8Array;
  /**
   * `current_link_speed` and `current_link_width` as Linux writes them
   * (`"16.0 GT/s PCIe"`, `"16"`); no files when undefined.
   */
  link?: { speed: string; width: string };
}

/** Flags as Linux prints them for a 32-bit non-prefetchable BAR0 (MEM | SIZEALIGN). */
export const FLAGS_MEM32 = 0x40200;
/** 64-bit prefetchable memory BAR (MEM_64 | SIZEALIGN | PREFETCH | MEM | PCI bits 0xc). */
export const FLAGS_MEM64_PREF = 0x14220c;
/** I/O-port BAR (IO | SIZEALIGN | PCI bit 0). */
export const FLAGS_IO = 0x40101;

const LINES = 13; // 6 BARs, ROM, 6 SR-IOV BARs: what Linux prints for an endpoint

function hexLine(start: bigint, end: bigint, flags: bigint): string {
  const h = (v: bigint) => `0x${v.toString(16).padStart(16, "0")}`;
  return `${h(start)} ${h(end)} ${h(flags)}`;
}

/** Text of a sysfs `resource` file for these BARs. */
export function resourceText(bars: FakeBar[], rom?: [bigint, bigint]): string {
  const lines = Array.from({ length: LINES }, () => hexLine(0n, 0n, 0n));
  for (const b of bars) lines[b.index] = hexLine(b.start, b.start + b.size - 1n, BigInt(b.flags));
  if (rom) lines[6] = hexLine(rom[0], rom[0] + rom[1] - 1n, 0x46200n);
  return lines.join("\n") + "\n";
}

/**
 * Builds the tree and returns the devices directory (the `sysfsRoot`).
 *
 * @example
 * ```ts
 * import { listGpus } from "../hw/pci.ts";
 * const ga102: FakeFunction = {
 *   bdf: "0000:65:00.0",
 *   vendor: 0x10de,
 *   device: 0x2204,
 *   class: 0x030000,
 *   bars: [{ index: 0, start: 0xfb000000n, size: 0x1000000n, flags: FLAGS_MEM32 }],
 * };
 * const root = makeFakeSysfs(await Deno.makeTempDir(), [ga102]);
 * listGpus({ sysfsRoot: root }).length; // 1
 * ```
 */
export function makeFakeSysfs(dir: string, functions: FakeFunction[]): string {
  const root = `${dir}/bus/pci/devices`;
  Deno.mkdirSync(root, { recursive: true });
  for (const f of functions) {
    const path = `${root}/${f.bdf}`;
    Deno.mkdirSync(path);
    Deno.writeTextFileSync(`${path}/vendor`, `0x${f.vendor.toString(16).padStart(4, "0")}\n`);
    Deno.writeTextFileSync(`${path}/device`, `0x${f.device.toString(16).padStart(4, "0")}\n`);
    Deno.writeTextFileSync(`${path}/class`, `0x${f.class.toString(16).padStart(6, "0")}\n`);
    const sub = f.subsystem === undefined ? { vendor: f.vendor, device: f.device } : f.subsystem;
    if (sub !== null) {
      const id = (v: number) => `0x${v.toString(16).padStart(4, "0")}\n`;
      Deno.writeTextFileSync(
        `${path}/subsystem_vendor`,
        typeof sub === "string" ? sub : id(sub.vendor),
      );
      Deno.writeTextFileSync(
        `${path}/subsystem_device`,
        typeof sub === "string" ? sub : id(sub.device),
      );
    }
    Deno.writeTextFileSync(`${path}/enable`, "0\n");
    Deno.writeTextFileSync(`${path}/resource`, resourceText(f.bars, f.rom));
    for (const b of f.bars) {
      const size = b.fileSize ?? Number(b.size < 0x40000n ? b.size : 0x40000n);
      if (size === 0) continue;
      const file = `${path}/resource${b.index}`;
      Deno.writeFileSync(file, new Uint8Array(0));
      Deno.truncateSync(file, size); // sparse, like ftruncate
      if ((f.wc ?? true) && (b.flags & 0x2000) !== 0) {
        Deno.symlinkSync(`resource${b.index}`, `${file}_wc`); // IORESOURCE_PREFETCH
      }
    }
    if (f.bootVga !== undefined) {
      Deno.writeTextFileSync(`${path}/boot_vga`, f.bootVga ? "1\n" : "0\n");
    }
    if (f.config !== undefined) Deno.writeFileSync(`${path}/config`, f.config);
    if (f.link !== undefined) {
      Deno.writeTextFileSync(`${path}/current_link_speed`, `${f.link.speed}\n`);
      Deno.writeTextFileSync(`${path}/current_link_width`, `${f.link.width}\n`);
    }
    if (f.driver !== undefined) {
      Deno.mkdirSync(`${dir}/bus/pci/drivers/${f.driver}`, { recursive: true });
      Deno.symlinkSync(`../../drivers/${f.driver}`, `${path}/driver`);
    }
  }
  return root;
}

/**
 * A GA102 (RTX 3090-like, subsystem 10de:147d: an NVIDIA-built board) with 16 MiB
 * BAR0, 32 GiB resizable BAR1, BAR3, I/O BAR5.
 */
export function ga102(bdf: string, driver?: string): FakeFunction {
  return {
    bdf,
    vendor: 0x10de,
    device: 0x2204,
    class: 0x030000,
    subsystem: { vendor: 0x10de, device: 0x147d },
    driver,
    bars: [
      { index: 0, start: 0xfb000000n, size: 0x1000000n, flags: FLAGS_MEM32, fileSize: 0x60000 },
      {
        index: 1,
        start: 0x7000000000n,
        size: 0x800000000n,
        flags: FLAGS_MEM64_PREF,
        fileSize: 0x50000,
      },
      { index: 3, start: 0x7800000000n, size: 0x2000000n, flags: FLAGS_MEM64_PREF },
      { index: 5, start: 0xf000n, size: 0x80n, flags: FLAGS_IO, fileSize: 0 },
    ],
    rom: [0xfc000000n, 0x80000n],
  };
}

/**
 * Writes what a booted GA102's BAR0 holds into a fake `resource0`: BOOT_0,
 * BOOT_42, the VRAM size and GFW boot done (the scratch's privilege mask
 * open, progress 0xFF). Every other register reads 0 (BAR1 physical).
 */
export function bootedGa102Bar0(
  bar0: string,
  write: (file: string, offset: number, value: number) => void,
  options: { fbSizeMiB?: number } = {},
): void {
  write(bar0, 0x0, 0x172000a1); // NV_PMC_BOOT_0
  write(bar0, 0xa00, 0x172a1000); // NV_PMC_BOOT_42
  write(bar0, 0x1183a4, options.fbSizeMiB ?? 24 * 1024); // NV_USABLE_FB_SIZE_IN_MB
  write(bar0, 0x118128, 1); // GFW: READ_PROTECTION_LEVEL0 enabled
  write(bar0, 0x118234, 0xff); // GFW_BOOT progress COMPLETED
  write(bar0, 0x100b20, 1); // the post-reset memory clear is done (gpu-admin-tools)
}

/** One extended capability for {@linkcode fakeConfigSpace}: header at `offset`, then `body` dwords. */
export interface FakeExtCap {
  /** Byte offset of the header (0x100 for the first). */
  offset: number;
  /** Capability id. */
  id: number;
  /** Version (default 1). */
  version?: number;
  /** Next pointer (0 ends the list). */
  next: number;
  /** Dwords after the header (a DVSEC: header 1, header 2, ...). */
  body?: number[];
}

/**
 * A 4 KiB PCI config-space image: vendor/device at 0, and the given extended
 * capabilities (little-endian dwords, as sysfs `config` reads).
 *
 * @example
 * ```ts
 * const cfg = fakeConfigSpace(0x10de, 0x2b85, [
 *   { offset: 0x100, id: 0x23, next: 0, body: [0x10de, 1 << 20] }, // NVIDIA DVSEC, firewall up
 * ]);
 * cfg.length; // 4096
 * ```
 */
export function fakeConfigSpace(vendor: number, device: number, caps: FakeExtCap[]): Uint8Array {
  const bytes = new Uint8Array(4096);
  const v = new DataView(bytes.buffer);
  v.setUint16(0, vendor, true);
  v.setUint16(2, device, true);
  for (const c of caps) {
    v.setUint32(c.offset, ((c.next << 20) | ((c.version ?? 1) << 16) | c.id) >>> 0, true);
    (c.body ?? []).forEach((w, i) => v.setUint32(c.offset + 4 + 4 * i, w >>> 0, true));
  }
  return bytes;
}
