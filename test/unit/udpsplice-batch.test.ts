/**
 * The spliced UDP path's reads (src/flows/udpsplice.ts): one datagram at a
 * time while they are large, batches while they are small. Real sockets on
 * the host's loopback: a sender, the -U listener and the target; the test
 * calls fromNsListener as the loop would, and checks that every datagram of
 * a stream that changes size (large, small, large) arrives whole and in
 * order, read by as many reads as the rule says.
 */
import { afterAll, expect, test } from "bun:test";
import { ptr } from "bun:ffi";
import { sys } from "../../src/native/ffi.ts";
import { sockaddr4 } from "../../src/native/sockaddr.ts";
import { AF_INET, SOCK_DGRAM, SOCK_NONBLOCK, SOL_SOCKET, SO_RCVBUF } from "../../src/native/consts.ts";
import { Loop } from "../../src/loop/loop.ts";
import { FlowTable } from "../../src/flows/flow.ts";
import { UdpSplice, udpSpliceStats } from "../../src/flows/udpsplice.ts";
import type { UdpListener } from "../../src/flows/udp.ts";

const LOOPBACK = 0x7f000001;
const fds: number[] = [];
afterAll(() => {
  for (const fd of fds) sys.shim_close(fd);
});

/** A UDP socket bound to 127.0.0.1 at a port the kernel picks: [fd, port]. */
function bound(): [number, number] {
  const fd = sys.shim_socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
  expect(fd).toBeGreaterThanOrEqual(0);
  fds.push(fd);
  sys.shim_setsockopt_int(fd, SOL_SOCKET, SO_RCVBUF, 1 << 20); // capped by net.core.rmem_max: room for this test's datagrams
  const sa = new Uint8Array(16);
  sockaddr4(sa, LOOPBACK, 0);
  expect(sys.shim_bind(fd, sa, 16)).toBe(0);
  const len = new Uint32Array([16]);
  expect(sys.shim_getsockname(fd, sa, len)).toBe(0);
  return [fd, (sa[2]! << 8) | sa[3]!];
}

/** A datagram of size bytes that says which one it is (k) in every byte. */
function datagram(k: number, size: number): Uint8Array {
  return new Uint8Array(size).fill(k & 0xff);
}

test("a stream of large, small, then large datagrams arrives whole and in order, large ones read one at a time", () => {
  const [listenFd, listenPort] = bound();
  const [targetFd, targetPort] = bound();
  const [senderFd] = bound();
  const to = new Uint8Array(16);
  sockaddr4(to, LOOPBACK, listenPort);
  expect(sys.shim_connect(senderFd, to, 16)).toBe(0);

  const sizes = [...Array(2).fill(20000), ...Array(40).fill(1000), ...Array(2).fill(20000)];
  sizes.forEach((size, k) => {
    const d = datagram(k, size);
    expect(sys.shim_send(senderFd, ptr(d), size, 0)).toBe(size);
  });

  const loop = new Loop();
  const splice = new UdpSplice(loop, -1, new FlowTable(loop));
  const l: UdpListener = { fd: listenFd, v6: false, port: listenPort, target: targetPort, taddr: null, addr: new Uint8Array(4) };
  const before = { ...udpSpliceStats };
  splice.fromNsListener(l);
  expect(udpSpliceStats.forwarded - before.forwarded).toBe(sizes.length);
  expect(udpSpliceStats.dropped - before.dropped).toBe(0);

  const got = new Uint8Array(65536);
  sizes.forEach((size, k) => {
    const n = sys.shim_recv(targetFd, ptr(got), got.length, 0);
    expect(n).toBe(size);
    expect(got.subarray(0, n).every((b) => b === (k & 0xff))).toBe(true);
  });
  expect(sys.shim_recv(targetFd, ptr(got), got.length, 0)).toBeLessThan(0);
  // 2 large: a read each; then 32 small, a read each (the last large one is
  // less than 32 datagrams ago); then one read of the remaining 8 small and
  // 2 large (it asks 32, gets 10). Reading 32 at a time from the start, it
  // would take 2 reads.
  expect(udpSpliceStats.reads - before.reads).toBe(35);
});
