/**
 * Quitting when the target namespace goes away (pasta --netns PATH).
 *
 * Podman, rootlesskit and `ip netns` keep a network namespace alive by
 * bind-mounting it on a file; when the container stops, Podman unmounts and
 * unlinks that file, and pasta must exit then (releasing its published
 * ports for the next container), as the original does. So, like the
 * original, we watch the file's directory with inotify and stop the loop when
 * an entry of the file's name is deleted or moved away. inotify cannot watch
 * procfs (a /proc/PID/ns/net path), and a directory may refuse a watch: then
 * we look once a second whether the path is still there. --no-netns-quit
 * turns all this off (the caller does not call watchNetnsFile).
 */
import { existsSync } from "node:fs";
import { basename, dirname } from "node:path";
import { log } from "../log.ts";
import { Kind } from "../loop/kinds.ts";
import { EPOLLIN, type Loop } from "../loop/loop.ts";
import { cstr, sys } from "../native/ffi.ts";

/** inotify event bits (linux/inotify.h). */
const IN_MOVED_FROM = 0x40;
const IN_DELETE = 0x200;
const IN_DELETE_SELF = 0x400;
/** struct inotify_event: wd, mask, cookie, len (4 bytes each), then len bytes of NUL-padded name. */
const EVENT_HEADER = 16;
const EVENT_BUF = 4096;
const POLL_MS = 1000;

/** One inotify record: its mask and the name it is about ("" for the directory itself). */
export interface InotifyEvent {
  mask: number;
  name: string;
}

/** The records in the first n bytes of buf, as read() from an inotify descriptor returns them. */
export function parseInotify(buf: Uint8Array, n: number): InotifyEvent[] {
  const view = new DataView(buf.buffer, buf.byteOffset, n);
  const out: InotifyEvent[] = [];
  for (let off = 0; off + EVENT_HEADER <= n; ) {
    const mask = view.getUint32(off + 4, true);
    const len = view.getUint32(off + 12, true);
    const end = Math.min(off + EVENT_HEADER + len, n);
    let nameEnd = off + EVENT_HEADER;
    while (nameEnd < end && buf[nameEnd] !== 0) nameEnd++;
    out.push({ mask, name: new TextDecoder().decode(buf.subarray(off + EVENT_HEADER, nameEnd)) });
    off += EVENT_HEADER + len;
  }
  return out;
}

/** True when one of the events means that the entry name left its directory (or the directory went). */
export function entryGone(events: InotifyEvent[], name: string): boolean {
  return events.some((e) => (e.mask & IN_DELETE_SELF) !== 0 || ((e.mask & (IN_DELETE | IN_MOVED_FROM)) !== 0 && e.name === name));
}

/** Stop loop (status 0) once path is removed. */
export function watchNetnsFile(loop: Loop, path: string): void {
  const gone = () => {
    log.info(`namespace ${path} is gone: exiting`);
    loop.stop(0);
  };
  const fd = path.startsWith("/proc/") ? -1 : sys.shim_inotify_dir(cstr(dirname(path)), IN_DELETE | IN_MOVED_FROM | IN_DELETE_SELF);
  if (fd < 0) {
    loop.every(POLL_MS, () => {
      if (!existsSync(path)) gone();
    });
    return;
  }
  const buf = new Uint8Array(EVENT_BUF);
  const name = basename(path);
  loop.on(Kind.NETNS_FILE, () => {
    const n = sys.shim_read(fd, buf, EVENT_BUF);
    if (n > 0 && entryGone(parseInotify(buf, n), name)) gone();
  });
  loop.add(fd, EPOLLIN, Kind.NETNS_FILE, 0);
  if (!existsSync(path)) gone();
}
