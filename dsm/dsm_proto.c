// SPDX-License-Identifier: MIT
/*
 * The coherence protocol: a home-based MSI directory, one transition per
 * message or fault, each taken under the page's lock. This file follows
 * dsm/model/dsm.pml step by step (same names: home_req -> home_request,
 * grant_m, start_inv, start_fwd, finish, handle -> dsm_proto_receive);
 * change the model first, then this. docs/dsm.md has the tables.
 *
 * Page operations go through n->mem (userfaultfd in dsm/dsm.c, a fake in
 * the unit tests), messages through an outbox that keeps the order in
 * which the transitions produced them, and is sent after the lock is
 * released so that a slow send never holds a page lock.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "dsm/dsm_internal.h"

/* The kind of a transaction that only holds the home's fresh copy (hold_us). */
#define DSM_TXN_HOLD 0xff

static pthread_mutex_t *plock(struct dsm_node *n, uint64_t p)
{
	return &n->locks[p & (DSM_NLOCKS - 1)];
}

static uint64_t bit(unsigned node)
{
	return 1ULL << node;
}

/* Pages from a transport have no particular alignment: load through memcpy. */
bool dsm_page_is_zero(const void *page)
{
	const uint8_t *b = page;
	uint64_t w[4];

	for (unsigned i = 0; i < DSM_PAGE_SIZE; i += sizeof(w)) {
		memcpy(w, b + i, sizeof(w));
		if (w[0] | w[1] | w[2] | w[3])
			return false;
	}
	return true;
}

static struct dsm_dir *dir_of(struct dsm_node *n, uint64_t p)
{
	for (unsigned i = 0; i < n->nr_own; i++)
		if (p >= n->own[i].start && p < n->own[i].end)
			return &n->dir[n->own[i].dir_base + (p - n->own[i].start)];
	return NULL;
}

/* ---- bookkeeping ---- */

static bool counted(uint8_t st)
{
	return st == DSM_S || st == DSM_M || st == DSM_IS_D || st == DSM_IM_D || st == DSM_SM_A;
}

static bool transient(uint8_t st)
{
	return st >= DSM_IS_D;
}

/* Changes a page's state, keeping the cache and in-flight counts. */
static void set_state(struct dsm_node *n, uint64_t p, uint8_t st)
{
	struct dsm_page *pg = &n->pages[p];
	uint8_t old = pg->state;

	if (pg->home != n->self && counted(old) != counted(st)) {
		if (counted(st)) {
			uint64_t h = atomic_fetch_add(&n->held, 1) + 1;
			uint64_t mx = atomic_load_explicit(&n->c.cache_max, memory_order_relaxed);

			while (h > mx && !atomic_compare_exchange_weak(&n->c.cache_max, &mx, h))
				;
		} else {
			atomic_fetch_sub(&n->held, 1);
		}
	}
	if (transient(old) != transient(st)) {
		if (transient(st))
			atomic_fetch_add(&n->in_flight, 1);
		else
			atomic_fetch_sub(&n->in_flight, 1);
	}
	__atomic_store_n(&pg->state, st, __ATOMIC_RELAXED);
}

static void set_lpend(struct dsm_node *n, uint64_t p, bool v)
{
	struct dsm_page *pg = &n->pages[p];

	if (!!(pg->flags & PF_LPEND) == v)
		return;
	pg->flags ^= PF_LPEND;
	if (v)
		atomic_fetch_add(&n->in_flight, 1);
	else
		atomic_fetch_sub(&n->in_flight, 1);
}

/* ---- page operations: a failure is fatal (coherence would be lost) ---- */

static bool mem_ok(struct dsm_node *n, int r, const char *what, uint64_t p)
{
	if (r == 0)
		return true;
	dsm_fail(n, "%s page %#llx: %s", what, (unsigned long long)p << DSM_PAGE_SHIFT,
		 strerror(-r));
	return false;
}

static bool m_install(struct dsm_node *n, uint64_t p, const void *data, unsigned flags)
{
	return mem_ok(n, n->mem.install(n->mem.ctx, p, data, flags), "install", p);
}

static bool m_protect(struct dsm_node *n, uint64_t p, bool wp)
{
	return mem_ok(n, n->mem.protect(n->mem.ctx, p, wp), wp ? "protect" : "unprotect", p);
}

static bool m_drop(struct dsm_node *n, uint64_t p)
{
	return mem_ok(n, n->mem.drop(n->mem.ctx, p), "drop", p);
}

static bool m_read(struct dsm_node *n, uint64_t p, void *buf)
{
	return mem_ok(n, n->mem.read(n->mem.ctx, p, buf), "read", p);
}

static void moved(struct dsm_node *n, uint64_t p)
{
	if (n->pages[p].moves != UINT32_MAX)
		n->pages[p].moves++;
}

/* ---- holding a fresh grant (hold_us, hold_max_us) ---- */

/*
 * A page just granted here for a fault: the faulting thread must get to
 * use it before another node's request takes it away again, or two nodes
 * writing one page can take it from each other forever (KVM retries its
 * access only after it is woken). So what would take it away within its
 * hold is deferred: never by blocking a thread.
 *
 * One access may need several pages at once: under nested paging a guest
 * page walk needs every level of the guest's page table writable on this
 * node (the walk is a write for NPT/EPT), then the data page, and it
 * starts again from the top if any level went away meanwhile. A hold per
 * page that ends before the next level arrives lets two nodes that walk
 * the same tables take them from each other forever (seen in the lab:
 * thousands of moves per second, no guest progress). So the pages that
 * came from other nodes are held together, as a burst: every remote grant
 * extends the hold of all of them by ext, and a burst ends at the latest
 * burst after it began (with turns: when this node's turn ends), so that
 * the other nodes get theirs.
 */

/* ext and burst, from the measured fetch latency, within [hold_ns, hold_max_ns]. */
static uint64_t clamp_hold(struct dsm_node *n, uint64_t v, uint64_t lo)
{
	return v < lo ? lo : v > n->hold_max_ns ? n->hold_max_ns : v;
}

static uint64_t hold_ext(struct dsm_node *n)
{
	return clamp_hold(n, 3 * atomic_load_explicit(&n->fetch_ns, memory_order_relaxed),
			  n->hold_ns);
}

static uint64_t hold_burst(struct dsm_node *n)
{
	(void)n;
	return n->hold_max_ns;
}

/*
 * Turns (cfg.turn_us): is it this node's turn at now (the hold clock), and
 * when does the current turn end (on the same clock)?
 */
static bool my_turn(struct dsm_node *n, uint64_t now, uint64_t *end)
{
	uint64_t k = (now + n->turn_offset) / n->turn_ns;

	*end = (k + 1) * n->turn_ns - n->turn_offset;
	return k % n->nr_nodes == n->self;
}

/*
 * The latest a burst that began at start may last: hold_max after it
 * began; with turns, the end of this node's turn, and at once when it is
 * not this node's turn (its pages keep only their own hold_us).
 */
static uint64_t burst_cap(struct dsm_node *n, uint64_t start, uint64_t now)
{
	uint64_t end;

	if (!n->turn_ns)
		return start + hold_burst(n);
	return my_turn(n, now, &end) ? end : start;
}

/*
 * A burst ends ext after its latest grant, or later when gathering its
 * pages cost more: twice the time it took, or hold_factor fetches per page
 * it holds (a node that paid for many transfers gets to use them; where the
 * host has fewer cores than busy threads, a transfer is CPU time the guest
 * does not get) — and no later than burst_cap().
 *
 * Hot pages (DSM_HOT_MOVES) count like the others. Tried in the lab: a
 * burst of hot pages only held ext after its latest grant (a spinning
 * vCPU's re-walk is no work to amortise) doubled the pages moved per
 * second and slowed the 4-node boot: a vCPU woken for an interrupt lost
 * the page tables again before its handler was done (docs/dsm.md).
 */
static uint64_t burst_end(struct dsm_node *n, uint64_t start, uint64_t last, uint64_t now)
{
	uint64_t ext = hold_ext(n), gather = last > start ? 2 * (last - start) : 0;
	uint64_t cost = (n->cfg.hold_factor ? n->cfg.hold_factor : 2) *
			atomic_load_explicit(&n->burst_pages, memory_order_relaxed) *
			atomic_load_explicit(&n->fetch_ns, memory_order_relaxed);
	uint64_t a, b;

	if (gather > ext)
		ext = gather;
	if (cost > ext)
		ext = cost;
	a = burst_cap(n, start, now);
	b = last + ext;
	return a < b ? a : b;
}

static bool hot(struct dsm_node *n, uint64_t p)
{
	return n->pages[p].moves >= DSM_HOT_MOVES;
}

/*
 * A fetch took d ns. The estimate is the least of the last 64 to 128
 * fetches (a windowed minimum): a fetch that waited for another node's
 * hold must not lengthen our holds (which would lengthen theirs in turn),
 * and at the start of each turn some fetches find the page free.
 */
static void fetch_sample(struct dsm_node *n, uint64_t d)
{
	uint64_t k, cur;

	if (d < 1000)
		return;
	pthread_mutex_lock(&n->lost_lock);
	k = n->fetch_win_n++;
	if (!(k & 63)) {                /* a new window: the previous one still counts */
		n->fetch_win_prev = k ? n->fetch_win_cur : UINT64_MAX;
		n->fetch_win_cur = UINT64_MAX;
	}
	if (d < n->fetch_win_cur)
		n->fetch_win_cur = d;
	cur = n->fetch_win_cur < n->fetch_win_prev ? n->fetch_win_cur : n->fetch_win_prev;
	atomic_store_explicit(&n->fetch_ns, cur, memory_order_relaxed);
	pthread_mutex_unlock(&n->lost_lock);
	dsm_count(&n->fetch_samples, 1);
}

/* A request for p went to another node (for the fetch latency). Under p's lock. */
static void hold_sent(struct dsm_node *n, uint64_t p)
{
	struct dsm_hold *h;

	if (!n->hold)
		return;
	h = &n->hold[p & (DSM_HOLD_SLOTS - 1)];
	if (h->page != p)
		*h = (struct dsm_hold){ .page = p };
	h->sent_ns = dsm_node_now(n);
}

/* p was granted here for a fault; remote: it took messages. Under p's lock. */
static void hold_mark(struct dsm_node *n, uint64_t p, bool remote)
{
	struct dsm_hold *h;
	uint64_t now, start;

	if (!n->hold)
		return;
	now = dsm_node_now(n);
	h = &n->hold[p & (DSM_HOLD_SLOTS - 1)];
	if (remote && h->page == p && h->sent_ns && now > h->sent_ns) {
		fetch_sample(n, now - h->sent_ns);
		dsm_count(&n->c.fetch_total_ns, now - h->sent_ns);
		dsm_count(&n->c.fetches, 1);
	}
	*h = (struct dsm_hold){ .page = p, .at_ns = now, .remote = remote };
	if (!remote)
		return;
	/* racy between stripes, harmlessly: a burst may start twice at once */
	start = atomic_load(&n->burst_start);
	if (!start || now < start || now >= burst_end(n, start, atomic_load(&n->burst_last), now)) {
		atomic_store(&n->burst_start, now);
		atomic_store(&n->burst_pages, 0);
		dsm_count(&n->c.bursts, 1);
	}
	if (hot(n, p))
		dsm_count(&n->c.hot_grants, 1);
	atomic_fetch_add(&n->burst_pages, 1);
	dsm_count(&n->c.burst_grants, 1);
	atomic_store(&n->burst_last, now);
}

void dsm_proto_release_holds(struct dsm_node *n)
{
	struct dsm_defer *e;

	if (!n->hold)
		return;
	/* the pages of the current burst are not held any more (at < start) */
	atomic_store(&n->burst_start, dsm_node_now(n) + 1);
	pthread_mutex_lock(&n->defer_lock);
	for (e = n->defer_head; e; e = e->next)
		e->due_ns = 0;
	pthread_mutex_unlock(&n->defer_lock);
	dsm_engine_kick(n);
}

void dsm_proto_hold_params(struct dsm_node *n, uint64_t *ext, uint64_t *burst)
{
	*ext = n->hold ? hold_ext(n) : 0;
	*burst = !n->hold ? 0 : n->turn_ns ? n->turn_ns : hold_burst(n);
}

/* p arrived for this node's latest burst (held or not any more). Under p's lock. */
static bool in_burst(struct dsm_node *n, uint64_t p)
{
	struct dsm_hold *h;

	if (!n->hold || n->hold_max_ns == n->hold_ns)
		return false;
	h = &n->hold[p & (DSM_HOLD_SLOTS - 1)];
	return h->page == p && h->remote && h->at_ns && h->at_ns >= atomic_load(&n->burst_start);
}

/* Another node takes p, which this node needed lately: ask for it again later. */
static void lost(struct dsm_node *n, uint64_t p, bool write)
{
	if (!in_burst(n, p))
		return;
	pthread_mutex_lock(&n->lost_lock);
	for (unsigned i = 0; i < n->nr_lost; i++)
		if (n->lost[i].page == p) {
			n->lost[i].write |= write;
			p = UINT64_MAX;
			break;
		}
	if (p != UINT64_MAX && n->nr_lost < DSM_LOST_MAX) {
		n->lost[n->nr_lost].page = p;
		n->lost[n->nr_lost++].write = write;
	}
	pthread_mutex_unlock(&n->lost_lock);
}

/*
 * A fault just sent a request to another node: the pages of the previous
 * burst that were taken away are likely needed again too (the levels of
 * the guest page table below the one that faulted): ask for them now, in
 * parallel, instead of one walk step at a time. No lock held.
 */
static void refetch_lost(struct dsm_node *n, uint64_t except)
{
	struct { uint64_t page; bool write; } v[DSM_LOST_MAX];
	unsigned k;

	pthread_mutex_lock(&n->lost_lock);
	k = n->nr_lost;
	memcpy(v, n->lost, k * sizeof(v[0]));
	n->nr_lost = 0;
	pthread_mutex_unlock(&n->lost_lock);
	for (unsigned i = 0; i < k && !atomic_load(&n->failed); i++)
		if (v[i].page != except && dsm_proto_fault(n, v[i].page, v[i].write, true) == 1)
			dsm_count(&n->c.refetched, 1);
}

/*
 * Read-ahead. A miss on the page after the previous miss is a sequential
 * stream (a guest copying or checking a buffer another node wrote): ask
 * for the next pages too, a window that doubles while the stream goes on
 * (up to DSM_RA_MAX), so that the transfers overlap instead of costing a
 * fault each. The stream's next miss is then the page after the window,
 * which continues it. A write stream also upgrades the next pages it
 * holds S (a guest overwriting what it just read: msgpass in smpcheck
 * reads 256 pages another node wrote, then writes them): each upgrade
 * alone is a round trip, and its write-protect clear a TLB flush after
 * which the vCPU walks its page tables again, which under nested paging
 * needs them writable here. Random misses (page tables, scattered data)
 * ask for nothing more. No lock held.
 */
#define DSM_RA_MAX 32

static void read_ahead(struct dsm_node *n, uint64_t p, bool write)
{
	uint64_t last = atomic_exchange(&n->ra_last, p), q;
	unsigned w = atomic_load(&n->ra_window), sent = 0;
	/* a bounded cache: what is read ahead must not evict what is in use */
	uint64_t max = n->cache_pages ? n->cache_pages / 4 : DSM_RA_MAX;

	if (max > DSM_RA_MAX)
		max = DSM_RA_MAX;
	if (w > max)
		w = max;
	if (!w || last == UINT64_MAX || last + 1 != p) {
		atomic_store(&n->ra_window, 2);
		return;
	}
	for (q = p + 1; q <= p + w && q < n->npages && !atomic_load(&n->failed); q++) {
		uint8_t st = __atomic_load_n(&n->pages[q].state, __ATOMIC_RELAXED);

		/* pages not here at all; for a write stream, pages held S too */
		if (st != DSM_I && !(write && st == DSM_S))
			continue;
		if (dsm_proto_fault(n, q, write, true) == 1)
			sent++;
	}
	dsm_count(&n->c.readahead, sent);
	atomic_store(&n->ra_window, w * 2 > max ? max : w * 2);
	/* the stream goes on after the window (its pages will not miss) */
	atomic_compare_exchange_strong(&n->ra_last, &p, q - 1);
}

/* When p's hold ends, or 0 if it is not held. Under p's lock. */
static uint64_t held_until(struct dsm_node *n, uint64_t p)
{
	struct dsm_hold *h;
	uint64_t end, start, now, turn_end;

	if (!n->hold || atomic_load_explicit(&n->idle, memory_order_relaxed))
		return 0;
	h = &n->hold[p & (DSM_HOLD_SLOTS - 1)];
	if (h->page != p || !h->at_ns)
		return 0;
	now = dsm_node_now(n);
	if (h->remote && (!n->turn_ns || my_turn(n, now, &turn_end))) {
		start = atomic_load(&n->burst_start);
		if (h->at_ns < start)
			return 0;          /* its burst is over: another began since */
		end = burst_end(n, start, atomic_load(&n->burst_last), now);
	} else {
		end = h->at_ns + n->hold_ns;
	}
	return now < end ? end : 0;
}

static bool defer(struct dsm_node *n, uint64_t p, unsigned src, const struct dsm_msg *m,
		  bool hold_end, uint64_t due)
{
	struct dsm_defer *e = calloc(1, sizeof(*e));

	if (!e) {
		dsm_fail(n, "out of memory");
		return false;
	}
	e->due_ns = due;
	e->since_ns = dsm_node_now(n);
	e->page = p;
	e->src = src;
	e->hold_end = hold_end;
	if (m)
		e->msg = *m;
	n->pages[p].flags |= PF_DEFER;
	pthread_mutex_lock(&n->defer_lock);
	if (n->defer_tail)
		n->defer_tail->next = e;
	else
		n->defer_head = e;
	n->defer_tail = e;
	pthread_mutex_unlock(&n->defer_lock);
	dsm_count(&n->c.held_back, 1);
	dsm_engine_kick(n);
	return true;
}

/* ---- the outbox ---- */

static struct dsm_out *out_new(struct dsm_node *n, unsigned dst, uint8_t type, uint8_t flags,
			       uint64_t p)
{
	struct dsm_msg m = { .type = type, .flags = flags, .page = p };
	struct dsm_out *o = malloc(sizeof(*o) + (dsm_msg_has_page(&m) ? DSM_PAGE_SIZE : 0));

	if (!o) {
		dsm_fail(n, "out of memory");
		return NULL;
	}
	o->next = NULL;
	o->dst = dst;
	o->msg = m;
	return o;
}

static void out_push(struct dsm_node *n, struct dsm_out *o)
{
	pthread_mutex_lock(&n->out_lock);
	if (n->out_tail)
		n->out_tail->next = o;
	else
		n->out_head = o;
	n->out_tail = o;
	pthread_mutex_unlock(&n->out_lock);
}

static void send_plain(struct dsm_node *n, unsigned dst, uint8_t type, uint8_t flags, uint64_t p)
{
	struct dsm_out *o = out_new(n, dst, type, flags, p);

	if (o)
		out_push(n, o);
}

/*
 * A message carrying a page (DATA, FWD_DATA, PUT_M): data NULL means a
 * zero page, and so does a page that is all zero; either travels without
 * payload.
 */
static void send_page(struct dsm_node *n, unsigned dst, uint8_t type, uint8_t flags, uint64_t p,
		      const uint8_t *data)
{
	struct dsm_out *o;

	if (!data || dsm_page_is_zero(data)) {
		if (type == DSM_DATA)
			type = DSM_DATA_ZERO;
		else
			flags |= DSM_MSG_F_ZERO;
		send_plain(n, dst, type, flags, p);
		return;
	}
	o = out_new(n, dst, type, flags, p);
	if (!o)
		return;
	memcpy(o->page, data, DSM_PAGE_SIZE);
	out_push(n, o);
	moved(n, p);
}

/* DATA from this node's own mapping (held S or M), read straight into the message. */
static void send_local_page(struct dsm_node *n, unsigned dst, uint8_t type, uint8_t flags,
			    uint64_t p)
{
	struct dsm_out *o = out_new(n, dst, type, flags, p);

	if (!o)
		return;
	if (!m_read(n, p, o->page)) {
		free(o);
		return;
	}
	if (dsm_page_is_zero(o->page)) {
		o->msg.type = type == DSM_DATA ? DSM_DATA_ZERO : type;
		o->msg.flags |= type == DSM_DATA ? 0 : DSM_MSG_F_ZERO;
	} else {
		moved(n, p);
	}
	out_push(n, o);
}

/*
 * Sends everything queued, in order. One thread sends at a time; the
 * others leave their messages to it, so that no caller waits on another
 * node while a message it queued is still unsent by nobody.
 */
void dsm_proto_flush(struct dsm_node *n)
{
	struct dsm_out *o;
	int r;

	pthread_mutex_lock(&n->out_lock);
	if (n->flushing) {
		pthread_mutex_unlock(&n->out_lock);
		return;
	}
	n->flushing = true;
	while ((o = n->out_head)) {
		n->out_head = o->next;
		if (!n->out_head)
			n->out_tail = NULL;
		pthread_mutex_unlock(&n->out_lock);
		if (!atomic_load(&n->failed) && !atomic_load(&n->stopped)) {
			bool pg = dsm_msg_has_page(&o->msg);

			r = n->tx.send(n->tx.ctx, o->dst, &o->msg, pg ? o->page : NULL);
			if (r)
				dsm_fail(n, "send %s to node %u: %s", dsm_msg_type_name(o->msg.type),
					 o->dst, strerror(-r));
			dsm_count(&n->c.msgs_tx, 1);
			dsm_count(&n->c.msgs_tx_type[o->msg.type], 1);
			dsm_count(&n->c.bytes_tx, DSM_MSG_HDR_LEN + (pg ? DSM_PAGE_SIZE : 0));
			dsm_count(&n->c.pages_tx, pg);
		}
		free(o);
		pthread_mutex_lock(&n->out_lock);
	}
	n->flushing = false;
	pthread_mutex_unlock(&n->out_lock);
}

/* ---- the eviction ring (FIFO over other cells' pages) ---- */

static void ring_compact(struct dsm_node *n)
{
	size_t keep = 0;

	for (size_t i = 0; i < n->ring_len; i++) {
		uint64_t q = n->ring[(n->ring_head + i) % n->ring_cap];

		if (counted(__atomic_load_n(&n->pages[q].state, __ATOMIC_RELAXED)))
			n->ring[(n->ring_head + keep++) % n->ring_cap] = q;
		else
			n->pages[q].cached = 0;
	}
	n->ring_len = keep;
}

static bool ring_grow(struct dsm_node *n)
{
	size_t cap = n->ring_cap * 2;
	uint64_t *r = malloc(cap * sizeof(*r));

	if (!r)
		return false;
	for (size_t i = 0; i < n->ring_len; i++)
		r[i] = n->ring[(n->ring_head + i) % n->ring_cap];
	free(n->ring);
	n->ring = r;
	n->ring_cap = cap;
	n->ring_head = 0;
	return true;
}

/* Called with q's lock held, after q became counted. */
static void ring_push(struct dsm_node *n, uint64_t q)
{
	if (!n->ring)
		return;
	pthread_mutex_lock(&n->cache_lock);
	if (!n->pages[q].cached) {
		if (n->ring_len == n->ring_cap)
			ring_compact(n);
		if (n->ring_len < n->ring_cap || ring_grow(n)) {
			n->ring[(n->ring_head + n->ring_len++) % n->ring_cap] = q;
			n->pages[q].cached = 1;
		}
	}
	pthread_mutex_unlock(&n->cache_lock);
}

static bool ring_pop(struct dsm_node *n, uint64_t *q)
{
	bool ok = false;

	pthread_mutex_lock(&n->cache_lock);
	if (n->ring_len) {
		*q = n->ring[n->ring_head];
		n->ring_head = (n->ring_head + 1) % n->ring_cap;
		n->ring_len--;
		ok = true;
	}
	pthread_mutex_unlock(&n->cache_lock);
	return ok;
}

/* q was popped: put it back (requeue) or forget it. Called with q's lock. */
static void ring_return(struct dsm_node *n, uint64_t q, bool requeue)
{
	pthread_mutex_lock(&n->cache_lock);
	if (requeue && (n->ring_len < n->ring_cap || ring_grow(n)))
		n->ring[(n->ring_head + n->ring_len++) % n->ring_cap] = q;
	else
		n->pages[q].cached = 0;
	pthread_mutex_unlock(&n->cache_lock);
}

static struct dsm_putm **putm_slot(struct dsm_node *n, uint64_t p)
{
	struct dsm_putm **s = &n->putms[p & (DSM_NLOCKS - 1)];

	while (*s && (*s)->page != p)
		s = &(*s)->next;
	return s;
}

/* Evict M: write-protect, copy, drop, then PUT_M; keep the copy for a crossing FWD_*. */
static void evict_m(struct dsm_node *n, uint64_t q)
{
	struct dsm_putm *b = malloc(sizeof(*b));

	if (!b) {
		dsm_fail(n, "out of memory");
		return;
	}
	if (!m_protect(n, q, true) || !m_read(n, q, b->data) || !m_drop(n, q)) {
		free(b);
		return;
	}
	b->page = q;
	b->zero = dsm_page_is_zero(b->data);
	b->next = NULL;
	*putm_slot(n, q) = b;
	set_state(n, q, DSM_MI_A);
	send_page(n, n->pages[q].home, DSM_PUT_M, 0, q, b->zero ? NULL : b->data);
	dsm_count(&n->c.evict_m, 1);
}

/* Makes room for one more page of another cell: the oldest S or M page goes. */
static void evict_one(struct dsm_node *n)
{
	size_t tries;
	uint64_t q;

	pthread_mutex_lock(&n->cache_lock);
	tries = 2 * n->ring_len + 2;
	pthread_mutex_unlock(&n->cache_lock);

	while (tries-- && !atomic_load(&n->failed) && ring_pop(n, &q)) {
		uint8_t st;

		pthread_mutex_lock(plock(n, q));
		st = n->pages[q].state;
		if (st == DSM_S) {
			if (m_drop(n, q))
				set_state(n, q, DSM_I);
			dsm_count(&n->c.evict_s, 1);
		} else if (st == DSM_M) {
			evict_m(n, q);
		}
		ring_return(n, q, transient(st) && st != DSM_MI_A);
		pthread_mutex_unlock(plock(n, q));
		if (st == DSM_S || st == DSM_M) {
			dsm_proto_flush(n);
			return;
		}
	}
}

/* ---- the home ---- */

/* The transaction record of p (created if asked), in p's bucket. */
static struct dsm_txn *txn_get(struct dsm_node *n, uint64_t p, bool create)
{
	struct dsm_txn **s = &n->txns[p & (DSM_NLOCKS - 1)], *t;

	for (t = *s; t; t = t->next)
		if (t->page == p)
			return t;
	if (!create)
		return NULL;
	t = calloc(1, sizeof(*t));
	if (!t) {
		dsm_fail(n, "out of memory");
		return NULL;
	}
	t->page = p;
	t->next = *s;
	*s = t;
	return t;
}

static void txn_free(struct dsm_node *n, struct dsm_txn *t)
{
	struct dsm_txn **s = &n->txns[t->page & (DSM_NLOCKS - 1)];

	while (*s != t)
		s = &(*s)->next;
	*s = t->next;
	free(t->data);
	free(t);
}

/* What a grant carries: a page, a zero page, or nothing (UPGRADE). */
struct pdata {
	const uint8_t *buf;
	bool zero;
};

/* Grant M to r: every other copy is gone. */
static void grant_m(struct dsm_node *n, struct dsm_dir *d, uint64_t p, unsigned r, uint8_t kind,
		    struct pdata v)
{
	d->owner = (uint8_t)r;
	d->sharers = 0;
	d->zero = 0;
	if (r != n->self) {
		if (kind == DSM_UPGRADE)
			send_plain(n, r, DSM_UPG_ACK, 0, p);
		else
			send_page(n, r, DSM_DATA, DSM_MSG_F_GRANT_M, p, v.zero ? NULL : v.buf);
		return;
	}
	if (kind == DSM_UPGRADE ? m_protect(n, p, false) : m_install(n, p, v.zero ? NULL : v.buf, 0))
		set_state(n, p, DSM_M);
	/* busy: the end of a transaction that waited for other nodes */
	hold_mark(n, p, d->busy);
	set_lpend(n, p, false);
}

/* Invalidate the remote sharers in inv; grant when they all acked. Takes data. */
static void start_inv(struct dsm_node *n, struct dsm_dir *d, uint64_t p, unsigned r,
		      uint8_t kind, uint8_t *data, bool zero, uint64_t inv)
{
	struct dsm_txn *t = txn_get(n, p, true);

	if (!t) {
		free(data);
		return;
	}
	d->busy = 1;
	t->busy = true;
	t->wait_data = false;
	t->req = (uint8_t)r;
	t->kind = kind;
	t->data = data;
	t->data_zero = zero;
	t->acks = inv;
	if (r == n->self)
		hold_sent(n, p);
	for (unsigned s = 0; s < n->nr_nodes; s++)
		if (inv & bit(s)) {
			send_plain(n, s, DSM_INV, 0, p);
			dsm_count(&n->c.inv_sent, 1);
		}
}

/* Ask the owner for the page; it answers FWD_DATA to the home. */
static void start_fwd(struct dsm_node *n, struct dsm_dir *d, uint64_t p, unsigned r, uint8_t kind)
{
	struct dsm_txn *t = txn_get(n, p, true);

	if (!t)
		return;
	d->busy = 1;
	t->busy = true;
	t->wait_data = true;
	t->req = (uint8_t)r;
	t->kind = kind;
	if (r == n->self)
		hold_sent(n, p);
	send_plain(n, d->owner, kind == DSM_GET_S ? DSM_FWD_GET_S : DSM_FWD_GET_M, 0, p);
}

/* A fault on a page of this cell (model: home_req with r == me). */
static void local_request(struct dsm_node *n, struct dsm_dir *d, uint64_t p, uint8_t want)
{
	uint8_t st = n->pages[p].state;

	if ((want == DSM_GET_S && (st == DSM_S || st == DSM_M)) || st == DSM_M) {
		set_lpend(n, p, false);          /* satisfied meanwhile */
		n->mem.wake(n->mem.ctx, p);
		return;
	}
	if (st == DSM_S) {                       /* upgrade at the home */
		if (d->sharers) {
			dsm_count(&n->c.fault_upgrade, 1);
			start_inv(n, d, p, n->self, DSM_UPGRADE, NULL, false, d->sharers);
		} else {
			dsm_count(&n->c.fault_local, 1);
			grant_m(n, d, p, n->self, DSM_UPGRADE, (struct pdata){ 0 });
		}
		return;
	}
	if (d->owner != DSM_NONE) {
		dsm_count(want == DSM_GET_S ? &n->c.fault_read_miss : &n->c.fault_write_miss, 1);
		start_fwd(n, d, p, n->self, want);
		return;
	}
	/* Absent and nobody writes it: never written, zero. */
	if (!d->zero) {
		dsm_fail(n, "directory: page %#llx valid nowhere", (unsigned long long)p);
		return;
	}
	if (want == DSM_GET_S) {
		dsm_count(&n->c.fault_zero_local, 1);
		/* Nobody else has it: take M, on the shared zero page. */
		if (!d->sharers && m_install(n, p, NULL, DSM_INSTALL_ZERO_RO)) {
			set_state(n, p, DSM_M);
			d->owner = (uint8_t)n->self;
			d->zero = 0;
		} else if (d->sharers && m_install(n, p, NULL, DSM_INSTALL_WP)) {
			set_state(n, p, DSM_S);
		}
		hold_mark(n, p, false);
		set_lpend(n, p, false);
	} else if (!d->sharers) {
		dsm_count(&n->c.fault_zero_local, 1);
		grant_m(n, d, p, n->self, DSM_GET_M, (struct pdata){ .zero = true });
	} else {
		dsm_count(&n->c.fault_write_miss, 1);
		start_inv(n, d, p, n->self, DSM_GET_M, NULL, true, d->sharers);
	}
}

static void home_put_m(struct dsm_node *n, struct dsm_dir *d, uint64_t p, unsigned r,
		       struct pdata v)
{
	if (d->owner == r) {
		d->owner = DSM_NONE;
		d->sharers = 0;
		if (v.zero || !v.buf) {
			d->zero = 1;                  /* the home stays absent */
		} else if (m_install(n, p, v.buf, DSM_INSTALL_WP)) {
			set_state(n, p, DSM_S);
			moved(n, p);
		}
	}
	/* else stale: a FWD_* crossing it took the data from the PUT_M buffer */
	send_plain(n, r, DSM_PUT_ACK, 0, p);
}

static void home_get_s(struct dsm_node *n, struct dsm_dir *d, uint64_t p, unsigned r)
{
	if (d->owner == DSM_NONE) {
		d->sharers |= bit(r);
		if (d->zero)
			send_plain(n, r, DSM_DATA_ZERO, 0, p);
		else if (n->pages[p].state == DSM_S)
			send_local_page(n, r, DSM_DATA, 0, p);
		else
			dsm_fail(n, "directory: page %#llx not at its home", (unsigned long long)p);
	} else if (d->owner == n->self) {
		/* write-protect the home's copy, share it */
		if (!m_protect(n, p, true))
			return;
		set_state(n, p, DSM_S);
		lost(n, p, true);
		d->owner = DSM_NONE;
		d->sharers |= bit(r);
		send_local_page(n, r, DSM_DATA, 0, p);
	} else if (d->owner == r) {
		dsm_fail(n, "node %u asks for page %#llx it owns", r, (unsigned long long)p);
	} else {
		start_fwd(n, d, p, r, DSM_GET_S);
	}
}

static void home_get_m(struct dsm_node *n, struct dsm_dir *d, uint64_t p, unsigned r,
		       uint8_t kind)
{
	struct dsm_out *o;
	uint8_t *buf = NULL;
	uint64_t inv;

	/* an UPGRADE whose S copy was invalidated meanwhile is a GET_M */
	if (kind == DSM_UPGRADE && !(d->owner == DSM_NONE && (d->sharers & bit(r))))
		kind = DSM_GET_M;
	if (d->owner == DSM_NONE) {
		if (kind != DSM_UPGRADE && !d->zero) {
			buf = malloc(DSM_PAGE_SIZE);
			if (!buf || n->pages[p].state != DSM_S || !m_read(n, p, buf)) {
				free(buf);
				dsm_fail(n, "page %#llx: no copy at its home", (unsigned long long)p);
				return;
			}
		}
		/* write-protected already: copied, now drop */
		if (n->pages[p].state == DSM_S) {
			lost(n, p, false);
			if (!m_drop(n, p)) {
				free(buf);
				return;
			}
			set_state(n, p, DSM_I);
		}
		inv = d->sharers & ~bit(r);
		if (inv) {
			start_inv(n, d, p, r, kind, buf, !buf, inv);
			return;
		}
		grant_m(n, d, p, r, kind, (struct pdata){ .buf = buf, .zero = !buf });
		free(buf);
	} else if (d->owner == n->self) {
		/* write-protect, copy into the grant, drop */
		o = out_new(n, r, DSM_DATA, DSM_MSG_F_GRANT_M, p);
		if (!o)
			return;
		if (!m_protect(n, p, true) || !m_read(n, p, o->page) || !m_drop(n, p)) {
			free(o);
			return;
		}
		set_state(n, p, DSM_I);
		lost(n, p, true);
		d->owner = (uint8_t)r;
		d->sharers = 0;
		d->zero = 0;
		if (dsm_page_is_zero(o->page))
			o->msg.type = DSM_DATA_ZERO;
		else
			moved(n, p);
		out_push(n, o);
	} else if (d->owner == r) {
		dsm_fail(n, "node %u asks for page %#llx it owns", r, (unsigned long long)p);
	} else {
		start_fwd(n, d, p, r, DSM_GET_M);
	}
}

/*
 * The home's own copy was granted for a local fault just now: the request
 * waits, first in the queue, until the hold ends (the entry is busy).
 */
static bool start_hold(struct dsm_node *n, struct dsm_dir *d, uint64_t p, unsigned r,
		       uint8_t kind)
{
	uint64_t until = held_until(n, p);
	bool takes = kind == DSM_GET_S ? d->owner == n->self
				       : n->pages[p].state == DSM_S || n->pages[p].state == DSM_M;
	struct dsm_txn *t;
	struct dsm_qent *e;

	if (!until || !takes)
		return false;
	t = txn_get(n, p, true);
	e = calloc(1, sizeof(*e));
	if (!t || !e) {
		free(e);
		dsm_fail(n, "out of memory");
		return true;
	}
	e->src = (uint8_t)r;
	e->kind = kind;
	e->next = t->qhead;
	t->qhead = e;
	if (!t->qtail)
		t->qtail = e;
	d->busy = 1;
	t->busy = true;
	t->wait_data = false;
	t->acks = 0;
	t->kind = DSM_TXN_HOLD;
	t->req = (uint8_t)n->self;
	defer(n, p, n->self, NULL, true, until);
	return true;
}

/* A request for page p from r (r == self: a local fault), the entry idle. */
static void home_request(struct dsm_node *n, struct dsm_dir *d, uint64_t p, unsigned r,
			 uint8_t kind, struct pdata v)
{
	if (r != n->self && kind != DSM_PUT_M && start_hold(n, d, p, r, kind))
		return;
	if (r == n->self)
		local_request(n, d, p, kind);
	else if (kind == DSM_PUT_M)
		home_put_m(n, d, p, r, v);
	else if (kind == DSM_GET_S)
		home_get_s(n, d, p, r);
	else
		home_get_m(n, d, p, r, kind);
}

static void enqueue(struct dsm_node *n, uint64_t p, unsigned r, uint8_t kind, const uint8_t *data,
		    bool zero)
{
	struct dsm_txn *t = txn_get(n, p, true);
	struct dsm_qent *e = calloc(1, sizeof(*e));

	if (!t || !e || (data && !(e->data = malloc(DSM_PAGE_SIZE)))) {
		free(e);
		dsm_fail(n, "out of memory");
		return;
	}
	e->src = (uint8_t)r;
	e->kind = kind;
	e->zero = zero;
	if (data)
		memcpy(e->data, data, DSM_PAGE_SIZE);
	if (t->qtail)
		t->qtail->next = e;
	else
		t->qhead = e;
	t->qtail = e;
	dsm_count(&n->c.queued, 1);
}

/* The transaction is over: serve the queue until a request starts another. */
static void finish(struct dsm_node *n, struct dsm_dir *d, struct dsm_txn *t)
{
	struct dsm_qent *e;

	d->busy = 0;
	t->busy = false;
	t->wait_data = false;
	t->acks = 0;
	free(t->data);
	t->data = NULL;
	while (!d->busy && (e = t->qhead) && !atomic_load(&n->failed)) {
		t->qhead = e->next;
		if (!t->qhead)
			t->qtail = NULL;
		home_request(n, d, t->page, e->src, e->kind,
			     (struct pdata){ .buf = e->data, .zero = e->zero });
		free(e->data);
		free(e);
	}
	if (!d->busy && !t->qhead)
		txn_free(n, t);
}

static int proto_error(struct dsm_node *n, unsigned src, const struct dsm_msg *m, const char *why)
{
	dsm_fail(n, "node %u: %s for page %#llx: %s", src, dsm_msg_type_name(m->type),
		 (unsigned long long)m->page << DSM_PAGE_SHIFT, why);
	return -EINVAL;
}

static int home_receive(struct dsm_node *n, unsigned src, const struct dsm_msg *m,
			const uint8_t *data)
{
	struct dsm_dir *d = dir_of(n, m->page);
	struct dsm_txn *t = txn_get(n, m->page, false);
	bool zero = m->flags & DSM_MSG_F_ZERO;
	uint64_t p = m->page;

	switch (m->type) {
	case DSM_GET_S:
	case DSM_GET_M:
	case DSM_UPGRADE:
	case DSM_PUT_M:
		if (d->busy)
			enqueue(n, p, src, m->type, data, zero);
		else
			home_request(n, d, p, src, m->type, (struct pdata){ .buf = data, .zero = zero });
		return 0;
	case DSM_INV_ACK:
		if (!t || !t->busy || t->wait_data || !(t->acks & bit(src)))
			return proto_error(n, src, m, "not expected");
		t->acks &= ~bit(src);
		if (!t->acks) {
			grant_m(n, d, p, t->req, t->kind,
				(struct pdata){ .buf = t->data, .zero = t->data_zero });
			finish(n, d, t);
		}
		return 0;
	case DSM_FWD_DATA:
		if (!t || !t->busy || !t->wait_data || d->owner != src)
			return proto_error(n, src, m, "not expected");
		if (data)
			moved(n, p);
		if (t->kind == DSM_GET_S) {
			/* the old owner keeps S; the home keeps a copy */
			d->owner = DSM_NONE;
			if (!m_install(n, p, zero ? NULL : data, DSM_INSTALL_WP))
				return -EIO;
			set_state(n, p, DSM_S);
			d->sharers |= bit(src);
			if (t->req == n->self) {
				hold_mark(n, p, true);
				set_lpend(n, p, false);
			} else {
				d->sharers |= bit(t->req);
				send_page(n, t->req, DSM_DATA, 0, p, zero ? NULL : data);
			}
		} else {
			grant_m(n, d, p, t->req, DSM_GET_M, (struct pdata){ .buf = data, .zero = zero });
		}
		finish(n, d, t);
		return 0;
	default:
		return proto_error(n, src, m, "sent to the home");
	}
}

/* ---- as a client of another home ---- */

static int client_grant(struct dsm_node *n, unsigned src, const struct dsm_msg *m,
			const uint8_t *data)
{
	bool gm = m->flags & DSM_MSG_F_GRANT_M;
	uint64_t p = m->page;

	if (n->pages[p].state != (gm ? DSM_IM_D : DSM_IS_D))
		return proto_error(n, src, m, "no such request");
	if (!m_install(n, p, data, gm ? 0 : DSM_INSTALL_WP))
		return -EIO;
	set_state(n, p, gm ? DSM_M : DSM_S);
	hold_mark(n, p, true);
	if (data)
		moved(n, p);
	else
		dsm_count(&n->c.fault_zero_remote, 1);
	return 0;
}

static int client_inv(struct dsm_node *n, unsigned src, const struct dsm_msg *m)
{
	uint64_t p = m->page;

	switch (n->pages[p].state) {
	case DSM_S:
	case DSM_SM_A:
		lost(n, p, n->pages[p].state == DSM_SM_A);
		if (!m_drop(n, p))
			return -EIO;
		set_state(n, p, n->pages[p].state == DSM_S ? DSM_I : DSM_IM_D);
		dsm_count(&n->c.inv_dropped, 1);
		break;
	case DSM_M:
		return proto_error(n, src, m, "page held M");
	default:
		/* not holding it: the sharer set is a superset */
		break;
	}
	send_plain(n, src, DSM_INV_ACK, 0, p);
	return 0;
}

static int client_fwd(struct dsm_node *n, unsigned src, const struct dsm_msg *m)
{
	struct dsm_putm *b;
	struct dsm_out *o;
	uint64_t p = m->page;

	if (n->pages[p].state == DSM_MI_A) {
		/* crossing our PUT_M: answer from its copy */
		b = *putm_slot(n, p);
		send_page(n, src, DSM_FWD_DATA, 0, p, b->zero ? NULL : b->data);
		return 0;
	}
	if (n->pages[p].state != DSM_M)
		return proto_error(n, src, m, "page not owned");
	/* write-protect, copy, (drop) */
	o = out_new(n, src, DSM_FWD_DATA, 0, p);
	if (!o)
		return -ENOMEM;
	if (!m_protect(n, p, true) || !m_read(n, p, o->page) ||
	    (m->type == DSM_FWD_GET_M && !m_drop(n, p))) {
		free(o);
		return -EIO;
	}
	set_state(n, p, m->type == DSM_FWD_GET_M ? DSM_I : DSM_S);
	lost(n, p, true);
	if (dsm_page_is_zero(o->page))
		o->msg.flags |= DSM_MSG_F_ZERO;
	else
		moved(n, p);
	out_push(n, o);
	return 0;
}

/* When m would take p away while it is held here: the hold's end, else 0. */
static uint64_t takeaway_held(struct dsm_node *n, const struct dsm_msg *m)
{
	uint8_t st = n->pages[m->page].state;

	if (m->type == DSM_INV ? st == DSM_S || st == DSM_SM_A : st == DSM_M)
		return held_until(n, m->page);
	return 0;
}

/* INV, FWD_GET_*: held back while the page is fresh here (or after one held back). */
static int client_takeaway(struct dsm_node *n, unsigned src, const struct dsm_msg *m,
			   bool may_defer)
{
	uint64_t p = m->page, until;

	if (may_defer && (n->pages[p].flags & PF_DEFER))
		return defer(n, p, src, m, false, 0) ? 0 : -ENOMEM;
	if (may_defer && (until = takeaway_held(n, m)))
		return defer(n, p, src, m, false, until) ? 0 : -ENOMEM;
	return m->type == DSM_INV ? client_inv(n, src, m) : client_fwd(n, src, m);
}

static int client_receive(struct dsm_node *n, unsigned src, const struct dsm_msg *m,
			  const uint8_t *data)
{
	struct dsm_putm **s, *b;
	uint64_t p = m->page;

	if (src != n->pages[p].home)
		return proto_error(n, src, m, "not from the page's home");
	switch (m->type) {
	case DSM_DATA:
	case DSM_DATA_ZERO:
		return client_grant(n, src, m, data);
	case DSM_UPG_ACK:
		if (n->pages[p].state != DSM_SM_A)
			return proto_error(n, src, m, "no upgrade asked");
		if (!m_protect(n, p, false))
			return -EIO;
		set_state(n, p, DSM_M);
		hold_mark(n, p, true);
		return 0;
	case DSM_INV:
	case DSM_FWD_GET_S:
	case DSM_FWD_GET_M:
		return client_takeaway(n, src, m, true);
	case DSM_PUT_ACK:
		if (n->pages[p].state != DSM_MI_A)
			return proto_error(n, src, m, "no eviction");
		s = putm_slot(n, p);
		b = *s;
		*s = b->next;
		free(b);
		set_state(n, p, DSM_I);
		/* threads that faulted meanwhile fault again, and ask */
		n->mem.wake(n->mem.ctx, p);
		return 0;
	default:
		return proto_error(n, src, m, "sent to a non-home");
	}
}

int dsm_proto_receive(struct dsm_node *n, unsigned src, const struct dsm_msg *m,
		      const uint8_t *data)
{
	uint64_t p = m->page;
	int r;

	if (src >= n->nr_nodes || src == n->self) {
		dsm_fail(n, "message from bad node %u", src);
		return -EINVAL;
	}
	if (p >= n->npages)
		return proto_error(n, src, m, "beyond guest RAM");
	if (dsm_msg_has_page(m) != !!data)
		return proto_error(n, src, m, "payload missing or unexpected");
	dsm_count(&n->c.msgs_rx, 1);
	dsm_count(&n->c.msgs_rx_type[m->type], 1);
	dsm_count(&n->c.bytes_rx, DSM_MSG_HDR_LEN + (data ? DSM_PAGE_SIZE : 0));
	dsm_count(&n->c.pages_rx, !!data);
	atomic_store_explicit(&n->last_rx_ns, dsm_now_ns(), memory_order_relaxed);
	pthread_mutex_lock(plock(n, p));
	if (atomic_load(&n->failed))
		r = -EIO;
	else if (n->pages[p].home == n->self)
		r = home_receive(n, src, m, data);
	else
		r = client_receive(n, src, m, data);
	/* a transition that found the protocol broken failed the node */
	if (!r && atomic_load(&n->failed))
		r = -EINVAL;
	pthread_mutex_unlock(plock(n, p));
	dsm_proto_flush(n);
	return r;
}

/* ---- faults ---- */

static int fault_home(struct dsm_node *n, uint64_t p, bool write, bool prefetch)
{
	struct dsm_page *pg = &n->pages[p];
	struct dsm_dir *d = dir_of(n, p);

	if (pg->state == DSM_M || (!write && pg->state == DSM_S)) {
		dsm_count(&n->c.fault_spurious, 1);
		if (!prefetch)
			n->mem.wake(n->mem.ctx, p);
		return 0;
	}
	if (pg->flags & PF_LPEND) {
		dsm_count(&n->c.fault_joined, 1);
		return 2;
	}
	set_lpend(n, p, true);
	if (d->busy) {
		enqueue(n, p, n->self, write ? DSM_GET_M : DSM_GET_S, NULL, false);
		return 1;
	}
	local_request(n, d, p, write ? DSM_GET_M : DSM_GET_S);
	return (pg->flags & PF_LPEND) ? 1 : 0;
}

static int fault_remote(struct dsm_node *n, uint64_t p, bool write, bool prefetch)
{
	struct dsm_page *pg = &n->pages[p];
	uint8_t st = pg->state;

	if (st == DSM_M || (!write && (st == DSM_S || st == DSM_SM_A))) {
		dsm_count(&n->c.fault_spurious, 1);
		if (!prefetch)
			n->mem.wake(n->mem.ctx, p);
		return 0;
	}
	if (transient(st)) {
		/* the install wakes it (after MI_A: PUT_ACK wakes it to fault again) */
		dsm_count(&n->c.fault_joined, 1);
		return 2;
	}
	if (st == DSM_S) {
		set_state(n, p, DSM_SM_A);
		hold_sent(n, p);
		send_plain(n, pg->home, DSM_UPGRADE, 0, p);
		dsm_count(&n->c.fault_upgrade, 1);
		return 1;
	}
	set_state(n, p, write ? DSM_IM_D : DSM_IS_D);
	ring_push(n, p);
	hold_sent(n, p);
	send_plain(n, pg->home, write ? DSM_GET_M : DSM_GET_S, 0, p);
	dsm_count(write ? &n->c.fault_write_miss : &n->c.fault_read_miss, 1);
	return 1;
}

int dsm_proto_fault(struct dsm_node *n, uint64_t p, bool write, bool prefetch)
{
	bool home = n->pages[p].home == n->self, sent;
	int r;

	if (atomic_load(&n->failed))
		return -EIO;
	if (!home && n->cache_pages && atomic_load(&n->held) >= n->cache_pages &&
	    __atomic_load_n(&n->pages[p].state, __ATOMIC_RELAXED) == DSM_I)
		evict_one(n);
	pthread_mutex_lock(plock(n, p));
	if (atomic_load(&n->failed))
		r = -EIO;
	else
		r = home ? fault_home(n, p, write, prefetch) : fault_remote(n, p, write, prefetch);
	sent = r == 1 && (!home || (n->pages[p].flags & PF_LPEND));
	pthread_mutex_unlock(plock(n, p));
	if (sent && !prefetch && __atomic_load_n(&n->nr_lost, __ATOMIC_RELAXED))
		refetch_lost(n, p);
	if (sent && !prefetch)
		read_ahead(n, p, write);
	dsm_proto_flush(n);
	return r;
}

void dsm_proto_adopt(struct dsm_node *n, uint64_t p)
{
	struct dsm_dir *d = dir_of(n, p);

	pthread_mutex_lock(plock(n, p));
	set_state(n, p, DSM_M);
	d->owner = (uint8_t)n->self;
	d->zero = 0;
	pthread_mutex_unlock(plock(n, p));
}

/* ---- deferred work ---- */

/*
 * Takes the first entry that is due and not behind an earlier entry of
 * the same page (order per page is the protocol's); sets *next to the
 * earliest due time of what stays.
 */
static struct dsm_defer *take_due(struct dsm_node *n, uint64_t now, uint64_t *next)
{
	struct dsm_defer *prev = NULL, *e, *f;

	pthread_mutex_lock(&n->defer_lock);
	for (e = n->defer_head; e; prev = e, e = e->next) {
		bool behind = false;

		for (f = n->defer_head; f != e && !behind; f = f->next)
			behind = f->page == e->page;
		if (behind)
			continue;
		if (e->due_ns <= now) {
			if (prev)
				prev->next = e->next;
			else
				n->defer_head = e->next;
			if (n->defer_tail == e)
				n->defer_tail = prev;
			break;
		}
		if (e->due_ns < *next)
			*next = e->due_ns;
	}
	pthread_mutex_unlock(&n->defer_lock);
	return e;
}

static bool deferred(struct dsm_node *n, uint64_t p)
{
	struct dsm_defer *e;

	pthread_mutex_lock(&n->defer_lock);
	for (e = n->defer_head; e && e->page != p; e = e->next)
		;
	pthread_mutex_unlock(&n->defer_lock);
	return e != NULL;
}

/*
 * e was the first entry of its page: it goes back to the head of the list
 * (still before every later entry of that page) with a new due time.
 */
static void requeue(struct dsm_node *n, struct dsm_defer *e, uint64_t due)
{
	e->due_ns = due;
	pthread_mutex_lock(&n->defer_lock);
	e->next = n->defer_head;
	n->defer_head = e;
	if (!n->defer_tail)
		n->defer_tail = e;
	pthread_mutex_unlock(&n->defer_lock);
}

/* Runs e, or requeues it if its page's hold was extended meanwhile (a burst): true. */
static bool run_deferred(struct dsm_node *n, struct dsm_defer *e)
{
	uint64_t p = e->page, until = 0;
	struct dsm_txn *t;

	pthread_mutex_lock(plock(n, p));
	if (!atomic_load(&n->failed)) {
		if (!e->hold_end) {
			until = takeaway_held(n, &e->msg);
			if (!until)
				client_takeaway(n, e->src, &e->msg, false);
		} else if ((t = txn_get(n, p, false)) && t->busy && t->kind == DSM_TXN_HOLD) {
			until = held_until(n, p);
			if (!until)
				finish(n, dir_of(n, p), t);
		}
	}
	if (until) {
		requeue(n, e, until);
	} else {
		uint64_t now = dsm_node_now(n);

		dsm_count(&n->c.held_ns, now > e->since_ns ? now - e->since_ns : 0);
		if (!deferred(n, p))
			n->pages[p].flags &= ~PF_DEFER;
	}
	pthread_mutex_unlock(plock(n, p));
	dsm_proto_flush(n);
	return until != 0;
}

uint64_t dsm_proto_tick(struct dsm_node *n)
{
	uint64_t now = dsm_node_now(n), next;
	struct dsm_defer *e;

	for (;;) {
		next = UINT64_MAX;
		e = take_due(n, now, &next);
		if (!e)
			break;
		if (!run_deferred(n, e))
			free(e);
	}
	return next == UINT64_MAX ? next : next > now ? next - now : 0;
}

/* For a post-mortem (request timeout): what is in flight, what is busy. */
void dsm_proto_dump(struct dsm_node *n)
{
	static const char *const names[] = { "I", "S", "M", "IS_D", "IM_D", "SM_A", "MI_A" };
	unsigned shown = 0;

	for (uint64_t p = 0; p < n->npages && shown < 16; p++) {
		struct dsm_page *pg = &n->pages[p];
		struct dsm_dir *d = pg->home == n->self ? dir_of(n, p) : NULL;
		struct dsm_txn *t = d ? txn_get(n, p, false) : NULL;

		if (!transient(pg->state) && !pg->flags && !(d && d->busy))
			continue;
		shown++;
		if (!d) {
			dsm_log(n, "page %#llx: %s, home %u", (unsigned long long)p,
				names[pg->state], pg->home);
			continue;
		}
		dsm_log(n, "page %#llx (home): %s%s owner %d sharers %#llx zero %u busy %u "
			"txn req %d kind %s acks %#llx wait_data %d queue %s",
			(unsigned long long)p, names[pg->state],
			(pg->flags & PF_LPEND) ? " lpend" : (pg->flags & PF_DEFER) ? " deferred" : "",
			d->owner == DSM_NONE ? -1 : d->owner, (unsigned long long)d->sharers,
			d->zero, d->busy, t ? t->req : -1,
			t ? dsm_msg_type_name(t->kind) : "-", t ? (unsigned long long)t->acks : 0ULL,
			t ? t->wait_data : 0, t && t->qhead ? "yes" : "no");
	}
}

/* ---- set-up ---- */

int dsm_proto_init(struct dsm_node *n)
{
	uint64_t ndir = 0;

	for (unsigned i = 0; i < n->nr_own; i++) {
		n->own[i].dir_base = ndir;
		ndir += n->own[i].end - n->own[i].start;
	}
	n->dir = calloc(ndir ? ndir : 1, sizeof(*n->dir));
	if (!n->dir)
		return -ENOMEM;
	for (uint64_t i = 0; i < ndir; i++) {
		n->dir[i].owner = DSM_NONE;
		n->dir[i].zero = 1;
	}
	for (unsigned i = 0; i < DSM_NLOCKS; i++)
		pthread_mutex_init(&n->locks[i], NULL);
	pthread_mutex_init(&n->out_lock, NULL);
	pthread_mutex_init(&n->cache_lock, NULL);
	pthread_mutex_init(&n->defer_lock, NULL);
	pthread_mutex_init(&n->lost_lock, NULL);
	atomic_store(&n->ra_last, UINT64_MAX);
	if (n->cfg.hold_us) {
		n->hold_ns = (uint64_t)n->cfg.hold_us * 1000;
		n->hold_max_ns = (uint64_t)n->cfg.hold_max_us * 1000;
		if (n->hold_max_ns < n->hold_ns)
			n->hold_max_ns = n->hold_ns;
		n->turn_ns = (uint64_t)n->cfg.turn_us * 1000;
		if (n->turn_ns && !n->cfg.clock_ns)
			n->turn_offset = dsm_realtime_ns() - dsm_now_ns();
		n->hold = malloc(DSM_HOLD_SLOTS * sizeof(*n->hold));
		if (!n->hold)
			return -ENOMEM;
		for (unsigned i = 0; i < DSM_HOLD_SLOTS; i++)
			n->hold[i] = (struct dsm_hold){ .page = UINT64_MAX };
	}
	if (n->cache_pages) {
		n->ring_cap = n->cache_pages * 2 + 64;
		n->ring = malloc(n->ring_cap * sizeof(*n->ring));
		if (!n->ring)
			return -ENOMEM;
	}
	return 0;
}

void dsm_proto_free(struct dsm_node *n)
{
	struct dsm_out *o;

	for (unsigned i = 0; i < DSM_NLOCKS; i++) {
		while (n->txns[i]) {
			struct dsm_txn *t = n->txns[i];
			struct dsm_qent *e;

			while ((e = t->qhead)) {
				t->qhead = e->next;
				free(e->data);
				free(e);
			}
			txn_free(n, t);
		}
		while (n->putms[i]) {
			struct dsm_putm *b = n->putms[i];

			n->putms[i] = b->next;
			free(b);
		}
		pthread_mutex_destroy(&n->locks[i]);
	}
	while ((o = n->out_head)) {
		n->out_head = o->next;
		free(o);
	}
	while (n->defer_head) {
		struct dsm_defer *e = n->defer_head;

		n->defer_head = e->next;
		free(e);
	}
	pthread_mutex_destroy(&n->out_lock);
	pthread_mutex_destroy(&n->cache_lock);
	pthread_mutex_destroy(&n->defer_lock);
	pthread_mutex_destroy(&n->lost_lock);
	free(n->hold);
	free(n->ring);
	free(n->dir);
}
