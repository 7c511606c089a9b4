/**
 * A TCP server that aborts its connection: it accepts one connection, waits
 * for the first bytes from the client, then closes with a reset (SO_LINGER
 * 0, through node:net's resetAndDestroy) and exits.
 *
 *   bun test/tools/tcp-abort-server.ts HOST PORT
 *
 * Prints "listening" once bound and "reset" once the reset is sent.
 */
import net from "node:net";

const [host, portText] = process.argv.slice(2);
const port = Number(portText);
if (!host || !port) {
  console.error("usage: tcp-abort-server.ts HOST PORT");
  process.exit(2);
}

const server = net.createServer((sock) => {
  server.close();
  sock.on("error", () => {});
  sock.once("data", () => {
    (sock as net.Socket & { resetAndDestroy(): void }).resetAndDestroy();
    console.log("reset");
    setTimeout(() => process.exit(0), 200);
  });
});
server.on("error", (e) => {
  console.error(`tcp-abort-server: ${e.message}`);
  process.exit(1);
});
server.listen({ host, port, ipv6Only: host.includes(":") }, () => console.log("listening"));
// bounded: never outlive a test
setTimeout(() => process.exit(3), 60000).unref();
