// SPDX-License-Identifier: MIT
/*
 * Taking a failed store back into the replicated volume: a repaired or new
 * blockdev given by volume_replica_reattach, or the store's own blockdev
 * when the probe finds it answering again (docs/volume.md, "Resync").
 *
 * What the store holds is read and checked first; a refused store is not
 * written. An accepted one is put in service with every copy stale and
 * "pending": the resync (volume_resync.c) judges each copy under its
 * chunk's exclusive lock, where no write can race the comparison.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blockdev/volume_internal.h"

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

/* attach_lock held. */
static int attach_locked(struct volume *vol, unsigned idx, struct blockdev *newbd, char *why,
			 size_t whylen)
{
	struct vol_replica *r = &vol->rep[idx];
	struct attach_scan sc = { 0 };
	struct blockdev *bd;
	int rc = -1;

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
			char fwhy[160];
			int frc;

			vrep_dirty_all_tables(r);
			frc = vrep_sync(r);
			if (frc) {
				snprintf(fwhy, sizeof(fwhy), "formatting it as a new member: %s",
					 strerror(-frc));
				vol_fail_locked(vol, r, fwhy);
			}
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
	free(sc.entries);
	free(sc.block_seq);
	return rc;
}

int vol_attach(struct volume *vol, unsigned idx, struct blockdev *newbd, char *why, size_t whylen)
{
	int rc;

	pthread_mutex_lock(&vol->attach_lock);
	rc = attach_locked(vol, idx, newbd, why, whylen);
	pthread_mutex_unlock(&vol->attach_lock);
	if (!rc)
		vol_maint_kick(vol);
	return rc;
}

/*
 * attach_lock is held across reopen() too: the current blockdev it is
 * shown cannot be replaced and closed under it (only an attach does that).
 */
int vol_probe_store(struct volume *vol, unsigned idx, char *why, size_t whylen)
{
	struct vol_replica *r = &vol->rep[idx];
	struct blockdev *cur, *fresh = NULL;
	int rc = 1;

	pthread_mutex_lock(&vol->attach_lock);
	cur = r->bd;
	if (vol_state(r) != VOLUME_REPLICA_FAILED) {
		rc = 1;
	} else if (vol->reopen &&
		   (rc = vol->reopen(vol->reopen_ctx, idx, cur, &fresh, why, whylen)) != 0) {
		if (rc > 0) {
			rc = attach_locked(vol, idx, fresh, why, whylen);
			if (rc)
				blockdev_close(fresh);   /* refused: nothing was written to it */
		}
	} else {
		rc = cur ? attach_locked(vol, idx, NULL, why, whylen) : 1;
	}
	pthread_mutex_unlock(&vol->attach_lock);
	if (!rc)
		vol_maint_kick(vol);
	return rc < 0 ? -1 : rc;
}
