/**
 * passt --vhost-user with a real virtual machine: QEMU (TCG always, see
 * QEMU_ACCEL) with its memory in a shared memfd and `-netdev vhost-user` on
 * passt's socket, booting the machine's own kernel with a busybox initramfs
 * (test/tools/qemu/). Frames go through the guest's virtio-net rings in that
 * shared memory, not through the socket.
 *
 * 1. The guest gets its address and MTU 65520 from udhcpc (asking for
 *    nothing), downloads a file from a remote server (SHA-256 on the serial
 *    console must match; its TCP data built in place in the guest's receive
 *    buffers, as passt's --stats counters say), then serves it with busybox httpd on port 80, which
 *    the host fetches through -t 8089:80 (its SHA-256 must match too).
 * 2. A guest downloads an endless stream; once some megabytes went through,
 *    QEMU is killed (SIGKILL). passt must stay up and serve the next QEMU,
 *    which gets its address and downloads a file whose checksum matches.
 *
 * 3. Without DHCP, the guest's kernel gets its IPv6 address by SLAAC from
 *    passt's router advertisements (the host's 2001:db8::/64 prefix) and
 *    downloads the file over IPv6 from the remote server.
 * 4. The guest resets its virtio-net device (driver unbound and bound
 *    again, as at a reboot): passt sees the rings stopped (GET_VRING_BASE)
 *    and set up again on the same connection; DHCP and a download work again.
 * 5. --print-capabilities prints the JSON of a vhost-user net back-end.
 *
 * Skips with one line when QEMU, a kernel with its modules or a static
 * busybox is missing (Debian: qemu-system-x86 linux-image-amd64 busybox-static).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ADDR, BUN, canRunE2E, createWorld, describeE2E, isAlive, type Child, type World } from "../world.ts";
import { PASST_ENV, passtArgv } from "../tools/relay.ts";
import { buildInitramfs, findGuest, type GuestKernel } from "../tools/qemu/initramfs.ts";
import {
  guestInit,
  guestResetInit,
  guestServeInit,
  guestSlaacInit,
  MARK_AGAIN,
  MARK_FAIL,
  MARK_OK,
  MARK_SERVING,
  qemuGuestArgv,
  UDHCPC_SCRIPT,
} from "../tools/qemu/guest.ts";

const REMOTE_PORT = 18075;
const HOST_PORT = 8089;
const PAYLOAD = 2 << 20;
const MTU = 65520;
/** Boot, DHCP and transfers under TCG take some tens of seconds; this bounds each guest. */
const BOOT_TIMEOUT_MS = 150_000;
/** Bytes of the endless stream that must have left the server before QEMU is killed. */
const KILL_AFTER = 4 << 20;

const guest = findGuest();

/** argv of QEMU with its memory shared and vhost-user on sock. */
function qemuArgv(k: GuestKernel, img: string, sock: string): string[] {
  return [
    ...qemuGuestArgv(k.kernel, img, ["-object", "memory-backend-memfd,id=mem,size=256M,share=on", "-numa", "node,memdev=mem"]),
    "-chardev",
    `socket,id=c,path=${sock}`,
    "-netdev",
    "vhost-user,id=n,chardev=c",
    "-device",
    // vectors=0: INTx, no MSI-X. Debian's QEMU 7.2 under TCG crashes (SIGSEGV in
    // msix_set_vector_notifiers, from vhost_net_start) when the guest starts a
    // vhost-user device with MSI-X, with upstream's passt as with ours.
    "virtio-net-pci,netdev=n,vectors=0",
  ];
}

if (canRunE2E().ok && !guest.ok) {
  console.log(`SKIP passt --vhost-user with QEMU: ${guest.reason}`);
  describe.skip("passt --vhost-user with a QEMU guest", () => {
    test("skipped", () => {});
  });
} else {
  describeE2E("passt --vhost-user with a QEMU guest", () => {
    let w: World;
    let passt: Child;
    let server: Child;
    let sock = "";
    let sha = "";
    beforeAll(async () => {
      w = await createWorld();
      const data = new Uint8Array(PAYLOAD);
      for (let off = 0; off < data.length; off += 65536) crypto.getRandomValues(data.subarray(off, off + 65536));
      const file = join(w.dir, "payload");
      writeFileSync(file, data);
      sha = createHash("sha256").update(data).digest("hex");
      // /payload: the file; /endless: 64 KiB chunks until the client goes (yielding to other requests), "streamed N" logged per MiB
      server = w.spawn(w.upstream, [
        BUN,
        "-e",
        `const chunk = new Uint8Array(65536).fill(97); let sent = 0;
         Bun.serve({ hostname: "::", port: ${REMOTE_PORT}, fetch: (req) => {
           if (new URL(req.url).pathname !== "/endless") return new Response(Bun.file(${JSON.stringify(file)}));
           return new Response(new ReadableStream({ type: "direct", async pull(c) {
             while (!req.signal.aborted) { c.write(chunk); await c.flush(); await Bun.sleep(0); sent += chunk.length; if (sent % (1 << 20) === 0) console.log("streamed " + sent); }
             c.close();
           } }));
         } });
         console.log("http ready");`,
      ]);
      await server.waitFor("http ready", { timeoutMs: 15000 });
      sock = join(w.dir, "passt-vu.socket");
      // --stats 1: the counters, for how frames reached the guest (txInPlace)
      passt = w.spawn(w.host, passtArgv(["-f", "--stats", "1", "--vhost-user", "-s", sock, "-t", `${HOST_PORT}:80`]), { env: PASST_ENV });
      await passt.waitFor("UNIX domain socket bound at", { stream: "stderr", timeoutMs: 20000 });
    }, 60000);
    afterAll(async () => {
      await passt?.kill();
      await w?.destroy();
    }, 60000);

    /** Boot a guest running init; its serial console and QEMU's stderr, with passt's log, for messages. */
    function boot(k: GuestKernel, name: string, init: string): { qemu: Child; why: () => string } {
      const img = join(w.dir, `${name}.cpio`);
      buildInitramfs(img, k, init, { "/udhcpc.sh": UDHCPC_SCRIPT });
      const qemu = w.spawn(null, qemuArgv(k, img, sock));
      const why = () => `--- serial console\n${qemu.stdout()}\n--- qemu stderr\n${qemu.stderr()}\n--- passt\n${passt.stderr()}`;
      return { qemu, why };
    }

    async function waitFor(qemu: Child, re: RegExp, why: () => string): Promise<RegExpMatchArray> {
      try {
        return await qemu.waitFor(re, { timeoutMs: BOOT_TIMEOUT_MS });
      } catch (e) {
        throw new Error(`${(e as Error).message.split("\n")[0]}\n${why()}`);
      }
    }

    test("--print-capabilities: the vhost-user back-end JSON on stdout, status 0, nothing started", async () => {
      const r = await w.exec(w.host, passtArgv(["--print-capabilities"]), { env: PASST_ENV, timeoutMs: 10000 });
      expect(r.code, r.stderr).toBe(0);
      expect(JSON.parse(r.stdout)).toEqual({ type: "net" });
    });

    test(
      "DHCP with MTU 65520 unasked, a download from a remote server, the guest's HTTP server reached through -t 8089:80; checksums match",
      async () => {
        const { qemu, why } = boot(guest as GuestKernel, "serve", guestServeInit(`http://${ADDR.remote4}:${REMOTE_PORT}/payload`));
        const m = await waitFor(qemu, new RegExp(`(${MARK_OK}) ([0-9a-f]{64})|(${MARK_FAIL}) (.*)\\n`), why);
        expect(m[1] ?? `${m[3]} ${m[4]}`, why()).toBe(MARK_OK);
        expect(m[2], why()).toBe(sha);
        expect(qemu.stdout(), why()).toContain(`guest: bound ${ADDR.host4}/255.255.255.0 via ${ADDR.gw4} mtu ${MTU}`);
        // the download's data was received straight into the guest's buffers: at least one frame per 64 KiB
        // (the last counter line, a --stats period after the download)
        await Bun.sleep(1500);
        const inPlace = Number([...passt.stderr().matchAll(/txInPlace (\d+)/g)].at(-1)?.[1] ?? 0);
        expect(inPlace, why()).toBeGreaterThanOrEqual(PAYLOAD / 65536);
        await waitFor(qemu, new RegExp(`${MARK_SERVING}|${MARK_FAIL}`), why);
        expect(qemu.stdout(), why()).toContain(MARK_SERVING);
        const file = join(w.dir, "from-guest");
        const r = await w.exec(w.host, ["busybox", "wget", "-q", "-O", file, `http://127.0.0.1:${HOST_PORT}/file`], { timeoutMs: 90000 });
        expect(r.code, `${r.stderr}\n${why()}`).toBe(0);
        expect(createHash("sha256").update(readFileSync(file)).digest("hex"), why()).toBe(sha);
        await qemu.kill();
      },
      BOOT_TIMEOUT_MS + 120_000,
    );

    test(
      "SLAAC: the guest's global IPv6 address from the router advertisement, then a download over IPv6; checksum matches",
      async () => {
        const { qemu, why } = boot(guest as GuestKernel, "slaac", guestSlaacInit(`http://[${ADDR.remote6}]:${REMOTE_PORT}/payload`));
        const m = await waitFor(qemu, new RegExp(`(${MARK_OK}) ([0-9a-f]{64})|(${MARK_FAIL}) (.*)\\n`), why);
        expect(m[1] ?? `${m[3]} ${m[4]}`, why()).toBe(MARK_OK);
        expect(m[2], why()).toBe(sha);
        expect(qemu.stdout(), why()).toMatch(/guest: slaac .*inet6 2001:db8::[0-9a-f:]+\/64 scope global/);
        await qemu.kill();
      },
      BOOT_TIMEOUT_MS + 30_000,
    );

    test(
      "a device reset in the guest (as at a reboot): rings stopped and set up again on the same connection, DHCP and a download work again",
      async () => {
        const { qemu, why } = boot(guest as GuestKernel, "reset", guestResetInit(`http://${ADDR.remote4}:${REMOTE_PORT}/payload`));
        const re = new RegExp(`(${MARK_AGAIN}) ([0-9a-f]{64})|(${MARK_FAIL}) (.*)\\n`);
        const m = await waitFor(qemu, re, why);
        expect(m[1] ?? `${m[3]} ${m[4]}`, why()).toBe(MARK_AGAIN);
        expect(m[2], why()).toBe(sha);
        expect(qemu.stdout(), why()).toContain(`${MARK_OK} ${sha}`);
        expect(qemu.stdout(), why()).toMatch(/guest: virtio\d+ unbound/);
        await qemu.kill();
      },
      BOOT_TIMEOUT_MS + 30_000,
    );

    test(
      "QEMU killed in the middle of a download: passt stays up and serves the next QEMU",
      async () => {
        const k = guest as GuestKernel;
        const first = boot(k, "killed", guestInit(`http://${ADDR.remote4}:${REMOTE_PORT}/endless`));
        await waitFor(first.qemu, /guest: bound /, first.why);
        await server.waitFor(`streamed ${KILL_AFTER}\n`, { timeoutMs: BOOT_TIMEOUT_MS }).catch((e: Error) => {
          throw new Error(`${e.message.split("\n")[0]}\n${first.why()}`);
        });
        await first.qemu.kill({ signal: "SIGKILL" });
        await passt.waitFor("front-end closed the connection", { stream: "stderr", timeoutMs: 10000 });
        expect(isAlive(passt.pid), `passt ended with QEMU\n${passt.stderr()}`).toBe(true);

        const next = boot(k, "next", guestInit(`http://${ADDR.remote4}:${REMOTE_PORT}/payload`));
        const m = await waitFor(next.qemu, new RegExp(`(${MARK_OK}) ([0-9a-f]{64})|(${MARK_FAIL}) (.*)\\n`), next.why);
        expect(m[1] ?? `${m[3]} ${m[4]}`, next.why()).toBe(MARK_OK);
        expect(m[2], next.why()).toBe(sha);
        await next.qemu.kill();
      },
      BOOT_TIMEOUT_MS * 2 + 60_000,
    );
  });
}
