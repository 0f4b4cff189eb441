// SPDX-License-Identifier: MIT
/*
 * Read-lease coordinator (lease_coord.h, docs/volume.md "Read leases").
 *
 * Grants and revocations are numbered under the coordinator's lock and
 * sent after it is released (the fabric thread takes that lock, and a
 * send may wait for the peer): a node ignores a grant numbered below a
 * revocation of the same lease that it has already seen, so the order in
 * which they arrive does not matter. A revoker waits, lock released, until
 * the holder's ACK names its revocation or the holder is declared dead.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "blockdev/lease_coord.h"

#define MAX_NODES 64
#define SLOW_ACK_S 5

struct revoke_wait {
	struct revoke_wait *next;
	unsigned store;
	uint64_t region;              /* or LEASE_ALL_REGIONS */
	uint64_t seq;
	bool done;
};

struct lease_coord {
	struct lease_coord_config c;
	uint64_t regions;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	lease_current_fn current;     /* NULL: no volume bound */
	void *current_ctx;
	uint64_t *leased[LEASE_MAX_STORES]; /* bit per region, stores with a holder */
	uint64_t nleased[LEASE_MAX_STORES];
	bool dead[MAX_NODES];
	uint64_t seq;
	struct revoke_wait *waits;
	struct lease_coord_stats st;
};

static void lc_log(struct lease_coord *lc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void lc_log(struct lease_coord *lc, const char *fmt, ...)
{
	char msg[256];
	va_list ap;

	if (!lc->c.log)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	lc->c.log(lc->c.ctx, msg);
}

static bool bit(const uint64_t *map, uint64_t i)
{
	return (map[i / 64] >> (i % 64)) & 1;
}

int lease_coord_create(const struct lease_coord_config *cfg, struct lease_coord **out,
		       char *err, size_t errlen)
{
	struct lease_coord *lc;
	unsigned rc = cfg->region_chunks ? cfg->region_chunks : LEASE_REGION_CHUNKS;

	*out = NULL;
	if (!cfg->send || !cfg->stores || cfg->stores > LEASE_MAX_STORES || !cfg->chunks) {
		snprintf(err, errlen, "read leases: bad configuration");
		return -1;
	}
	lc = calloc(1, sizeof(*lc));
	if (!lc)
		goto nomem;
	lc->c = *cfg;
	lc->c.region_chunks = rc;
	lc->regions = (cfg->chunks + rc - 1) / rc;
	pthread_mutex_init(&lc->lock, NULL);
	pthread_cond_init(&lc->cond, NULL);
	for (unsigned s = 0; s < cfg->stores; s++) {
		if (cfg->holder[s] == LEASE_NO_HOLDER)
			continue;
		if (cfg->holder[s] >= MAX_NODES) {
			snprintf(err, errlen, "read leases: store %u: node %u out of range", s,
				 cfg->holder[s]);
			lease_coord_destroy(lc);
			return -1;
		}
		lc->leased[s] = calloc((lc->regions + 63) / 64, sizeof(uint64_t));
		if (!lc->leased[s]) {
			lease_coord_destroy(lc);
			goto nomem;
		}
	}
	*out = lc;
	return 0;
nomem:
	snprintf(err, errlen, "read leases: out of memory");
	return -1;
}

void lease_coord_bind(struct lease_coord *lc, lease_current_fn current, void *ctx)
{
	pthread_mutex_lock(&lc->lock);
	lc->current = current;
	lc->current_ctx = ctx;
	pthread_mutex_unlock(&lc->lock);
}

/* One message to node, without the lock. */
static void send_msg(struct lease_coord *lc, unsigned node, struct lease_msg *m)
{
	uint8_t buf[LEASE_MSG_LEN];
	struct iovec iov = { .iov_base = buf, .iov_len = sizeof(buf) };
	const char *why;
	int rc;

	m->volume = lc->c.volume;
	if (lease_msg_encode(m, buf, &why)) {
		lc_log(lc, "read leases: not sending %s: %s", lease_msg_type_name(m->type), why);
		return;
	}
	rc = lc->c.send(lc->c.ctx, node, m->type, 0, &iov, 1);
	if (rc)
		lc_log(lc, "read leases: %s to node %u: %s", lease_msg_type_name(m->type), node,
		       strerror(-rc));
}

static bool overlaps(const struct revoke_wait *w, unsigned store, uint64_t region)
{
	return w->store == store && (w->region == LEASE_ALL_REGIONS ||
				     region == LEASE_ALL_REGIONS || w->region == region);
}

static bool earlier_pending(struct lease_coord *lc, unsigned store, uint64_t region)
{
	for (struct revoke_wait *w = lc->waits; w; w = w->next)
		if (!w->done && overlaps(w, store, region))
			return true;
	return false;
}

/* Under lock: clears what (store, region) covers; whether anything was leased. */
static bool drop_leases_locked(struct lease_coord *lc, unsigned store, uint64_t region)
{
	uint64_t *map = lc->leased[store];
	uint64_t had = lc->nleased[store];

	if (region == LEASE_ALL_REGIONS) {
		memset(map, 0, (lc->regions + 63) / 64 * sizeof(uint64_t));
		lc->nleased[store] = 0;
	} else if (bit(map, region)) {
		map[region / 64] &= ~(1ull << (region % 64));
		lc->nleased[store]--;
	}
	return lc->nleased[store] != had;
}

static void unlink_wait(struct lease_coord *lc, struct revoke_wait *w)
{
	struct revoke_wait **pp = &lc->waits;

	while (*pp != w)
		pp = &(*pp)->next;
	*pp = w->next;
}

/* Under lock: until w is acknowledged or its holder dead. */
static void wait_ack_locked(struct lease_coord *lc, struct revoke_wait *w, unsigned node)
{
	time_t start = time(NULL);
	bool said = false;

	while (!w->done && !lc->dead[node]) {
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += 1;
		pthread_cond_timedwait(&lc->cond, &lc->lock, &ts);
		if (!said && !w->done && time(NULL) - start >= SLOW_ACK_S) {
			/* Proceeding would let node read a stale copy: only its death ends this. */
			lc_log(lc, "read leases: node %u has not acknowledged revocation %" PRIu64
			       " of store %u for %d s; still waiting", node, w->seq, w->store,
			       SLOW_ACK_S);
			said = true;
		}
	}
}

void lease_coord_revoke(struct lease_coord *lc, unsigned store, uint64_t region)
{
	struct revoke_wait w = { .store = store, .region = region };
	unsigned node;

	if (store >= lc->c.stores || !lc->leased[store] ||
	    (region != LEASE_ALL_REGIONS && region >= lc->regions))
		return;
	node = lc->c.holder[store];
	pthread_mutex_lock(&lc->lock);
	if (!drop_leases_locked(lc, store, region) || lc->dead[node]) {
		/* Not leased now; a revocation of it still in flight must end first. */
		while (earlier_pending(lc, store, region) && !lc->dead[node])
			pthread_cond_wait(&lc->cond, &lc->lock);
		pthread_mutex_unlock(&lc->lock);
		return;
	}
	w.seq = ++lc->seq;
	w.next = lc->waits;
	lc->waits = &w;
	lc->st.revoked++;
	pthread_mutex_unlock(&lc->lock);
	/* An ACK that comes before the lock is taken again finds w linked. */
	send_msg(lc, node, &(struct lease_msg){ .type = LEASE_MSG_REVOKE, .store = store,
						.region = region, .seq = w.seq });
	pthread_mutex_lock(&lc->lock);
	wait_ack_locked(lc, &w, node);
	unlink_wait(lc, &w);
	/* Someone may wait for this one to end (earlier_pending). */
	pthread_cond_broadcast(&lc->cond);
	pthread_mutex_unlock(&lc->lock);
}

void lease_coord_revoke_chunk(struct lease_coord *lc, unsigned store, uint64_t chunk)
{
	if (chunk < lc->c.chunks)
		lease_coord_revoke(lc, store, chunk / lc->c.region_chunks);
}

/* Under lock: whether the holder may read its copies of the region. */
static bool grantable_locked(struct lease_coord *lc, unsigned store, uint64_t region)
{
	uint64_t first = region * lc->c.region_chunks;
	uint64_t count = lc->c.chunks - first < lc->c.region_chunks ? lc->c.chunks - first
								     : lc->c.region_chunks;

	return lc->current && lc->current(lc->current_ctx, store, first, count);
}

static void on_request(struct lease_coord *lc, unsigned src, const struct lease_msg *m)
{
	struct lease_msg r = { .type = LEASE_MSG_GRANT, .store = m->store, .region = m->region,
			       .status = LEASE_REFUSED };

	if (m->store >= lc->c.stores || lc->c.holder[m->store] != src || m->region >= lc->regions) {
		lc_log(lc, "read leases: node %u asked for store %u region %" PRIu64
		       ", which it cannot hold", src, m->store, m->region);
		return;
	}
	pthread_mutex_lock(&lc->lock);
	if (!lc->dead[src] && grantable_locked(lc, m->store, m->region)) {
		if (!bit(lc->leased[m->store], m->region)) {
			lc->leased[m->store][m->region / 64] |= 1ull << (m->region % 64);
			lc->nleased[m->store]++;
		}
		r.status = LEASE_GRANTED;
		lc->st.granted++;
	} else {
		lc->st.refused++;
	}
	r.seq = ++lc->seq;
	pthread_mutex_unlock(&lc->lock);
	send_msg(lc, src, &r);
}

static void on_ack(struct lease_coord *lc, unsigned src, const struct lease_msg *m)
{
	bool found = false;

	pthread_mutex_lock(&lc->lock);
	for (struct revoke_wait *w = lc->waits; w; w = w->next) {
		if (w->seq == m->seq && w->store == m->store && lc->c.holder[w->store] == src) {
			w->done = found = true;
			pthread_cond_broadcast(&lc->cond);
		}
	}
	pthread_mutex_unlock(&lc->lock);
	if (!found)
		lc_log(lc, "read leases: node %u acknowledged revocation %" PRIu64
		       ", which is not waited for", src, m->seq);
}

void lease_coord_receive(struct lease_coord *lc, unsigned src, uint16_t type,
			 const void *payload, size_t len)
{
	struct lease_msg m = { .type = 0 };
	const char *why = NULL;

	if (src >= MAX_NODES)
		why = "node out of range";
	else if (!lease_msg_to_coordinator(type))
		why = "not for a coordinator";
	else if (!lease_msg_decode(type, payload, len, &m, &why) && m.volume != lc->c.volume)
		why = "another volume";
	if (why) {
		lc_log(lc, "read leases: dropped a %s (%zu bytes) from node %u: %s",
		       lease_msg_type_name(type), len, src, why);
		return;
	}
	if (type == LEASE_MSG_REQUEST)
		on_request(lc, src, &m);
	else
		on_ack(lc, src, &m);
}

void lease_coord_peer_down(struct lease_coord *lc, unsigned node)
{
	if (node >= MAX_NODES)
		return;
	pthread_mutex_lock(&lc->lock);
	lc->dead[node] = true;
	for (unsigned s = 0; s < lc->c.stores; s++)
		if (lc->leased[s] && lc->c.holder[s] == node)
			drop_leases_locked(lc, s, LEASE_ALL_REGIONS);
	pthread_cond_broadcast(&lc->cond);
	pthread_mutex_unlock(&lc->lock);
}

void lease_coord_stats(struct lease_coord *lc, struct lease_coord_stats *st)
{
	pthread_mutex_lock(&lc->lock);
	*st = lc->st;
	st->leases = 0;
	for (unsigned s = 0; s < lc->c.stores; s++)
		st->leases += lc->nleased[s];
	pthread_mutex_unlock(&lc->lock);
}

void lease_coord_destroy(struct lease_coord *lc)
{
	if (!lc)
		return;
	for (unsigned s = 0; s < LEASE_MAX_STORES; s++)
		free(lc->leased[s]);
	pthread_mutex_destroy(&lc->lock);
	pthread_cond_destroy(&lc->cond);
	free(lc);
}
