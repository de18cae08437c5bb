/**
 * Generates `cli/help_data.json`, what the REPL's `help(x)` prints, from the
 * JSDoc in the source (`deno doc --json mod.ts`): for every exported class
 * its summary and example, and for each member its signature, the first
 * paragraph of its doc and its example; the same for exported functions.
 * `tests/help_test.ts` fails when the committed file is stale.
 *
 * ```sh
 * deno task help-data        # rewrite cli/help_data.json
 * ```
 *
 * @module
 */

/** One documented member or function. */
export interface HelpEntry {
  /** `method`, `getter`, `property`, `function`, `constructor`. */
  kind: string;
  /** `name(a: number, b?: Options): Result`. */
  sig: string;
  /** First paragraph of the JSDoc. */
  doc: string;
  /** The first `@example`, code only. */
  example?: string;
  /** The return type's name, when it is one type reference (for completion). */
  returns?: string;
}

/** One documented class. */
export interface HelpClass {
  /** First paragraph of the class JSDoc. */
  doc: string;
  /** The first `@example`. */
  example?: string;
  /** Members by name. */
  members: Record<string, HelpEntry>;
}

/** The whole file. */
export interface HelpData {
  /** Classes by name. */
  classes: Record<string, HelpClass>;
  /** Exported functions by name. */
  functions: Record<string, HelpEntry>;
}

// deno doc's JSON is loosely typed here on purpose: only the fields read below matter.
// deno-lint-ignore no-explicit-any
type Json = any;

function type(t: Json): string {
  if (t === undefined || t === null) return "unknown";
  switch (t.kind) {
    case "keyword":
      return t.value;
    case "literal":
      return t.repr ?? String(t.value?.string ?? t.value?.number ?? t.value?.boolean ?? "");
    case "typeRef": {
      const params = t.value?.typeParams as Json[] | undefined;
      return `${t.value.typeName}${params?.length ? `<${params.map(type).join(", ")}>` : ""}`;
    }
    case "union":
      return (t.value as Json[]).map(type).join(" | ");
    case "array":
      return `${type(t.value)}[]`;
    case "parenthesized":
      return `(${type(t.value)})`;
    case "typeOperator":
      return `${t.value.operator} ${type(t.value.tsType)}`;
    case "tuple":
      return `[${(t.value as Json[]).map(type).join(", ")}]`;
    case "this":
      return "this";
    case "fnOrConstructor":
      return `(${(t.value.params as Json[]).map(param).join(", ")}) => ${type(t.value.tsType)}`;
    case "typeLiteral": {
      // A literal with only methods or computed keys (`{ [SYM](): T }`) has no property list.
      const props = ((t.value.properties ?? []) as Json[]).map((p) =>
        `${p.name}${p.optional ? "?" : ""}: ${type(p.tsType)}`
      ).concat(((t.value.methods ?? []) as Json[]).map((m) => `${m.name}(…)`));
      return props.length === 0 ? "{}" : `{ ${props.join("; ")} }`;
    }
    default:
      return t.repr || "unknown";
  }
}

function param(p: Json): string {
  switch (p.kind) {
    case "identifier":
      return `${p.name}${p.optional ? "?" : ""}${p.tsType ? `: ${type(p.tsType)}` : ""}`;
    case "assign":
      return `${param(p.left).replace(/^([^:?]+)(?=:|$)/, "$1?")}`;
    case "rest":
      return `...${param(p.arg)}`;
    default:
      return "options";
  }
}

function docOf(js: Json): { doc: string; example?: string } {
  const raw: string = js?.doc ?? "";
  const doc = raw.split(/\n\s*\n/)[0].replace(/\{@linkcode ([^}]+)\}/g, "$1").replace(
    /\s*\n\s*/g,
    " ",
  )
    .trim();
  const tag = (js?.tags as Json[] | undefined)?.find((t) => t.kind === "example");
  const example = tag === undefined
    ? undefined
    : String(tag.doc).replace(/^```\w*\n/, "").replace(/\n?```\s*$/, "").trim();
  return example === undefined ? { doc } : { doc, example };
}

function fnEntry(kind: string, name: string, fd: Json, js: Json): HelpEntry {
  const ret = fd.returnType;
  const sig = `${name}(${(fd.params as Json[]).map(param).join(", ")})${
    ret ? `: ${type(ret)}` : ""
  }`;
  const e: HelpEntry = { kind, sig, ...docOf(js) };
  if (ret?.kind === "typeRef") e.returns = ret.value.typeName;
  return e;
}

/** Builds the help data from `deno doc --json` output. */
export function helpData(doc: Json): HelpData {
  const out: HelpData = { classes: {}, functions: {} };
  for (const node of Object.values(doc.nodes) as Json[]) {
    for (const sym of node.symbols as Json[]) {
      for (const d of sym.declarations as Json[]) {
        if (d.kind === "function") {
          out.functions[sym.name] = fnEntry("function", sym.name, d.def, d.jsDoc);
        }
        if (d.kind !== "class") continue;
        const members: Record<string, HelpEntry> = {};
        for (const m of (d.def.methods ?? []) as Json[]) {
          if (m.accessibility === "private" || String(m.name).startsWith("[")) continue;
          const kind = m.kind === "getter" ? "getter" : m.kind === "setter" ? "setter" : "method";
          if (kind === "setter") continue;
          if (kind === "getter") {
            const ret = m.functionDef.returnType;
            members[m.name] = {
              kind,
              sig: `${m.name}: ${type(ret)}`,
              ...docOf(m.jsDoc),
              ...(ret?.kind === "typeRef" ? { returns: ret.value.typeName } : {}),
            };
          } else members[m.name] = fnEntry(kind, m.name, m.functionDef, m.jsDoc);
        }
        for (const p of (d.def.properties ?? []) as Json[]) {
          if (p.accessibility === "private" || String(p.name).startsWith("[")) continue;
          members[p.name] = {
            kind: "property",
            sig: `${p.readonly ? "readonly " : ""}${p.name}${p.optional ? "?" : ""}: ${
              type(p.tsType)
            }`,
            ...docOf(p.jsDoc),
            ...(p.tsType?.kind === "typeRef" ? { returns: p.tsType.value.typeName } : {}),
          };
        }
        out.classes[sym.name] = { ...docOf(d.jsDoc), members };
      }
    }
  }
  return out;
}

/** Runs `deno doc --json mod.ts` and returns the help data as file text. */
export async function generate(root: URL): Promise<string> {
  const r = await new Deno.Command(Deno.execPath(), {
    args: ["doc", "--json", "mod.ts"],
    cwd: root,
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!r.success) throw new Error(`deno doc failed: ${new TextDecoder().decode(r.stderr)}`);
  const data = helpData(JSON.parse(new TextDecoder().decode(r.stdout)));
  return JSON.stringify(data, null, 1) + "\n";
}

if (import.meta.main) {
  const root = new URL("../", import.meta.url);
  await Deno.writeTextFile(new URL("cli/help_data.json", root), await generate(root));
}
