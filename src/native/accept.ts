/**
 * accept() that refuses instead of spinning when we are out of descriptors.
 *
 * Listening sockets are watched level-triggered: while a connection waits in
 * the backlog, epoll reports it again on every turn. When accept() fails for
 * lack of descriptors (EMFILE, ENFILE), the connection would stay there and
 * the loop would spin on it, while its client waits forever. So one spare
 * descriptor is kept open (on /dev/null): on EMFILE we close it, accept the
 * waiting connection into its place, close that with a reset (the client
 * sees "connection reset", the nearest thing to a refusal once the kernel
 * has completed the handshake), and open the spare again. Connections
 * already open are not touched.
 */
import { cstr, sys } from "./ffi.ts";
import { EMFILE, ENFILE } from "./consts.ts";

const O_RDONLY = 0;
const DEV_NULL = cstr("/dev/null");
let spare = sys.shim_open(DEV_NULL, O_RDONLY);

/** Connections refused for lack of descriptors, for --stats and tests. */
export const acceptStats = { refusedNoFd: 0 };

/**
 * Accept one connection from listening socket fd (peer address into sa and
 * its length into saLen, or both null). Returns the new descriptor, or
 * -errno when there is none to take (-EAGAIN: the backlog is empty). A
 * connection that finds no descriptor is reset and the next one tried.
 */
export function acceptOrRefuse(fd: number, sa: Uint8Array | null, saLen: Int32Array | null): number {
  for (;;) {
    const rc = sys.shim_accept(fd, sa, saLen);
    if (rc !== -EMFILE && rc !== -ENFILE) return rc;
    if (spare < 0) spare = sys.shim_open(DEV_NULL, O_RDONLY);
    if (spare < 0) return rc;
    sys.shim_close(spare);
    const c = sys.shim_accept(fd, null, null);
    if (c >= 0) {
      sys.shim_abort_close(c);
      acceptStats.refusedNoFd++;
    }
    spare = sys.shim_open(DEV_NULL, O_RDONLY);
    if (c < 0) return c;
  }
}
