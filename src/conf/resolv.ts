/**
 * resolv.conf: the host's DNS servers and search list, which are handed to
 * the guest unless -D/--dns or -S/--search say otherwise.
 *
 * Only three keywords matter here: "nameserver ADDR" (IPv4, or IPv6 with an
 * optional %zone that we drop), "search DOMAIN..." and "domain DOMAIN". As the
 * resolver does, search and domain replace each other: the last one wins.
 * Comments start with '#' or ';' anywhere on a line; unknown keywords and
 * malformed addresses are skipped, since a host's resolv.conf is not ours to
 * reject. Servers keep their order, without duplicates.
 */
import { readFileSync } from "node:fs";
import { parseIp4, parseIp6 } from "./config.ts";

export const RESOLV_CONF_PATH = "/etc/resolv.conf";

export interface ResolvConf {
  /** IPv4 servers, host-order u32. */
  dns4: number[];
  /** IPv6 servers, 16 bytes each (zone ids dropped). */
  dns6: Uint8Array[];
  search: string[];
}

/** Parse resolv.conf text into servers and search list. */
export function parseResolvConf(text: string): ResolvConf {
  const out: ResolvConf = { dns4: [], dns6: [], search: [] };
  for (const raw of text.split("\n")) {
    const words = raw
      .replace(/[#;].*$/, "")
      .trim()
      .split(/\s+/);
    const key = words[0];
    if (key === "nameserver" && words.length >= 2) addServer(out, words[1]!);
    else if (key === "search" || key === "domain") out.search = words.slice(1).filter((w) => w !== "");
  }
  return out;
}

/** Add one nameserver address to out, ignoring junk and duplicates. */
function addServer(out: ResolvConf, text: string): void {
  try {
    if (text.includes(":")) {
      const a = parseIp6(text);
      if (!out.dns6.some((b) => sameBytes(a, b))) out.dns6.push(a);
    } else {
      const a = parseIp4(text);
      if (!out.dns4.includes(a)) out.dns4.push(a);
    }
  } catch {
    /* Not an address: the resolver would skip it as well. */
  }
}

/** Whether two byte arrays hold the same bytes. */
function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

/** Read and parse the file at path; a missing or unreadable file gives empty lists. */
export function readResolvConf(path = RESOLV_CONF_PATH): ResolvConf {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch {
    return { dns4: [], dns6: [], search: [] };
  }
  return parseResolvConf(text);
}
