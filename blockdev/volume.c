// SPDX-License-Identifier: MIT
/*
 * The replicated volume's shared machinery: taking a store out of service,
 * header rounds, closing, statistics. Opening is in volume_open.c, the I/O
 * paths in volume_io.c, resync in volume_resync.c (volume_internal.h says
 * how they fit).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "blockdev/volume_internal.h"

uint64_t vol_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void vol_log(struct volume *vol, const char *fmt, ...)
{
	char msg[512];
	int n;
	va_list ap;

	if (!vol->log)
		return;
	n = snprintf(msg, sizeof(msg), "volume %s: ", vol->name);
	va_start(ap, fmt);
	vsnprintf(msg + n, sizeof(msg) - (size_t)n, fmt, ap);
	va_end(ap);
	vol->log(vol->log_ctx, msg);
}

/* A store out of service has state FAILED; one in service always has a bd. */
static bool in_service(const struct vol_replica *r)
{
	return vol_state(r) != VOLUME_REPLICA_FAILED;
}

static void set_failed_locked(struct volume *vol, struct vol_replica *r, const char *why)
{
	__atomic_store_n(&r->state, VOLUME_REPLICA_FAILED, __ATOMIC_RELEASE);
	vol_log(vol, "%s failed (%s): degraded", r->name, why);
	/*
	 * Before the round publishes the generation that makes its copies
	 * stale, and before any write that missed them completes (those wait
	 * for state_lock in confirm_generation): no node reads them after.
	 */
	vol_revoke_store(vol, r->idx);
}

uint64_t vol_count_unavailable_locked(struct volume *vol)
{
	const struct vlayout *l = &vol->lay;
	uint64_t n = 0;

	for (uint64_t c = 0; c < l->chunks; c++) {
		bool ok = false;

		for (unsigned k = 0; k < l->replicas && !ok; k++) {
			struct vol_replica *r = &vol->rep[vlayout_store(l, c, k)];

			ok = vol_current(r, vlayout_slot(l, c, r->idx));
		}
		n += !ok;
	}
	__atomic_store_n(&vol->unavailable, n, __ATOMIC_RELEASE);
	return n;
}

/*
 * One round, and more while stores fail in it: each loss needs a
 * generation that the lost store has not seen. The generation is
 * published only after it is on every store in service, so a writer that
 * uses it knows a store taken out before cannot have it.
 */
static void round_locked(struct volume *vol, bool clean, bool bump)
{
	for (;;) {
		uint64_t g = vol_gen_now(vol) + (bump ? 1 : 0);
		bool lost = false;

		for (unsigned i = 0; i < vol->lay.stores; i++)
			if (in_service(&vol->rep[i]))
				vol->last_live[i] = g;
		for (unsigned i = 0; i < vol->lay.stores; i++) {
			struct vol_replica *r = &vol->rep[i];

			if (in_service(r) && !r->frozen)
				vrep_put_header(r, clean);
		}
		for (unsigned i = 0; i < vol->lay.stores; i++) {
			struct vol_replica *r = &vol->rep[i];
			char why[160];
			int rc;

			if (!in_service(r) || r->frozen)
				continue;
			rc = vrep_sync(r);
			if (rc && rc != -ENODEV) {
				snprintf(why, sizeof(why), "writing its header: %s", strerror(-rc));
				set_failed_locked(vol, r, why);
				lost = true;
			}
		}
		__atomic_store_n(&vol->gen, g, __ATOMIC_RELEASE);
		if (!lost)
			return;
		bump = true;
	}
}

void vol_header_round_locked(struct volume *vol, bool clean, bool bump)
{
	round_locked(vol, clean, bump);
}

void vol_fail_locked(struct volume *vol, struct vol_replica *r, const char *why)
{
	uint64_t lost;

	if (vol_state(r) == VOLUME_REPLICA_FAILED)
		return;
	set_failed_locked(vol, r, why);
	round_locked(vol, false, true);
	lost = vol_count_unavailable_locked(vol);
	if (lost)
		vol_log(vol, "%" PRIu64 " chunks have no current copy left: I/O to them fails "
			"until a store returns", lost);
}

void vol_mark_failed(struct volume *vol, struct vol_replica *r, const char *fmt, ...)
{
	char why[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	/* Taken even when r is already out: returning means the round is done. */
	pthread_mutex_lock(&vol->state_lock);
	vol_fail_locked(vol, r, why);
	pthread_mutex_unlock(&vol->state_lock);
}

/* Clean close: nothing in flight, so every current copy agrees once flushed. */
static void clear_intent_locked(struct volume *vol)
{
	for (unsigned i = 0; i < vol->lay.stores; i++) {
		struct vol_replica *r = &vol->rep[i];
		char why[160];
		int rc;

		if (!in_service(r))
			continue;
		for (uint64_t s = 0; s < r->slots; s++)
			if (!vol_bit(r->stale, s) && (vol_entry(r, s) & VMETA_DIRTY))
				vrep_set_entry(r, s, vmeta_gen(vol_entry(r, s)));
		rc = vrep_sync(r);
		if (rc && rc != -ENODEV) {
			snprintf(why, sizeof(why), "writing its table at close: %s", strerror(-rc));
			vol_fail_locked(vol, r, why);
		}
	}
}

void vol_free(struct volume *vol)
{
	for (unsigned i = 0; i < vol->lay.stores; i++) {
		blockdev_close(vol->rep[i].bd);
		vrep_destroy(&vol->rep[i]);
	}
	for (unsigned i = 0; vol->stripes && i < vol->nstripes; i++)
		pthread_rwlock_destroy(&vol->stripes[i]);
	free(vol->stripes);
	free(vol->last_write);
	free(vol->copy_buf);
	pthread_mutex_destroy(&vol->state_lock);
	pthread_mutex_destroy(&vol->attach_lock);
	pthread_mutex_destroy(&vol->maint_lock);
	pthread_cond_destroy(&vol->maint_cond);
	free(vol);
}

void volume_close(struct volume *vol)
{
	bool degraded = false;

	if (!vol)
		return;
	vol_maint_stop(vol);
	volume_set_leases(vol, NULL);
	vol_flush_all(vol);
	pthread_mutex_lock(&vol->state_lock);
	clear_intent_locked(vol);
	vol_header_round_locked(vol, true, false);
	for (unsigned i = 0; i < vol->lay.stores; i++)
		degraded |= vol_state(&vol->rep[i]) != VOLUME_REPLICA_LIVE;
	pthread_mutex_unlock(&vol->state_lock);
	vol_log(vol, "closed at generation %" PRIu64 "%s", vol_gen_now(vol),
		degraded ? " (degraded)" : "");
	vpool_stop(&vol->pool);
	vol_free(vol);
}

struct blockdev *volume_blockdev(struct volume *vol)
{
	return &vol->bd;
}

int volume_replica_reattach(struct volume *vol, unsigned idx, struct blockdev *bd, char *err,
			    size_t errlen)
{
	char why[400];

	if (idx >= vol->lay.stores || !bd) {
		snprintf(err, errlen, "volume %s: no store %u", vol->name, idx);
		return -1;
	}
	if (vol_attach(vol, idx, bd, why, sizeof(why))) {
		snprintf(err, errlen, "volume %s: %s: %s", vol->name, vol->rep[idx].name, why);
		return -1;
	}
	return 0;
}

/*
 * A failed store's stale chunks are not tracked as it runs: count those
 * whose current copies are newer than its last known generation (all of
 * them for a store never seen since opening).
 */
static uint64_t known_stale(struct volume *vol, struct vol_replica *r)
{
	const struct vlayout *l = &vol->lay;
	uint64_t n = 0;

	for (uint64_t s = 0; s < r->slots; s++) {
		uint64_t c = vlayout_chunk_at(l, r->idx, s), mine = vmeta_gen(vol_entry(r, s));
		bool newer = false;

		for (unsigned k = 0; k < l->replicas && !newer; k++) {
			struct vol_replica *o = &vol->rep[vlayout_store(l, c, k)];
			uint64_t os = vlayout_slot(l, c, o->idx);

			newer = o != r && vol_current(o, os) && vmeta_gen(vol_entry(o, os)) > mine;
		}
		n += newer;
	}
	return n;
}

void volume_stats(struct volume *vol, struct volume_stats *st)
{
	memset(st, 0, sizeof(*st));
	st->stores = vol->lay.stores;
	st->replicas = vol->lay.replicas;
	st->size = vol->lay.size;
	st->chunk_size = vol->lay.chunk_size;
	st->chunks = vol->lay.chunks;
	st->generation = vol_gen_now(vol);
	st->chunks_unavailable = __atomic_load_n(&vol->unavailable, __ATOMIC_ACQUIRE);
	for (unsigned i = 0; i < vol->lay.stores; i++) {
		struct vol_replica *r = &vol->rep[i];
		struct volume_replica_stats *rs = &st->replica[i];

		rs->state = (enum volume_replica_state)vol_state(r);
		rs->attached = __atomic_load_n(&r->bd, __ATOMIC_ACQUIRE) != NULL;
		rs->chunks = r->slots;
		rs->chunks_stale = rs->state == VOLUME_REPLICA_FAILED ? known_stale(vol, r)
				   : __atomic_load_n(&r->nstale, __ATOMIC_RELAXED);
		rs->chunks_resynced = __atomic_load_n(&r->resynced, __ATOMIC_RELAXED);
		rs->bytes_read = __atomic_load_n(&r->bytes_read, __ATOMIC_RELAXED);
		rs->bytes_written = __atomic_load_n(&r->bytes_written, __ATOMIC_RELAXED);
		rs->errors = __atomic_load_n(&r->errors, __ATOMIC_RELAXED);
		st->degraded |= rs->state != VOLUME_REPLICA_LIVE;
		st->chunks_stale += rs->chunks_stale;
		st->chunks_resynced += rs->chunks_resynced;
	}
}
