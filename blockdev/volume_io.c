// SPDX-License-Identifier: MIT
/*
 * Guest I/O on the replicated volume (docs/volume.md, "I/O paths").
 *
 * A request is cut at chunk boundaries; each piece holds its chunk's
 * stripe lock shared for its whole life, so the resync (exclusive) never
 * changes which copies are current under it.
 *
 * A write goes to every current copy in parallel: the caller's thread does
 * one copy, pool threads the others. Each copy first gets its table entry
 * raised to the volume generation with the write-intent bit, durably, and
 * only then its data: a copy whose data may differ from the others'
 * always says so on its own disk. A copy that fails is taken out of
 * service; the write succeeds if one copy took it.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blockdev/iov_slice.h"
#include "blockdev/volume_internal.h"

#define SMALL_IOVS 16

enum piece_op { OP_WRITE, OP_ZEROES };

struct piece {
	uint64_t chunk;
	uint64_t within;                /* offset in the chunk */
	uint64_t len;
	const struct iovec *iov;        /* OP_WRITE and reads */
	int iovcnt;
	enum piece_op op;
	bool may_unmap;
};

struct write_job {
	struct vpool_job job;           /* first: the pool hands this back */
	struct vol_replica *r;
	const struct piece *p;
	uint64_t slot, gen;
	int rc;
	const char *stage;
};

static void count(uint64_t *ctr, uint64_t n)
{
	__atomic_fetch_add(ctr, n, __ATOMIC_RELAXED);
}

int vol_replica_rw(struct vol_replica *r, bool is_write, const struct iovec *iov, int iovcnt,
		   uint64_t off)
{
	int rc;

	pthread_rwlock_rdlock(&r->use);
	if (vol_state(r) == VOLUME_REPLICA_FAILED)
		rc = -ENODEV;
	else
		rc = is_write ? blockdev_write(r->bd, iov, iovcnt, off)
			      : blockdev_read(r->bd, iov, iovcnt, off);
	pthread_rwlock_unlock(&r->use);
	if (!rc)
		count(is_write ? &r->bytes_written : &r->bytes_read, iov_total(iov, iovcnt));
	else if (rc != -ENODEV)
		count(&r->errors, 1);
	return rc;
}

static int replica_zeroes(struct vol_replica *r, uint64_t off, uint64_t len, bool may_unmap)
{
	int rc;

	pthread_rwlock_rdlock(&r->use);
	if (vol_state(r) == VOLUME_REPLICA_FAILED)
		rc = -ENODEV;
	else
		rc = blockdev_write_zeroes(r->bd, off, len, may_unmap);
	pthread_rwlock_unlock(&r->use);
	if (!rc)
		count(&r->bytes_written, len);
	else if (rc != -ENODEV)
		count(&r->errors, 1);
	return rc;
}

static int replica_flush(struct vol_replica *r)
{
	int rc;

	pthread_rwlock_rdlock(&r->use);
	rc = vol_state(r) == VOLUME_REPLICA_FAILED ? -ENODEV : blockdev_flush(r->bd);
	pthread_rwlock_unlock(&r->use);
	if (rc && rc != -ENODEV)
		count(&r->errors, 1);
	return rc;
}

static uint64_t piece_offset(struct volume *vol, const struct piece *p, unsigned store)
{
	return vlayout_data_offset(&vol->lay, p->chunk, store) + p->within;
}

/* Local copy first, then the primary, then the other replicas in order. */
static unsigned read_order(struct volume *vol, uint64_t chunk, unsigned *order)
{
	const struct vlayout *l = &vol->lay;
	unsigned n = 0;

	if (vol->local < l->stores && vlayout_replica_of(l, chunk, vol->local) >= 0)
		order[n++] = vol->local;
	for (unsigned k = 0; k < l->replicas; k++)
		if (vlayout_store(l, chunk, k) != vol->local)
			order[n++] = vlayout_store(l, chunk, k);
	return n;
}

static int read_piece(struct volume *vol, const struct piece *p)
{
	unsigned order[VLAYOUT_MAX_STORES], n = read_order(vol, p->chunk, order);
	int rc = -EIO;

	pthread_rwlock_rdlock(vol_stripe(vol, p->chunk));
	for (unsigned i = 0; i < n; i++) {
		struct vol_replica *r = &vol->rep[order[i]];
		uint64_t off = piece_offset(vol, p, r->idx);

		if (!vol_current(r, vlayout_slot(&vol->lay, p->chunk, r->idx)))
			continue;
		rc = vol_replica_rw(r, false, p->iov, p->iovcnt, off);
		if (!rc)
			break;
		if (rc != -ENODEV)
			vol_mark_failed(vol, r, "read at %" PRIu64 ": %s", off, strerror(-rc));
		rc = -EIO;
	}
	pthread_rwlock_unlock(vol_stripe(vol, p->chunk));
	return rc;
}

/* For the intent cleaner: when the chunk was last written (monotonic max). */
static void record_write(struct volume *vol, uint64_t chunk)
{
	uint64_t now = vol_now_ns(), cur = __atomic_load_n(&vol->last_write[chunk], __ATOMIC_RELAXED);

	while (cur < now && !__atomic_compare_exchange_n(&vol->last_write[chunk], &cur, now, false,
							 __ATOMIC_RELEASE, __ATOMIC_RELAXED))
		;
}

/*
 * Intent ahead of a sequential writer. Each chunk's first write waits for a
 * table batch (write + flush) on every copy before its data; a stream of
 * 1 MiB writes over fresh chunks was one flush per write (6 MiB/s in the
 * lab, against 150 for a file). When the chunk before this one was written
 * within idle_ms, every copy of each of the next VOL_INTENT_AHEAD chunks is
 * marked as a write would mark it (intent bit, generation raised to the
 * write's), in memory: the copies this write goes to carry the marks in
 * the batch it waits for anyway, so the stream pays one batch per that many
 * chunks. A chunk with a copy out of date is left alone. It is only ever
 * more intent than needed: a crash resyncs those chunks as if written (their
 * copies hold the same bytes), and each real write still marks and syncs its
 * own entries (at once when a batch already made them durable). The chunks
 * count as written now, so the idle cleaner leaves them for idle_ms.
 */
#define VOL_INTENT_AHEAD 16

static bool all_copies_current(struct volume *vol, uint64_t chunk)
{
	const struct vlayout *l = &vol->lay;

	for (unsigned k = 0; k < l->replicas; k++) {
		struct vol_replica *r = &vol->rep[vlayout_store(l, chunk, k)];

		if (!vol_current(r, vlayout_slot(l, chunk, r->idx)))
			return false;
	}
	return true;
}

static void mark_ahead(struct volume *vol, uint64_t chunk, uint64_t gen)
{
	const struct vlayout *l = &vol->lay;
	uint64_t now = vol_now_ns();

	if (!chunk || __atomic_load_n(&vol->last_write[chunk - 1], __ATOMIC_ACQUIRE) +
		      (uint64_t)vol->idle_ms * 1000000 < now)
		return;
	for (uint64_t a = chunk + 1; a <= chunk + VOL_INTENT_AHEAD && a < l->chunks; a++) {
		if (!all_copies_current(vol, a))
			continue;
		record_write(vol, a);
		for (unsigned k = 0; k < l->replicas; k++) {
			struct vol_replica *r = &vol->rep[vlayout_store(l, a, k)];

			vrep_mark_write(r, vlayout_slot(l, a, r->idx), gen);
		}
	}
}

static void write_job_run(struct vpool_job *job)
{
	struct write_job *w = (struct write_job *)job;
	const struct piece *p = w->p;
	struct volume *vol = w->r->vol;
	uint64_t off = piece_offset(vol, p, w->r->idx);

	vrep_mark_write(w->r, w->slot, w->gen);
	w->stage = "marking write intent";
	w->rc = vrep_sync(w->r);
	if (w->rc)
		return;
	w->stage = p->op == OP_WRITE ? "write" : "write-zeroes";
	w->rc = p->op == OP_WRITE ? vol_replica_rw(w->r, true, p->iov, p->iovcnt, off)
				  : replica_zeroes(w->r, off, p->len, p->may_unmap);
}

/*
 * Some copy of the chunk missed this write (out of service, stale, or it
 * just failed). The copies that took it must carry a generation that the
 * one that missed it cannot have, or a later comparison would find them
 * equal. Taking state_lock waits for a failure round in progress, whose
 * generation is then the one to use.
 */
static unsigned confirm_generation(struct volume *vol, struct write_job *jobs, unsigned n)
{
	unsigned ok = 0;
	uint64_t g;

	pthread_mutex_lock(&vol->state_lock);
	g = vol_gen_now(vol);
	pthread_mutex_unlock(&vol->state_lock);
	for (unsigned i = 0; i < n; i++) {
		struct write_job *w = &jobs[i];
		int rc = 0;

		if (w->rc)
			continue;
		if (vmeta_gen(vol_entry(w->r, w->slot)) < g) {
			vrep_mark_write(w->r, w->slot, g);
			rc = vrep_sync(w->r);
		}
		if (rc && rc != -ENODEV)
			vol_mark_failed(vol, w->r, "writing its table: %s", strerror(-rc));
		ok += !rc;
	}
	return ok;
}

/*
 * A copy that did not take this write must not be read by a serving node
 * once the write completes. It was already out of service or stale (its
 * leases revoked then) or failed just now (vol_mark_failed revoked them);
 * this covers any other way and waits for a revocation still under way.
 */
static void revoke_missed(struct volume *vol, uint64_t chunk, const struct write_job *jobs,
			  unsigned n)
{
	const struct vlayout *l = &vol->lay;

	for (unsigned k = 0; k < l->replicas; k++) {
		unsigned s = vlayout_store(l, chunk, k);
		bool took = false;

		for (unsigned i = 0; i < n && !took; i++)
			took = jobs[i].r->idx == s && !jobs[i].rc;
		if (!took)
			vol_revoke_chunk(vol, s, chunk);
	}
}

static int write_piece(struct volume *vol, const struct piece *p)
{
	const struct vlayout *l = &vol->lay;
	struct write_job jobs[VLAYOUT_MAX_STORES];
	struct vpool_batch batch;
	unsigned n = 0, ok = 0;
	uint64_t gen;

	pthread_rwlock_rdlock(vol_stripe(vol, p->chunk));
	gen = vol_gen_now(vol);
	mark_ahead(vol, p->chunk, gen);
	for (unsigned k = 0; k < l->replicas; k++) {
		struct vol_replica *r = &vol->rep[vlayout_store(l, p->chunk, k)];
		uint64_t slot = vlayout_slot(l, p->chunk, r->idx);

		if (vol_current(r, slot))
			jobs[n++] = (struct write_job){ .job.fn = write_job_run, .r = r, .p = p,
							.slot = slot, .gen = gen };
	}
	vpool_batch_init(&batch);
	for (unsigned i = 1; i < n; i++)
		vpool_submit(&vol->pool, &batch, &jobs[i].job);
	if (n)
		write_job_run(&jobs[0].job);
	vpool_batch_wait(&batch);
	vpool_batch_destroy(&batch);
	for (unsigned i = 0; i < n; i++) {
		struct write_job *w = &jobs[i];

		if (!w->rc)
			ok++;
		else if (w->rc != -ENODEV)
			vol_mark_failed(vol, w->r, "%s at %" PRIu64 ": %s", w->stage,
					piece_offset(vol, p, w->r->idx), strerror(-w->rc));
	}
	if (ok < l->replicas)
		revoke_missed(vol, p->chunk, jobs, n);
	if (ok && ok < l->replicas)
		ok = confirm_generation(vol, jobs, n);
	if (ok)
		record_write(vol, p->chunk);
	pthread_rwlock_unlock(vol_stripe(vol, p->chunk));
	return ok ? 0 : -EIO;
}

static struct volume *vol_of(struct blockdev *bd)
{
	return (struct volume *)bd;
}

static bool in_range(struct volume *vol, uint64_t off, uint64_t len)
{
	return off <= vol->lay.size && len <= vol->lay.size - off;
}

/* Cuts [off, off + len) at chunk boundaries and runs each piece. */
static int for_each_piece(struct volume *vol, struct piece *p, const struct iovec *iov,
			  int iovcnt, uint64_t off, uint64_t len, bool is_read)
{
	struct iovec small[SMALL_IOVS], *slice = small;
	uint64_t done = 0;
	int rc = 0;

	if (!in_range(vol, off, len))
		return -EINVAL;
	if (iov && iovcnt > SMALL_IOVS) {
		slice = malloc(sizeof(*slice) * (size_t)iovcnt);
		if (!slice)
			return -ENOMEM;
	}
	while (done < len && !rc) {
		uint64_t pos = off + done;

		p->chunk = pos >> vol->lay.chunk_shift;
		p->within = pos & (vol->lay.chunk_size - 1);
		p->len = vol->lay.chunk_size - p->within < len - done ? vol->lay.chunk_size - p->within
								       : len - done;
		if (iov) {
			p->iov = slice;
			p->iovcnt = iov_slice(iov, iovcnt, done, p->len, slice);
		}
		rc = is_read ? read_piece(vol, p) : write_piece(vol, p);
		done += p->len;
	}
	if (slice != small)
		free(slice);
	return rc;
}

static int vol_read(struct blockdev *bd, const struct iovec *iov, int iovcnt, uint64_t off)
{
	struct piece p = { .len = 0 };

	return for_each_piece(vol_of(bd), &p, iov, iovcnt, off, iov_total(iov, iovcnt), true);
}

static int vol_write(struct blockdev *bd, const struct iovec *iov, int iovcnt, uint64_t off)
{
	struct piece p = { .op = OP_WRITE };

	return for_each_piece(vol_of(bd), &p, iov, iovcnt, off, iov_total(iov, iovcnt), false);
}

static int vol_write_zeroes(struct blockdev *bd, uint64_t off, uint64_t len, bool may_unmap)
{
	struct piece p = { .op = OP_ZEROES, .may_unmap = may_unmap };

	return for_each_piece(vol_of(bd), &p, NULL, 0, off, len, false);
}

/*
 * A discard that some replicas honour and others ignore would leave copies
 * that read differently, which no later resync would notice. Zeroes with
 * unmapping allowed give the same space back where a store can and keep
 * the copies equal; the contract allows zeros after a discard.
 */
static int vol_discard(struct blockdev *bd, uint64_t off, uint64_t len)
{
	return vol_write_zeroes(bd, off, len, true);
}

struct flush_job {
	struct vpool_job job;
	struct vol_replica *r;
	int rc;
};

static void flush_job_run(struct vpool_job *job)
{
	struct flush_job *f = (struct flush_job *)job;

	f->rc = replica_flush(f->r);
}

int vol_flush_all(struct volume *vol)
{
	struct flush_job jobs[VLAYOUT_MAX_STORES];
	struct vpool_batch batch;
	unsigned n = 0, ok = 0;
	bool lost = false;

	for (unsigned i = 0; i < vol->lay.stores; i++)
		if (vol_state(&vol->rep[i]) != VOLUME_REPLICA_FAILED)
			jobs[n++] = (struct flush_job){ .job.fn = flush_job_run, .r = &vol->rep[i] };
	vpool_batch_init(&batch);
	for (unsigned i = 1; i < n; i++)
		vpool_submit(&vol->pool, &batch, &jobs[i].job);
	if (n)
		flush_job_run(&jobs[0].job);
	vpool_batch_wait(&batch);
	vpool_batch_destroy(&batch);
	for (unsigned i = 0; i < n; i++) {
		if (!jobs[i].rc) {
			ok++;
		} else if (jobs[i].rc != -ENODEV) {
			vol_mark_failed(vol, jobs[i].r, "flush: %s", strerror(-jobs[i].rc));
			lost = true;
		}
	}
	/* Writes whose only copy was on a store that failed its flush may be gone. */
	if (!ok || (lost && __atomic_load_n(&vol->unavailable, __ATOMIC_ACQUIRE)))
		return -EIO;
	return 0;
}

static int vol_flush(struct blockdev *bd)
{
	return vol_flush_all(vol_of(bd));
}

static uint64_t vol_size(struct blockdev *bd)
{
	return vol_of(bd)->lay.size;
}

static void vol_close(struct blockdev *bd)
{
	volume_close(vol_of(bd));
}

const struct blockdev_ops vol_blockdev_ops = {
	.read = vol_read,
	.write = vol_write,
	.flush = vol_flush,
	.discard = vol_discard,
	.write_zeroes = vol_write_zeroes,
	.size = vol_size,
	.close = vol_close,
};
