/**
 * PRAMIN self-tests: run unchanged on any device
 * (`deno task selftest --device sim:gh100`, or a PCI address on a card).
 * Every write lands in a scratch range inside the usable VRAM region.
 *
 * @module
 */

import { hex } from "../hw/errors.ts";
import { PRAMIN_SIZE } from "../hw/regs.ts";
import type { Gpu } from "../mm/gpu.ts";
import { expect, expectError, type SelfTestSuite, withScratch } from "./selftest.ts";

const MiB = 2 ** 20;

/** Round trip of every access width, and little-endian byte order. */
function widths(gpu: Gpu): void {
  withScratch(gpu, 2 * MiB, (s) => {
    using w = gpu.pramin.window();
    for (let i = 0; i < 4; i++) w.write8(s + 0x101 + i, 0xa0 + i);
    for (let i = 0; i < 4; i++) expect(w.read8(s + 0x101 + i) === 0xa0 + i, `u8 at +${0x101 + i}`);
    w.write16(s + 0x112, 0xbeef);
    expect(w.read16(s + 0x112) === 0xbeef, "u16 round trip");
    w.write32(s + 0x110, 0xdeadbeef);
    const bytes = [0, 1, 2, 3].map((i) => w.read8(s + 0x110 + i));
    expect(bytes.join() === [0xef, 0xbe, 0xad, 0xde].join(), `u32 bytes little-endian: ${bytes}`);
    expect(w.read32(s + 0x110) === 0xdeadbeef, "u32 round trip");
    w.write64(s + 0x118, 0x0123456789abcdefn);
    expect(w.read64(s + 0x118) === 0x0123456789abcdefn, "u64 round trip");
    expect(w.read32(s + 0x118) === 0x89abcdef && w.read32(s + 0x11c) === 0x01234567, "u64 halves");
  });
}

/** Writes at +0x100 and +2 MiB move the window; both read back. */
function windowMoves(gpu: Gpu): void {
  withScratch(gpu, 4 * MiB, (s) => {
    using w = gpu.pramin.window();
    w.write32(s + 0x100, 0x11111111);
    const before = gpu.stats().windowMoves;
    w.write32(s + 2 * MiB, 0x22222222);
    expect(gpu.stats().windowMoves === before + 1, "the write at +2 MiB moved the window once");
    expect(w.read32(s + 0x100) === 0x11111111, "first value after moving back");
    expect(w.read32(s + 2 * MiB) === 0x22222222, "second value");
    const moves = gpu.stats().windowMoves;
    w.read32(s + 2 * MiB + 0x10000); // same MiB window: no move
    expect(gpu.stats().windowMoves === moves, "no move inside the current 1 MiB window");
  });
}

/** The window base is restored after normal and exceptional exit. */
function restore(gpu: Gpu): void {
  withScratch(gpu, 4 * MiB, (s) => {
    const original = gpu.pramin.readBase();
    {
      using w = gpu.pramin.window();
      w.read32(s + 3 * MiB);
    }
    expect(gpu.pramin.readBase() === original, `base back to ${hex(original)} after normal exit`);
    try {
      using w = gpu.pramin.window();
      w.read32(s + 2 * MiB + 0x40000);
      throw new Error("escaping");
    } catch (e) {
      expect(e instanceof Error && e.message === "escaping", "the exception escaped");
    }
    expect(gpu.pramin.readBase() === original, "base restored after an exception");
    {
      using _w = gpu.pramin.window();
      expectError("EBUSY", () => gpu.pramin.window(), "second window");
    }
    using again = gpu.pramin.window();
    expect(again.savedBase === original, "a window opens again after the first closed");
  });
}

/** Accesses that straddle the 1 MiB window edge. */
function straddle(gpu: Gpu): void {
  withScratch(gpu, 4 * MiB, (s) => {
    using w = gpu.pramin.window();
    w.read32(s); // window now at s
    const base = w.base;
    const edge = base + PRAMIN_SIZE;
    const bytes = Uint8Array.from({ length: 11 }, (_, i) => 0x30 + i);
    w.writeBytes(edge - 5, bytes);
    const back = w.readBytes(edge - 5, 11);
    expect(back.join() === bytes.join(), "unaligned bytes across the window edge");
    expect(w.read8(edge - 5) === 0x30 && w.read8(edge + 5) === 0x3a, "bytes on both sides");
    w.read32(base);
    const moves = gpu.stats().windowMoves;
    w.write64(edge, 0xfeedfacecafebeefn); // just past the window: one move, both halves inside
    expect(gpu.stats().windowMoves === moves + 1, "a 64-bit access past the edge moves once");
    expect(w.read64(edge) === 0xfeedfacecafebeefn, "64-bit value past the edge");
  });
}

/** An 8 MiB pattern written in bulk and verified, crossing eight windows. */
function bulk(gpu: Gpu): void {
  const size = 8 * MiB;
  withScratch(gpu, size, (s) => {
    const data = new Uint8Array(size);
    const words = new Uint32Array(data.buffer);
    for (let i = 0; i < words.length; i++) {
      words[i] = (Math.imul(i, 0x9e3779b1) ^ (s + i * 4)) >>> 0;
    }
    using w = gpu.pramin.window();
    w.read32(s);
    const before = gpu.stats();
    w.writeBytes(s, data);
    const mid = gpu.stats();
    expect(
      mid.mmioWrites - before.mmioWrites === size / 4 + (mid.windowMoves - before.windowMoves),
      "one 32-bit write per word",
    );
    expect(
      mid.windowMoves - before.windowMoves === 7,
      `7 window moves for 8 MiB, got ${mid.windowMoves - before.windowMoves}`,
    );
    const back = w.readBytes(s, size);
    const backWords = new Uint32Array(back.buffer);
    for (let i = 0; i < words.length; i++) {
      if (backWords[i] !== words[i]) {
        expect(false, `word at ${hex(s + i * 4)} is ${hex(backWords[i])}, wrote ${hex(words[i])}`);
      }
    }
    w.fill(s + 3, 100, 0x5a);
    const filled = w.readBytes(s, 104);
    expect(
      filled[2] === data[2] && filled[3] === 0x5a && filled[102] === 0x5a &&
        filled[103] === data[103],
      "fill edges",
    );
  });
}

/** Out-of-range, misaligned and non-integer accesses are refused with nothing written. */
function outOfRange(gpu: Gpu): void {
  const end = gpu.vram.size;
  withScratch(gpu, 2 * MiB, (s) => {
    using w = gpu.pramin.window();
    const writesBefore = gpu.stats().mmioWrites;
    expectError("EINVAL", () => w.read32(end), "read at the end of VRAM");
    expectError("EINVAL", () => w.write32(end, 1), "write at the end of VRAM");
    expectError("EINVAL", () => w.read8(2 ** 40), "read at 2^40");
    expectError(
      "EINVAL",
      () => w.writeBytes(end - 4, new Uint8Array(8)),
      "bulk write across the end",
    );
    expectError("EINVAL", () => w.fill(end - 0x1000, 0x2000, 0), "fill across the end");
    expectError("EINVAL", () => w.write16(s + 0x21, 1), "misaligned u16");
    expectError("EINVAL", () => w.write32(s + 0x32, 1), "misaligned u32");
    expectError("EINVAL", () => w.read64(s + 0x44), "misaligned u64");
    expectError("EINVAL", () => w.read32(0.5), "non-integer address");
    expectError("EINVAL", () => w.read32(-4), "negative address");
    expectError("EINVAL", () => w.write8(s, 0x100), "value too wide");
    expect(gpu.stats().mmioWrites === writesBefore, "no MMIO write happened");
  });
}

/** The PRAMIN self-test suite. */
export const praminSuite: SelfTestSuite = {
  name: "pramin",
  tests: [
    { name: "each width round-trips", run: widths, writes: true },
    { name: "window moves at +2 MiB and back", run: windowMoves, writes: true },
    { name: "window base restored (normal, exception, EBUSY)", run: restore, writes: true },
    { name: "accesses straddling the window edge", run: straddle, writes: true },
    { name: "8 MiB bulk pattern", run: bulk, writes: true },
    { name: "out-of-range accesses rejected", run: outOfRange, writes: true },
  ],
};
