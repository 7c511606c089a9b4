/**
 * --runas UID|UID:GID|LOGIN|LOGIN:GROUP: the user and group to become,
 * read from /etc/passwd and /etc/group (no NSS: the original reads the
 * same files through getpwnam in a static binary). passt changes to them
 * when started as root (src/passt.ts); pasta keeps the user that started it,
 * so it takes --runas only when it names that user (checkPastaRunas).
 */
import { readFileSync } from "node:fs";

export interface Ids {
  uid: number;
  gid: number;
  name: string;
}

/** --runas UID, UID:GID, LOGIN or LOGIN:GROUP. */
export function parseRunas(runas: string): Ids {
  const [u, g] = runas.split(":", 2) as [string, string | undefined];
  let uid: number;
  let gid: number | null = null;
  if (/^\d+$/.test(u)) uid = Number(u);
  else {
    const pw = lookupPasswd(u);
    if (!pw) throw new Error(`--runas: no user ${u}`);
    uid = pw.uid;
    gid = pw.gid;
  }
  if (g !== undefined && g !== "") {
    if (/^\d+$/.test(g)) gid = Number(g);
    else {
      const gr = lookupGroup(g);
      if (gr === null) throw new Error(`--runas: no group ${g}`);
      gid = gr;
    }
  }
  if (gid === null) gid = lookupPasswdByUid(uid)?.gid ?? uid;
  if (uid > 0xfffffffe || gid > 0xfffffffe) throw new Error(`--runas: bad ID in ${runas}`);
  return { uid, gid, name: runas };
}

function passwdEntries(): string[][] {
  try {
    return readFileSync("/etc/passwd", "utf8")
      .split("\n")
      .map((l) => l.split(":"));
  } catch {
    return [];
  }
}

export function lookupPasswd(name: string): { uid: number; gid: number } | null {
  const e = passwdEntries().find((f) => f[0] === name && f.length >= 4);
  return e ? { uid: Number(e[2]), gid: Number(e[3]) } : null;
}

function lookupPasswdByUid(uid: number): { uid: number; gid: number } | null {
  const e = passwdEntries().find((f) => f.length >= 4 && Number(f[2]) === uid);
  return e ? { uid, gid: Number(e[3]) } : null;
}

function lookupGroup(name: string): number | null {
  try {
    const e = readFileSync("/etc/group", "utf8")
      .split("\n")
      .map((l) => l.split(":"))
      .find((f) => f[0] === name && f.length >= 3);
    return e ? Number(e[2]) : null;
  } catch {
    return null;
  }
}

/** pasta: a --runas naming the user and group we run as is honoured by staying; another one is refused. */
export function checkPastaRunas(runas: string | null): void {
  if (runas === null) return;
  const ids = parseRunas(runas);
  const uid = process.geteuid!();
  const gid = process.getegid!();
  if (ids.uid !== uid || ids.gid !== gid)
    throw new Error(`--runas ${runas}: pasta keeps the user that started it (UID ${uid}, GID ${gid})`);
}
