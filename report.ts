/**
 * `deno task report [--device D] [-o FILE]`: one self-contained HTML page
 * with the VRAM map (zoomable to 4 KiB), every address space's table tree
 * and VA coverage, a walk of each address space's first mapping and the
 * registers novamm knows, each with its text form. Nothing is written to
 * the card: on a bare card the page shows it as found (BAR1 physical, no
 * tables); `--bring-up` brings BAR1 up first and maps a buffer, to see
 * novamm's tables (simulator or a card lent for it).
 *
 * @module
 */

import {
  closeForCommand,
  DEVICE_HELP,
  DEVICE_OPTIONS,
  openFromFlags,
  reportError,
} from "./cli/common.ts";
import { parseCommand } from "./cli/command.ts";
import { fail, formatSize } from "./hw/errors.ts";

const HELP = `deno task report [options]

Writes one self-contained HTML page (no network) picturing the GPU: the VRAM
map (firmware's regions, allocations, page tables, instance blocks, the
PRAMIN window, what BAR1 reaches; zoom with the wheel), each address space's
page-table tree and VA coverage, a walk, and the registers novamm knows.

Options:
${DEVICE_HELP}
  -o, --output FILE  where to write the page (default report.html; - for stdout)
      --bring-up     bring BAR1 up and map a 2 MiB buffer first (writes to the
                     card: not with --read-only)
      --no-registers leave the register section out (no register reads)`;

/** Runs the command; returns the exit code. */
export async function main(args: string[]): Promise<number> {
  const parsed = parseCommand(args, {
    ...DEVICE_OPTIONS,
    output: { type: "string", short: "o", default: "report.html" },
    "bring-up": { type: "boolean", default: false },
    "no-registers": { type: "boolean", default: false },
  }, HELP);
  if (typeof parsed === "number") return parsed;
  const { values } = parsed;
  const output = values.output;
  if (output === "") return reportError(fail("EINVAL", "--output is empty"));
  let gpu;
  try {
    if (values["bring-up"] && values["read-only"]) {
      fail("EINVAL", "--bring-up writes to the card: it cannot be used with --read-only");
    }
    gpu = await openFromFlags({
      device: values.device,
      readOnly: values["read-only"],
      force: values.force,
    });
  } catch (e) {
    return reportError(e);
  }
  try {
    if (values["bring-up"]) {
      const a = gpu.mm.buddy.alloc(2 * 2 ** 20, { label: "report buffer" });
      gpu.bar1.map(a, { writable: true });
    }
    const { reportHtml } = await import("./views/page.ts");
    const html = await reportHtml(gpu, { registers: !values["no-registers"] });
    if (output === "-") {
      await Deno.stdout.write(new TextEncoder().encode(html));
    } else {
      Deno.writeTextFileSync(output, html);
      console.log(
        `wrote ${output} (${formatSize(html.length)}): ${gpu.chip.name} on ${gpu.device.spec}`,
      );
    }
    return 0;
  } catch (e) {
    return reportError(e);
  } finally {
    closeForCommand(gpu);
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
