/**
 * Simulated GPU profiles. `sim` means `sim:ga102`.
 *
 * @module
 */

import type { SimArchitecture } from "./mmu.ts";

/** One simulated board. */
export interface SimProfile {
  /** Profile name as typed after `sim:`. */
  name: string;
  /** BOOT_42 chip id. */
  chipId: number;
  /** Architecture of the chip. */
  architecture: SimArchitecture;
  /** Page-table format. */
  mmuVersion: 2 | 3;
  /** VRAM bytes. */
  vramSize: number;
  /** BAR1 aperture bytes. */
  bar1Size: number;
}

const GiB = 2 ** 30;
const MiB = 2 ** 20;

/** The boards the simulator can be. */
export const SIM_PROFILES: Readonly<Record<string, SimProfile>> = {
  ga102: {
    name: "ga102",
    chipId: 0x172,
    architecture: "Ampere",
    mmuVersion: 2,
    vramSize: 24 * GiB,
    bar1Size: 256 * MiB,
  },
  gh100: {
    name: "gh100",
    chipId: 0x180,
    architecture: "Hopper",
    mmuVersion: 3,
    vramSize: 80 * GiB,
    bar1Size: 128 * GiB,
  },
  tu102: {
    name: "tu102",
    chipId: 0x162,
    architecture: "Turing",
    mmuVersion: 2,
    vramSize: 11 * GiB,
    bar1Size: 256 * MiB,
  },
  ad102: {
    name: "ad102",
    chipId: 0x192,
    architecture: "Ada",
    mmuVersion: 2,
    vramSize: 24 * GiB,
    bar1Size: 256 * MiB,
  },
  gb202: {
    name: "gb202",
    chipId: 0x1b2,
    architecture: "Blackwell",
    mmuVersion: 3,
    vramSize: 32 * GiB,
    bar1Size: 32 * GiB,
  },
};

/** The profile `sim` stands for. */
export const DEFAULT_SIM_PROFILE = "ga102";
