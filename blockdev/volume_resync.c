// SPDX-License-Identifier: MIT
/*
 * Resynchronising a store that is back in the replicated volume
 * (docs/volume.md, "Resync"), one step at a time on the maintenance thread.
 *
 * First every pending copy (loaded at attach) is judged under its chunk's
 * exclusive stripe lock, where no write can race the comparison: a clean
 * copy with the generation of the current copies is adopted as it is, any
 * other is marked stale (generation 0) on the store. Until every copy is
 * judged the store's header is left as it was ("frozen"), so a crash in
 * between still finds it outdated. Stale copies are then copied chunk by
 * chunk, each under the exclusive stripe lock, data before the table entry.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blockdev/volume_internal.h"

#define JUDGE_BATCH   256u               /* pending copies judged per step */

/*
 * Under the chunk's exclusive stripe lock. A copy is adopted if it is
 * clean and has the current copies' generation (it then holds what they
 * hold), or if no copy is current and it is at least as new as the failed
 * ones were.
 */
static void judge(struct volume *vol, struct vol_replica *r, uint64_t slot)
{
	const struct vlayout *l = &vol->lay;
	uint64_t c = vlayout_chunk_at(l, r->idx, slot), cand = vol_entry(r, slot);
	uint64_t cur_max = 0, failed_max = 0;
	bool have_cur = false, adopt;

	for (unsigned k = 0; k < l->replicas; k++) {
		struct vol_replica *o = &vol->rep[vlayout_store(l, c, k)];
		uint64_t os, g;

		if (o == r)
			continue;
		os = vlayout_slot(l, c, o->idx);
		g = vmeta_gen(vol_entry(o, os));
		if (vol_current(o, os)) {
			have_cur = true;
			cur_max = g > cur_max ? g : cur_max;
		} else if (vol_state(o) == VOLUME_REPLICA_FAILED) {
			failed_max = g > failed_max ? g : failed_max;
		}
	}
	if (have_cur)
		adopt = vmeta_gen(cand) && !(cand & VMETA_DIRTY) && vmeta_gen(cand) == cur_max;
	else
		adopt = vmeta_gen(cand) && vmeta_gen(cand) >= failed_max;
	if (adopt) {
		vol_bit_clear(r->stale, slot);
		__atomic_fetch_sub(&r->nstale, 1, __ATOMIC_RELEASE);
		if (!have_cur) {
			/* Serialised with recounts, which happen under state_lock. */
			pthread_mutex_lock(&vol->state_lock);
			__atomic_fetch_sub(&vol->unavailable, 1, __ATOMIC_RELEASE);
			pthread_mutex_unlock(&vol->state_lock);
		}
	} else if (cand) {
		vrep_set_entry(r, slot, 0);
	}
}

static bool next_bit(const uint64_t *map, uint64_t n, uint64_t *pos)
{
	for (uint64_t i = *pos; i < n; i++) {
		if (!(i % 64) && !__atomic_load_n(&map[i / 64], __ATOMIC_ACQUIRE)) {
			i += 63;
			continue;
		}
		if (vol_bit(map, i)) {
			*pos = i;
			return true;
		}
	}
	return false;
}

/* Pass one: judge up to a batch of pending copies; unfreeze when all are judged. */
static void judge_some(struct volume *vol, struct vol_replica *r)
{
	uint64_t slot = r->cursor;

	if (!next_bit(r->pending, r->slots, &slot)) {
		/* Nothing after the cursor: start over, or fix a count that cannot be right. */
		if (r->cursor)
			r->cursor = 0;
		else
			__atomic_store_n(&r->npending, 0, __ATOMIC_RELEASE);
		return;
	}
	for (unsigned n = 0; n < JUDGE_BATCH && next_bit(r->pending, r->slots, &slot); n++) {
		uint64_t c = vlayout_chunk_at(&vol->lay, r->idx, slot);

		pthread_rwlock_wrlock(vol_stripe(vol, c));
		/* The copy is judged here: no node reads it under a lease meanwhile. */
		vol_revoke_chunk(vol, r->idx, c);
		if (vol_state(r) != VOLUME_REPLICA_RESYNCING) {
			pthread_rwlock_unlock(vol_stripe(vol, c));
			return;
		}
		judge(vol, r, slot);
		vol_bit_clear(r->pending, slot);
		__atomic_fetch_sub(&r->npending, 1, __ATOMIC_RELEASE);
		pthread_rwlock_unlock(vol_stripe(vol, c));
		slot++;
	}
	r->cursor = slot;
}

static void unfreeze(struct volume *vol, struct vol_replica *r)
{
	int rc = vrep_sync(r);     /* the stale marks, before the header says "in service" */
	char why[160];

	pthread_mutex_lock(&vol->state_lock);
	if (rc && rc != -ENODEV) {
		snprintf(why, sizeof(why), "writing its table: %s", strerror(-rc));
		vol_fail_locked(vol, r, why);
	} else if (vol_state(r) == VOLUME_REPLICA_RESYNCING) {
		__atomic_store_n(&r->frozen, false, __ATOMIC_RELEASE);
		vol_header_round_locked(vol, false, false);
	}
	pthread_mutex_unlock(&vol->state_lock);
	r->cursor = 0;
	vol_log(vol, "%s: %" PRIu64 " chunks current, %" PRIu64 " to copy", r->name,
		r->slots - __atomic_load_n(&r->nstale, __ATOMIC_ACQUIRE),
		__atomic_load_n(&r->nstale, __ATOMIC_ACQUIRE));
}

static struct vol_replica *copy_source(struct volume *vol, struct vol_replica *dst, uint64_t c)
{
	const struct vlayout *l = &vol->lay;

	if (vol->local < l->stores && vol->local != dst->idx &&
	    vlayout_replica_of(l, c, vol->local) >= 0 &&
	    vol_current(&vol->rep[vol->local], vlayout_slot(l, c, vol->local)))
		return &vol->rep[vol->local];
	for (unsigned k = 0; k < l->replicas; k++) {
		struct vol_replica *o = &vol->rep[vlayout_store(l, c, k)];

		if (o != dst && vol_current(o, vlayout_slot(l, c, o->idx)))
			return o;
	}
	return NULL;
}

/* Copies the chunk's bytes from src; -EAGAIN if src failed (another may do). */
static int copy_data(struct volume *vol, struct vol_replica *src, struct vol_replica *dst,
		     uint64_t c)
{
	uint64_t len = vlayout_chunk_len(&vol->lay, c);
	uint64_t from = vlayout_data_offset(&vol->lay, c, src->idx);
	uint64_t to = vlayout_data_offset(&vol->lay, c, dst->idx);

	for (uint64_t pos = 0; pos < len; pos += vol->copy_len) {
		struct iovec iov = { vol->copy_buf, len - pos < vol->copy_len ? len - pos
									       : vol->copy_len };
		int rc = vol_replica_rw(src, false, &iov, 1, from + pos);

		if (rc) {
			if (rc != -ENODEV)
				vol_mark_failed(vol, src, "read at %" PRIu64 ": %s", from + pos,
						strerror(-rc));
			return -EAGAIN;
		}
		rc = vol_replica_rw(dst, true, &iov, 1, to + pos);
		if (rc) {
			if (rc != -ENODEV)
				vol_mark_failed(vol, dst, "resync write at %" PRIu64 ": %s", to + pos,
						strerror(-rc));
			return rc;
		}
	}
	return 0;
}

static int flush_one(struct vol_replica *r)
{
	int rc;

	pthread_rwlock_rdlock(&r->use);
	rc = vol_state(r) == VOLUME_REPLICA_FAILED ? -ENODEV : blockdev_flush(r->bd);
	pthread_rwlock_unlock(&r->use);
	return rc;
}

/*
 * Under the exclusive stripe lock: data, flush, then the entry, so that an
 * entry claiming the source's generation is never ahead of the bytes.
 * Returns 0 when copied, -EAGAIN when no source is available now.
 */
static int copy_chunk(struct volume *vol, struct vol_replica *r, uint64_t slot)
{
	uint64_t c = vlayout_chunk_at(&vol->lay, r->idx, slot);
	struct vol_replica *src;
	int rc;

	for (;;) {
		src = copy_source(vol, r, c);
		if (!src)
			return -EAGAIN;
		rc = copy_data(vol, src, r, c);
		if (rc != -EAGAIN)
			break;
	}
	if (!rc) {
		rc = flush_one(r);
		if (rc && rc != -ENODEV)
			vol_mark_failed(vol, r, "resync flush: %s", strerror(-rc));
	}
	if (!rc) {
		vrep_set_entry(r, slot, vol_entry(src, vlayout_slot(&vol->lay, c, src->idx)));
		rc = vrep_sync(r);
		if (rc && rc != -ENODEV)
			vol_mark_failed(vol, r, "writing its table: %s", strerror(-rc));
	}
	if (rc)
		return rc == -EAGAIN ? -EIO : rc;
	vol_bit_clear(r->stale, slot);
	__atomic_fetch_sub(&r->nstale, 1, __ATOMIC_RELEASE);
	__atomic_fetch_add(&r->resynced, 1, __ATOMIC_RELAXED);
	return 0;
}

/* Copies the next stale chunk that has a source; false if none could be copied. */
static bool copy_next(struct volume *vol, struct vol_replica *r)
{
	uint64_t slot = r->cursor;
	bool wrapped = false;

	for (;;) {
		uint64_t c;
		int rc;

		if (!next_bit(r->stale, r->slots, &slot)) {
			if (wrapped || r->cursor == 0)
				return false;
			wrapped = true;
			slot = 0;
			continue;
		}
		if (wrapped && slot >= r->cursor)
			return false;
		c = vlayout_chunk_at(&vol->lay, r->idx, slot);
		pthread_rwlock_wrlock(vol_stripe(vol, c));
		/* Stale, so not leased; but a revocation still under way must end first. */
		vol_revoke_chunk(vol, r->idx, c);
		rc = vol_state(r) != VOLUME_REPLICA_RESYNCING ? -ENODEV
		     : vol_bit(r->stale, slot) ? copy_chunk(vol, r, slot) : 0;
		pthread_rwlock_unlock(vol_stripe(vol, c));
		if (rc == -EAGAIN) {
			slot++;
			continue;
		}
		r->cursor = slot + 1;
		return rc == 0;
	}
}

static void finish(struct volume *vol, struct vol_replica *r)
{
	bool done;

	pthread_mutex_lock(&vol->state_lock);
	done = vol_state(r) == VOLUME_REPLICA_RESYNCING && !r->frozen &&
	       !__atomic_load_n(&r->nstale, __ATOMIC_ACQUIRE);
	if (done)
		__atomic_store_n(&r->state, VOLUME_REPLICA_LIVE, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&vol->state_lock);
	if (done)
		vol_log(vol, "%s: resync finished, %" PRIu64 " chunks copied since open", r->name,
			__atomic_load_n(&r->resynced, __ATOMIC_RELAXED));
}

/* One step of work for the first store being resynchronised; false if there was none. */
static bool resync_step_locked(struct volume *vol)
{
	for (unsigned i = 0; i < vol->lay.stores; i++) {
		struct vol_replica *r = &vol->rep[i];

		if (vol_state(r) != VOLUME_REPLICA_RESYNCING)
			continue;
		if (__atomic_load_n(&r->npending, __ATOMIC_ACQUIRE)) {
			judge_some(vol, r);
			return true;
		}
		if (__atomic_load_n(&r->frozen, __ATOMIC_ACQUIRE)) {
			unfreeze(vol, r);
			return true;
		}
		if (__atomic_load_n(&r->nstale, __ATOMIC_ACQUIRE)) {
			if (copy_next(vol, r))
				return true;
			continue;        /* blocked: no source for what is left */
		}
		finish(vol, r);
		return true;
	}
	return false;
}

/*
 * attach_lock keeps an attach from resetting a store's resync state (bits,
 * counters, cursor) in the middle of a step: the store may have failed and
 * come back between two checks of its state.
 */
bool vol_resync_step(struct volume *vol)
{
	bool worked;

	pthread_mutex_lock(&vol->attach_lock);
	worked = resync_step_locked(vol);
	pthread_mutex_unlock(&vol->attach_lock);
	return worked;
}
