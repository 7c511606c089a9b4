#!/usr/bin/env bun
/**
 * Entry point of both programs: `pasta` (network namespaces) and `passt`
 * (virtual machines). The name it was started by, or PASST_MODE, picks the
 * mode; the command line is parsed once, then the right run takes over.
 *
 * Errors in the command line or in set-up print one line and exit with
 * status 1; nothing is left half set up (see src/pasta.ts).
 */
import { CAPABILITIES, detectMode, helpText, parseArgs, versionText, type RunOptions } from "./conf/options.ts";
import { log, setLogFile, setLogLevel } from "./log.ts";
import { goesToBackground, runInBackground } from "./daemon.ts";
import { checkPastaRunas } from "./conf/runas.ts";
import { programName } from "./self.ts";

/** User namespace plan for pasta, decided before anything else runs. */
async function userNamespacePlan(opts: RunOptions): Promise<import("./ns/ns.ts").UserNsPlan> {
  const { sys } = await import("./native/ffi.ts");
  if (opts.netnsOnly || (sys.shim_geteuid() === 0 && !opts.userns)) return { kind: "none" };
  if (opts.userns) return { kind: "join", path: opts.userns };
  if (opts.attachPid !== null) return { kind: "join", path: `/proc/${opts.attachPid}/ns/user` };
  if (opts.netns !== null) return { kind: "none" };
  return { kind: "new" };
}

function defaultCommand(): string[] {
  return [process.env.SHELL || "/bin/sh"];
}

async function main(): Promise<number> {
  const mode = detectMode(programName());
  const parsed = parseArgs(process.argv.slice(2), mode);
  if (parsed.action !== "run") {
    if (parsed.action === "print-capabilities") process.stdout.write(CAPABILITIES);
    else process.stdout.write(parsed.action === "help" ? await helpText(mode) : versionText(mode) + "\n");
    return 0;
  }
  const { config, opts } = parsed;
  config.outbound4 = opts.outbound4 ?? 0;
  config.outbound6 = opts.outbound6;
  config.outboundIf4 = opts.outboundIf4;
  config.outboundIf6 = opts.outboundIf6;
  setLogLevel(opts.logLevel);
  if (opts.logFile) setLogFile(opts.logFile, opts.logSize);
  if (mode === "pasta") checkPastaRunas(opts.runas);
  if (goesToBackground(mode, opts)) return runInBackground(mode === "passt" ? opts.fd : null);
  if (mode === "passt") return import("./passt.ts").then(({ runPasst, passtRunOf }) => runPasst(config, passtRunOf(opts)));
  const { enterUserNamespace } = await import("./ns/ns.ts");
  enterUserNamespace(await userNamespacePlan(opts));
  const { runPasta } = await import("./pasta.ts");
  return runPasta(config, {
    command: opts.command.length ? opts.command : defaultCommand(),
    attachPid: opts.attachPid,
    netns: opts.netns,
    pidFile: opts.pidFile,
    statsDelay: opts.statsDelay,
    pcap: opts.pcap,
    tcp: opts.noTcp ? null : opts.tcp,
    tcpNs: opts.noTcp ? null : opts.tcpNs,
    udp: opts.noUdp ? null : opts.udp,
    udpNs: opts.noUdp ? null : opts.udpNs,
    quitWithNetns: !opts.noNetnsQuit,
    freebind: opts.freebind,
    splice: opts.splice,
  });
}

main().then(
  (code) => process.exit(code),
  (e: unknown) => {
    const msg = e instanceof Error ? e.message : String(e);
    if (process.env.PASTA_DEBUG_STACK) log.error(e);
    process.stderr.write(`${detectMode(programName())}: ${msg}\n`);
    process.exit(1);
  },
);
