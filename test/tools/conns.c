/*
 * conns: many TCP connections, or UDP flows, for the scale and churn tests
 * (test/e2e/scale.test.ts) and the bench's robustness table.
 *
 *   conns server PORT
 *       TCP and UDP on PORT, IPv4 (any address): every TCP byte is echoed;
 *       after a 'c' the server closes the connection (so TIME_WAIT stays on
 *       its side, not on the client's ephemeral ports); every datagram is
 *       echoed. One epoll loop, any number of connections. Prints "ready".
 *   conns hold HOST PORT N SECONDS FILE
 *       open N connections at once (at most 512 connecting at a time), a
 *       byte each way on each; prints "held K failed F", then keeps them
 *       open until FILE exists, closes them all and prints "closed K".
 *       Gives up SECONDS after start.
 *   conns churn HOST PORT N SECONDS
 *       N connections one after another: connect, 'c' and its echo, the
 *       server's FIN, close. Prints "done K failed F".
 *   conns udp HOST PORT N SECONDS [SIZE]
 *       N UDP flows one after another: a new socket (a new source port)
 *       each, a datagram of SIZE bytes (default 1) and its echo (sent again
 *       after 200 ms without one, 5 times at most), close. Prints "done K
 *       failed F".
 *
 * Bounded: every mode stops SECONDS after start (the server runs until
 * killed). RLIMIT_NOFILE is raised to the hard limit at start.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONNECTING 512

static double deadline;

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char *what)
{
	perror(what);
	exit(1);
}

static void raise_nofile(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

static struct sockaddr_in addr_of(const char *host, int port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port) };
	if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
		fprintf(stderr, "bad IPv4 address %s\n", host);
		exit(2);
	}
	return sa;
}

/* Wait (poll) for events on fd, at most ms milliseconds, never past the deadline; 0 on timeout. */
static int wait_fd(int fd, short events, int ms)
{
	int left = (int)((deadline - now()) * 1000);
	if (left < ms)
		ms = left > 0 ? left : 0;
	struct pollfd p = { .fd = fd, .events = events };
	return poll(&p, 1, ms) > 0;
}

__attribute__((noreturn)) static void serve(int port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port) };
	int one = 1;
	int l = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	int u = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
	if (l < 0 || u < 0)
		die("socket");
	setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(l, (struct sockaddr *)&sa, sizeof(sa)) || listen(l, 4096) || bind(u, (struct sockaddr *)&sa, sizeof(sa)))
		die("bind/listen");
	int ep = epoll_create1(0);
	struct epoll_event ev = { .events = EPOLLIN, .data.fd = l };
	epoll_ctl(ep, EPOLL_CTL_ADD, l, &ev);
	ev.data.fd = u;
	epoll_ctl(ep, EPOLL_CTL_ADD, u, &ev);
	printf("ready\n");
	fflush(stdout);
	struct epoll_event evs[256];
	for (;;) {
		int n = epoll_wait(ep, evs, 256, -1);
		for (int i = 0; i < n; i++) {
			int fd = evs[i].data.fd;
			if (fd == l) {
				int c;
				while ((c = accept4(l, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
					setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
					ev.data.fd = c;
					epoll_ctl(ep, EPOLL_CTL_ADD, c, &ev);
				}
			} else if (fd == u) {
				static char b[65536];
				struct sockaddr_in from;
				socklen_t fl = sizeof(from);
				ssize_t r;
				while ((r = recvfrom(u, b, sizeof(b), 0, (struct sockaddr *)&from, &fl)) >= 0) {
					sendto(u, b, r, 0, (struct sockaddr *)&from, fl);
					fl = sizeof(from);
				}
			} else {
				char b[256];
				ssize_t r = read(fd, b, sizeof(b));
				if (r <= 0) {
					close(fd);
					continue;
				}
				if (write(fd, b, r) != r || memchr(b, 'c', r))
					close(fd);
			}
		}
	}
}

/* A non-blocking connect to sa; the socket, or -1. */
static int start_connect(const struct sockaddr_in *sa)
{
	int s = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	if (s < 0)
		return -1;
	if (connect(s, (const struct sockaddr *)sa, sizeof(*sa)) && errno != EINPROGRESS) {
		close(s);
		return -1;
	}
	return s;
}

static int hold(const char *host, int port, int n, const char *until)
{
	struct sockaddr_in sa = addr_of(host, port);
	int *fds = calloc(n, sizeof(int));
	int ep = epoll_create1(0);
	int started = 0, settled = 0, held = 0, failed = 0, inflight = 0;
	struct epoll_event evs[256];

	while (settled < n && now() < deadline) {
		while (started < n && inflight < MAX_CONNECTING) {
			int s = start_connect(&sa);
			fds[started] = s;
			if (s < 0) {
				failed++, settled++, started++;
				continue;
			}
			struct epoll_event ev = { .events = EPOLLOUT, .data.u32 = started };
			epoll_ctl(ep, EPOLL_CTL_ADD, s, &ev);
			started++, inflight++;
		}
		int k = epoll_wait(ep, evs, 256, 100);
		for (int i = 0; i < k; i++) {
			int idx = evs[i].data.u32, s = fds[idx];
			if (evs[i].events & (EPOLLERR | EPOLLHUP)) {
				epoll_ctl(ep, EPOLL_CTL_DEL, s, NULL);
				close(s);
				fds[idx] = -1;
				failed++, settled++, inflight--;
			} else if (evs[i].events & EPOLLOUT) {
				struct epoll_event ev = { .events = EPOLLIN, .data.u32 = idx };
				epoll_ctl(ep, EPOLL_CTL_MOD, s, &ev);
				if (write(s, "h", 1) != 1) {
					epoll_ctl(ep, EPOLL_CTL_DEL, s, NULL);
					close(s);
					fds[idx] = -1;
					failed++, settled++, inflight--;
				}
			} else if (evs[i].events & EPOLLIN) {
				char b;
				epoll_ctl(ep, EPOLL_CTL_DEL, s, NULL);
				if (read(s, &b, 1) == 1) {
					held++;
				} else {
					close(s);
					fds[idx] = -1;
					failed++;
				}
				settled++, inflight--;
			}
		}
	}
	printf("held %d failed %d\n", held, failed + (n - settled));
	fflush(stdout);
	while (access(until, F_OK) != 0 && now() < deadline)
		usleep(20000);
	int closed = 0;
	for (int i = 0; i < started; i++)
		if (fds[i] >= 0 && close(fds[i]) == 0)
			closed++;
	printf("closed %d\n", closed);
	return 0;
}

/* One connection: connect, 'c', its echo, the server's FIN; 0 on success. */
static int one_crr(const struct sockaddr_in *sa)
{
	int s = start_connect(sa);
	char b;
	int ok = -1;
	if (s < 0)
		return -1;
	if (wait_fd(s, POLLOUT, 5000) && write(s, "c", 1) == 1 && wait_fd(s, POLLIN, 5000) && read(s, &b, 1) == 1 &&
	    wait_fd(s, POLLIN, 5000) && read(s, &b, 1) == 0)
		ok = 0;
	close(s);
	return ok;
}

static int churn(const char *host, int port, int n)
{
	struct sockaddr_in sa = addr_of(host, port);
	int done = 0, failed = 0;
	for (int i = 0; i < n && now() < deadline; i++) {
		if (one_crr(&sa))
			failed++;
		else
			done++;
	}
	printf("done %d failed %d\n", done, failed + (n - done - failed));
	return 0;
}

/* One UDP flow from a new socket: a datagram of size bytes and its echo, sent again after 200 ms, 5 times at most; 0 on success. */
static int one_udp(const struct sockaddr_in *sa, int size)
{
	static char out[65536], in[65536];
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
	int ok = -1;
	if (s < 0)
		return -1;
	memset(out, 'u', size);
	for (int t = 0; t < 5 && ok && now() < deadline; t++) {
		if (sendto(s, out, size, 0, (const struct sockaddr *)sa, sizeof(*sa)) != size)
			break;
		if (wait_fd(s, POLLIN, 200) && recv(s, in, sizeof(in), 0) == size && !memcmp(in, out, size))
			ok = 0;
	}
	close(s);
	return ok;
}

static int udp(const char *host, int port, int n, int size)
{
	struct sockaddr_in sa = addr_of(host, port);
	int done = 0, failed = 0;
	for (int i = 0; i < n && now() < deadline; i++) {
		if (one_udp(&sa, size))
			failed++;
		else
			done++;
	}
	printf("done %d failed %d\n", done, failed + (n - done - failed));
	return 0;
}

int main(int argc, char **argv)
{
	raise_nofile();
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc == 3 && !strcmp(argv[1], "server"))
		serve(atoi(argv[2]));
	if (argc == 7 && !strcmp(argv[1], "hold")) {
		deadline = now() + atof(argv[5]);
		return hold(argv[2], atoi(argv[3]), atoi(argv[4]), argv[6]);
	}
	if (argc == 7 && !strcmp(argv[1], "udp")) {
		deadline = now() + atof(argv[5]);
		int size = atoi(argv[6]);
		if (size < 1 || size > 65507)
			size = 1;
		return udp(argv[2], atoi(argv[3]), atoi(argv[4]), size);
	}
	if (argc == 6) {
		deadline = now() + atof(argv[5]);
		int n = atoi(argv[4]), port = atoi(argv[3]);
		if (!strcmp(argv[1], "churn"))
			return churn(argv[2], port, n);
		if (!strcmp(argv[1], "udp"))
			return udp(argv[2], port, n, 1);
	}
	fprintf(stderr, "usage: conns server PORT | conns hold HOST PORT N SECONDS FILE | conns churn HOST PORT N SECONDS | conns udp HOST PORT N SECONDS [SIZE]\n");
	return 2;
}
