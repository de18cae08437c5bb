/**
 * The register view: a 32-bit value drawn as its fields (one box per field
 * over the bits it spans, its value under it, the named value as the hover
 * title), and the same as a table. Takes a value decoded by the header
 * database (`decode()` of hw/regdb) or one of `readRegisters()`.
 *
 * @module
 */

import { describe, fail } from "../hw/errors.ts";
import type { DecodedValue } from "../hw/regdb/mod.ts";
import type { RegisterReading } from "../hw/reg_dump.ts";
import { esc, hexFast } from "./html.ts";

/** A register value with its fields, as the view draws it. */
export interface RegisterPicture {
  /** Register name. */
  name: string;
  /** BAR0 offset. */
  offset: number;
  /** The 32-bit value. */
  value: number;
  /** Fields, any order. */
  fields: { name: string; hi: number; lo: number; value: number; enum: string | null }[];
  /** A note (a PRI error's meaning), or null. */
  note: string | null;
}

/** True for a value from the header database's `decode()`. */
export function isDecodedValue(x: unknown): x is DecodedValue {
  return typeof x === "object" && x !== null && typeof (x as DecodedValue).name === "string" &&
    typeof (x as DecodedValue).value === "number" && Array.isArray((x as DecodedValue).fields) &&
    typeof (x as DecodedValue).register === "object";
}

/** True for one line of `readRegisters()`. */
export function isRegisterReading(x: unknown): x is RegisterReading {
  return typeof x === "object" && x !== null && typeof (x as RegisterReading).name === "string" &&
    typeof (x as RegisterReading).value === "number" &&
    typeof (x as RegisterReading).fields === "object" &&
    !Array.isArray((x as RegisterReading).fields) &&
    "decoded" in x;
}

/** The picture of a decoded value or a register reading. */
export function registerPicture(x: DecodedValue | RegisterReading): RegisterPicture {
  if (isDecodedValue(x)) {
    return {
      name: x.name,
      offset: x.offset,
      value: x.value,
      fields: x.fields.map((f) => ({ ...f })),
      note: x.priError,
    };
  }
  if (isRegisterReading(x)) {
    return {
      name: x.name,
      offset: x.offset,
      value: x.value,
      fields: Object.entries(x.fields).map(([name, f]) => ({
        name,
        hi: f.hi,
        lo: f.lo,
        value: Math.floor(x.value / 2 ** f.lo) % 2 ** (f.hi - f.lo + 1),
        enum: null,
      })),
      note: x.decoded === null ? "PRI error: the register could not be read" : null,
    };
  }
  return fail(
    "EINVAL",
    `registerHtml takes a decoded value (decode(db, reg, value)) or a readRegisters() line, not ${
      describe(x)
    }`,
  );
}

const HUES = ["#dbeafe", "#dcfce7", "#fef3c7", "#fce7f3", "#e0e7ff", "#ccfbf1", "#fee2e2"];

/**
 * A register as an HTML fragment: bit ruler with the fields over it, and a
 * table of fields.
 *
 * @example
 * ```ts
 * import { decode, loadRegisterDb } from "../hw/regdb/mod.ts";
 * const db = await loadRegisterDb("GA102");
 * const html = registerHtml(decode(db, "NV_PMC_BOOT_0", 0x172000a1));
 * html.includes("ARCHITECTURE_0"); // true
 * ```
 */
export function registerHtml(x: DecodedValue | RegisterReading): string {
  const p = registerPicture(x);
  const cw = 22;
  const W = 32 * cw;
  const cells: string[] = [];
  for (let b = 31; b >= 0; b--) {
    const x0 = (31 - b) * cw;
    const bit = Math.floor(p.value / 2 ** b) % 2;
    cells.push(
      `<text x="${x0 + cw / 2}" y="10" text-anchor="middle" font-size="9">${b}</text>` +
        `<rect x="${x0}" y="14" width="${cw}" height="16" fill="${
          bit ? "#1f2328" : "#fff"
        }" stroke="#d0d7de"/>`,
    );
  }
  const fields = [...p.fields].sort((a, b) => b.hi - a.hi || a.lo - b.lo);
  // Overlapping fields (an alias spanning others, as BOOT_42's CHIP_ID) go on a tier below.
  const tiers: { hi: number; lo: number }[][] = [];
  const tierOf = fields.map((f) => {
    let t = tiers.findIndex((list) => list.every((g) => f.hi < g.lo || f.lo > g.hi));
    if (t < 0) t = tiers.push([]) - 1;
    tiers[t].push(f);
    return t;
  });
  fields.forEach((f, i) => {
    const x0 = (31 - f.hi) * cw;
    const w = (f.hi - f.lo + 1) * cw;
    const y = 34 + tierOf[i] * 38;
    const maxChars = Math.max(1, Math.floor(w / 6.5));
    const name = f.name.length > maxChars
      ? f.name.slice(0, Math.max(1, maxChars - 1)) + "…"
      : f.name;
    cells.push(
      `<g class="nm-field" data-field="${
        esc(f.name)
      }"><rect x="${x0}" y="${y}" width="${w}" height="34" fill="${
        HUES[i % HUES.length]
      }" stroke="#57606a"/><text x="${x0 + w / 2}" y="${y + 14}" text-anchor="middle">${
        esc(name)
      }</text>` +
        `<text x="${x0 + w / 2}" y="${y + 28}" text-anchor="middle" font-weight="bold">${
          hexFast(f.value)
        }</text><title>${
          esc(
            `${f.name} [${f.hi}:${f.lo}] = ${hexFast(f.value)}${
              f.enum === null ? "" : ` (${f.enum})`
            }`,
          )
        }</title></g>`,
    );
  });
  const H = 34 + Math.max(1, tiers.length) * 38;
  const rows = fields.map((f) =>
    `<tr><td>${f.hi}:${f.lo}</td><td>${esc(f.name)}</td><td class="mono">${
      hexFast(f.value)
    }</td><td>${f.enum === null ? "" : esc(f.enum)}</td></tr>`
  ).join("");
  return `<div class="nm nm-reg" data-reg="${esc(p.name)}"><h3>${esc(p.name)} <span class="mono">@${
    hexFast(p.offset)
  } = 0x${p.value.toString(16).padStart(8, "0")}</span></h3>${
    p.note === null ? "" : `<div class="nm-fw">${esc(p.note)}</div>`
  }<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}">${
    cells.join("")
  }</svg><table><tr><th>bits</th><th>field</th><th>value</th><th>meaning</th></tr>${rows}</table></div>`;
}
