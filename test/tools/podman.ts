/**
 * Rootless Podman in a test world, for the launch tests: an ordinary user
 * made for the occasion, with subordinate uid and gid ranges, a private HOME
 * (image storage) and XDG_RUNTIME_DIR, and a local busybox image; nothing is
 * ever pulled.
 *
 *   const pm = await createRootlessPodman(w);      // user, image
 *   await pm.podman(["run", "--rm", "--network", `ns:${file}`, pm.image, "ip", "addr"]);
 *   await pm.unshare(["sh", "-c", "..."]);          // inside Podman's user and mount namespace
 *   await pm.destroy();                             // processes, storage, user
 *
 * Every command runs as that user in the world's host namespace, with the
 * world's resolv.conf, exactly like a user's shell on the machine pasta is
 * for. Not through `ip netns exec`: it mounts a fresh /sys, where runc finds
 * no cgroup hierarchy; here the network namespace is entered with nsenter,
 * and resolv.conf is bind-mounted in a private mount namespace first.
 *
 * Rootless Podman keeps a "pause" process holding its user and mount
 * namespace; `podman unshare` and every container join it. Namespace files
 * made inside it (unshare --net=FILE) are bind mounts in that mount namespace,
 * as Podman's own are.
 *
 * Global options that make Podman 4.3 run on this kind of machine (cgroup v1,
 * no systemd, no fuse-overlayfs): the vfs storage driver, runc, cgroupfs and
 * an events file.
 *
 * Teardown ends only what this user runs (by pid: the user exists for this
 * test alone), then removes storage, runtime dir and the user (userdel also
 * removes its subordinate ranges).
 */
import {
  chmodSync,
  chownSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  symlinkSync,
  writeFileSync,
  copyFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { asUser, execIn, isAlive, run, type ExecOptions, type ExecResult, type TestUser, type World } from "../world.ts";

export const PODMAN_USER = "pastapodman";
export const PODMAN_IMAGE = "localhost/pasta-busybox:test";
/** Busybox applets linked in the image. */
const APPLETS = [
  "sh",
  "ip",
  "wget",
  "nslookup",
  "httpd",
  "cat",
  "echo",
  "sleep",
  "ls",
  "mkdir",
  "nc",
  "hostname",
  "true",
  "grep",
  "timeout",
];
const BUSYBOX = ["/bin/busybox", "/usr/bin/busybox"];
/** The page busybox httpd serves in the image, at /www/index.html. */
export const IMAGE_PAGE = "pasta-busybox-page\n";

export const PODMAN_GLOBAL = ["--storage-driver", "vfs", "--runtime", "runc", "--cgroup-manager", "cgroupfs", "--events-backend", "file"];

export interface RootlessPodman {
  readonly user: TestUser;
  /** XDG_RUNTIME_DIR of the user (namespace files go in its netns/) */
  readonly runtimeDir: string;
  readonly image: string;
  /** run cmd as the user in the world's host namespace */
  exec(cmd: string[], opts?: ExecOptions): Promise<ExecResult>;
  /** podman GLOBAL... args */
  podman(args: string[], opts?: ExecOptions): Promise<ExecResult>;
  /** cmd inside Podman's user and mount namespace (`podman unshare`) */
  unshare(cmd: string[], opts?: ExecOptions): Promise<ExecResult>;
  /** end the user's processes, remove storage and the user */
  destroy(): Promise<void>;
}

/** Why rootless Podman can't run here, or null. */
export function podmanMissing(): string | null {
  for (const [bin, pkg] of [
    ["podman", "podman"],
    ["runc", "runc"],
    ["newuidmap", "uidmap"],
    ["nsenter", "util-linux"],
  ] as const) {
    if (!Bun.which(bin)) return `${bin} is not installed (Debian: ${pkg})`;
  }
  if (!BUSYBOX.some((p) => existsSync(p))) return "no static busybox (Debian: busybox-static)";
  const max = Number(readFileSync("/proc/sys/user/max_user_namespaces", "utf8").trim());
  if (!(max > 0)) return "user namespaces are disabled (user.max_user_namespaces is 0)";
  return null;
}

function uidOf(name: string): { uid: number; gid: number } | null {
  const r = run(["getent", "passwd", name]);
  if (r.code !== 0) return null;
  const f = r.stdout.trim().split(":");
  return { uid: Number(f[2]), gid: Number(f[3]) };
}

/** Pids of every process running as uid (real uid). */
function pidsOfUid(uid: number): number[] {
  const out: number[] = [];
  for (const e of readdirSync("/proc")) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const m = readFileSync(`/proc/${e}/status`, "utf8").match(/^Uid:\s+(\d+)/m);
      if (m && Number(m[1]) === uid) out.push(Number(e));
    } catch {
      /* gone */
    }
  }
  return out;
}

/** SIGKILL every process of the test user (made for this test: all of them are ours), a few rounds. */
function killUserProcesses(uid: number): void {
  for (let round = 0; round < 5; round++) {
    const pids = pidsOfUid(uid);
    if (!pids.length) return;
    for (const pid of pids) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        /* gone */
      }
    }
    Bun.sleepSync(100);
  }
}

function removeUser(name: string): void {
  const ids = uidOf(name);
  if (!ids) return;
  killUserProcesses(ids.uid);
  run(["userdel", name]);
}

/** The user with subordinate ranges (useradd gives them to ordinary users; make sure). */
function createUser(name: string, home: string): TestUser {
  removeUser(name); // a leftover of a run that died
  const r = run(["useradd", "--user-group", "--no-create-home", "--home-dir", home, "--shell", "/bin/sh", name]);
  const ids = uidOf(name);
  if (!ids) throw new Error(`cannot create user ${name}: ${r.stderr}`);
  for (const [file, flag] of [
    ["/etc/subuid", "--add-subuids"],
    ["/etc/subgid", "--add-subgids"],
  ] as const) {
    if (
      !readFileSync(file, "utf8")
        .split("\n")
        .some((l) => l.startsWith(`${name}:`))
    ) {
      const start = freeSubordinateStart(file);
      const u = run(["usermod", flag, `${start}-${start + 65535}`, name]);
      if (u.code !== 0) throw new Error(`usermod ${flag}: ${u.stderr}`);
    }
  }
  chownSync(home, ids.uid, ids.gid);
  chmodSync(home, 0o700);
  return { name, uid: ids.uid, gid: ids.gid, home };
}

/** A start above every range in a subordinate id file. */
function freeSubordinateStart(file: string): number {
  let end = 200000;
  for (const l of readFileSync(file, "utf8").split("\n")) {
    const f = l.split(":");
    if (f.length === 3) end = Math.max(end, Number(f[1]) + Number(f[2]));
  }
  return end;
}

/** HOMEs left by a test process that died (its pid is in the name). */
function sweepStaleHomes(): void {
  const re = new RegExp(`^${PODMAN_USER}-home-(\\d+)-`);
  for (const e of readdirSync(tmpdir())) {
    const m = e.match(re);
    if (m && Number(m[1]) !== process.pid && !isAlive(Number(m[1]))) rmSync(join(tmpdir(), e), { recursive: true, force: true });
  }
}

/** A root filesystem with busybox and a page for httpd, as a tar the user can read. */
function buildRootfsTar(dir: string): string {
  const root = join(dir, "rootfs");
  for (const d of ["bin", "etc", "tmp", "www", "proc", "sys", "dev"]) mkdirSync(join(root, d), { recursive: true });
  copyFileSync(BUSYBOX.find((p) => existsSync(p))!, join(root, "bin", "busybox"));
  chmodSync(join(root, "bin", "busybox"), 0o755);
  for (const a of APPLETS) symlinkSync("busybox", join(root, "bin", a));
  writeFileSync(join(root, "www", "index.html"), IMAGE_PAGE);
  const tar = join(dir, "rootfs.tar");
  const r = run(["tar", "-C", root, "--owner=0", "--group=0", "-cf", tar, "."]);
  if (r.code !== 0) throw new Error(`tar: ${r.stderr}`);
  rmSync(root, { recursive: true, force: true });
  chmodSync(tar, 0o644);
  return tar;
}

class RootlessPodmanImpl implements RootlessPodman {
  readonly image = PODMAN_IMAGE;
  constructor(
    readonly w: World,
    readonly user: TestUser,
    readonly runtimeDir: string,
  ) {}

  /** argv that runs cmd as the user in w's host namespace, with its resolv.conf */
  argv(cmd: string[]): string[] {
    const resolv = `/etc/netns/${this.w.host}/resolv.conf`;
    return [
      "unshare",
      "--mount",
      "--propagation",
      "private",
      "sh",
      "-c",
      'mount --bind "$0" /etc/resolv.conf && exec "$@"',
      resolv,
      "nsenter",
      `--net=/run/netns/${this.w.host}`,
      ...asUser(cmd, this.user, { XDG_RUNTIME_DIR: this.runtimeDir }),
    ];
  }

  exec(cmd: string[], opts: ExecOptions = {}): Promise<ExecResult> {
    return execIn(null, this.argv(cmd), { timeoutMs: 60000, cwd: this.user.home, ...opts });
  }

  podman(args: string[], opts?: ExecOptions): Promise<ExecResult> {
    return this.exec(["podman", ...PODMAN_GLOBAL, ...args], opts);
  }

  unshare(cmd: string[], opts?: ExecOptions): Promise<ExecResult> {
    return this.podman(["unshare", ...cmd], opts);
  }

  async destroy(): Promise<void> {
    await this.podman(["rm", "--all", "--force", "--time", "0"], { timeoutMs: 30000 }).catch(() => null);
    killUserProcesses(this.user.uid);
    rmSync(this.user.home, { recursive: true, force: true });
    removeUser(this.user.name);
  }
}

/**
 * Make the user, its HOME and runtime dir, and import the image. On failure
 * everything made so far is removed before the error is thrown.
 */
export async function createRootlessPodman(w: World): Promise<RootlessPodman> {
  sweepStaleHomes();
  const home = mkdtempSync(join(tmpdir(), `${PODMAN_USER}-home-${process.pid}-`));
  let pm: RootlessPodmanImpl | null = null;
  try {
    const user = createUser(PODMAN_USER, home);
    const runtimeDir = join(home, "run");
    mkdirSync(runtimeDir, { mode: 0o700 });
    chownSync(runtimeDir, user.uid, user.gid);
    pm = new RootlessPodmanImpl(w, user, runtimeDir);
    const tar = buildRootfsTar(home);
    const r = await pm.podman(["import", tar, PODMAN_IMAGE], { timeoutMs: 120000 });
    if (r.code !== 0) throw new Error(`podman import: exit ${r.code}\n${r.stderr}`);
    return pm;
  } catch (e) {
    if (pm) await pm.destroy();
    else {
      rmSync(home, { recursive: true, force: true });
      removeUser(PODMAN_USER);
    }
    throw e;
  }
}
