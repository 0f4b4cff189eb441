// SPDX-License-Identifier: MIT
/*
 * fabric-bench: two fabric endpoints on loopback in one process, against
 * plain TCP between two threads measured in the same run (FLOORS.md: the
 * figures vary 3-4x between runs, ratios within a run do not).
 *
 *   round trip, 64 B request and 64 B answer
 *   round trip, 64 B request and a 4 KiB page answer (a DSM page fetch)
 *   4 KiB pages per second, one way
 *
 * for each receive mode: the fabric's receive thread blocking in epoll, or
 * busy-polling for a while after traffic; the waiting thread sleeping on a
 * condition variable or spinning; or no waiting thread at all, requests
 * sent and answers handled on the receive thread (as an upper layer that
 * works there through fabric_watch_fd).
 *
 * Usage: fabric-bench [-n round-trips] [-P pages] [-b busy_poll_us]
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "fabric/fabric.h"

#define T_REQ 0x7f00
#define T_REQ_PAGE 0x7f01
#define T_ANS 0x7f02
#define T_PAGE 0x7f03

/* FLOORS.md, TCP loopback: medians in us, pages/s. */
#define FLOOR_RTT_BLOCK 68.0
#define FLOOR_RTT_SPIN 8.7
#define FLOOR_PAGE_BLOCK 70.0
#define FLOOR_PAGE_SPIN 8.6
#define FLOOR_PAGES_PER_S 0.9e6

/*
 * + 1: the literal's NUL needs room (an array that drops it is an error
 * with GCC 15's -Wunterminated-string-initialization); it is no part of
 * the secret, of which FABRIC_SECRET_LEN bytes are copied.
 */
static const char secret[FABRIC_SECRET_LEN + 1] = "fabric-bench secret, 32 bytes...";

struct endpoint {
	struct fabric *f;
	unsigned id;
	bool spin;                  /* the waiting thread spins instead of sleeping */
	/* in-loop mode: the next request is sent from on_frame itself */
	bool in_loop;
	uint16_t loop_type;
	unsigned loop_n, loop_i;
	uint64_t loop_t0, *loop_ns;
	atomic_uint_fast64_t answers;
	atomic_uint_fast64_t pages;
	pthread_mutex_t lock;
	pthread_cond_t cond;
};

static struct endpoint ep[2];
static uint8_t page[16 + 4096];

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void on_frame(void *ctx, unsigned src, uint16_t type, uint64_t req_id,
		     const void *payload, size_t len)
{
	struct endpoint *e = ctx;

	switch (type) {
	case T_REQ:
		fabric_send(e->f, src, T_ANS, req_id, payload, len);
		break;
	case T_REQ_PAGE: {
		/* A DSM answer: its header and the page, without a copy. */
		struct iovec v[2] = { { page, 16 }, { page + 16, 4096 } };

		fabric_sendv(e->f, src, T_ANS, req_id, v, 2);
		break;
	}
	case T_ANS:
		if (e->in_loop && e->loop_i < e->loop_n) {
			uint64_t t = now_ns();
			static uint8_t req[64];

			e->loop_ns[e->loop_i++] = t - e->loop_t0;
			if (e->loop_i < e->loop_n) {
				e->loop_t0 = now_ns();
				fabric_send(e->f, src, e->loop_type, e->loop_i, req, sizeof(req));
				break;
			}
		}
		if (e->spin) {
			atomic_fetch_add(&e->answers, 1);
		} else {
			pthread_mutex_lock(&e->lock);
			atomic_fetch_add(&e->answers, 1);
			pthread_cond_signal(&e->cond);
			pthread_mutex_unlock(&e->lock);
		}
		break;
	case T_PAGE:
		atomic_fetch_add(&e->pages, 1);
		break;
	}
}

static void wait_answers(struct endpoint *e, uint64_t n)
{
	if (e->spin) {
		while (atomic_load(&e->answers) < n)
			__builtin_ia32_pause();
		return;
	}
	pthread_mutex_lock(&e->lock);
	while (atomic_load(&e->answers) < n)
		pthread_cond_wait(&e->cond, &e->lock);
	pthread_mutex_unlock(&e->lock);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

struct stats {
	double median, p99;
};

static struct stats summarize(uint64_t *ns, unsigned n)
{
	qsort(ns, n, sizeof(*ns), cmp_u64);
	return (struct stats){ ns[n / 2] / 1e3, ns[n * 99 / 100] / 1e3 };
}

static void quiet(void *ctx, const char *msg)
{
}

struct started {
	struct endpoint *e;
	int rc;
	char err[512];
};

static void *start_thread(void *arg)
{
	struct started *s = arg;

	s->rc = fabric_start(s->e->f, 10000, s->err, sizeof(s->err));
	return NULL;
}

static int mesh_up(unsigned busy_poll_us)
{
	struct started s[2];
	pthread_t t[2];
	char err[512], addr[2][32];

	for (unsigned i = 0; i < 2; i++) {
		struct fabric_config c = {
			.self = i, .nr_nodes = 2, .cluster = "bench", .busy_poll_us = busy_poll_us,
		};
		struct fabric_ops ops = { .on_frame = on_frame, .on_log = quiet, .ctx = &ep[i] };

		memcpy(c.secret, secret, FABRIC_SECRET_LEN);
		c.addr[i] = "127.0.0.1:0";
		atomic_store(&ep[i].answers, 0);
		atomic_store(&ep[i].pages, 0);
		ep[i].id = i;
		if (fabric_create(&c, &ops, &ep[i].f, err, sizeof(err))) {
			fprintf(stderr, "fabric-bench: %s\n", err);
			return -1;
		}
		snprintf(addr[i], sizeof(addr[i]), "127.0.0.1:%u", fabric_local_port(ep[i].f));
	}
	fabric_set_peer_addr(ep[0].f, 1, addr[1], err, sizeof(err));
	fabric_set_peer_addr(ep[1].f, 0, addr[0], err, sizeof(err));
	for (unsigned i = 0; i < 2; i++) {
		s[i] = (struct started){ .e = &ep[i] };
		pthread_create(&t[i], NULL, start_thread, &s[i]);
	}
	for (unsigned i = 0; i < 2; i++) {
		pthread_join(t[i], NULL);
		if (s[i].rc) {
			fprintf(stderr, "fabric-bench: %s\n", s[i].err);
			return -1;
		}
	}
	return 0;
}

static void mesh_down(void)
{
	for (unsigned i = 0; i < 2; i++) {
		fabric_destroy(ep[i].f);
		ep[i].f = NULL;
	}
}

/* Node 1 asks node 0, n times, and waits for each answer. */
static struct stats fabric_rtt(uint16_t type, unsigned n, uint64_t *ns)
{
	static uint8_t req[64];
	uint64_t base = atomic_load(&ep[1].answers);

	for (unsigned i = 0; i < n; i++) {
		uint64_t t0 = now_ns();

		if (fabric_send(ep[1].f, 0, type, i, req, sizeof(req)))
			break;
		wait_answers(&ep[1], base + i + 1);
		ns[i] = now_ns() - t0;
	}
	return summarize(ns, n);
}

/* An eventfd on node 1's receive thread starts the first request there. */
static void kick(void *ctx, int fd, uint32_t events)
{
	struct endpoint *e = ctx;
	static uint8_t req[64];
	uint64_t v;

	if (read(fd, &v, sizeof(v)) != sizeof(v))
		return;
	e->loop_t0 = now_ns();
	fabric_send(e->f, 0, e->loop_type, 0, req, sizeof(req));
}

/*
 * Requests sent and answers handled on node 1's receive thread, as an
 * upper layer that does its work there (fabric_watch_fd) would.
 */
static struct stats fabric_rtt_in_loop(uint16_t type, unsigned n, uint64_t *ns)
{
	struct endpoint *e = &ep[1];
	int efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	uint64_t one = 1, base = atomic_load(&e->answers);

	e->loop_type = type;
	e->loop_n = n;
	e->loop_i = 0;
	e->loop_ns = ns;
	e->in_loop = true;
	fabric_watch_fd(e->f, efd, EPOLLIN, kick, e);
	if (write(efd, &one, sizeof(one)) == sizeof(one))
		wait_answers(e, base + 1);
	fabric_unwatch_fd(e->f, efd);
	close(efd);
	e->in_loop = false;
	return summarize(ns, n);
}

/* Node 1 sends n pages to node 0; returns pages per second. */
static double fabric_pages(unsigned n)
{
	struct iovec v[2] = { { page, 16 }, { page + 16, 4096 } };
	uint64_t t0 = now_ns();

	for (unsigned i = 0; i < n; i++)
		if (fabric_sendv(ep[1].f, 0, T_PAGE, i, v, 2))
			return 0;
	while (atomic_load(&ep[0].pages) < n)
		usleep(50);
	return n / ((now_ns() - t0) / 1e9);
}

/* ---- plain TCP between two threads, the floor ---------------------------- */

struct raw {
	int fd[2];
	bool spin;
	size_t answer;
	unsigned n;
};

static int read_full(int fd, void *buf, size_t len, bool spin)
{
	size_t got = 0;

	while (got < len) {
		ssize_t r = recv(fd, (uint8_t *)buf + got, len - got, spin ? MSG_DONTWAIT : 0);

		if (r > 0)
			got += (size_t)r;
		else if (r == 0 || (errno != EAGAIN && errno != EINTR))
			return -1;
	}
	return 0;
}

static void *raw_server(void *arg)
{
	struct raw *r = arg;
	uint8_t req[64];

	for (unsigned i = 0; i < r->n; i++) {
		if (read_full(r->fd[0], req, sizeof(req), r->spin) ||
		    write(r->fd[0], page, r->answer) != (ssize_t)r->answer)
			break;
	}
	return NULL;
}

static int raw_pair(int fd[2])
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);
	int one = 1, l = socket(AF_INET, SOCK_STREAM, 0);

	if (bind(l, (struct sockaddr *)&a, sizeof(a)) || listen(l, 1) ||
	    getsockname(l, (struct sockaddr *)&a, &len))
		return -1;
	fd[1] = socket(AF_INET, SOCK_STREAM, 0);
	if (connect(fd[1], (struct sockaddr *)&a, sizeof(a)))
		return -1;
	fd[0] = accept(l, NULL, NULL);
	close(l);
	setsockopt(fd[0], IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(fd[1], IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return fd[0] < 0 ? -1 : 0;
}

static struct stats raw_rtt(bool spin, size_t answer, unsigned n, uint64_t *ns)
{
	struct raw r = { .spin = spin, .answer = answer, .n = n };
	static uint8_t req[64], buf[sizeof(page)];
	pthread_t t;

	if (raw_pair(r.fd))
		return (struct stats){ 0, 0 };
	pthread_create(&t, NULL, raw_server, &r);
	for (unsigned i = 0; i < n; i++) {
		uint64_t t0 = now_ns();

		if (write(r.fd[1], req, sizeof(req)) != sizeof(req) ||
		    read_full(r.fd[1], buf, answer, spin))
			break;
		ns[i] = now_ns() - t0;
	}
	pthread_join(t, NULL);
	close(r.fd[0]);
	close(r.fd[1]);
	return summarize(ns, n);
}

struct raw_stream {
	int fd;
	unsigned n;
};

static void *raw_sink(void *arg)
{
	struct raw_stream *r = arg;
	static uint8_t buf[256 * 1024];
	size_t want = (size_t)r->n * sizeof(page), got = 0;

	while (got < want) {
		ssize_t k = read(r->fd, buf, sizeof(buf));

		if (k <= 0)
			break;
		got += (size_t)k;
	}
	return NULL;
}

/* The same page stream over plain TCP: one write per page, like the fabric. */
static double raw_pages(unsigned n)
{
	struct raw_stream r = { .n = n };
	int fd[2];
	pthread_t t;
	uint64_t t0;

	if (raw_pair(fd))
		return 0;
	r.fd = fd[0];
	t0 = now_ns();
	pthread_create(&t, NULL, raw_sink, &r);
	for (unsigned i = 0; i < n; i++)
		if (write(fd[1], page, sizeof(page)) != (ssize_t)sizeof(page))
			break;
	pthread_join(t, NULL);
	close(fd[0]);
	close(fd[1]);
	return n / ((now_ns() - t0) / 1e9);
}

/* ---- MAC cost ------------------------------------------------------------ */

static double seal_us(size_t len)
{
	struct iovec v = { page, len };
	uint8_t key[FRAME_KEY_LEN] = { 1 }, hdr[FRAME_HDR_LEN];
	struct frame_tx tx;
	const unsigned n = 20000;
	uint64_t t0;

	frame_tx_init(&tx, key, 0, 1);
	t0 = now_ns();
	for (unsigned i = 0; i < n; i++)
		frame_seal(&tx, hdr, T_PAGE, 0, i, &v, 1);
	return (now_ns() - t0) / 1e3 / n;
}

static void row(const char *what, struct stats s, double floor_run, double floor_doc)
{
	printf("  %-44s %8.1f %8.1f   x%-6.2f x%.2f\n", what, s.median, s.p99,
	       floor_run > 0 ? s.median / floor_run : 0, s.median / floor_doc);
}

int main(int argc, char **argv)
{
	unsigned n = 20000, npages = 200000, busy = 50;
	struct stats raw64[2], rawpg[2], s;
	uint64_t *ns;
	double pps, raw_pps;
	int c;

	while ((c = getopt(argc, argv, "n:P:b:")) != -1) {
		switch (c) {
		case 'n': n = (unsigned)atoi(optarg); break;
		case 'P': npages = (unsigned)atoi(optarg); break;
		case 'b': busy = (unsigned)atoi(optarg); break;
		default:
			fprintf(stderr, "usage: fabric-bench [-n round-trips] [-P pages] "
				"[-b busy_poll_us]\n");
			return 2;
		}
	}
	if (n < 100)
		n = 100;
	ns = calloc(n, sizeof(*ns));
	for (size_t i = 0; i < sizeof(page); i++)
		page[i] = (uint8_t)i;
	for (unsigned i = 0; i < 2; i++) {
		pthread_mutex_init(&ep[i].lock, NULL);
		pthread_cond_init(&ep[i].cond, NULL);
	}

	printf("fabric-bench: %u round trips, %u pages; medians and p99 in us; ratios to plain "
	       "TCP in this run, and to FLOORS.md\n", n, npages);
	printf("  MAC (ChaCha20 key + Poly1305): 64 B %.2f us, 4 KiB %.2f us per frame\n",
	       seal_us(64), seal_us(4096));
	printf("  %-44s %8s %8s   %-7s %s\n", "", "median", "p99", "/run", "/FLOORS");
	for (int spin = 0; spin < 2; spin++) {
		raw64[spin] = raw_rtt(spin, 64, n, ns);
		rawpg[spin] = raw_rtt(spin, sizeof(page), n, ns);
		row(spin ? "plain TCP, 64 B, spinning" : "plain TCP, 64 B, blocking", raw64[spin],
		    raw64[spin].median, spin ? FLOOR_RTT_SPIN : FLOOR_RTT_BLOCK);
		row(spin ? "plain TCP, page, spinning" : "plain TCP, page, blocking", rawpg[spin],
		    rawpg[spin].median, spin ? FLOOR_PAGE_SPIN : FLOOR_PAGE_BLOCK);
	}

	raw_pps = raw_pages(npages);
	printf("  %-44s %8.2f M pages/s (%.0f MB/s), x%.2f FLOORS.md\n", "plain TCP one way",
	       raw_pps / 1e6, raw_pps * sizeof(page) / 1e6, raw_pps / FLOOR_PAGES_PER_S);

	/* Receive threads blocking or busy-polling; the waiter sleeping or spinning. */
	static const struct { unsigned busy; bool spin; const char *name; } modes[] = {
		{ 0, false, "fabric, blocking loops, sleeping waiter" },
		{ 1, false, "fabric, busy-poll loops, sleeping waiter" },
		{ 1, true, "fabric, busy-poll loops, spinning waiter" },
		{ 0, true, "fabric, blocking loops, spinning waiter" },
	};
	for (size_t m = 0; m < sizeof(modes) / sizeof(modes[0]); m++) {
		unsigned bp = modes[m].busy ? busy : 0;
		int k = modes[m].spin || modes[m].busy;
		char name[96];

		if (mesh_up(bp))
			return 1;
		ep[1].spin = modes[m].spin;
		fabric_rtt(T_REQ, n / 10, ns);          /* warm up */
		s = fabric_rtt(T_REQ, n, ns);
		snprintf(name, sizeof(name), "%s, 64 B", modes[m].name);
		row(name, s, raw64[k].median, k ? FLOOR_RTT_SPIN : FLOOR_RTT_BLOCK);
		s = fabric_rtt(T_REQ_PAGE, n, ns);
		snprintf(name, sizeof(name), "%s, page", modes[m].name);
		row(name, s, rawpg[k].median, k ? FLOOR_PAGE_SPIN : FLOOR_PAGE_BLOCK);
		if (m == 0 || m == 1) {
			s = fabric_rtt_in_loop(T_REQ, n, ns);
			snprintf(name, sizeof(name), "fabric, %s loops, in the loop, 64 B",
				 bp ? "busy-poll" : "blocking");
			row(name, s, raw64[k].median, k ? FLOOR_RTT_SPIN : FLOOR_RTT_BLOCK);
			s = fabric_rtt_in_loop(T_REQ_PAGE, n, ns);
			snprintf(name, sizeof(name), "fabric, %s loops, in the loop, page",
				 bp ? "busy-poll" : "blocking");
			row(name, s, rawpg[k].median, k ? FLOOR_PAGE_SPIN : FLOOR_PAGE_BLOCK);
			pps = fabric_pages(npages);
			printf("  %-44s %8.2f M pages/s (%.0f MB/s), x%.2f run, x%.2f FLOORS.md\n",
			       bp ? "one way, busy-poll loops" : "one way, blocking loops", pps / 1e6,
			       pps * 4096 / 1e6, pps / raw_pps, pps / FLOOR_PAGES_PER_S);
		}
		mesh_down();
	}
	free(ns);
	return 0;
}
