// SPDX-License-Identifier: MIT
/*
 * One store's metadata in the replicated volume: reading and checking it,
 * and writing it back.
 *
 * Writes are group-committed: a change is made in memory (entries[],
 * the header fields), its block is marked, and vrep_sync() returns once a
 * batch that contains the change is written and flushed. One batch is in
 * flight per store at a time, which is what makes the two-copy scheme safe:
 * two writes of the same block can never race for the same copy, and every
 * batch encodes the newest in-memory state, so a later batch contains every
 * earlier change.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blockdev/volume_internal.h"

static uint64_t nblocks(const struct volume *vol)
{
	return 1 + vol->lay.table_blocks;
}

int vrep_init(struct vol_replica *r, struct volume *vol, unsigned idx, const char *name)
{
	uint64_t words;

	memset(r, 0, sizeof(*r));
	r->vol = vol;
	r->idx = idx;
	if (name)
		snprintf(r->name, sizeof(r->name), "store %u (%s)", idx, name);
	else
		snprintf(r->name, sizeof(r->name), "store %u", idx);
	r->slots = vlayout_slots(&vol->lay, idx);
	words = (r->slots + 63) / 64;
	r->entries = calloc(r->slots ? r->slots : 1, sizeof(uint64_t));
	r->stale = calloc(words ? words : 1, sizeof(uint64_t));
	r->pending = calloc(words ? words : 1, sizeof(uint64_t));
	r->dirty_blocks = calloc(nblocks(vol), 1);
	r->block_seq = calloc(nblocks(vol), sizeof(uint64_t));
	r->state = VOLUME_REPLICA_FAILED;
	pthread_rwlock_init(&r->use, NULL);
	pthread_mutex_init(&r->mlock, NULL);
	pthread_cond_init(&r->mcond, NULL);
	if (!r->entries || !r->stale || !r->pending || !r->dirty_blocks || !r->block_seq)
		return -ENOMEM;
	return 0;
}

void vrep_destroy(struct vol_replica *r)
{
	free(r->entries);
	free(r->stale);
	free(r->pending);
	free(r->dirty_blocks);
	free(r->block_seq);
	pthread_rwlock_destroy(&r->use);
	pthread_mutex_destroy(&r->mlock);
	pthread_cond_destroy(&r->mcond);
}

static void changed_locked(struct vol_replica *r, uint64_t block)
{
	r->dirty_blocks[block] = 1;
	r->changes++;
}

void vrep_set_entry(struct vol_replica *r, uint64_t slot, uint64_t entry)
{
	pthread_mutex_lock(&r->mlock);
	if (r->entries[slot] != entry) {
		__atomic_store_n(&r->entries[slot], entry, __ATOMIC_RELEASE);
		changed_locked(r, 1 + slot / VLAYOUT_ENTRIES);
	}
	pthread_mutex_unlock(&r->mlock);
}

void vrep_mark_write(struct vol_replica *r, uint64_t slot, uint64_t gen)
{
	uint64_t cur, want;

	pthread_mutex_lock(&r->mlock);
	cur = r->entries[slot];
	/* Never lower: writers that read an older G may come second. */
	want = (vmeta_gen(cur) > gen ? vmeta_gen(cur) : gen) | VMETA_DIRTY;
	if (want != cur) {
		__atomic_store_n(&r->entries[slot], want, __ATOMIC_RELEASE);
		changed_locked(r, 1 + slot / VLAYOUT_ENTRIES);
	}
	pthread_mutex_unlock(&r->mlock);
}

void vrep_put_header(struct vol_replica *r, bool clean)
{
	struct volume *vol = r->vol;
	struct vmeta_header *h = &r->hdr;

	pthread_mutex_lock(&r->mlock);
	memcpy(h->uuid, vol->uuid, 16);
	h->volume_size = vol->lay.size;
	h->chunk_size = (uint32_t)vol->lay.chunk_size;
	h->replicas = vol->lay.replicas;
	h->stores = vol->lay.stores;
	h->store_index = r->idx;
	h->data_start = vol->lay.data_start;
	h->table_blocks = vol->lay.table_blocks;
	h->slots = r->slots;
	h->generation = vol->last_live[r->idx];
	h->clean = clean;
	memset(h->last_live, 0, sizeof(h->last_live));
	memcpy(h->last_live, vol->last_live, sizeof(uint64_t) * vol->lay.stores);
	changed_locked(r, 0);
	pthread_mutex_unlock(&r->mlock);
}

void vrep_dirty_all_tables(struct vol_replica *r)
{
	pthread_mutex_lock(&r->mlock);
	for (uint64_t b = 1; b < nblocks(r->vol); b++)
		changed_locked(r, b);
	pthread_mutex_unlock(&r->mlock);
}

void vrep_new_epoch(struct vol_replica *r)
{
	pthread_mutex_lock(&r->mlock);
	r->epoch++;
	r->busy = false;
	r->merr = 0;
	r->changes = r->durable = 0;
	memset(r->dirty_blocks, 0, nblocks(r->vol));
	pthread_cond_broadcast(&r->mcond);
	pthread_mutex_unlock(&r->mlock);
}

static void encode_block(struct vol_replica *r, uint64_t b, uint64_t seq, uint8_t *out)
{
	if (b == 0) {
		r->hdr.seq = seq;
		vmeta_header_encode(&r->hdr, out);
		return;
	}
	vmeta_table_encode(r->entries + (b - 1) * VLAYOUT_ENTRIES,
			   vmeta_block_entries(r->slots, b), b, seq, r->vol->uuid, out);
}

static int write_blocks(struct vol_replica *r, uint64_t epoch, uint8_t *buf, const uint64_t *offs,
			unsigned n)
{
	int rc = 0;

	pthread_rwlock_rdlock(&r->use);
	if (r->epoch != epoch || !r->bd || vol_state(r) == VOLUME_REPLICA_FAILED) {
		rc = -ENODEV;
	} else {
		for (unsigned i = 0; i < n && !rc; i++) {
			struct iovec iov = { buf + (size_t)i * VLAYOUT_BLOCK, VLAYOUT_BLOCK };

			rc = blockdev_write(r->bd, &iov, 1, offs[i]);
		}
		if (!rc)
			rc = blockdev_flush(r->bd);
	}
	pthread_rwlock_unlock(&r->use);
	return rc;
}

/* Called with mlock held and no batch in flight; returns with mlock held. */
static int write_batch(struct vol_replica *r)
{
	uint64_t epoch = r->epoch, upto = r->changes, nb = nblocks(r->vol);
	unsigned n = 0, i = 0;
	uint8_t *buf = NULL;
	uint64_t *offs;
	int rc;

	for (uint64_t b = 0; b < nb; b++)
		n += r->dirty_blocks[b];
	offs = malloc(sizeof(*offs) * (n ? n : 1));
	if (!offs || posix_memalign((void **)&buf, VLAYOUT_BLOCK, (size_t)n * VLAYOUT_BLOCK + 1)) {
		free(offs);
		return -ENOMEM;
	}
	for (uint64_t b = 0; b < nb; b++) {
		if (!r->dirty_blocks[b])
			continue;
		r->dirty_blocks[b] = 0;
		r->block_seq[b]++;
		encode_block(r, b, r->block_seq[b], buf + (size_t)i * VLAYOUT_BLOCK);
		offs[i++] = vmeta_block_offset(b, r->block_seq[b] & 1);
	}
	r->busy = true;
	pthread_mutex_unlock(&r->mlock);
	rc = n ? write_blocks(r, epoch, buf, offs, n) : 0;
	free(buf);
	free(offs);
	pthread_mutex_lock(&r->mlock);
	if (r->epoch == epoch) {
		r->busy = false;
		if (rc)
			r->merr = rc;
		else if (r->durable < upto)
			r->durable = upto;
	}
	pthread_cond_broadcast(&r->mcond);
	return rc;
}

int vrep_sync(struct vol_replica *r)
{
	int rc = 0;
	uint64_t epoch, target;

	pthread_mutex_lock(&r->mlock);
	epoch = r->epoch;
	target = r->changes;
	for (;;) {
		if (r->epoch != epoch) {
			rc = -ENODEV;
			break;
		}
		if (r->durable >= target)
			break;
		if (r->merr) {
			rc = r->merr;
			break;
		}
		if (!r->busy) {
			int brc = write_batch(r);

			/* An allocation failure leaves the blocks marked: report it, keep them. */
			if (brc == -ENOMEM) {
				rc = brc;
				break;
			}
			continue;
		}
		pthread_cond_wait(&r->mcond, &r->mlock);
	}
	pthread_mutex_unlock(&r->mlock);
	return rc;
}

/* Reads len bytes at off into an aligned buffer (O_DIRECT stores need it). */
static int read_aligned(struct blockdev *bd, uint8_t *buf, size_t len, uint64_t off)
{
	struct iovec iov = { buf, len };

	return blockdev_read(bd, &iov, 1, off);
}

int vrep_read_header(struct blockdev *bd, struct vmeta_header *h, char *why, size_t whylen)
{
	uint8_t *buf;
	int damaged, rc;

	if (posix_memalign((void **)&buf, VLAYOUT_BLOCK, 2 * VLAYOUT_BLOCK)) {
		snprintf(why, whylen, "out of memory");
		return VREP_IOERR;
	}
	rc = read_aligned(bd, buf, 2 * VLAYOUT_BLOCK, 0);
	if (rc) {
		snprintf(why, whylen, "reading the header: %s", strerror(-rc));
		rc = VREP_IOERR;
	} else {
		rc = vmeta_header_read(buf, h, &damaged, why, whylen);
	}
	free(buf);
	return rc;
}

int vrep_read_table(struct blockdev *bd, const struct vmeta_header *h, uint64_t *entries,
		    uint64_t *block_seq, char *why, size_t whylen)
{
	const uint64_t per_read = 64;   /* blocks (both copies) per read: 512 KiB */
	uint8_t *buf;
	int rc = 0;

	if (posix_memalign((void **)&buf, VLAYOUT_BLOCK, per_read * 2 * VLAYOUT_BLOCK)) {
		snprintf(why, whylen, "out of memory");
		return VREP_IOERR;
	}
	block_seq[0] = h->seq;
	for (uint64_t b = 1; b <= h->table_blocks && !rc; b += per_read) {
		uint64_t n = h->table_blocks - b + 1 < per_read ? h->table_blocks - b + 1 : per_read;

		rc = read_aligned(bd, buf, n * 2 * VLAYOUT_BLOCK, vmeta_block_offset(b, 0));
		if (rc) {
			snprintf(why, whylen, "reading the table: %s", strerror(-rc));
			rc = VREP_IOERR;
			break;
		}
		for (uint64_t i = 0; i < n; i++) {
			uint64_t blk = b + i;
			char bwhy[200];
			int damaged;

			if (vmeta_table_read(buf + i * 2 * VLAYOUT_BLOCK, blk, h->uuid,
					     vmeta_block_entries(h->slots, blk),
					     entries + (blk - 1) * VLAYOUT_ENTRIES, &block_seq[blk],
					     &damaged, bwhy, sizeof(bwhy))) {
				snprintf(why, whylen, "table block %" PRIu64 ": %s", blk, bwhy);
				rc = VMETA_INVALID;
				break;
			}
		}
	}
	free(buf);
	return rc;
}

static void uuid_str(const uint8_t u[16], char out[33])
{
	for (int i = 0; i < 16; i++)
		snprintf(out + 2 * i, 3, "%02x", u[i]);
}

int vrep_check_header(const struct volume *vol, unsigned idx, const struct vmeta_header *h,
		      char *why, size_t whylen)
{
	const struct vlayout *l = &vol->lay;
	char a[33], b[33];

	if (h->volume_size != l->size || h->chunk_size != l->chunk_size ||
	    h->replicas != l->replicas || h->stores != l->stores) {
		snprintf(why, whylen, "geometry differs from the configuration: size %" PRIu64
			 ", chunk size %u, %u replicas, %u stores (configured: %" PRIu64 ", %" PRIu64
			 ", %u, %u)", h->volume_size, h->chunk_size, h->replicas, h->stores,
			 l->size, l->chunk_size, l->replicas, l->stores);
		return -1;
	}
	if (h->store_index != idx) {
		snprintf(why, whylen, "is store %u of its volume, not store %u", h->store_index, idx);
		return -1;
	}
	if (memcmp(h->uuid, vol->uuid, 16)) {
		uuid_str(h->uuid, a);
		uuid_str(vol->uuid, b);
		snprintf(why, whylen, "belongs to another volume (UUID %s, the volume's is %s)", a, b);
		return -1;
	}
	return 0;
}
