/**
 * Run busybox udhcpc against the DHCP server under test without touching the
 * machine's files: its -s script is a private one that only records the
 * environment udhcpc hands it (ip, subnet, router, dns, mtu, hostname...) and
 * configures nothing.
 *
 *   const u = prepareUdhcpc({ iface: "eth0" });
 *   // in the guest namespace:  sh -c u.shell   (one lease, then exit)
 *   const lease = u.lastBound();   // { reason: "bound", ip: "192.0.2.2", mtu: "65520", ... }
 *   u.cleanup();
 *
 * udhcpc asks for subnet, router, DNS, hostname, domain and broadcast only
 * (no MTU): what it gets beyond that, the server sent unasked.
 */
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseDhcpRecords, type DhcpRecord } from "./dhclient.ts";

/** The script: one block of key=value lines per event, ended by "---" (the format dhclient.ts parses). */
const SCRIPT = `#!/bin/sh
# Private udhcpc script of a test: records, configures nothing.
{
	echo "reason=$1"
	env | grep -E '^[a-z][a-z0-9_]*=' | LC_ALL=C sort
	echo "---"
} >>"$(dirname "$0")/udhcpc.out"
exit 0
`;

export interface Udhcpc {
  dir: string;
  outFile: string;
  /** A /bin/sh command (a subshell): get one lease in the foreground and exit with udhcpc's status. */
  shell: string;
  records(): DhcpRecord[];
  /** The last "bound" or "renew" record. */
  lastBound(): DhcpRecord | undefined;
  cleanup(): void;
}

/** busybox's path: /bin/busybox from busybox-static, else whatever is on PATH. */
function findBusybox(): string {
  if (existsSync("/bin/busybox")) return "/bin/busybox";
  const w = Bun.which("busybox");
  if (!w) throw new Error("busybox not found (apt-get install busybox-static)");
  return w;
}

export function prepareUdhcpc(opts: { iface?: string; extraArgs?: string[] } = {}): Udhcpc {
  const dir = mkdtempSync(join(tmpdir(), "udhcpc-"));
  chmodSync(dir, 0o777);
  const script = join(dir, "script");
  const outFile = join(dir, "udhcpc.out");
  writeFileSync(script, SCRIPT);
  chmodSync(script, 0o755);
  writeFileSync(outFile, "");
  chmodSync(outFile, 0o666);
  const iface = opts.iface ?? "eth0";
  const argv = [findBusybox(), "udhcpc", "-i", iface, "-f", "-q", "-n", "-t", "5", "-T", "1", "-s", script, ...(opts.extraArgs ?? [])];
  const records = () => (existsSync(outFile) ? parseDhcpRecords(readFileSync(outFile, "utf8")) : []);
  return {
    dir,
    outFile,
    shell: `(ip link set ${iface} up; ${argv.map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(" ")})`,
    records,
    lastBound: () =>
      records()
        .filter((r) => r.reason === "bound" || r.reason === "renew")
        .at(-1),
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}
