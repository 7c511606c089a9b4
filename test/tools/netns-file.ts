/**
 * Network namespaces bound on files, as Podman and rootlesskit make them
 * (`unshare --net=FILE`), for tests that start pasta with --netns FILE;
 * and their removal as Podman does it when a container stops (umount, then
 * unlink). A NetnsFiles set removes what it made that is still there.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { run } from "../world.ts";

export class NetnsFiles {
  private readonly made: string[] = [];
  private seq = 0;

  /** dir: where the files go (a world's temp dir); tag: part of each file name, unique to the test file. */
  constructor(
    private readonly dir: string,
    private readonly tag: string,
  ) {}

  /** A new network namespace bound on a new file; its path is unique to this test process. */
  make(): string {
    const path = join(this.dir, `${this.tag}-netns-${process.pid}-${++this.seq}`);
    writeFileSync(path, "");
    this.made.push(path);
    const r = run(["unshare", `--net=${path}`, "true"]);
    if (r.code !== 0) throw new Error(`unshare --net=${path}: ${r.stderr}`);
    return path;
  }

  /** Remove one as Podman does: umount, then unlink. */
  remove(path: string): void {
    run(["umount", path]);
    run(["rm", "-f", path]);
  }

  /** Remove every one still there (afterAll). */
  removeAll(): void {
    for (const path of this.made) this.remove(path);
  }
}
