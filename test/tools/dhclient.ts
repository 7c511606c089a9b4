/**
 * Run ISC dhclient (-4 or -6) against the DHCP/DHCPv6 server under test without
 * ever touching the machine's files: private config (-cf), lease (-lf) and pid
 * (-pf) files in a temp dir, and a private script (-sf, test/tools/dhclient-script)
 * that records what was received and configures the interface with `ip`.
 *
 *   const d = prepareDhclient(4, { iface: "eth0" });
 *   // in the guest namespace (e.g. as pasta's command):
 *   //   sh -c d.shell        (runs dhclient once, stops it, exits with its code)
 *   const lease = d.lastBound();      // { new_ip_address: "192.0.2.2", ... }
 *   d.cleanup();
 *
 * Everything lives in one directory that any user can write (the client may
 * run as "root" of an unprivileged user namespace), so the script and, where
 * AppArmor would confine /sbin/dhclient to its own script, the binary, are
 * copied there.
 */

import { chmodSync, copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export const DHCLIENT_SCRIPT = join(import.meta.dir, "dhclient-script");

export type DhcpRecord = Record<string, string> & { reason: string; interface: string };

export interface DhclientOptions {
  /** interface in the guest (default "eth0") */
  iface?: string;
  /** directory for the private files (default: a new temp dir) */
  dir?: string;
  /** dhclient's `timeout` in seconds, how long it tries before giving up (default 20) */
  timeoutSec?: number;
  /** pass -d: stay in the foreground (the caller must stop it) */
  foreground?: boolean;
  /** only record what was received, do not configure the interface */
  noConfig?: boolean;
  /** extra dhclient.conf statements */
  extraConf?: string;
}

export interface Dhclient {
  family: 4 | 6;
  iface: string;
  dir: string;
  /** where the script appends its records */
  outFile: string;
  /** what `ip` printed when the script configured something that failed */
  logFile: string;
  leaseFile: string;
  pidFile: string;
  confFile: string;
  script: string;
  binary: string;
  /** full dhclient command line */
  argv: string[];
  /**
   * A /bin/sh command (a subshell, composable): run dhclient once (it goes to
   * the background after the first lease, exits non-zero when it gets none in
   * time), then stop the background client by its pid file; its status is
   * dhclient's. The pid file holds a pid of the namespace dhclient ran in, so
   * this stops it from inside, where a pid namespace makes outside pids useless.
   */
  shell: string;
  /** every record the script wrote so far */
  records(): DhcpRecord[];
  /** the last BOUND/RENEW/REBIND/REBOOT (or ...6) record */
  lastBound(): DhcpRecord | undefined;
  cleanup(): void;
}

const BOUND4 = new Set(["BOUND", "RENEW", "REBIND", "REBOOT"]);
const BOUND6 = new Set(["BOUND6", "RENEW6", "REBIND6", "REBOOT6"]);

/** Parse the script's record file: blocks of key=value lines ended by "---". */
export function parseDhcpRecords(text: string): DhcpRecord[] {
  const out: DhcpRecord[] = [];
  let cur: Record<string, string> = {};
  for (const line of text.split("\n")) {
    if (line === "---") {
      if (cur.reason !== undefined) out.push(cur as DhcpRecord);
      cur = {};
      continue;
    }
    const eq = line.indexOf("=");
    if (eq > 0) cur[line.slice(0, eq)] = line.slice(eq + 1);
  }
  return out;
}

function shQuote(s: string): string {
  return /^[A-Za-z0-9_\-./=:,@+]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

function findDhclient(): string {
  for (const p of ["/usr/sbin/dhclient", "/sbin/dhclient"]) if (existsSync(p)) return p;
  const w = Bun.which("dhclient");
  if (!w) throw new Error("dhclient not found (apt-get install isc-dhcp-client)");
  return w;
}

function apparmorEnabled(): boolean {
  try {
    return readFileSync("/sys/module/apparmor/parameters/enabled", "utf8").trim() === "Y";
  } catch {
    return false;
  }
}

export function prepareDhclient(family: 4 | 6, opts: DhclientOptions = {}): Dhclient {
  const iface = opts.iface ?? "eth0";
  const dir = opts.dir ?? mkdtempSync(join(tmpdir(), `dhclient${family}-`));
  chmodSync(dir, 0o777);
  const ownDir = !opts.dir;
  const f = (n: string) => join(dir, n);
  const outFile = f(`dhcp${family}.out`);
  const logFile = `${outFile}.log`;
  const leaseFile = f(`dhclient${family}.leases`);
  const pidFile = f(`dhclient${family}.pid`);
  const confFile = f(`dhclient${family}.conf`);
  const script = f("dhclient-script");

  copyFileSync(DHCLIENT_SCRIPT, script);
  chmodSync(script, 0o755);
  for (const p of [outFile, logFile, leaseFile]) {
    writeFileSync(p, "");
    chmodSync(p, 0o666);
  }

  let binary = findDhclient();
  if (apparmorEnabled()) {
    // The distribution profile confines /sbin/dhclient to its own script and
    // lease paths; a copy under another path is not confined by it.
    const copy = f("dhclient");
    copyFileSync(binary, copy);
    chmodSync(copy, 0o755);
    binary = copy;
  }

  writeFileSync(
    confFile,
    [
      "# private dhclient.conf of a test",
      "option rfc3442-classless-static-routes code 121 = array of unsigned integer 8;",
      `timeout ${opts.timeoutSec ?? 20};`,
      "retry 1;",
      "initial-interval 1;",
      "request subnet-mask, broadcast-address, time-offset, routers,",
      "        domain-name, domain-name-servers, domain-search, host-name,",
      "        dhcp6.name-servers, dhcp6.domain-search, dhcp6.fqdn,",
      "        interface-mtu, rfc3442-classless-static-routes;",
      opts.extraConf ?? "",
      "",
    ].join("\n"),
  );
  chmodSync(confFile, 0o644);

  const argv = [
    binary,
    family === 4 ? "-4" : "-6",
    "-1",
    "-v",
    ...(opts.foreground ? ["-d"] : []),
    "-cf",
    confFile,
    "-sf",
    script,
    "-lf",
    leaseFile,
    "-pf",
    pidFile,
    "-e",
    `PASTATEST_DHCP_OUT=${outFile}`,
    ...(opts.noConfig ? ["-e", "PASTATEST_DHCP_NOCONFIG=1"] : []),
    iface,
  ];
  const cmd = argv.map(shQuote).join(" ");
  const pf = shQuote(pidFile);
  // A subshell, so that it composes: "(...); echo $?" goes on after it.
  // The background client writes its pid file just after the foreground one
  // exits: wait for it (bounded) before stopping the client.
  const shell =
    `(${cmd}; rc=$?; i=0; ` +
    `while [ $rc = 0 ] && [ ! -s ${pf} ] && [ $i -lt 30 ]; do sleep 0.1; i=$((i+1)); done; ` +
    `if [ -s ${pf} ]; then kill "$(cat ${pf})" 2>/dev/null; fi; exit $rc)`;

  const records = () => (existsSync(outFile) ? parseDhcpRecords(readFileSync(outFile, "utf8")) : []);
  return {
    family,
    iface,
    dir,
    outFile,
    logFile,
    leaseFile,
    pidFile,
    confFile,
    script,
    binary,
    argv,
    shell,
    records,
    lastBound() {
      const set = family === 4 ? BOUND4 : BOUND6;
      return records()
        .filter((r) => set.has(r.reason))
        .at(-1);
    },
    cleanup() {
      if (ownDir) rmSync(dir, { recursive: true, force: true });
    },
  };
}
