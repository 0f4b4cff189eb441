// SPDX-License-Identifier: MIT
/*
 * The protocol's transitions, step by step, without userfaultfd or
 * threads: three nodes with fake page operations (that check every call
 * is legal: install on an absent page, read a present one...) and a
 * transport whose messages the test delivers one at a time, pair by
 * pair, to force each race of dsm/model/dsm.pml in a chosen order.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "dsm/dsm.h"

#define PG DSM_PAGE_SIZE
#define NN 3
#define NP 4          /* pages 0-1 homed on node 0, 2 on node 1, 3 on node 2 */
#define QMAX 64

struct fpage {
	bool present, wp;
	uint8_t data[PG];
};

struct fnode {
	struct dsm_node *n;
	struct fpage pg[NP];
	unsigned wakes[NP];
	unsigned fatal;
	char why[256];
};

struct fmsg {
	struct dsm_msg msg;
	bool has;
	uint8_t page[PG];
};

struct world {
	struct fnode node[NN];
	struct fmsg q[NN][NN][QMAX];          /* [src][dst] FIFO */
	unsigned qh[NN][NN], qt[NN][NN];
	unsigned ctx[NN];
};

static struct world *W;

static struct fpage *fp(void *ctx, uint64_t p)
{
	assert_true(p < NP);
	return &W->node[*(unsigned *)ctx].pg[p];
}

static int f_install(void *ctx, uint64_t p, const void *data, unsigned flags)
{
	struct fpage *f = fp(ctx, p);

	assert_false(f->present);
	f->present = true;
	f->wp = flags & DSM_INSTALL_WP;
	if (data)
		memcpy(f->data, data, PG);
	else
		memset(f->data, 0, PG);
	return 0;
}

static int f_protect(void *ctx, uint64_t p, bool wp)
{
	struct fpage *f = fp(ctx, p);

	assert_true(f->present);
	f->wp = wp;
	return 0;
}

static int f_drop(void *ctx, uint64_t p)
{
	struct fpage *f = fp(ctx, p);

	assert_true(f->present);
	assert_true(f->wp);              /* write-protected before it goes */
	f->present = false;
	memset(f->data, 0xee, PG);
	return 0;
}

static int f_read(void *ctx, uint64_t p, void *buf)
{
	struct fpage *f = fp(ctx, p);

	assert_true(f->present);
	memcpy(buf, f->data, PG);
	return 0;
}

static void f_wake(void *ctx, uint64_t p)
{
	W->node[*(unsigned *)ctx].wakes[p]++;
}

static int f_send(void *ctx, unsigned dst, const struct dsm_msg *msg, const void *page)
{
	unsigned src = *(unsigned *)ctx;
	struct fmsg *m;

	assert_true(dst < NN && dst != src);
	assert_true(W->qt[src][dst] - W->qh[src][dst] < QMAX);
	m = &W->q[src][dst][W->qt[src][dst]++ % QMAX];
	m->msg = *msg;
	m->has = page != NULL;
	if (page)
		memcpy(m->page, page, PG);
	return 0;
}

static void f_fatal(void *ctx, const char *msg)
{
	struct fnode *f = &W->node[*(unsigned *)ctx];

	f->fatal++;
	snprintf(f->why, sizeof(f->why), "%s", msg);
}

static void f_log(void *ctx, const char *msg)
{
	(void)ctx;
	(void)msg;
}

static const struct dsm_mem_ops mem_ops = { f_install, f_protect, f_drop, f_read, f_wake, NULL };

static unsigned g_hold_us, g_hold_max_us, g_turn_us;
static bool g_fake_clock;
static uint64_t g_now = 1000000000;       /* the fake clock, ns */

static uint64_t fake_clock(void *ctx)
{
	(void)ctx;
	return g_now;
}

static int setup(void **state)
{
	struct dsm_range homes[3] = { { 0, 2 * PG, 0 }, { 2 * PG, 3 * PG, 1 }, { 3 * PG, 4 * PG, 2 } };
	char err[200];

	(void)state;
	W = calloc(1, sizeof(*W));
	for (unsigned i = 0; i < NN; i++) {
		struct dsm_mem_ops ops = mem_ops;
		struct dsm_transport_ops tx = { .send = f_send, .ctx = &W->ctx[i] };
		struct dsm_config cfg = {
			.self = i, .nr_nodes = NN, .size = NP * PG, .homes = homes, .nr_homes = 3,
			.cache_pages = i == 1 ? 1 : 0, .on_fatal = f_fatal, .on_log = f_log,
			.cb_ctx = &W->ctx[i], .mem_ops = &ops, .hold_us = g_hold_us,
			.hold_max_us = g_hold_max_us, .hold_factor = 2, .turn_us = g_turn_us,
			.clock_ns = g_fake_clock ? fake_clock : NULL,
		};

		W->ctx[i] = i;
		ops.ctx = &W->ctx[i];
		if (dsm_node_create(&cfg, &tx, &W->node[i].n, err, sizeof(err)) ||
		    dsm_node_start(W->node[i].n, err, sizeof(err)))
			fail_msg("%s", err);
	}
	return 0;
}

static int setup_hold(void **state)
{
	g_hold_us = 20000;
	setup(state);
	g_hold_us = 0;
	return 0;
}

/* Holds of 1 ms, bursts of at most 3 ms, on a clock the test moves. */
static int setup_burst(void **state)
{
	g_hold_us = 1000;
	g_hold_max_us = 3000;
	g_fake_clock = true;
	g_now = 1000000000;
	setup(state);
	g_hold_us = g_hold_max_us = 0;
	g_fake_clock = false;
	return 0;
}

/*
 * The same, with turns of 10 ms. The clock starts at 1.01 s, where turn
 * 101 begins: node 2's (101 mod 3); node 0's turn follows at 1.02 s.
 */
static int setup_turns(void **state)
{
	g_turn_us = 10000;
	setup_burst(state);
	g_now = 1010000000;
	g_turn_us = 0;
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	for (unsigned i = 0; i < NN; i++)
		dsm_node_destroy(W->node[i].n);
	free(W);
	return 0;
}

static unsigned queued(unsigned src, unsigned dst)
{
	return W->qt[src][dst] - W->qh[src][dst];
}

/* The type of the next message from src to dst (0: none). */
static unsigned peek(unsigned src, unsigned dst)
{
	return queued(src, dst) ? W->q[src][dst][W->qh[src][dst] % QMAX].msg.type : 0;
}

/* Delivers the next message src -> dst, which must be of this type. */
static void deliver(unsigned src, unsigned dst, unsigned type)
{
	struct fmsg *m;

	assert_true(queued(src, dst) > 0);
	m = &W->q[src][dst][W->qh[src][dst]++ % QMAX];
	if (m->msg.type != type)
		fail_msg("%u->%u: expected %s, got %s", src, dst, dsm_msg_type_name(type),
			 dsm_msg_type_name(m->msg.type));
	dsm_receive(W->node[dst].n, src, &m->msg, m->has ? m->page : NULL);
}

/* Delivers everything, in any order that keeps each pair FIFO. */
static void settle(void)
{
	bool any;

	do {
		any = false;
		for (unsigned s = 0; s < NN; s++)
			for (unsigned d = 0; d < NN; d++)
				if (queued(s, d)) {
					deliver(s, d, peek(s, d));
					any = true;
				}
	} while (any);
}

static int fault(unsigned node, uint64_t page, bool write)
{
	return dsm_fault(W->node[node].n, page * PG, write);
}

/* What a CPU would see: a write needs the page present and writable. */
static void cpu_write(unsigned node, uint64_t page, uint8_t v)
{
	struct fpage *f = &W->node[node].pg[page];

	assert_true(f->present && !f->wp);
	memset(f->data, v, PG);
}

static uint8_t cpu_read(unsigned node, uint64_t page)
{
	struct fpage *f = &W->node[node].pg[page];

	assert_true(f->present);
	return f->data[100];
}

static void write_settled(unsigned node, uint64_t page, uint8_t v)
{
	struct fpage *f = &W->node[node].pg[page];

	if (!f->present || f->wp) {
		fault(node, page, true);
		settle();
	}
	cpu_write(node, page, v);
}

static uint8_t read_settled(unsigned node, uint64_t page)
{
	if (!W->node[node].pg[page].present) {
		fault(node, page, false);
		settle();
	}
	return cpu_read(node, page);
}

static struct dsm_stats st(unsigned node)
{
	struct dsm_stats s;

	dsm_node_stats(W->node[node].n, &s);
	return s;
}

static void no_fatal(void)
{
	for (unsigned i = 0; i < NN; i++)
		if (W->node[i].fatal)
			fail_msg("node %u failed: %s", i, W->node[i].why);
}

/* ---- plain transitions ---- */

static void test_zero_grants(void **state)
{
	(void)state;
	/* the home reads an untouched page: the zero page, M, no message */
	assert_int_equal(fault(0, 0, false), 0);
	assert_true(W->node[0].pg[0].present && !W->node[0].pg[0].wp);
	assert_int_equal(queued(0, 1) + queued(0, 2), 0);
	assert_int_equal(st(0).fault_zero_local, 1);
	/* a remote read of an untouched page: DATA_ZERO, installed write-protected */
	assert_int_equal(fault(2, 1, false), 1);
	deliver(2, 0, DSM_GET_S);
	deliver(0, 2, DSM_DATA_ZERO);
	assert_true(W->node[2].pg[1].present && W->node[2].pg[1].wp);
	assert_int_equal(st(2).fault_zero_remote, 1);
	/* the home then reads it: zero, S (node 2 shares it), still no message */
	assert_int_equal(fault(0, 1, false), 0);
	assert_true(W->node[0].pg[1].present && W->node[0].pg[1].wp);
	assert_int_equal(queued(0, 2), 0);
	/* a spurious fault: woken, nothing sent */
	assert_int_equal(fault(0, 1, false), 0);
	assert_int_equal(W->node[0].wakes[1], 1);
	no_fatal();
}

static void test_read_then_write_miss(void **state)
{
	(void)state;
	write_settled(0, 0, 7);                     /* the home writes its page */
	assert_int_equal(read_settled(1, 0), 7);    /* home M -> S, DATA to node 1 */
	assert_true(W->node[0].pg[0].wp);
	write_settled(2, 0, 9);                     /* GET_M: INV to node 1, home drops */
	assert_false(W->node[0].pg[0].present);
	assert_false(W->node[1].pg[0].present);
	assert_int_equal(read_settled(0, 0), 9);    /* FWD_GET_S to node 2, home keeps a copy */
	assert_true(W->node[2].pg[0].wp);
	assert_int_equal(read_settled(1, 0), 9);    /* served by the home */
	assert_int_equal(st(0).msgs_tx_type[DSM_FWD_GET_S], 1);
	no_fatal();
}

/* ---- races ---- */

/* An INV overtakes node 1's UPGRADE: the home must treat it as a GET_M (model cover 4, 6). */
static void test_inv_crosses_upgrade(void **state)
{
	(void)state;
	write_settled(0, 0, 1);
	assert_int_equal(read_settled(1, 0), 1);
	assert_int_equal(read_settled(2, 0), 1);
	assert_int_equal(fault(1, 0, true), 1);     /* UPGRADE 1->0 */
	assert_int_equal(fault(2, 0, true), 1);     /* UPGRADE 2->0 */
	deliver(2, 0, DSM_UPGRADE);                 /* first: INV to node 1 */
	deliver(0, 1, DSM_INV);                     /* node 1 in SM_A: drops, IM_D */
	assert_false(W->node[1].pg[0].present);
	deliver(1, 0, DSM_UPGRADE);                 /* busy: queued */
	deliver(1, 0, DSM_INV_ACK);                 /* grant node 2; then node 1's turn */
	deliver(0, 2, DSM_UPG_ACK);
	cpu_write(2, 0, 2);
	deliver(0, 2, DSM_FWD_GET_M);               /* node 1's UPGRADE became GET_M */
	deliver(2, 0, DSM_FWD_DATA);
	deliver(0, 1, DSM_DATA);
	assert_int_equal(cpu_read(1, 0), 2);
	cpu_write(1, 0, 3);
	assert_false(W->node[2].pg[0].present);
	assert_int_equal(st(0).queued, 1);
	no_fatal();
}

/* A FWD_GET_S crosses node 1's PUT_M: answered from the eviction copy (cover 3, 7). */
static void test_fwd_crosses_putm(void **state)
{
	(void)state;
	write_settled(1, 0, 5);                     /* node 1 (cache 1 page) owns page 0 */
	assert_int_equal(fault(2, 0, false), 1);
	deliver(2, 0, DSM_GET_S);                   /* FWD_GET_S 0->1 */
	assert_int_equal(fault(1, 1, false), 1);    /* room needed: evicts page 0, PUT_M */
	assert_false(W->node[1].pg[0].present);
	assert_int_equal(peek(1, 0), DSM_PUT_M);
	deliver(0, 1, DSM_FWD_GET_S);               /* MI_A: FWD_DATA from the copy */
	deliver(1, 0, DSM_PUT_M);                   /* busy: queued */
	deliver(1, 0, DSM_GET_S);                   /* page 1: served at once */
	deliver(1, 0, DSM_FWD_DATA);                /* DATA to node 2; then the stale PUT_M */
	deliver(0, 2, DSM_DATA);
	assert_int_equal(cpu_read(2, 0), 5);
	assert_int_equal(cpu_read(0, 0), 5);        /* the home kept a copy */
	deliver(0, 1, DSM_DATA_ZERO);               /* page 1 */
	deliver(0, 1, DSM_PUT_ACK);
	assert_int_equal(W->node[1].wakes[0], 1);   /* faults during MI_A retry */
	assert_int_equal(st(1).evict_m, 1);
	/* the home counted node 1 as a sharer: a superset, INV is harmless */
	write_settled(0, 0, 6);
	assert_int_equal(read_settled(2, 0), 6);
	no_fatal();
}

/* A FWD_GET_M crosses a PUT_M (cover 8). */
static void test_fwd_m_crosses_putm(void **state)
{
	(void)state;
	write_settled(1, 0, 5);
	assert_int_equal(fault(2, 0, true), 1);
	deliver(2, 0, DSM_GET_M);                   /* FWD_GET_M 0->1 */
	assert_int_equal(fault(1, 1, false), 1);    /* evicts page 0 */
	deliver(0, 1, DSM_FWD_GET_M);
	settle();
	assert_int_equal(cpu_read(2, 0), 5);
	cpu_write(2, 0, 6);
	assert_false(W->node[0].pg[0].present);
	assert_int_equal(read_settled(1, 0), 6);
	no_fatal();
}

/* Requests queue behind a busy entry and are served in order (cover 5, 9). */
static void test_queue_order(void **state)
{
	(void)state;
	write_settled(2, 0, 1);                     /* node 2 owns page 0 */
	assert_int_equal(fault(1, 0, false), 1);
	deliver(1, 0, DSM_GET_S);                   /* FWD_GET_S to node 2: busy */
	assert_int_equal(fault(0, 0, true), 1);     /* the home's own write: queued */
	assert_int_equal(fault(0, 0, true), 1);     /* joins it */
	assert_int_equal(st(0).fault_joined, 1);
	deliver(0, 2, DSM_FWD_GET_S);
	deliver(2, 0, DSM_FWD_DATA);                /* DATA to node 1, then the home upgrades */
	deliver(0, 1, DSM_DATA);
	deliver(0, 1, DSM_INV);
	deliver(0, 2, DSM_INV);
	deliver(1, 0, DSM_INV_ACK);
	assert_true(W->node[0].pg[0].wp);           /* still waiting for node 2 */
	deliver(2, 0, DSM_INV_ACK);
	assert_false(W->node[0].pg[0].wp);
	cpu_write(0, 0, 2);
	assert_int_equal(st(0).queued, 1);
	no_fatal();
}

/* An M page never written goes back as a zero PUT_M: the home forgets it (cover 2). */
static void test_zero_putm(void **state)
{
	(void)state;
	assert_int_equal(fault(1, 0, true), 1);
	settle();
	assert_int_equal(fault(1, 1, false), 1);    /* evicts page 0: all zero */
	assert_int_equal(peek(1, 0), DSM_PUT_M);
	assert_false(W->q[1][0][W->qh[1][0] % QMAX].has);
	settle();
	assert_false(W->node[0].pg[0].present);
	assert_int_equal(fault(0, 0, false), 0);    /* zero again, locally */
	assert_int_equal(st(0).fault_zero_local, 1);
	no_fatal();
}

/* The home upgrades its S copy while others share it (cover 1). */
static void test_home_upgrade(void **state)
{
	(void)state;
	write_settled(0, 0, 1);
	assert_int_equal(read_settled(1, 0), 1);
	assert_int_equal(fault(0, 0, true), 1);
	deliver(0, 1, DSM_INV);
	deliver(1, 0, DSM_INV_ACK);
	cpu_write(0, 0, 2);
	assert_int_equal(st(0).fault_upgrade, 1);
	/* no other sharer: a local upgrade, no message */
	assert_int_equal(read_settled(1, 0), 2);
	fault(1, 1, false);                         /* node 1 evicts page 0 silently */
	settle();
	write_settled(0, 0, 3);                     /* INV to node 1 anyway: a superset */
	assert_int_equal(st(1).inv_dropped, 1);
	no_fatal();
}

/* ---- hold_us: a fresh grant is used before it goes ---- */

static void test_hold_client(void **state)
{
	(void)state;
	write_settled(1, 0, 5);                     /* node 1: M, just granted */
	assert_int_equal(fault(2, 0, true), 1);
	deliver(2, 0, DSM_GET_M);
	deliver(0, 1, DSM_FWD_GET_M);               /* held back, nothing answered */
	assert_int_equal(queued(1, 0), 0);
	assert_true(W->node[1].pg[0].present);
	cpu_write(1, 0, 6);                         /* the faulting thread gets its turn */
	assert_true(dsm_node_tick(W->node[1].n) > 0);
	assert_int_equal(queued(1, 0), 0);
	usleep(30000);
	assert_true(dsm_node_tick(W->node[1].n) == UINT64_MAX);
	deliver(1, 0, DSM_FWD_DATA);
	deliver(0, 2, DSM_DATA);
	assert_int_equal(cpu_read(2, 0), 6);
	assert_false(W->node[1].pg[0].present);
	assert_int_equal(st(1).held_back, 1);
	no_fatal();
}

static void test_hold_home(void **state)
{
	(void)state;
	write_settled(0, 0, 7);                     /* the home: M, just granted */
	assert_int_equal(fault(1, 0, false), 1);
	deliver(1, 0, DSM_GET_S);                   /* held: queued first */
	assert_int_equal(fault(2, 0, true), 1);
	deliver(2, 0, DSM_GET_M);                   /* behind it */
	assert_int_equal(queued(0, 1) + queued(0, 2), 0);
	cpu_write(0, 0, 8);
	usleep(30000);
	dsm_node_tick(W->node[0].n);
	deliver(0, 1, DSM_DATA);                    /* GET_S, then GET_M invalidates node 1 */
	assert_int_equal(cpu_read(1, 0), 8);
	deliver(0, 1, DSM_INV);                     /* node 1's copy is fresh too: held */
	assert_int_equal(queued(1, 0), 0);
	usleep(30000);
	dsm_node_tick(W->node[1].n);
	deliver(1, 0, DSM_INV_ACK);
	deliver(0, 2, DSM_DATA);
	assert_int_equal(cpu_read(2, 0), 8);
	no_fatal();
}

/* ---- bursts: pages that came from other nodes are held together ---- */

#define MS 1000000ULL

/* Node 2 writes page 1, then page 0, 0.8 ms apart: one burst. */
static void burst_on_node2(void)
{
	assert_int_equal(fault(2, 1, true), 1);
	deliver(2, 0, DSM_GET_M);
	deliver(0, 2, DSM_DATA_ZERO);
	cpu_write(2, 1, 7);
	g_now += MS * 8 / 10;
	assert_int_equal(fault(2, 0, true), 1);
	deliver(2, 0, DSM_GET_M);
	deliver(0, 2, DSM_DATA_ZERO);
	cpu_write(2, 0, 8);
	assert_int_equal(st(2).bursts, 1);
}

/* Node 2's burst (from t0), then at 1.5 ms node 1 asks for page 1: held back at node 2. */
static void node1_asks_during_burst(uint64_t t0)
{
	burst_on_node2();
	g_now = t0 + MS * 15 / 10;
	assert_int_equal(fault(1, 1, true), 1);
	deliver(1, 0, DSM_GET_M);
	deliver(0, 2, DSM_FWD_GET_M);
	assert_int_equal(queued(2, 0), 0);
}

static void test_burst_holds_together(void **state)
{
	uint64_t t0 = g_now;

	(void)state;
	/*
	 * At 1.5 ms page 1's own hold (1 ms) is over, but the burst goes on:
	 * it took 0.8 ms to gather, so it lasts twice that after its last grant.
	 */
	node1_asks_during_burst(t0);
	assert_int_equal(st(2).held_back, 1);
	g_now = t0 + MS * 2;
	assert_true(dsm_node_tick(W->node[2].n) != UINT64_MAX);
	assert_int_equal(queued(2, 0), 0);
	/* a new grant at 2.2 ms extends it again, but not past 3 ms (hold_max) */
	g_now = t0 + MS * 22 / 10;
	assert_int_equal(fault(2, 2, false), 1);
	deliver(2, 1, DSM_GET_S);
	deliver(1, 2, DSM_DATA_ZERO);
	g_now = t0 + MS * 29 / 10;
	dsm_node_tick(W->node[2].n);
	assert_int_equal(queued(2, 0), 0);
	g_now = t0 + MS * 31 / 10;
	assert_true(dsm_node_tick(W->node[2].n) == UINT64_MAX);
	deliver(2, 0, DSM_FWD_DATA);
	deliver(0, 1, DSM_DATA);
	assert_int_equal(cpu_read(1, 1), 7);
	no_fatal();
}

/*
 * The node whose turn it is keeps its burst past hold_max (3 ms), up to
 * the end of its turn: test_burst_holds_together's sequence, whose burst
 * ended at 3 ms without turns.
 */
static void test_turn_owner_keeps_its_burst(void **state)
{
	uint64_t t0 = g_now;

	(void)state;
	node1_asks_during_burst(t0);
	g_now = t0 + MS * 22 / 10;                   /* gathered in 2.2 ms: on to 6.6 ms */
	assert_int_equal(read_settled(2, 2), 0);
	g_now = t0 + MS * 31 / 10;
	dsm_node_tick(W->node[2].n);
	assert_int_equal(queued(2, 0), 0);
	g_now = t0 + MS * 6;                         /* an upgrade at 6 ms: on to 18 ms... */
	assert_int_equal(fault(2, 2, true), 1);
	deliver(2, 1, DSM_UPGRADE);
	deliver(1, 2, DSM_UPG_ACK);
	g_now = t0 + MS * 99 / 10;                   /* ...but not past the turn, at 10 ms */
	dsm_node_tick(W->node[2].n);
	assert_int_equal(queued(2, 0), 0);
	g_now = t0 + MS * 10;
	assert_true(dsm_node_tick(W->node[2].n) == UINT64_MAX);
	deliver(2, 0, DSM_FWD_DATA);
	deliver(0, 1, DSM_DATA);
	assert_int_equal(cpu_read(1, 1), 7);
	assert_int_equal(st(2).hold_burst_ns, 10 * MS);
	no_fatal();
}

/* Outside its turn, a node keeps what it was granted only its own hold (1 ms). */
static void test_turn_others_hold_briefly(void **state)
{
	uint64_t t0 = g_now;

	(void)state;
	assert_int_equal(fault(0, 2, true), 1);      /* node 0 gathers two pages */
	deliver(0, 1, DSM_GET_M);
	deliver(1, 0, DSM_DATA_ZERO);
	cpu_write(0, 2, 5);
	g_now = t0 + MS * 8 / 10;
	assert_int_equal(fault(0, 3, true), 1);
	deliver(0, 2, DSM_GET_M);
	deliver(2, 0, DSM_DATA_ZERO);
	cpu_write(0, 3, 6);
	/* at 1.5 ms, page 2 goes at once (its burst would hold it to 2.4 ms)... */
	g_now = t0 + MS * 15 / 10;
	assert_int_equal(fault(2, 2, false), 1);
	deliver(2, 1, DSM_GET_S);
	deliver(1, 0, DSM_FWD_GET_S);
	assert_int_equal(peek(0, 1), DSM_FWD_DATA);
	settle();
	assert_int_equal(cpu_read(2, 2), 5);
	/* ...and page 3 at the end of its own hold, 1.8 ms */
	assert_int_equal(fault(2, 3, true), 1);
	assert_int_equal(queued(0, 2), 0);
	deliver(2, 0, DSM_FWD_GET_M);
	assert_int_equal(queued(0, 2), 0);
	g_now = t0 + MS * 18 / 10;
	assert_true(dsm_node_tick(W->node[0].n) == UINT64_MAX);
	settle();
	assert_int_equal(cpu_read(2, 3), 6);
	no_fatal();
}

/* A node whose vCPUs all sleep, or that sent an interrupt, lets go at once. */
static void test_burst_idle_and_yield(void **state)
{
	(void)state;
	burst_on_node2();
	assert_int_equal(fault(1, 1, true), 1);
	deliver(1, 0, DSM_GET_M);
	deliver(0, 2, DSM_FWD_GET_M);
	assert_int_equal(queued(2, 0), 0);
	dsm_node_idle(W->node[2].n, true);
	dsm_node_tick(W->node[2].n);
	deliver(2, 0, DSM_FWD_DATA);
	deliver(0, 1, DSM_DATA);
	assert_int_equal(cpu_read(1, 1), 7);
	/* busy again: a fresh grant is held again, until a yield */
	dsm_node_idle(W->node[2].n, false);
	g_now += 10 * MS;
	write_settled(2, 1, 9);
	assert_int_equal(fault(0, 1, false), 1);
	deliver(0, 2, DSM_FWD_GET_S);
	assert_int_equal(queued(2, 0), 0);
	dsm_node_yield(W->node[2].n);
	dsm_node_tick(W->node[2].n);
	deliver(2, 0, DSM_FWD_DATA);
	assert_int_equal(cpu_read(0, 1), 9);
	assert_int_equal(st(2).yields, 1);
	no_fatal();
}

/* Pages of a burst that were taken away are asked for again together. */
static void test_refetch_lost(void **state)
{
	(void)state;
	burst_on_node2();
	g_now += 10 * MS;                            /* the burst is over */
	write_settled(0, 1, 3);                      /* the home takes both back */
	write_settled(0, 0, 4);
	assert_int_equal(fault(2, 1, false), 1);     /* one fault... */
	assert_int_equal(queued(2, 0), 2);           /* ...two requests */
	assert_int_equal(st(2).refetched, 1);
	settle();                                    /* the home holds its fresh copies */
	g_now += 10 * MS;
	dsm_node_tick(W->node[0].n);
	settle();
	assert_int_equal(cpu_read(2, 1), 3);
	assert_int_equal(cpu_read(2, 0), 4);         /* no fault needed */
	no_fatal();
}

/* Pages lost after a turn ended (idle) are not refetched: the next turn may not need them. */
static void test_no_refetch_after_idle(void **state)
{
	(void)state;
	burst_on_node2();
	dsm_node_idle(W->node[2].n, true);
	write_settled(0, 1, 3);
	write_settled(0, 0, 4);
	dsm_node_idle(W->node[2].n, false);
	g_now += 10 * MS;
	assert_int_equal(fault(2, 1, false), 1);
	assert_int_equal(queued(2, 0), 1);
	assert_int_equal(st(2).refetched, 0);
	settle();
	no_fatal();
}

/* Sequential misses ask for the next pages; scattered ones do not. */
static void test_read_ahead(void **state)
{
	(void)state;
	write_settled(1, 2, 5);                      /* page 2 lives on node 1 */
	assert_int_equal(fault(2, 1, false), 1);     /* node 2 reads 1, then 0: not ahead */
	settle();
	assert_int_equal(fault(2, 0, false), 1);
	settle();
	assert_int_equal(st(2).readahead, 0);
	g_now += 10 * MS;
	write_settled(0, 1, 6);                      /* the home takes page 1 back */
	assert_int_equal(fault(2, 1, false), 1);     /* 0 then 1: sequential */
	assert_int_equal(peek(2, 1), DSM_GET_S);     /* page 2 asked for ahead */
	assert_int_equal(st(2).readahead, 1);
	settle();
	g_now += 10 * MS;
	dsm_node_tick(W->node[0].n);                 /* the home's hold on page 1 */
	settle();
	assert_int_equal(cpu_read(2, 2), 5);
	assert_int_equal(cpu_read(2, 1), 6);
	no_fatal();
}

/* A write stream over pages held S upgrades the next ones ahead. */
static void test_read_ahead_upgrades(void **state)
{
	uint64_t ra0;

	(void)state;
	write_settled(1, 2, 5);                      /* page 2 lives on node 1 */
	g_now += 10 * MS;
	assert_int_equal(read_settled(2, 0), 0);     /* node 2 reads 0, 1 and 2: S */
	assert_int_equal(read_settled(2, 1), 0);
	settle();
	assert_int_equal(read_settled(2, 2), 5);
	g_now += 10 * MS;
	ra0 = st(2).readahead;
	write_settled(2, 0, 6);                      /* an upgrade: not a stream yet */
	assert_int_equal(st(2).readahead, ra0);
	assert_int_equal(fault(2, 1, true), 1);      /* 0 then 1: page 2 upgraded ahead */
	assert_int_equal(peek(2, 1), DSM_UPGRADE);
	assert_int_equal(st(2).readahead, ra0 + 1);
	settle();
	cpu_write(2, 1, 7);
	cpu_write(2, 2, 8);                          /* no fault needed */
	no_fatal();
}

/* ---- a peer that breaks the protocol is not trusted ---- */

static void bad(unsigned src, unsigned dst, uint8_t type, uint8_t flags, uint64_t page,
		bool with_page)
{
	static uint8_t pg[PG];
	struct dsm_msg m = { .type = type, .flags = flags, .page = page };

	assert_int_equal(dsm_receive(W->node[dst].n, src, &m, with_page ? pg : NULL), -EINVAL);
	assert_int_equal(W->node[dst].fatal, 1);
	assert_true(dsm_node_failed(W->node[dst].n));
}

static void test_unexpected_ack(void **state)
{
	(void)state;
	bad(1, 0, DSM_INV_ACK, 0, 0, false);
	assert_int_equal(fault(0, 0, false), -EIO);
}

static void test_unasked_data(void **state)
{
	(void)state;
	bad(0, 1, DSM_DATA, 0, 0, true);
}

static void test_beyond_ram(void **state)
{
	(void)state;
	bad(1, 0, DSM_GET_S, 0, NP, false);
}

static void test_not_from_home(void **state)
{
	(void)state;
	fault(1, 0, false);
	bad(2, 1, DSM_DATA_ZERO, 0, 0, false);
}

static void test_missing_payload(void **state)
{
	(void)state;
	bad(1, 0, DSM_PUT_M, 0, 0, false);
}

static void test_request_to_non_home(void **state)
{
	(void)state;
	bad(0, 1, DSM_GET_M, 0, 0, false);
}

static void test_from_self(void **state)
{
	(void)state;
	bad(0, 0, DSM_GET_S, 0, 2, false);
}

static void test_bad_flags(void **state)
{
	(void)state;
	bad(1, 0, DSM_GET_S, DSM_MSG_F_ZERO, 0, false);
}

static void test_owner_asks_again(void **state)
{
	(void)state;
	write_settled(1, 0, 1);
	bad(1, 0, DSM_GET_M, 0, 0, false);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_zero_grants),
		T(test_read_then_write_miss),
		T(test_inv_crosses_upgrade),
		T(test_fwd_crosses_putm),
		T(test_fwd_m_crosses_putm),
		T(test_queue_order),
		T(test_zero_putm),
		T(test_home_upgrade),
		cmocka_unit_test_setup_teardown(test_hold_client, setup_hold, teardown),
		cmocka_unit_test_setup_teardown(test_hold_home, setup_hold, teardown),
		cmocka_unit_test_setup_teardown(test_burst_holds_together, setup_burst, teardown),
		cmocka_unit_test_setup_teardown(test_burst_idle_and_yield, setup_burst, teardown),
		cmocka_unit_test_setup_teardown(test_refetch_lost, setup_burst, teardown),
		cmocka_unit_test_setup_teardown(test_turn_owner_keeps_its_burst, setup_turns, teardown),
		cmocka_unit_test_setup_teardown(test_turn_others_hold_briefly, setup_turns, teardown),
		cmocka_unit_test_setup_teardown(test_read_ahead, setup_burst, teardown),
		cmocka_unit_test_setup_teardown(test_read_ahead_upgrades, setup_burst, teardown),
		cmocka_unit_test_setup_teardown(test_no_refetch_after_idle, setup_burst, teardown),
		T(test_unexpected_ack),
		T(test_unasked_data),
		T(test_beyond_ram),
		T(test_not_from_home),
		T(test_missing_payload),
		T(test_request_to_non_home),
		T(test_from_self),
		T(test_bad_flags),
		T(test_owner_asks_again),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
