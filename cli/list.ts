/**
 * `deno task list`: the NVIDIA GPUs on this machine: PCI address,
 * vendor:device and subsystem ids (the board variant), chip (read from BOOT_0/BOOT_42 through a read-only BAR0 mapping when
 * permitted; `?` and the reason otherwise), bound driver and BAR sizes.
 *
 * @module
 */

import { decodeChip } from "../hw/chip.ts";
import { hex, NovaError } from "../hw/errors.ts";
import { openBar } from "../hw/mapped.ts";
import { Mmio } from "../hw/mmio.ts";
import { DEFAULT_SYSFS_ROOT, noGpusMessage, type PciFunction, scanGpus } from "../hw/pci.ts";
import { NV_PMC_BOOT_0, NV_PMC_BOOT_42 } from "../hw/regs.ts";
import {
  DEFAULT_SIM_PROFILE,
  DEFAULT_SIM_STATE,
  SIM_CONFLICT_MMU,
  SIM_CONFLICTS,
  SIM_PROFILES,
  SIM_STATES,
} from "../hw/sim/profiles.ts";
import { formatTable, reportError } from "./common.ts";
import { parseCommand } from "./command.ts";
import { formatSize } from "./globals.ts";

const HELP = `deno task list [options]

Lists the NVIDIA display functions on this machine: PCI address,
vendor:device, subsystem vendor:device (who built the board, which variant;
"?" when sysfs does not say), chip (BOOT_0/BOOT_42 read through a read-only BAR0 mapping; needs root, shows
"?" and why otherwise), bound kernel driver and BAR sizes. Reading the two
boot registers is harmless even with a driver bound. Below them: the
simulated GPUs (every --device sim:PROFILE), their card states and the
knobs for the facts the sources disagree on.

Options:
      --sysfs-root DIR  PCI devices directory (default ${DEFAULT_SYSFS_ROOT})
      --json            print JSON instead of a table (the cards only)
  -h, --help            this text`;

/** One row of the listing. */
export interface GpuRow {
  /** PCI address. */
  bdf: string;
  /** PCI vendor id (0x10de; 0 for a skipped entry). */
  vendor: number;
  /** PCI device id. */
  device: number;
  /** PCI subsystem vendor id (the board maker), or null when sysfs does not say. */
  subsystemVendor: number | null;
  /** PCI subsystem device id (the board variant), or null when sysfs does not say. */
  subsystemDevice: number | null;
  /** Chip name and architecture (`GA102 (Ampere)`), or null when it could not be read. */
  chip: string | null;
  /** Why the chip could not be read. */
  chipError?: string;
  /** Why the whole entry was skipped (its sysfs files could not be read). */
  skipped?: string;
  /** Bound driver, or null. */
  driver: string | null;
  /** BAR sizes by index. */
  bars: { index: number; size: number; prefetchable: boolean; is64bit: boolean }[];
}

/** Reads BOOT_0/BOOT_42 read-only; the message of what went wrong otherwise. */
function readChip(fn: PciFunction): { chip: string } | { error: string } {
  let bar: Mmio | null = null;
  try {
    bar = new Mmio("bar0", openBar(fn, 0, { readOnly: true, force: true, length: 0x1000 }), {
      readOnly: true,
    });
    const c = decodeChip(bar.read32(NV_PMC_BOOT_0), bar.read32(NV_PMC_BOOT_42));
    return { chip: `${c.name} (${c.architecture})` };
  } catch (e) {
    if (e instanceof NovaError) return { error: e.hint ? `${e.message}; ${e.hint}` : e.message };
    return { error: e instanceof Error ? `${e.name}: ${e.message}` : String(e) };
  } finally {
    bar?.close();
  }
}

/**
 * The rows `deno task list` prints.
 *
 * @example
 * ```ts
 * for (const r of listRows()) console.log(r.bdf, r.chip ?? "?");
 * ```
 */
export function listRows(options: { sysfsRoot?: string } = {}): GpuRow[] {
  const scan = scanGpus(options);
  const rows: GpuRow[] = scan.skipped.map((s) => ({
    bdf: s.bdf,
    vendor: 0,
    device: 0,
    subsystemVendor: null,
    subsystemDevice: null,
    chip: null,
    skipped: s.reason,
    driver: null,
    bars: [],
  }));
  return [
    ...rows,
    ...scan.gpus.map((fn) => {
      const chip = readChip(fn);
      return {
        bdf: fn.bdf,
        vendor: fn.vendor,
        device: fn.device,
        subsystemVendor: fn.subsystemVendor ?? null,
        subsystemDevice: fn.subsystemDevice ?? null,
        chip: "chip" in chip ? chip.chip : null,
        ...("error" in chip ? { chipError: chip.error } : {}),
        driver: fn.driver,
        bars: fn.bars.filter((b) => !b.io).map((b) => ({
          index: b.index,
          size: b.size,
          prefetchable: b.prefetchable,
          is64bit: b.is64bit,
        })),
      };
    }),
  ].sort((a, b) => a.bdf.localeCompare(b.bdf));
}

/** `vvvv:dddd` as lspci prints ids (lower-case hex, no 0x); `?` for an unknown half. */
function idPair(vendor: number | null, device: number | null): string {
  const h = (v: number | null) => v === null ? "?" : hex(v, 4).slice(2);
  return vendor === null && device === null ? "?" : `${h(vendor)}:${h(device)}`;
}

/** Formats the rows as a table (with a footnote per unreadable chip). */
export function formatRows(rows: GpuRow[]): string {
  const lines = formatTable(
    ["PCI address", "vendor:device", "subsystem", "chip", "driver", "BARs"],
    rows.filter((r) => r.skipped === undefined).map((r) => [
      r.bdf,
      idPair(r.vendor, r.device),
      idPair(r.subsystemVendor, r.subsystemDevice),
      r.chip ?? "?",
      r.driver ?? "(none)",
      r.bars.map((b) => `BAR${b.index} ${formatSize(b.size)}`).join(", "),
    ]),
  );
  for (const r of rows) {
    if (r.chipError !== undefined) lines.push(`${r.bdf}: chip ?: ${r.chipError}`);
    if (r.skipped !== undefined) lines.push(`${r.bdf}: skipped: ${r.skipped}`);
  }
  return lines.join("\n");
}

/**
 * The simulated GPUs beside the real ones: a row per profile (the spec to
 * type, chip, VRAM, BAR1, how the CPU flushes the FB, what it has), then
 * the card states and the CONFLICT knobs with their candidates.
 */
export function formatSimulators(): string {
  const rows = Object.values(SIM_PROFILES).map((p) => [
    `sim:${p.name}`,
    `${p.name.toUpperCase()} (${p.architecture}, MMU v${p.mmuVersion})`,
    formatSize(p.vramSize),
    formatSize(p.bar1Size),
    p.fbFlush,
    [
      p.display ? "display" : "no display",
      ...(p.mmuLock ? ["MMU lock"] : []),
      ...(p.name === DEFAULT_SIM_PROFILE ? ["= sim"] : []),
    ].join(", "),
  ]);
  const knobs = (Object.keys(SIM_CONFLICTS) as (keyof typeof SIM_CONFLICTS)[]).map((k) =>
    `${k}=${SIM_CONFLICTS[k].join("|")} (MMU v${SIM_CONFLICT_MMU[k]})`
  );
  return [
    "Simulated GPUs (--device sim:PROFILE[:STATE][?KNOB=VALUE&...]):",
    ...formatTable(["spec", "chip", "VRAM", "BAR1", "FB flush", "has"], rows),
    `states: ${
      SIM_STATES.map((s) => s === DEFAULT_SIM_STATE ? `${s} (default)` : s).join(", ")
    } (vga: chips with a display only), e.g. sim:ga102:gsp`,
    `knobs: ${knobs.join(", ")}; the first is the default, e.g. sim:ga102?bar1alias=separate`,
    "Snapshots: --device snap:FILE (offline, read-only) or snap:FILE?scratch; `deno task snapshot -o FILE` writes one",
  ].join("\n");
}

/** Runs the command; returns the exit code. */
export function main(args: string[]): number {
  const parsed = parseCommand(args, {
    "sysfs-root": { type: "string" },
    json: { type: "boolean", default: false },
  }, HELP);
  if (typeof parsed === "number") return parsed;
  const { values } = parsed;
  const sysfs = values["sysfs-root"] === undefined ? {} : { sysfsRoot: values["sysfs-root"] };
  let rows: GpuRow[];
  try {
    rows = listRows(sysfs);
  } catch (e) {
    return reportError(e);
  }
  if (values.json) {
    console.log(JSON.stringify(rows, null, 2));
  } else if (rows.every((r) => r.skipped !== undefined)) {
    for (const r of rows) console.log(`${r.bdf}: skipped: ${r.skipped}`);
    console.log(noGpusMessage(sysfs));
    console.log(`\n${formatSimulators()}`);
  } else {
    console.log(formatRows(rows));
    console.log(`\n${formatSimulators()}`);
  }
  return 0;
}

if (import.meta.main) Deno.exit(main(Deno.args));
