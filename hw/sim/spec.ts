/**
 * The simulator's device spec: `sim[:PROFILE[:STATE]][?key=value&key=value]`,
 * e.g. `sim:gh100:gsp?lowbind=high&v3bit10=rm` or `sim?bar1alias=separate`.
 * The keys are the CONFLICT knobs of facts §14.1 ({@linkcode SimConflicts}).
 *
 * Parsing checks the syntax, the keys and the values; whether a knob applies
 * to the chip's MMU version needs the profile, so {@linkcode createSimGpu}
 * checks that.
 *
 * @module
 */

import { fail } from "../errors.ts";
import {
  DEFAULT_SIM_CONFLICTS,
  DEFAULT_SIM_PROFILE,
  DEFAULT_SIM_STATE,
  SIM_CONFLICT_MMU,
  SIM_CONFLICTS,
  type SimCardState,
  type SimConflicts,
} from "./profiles.ts";

export { DEFAULT_SIM_CONFLICTS, SIM_CONFLICT_MMU, SIM_CONFLICTS, type SimConflicts };

/** What {@linkcode parseSimSpec} found in a spec (profile and state unchecked). */
export interface ParsedSimSpec {
  /** The profile named after `sim:`, if any. */
  profile?: string;
  /** The state named after `sim:PROFILE:`, if any. */
  state?: SimCardState;
  /** The knobs named after `?`, if any. */
  conflicts?: Partial<SimConflicts>;
}

const HEAD = /^sim(?::([a-z0-9]+))?(?::([a-z]+))?$/;
/** The knob keys in the fixed order specs list them. */
const KEYS = Object.keys(SIM_CONFLICTS) as (keyof SimConflicts)[];

function knownKnobs(): string {
  return KEYS.map((k) => `${k}=${SIM_CONFLICTS[k].join("|")}`).join(", ");
}

/**
 * Parses a simulator device spec into {@linkcode createSimGpu} options; null
 * when `spec` is not of the form `sim[:PROFILE[:STATE]][?QUERY]` at all.
 * Unknown, repeated or malformed knobs and unknown values fail with ENODEV,
 * listing the known ones. The profile and state are not checked here; the
 * head is read in any case (`SIM:GH100:GSP` is `sim:gh100:gsp`).
 *
 * @example
 * ```ts
 * parseSimSpec("sim:gh100:gsp?lowbind=high");
 * // { profile: "gh100", state: "gsp", conflicts: { lowbind: "high" } }
 * parseSimSpec("0000:65:00.0"); // null
 * ```
 */
export function parseSimSpec(spec: string): ParsedSimSpec | null {
  if (typeof spec !== "string") return null;
  const q = spec.indexOf("?");
  const head = q < 0 ? spec : spec.slice(0, q);
  // Profile and state in any case: sim:GH100 is sim:gh100.
  const m = HEAD.exec(head.toLowerCase());
  if (m === null) return null;
  const out: ParsedSimSpec = {};
  if (m[1] !== undefined) out.profile = m[1];
  if (m[2] !== undefined) out.state = m[2] as SimCardState;
  if (q < 0) return out;
  const conflicts: Record<string, string> = {};
  const query = spec.slice(q + 1);
  if (query === "") {
    fail("ENODEV", `simulator spec ${JSON.stringify(spec)} has an empty option list after "?"`);
  }
  for (const pair of query.split("&")) {
    const eq = pair.indexOf("=");
    const key = eq < 0 ? pair : pair.slice(0, eq);
    const value = eq < 0 ? undefined : pair.slice(eq + 1);
    if (!Object.hasOwn(SIM_CONFLICTS, key)) {
      fail(
        "ENODEV",
        `unknown simulator option ${JSON.stringify(key)} in ${
          JSON.stringify(spec)
        }; known: ${knownKnobs()}`,
      );
    }
    const k = key as keyof SimConflicts;
    const candidates: readonly string[] = SIM_CONFLICTS[k];
    if (value === undefined || !candidates.includes(value)) {
      fail(
        "ENODEV",
        `simulator option ${key}${value === undefined ? " has no value" : `=${value}`} in ${
          JSON.stringify(spec)
        }: ${key} is one of ${candidates.join(", ")}`,
      );
    }
    if (Object.hasOwn(conflicts, k)) {
      fail("ENODEV", `simulator option ${key} given twice in ${JSON.stringify(spec)}`);
    }
    conflicts[k] = value;
  }
  out.conflicts = conflicts as Partial<SimConflicts>;
  return out;
}

/**
 * The normalised spec of a simulated card: `sim:PROFILE`, `:STATE` unless
 * bare, and `?key=value` for each knob that is not its default, keys in the
 * fixed order of {@linkcode SIM_CONFLICTS}.
 *
 * @example
 * ```ts
 * formatSimSpec("gh100", "gsp", { lowbind: "high", v3bit10: "ignored" });
 * // "sim:gh100:gsp?lowbind=high"
 * ```
 */
export function formatSimSpec(
  profile: string | undefined,
  state: SimCardState | undefined,
  conflicts: Partial<SimConflicts> = {},
): string {
  const s = state ?? DEFAULT_SIM_STATE;
  let spec = `sim:${profile ?? DEFAULT_SIM_PROFILE}${s === DEFAULT_SIM_STATE ? "" : `:${s}`}`;
  const query = KEYS.filter((k) =>
    conflicts[k] !== undefined && conflicts[k] !== DEFAULT_SIM_CONFLICTS[k]
  ).map((k) => `${k}=${conflicts[k]}`);
  if (query.length > 0) spec += `?${query.join("&")}`;
  return spec;
}

/**
 * Checks knobs against the chip's MMU version and fills in the defaults
 * (ENODEV for an unknown key or value, or a knob of the other MMU version).
 */
export function resolveSimConflicts(
  mmuVersion: 2 | 3,
  conflicts: Partial<SimConflicts> = {},
  chip = "this chip",
): SimConflicts {
  const out: SimConflicts = { ...DEFAULT_SIM_CONFLICTS };
  for (const [key, value] of Object.entries(conflicts)) {
    if (value === undefined) continue;
    if (!Object.hasOwn(SIM_CONFLICTS, key)) {
      fail("ENODEV", `unknown simulator option ${JSON.stringify(key)}; known: ${knownKnobs()}`);
    }
    const k = key as keyof SimConflicts;
    const candidates: readonly string[] = SIM_CONFLICTS[k];
    if (typeof value !== "string" || !candidates.includes(value)) {
      fail(
        "ENODEV",
        `simulator option ${key}=${String(value)}: ${key} is one of ${candidates.join(", ")}`,
      );
    }
    if (SIM_CONFLICT_MMU[k] !== mmuVersion) {
      fail(
        "ENODEV",
        `simulator option ${key} applies to MMU v${
          SIM_CONFLICT_MMU[k]
        } chips; ${chip} uses MMU v${mmuVersion} (its options: ${
          KEYS.filter((x) => SIM_CONFLICT_MMU[x] === mmuVersion).join(", ")
        })`,
      );
    }
    (out as unknown as Record<string, string>)[k] = value;
  }
  return out;
}
