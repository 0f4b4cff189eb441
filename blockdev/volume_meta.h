/* SPDX-License-Identifier: MIT */
#ifndef GRAPPE_VOLUME_META_H
#define GRAPPE_VOLUME_META_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "blockdev/volume_layout.h"

/*
 * The replicated volume's metadata at the start of every store
 * (docs/volume.md, "On-disk layout"): block 0 is the header, blocks 1..T
 * the table of chunk generations, one u64 per slot. Every block is 4 KiB,
 * ends with a trailer (block number, update sequence, volume UUID,
 * BLAKE2b-256 of the rest) and is stored twice: copy (seq & 1) of block b
 * is at (2b + copy) * 4 KiB. An update writes the copy the newest one is
 * not in, so a torn write leaves the previous version readable; a reader
 * takes the valid copy with the higher sequence.
 *
 * All integers little-endian. Decoding checks every field; the reasons are
 * short phrases ("checksum mismatch") that the volume prefixes with the
 * store and block.
 */

#define VMETA_VERSION     1u
#define VMETA_FLAG_CLEAN  1u                  /* closed cleanly; no dirty entries */
#define VMETA_DIRTY       (1ull << 63)        /* entry: write intent (docs/volume.md) */
#define VMETA_GEN_MASK    (VMETA_DIRTY - 1)
#define VMETA_MAX_STORES  VLAYOUT_MAX_STORES

/* Trailer offsets within a block. */
#define VMETA_PAYLOAD     4032u
#define VMETA_OFF_BLOCKNO 4032u
#define VMETA_OFF_SEQ     4040u
#define VMETA_OFF_UUID    4048u
#define VMETA_OFF_HASH    4064u
#define VMETA_HASH_LEN    32u

enum { VMETA_INVALID = -1, VMETA_OK = 0, VMETA_EMPTY = 1 };

struct vmeta_header {
	uint8_t uuid[16];
	uint64_t volume_size;
	uint32_t chunk_size;
	uint32_t replicas;
	uint32_t stores;
	uint32_t store_index;
	uint64_t data_start;
	uint64_t table_blocks;
	uint64_t slots;            /* chunks this store holds */
	uint64_t generation;       /* the volume generation G */
	bool clean;
	/*
	 * last_live[i]: the latest generation at which this store saw store i
	 * live (its own entry is generation). Split-brain and "a missing store
	 * may have newer data" checks use it (docs/volume.md, "Generations").
	 */
	uint64_t last_live[VMETA_MAX_STORES];
	uint64_t seq;              /* the block's update sequence, >= 1 */
};

static inline uint64_t vmeta_block_offset(uint64_t block, unsigned copy)
{
	return (2 * block + copy) * VLAYOUT_BLOCK;
}

static inline uint64_t vmeta_gen(uint64_t entry)
{
	return entry & VMETA_GEN_MASK;
}

/* Entries in table block (1-based block number) of a store with slots slots. */
unsigned vmeta_block_entries(uint64_t slots, uint64_t block);

void vmeta_header_encode(const struct vmeta_header *h, uint8_t out[VLAYOUT_BLOCK]);

/*
 * One copy (0 or 1) of the header. VMETA_OK (h filled), VMETA_EMPTY (all
 * zeros) or VMETA_INVALID with the reason in why.
 */
int vmeta_header_decode(const uint8_t in[VLAYOUT_BLOCK], unsigned copy, struct vmeta_header *h,
			char *why, size_t whylen);

/* n <= VLAYOUT_ENTRIES entries; the rest of the block is zero. */
void vmeta_table_encode(const uint64_t *entries, unsigned n, uint64_t block, uint64_t seq,
			const uint8_t uuid[16], uint8_t out[VLAYOUT_BLOCK]);

/*
 * One copy of table block `block` (>= 1) of the volume uuid, holding n
 * entries (vmeta_block_entries): fills entries[0..n) and seq.
 */
int vmeta_table_decode(const uint8_t in[VLAYOUT_BLOCK], unsigned copy, uint64_t block,
		       const uint8_t uuid[16], unsigned n, uint64_t *entries, uint64_t *seq,
		       char *why, size_t whylen);

/*
 * Both copies of the header (in: 8 KiB, copy 0 then copy 1), the newer
 * valid one wins. VMETA_OK, VMETA_EMPTY (both all zeros) or VMETA_INVALID
 * ("checksum mismatch", or "copy 0: ...; copy 1: ..." when both are bad).
 * *damaged is the copy that was invalid while the other one was used, or -1.
 */
int vmeta_header_read(const uint8_t in[2 * VLAYOUT_BLOCK], struct vmeta_header *h, int *damaged,
		      char *why, size_t whylen);

/* Both copies of a table block; an all-zero block is invalid here. */
int vmeta_table_read(const uint8_t in[2 * VLAYOUT_BLOCK], uint64_t block, const uint8_t uuid[16],
		     unsigned n, uint64_t *entries, uint64_t *seq, int *damaged, char *why,
		     size_t whylen);

#endif
