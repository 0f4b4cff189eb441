/* SPDX-License-Identifier: MIT */
#ifndef GRAPPE_DSM_H
#define GRAPPE_DSM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dsm/dsm_msg.h"

/*
 * The DSM engine: guest RAM shared by the nodes of a cluster with a
 * home-based MSI directory protocol at 4 KiB granularity, on
 * userfaultfd (docs/dsm.md; the protocol is dsm/model/dsm.pml).
 *
 * Every node maps the same `size` bytes; a page's offset is its identity.
 * Each page has a home (the node whose NUMA cell holds it) that keeps its
 * directory entry and, while nobody else writes it, its data in its own
 * mapping. A node holds its own cell plus at most `cache_pages` pages of
 * other cells.
 *
 * All state is in struct dsm_node: a process may run several nodes (unit
 * tests run three). No function here calls exit().
 *
 * Threads: the engine runs its fault handler thread(s); the transport
 * calls dsm_receive() and dsm_peer_down() from its own thread(s). That
 * thread must never touch guest memory (it would wait for itself), and
 * neither may on_fatal/on_log.
 */

#define DSM_MAX_NODES 64
#define DSM_NONE 0xff

/* [start, end) byte offsets of guest RAM homed on node. */
struct dsm_range {
	uint64_t start, end;
	unsigned node;
};

/*
 * Page operations, for tests and tools that drive the protocol without
 * userfaultfd (the default, NULL, is userfaultfd on the mapping). Each
 * acts on page p and returns 0 or -errno; the engine calls them only in
 * the states where they make sense (install on an absent page, read on a
 * present one, ...). Faults are then injected with dsm_fault().
 */
#define DSM_INSTALL_WP      0x1   /* map write-protected (state S) */
#define DSM_INSTALL_ZERO_RO 0x2   /* data == NULL: the shared zero page may do */
struct dsm_mem_ops {
	int (*install)(void *ctx, uint64_t p, const void *data /* NULL: zeros */, unsigned flags);
	int (*protect)(void *ctx, uint64_t p, bool wp);    /* clearing wakes waiters */
	int (*drop)(void *ctx, uint64_t p);
	int (*read)(void *ctx, uint64_t p, void *buf);
	void (*wake)(void *ctx, uint64_t p);
	void *ctx;
};

struct dsm_config {
	unsigned self;
	unsigned nr_nodes;                /* 1..DSM_MAX_NODES */
	/*
	 * Guest RAM: an anonymous private mapping of size bytes (page
	 * aligned), e.g. the one KVM memslots point at, or NULL and the node
	 * allocates it (dsm_node_mem). Pages of this node's cell that are
	 * already present at dsm_node_start are taken as written here; pages
	 * of other cells that are present are discarded.
	 */
	void *mem;
	uint64_t size;
	/* The cells: ranges covering [0, size) exactly, in any order. */
	const struct dsm_range *homes;
	unsigned nr_homes;
	/* Other cells' pages held at most (plus one per fault in flight); 0: no bound. */
	uint64_t cache_pages;
	unsigned handler_threads;         /* 0: 1 */
	/*
	 * After a fault, the handler keeps polling the userfaultfd (and the
	 * transport, if it has a poll op) for up to spin_us before it sleeps;
	 * adaptive: the window shrinks while spinning finds nothing. A cross-core
	 * wake-up costs 25-35 us here, a spin saves it but burns a core. 0: sleep.
	 */
	unsigned spin_us;
	/* A request unanswered for this long is fatal; 0: wait forever. */
	unsigned request_timeout_ms;
	/*
	 * Forward progress: a page granted here for a fault stays at least
	 * this long before an INV or FWD_* (at the home: a remote request)
	 * takes it away, so that the faulting thread gets to use it. Without
	 * it, two nodes writing one page can take it from each other forever
	 * (KVM retries its access only after it is woken). The message waits
	 * in the engine, on the fault handler's timer; no thread blocks.
	 * Costs up to hold_us per transfer of a contended page. 0: off.
	 */
	unsigned hold_us;
	/*
	 * Bursts (docs/dsm.md, "Holding"): one access may need several pages
	 * at once (a guest page walk under nested paging needs every level of
	 * the guest's page table writable on this node, then the data page).
	 * So the pages that arrived from other nodes are held together: each
	 * remote grant extends the hold of all of them by a few fetch times,
	 * for at most a burst. Both are sized from this node's measured fetch
	 * latency (a decaying minimum, so that time spent held elsewhere does
	 * not inflate it): extension 3x, burst 20x, within [hold_us,
	 * hold_max_us]. 0: hold_max_us = hold_us (fixed holds).
	 */
	unsigned hold_max_us;
	/* A burst lasts at least this many fetch times per page it gathered; 0: 2. */
	unsigned hold_factor;
	/*
	 * Turns (docs/dsm.md, "Turns"): time is cut in turns of turn_us and
	 * node (t / turn_us) mod nr_nodes owns each. The owner's burst may
	 * last to the end of its turn (instead of hold_max_us after it began);
	 * the other nodes keep what they were granted only hold_us, so the
	 * owner gathers a whole page walk whatever the others do, and every
	 * node gets that once in nr_nodes turns. With three nodes or more
	 * walking the same guest page tables, unsynchronised bursts cut one
	 * another short and nobody's walk completes. t is CLOCK_REALTIME, so
	 * that nodes on hosts kept in step by NTP agree; a skew only shifts
	 * the turns. Needs hold_us. 0: off.
	 */
	unsigned turn_us;
	/* Tests: the engine's clock for holds (ns); NULL: CLOCK_MONOTONIC. */
	uint64_t (*clock_ns)(void *ctx);
	/*
	 * The node cannot go on (a peer holding pages is down, a peer broke
	 * the protocol, a timeout): called once, on some engine or transport
	 * thread. Afterwards guest memory is plain memory: every blocked and
	 * future access completes (absent pages read as zero) so that the VMM
	 * can stop its vCPUs; the guest's memory is no longer coherent.
	 */
	void (*on_fatal)(void *ctx, const char *msg);
	void (*on_log)(void *ctx, const char *msg);   /* NULL: stderr */
	void *cb_ctx;
	const struct dsm_mem_ops *mem_ops;            /* NULL: userfaultfd */
};

struct dsm_msg;

struct dsm_transport_ops {
	/*
	 * Queue one message for node dst, in order: messages to one node must
	 * arrive in the order sent (like TCP). page is NULL or 4096 bytes,
	 * valid during the call only. May block briefly; is never called with
	 * engine locks held. Returns 0 or -errno (the peer is then expected to
	 * be reported down).
	 */
	int (*send)(void *ctx, unsigned dst, const struct dsm_msg *msg, const void *page);
	/*
	 * Optional: deliver the messages already received, on the calling
	 * thread, without blocking; returns how many. A spinning fault
	 * handler calls it so that one thread polls both the userfaultfd and
	 * the network, and answers arrive without a cross-core wake-up.
	 */
	int (*poll)(void *ctx);
	/*
	 * Optional, with poll: a descriptor that is readable while messages
	 * wait. The fault handler then sleeps on it too and delivers them, so
	 * that one thread serves faults and network (a transport may then do
	 * without a receive thread of its own).
	 */
	int (*poll_fd)(void *ctx);
	void *ctx;
};

struct dsm_node;

int dsm_node_create(const struct dsm_config *cfg, const struct dsm_transport_ops *tx,
		    struct dsm_node **out, char *err, size_t errlen);
/* Registers the mapping with userfaultfd and starts the fault handler(s). */
int dsm_node_start(struct dsm_node *n, char *err, size_t errlen);
/*
 * Stops the handlers; afterwards guest memory is plain memory (blocked
 * accesses complete, nothing is coherent any more) and messages are
 * ignored. Call it on every node once the guest is stopped.
 */
void dsm_node_stop(struct dsm_node *n);
void dsm_node_destroy(struct dsm_node *n);
void *dsm_node_mem(const struct dsm_node *n);
unsigned dsm_home_of(const struct dsm_node *n, uint64_t offset);

/*
 * A message from node src (page: NULL or the 4096 bytes it carries,
 * valid during the call). Called by the transport's receive thread.
 * Returns 0, or -EINVAL for a message that breaks the protocol (the node
 * is then failed: a peer that sends garbage cannot be trusted).
 */
int dsm_receive(struct dsm_node *n, unsigned src, const struct dsm_msg *msg, const void *page);
/* The transport lost node peer: the node is failed (see on_fatal). */
void dsm_peer_down(struct dsm_node *n, unsigned peer, const char *why);
/*
 * Runs the deferred work that is due (hold_us) and returns the
 * nanoseconds until the next, or UINT64_MAX. The fault handler does this;
 * with dsm_mem_ops, the caller must.
 */
uint64_t dsm_node_tick(struct dsm_node *n);
/*
 * The VMM's hint: no thread of this node will touch guest memory for a
 * while (every vCPU sleeps on HLT), or one will again. While idle the node
 * holds nothing: what other nodes asked for goes at once, and the current
 * burst ends (a fresh grant starts the next).
 */
void dsm_node_idle(struct dsm_node *n, bool idle);
/*
 * The VMM's hint: another node has to run now (this node sent it an
 * interrupt, and often waits for the answer): the current burst ends, and
 * what other nodes asked for goes at once.
 */
void dsm_node_yield(struct dsm_node *n);
/* Fails the node by hand (e.g. the VMM is tearing down after an error). */
void dsm_node_fail(struct dsm_node *n, const char *why);
bool dsm_node_failed(const struct dsm_node *n);

/*
 * A fault on the page at offset, as the userfaultfd handler sees it
 * (with dsm_mem_ops, the only way faults arrive). Returns 0 when the
 * page is valid now (resolved inline), 1 when a request is in flight (the
 * install will wake the faulting threads), or -errno.
 */
int dsm_fault(struct dsm_node *n, uint64_t offset, bool write);
/*
 * Starts fetching [offset, offset+len) (S, or M if write) without
 * waiting: many requests in flight at once. Pages already valid and
 * pages in flight are skipped. Returns the number of requests sent.
 */
int dsm_prefetch(struct dsm_node *n, uint64_t offset, uint64_t len, bool write);
/*
 * Makes [offset, offset+len) valid here (fetching in parallel, then
 * touching each page, which waits for it). A page can be taken away again
 * at once by another node: this only saves faults. Never call it from the
 * transport's receive thread or a fault handler.
 */
int dsm_access(struct dsm_node *n, uint64_t offset, uint64_t len, bool write);

#define DSM_STATS_TOP 8
struct dsm_page_count {
	uint64_t offset;
	uint64_t count;
};

struct dsm_stats {
	/*
	 * Faults (and dsm_prefetch requests) by how they were resolved. A miss
	 * or upgrade sent messages (to a remote home, or from the local home to
	 * sharers/owners); zero_local and local were resolved at the local
	 * home without any message; zero_remote counts the misses granted with
	 * DATA_ZERO (a subset of the misses).
	 */
	uint64_t fault_read_miss, fault_write_miss, fault_upgrade;
	uint64_t fault_zero_local, fault_zero_remote, fault_local;
	uint64_t fault_joined;        /* the page was already in flight */
	uint64_t fault_spurious;      /* already valid when handled */
	uint64_t msgs_tx, msgs_rx, bytes_tx, bytes_rx, pages_tx, pages_rx;
	uint64_t msgs_tx_type[DSM_MSG_TYPE_END], msgs_rx_type[DSM_MSG_TYPE_END];
	uint64_t inv_sent;            /* INV sent by this home */
	uint64_t inv_dropped;         /* copies dropped here on INV */
	uint64_t evict_s, evict_m;    /* evictions: silent (S), PUT_M (M) */
	uint64_t queued;              /* requests that waited behind a busy entry */
	uint64_t held_back;           /* messages and requests deferred by hold_us */
	uint64_t hold_ext_ns, hold_burst_ns;   /* current hold extension, longest burst (a turn) */
	uint64_t fetch_ns;            /* estimated remote fetch latency (decaying minimum) */
	uint64_t fetch_samples;       /* fetches measured */
	uint64_t refetched;           /* requests for pages of the previous burst, sent together */
	uint64_t bursts, burst_grants;  /* bursts begun; grants from other nodes (pages per burst) */
	uint64_t yields;              /* dsm_node_yield */
	uint64_t readahead;           /* requests sent ahead of sequential misses */
	uint64_t hot_grants;          /* remote grants of hot pages (no work for a hold) */
	uint64_t held_ns;             /* time held-back messages and requests waited, in all */
	uint64_t fetch_total_ns;      /* time this node's fetches took, in all... */
	uint64_t fetches;             /* ...and how many were timed */
	uint64_t cache_held, cache_max;   /* other cells' pages held now / at most */
	uint64_t in_flight;           /* requests of this node not answered yet */
	/* The pages that moved (to or from this node) most often. */
	struct dsm_page_count top[DSM_STATS_TOP];
};
void dsm_node_stats(struct dsm_node *n, struct dsm_stats *st);
/* One line per counter, for logs: "name value\n"... into buf. */
int dsm_stats_format(const struct dsm_stats *st, char *buf, size_t len);

#endif
