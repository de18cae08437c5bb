/**
 * AD10x (Ada): the memory-management mechanics of GA10x.
 *
 * @module
 */

import { GA10X } from "./ga102.ts";
import type { ChipFamily } from "./types.ts";

/** AD102..AD107. */
export const AD10X: ChipFamily = {
  ...GA10X,
  name: "AD10x",
  chipIds: [0x192, 0x193, 0x194, 0x196, 0x197],
};
