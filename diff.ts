/**
 * `deno task diff A B [--json]`: compares two snapshot files (`gpu.snapshot`,
 * `deno task snapshot`, an imported mmiotrace) and prints what differs:
 * registers by name with the fields that changed, page-table entries by
 * address space and VA (old and new decoded), VRAM captured in only one of
 * them and captured VRAM that changed (`mm/snapshot_diff.ts`). Exit status
 * as diff(1): 0 the same, 1 different, 2 trouble.
 *
 * @module
 */

import { formatError } from "./cli/common.ts";
import { parseCommand } from "./cli/command.ts";
import { fail } from "./hw/errors.ts";
import { readSnapshotFile } from "./hw/snap/format.ts";
import { diffSnapshots, diffToJson } from "./mm/snapshot_diff.ts";

const HELP = `deno task diff A B [options]

Compares two novamm snapshot files and prints what differs from A to B:
registers (by name, with the fields that changed), page-table entries of
each address space by VA (runs of consecutive entries merged into one VA
range, the first entry's old and new words decoded), VRAM captured in only
one of them, and VRAM captured in both whose bytes changed. A table one
snapshot did not capture is listed, and the VA under it is not compared.
Exit status: 0 the same, 1 different, 2 an error.

Options:
      --json        print the difference as JSON (addresses and words as hex strings)
      --max-items N list at most N items per section (default 1000; counts are whole)
  -h, --help        this text`;

/** Runs the command; returns the exit status. */
export async function main(args: string[]): Promise<number> {
  try {
    const parsed = parseCommand(
      args,
      {
        json: { type: "boolean", default: false },
        "max-items": { type: "string" },
      },
      HELP,
      { positionals: true },
    );
    if (typeof parsed === "number") return parsed === 0 ? 0 : 2; // 2: trouble, as below
    const { values, positionals } = parsed;
    if (positionals.length !== 2) {
      fail(
        "EINVAL",
        `diff takes two snapshot files (got ${positionals.length})`,
        "usage: deno task diff A B [--json]",
      );
    }
    let maxItems: number | undefined;
    if (values["max-items"] !== undefined) {
      maxItems = Number(values["max-items"]);
      if (!Number.isSafeInteger(maxItems) || maxItems < 0) {
        fail("EINVAL", `--max-items ${values["max-items"]} is not a non-negative integer`);
      }
    }
    const [pathA, pathB] = positionals;
    const a = await readSnapshotFile(pathA);
    const b = await readSnapshotFile(pathB);
    const d = await diffSnapshots(a, b, { labels: [pathA, pathB], maxItems });
    console.log(values.json ? JSON.stringify(diffToJson(d), null, 2) : Deno.inspect(d));
    return d.same ? 0 : 1;
  } catch (e) {
    console.error(formatError(e));
    return 2;
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
