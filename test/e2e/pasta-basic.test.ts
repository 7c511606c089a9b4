/**
 * pasta end to end, as root: what a guest gets from real clients (dhclient -4,
 * the kernel's SLAAC, dhclient -6), ping through ICMP echo sockets,
 * --config-net without any client, the exit status of the command, and a
 * pcap of a DHCP exchange read back by tshark.
 *
 * Each group of checks is one pasta run; the guest script writes its results
 * to files (see test/tools/pasta.ts) that the tests then parse.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { ADDR, HOST_IF, createWorld, describeE2E, run, type World } from "../world.ts";
import { prepareDhclient } from "../tools/dhclient.ts";
import { addrsOf, clientScript, pastaArgv, record, runPasta } from "../tools/pasta.ts";

/** pasta names the guest's interface after the host's outbound one. */
const IF = HOST_IF;
const MTU = 65520;

/** nameservers and search domains of a resolv.conf text */
function resolvOf(text: string): { ns4: string[]; ns6: string[]; search: string[] } {
  const ns = [...text.matchAll(/^nameserver\s+(\S+)/gm)].map((m) => m[1]!);
  const search = [...text.matchAll(/^search\s+(.+)$/gm)].flatMap((m) => m[1]!.trim().split(/\s+/));
  return { ns4: ns.filter((a) => !a.includes(":")), ns6: ns.filter((a) => a.includes(":")), search };
}

/** domain names as dhclient reports them: space separated, maybe with trailing dots */
function names(v: string | undefined): string[] {
  return (v ?? "")
    .split(/\s+/)
    .filter(Boolean)
    .map((n) => n.replace(/\.$/, ""));
}

describeE2E("pasta (root)", () => {
  let w: World;
  beforeAll(async () => {
    w = await createWorld();
  });
  afterAll(async () => {
    await w?.destroy();
  });

  test("dhclient -4, SLAAC, dhclient -6 and ping from the guest", async () => {
    const d4 = prepareDhclient(4, { iface: IF });
    const d6 = prepareDhclient(6, { iface: IF });
    try {
      const r = await runPasta(w, ["--dhcp-dns", "--dhcp-search"], clientScript(IF, d4, d6));
      const why = () =>
        `${r.dump()}\n--- dhclient -4 records\n${JSON.stringify(d4.records(), null, 1)}\n--- dhclient -6 records\n${JSON.stringify(d6.records(), null, 1)}`;
      expect(r.code, why()).toBe(0);

      // DHCP: address, gateway, MTU; DNS and search list (asked for) as the host's resolv.conf
      expect(r.out("dhcp4.rc").trim(), why()).toBe("0");
      const host = resolvOf(w.resolvConf);
      const b4 = d4.lastBound();
      expect(b4, why()).toBeDefined();
      expect(b4).toMatchObject({ interface: IF, new_ip_address: ADDR.host4, new_subnet_mask: "255.255.255.0", new_routers: ADDR.gw4 });
      expect(Number(b4!.new_interface_mtu), why()).toBe(MTU);
      expect(names(b4!.new_domain_name_servers)).toEqual(host.ns4);
      expect(names(b4!.new_domain_search), why()).toEqual(host.search);

      // SLAAC: a global address in the host's /64, default route via its link-local gateway
      expect(r.out("slaac").trim(), why()).toBe("1");
      const slaac = addrsOf(r.json("slaac-addr"), IF).filter((a) => a.scope === "global");
      expect(slaac.length, why()).toBeGreaterThan(0);
      expect(
        slaac.some((a) => a.local.startsWith("2001:db8::") && a.prefixlen === 64),
        why(),
      ).toBe(true);
      const def6 = r.json<any[]>("slaac-route").find((x) => x.dst === "default");
      expect(def6, why()).toMatchObject({ gateway: ADDR.gwLL, dev: IF });

      // DHCPv6: the host's address, DNS and search list
      expect(r.out("dhcp6.rc").trim(), why()).toBe("0");
      const b6 = d6.lastBound();
      expect(b6, why()).toBeDefined();
      expect(b6).toMatchObject({ interface: IF, new_ip6_address: ADDR.host6 });
      expect(names(b6!.new_dhcp6_name_servers), why()).toEqual(host.ns6);
      if (b6!.new_dhcp6_domain_search !== undefined) expect(names(b6!.new_dhcp6_domain_search)).toEqual(host.search);

      // what the guest ends up with
      const addrs = addrsOf(r.json("addr"), IF).map((a) => `${a.local}/${a.prefixlen}`);
      expect(addrs, why()).toContain(`${ADDR.host4}/24`);
      expect(addrs, why()).toContain(`${ADDR.host6}/128`);
      const link = r.json<any[]>("addr").find((l) => l.ifname === IF);
      expect(link.mtu).toBe(MTU);
      expect(link.flags).toContain("UP");
      const def4 = r.json<any[]>("route4").find((x) => x.dst === "default");
      expect(def4, why()).toMatchObject({ gateway: ADDR.gw4, dev: IF });

      // ICMP echo through pasta to the remote addresses
      expect(`${r.out("ping4.rc").trim()} ${r.out("ping4")}${r.out("ping4.err")}`, why()).toMatch(/^0 .*1 received/s);
      expect(`${r.out("ping6.rc").trim()} ${r.out("ping6")}${r.out("ping6.err")}`, why()).toMatch(/^0 .*1 received/s);
    } finally {
      d4.cleanup();
      d6.cleanup();
    }
  }, 120000);

  test("--config-net: addresses, routes and MTU without any client", async () => {
    const script = [
      record("addr", "ip -j addr show"),
      record("route4", "ip -j -4 route show"),
      record("route6", "ip -j -6 route show"),
      record("ping4", `ping -c1 -W5 ${ADDR.remote4}`),
    ].join("\n");
    const r = await runPasta(w, ["--config-net"], script);
    expect(r.code, r.dump()).toBe(0);
    const links = r.json<any[]>("addr");
    const link = links.find((l) => l.ifname === IF);
    expect(link, r.dump()).toBeDefined();
    expect(link.mtu).toBe(MTU);
    expect(link.flags).toContain("UP");
    expect(links.find((l) => l.ifname === "lo")?.flags).toContain("UP");
    const addrs = addrsOf(links, IF).map((a) => `${a.local}/${a.prefixlen}`);
    expect(addrs, r.dump()).toContain(`${ADDR.host4}/${ADDR.prefix4}`);
    expect(addrs, r.dump()).toContain(`${ADDR.host6}/${ADDR.prefix6}`);
    expect(
      r.json<any[]>("route4").find((x) => x.dst === "default"),
      r.dump(),
    ).toMatchObject({ gateway: ADDR.gw4, dev: IF });
    expect(
      r.json<any[]>("route6").find((x) => x.dst === "default"),
      r.dump(),
    ).toMatchObject({ gateway: ADDR.gwLL, dev: IF });
    expect(r.out("ping4.rc").trim(), r.dump()).toBe("0");
  }, 60000);

  test("pasta exits with the command's status", async () => {
    for (const status of [0, 7, 255]) {
      const r = await w.exec(w.host, pastaArgv(["--", "sh", "-c", `exit ${status}`]), { timeoutMs: 30000 });
      expect(r.code, `${r.stderr}${r.stdout}`).toBe(status);
    }
  }, 60000);

  test("-p: a pcap of the DHCP exchange, read back by tshark", async () => {
    if (!Bun.which("tshark")) throw new Error("tshark is not installed (apt-get install tshark)");
    const d4 = prepareDhclient(4, { iface: IF });
    const pcap = join(w.dir, "dhcp.pcap");
    try {
      const r = await runPasta(w, ["-p", pcap], record("dhcp4", d4.shell));
      expect(r.code, r.dump()).toBe(0);
      expect(r.out("dhcp4.rc").trim(), r.dump()).toBe("0");
      expect(existsSync(pcap)).toBe(true);
      // Wireshark 3.0 renamed the "bootp" protocol to "dhcp"
      let t = run(["tshark", "-n", "-r", pcap, "-Y", "dhcp", "-T", "fields", "-e", "dhcp.option.dhcp"]);
      if (t.code !== 0) t = run(["tshark", "-n", "-r", pcap, "-Y", "bootp", "-T", "fields", "-e", "bootp.option.dhcp"]);
      expect(t.code, t.stderr).toBe(0);
      // DHCP message types: 1 Discover, 2 Offer, 3 Request, 5 ACK
      const types = t.stdout
        .split("\n")
        .map((l) => l.trim())
        .filter(Boolean);
      expect(types.slice(0, 4), t.stdout).toEqual(["1", "2", "3", "5"]);
    } finally {
      d4.cleanup();
    }
  }, 60000);
});
