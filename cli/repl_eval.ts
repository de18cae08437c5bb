/**
 * The REPL's evaluator: JavaScript input with top-level `await`, top-level
 * declarations that outlive the line (`const a = ...` then `a` next line),
 * `using` bindings that live until the session ends, and `import` at the
 * prompt. `--eval` and the interactive prompt share it.
 *
 * How: the input is parsed with acorn (as a module, so `await` and `using`
 * parse at top level), then rewritten. Top-level declarations become
 * definitions of `globalThis` properties (read-only for `const` and `using`),
 * a top-level `a = expr` declares `a` when it is new (as a REPL user
 * expects), the last expression statement becomes the return value, and the whole is
 * run as a strict async function through indirect `eval`, so later inputs
 * (and functions declared earlier) see the bindings as globals.
 *
 * @module
 */

import * as acorn from "npm:acorn@^8.15.0";

/** What {@linkcode checkInput} says about a piece of input. */
export type InputState =
  | { state: "complete" }
  | { state: "incomplete" }
  | { state: "error"; error: SyntaxError };

/** The value of one evaluation. */
export interface EvalResult {
  /** The last expression statement's value (undefined when the input ended in a declaration). */
  value: unknown;
  /** True when the input ended in an expression statement. */
  hasValue: boolean;
  /** Names the input declared at top level. */
  declared: string[];
}

/** Options for {@linkcode Evaluator}. */
export interface EvaluatorOptions {
  /** Resolves relative `import` specifiers at the prompt (default: the current directory). */
  baseUrl?: string;
}

type Kind = "var" | "let" | "const" | "using" | "function" | "class";

const PARSE_OPTIONS: acorn.Options = {
  ecmaVersion: "latest",
  sourceType: "module",
  allowAwaitOutsideFunction: true,
  allowHashBang: true,
};

// Internal names in the generated code; chosen so user code does not meet them.
const R = "__novammRepl$";
const T = "__novammTmp$";

function parse(code: string): acorn.Program {
  return acorn.parse(code, PARSE_OPTIONS);
}

/** True when a parse error means "more input would fix this" (Enter in an open bracket). */
function recoverable(e: unknown, code: string): boolean {
  if (!(e instanceof SyntaxError)) return false;
  const err = e as SyntaxError & { pos?: number };
  // A template literal or comment may span lines; a string or regex may not.
  if (/Unterminated (template|comment)/.test(err.message)) return true;
  if (/Unterminated/.test(err.message)) return false;
  return (err.pos ?? -1) >= code.trimEnd().length;
}

/** Where an input's printed value goes instead of the terminal: `EXPR ;> FILE` / `;>> FILE`. */
export interface Redirect {
  /** The input without the redirection. */
  code: string;
  /** The file (a leading `~/` is the home directory). */
  file: string;
  /** `;>>`: append instead of replacing. */
  append: boolean;
}

/**
 * Splits a trailing `;> FILE` (or `;>> FILE`) off an input: the value the
 * input prints is written to FILE instead (`vmm.dump() ;> /tmp/dump.txt`).
 * `;>` can never end valid JavaScript (no statement starts with `>`), so
 * nothing that runs today changes meaning: the split is taken only when the
 * whole input does not parse and the part before `;>` does.
 *
 * @example
 * ```ts
 * splitRedirect("vmm.dump() ;> /tmp/x.txt"); // { code: "vmm.dump() ", file: "/tmp/x.txt", append: false }
 * splitRedirect('"a ;> b"'); // null
 * ```
 */
export function splitRedirect(code: string): Redirect | null {
  const m = /;[ \t]*(>>?)[ \t]*([^\s;'"`][^\n;]*?)[ \t]*;?\s*$/.exec(code);
  if (m === null) return null;
  const before = code.slice(0, m.index);
  if (before.trim() === "") return null;
  try {
    parse(code);
    return null; // valid JavaScript as it is
  } catch {
    // `;>` is not JavaScript: a redirection if what comes before is
  }
  try {
    parseProgram(before);
  } catch {
    return null;
  }
  let file = m[2];
  if (file.startsWith("~/")) {
    file = `${Deno.env.get("HOME") ?? Deno.env.get("USERPROFILE") ?? "~"}${file.slice(1)}`;
  }
  return { code: before, file, append: m[1] === ">>" };
}

/**
 * Says whether `code` is a complete input, needs more lines, or is wrong.
 *
 * @example
 * ```ts
 * checkInput("function f() {").state; // "incomplete"
 * checkInput("1 +* 2").state; // "error"
 * ```
 */
export function checkInput(code: string): InputState {
  if (code.trim() === "") return { state: "complete" };
  if (splitRedirect(code) !== null) return { state: "complete" };
  try {
    parseProgram(code);
    return { state: "complete" };
  } catch (e) {
    if (recoverable(e, code)) return { state: "incomplete" };
    if (e instanceof SyntaxError) return { state: "error", error: e };
    throw e;
  }
}

/** `{a: 1}` at the prompt means an object, not a block: try it as an expression first. */
function parseProgram(code: string): { program: acorn.Program; source: string } {
  const t = code.trim();
  if (t.startsWith("{") && !t.endsWith(";")) {
    const wrapped = `(${code}\n)`;
    try {
      const program = parse(wrapped);
      if (program.body.length === 1 && program.body[0].type === "ExpressionStatement") {
        return { program, source: wrapped };
      }
    } catch {
      // Not an expression: parse it as statements below.
    }
  }
  return { program: parse(code), source: code };
}

interface Edit {
  start: number;
  end: number;
  text: string;
}

function key(name: string): string {
  return `[${JSON.stringify(name)}]`;
}

/** Rewrites a binding pattern so each bound name becomes a property of the temp object. */
function pattern(p: acorn.Pattern, src: string, names: string[]): string {
  switch (p.type) {
    case "Identifier":
      names.push(p.name);
      return `${T}${key(p.name)}`;
    case "AssignmentPattern":
      return `${pattern(p.left, src, names)} = (${src.slice(p.right.start, p.right.end)})`;
    case "RestElement":
      return `...${pattern(p.argument, src, names)}`;
    case "ArrayPattern":
      return `[${p.elements.map((e) => (e === null ? "" : pattern(e, src, names))).join(", ")}]`;
    case "ObjectPattern":
      return `{${
        p.properties.map((prop) => {
          if (prop.type === "RestElement") return pattern(prop, src, names);
          const k = prop.computed
            ? `[${src.slice(prop.key.start, prop.key.end)}]`
            : prop.key.type === "Identifier"
            ? prop.key.name
            : src.slice(prop.key.start, prop.key.end);
          return `${k}: ${pattern(prop.value, src, names)}`;
        }).join(", ")
      }}`;
    case "MemberExpression":
      return src.slice(p.start, p.end);
  }
}

function declaration(
  node: acorn.VariableDeclaration,
  src: string,
  names: string[],
): string {
  const kind = node.kind;
  const out: string[] = [];
  for (const d of node.declarations) {
    const init = d.init ? `(${src.slice(d.init.start, d.init.end)})` : "undefined";
    const declKind: string = kind === "await using" ? "using" : kind;
    if (d.id.type === "Identifier") {
      names.push(d.id.name);
      let value = init;
      if (kind === "using") value = `${R}.using(${init})`;
      if (kind === "await using") value = `await ${R}.usingAsync(${init})`;
      const k = kind === "var" && d.init === null ? "var?" : declKind;
      out.push(`${R}.declare({${key(d.id.name)}: ${value}}, "${k}");`);
    } else {
      const target = pattern(d.id, src, names);
      out.push(
        `{ const ${T} = Object.create(null); (${target} = ${init}); ${R}.declare(${T}, "${declKind}"); }`,
      );
    }
  }
  return out.join(" ");
}

function importDeclaration(
  node: acorn.ImportDeclaration,
  baseUrl: string,
  names: string[],
): string {
  let spec = String(node.source.value);
  if (/^\.{0,2}\//.test(spec)) spec = new URL(spec, baseUrl).href;
  const attrs = node.attributes.map((a) => {
    const k = a.key.type === "Identifier" ? a.key.name : String(a.key.value);
    return `${JSON.stringify(k)}: ${JSON.stringify(String(a.value.value))}`;
  });
  const load = `await import(${JSON.stringify(spec)}${
    attrs.length ? `, { with: { ${attrs.join(", ")} } }` : ""
  })`;
  const props = node.specifiers.map((s) => {
    names.push(s.local.name);
    if (s.type === "ImportNamespaceSpecifier") return `${key(s.local.name)}: ${T}`;
    if (s.type === "ImportDefaultSpecifier") return `${key(s.local.name)}: ${T}.default`;
    const imported = s.imported.type === "Identifier" ? s.imported.name : String(s.imported.value);
    return `${key(s.local.name)}: ${T}${key(imported)}`;
  });
  return `{ const ${T} = ${load}; ${R}.declare({${props.join(", ")}}, "const"); }`;
}

function applyEdits(src: string, edits: Edit[]): string {
  let out = src;
  for (const e of [...edits].sort((a, b) => b.start - a.start)) {
    out = out.slice(0, e.start) + e.text + out.slice(e.end);
  }
  return out;
}

/** Relative `import("./x.ts")` means the current directory at the prompt, not this file's. */
function dynamicImports(program: acorn.Program, baseUrl: string, edits: Edit[]): void {
  const visit = (node: unknown): void => {
    if (node === null || typeof node !== "object") return;
    if (Array.isArray(node)) {
      for (const n of node) visit(n);
      return;
    }
    const n = node as acorn.AnyNode;
    if (
      n.type === "ImportExpression" && n.source.type === "Literal" &&
      typeof n.source.value === "string" && /^\.{0,2}\//.test(n.source.value)
    ) {
      edits.push({
        start: n.source.start,
        end: n.source.end,
        text: JSON.stringify(new URL(n.source.value, baseUrl).href),
      });
    }
    for (const [k, v] of Object.entries(n)) {
      if (k !== "loc" && typeof v === "object") visit(v);
    }
  };
  visit(program.body);
}

/** The rewritten program: the body of an async function, and the names it declares. */
export interface Rewritten {
  /** Source of the function body. */
  body: string;
  /** Top-level names declared. */
  declared: string[];
  /** True when the last statement is an expression (its value is returned). */
  hasValue: boolean;
}

/**
 * Rewrites one input for evaluation (see the module doc). Throws SyntaxError.
 *
 * @example
 * ```ts
 * rewrite("const a = 1; a + 1").declared; // ["a"]
 * ```
 */
export function rewrite(code: string, options: EvaluatorOptions = {}): Rewritten {
  const baseUrl = options.baseUrl ?? `file://${Deno.cwd()}/`;
  let { program, source: src } = parseProgram(code);
  const imports: Edit[] = [];
  dynamicImports(program, baseUrl, imports);
  if (imports.length > 0) {
    // Rewrite nested import() specifiers first; the top-level edits below copy source slices.
    src = applyEdits(src, imports);
    program = parse(src);
  }
  const edits: Edit[] = [];
  const declared: string[] = [];
  const hoisted: string[] = [];
  const body = program.body;
  let hasValue = false;
  body.forEach((node, i) => {
    const last = i === body.length - 1;
    switch (node.type) {
      case "VariableDeclaration":
        edits.push({ start: node.start, end: node.end, text: declaration(node, src, declared) });
        break;
      case "FunctionDeclaration":
        // Function declarations hoist: define the global before anything else runs.
        if (node.id !== null) {
          declared.push(node.id.name);
          hoisted.push(`${R}.declare({${key(node.id.name)}: ${node.id.name}}, "function");`);
        }
        break;
      case "ClassDeclaration":
        if (node.id !== null) {
          declared.push(node.id.name);
          edits.push({
            start: node.start,
            end: node.end,
            text: `${R}.declare({${key(node.id.name)}: ${
              src.slice(node.start, node.end)
            }}, "class");`,
          });
        }
        break;
      case "ImportDeclaration":
        edits.push({
          start: node.start,
          end: node.end,
          text: importDeclaration(node, baseUrl, declared),
        });
        break;
      case "ExportNamedDeclaration":
      case "ExportDefaultDeclaration":
      case "ExportAllDeclaration":
        throw new SyntaxError("export is not available at the prompt (declare the name instead)");
      case "ExpressionStatement": {
        const x = node.expression;
        let text = src.slice(x.start, x.end);
        if (
          x.type === "AssignmentExpression" && x.operator === "=" && x.left.type === "Identifier"
        ) {
          // `a = expr` at the prompt declares `a` when it is new (strict mode would throw).
          text = `${R}.assign(${JSON.stringify(x.left.name)}, (${
            src.slice(x.right.start, x.right.end)
          }))`;
          if (!last) edits.push({ start: node.start, end: node.end, text: `${text};` });
        }
        if (last) {
          hasValue = true;
          edits.push({ start: node.start, end: node.end, text: `return (${text});` });
        }
        break;
      }
    }
  });
  let out = src;
  out = applyEdits(out, edits);
  if (out.startsWith("#!")) out = "//" + out.slice(2);
  return { body: hoisted.join(" ") + out, declared, hasValue };
}

type Disposer = () => unknown;

/**
 * Evaluates inputs against `globalThis`, keeping `using` resources until
 * {@linkcode Evaluator.disposeAll}.
 *
 * @example
 * ```ts
 * const ev = new Evaluator();
 * await ev.evaluate("const a = 40");
 * (await ev.evaluate("a + 2")).value; // 42
 * await ev.disposeAll();
 * ```
 */
export class Evaluator {
  readonly #baseUrl: string | undefined;
  readonly #disposers: Disposer[] = [];
  readonly #runtime = {
    declare: (bindings: Record<string, unknown>, kind: Kind | "var?") => {
      for (const name of Object.keys(bindings)) {
        if (kind === "var?" && name in globalThis) continue;
        Object.defineProperty(globalThis, name, {
          value: bindings[name],
          writable: kind !== "const" && kind !== "using",
          enumerable: true,
          configurable: true,
        });
      }
    },
    using: (value: unknown) => {
      if (value === null || value === undefined) return value;
      const dispose = (value as { [Symbol.dispose]?: unknown })[Symbol.dispose];
      if (typeof dispose !== "function") {
        throw new TypeError("using: the value has no [Symbol.dispose]() method");
      }
      this.#disposers.push(() => dispose.call(value));
      return value;
    },
    assign: (name: string, value: unknown) => {
      const g = globalThis as Record<string, unknown>;
      if (name in g) {
        g[name] = value; // strict: a const (read-only) binding throws TypeError
      } else {
        Object.defineProperty(g, name, {
          value,
          writable: true,
          enumerable: true,
          configurable: true,
        });
      }
      return value;
    },
    usingAsync: (value: unknown) => {
      if (value === null || value === undefined) return value;
      const v = value as { [Symbol.asyncDispose]?: unknown; [Symbol.dispose]?: unknown };
      const dispose = v[Symbol.asyncDispose] ?? v[Symbol.dispose];
      if (typeof dispose !== "function") {
        throw new TypeError("await using: the value has no [Symbol.asyncDispose]() method");
      }
      this.#disposers.push(() => dispose.call(value));
      return value;
    },
  };

  constructor(options: EvaluatorOptions = {}) {
    this.#baseUrl = options.baseUrl;
  }

  /** Resources held by `using` at the prompt. */
  get held(): number {
    return this.#disposers.length;
  }

  /** Parses, rewrites and runs one complete input; throws what the input throws. */
  async evaluate(code: string): Promise<EvalResult> {
    const r = rewrite(code, this.#baseUrl === undefined ? {} : { baseUrl: this.#baseUrl });
    const indirectEval = eval;
    const fn = indirectEval(`"use strict"; (async function (${R}) {\n${r.body}\n})`) as (
      runtime: unknown,
    ) => Promise<unknown>;
    const value = await fn(this.#runtime);
    return { value, hasValue: r.hasValue, declared: r.declared };
  }

  /** Disposes every `using` resource, last first; returns the errors it met. */
  async disposeAll(): Promise<unknown[]> {
    const errors: unknown[] = [];
    while (this.#disposers.length > 0) {
      const d = this.#disposers.pop()!;
      try {
        await d();
      } catch (e) {
        errors.push(e);
      }
    }
    return errors;
  }
}

/**
 * Notes for shifts of constants that JavaScript's 32-bit shift gets wrong for
 * a size: `5 << 30` is 1 GiB, `1 << 32` is 1. Sizes want `5 * GiB` (the REPL
 * preloads KiB, MiB, GiB). Returns one line per such shift; none for input
 * that does not parse.
 *
 * @example
 * ```ts
 * shiftNotes("mm.buddy.alloc(5 << 30)");
 * // ["note: 5 << 30 is 1073741824 in JavaScript (shifts are 32-bit); 5 × 2^30 is 5368709120: write 5 * GiB"]
 * ```
 */
export function shiftNotes(code: string): string[] {
  let program: acorn.Program;
  try {
    program = parse(code);
  } catch {
    return [];
  }
  const notes: string[] = [];
  const visit = (n: unknown): void => {
    if (n === null || typeof n !== "object") return;
    if (Array.isArray(n)) return n.forEach(visit);
    const node = n as acorn.Node & Record<string, unknown>;
    if (
      node.type === "BinaryExpression" && node.operator === "<<" &&
      (node.left as acorn.Node).type === "Literal" && (node.right as acorn.Node).type === "Literal"
    ) {
      const a = (node.left as acorn.Literal).value;
      const b = (node.right as acorn.Literal).value;
      if (
        typeof a === "number" && typeof b === "number" && Number.isInteger(a) && Number.isInteger(b)
      ) {
        const js = a << b;
        const math = a * 2 ** b;
        if (js !== math && b >= 0 && b < 64) {
          const unit = b >= 30 ? ["GiB", 30] : b >= 20 ? ["MiB", 20] : ["KiB", 10];
          const k = a * 2 ** (b - (unit[1] as number));
          notes.push(
            `note: ${a} << ${b} is ${js} in JavaScript (shifts are 32-bit); ${a} × 2^${b} is ${math}: write ${k} * ${
              unit[0]
            }`,
          );
        }
      }
    }
    for (const [k, v] of Object.entries(node)) if (k !== "type") visit(v);
  };
  visit(program.body);
  return notes;
}
