// SPDX-License-Identifier: MIT
/*
 * Encoding and strict decoding of the volume's metadata blocks
 * (volume_meta.h, docs/volume.md "On-disk layout").
 *
 * A decoded block re-encodes to the same bytes: every field is checked,
 * reserved bytes must be zero, and the geometry fields must be exactly what
 * the layout computes. The fuzz target relies on that.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <sodium.h>

#include "blockdev/volume_meta.h"

static const uint8_t magic[8] = { 'G', 'R', 'A', 'P', 'P', 'E', 'V', 'L' };

/* Header payload offsets. */
enum {
	H_MAGIC = 0, H_VERSION = 8, H_FLAGS = 12, H_UUID = 16, H_SIZE = 32, H_CHUNK = 40,
	H_REPLICAS = 44, H_STORES = 48, H_INDEX = 52, H_DATA_START = 56, H_TABLE_BLOCKS = 64,
	H_SLOTS = 72, H_GEN = 80, H_LAST_LIVE = 88,
};

static void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get64(const uint8_t *p)
{
	return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

static bool all_zero(const uint8_t *p, size_t n)
{
	uint8_t acc = 0;

	for (size_t i = 0; i < n; i++)
		acc |= p[i];
	return acc == 0;
}

static void hash(const uint8_t *blk, uint8_t out[VMETA_HASH_LEN])
{
	crypto_generichash(out, VMETA_HASH_LEN, blk, VMETA_OFF_HASH, NULL, 0);
}

static void seal(uint8_t *out, uint64_t block, uint64_t seq, const uint8_t uuid[16])
{
	put64(out + VMETA_OFF_BLOCKNO, block);
	put64(out + VMETA_OFF_SEQ, seq);
	memcpy(out + VMETA_OFF_UUID, uuid, 16);
	hash(out, out + VMETA_OFF_HASH);
}

static bool hash_ok(const uint8_t *in)
{
	uint8_t h[VMETA_HASH_LEN];

	hash(in, h);
	return sodium_memcmp(h, in + VMETA_OFF_HASH, VMETA_HASH_LEN) == 0;
}

/* Trailer checks shared by the header and table blocks. */
static int check_trailer(const uint8_t *in, unsigned copy, uint64_t block, uint64_t *seq,
			 char *why, size_t whylen)
{
	uint64_t b = get64(in + VMETA_OFF_BLOCKNO);

	if (!hash_ok(in)) {
		snprintf(why, whylen, "checksum mismatch");
		return VMETA_INVALID;
	}
	if (b != block) {
		snprintf(why, whylen, "holds block %" PRIu64 ", not %" PRIu64, b, block);
		return VMETA_INVALID;
	}
	*seq = get64(in + VMETA_OFF_SEQ);
	if (*seq == 0 || (*seq & 1) != copy) {
		snprintf(why, whylen, "copy %u holds update sequence %" PRIu64, copy, *seq);
		return VMETA_INVALID;
	}
	return VMETA_OK;
}

unsigned vmeta_block_entries(uint64_t slots, uint64_t block)
{
	uint64_t first = (block - 1) * VLAYOUT_ENTRIES;

	if (block == 0 || first >= slots)
		return 0;
	return slots - first < VLAYOUT_ENTRIES ? (unsigned)(slots - first) : VLAYOUT_ENTRIES;
}

void vmeta_header_encode(const struct vmeta_header *h, uint8_t out[VLAYOUT_BLOCK])
{
	memset(out, 0, VLAYOUT_BLOCK);
	memcpy(out + H_MAGIC, magic, sizeof(magic));
	put32(out + H_VERSION, VMETA_VERSION);
	put32(out + H_FLAGS, h->clean ? VMETA_FLAG_CLEAN : 0);
	memcpy(out + H_UUID, h->uuid, 16);
	put64(out + H_SIZE, h->volume_size);
	put32(out + H_CHUNK, h->chunk_size);
	put32(out + H_REPLICAS, h->replicas);
	put32(out + H_STORES, h->stores);
	put32(out + H_INDEX, h->store_index);
	put64(out + H_DATA_START, h->data_start);
	put64(out + H_TABLE_BLOCKS, h->table_blocks);
	put64(out + H_SLOTS, h->slots);
	put64(out + H_GEN, h->generation);
	for (unsigned i = 0; i < h->stores && i < VMETA_MAX_STORES; i++)
		put64(out + H_LAST_LIVE + 8 * i, h->last_live[i]);
	seal(out, 0, h->seq, h->uuid);
}

/* The geometry fields against what the layout computes from them. */
static int check_geometry(const struct vmeta_header *h, char *why, size_t whylen)
{
	struct vlayout l;
	char lwhy[160];

	if (vlayout_init(&l, h->volume_size, h->chunk_size, h->replicas, h->stores, lwhy,
			 sizeof(lwhy))) {
		snprintf(why, whylen, "%s", lwhy);
		return VMETA_INVALID;
	}
	if (h->store_index >= h->stores) {
		snprintf(why, whylen, "store index %u with %u stores", h->store_index, h->stores);
		return VMETA_INVALID;
	}
	if (h->table_blocks != l.table_blocks || h->data_start != l.data_start ||
	    h->slots != vlayout_slots(&l, h->store_index)) {
		snprintf(why, whylen, "table blocks %" PRIu64 ", data start %" PRIu64 " and slots %"
			 PRIu64 " do not match the geometry (%" PRIu64 ", %" PRIu64 ", %" PRIu64 ")",
			 h->table_blocks, h->data_start, h->slots, l.table_blocks, l.data_start,
			 vlayout_slots(&l, h->store_index));
		return VMETA_INVALID;
	}
	return VMETA_OK;
}

static int check_generations(const struct vmeta_header *h, char *why, size_t whylen)
{
	if (h->generation == 0 || h->generation > VMETA_GEN_MASK) {
		snprintf(why, whylen, "volume generation %" PRIu64 " out of range", h->generation);
		return VMETA_INVALID;
	}
	for (unsigned i = 0; i < h->stores; i++) {
		if (h->last_live[i] > h->generation) {
			snprintf(why, whylen, "store %u last seen live at generation %" PRIu64
				 ", after the volume generation %" PRIu64, i, h->last_live[i],
				 h->generation);
			return VMETA_INVALID;
		}
	}
	if (h->last_live[h->store_index] != h->generation) {
		snprintf(why, whylen, "own last-live generation %" PRIu64 " differs from the volume "
			 "generation %" PRIu64, h->last_live[h->store_index], h->generation);
		return VMETA_INVALID;
	}
	return VMETA_OK;
}

int vmeta_header_decode(const uint8_t in[VLAYOUT_BLOCK], unsigned copy, struct vmeta_header *h,
			char *why, size_t whylen)
{
	uint32_t version, flags;

	memset(h, 0, sizeof(*h));
	if (all_zero(in, VLAYOUT_BLOCK))
		return VMETA_EMPTY;
	if (memcmp(in + H_MAGIC, magic, sizeof(magic))) {
		snprintf(why, whylen, "bad magic (not a grappe volume header)");
		return VMETA_INVALID;
	}
	if (check_trailer(in, copy, 0, &h->seq, why, whylen))
		return VMETA_INVALID;
	version = get32(in + H_VERSION);
	if (version != VMETA_VERSION) {
		snprintf(why, whylen, "unsupported format version %u (this build reads %u)",
			 version, VMETA_VERSION);
		return VMETA_INVALID;
	}
	flags = get32(in + H_FLAGS);
	if (flags & ~VMETA_FLAG_CLEAN) {
		snprintf(why, whylen, "unknown flags 0x%x", flags);
		return VMETA_INVALID;
	}
	h->clean = flags & VMETA_FLAG_CLEAN;
	memcpy(h->uuid, in + H_UUID, 16);
	if (all_zero(h->uuid, 16) || memcmp(h->uuid, in + VMETA_OFF_UUID, 16)) {
		snprintf(why, whylen, "volume UUID is nil or differs from the trailer's");
		return VMETA_INVALID;
	}
	h->volume_size = get64(in + H_SIZE);
	h->chunk_size = get32(in + H_CHUNK);
	h->replicas = get32(in + H_REPLICAS);
	h->stores = get32(in + H_STORES);
	h->store_index = get32(in + H_INDEX);
	h->data_start = get64(in + H_DATA_START);
	h->table_blocks = get64(in + H_TABLE_BLOCKS);
	h->slots = get64(in + H_SLOTS);
	h->generation = get64(in + H_GEN);
	if (check_geometry(h, why, whylen))
		return VMETA_INVALID;
	for (unsigned i = 0; i < h->stores; i++)
		h->last_live[i] = get64(in + H_LAST_LIVE + 8 * i);
	if (check_generations(h, why, whylen))
		return VMETA_INVALID;
	if (!all_zero(in + H_LAST_LIVE + 8 * h->stores, VMETA_PAYLOAD - H_LAST_LIVE - 8 * h->stores)) {
		snprintf(why, whylen, "non-zero reserved bytes");
		return VMETA_INVALID;
	}
	return VMETA_OK;
}

void vmeta_table_encode(const uint64_t *entries, unsigned n, uint64_t block, uint64_t seq,
			const uint8_t uuid[16], uint8_t out[VLAYOUT_BLOCK])
{
	memset(out, 0, VLAYOUT_BLOCK);
	for (unsigned i = 0; i < n && i < VLAYOUT_ENTRIES; i++)
		put64(out + 8 * i, entries[i]);
	seal(out, block, seq, uuid);
}

int vmeta_table_decode(const uint8_t in[VLAYOUT_BLOCK], unsigned copy, uint64_t block,
		       const uint8_t uuid[16], unsigned n, uint64_t *entries, uint64_t *seq,
		       char *why, size_t whylen)
{
	if (all_zero(in, VLAYOUT_BLOCK))
		return VMETA_EMPTY;
	if (n > VLAYOUT_ENTRIES) {
		snprintf(why, whylen, "%u entries in one block", n);
		return VMETA_INVALID;
	}
	if (check_trailer(in, copy, block, seq, why, whylen))
		return VMETA_INVALID;
	if (memcmp(in + VMETA_OFF_UUID, uuid, 16)) {
		snprintf(why, whylen, "belongs to another volume (UUID differs)");
		return VMETA_INVALID;
	}
	if (!all_zero(in + 8 * n, VMETA_PAYLOAD - 8 * n)) {
		snprintf(why, whylen, "non-zero bytes after the last entry (%u)", n);
		return VMETA_INVALID;
	}
	for (unsigned i = 0; i < n; i++)
		entries[i] = get64(in + 8 * i);
	return VMETA_OK;
}

/*
 * Which copy to use given the two decode results: the valid one with the
 * higher sequence; -1 when neither is valid.
 */
static int pick(int r0, uint64_t s0, int r1, uint64_t s1)
{
	if (r0 == VMETA_OK && r1 == VMETA_OK)
		return s1 > s0 ? 1 : 0;
	if (r0 == VMETA_OK)
		return 0;
	if (r1 == VMETA_OK)
		return 1;
	return -1;
}

/* The reason when no copy is valid (r0, r1 are EMPTY or INVALID). */
static int no_copy(int r0, const char *w0, int r1, const char *w1, char *why, size_t whylen)
{
	if (r0 == VMETA_EMPTY && r1 == VMETA_EMPTY) {
		snprintf(why, whylen, "all zeros");
		return VMETA_EMPTY;
	}
	if (r0 == VMETA_INVALID && r1 == VMETA_INVALID && strcmp(w0, w1))
		snprintf(why, whylen, "copy 0: %s; copy 1: %s", w0, w1);
	else
		snprintf(why, whylen, "%s", r0 == VMETA_INVALID ? w0 : w1);
	return VMETA_INVALID;
}

int vmeta_header_read(const uint8_t in[2 * VLAYOUT_BLOCK], struct vmeta_header *h, int *damaged,
		      char *why, size_t whylen)
{
	struct vmeta_header c[2];
	char w[2][160] = { "", "" };
	int r[2], use;

	for (unsigned i = 0; i < 2; i++)
		r[i] = vmeta_header_decode(in + i * VLAYOUT_BLOCK, i, &c[i], w[i], sizeof(w[i]));
	*damaged = -1;
	use = pick(r[0], c[0].seq, r[1], c[1].seq);
	if (use < 0)
		return no_copy(r[0], w[0], r[1], w[1], why, whylen);
	if (r[!use] == VMETA_INVALID)
		*damaged = !use;
	*h = c[use];
	return VMETA_OK;
}

int vmeta_table_read(const uint8_t in[2 * VLAYOUT_BLOCK], uint64_t block, const uint8_t uuid[16],
		     unsigned n, uint64_t *entries, uint64_t *seq, int *damaged, char *why,
		     size_t whylen)
{
	uint64_t e[2][VLAYOUT_ENTRIES], s[2] = { 0, 0 };
	char w[2][160] = { "", "" };
	int r[2], use;

	for (unsigned i = 0; i < 2; i++)
		r[i] = vmeta_table_decode(in + i * VLAYOUT_BLOCK, i, block, uuid, n, e[i], &s[i],
					  w[i], sizeof(w[i]));
	*damaged = -1;
	use = pick(r[0], s[0], r[1], s[1]);
	if (use < 0) {
		/* A formatted store has every table block: zeros are damage too. */
		if (no_copy(r[0], w[0], r[1], w[1], why, whylen) == VMETA_EMPTY)
			snprintf(why, whylen, "missing (all zeros)");
		return VMETA_INVALID;
	}
	if (r[!use] == VMETA_INVALID)
		*damaged = !use;
	memcpy(entries, e[use], sizeof(uint64_t) * n);
	*seq = s[use];
	return VMETA_OK;
}
