/**
 * What we have learnt about the guest from its own frames: its MAC address
 * (from ARP, NDP or any frame it sends) and the IPv6 address it actually
 * uses (it may differ from the one we advertise: SLAAC with privacy
 * extensions, a static configuration). Frames to the guest go to this MAC;
 * until it is known, callers use the broadcast address.
 */

/** Learnt guest identity. Mutated in place, never replaced. */
export const guest = {
  mac: new Uint8Array(6),
  known: false,
  /** Last global or link-local source address seen in the guest's IPv6 traffic. */
  addr6: new Uint8Array(16),
  addr6Known: false,
};

/**
 * The guest's IPv6 address for traffic we start towards it: the global
 * address it was seen using, else the one we hand out (a link-local source
 * seen in NDP or DHCPv6 is no destination for connections from afar).
 */
export function guestAddr6(assigned: Uint8Array): Uint8Array {
  const ll = guest.addr6[0] === 0xfe && (guest.addr6[1]! & 0xc0) === 0x80;
  return guest.addr6Known && !ll ? guest.addr6 : assigned;
}

/** Forget everything learnt (passt: the client went away; the next one is another guest). */
export function forgetGuest(): void {
  guest.known = false;
  guest.mac.fill(0);
  guest.addr6Known = false;
  guest.addr6.fill(0);
}
