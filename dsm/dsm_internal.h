/* SPDX-License-Identifier: MIT */
#ifndef GRAPPE_DSM_INTERNAL_H
#define GRAPPE_DSM_INTERNAL_H

/* Shared by dsm/dsm.c (node, userfaultfd, threads) and dsm/dsm_proto.c (protocol). */

#include <pthread.h>
#include <stdatomic.h>

#include "dsm/dsm.h"

/* A node's state of one page: the local states of dsm/model/dsm.pml. */
enum dsm_state {
	DSM_I,        /* absent */
	DSM_S,        /* present, write-protected */
	DSM_M,        /* present, writable */
	DSM_IS_D,     /* absent, GET_S sent */
	DSM_IM_D,     /* absent, GET_M sent (or UPGRADE overtaken by INV) */
	DSM_SM_A,     /* present write-protected, UPGRADE sent */
	DSM_MI_A,     /* absent, PUT_M sent, copy kept until PUT_ACK */
};

/*
 * Per page, on every node (8 bytes). Guarded by the page's lock, except
 * cached (cache_lock). The home's own state is only ever I, S or M: its
 * requests are marked by PF_LPEND instead.
 */
#define PF_LPEND 0x1       /* at the home: a local request is queued or running */
#define PF_DEFER 0x2       /* a message for the page is held back (hold_us) */
struct dsm_page {
	uint8_t state;
	uint8_t home;      /* home node */
	uint8_t flags;     /* PF_* */
	uint8_t cached;    /* in the eviction ring */
	uint32_t moves;    /* times the page moved to or from this node */
};

/* Directory entry, at the home, per page of the cell. */
struct dsm_dir {
	uint64_t sharers;  /* remote nodes that may hold S: a superset */
	uint8_t owner;     /* the node in M (maybe this one), or DSM_NONE */
	uint8_t zero;      /* never written: content zero, no copy needed */
	uint8_t busy;      /* a transaction waits for acks or data */
};

/* A request that arrived while its entry was busy. */
struct dsm_qent {
	struct dsm_qent *next;
	uint8_t src, kind;
	bool zero;
	uint8_t *data;     /* PUT_M payload */
};

/* The transaction of a busy entry, and its queue. */
struct dsm_txn {
	struct dsm_txn *next;          /* hash chain */
	uint64_t page;
	bool busy, wait_data;
	uint8_t req, kind;
	uint64_t acks;                 /* nodes whose INV_ACK is awaited */
	bool data_zero;
	uint8_t *data;                 /* what the grant will carry */
	struct dsm_qent *qhead, *qtail;
};

/* An evicted M page until PUT_ACK: a FWD_* crossing the PUT_M is answered from it. */
struct dsm_putm {
	struct dsm_putm *next;
	uint64_t page;
	bool zero;
	uint8_t data[DSM_PAGE_SIZE];
};

/*
 * When a page was last granted here (hold_us): slot = page mod DSM_HOLD_SLOTS,
 * so a slot is always under the same page-lock stripe. A collision only
 * forgets a hold.
 */
#define DSM_HOLD_SLOTS 4096
struct dsm_hold {
	uint64_t page;
	uint64_t at_ns;                /* granted (0: not yet) */
	uint64_t sent_ns;              /* requested from another node (0: no) */
	bool remote;                   /* the grant needed another node: part of a burst */
};

/* Work held back until due: a message that would take a fresh page away, or a hold's end. */
struct dsm_defer {
	struct dsm_defer *next;
	uint64_t due_ns;
	uint64_t since_ns;             /* when it was first held back (statistics) */
	uint64_t page;
	unsigned src;
	bool hold_end;                 /* the home's hold on its own copy is over */
	struct dsm_msg msg;
};

/* A message waiting to be sent, in protocol order. */
struct dsm_out {
	struct dsm_out *next;
	unsigned dst;
	struct dsm_msg msg;
	uint8_t page[];                /* when dsm_msg_has_page */
};

#define DSM_LOST_MAX 64             /* pages refetched together after a burst */
/*
 * A page that moved to or from this node this often is hot: it circulates
 * between nodes (the guest's page tables under nested paging, a lock, a
 * flag others spin on). Counted in the statistics (hot_grants).
 */
#define DSM_HOT_MOVES 32
#define DSM_NLOCKS 1024            /* page lock stripes; also hash buckets */

struct dsm_own_range {
	uint64_t start, end;           /* pages */
	uint64_t dir_base;
};

struct dsm_counters {
	_Atomic uint64_t fault_read_miss, fault_write_miss, fault_upgrade;
	_Atomic uint64_t fault_zero_local, fault_zero_remote, fault_local;
	_Atomic uint64_t fault_joined, fault_spurious;
	_Atomic uint64_t msgs_tx, msgs_rx, bytes_tx, bytes_rx, pages_tx, pages_rx;
	_Atomic uint64_t msgs_tx_type[DSM_MSG_TYPE_END], msgs_rx_type[DSM_MSG_TYPE_END];
	_Atomic uint64_t inv_sent, inv_dropped, evict_s, evict_m, queued, held_back, refetched;
	_Atomic uint64_t bursts, burst_grants, yields, readahead;
	_Atomic uint64_t hot_grants, held_ns, fetch_total_ns, fetches;
	_Atomic uint64_t cache_max;
};

struct dsm_node {
	unsigned self, nr_nodes;
	uint8_t *base;
	uint64_t size, npages;
	bool own_mapping;
	uint64_t cache_pages;
	struct dsm_config cfg;
	struct dsm_range *homes;
	struct dsm_transport_ops tx;
	struct dsm_mem_ops mem;
	bool uffd_mode;

	struct dsm_page *pages;
	struct dsm_dir *dir;
	struct dsm_own_range *own;
	unsigned nr_own;

	pthread_mutex_t locks[DSM_NLOCKS];
	struct dsm_txn *txns[DSM_NLOCKS];      /* bucket i guarded by locks[i] */
	struct dsm_putm *putms[DSM_NLOCKS];

	pthread_mutex_t out_lock;
	struct dsm_out *out_head, *out_tail;
	bool flushing;

	pthread_mutex_t cache_lock;
	uint64_t *ring;
	size_t ring_cap, ring_head, ring_len;
	_Atomic uint64_t held;                 /* other cells' pages held or in flight */

	uint64_t hold_ns, hold_max_ns;         /* bounds of a hold */
	uint64_t turn_ns;                      /* turns (cfg.turn_us), or 0 */
	uint64_t turn_offset;                  /* hold clock + this = CLOCK_REALTIME */
	struct dsm_hold *hold;                 /* DSM_HOLD_SLOTS, or NULL */
	/* the current burst of remote grants: first and latest grant (hold_max_us) */
	_Atomic uint64_t burst_start, burst_last, burst_pages;
	_Atomic bool idle;                     /* dsm_node_idle */
	_Atomic uint64_t fetch_ns;             /* decaying minimum of fetch latency */
	_Atomic uint64_t fetch_samples;
	uint64_t fetch_win_n, fetch_win_cur, fetch_win_prev;   /* lost_lock */
	/*
	 * Pages of the latest burst that other nodes took away: asked for
	 * again, all at once, with the next fault that goes to another node
	 * (the rest of a contended working set, e.g. the levels of the guest's
	 * page table that a walk needs after the first one).
	 */
	/*
	 * Read-ahead: the last page a fault asked another node for, and how
	 * far ahead to ask while misses are sequential (racy, a hint).
	 */
	_Atomic uint64_t ra_last;
	_Atomic unsigned ra_window;
	pthread_mutex_t lost_lock;             /* after a page lock */
	struct { uint64_t page; bool write; } lost[DSM_LOST_MAX];
	unsigned nr_lost;
	pthread_mutex_t defer_lock;            /* after a page lock */
	struct dsm_defer *defer_head, *defer_tail;

	_Atomic uint64_t in_flight;            /* this node's requests not answered */
	_Atomic uint64_t last_rx_ns;           /* for the request timeout */
	_Atomic bool failed, stopped;
	pthread_mutex_t fail_lock;

	/* userfaultfd engine (dsm/dsm.c); kick_fd wakes the handler (stop, deferred work) */
	int uffd, kick_fd;
	pthread_t *threads;
	unsigned nr_threads;
	bool started, registered;

	struct dsm_counters c;
};

static inline void dsm_count(_Atomic uint64_t *c, uint64_t v)
{
	atomic_fetch_add_explicit(c, v, memory_order_relaxed);
}

uint64_t dsm_now_ns(void);
/* CLOCK_REALTIME (turns: the clock every node agrees on). */
uint64_t dsm_realtime_ns(void);
/* The clock of holds: cfg.clock_ns (tests) or dsm_now_ns. */
uint64_t dsm_node_now(struct dsm_node *n);
void dsm_log(struct dsm_node *n, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Fails the node (idempotent): on_fatal, then guest memory becomes plain memory. */
void dsm_fail(struct dsm_node *n, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Engine hook: stop coherence (unregister userfaultfd, waking every fault). */
void dsm_engine_release(struct dsm_node *n);
/* Engine hook: deferred work was added, the handler should recompute its timeout. */
void dsm_engine_kick(struct dsm_node *n);

/* dsm/dsm_proto.c */
int dsm_proto_init(struct dsm_node *n);
void dsm_proto_free(struct dsm_node *n);
/* 0: valid now; 1: a request went out (or waits at the local home); 2: joined one in flight. */
int dsm_proto_fault(struct dsm_node *n, uint64_t p, bool write, bool prefetch);
int dsm_proto_receive(struct dsm_node *n, unsigned src, const struct dsm_msg *m,
		      const uint8_t *data);
/* At start: a page of this cell that is already present is taken as written here. */
void dsm_proto_adopt(struct dsm_node *n, uint64_t p);
void dsm_proto_flush(struct dsm_node *n);
/* Logs the pages in flight and the busy directory entries (lock-free, racy). */
void dsm_proto_dump(struct dsm_node *n);
/* Runs the deferred work that is due; returns ns until the next, or UINT64_MAX. */
uint64_t dsm_proto_tick(struct dsm_node *n);
bool dsm_page_is_zero(const void *page);
/* dsm_node_idle(n, true): every hold ends now. */
void dsm_proto_release_holds(struct dsm_node *n);
/* The current hold extension and burst length (0, 0 without holds). */
void dsm_proto_hold_params(struct dsm_node *n, uint64_t *ext, uint64_t *burst);

#endif
