/**
 * The man pages (man/pasta.1, man/passt.1) come from the options table that
 * --help comes from: the committed pages are what src/conf/manpage.ts makes
 * now (`bun run man` after changing the table), every option of a command
 * has its entry in that command's page (and in its --help), no option of the
 * other command only does, and groff reads the pages without a warning.
 */
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { Mode } from "../../src/conf/config.ts";
import { MAN_DIR, manPage, optionTag } from "../../src/conf/manpage.ts";
import { helpText, optionsOf } from "../../src/conf/options.ts";

const MODES: Mode[] = ["pasta", "passt"];

/** Text as groff renders it, for the page of mode; null without groff. */
function rendered(mode: Mode): string | null {
  if (!Bun.which("groff")) return null;
  const r = Bun.spawnSync(["groff", "-man", "-Tutf8", "-ww", "-rLL=200n", "-P", "-cbou"], {
    stdin: new TextEncoder().encode(manPage(mode)),
    stdout: "pipe",
    stderr: "pipe",
  });
  expect(r.stderr.toString()).toBe("");
  expect(r.exitCode).toBe(0);
  return r.stdout.toString().replace(/\u2010/g, "-");
}

describe("man pages", () => {
  for (const mode of MODES) {
    test(`man/${mode}.1 is what the options table makes (run: bun run man)`, () => {
      expect(readFileSync(join(MAN_DIR, `${mode}.1`), "utf8")).toBe(manPage(mode));
    });

    test(`every option of ${mode} has its entry, with its short letter and value, as in --help`, async () => {
      const page = manPage(mode);
      const text = rendered(mode);
      const help = await helpText(mode);
      const opts = optionsOf(mode);
      expect(opts.length).toBeGreaterThan(40);
      for (const o of opts) {
        expect(page).toContain(`.TP\n${optionTag(o)}\n`);
        expect(help).toContain(`--${o.long}`);
        if (text === null) continue;
        const names = [o.short ? `-${o.short}` : "", `--${o.long}`, o.alias ? `--${o.alias}` : ""].filter(Boolean).join(", ");
        expect(text).toContain(`\n       ${names}${o.value ? ` ${o.value}` : ""}\n`);
      }
    });

    test(`no option of the other command only is in ${mode}'s page`, () => {
      const page = manPage(mode);
      const own = new Set(optionsOf(mode).map((o) => o.long));
      const other = optionsOf(mode === "pasta" ? "passt" : "pasta").filter((o) => !own.has(o.long));
      expect(other.length).toBeGreaterThan(0);
      for (const o of other) expect(page).not.toContain(`.TP\n${optionTag(o)}\n`);
    });
  }
});
