#!/usr/bin/env bun
/**
 * The `passt` command of the package (package.json "bin"). Bun resolves the
 * link in node_modules/.bin before it sets process.argv[1], so a link named
 * passt to src/main.ts would start pasta: this file's name picks the mode
 * instead (detectMode in src/conf/options.ts reads argv[1]'s base name).
 */
import "../src/main.ts";
