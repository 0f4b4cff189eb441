/* SPDX-License-Identifier: MIT */
#ifndef GRAPPE_VOLUME_INTERNAL_H
#define GRAPPE_VOLUME_INTERNAL_H

/*
 * The replicated volume's state, shared by its files:
 *   volume.c         failures, header rounds, close, stats, the blockdev view
 *   volume_open.c    reading every store, deciding what is current, formatting
 *   volume_metaio.c  one store's metadata: loading it, the group-committed writer
 *   volume_io.c      guest reads, writes, flushes, zeroes
 *   volume_attach.c  taking a failed store back (reattach, probe)
 *   volume_resync.c  judging and copying a returning store's copies
 *   volume_intent.c  clearing idle chunks' write intent
 *   volume_maint.c   the maintenance thread that runs the three above
 *   volume_lease.c   serving nodes' read leases: what is granted, revocations
 *
 * Lock order: attach_lock, a chunk stripe, then state_lock, then a
 * replica's `use` or `mlock` (`use` before `mlock` when both are held). Guest I/O holds its chunk's stripe shared;
 * whoever changes which copies of a chunk are current (the resync) holds it
 * exclusive, so a write never misses a copy that becomes current under it.
 */
#include <pthread.h>
#include <stdarg.h>

#include "blockdev/volume.h"
#include "blockdev/volume_layout.h"
#include "blockdev/volume_meta.h"
#include "blockdev/volume_pool.h"

struct volume;

struct vol_replica {
	struct volume *vol;
	unsigned idx;
	char name[96];                /* "store 1 (/path)" */
	struct blockdev *bd;          /* NULL: nothing attached */
	pthread_rwlock_t use;         /* shared around every I/O on bd; exclusive to replace bd */
	int state;                    /* enum volume_replica_state, atomic */
	uint64_t slots;
	/*
	 * The store's table as it is (or is about to be) on disk: generation
	 * | VMETA_DIRTY per slot. Loaded with atomics; stored under mlock.
	 * A failed store's entries stay as last known: a returning store is
	 * compared with them.
	 */
	uint64_t *entries;
	uint64_t *stale;              /* bit per slot: this copy is not current (atomic) */
	uint64_t *pending;            /* bit per slot: loaded at attach, not judged yet (attach_lock) */
	uint64_t nstale, npending;    /* atomic */
	bool frozen;                  /* pending judgements: header untouched (set under state_lock) */
	uint64_t cursor;              /* resync scan position (attach_lock) */

	/* Metadata writer: one batch in flight, everyone waits for theirs. */
	pthread_mutex_t mlock;
	pthread_cond_t mcond;
	uint8_t *dirty_blocks;        /* per metadata block, 0 = header */
	uint64_t *block_seq;          /* per block: sequence of the newest copy written */
	uint64_t changes, durable;    /* counters of in-memory changes / of those on disk */
	uint64_t epoch;               /* bumps when bd is replaced: old batches are void */
	bool busy;
	int merr;                     /* sticky error of the writer, until reattach */
	struct vmeta_header hdr;      /* what block 0 gets at the next batch */

	uint64_t bytes_read, bytes_written, errors, resynced; /* atomic */
	char probe_note[400];         /* last probe complaint, logged on change */
};

struct volume {
	struct blockdev bd;           /* first: the view given to virtio-blk */
	char name[64];
	void (*log)(void *ctx, const char *msg);
	void *log_ctx;
	struct vlayout lay;
	unsigned local;
	unsigned probe_ms, idle_ms;
	int (*reopen)(void *ctx, unsigned idx, struct blockdev *cur, struct blockdev **out,
		      char *why, size_t whylen);
	void *reopen_ctx;
	uint8_t uuid[16];

	/* Failures, attaches and header rounds. */
	pthread_mutex_t state_lock;
	pthread_mutex_t attach_lock;  /* an attach, or one resync step; before everything else */
	uint64_t gen;                 /* atomic; published after the round that persisted it */
	uint64_t last_live[VOLUME_MAX_STORES]; /* state_lock */
	uint64_t unavailable;         /* atomic: chunks without a current copy */

	struct vol_replica rep[VOLUME_MAX_STORES];

	unsigned nstripes;
	pthread_rwlock_t *stripes;    /* chunk c: stripes[c % nstripes] */
	uint64_t *last_write;         /* per chunk: monotonic ns of the last completed write */

	struct vpool pool;

	pthread_t maint;
	bool maint_running;
	pthread_mutex_t maint_lock;
	pthread_cond_t maint_cond;
	bool maint_stop, maint_kick;
	uint8_t *copy_buf;            /* maintenance thread's resync buffer */
	size_t copy_len;

	struct lease_coord *leases;   /* atomic; NULL: no serving node reads its own copies */
};

static inline bool vol_bit(const uint64_t *map, uint64_t i)
{
	return (__atomic_load_n(&map[i / 64], __ATOMIC_ACQUIRE) >> (i % 64)) & 1;
}

static inline void vol_bit_set(uint64_t *map, uint64_t i)
{
	__atomic_fetch_or(&map[i / 64], 1ull << (i % 64), __ATOMIC_RELEASE);
}

static inline void vol_bit_clear(uint64_t *map, uint64_t i)
{
	__atomic_fetch_and(&map[i / 64], ~(1ull << (i % 64)), __ATOMIC_RELEASE);
}

static inline int vol_state(const struct vol_replica *r)
{
	return __atomic_load_n(&r->state, __ATOMIC_ACQUIRE);
}

static inline uint64_t vol_entry(const struct vol_replica *r, uint64_t slot)
{
	return __atomic_load_n(&r->entries[slot], __ATOMIC_ACQUIRE);
}

static inline uint64_t vol_gen_now(struct volume *vol)
{
	return __atomic_load_n(&vol->gen, __ATOMIC_ACQUIRE);
}

static inline pthread_rwlock_t *vol_stripe(struct volume *vol, uint64_t chunk)
{
	return &vol->stripes[chunk % vol->nstripes];
}

/* Replica r's copy of chunk (slot on r) is current: usable for reads, written by writes. */
static inline bool vol_current(const struct vol_replica *r, uint64_t slot)
{
	return vol_state(r) != VOLUME_REPLICA_FAILED && !vol_bit(r->stale, slot);
}

uint64_t vol_now_ns(void);
void vol_log(struct volume *vol, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Closes the stores still attached and frees everything (threads stopped). */
void vol_free(struct volume *vol);

/*
 * Takes r out of service (idempotent): the volume generation grows and is
 * persisted on the stores still live before anyone uses it. Returns when
 * that is done, even if another thread did it.
 */
void vol_mark_failed(struct volume *vol, struct vol_replica *r, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* The same with state_lock held. */
void vol_fail_locked(struct volume *vol, struct vol_replica *r, const char *why);

/*
 * Under state_lock: writes the header (generation, last_live, clean) to
 * every store in service that is not frozen, with the next generation if
 * bump; a store that fails it is taken out and the round repeats with the
 * next generation.
 */
void vol_header_round_locked(struct volume *vol, bool clean, bool bump);

/* Under state_lock: counts chunks with no current copy (vol->unavailable). */
uint64_t vol_count_unavailable_locked(struct volume *vol);

/* --- volume_metaio.c --- */
int vrep_init(struct vol_replica *r, struct volume *vol, unsigned idx, const char *name);
void vrep_destroy(struct vol_replica *r);
/* Sets an entry in memory; vrep_sync makes it durable. */
void vrep_set_entry(struct vol_replica *r, uint64_t slot, uint64_t entry);
/* Raises the entry's generation to at least gen and sets or keeps VMETA_DIRTY. */
void vrep_mark_write(struct vol_replica *r, uint64_t slot, uint64_t gen);
/* Header content from the volume (caller holds state_lock). */
void vrep_put_header(struct vol_replica *r, bool clean);
/* Every change made before the call is on the store: 0, or a negative errno. */
int vrep_sync(struct vol_replica *r);
/* Marks every table block for writing (formatting). */
void vrep_dirty_all_tables(struct vol_replica *r);
/* bd is being replaced: the writer forgets everything in flight. */
void vrep_new_epoch(struct vol_replica *r);

/*
 * Reads and checks a store's header: VMETA_OK, VMETA_EMPTY, VMETA_INVALID,
 * or VREP_IOERR (also out of memory). why gets the reason, without the
 * store's name.
 */
#define VREP_IOERR (-2)
int vrep_read_header(struct blockdev *bd, struct vmeta_header *h, char *why, size_t whylen);
/* Every table block of a store with header h into entries[] and block_seq[]: 0, VMETA_INVALID or VREP_IOERR. */
int vrep_read_table(struct blockdev *bd, const struct vmeta_header *h, uint64_t *entries,
		    uint64_t *block_seq, char *why, size_t whylen);
/* Checks h against the volume: geometry, UUID, index. */
int vrep_check_header(const struct volume *vol, unsigned idx, const struct vmeta_header *h,
		      char *why, size_t whylen);

/* --- volume_io.c --- */
extern const struct blockdev_ops vol_blockdev_ops;
/* Flushes every store in service; failures take stores out. */
int vol_flush_all(struct volume *vol);
/* Job-level I/O on one replica, with accounting; -ENODEV if it is out of service. */
int vol_replica_rw(struct vol_replica *r, bool is_write, const struct iovec *iov, int iovcnt,
		   uint64_t off);

/* --- volume_attach.c --- */
/* bd == NULL: the replica's own blockdev (the probe). */
int vol_attach(struct volume *vol, unsigned idx, struct blockdev *bd, char *why, size_t whylen);
/*
 * The probe of one failed store (attach_lock taken here): through
 * cfg->reopen if there is one, else its own blockdev. 0 when it is back,
 * 1 when there is nothing to probe (no blockdev, nothing reopened), -1
 * with the reason.
 */
int vol_probe_store(struct volume *vol, unsigned idx, char *why, size_t whylen);

/* --- volume_resync.c --- */
/* One step for the first store being resynchronised; false if there was nothing to do. */
bool vol_resync_step(struct volume *vol);

/* --- volume_intent.c --- */
void vol_clear_idle_intent(struct volume *vol);

/* --- volume_lease.c --- */
/*
 * Revoke serving nodes' read leases (and wait for their acknowledgements)
 * on every copy of a store, or on the region of one chunk's copy: called
 * before that copy stops being current or misses a write.
 */
void vol_revoke_store(struct volume *vol, unsigned store);
void vol_revoke_chunk(struct volume *vol, unsigned store, uint64_t chunk);

/* --- volume_maint.c --- */
int vol_maint_start(struct volume *vol);
void vol_maint_stop(struct volume *vol);
void vol_maint_kick(struct volume *vol);

#endif
