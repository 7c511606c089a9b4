/**
 * Set up the namespace's side over netlink: loopback and tap up, MTU, MAC and,
 * with --config-net, the addresses and default routes the guest would
 * otherwise learn from DHCP, SLAAC and DHCPv6.
 *
 * The netlink socket is made inside the namespace by a shim thread (see
 * native/shim.c), then used from the main thread; it is closed at the end.
 */
import { isZero, type Config } from "../conf/config.ts";
import * as nl from "../conf/netlink.ts";
import { sys } from "../native/ffi.ts";

/** Configure interface ifname (and lo) in the network namespace nsfd. */
export function configureInterface(nsfd: number, ifname: string, cfg: Config): void {
  const fd = nl.openNetlink(nsfd);
  try {
    const talk = nl.makeTalk(fd);
    const lo = nl.linkIndex(talk, "lo");
    if (lo > 0) nl.linkSet(talk, lo, { up: true });
    const idx = nl.linkIndex(talk, ifname);
    const mac = isZero(cfg.nsMac) ? undefined : cfg.nsMac;
    nl.linkSet(talk, idx, { mtu: cfg.mtu, mac });
    nl.linkSet(talk, idx, { up: true });
    if (cfg.configNet) addAddressesAndRoutes(talk, idx, cfg);
  } finally {
    sys.shim_close(fd);
  }
}

/** --config-net: what DHCP and DHCPv6 would have given, without clients. */
function addAddressesAndRoutes(talk: nl.NlTalk, idx: number, cfg: Config): void {
  if (cfg.ip4 && cfg.ip4.addr) {
    nl.addrAdd(talk, nl.AF_INET, idx, nl.ip4ToBytes(cfg.ip4.addr), cfg.ip4.prefixLen);
    if (cfg.ip4.gw) nl.routeAdd(talk, nl.AF_INET, idx, nl.ip4ToBytes(cfg.ip4.gw), null, { onlink: true });
  }
  if (cfg.ip6 && !isZero(cfg.ip6.addr)) {
    nl.addrAdd(talk, nl.AF_INET6, idx, cfg.ip6.addr, cfg.ip6.prefixLen, { nodad: true });
    if (!isZero(cfg.ip6.gw)) nl.routeAdd(talk, nl.AF_INET6, idx, cfg.ip6.gw, null, { onlink: true });
  }
}
