import { describe, expect, test } from "bun:test";
import { formatIp4, formatIp6, formatMac, parseIp4, parseIp6, type Mode } from "../../src/conf/config.ts";
import type { HostNet, IfSelect } from "../../src/conf/host.ts";
import {
  CAPABILITIES,
  commands,
  detectMode,
  helpText,
  parseArgs,
  parseNetmask,
  versionText,
  type ParseDeps,
  type Parsed,
} from "../../src/conf/options.ts";
import { ruleFor, type PortFwd } from "../../src/fwd/ports.ts";

/** Where port p goes by fwd: its target port, or null when it isn't forwarded. */
function dest(fwd: PortFwd, p: number): number | null {
  const r = ruleFor(fwd, p);
  return r ? r.to + (p - r.first) : null;
}

/** Whether every rule of fwd is an auto rule (and there is one). */
function isAuto(fwd: PortFwd): boolean {
  return fwd.rules.length > 0 && fwd.rules.every((r) => r.scan);
}

/** A dual-stack host on eth0, plus a second interface wlan0. */
function fakeHost(sel: IfSelect): HostNet {
  const v4if = sel.ifname4 ?? "eth0";
  const v6if = sel.ifname6 ?? "eth0";
  return {
    ip4: {
      ifname: v4if,
      ifindex: 2,
      mac: new Uint8Array(6),
      mtu: 1500,
      addrs: [{ addr: parseIp4(v4if === "eth0" ? "192.0.2.2" : "198.51.100.2"), prefixLen: 24 }],
      gw: parseIp4("192.0.2.1"),
    },
    ip6: {
      ifname: v6if,
      ifindex: 2,
      mac: new Uint8Array(6),
      mtu: 1500,
      addrs: [{ addr: parseIp6("2001:db8::2"), prefixLen: 64 }],
      gw: parseIp6("fe80::1"),
    },
  };
}

const DEPS: ParseDeps = {
  discover: fakeHost,
  resolv: () => ({ dns4: [parseIp4("192.0.2.53")], dns6: [], search: ["example.com"] }),
  ephemeral: [49152, 65535],
};

function run(argv: string[], mode: Mode = "pasta"): Extract<Parsed, { action: "run" }> {
  const p = parseArgs(argv, mode, DEPS);
  if (p.action !== "run") throw new Error(`expected run, got ${p.action}`);
  return p;
}

function err(argv: string[], mode: Mode = "pasta"): string {
  try {
    parseArgs(argv, mode, DEPS);
  } catch (e) {
    const msg = (e as Error).message;
    expect(msg).not.toContain("\n");
    return msg;
  }
  throw new Error(`no error for ${argv.join(" ")}`);
}

describe("defaults", () => {
  test("pasta with no arguments", () => {
    const { config, opts } = run([]);
    expect(config.mode).toBe("pasta");
    expect(formatIp4(config.ip4!.addr)).toBe("192.0.2.2");
    expect(formatIp6(config.ip6!.gw)).toBe("fe80::1");
    expect(config.nsIfname).toBe("eth0");
    expect(config.dnsSearch).toEqual(["example.com"]);
    expect(opts.logLevel).toBe("info");
    expect(opts.command).toEqual([]);
    expect(opts.attachPid).toBeNull();
    expect([opts.tcp, opts.udp, opts.tcpNs, opts.udpNs].map(isAuto)).toEqual([true, true, true, true]);
    expect([opts.freebind, opts.splice]).toEqual([false, "on"]);
  });

  test("passt with no arguments", () => {
    const { config, opts } = run([], "passt");
    expect(config.mode).toBe("passt");
    expect([opts.tcp, opts.udp, opts.tcpNs, opts.udpNs].map((f) => f.rules.length)).toEqual([0, 0, 0, 0]);
    expect(opts.socket).toBeNull();
    expect(opts.oneOff).toBe(false);
  });
});

describe("scanning", () => {
  test("short clusters and attached values", () => {
    const { opts } = run(["-dft22", "-l", "/tmp/log"]);
    expect(opts.logLevel).toBe("debug");
    expect(opts.foreground).toBe(true);
    expect(dest(opts.tcp, 22)).toBe(22);
    expect(opts.logFile).toBe("/tmp/log");
  });

  test("long options with = and with a separate value, and prefixes", () => {
    const { opts, config } = run(["--tcp-ports=80", "--pid", "/run/p.pid", "--fore", "--mtu=1500"]);
    expect(dest(opts.tcp, 80)).toBe(80);
    expect(opts.pidFile).toBe("/run/p.pid");
    expect(opts.foreground).toBe(true);
    expect(config.mtu).toBe(1500);
  });

  test("repeated port options accumulate", () => {
    const { opts } = run(["-t", "22", "-t", "8080:80", "--tcp-ports", "1000-1002", "-u", "53", "-T", "631", "-U", "5353"]);
    expect(dest(opts.tcp, 22)).toBe(22);
    expect(dest(opts.tcp, 8080)).toBe(80);
    expect(dest(opts.tcp, 1002)).toBe(1002);
    expect(dest(opts.udp, 53)).toBe(53);
    expect(dest(opts.tcpNs, 631)).toBe(631);
    expect(dest(opts.udpNs, 5353)).toBe(5353);
    expect(isAuto(opts.udp)).toBe(false);
    expect(dest(opts.udp, 54)).toBeNull();
  });

  test("the command starts at the first non-option or after --", () => {
    expect(run(["-f", "ls", "-l", "-t", "x"]).opts.command).toEqual(["ls", "-l", "-t", "x"]);
    expect(run(["--", "-weird", "--x"]).opts.command).toEqual(["-weird", "--x"]);
    expect(run(["--config-net", "sh", "-c", "echo hi"]).opts.command).toEqual(["sh", "-c", "echo hi"]);
  });

  test("a lone number is a PID", () => {
    const { opts } = run(["2446678"]);
    expect(opts.attachPid).toBe(2446678);
    expect(opts.command).toEqual([]);
    expect(run(["sleep", "10"]).opts.attachPid).toBeNull();
  });

  test("--netns by name or path, --userns", () => {
    expect(run(["--netns", "blue"]).opts.netns).toBe("/run/netns/blue");
    const { opts } = run(["--netns=/proc/77/ns/net", "--userns", "/proc/77/ns/user", "--netns-only"]);
    expect(opts.netns).toBe("/proc/77/ns/net");
    expect(opts.userns).toBe("/proc/77/ns/user");
    expect(opts.netnsOnly).toBe(true);
  });

  test("passt options", () => {
    const { opts } = run(["-s", "/tmp/passt.sock", "-1", "-F", "5", "-t", "all"], "passt");
    expect(opts.socket).toBe("/tmp/passt.sock");
    expect(opts.oneOff).toBe(true);
    expect(opts.fd).toBe(5);
    expect(opts.tcp.rules.every((r) => r.weak)).toBe(true);
    expect(dest(opts.tcp, 1)).toBe(1);
    expect(opts.vhostUser).toBe(false);
    expect(run(["--vhost-user", "-s", "/tmp/vu.sock"], "passt").opts.vhostUser).toBe(true);
    expect(() => run(["--vhost-user"], "pasta")).toThrow("--vhost-user is for passt only");
  });
});

describe("forwarding options", () => {
  test("Podman 5: its ports, -u none -T none -U none, and the rest of its line", () => {
    const { opts } = run([
      "--config-net",
      "-t",
      "8080-8080:80-80",
      "-t",
      "127.0.0.1/8081-8081:80-80",
      "--dns-forward",
      "169.254.1.1",
      "-u",
      "none",
      "-T",
      "none",
      "-U",
      "none",
      "--no-map-gw",
      "--quiet",
      "--netns",
      "/run/user/1/netns/x",
    ]);
    expect(opts.tcp.rules.map((r) => [r.addr, r.first, r.to])).toEqual([
      [null, 8080, 80],
      [0x7f000001, 8081, 80],
    ]);
    expect([opts.udp, opts.tcpNs, opts.udpNs].map((f) => f.rules.length)).toEqual([0, 0, 0]);
    const none = run(["-t", "none", "-u", "none", "-T", "none", "-U", "none"]).opts;
    expect([none.tcp, none.udp, none.tcpNs, none.udpNs].map((f) => f.rules.length)).toEqual([0, 0, 0, 0]);
  });

  test("rootlesskit: --ipv4-only -t auto -u auto", () => {
    const { opts } = run(["--ipv4-only", "-t", "auto", "-u", "auto"]);
    expect(isAuto(opts.tcp) && isAuto(opts.udp)).toBe(true);
    expect(opts.tcp.rules.every((r) => r.addr === 0)).toBe(true);
  });

  test("libvirt: --tcp-ports 8089:80", () => {
    expect(dest(run(["--tcp-ports", "8089:80"], "passt").opts.tcp, 8089)).toBe(80);
  });

  test("-4 lets a rule for every address name an IPv4 target", () => {
    expect(run(["-4", "-t", "22:192.0.2.5"]).opts.tcp.rules[0]).toMatchObject({ addr: 0, taddr: 0xc0000205 });
  });

  test("--freebind, --no-splice, --splice-only, --host-lo-to-ns-lo", () => {
    expect(run(["--freebind"]).opts.freebind).toBe(true);
    expect(run(["--freebind"], "passt").opts.freebind).toBe(true);
    expect(run(["--no-splice"]).opts.splice).toBe("off");
    expect(run(["--no-splice"], "passt").opts.splice).toBe("off");
    expect(run(["--splice-only"]).opts.splice).toBe("only");
    expect(run(["--host-lo-to-ns-lo"]).opts.splice).toBe("on");
  });
});

describe("logging options", () => {
  test("levels", () => {
    expect(run(["--trace"]).opts.logLevel).toBe("trace");
    expect(run(["-d", "--trace"]).opts.logLevel).toBe("trace");
    expect(run(["-q"]).opts.logLevel).toBe("quiet");
    expect(err(["-q", "-d"])).toBe("options --quiet and --debug (or --trace) conflict");
  });
  test("log file and size", () => {
    const { opts } = run(["-e", "--log-size", "40960", "-l", "x.log"]);
    expect([opts.logSize, opts.logFile]).toEqual([40960, "x.log"]);
    expect(run([]).opts.logSize).toBe(1048576);
    expect(err(["--log-size", "40959"])).toBe("--log-size 40959: size must be an integer from 40960 to 2147483647");
    expect(err(["--log-size", "0"])).toBe("--log-size 0: size must be an integer from 40960 to 2147483647");
  });
});

describe("Config overrides", () => {
  test("addresses, gateways, netmask, MACs, MTU, interface names", () => {
    const { config } = run([
      "-a",
      "10.0.0.5",
      "-a",
      "2001:db8:1::5",
      "-n",
      "255.255.0.0",
      "-g",
      "10.0.0.1",
      "-g",
      "fe80::9",
      "-M",
      "02:00:00:00:00:aa",
      "--ns-mac-addr",
      "02:00:00:00:00:bb",
      "-m",
      "9000",
      "-I",
      "tap7",
    ]);
    expect(formatIp4(config.ip4!.addr)).toBe("10.0.0.5");
    expect(config.ip4!.prefixLen).toBe(16);
    expect(formatIp4(config.ip4!.gw)).toBe("10.0.0.1");
    expect(formatIp6(config.ip6!.addr)).toBe("2001:db8:1::5");
    expect(formatIp6(config.ip6!.gw)).toBe("fe80::9");
    expect(formatIp6(config.ip6!.ourLL)).toBe("fe80::9");
    expect(formatMac(config.ourMac)).toBe("02:00:00:00:00:aa");
    expect(formatMac(config.nsMac)).toBe("02:00:00:00:00:bb");
    expect(config.mtu).toBe(9000);
    expect(config.nsIfname).toBe("tap7");
  });

  test("-a ADDR/PREFIX: the prefix length comes with the address, for IPv4 and IPv6; -n still works", () => {
    const a = run(["-a", "10.0.0.5/28", "-a", "2001:db8:1::5/80"]).config;
    expect([formatIp4(a.ip4!.addr), a.ip4!.prefixLen]).toEqual(["10.0.0.5", 28]);
    expect([formatIp6(a.ip6!.addr), a.ip6!.prefixLen]).toEqual(["2001:db8:1::5", 80]);
    const b = run(["-a", "10.0.0.5", "-n", "28", "-a", "2001:db8:1::5"]).config;
    expect([b.ip4!.prefixLen, b.ip6!.prefixLen]).toEqual([28, 64]);
    expect(run(["-a", "10.0.0.5"]).config.ip4!.prefixLen).toBe(8);
    expect(run(["-a", "192.0.2.9"]).config.ip4!.prefixLen).toBe(24);
    expect(run(["-a", "10.0.0.5/32", "-a", "10.0.0.6/0"]).config.ip4!.prefixLen).toBe(0);
    expect(run(["-a", "2001:db8:1::5/128"]).config.ip6!.prefixLen).toBe(128);
  });

  test("-i picks the host interface for both versions; --outbound-if4/6 separately", () => {
    const a = run(["-i", "wlan0"]);
    expect(a.config.ip4!.ifname).toBe("wlan0");
    expect(formatIp4(a.config.ip4!.addr)).toBe("198.51.100.2");
    expect(a.config.ip6!.ifname).toBe("wlan0");
    const b = run(["--outbound-if4", "wlan0", "--outbound-if6", "eth0"]);
    expect(b.config.ip4!.ifname).toBe("wlan0");
    expect(b.config.ip6!.ifname).toBe("eth0");
    expect(b.opts.outboundIf4).toBe("wlan0");
    const c = run(["-i", "eth0", "--outbound-if4", "wlan0"]);
    expect(c.config.ip4!.ifname).toBe("eth0");
  });

  test("-o outbound addresses", () => {
    const { opts } = run(["-o", "192.0.2.7", "-o", "2001:db8::7"]);
    expect(formatIp4(opts.outbound4!)).toBe("192.0.2.7");
    expect(formatIp6(opts.outbound6!)).toBe("2001:db8::7");
  });

  test("DNS and search", () => {
    const a = run(["-D", "198.51.100.53", "-D", "2001:db8::53", "-S", "a.example b.example", "--dns-forward", "192.0.2.3"]);
    expect(a.config.ip4!.dns.map(formatIp4)).toEqual(["198.51.100.53"]);
    expect(a.config.ip6!.dns.map((x) => formatIp6(x))).toEqual(["2001:db8::53"]);
    expect(formatIp4(a.config.ip4!.dnsMatch)).toBe("192.0.2.3");
    expect(a.config.dnsSearch).toEqual(["a.example", "b.example"]);
    const b = run(["-D", "none", "-S", "none"]);
    expect(b.config.ip4!.dns).toEqual([]);
    expect(b.config.dnsSearch).toEqual([]);
  });

  test("flags", () => {
    const { config, opts } = run(["--no-dhcp", "--no-ndp", "--no-dhcpv6", "--no-ra", "--no-icmp", "--config-net", "--no-tcp", "--no-udp"]);
    expect([config.noDhcp, config.noNdp, config.noDhcpv6, config.noRa, config.noIcmp, config.configNet]).toEqual(Array(6).fill(true));
    expect([opts.noTcp, opts.noUdp]).toEqual([true, true]);
    expect(config.noUdp).toBe(true);
    expect(run([]).config.noUdp).toBe(false);
  });

  test("DNS servers and search list over DHCP, DHCPv6 and NDP: passt by default, pasta when asked", () => {
    const on = (c: { dhcpDns: boolean; dhcpSearch: boolean }) => [c.dhcpDns, c.dhcpSearch];
    expect(on(run([]).config)).toEqual([false, false]);
    expect(on(run(["--dhcp-dns"]).config)).toEqual([true, false]);
    expect(on(run(["--dhcp-search"]).config)).toEqual([false, true]);
    expect(on(run([], "passt").config)).toEqual([true, true]);
    expect(on(run(["--no-dhcp-dns"], "passt").config)).toEqual([false, true]);
    expect(on(run(["--no-dhcp-search"], "passt").config)).toEqual([true, false]);
  });

  test("--map-host-loopback: the gateway by default, per IP version, 'none', --no-map-gw", () => {
    const map = (argv: string[]) => {
      const { ip4, ip6 } = run(argv).config;
      return [ip4!.mapHostLoopback ? formatIp4(ip4!.mapHostLoopback) : null, ip6!.mapHostLoopback ? formatIp6(ip6!.mapHostLoopback) : null];
    };
    expect(map([])).toEqual(["192.0.2.1", "fe80::1"]);
    expect(map(["--map-host-loopback", "192.0.2.99"])).toEqual(["192.0.2.99", "fe80::1"]);
    expect(map(["--map-host-loopback", "169.254.1.1", "--map-host-loopback", "fe80::99", "--map-host-loopback", "192.0.2.98"])).toEqual([
      "192.0.2.98",
      "fe80::99",
    ]);
    expect(map(["--map-host-loopback", "none"])).toEqual([null, null]);
    expect(map(["--map-host-loopback", "none", "--map-host-loopback", "192.0.2.99"])).toEqual(["192.0.2.99", null]);
    expect(map(["--map-host-loopback", "192.0.2.99", "--map-host-loopback", "none"])).toEqual([null, null]);
    expect(map(["--no-map-gw"])).toEqual([null, null]);
    expect(map(["--no-map-gw", "--map-host-loopback", "2001:db8::99"])).toEqual([null, "2001:db8::99"]);
    for (const bad of ["127.0.0.1", "0.0.0.0", "224.0.0.1", "::1", "::", "ff02::1", "nonsense"]) {
      expect(err(["--map-host-loopback", bad])).toContain(`--map-host-loopback ${bad}`);
    }
  });

  test("--map-guest-addr: none by default, per IP version, 'none'", () => {
    const map = (argv: string[]) => {
      const { ip4, ip6 } = run(argv).config;
      return [ip4!.mapGuestAddr ? formatIp4(ip4!.mapGuestAddr) : null, ip6!.mapGuestAddr ? formatIp6(ip6!.mapGuestAddr) : null];
    };
    expect(map([])).toEqual([null, null]);
    expect(map(["--map-guest-addr", "169.254.1.2"])).toEqual(["169.254.1.2", null]);
    expect(map(["--map-guest-addr", "169.254.1.2", "--map-guest-addr", "fd00::2", "--map-guest-addr", "169.254.1.3"])).toEqual([
      "169.254.1.3",
      "fd00::2",
    ]);
    expect(map(["--map-guest-addr", "169.254.1.2", "--map-guest-addr", "none"])).toEqual([null, null]);
    // it leaves the loopback mapping alone (unlike --map-host-loopback none)
    expect(formatIp4(run(["--map-guest-addr", "none"]).config.ip4!.mapHostLoopback)).toBe("192.0.2.1");
    for (const bad of ["127.0.0.2", "0.0.0.0", "239.1.1.1", "::1", "ff02::2"]) {
      expect(err(["--map-guest-addr", bad])).toContain(`--map-guest-addr ${bad}`);
    }
  });

  test("--dns-host: the first resolv.conf server by default, per IP version", () => {
    const a = run([]).config;
    expect(formatIp4(a.ip4!.dnsHost)).toBe("192.0.2.53");
    expect(a.ip6!.dnsHost).toBeNull();
    const b = run(["--dns-forward", "192.0.2.3", "--dns-host", "198.51.100.53", "--dns-host", "2001:db8:1::53"]).config;
    expect([formatIp4(b.ip4!.dnsMatch), formatIp4(b.ip4!.dnsHost), formatIp6(b.ip6!.dnsHost!)]).toEqual([
      "192.0.2.3",
      "198.51.100.53",
      "2001:db8:1::53",
    ]);
    expect(formatIp4(run(["--dns-host", "127.0.0.53"]).config.ip4!.dnsHost)).toBe("127.0.0.53");
    expect(err(["--dns-host", "0.0.0.0"])).toContain("--dns-host");
    expect(err(["--dns-host", "255.255.255.255"])).toContain("--dns-host");
    expect(err(["--dns-forward", "127.0.0.1"])).toContain("--dns-forward");
    expect(err(["--dns-forward", "::"])).toContain("--dns-forward");
  });

  test("--no-copy-routes, --no-copy-addrs (with --config-net); -a and -g turn copying off for their version", () => {
    const copy = (argv: string[]) => {
      const { ip4, ip6 } = run(["--config-net", ...argv]).config;
      return [ip4!.copyAddrs, ip4!.copyRoutes, ip6!.copyAddrs, ip6!.copyRoutes];
    };
    expect(copy([])).toEqual([true, true, true, true]);
    expect(copy(["--no-copy-routes"])).toEqual([true, false, true, false]);
    expect(copy(["--no-copy-addrs"])).toEqual([false, true, false, true]);
    expect(copy(["-a", "192.0.2.9", "-g", "fe80::9"])).toEqual([false, true, true, false]);
    expect(copy(["-a", "2001:db8::9/64", "-g", "192.0.2.9"])).toEqual([true, false, false, true]);
  });

  test("-H and --fqdn", () => {
    const a = run(["-H", "guest1", "--fqdn", "guest1.example.test"]).config;
    expect([a.hostname, a.fqdn]).toEqual(["guest1", "guest1.example.test"]);
    const b = run([]).config;
    expect([b.hostname, b.fqdn]).toEqual(["", ""]);
    expect(run(["--hostname=h", "--fqdn", "h.example."], "passt").config.fqdn).toBe("h.example.");
  });

  test("-4 and -6", () => {
    expect(run(["-4"]).config.ip6).toBeNull();
    expect(run(["--ipv6-only"]).config.ip4).toBeNull();
  });
});

describe("repeated options: the last one wins, as upstream", () => {
  test("-m, -a, -g, -I", () => {
    const { config } = run([
      "-m",
      "1500",
      "-m",
      "1400",
      "-a",
      "10.0.0.1",
      "-a",
      "10.0.0.2",
      "-g",
      "fe80::1",
      "-g",
      "fe80::2",
      "-I",
      "a",
      "-I",
      "b",
    ]);
    expect(config.mtu).toBe(1400);
    expect(formatIp4(config.ip4!.addr)).toBe("10.0.0.2");
    expect(formatIp6(config.ip6!.gw)).toBe("fe80::2");
    expect(config.nsIfname).toBe("b");
  });
  test("--socket-path is --socket", () => {
    expect(run(["--socket", "/tmp/a", "--socket-path", "/tmp/b"], "passt").opts.socket).toBe("/tmp/b");
  });
});

describe("errors", () => {
  const cases: [string[], string, Mode?][] = [
    [["--bogus"], "unrecognized option '--bogus'"],
    [["-x"], "invalid option -- 'x'"],
    [["--no-dhcp=1"], "option '--no-dhcp' doesn't allow an argument"],
    [["-t"], "option requires an argument -- 't'"],
    [["--mtu"], "option '--mtu' requires an argument"],
    [["--no-dhcp-"], "option '--no-dhcp-' is ambiguous: --no-dhcp-dns, --no-dhcp-search", "passt"],
    [["--dhcp-dns"], "option --dhcp-dns is for pasta only", "passt"],
    [["--dhcp-search"], "option --dhcp-search is for pasta only", "passt"],
    [["--no-dhcp-dns"], "option --no-dhcp-dns is for passt only"],
    [["--no-dhcp-search"], "option --no-dhcp-search is for passt only"],
    [["-m", "40"], "--mtu 40: MTU must be an integer from 68 to 65520"],
    [["-a", "300.0.0.1"], "--address 300.0.0.1: bad IPv4 address: 300.0.0.1"],
    [["-a", "224.0.0.1"], "--address: not a unicast address"],
    [["-a", "127.0.0.1"], "--address: not a unicast address"],
    [["-a", "::1"], "--address: not a unicast address"],
    [["-a", "10.0.0.5/33"], "--address 10.0.0.5/33: prefix length must be an integer from 0 to 32"],
    [["-a", "2001:db8::5/129"], "--address 2001:db8::5/129: prefix length must be an integer from 0 to 128"],
    [["-a", "10.0.0.5/"], "--address 10.0.0.5/: prefix length must be an integer from 0 to 32"],
    [["-a", "10.0.0.5/2x"], "--address 10.0.0.5/2x: prefix length must be an integer from 0 to 32"],
    [["-a", "10.0.0.5/24", "-n", "16"], "--netmask: redundant with the prefix length of --address"],
    [["-n", "16", "-a", "10.0.0.5/24"], "--netmask: redundant with the prefix length of --address"],
    [["-n", "255.0.255.0"], "--netmask 255.0.255.0: not a contiguous netmask"],
    [["-n", "33"], "--netmask 33: prefix length must be an integer from 0 to 32"],
    [["-M", "zz:00:00:00:00:00"], "--mac-addr zz:00:00:00:00:00: bad MAC address: zz:00:00:00:00:00"],
    [["-D", "none", "-D", "192.0.2.1"], "--dns none can't be combined with addresses"],
    [["-S", "bad/name"], "--search: bad domain name 'bad/name'"],
    [["-S", "a..example"], "--search: bad domain name 'a..example'"],
    [["-H", "bad name"], "--hostname bad name: bad name"],
    [["-H", ""], "--hostname : bad name"],
    [["--fqdn", "a..b"], "--fqdn a..b: bad name"],
    [["--fqdn", `${"a".repeat(64)}.example`], `--fqdn ${"a".repeat(64)}.example: bad name`],
    [["-4", "-6"], "options -4 and -6 are mutually exclusive"],
    [["--no-copy-routes"], "--no-copy-routes needs --config-net"],
    [["--no-copy-addrs"], "--no-copy-addrs needs --config-net"],
    [["--no-copy-addrs"], "option --no-copy-addrs is for pasta only", "passt"],
    [["-t", "70000"], "-t 70000: port 70000 out of range 1-65535"],
    [["-t", "auto"], "-t auto: 'auto' port forwarding is only allowed for pasta", "passt"],
    [["-T", "127.0.0.1/80"], "-T 127.0.0.1/80: listening address not allowed for -T"],
    [["-t", "8080", "-t", "none"], "-t none: 'none' conflicts with previous -t options"],
    [
      ["-t", "22:192.0.2.5"],
      "-t 22:192.0.2.5: dual stack forward to IPv4 address 192.0.2.5 unsupported: did you mean 0.0.0.0/... instead?",
    ],
    [["--no-splice", "--host-lo-to-ns-lo"], "--host-lo-to-ns-lo is incompatible with --no-splice"],
    [["--splice-only", "--no-splice"], "--splice-only is incompatible with --no-splice"],
    [["--splice-only"], "option --splice-only is for pasta only", "passt"],
    [["--host-lo-to-ns-lo"], "option --host-lo-to-ns-lo is for pasta only", "passt"],
    [["-T", "22"], "option --tcp-ns is for pasta only", "passt"],
    [["--tcp-ns", "22"], "option --tcp-ns is for pasta only", "passt"],
    [["-s", "/tmp/s"], "option --socket is for passt only"],
    [["-I", "a/b"], "--ns-ifname a/b: bad interface name"],
    [["-i", "this-name-is-too-long"], "--interface this-name-is-too-long: bad interface name"],
    [["--netns", "x", "123"], "--netns can't be given with a PID"],
    [["--netns", "x", "ls"], "--netns can't be given with a command"],
    [["--userns", "/proc/1/ns/user"], "--userns needs --netns or a PID"],
    [["vm.img"], "unexpected argument 'vm.img'", "passt"],
    [["-F", "x"], "option --fd is for passt only"],
    [["-F", "x"], "--fd x: descriptor must be an integer from 0 to 2147483647", "passt"],
  ];
  for (const [argv, msg, mode] of cases) {
    test(`${mode ?? "pasta"} ${argv.join(" ")}`, () => {
      expect(err(argv, mode)).toBe(msg);
    });
  }
});

describe("help, version, mode", () => {
  test("--help and --version skip host discovery", () => {
    const deps: ParseDeps = {
      discover: () => {
        throw new Error("discovered");
      },
      ephemeral: [49152, 65535],
    };
    expect(parseArgs(["--help"], "pasta", deps).action).toBe("help");
    expect(parseArgs(["-h"], "passt", deps).action).toBe("help");
    expect(parseArgs(["--version"], "pasta", deps).action).toBe("version");
    expect(parseArgs(["--print-capabilities"], "passt", deps).action).toBe("print-capabilities");
    expect(parseArgs(["--vhost-user", "--print-capabilities"], "passt", deps).action).toBe("print-capabilities");
    expect(() => parseArgs(["--print-capabilities"], "pasta", deps)).toThrow("for passt only");
    expect(JSON.parse(CAPABILITIES)).toEqual({ type: "net" });
    expect(versionText("passt")).toBe("passt 0.1.0");
  });

  test("help is generated by citty from the declarations, per mode", async () => {
    const pasta = Bun.stripANSI(await helpText("pasta"));
    expect(pasta).toContain("-t, --tcp-ports=<SPEC>");
    expect(pasta).toContain("-T, --tcp-ns=<SPEC>");
    expect(pasta).toContain("--no-dhcp");
    expect(pasta).toContain("PID | COMMAND [ARGS...]");
    const passt = Bun.stripANSI(await helpText("passt"));
    expect(passt).toContain("-s, --socket=<PATH>");
    expect(passt).not.toContain("--tcp-ns");
    expect(commands.passt.meta).toBeDefined();
  });

  test("detectMode", () => {
    expect(detectMode("/usr/bin/passt", {})).toBe("passt");
    expect(detectMode("/usr/bin/passt.avx2", {})).toBe("passt");
    expect(detectMode("/usr/bin/pasta", {})).toBe("pasta");
    expect(detectMode("src/main.ts", {})).toBe("pasta");
    expect(detectMode("src/main.ts", { PASST_MODE: "passt" })).toBe("passt");
    expect(detectMode("/usr/bin/passt", { PASST_MODE: "pasta" })).toBe("pasta");
  });

  test("parseNetmask", () => {
    expect(["255.255.255.0", "255.255.255.255", "0.0.0.0", "255.128.0.0", "24", "0"].map(parseNetmask)).toEqual([24, 32, 0, 9, 24, 0]);
  });
});
