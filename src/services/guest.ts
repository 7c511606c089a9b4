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
