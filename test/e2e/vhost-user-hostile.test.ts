/**
 * passt --vhost-user against front-ends that are not QEMU: a well-behaved one
 * written here (test/tools/vu-frontend.ts: its own guest memory in a memfd,
 * both queues) whose ARP request must be answered through the rings, and
 * hostile ones: absurd ring sizes, wrong descriptor counts, unknown requests
 * and versions, a memory region larger than the file it is mapped from,
 * rings outside the memory table, descriptor chains that loop
 * or point outside the memory table, lengths past a region, an available
 * index that jumps. Each must be refused and disconnected, with passt still
 * serving: the next well-behaved front-end gets its ARP reply, and the
 * counters passt prints at exit (-d) count every refusal.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { join } from "node:path";
import { createWorld, describeE2E, isAlive, type Child, type World } from "../world.ts";
import { PASST_ENV, passtArgv } from "../tools/relay.ts";
import { GUEST_FRAMES } from "../tools/guest-frames.ts";
import { BUF_SIZE, MEM_SIZE, QUEUE_SIZE, UADDR, VuFrontend, memTable, state, u64, vringAddr } from "../tools/vu-frontend.ts";
import { FEATURES, Req, w64 } from "../../src/tap/vhost-msg.ts";

const ETH_P_ARP = 0x0806;

describeE2E("passt --vhost-user with hostile front-ends", () => {
  let w: World;
  let passt: Child;
  let sock = "";
  beforeAll(async () => {
    w = await createWorld();
    sock = join(w.dir, "vu.socket");
    passt = w.spawn(w.host, passtArgv(["-f", "-d", "--vhost-user", "-s", sock]), { env: PASST_ENV });
    await passt.waitFor("UNIX domain socket bound at", { stream: "stderr", timeoutMs: 20000 });
  }, 60000);
  afterAll(async () => {
    await passt?.kill();
    await w?.destroy();
  }, 60000);

  /** Connections passt has finished with so far. */
  const closedCount = () => passt.stderr().split("client connection closed").length - 1;

  /**
   * After our end of a connection closed: wait until passt is done with it
   * too, so that the next connection is not the second client of the moment
   * (passt serves one at a time and closes a second one unread).
   */
  async function passtDone(before: number): Promise<void> {
    const end = Date.now() + 5000;
    while (closedCount() <= before && Date.now() < end) await Bun.sleep(10);
  }

  /** A well-behaved front-end: its ARP request for the gateway is answered in its receive buffers. */
  async function arpAnswered(): Promise<boolean> {
    const before = closedCount();
    const f = VuFrontend.connect(sock);
    try {
      f.setup();
      f.offerRx(8);
      f.sendFrame(GUEST_FRAMES.ARP_REQUEST!);
      const frames = await f.receive();
      return frames.some((b) => b.length >= 42 && ((b[12]! << 8) | b[13]!) === ETH_P_ARP && b[21] === 2);
    } finally {
      f.close();
      await passtDone(before);
    }
  }

  test("a well-behaved front-end: set-up, and an ARP request answered through the rings", async () => {
    expect(await arpAnswered(), passt.stderr()).toBe(true);
  });

  test("hostile front-ends are refused and disconnected, each counted; passt serves the next one", async () => {
    const bad: [string, (f: VuFrontend) => void, "message" | "ring"][] = [
      ["ring size 3", (f) => f.send(Req.SET_VRING_NUM, state(0, 3)), "message"],
      ["ring size 65536", (f) => f.send(Req.SET_VRING_NUM, state(1, 65536)), "message"],
      ["queue 2", (f) => f.send(Req.SET_VRING_NUM, state(2, 256)), "message"],
      ["memory table without its descriptor", (f) => f.send(Req.SET_MEM_TABLE, memTable()), "message"],
      ["memory table with two descriptors", (f) => f.send(Req.SET_MEM_TABLE, memTable(), [f.memFd, f.memFd]), "message"],
      [
        "a memory region larger than its file (SIGBUS if touched)",
        (f) => f.send(Req.SET_MEM_TABLE, memTable(MEM_SIZE * 2), [f.memFd]),
        "message",
      ],
      ["kick without its descriptor", (f) => f.send(Req.SET_VRING_KICK, u64(0)), "message"],
      ["unknown request", (f) => f.send(99), "message"],
      ["protocol version 2", (f) => f.send(Req.GET_FEATURES, undefined, [], 2), "message"],
      ["features never offered", (f) => f.send(Req.SET_FEATURES, u64(FEATURES + 2 ** 29)), "message"],
      [
        "rings outside the memory table",
        (f) => {
          f.send(Req.SET_MEM_TABLE, memTable(), [f.memFd]);
          f.send(Req.SET_VRING_NUM, state(0, QUEUE_SIZE));
          const a = vringAddr(0);
          w64(a, 8, UADDR + MEM_SIZE - 16); // the descriptor table runs past the region
          f.send(Req.SET_VRING_ADDR, a);
        },
        "message",
      ],
      [
        "a descriptor chain that loops",
        (f) => {
          f.setup();
          f.desc(1, 0, 0x40000, 100, 1, 1);
          f.desc(1, 1, 0x40000, 100, 1, 0);
          f.offer(1, 0);
        },
        "ring",
      ],
      [
        "a descriptor outside the memory table",
        (f) => {
          f.setup();
          f.desc(1, 0, MEM_SIZE + 4096, 100, 0, 0);
          f.offer(1, 0);
        },
        "ring",
      ],
      [
        "a length past the region",
        (f) => {
          f.setup();
          f.desc(1, 0, MEM_SIZE - 100, 4096, 0, 0);
          f.offer(1, 0);
        },
        "ring",
      ],
      [
        "a chain head beyond the ring",
        (f) => {
          f.setup();
          f.offer(1, QUEUE_SIZE + 5);
        },
        "ring",
      ],
      [
        "receive buffers outside the memory table, written to by an ARP reply",
        (f) => {
          f.setup();
          f.desc(0, 0, MEM_SIZE * 2, BUF_SIZE, 2, 0);
          f.offer(0, 0);
          f.sendFrame(GUEST_FRAMES.ARP_REQUEST!);
        },
        "ring",
      ],
      [
        "an available index that runs past the ring",
        (f) => {
          f.setup();
          f.dv.setUint16(0x10000 + 0x1000 + 2, QUEUE_SIZE + 10, true);
          f.kickQueue(1);
        },
        "ring",
      ],
    ];
    for (const [name, act, _kind] of bad) {
      const before = closedCount();
      const f = VuFrontend.connect(sock);
      try {
        act(f);
        expect(f.closedByPeer(), `${name}: still connected\n${passt.stderr()}`).toBe(true);
      } finally {
        f.close();
        await passtDone(before);
      }
      expect(isAlive(passt.pid), `${name}: passt is gone\n${passt.stderr()}`).toBe(true);
    }
    expect(await arpAnswered(), `after the hostile ones\n${passt.stderr()}`).toBe(true);
    await passt.kill();
    const messages = bad.filter((b) => b[2] === "message").length;
    const rings = bad.filter((b) => b[2] === "ring").length;
    expect(passt.stderr()).toMatch(new RegExp(`"badMessages":${messages},"badRings":${rings}`));
  });
});
