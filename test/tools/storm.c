/*
 * storm: ARP requests or IPv6 neighbour solicitations, as fast as a packet
 * socket takes them, out of one interface (for test/e2e/floods.test.ts).
 *
 *   storm arp IFNAME SECONDS MAXFRAMES TARGET4
 *       ARP "who-has TARGET4" from the interface's MAC and IPv4 address
 *   storm ns IFNAME SECONDS MAXFRAMES TARGET6 SOURCE6
 *       neighbour solicitations for TARGET6 from SOURCE6 (the interface's
 *       link-local address), to TARGET6's solicited-node group, with the
 *       interface's MAC as source link-layer option
 *
 * Bounded: stops after SECONDS or MAXFRAMES frames, whichever comes first.
 * Prints "sent N" at the end. Needs CAP_NET_RAW in the interface's network
 * namespace. Frames the socket refuses (full queue) are not counted.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static void die(const char *what)
{
	perror(what);
	exit(1);
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Internet checksum over len bytes, added to sum. */
static uint32_t csum_add(uint32_t sum, const uint8_t *p, size_t len)
{
	for (size_t i = 0; i + 1 < len; i += 2)
		sum += (uint32_t)p[i] << 8 | p[i + 1];
	if (len & 1)
		sum += (uint32_t)p[len - 1] << 8;
	return sum;
}

static uint16_t csum_fold(uint32_t sum)
{
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return ~sum & 0xffff;
}

/* An ARP request for target from mac/ip, into f; returns its length. */
static size_t arp_frame(uint8_t *f, const uint8_t *mac, struct in_addr ip, struct in_addr target)
{
	memset(f, 0, 60);
	memset(f, 0xff, 6);
	memcpy(f + 6, mac, 6);
	f[12] = 0x08, f[13] = 0x06;
	uint8_t *a = f + 14;
	a[1] = 1;		/* Ethernet */
	a[2] = 0x08;		/* IPv4 */
	a[4] = 6, a[5] = 4;
	a[7] = 1;		/* request */
	memcpy(a + 8, mac, 6);
	memcpy(a + 14, &ip, 4);
	memcpy(a + 24, &target, 4);
	return 60;
}

/* A neighbour solicitation for target from src (with mac as its option), into f; returns its length. */
static size_t ns_frame(uint8_t *f, const uint8_t *mac, const struct in6_addr *src, const struct in6_addr *target)
{
	const size_t icmp_len = 32;	/* header 8, target 16, source link-layer option 8 */
	uint8_t dst[16] = { 0xff, 0x02, [11] = 1, [12] = 0xff };

	memcpy(dst + 13, target->s6_addr + 13, 3);
	memset(f, 0, 14 + 40 + icmp_len);
	f[0] = 0x33, f[1] = 0x33;
	memcpy(f + 2, dst + 12, 4);
	memcpy(f + 6, mac, 6);
	f[12] = 0x86, f[13] = 0xdd;
	uint8_t *ip = f + 14;
	ip[0] = 0x60;
	ip[5] = icmp_len;
	ip[6] = 58;		/* ICMPv6 */
	ip[7] = 255;
	memcpy(ip + 8, src, 16);
	memcpy(ip + 24, dst, 16);
	uint8_t *m = ip + 40;
	m[0] = 135;		/* neighbour solicitation */
	memcpy(m + 8, target, 16);
	m[24] = 1, m[25] = 1;	/* source link-layer address, 8 bytes */
	memcpy(m + 26, mac, 6);
	uint32_t sum = csum_add(0, ip + 8, 32);
	sum += icmp_len + 58;
	sum = csum_add(sum, m, icmp_len);
	uint16_t c = csum_fold(sum);
	m[2] = c >> 8, m[3] = c & 0xff;
	return 14 + 40 + icmp_len;
}

int main(int argc, char **argv)
{
	if (argc < 6 || (strcmp(argv[1], "arp") && strcmp(argv[1], "ns")) || (!strcmp(argv[1], "ns") && argc < 7)) {
		fprintf(stderr, "usage: storm arp IFNAME SECONDS MAXFRAMES TARGET4\n"
				"       storm ns IFNAME SECONDS MAXFRAMES TARGET6 SOURCE6\n");
		return 2;
	}
	const char *ifname = argv[2];
	double seconds = atof(argv[3]);
	long max = atol(argv[4]);
	uint8_t frame[128];
	size_t len;

	int s = socket(AF_PACKET, SOCK_RAW, 0);
	if (s < 0)
		die("socket");
	struct ifreq ifr = { 0 };
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", ifname);
	if (ioctl(s, SIOCGIFINDEX, &ifr) < 0)
		die("SIOCGIFINDEX");
	int ifindex = ifr.ifr_ifindex;
	if (ioctl(s, SIOCGIFHWADDR, &ifr) < 0)
		die("SIOCGIFHWADDR");
	uint8_t mac[6];
	memcpy(mac, ifr.ifr_hwaddr.sa_data, 6);

	if (!strcmp(argv[1], "arp")) {
		struct in_addr target, ip;
		if (inet_pton(AF_INET, argv[5], &target) != 1)
			die("TARGET4");
		int u = socket(AF_INET, SOCK_DGRAM, 0);
		if (u < 0 || ioctl(u, SIOCGIFADDR, &ifr) < 0)
			die("SIOCGIFADDR");
		close(u);
		ip = ((struct sockaddr_in *)&ifr.ifr_addr)->sin_addr;
		len = arp_frame(frame, mac, ip, target);
	} else {
		struct in6_addr target, src;
		if (inet_pton(AF_INET6, argv[5], &target) != 1 || inet_pton(AF_INET6, argv[6], &src) != 1)
			die("TARGET6/SOURCE6");
		len = ns_frame(frame, mac, &src, &target);
	}

	struct sockaddr_ll to = { .sll_family = AF_PACKET, .sll_ifindex = ifindex, .sll_halen = 6 };
	memcpy(to.sll_addr, frame, 6);
	double end = now() + seconds;
	long sent = 0;
	for (long n = 0; sent < max; n++) {
		if ((n & 255) == 0 && now() >= end)
			break;
		if (sendto(s, frame, len, 0, (struct sockaddr *)&to, sizeof(to)) == (ssize_t)len)
			sent++;
		else if (errno != ENOBUFS && errno != EAGAIN)
			die("sendto");
	}
	printf("sent %ld\n", sent);
	return 0;
}
