/**
 * TCP servers that misbehave on purpose, one connection each, for the fault
 * tests (test/e2e/faults.test.ts):
 *
 *   bun test/tools/fault-server.ts MODE HOST PORT [BYTES]
 *
 * MODE:
 *   read-reset BYTES  read BYTES from the client, then reset (SO_LINGER 0)
 *                     while it is still sending;
 *   send-reset BYTES  send BYTES to the client (it has to read them), then
 *                     reset while more is on its way;
 *   stall             never read; send until the client's receive side and
 *                     our send buffer are full, then wait: both ways full.
 *                     Prints "full" once the socket has taken nothing for a
 *                     second.
 *   echo              echo every byte, for any number of connections at once.
 *
 * Prints "listening" once bound, "reset" once the reset is sent. Exits on
 * its own after 120 s at most (the reset modes block in accept(): they end
 * when the test kills them).
 */
import net from "node:net";
import { sys } from "../../src/native/ffi.ts";
import { sockaddr4 } from "../../src/native/sockaddr.ts";

const [mode, host, portText, bytesText] = process.argv.slice(2);
const port = Number(portText);
const limit = Number(bytesText ?? 0);
const CHUNK = Buffer.alloc(1 << 16, 0x5a);
/** stall: the socket counts as full once it has not drained for this long. */
const FULL_AFTER_MS = 1000;

const AF_INET = 2;
const SOCK_STREAM = 1;
const SOL_SOCKET = 1;
const SO_REUSEADDR = 2;

/**
 * read-reset and send-reset, on plain blocking sockets through the shim: the
 * reset is a close with SO_LINGER 0 (shim_abort_close), which the kernel
 * always sends as a RST (a runtime's "reset" may close gracefully when
 * nothing unread is left).
 */
function resetServer(send: boolean): void {
  const lfd = sys.shim_socket(AF_INET, SOCK_STREAM, 0);
  sys.shim_setsockopt_int(lfd, SOL_SOCKET, SO_REUSEADDR, 1);
  const sa = new Uint8Array(16);
  const a = host!.split(".").map(Number);
  const len = sockaddr4(sa, ((a[0]! << 24) | (a[1]! << 16) | (a[2]! << 8) | a[3]!) >>> 0, port);
  if (sys.shim_bind(lfd, sa, len) < 0 || sys.shim_listen(lfd, 1) < 0) {
    console.error("fault-server: cannot listen");
    process.exit(1);
  }
  console.log("listening");
  const fd = sys.shim_accept(lfd, null, null);
  if (fd < 0) process.exit(1);
  // shim_accept makes the socket non-blocking: wait for room or data with short sleeps
  const buf = new Uint8Array(1 << 16);
  let done = 0;
  while (done < limit) {
    const n = send ? sys.shim_send(fd, buf, buf.length, 0) : sys.shim_recv(fd, buf, buf.length, 0);
    if (n === 0 && !send) break;
    if (n < 0) {
      if (n !== -11) break;
      Bun.sleepSync(1);
      continue;
    }
    done += n;
  }
  sys.shim_abort_close(fd);
  console.log("reset");
  process.exit(0);
}

const server = net.createServer((sock) => {
  sock.on("error", () => {});
  if (mode !== "echo") server.close();
  switch (mode) {
    case "stall": {
      // never read; write whenever the socket drains, until it stops draining
      sock.pause();
      let quiet: ReturnType<typeof setTimeout> | null = null;
      const pump = () => {
        while (sock.write(CHUNK));
        if (quiet) clearTimeout(quiet);
        quiet = setTimeout(() => console.log("full"), FULL_AFTER_MS);
      };
      sock.on("drain", pump);
      pump();
      return;
    }
    case "echo":
      sock.pipe(sock);
      return;
  }
});
if (!["read-reset", "send-reset", "stall", "echo"].includes(mode ?? "") || !host || !port) {
  console.error("usage: fault-server.ts read-reset|send-reset|stall|echo HOST PORT [BYTES]");
  process.exit(2);
}
setTimeout(() => process.exit(3), 120000).unref();
if (mode === "read-reset" || mode === "send-reset") resetServer(mode === "send-reset");

server.on("error", (e) => {
  console.error(`fault-server: ${e.message}`);
  process.exit(1);
});
server.listen({ host, port, ipv6Only: host.includes(":"), backlog: 1024 }, () => console.log("listening"));
