/**
 * passt with a real virtual machine: QEMU (TCG always: see QEMU_ACCEL) boots the machine's own kernel with a busybox initramfs
 * (test/tools/qemu/), connected to passt's UNIX socket with
 * `-netdev stream`. The guest loads virtio-net, brings eth0 up, gets its
 * address with udhcpc, downloads a file from an HTTP server on the host's
 * loopback through the gateway address, and prints its SHA-256 on the serial
 * console, which must match.
 *
 * Skips with one line when QEMU, a kernel with its modules or a static
 * busybox is missing (Debian: qemu-system-x86 linux-image-amd64 busybox-static).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { ADDR, BUN, canRunE2E, createWorld, describeE2E, type Child, type World } from "../world.ts";
import { startPasst } from "../tools/relay.ts";
import { buildInitramfs, findGuest, type GuestKernel } from "../tools/qemu/initramfs.ts";
import { guestInit, MARK_FAIL, MARK_OK, qemuGuestArgv, UDHCPC_SCRIPT } from "../tools/qemu/guest.ts";

const HTTP_PORT = 18080;
/** Boot, DHCP and download under TCG take some tens of seconds; this bounds it. */
const BOOT_TIMEOUT_MS = 120_000;

const guest = findGuest();

if (canRunE2E().ok && !guest.ok) {
  console.log(`SKIP passt with QEMU: ${guest.reason}`);
  describe.skip("passt with a QEMU guest", () => {
    test("skipped", () => {});
  });
} else {
  describeE2E("passt with a QEMU guest", () => {
    let w: World;
    beforeAll(async () => {
      w = await createWorld();
    });
    afterAll(async () => {
      await w?.destroy();
    });

    test(
      "DHCP, then a file over HTTP from the host's loopback via the gateway, checksum matches",
      async () => {
        const k = guest as GuestKernel;
        const data = new Uint8Array(3 << 20);
        for (let off = 0; off < data.length; off += 65536) crypto.getRandomValues(data.subarray(off, off + 65536));
        const file = join(w.dir, "payload");
        writeFileSync(file, data);
        const sha = createHash("sha256").update(data).digest("hex");

        const http = w.spawn(w.host, [
          BUN,
          "-e",
          `Bun.serve({ hostname: "127.0.0.1", port: ${HTTP_PORT}, fetch: () => new Response(Bun.file(${JSON.stringify(file)})) }); console.log("http ready");`,
        ]);
        await http.waitFor("http ready", { timeoutMs: 15000 });

        const sock = join(w.dir, "passt.socket");
        const passt = await startPasst(w, ["-s", sock]);

        const img = join(w.dir, "initramfs.cpio");
        buildInitramfs(img, k, guestInit(`http://${ADDR.gw4}:${HTTP_PORT}/payload`), { "/udhcpc.sh": UDHCPC_SCRIPT });
        const qemu: Child = w.spawn(null, [
          ...qemuGuestArgv(k.kernel, img),
          "-netdev",
          `stream,id=s,server=off,addr.type=unix,addr.path=${sock}`,
          "-device",
          "virtio-net-pci,netdev=s",
        ]);
        const why = () => `--- serial console\n${qemu.stdout()}\n--- qemu stderr\n${qemu.stderr()}\n--- passt\n${passt.stderr()}`;
        let m: RegExpMatchArray;
        try {
          m = await qemu.waitFor(new RegExp(`(${MARK_OK}) ([0-9a-f]{64})|(${MARK_FAIL}) (.*)\\n`), { timeoutMs: BOOT_TIMEOUT_MS });
        } catch (e) {
          throw new Error(`${(e as Error).message.split("\n")[0]}\n${why()}`);
        }
        expect(m[1] ?? `${m[3]} ${m[4]}`, why()).toBe(MARK_OK);
        expect(m[2], why()).toBe(sha);
        expect(qemu.stdout(), why()).toContain(`guest: bound ${ADDR.host4}/255.255.255.0 via ${ADDR.gw4}`);
        await qemu.kill();
      },
      BOOT_TIMEOUT_MS + 30_000,
    );
  });
}
