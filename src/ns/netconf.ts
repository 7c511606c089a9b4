/**
 * Set up the namespace's side over netlink: loopback and tap up, MTU, MAC and,
 * with --config-net, addresses and routes: those of the host interface we
 * derive from (copied, as upstream does by default since 2023), or the ones
 * the guest would otherwise learn from DHCP, SLAAC and DHCPv6.
 *
 * The netlink socket is made inside the namespace by a shim thread (see
 * native/shim.c), then used from the main thread; it is closed at the end.
 * Copying reads the host through a second socket, in our own namespace.
 */
import { isZero, type Config } from "../conf/config.ts";
import * as nl from "../conf/netlink.ts";
import { sys } from "../native/ffi.ts";

/** Configure interface ifname (and lo) in the network namespace nsfd; lo only when ifname is null (--splice-only: no tap). */
export function configureInterface(nsfd: number, ifname: string | null, cfg: Config): void {
  const fd = nl.openNetlink(nsfd);
  try {
    const talk = nl.makeTalk(fd);
    const lo = nl.linkIndex(talk, "lo");
    if (lo > 0) nl.linkSet(talk, lo, { up: true });
    if (ifname === null) return;
    const idx = nl.linkIndex(talk, ifname);
    const mac = isZero(cfg.nsMac) ? undefined : cfg.nsMac;
    nl.linkSet(talk, idx, { mtu: cfg.mtu, mac });
    nl.linkSet(talk, idx, { up: true });
    if (cfg.configNet) addAddressesAndRoutes(talk, idx, cfg);
  } finally {
    sys.shim_close(fd);
  }
}

/**
 * --config-net: for each IP version, the host interface's addresses (all but
 * link-local ones) and routes (all of the main table through it), copied as
 * upstream does; or, where copying is off (-a, -g, --no-copy-addrs,
 * --no-copy-routes, local mode), the one address and the default route that
 * DHCP, DHCPv6 and NDP would have given.
 */
function addAddressesAndRoutes(talk: nl.NlTalk, idx: number, cfg: Config): void {
  const plans: Plan[] = [];
  if (cfg.ip4) {
    const { addr, gw } = cfg.ip4;
    plans.push({ ...cfg.ip4, family: nl.AF_INET, addr: addr ? nl.ip4ToBytes(addr) : null, gw: gw ? nl.ip4ToBytes(gw) : null });
  }
  if (cfg.ip6) {
    const { addr, gw } = cfg.ip6;
    plans.push({ ...cfg.ip6, family: nl.AF_INET6, addr: isZero(addr) ? null : addr, gw: isZero(gw) ? null : gw });
  }
  const copying = plans.some((p) => p.copyAddrs || p.copyRoutes);
  const hostFd = copying ? nl.openNetlink(-1) : -1;
  try {
    const host = copying ? nl.makeTalk(hostFd) : null;
    for (const p of plans) setUp(talk, host, idx, p);
  } finally {
    if (hostFd >= 0) sys.shim_close(hostFd);
  }
}

/** What --config-net does for one IP version: copy from host interface ifname, or set addr/prefixLen and a default route via gw. */
interface Plan {
  family: nl.Family;
  ifname: string;
  copyAddrs: boolean;
  copyRoutes: boolean;
  addr: Uint8Array | null;
  prefixLen: number;
  gw: Uint8Array | null;
}

/**
 * One IP version on interface idx: addresses first (copied through host, the
 * netlink socket of our own namespace, or the single one), then routes, as
 * routes need the prefixes the addresses bring.
 */
function setUp(talk: nl.NlTalk, host: nl.NlTalk | null, idx: number, p: Plan): void {
  const from = host && (p.copyAddrs || p.copyRoutes) ? nl.linkIndex(host, p.ifname) : 0;
  if (host && p.copyAddrs) {
    for (const req of nl.addrCopies(host, p.family, from, idx)) talk(req);
  } else if (p.addr) {
    nl.addrAdd(talk, p.family, idx, p.addr, p.prefixLen, { nodad: p.family === nl.AF_INET6 });
  }
  if (host && p.copyRoutes) nl.addRoutes(talk, nl.routeCopies(nl.getMainRoutes(host, p.family), from, idx));
  else if (p.gw) nl.routeAdd(talk, p.family, idx, p.gw, null, { onlink: true });
}
