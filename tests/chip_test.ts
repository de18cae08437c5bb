import assert from "node:assert/strict";
import { CHIPS, decodeChip, encodeBoot } from "../hw/chip.ts";

Deno.test("chip: every known chip id round-trips through BOOT_0/BOOT_42", () => {
  for (const [id, name] of Object.entries(CHIPS)) {
    const { boot0, boot42 } = encodeBoot(Number(id));
    const c = decodeChip(boot0, boot42);
    assert.equal(c.name, name);
    assert.equal(c.chipId, Number(id));
    assert.equal(c.revision, "A1");
    assert.equal(c.mmuVersion, ["Hopper", "Blackwell"].includes(c.architecture) ? 3 : 2);
  }
});

Deno.test("chip: values from the facts (§1.3)", () => {
  assert.equal(decodeChip(0x172000a1, 0x172a1000).name, "GA102");
  assert.equal(decodeChip(0x180000a1, 0x180a1000).architecture, "Hopper");
  assert.equal(decodeChip(0x162000a1, 0x162a1000).architecture, "Turing");
  assert.equal(decodeChip(0x192000a1, 0x192a1000).architecture, "Ada");
});

Deno.test("chip: unknown and dead chips get an error with the raw values", () => {
  assert.throws(
    () => decodeChip(0x140000a1, 0x140a1000),
    /unknown chip id 0x140.*BOOT_0=0x140000a1 BOOT_42=0x140a1000/,
  );
  assert.throws(() => decodeChip(0xffffffff, 0xffffffff), /ENODEV: the GPU does not answer/);
  assert.throws(() => decodeChip(0x050000a1, 0x172a1000), /pre-Fermi/);
  assert.throws(() => decodeChip(0x192000a1, 0x172a1000), /disagrees/);
});
