import { describe, expect, test } from "bun:test";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseResolvConf, readResolvConf } from "../../src/conf/resolv.ts";
import { formatIp4, formatIp6 } from "../../src/conf/config.ts";

function show(text: string) {
  const r = parseResolvConf(text);
  return { dns4: r.dns4.map(formatIp4), dns6: r.dns6.map((a) => formatIp6(a)), search: r.search };
}

describe("parseResolvConf", () => {
  test("systemd-resolved stub style", () => {
    const text = [
      "# This is /run/systemd/resolve/stub-resolv.conf managed by man:systemd-resolved(8).",
      "# Do not edit.",
      "",
      "nameserver 127.0.0.53",
      "options edns0 trust-ad",
      "search example.com lab.example.com",
    ].join("\n");
    expect(show(text)).toEqual({ dns4: ["127.0.0.53"], dns6: [], search: ["example.com", "lab.example.com"] });
  });

  test("IPv4 and IPv6 servers, zone ids, order and duplicates", () => {
    const text = [
      "nameserver 192.0.2.53",
      "nameserver 2001:db8::53",
      "nameserver fe80::1%eth0",
      "nameserver 198.51.100.1",
      "nameserver 192.0.2.53",
      "nameserver 2001:db8:0:0::53",
    ].join("\n");
    expect(show(text)).toEqual({
      dns4: ["192.0.2.53", "198.51.100.1"],
      dns6: ["2001:db8::53", "fe80::1"],
      search: [],
    });
  });

  test("comments, tabs, CRLF, junk", () => {
    const text = [
      "; old-style comment",
      "\tnameserver\t10.0.0.1   # trailing comment",
      "nameserver 10.0.0.2\r",
      "nameserver not-an-address",
      "nameserver 300.1.1.1",
      "nameserver",
      "#nameserver 10.9.9.9",
      "sortlist 130.155.160.0/255.255.240.0",
    ].join("\n");
    expect(show(text)).toEqual({ dns4: ["10.0.0.1", "10.0.0.2"], dns6: [], search: [] });
  });

  test("search and domain: the last one wins", () => {
    expect(show("domain a.example\nsearch b.example c.example\n").search).toEqual(["b.example", "c.example"]);
    expect(show("search b.example c.example\ndomain a.example\n").search).toEqual(["a.example"]);
  });

  test("empty text", () => {
    expect(show("")).toEqual({ dns4: [], dns6: [], search: [] });
  });
});

describe("readResolvConf", () => {
  test("reads a file, and a missing file gives empty lists", () => {
    const dir = mkdtempSync(join(tmpdir(), "resolv-"));
    const p = join(dir, "resolv.conf");
    writeFileSync(p, "nameserver 192.0.2.1\nsearch x.example\n");
    const r = readResolvConf(p);
    expect(r.dns4).toEqual([0xc0000201]);
    expect(r.search).toEqual(["x.example"]);
    expect(readResolvConf(join(dir, "none"))).toEqual({ dns4: [], dns6: [], search: [] });
  });
});
