/**
 * passt started the way libvirt starts it for `<interface type='user'>
 * <backend type='passt'/>`, rebuilt from qemuPasstStart() (test/tools/launchers.ts):
 * --one-off --socket PATH --pid FILE --log-file FILE --tcp-ports 8089:80,
 * stdin on /dev/null, stdout and stderr two pipes read to their end, then the
 * exit status; the pid file must name the running passt once the launch
 * returns. Rootless, as libvirt's session mode: passt and QEMU run as an
 * ordinary user.
 *
 * Then a real QEMU guest (TCG, see test/tools/qemu/guest.ts) connects with
 * `-netdev stream` as libvirt configures it: busybox udhcpc, asking for
 * nothing, must get the address, the gateway and MTU 65520; the guest
 * downloads a file from a remote server (checked by SHA-256), then serves it
 * back with busybox httpd on port 80, which the host reaches at its port 8089;
 * once QEMU is gone, passt (--one-off) must be gone too.
 *
 * Skips with one line when QEMU, a kernel with its modules or a static
 * busybox is missing. PASST_TEST_CMD (split on spaces) launches another passt,
 * e.g. PASST_TEST_CMD=/usr/bin/passt.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { chmodSync, chownSync, copyFileSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  ADDR,
  BUN,
  asUser,
  canRunE2E,
  createWorld,
  describeE2E,
  ensureTestUser,
  isAlive,
  repoForUser,
  type Child,
  type TestUser,
  type World,
} from "../world.ts";
import { PASST_ENV, passtArgv } from "../tools/relay.ts";
import { launchLibvirt, pidsWithArgs, type Launch, type LibvirtNet } from "../tools/launchers.ts";
import { buildInitramfs, findGuest, type GuestKernel } from "../tools/qemu/initramfs.ts";
import { MARK_FAIL, MARK_OK, MARK_SERVING, qemuGuestArgv, UDHCPC_SCRIPT, guestServeInit } from "../tools/qemu/guest.ts";

const REMOTE_PORT = 18074;
const HOST_PORT = 8089;
const PAYLOAD = 1 << 20;
const MTU = 65520;
/** Boot, DHCP and download under TCG take some tens of seconds; this bounds it. */
const BOOT_TIMEOUT_MS = 120_000;
const QUIT_WAIT_MS = 5000;

const guest = findGuest();

if (canRunE2E().ok && !guest.ok) {
  console.log(`SKIP passt launched as libvirt does: ${guest.reason}`);
  describe.skip("passt launched as libvirt does", () => {
    test("skipped", () => {});
  });
} else {
  describeE2E("passt launched as libvirt does, with a QEMU guest", () => {
    let w: World;
    let user: TestUser;
    let net: LibvirtNet;
    let l: Launch;
    let sha = "";

    beforeAll(async () => {
      w = await createWorld();
      user = ensureTestUser();
      const repo = repoForUser(user);
      const data = new Uint8Array(PAYLOAD);
      for (let off = 0; off < data.length; off += 65536) crypto.getRandomValues(data.subarray(off, off + 65536));
      writeFileSync(join(w.dir, "payload"), data);
      sha = createHash("sha256").update(data).digest("hex");
      const http = w.spawn(w.upstream, [
        BUN,
        "-e",
        `Bun.serve({ hostname: "0.0.0.0", port: ${REMOTE_PORT}, fetch: () => new Response(Bun.file(${JSON.stringify(join(w.dir, "payload"))})) }); console.log("http ready");`,
      ]);
      await http.waitFor("http ready", { timeoutMs: 15000 });

      // libvirt's session state dir for passt: the user's own
      const state = join(w.dir, "passt");
      mkdirSync(state, { mode: 0o700 });
      chownSync(state, user.uid, user.gid);
      net = {
        socket: join(state, "guest-net0.socket"),
        pidFile: join(state, "guest-net0-passt.pid"),
        logFile: join(state, "passt.log"),
        tcpPorts: [`${HOST_PORT}:80`],
      };
      const passt = ["ip", "netns", "exec", w.host, ...asUser(passtArgv([], repo), user, PASST_ENV)];
      l = await launchLibvirt(passt, net, { cwd: repo });
      console.log(
        `launch time (libvirt, ${passtArgv([]).at(-1)}): exited after ${l.exitMs} ms, caller went on after ${l.ms} ms${l.hung ? " (hung: pipe never closed)" : ""}`,
      );
    }, 60000);

    afterAll(async () => {
      for (const pid of pidsWithArgs(["--socket", net?.socket ?? "/nonexistent"])) process.kill(pid, "SIGKILL");
      await w?.destroy();
    }, 60000);

    const why = () =>
      `argv: ${l.argv.join(" ")}\nexit ${l.code} after ${l.exitMs} ms, caller waited ${l.ms} ms${l.hung ? " and gave up (a pipe is still open)" : ""}\nstdout: ${l.output}\nstderr: ${l.stderr}`;

    /** The pid in libvirt's pid file, 0 when there is none. */
    const pidFromFile = () => (existsSync(net.pidFile) ? Number(readFileSync(net.pidFile, "utf8").trim()) || 0 : 0);

    test("the launch returns: exit 0, end of both pipes; the pid file names the running passt; the socket is there", () => {
      expect(l.hung, `the caller hangs: ${why()}`).toBe(false);
      expect(l.code, why()).toBe(0);
      const pid = pidFromFile();
      expect(pid, `pid file ${net.pidFile}: ${why()}`).toBeGreaterThan(0);
      expect(isAlive(pid), why()).toBe(true);
      expect(pidsWithArgs(["--socket", net.socket]), why()).toContain(pid);
      expect(statSync(net.socket).isSocket(), why()).toBe(true);
      expect(existsSync(net.logFile!), `--log-file ${net.logFile}: ${why()}`).toBe(true);
    });

    test(
      "a QEMU guest: DHCP with MTU 65520 unasked, a download from a remote server, its HTTP server reached through --tcp-ports 8089:80; passt exits with QEMU (--one-off)",
      async () => {
        const k = guest as GuestKernel;
        // QEMU runs as the user too: a readable copy of the kernel
        const kernel = join(w.dir, "vmlinuz");
        copyFileSync(k.kernel, kernel);
        chmodSync(kernel, 0o644);
        const img = join(w.dir, "initramfs.cpio");
        buildInitramfs(img, k, guestServeInit(`http://${ADDR.remote4}:${REMOTE_PORT}/payload`), { "/udhcpc.sh": UDHCPC_SCRIPT });
        chmodSync(img, 0o644);
        const passtPid = pidFromFile();
        const qemu: Child = w.spawn(
          w.host,
          [
            ...qemuGuestArgv(kernel, img),
            "-netdev",
            `stream,id=hostnet0,server=off,addr.type=unix,addr.path=${net.socket}`,
            "-device",
            "virtio-net-pci,netdev=hostnet0",
          ],
          { user },
        );
        const console_ = () =>
          `--- serial console\n${qemu.stdout()}\n--- qemu stderr\n${qemu.stderr()}\n--- passt log\n${existsSync(net.logFile!) ? readFileSync(net.logFile!, "utf8") : ""}`;
        const wait = async (re: RegExp) => {
          try {
            return await qemu.waitFor(re, { timeoutMs: BOOT_TIMEOUT_MS });
          } catch (e) {
            throw new Error(`${(e as Error).message.split("\n")[0]}\n${console_()}`);
          }
        };
        const m = await wait(new RegExp(`(${MARK_OK}) ([0-9a-f]{64})|(${MARK_FAIL}) (.*)\\n`));
        expect(m[1] ?? `${m[3]} ${m[4]}`, console_()).toBe(MARK_OK);
        expect(m[2], console_()).toBe(sha);
        expect(qemu.stdout(), console_()).toContain(`guest: bound ${ADDR.host4}/255.255.255.0 via ${ADDR.gw4} mtu ${MTU}`);
        expect(qemu.stdout(), console_()).toMatch(new RegExp(`guest: link .*eth0.* mtu ${MTU} `));

        await wait(new RegExp(`${MARK_SERVING}|${MARK_FAIL}`));
        expect(qemu.stdout(), console_()).toContain(MARK_SERVING);
        for (const addr of ["127.0.0.1", ADDR.host4]) {
          const file = join(w.dir, `from-guest-${addr}`);
          const r = await w.exec(w.host, ["busybox", "wget", "-q", "-O", file, `http://${addr}:${HOST_PORT}/file`], { timeoutMs: 60000 });
          expect(r.code, `${addr}:${HOST_PORT}: ${r.stderr}\n${console_()}`).toBe(0);
          expect(createHash("sha256").update(readFileSync(file)).digest("hex"), `${addr}:${HOST_PORT}`).toBe(sha);
        }

        await qemu.kill();
        const end = Date.now() + QUIT_WAIT_MS;
        while (Date.now() < end && isAlive(passtPid)) await Bun.sleep(50);
        expect(isAlive(passtPid), `passt --one-off still running ${QUIT_WAIT_MS} ms after QEMU ended\n${console_()}`).toBe(false);
      },
      BOOT_TIMEOUT_MS * 2 + 30_000,
    );
  });
}
