/**
 * Opens TCP connections to HOST:PORT one after the other and holds them, for
 * the descriptor-limit test (test/e2e/faults.test.ts):
 *
 *   bun test/tools/conn-holder.ts HOST PORT MAX
 *
 * Opens up to MAX connections, each waiting for the one before, and stops at
 * the first that fails; prints {"open": N, "error": "..."} (error null when
 * all MAX opened). Then reads commands on stdin, one a line:
 *   echo    each held connection sends a line and must get it back (an echo
 *           server): prints {"echoed": N, "failed": M}
 *   close   closes them all, prints {"closed": N}, exits.
 * Exits on its own after 120 s at most.
 */
import net from "node:net";

const [host, portText, maxText] = process.argv.slice(2);
const port = Number(portText);
const max = Number(maxText);
const held: net.Socket[] = [];

function connect(): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host, port });
    const fail = (e: Error) => reject(e);
    s.once("error", fail);
    s.once("connect", () => {
      s.off("error", fail);
      s.on("error", () => {});
      resolve(s);
    });
    // an accepted connection that is then reset shows as an error or a close
    s.setTimeout(10000, () => s.destroy(new Error("connect timed out")));
  });
}

/** One line through s and back, within 10 s. */
function echo(s: net.Socket, i: number): Promise<boolean> {
  return new Promise((resolve) => {
    const want = `line ${i}\n`;
    let got = "";
    const done = (ok: boolean) => {
      clearTimeout(timer);
      s.off("data", onData);
      resolve(ok);
    };
    const onData = (d: Buffer) => {
      got += d.toString();
      if (got.length >= want.length) done(got === want);
    };
    const timer = setTimeout(() => done(false), 10000);
    s.on("data", onData);
    s.write(want);
  });
}

let error: string | null = null;
for (let i = 0; i < max; i++) {
  try {
    const s = await connect();
    s.setTimeout(0);
    held.push(s);
  } catch (e) {
    error = (e as Error).message;
    break;
  }
}
console.log(JSON.stringify({ open: held.length, error }));

let buf = "";
process.stdin.on("data", async (d) => {
  buf += d.toString();
  let nl: number;
  while ((nl = buf.indexOf("\n")) >= 0) {
    const cmd = buf.slice(0, nl).trim();
    buf = buf.slice(nl + 1);
    if (cmd === "echo") {
      const ok = await Promise.all(held.map((s, i) => echo(s, i)));
      console.log(JSON.stringify({ echoed: ok.filter(Boolean).length, failed: ok.filter((x) => !x).length }));
    } else if (cmd === "close") {
      for (const s of held) s.destroy();
      console.log(JSON.stringify({ closed: held.length }));
      process.exit(0);
    }
  }
});
setTimeout(() => process.exit(3), 120000).unref();
