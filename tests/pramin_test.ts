import assert from "node:assert/strict";
import { openGpu } from "../mod.ts";
import { PraminView } from "../mm/pramin.ts";
import { NV_PBUS_BAR0_WINDOW, NV_XAL_EP_BAR0_WINDOW } from "../hw/regs.ts";
import { errorCode } from "./util.ts";

const MiB = 2 ** 20;

Deno.test("pramin: sequential 8 MiB sweep moves once per MiB, up and down", async () => {
  const gpu = await openGpu();
  using w = gpu.pramin.window();
  const start = 64 * MiB;
  w.read32(start);
  gpu.resetStats();
  for (let a = start; a < start + 8 * MiB; a += 4) w.write32(a, a >>> 0);
  assert.equal(gpu.stats().windowMoves, 7);
  assert.equal(gpu.stats().mmioWrites, 8 * MiB / 4 + 7);
  gpu.resetStats();
  for (let a = start + 8 * MiB - 4; a >= start; a -= 4) assert.equal(w.read32(a), a >>> 0);
  // Descending: the window lands with the access at its top, so once per MiB too.
  assert.ok(gpu.stats().windowMoves <= 8, `moves ${gpu.stats().windowMoves}`);
  gpu.close();
});

Deno.test("pramin: window register and aperture per architecture", async () => {
  for (
    const [device, reg] of [["sim:ga102", NV_PBUS_BAR0_WINDOW], [
      "sim:gh100",
      NV_XAL_EP_BAR0_WINDOW,
    ]] as const
  ) {
    const gpu = await openGpu({ device });
    {
      using w = gpu.pramin.window();
      w.write32(5 * MiB + 0x40, 0x1234);
      assert.equal(gpu.bar0.read32(reg), 5 * MiB / 65536, `${device} register holds base >> 16`);
      assert.equal(gpu.sim!.vram.read32(5 * MiB + 0x40), 0x1234);
      assert.equal(gpu.sim!.praminBase, 5 * MiB);
    }
    assert.equal(gpu.bar0.read32(reg), 0, "restored");
    assert.deepEqual(gpu.sim!.errors(), []);
    gpu.close();
  }
});

Deno.test("pramin: the 1 MiB view refuses addresses outside it", async () => {
  const gpu = await openGpu();
  const v = gpu.pramin.view(2 * MiB);
  v.write32(2 * MiB + 8, 7);
  assert.equal(v.read32(2 * MiB + 8), 7);
  assert.equal(errorCode(() => v.read32(3 * MiB)), "EINVAL");
  assert.equal(errorCode(() => v.read32(2 * MiB - 4)), "EINVAL");
  assert.equal(errorCode(() => new PraminView(gpu.bar0, 0x1000)), "EINVAL");
  gpu.close();
});

Deno.test("pramin: errors name the value and the limit", async () => {
  const gpu = await openGpu({ device: "sim:gh100" });
  using w = gpu.pramin.window();
  assert.throws(
    () => w.read32(80 * 2 ** 30),
    /0x1400000000 \+ 0x4 is past the end of VRAM \(0x1400000000 bytes\)/,
  );
  assert.throws(() => w.read32(0x1002), /0x1002 is not aligned to the 4-byte/);
  assert.throws(() => w.write32(0x1000, 2 ** 32), /does not fit in 32 bits/);
  assert.throws(() => w.read8(Number.NaN), /NaN is not a non-negative integer/);
  assert.throws(() => w.readBytes(0, -1), /length -1/);
  gpu.close();
});

Deno.test("pramin: closed window and read-only device", async () => {
  const gpu = await openGpu({ readOnly: true });
  const w = gpu.pramin.window();
  assert.equal(w.read32(0x1000), gpu.sim!.vram.read32(0x1000)); // unscrubbed: a pattern, not 0
  assert.equal(errorCode(() => w.write32(0x1000, 1)), "EPERM");
  w.close();
  assert.equal(errorCode(() => w.read32(0)), "ENODEV");
  gpu.close();
});

Deno.test("pramin: one-shot helpers restore the window", async () => {
  const gpu = await openGpu();
  gpu.pramin.write32(7 * MiB, 0xabcdef01);
  assert.equal(gpu.pramin.read32(7 * MiB), 0xabcdef01);
  assert.equal(gpu.pramin.readBase(), 0);
  gpu.pramin.writeBytes(7 * MiB + 1, new Uint8Array([1, 2, 3]));
  assert.deepEqual([...gpu.pramin.readBytes(7 * MiB, 4)], [1, 1, 2, 3]);
  gpu.close();
});

Deno.test("pramin: bulk transfers of every small length at every alignment round-trip", async () => {
  const gpu = await openGpu();
  using w = gpu.pramin.window();
  const base = 3 * MiB;
  for (let misalign = 0; misalign < 4; misalign++) {
    for (let len = 0; len <= 13; len++) {
      for (let hostOff = 0; hostOff < 4; hostOff++) {
        w.fill(base, 32, 0xee);
        const buf = new Uint8Array(len + hostOff);
        for (let i = 0; i < buf.length; i++) buf[i] = 0x10 + i;
        const src = buf.subarray(hostOff);
        w.writeBytes(base + misalign, src);
        const back = w.readBytes(base, 32);
        for (let i = 0; i < 32; i++) {
          const inside = i >= misalign && i < misalign + len;
          assert.equal(
            back[i],
            inside ? src[i - misalign] : 0xee,
            `misalign ${misalign} len ${len} byte ${i}`,
          );
        }
      }
    }
  }
  gpu.close();
});

Deno.test("pramin: library code borrows an open window; the owner still restores the base", async () => {
  const gpu = await openGpu();
  const original = gpu.pramin.readBase();
  {
    using w = gpu.pramin.window();
    w.write32(9 * MiB, 0x99);
    assert.equal(w.base, 9 * MiB);
    {
      using b = gpu.pramin.borrow(); // what vmm/bar1/walk/one-shot helpers do
      b.write32(20 * MiB, 0x20);
      assert.equal(gpu.pramin.base, 20 * MiB);
    }
    assert.equal(gpu.pramin.busy, true, "the borrow did not release the owner's window");
    assert.equal(gpu.pramin.read32(9 * MiB), 0x99, "one-shot helpers borrow too");
    assert.equal(w.read32(20 * MiB), 0x20);
    const m = gpu.bar1.map([20 * MiB / 4096], { writable: true }); // the VMM writes through the borrow
    assert.equal(m.read32(0), 0x20);
    m.unmap();
  }
  assert.equal(gpu.pramin.readBase(), original);
  assert.equal(gpu.pramin.busy, false);
  gpu.close();
});
