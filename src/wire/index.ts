/**
 * The wire layer in one import: `import * as w from "../wire/index.ts"`.
 * Each protocol lives in its own module; names carry their protocol prefix
 * so that none collide here.
 */
export * from "./bytes.ts";
export * from "./checksum.ts";
export * from "./eth.ts";
export * from "./arp.ts";
export * from "./ipv4.ts";
export * from "./ipv6.ts";
export * from "./icmp.ts";
export * from "./icmpv6.ts";
export * from "./udp.ts";
export * from "./tcp.ts";
