// SPDX-License-Identifier: MIT
/*
 * The DSM engine on real userfaultfd: two and three nodes in this process,
 * each with its own mapping, joined by the in-process transport. The
 * test's threads play the vCPUs: they just read and write the mappings.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <cmocka.h>

#include "dsm/dsm.h"
#include "dsm/dsm_fabric.h"
#include "dsm/dsm_loop.h"

#define PG DSM_PAGE_SIZE

struct cluster {
	unsigned nr;
	uint64_t size;
	struct dsm_loop *loop;
	struct dsm_node *n[4];
	uint8_t *mem[4];
	_Atomic unsigned fatal[4];
	unsigned idx[4];
};

static void on_fatal(void *ctx, const char *msg)
{
	_Atomic unsigned *f = ctx;

	(void)msg;
	atomic_fetch_add(f, 1);
}

static unsigned g_timeout_ms = 10000;   /* every test also runs the watchdog */
static unsigned g_hold_us;

static void quiet(void *ctx, const char *msg)
{
	(void)ctx;
	(void)msg;
}

/* nr nodes, `pages` pages split evenly into cells in node order. */
static struct cluster *cluster_new(unsigned nr, uint64_t pages, uint64_t cache, unsigned flags,
				   unsigned spin_us)
{
	struct cluster *c = calloc(1, sizeof(*c));
	struct dsm_range homes[4];
	char err[200];

	assert_non_null(c);
	c->nr = nr;
	c->size = pages * PG;
	for (unsigned i = 0; i < nr; i++)
		homes[i] = (struct dsm_range){ .start = pages * i / nr * PG,
					       .end = pages * (i + 1) / nr * PG, .node = i };
	assert_int_equal(dsm_loop_create(nr, flags, &c->loop), 0);
	for (unsigned i = 0; i < nr; i++) {
		struct dsm_config cfg = {
			.self = i, .nr_nodes = nr, .size = c->size, .homes = homes,
			.nr_homes = nr, .cache_pages = cache, .spin_us = spin_us,
			.request_timeout_ms = g_timeout_ms, .hold_us = g_hold_us,
			.on_fatal = on_fatal, .on_log = quiet, .cb_ctx = &c->fatal[i],
		};
		struct dsm_transport_ops tx = dsm_loop_ops(c->loop, i);

		if (dsm_node_create(&cfg, &tx, &c->n[i], err, sizeof(err)))
			fail_msg("dsm_node_create: %s", err);
		dsm_loop_attach(c->loop, i, c->n[i]);
		c->mem[i] = dsm_node_mem(c->n[i]);
	}
	assert_int_equal(dsm_loop_start(c->loop), 0);
	for (unsigned i = 0; i < nr; i++)
		if (dsm_node_start(c->n[i], err, sizeof(err)))
			fail_msg("dsm_node_start: %s", err);
	return c;
}

static void cluster_free(struct cluster *c)
{
	for (unsigned i = 0; i < c->nr; i++)
		dsm_node_stop(c->n[i]);
	dsm_loop_destroy(c->loop);
	for (unsigned i = 0; i < c->nr; i++)
		dsm_node_destroy(c->n[i]);
	free(c);
}

static struct dsm_stats stats(struct cluster *c, unsigned i)
{
	struct dsm_stats st;

	assert_int_equal(dsm_loop_drain(c->loop, 5000), 0);
	dsm_node_stats(c->n[i], &st);
	return st;
}

static volatile uint64_t *word(struct cluster *c, unsigned node, uint64_t page, unsigned w)
{
	return (volatile uint64_t *)(c->mem[node] + page * PG) + w;
}

static void no_fatal(struct cluster *c)
{
	for (unsigned i = 0; i < c->nr; i++)
		assert_int_equal(atomic_load(&c->fatal[i]), 0);
}

/* ---- sharing ---- */

static void test_read_sharing(void **state)
{
	struct cluster *c = cluster_new(3, 6, 0, 0, 0);   /* pages 0-1 on node 0 ... */
	struct dsm_stats st;

	(void)state;
	*word(c, 0, 0, 5) = 0x1234;                        /* the home writes its page */
	assert_int_equal(*word(c, 1, 0, 5), 0x1234);
	assert_int_equal(*word(c, 2, 0, 5), 0x1234);
	assert_int_equal(*word(c, 0, 0, 5), 0x1234);
	st = stats(c, 1);
	assert_int_equal(st.fault_read_miss, 1);
	assert_int_equal(st.pages_rx, 1);
	st = stats(c, 0);
	assert_int_equal(st.fault_zero_local, 1);
	assert_int_equal(st.msgs_rx_type[DSM_GET_S], 2);
	assert_int_equal(st.pages_tx, 2);
	/* reads again: no traffic */
	assert_int_equal(*word(c, 1, 0, 5), 0x1234);
	assert_int_equal(stats(c, 1).msgs_tx, 1);
	no_fatal(c);
	cluster_free(c);
}

static void test_write_invalidation(void **state)
{
	struct cluster *c = cluster_new(3, 6, 0, 0, 0);
	struct dsm_stats st;

	(void)state;
	*word(c, 0, 1, 0) = 1;
	assert_int_equal(*word(c, 1, 1, 0), 1);
	assert_int_equal(*word(c, 2, 1, 0), 1);
	*word(c, 2, 1, 0) = 2;                             /* S -> M: upgrade, INV to node 1 */
	st = stats(c, 2);
	assert_int_equal(st.fault_upgrade, 1);
	st = stats(c, 1);
	assert_int_equal(st.inv_dropped, 1);
	assert_int_equal(*word(c, 1, 1, 0), 2);
	assert_int_equal(*word(c, 0, 1, 0), 2);
	/* a write miss on a page owned elsewhere: FWD_GET_M */
	*word(c, 1, 1, 0) = 3;
	assert_int_equal(*word(c, 2, 1, 0), 3);
	assert_int_equal(*word(c, 0, 1, 0), 3);
	st = stats(c, 0);
	assert_true(st.msgs_tx_type[DSM_INV] >= 1);
	assert_true(st.msgs_tx_type[DSM_FWD_GET_M] + st.msgs_tx_type[DSM_FWD_GET_S] >= 1);
	no_fatal(c);
	cluster_free(c);
}

static void test_upgrade(void **state)
{
	struct cluster *c = cluster_new(2, 4, 0, 0, 0);
	struct dsm_stats st;

	(void)state;
	*word(c, 1, 3, 0) = 77;                             /* node 1's own page */
	assert_int_equal(*word(c, 0, 3, 0), 77);            /* node 0: S */
	*word(c, 0, 3, 0) = 78;                             /* upgrade */
	st = stats(c, 0);
	assert_int_equal(st.fault_read_miss, 1);
	assert_int_equal(st.fault_upgrade, 1);
	assert_int_equal(st.msgs_rx_type[DSM_UPG_ACK], 1);
	assert_int_equal(st.pages_rx, 1);                   /* the upgrade moved no page */
	assert_int_equal(*word(c, 1, 3, 0), 78);
	/* the home upgrades its own S copy: INV to node 0, no data */
	*word(c, 1, 3, 1) = 5;
	st = stats(c, 1);
	assert_int_equal(st.fault_upgrade, 1);
	assert_int_equal(*word(c, 0, 3, 1), 5);
	no_fatal(c);
	cluster_free(c);
}

/* ---- zero pages ---- */

static void test_zero_local_no_message(void **state)
{
	struct cluster *c = cluster_new(2, 8, 0, 0, 0);
	struct dsm_stats st;

	(void)state;
	assert_int_equal(*word(c, 0, 0, 0), 0);              /* read first touch: zero page */
	*word(c, 0, 0, 1) = 9;                              /* write to it: no fault needed */
	*word(c, 0, 1, 0) = 4;                              /* write first touch */
	assert_int_equal(*word(c, 0, 2, 100), 0);
	st = stats(c, 0);
	assert_int_equal(st.fault_zero_local, 3);
	assert_int_equal(st.msgs_tx, 0);
	assert_int_equal(dsm_loop_sent(c->loop, 0), 0);
	assert_int_equal(st.fault_read_miss + st.fault_write_miss + st.fault_upgrade, 0);
	/* a remote read of a never-written page: DATA_ZERO, no payload */
	assert_int_equal(*word(c, 1, 3, 0), 0);
	st = stats(c, 1);
	assert_int_equal(st.fault_zero_remote, 1);
	assert_int_equal(st.pages_rx, 0);
	assert_int_equal(st.msgs_rx_type[DSM_DATA_ZERO], 1);
	/* ...and the home can still write it: INV to node 1 */
	*word(c, 0, 3, 0) = 1;
	assert_int_equal(*word(c, 1, 3, 0), 1);
	/* a page written with zeros travels as DATA_ZERO too */
	*word(c, 0, 1, 0) = 0;
	assert_int_equal(*word(c, 1, 1, 0), 0);
	assert_int_equal(stats(c, 1).pages_rx, 1);          /* only page 3 carried data */
	no_fatal(c);
	cluster_free(c);
}

/* ---- ping-pong: two nodes' threads take turns on one page ---- */

struct pp {
	struct cluster *c;
	unsigned node, parity, rounds;
	uint64_t page;
	bool bad;
};

static void *pingpong_main(void *arg)
{
	struct pp *p = arg;
	volatile uint64_t *turn = word(p->c, p->node, p->page, 0);
	volatile uint64_t *mine = word(p->c, p->node, p->page, 1 + p->node);

	for (unsigned i = 0; i < p->rounds; i++) {
		uint64_t t;

		while (((t = __atomic_load_n(turn, __ATOMIC_ACQUIRE)) & 1) != p->parity)
			;
		if (*mine != i) {
			p->bad = true;
			break;
		}
		*mine = i + 1;
		__atomic_store_n(turn, t + 1, __ATOMIC_RELEASE);
	}
	return NULL;
}

static void test_pingpong(void **state)
{
	struct cluster *c = cluster_new(2, 4, 0, 0, 20);
	struct pp a = { c, 0, 0, 300, 3, false }, b = { c, 1, 1, 300, 3, false };
	pthread_t ta, tb;

	(void)state;
	pthread_create(&ta, NULL, pingpong_main, &a);
	pthread_create(&tb, NULL, pingpong_main, &b);
	pthread_join(ta, NULL);
	pthread_join(tb, NULL);
	assert_false(a.bad);
	assert_false(b.bad);
	assert_int_equal(*word(c, 0, 3, 0), 600);
	assert_int_equal(*word(c, 0, 3, 1), 300);
	assert_int_equal(*word(c, 1, 3, 2), 300);
	assert_true(stats(c, 1).top[0].offset == 3 * PG);
	assert_true(stats(c, 0).top[0].count >= 100);
	no_fatal(c);
	cluster_free(c);
}

/* ---- prefetch: many requests in flight, then no fault ---- */

static void test_prefetch_access(void **state)
{
	struct cluster *c = cluster_new(2, 64, 0, 0, 0);
	struct dsm_stats st;

	(void)state;
	for (uint64_t p = 0; p < 32; p++)
		*word(c, 0, p, 0) = p + 1;
	assert_int_equal(dsm_prefetch(c->n[1], 0, 16 * PG, false), 16);
	assert_int_equal(dsm_prefetch(c->n[1], 0, 16 * PG, false), 0);   /* in flight or here */
	assert_int_equal(dsm_access(c->n[1], 0, 16 * PG, false), 0);
	assert_int_equal(dsm_access(c->n[1], 16 * PG + 5, 16 * PG - 5, true), 0);
	st = stats(c, 1);
	assert_int_equal(st.fault_read_miss, 16);
	assert_int_equal(st.fault_write_miss, 16);
	for (uint64_t p = 0; p < 32; p++)
		assert_int_equal(*word(c, 1, p, 0), p + 1);
	/* everything was valid already: no more requests */
	assert_int_equal(stats(c, 1).msgs_tx, st.msgs_tx);
	assert_int_equal(dsm_prefetch(c->n[1], 0, 65 * PG, false), -EINVAL);
	no_fatal(c);
	cluster_free(c);
}

/* The same with every fresh grant held 200 us: deferred work on the handler's timer. */
static void test_pingpong_hold(void **state)
{
	struct cluster *c;
	struct pp a, b;
	pthread_t ta, tb;

	(void)state;
	g_hold_us = 200;
	c = cluster_new(2, 4, 0, 0, 0);
	g_hold_us = 0;
	a = (struct pp){ c, 0, 0, 200, 2, false };
	b = (struct pp){ c, 1, 1, 200, 2, false };
	pthread_create(&ta, NULL, pingpong_main, &a);
	pthread_create(&tb, NULL, pingpong_main, &b);
	pthread_join(ta, NULL);
	pthread_join(tb, NULL);
	assert_false(a.bad);
	assert_false(b.bad);
	assert_int_equal(*word(c, 1, 2, 0), 400);
	assert_true(stats(c, 0).held_back + stats(c, 1).held_back > 0);
	no_fatal(c);
	cluster_free(c);
}

/* ---- the memory bound ---- */

static void test_eviction_writeback(void **state)
{
	struct cluster *c = cluster_new(2, 128, 4, 0, 0);  /* node 0 homes 0-63 */
	struct dsm_stats st, st0;

	(void)state;
	for (uint64_t p = 0; p < 48; p++)
		*word(c, 1, p, 7) = 1000 + p;               /* M pages, evicted with PUT_M */
	st = stats(c, 1);
	assert_true(st.evict_m >= 40);
	assert_true(st.cache_max <= 5);
	/*
	 * The write stream's read-ahead may still be evicting (PUT_M) for the
	 * page after the last: let its PUT_ACKs come back before counting.
	 */
	for (unsigned i = 0; i < 2000 && stats(c, 1).in_flight; i++)
		usleep(1000);
	assert_int_equal(stats(c, 1).in_flight, 0);
	/* written-back pages are the home's again: it writes them without a message */
	st0 = stats(c, 0);
	for (uint64_t p = 0; p < 40; p++)
		*word(c, 0, p, 8) = p;
	st = stats(c, 0);
	assert_int_equal(st.msgs_tx, st0.msgs_tx);
	assert_int_equal(st.fault_local, 40);
	for (uint64_t p = 0; p < 48; p++)
		assert_int_equal(*word(c, 0, p, 7), 1000 + p);
	for (uint64_t p = 0; p < 48; p++)
		assert_int_equal(*word(c, 1, p, 7), 1000 + p); /* S pages, evicted silently */
	st = stats(c, 1);
	assert_true(st.evict_s >= 40);
	assert_true(st.cache_max <= 5);
	assert_true(st.cache_held <= 4);
	no_fatal(c);
	cluster_free(c);
}

/* A PUT_M of a page that was never written: the home forgets it (zero again). */
static void test_evict_zero(void **state)
{
	struct cluster *c = cluster_new(2, 64, 2, 0, 0);
	struct dsm_stats st;

	(void)state;
	for (uint64_t p = 0; p < 16; p++)
		*word(c, 1, p, 0) = 0;
	st = stats(c, 1);
	assert_true(st.evict_m >= 14);
	assert_int_equal(st.pages_tx, 0);
	assert_int_equal(stats(c, 0).fault_zero_local, 0);
	for (uint64_t p = 0; p < 14; p++)
		assert_int_equal(*word(c, 0, p, 0), 0);
	assert_true(stats(c, 0).fault_zero_local >= 12);
	no_fatal(c);
	cluster_free(c);
}

/* ---- many faults at once ---- */

struct worker {
	struct cluster *c;
	unsigned node, id, nthreads;
	uint64_t pages;
	bool bad;
};

static void *many_main(void *arg)
{
	struct worker *w = arg;

	/* each thread writes its own word of every page, then reads them all */
	for (uint64_t p = w->id; p < w->pages + w->id; p++)
		*word(w->c, w->node, p % w->pages, 8 * w->node + w->id) = (p % w->pages) * 100 + w->id;
	return NULL;
}

static void test_concurrent_faults(void **state)
{
	struct cluster *c = cluster_new(3, 300, 0, DSM_LOOP_SHUFFLE, 0);
	struct worker w[3][4];
	pthread_t t[3][4];

	(void)state;
	for (unsigned n = 0; n < 3; n++)
		for (unsigned i = 0; i < 4; i++) {
			w[n][i] = (struct worker){ c, n, i, 4, 300, false };
			pthread_create(&t[n][i], NULL, many_main, &w[n][i]);
		}
	for (unsigned n = 0; n < 3; n++)
		for (unsigned i = 0; i < 4; i++)
			pthread_join(t[n][i], NULL);
	for (uint64_t p = 0; p < 300; p++)
		for (unsigned n = 0; n < 3; n++)
			for (unsigned i = 0; i < 4; i++)
				assert_int_equal(*word(c, (unsigned)p % 3, p, 8 * n + i), p * 100 + i);
	no_fatal(c);
	cluster_free(c);
}

/* ---- atomics across nodes ---- */

struct adder {
	struct cluster *c;
	unsigned node, iters;
};

static void *adder_main(void *arg)
{
	struct adder *a = arg;
	volatile uint64_t *ctr = word(a->c, a->node, 5, 0);
	volatile uint64_t *own = word(a->c, a->node, 6, a->node);

	for (unsigned i = 0; i < a->iters; i++) {
		__atomic_fetch_add(ctr, 1, __ATOMIC_SEQ_CST);
		(*own)++;                                   /* false sharing */
	}
	return NULL;
}

static void test_atomics(void **state)
{
	struct cluster *c = cluster_new(3, 9, 0, DSM_LOOP_SHUFFLE, 10);
	struct adder a[3][2];
	pthread_t t[3][2];

	(void)state;
	for (unsigned n = 0; n < 3; n++)
		for (unsigned i = 0; i < 2; i++) {
			a[n][i] = (struct adder){ c, n, 300 };
			pthread_create(&t[n][i], NULL, adder_main, &a[n][i]);
		}
	for (unsigned n = 0; n < 3; n++)
		for (unsigned i = 0; i < 2; i++)
			pthread_join(t[n][i], NULL);
	assert_int_equal(*word(c, 1, 5, 0), 1800);
	no_fatal(c);
	cluster_free(c);
}

/* ---- failure ---- */

static void test_peer_down(void **state)
{
	struct cluster *c = cluster_new(2, 8, 0, 0, 0);

	(void)state;
	*word(c, 1, 0, 0) = 5;                              /* node 1 holds page 0 in M */
	*word(c, 0, 5, 0) = 6;                              /* node 0 holds page 5 in M */
	assert_int_equal(*word(c, 0, 4, 0), 0);             /* node 0 holds page 4 in S */
	dsm_loop_kill(c->loop, 1);
	assert_int_equal(atomic_load(&c->fatal[0]), 1);
	assert_true(dsm_node_failed(c->n[0]));
	/* nothing blocks any more: absent pages read zero, S pages take writes */
	assert_int_equal(*word(c, 0, 0, 0), 0);
	assert_int_equal(*word(c, 0, 6, 0), 0);
	*word(c, 0, 4, 0) = 1;
	assert_int_equal(*word(c, 0, 5, 0), 6);
	assert_int_equal(dsm_access(c->n[0], 0, PG, true), -EIO);
	assert_int_equal(atomic_load(&c->fatal[0]), 1);
	cluster_free(c);
}

/* The fabric's glue: a peer whose DSM message does not decode fails the node. */
static void test_fabric_malformed(void **state)
{
	static const uint8_t junk[3] = { 0xff, 0xff, 0xff };
	struct cluster *c = cluster_new(2, 8, 0, 0, 0);

	(void)state;
	assert_int_equal(dsm_fabric_receive(c->n[0], 1, junk, sizeof(junk)), -EINVAL);
	assert_true(dsm_node_failed(c->n[0]));
	assert_int_equal(atomic_load(&c->fatal[0]), 1);
	assert_int_equal(atomic_load(&c->fatal[1]), 0);
	cluster_free(c);
}

/* A fault blocked when the peer dies is released. */
struct blocked {
	struct cluster *c;
	_Atomic bool done;
};

static void *blocked_main(void *arg)
{
	struct blocked *b = arg;

	(void)*word(b->c, 0, 7, 0);
	atomic_store(&b->done, true);
	return NULL;
}

static void test_blocked_fault_released(void **state)
{
	struct cluster *c = cluster_new(2, 8, 0, 0, 0);
	struct blocked b = { c, false };
	pthread_t t;

	(void)state;
	dsm_node_stop(c->n[1]);                 /* node 1 hangs: it ignores everything */
	pthread_create(&t, NULL, blocked_main, &b);
	usleep(50000);
	assert_false(atomic_load(&b.done));
	dsm_peer_down(c->n[0], 1, "test");
	pthread_join(t, NULL);
	assert_true(atomic_load(&b.done));
	assert_int_equal(atomic_load(&c->fatal[0]), 1);
	cluster_free(c);
}

/* A request nobody answers times out. */
static void test_timeout(void **state)
{
	struct cluster *c;

	(void)state;
	g_timeout_ms = 200;
	c = cluster_new(2, 8, 0, 0, 0);
	g_timeout_ms = 10000;
	dsm_node_stop(c->n[1]);
	assert_int_equal(*word(c, 0, 5, 0), 0);    /* blocks ~200 ms, then released */
	assert_int_equal(atomic_load(&c->fatal[0]), 1);
	cluster_free(c);
}

/* ---- configuration ---- */

static int dummy_send(void *ctx, unsigned dst, const struct dsm_msg *msg, const void *page)
{
	return 0;
}

static void test_bad_config(void **state)
{
	struct dsm_range homes[2] = { { 0, 4 * PG, 0 }, { 4 * PG, 8 * PG, 1 } };
	struct dsm_config cfg = { .self = 0, .nr_nodes = 2, .size = 8 * PG, .homes = homes,
				  .nr_homes = 2 };
	struct dsm_transport_ops tx = { .send = NULL };
	struct dsm_node *n;
	char err[200];

	(void)state;
	assert_int_equal(dsm_node_create(&cfg, &tx, &n, err, sizeof(err)), -1);
	assert_string_equal(err, "no transport");
	tx.send = dummy_send;
	homes[1].start = 5 * PG;
	assert_int_equal(dsm_node_create(&cfg, &tx, &n, err, sizeof(err)), -1);
	assert_string_equal(err, "home ranges overlap or leave a hole");
	homes[1].start = 4 * PG;
	homes[1].node = 2;
	assert_int_equal(dsm_node_create(&cfg, &tx, &n, err, sizeof(err)), -1);
	homes[1].node = 1;
	cfg.size = 9 * PG;
	assert_int_equal(dsm_node_create(&cfg, &tx, &n, err, sizeof(err)), -1);
	cfg.size = 8 * PG + 1;
	assert_int_equal(dsm_node_create(&cfg, &tx, &n, err, sizeof(err)), -1);
	cfg.size = 8 * PG;
	cfg.self = 2;
	assert_int_equal(dsm_node_create(&cfg, &tx, &n, err, sizeof(err)), -1);
	cfg.self = 1;
	assert_int_equal(dsm_node_create(&cfg, &tx, &n, err, sizeof(err)), 0);
	assert_int_equal(dsm_home_of(n, 4 * PG), 1);
	assert_int_equal(dsm_home_of(n, 4 * PG - 1), 0);
	dsm_node_destroy(n);
}

/* A mapping with pages already written: the home keeps its own, others are dropped. */
static void test_adopt_existing(void **state)
{
	struct cluster *c = cluster_new(2, 8, 0, 0, 0);
	struct dsm_range homes[2] = { { 0, 4 * PG, 0 }, { 4 * PG, 8 * PG, 1 } };
	uint8_t *mem = mmap(NULL, 8 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct dsm_config cfg = { .self = 0, .nr_nodes = 2, .size = 8 * PG, .homes = homes,
				  .nr_homes = 2, .mem = mem, .on_log = quiet };
	struct dsm_transport_ops tx = dsm_loop_ops(c->loop, 0);
	struct dsm_node *n;
	struct dsm_stats st;
	char err[200];

	(void)state;
	assert_true(mem != MAP_FAILED);
	mem[PG] = 42;          /* own cell */
	mem[6 * PG] = 43;      /* node 1's cell: discarded */
	assert_int_equal(dsm_node_create(&cfg, &tx, &n, err, sizeof(err)), 0);
	assert_int_equal(dsm_node_start(n, err, sizeof(err)), 0);
	mem[PG + 1] = 1;
	assert_int_equal(mem[PG], 42);
	dsm_node_stats(n, &st);
	assert_int_equal(st.fault_zero_local + st.fault_local + st.msgs_tx, 0);
	dsm_node_destroy(n);
	assert_int_equal(mem[6 * PG], 0);
	munmap(mem, 8 * PG);
	cluster_free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_read_sharing),
		cmocka_unit_test(test_write_invalidation),
		cmocka_unit_test(test_upgrade),
		cmocka_unit_test(test_zero_local_no_message),
		cmocka_unit_test(test_pingpong),
		cmocka_unit_test(test_pingpong_hold),
		cmocka_unit_test(test_prefetch_access),
		cmocka_unit_test(test_eviction_writeback),
		cmocka_unit_test(test_evict_zero),
		cmocka_unit_test(test_concurrent_faults),
		cmocka_unit_test(test_atomics),
		cmocka_unit_test(test_peer_down),
		cmocka_unit_test(test_fabric_malformed),
		cmocka_unit_test(test_blocked_fault_released),
		cmocka_unit_test(test_timeout),
		cmocka_unit_test(test_bad_config),
		cmocka_unit_test(test_adopt_existing),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
