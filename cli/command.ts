/**
 * A command-line tool's arguments ({@linkcode parseCommand}): apart from cli/common.ts because
 * it loads node's `parseArgs`, which the REPL's evaluation thread (which imports common.ts)
 * must not load before its first prompt.
 *
 * @module
 */

import { parseArgs, type ParseArgsConfig } from "node:util";
import { reportError } from "./common.ts";

/** A command's option table, as `parseArgs` takes it. */
type CommandOptions = NonNullable<ParseArgsConfig["options"]>;

const HELP_OPTION = { help: { type: "boolean", short: "h", default: false } } as const;

/** What {@linkcode parseCommand} gives back: the flags' values and the positionals. */
export type ParsedCommand<O extends CommandOptions> = ReturnType<
  typeof parseArgs<{
    args: string[];
    options: O & typeof HELP_OPTION;
    strict: true;
    allowPositionals: true;
  }>
>;

/**
 * A command's arguments: `options` (and `-h/--help`) parsed strictly. Returns the parsed
 * values and positionals, or the exit code when the command is done: 0 after printing `help`,
 * or that of the one-line error a bad flag (or, without `positionals`, any positional) gives.
 *
 * @example
 * ```ts
 * import { DEVICE_OPTIONS } from "./common.ts";
 * const r = parseCommand(["-d", "sim:gh100"], DEVICE_OPTIONS, "usage: ...");
 * if (typeof r !== "number") r.values.device; // "sim:gh100"
 * ```
 */
export function parseCommand<O extends CommandOptions>(
  args: string[],
  options: O,
  help: string,
  { positionals = false }: { positionals?: boolean } = {},
): ParsedCommand<O> | number {
  let parsed: ParsedCommand<O>;
  try {
    parsed = parseArgs({
      args,
      options: { ...options, ...HELP_OPTION },
      strict: true,
      allowPositionals: positionals,
    }) as unknown as ParsedCommand<O>;
  } catch (e) {
    return reportError(e);
  }
  if ((parsed.values as { help?: boolean }).help) {
    console.log(help);
    return 0;
  }
  return parsed;
}
