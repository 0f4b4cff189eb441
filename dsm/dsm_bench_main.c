// SPDX-License-Identifier: MIT
/*
 * dsm-bench: the DSM's fault costs on this host, no KVM, two node
 * processes joined by the unix-socket tool transport (dsm/dsm_sock.c) or
 * by the fabric, as in grappe-node (dsm/dsm_fabric.c: authenticated TCP on
 * loopback), each figure against the floors measured in the same run
 * between the same processes (FLOORS.md: compare ratios, not absolute
 * times):
 *
 *   local uffd fault      MISSING fault + UFFDIO_COPY by a handler thread
 *   transport round trip  16 B request, 16 B + 4 KiB answer, on the same
 *                         transport with the same polling
 *   remote read / write fault, upgrade (S -> M) of pages homed on the peer
 *   zero first touch of a page homed here (no message)
 *   pages/s between the nodes: sequential faults, and prefetched batches
 *
 * Each configuration runs blocking (spin 0) and spinning (--spin, default
 * 50 us: the fault handler and the receive threads poll that long after
 * activity before they sleep; the fabric's busy_poll_us). On the unix
 * sockets, with the transport's receive thread delivering messages (as the
 * fabric does) and with the fault handler delivering them itself (one
 * thread per node, no wake-up in between); on the fabric, its receive
 * thread delivers (it has no poll op for the handler).
 *
 *   dsm-bench [--samples N] [--spin US] [--pages N] [--transport sock|fabric|both]
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "dsm/dsm.h"
#include "dsm/dsm_fabric.h"
#include "dsm/dsm_sock.h"
#include "fabric/fabric.h"

#define PG DSM_PAGE_SIZE

enum transport { TR_SOCK = 1, TR_FABRIC = 2 };

struct opts {
	unsigned samples, spin_us;
	bool rx_thread;
	enum transport transport;
	uint64_t tput_pages;
};

static const char *transport_name(enum transport t)
{
	return t == TR_FABRIC ? "fabric (authenticated TCP, loopback)" : "unix SOCK_SEQPACKET";
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static double median_us(uint64_t *v, unsigned n)
{
	qsort(v, n, sizeof(*v), cmp_u64);
	return n ? (double)v[n / 2] / 1000.0 : 0;
}

/* ---- floor 1: a local userfaultfd fault ---- */

struct local_uffd {
	int uffd;
	uint8_t *mem;
	size_t size;
	unsigned spin_us;
	_Atomic bool stop;
	pthread_t thread;
	uint8_t src[PG] __attribute__((aligned(PG)));
};

/* The same loop shape as the DSM handler: spin after an event, then poll. */
static void *local_handler(void *arg)
{
	struct local_uffd *l = arg;
	struct pollfd p = { .fd = l->uffd, .events = POLLIN };
	uint64_t last = 0;
	struct uffd_msg m;

	while (!atomic_load(&l->stop)) {
		if (read(l->uffd, &m, sizeof(m)) == sizeof(m)) {
			struct uffdio_copy c = { .dst = m.arg.pagefault.address & ~(uint64_t)(PG - 1),
						 .src = (uintptr_t)l->src, .len = PG };

			if (ioctl(l->uffd, UFFDIO_COPY, &c) && errno != EEXIST)
				perror("UFFDIO_COPY");
			last = now_ns();
			continue;
		}
		if (l->spin_us && now_ns() - last < l->spin_us * 1000ull) {
			sched_yield();
			continue;
		}
		poll(&p, 1, 50);
	}
	return NULL;
}

static int local_uffd_start(struct local_uffd *l, size_t size, unsigned spin_us)
{
	struct uffdio_api api = { .api = UFFD_API };
	struct uffdio_register reg;

	l->size = size;
	l->spin_us = spin_us;
	memset(l->src, 0x5a, PG);
	l->mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	l->uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (l->mem == MAP_FAILED || l->uffd < 0 || ioctl(l->uffd, UFFDIO_API, &api))
		goto fail;
	reg = (struct uffdio_register){ .range = { (uintptr_t)l->mem, size },
					.mode = UFFDIO_REGISTER_MODE_MISSING };
	if (ioctl(l->uffd, UFFDIO_REGISTER, &reg) == 0 &&
	    (errno = pthread_create(&l->thread, NULL, local_handler, l)) == 0)
		return 0;
fail:
	/* the process goes on to the next configuration: nothing may stay */
	perror("dsm-bench: local userfaultfd");
	if (l->uffd >= 0)
		close(l->uffd);
	if (l->mem != MAP_FAILED)
		munmap(l->mem, size);
	return -1;
}

static void local_uffd_stop(struct local_uffd *l)
{
	atomic_store(&l->stop, true);
	pthread_join(l->thread, NULL);
	close(l->uffd);
	munmap(l->mem, l->size);
}

/* ---- floor 2: the transport's round trip (same socket type, same polling) ---- */

static ssize_t rx_wait(int fd, void *buf, size_t len, unsigned spin_us)
{
	uint64_t end = now_ns() + spin_us * 1000ull;
	struct pollfd p = { .fd = fd, .events = POLLIN };
	ssize_t r;

	for (;;) {
		r = recv(fd, buf, len, MSG_DONTWAIT);
		if (r >= 0 || (errno != EAGAIN && errno != EINTR))
			return r;
		if (spin_us && now_ns() < end) {
			sched_yield();
			continue;
		}
		poll(&p, 1, 1000);
	}
}

struct echo {
	int fd;
	unsigned spin_us;
	pthread_t thread;
};

static void *echo_main(void *arg)
{
	struct echo *e = arg;
	uint8_t buf[DSM_MSG_MAX_LEN];

	/* a 16-byte request is answered with a header and a page, like GET_S */
	while (rx_wait(e->fd, buf, sizeof(buf), e->spin_us) > 0)
		if (send(e->fd, buf, DSM_MSG_MAX_LEN, MSG_NOSIGNAL) < 0)
			break;
	return NULL;
}

/*
 * n round trips into v; -1 when one fails: a median over the ones that
 * did not happen would be a floor that was never measured.
 */
static int round_trip(int fd, unsigned n, unsigned spin_us, uint64_t *v)
{
	uint8_t buf[DSM_MSG_MAX_LEN] = { 0 };

	for (unsigned i = 0; i < n; i++) {
		uint64_t t0 = now_ns();

		if (send(fd, buf, DSM_MSG_HDR_LEN, MSG_NOSIGNAL) < 0 ||
		    rx_wait(fd, buf, sizeof(buf), spin_us) != DSM_MSG_MAX_LEN) {
			fprintf(stderr, "dsm-bench: socket round trip %u: no answer\n", i);
			return -1;
		}
		v[i] = now_ns() - t0;
	}
	return 0;
}

/* ---- the two nodes ---- */

struct side {
	struct dsm_node *n;
	struct dsm_sock *sock;          /* TR_SOCK */
	struct fabric *f;               /* TR_FABRIC */
	uint8_t *mem;
	/* TR_FABRIC, node 0: the round trip's answers, stamped on the receive thread */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	unsigned answers;
	uint64_t answer_ns;
	bool peer_gone;                 /* on_peer_down: no answer will come */
};

/*
 * The fabric's round trip, on the connection that carries the DSM: node 1
 * answers a 16-byte request with a header and a page, like GET_S.
 */
#define T_RTT_REQ 0x7f00
#define T_RTT_ANS 0x7f01

/*
 * + 1: the literal's NUL needs room (an array that drops it is an error
 * with GCC 15's -Wunterminated-string-initialization); it is no part of
 * the secret, of which FABRIC_SECRET_LEN bytes are copied.
 */
static const char secret[FABRIC_SECRET_LEN + 1] = "dsm-bench secret, 32 bytes......";

static void on_frame(void *ctx, unsigned src, uint16_t type, uint64_t req_id,
		     const void *payload, size_t len)
{
	static const uint8_t answer[DSM_MSG_MAX_LEN];
	struct iovec v[2] = { { (void *)answer, DSM_MSG_HDR_LEN },
			      { (void *)(answer + DSM_MSG_HDR_LEN), PG } };
	struct side *s = ctx;
	uint64_t t = now_ns();

	if (type == DSM_FABRIC_TYPE) {
		dsm_fabric_receive(s->n, src, payload, len);
	} else if (type == T_RTT_REQ) {
		fabric_sendv(s->f, src, T_RTT_ANS, req_id, v, 2);
	} else if (type == T_RTT_ANS) {
		/*
		 * Stamped where it arrives, as a DSM answer is handled: the wait
		 * of the measuring thread is not the fabric's.
		 */
		pthread_mutex_lock(&s->lock);
		s->answer_ns = t;
		s->answers++;
		pthread_cond_signal(&s->cond);
		pthread_mutex_unlock(&s->lock);
	}
}

static void on_peer_down(void *ctx, unsigned peer, enum fabric_down_reason reason,
			 const char *why)
{
	struct side *s = ctx;

	dsm_peer_down(s->n, peer, why);
	/* node 0 may be waiting for a round trip's answer: it gives up */
	pthread_mutex_lock(&s->lock);
	s->peer_gone = true;
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
}

/*
 * The backstop for one round trip's answer, should the fabric never say
 * that node 1 is gone: above its dead_ms (2 s), so that it normally does.
 */
#define RTT_TIMEOUT_S 5

/*
 * Node 0 asks node 1 n times, into v; the same polling as the DSM
 * (busy_poll_us). -1 when a request cannot be sent or gets no answer.
 */
static int fabric_round_trip(struct side *s, unsigned n, uint64_t *v)
{
	static const uint8_t req[DSM_MSG_HDR_LEN];

	for (unsigned i = 0; i < n; i++) {
		uint64_t t0 = now_ns(), end = t0 + RTT_TIMEOUT_S * 1000000000ull;
		/* the cond waits on CLOCK_MONOTONIC, now_ns()'s clock (side_start) */
		struct timespec dl = { .tv_sec = (time_t)(end / 1000000000u),
				       .tv_nsec = (long)(end % 1000000000u) };
		int r = fabric_send(s->f, 1, T_RTT_REQ, i, req, sizeof(req));
		bool answered;

		if (r) {
			fprintf(stderr, "dsm-bench: fabric round trip %u: %s\n", i, strerror(-r));
			return -1;
		}
		pthread_mutex_lock(&s->lock);
		while (s->answers <= i && !s->peer_gone && r == 0)
			r = pthread_cond_timedwait(&s->cond, &s->lock, &dl);
		answered = s->answers > i;
		v[i] = s->answer_ns - t0;
		pthread_mutex_unlock(&s->lock);
		if (!answered) {
			if (r)
				fprintf(stderr, "dsm-bench: fabric round trip %u: no answer in %d s\n",
					i, RTT_TIMEOUT_S);
			else
				fprintf(stderr, "dsm-bench: fabric round trip %u: node 1 is gone\n", i);
			return -1;
		}
	}
	return 0;
}

/*
 * A fabric endpoint on a free loopback port; the two processes tell each
 * other their ports through the pipes before either starts.
 */
static int fabric_open(struct side *s, unsigned self, unsigned spin_us, int to_peer,
		       int from_peer)
{
	struct fabric_config c = { .self = self, .nr_nodes = 2, .cluster = "dsm-bench",
				   .busy_poll_us = spin_us };
	struct fabric_ops ops = { .on_frame = on_frame, .on_peer_down = on_peer_down, .ctx = s };
	unsigned port, peer_port;
	char err[256], addr[32];

	memcpy(c.secret, secret, FABRIC_SECRET_LEN);
	c.addr[self] = "127.0.0.1:0";
	if (fabric_create(&c, &ops, &s->f, err, sizeof(err)))
		goto fail;
	port = fabric_local_port(s->f);
	if (write(to_peer, &port, sizeof(port)) != sizeof(port) ||
	    read(from_peer, &peer_port, sizeof(peer_port)) != sizeof(peer_port)) {
		snprintf(err, sizeof(err), "no port from the other node");
		goto fail;
	}
	snprintf(addr, sizeof(addr), "127.0.0.1:%u", peer_port);
	if (fabric_set_peer_addr(s->f, !self, addr, err, sizeof(err)))
		goto fail;
	return 0;
fail:
	fprintf(stderr, "dsm-bench: fabric: %s\n", err);
	return -1;
}

/*
 * Both callers stop the DSM on both nodes before this: a fabric peer that
 * leaves first is then no failure of the other node.
 */
static void side_stop(struct side *s)
{
	if (s->n)
		dsm_node_stop(s->n);
	if (s->sock)
		dsm_sock_destroy(s->sock);
	if (s->f)
		fabric_destroy(s->f);
	dsm_node_destroy(s->n);
	pthread_cond_destroy(&s->cond);
	pthread_mutex_destroy(&s->lock);
}

/*
 * Pages [0, home_b) are homed on node 1 (the peer), the rest on node 0.
 * TR_SOCK: fd is the socket to the peer; TR_FABRIC: the pipes.
 */
static int side_start(struct side *s, unsigned self, const struct opts *o, int fd, int to_peer,
		      int from_peer, uint64_t pages, uint64_t home_b)
{
	struct dsm_range homes[2] = { { 0, home_b * PG, 1 }, { home_b * PG, pages * PG, 0 } };
	int fds[2] = { -1, -1 };
	struct dsm_transport_ops tx;
	pthread_condattr_t ca;
	struct dsm_config cfg;
	char err[256];
	int r;

	memset(s, 0, sizeof(*s));
	pthread_mutex_init(&s->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&s->cond, &ca);
	pthread_condattr_destroy(&ca);
	fds[!self] = fd;
	if (o->transport == TR_FABRIC) {
		if (fabric_open(s, self, o->spin_us, to_peer, from_peer))
			goto fail;
		tx = dsm_fabric_ops(s->f);
	} else {
		r = dsm_sock_create(self, 2, fds, o->spin_us, &s->sock);
		if (r) {
			fprintf(stderr, "dsm-bench: unix sockets: %s\n", strerror(-r));
			goto fail;
		}
		tx = dsm_sock_ops(s->sock);
	}
	cfg = (struct dsm_config){ .self = self, .nr_nodes = 2, .size = pages * PG, .homes = homes,
				   .nr_homes = 2, .spin_us = o->spin_us,
				   .request_timeout_ms = 30000 };
	if (dsm_node_create(&cfg, &tx, &s->n, err, sizeof(err))) {
		fprintf(stderr, "dsm-bench: %s\n", err);
		goto fail;
	}
	if (s->sock) {
		dsm_sock_attach(s->sock, s->n);
		r = dsm_sock_start(s->sock, o->rx_thread);
		if (r)
			snprintf(err, sizeof(err), "unix sockets: %s", strerror(-r));
	} else {
		r = fabric_start(s->f, 10000, err, sizeof(err));
	}
	if (r || dsm_node_start(s->n, err, sizeof(err))) {
		fprintf(stderr, "dsm-bench: start: %s\n", err);
		goto fail;
	}
	s->mem = dsm_node_mem(s->n);
	return 0;
fail:
	side_stop(s);
	return -1;
}

static void sync_write(int fd)
{
	char c = 1;

	if (write(fd, &c, 1) != 1)
		perror("dsm-bench: pipe");
}

/* -1 when the other process is gone (or failed to start). */
static int sync_read(int fd)
{
	char c;

	if (read(fd, &c, 1) != 1) {
		fprintf(stderr, "dsm-bench: the other node process is gone\n");
		return -1;
	}
	return 0;
}

/* Node 1: homes the pages node 0 faults on, writes them first, answers the round trips. */
static int peer_main(const struct opts *o, int fd, int echo_fd, int to_a, int from_a,
		     uint64_t pages, uint64_t home_b)
{
	struct echo e = { .fd = echo_fd, .spin_us = o->spin_us };
	struct side s;

	if (side_start(&s, 1, o, fd, to_a, from_a, pages, home_b))
		return 1;
	/* written here: node 0's faults fetch real data, not DATA_ZERO */
	for (uint64_t p = 0; p < home_b; p++)
		*(volatile uint64_t *)(s.mem + p * PG) = p + 1;
	if (echo_fd >= 0)
		pthread_create(&e.thread, NULL, echo_main, &e);
	sync_write(to_a);
	sync_read(from_a);            /* node 0 is done */
	if (echo_fd >= 0) {
		shutdown(echo_fd, SHUT_RDWR);
		pthread_join(e.thread, NULL);
	}
	dsm_node_stop(s.n);
	sync_write(to_a);
	sync_read(from_a);            /* node 0's DSM is stopped too */
	side_stop(&s);
	return 0;
}

struct figures {
	double local, touch, rtt, rd, wr, up, zw, zr, seq_pps, pre_pps;
	struct dsm_stats st;
};

/*
 * n faults on pages first, first + stride, ...: a stride of 2 keeps the
 * DSM's read-ahead (which follows misses on consecutive pages) out of a
 * latency figure.
 */
static double time_faults(uint8_t *base, uint64_t first, unsigned stride, unsigned n, int kind,
			  uint64_t *v)
{
	for (unsigned i = 0; i < n; i++) {
		volatile uint64_t *w = (volatile uint64_t *)(base + (first + (uint64_t)i * stride) * PG);
		uint64_t t0 = 0;

		if (kind == 2)
			(void)*w;                      /* S first: the write upgrades */
		t0 = now_ns();
		if (kind == 0)
			(void)*w;
		else
			*w = i;
		v[i] = now_ns() - t0;
	}
	return median_us(v, n);
}

/* 0, or -1 said on stderr: the figures are then not to be printed. */
static int measure(const struct opts *o, struct side *a, int echo_fd, uint64_t home_b,
		   struct figures *f)
{
	unsigned n = o->samples;
	uint64_t *v = calloc(n, sizeof(*v)), t0, p;
	struct local_uffd *l = aligned_alloc(PG, sizeof(*l));
	uint8_t *plain;
	int r = -1;

	if (!v || !l) {
		fprintf(stderr, "dsm-bench: out of memory\n");
		goto out;
	}
	memset(l, 0, sizeof(*l));
	if (local_uffd_start(l, (size_t)n * PG, o->spin_us))
		goto out;
	f->local = time_faults(l->mem, 0, 1, n, 1, v);
	local_uffd_stop(l);
	plain = mmap(NULL, (size_t)n * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (plain == MAP_FAILED) {
		perror("dsm-bench: mmap");
		goto out;
	}
	f->touch = time_faults(plain, 0, 1, n, 1, v);
	munmap(plain, (size_t)n * PG);
	if (o->transport == TR_FABRIC ? fabric_round_trip(a, n, v) :
					round_trip(echo_fd, n, o->spin_us, v))
		goto out;
	f->rtt = median_us(v, n);
	/* remote: pages homed on node 1, written there; every other page */
	f->rd = time_faults(a->mem, 0, 2, n, 0, v);
	f->wr = time_faults(a->mem, 2 * n, 2, n, 1, v);
	f->up = time_faults(a->mem, 4 * n, 2, n, 2, v);
	/* zero first touch of pages homed here */
	f->zw = time_faults(a->mem, home_b, 1, n, 1, v);
	f->zr = time_faults(a->mem, home_b + n, 1, n, 0, v);
	/*
	 * throughput: one thread faulting on consecutive pages (the DSM reads
	 * ahead), then batches of 64 asked for at once
	 */
	p = 6 * n;
	t0 = now_ns();
	for (uint64_t i = 0; i < o->tput_pages / 2; i++)
		(void)*(volatile uint64_t *)(a->mem + (p + i) * PG);
	f->seq_pps = (double)(o->tput_pages / 2) * 1e9 / (double)(now_ns() - t0);
	p += o->tput_pages / 2;
	t0 = now_ns();
	for (uint64_t i = 0; i < o->tput_pages / 2; i += 64) {
		dsm_prefetch(a->n, (p + i) * PG, 64 * PG, false);
		for (uint64_t j = i; j < i + 64; j++)
			(void)*(volatile uint64_t *)(a->mem + (p + j) * PG);
	}
	f->pre_pps = (double)(o->tput_pages / 2) * 1e9 / (double)(now_ns() - t0);
	dsm_node_stats(a->n, &f->st);
	/* node 1 lost on the way: the DSM let go of the range, zeros came in its pages' place */
	if (dsm_node_failed(a->n)) {
		fprintf(stderr, "dsm-bench: the DSM failed during the measurement\n");
		goto out;
	}
	r = 0;
out:
	free(l);
	free(v);
	return r;
}

static void print(const struct opts *o, unsigned spin, const struct figures *f)
{
	double base = f->rtt + f->local;

	printf("\n== %s: %s (spin %u us), %s\n", transport_name(o->transport),
	       spin ? "spinning" : "blocking", spin,
	       o->rx_thread ? "receive thread" : "the fault handler receives");
	printf("  floors     local uffd fault %7.1f us | first touch, no uffd %5.1f us | "
	       "%s round trip 16 B -> 4 KiB %6.1f us\n", f->local, f->touch,
	       o->transport == TR_FABRIC ? "fabric" : "socket", f->rtt);
	printf("  remote     read fault  %7.1f us   %.2fx (round trip + local fault)   goal <= 1.5\n",
	       f->rd, f->rd / base);
	printf("             write fault %7.1f us   %.2fx\n", f->wr, f->wr / base);
	printf("             upgrade     %7.1f us   %.2fx\n", f->up, f->up / base);
	printf("  zero, home here: first write %6.1f us   %.2fx local fault   goal <= 1.2\n",
	       f->zw, f->zw / f->local);
	printf("                   first read  %6.1f us   %.2fx local fault\n", f->zr,
	       f->zr / f->local);
	printf("  pages/s    one thread (read-ahead) %8.0f   prefetch x64 %8.0f   (%llu pages each)\n",
	       f->seq_pps, f->pre_pps, (unsigned long long)o->tput_pages / 2);
	printf("  counters   read_miss %llu write_miss %llu upgrade %llu zero_local %llu msgs %llu/%llu\n",
	       (unsigned long long)f->st.fault_read_miss, (unsigned long long)f->st.fault_write_miss,
	       (unsigned long long)f->st.fault_upgrade, (unsigned long long)f->st.fault_zero_local,
	       (unsigned long long)f->st.msgs_tx, (unsigned long long)f->st.msgs_rx);
	fflush(stdout);
}

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

/*
 * The unix sockets (fd, efd for the round trip) are made for TR_SOCK only.
 * Whatever fails, all is undone before the next run() forks: its child
 * must not be a copy of a process with DSM and fabric threads running.
 */
static int run(const struct opts *o, enum transport tr, unsigned spin, bool rx_thread)
{
	struct opts oo = *o;
	uint64_t home_b = 6ull * o->samples + o->tput_pages, pages = home_b + 2ull * o->samples;
	int fd[2] = { -1, -1 }, efd[2] = { -1, -1 }, to_a[2] = { -1, -1 }, from_a[2] = { -1, -1 };
	int st = 0, rc = 1, r;
	struct figures f = { 0 };
	bool started = false;
	struct side a;
	pid_t pid = -1;

	oo.spin_us = spin;
	oo.rx_thread = rx_thread;
	oo.transport = tr;
	if (pipe(to_a) || pipe(from_a) ||
	    (tr == TR_SOCK && (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fd) ||
			       socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, efd)))) {
		perror("dsm-bench: pipe or socketpair");
		goto out;
	}
	pid = fork();
	if (pid == 0) {
		close(fd[0]);
		close(efd[0]);
		close(to_a[0]);
		close(from_a[1]);
		_exit(peer_main(&oo, fd[1], efd[1], to_a[1], from_a[0], pages, home_b));
	}
	/* only the child holds its ends: its exit is an end of file here */
	close_fd(&fd[1]);
	close_fd(&efd[1]);
	close_fd(&to_a[1]);
	close_fd(&from_a[0]);
	if (pid < 0) {
		perror("dsm-bench: fork");
		goto out;
	}
	r = side_start(&a, 0, &oo, fd[0], from_a[1], to_a[0], pages, home_b);
	fd[0] = -1;                   /* dsm_sock_create took it over, even to fail */
	if (r)
		goto out;
	started = true;
	if (sync_read(to_a[0]) || measure(&oo, &a, efd[0], home_b, &f))
		goto out;
	sync_write(from_a[1]);
	if (sync_read(to_a[0]))       /* node 1's DSM is stopped */
		goto out;
	dsm_node_stop(a.n);
	sync_write(from_a[1]);
	side_stop(&a);
	started = false;
	waitpid(pid, &st, 0);
	pid = -1;
	print(&oo, spin, &f);
	rc = !WIFEXITED(st) || WEXITSTATUS(st);
out:
	/* node 0's DSM first: node 1 going then is no second failure to report */
	if (started)
		dsm_node_stop(a.n);
	if (pid > 0) {
		kill(pid, SIGTERM);
		waitpid(pid, &st, 0);
	}
	if (started)
		side_stop(&a);
	for (unsigned i = 0; i < 2; i++) {
		close_fd(&fd[i]);
		close_fd(&efd[i]);
		close_fd(&to_a[i]);
		close_fd(&from_a[i]);
	}
	return rc;
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "samples", 1, NULL, 'n' }, { "spin", 1, NULL, 's' }, { "pages", 1, NULL, 'p' },
		{ "transport", 1, NULL, 't' }, { 0 },
	};
	struct opts o = { .samples = 2000, .spin_us = 50, .tput_pages = 16384 };
	unsigned tr = TR_SOCK | TR_FABRIC;
	int c, rc = 0;

	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		if (c == 'n')
			o.samples = (unsigned)atoi(optarg);
		else if (c == 's')
			o.spin_us = (unsigned)atoi(optarg);
		else if (c == 'p')
			o.tput_pages = strtoull(optarg, NULL, 0);
		else if (c == 't' && !strcmp(optarg, "sock"))
			tr = TR_SOCK;
		else if (c == 't' && !strcmp(optarg, "fabric"))
			tr = TR_FABRIC;
		else if (c == 't' && !strcmp(optarg, "both"))
			tr = TR_SOCK | TR_FABRIC;
		else {
			fprintf(stderr, "usage: dsm-bench [--samples N] [--spin US] [--pages N] "
				"[--transport sock|fabric|both]\n");
			return 2;
		}
	}
	if (o.samples < 10 || o.tput_pages < 128) {
		fprintf(stderr, "dsm-bench: --samples >= 10, --pages >= 128\n");
		return 2;
	}
	o.tput_pages &= ~127ull;
	printf("dsm-bench: 2 node processes, %s%s%s, %u samples per figure, medians\n",
	       tr & TR_SOCK ? transport_name(TR_SOCK) : "", tr == (TR_SOCK | TR_FABRIC) ? " then " : "",
	       tr & TR_FABRIC ? transport_name(TR_FABRIC) : "", o.samples);
	if (tr & TR_SOCK) {
		rc |= run(&o, TR_SOCK, 0, true);
		rc |= run(&o, TR_SOCK, o.spin_us, true);
		rc |= run(&o, TR_SOCK, 0, false);
		rc |= run(&o, TR_SOCK, o.spin_us, false);
	}
	/* The fabric's receive thread always delivers: the product's configuration. */
	if (tr & TR_FABRIC) {
		rc |= run(&o, TR_FABRIC, 0, true);
		rc |= run(&o, TR_FABRIC, o.spin_us, true);
	}
	return rc;
}
