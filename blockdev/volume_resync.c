// SPDX-License-Identifier: MIT
/*
 * Bringing stores back into the replicated volume, and keeping the write
 * intent short-lived (docs/volume.md, "Resync" and "Write intent").
 *
 * Attach loads a returning store's table as it is on its disk and puts the
 * store in service with every copy stale and "pending". The maintenance
 * thread then judges each pending copy under its chunk's exclusive stripe
 * lock, where no write can race the comparison: a clean copy with the
 * generation of the current copies is adopted as it is, any other is
 * marked stale (generation 0) on the store. Until every copy is judged the
 * store's header is left as it was ("frozen"), so a crash in between
 * still finds it outdated. Stale copies are then copied chunk by chunk,
 * each under the exclusive stripe lock, data before the table entry.
 */
#include <errno.h>
#include <inttypes.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "blockdev/volume_internal.h"

#define JUDGE_BATCH   256u               /* pending copies judged per step */
#define COPY_BUF_MAX  (4ull << 20)

/* --- attach --- */

struct attach_scan {
	int kind;                        /* VMETA_OK (a store of this volume) or VMETA_EMPTY */
	struct vmeta_header h;
	uint64_t *entries, *block_seq, maxgen;
};

static int check_bd(struct volume *vol, unsigned idx, struct blockdev *bd, char *why,
		    size_t whylen)
{
	uint64_t need = vlayout_store_bytes(&vol->lay, idx), have = blockdev_size(bd);

	if (bd->read_only) {
		snprintf(why, whylen, "read-only");
		return -1;
	}
	if (have < need) {
		snprintf(why, whylen, "truncated: store is %" PRIu64 " bytes, the volume needs %"
			 PRIu64, have, need);
		return -1;
	}
	if (bd->block_size > vol->bd.block_size) {
		snprintf(why, whylen, "has %u-byte blocks; the volume uses %u", bd->block_size,
			 vol->bd.block_size);
		return -1;
	}
	return 0;
}

/* Reads what the store holds; nothing is written. */
static int scan_store(struct volume *vol, unsigned idx, struct blockdev *bd,
		      struct attach_scan *sc, char *why, size_t whylen)
{
	struct vol_replica *r = &vol->rep[idx];
	char hwhy[300];

	if (check_bd(vol, idx, bd, why, whylen))
		return -1;
	sc->kind = vrep_read_header(bd, &sc->h, hwhy, sizeof(hwhy));
	if (sc->kind == VREP_IOERR || sc->kind == VMETA_INVALID) {
		snprintf(why, whylen, "%s%s", sc->kind == VMETA_INVALID ? "header: " : "", hwhy);
		return -1;
	}
	if (sc->kind == VMETA_EMPTY)
		return 0;
	if (vrep_check_header(vol, idx, &sc->h, why, whylen))
		return -1;
	sc->entries = calloc(r->slots ? r->slots : 1, sizeof(uint64_t));
	sc->block_seq = calloc(1 + vol->lay.table_blocks, sizeof(uint64_t));
	if (!sc->entries || !sc->block_seq) {
		snprintf(why, whylen, "out of memory");
		return -1;
	}
	if (vrep_read_table(bd, &sc->h, sc->entries, sc->block_seq, why, whylen))
		return -1;
	for (uint64_t s = 0; s < r->slots; s++)
		if (vmeta_gen(sc->entries[s]) > sc->maxgen)
			sc->maxgen = vmeta_gen(sc->entries[s]);
	return 0;
}

/*
 * The probe's proof that a failed store works again. A read alone can be
 * answered from the host's page cache while the device still fails (a
 * buffered store on a device-mapper error target), so the header blocks
 * are written back unchanged and flushed: that reaches the device, and
 * rewriting identical bytes changes nothing even if torn.
 */
static int probe_write(struct blockdev *bd, char *why, size_t whylen)
{
	struct iovec iov;
	uint8_t *buf;
	int rc;

	if (posix_memalign((void **)&buf, VLAYOUT_BLOCK, 2 * VLAYOUT_BLOCK)) {
		snprintf(why, whylen, "out of memory");
		return -1;
	}
	iov = (struct iovec){ buf, 2 * VLAYOUT_BLOCK };
	rc = blockdev_read(bd, &iov, 1, 0);
	if (!rc)
		rc = blockdev_write(bd, &iov, 1, 0);
	if (!rc)
		rc = blockdev_flush(bd);
	free(buf);
	if (rc)
		snprintf(why, whylen, "rewriting its header: %s", strerror(-rc));
	return rc ? -1 : 0;
}

/* Under state_lock: the store's data must not be newer than this volume knows. */
static int check_history(struct volume *vol, unsigned idx, const struct attach_scan *sc,
			 char *why, size_t whylen)
{
	if (sc->kind == VMETA_OK && sc->maxgen > vol->last_live[idx]) {
		snprintf(why, whylen, "split brain: it holds data of generation %" PRIu64 " but was "
			 "last live in this volume at generation %" PRIu64 " (it was used without "
			 "the others); zero its header to rebuild it", sc->maxgen,
			 vol->last_live[idx]);
		return -1;
	}
	return 0;
}

static void set_all_bits(uint64_t *map, uint64_t n, bool on)
{
	for (uint64_t i = 0; i < (n + 63) / 64; i++)
		__atomic_store_n(&map[i], 0, __ATOMIC_RELAXED);
	for (uint64_t i = 0; on && i < n; i++)
		vol_bit_set(map, i);
}

/* Under state_lock: replaces the store's blockdev and puts it in service, all stale. */
static void install(struct volume *vol, struct vol_replica *r, struct blockdev *bd,
		    const struct attach_scan *sc)
{
	bool valid = sc->kind == VMETA_OK;
	struct blockdev *old;

	/* Waits for stragglers of the old blockdev; nothing new starts on a failed store. */
	pthread_rwlock_wrlock(&r->use);
	vrep_new_epoch(r);
	old = r->bd;
	__atomic_store_n(&r->bd, bd, __ATOMIC_RELEASE);
	pthread_rwlock_unlock(&r->use);
	if (old && old != bd)
		blockdev_close(old);
	pthread_mutex_lock(&r->mlock);
	for (uint64_t s = 0; s < r->slots; s++)
		__atomic_store_n(&r->entries[s], valid ? sc->entries[s] : 0, __ATOMIC_RELEASE);
	for (uint64_t b = 0; b <= vol->lay.table_blocks; b++)
		r->block_seq[b] = valid ? sc->block_seq[b] : 0;
	pthread_mutex_unlock(&r->mlock);
	set_all_bits(r->stale, r->slots, true);
	set_all_bits(r->pending, r->slots, valid);
	__atomic_store_n(&r->nstale, r->slots, __ATOMIC_RELEASE);
	__atomic_store_n(&r->npending, valid ? r->slots : 0, __ATOMIC_RELEASE);
	r->cursor = 0;
	__atomic_store_n(&r->frozen, valid, __ATOMIC_RELEASE);
	vol->last_live[r->idx] = vol_gen_now(vol);
	__atomic_store_n(&r->state, VOLUME_REPLICA_RESYNCING, __ATOMIC_RELEASE);
}

int vol_attach(struct volume *vol, unsigned idx, struct blockdev *newbd, char *why, size_t whylen)
{
	struct vol_replica *r = &vol->rep[idx];
	struct attach_scan sc = { 0 };
	struct blockdev *bd;
	int rc = -1;

	pthread_mutex_lock(&vol->attach_lock);
	bd = newbd ? newbd : r->bd;
	if (vol_state(r) != VOLUME_REPLICA_FAILED)
		snprintf(why, whylen, "is in service; only a failed store can be attached");
	else if (!bd)
		snprintf(why, whylen, "has no blockdev to probe");
	else if (!scan_store(vol, idx, bd, &sc, why, whylen) &&
		 (newbd || sc.kind != VMETA_OK || !probe_write(bd, why, whylen)))
		rc = 0;
	if (rc)
		goto out;
	pthread_mutex_lock(&vol->state_lock);
	rc = check_history(vol, idx, &sc, why, whylen);
	if (!rc) {
		install(vol, r, bd, &sc);
		if (sc.kind == VMETA_EMPTY) {
			int src;

			vrep_dirty_all_tables(r);
			src = vrep_sync(r);
			if (src)
				vol_fail_locked(vol, r, "formatting it as a new member failed");
		}
		/* The others record it live; a new member gets its first header. */
		if (vol_state(r) != VOLUME_REPLICA_FAILED)
			vol_header_round_locked(vol, false, false);
	}
	pthread_mutex_unlock(&vol->state_lock);
	if (!rc)
		vol_log(vol, "%s %s: %" PRIu64 " chunks to check and resynchronise", r->name,
			sc.kind == VMETA_EMPTY ? "joins as a new member" : "returned", r->slots);
out:
	pthread_mutex_unlock(&vol->attach_lock);
	free(sc.entries);
	free(sc.block_seq);
	if (!rc)
		vol_maint_kick(vol);
	return rc;
}

/* --- judging a returning store's copies --- */

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

/* --- copying stale chunks --- */

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
static bool resync_step(struct volume *vol)
{
	bool worked;

	pthread_mutex_lock(&vol->attach_lock);
	worked = resync_step_locked(vol);
	pthread_mutex_unlock(&vol->attach_lock);
	return worked;
}

/* --- probing failed stores --- */

static void probe(struct volume *vol)
{
	for (unsigned i = 0; i < vol->lay.stores; i++) {
		struct vol_replica *r = &vol->rep[i];
		char why[400];

		if (vol_state(r) != VOLUME_REPLICA_FAILED || !__atomic_load_n(&r->bd, __ATOMIC_ACQUIRE))
			continue;
		if (!vol_attach(vol, i, NULL, why, sizeof(why))) {
			r->probe_note[0] = 0;
			continue;
		}
		if (strcmp(why, r->probe_note)) {
			snprintf(r->probe_note, sizeof(r->probe_note), "%s", why);
			vol_log(vol, "%s is still out of service: %s", r->name, why);
		}
	}
}

/* --- clearing write intent --- */

static bool chunk_dirty(struct volume *vol, uint64_t c)
{
	const struct vlayout *l = &vol->lay;

	for (unsigned k = 0; k < l->replicas; k++) {
		struct vol_replica *r = &vol->rep[vlayout_store(l, c, k)];
		uint64_t slot = vlayout_slot(l, c, r->idx);

		if (vol_current(r, slot) && (vol_entry(r, slot) & VMETA_DIRTY))
			return true;
	}
	return false;
}

static bool idle_since(struct volume *vol, uint64_t c, uint64_t now)
{
	uint64_t lw = __atomic_load_n(&vol->last_write[c], __ATOMIC_ACQUIRE);

	return lw + (uint64_t)vol->idle_ms * 1000000 <= now;
}

static void clear_chunk(struct volume *vol, uint64_t c)
{
	const struct vlayout *l = &vol->lay;

	for (unsigned k = 0; k < l->replicas; k++) {
		struct vol_replica *r = &vol->rep[vlayout_store(l, c, k)];
		uint64_t slot = vlayout_slot(l, c, r->idx), e = vol_entry(r, slot);

		if (vol_current(r, slot) && (e & VMETA_DIRTY))
			vrep_set_entry(r, slot, vmeta_gen(e));
	}
}

/*
 * Chunks idle for idle_ms whose writes all completed before a flush that
 * succeeded are the same on every current copy: their intent can go. The
 * exclusive stripe lock (tried, never waited for) keeps writes out while
 * the entries change; a write that comes after sets the bit again, and its
 * table batch is ordered after this one.
 */
static void clean_idle(struct volume *vol)
{
	uint64_t now = vol_now_ns(), start;
	bool any = false;

	for (uint64_t c = 0; c < vol->lay.chunks && !any; c++)
		any = idle_since(vol, c, now) && chunk_dirty(vol, c);
	if (!any)
		return;
	start = vol_now_ns();
	if (vol_flush_all(vol))
		return;
	for (uint64_t c = 0; c < vol->lay.chunks; c++) {
		pthread_rwlock_t *lock = vol_stripe(vol, c);

		if (!chunk_dirty(vol, c) || !idle_since(vol, c, start))
			continue;
		if (pthread_rwlock_trywrlock(lock))
			continue;
		if (__atomic_load_n(&vol->last_write[c], __ATOMIC_ACQUIRE) < start)
			clear_chunk(vol, c);
		pthread_rwlock_unlock(lock);
	}
	for (unsigned i = 0; i < vol->lay.stores; i++) {
		struct vol_replica *r = &vol->rep[i];
		int rc;

		if (vol_state(r) == VOLUME_REPLICA_FAILED)
			continue;
		rc = vrep_sync(r);
		if (rc && rc != -ENODEV)
			vol_mark_failed(vol, r, "writing its table: %s", strerror(-rc));
	}
}

/* --- the thread --- */

static uint64_t clean_period_ms(const struct volume *vol)
{
	uint64_t p = vol->idle_ms / 2;

	return p < 10 ? 10 : p > 1000 ? 1000 : p;
}

static void wait_until(struct volume *vol, uint64_t deadline_ns)
{
	struct timespec ts;

	pthread_mutex_lock(&vol->maint_lock);
	if (!vol->maint_stop && !vol->maint_kick) {
		ts.tv_sec = (time_t)(deadline_ns / 1000000000);
		ts.tv_nsec = (long)(deadline_ns % 1000000000);
		pthread_cond_timedwait(&vol->maint_cond, &vol->maint_lock, &ts);
	}
	vol->maint_kick = false;
	pthread_mutex_unlock(&vol->maint_lock);
}

static bool stopping(struct volume *vol)
{
	bool stop;

	pthread_mutex_lock(&vol->maint_lock);
	stop = vol->maint_stop;
	pthread_mutex_unlock(&vol->maint_lock);
	return stop;
}

static void *maint_main(void *arg)
{
	struct volume *vol = arg;
	uint64_t next_probe = 0, next_clean = vol_now_ns() + clean_period_ms(vol) * 1000000;

	while (!stopping(vol)) {
		uint64_t now = vol_now_ns();

		if (now >= next_probe) {
			probe(vol);
			next_probe = now + (uint64_t)vol->probe_ms * 1000000;
		}
		if (now >= next_clean) {
			clean_idle(vol);
			next_clean = now + clean_period_ms(vol) * 1000000;
		}
		if (resync_step(vol)) {
			sched_yield();      /* guest I/O waiting on a stripe goes first */
			continue;
		}
		wait_until(vol, next_probe < next_clean ? next_probe : next_clean);
	}
	return NULL;
}

int vol_maint_start(struct volume *vol)
{
	pthread_condattr_t attr;
	int rc;

	vol->copy_len = vol->lay.chunk_size < COPY_BUF_MAX ? vol->lay.chunk_size : COPY_BUF_MAX;
	if (posix_memalign((void **)&vol->copy_buf, VLAYOUT_BLOCK, vol->copy_len))
		return -ENOMEM;
	/* Deadlines are CLOCK_MONOTONIC, like vol_now_ns. */
	pthread_cond_destroy(&vol->maint_cond);
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&vol->maint_cond, &attr);
	pthread_condattr_destroy(&attr);
	vol->maint_stop = vol->maint_kick = false;
	rc = pthread_create(&vol->maint, NULL, maint_main, vol);
	if (rc)
		return -rc;
	vol->maint_running = true;
	return 0;
}

void vol_maint_stop(struct volume *vol)
{
	if (!vol->maint_running)
		return;
	pthread_mutex_lock(&vol->maint_lock);
	vol->maint_stop = true;
	pthread_cond_broadcast(&vol->maint_cond);
	pthread_mutex_unlock(&vol->maint_lock);
	pthread_join(vol->maint, NULL);
	vol->maint_running = false;
}

void vol_maint_kick(struct volume *vol)
{
	pthread_mutex_lock(&vol->maint_lock);
	vol->maint_kick = true;
	pthread_cond_broadcast(&vol->maint_cond);
	pthread_mutex_unlock(&vol->maint_lock);
}
