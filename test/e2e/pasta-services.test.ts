/**
 * What pasta's services and --config-net hand the namespace, seen by real
 * clients: busybox udhcpc and ISC dhclient for DHCP and DHCPv6, the kernel's
 * own view (ip addr, ip route) for --config-net. Each test is one pasta run
 * in the world's host namespace; the guest script records into $OUT.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { hostname } from "node:os";
import { join } from "node:path";
import { ADDR, HOST_IF, createWorld, describeE2E, type World } from "../world.ts";
import { prepareDhclient, type DhcpRecord } from "../tools/dhclient.ts";
import { addrsOf, record, runPasta, waitUntil } from "../tools/pasta.ts";
import { startGuest, startPasst } from "../tools/relay.ts";
import { prepareUdhcpc } from "../tools/udhcpc.ts";

const IF = HOST_IF;

/** sh lines: bring the link up and wait (bounded) for a usable link-local address, as rdisc6 and dhclient -6 need. */
function linkLocal(name: string): string {
  return [
    `ip link set ${IF} up`,
    waitUntil(name, `ip -6 addr show dev ${IF} scope link | grep -q inet6 && ! ip -6 addr show dev ${IF} | grep -q tentative`),
  ].join("\n");
}

/** sh lines: ask for a Router Advertisement with rdisc6, once there is a link-local address. */
function rdisc6(name: string): string {
  return [linkLocal(`${name}-ll`), record(name, `rdisc6 -1 -n -r 5 ${IF}`)].join("\n");
}

/** The DNS fields of a dhclient -4 or -6 lease record. */
function dnsOf(lease: DhcpRecord | undefined): Record<string, string | undefined> {
  const keys = ["new_domain_name_servers", "new_domain_search", "new_domain_name", "new_dhcp6_name_servers", "new_dhcp6_domain_search"];
  return Object.fromEntries(keys.filter((k) => lease?.[k] !== undefined).map((k) => [k, lease![k]]));
}

describeE2E("pasta services (root)", () => {
  let w: World;
  beforeAll(async () => {
    w = await createWorld();
  });
  afterAll(async () => {
    await w?.destroy();
  });

  test("udhcpc, which asks for no MTU, gets the MTU all the same", async () => {
    const u = prepareUdhcpc({ iface: IF });
    try {
      const r = await runPasta(w, [], record("udhcpc", u.shell));
      const why = () => `${r.dump()}\n--- udhcpc records\n${JSON.stringify(u.records(), null, 1)}`;
      expect(r.out("udhcpc.rc").trim(), why()).toBe("0");
      const lease = u.lastBound();
      expect(lease, why()).toMatchObject({ ip: ADDR.host4, subnet: "255.255.255.0", router: ADDR.gw4, mtu: "65520" });
    } finally {
      u.cleanup();
    }
  }, 60000);

  test("pasta hands out DNS servers and search list only with --dhcp-dns and --dhcp-search: dhclient -4, dhclient -6, rdisc6", async () => {
    for (const [args, want] of [[[], false], [["--dhcp-dns", "--dhcp-search"], true]] as const) {
      const d4 = prepareDhclient(4, { iface: IF, noConfig: true });
      const d6 = prepareDhclient(6, { iface: IF, noConfig: true });
      try {
        const r = await runPasta(w, [...args], [record("dhcp4", d4.shell), rdisc6("ra"), record("dhcp6", d6.shell)].join("\n"));
        const why = () => `${args.join(" ")}\n${r.dump()}\n--- dhclient\n${JSON.stringify([d4.records(), d6.records()], null, 1)}`;
        expect([r.out("dhcp4.rc").trim(), r.out("ra.rc").trim(), r.out("dhcp6.rc").trim()], why()).toEqual(["0", "0", "0"]);
        const ra = r.out("ra");
        if (want) {
          expect(dnsOf(d4.lastBound()), why()).toEqual({ new_domain_name_servers: ADDR.dns4, new_domain_search: `${ADDR.searchDomain}.`, new_domain_name: ADDR.searchDomain });
          expect(dnsOf(d6.lastBound()), why()).toEqual({ new_dhcp6_name_servers: ADDR.dns6, new_dhcp6_domain_search: `${ADDR.searchDomain}.` });
          expect(ra, why()).toMatch(new RegExp(`Recursive DNS server\\s*: ${ADDR.dns6}`));
          expect(ra, why()).toMatch(new RegExp(`DNS search list\\s*: ${ADDR.searchDomain}`));
        } else {
          expect(dnsOf(d4.lastBound()), why()).toEqual({});
          expect(dnsOf(d6.lastBound()), why()).toEqual({});
          expect(ra, why()).toContain("Prefix");
          expect(ra, why()).not.toContain("DNS");
        }
      } finally {
        d4.cleanup();
        d6.cleanup();
      }
    }
  }, 120000);

  test("passt hands them out unless --no-dhcp-dns and --no-dhcp-search: dhclient -4 in a relayed guest", async () => {
    for (const [args, want] of [[[], true], [["--no-dhcp-dns", "--no-dhcp-search"], false]] as const) {
      const sock = join(w.dir, `passt-dns-${want}.socket`);
      const passt = await startPasst(w, ["-s", sock, ...args]);
      const d4 = prepareDhclient(4, { iface: IF, noConfig: true });
      try {
        const g = await startGuest(w, ["--socket", sock]);
        try {
          const c = await g.exec(["sh", "-c", d4.shell], { timeoutMs: 40000 });
          const why = () => `${args.join(" ")}: dhclient ${c.code} ${c.stderr}\n${JSON.stringify(d4.records(), null, 1)}\n${passt.stderr()}`;
          expect(d4.lastBound(), why()).toBeDefined();
          const dns = want ? { new_domain_name_servers: ADDR.dns4, new_domain_search: `${ADDR.searchDomain}.`, new_domain_name: ADDR.searchDomain } : {};
          expect(dnsOf(d4.lastBound()), why()).toEqual(dns);
        } finally {
          await g.child.kill();
        }
      } finally {
        d4.cleanup();
        await passt.kill();
      }
    }
  }, 120000);

  test("-a ADDR/PREFIX: udhcpc gets the mask, --config-net sets each address with its prefix length; -n still works", async () => {
    for (const args of [["-a", "192.0.2.5/28"], ["-a", "192.0.2.5", "-n", "28"]]) {
      const u = prepareUdhcpc({ iface: IF });
      try {
        const r = await runPasta(w, args, record("udhcpc", u.shell));
        const why = () => `${args.join(" ")}\n${r.dump()}\n--- udhcpc records\n${JSON.stringify(u.records(), null, 1)}`;
        expect(u.lastBound(), why()).toMatchObject({ ip: "192.0.2.5", subnet: "255.255.255.240", router: ADDR.gw4 });
      } finally {
        u.cleanup();
      }
    }
    const r = await runPasta(w, ["--config-net", "-a", "192.0.2.5/28", "-a", "2001:db8::5/80"], record("addr", "ip -j addr show"));
    const addrs = addrsOf(r.json("addr"), IF).filter((a) => a.scope === "global").map((a) => `${a.local}/${a.prefixlen}`);
    expect(addrs.sort(), r.dump()).toEqual(["192.0.2.5/28", "2001:db8::5/80"]);
  }, 60000);

  test("-H and --fqdn: the namespace's host name; DHCP 12 and 81 (udhcpc, dhclient -4), DHCPv6 39 (dhclient -6)", async () => {
    for (const args of [["-H", "guest1", "--fqdn", "guest1.example.test"], []]) {
      const named = args.length > 0;
      const u = prepareUdhcpc({ iface: IF });
      const d4 = prepareDhclient(4, { iface: IF, noConfig: true });
      const d6 = prepareDhclient(6, { iface: IF, noConfig: true });
      try {
        const script = [record("uts", "hostname"), record("udhcpc", u.shell), record("dhcp4", d4.shell), linkLocal("ll"), record("dhcp6", d6.shell)].join("\n");
        const r = await runPasta(w, args, script);
        const why = () => `${args.join(" ")}\n${r.dump()}\n--- clients\n${JSON.stringify([u.records(), d4.records(), d6.records()], null, 1)}`;
        expect(r.out("uts").trim(), why()).toBe(named ? "guest1" : `pasta-${hostname()}`.slice(0, 64));
        const [lu, l4, l6] = [u.lastBound(), d4.lastBound(), d6.lastBound()];
        expect([lu?.hostname, lu?.opt81], why()).toEqual(named ? ["guest1", "04ffff06677565737431076578616d706c65047465737400"] : [undefined, undefined]);
        expect([l4?.new_host_name, l4?.new_fqdn_fqdn], why()).toEqual(named ? ["guest1", "guest1.example.test"] : [undefined, undefined]);
        expect(l6?.new_fqdn_fqdn, why()).toEqual(named ? "guest1.example.test" : undefined);
      } finally {
        u.cleanup();
        d4.cleanup();
        d6.cleanup();
      }
    }
  }, 60000);
});
