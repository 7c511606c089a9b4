/**
 * The run-time configuration shared by every layer: what the guest is told
 * (addresses, routes, DNS, MTU) and which services and paths are on.
 *
 * It is filled once at start-up by the CLI (src/conf/options.ts) from the
 * command line and host discovery (src/conf/host.ts), then read, never
 * written, by the data path. Addresses are kept in wire form so the data path
 * compares and copies them without conversion: IPv4 as an unsigned 32-bit
 * number in host order (192.0.2.1 is 0xc0000201), IPv6 as 16 bytes.
 */

export type Mode = "pasta" | "passt";

export interface Ip4Config {
  /** Address handed to the guest (default: the host's on the outbound interface). */
  addr: number;
  prefixLen: number;
  /** Default gateway handed to the guest; 0 when the host has none. */
  gw: number;
  /** DNS servers handed to the guest (DHCP option 6). */
  dns: number[];
  /** --dns-forward: DNS to this address goes to dnsHost (src/flows/nat.ts); 0: none. */
  dnsMatch: number;
  /** --dns-host: the resolver dnsMatch traffic goes to (default: the first of resolv.conf); 0: none. */
  dnsHost: number;
  /** --map-host-loopback: guest traffic to this address reaches the host's loopback (default: gw); 0: none. */
  mapHostLoopback: number;
  /** --map-guest-addr: guest traffic to this address reaches addr on the host; 0: none. */
  mapGuestAddr: number;
  /** Host outbound interface name (for -i / --outbound-if4); "" in local mode. */
  ifname: string;
  /** --config-net: copy every address of ifname (else addr alone); off with -a, --no-copy-addrs, in local mode. */
  copyAddrs: boolean;
  /** --config-net: copy every route through ifname (else the default route via gw alone); off with -g, --no-copy-routes, in local mode. */
  copyRoutes: boolean;
}

export interface Ip6Config {
  /** Address handed to the guest (default: the host's global address on the outbound interface); all zeros for none (local mode). */
  addr: Uint8Array;
  prefixLen: number;
  /** Default gateway handed to the guest (often link-local); all zeros when none. */
  gw: Uint8Array;
  /** Our link-local address on the tap: source of RAs and NDP answers (the gateway when it is link-local, else fe80::1). */
  ourLL: Uint8Array;
  dns: Uint8Array[];
  /** As for IPv4, null for none. */
  dnsMatch: Uint8Array | null;
  dnsHost: Uint8Array | null;
  mapHostLoopback: Uint8Array | null;
  mapGuestAddr: Uint8Array | null;
  ifname: string;
  copyAddrs: boolean;
  copyRoutes: boolean;
}

export interface Config {
  mode: Mode;
  /** Our MAC address on the tap side (source of every frame we send). */
  ourMac: Uint8Array;
  /** MAC for the namespace interface (pasta sets it); all zeros: let the kernel choose. */
  nsMac: Uint8Array;
  /** Name of the interface in the namespace (pasta). */
  nsIfname: string;
  mtu: number;
  /** null when IPv4 is disabled (-6); without a host interface to copy, local mode (see host.ts). */
  ip4: Ip4Config | null;
  /** null when IPv6 is disabled (-4); without a host interface to copy, local mode (see host.ts). */
  ip6: Ip6Config | null;
  dnsSearch: string[];
  /** Hand out DNS servers (DHCP 6, DHCPv6 23, NDP RDNSS): passt does by default, pasta with --dhcp-dns. */
  dhcpDns: boolean;
  /** Hand out the search list (DHCP 15 and 119, DHCPv6 24, NDP DNSSL): passt does by default, pasta with --dhcp-search. */
  dhcpSearch: boolean;
  /** -H: hostname for DHCP option 12 (pasta also names a namespace it creates so); "" for none. */
  hostname: string;
  /** --fqdn: the guest's FQDN for DHCP option 81 and DHCPv6 option 39; "" for none. */
  fqdn: string;
  noDhcp: boolean;
  noNdp: boolean;
  noDhcpv6: boolean;
  noRa: boolean;
  noIcmp: boolean;
  /** --no-udp: no UDP from the guest (and so no multicast), beyond the forwarded ports. */
  noUdp: boolean;
  /** pasta: configure address, routes and MTU in the namespace over netlink. */
  configNet: boolean;
  /** -o: source address for outbound IPv4 sockets; 0 = the kernel chooses. */
  outbound4: number;
  /** -o: source address for outbound IPv6 sockets; null = the kernel chooses. */
  outbound6: Uint8Array | null;
  /** --outbound-if4/6: interface outbound sockets are bound to (SO_BINDTODEVICE); null = none. */
  outboundIf4: string | null;
  outboundIf6: string | null;
}

/** Parse dotted IPv4 into a host-order u32; throws on bad input. */
export function parseIp4(s: string): number {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(s);
  if (!m) throw new Error(`bad IPv4 address: ${s}`);
  let v = 0;
  for (let i = 1; i <= 4; i++) {
    const n = Number(m[i]);
    if (n > 255) throw new Error(`bad IPv4 address: ${s}`);
    v = v * 256 + n;
  }
  return v >>> 0;
}

export function formatIp4(v: number): string {
  return `${v >>> 24}.${(v >>> 16) & 255}.${(v >>> 8) & 255}.${v & 255}`;
}

/** Parse an IPv6 address (with :: and an optional trailing dotted quad) into 16 bytes. */
export function parseIp6(s: string): Uint8Array {
  const bad = () => new Error(`bad IPv6 address: ${s}`);
  const zone = s.indexOf("%");
  if (zone >= 0) s = s.slice(0, zone);
  const out = new Uint8Array(16);
  const halves = s.split("::");
  if (halves.length > 2) throw bad();
  const words = (part: string): number[] => {
    if (part === "") return [];
    const res: number[] = [];
    const groups = part.split(":");
    for (let i = 0; i < groups.length; i++) {
      const g = groups[i]!;
      if (i === groups.length - 1 && g.includes(".")) {
        const v4 = parseIp4(g);
        res.push(v4 >>> 16, v4 & 0xffff);
      } else {
        if (!/^[0-9a-fA-F]{1,4}$/.test(g)) throw bad();
        res.push(parseInt(g, 16));
      }
    }
    return res;
  };
  const head = words(halves[0]!);
  const tail = halves.length === 2 ? words(halves[1]!) : [];
  if (halves.length === 1 && head.length !== 8) throw bad();
  if (head.length + tail.length > (halves.length === 2 ? 7 : 8)) throw bad();
  const all = halves.length === 2 ? [...head, ...new Array(8 - head.length - tail.length).fill(0), ...tail] : head;
  for (let i = 0; i < 8; i++) {
    out[i * 2] = all[i]! >>> 8;
    out[i * 2 + 1] = all[i]! & 255;
  }
  return out;
}

/** Format 16 bytes (at offset off) as an RFC 5952 IPv6 string. */
export function formatIp6(b: Uint8Array, off = 0): string {
  const w: number[] = [];
  for (let i = 0; i < 8; i++) w.push((b[off + i * 2]! << 8) | b[off + i * 2 + 1]!);
  let bestStart = -1,
    bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (w[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && w[j] === 0) j++;
    if (j - i > bestLen && j - i > 1) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = (a: number[]) => a.map((x) => x.toString(16)).join(":");
  if (bestStart < 0) return hex(w);
  return `${hex(w.slice(0, bestStart))}::${hex(w.slice(bestStart + bestLen))}`;
}

export function parseMac(s: string): Uint8Array {
  const m = /^([0-9a-fA-F]{2}):([0-9a-fA-F]{2}):([0-9a-fA-F]{2}):([0-9a-fA-F]{2}):([0-9a-fA-F]{2}):([0-9a-fA-F]{2})$/.exec(s);
  if (!m) throw new Error(`bad MAC address: ${s}`);
  return Uint8Array.from(m.slice(1).map((x) => parseInt(x, 16)));
}

export function formatMac(b: Uint8Array, off = 0): string {
  const parts: string[] = [];
  for (let i = 0; i < 6; i++) parts.push(b[off + i]!.toString(16).padStart(2, "0"));
  return parts.join(":");
}

export function isZero(b: Uint8Array): boolean {
  for (let i = 0; i < b.length; i++) if (b[i] !== 0) return false;
  return true;
}

export function isLinkLocal6(b: Uint8Array): boolean {
  return b[0] === 0xfe && (b[1]! & 0xc0) === 0x80;
}
