/**
 * The C shim loads both ways (src/native/ffi.ts): the library built at
 * install time (PASTA_SHIM=lib) and the same source compiled at start-up by
 * TinyCC (PASTA_SHIM=tcc). Each way runs in a `bun -e` process of its own (the
 * choice is made once, at import), reports which way it loaded, and computes
 * checksums and a few harmless calls; both must work and agree with each
 * other and with a reference written here in TypeScript.
 *
 * u32 arguments with the top bit set get a test of their own: JavaScript
 * holds such numbers as doubles, not int32s, and Bun's cc() wrapper has
 * decoded those wrongly (oven-sh/bun PR #37978); the program passes them as
 * partial checksums and as epoll event masks with EPOLLET (1 << 31).
 */
import { expect, test } from "bun:test";
import { join } from "node:path";

const REPO = join(import.meta.dir, "..", "..");
const FFI = join(REPO, "src", "native", "ffi.ts");

/** Deterministic test buffers: known vectors, then odd and even lengths of pseudo-random bytes. */
function buffers(): Uint8Array[] {
  const hex = (s: string) => Uint8Array.from(s.match(/../g)!.map((x) => parseInt(x, 16)));
  const out = [
    new Uint8Array(0),
    Uint8Array.of(0xff),
    // the IPv4 header of RFC 1071 examples (checksum field zero): sum 0x2479c, checksum 0xb861
    hex("450000730000400040110000c0a80001c0a800c7"),
    new Uint8Array(70000).fill(0xff), // many carries
  ];
  let s = 0x12345678;
  for (const len of [1, 2, 3, 7, 8, 9, 15, 16, 17, 63, 64, 65, 1499, 1500, 9001, 65535]) {
    const b = new Uint8Array(len);
    for (let i = 0; i < len; i++) {
      s = (Math.imul(s, 1103515245) + 12345) >>> 0;
      b[i] = s >>> 24;
    }
    out.push(b);
  }
  return out;
}

/** The shim's contract: 16-bit big-endian words (odd tail padded) added to init, folded to 16 bits. */
function refCsum(b: Uint8Array, init: number): number {
  let sum = BigInt(init);
  for (let i = 0; i + 1 < b.length; i += 2) sum += BigInt((b[i]! << 8) | b[i + 1]!);
  if (b.length & 1) sum += BigInt(b[b.length - 1]! << 8);
  while (sum >> 16n) sum = (sum & 0xffffn) + (sum >> 16n);
  return Number(sum);
}

function fold16(sum: number): number {
  while (sum > 0xffff) sum = (sum & 0xffff) + Math.floor(sum / 0x10000);
  return ~sum & 0xffff;
}

/** Initial sums that are int32s in JavaScript. */
const INITS = [0, 1, 0xffff, 0x7ffffffe];
/** Initial sums with the top bit set: doubles in JavaScript. */
const INITS_HIGH = [0x80000000, 0x80000001, 0xfffffffe, 0xffffffff];
const EPOLLIN = 0x001;
const EPOLLET = 0x80000000;

interface EpollResult {
  rc: number;
  n: number;
  events: number | null;
}

interface Report {
  kind: string;
  version: number;
  csums: number[];
  csumsHigh: number[];
  uid: number;
  epoll: number;
  /** what epoll said for stdin (a pipe with data) registered with EPOLLIN, and with EPOLLIN | EPOLLET */
  stdinIn: EpollResult;
  stdinInEt: EpollResult;
}

/** Load the shim in a fresh process with PASTA_SHIM=want; what it reports. */
function load(want: "lib" | "tcc" | null): Report {
  const script = `
    const { shimKind, sys } = await import(${JSON.stringify(FFI)});
    const buffers = ${buffers.toString()};
    const sums = (inits) => {
      const out = [];
      for (const b of buffers()) for (const init of inits) out.push(sys.shim_csum(b, b.length, init | 0));
      return out;
    };
    const csums = sums(${JSON.stringify(INITS)});
    const csumsHigh = sums(${JSON.stringify(INITS_HIGH)});
    const ep = sys.shim_epoll_create();
    if (ep >= 0) sys.shim_close(ep);
    const stdinEvents = (events) => {
      const e = sys.shim_epoll_create();
      const rc = sys.shim_epoll_ctl(e, 1, 0, events | 0, 0x01000005);
      const pairs = new Uint32Array(8);
      const n = rc < 0 ? rc : sys.shim_epoll_wait(e, pairs, 4, 0);
      sys.shim_close(e);
      return { rc, n, events: n === 1 && pairs[1] === 0x01000005 ? pairs[0] : null };
    };
    const stdinIn = stdinEvents(${EPOLLIN});
    const stdinInEt = stdinEvents(${EPOLLIN} | ${EPOLLET});
    console.log(JSON.stringify({ kind: shimKind, version: sys.shim_version(), csums, csumsHigh, uid: sys.shim_getuid(), epoll: ep, stdinIn, stdinInEt }));
  `;
  const env: Record<string, string> = { ...(process.env as Record<string, string>) };
  delete env.PASTA_SHIM;
  if (want) env.PASTA_SHIM = want;
  // stdin: a pipe with data in it (and its writer gone)
  const r = Bun.spawnSync(["sh", "-c", 'echo x | exec "$@"', "sh", process.execPath, "-e", script], {
    cwd: REPO,
    env,
    stdout: "pipe",
    stderr: "pipe",
    timeout: 60000,
  });
  const out = r.stdout.toString().trim();
  if (r.exitCode !== 0 || !out)
    throw new Error(`PASTA_SHIM=${want ?? "(unset)"}: bun -e exited ${r.exitCode}\n${r.stderr.toString()}${out}`);
  return JSON.parse(out.split("\n").at(-1)!);
}

const expected = buffers().flatMap((b) => INITS.map((init) => refCsum(b, init)));
const expectedHigh = buffers().flatMap((b) => INITS_HIGH.map((init) => refCsum(b, init)));

test("reference checksum: RFC 1071 example header", () => {
  const hdr = buffers()[2]!;
  expect(refCsum(hdr, 0)).toBe(0x479e); // 0x2479c folded to 16 bits
  expect(fold16(refCsum(hdr, 0))).toBe(0xb861);
});

for (const want of ["lib", "tcc"] as const) {
  test(`PASTA_SHIM=${want}: loads that way, checksums right, calls work`, () => {
    const r = load(want);
    expect(r.kind).toBe(want);
    expect(r.version).toBeGreaterThan(0);
    expect(r.csums).toEqual(expected);
    expect(fold16(r.csums[2 * INITS.length]!)).toBe(0xb861);
    expect(r.uid).toBe(process.getuid!());
    expect(r.epoll).toBeGreaterThanOrEqual(0);
    expect(r.stdinIn).toMatchObject({ rc: 0, n: 1 });
    expect(r.stdinIn.events! & EPOLLIN).toBe(EPOLLIN);
  }, 60000);

  test(`PASTA_SHIM=${want}: checksum partial sums of 2^31 and more (u32 arguments with the top bit set) arrive intact`, () => {
    const r = load(want);
    expect(r.kind).toBe(want);
    const wrong = r.csumsHigh.flatMap((got, k) =>
      got === expectedHigh[k]
        ? []
        : [
            `init 0x${INITS_HIGH[k % INITS_HIGH.length]!.toString(16)}, buffer ${Math.floor(k / INITS_HIGH.length)}: 0x${got.toString(16)}, expected 0x${expectedHigh[k]!.toString(16)}`,
          ],
    );
    expect(wrong.slice(0, 4), `${wrong.length} of ${r.csumsHigh.length} checksums wrong`).toEqual([]);
  }, 60000);

  test(`PASTA_SHIM=${want}: epoll_ctl with EPOLLIN | EPOLLET (1 << 31) reports a readable pipe`, () => {
    const r = load(want);
    expect(r.kind).toBe(want);
    expect(r.stdinIn, "EPOLLIN alone").toMatchObject({ rc: 0, n: 1 });
    expect(r.stdinIn.events! & EPOLLIN, "EPOLLIN alone").toBe(EPOLLIN);
    expect(r.stdinInEt, "EPOLLIN | EPOLLET").toMatchObject({ rc: 0, n: 1 });
    const ev = r.stdinInEt.events!;
    expect(`0x${(ev & EPOLLIN).toString(16)}`, `events for EPOLLIN | EPOLLET: 0x${ev.toString(16)}, EPOLLIN missing`).toBe(
      `0x${EPOLLIN.toString(16)}`,
    );
  }, 60000);
}

test("both ways agree, and without PASTA_SHIM the built library is preferred", () => {
  const lib = load("lib");
  const tcc = load("tcc");
  expect(tcc.version).toBe(lib.version);
  const differ = (a: number[], b: number[]) => a.filter((v, k) => v !== b[k]).length;
  expect(differ(tcc.csums, lib.csums), "checksums (int32 initial sums) that differ").toBe(0);
  expect(differ(tcc.csumsHigh, lib.csumsHigh), "checksums (initial sums >= 2^31) that differ").toBe(0);
  expect(tcc.stdinInEt).toEqual(lib.stdinInEt);
  expect(load(null).kind).toBe("lib");
}, 60000);
