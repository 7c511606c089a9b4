/**
 * Logging: one consola instance for the whole program.
 *
 *     if (debugOn) log.debug(`new flow ${formatIp4(addr)}`);
 *
 * The level is chosen by the CLI (setLogLevel). Hot paths test the exported
 * flags (debugOn, traceOn) before building a message, so nothing is
 * formatted, and no template string is evaluated, when the level is off.
 *
 * Lines are written synchronously (writeSync on fd 2 or on the log file):
 * while the main loop sits in epoll_wait Bun's own event loop does not run, so
 * buffered or asynchronous writes would never be flushed. For the same reason
 * consola's repeat throttling, which relies on setTimeout, is switched off.
 */
import { createConsola, type ConsolaInstance, type LogObject } from "consola/core";
import { closeSync, fstatSync, ftruncateSync, openSync, readFileSync, writeSync } from "node:fs";

export type LogLevelName = "quiet" | "info" | "debug" | "trace";

/** consola's numeric levels for each of our names: quiet keeps warnings and errors. */
const LEVELS: Record<LogLevelName, number> = { quiet: 1, info: 3, debug: 4, trace: 5 };
const STDERR_FD = 2;
/** consola throttle window (ms): 0 disables throttling, which would need timers. */
const NO_THROTTLE = 0;

/** True when informational messages are printed (not --quiet). */
export let infoOn = true;
/** True with --debug or --trace: guard debug messages with it. */
export let debugOn = false;
/** True with --trace: guard per-packet messages with it. */
export let traceOn = false;

let outFd = STDERR_FD;
let fileFd = -1;
let filePath = "";
/** --log-size, and the bytes the log file holds now. */
let fileLimit = 0;
let fileLen = 0;
/** When the log file is full, this share of it goes (the oldest lines), as the original. */
const LOG_CUT_RATIO = 0.3;
const startMs = performance.now();

/**
 * The arguments of a log call as text: one string as it is (what util.format
 * does with it), anything else through node:util, loaded only then (its
 * formatter costs about 5 ms of start-up to load).
 */
function formatArgs(args: unknown[]): string {
  if (args.length === 1 && typeof args[0] === "string") return args[0];
  const { formatWithOptions } = require("node:util") as typeof import("node:util");
  return formatWithOptions({ colors: false }, ...args);
}

/**
 * Write one log object as one line: with debug on, prefixed by seconds since
 * start (as the original does), then the formatted arguments.
 */
function writeLine(obj: LogObject): void {
  const msg = formatArgs(obj.args);
  const time = debugOn ? `${((performance.now() - startMs) / 1000).toFixed(4)} ` : "";
  const line = `${time}${msg}\n`;
  try {
    if (outFd === fileFd) writeToFile(line);
    else writeSync(outFd, line);
  } catch {
    /* A logger that cannot write has nowhere to report it: drop the line. */
  }
}

const reporter = { log: writeLine };

/** The program's logger. */
export const log: ConsolaInstance = createConsola({ level: LEVELS.info, reporters: [reporter], throttle: NO_THROTTLE });

/** Set the level of log and the cheap guard flags. */
export function setLogLevel(name: LogLevelName): void {
  const level = LEVELS[name];
  log.level = level;
  infoOn = level >= LEVELS.info;
  debugOn = level >= LEVELS.debug;
  traceOn = level >= LEVELS.trace;
}

/**
 * Send log lines to the file at path (appended, created if missing) instead of
 * standard error, keeping it within limit bytes (--log-size); null goes back to
 * standard error. Throws if the file cannot be opened.
 */
export function setLogFile(path: string | null, limit = Number.MAX_SAFE_INTEGER): void {
  if (fileFd >= 0) closeSync(fileFd);
  fileFd = path === null ? -1 : openSync(path, "a", 0o600);
  outFd = fileFd >= 0 ? fileFd : STDERR_FD;
  filePath = path ?? "";
  fileLimit = limit;
  fileLen = fileFd >= 0 ? fstatSync(fileFd).size : 0;
}

/** Append line to the log file; when it would pass the limit, first drop the oldest lines (at least 30% of the limit). */
function writeToFile(line: string): void {
  const bytes = Buffer.from(line);
  if (fileLen + bytes.length > fileLimit) {
    const old = readFileSync(filePath);
    const keepAtMost = Math.max(0, Math.floor(fileLimit * (1 - LOG_CUT_RATIO)) - bytes.length);
    let cut = Math.max(0, old.length - keepAtMost);
    if (cut > 0 && cut < old.length) cut = old.indexOf(10, cut - 1) + 1 || old.length;
    ftruncateSync(fileFd, 0);
    fileLen = 0;
    if (cut < old.length) fileLen += writeSync(fileFd, old.subarray(cut));
  }
  fileLen += writeSync(fileFd, bytes.subarray(0, Math.max(0, fileLimit - fileLen)));
}
