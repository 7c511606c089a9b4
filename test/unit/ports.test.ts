import { describe, expect, test } from "bun:test";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  EPHEMERAL_DEFAULT, finishPortFwd, isExcluded, isForwarded, newPortFwd, parsePortSpec, probeEphemeral,
  targetPort, type PortFwd, type SpecContext,
} from "../../src/fwd/ports.ts";
import { parseIp6 } from "../../src/conf/config.ts";

const PASTA: SpecContext = { mode: "pasta", opt: "-t" };
const PASST: SpecContext = { mode: "passt", opt: "-t" };

function fwdOf(specs: string[], ctx: SpecContext = PASTA): PortFwd {
  const f = newPortFwd();
  for (const s of specs) parsePortSpec(f, s, ctx);
  return f;
}

function forwarded(f: PortFwd): number[] {
  const out: number[] = [];
  for (let p = 0; p < 65536; p++) if (isForwarded(f, p)) out.push(p);
  return out;
}

function range(a: number, b: number): number[] {
  return Array.from({ length: b - a + 1 }, (_, i) => a + i);
}

describe("man page examples", () => {
  test("-t 22", () => {
    const f = fwdOf(["22"]);
    expect(f.mode).toBe("spec");
    expect(forwarded(f)).toEqual([22]);
    expect(targetPort(f, 22)).toBe(22);
    expect(f.rules).toEqual([{ addr: null, ifname: null, first: 22, last: 22, to: 22 }]);
  });

  test("-t 22:23", () => {
    const f = fwdOf(["22:23"]);
    expect(forwarded(f)).toEqual([22]);
    expect(targetPort(f, 22)).toBe(23);
  });

  test("-t 22,25", () => {
    expect(forwarded(fwdOf(["22,25"]))).toEqual([22, 25]);
  });

  test("-t 22-80", () => {
    const f = fwdOf(["22-80"]);
    expect(forwarded(f)).toEqual(range(22, 80));
    expect(targetPort(f, 50)).toBe(50);
  });

  test("-t 22-80:32-90", () => {
    const f = fwdOf(["22-80:32-90"]);
    expect(forwarded(f)).toEqual(range(22, 80));
    expect(targetPort(f, 22)).toBe(32);
    expect(targetPort(f, 80)).toBe(90);
    expect(f.rules).toEqual([{ addr: null, ifname: null, first: 22, last: 80, to: 32 }]);
  });

  test("-t 192.0.2.1/22", () => {
    const f = fwdOf(["192.0.2.1/22"]);
    expect(forwarded(f)).toEqual([22]);
    expect(f.rules[0]!.addr).toBe(0xc0000201);
    expect(f.rules[0]!.ifname).toBeNull();
  });

  test("-t 192.0.2.1%eth0/22", () => {
    const f = fwdOf(["192.0.2.1%eth0/22"]);
    expect(f.rules).toEqual([{ addr: 0xc0000201, ifname: "eth0", first: 22, last: 22, to: 22 }]);
  });

  test("-t 2000-5000,~3000-3010", () => {
    const f = fwdOf(["2000-5000,~3000-3010"]);
    expect(forwarded(f)).toEqual([...range(2000, 2999), ...range(3011, 5000)]);
    expect(isExcluded(f, 3005)).toBe(true);
    expect(f.rules.map((r) => [r.first, r.last, r.to])).toEqual([[2000, 2999, 2000], [3011, 5000, 3011]]);
  });

  test("-t 192.0.2.1/20-30,~25", () => {
    const f = fwdOf(["192.0.2.1/20-30,~25"]);
    expect(forwarded(f)).toEqual([20, 21, 22, 23, 24, 26, 27, 28, 29, 30]);
    expect(f.rules.every((r) => r.addr === 0xc0000201)).toBe(true);
  });

  test("-t ~20000-20010 forwards every non-ephemeral port but those", () => {
    const f = fwdOf(["~20000-20010"], { ...PASTA, ephemeral: [49152, 65535] });
    const got = forwarded(f);
    expect(got).toEqual([...range(1, 19999), ...range(20011, 49151)]);
    expect(f.mode).toBe("spec");
  });
});

describe("addresses", () => {
  test("IPv6 bind address", () => {
    const f = fwdOf(["::1/22"]);
    expect(f.rules[0]!.addr).toEqual(parseIp6("::1"));
  });

  test("interface only", () => {
    const f = fwdOf(["%eth0/8080"]);
    expect(f.rules[0]).toEqual({ addr: null, ifname: "eth0", first: 8080, last: 8080, to: 8080 });
  });

  test("bad address", () => {
    expect(() => fwdOf(["300.1.1.1/22"])).toThrow("-t 300.1.1.1/22: bad IPv4 address: 300.1.1.1");
    expect(() => fwdOf(["/22"])).toThrow("missing address");
    expect(() => fwdOf(["1.2.3.4%/22"])).toThrow("bad interface name");
  });
});

describe("translation", () => {
  test("8080:80 and 1000-1010:2000-2010", () => {
    const f = fwdOf(["8080:80", "1000-1010:2000-2010"]);
    expect(targetPort(f, 8080)).toBe(80);
    expect(targetPort(f, 1005)).toBe(2005);
    expect(forwarded(f)).toEqual([...range(1000, 1010), 8080]);
  });

  test("mismatched range lengths", () => {
    expect(() => fwdOf(["1000-1010:2000-2005"])).toThrow("-t 1000-1010:2000-2005: ranges 1000-1010 and 2000-2005 differ in length");
    expect(() => fwdOf(["1000-1010:2000"])).toThrow("differ in length");
  });
});

describe("modes", () => {
  test("none", () => {
    const f = fwdOf(["none"]);
    expect(f.mode).toBe("none");
    expect(forwarded(f)).toEqual([]);
  });

  test("auto is pasta only", () => {
    expect(fwdOf(["auto"]).mode).toBe("auto");
    expect(() => fwdOf(["auto"], PASST)).toThrow("-t auto: 'auto' is only allowed for pasta");
  });

  test("all is passt only and skips port 0 and ephemeral ports", () => {
    expect(() => fwdOf(["all"])).toThrow("'all' is only allowed for passt");
    const f = fwdOf(["all"], { ...PASST, ephemeral: [32768, 60999] });
    expect(f.mode).toBe("all");
    expect(isForwarded(f, 0)).toBe(false);
    expect(isForwarded(f, 1)).toBe(true);
    expect(isForwarded(f, 32767)).toBe(true);
    expect(isForwarded(f, 32768)).toBe(false);
    expect(isForwarded(f, 60999)).toBe(false);
    expect(isForwarded(f, 61000)).toBe(true);
    expect(isForwarded(f, 65535)).toBe(true);
    expect(f.rules.map((r) => [r.first, r.last])).toEqual([[1, 32767], [61000, 65535]]);
  });

  test("all uses the RFC 6335 range by default", () => {
    const f = fwdOf(["all"], PASST);
    expect(isForwarded(f, 49151)).toBe(true);
    expect(isForwarded(f, 49152)).toBe(false);
    expect(isForwarded(f, 65535)).toBe(false);
  });

  test("specs accumulate; keywords don't mix", () => {
    expect(forwarded(fwdOf(["22", "80-81"]))).toEqual([22, 80, 81]);
    expect(() => fwdOf(["22", "none"])).toThrow("-t none: can't be combined with other -t options");
    expect(() => fwdOf(["auto", "22"])).toThrow("-t 22: can't be combined with 'auto'");
    expect(() => fwdOf(["none", "none"])).toThrow("can't be combined");
  });

  test("same port twice: fine with the same target, an error otherwise", () => {
    const f = fwdOf(["127.0.0.1/22", "::1/22"]);
    expect(f.rules.length).toBe(2);
    expect(() => fwdOf(["22", "22:23"])).toThrow("-t 22:23: port 22 already forwarded to 22");
  });

  test("default mode", () => {
    const a = newPortFwd();
    finishPortFwd(a, "pasta");
    expect(a.mode).toBe("auto");
    const b = newPortFwd();
    finishPortFwd(b, "passt");
    expect(b.mode).toBe("none");
    const c = fwdOf(["22"]);
    finishPortFwd(c, "pasta");
    expect(c.mode).toBe("spec");
  });
});

describe("bad specs", () => {
  const bad: [string, string][] = [
    ["70000", "-t 70000: port 70000 out of range 1-65535"],
    ["0", "port 0 out of range"],
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
  ];
  for (const [spec, msg] of bad) {
    test(`'${spec}'`, () => {
      expect(() => fwdOf([spec])).toThrow(msg);
    });
  }
  test("messages are one line", () => {
    try {
      fwdOf(["22-"]);
    } catch (e) {
      expect((e as Error).message).not.toContain("\n");
    }
  });
});

describe("probeEphemeral", () => {
  const dir = mkdtempSync(join(tmpdir(), "ports-"));
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
