/* SPDX-License-Identifier: MIT */
#ifndef GRAPPE_VOLUME_LAYOUT_H
#define GRAPPE_VOLUME_LAYOUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Where a replicated volume's bytes live (docs/volume.md, "Placement").
 *
 * The volume is cut in chunks of chunk_size bytes; chunk c has R replicas,
 * on stores (c + k) mod N for k = 0..R-1 (k = 0 is its primary). A store
 * keeps only the chunks it holds, packed in chunk order: the slot of c on
 * a store is the number of chunks below c that the store also holds, and
 * its data is at data_start + slot * chunk_size.
 *
 * Before data_start every store has the same metadata area: the header and
 * table blocks of volume_meta.h, each in two copies. data_start is the same
 * on every store (sized for the store holding the most chunks) so that the
 * header can be checked against the geometry alone.
 *
 * Pure functions; no I/O.
 */

#define VLAYOUT_MIN_CHUNK     (64ull << 10)
#define VLAYOUT_MAX_CHUNK     (1ull << 30)
#define VLAYOUT_MAX_STORES    64
#define VLAYOUT_MAX_SIZE      (1ull << 56)       /* 64 PiB keeps every product below 2^64 */
#define VLAYOUT_BLOCK         4096ull            /* metadata block */
#define VLAYOUT_ENTRIES       504u               /* chunk generations per table block */
#define VLAYOUT_DATA_ALIGN    (1ull << 20)       /* data_start alignment */

struct vlayout {
	uint64_t size;          /* volume bytes */
	uint64_t chunk_size;
	unsigned chunk_shift;
	unsigned replicas;      /* R */
	unsigned stores;        /* N */
	uint64_t chunks;        /* ceil(size / chunk_size) */
	uint64_t table_blocks;  /* per store, for the largest store's slots */
	uint64_t data_start;    /* bytes, same on every store */
};

/*
 * Checks the geometry (chunk size a power of two in [64 KiB, 1 GiB], size a
 * non-zero multiple of 512 up to 64 PiB, 1 <= R <= N <= 64) and fills l.
 * Returns 0, or -1 with the reason in why.
 */
int vlayout_init(struct vlayout *l, uint64_t size, uint64_t chunk_size, unsigned replicas,
		 unsigned stores, char *why, size_t whylen);

/* The store holding replica k (0 = primary) of chunk. */
static inline unsigned vlayout_store(const struct vlayout *l, uint64_t chunk, unsigned k)
{
	return (unsigned)((chunk + k) % l->stores);
}

/* Which replica of chunk the store holds (0..R-1), or -1 if it holds none. */
int vlayout_replica_of(const struct vlayout *l, uint64_t chunk, unsigned store);

/* The slot of chunk on store; the store must hold the chunk. */
uint64_t vlayout_slot(const struct vlayout *l, uint64_t chunk, unsigned store);

/* The chunk in slot on store; slot < vlayout_slots(l, store). */
uint64_t vlayout_chunk_at(const struct vlayout *l, unsigned store, uint64_t slot);

/* How many chunks store holds. */
uint64_t vlayout_slots(const struct vlayout *l, unsigned store);

/* Bytes a store needs: metadata, then every slot of chunk_size bytes. */
uint64_t vlayout_store_bytes(const struct vlayout *l, unsigned store);

/* Bytes of the volume in chunk (chunk_size except for a short last chunk). */
uint64_t vlayout_chunk_len(const struct vlayout *l, uint64_t chunk);

/* Byte offset of chunk's data on store. */
static inline uint64_t vlayout_data_offset(const struct vlayout *l, uint64_t chunk,
					   unsigned store)
{
	return l->data_start + vlayout_slot(l, chunk, store) * l->chunk_size;
}

#endif
