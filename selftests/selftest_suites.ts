/**
 * Every self-test suite by name, for `deno task selftest` and the test runner.
 *
 * @module
 */

import type { SelfTestSuite } from "./selftest.ts";
import { praminSuite } from "./selftest_pramin.ts";
import { bar1Suite } from "./selftest_bar1.ts";

/** Suites by name, in the order they run. */
export const SUITES: Readonly<Record<string, SelfTestSuite>> = {
  pramin: praminSuite,
  bar1: bar1Suite,
};
