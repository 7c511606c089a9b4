/**
 * The port spec parser (src/fwd/ports.ts): every example of the original's
 * man page, the specs Podman, rootlesskit and libvirt pass, the target
 * address grammar, and what is refused.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  EPHEMERAL_DEFAULT,
  finishPortFwd,
  formatRule,
  newPortFwd,
  parsePortSpec,
  probeEphemeral,
  ruleFor,
  type FwdRule,
  type PortFwd,
  type SpecContext,
} from "../../src/fwd/ports.ts";
import { parseIp6 } from "../../src/conf/config.ts";

const EPH: [number, number] = [49152, 65535];
const PASTA: SpecContext = { mode: "pasta", opt: "-t", ephemeral: EPH };
const PASST: SpecContext = { mode: "passt", opt: "-t", ephemeral: EPH };

function fwdOf(specs: string[], ctx: SpecContext = PASTA): PortFwd {
  const f = newPortFwd();
  for (const s of specs) parsePortSpec(f, s, ctx);
  return f;
}

/** The rules as [first, last, to] triples. */
function runs(f: PortFwd): number[][] {
  return f.rules.map((r) => [r.first, r.last, r.to]);
}

/** A rule with the defaults of a plain spec. */
function rule(spec: string, first: number, last: number, to: number, more: Partial<FwdRule> = {}): FwdRule {
  return { addr: null, ifname: null, first, last, to, taddr: null, weak: false, scan: false, origin: `-t ${spec}`, ...more };
}

describe("man page examples", () => {
  test("-t 22", () => {
    expect(fwdOf(["22"]).rules).toEqual([rule("22", 22, 22, 22)]);
  });

  test("-t 22:23", () => {
    expect(fwdOf(["22:23"]).rules).toEqual([rule("22:23", 22, 22, 23)]);
  });

  test("-t 22,25", () => {
    expect(runs(fwdOf(["22,25"]))).toEqual([
      [22, 22, 22],
      [25, 25, 25],
    ]);
  });

  test("-t 22-80", () => {
    expect(fwdOf(["22-80"]).rules).toEqual([rule("22-80", 22, 80, 22)]);
  });

  test("-t 22-80:32-90", () => {
    expect(fwdOf(["22-80:32-90"]).rules).toEqual([rule("22-80:32-90", 22, 80, 32)]);
  });

  test("-t 192.0.2.1/22", () => {
    expect(fwdOf(["192.0.2.1/22"]).rules).toEqual([rule("192.0.2.1/22", 22, 22, 22, { addr: 0xc0000201 })]);
  });

  test("-t 192.0.2.1%eth0/22", () => {
    expect(fwdOf(["192.0.2.1%eth0/22"]).rules).toEqual([rule("192.0.2.1%eth0/22", 22, 22, 22, { addr: 0xc0000201, ifname: "eth0" })]);
  });

  test("-t %eth0/22", () => {
    expect(fwdOf(["%eth0/22"]).rules).toEqual([rule("%eth0/22", 22, 22, 22, { ifname: "eth0" })]);
  });

  test("-t 0.0.0.0/5000:192.0.2.5/6000: IPv4 only, to another address and port", () => {
    expect(fwdOf(["0.0.0.0/5000:192.0.2.5/6000"]).rules).toEqual([
      rule("0.0.0.0/5000:192.0.2.5/6000", 5000, 5000, 6000, { addr: 0, taddr: 0xc0000205 }),
    ]);
  });

  test("-t 127.0.0.6/all:192.0.2.6: every non-ephemeral port, best effort", () => {
    const origin = "-t 127.0.0.6/all:192.0.2.6";
    const more = { addr: 0x7f000006, taddr: 0xc0000206, weak: true, origin };
    expect(fwdOf(["127.0.0.6/all:192.0.2.6"]).rules).toEqual([{ ...rule("", 1, 49151, 1), ...more }]);
  });

  test("-t 2000-5000,~3000-3010", () => {
    expect(runs(fwdOf(["2000-5000,~3000-3010"]))).toEqual([
      [2000, 2999, 2000],
      [3011, 5000, 3011],
    ]);
  });

  test("-t 10-40,~20-30,~25-27,~29-33,~5-12,~40-50: overlapping and outlying exclusions", () => {
    expect(runs(fwdOf(["10-40,~20-30,~25-27,~29-33,~5-12,~40-50"]))).toEqual([
      [13, 19, 13],
      [34, 39, 34],
    ]);
  });

  test("-t 192.0.2.1/20-30,~25", () => {
    const f = fwdOf(["192.0.2.1/20-30,~25"]);
    expect(runs(f)).toEqual([
      [20, 24, 20],
      [26, 30, 26],
    ]);
    expect(f.rules.every((r) => r.addr === 0xc0000201)).toBe(true);
  });

  test("-t ~20000-20010: every non-ephemeral port but those, best effort", () => {
    const f = fwdOf(["~20000-20010"]);
    expect(runs(f)).toEqual([
      [1, 19999, 1],
      [20011, 49151, 20011],
    ]);
    expect(f.rules.every((r) => r.weak && !r.scan)).toBe(true);
  });

  test("-t auto: every non-ephemeral port, while bound in the namespace", () => {
    const f = fwdOf(["auto"], { ...PASTA, ephemeral: [32768, 60999] });
    expect(runs(f)).toEqual([
      [1, 32767, 1],
      [61000, 65535, 61000],
    ]);
    expect(f.rules.every((r) => r.weak && r.scan && r.addr === null)).toBe(true);
  });

  test("-t ::1/auto", () => {
    const f = fwdOf(["::1/auto"]);
    expect(f.rules.every((r) => r.scan && r.addr instanceof Uint8Array)).toBe(true);
    expect(f.rules[0]!.addr).toEqual(parseIp6("::1"));
  });

  test("-t 8000-8010,auto: those ports only, while bound, and they must bind", () => {
    expect(fwdOf(["8000-8010,auto"]).rules).toEqual([rule("8000-8010,auto", 8000, 8010, 8000, { scan: true })]);
  });

  test("-t all, in both programs", () => {
    for (const ctx of [PASTA, PASST]) {
      const f = fwdOf(["all"], { ...ctx, ephemeral: [32768, 60999] });
      expect(runs(f)).toEqual([
        [1, 32767, 1],
        [61000, 65535, 61000],
      ]);
      expect(f.rules.every((r) => r.weak && !r.scan)).toBe(true);
    }
  });

  test("-t ::1/all", () => {
    const f = fwdOf(["::1/all"]);
    expect(f.rules[0]!.addr).toEqual(parseIp6("::1"));
    expect(runs(f)).toEqual([[1, 49151, 1]]);
  });

  test("no ranges at all means all: ephemeral ports from the RFC 6335 range by default", () => {
    const f = fwdOf(["all"], { mode: "passt", opt: "-t" });
    expect(ruleFor(f, 49151)).not.toBeNull();
    expect(ruleFor(f, 49152)).toBeNull();
    expect(ruleFor(f, 65535)).toBeNull();
  });
});

describe("what integrators pass", () => {
  test("Podman: -t 8080-8080:80-80 and -t 127.0.0.1/8081-8081:80-80", () => {
    const f = fwdOf(["8080-8080:80-80", "127.0.0.1/8081-8081:80-80"]);
    expect(f.rules).toEqual([
      rule("8080-8080:80-80", 8080, 8080, 80),
      rule("127.0.0.1/8081-8081:80-80", 8081, 8081, 80, { addr: 0x7f000001 }),
    ]);
  });

  test("Podman: -t none (and no default after it)", () => {
    const f = fwdOf(["none"]);
    expect(f.rules).toEqual([]);
    finishPortFwd(f, PASTA);
    expect(f.rules).toEqual([]);
  });

  test("rootlesskit: -t auto", () => {
    expect(fwdOf(["auto"]).rules.every((r) => r.scan)).toBe(true);
  });

  test("libvirt: 8089:80", () => {
    expect(runs(fwdOf(["8089:80"], PASST))).toEqual([[8089, 8089, 80]]);
  });
});

describe("addresses", () => {
  test("'*' and an empty prefix listen on every address", () => {
    expect(fwdOf(["*/22"]).rules[0]!.addr).toBeNull();
    expect(fwdOf(["/22"]).rules[0]!.addr).toBeNull();
    expect(fwdOf(["*%eth0/22"]).rules[0]).toMatchObject({ addr: null, ifname: "eth0" });
  });

  test("IPv6, with and without brackets", () => {
    expect(fwdOf(["::1/22"]).rules[0]!.addr).toEqual(parseIp6("::1"));
    expect(fwdOf(["[::1]/22"]).rules[0]!.addr).toEqual(parseIp6("::1"));
    const f = fwdOf(["[::]/22:[2001:db8::5]/23"]);
    expect(f.rules[0]).toMatchObject({ addr: new Uint8Array(16), taddr: parseIp6("2001:db8::5"), to: 23 });
  });

  test("a target address alone keeps the port", () => {
    expect(fwdOf(["0.0.0.0/22:192.0.2.5"]).rules[0]).toMatchObject({ first: 22, to: 22, taddr: 0xc0000205 });
  });

  test("with one IP version, every address means every address of that version", () => {
    const v4 = fwdOf(["22:192.0.2.5"], { ...PASTA, ip6: false });
    expect(v4.rules[0]).toMatchObject({ addr: 0, taddr: 0xc0000205 });
    expect(fwdOf(["22"], { ...PASTA, ip4: false }).rules[0]!.addr).toEqual(new Uint8Array(16));
    expect(() => fwdOf(["127.0.0.1/22"], { ...PASTA, ip4: false })).toThrow("-t 127.0.0.1/22: IPv4 forward, but IPv4 not enabled");
    expect(() => fwdOf(["::1/22"], { ...PASTA, ip6: false })).toThrow("IPv6 forward, but IPv6 not enabled");
  });

  test("targets that can't be honoured", () => {
    expect(() => fwdOf(["22:192.0.2.5"])).toThrow(
      "-t 22:192.0.2.5: dual stack forward to IPv4 address 192.0.2.5 unsupported: did you mean 0.0.0.0/... instead?",
    );
    expect(() => fwdOf(["5000:192.0.2.5/6000"])).toThrow("dual stack forward to IPv4 address");
    expect(() => fwdOf(["22:[2001:db8::5]/22"])).toThrow("did you mean [::]/... instead?");
    expect(() => fwdOf(["::1/22:192.0.2.5"])).toThrow("-t ::1/22:192.0.2.5: forward from IPv6 (::1) to IPv4 (192.0.2.5) unsupported");
    expect(() => fwdOf(["0.0.0.0/22:224.0.0.1"])).toThrow("multicast target address 224.0.0.1");
    expect(() => fwdOf(["0.0.0.0/22:1.2.3.400/23"])).toThrow("bad address '1.2.3.400'");
  });

  test("bad prefixes", () => {
    expect(() => fwdOf(["300.1.1.1/22"])).toThrow("-t 300.1.1.1/22: bad port '300.1.1.1/22'");
    expect(() => fwdOf(["1.2.3.4%/22"])).toThrow("bad interface name");
    expect(() => fwdOf(["%./22"])).toThrow("bad interface name '.'");
    expect(() => fwdOf(["%averyveryverylongname/22"])).toThrow("bad interface name");
  });

  test("-T and -U take no listening address", () => {
    for (const opt of ["-T", "-U"]) {
      const ctx = { ...PASTA, opt };
      expect(() => fwdOf(["127.0.0.1/80"], ctx)).toThrow(`${opt} 127.0.0.1/80: listening address not allowed for ${opt}`);
      expect(() => fwdOf(["*/80"], ctx)).toThrow("listening address not allowed");
      expect(runs(fwdOf(["80:8080"], ctx))).toEqual([[80, 80, 8080]]);
    }
  });
});

describe("combining specs", () => {
  test("specs accumulate", () => {
    expect(runs(fwdOf(["22", "80-81"]))).toEqual([
      [22, 22, 22],
      [80, 81, 80],
    ]);
  });

  test("none first is fine, none after rules is not", () => {
    expect(runs(fwdOf(["none", "22"]))).toEqual([[22, 22, 22]]);
    expect(() => fwdOf(["22", "none"])).toThrow("-t none: 'none' conflicts with previous -t options");
  });

  test("overlapping ports on matching addresses conflict", () => {
    expect(() => fwdOf(["22", "22:23"])).toThrow("-t 22:23: forwarding configuration conflict: */22 => 23 versus */22 => 22 (-t 22)");
    expect(() => fwdOf(["20-30", "127.0.0.1/25"])).toThrow("conflict");
    expect(() => fwdOf(["0.0.0.0/22", "127.0.0.1/22"])).toThrow("conflict");
    expect(() => fwdOf(["22,22"])).toThrow("conflict");
    expect(() => fwdOf(["auto", "22"])).toThrow("conflict");
  });

  test("the same port on addresses that can't meet is fine", () => {
    expect(fwdOf(["127.0.0.1/22", "::1/22", "127.0.0.2/22:23"]).rules.length).toBe(3);
    expect(fwdOf(["0.0.0.0/22", "::/22"]).rules.length).toBe(2);
  });

  test("auto is pasta only; all doesn't mix with ranges", () => {
    expect(() => fwdOf(["auto"], PASST)).toThrow("-t auto: 'auto' port forwarding is only allowed for pasta");
    expect(() => fwdOf(["all,22"], PASST)).toThrow("'all' can't be combined with port ranges");
  });

  test("default: auto for pasta, nothing for passt", () => {
    const a = newPortFwd();
    finishPortFwd(a, PASTA);
    expect(a.rules.length).toBeGreaterThan(0);
    expect(a.rules.every((r) => r.scan && r.weak && r.origin === "-t auto")).toBe(true);
    const b = newPortFwd();
    finishPortFwd(b, PASST);
    expect(b.rules).toEqual([]);
    const c = fwdOf(["22"]);
    finishPortFwd(c, PASTA);
    expect(runs(c)).toEqual([[22, 22, 22]]);
  });

  test("formatRule", () => {
    expect(formatRule(fwdOf(["127.0.0.1%lo/8080-8081:80-81"]).rules[0]!)).toBe("127.0.0.1%lo/8080-8081 => 80-81");
    expect(formatRule(fwdOf(["[::]/22:[2001:db8::5]/23"]).rules[0]!)).toBe("::/22 => 2001:db8::5/23");
  });
});

describe("bad specs", () => {
  const bad: [string, string][] = [
    ["70000", "-t 70000: port 70000 out of range 1-65535"],
    ["0", "port 0 out of range"],
    ["22:0", "port 0 out of range"],
    ["80-22", "-t 80-22: reversed range 80-22"],
    ["22,", "empty port"],
    ["", "empty port"],
    ["abc", "bad port 'abc'"],
    ["22-", "bad port '22-'"],
    ["22:", "empty port"],
    ["~", "empty port"],
    ["22x", "bad port '22x'"],
    ["1-2-3", "bad port '1-2-3'"],
    ["~22:23", "bad port '22:23'"],
    ["1000-1010:2000-2005", "ranges 1000-1010 and 2000-2005 differ in length"],
    ["1000-1010:2000", "differ in length"],
    ["65535:65534-65535", "differ in length"],
  ];
  for (const [spec, msg] of bad) {
    test(`'${spec}'`, () => {
      expect(() => fwdOf([spec])).toThrow(msg);
    });
  }
  test("messages are one line", () => {
    for (const [spec] of bad) {
      try {
        fwdOf([spec]);
      } catch (e) {
        expect((e as Error).message).not.toContain("\n");
      }
    }
  });
});

describe("probeEphemeral", () => {
  const dir = mkdtempSync(join(tmpdir(), "ports-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  test("reads the sysctl format", () => {
    const p = join(dir, "range");
    writeFileSync(p, "32768\t60999\n");
    expect(probeEphemeral(p)).toEqual([32768, 60999]);
  });
  test("falls back to RFC 6335", () => {
    expect(probeEphemeral(join(dir, "missing"))).toEqual(EPHEMERAL_DEFAULT);
    const p = join(dir, "junk");
    writeFileSync(p, "hello");
    expect(probeEphemeral(p)).toEqual(EPHEMERAL_DEFAULT);
  });
});
