/**
 * Register database: what loading one chip family costs. The first load of a
 * family (`loadRegisterDb`: the data module's import and compile, the JSON
 * parse, the indexes) must stay under 50 ms; it is measured once per family
 * and printed. `Deno.bench` then times the parse + index step alone and the
 * queries a REPL session makes.
 *
 * Run: `deno bench -A bench/regdb_bench.ts`
 */

import {
  buildRegisterDb,
  decode,
  loadRegisterDb,
  lookup,
  REGDB_CHIPS,
  type RegisterDbMeta,
} from "../hw/regdb/mod.ts";

const modules = new Map<string, { META: RegisterDbMeta; BODY: string }>();
const lines: string[] = [];
for (const chip of REGDB_CHIPS) {
  const t0 = performance.now();
  const db = await loadRegisterDb(chip); // first load: import + parse + index
  const ms = performance.now() - t0;
  const m = await import(`../hw/regdb/${chip}.ts`);
  modules.set(chip, m);
  const kib = (await Deno.stat(new URL(`../hw/regdb/${chip}.ts`, import.meta.url))).size / 1024;
  lines.push(
    `  ${db.family.padEnd(6)} ${String(db.registers.length).padStart(4)} registers  ` +
      `${kib.toFixed(0).padStart(4)} KiB  first load ${ms.toFixed(1).padStart(5)} ms` +
      (ms < 50 ? "" : "  ** over the 50 ms budget **"),
  );
}
console.log(`register database, first load per chip (budget 50 ms):\n${lines.join("\n")}`);

for (const chip of REGDB_CHIPS) {
  const m = modules.get(chip)!;
  Deno.bench(`regdb: parse + index ${chip}`, { group: "load" }, () => {
    buildRegisterDb(m.META, m.BODY);
  });
}

const ga = await loadRegisterDb("ga102");
const gh = await loadRegisterDb("gh100");
Deno.bench("regdb: lookup(offset) GH100 0x10f804", { group: "query" }, () => {
  lookup(gh, 0x10f804);
});
Deno.bench("regdb: lookup(offset) GA10x indexed instance", { group: "query" }, () => {
  lookup(ga, 0xb8100c);
});
Deno.bench("regdb: lookup(glob) GA10x NV_PFB_*", { group: "query" }, () => {
  lookup(ga, "NV_PFB_*");
});
Deno.bench("regdb: decode NV_PMC_BOOT_0", { group: "query" }, () => {
  decode(ga, "NV_PMC_BOOT_0", 0x192000a1);
});
