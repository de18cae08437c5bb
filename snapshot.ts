/**
 * `deno task snapshot --device D -o FILE [--read-only --force] [--range
 * ADDR:SIZE]... [--pdb ADDR]... [--max-bytes N] [--comment TEXT]`: writes a
 * snapshot of the GPU (see `mm/snapshot.ts`) that `--device snap:FILE`
 * reopens offline. A progress line on a terminal; Ctrl-C stops before
 * anything is written (exit 130). Exit code 0 when written, 1 on failure.
 *
 * @module
 */

import {
  closeForCommand,
  DEVICE_HELP,
  DEVICE_OPTIONS,
  openForCommand,
  parseSize,
  Progress,
  reportError,
  sigintAbort,
} from "./cli/common.ts";
import { parseCommand } from "./cli/command.ts";
import { fail, NovaError } from "./hw/errors.ts";
import { DEFAULT_SNAPSHOT_MAX_BYTES, describeSnapshot } from "./mm/snapshot.ts";

const HELP = `deno task snapshot -o FILE [options]

Writes a snapshot of the GPU to FILE (gzip-compressed, self-describing):
chip identity, card state, every register novamm knows that is safe to read
on this chip, and the instance blocks and page tables of BAR1 and of every
address space, as VRAM holds them (firmware's too). Reopen it offline with
--device snap:FILE (add ?scratch to try writes on an in-memory copy).

Nothing is written to the card but the PRAMIN window register, which is put
back; with --read-only not even that (VRAM outside the window as found is
then listed as skipped). A driver-owned card: --read-only --force.

Options:
${DEVICE_HELP}
  -o, --output FILE   the snapshot file to write (required)
  -r, --range R       also capture VRAM R: ADDR:SIZE (e.g. 0x100000:64K); repeatable
      --pdb ADDR      also walk and capture the page tables rooted at ADDR; repeatable
      --max-bytes N   refuse a capture above N bytes (default ${
  DEFAULT_SNAPSHOT_MAX_BYTES / 2 ** 20
}M)
      --comment TEXT  free text stored in the file`;

/** Parses `--range ADDR:SIZE` (sizes as parseSize takes them: 4096, 64K, 0x1000). */
export function parseSnapshotRange(text: string): { addr: number; size: number } {
  const colon = text.indexOf(":");
  if (colon <= 0 || colon === text.length - 1) {
    fail("EINVAL", `--range ${JSON.stringify(text)} is not ADDR:SIZE (e.g. 0x100000:64K)`);
  }
  const addr = parseSize(text.slice(0, colon), "--range address");
  const size = parseSize(text.slice(colon + 1), "--range size");
  if (size === 0) fail("EINVAL", `--range ${JSON.stringify(text)}: the size is 0`);
  return { addr, size };
}

/** Runs the command; returns the exit code. */
export async function main(args: string[]): Promise<number> {
  const parsed = parseCommand(args, {
    ...DEVICE_OPTIONS,
    output: { type: "string", short: "o" },
    range: { type: "string", short: "r", multiple: true },
    pdb: { type: "string", multiple: true },
    "max-bytes": { type: "string" },
    comment: { type: "string" },
  }, HELP);
  if (typeof parsed === "number") return parsed;
  const { values } = parsed;
  let options;
  try {
    if (values.output === undefined || values.output === "") {
      fail("EINVAL", "no output file: pass -o FILE", "deno task snapshot --help");
    }
    options = {
      ranges: (values.range ?? []).map(parseSnapshotRange),
      pdbs: (values.pdb ?? []).map((p) => parseSize(p, "--pdb")),
      maxBytes: values["max-bytes"] === undefined
        ? undefined
        : parseSize(values["max-bytes"], "--max-bytes"),
      comment: values.comment,
    };
  } catch (e) {
    return reportError(e);
  }
  const gpu = await openForCommand(values);
  if (typeof gpu === "number") return gpu;
  using ctrlC = sigintAbort();
  let bar: Progress | null = null;
  let what = "";
  try {
    const { snapshot, bytes, file } = await gpu.snapshot(values.output!, {
      ...options,
      signal: ctrlC.signal,
      onProgress: (done, total, w) => {
        if (w !== what) {
          bar?.done();
          bar = new Progress(`snapshot ${w}`, total);
          what = w;
        }
        bar!.update(done);
      },
    });
    (bar as Progress | null)?.done();
    console.log(`${describeSnapshot(snapshot, bytes)}\nwritten to ${file}`);
    return 0;
  } catch (e) {
    (bar as Progress | null)?.done();
    if (e instanceof NovaError && e.code === "EINTR") {
      reportError(e);
      return 130;
    }
    return reportError(e);
  } finally {
    closeForCommand(gpu);
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
