// SPDX-License-Identifier: MIT
/*
 * Chunk placement and packing for the replicated volume (volume_layout.h).
 *
 * Store s holds the chunks whose index is congruent to s - k (mod N) for
 * some k < R: R residues out of every N consecutive chunks. So the slot of
 * chunk c is R slots per complete group of N chunks before it, plus the
 * held residues below c mod N in its own group; no table is needed.
 */
#include <inttypes.h>
#include <stdio.h>

#include "blockdev/volume_layout.h"

static uint64_t round_up(uint64_t v, uint64_t a)
{
	return (v + a - 1) / a * a;
}

/* The residue mod N of the chunks store holds as replica k. */
static unsigned held_residue(const struct vlayout *l, unsigned store, unsigned k)
{
	return (store + l->stores - k) % l->stores;
}

int vlayout_init(struct vlayout *l, uint64_t size, uint64_t chunk_size, unsigned replicas,
		 unsigned stores, char *why, size_t whylen)
{
	uint64_t max_slots = 0;

	if (chunk_size < VLAYOUT_MIN_CHUNK || chunk_size > VLAYOUT_MAX_CHUNK ||
	    (chunk_size & (chunk_size - 1))) {
		snprintf(why, whylen, "chunk size %" PRIu64 " is not a power of two between "
			 "64 KiB and 1 GiB", chunk_size);
		return -1;
	}
	if (size == 0 || size % 512 || size > VLAYOUT_MAX_SIZE) {
		snprintf(why, whylen, "volume size %" PRIu64 " is not a non-zero multiple of 512 "
			 "up to 64 PiB", size);
		return -1;
	}
	if (stores < 1 || stores > VLAYOUT_MAX_STORES) {
		snprintf(why, whylen, "%u stores: must be 1 to %d", stores, VLAYOUT_MAX_STORES);
		return -1;
	}
	if (replicas < 1 || replicas > stores) {
		snprintf(why, whylen, "%u replicas with %u stores: must be 1 to %u", replicas,
			 stores, stores);
		return -1;
	}
	l->size = size;
	l->chunk_size = chunk_size;
	l->chunk_shift = (unsigned)__builtin_ctzll(chunk_size);
	l->replicas = replicas;
	l->stores = stores;
	l->chunks = (size + chunk_size - 1) >> l->chunk_shift;
	for (unsigned s = 0; s < stores; s++)
		if (vlayout_slots(l, s) > max_slots)
			max_slots = vlayout_slots(l, s);
	l->table_blocks = (max_slots + VLAYOUT_ENTRIES - 1) / VLAYOUT_ENTRIES;
	/* Header and table blocks, each in two copies (volume_meta.h). */
	l->data_start = round_up(2 * (1 + l->table_blocks) * VLAYOUT_BLOCK, VLAYOUT_DATA_ALIGN);
	return 0;
}

int vlayout_replica_of(const struct vlayout *l, uint64_t chunk, unsigned store)
{
	unsigned k = (unsigned)((store + l->stores - chunk % l->stores) % l->stores);

	return k < l->replicas ? (int)k : -1;
}

/*
 * Chunks below chunk that store holds; also meaningful for chunk ==
 * l->chunks, which gives the store's slot count.
 */
static uint64_t held_below(const struct vlayout *l, uint64_t chunk, unsigned store)
{
	unsigned r = (unsigned)(chunk % l->stores);
	uint64_t n = chunk / l->stores * l->replicas;

	for (unsigned k = 0; k < l->replicas; k++)
		if (held_residue(l, store, k) < r)
			n++;
	return n;
}

uint64_t vlayout_slot(const struct vlayout *l, uint64_t chunk, unsigned store)
{
	return held_below(l, chunk, store);
}

uint64_t vlayout_chunk_at(const struct vlayout *l, unsigned store, uint64_t slot)
{
	unsigned want = (unsigned)(slot % l->replicas), best = 0;

	/* The want-th smallest held residue: count residues below each one. */
	for (unsigned k = 0; k < l->replicas; k++) {
		unsigned r = held_residue(l, store, k), below = 0;

		for (unsigned j = 0; j < l->replicas; j++)
			if (held_residue(l, store, j) < r)
				below++;
		if (below == want)
			best = r;
	}
	return slot / l->replicas * l->stores + best;
}

uint64_t vlayout_slots(const struct vlayout *l, unsigned store)
{
	return held_below(l, l->chunks, store);
}

uint64_t vlayout_store_bytes(const struct vlayout *l, unsigned store)
{
	return l->data_start + vlayout_slots(l, store) * l->chunk_size;
}

uint64_t vlayout_chunk_len(const struct vlayout *l, uint64_t chunk)
{
	uint64_t start = chunk << l->chunk_shift;

	return l->size - start < l->chunk_size ? l->size - start : l->chunk_size;
}
