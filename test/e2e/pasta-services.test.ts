/**
 * What pasta's services and --config-net hand the namespace, seen by real
 * clients: busybox udhcpc and ISC dhclient for DHCP and DHCPv6, the kernel's
 * own view (ip addr, ip route) for --config-net. Each test is one pasta run
 * in the world's host namespace; the guest script records into $OUT.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { ADDR, HOST_IF, createWorld, describeE2E, type World } from "../world.ts";
import { record, runPasta } from "../tools/pasta.ts";
import { prepareUdhcpc } from "../tools/udhcpc.ts";

const IF = HOST_IF;

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
});
