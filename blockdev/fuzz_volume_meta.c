// SPDX-License-Identifier: MIT
/*
 * The volume metadata decoder on arbitrary bytes (a store's first blocks
 * come from a disk that may hold anything).
 *
 * First byte: the mode.
 *   0: the rest is a header's two copies (8 KiB, zero padded): decoded
 *      both ways; a copy that decodes must re-encode to the same bytes.
 *   1: block number (1 byte), entry count (2), UUID (16), then a table
 *      block's two copies: the same checks.
 *   2: the rest chooses header fields (a geometry made consistent or not,
 *      generations, flags); encoded then decoded: a consistent one must
 *      decode, and anything that decodes must come back identical.
 *   3: the rest chooses table entries: encode, decode, compare.
 * Build with -DFUZZ_VOLUME_META_SEEDS for a main() that writes the seeds.
 */
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "blockdev/volume_meta.h"

#define BLK VLAYOUT_BLOCK

static uint8_t in[2 * BLK], out[BLK];

static void load(const uint8_t *data, size_t size)
{
	memset(in, 0, sizeof(in));
	memcpy(in, data, size < sizeof(in) ? size : sizeof(in));
}

static void headers(const uint8_t *data, size_t size)
{
	struct vmeta_header h;
	char why[300];
	int damaged;

	load(data, size);
	for (unsigned c = 0; c < 2; c++) {
		if (vmeta_header_decode(in + c * BLK, c, &h, why, sizeof(why)) != VMETA_OK)
			continue;
		vmeta_header_encode(&h, out);
		if (memcmp(out, in + c * BLK, BLK))
			abort();            /* accepted bytes that are not canonical */
	}
	if (vmeta_header_read(in, &h, &damaged, why, sizeof(why)) == VMETA_INVALID && !why[0])
		abort();                    /* a rejection without a reason */
}

static void tables(const uint8_t *data, size_t size)
{
	uint64_t e[VLAYOUT_ENTRIES], seq;
	uint64_t block;
	unsigned n;
	uint8_t uuid[16];
	char why[300];
	int damaged;

	if (size < 19)
		return;
	block = 1 + data[0];
	n = (unsigned)(data[1] | data[2] << 8) % (VLAYOUT_ENTRIES + 1);
	memcpy(uuid, data + 3, 16);
	load(data + 19, size - 19);
	for (unsigned c = 0; c < 2; c++) {
		why[0] = 0;
		if (vmeta_table_decode(in + c * BLK, c, block, uuid, n, e, &seq, why,
				       sizeof(why)) != VMETA_OK)
			continue;
		vmeta_table_encode(e, n, block, seq, uuid, out);
		if (memcmp(out, in + c * BLK, BLK))
			abort();
	}
	why[0] = 0;
	if (vmeta_table_read(in, block, uuid, n, e, &seq, &damaged, why, sizeof(why)) != VMETA_OK &&
	    !why[0])
		abort();
}

struct reader {
	const uint8_t *p;
	size_t left;
};

static uint64_t take(struct reader *r, unsigned bytes)
{
	uint64_t v = 0;

	for (unsigned i = 0; i < bytes && r->left; i++, r->left--)
		v |= (uint64_t)*r->p++ << (8 * i);
	return v;
}

/* Header fields from the input; consistent (decodable) when the first byte is even. */
static void header_fields(const uint8_t *data, size_t size)
{
	struct reader rd = { data, size };
	bool consistent = !(take(&rd, 1) & 1);
	struct vmeta_header h, d;
	struct vlayout l;
	char why[300];

	memset(&h, 0, sizeof(h));
	h.stores = (uint32_t)take(&rd, 1);
	h.replicas = (uint32_t)take(&rd, 1);
	h.store_index = (uint32_t)take(&rd, 1);
	h.chunk_size = (uint32_t)take(&rd, 4);
	h.volume_size = take(&rd, 8);
	h.generation = take(&rd, 8);
	h.seq = take(&rd, 8);
	h.clean = take(&rd, 1) & 1;
	for (unsigned i = 0; i < 16; i++)
		h.uuid[i] = (uint8_t)take(&rd, 1);
	for (unsigned i = 0; i < VMETA_MAX_STORES; i++)
		h.last_live[i] = take(&rd, 2);
	if (consistent) {
		h.stores = 1 + h.stores % VMETA_MAX_STORES;
		h.replicas = 1 + h.replicas % h.stores;
		h.store_index %= h.stores;
		h.chunk_size = 1u << (16 + h.chunk_size % 15);
		h.volume_size = 512 * (1 + h.volume_size % (1ull << 30));
		h.generation = 1 + h.generation % VMETA_GEN_MASK;
		h.seq = 1 + h.seq % (UINT64_MAX - 1);
		h.uuid[0] |= 1;
		for (unsigned i = 0; i < VMETA_MAX_STORES; i++)
			h.last_live[i] = i >= h.stores ? 0 : h.last_live[i] % (h.generation + 1);
		h.last_live[h.store_index] = h.generation;
		if (vlayout_init(&l, h.volume_size, h.chunk_size, h.replicas, h.stores, why,
				 sizeof(why)))
			abort();
		h.table_blocks = l.table_blocks;
		h.data_start = l.data_start;
		h.slots = vlayout_slots(&l, h.store_index);
	} else {
		h.table_blocks = take(&rd, 8);
		h.data_start = take(&rd, 8);
		h.slots = take(&rd, 8);
	}
	vmeta_header_encode(&h, out);
	if (vmeta_header_decode(out, (unsigned)(h.seq & 1), &d, why, sizeof(why)) != VMETA_OK) {
		if (consistent)
			abort();
		return;
	}
	/* last_live beyond stores is not encoded. */
	for (unsigned i = h.stores < VMETA_MAX_STORES ? h.stores : VMETA_MAX_STORES;
	     i < VMETA_MAX_STORES; i++)
		h.last_live[i] = 0;
	if (memcmp(&d, &h, sizeof(h)))
		abort();
}

static void table_fields(const uint8_t *data, size_t size)
{
	struct reader rd = { data, size };
	uint64_t e[VLAYOUT_ENTRIES] = { 0 }, d[VLAYOUT_ENTRIES], seq;
	uint64_t block = 1 + take(&rd, 2), want_seq = 1 + take(&rd, 4);
	unsigned n = (unsigned)take(&rd, 2) % (VLAYOUT_ENTRIES + 1);
	uint8_t uuid[16];
	char why[300];

	for (unsigned i = 0; i < 16; i++)
		uuid[i] = (uint8_t)take(&rd, 1);
	for (unsigned i = 0; i < n; i++)
		e[i] = take(&rd, 8);
	vmeta_table_encode(e, n, block, want_seq, uuid, out);
	if (vmeta_table_decode(out, (unsigned)(want_seq & 1), block, uuid, n, d, &seq, why,
			       sizeof(why)) != VMETA_OK)
		abort();
	if (seq != want_seq || memcmp(d, e, sizeof(uint64_t) * n))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int ready;

	if (!ready) {
		if (sodium_init() < 0)
			abort();
		ready = 1;
	}
	if (size < 1)
		return 0;
	switch (data[0] % 4) {
	case 0:
		headers(data + 1, size - 1);
		break;
	case 1:
		tables(data + 1, size - 1);
		break;
	case 2:
		header_fields(data + 1, size - 1);
		break;
	default:
		table_fields(data + 1, size - 1);
		break;
	}
	return 0;
}

#ifdef FUZZ_VOLUME_META_SEEDS
static void write_seed(const char *dir, const char *name, const uint8_t *p, size_t n)
{
	char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "wb");
	if (!f || fwrite(p, 1, n, f) != n)
		exit(1);
	fclose(f);
}

static void good_header(struct vmeta_header *h, uint64_t seq)
{
	struct vlayout l;
	char why[200];

	memset(h, 0, sizeof(*h));
	vlayout_init(&l, 3ull << 30, 1 << 20, 2, 3, why, sizeof(why));
	memcpy(h->uuid, "seed volume uuid", 16);
	h->volume_size = l.size;
	h->chunk_size = (uint32_t)l.chunk_size;
	h->replicas = 2;
	h->stores = 3;
	h->store_index = 1;
	h->data_start = l.data_start;
	h->table_blocks = l.table_blocks;
	h->slots = vlayout_slots(&l, 1);
	h->generation = 4 + seq;
	h->last_live[0] = 4;
	h->last_live[1] = h->generation;
	h->last_live[2] = 3;
	h->clean = seq & 1;
	h->seq = seq;
}

int main(int argc, char **argv)
{
	static uint8_t buf[1 + 19 + 2 * BLK];
	const char *dir = argc > 1 ? argv[1] : ".";
	struct vmeta_header h;
	uint64_t e[VLAYOUT_ENTRIES];

	struct vmeta_header d;
	char why[300];
	int damaged;

	if (sodium_init() < 0)
		return 1;
	memset(buf, 0, sizeof(buf));
	good_header(&h, 1);                                  /* freshly formatted */
	vmeta_header_encode(&h, buf + 1 + BLK);
	write_seed(dir, "header-formatted", buf, 1 + 2 * BLK);
	good_header(&h, 2);
	vmeta_header_encode(&h, buf + 1);
	write_seed(dir, "header-two-copies", buf, 1 + 2 * BLK);
	/* The seeds are only useful if they pass every check. */
	if (vmeta_header_read(buf + 1, &d, &damaged, why, sizeof(why)) != VMETA_OK || d.seq != 2)
		return 1;
	buf[1 + 700] ^= 0x40;
	write_seed(dir, "header-torn", buf, 1 + 2 * BLK);

	memset(buf, 0, sizeof(buf));
	buf[0] = 1;
	buf[1] = 0;                                          /* block 1 */
	buf[2] = 200;                                        /* 200 entries */
	memcpy(buf + 4, "seed volume uuid", 16);
	for (unsigned i = 0; i < VLAYOUT_ENTRIES; i++)
		e[i] = i % 5 ? 3 : 4 | VMETA_DIRTY;
	vmeta_table_encode(e, 200, 1, 1, (const uint8_t *)"seed volume uuid", buf + 20 + BLK);
	vmeta_table_encode(e, 200, 1, 2, (const uint8_t *)"seed volume uuid", buf + 20);
	write_seed(dir, "table-two-copies", buf, 20 + 2 * BLK);
	if (vmeta_table_read(buf + 20, 1, (const uint8_t *)"seed volume uuid", 200, e, &h.seq,
			     &damaged, why, sizeof(why)) != VMETA_OK)
		return 1;

	memset(buf, 0x11, 200);
	buf[0] = 2;
	buf[1] = 0;                                          /* consistent */
	write_seed(dir, "fields-header", buf, 200);
	buf[0] = 3;
	buf[5] = 40;                                         /* 40 entries */
	write_seed(dir, "fields-table", buf, 200);
	return 0;
}
#endif
