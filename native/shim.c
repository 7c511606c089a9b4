/* shim.c - the system calls Bun lacks, for passt/pasta on Bun.
 *
 * Theory of operation
 * -------------------
 * Mostly, this file wraps the Linux interfaces that the TypeScript side cannot
 * reach through Bun: epoll, tap devices, "do this inside that network
 * namespace", clone() of the namespace's first process, pidfd, signal delivery
 * into the epoll loop, batched frame I/O, and the checksum of large buffers.
 *
 * One piece of protocol work lives here, for speed: shim_tcp_segments cuts a
 * peek of host data into TCP segments for the guest (for backends without
 * segmentation offload), copying the headers flows/tcp.ts wrote for the
 * first segment, advancing the sequence number, setting the lengths and PSH,
 * and completing the IPv4 header and TCP checksums (one FFI call per peek
 * instead of one per segment); shim_tcp_frames_at does the same for frames
 * built in place in a vhost-user guest's receive buffers. What those headers say
 * (addresses, ports, flags, window) is decided in TypeScript.
 *
 * Conventions, for every function here:
 * - an error is returned as -errno (never through errno, which JavaScript
 *   cannot read reliably); a non-negative value is a result;
 * - buffers are passed as pointers from TypedArrays and are never retained;
 * - nothing allocates on the heap after start-up.
 *
 * The same source is built two ways: by the system compiler at install time
 * (native/build.ts), or by bun:ffi's TinyCC at start-up when no compiler was
 * found. So: plain C11 plus POSIX/Linux headers, no compiler builtins.
 *
 * Namespaces: pasta's main thread stays in the host's network namespace for
 * the whole run (an unprivileged process in a child user namespace could not
 * come back). Whatever must be created inside the guest's namespace (the tap,
 * a netlink socket, sockets for spliced connections) is created by a
 * short-lived thread that enters the namespace, makes the file descriptor and
 * exits; descriptors work from any thread whatever their namespace.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/prctl.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <linux/if.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <linux/if_tun.h>
#include <termios.h>

/* neg_errno() - a syscall's result, or -errno when it failed (evaluated once) */
static inline int neg_errno(long rc) { return rc < 0 ? -errno : (int)rc; }
#define NEG_ERRNO(rc) neg_errno(rc)

/* Version of this interface: the loader refuses a library of another version. */
int shim_version(void) { return 20; }

/* ---------------------------------------------------------------- epoll */

int shim_epoll_create(void) { return NEG_ERRNO(epoll_create1(EPOLL_CLOEXEC)); }

/* shim_epoll_ctl() - add, modify or delete fd; ref comes back with its events */
int shim_epoll_ctl(int ep, int op, int fd, uint32_t events, uint32_t ref)
{
	struct epoll_event ev;
	memset(&ev, 0, sizeof(ev));
	ev.events = events;
	ev.data.u64 = ref;
	return NEG_ERRNO(epoll_ctl(ep, op, fd, &ev));
}

/* shim_epoll_wait() - wait, then copy events out as plain {events, ref} u32 pairs
 * (struct epoll_event is packed on x86-64 only: TypeScript never reads it). */
int shim_epoll_wait(int ep, uint32_t *pairs, int max, int timeout_ms)
{
	struct epoll_event evs[256];
	int n, i;

	if (max > 256)
		max = 256;
	n = epoll_wait(ep, evs, max, timeout_ms);
	if (n < 0)
		return errno == EINTR ? 0 : -errno;
	for (i = 0; i < n; i++) {
		pairs[2 * i] = evs[i].events;
		pairs[2 * i + 1] = (uint32_t)evs[i].data.u64;
	}
	return n;
}

/* ------------------------------------------------------------ sockets */

int shim_socket(int domain, int type, int proto) { return NEG_ERRNO(socket(domain, type | SOCK_CLOEXEC, proto)); }
int shim_close(int fd) { return NEG_ERRNO(close(fd)); }
int shim_bind(int fd, const void *sa, int len) { return NEG_ERRNO(bind(fd, sa, len)); }
int shim_connect(int fd, const void *sa, int len) { return NEG_ERRNO(connect(fd, sa, len)); }
int shim_listen(int fd, int backlog) { return NEG_ERRNO(listen(fd, backlog)); }
int shim_shutdown(int fd, int how) { return NEG_ERRNO(shutdown(fd, how)); }

int shim_accept(int fd, void *sa, int *len)
{
	socklen_t l = len ? (socklen_t)*len : 0;
	int rc = accept4(fd, sa, len ? &l : NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (len)
		*len = (int)l;
	return NEG_ERRNO(rc);
}

int shim_setsockopt(int fd, int level, int name, const void *val, int len)
{
	return NEG_ERRNO(setsockopt(fd, level, name, val, len));
}

int shim_getsockopt(int fd, int level, int name, void *val, int *len)
{
	socklen_t l = (socklen_t)*len;
	int rc = getsockopt(fd, level, name, val, &l);
	*len = (int)l;
	return NEG_ERRNO(rc);
}

int shim_getsockname(int fd, void *sa, int *len)
{
	socklen_t l = (socklen_t)*len;
	int rc = getsockname(fd, sa, &l);
	*len = (int)l;
	return NEG_ERRNO(rc);
}

int shim_send(int fd, const void *buf, int len, int flags) { return NEG_ERRNO((int)send(fd, buf, len, flags | MSG_NOSIGNAL)); }
int shim_recv(int fd, void *buf, int len, int flags) { return NEG_ERRNO((int)recv(fd, buf, len, flags)); }

int shim_sendto(int fd, const void *buf, int len, int flags, const void *sa, int salen)
{
	return NEG_ERRNO((int)sendto(fd, buf, len, flags | MSG_NOSIGNAL, sa, salen));
}

int shim_recvfrom(int fd, void *buf, int len, int flags, void *sa, int *salen)
{
	socklen_t l = (socklen_t)*salen;
	int rc = (int)recvfrom(fd, buf, len, flags, sa, &l);
	*salen = (int)l;
	return NEG_ERRNO(rc);
}

int shim_read(int fd, void *buf, int len) { return NEG_ERRNO((int)read(fd, buf, len)); }
int shim_write(int fd, const void *buf, int len) { return NEG_ERRNO((int)write(fd, buf, len)); }

/* shim_release() - hand the pages lying wholly inside [buf, buf + len) back
 * to the kernel (MADV_DONTNEED): they read as zeros and hold no memory until
 * written again. For buffers whose contents no longer matter. Returns the
 * bytes released (0 when the range holds no whole page) or -errno. */
int shim_release(uint8_t *buf, int len)
{
	uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
	uintptr_t start = ((uintptr_t)buf + page - 1) & ~(page - 1);
	uintptr_t end = ((uintptr_t)buf + (uintptr_t)len) & ~(page - 1);

	if (len <= 0 || end <= start)
		return 0;
	if (madvise((void *)start, end - start, MADV_DONTNEED) < 0)
		return -errno;
	return (int)(end - start);
}

int shim_set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);
	if (fl < 0)
		return -errno;
	return NEG_ERRNO(fcntl(fd, F_SETFL, fl | O_NONBLOCK));
}

/* shim_raise_nofile() - raise the soft RLIMIT_NOFILE to the hard limit; returns it */
int shim_raise_nofile(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return -errno;
	rl.rlim_cur = rl.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
		return -errno;
	return rl.rlim_cur > 0x7fffffff ? 0x7fffffff : (int)rl.rlim_cur;
}

int shim_getuid(void) { return (int)getuid(); }
int shim_getgid(void) { return (int)getgid(); }
int shim_geteuid(void) { return (int)geteuid(); }

int shim_open(const char *path, int flags) { return NEG_ERRNO(open(path, flags | O_CLOEXEC)); }

/* shim_dup2() - make newfd a copy of oldfd (the background copy's stdio) */
int shim_dup2(int oldfd, int newfd) { return NEG_ERRNO(dup2(oldfd, newfd)); }

/* shim_inotify_dir() - a non-blocking inotify descriptor with one watch: the
 * directory at path, for the events in mask (struct inotify_event records are
 * then read from it) */
int shim_inotify_dir(const char *path, int mask)
{
	int fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);

	if (fd < 0)
		return -errno;
	if (inotify_add_watch(fd, path, (uint32_t)mask | IN_ONLYDIR) < 0) {
		int e = errno;
		close(fd);
		return -e;
	}
	return fd;
}

/* shim_setenv() - set a variable in the C environment, which exec passes on
 * (Bun's process.env is not that environment) */
int shim_setenv(const char *name, const char *value) { return NEG_ERRNO(setenv(name, value, 1)); }

/* -------------------------------------------- inside another namespace */

enum { NS_OP_SOCKET = 1, NS_OP_TAP = 2, NS_OP_SOCKETS = 3, NS_OP_OPEN = 4 };

struct ns_job {
	int nsfd;
	int op;
	int a, b, c;
	const char *name;
	char *name_out;
	int n;
	int *out;
	int result;
};

/* tap_open() - create (or attach to) tap device "name" in the current netns */
static int tap_open(const char *name, int flags, char *name_out)
{
	struct ifreq ifr;
	int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	memset(&ifr, 0, sizeof(ifr));
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI | flags;
	strncpy(ifr.ifr_name, name, IFNAMSIZ - 1);
	if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
		int err = -errno;
		close(fd);
		return err;
	}
	if (name_out)
		memcpy(name_out, ifr.ifr_name, IFNAMSIZ);
	return fd;
}

static void *ns_thread(void *arg)
{
	struct ns_job *j = arg;

	if (j->nsfd >= 0 && setns(j->nsfd, CLONE_NEWNET) < 0) {
		j->result = -errno;
		return NULL;
	}
	switch (j->op) {
	case NS_OP_SOCKET:
		j->result = NEG_ERRNO(socket(j->a, j->b | SOCK_CLOEXEC, j->c));
		break;
	case NS_OP_TAP:
		j->result = tap_open(j->name, j->a, j->name_out);
		break;
	case NS_OP_OPEN:
		j->result = NEG_ERRNO(open(j->name, j->a | O_CLOEXEC));
		break;
	case NS_OP_SOCKETS: {
		int k;
		for (k = 0; k < j->n; k++) {
			int fd = socket(j->a, j->b | SOCK_CLOEXEC, j->c);
			if (fd < 0)
				break;
			j->out[k] = fd;
		}
		j->result = k ? k : -errno;
		break;
	}
	default:
		j->result = -EINVAL;
	}
	return NULL;
}

/* ns_run() - run one job on a fresh thread that enters nsfd first (-1: stay) */
static int ns_run(struct ns_job *j)
{
	pthread_t t;
	int rc = pthread_create(&t, NULL, ns_thread, j);

	if (rc)
		return -rc;
	pthread_join(t, NULL);
	return j->result;
}

/* shim_ns_socket() - socket(domain, type, proto) made inside netns nsfd */
int shim_ns_socket(int nsfd, int domain, int type, int proto)
{
	struct ns_job j;
	memset(&j, 0, sizeof(j));
	j.nsfd = nsfd; j.op = NS_OP_SOCKET; j.a = domain; j.b = type; j.c = proto;
	return ns_run(&j);
}

/* shim_ns_socket_batch() - n sockets of (domain, type, proto) made inside
 * netns nsfd by one thread, into out[]; returns how many were made (stops at
 * the first failure), or -errno when none could be. */
int shim_ns_socket_batch(int nsfd, int domain, int type, int proto, int n, int *out)
{
	struct ns_job j;

	memset(&j, 0, sizeof(j));
	j.nsfd = nsfd; j.op = NS_OP_SOCKETS; j.a = domain; j.b = type; j.c = proto;
	j.n = n; j.out = out;
	return ns_run(&j);
}

/* shim_ns_open() - open(path, flags) by a thread inside netns nsfd: for
 * "/proc/thread-self/net/..." files, which show that namespace's sockets
 * for as long as the descriptor is open. */
int shim_ns_open(int nsfd, const char *path, int flags)
{
	struct ns_job j;
	memset(&j, 0, sizeof(j));
	j.nsfd = nsfd; j.op = NS_OP_OPEN; j.a = flags; j.name = path;
	return ns_run(&j);
}

/* shim_ns_tap_open() - tap device inside netns nsfd; flags: extra IFF_* (e.g. IFF_VNET_HDR).
 * name_out receives the interface name (IFNAMSIZ bytes). */
int shim_ns_tap_open(int nsfd, const char *name, int flags, char *name_out)
{
	struct ns_job j;
	memset(&j, 0, sizeof(j));
	j.nsfd = nsfd; j.op = NS_OP_TAP; j.a = flags; j.name = name; j.name_out = name_out;
	return ns_run(&j);
}

int shim_tap_set_vnet_hdr_sz(int fd, int sz) { return NEG_ERRNO(ioctl(fd, TUNSETVNETHDRSZ, &sz)); }
int shim_tap_set_offload(int fd, unsigned int flags) { return NEG_ERRNO(ioctl(fd, TUNSETOFFLOAD, flags)); }

/* ------------------------------------------------------ frame batches */

/* shim_read_batch() - read frames from fd until EAGAIN or max frames.
 * Frame i goes to buf + i * slot; its length to lens[i]. Returns the count,
 * or -errno when the first read fails with something other than EAGAIN. */
int shim_read_batch(int fd, uint8_t *buf, int slot, int max, uint32_t *lens)
{
	int n;

	for (n = 0; n < max; n++) {
		ssize_t rc = read(fd, buf + (size_t)n * slot, slot);
		if (rc < 0) {
			if (n == 0 && errno != EAGAIN && errno != EINTR)
				return -errno;
			break;
		}
		if (rc == 0)
			return n ? n : -EPIPE;
		lens[n] = (uint32_t)rc;
	}
	return n;
}

/* shim_write_batch() - write n frames, frame i at buf + pairs[2i], length pairs[2i+1].
 * Returns how many went out (stops at EAGAIN), or -errno if the first failed. */
int shim_write_batch(int fd, const uint8_t *buf, const uint32_t *pairs, int n)
{
	int i;

	for (i = 0; i < n; i++) {
		ssize_t rc = write(fd, buf + pairs[2 * i], pairs[2 * i + 1]);
		if (rc < 0) {
			if (errno == EINTR) {
				i--;
				continue;
			}
			if (i == 0 && errno != EAGAIN)
				return -errno;
			break;
		}
	}
	return i;
}

/* ------------------------------------------------------------ checksum */

/* shim_csum() - ones'-complement sum of len bytes (big-endian 16-bit words)
 * added to init; returns it folded to 16 bits, not complemented (a value
 * below 2^16 crosses the FFI boundary intact whichever way the shim was built). */
uint32_t shim_csum(const uint8_t *p, uint32_t len, uint32_t init)
{
	uint64_t sum = init;
	uint32_t i = 0;

	for (; i + 8 <= len; i += 8) {
		sum += ((uint32_t)p[i] << 8 | p[i + 1]) + ((uint32_t)p[i + 2] << 8 | p[i + 3]) +
		       ((uint32_t)p[i + 4] << 8 | p[i + 5]) + ((uint32_t)p[i + 6] << 8 | p[i + 7]);
	}
	for (; i + 2 <= len; i += 2)
		sum += (uint32_t)p[i] << 8 | p[i + 1];
	if (i < len)
		sum += (uint32_t)p[i] << 8;
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint32_t)sum;
}

/* ------------------------------------------------------------- signals */

static int sig_pipe_wr = -1;

static void sig_handler(int sig)
{
	unsigned char c = (unsigned char)sig;
	int saved = errno;
	if (write(sig_pipe_wr, &c, 1) < 0) {
		/* pipe full: the loop is already awake */
	}
	errno = saved;
}

/* shim_signal_pipe() - deliver the given signals (a list of n ints) as bytes on
 * a non-blocking pipe whose read end is returned, so that the epoll loop sees
 * them whichever thread the kernel picked. SIGPIPE is ignored. */
int shim_signal_pipe(const int *sigs, int n)
{
	int p[2], i;
	struct sigaction sa;

	if (sig_pipe_wr < 0) {
		if (pipe2(p, O_NONBLOCK | O_CLOEXEC) < 0)
			return -errno;
		sig_pipe_wr = p[1];
	} else {
		return -EALREADY;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = sig_handler;
	sa.sa_flags = SA_RESTART;
	sigemptyset(&sa.sa_mask);
	for (i = 0; i < n; i++)
		if (sigaction(sigs[i], &sa, NULL) < 0)
			return -errno;
	signal(SIGPIPE, SIG_IGN);
	return p[0];
}

/* --------------------------------------------------- processes, clone */

int shim_pidfd_open(int pid) { return NEG_ERRNO((int)syscall(SYS_pidfd_open, pid, 0)); }
int shim_kill(int pid, int sig) { return NEG_ERRNO(kill(pid, sig)); }

/* shim_waitpid() - non-blocking wait for pid; returns pid and the raw status
 * in *status, 0 if it is still running, -errno on error. */
int shim_waitpid(int pid, int *status)
{
	return NEG_ERRNO(waitpid(pid, status, WNOHANG | __WALL));
}

#define MAX_ARGS 256
static char *child_argv[MAX_ARGS + 1];

/* split_args() - point child_argv at the n NUL-terminated strings in blob */
static int split_args(char *blob, int n)
{
	int i;
	if (n < 1 || n > MAX_ARGS)
		return -E2BIG;
	for (i = 0; i < n; i++) {
		child_argv[i] = blob;
		blob += strlen(blob) + 1;
	}
	child_argv[n] = NULL;
	return 0;
}

/* child_start() - in the new namespaces: name the UTS namespace (hostname:
 * NULL or empty for no change), wait for the go byte, take the terminal's
 * foreground if there is one, exec. Only async-signal-safe calls: the parent
 * is multi-threaded. */
static void child_start(int go_rd, int err_wr, const char *hostname)
{
	char c;
	int err;

	if (hostname && *hostname)
		syscall(SYS_sethostname, hostname, strlen(hostname));
	if (read(go_rd, &c, 1) != 1)
		_exit(127);
	close(go_rd);
	if (isatty(0)) {
		signal(SIGTTOU, SIG_IGN);
		setpgid(0, 0);
		tcsetpgrp(0, getpgrp());
		signal(SIGTTOU, SIG_DFL);
	}
	execvp(child_argv[0], child_argv);
	err = errno;
	if (write(err_wr, &err, sizeof(err)) < 0)
		_exit(126);
	_exit(127);
}

/* shim_spawn_ns() - clone a child in new namespaces (flags: CLONE_NEW*), that
 * runs the n-string command in blob once a byte arrives on the returned pipe;
 * with CLONE_NEWUTS, hostname (if not empty) becomes its host name.
 * out[0]: child pid, out[1]: write end of the "go" pipe, out[2]: read end of
 * the exec-error pipe (an int errno arrives there if exec fails; EOF if it
 * worked). Returns 0 or -errno. */
int shim_spawn_ns(char *blob, int n, int flags, const char *hostname, int *out)
{
	int go[2], errp[2], rc;
	long pid;

	rc = split_args(blob, n);
	if (rc)
		return rc;
	if (pipe2(go, O_CLOEXEC) < 0)
		return -errno;
	if (pipe2(errp, O_CLOEXEC) < 0) {
		rc = -errno;
		close(go[0]);
		close(go[1]);
		return rc;
	}
	pid = syscall(SYS_clone, (unsigned long)flags | SIGCHLD, NULL, NULL, NULL, 0);
	if (pid < 0) {
		rc = -errno;
		close(go[0]); close(go[1]); close(errp[0]); close(errp[1]);
		return rc;
	}
	if (pid == 0) {
		close(go[1]);
		close(errp[0]);
		child_start(go[0], errp[1], hostname);
	}
	close(go[0]);
	close(errp[1]);
	out[0] = (int)pid;
	out[1] = go[1];
	out[2] = errp[0];
	return 0;
}

/* shim_execvp() - replace this process with the n-string command in blob
 * (used to re-enter through a single-threaded launcher); returns only on error. */
int shim_execvp(char *blob, int n)
{
	int rc = split_args(blob, n);
	if (rc)
		return rc;
	execvp(child_argv[0], child_argv);
	return -errno;
}

/* ------------------------------------------------------------------ TCP */

/* Discard target for peeking past bytes already sent, where SO_PEEK_OFF is missing. */
static uint8_t tcp_discard_buf[1 << 23];

/* peek_into() - peek socket data into iov[0..n), the first skip bytes of it
 * into the discard buffer (iov[0] when skip > 0). Returns the payload bytes
 * placed (without skip), 0 at end of stream, or -errno (-EAGAIN: no new
 * data). */
static int peek_into(int fd, struct iovec *iov, int n, int skip)
{
	struct msghdr mh;
	ssize_t rc;

	memset(&mh, 0, sizeof(mh));
	mh.msg_iov = iov;
	mh.msg_iovlen = n;
	do
		rc = recvmsg(fd, &mh, MSG_PEEK | MSG_DONTWAIT);
	while (rc < 0 && errno == EINTR);
	if (rc < 0)
		return -errno;
	if (rc == 0)
		return 0;
	if (rc <= skip)
		return -EAGAIN;
	return (int)(rc - skip);
}

/* shim_tcp_peek() - peek socket data into up to n frame payload areas: area k
 * starts at buf + first + k * stride and takes mss bytes (the last one: what
 * is left of total). skip bytes are peeked into a discard buffer first (0
 * with SO_PEEK_OFF). Returns the payload bytes placed (without skip), 0 at
 * end of stream, or -errno (-EAGAIN: no new data). */
int shim_tcp_peek(int fd, uint8_t *buf, int first, int stride, int mss, int n, int total, int skip)
{
	struct iovec iov[65];
	int k, i = 0, left = total;

	if (n > 64)
		n = 64;
	if (skip > (int)sizeof(tcp_discard_buf))
		return -ENOBUFS;
	if (skip > 0) {
		iov[i].iov_base = tcp_discard_buf;
		iov[i++].iov_len = skip;
	}
	for (k = 0; k < n && left > 0; k++) {
		int len = left < mss ? left : mss;
		iov[i].iov_base = buf + first + (size_t)k * stride;
		iov[i++].iov_len = len;
		left -= len;
	}
	return peek_into(fd, iov, i, skip);
}

/* Pieces one shim_tcp_peek_iov() call takes, at most (UIO_MAXIOV is 1024, one goes to skip). */
#define PEEK_IOV_MAX 1023

/* shim_tcp_peek_iov() - peek socket data into n pieces of memory, piece k at
 * the address addr[k] (our address: a double holds any user-space address
 * exactly) and len[k] bytes long: the payload areas of frames laid out in a
 * vhost-user guest's receive buffers. skip bytes are peeked into a discard
 * buffer first (0 with SO_PEEK_OFF). Returns the payload bytes placed
 * (without skip), 0 at end of stream, or -errno (-EAGAIN: no new data). */
int shim_tcp_peek_iov(int fd, const double *addr, const uint32_t *len, int n, int skip)
{
	static struct iovec iov[PEEK_IOV_MAX + 1];
	int k, i = 0;

	if (n > PEEK_IOV_MAX)
		return -EINVAL;
	if (skip > (int)sizeof(tcp_discard_buf))
		return -ENOBUFS;
	if (skip > 0) {
		iov[i].iov_base = tcp_discard_buf;
		iov[i++].iov_len = skip;
	}
	for (k = 0; k < n; k++) {
		iov[i].iov_base = (void *)(uintptr_t)addr[k];
		iov[i++].iov_len = len[k];
	}
	return peek_into(fd, iov, i, skip);
}

/* shim_tcp_discard() - drop n bytes from the head of the receive queue */
int shim_tcp_discard(int fd, int n)
{
	return NEG_ERRNO(recv(fd, NULL, n, MSG_TRUNC | MSG_DONTWAIT));
}

/* shim_tcp_sndspace() - bytes the socket's send buffer can still take (estimate) */
int shim_tcp_sndspace(int fd)
{
	int sndbuf, outq;
	socklen_t sl = sizeof(sndbuf);

	if (getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, &sl) < 0)
		return -errno;
	if (ioctl(fd, SIOCOUTQ, &outq) < 0)
		return -errno;
	/* The kernel doubles SO_SNDBUF for bookkeeping; about half is payload. */
	sndbuf /= 2;
	return sndbuf > outq ? sndbuf - outq : 0;
}

/* shim_sock_error() - pending error of a socket (SO_ERROR), as -errno, or 0 */
int shim_sock_error(int fd)
{
	int err = 0;
	socklen_t sl = sizeof(err);

	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &sl) < 0)
		return -errno;
	return -err;
}

/* shim_setsockopt_int() - setsockopt() with an int value */
int shim_setsockopt_int(int fd, int level, int name, int val)
{
	return NEG_ERRNO(setsockopt(fd, level, name, &val, sizeof(val)));
}

/* shim_abort_close() - close with SO_LINGER 0: the peer gets a reset */
int shim_abort_close(int fd)
{
	struct linger l = { 1, 0 };

	setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
	return NEG_ERRNO(close(fd));
}

/* ------------------------------------------------------------------ UDP */

#define UDP_BATCH 64

/* shim_udp_recv_batch() - recvmmsg() up to n datagrams: datagram k into
 * buf + first + k * stride (at most maxlen bytes), its sender's address into
 * addrs + 28 * k, its length into lens[k]. Returns the count or -errno. */
int shim_udp_recv_batch(int fd, uint8_t *buf, int first, int stride, int maxlen, int n, uint8_t *addrs, uint32_t *lens)
{
	struct mmsghdr mm[UDP_BATCH];
	struct iovec iov[UDP_BATCH];
	int k, rc;

	if (n > UDP_BATCH)
		n = UDP_BATCH;
	memset(mm, 0, sizeof(mm[0]) * n);
	for (k = 0; k < n; k++) {
		iov[k].iov_base = buf + first + (size_t)k * stride;
		iov[k].iov_len = maxlen;
		mm[k].msg_hdr.msg_iov = &iov[k];
		mm[k].msg_hdr.msg_iovlen = 1;
		mm[k].msg_hdr.msg_name = addrs + 28 * k;
		mm[k].msg_hdr.msg_namelen = 28;
	}
	rc = recvmmsg(fd, mm, n, MSG_DONTWAIT, NULL);
	if (rc < 0)
		return -errno;
	for (k = 0; k < rc; k++)
		lens[k] = mm[k].msg_len;
	return rc;
}

/* shim_udp_send_batch() - sendmmsg() n datagrams: datagram k is
 * buf[offlens[2k] .. + offlens[2k+1]), to the sockaddr at addrs + 28 * k
 * (its family says its length). Returns how many were sent or -errno. */
int shim_udp_send_batch(int fd, const uint8_t *buf, const uint32_t *offlens, int n, uint8_t *addrs)
{
	struct mmsghdr mm[UDP_BATCH];
	struct iovec iov[UDP_BATCH];
	int k;

	if (n > UDP_BATCH)
		n = UDP_BATCH;
	memset(mm, 0, sizeof(mm[0]) * n);
	for (k = 0; k < n; k++) {
		uint8_t *sa = addrs + 28 * k;
		iov[k].iov_base = (void *)(buf + offlens[2 * k]);
		iov[k].iov_len = offlens[2 * k + 1];
		mm[k].msg_hdr.msg_iov = &iov[k];
		mm[k].msg_hdr.msg_iovlen = 1;
		mm[k].msg_hdr.msg_name = sa;
		mm[k].msg_hdr.msg_namelen = ((struct sockaddr *)sa)->sa_family == AF_INET6 ? 28 : 16;
	}
	return NEG_ERRNO(sendmmsg(fd, mm, n, MSG_DONTWAIT | MSG_NOSIGNAL));
}

/* ------------------------------------------------------------ splicing */

/* shim_pipe() - a non-blocking pipe of up to size bytes: fds[0] read end,
 * fds[1] write end. Where the kernel refuses that size (above
 * /proc/sys/fs/pipe-max-size without CAP_SYS_RESOURCE), halves it down to
 * 64 KiB. Returns the pipe's size in bytes, or -errno. */
int shim_pipe(int *fds, int size)
{
	int got;

	if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) < 0)
		return -errno;
	for (; size >= 65536; size /= 2) {
		if (fcntl(fds[0], F_SETPIPE_SZ, size) >= 0)
			break;
	}
	got = fcntl(fds[0], F_GETPIPE_SZ);
	return got > 0 ? got : 65536;
}

/* shim_splice_pump() - move what is readable on from into to, through the
 * pipe (pr, pw), until from has nothing more or to is full. st[0]: bytes in
 * the pipe (kept across calls), st[1]: set to 1 at end of stream on from,
 * st[2]: set to -errno on an error (of either socket). st[3]: pipe size.
 * Returns bytes delivered to `to` in this call.
 *
 * The sockets are watched edge-triggered, so from is read until it says
 * EAGAIN, but for one case where a short read already says so (epoll(7)),
 * allowed by the caller (short_ok) when the event that woke it carried no
 * end of stream (which only a read returning 0 would show): an empty pipe
 * that took fewer bytes than it has slots (a page each) was not full, and
 * was offered more than that, so the socket had nothing more. That spares a
 * request-response exchange one failing splice per message. */
int shim_splice_pump(int from, int to, int pr, int pw, int32_t *st, int short_ok)
{
	unsigned int fl = SPLICE_F_NONBLOCK | SPLICE_F_MOVE;
	int moved = 0, in_done = st[1];
	int32_t slots = short_ok ? st[3] / 4096 : 0;

	for (;;) {
		int progress = 0;
		if (!in_done && st[0] < st[3]) {
			int was_empty = st[0] == 0;
			ssize_t n = splice(from, NULL, pw, NULL, st[3] - st[0], fl);
			if (n > 0) {
				st[0] += (int32_t)n;
				progress = 1;
				if (was_empty && n < slots)
					in_done = 3; /* drained: not read again in this call */
			} else if (n == 0) {
				st[1] = 1;
				in_done = 1;
			} else if (errno == EAGAIN) {
				in_done = 2;
			} else {
				st[2] = -errno;
				return moved;
			}
		}
		if (st[0] > 0) {
			/* a nearly full pipe: more is coming, let TCP fill whole segments */
			unsigned int more = st[0] >= st[3] / 10 * 9 ? SPLICE_F_MORE : 0;
			ssize_t m = splice(pr, NULL, to, NULL, st[0], fl | more);
			if (m > 0) {
				st[0] -= (int32_t)m;
				moved += (int)m;
				progress = 1;
			} else if (m < 0 && errno != EAGAIN) {
				st[2] = -errno;
				return moved;
			}
		}
		if (!progress)
			return moved;
		if (in_done == 2)
			in_done = 0;
	}
}

/* ------------------------------------------------- passt: UNIX socket */

#include <grp.h>

#define PASST_IOV 256

static size_t iov_total(const struct iovec *iov, int k)
{
	size_t sum = 0;
	int j;

	for (j = 0; j < k; j++)
		sum += iov[j].iov_len;
	return sum;
}

/* shim_send_frames() - write n frames to the stream socket fd: frame i is
 * buf[pairs[2i] .. + pairs[2i+1]), the first skip bytes of frame 0 already
 * written. Frames that touch are merged into one iovec; sendmsg() (writev()
 * where fd is not a socket) is repeated until everything is written or the
 * socket is full. Returns the bytes written by this call (0 when the socket
 * was full from the start), or -errno when nothing could be written. */
int shim_send_frames(int fd, const uint8_t *buf, const uint32_t *pairs, int n, int skip)
{
	struct iovec iov[PASST_IOV];
	struct msghdr mh;
	int i = 0, total = 0, use_write = 0;
	uint32_t first_skip = (uint32_t)skip;

	while (i < n) {
		int k = 0;
		ssize_t rc;

		while (i < n && k < PASST_IOV) {
			const uint8_t *p = buf + pairs[2 * i] + first_skip;
			size_t len = pairs[2 * i + 1] - first_skip;

			first_skip = 0;
			if (k > 0 && (const uint8_t *)iov[k - 1].iov_base + iov[k - 1].iov_len == p) {
				iov[k - 1].iov_len += len;
			} else {
				iov[k].iov_base = (void *)p;
				iov[k].iov_len = len;
				k++;
			}
			i++;
		}
		if (use_write) {
			rc = writev(fd, iov, k);
		} else {
			memset(&mh, 0, sizeof(mh));
			mh.msg_iov = iov;
			mh.msg_iovlen = k;
			rc = sendmsg(fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
			if (rc < 0 && errno == ENOTSOCK) {
				use_write = 1;
				rc = writev(fd, iov, k);
			}
		}
		if (rc < 0) {
			if (errno == EAGAIN || errno == EINTR)
				return total;
			return total ? total : -errno;
		}
		total += (int)rc;
		if ((size_t)rc < iov_total(iov, k))
			return total;	/* short write: the caller keeps the rest */
	}
	return total;
}

/* shim_socketpair() - a connected pair of UNIX stream sockets into sv[0], sv[1]
 * (close-on-exec; a child gets one by explicit inheritance only) */
int shim_socketpair(int *sv) { return NEG_ERRNO(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv)); }

/* shim_drop_privileges() - become uid:gid for good: supplementary groups
 * cleared, then group, then user. glibc applies each change to every thread
 * of the process. Returns 0, or -errno of the step that failed. */
int shim_drop_privileges(int uid, int gid)
{
	if (geteuid() == 0 && setgroups(0, NULL) < 0)
		return -errno;
	if (setgid((gid_t)gid) < 0)
		return -errno;
	if (setuid((uid_t)uid) < 0)
		return -errno;
	if (uid != 0 && (setuid(0) == 0 || seteuid(0) == 0))
		return -EPERM;
	return 0;
}

/* ------------------------------------------------------------ sandbox */

#if defined(__x86_64__)
#define SANDBOX_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define SANDBOX_ARCH AUDIT_ARCH_AARCH64
#endif

/* System calls a running pasta or passt never makes: once set up, a guest
 * that took over the process must not be able to make them either. */
static const int sandbox_denied[] = {
	__NR_execve, __NR_execveat, __NR_ptrace, __NR_process_vm_readv,
	__NR_process_vm_writev, __NR_mount, __NR_umount2, __NR_pivot_root,
	__NR_chroot, __NR_bpf, __NR_kexec_load, __NR_init_module,
	__NR_finit_module, __NR_delete_module, __NR_keyctl, __NR_add_key,
	__NR_request_key, __NR_reboot, __NR_swapon, __NR_swapoff, __NR_acct,
	__NR_quotactl, __NR_perf_event_open, __NR_userfaultfd,
	__NR_open_by_handle_at, __NR_name_to_handle_at,
#ifdef __NR_kexec_file_load
	__NR_kexec_file_load,
#endif
};
#define SANDBOX_DENIED (sizeof(sandbox_denied) / sizeof(sandbox_denied[0]))
#define SANDBOX_X32_BIT 0x40000000

/* shim_sandbox() - no new privileges, and a seccomp filter that fails the
 * system calls of sandbox_denied (and, on x86_64, every x32 call) with
 * EPERM, for every thread of the process (SECCOMP_FILTER_FLAG_TSYNC also
 * sets no_new_privs on them). Returns 0, -errno, or -ENOSYS where the
 * architecture is not known here. */
int shim_sandbox(void)
{
#ifdef SANDBOX_ARCH
	/* 0: load arch; 1: ours? skip 2; 2: deny; 3: load nr; then one test per
	 * denied number, the x32 test, allow, deny */
	struct sock_filter f[4 + SANDBOX_DENIED + 3];
	const unsigned deny = 4 + SANDBOX_DENIED + 2;
	struct sock_fprog prog;
	unsigned i, n = 0;

	f[n++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch));
	f[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SANDBOX_ARCH, 1, 0);
	f[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM);
	f[n++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr));
	for (i = 0; i < SANDBOX_DENIED; i++, n++)
		f[n] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)sandbox_denied[i], (unsigned char)(deny - n - 1), 0);
	f[n] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, SANDBOX_X32_BIT, (unsigned char)(deny - n - 1), 0);
	n++;
	f[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
	f[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM);

	prog.len = (unsigned short)n;
	prog.filter = f;
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		return -errno;
	if (syscall(__NR_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, &prog) != 0)
		return errno ? -errno : -EBUSY;
	return 0;
#else
	return -ENOSYS;
#endif
}

/* shim_set_nofile() - set both limits of RLIMIT_NOFILE to n (raising the hard
 * limit needs CAP_SYS_RESOURCE); returns n or -errno */
int shim_set_nofile(int n)
{
	struct rlimit rl;

	rl.rlim_cur = rl.rlim_max = (rlim_t)n;
	return setrlimit(RLIMIT_NOFILE, &rl) < 0 ? -errno : n;
}

/* CSUM_VECTOR: csum_words() built twice by GCC, for AVX2 and for any x86-64,
 * the loader picking one (target_clones): the AVX2 loop sums twice as many
 * bytes per cycle (measured: about 56 against 27 GB/s over 64 KiB in cache).
 * TinyCC, which builds the shim where no compiler is installed, and other
 * compilers get the plain loop. */
#if defined(__GNUC__) && !defined(__clang__) && !defined(__TINYC__) && defined(__x86_64__)
#define CSUM_VECTOR __attribute__((target_clones("avx2", "default"), optimize("O3")))
#else
#define CSUM_VECTOR
#endif

/* csum_words() - sum of n 32-bit words at p, in the machine's byte order
 * (n below 2^32: the 64-bit sum cannot overflow). */
CSUM_VECTOR static uint64_t csum_words(const uint8_t *p, uint32_t n)
{
	uint64_t sum = 0;
	uint32_t i, w;

	for (i = 0; i < n; i++) {
		memcpy(&w, p + 4 * (size_t)i, 4);
		sum += w;
	}
	return sum;
}

/* csum_native() - ones'-complement sum of len bytes at p taken as 16-bit
 * words in the machine's byte order (summed as 32-bit words, csum_words; RFC
 * 1071 shows the result is the same in either order, byte-swapped), a last
 * odd byte as the first byte of a word; folded to 16 bits. */
static uint32_t csum_native(const uint8_t *p, uint32_t len)
{
	uint64_t sum = csum_words(p, len / 4);
	uint32_t i = len & ~3u;
	uint16_t h;

	sum = (sum & 0xffffffff) + (sum >> 32);
	if (i + 2 <= len) {
		memcpy(&h, p + i, 2);
		sum += h;
		i += 2;
	}
	if (i < len) {
		h = 0;
		memcpy(&h, p + i, 1);
		sum += h;
	}
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint32_t)sum;
}

/* shim_l4_csum_fill() - complete the partial checksum of an L4 segment of len
 * bytes at p whose checksum field (at p + field) holds the pseudo-header sum:
 * sum everything (csum_native: several times faster than shim_csum's byte
 * loop over a whole segment), complement, store. Used by shim_tcp_segments.
 * Returns the stored value. */
static uint32_t shim_l4_csum_fill(uint8_t *p, uint32_t len, uint32_t field)
{
	uint16_t c = (uint16_t)~csum_native(p, len);

	memcpy(p + field, &c, 2);
	return c;
}

/* tcp_frame_headers() - give frame f the headers of frame f0 (hdr bytes, IP
 * at l3, TCP at l4; f0's TCP checksum field holds the pseudo-header sum for
 * an L4 length of len0) for l4len bytes of TCP from sequence number seq:
 * copied unless f is f0, then the sequence number, PSH (last frame only), the
 * IP length, the IPv4 header checksum, and the pseudo-header sum moved by the
 * length difference (RFC 1624 arithmetic). */
static void tcp_frame_headers(uint8_t *f, const uint8_t *f0, int l3, int l4, int hdr, uint32_t seq, uint32_t l4len,
			      int last, uint8_t flags, uint32_t pseudo0, uint32_t len0, int v6)
{
	uint32_t sum;

	if (f != f0) {
		memcpy(f, f0, hdr);
		f[l4 + 4] = seq >> 24;
		f[l4 + 5] = seq >> 16;
		f[l4 + 6] = seq >> 8;
		f[l4 + 7] = seq;
	}
	f[l4 + 13] = flags | (last ? 0x08 : 0);
	if (v6) {
		f[l3 + 4] = l4len >> 8;
		f[l3 + 5] = l4len;
	} else {
		uint32_t tot = (uint32_t)(l4 - l3) + l4len, ip;

		f[l3 + 2] = tot >> 8;
		f[l3 + 3] = tot;
		f[l3 + 10] = f[l3 + 11] = 0;
		ip = ~shim_csum(f + l3, (uint32_t)(l4 - l3), 0) & 0xffff;
		f[l3 + 10] = ip >> 8;
		f[l3 + 11] = ip;
	}
	sum = pseudo0 + (~len0 & 0xffff) + l4len;
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	f[l4 + 16] = sum >> 8;
	f[l4 + 17] = sum;
}

/* shim_udp_csum_fill() - complete the checksum of the UDP datagram of len
 * bytes (header included) at buf + off, whose checksum field holds the
 * pseudo-header sum: as shim_l4_csum_fill, with a result of 0 sent as 0xffff
 * (RFC 768: 0 means "no checksum"). For datagrams to a guest without
 * checksum offload: a 64 KiB payload sums several times faster here than in
 * TypeScript. Returns the stored value. */
uint32_t shim_udp_csum_fill(uint8_t *buf, int off, int len)
{
	uint8_t *p = buf + off;
	uint16_t c = (uint16_t)~csum_native(p, (uint32_t)len);

	if (c == 0)
		c = 0xffff;
	memcpy(p + 6, &c, 2);
	return c;
}

/* shim_tcp_segments() - finish the frames of one peek of TCP data, for a
 * backend without segmentation offload (the passt socket, a tap with offloads
 * off). Frame k is at buf + base + k * stride and holds its payload, seg
 * bytes (the last one: what is left of got), after hdr bytes of headers: the
 * IP header at l3, TCP (no options) at l4. TypeScript wrote frame 0's headers
 * for its own length, with the pseudo-header sum in the TCP checksum field.
 * Here they are copied to every other frame (tcp_frame_headers: sequence
 * number advanced by seg per frame, lengths, PSH, IPv4 header checksum), and
 * every TCP checksum is completed. Returns the number of frames. */
int shim_tcp_segments(uint8_t *buf, int base, int stride, int l3, int l4, int hdr, int seg, int got, int v6)
{
	uint8_t *f0 = buf + base;
	int n = (got + seg - 1) / seg, thlen = hdr - l4, k;
	uint32_t len0 = (uint32_t)(thlen + (got < seg ? got : seg));
	uint32_t seq0 = ((uint32_t)f0[l4 + 4] << 24) | ((uint32_t)f0[l4 + 5] << 16) | ((uint32_t)f0[l4 + 6] << 8) | f0[l4 + 7];
	uint32_t pseudo0 = ((uint32_t)f0[l4 + 16] << 8) | f0[l4 + 17];
	uint8_t flags = f0[l4 + 13] & ~0x08;

	for (k = 0; k < n; k++) {
		uint8_t *f = f0 + (size_t)k * stride;
		uint32_t l4len = (uint32_t)(thlen + (k == n - 1 ? got - k * seg : seg));

		tcp_frame_headers(f, f0, l3, l4, hdr, seq0 + (uint32_t)k * (uint32_t)seg, l4len, k == n - 1, flags, pseudo0, len0, v6);
		shim_l4_csum_fill(f + l4, l4len, 16);
	}
	return n;
}

/* shim_tcp_frames_at() - shim_tcp_segments for frames built in place in a
 * vhost-user guest's receive buffers (src/tap/vu-rx.ts), which are neither
 * contiguous nor evenly spaced: frame k's headers (hdr bytes, IP at l3, TCP
 * at l4) are at our address at[k], its payload, plen[k] bytes, fills the
 * pieces piece[k] .. piece[k + 1] - 1 in order (addresses paddr, lengths
 * plens; the last one possibly in part). TypeScript wrote frame 0's headers
 * for plen[0] bytes, with the pseudo-header sum in the TCP checksum field;
 * they are copied to frames 1 .. n-1 with the sequence number advanced by the
 * payloads before each (tcp_frame_headers). With full, every TCP checksum is
 * completed over the header and the payload pieces (a piece that starts at an
 * odd byte of the segment has its sum byte-swapped, RFC 1071); without, each
 * keeps its pseudo-header sum, for the guest to complete (NEEDS_CSUM).
 * Returns n. */
int shim_tcp_frames_at(const double *at, const uint32_t *plen, const uint32_t *piece, const double *paddr, const uint32_t *plens,
		       int n, int l3, int l4, int hdr, int full, int v6)
{
	uint8_t *f0 = (uint8_t *)(uintptr_t)at[0];
	uint32_t thlen = (uint32_t)(hdr - l4), len0 = thlen + plen[0];
	uint32_t seq = ((uint32_t)f0[l4 + 4] << 24) | ((uint32_t)f0[l4 + 5] << 16) | ((uint32_t)f0[l4 + 6] << 8) | f0[l4 + 7];
	uint32_t pseudo0 = ((uint32_t)f0[l4 + 16] << 8) | f0[l4 + 17];
	uint8_t flags = f0[l4 + 13] & ~0x08;
	int k;

	for (k = 0; k < n; k++) {
		uint8_t *f = (uint8_t *)(uintptr_t)at[k];
		uint32_t left = plen[k], pos = thlen, p, sum;
		uint16_t c;

		tcp_frame_headers(f, f0, l3, l4, hdr, seq, thlen + plen[k], k == n - 1, flags, pseudo0, len0, v6);
		seq += plen[k];
		if (!full)
			continue;
		sum = csum_native(f + l4, thlen);
		for (p = piece[k]; left > 0 && p < piece[k + 1]; p++) {
			uint32_t len = plens[p] < left ? plens[p] : left, s;

			s = csum_native((const uint8_t *)(uintptr_t)paddr[p], len);
			if (pos & 1)
				s = ((s & 0xff) << 8) | (s >> 8);
			sum += s;
			pos += len;
			left -= len;
		}
		while (sum >> 16)
			sum = (sum & 0xffff) + (sum >> 16);
		c = (uint16_t)~sum;
		memcpy(f + l4 + 16, &c, 2);
	}
	return n;
}

/* ------------------------------------------------------------ UDP GSO */

#ifndef SOL_UDP
#define SOL_UDP 17
#endif
#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif
#define UDP_GSO_MAX_SEGS 64
#define UDP_GSO_MAX_BYTES 65507

static int udp_gso_off;

/* udp_send_plain() - sendmmsg() datagrams k .. e-1 as shim_udp_send_batch
 * lays them out; returns how many went out, stopping at EAGAIN (-1 when the
 * very first one met it), skipping one that fails otherwise. */
static int udp_send_plain(int fd, const uint8_t *buf, const uint32_t *offlens, int k, int e, uint8_t *addrs)
{
	struct mmsghdr mm[UDP_BATCH];
	struct iovec iov[UDP_BATCH];
	int sent = 0;

	while (k < e) {
		int n = e - k, j, rc;

		if (n > UDP_BATCH)
			n = UDP_BATCH;
		memset(mm, 0, sizeof(mm[0]) * n);
		for (j = 0; j < n; j++) {
			uint8_t *sa = addrs + 28 * (k + j);
			iov[j].iov_base = (void *)(buf + offlens[2 * (k + j)]);
			iov[j].iov_len = offlens[2 * (k + j) + 1];
			mm[j].msg_hdr.msg_iov = &iov[j];
			mm[j].msg_hdr.msg_iovlen = 1;
			mm[j].msg_hdr.msg_name = sa;
			mm[j].msg_hdr.msg_namelen = ((struct sockaddr *)sa)->sa_family == AF_INET6 ? 28 : 16;
		}
		rc = sendmmsg(fd, mm, n, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (rc < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return sent ? sent : -1;
			if (errno == EINTR)
				continue;
			k++;
			continue;
		}
		sent += rc;
		k += rc;
	}
	return sent;
}

/* shim_udp_send_gso() - send n datagrams through fd, laid out as for
 * shim_udp_send_batch(). Runs of at least two datagrams to the same address,
 * all of the same length (the last may be shorter), leave as one sendmsg()
 * with UDP_SEGMENT: the kernel cuts them apart again, once, far below the
 * socket layer. Other datagrams (and runs the route refuses to segment, such
 * as datagrams that need IP fragmentation) go through sendmmsg(). Returns
 * how many datagrams went out (stops when the socket is full). */
int shim_udp_send_gso(int fd, const uint8_t *buf, const uint32_t *offlens, int n, uint8_t *addrs)
{
	union {
		char b[CMSG_SPACE(sizeof(uint16_t))];
		struct cmsghdr align;
	} ctl;
	struct iovec iov[UDP_GSO_MAX_SEGS];
	int k = 0, single = 0, sent = 0;

	while (k < n) {
		uint8_t *sa = addrs + 28 * k;
		int salen = ((struct sockaddr *)sa)->sa_family == AF_INET6 ? 28 : 16;
		uint32_t len = offlens[2 * k + 1], total = len;
		int e = k + 1;

		if (!udp_gso_off && len > 0) {
			while (e < n && e - k < UDP_GSO_MAX_SEGS && !memcmp(addrs + 28 * e, sa, salen)) {
				uint32_t l = offlens[2 * e + 1];
				if (l > len || l == 0 || total + l > UDP_GSO_MAX_BYTES)
					break;
				total += l;
				e++;
				if (l < len)
					break;
			}
		}
		if (e - k < 2) {
			k++;
			continue; /* stays in the run of singles that starts at 'single' */
		}
		if (single < k) {
			int rc = udp_send_plain(fd, buf, offlens, single, k, addrs);
			if (rc < 0)
				return sent;
			sent += rc;
			if (rc < k - single)
				return sent;
		}
		{
			struct msghdr mh;
			struct cmsghdr *cm;
			ssize_t rc;
			int j;

			for (j = k; j < e; j++) {
				iov[j - k].iov_base = (void *)(buf + offlens[2 * j]);
				iov[j - k].iov_len = offlens[2 * j + 1];
			}
			memset(&mh, 0, sizeof(mh));
			memset(&ctl, 0, sizeof(ctl));
			mh.msg_name = sa;
			mh.msg_namelen = salen;
			mh.msg_iov = iov;
			mh.msg_iovlen = e - k;
			mh.msg_control = ctl.b;
			mh.msg_controllen = sizeof(ctl.b);
			cm = CMSG_FIRSTHDR(&mh);
			cm->cmsg_level = SOL_UDP;
			cm->cmsg_type = UDP_SEGMENT;
			cm->cmsg_len = CMSG_LEN(sizeof(uint16_t));
			*(uint16_t *)CMSG_DATA(cm) = (uint16_t)len;
			do
				rc = sendmsg(fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
			while (rc < 0 && errno == EINTR);
			if (rc < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
				return sent;
			if (rc < 0) {
				/* no GSO here (old kernel: switch it off), or not on this route */
				if (errno == ENOPROTOOPT || errno == EOPNOTSUPP)
					udp_gso_off = 1;
				rc = udp_send_plain(fd, buf, offlens, k, e, addrs);
				if (rc < 0)
					return sent;
				sent += rc;
				if (rc < e - k)
					return sent;
			} else {
				sent += e - k;
			}
		}
		k = e;
		single = e;
	}
	if (single < n) {
		int rc = udp_send_plain(fd, buf, offlens, single, n, addrs);
		if (rc > 0)
			sent += rc;
	}
	return sent;
}

/* ------------------------------------------------------------ vhost-user
 * The descriptors and guest memory of passt --vhost-user (src/tap/vhost-user.ts).
 * The rings themselves are walked in TypeScript; only what JavaScript cannot do
 * (receive descriptors, map memory, copy between raw addresses) is here. */

#define VU_FDS_ROOM 16

/* shim_recv_fds() - read up to len bytes from the UNIX socket fd into buf,
 * with the descriptors that came along (SCM_RIGHTS, close-on-exec): up to max
 * of them into fds[0..max), their count into fds[max]. More than max (or a
 * truncated control message) gives a count of max + 1, the extra ones closed.
 * Returns the bytes read (0: end of stream), or -errno. */
int shim_recv_fds(int fd, uint8_t *buf, int len, int *fds, int max)
{
	union { char b[CMSG_SPACE(sizeof(int) * VU_FDS_ROOM)]; struct cmsghdr align; } ctl;
	struct iovec iov = { buf, (size_t)len };
	struct msghdr mh;
	struct cmsghdr *cm;
	int n = 0, rc;

	memset(&mh, 0, sizeof(mh));
	mh.msg_iov = &iov;
	mh.msg_iovlen = 1;
	mh.msg_control = ctl.b;
	mh.msg_controllen = sizeof(ctl.b);
	do
		rc = (int)recvmsg(fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
	while (rc < 0 && errno == EINTR);
	if (rc < 0)
		return -errno;
	for (cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
		int k, i;

		if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
			continue;
		k = (int)((cm->cmsg_len - CMSG_LEN(0)) / sizeof(int));
		for (i = 0; i < k; i++) {
			int one;

			memcpy(&one, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
			if (n < max)
				fds[n] = one;
			else
				close(one);
			n++;
		}
	}
	if (n > max || (mh.msg_flags & MSG_CTRUNC))
		n = max + 1;
	fds[max] = n;
	return rc;
}

/* shim_map_shared() - map len bytes of fd from its start, shared, readable and
 * writable (guest memory). A file shorter than len is refused: touching the
 * mapping past its end would raise SIGBUS (a front-end that shrinks it
 * later still can). Returns the address, or NULL. */
void *shim_map_shared(int fd, double len)
{
	struct stat st;
	void *p;

	if (len <= 0 || fstat(fd, &st) < 0)
		return NULL;
	if (S_ISREG(st.st_mode) && (double)st.st_size < len)
		return NULL;
	p = mmap(NULL, (size_t)len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd, 0);
	return p == MAP_FAILED ? NULL : p;
}

/* shim_map_private() - len bytes of fresh private anonymous memory, zero
 * pages that become resident only when written (src/loop/arena.ts: JSC's
 * own large ArrayBuffers sometimes come zeroed by a memset over reused heap,
 * which makes all of them resident at once). Returns the address, or NULL. */
void *shim_map_private(double len)
{
	void *p;

	if (len <= 0)
		return NULL;
	p = mmap(NULL, (size_t)len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	return p == MAP_FAILED ? NULL : p;
}

/* shim_unmap() - undo shim_map_shared() or shim_map_private(): 0, or -errno */
int shim_unmap(void *p, double len) { return NEG_ERRNO(munmap(p, (size_t)len)); }

/* shim_copy() - len bytes from src to dst, raw addresses (no overlap). Returns len. */
int shim_copy(void *dst, const void *src, int len)
{
	memcpy(dst, src, (size_t)len);
	return len;
}

/* shim_eventfd() - a non-blocking, close-on-exec eventfd (tests, and test front-ends) */
int shim_eventfd(void) { return NEG_ERRNO(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)); }

/* shim_send_fds() - send len bytes of buf on the UNIX socket fd with the n
 * descriptors fds[0..n) (SCM_RIGHTS; n up to 16). A vhost-user front-end's
 * call, for test front-ends. Returns the bytes sent, or -errno. */
int shim_send_fds(int fd, const uint8_t *buf, int len, const int *fds, int n)
{
	union { char b[CMSG_SPACE(sizeof(int) * VU_FDS_ROOM)]; struct cmsghdr align; } ctl;
	struct iovec iov = { (void *)buf, (size_t)len };
	struct msghdr mh;
	int rc;

	if (n < 0 || n > VU_FDS_ROOM)
		return -EINVAL;
	memset(&mh, 0, sizeof(mh));
	mh.msg_iov = &iov;
	mh.msg_iovlen = 1;
	if (n > 0) {
		struct cmsghdr *cm;

		memset(&ctl, 0, sizeof(ctl));
		mh.msg_control = ctl.b;
		mh.msg_controllen = CMSG_SPACE(sizeof(int) * n);
		cm = CMSG_FIRSTHDR(&mh);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int) * n);
		memcpy(CMSG_DATA(cm), fds, sizeof(int) * n);
	}
	do
		rc = (int)sendmsg(fd, &mh, MSG_NOSIGNAL);
	while (rc < 0 && errno == EINTR);
	return rc < 0 ? -errno : rc;
}

/* shim_memfd() - an anonymous file of len bytes (memfd), for test front-ends' guest memory. Returns the fd or -errno. */
int shim_memfd(int len)
{
	int fd = (int)syscall(SYS_memfd_create, "guest", MFD_CLOEXEC);

	if (fd < 0)
		return -errno;
	if (ftruncate(fd, len) < 0) {
		int e = errno;

		close(fd);
		return -e;
	}
	return fd;
}
