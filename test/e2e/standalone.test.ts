/**
 * The standalone executable (`bun run build`: bun build --compile, the shim
 * inside it) in the test world, on a machine view without Bun or a compiler:
 * each run happens in a mount namespace where bun, cc, gcc and tcc are empty
 * files and the repository is out of reach. pasta runs a command (root, and
 * an ordinary user re-executed into its user namespace), goes to the
 * background when attached; `passt`, a link to the same file, serves a socket.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { chmodSync, cpSync, existsSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ADDR, BUN, REPO, createWorld, describeE2E, ensureTestUser, isAlive, run, type World } from "../world.ts";

const HIDDEN = ["/usr/bin/bun", "/usr/local/bin/bun", "/usr/bin/cc", "/usr/bin/gcc", "/usr/bin/tcc", process.execPath].filter(
  (p, i, a) => existsSync(p) && a.indexOf(p) === i,
);

describeE2E("standalone executable (bun run build)", () => {
  let w: World;
  let dir: string;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "pasta-standalone-"));
    const b = run([BUN, join(REPO, "native", "standalone.ts"), join(dir, "build")], { timeoutMs: 120000 });
    if (b.code !== 0) throw new Error(`build failed: ${b.stderr}`);
    // a copy away from the repository, readable by everyone
    cpSync(join(dir, "build", "pasta"), join(dir, "pasta"));
    symlinkSync("pasta", join(dir, "passt"));
    chmodSync(dir, 0o755);
    w = await createWorld();
  }, 180000);
  afterAll(async () => {
    await w?.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  /** argv that runs script in the world's host namespace with Bun, the compilers and the repository hidden. */
  function bare(script: string): string[] {
    const hide = [...HIDDEN.map((p) => `mount --bind /dev/null ${p}`), `mount -t tmpfs none ${REPO}`].join(" && ");
    return ["ip", "netns", "exec", w.host, "unshare", "-m", "sh", "-c", `${hide} && cd / && ${script}`];
  }

  for (const shim of ["lib", "tcc"]) {
    test(`pasta --config-net runs a command in a connected namespace (shim: ${shim}), with no bun, compiler or repository in sight`, async () => {
      const r = await w.exec(
        null,
        bare(
          `PASTA_SHIM=${shim} ${dir}/pasta --config-net -- sh -c 'command -v bun cc gcc; ls ${REPO}; ip -4 -o addr show scope global; ping -c1 -W5 ${ADDR.gw4} >/dev/null && echo PING-OK'`,
        ),
        { timeoutMs: 60000 },
      );
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toContain(`inet ${ADDR.host4}/`);
      expect(r.stdout).toContain("PING-OK");
      expect(r.stdout).not.toContain("package.json");
    }, 90000);
  }

  test("as an ordinary user: re-executed into its own user namespace, same result", async () => {
    const u = ensureTestUser();
    const r = await w.exec(
      null,
      bare(
        `setpriv --reuid=${u.uid} --regid=${u.gid} --init-groups ${dir}/pasta --config-net -- sh -c 'ip -4 -o addr show scope global; id -u'`,
      ),
      { timeoutMs: 60000 },
    );
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain(`inet ${ADDR.host4}/`);
  }, 90000);

  test("passt (a link to the same file) goes to the background and serves its socket; pasta attached goes to the background", async () => {
    const sock = join(w.dir, "standalone-passt.socket");
    const pidFile = join(w.dir, "standalone-passt.pid");
    const r = await w.exec(null, bare(`${dir}/passt --one-off -s ${sock} -P ${pidFile}`), { timeoutMs: 30000 });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain(`addr.path=${sock}`);
    expect(existsSync(sock)).toBe(true);
    const pid = Number(readFileSync(pidFile, "utf8"));
    expect(readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0")[0]).toBe(`${dir}/pasta`);
    process.kill(pid, "SIGTERM");

    const nsFile = join(w.dir, "standalone-netns");
    writeFileSync(nsFile, "");
    run(["unshare", `--net=${nsFile}`, "true"]);
    try {
      const pidFile2 = join(w.dir, "standalone-pasta.pid");
      const a = await w.exec(null, bare(`${dir}/pasta --config-net -q -P ${pidFile2} --netns ${nsFile}`), { timeoutMs: 30000 });
      expect(a.code, a.stderr).toBe(0);
      const pid2 = Number(readFileSync(pidFile2, "utf8"));
      expect(isAlive(pid2)).toBe(true);
      expect(run(["nsenter", `--net=${nsFile}`, "ip", "-4", "-o", "addr", "show", "scope", "global"]).stdout).toContain(ADDR.host4);
      process.kill(pid2, "SIGTERM");
    } finally {
      run(["umount", nsFile]);
      rmSync(nsFile, { force: true });
    }
  }, 90000);
});
