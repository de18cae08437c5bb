/**
 * CPU access to VRAM by address through BAR1 in physical mode (the reset
 * state, facts §13.2 item 2): BAR1 byte offset X is VRAM address X, so only
 * VRAM below the BAR1 aperture size is reachable. Accesses are kept inside
 * the usable region (firmware's VGA workspace, WPR2, the console stay
 * untouched) unless the forced view {@linkcode BarPhysical.forced} is used,
 * and refused outright while BAR1 is virtual (there the same offsets are
 * virtual addresses; touching an unmapped one is fatal).
 *
 * Bulk transfers use wide copies when BAR1 is mapped write-combining.
 *
 * @module
 */

import { describe, fail, hex } from "../hw/errors.ts";
import type { Mmio } from "../hw/mmio.ts";
import { checkBytes, checkUint } from "../hw/validate.ts";
import { u64 } from "./types.ts";

/** What {@linkcode BarPhysical} needs. */
export interface BarPhysicalOptions {
  /** The BAR1 aperture. */
  bar1: Mmio;
  /** The usable VRAM region. */
  usable: { start: number; end: number };
  /** VRAM bytes. */
  vramSize: number;
  /** BAR1's mode now. */
  mode: () => "physical" | "virtual";
  /**
   * Why physical BAR1 may not be used now (MODE physical with a TARGET other
   * than VID: the aperture reaches system memory), or null.
   */
  problem?: () => string | null;
  /** Reach any VRAM the aperture covers, firmware's included. */
  force?: boolean;
  /** The write policy (who owns which VRAM). */
  policy?: () => {
    ownerOf(addr: number, len: number): { name: string } | null;
    checkWrite(addr: number, len: number, what: string): void;
  } | null;
}

/** Bytes per chunk of {@linkcode BarPhysical.fill}. */
const FILL_CHUNK = 1 << 20;

/**
 * BAR1 physical-mode access by VRAM address.
 *
 * @example
 * ```ts
 * import { openGpu } from "../mod.ts";
 * using gpu = await openGpu({ device: "sim" });
 * const a = gpu.mm.buddy.alloc(4096);
 * gpu.bar1.physical.write32(a.start, 0x1234);
 * gpu.pramin.read32(a.start); // 0x1234
 * ```
 */
export class BarPhysical {
  readonly #o: BarPhysicalOptions;
  #forced: BarPhysical | null = null;

  /** Made by `BarUser`. */
  constructor(options: BarPhysicalOptions) {
    this.#o = options;
  }

  /** The VRAM addresses reachable: [0, min(BAR1 size, VRAM size)). */
  get reach(): number {
    return Math.min(this.#o.bar1.size, this.#o.vramSize);
  }

  /** The same access without the usable-region check (firmware's VRAM too). Use with care. */
  get forced(): BarPhysical {
    if (this.#o.force) return this;
    this.#forced ??= new BarPhysical({ ...this.#o, force: true });
    return this.#forced;
  }

  #at(addr: number, len: number, what: string): number {
    checkUint(addr, "VRAM address");
    checkUint(len, "length");
    if (this.#o.mode() !== "physical") {
      fail(
        "EFAULT",
        `BAR1 is virtual: ${what} of VRAM ${hex(addr)} by address would be a BAR1 VA access`,
        "gpu.bar1.unbind() first, or map the VRAM (gpu.bar1.map)",
      );
    }
    const problem = this.#o.problem?.() ?? null;
    if (problem !== null) {
      fail(
        "EFAULT",
        `BAR1 is not physical into VRAM: ${what} of VRAM ${hex(addr)} refused (${problem})`,
        "gpu.bar1.unbind() puts BAR1 in physical mode with TARGET VID; PRAMIN reaches VRAM meanwhile",
      );
    }
    if (addr + len > this.reach) {
      fail(
        "EINVAL",
        `VRAM ${hex(addr)} +${hex(len)} is past what physical BAR1 reaches (VRAM below ${
          hex(this.reach)
        })`,
        "use PRAMIN (gpu.pramin) for VRAM above the BAR1 aperture",
      );
    }
    // Reads anywhere; writes only where the write policy allows (issue 15): inside the
    // usable region and not novamm's tables or instance blocks, unless forced.
    if (what !== "a read" && !this.#o.force && len > 0) {
      const { start, end } = this.#o.usable;
      if (addr < start || addr + len > end) {
        const owner = this.#o.policy?.()?.ownerOf(addr, len) ?? null;
        fail(
          "EPERM",
          `${what} of VRAM ${hex(addr)} +${hex(len)} refused: outside the usable region [${
            hex(start)
          }, ${hex(end)})${
            owner === null ? "" : ` (${owner.name})`
          } (firmware's; see gpu.vram.layout)`,
          "gpu.bar1.physical.forced writes it anyway",
        );
      }
      this.#o.policy?.()?.checkWrite(addr, len, `bar1.physical ${what}`);
    }
    return addr;
  }

  /** 32-bit read of VRAM at `addr`. */
  read32(addr: number): number {
    return this.#o.bar1.read32(this.#at(addr, 4, "a read"));
  }

  /** 32-bit write of VRAM at `addr`. */
  write32(addr: number, value: number): void {
    this.#o.bar1.write32(this.#at(addr, 4, "a write"), value);
  }

  /** 64-bit read as two 32-bit reads, low half first. */
  read64(addr: number): bigint {
    const at = this.#at(addr, 8, "a read");
    const lo = this.#o.bar1.read32(at);
    return (BigInt(this.#o.bar1.read32(at + 4)) << 32n) | BigInt(lo);
  }

  /** 64-bit write as two 32-bit writes, low half first. */
  write64(addr: number, value: bigint | number): void {
    const v = u64(value, "value");
    const at = this.#at(addr, 8, "a write");
    this.#o.bar1.write32(at, Number(v & 0xffffffffn));
    this.#o.bar1.write32(at + 4, Number(v >> 32n));
  }

  /** Reads `len` bytes of VRAM at `addr`. */
  readBytes(addr: number, len: number): Uint8Array {
    return this.#o.bar1.readBytes(this.#at(addr, len, "a read"), len);
  }

  /** Writes `bytes` to VRAM at `addr`. */
  writeBytes(addr: number, bytes: Uint8Array): void {
    checkBytes(bytes, "bar1.physical.writeBytes bytes");
    this.#o.bar1.writeBytes(this.#at(addr, bytes.length, "a write"), bytes);
  }

  /** Fills `len` bytes of VRAM at `addr` with `byte`. */
  fill(addr: number, len: number, byte: number): void {
    if (!Number.isInteger(byte) || byte < 0 || byte > 0xff) {
      fail("EINVAL", `fill byte ${describe(byte)} is not in 0..0xff`);
    }
    this.#at(addr, len, "a fill");
    const chunk = new Uint8Array(Math.min(len, FILL_CHUNK)).fill(byte);
    for (let done = 0; done < len; done += chunk.length) {
      const n = Math.min(chunk.length, len - done);
      this.#o.bar1.writeBytes(addr + done, n === chunk.length ? chunk : chunk.subarray(0, n));
    }
  }

  /** The one-line summary as text (`${x}` prints it, not `[object Object]`). */
  toString(): string {
    return (this as unknown as Record<symbol, () => string>)[Symbol.for("Deno.customInspect")]();
  }

  /** The one-line summary the REPL and `Deno.inspect` print. */
  [Symbol.for("Deno.customInspect")](): string {
    return `BAR1 physical: VRAM [0x0, ${hex(this.reach)}) by address${
      this.#o.force
        ? " (forced: firmware's VRAM too)"
        : `, usable [${hex(this.#o.usable.start)}, ${hex(this.#o.usable.end)})`
    } (${this.#o.mode()} mode now)`;
  }
}
