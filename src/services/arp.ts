/**
 * ARP responder: the guest sees us as every IPv4 neighbour on its link.
 *
 * We answer each ARP request from the guest with our own MAC, whatever
 * address it asks for (gateway, DNS, any host "on-link"), so that all its
 * IPv4 traffic reaches us. We stay quiet in the cases where an answer would
 * make the guest believe its address is taken: requests for the guest's own
 * address, gratuitous announcements (sender address == target address) and
 * RFC 5227 probes (sender address 0.0.0.0, whatever the target; the guest
 * may be probing an address of its own choosing). Each valid request also
 * teaches us the guest's MAC (services/guest.ts). Malformed ARP is dropped
 * silently.
 */
import type { Config } from "../conf/config.ts";
import type { FrameSink } from "../tap/sink.ts";
import { copyBytes } from "../wire/bytes.ts";
import { ETH_ALEN, ETH_HLEN, ETH_P_ARP, ethCheck, ethType, macIsUnicast, writeEth } from "../wire/eth.ts";
import { ARP_LEN, ARP_SHA, ARPOP_REPLY, ARPOP_REQUEST, arpCheck, arpOp, arpSpa, arpTpa, writeArp } from "../wire/arp.ts";
import type { Guest } from "./guest.ts";

/** Size of our reply: Ethernet header and ARP, no padding (tap devices and qemu take short frames). */
const ARP_REPLY_FRAME = ETH_HLEN + ARP_LEN;

/**
 * True when the request (sender spa, target tpa) must go unanswered: the
 * guest's own address, gratuitous ARP, or an address probe.
 */
function mustIgnore(guestAddr: number, spa: number, tpa: number): boolean {
  return tpa === guestAddr || spa === tpa || spa === 0;
}

/**
 * Handle the ARP frame of len bytes at b[o] (o: its Ethernet header). When it
 * is a valid Ethernet/IPv4 request from a unicast sender, remember the
 * sender's MAC as the guest's (in guest) and, unless mustIgnore says otherwise, queue
 * a unicast reply on sink saying that the target address is at cfg.ourMac.
 * Returns true when a reply was queued.
 */
export function arpHandle(cfg: Config, guest: Guest, b: Uint8Array, o: number, len: number, sink: FrameSink): boolean {
  if (cfg.ip4 === null || ethCheck(b, o, len) < 0 || ethType(b, o) !== ETH_P_ARP) return false;
  const a = o + ETH_HLEN;
  if (arpCheck(b, a, len - ETH_HLEN) < 0 || arpOp(b, a) !== ARPOP_REQUEST) return false;
  if (!macIsUnicast(b, a + ARP_SHA)) return false;
  copyBytes(guest.mac, 0, b, a + ARP_SHA, ETH_ALEN);
  guest.known = true;
  const spa = arpSpa(b, a);
  const tpa = arpTpa(b, a);
  if (mustIgnore(cfg.ip4.addr, spa, tpa)) return false;
  const r = sink.alloc(ARP_REPLY_FRAME);
  if (r < 0) return false;
  const p = writeEth(sink.buf, r, guest.mac, cfg.ourMac, ETH_P_ARP);
  writeArp(sink.buf, p, ARPOP_REPLY, cfg.ourMac, tpa, guest.mac, spa);
  sink.commit(r, ARP_REPLY_FRAME);
  return true;
}
