/**
 * pasta's promise, "no privileges": the basic flow (dhclient -4, SLAAC,
 * dhclient -6, ping) with pasta started by an ordinary user, without any
 * capability. pasta makes its user namespace itself (re-executing through
 * `unshare --user --map-root-user`); the guest is "root" there only.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { ADDR, HOST_IF, createWorld, describeE2E, ensureTestUser, repoForUser, type TestUser, type World } from "../world.ts";
import { prepareDhclient } from "../tools/dhclient.ts";
import { addrsOf, clientScript, record, runPasta } from "../tools/pasta.ts";

const IF = HOST_IF;

describeE2E("pasta as an unprivileged user", () => {
  let w: World;
  let user: TestUser;
  let repo: string;
  beforeAll(async () => {
    w = await createWorld();
    user = ensureTestUser();
    repo = repoForUser(user);
  });
  afterAll(async () => {
    await w?.destroy();
  });

  test("dhclient -4, SLAAC, dhclient -6 and ping, in a user namespace pasta made", async () => {
    const d4 = prepareDhclient(4, { iface: IF });
    const d6 = prepareDhclient(6, { iface: IF });
    try {
      const script = [record("id", "id -u"), record("uid_map", "cat /proc/self/uid_map"), clientScript(IF, d4, d6)].join("\n");
      const r = await runPasta(w, [], script, { user, repo });
      const why = () =>
        `${r.dump()}\n--- dhclient -4 records\n${JSON.stringify(d4.records(), null, 1)}\n--- dhclient -6 records\n${JSON.stringify(d6.records(), null, 1)}`;
      expect(r.code, why()).toBe(0);

      // root inside, the test user outside
      expect(r.out("id").trim(), why()).toBe("0");
      expect(r.out("uid_map").trim().split(/\s+/), why()).toEqual(["0", String(user.uid), "1"]);

      expect(r.out("dhcp4.rc").trim(), why()).toBe("0");
      expect(d4.lastBound(), why()).toMatchObject({ interface: IF, new_ip_address: ADDR.host4, new_routers: ADDR.gw4 });

      expect(r.out("slaac").trim(), why()).toBe("1");
      const slaac = addrsOf(r.json("slaac-addr"), IF).filter((a) => a.scope === "global");
      expect(
        slaac.some((a) => a.local.startsWith(ADDR.net6) && a.prefixlen === 64),
        why(),
      ).toBe(true);
      expect(
        r.json<any[]>("slaac-route").find((x) => x.dst === "default"),
        why(),
      ).toMatchObject({ gateway: ADDR.gwLL, dev: IF });

      expect(r.out("dhcp6.rc").trim(), why()).toBe("0");
      expect(d6.lastBound(), why()).toMatchObject({ interface: IF, new_ip6_address: ADDR.host6 });

      const addrs = addrsOf(r.json("addr"), IF).map((a) => `${a.local}/${a.prefixlen}`);
      expect(addrs, why()).toContain(`${ADDR.host4}/24`);
      expect(addrs, why()).toContain(`${ADDR.host6}/128`);

      expect(`${r.out("ping4.rc").trim()} ${r.out("ping4")}${r.out("ping4.err")}`, why()).toMatch(/^0 .*1 received/s);
      expect(`${r.out("ping6.rc").trim()} ${r.out("ping6")}${r.out("ping6.err")}`, why()).toMatch(/^0 .*1 received/s);
    } finally {
      d4.cleanup();
      d6.cleanup();
    }
  }, 120000);

  test("exit status of the command, unprivileged", async () => {
    const r = await runPasta(w, [], "exit 7", { user, repo });
    expect(r.code, r.dump()).toBe(7);
  }, 60000);
});
