/*
 * rr: TCP request/response latency, the same tool for every implementation.
 *
 *   rr server [-4|-6] [ADDR] PORT     serve: read 1 byte, write 1 byte back,
 *                                     until EOF
 *   rr rr  HOST PORT SECONDS [IFNAME] one connection, 1-byte request and
 *                                     response, repeated for SECONDS
 *   rr crr HOST PORT SECONDS [IFNAME] a new connection for each 1-byte
 *                                     request and response, for SECONDS:
 *                                     connect, request, response, the
 *                                     server's FIN, close
 *   rr urr HOST PORT SECONDS [IFNAME] UDP: a 1-byte datagram and its echo,
 *                                     repeated for SECONDS from one socket
 *
 * The server listens on TCP and UDP at PORT (one address family, IPv6
 * sockets also take IPv4), echoing each datagram back to its sender.
 *
 * The client prints "tps N transactions T seconds S max_us M slow K" on
 * stdout; latency in microseconds is 1e6 / N, M is the slowest transaction
 * (connect included for crr), K the number of transactions over 100 ms. IFNAME is the scope of a link-local IPv6 HOST.
 * The server prints "ready" on stdout once listening.
 *
 * In crr the server closes first (request byte 'c'), so that TIME_WAIT
 * sockets pile up on the server's side, next to its listening port, and not
 * on the client's ephemeral ports: thousands of connections a second would
 * otherwise fill the port range within seconds, and connect() would slow
 * down as it searches for a free port (for every implementation alike, but
 * measuring the kernel's port search, not the implementation).
 *
 * Bounded: a client gives up on an exchange after 5 s (prints an error and
 * exits 2). In urr a datagram without an answer after URR_RETRY is sent
 * again (the wait counts in that transaction's time, "lost" counts them). The server serves every connection from one epoll loop, so a
 * connection that hangs does not hold up the next ones.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void timeouts(int s, int sec)
{
	struct timeval tv = { .tv_sec = sec, .tv_usec = 0 };
	setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

static void nodelay(int s)
{
	int one = 1;
	setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

/* Parse HOST (IPv4 or IPv6 literal) into sa; scope from ifname. */
static socklen_t addr_of(const char *host, int port, const char *ifname, struct sockaddr_storage *sa)
{
	memset(sa, 0, sizeof(*sa));
	struct sockaddr_in *a4 = (struct sockaddr_in *)sa;
	struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)sa;
	if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
		a4->sin_family = AF_INET;
		a4->sin_port = htons(port);
		return sizeof(*a4);
	}
	if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
		a6->sin6_family = AF_INET6;
		a6->sin6_port = htons(port);
		if (ifname && *ifname) {
			a6->sin6_scope_id = if_nametoindex(ifname);
			if (!a6->sin6_scope_id) {
				fprintf(stderr, "rr: unknown interface %s\n", ifname);
				exit(1);
			}
		}
		return sizeof(*a6);
	}
	fprintf(stderr, "rr: not an address literal: %s\n", host);
	exit(1);
}

/* Echo every datagram waiting on u to its sender. */
static void echo_datagrams(int u)
{
	for (;;) {
		char buf[64];
		struct sockaddr_storage from;
		socklen_t fl = sizeof(from);
		ssize_t r = recvfrom(u, buf, sizeof(buf), 0, (struct sockaddr *)&from, &fl);
		if (r < 0) return;
		sendto(u, buf, r, 0, (struct sockaddr *)&from, fl);
	}
}

static int serve(int argc, char **argv)
{
	int family = AF_INET6;
	const char *host = NULL;
	int i = 0;
	if (i < argc && !strcmp(argv[i], "-4")) family = AF_INET, i++;
	else if (i < argc && !strcmp(argv[i], "-6")) i++;
	if (argc - i == 2) host = argv[i++];
	if (argc - i != 1) {
		fprintf(stderr, "usage: rr server [-4|-6] [ADDR] PORT\n");
		return 1;
	}
	int port = atoi(argv[i]);
	struct sockaddr_storage sa;
	socklen_t len;
	if (host) {
		len = addr_of(host, port, NULL, &sa);
		family = sa.ss_family;
	} else {
		memset(&sa, 0, sizeof(sa));
		if (family == AF_INET) {
			struct sockaddr_in *a4 = (struct sockaddr_in *)&sa;
			a4->sin_family = AF_INET;
			a4->sin_port = htons(port);
			len = sizeof(*a4);
		} else {
			struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&sa;
			a6->sin6_family = AF_INET6;
			a6->sin6_port = htons(port);
			a6->sin6_addr = in6addr_any;
			len = sizeof(*a6);
		}
	}
	int l = socket(family, SOCK_STREAM | SOCK_NONBLOCK, 0);
	int one = 1, zero = 0;
	setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (family == AF_INET6) setsockopt(l, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
	if (bind(l, (struct sockaddr *)&sa, len) < 0 || listen(l, 1024) < 0) {
		perror("rr: bind/listen");
		return 1;
	}
	int u = socket(family, SOCK_DGRAM | SOCK_NONBLOCK, 0);
	if (family == AF_INET6) setsockopt(u, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
	if (bind(u, (struct sockaddr *)&sa, len) < 0) {
		perror("rr: bind (UDP)");
		return 1;
	}
	/*
	 * One epoll loop: a connection that hangs (a lost segment, a stuck
	 * implementation) must not keep the next ones waiting, so that one
	 * failure shows as one failure. At most MAX_CONNS open at once: past
	 * that, new connections wait in the backlog.
	 */
	enum { MAX_CONNS = 4096 };
	int ep = epoll_create1(0), open_conns = 0, listening = 1;
	struct epoll_event ev = { .events = EPOLLIN, .data.fd = l };
	epoll_ctl(ep, EPOLL_CTL_ADD, l, &ev);
	struct epoll_event uev = { .events = EPOLLIN, .data.fd = u };
	epoll_ctl(ep, EPOLL_CTL_ADD, u, &uev);
	printf("ready\n");
	fflush(stdout);
	for (;;) {
		struct epoll_event evs[64];
		int n = epoll_wait(ep, evs, 64, -1);
		if (n < 0) {
			if (errno == EINTR) continue;
			perror("rr: epoll_wait");
			return 1;
		}
		for (int k = 0; k < n; k++) {
			int fd = evs[k].data.fd;
			if (fd == u) {
				echo_datagrams(u);
				continue;
			}
			if (fd == l) {
				for (;;) {
					int c = accept4(l, NULL, NULL, SOCK_NONBLOCK);
					if (c < 0) break;
					nodelay(c);
					struct epoll_event cev = { .events = EPOLLIN | EPOLLRDHUP, .data.fd = c };
					epoll_ctl(ep, EPOLL_CTL_ADD, c, &cev);
					if (++open_conns >= MAX_CONNS && listening) {
						epoll_ctl(ep, EPOLL_CTL_DEL, l, NULL);
						listening = 0;
					}
				}
				continue;
			}
			char buf[64];
			int done = 0;
			ssize_t r = read(fd, buf, sizeof(buf));
			if (r <= 0) {
				done = !(r < 0 && errno == EAGAIN);
			} else {
				for (ssize_t j = 0; j < r; j++) {
					if (write(fd, &buf[j], 1) != 1) { done = 1; break; }
					if (buf[j] == 'c') { done = 1; break; } /* crr: one exchange, we close first */
				}
			}
			if (done) {
				epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
				close(fd);
				if (--open_conns < MAX_CONNS && !listening) {
					struct epoll_event lev = { .events = EPOLLIN, .data.fd = l };
					epoll_ctl(ep, EPOLL_CTL_ADD, l, &lev);
					listening = 1;
				}
			}
		}
	}
}

static const char *failed_step = "";

/* One 1-byte exchange on s; 0 on success. With crr, then wait for the server's FIN. */
static int exchange(int s, int crr)
{
	char b = crr ? 'c' : 'r';
	errno = 0;
	failed_step = "sending the request";
	if (write(s, &b, 1) != 1) return -1;
	failed_step = "waiting for the response";
	ssize_t n = read(s, &b, 1);
	if (n != 1) return -1;
	failed_step = "waiting for the server's FIN";
	if (crr && read(s, &b, 1) != 0) return -1;
	return 0;
}

/* Transactions of a client run: count, the slowest, those over 100 ms. */
struct tally {
	long count, slow;
	double start, t, max;
};

static void tally_start(struct tally *y)
{
	memset(y, 0, sizeof(*y));
	y->start = y->t = now();
}

/* One more transaction, ended now (reading the clock each time costs ~20 ns: fine). */
static void tally_step(struct tally *y)
{
	double t1 = now();
	y->count++;
	if (t1 - y->t > y->max) y->max = t1 - y->t;
	if (t1 - y->t > 0.1) y->slow++;
	y->t = t1;
}

/* The client's result line (without its newline). */
static void tally_print(const struct tally *y)
{
	double el = y->t - y->start;
	printf("tps %.1f transactions %ld seconds %.3f max_us %.0f slow %ld", y->count / el, y->count, el, y->max * 1e6, y->slow);
}

static int client(int crr, int argc, char **argv)
{
	if (argc < 3 || argc > 4) {
		fprintf(stderr, "usage: rr rr|crr HOST PORT SECONDS [IFNAME]\n");
		return 1;
	}
	struct sockaddr_storage sa;
	socklen_t len = addr_of(argv[0], atoi(argv[1]), argc > 3 ? argv[3] : NULL, &sa);
	double secs = atof(argv[2]);
	struct tally y;
	tally_start(&y);
	double end = y.start + secs;
	int s = -1;
	while (y.t < end) {
		if (s < 0) {
			s = socket(sa.ss_family, SOCK_STREAM, 0);
			nodelay(s);
			timeouts(s, 5);
			if (connect(s, (struct sockaddr *)&sa, len) < 0) {
				fprintf(stderr, "rr: connect after %ld transactions: %s\n", y.count, strerror(errno));
				return 2;
			}
		}
		if (exchange(s, crr) < 0) {
			fprintf(stderr, "rr: transaction %ld failed %s: %s\n", y.count + 1, failed_step,
				errno == EAGAIN ? "nothing for 5 s" : errno ? strerror(errno) : "unexpected EOF or data");
			return 2;
		}
		if (crr) {
			close(s);
			s = -1;
		}
		tally_step(&y);
	}
	if (s >= 0) close(s);
	tally_print(&y);
	printf("\n");
	return 0;
}

/* Resend a 1-byte UDP request left unanswered this long. */
#define URR_RETRY_US 200000

static int udp_client(int argc, char **argv)
{
	if (argc < 3 || argc > 4) {
		fprintf(stderr, "usage: rr urr HOST PORT SECONDS [IFNAME]\n");
		return 1;
	}
	struct sockaddr_storage sa;
	socklen_t len = addr_of(argv[0], atoi(argv[1]), argc > 3 ? argv[3] : NULL, &sa);
	double secs = atof(argv[2]);
	int s = socket(sa.ss_family, SOCK_DGRAM, 0);
	struct timeval tv = { .tv_sec = 0, .tv_usec = URR_RETRY_US };
	setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (connect(s, (struct sockaddr *)&sa, len) < 0) {
		fprintf(stderr, "rr: connect: %s\n", strerror(errno));
		return 2;
	}
	long lost = 0;
	struct tally y;
	tally_start(&y);
	double end = y.start + secs;
	while (y.t < end) {
		char b = 'u';
		int tries = 0;
		for (;;) {
			if (send(s, &b, 1, 0) != 1 && errno != ECONNREFUSED) {
				fprintf(stderr, "rr: send: %s\n", strerror(errno));
				return 2;
			}
			if (recv(s, &b, 1, 0) == 1) break;
			lost++;
			if (++tries * (URR_RETRY_US / 1e6) >= 5) {
				fprintf(stderr, "rr: transaction %ld: no answer for 5 s\n", y.count + 1);
				return 2;
			}
		}
		tally_step(&y);
	}
	close(s);
	tally_print(&y);
	printf(" lost %ld\n", lost);
	return 0;
}

int main(int argc, char **argv)
{
	signal(SIGPIPE, SIG_IGN);
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc >= 2 && !strcmp(argv[1], "server")) return serve(argc - 2, argv + 2);
	if (argc >= 2 && !strcmp(argv[1], "rr")) return client(0, argc - 2, argv + 2);
	if (argc >= 2 && !strcmp(argv[1], "crr")) return client(1, argc - 2, argv + 2);
	if (argc >= 2 && !strcmp(argv[1], "urr")) return udp_client(argc - 2, argv + 2);
	fprintf(stderr, "usage: rr server [-4|-6] [ADDR] PORT | rr rr|crr|urr HOST PORT SECONDS [IFNAME]\n");
	return 1;
}
