/**
 * What we have learnt about the guest from its own frames: its MAC address
 * (from ARP, NDP or any frame it sends) and the IPv6 address it actually
 * uses (it may differ from the one we advertise: SLAAC with privacy
 * extensions, a static configuration). Frames to the guest go to this MAC;
 * until it is known, callers use the broadcast address.
 *
 * One Guest per dispatcher, handed to the services and flows that address
 * the guest; passt forgets it when its client goes away.
 */
import { copyBytes, equalBytes } from "../wire/bytes.ts";
import { ip6IsLinkLocal, ip6IsMulticast, ip6IsUnspecified } from "../wire/ipv6.ts";

export class Guest {
  readonly mac = new Uint8Array(6);
  known = false;
  /** Last global or link-local source address seen in the guest's IPv6 traffic. */
  readonly addr6 = new Uint8Array(16);
  addr6Known = false;

  /** The guest sent a frame from the unicast MAC at b[o]. */
  learnMac(b: Uint8Array, o: number): void {
    if (this.known && equalBytes(this.mac, 0, b, o, 6)) return;
    copyBytes(this.mac, 0, b, o, 6);
    this.known = true;
  }

  /** The guest used the IPv6 source address at b[o]: remembered (a global one preferred over a link-local one). */
  learnAddr6(b: Uint8Array, o: number): void {
    if (ip6IsUnspecified(b, o) || ip6IsMulticast(b, o)) return;
    if (this.addr6Known && ip6IsLinkLocal(b, o) && !ip6IsLinkLocal(this.addr6, 0)) return;
    copyBytes(this.addr6, 0, b, o, 16);
    this.addr6Known = true;
  }

  /**
   * The guest's IPv6 address for traffic we start towards it: the global
   * address it was seen using, else the one we hand out (a link-local source
   * seen in NDP or DHCPv6 is no destination for connections from afar).
   */
  addr6For(assigned: Uint8Array): Uint8Array {
    return this.addr6Known && !ip6IsLinkLocal(this.addr6, 0) ? this.addr6 : assigned;
  }

  /** Forget everything learnt (passt: the client went away; the next one is another guest). */
  forget(): void {
    this.known = false;
    this.mac.fill(0);
    this.addr6Known = false;
    this.addr6.fill(0);
  }
}
