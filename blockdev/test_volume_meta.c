// SPDX-License-Identifier: MIT
/*
 * The volume's metadata blocks: header and table round trips, the choice
 * between the two copies of a block, and every rejection (bad magic,
 * checksum, version, sequence, geometry, generations, reserved bytes,
 * block number, UUID, stray entries). Blocks modified behind the encoder's
 * back are resealed with a correct checksum, so each check is reached.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "blockdev/volume_meta.h"

#define BLK VLAYOUT_BLOCK

static void good_header(struct vmeta_header *h, unsigned stores, unsigned replicas,
			unsigned index)
{
	struct vlayout l;
	char why[200];

	memset(h, 0, sizeof(*h));
	assert_int_equal(vlayout_init(&l, 10 << 20, 64 << 10, replicas, stores, why, sizeof(why)),
			 0);
	for (int i = 0; i < 16; i++)
		h->uuid[i] = (uint8_t)(0xa0 + i);
	h->volume_size = l.size;
	h->chunk_size = (uint32_t)l.chunk_size;
	h->replicas = replicas;
	h->stores = stores;
	h->store_index = index;
	h->data_start = l.data_start;
	h->table_blocks = l.table_blocks;
	h->slots = vlayout_slots(&l, index);
	h->generation = 7;
	h->clean = true;
	for (unsigned i = 0; i < stores; i++)
		h->last_live[i] = i == index ? 7 : 5;
	h->seq = 3;
}

static void reseal(uint8_t *blk)
{
	crypto_generichash(blk + VMETA_OFF_HASH, VMETA_HASH_LEN, blk, VMETA_OFF_HASH, NULL, 0);
}

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

static void test_header_round_trip(void **state)
{
	struct vmeta_header h, d;
	uint8_t blk[BLK], again[BLK];
	char why[200] = "";

	good_header(&h, 3, 2, 1);
	vmeta_header_encode(&h, blk);
	assert_memory_equal(blk, "GRAPPEVL", 8);
	assert_int_equal(vmeta_header_decode(blk, 1, &d, why, sizeof(why)), VMETA_OK);
	assert_memory_equal(&d, &h, sizeof(h));
	vmeta_header_encode(&d, again);
	assert_memory_equal(blk, again, BLK);
	/* Field offsets documented in docs/volume.md. */
	assert_int_equal(blk[8], VMETA_VERSION);
	assert_int_equal(blk[12], VMETA_FLAG_CLEAN);
	assert_int_equal(blk[16], 0xa0);
	assert_int_equal(blk[44], 2);
	assert_int_equal(blk[48], 3);
	assert_int_equal(blk[52], 1);
	assert_int_equal(blk[80], 7);
	assert_int_equal(blk[88], 5);
	assert_int_equal(blk[96], 7);
	assert_int_equal(blk[VMETA_OFF_SEQ], 3);
	assert_int_equal(blk[VMETA_OFF_UUID], 0xa0);
}

static void header_refused(uint8_t *blk, unsigned copy, bool do_reseal, const char *needle)
{
	struct vmeta_header d;
	char why[200] = "";

	if (do_reseal)
		reseal(blk);
	assert_int_equal(vmeta_header_decode(blk, copy, &d, why, sizeof(why)), VMETA_INVALID);
	if (!strstr(why, needle))
		fail_msg("\"%s\" does not mention \"%s\"", why, needle);
}

/* Encodes a good header, lets mutate change it, expects the rejection. */
static void mutated(void (*mutate)(uint8_t *), const char *needle)
{
	struct vmeta_header h;
	uint8_t blk[BLK];

	good_header(&h, 3, 2, 1);
	vmeta_header_encode(&h, blk);
	mutate(blk);
	header_refused(blk, 1, true, needle);
}

static void m_magic(uint8_t *b) { b[0] = 'X'; }
static void m_version(uint8_t *b) { put32(b + 8, 2); }
static void m_flags(uint8_t *b) { put32(b + 12, 3); }
static void m_nil_uuid(uint8_t *b) { memset(b + 16, 0, 16); }
static void m_trailer_uuid(uint8_t *b) { b[VMETA_OFF_UUID] ^= 1; }
static void m_size(uint8_t *b) { put64(b + 32, 1000); }
static void m_chunk(uint8_t *b) { put32(b + 40, 4096); }
static void m_replicas(uint8_t *b) { put32(b + 44, 4); }
static void m_stores(uint8_t *b) { put32(b + 48, 65); }
static void m_index(uint8_t *b) { put32(b + 52, 3); }
static void m_data_start(uint8_t *b) { put64(b + 56, 2 << 20); }
static void m_table_blocks(uint8_t *b) { put64(b + 64, 2); }
static void m_slots(uint8_t *b) { put64(b + 72, 1); }
static void m_gen0(uint8_t *b) { put64(b + 80, 0); }
static void m_last_live(uint8_t *b) { put64(b + 88, 8); }
static void m_own_live(uint8_t *b) { put64(b + 96, 6); }
static void m_reserved(uint8_t *b) { b[2000] = 1; }
static void m_blockno(uint8_t *b) { put64(b + VMETA_OFF_BLOCKNO, 1); }
static void m_seq0(uint8_t *b) { put64(b + VMETA_OFF_SEQ, 0); }

static void test_header_rejections(void **state)
{
	struct vmeta_header h;
	uint8_t blk[BLK];

	mutated(m_magic, "bad magic");
	mutated(m_version, "unsupported format version 2");
	mutated(m_flags, "unknown flags");
	mutated(m_nil_uuid, "UUID");
	mutated(m_trailer_uuid, "UUID");
	mutated(m_size, "volume size 1000");
	mutated(m_chunk, "chunk size 4096");
	mutated(m_replicas, "4 replicas with 3 stores");
	mutated(m_stores, "65 stores");
	mutated(m_index, "store index 3 with 3 stores");
	mutated(m_data_start, "do not match the geometry");
	mutated(m_table_blocks, "do not match the geometry");
	mutated(m_slots, "do not match the geometry");
	mutated(m_gen0, "generation 0");
	mutated(m_last_live, "store 0 last seen live at generation 8");
	mutated(m_own_live, "own last-live generation 6");
	mutated(m_reserved, "reserved");
	mutated(m_blockno, "holds block 1, not 0");
	mutated(m_seq0, "update sequence 0");

	/* Not resealed: any bit flip is a checksum mismatch. */
	good_header(&h, 3, 2, 1);
	vmeta_header_encode(&h, blk);
	blk[100] ^= 0x10;
	header_refused(blk, 1, false, "checksum mismatch");
	vmeta_header_encode(&h, blk);
	blk[VMETA_OFF_HASH + 5] ^= 1;
	header_refused(blk, 1, false, "checksum mismatch");
	/* Sequence 3 belongs in copy 1. */
	vmeta_header_encode(&h, blk);
	header_refused(blk, 0, false, "copy 0 holds update sequence 3");
}

static void test_header_copies(void **state)
{
	struct vmeta_header h, d;
	uint8_t two[2 * BLK];
	char why[200] = "";
	int damaged;

	memset(two, 0, sizeof(two));
	assert_int_equal(vmeta_header_read(two, &d, &damaged, why, sizeof(why)), VMETA_EMPTY);

	good_header(&h, 2, 2, 0);
	h.seq = 1;                                   /* freshly formatted: copy 1 only */
	vmeta_header_encode(&h, two + BLK);
	assert_int_equal(vmeta_header_read(two, &d, &damaged, why, sizeof(why)), VMETA_OK);
	assert_int_equal(d.seq, 1);
	assert_int_equal(damaged, -1);

	h.seq = 2;
	h.generation = h.last_live[0] = 8;
	vmeta_header_encode(&h, two);                /* newer, copy 0 */
	assert_int_equal(vmeta_header_read(two, &d, &damaged, why, sizeof(why)), VMETA_OK);
	assert_int_equal(d.seq, 2);
	assert_int_equal(d.generation, 8);

	two[300] ^= 1;                               /* the newer one torn */
	assert_int_equal(vmeta_header_read(two, &d, &damaged, why, sizeof(why)), VMETA_OK);
	assert_int_equal(d.seq, 1);
	assert_int_equal(d.generation, 7);
	assert_int_equal(damaged, 0);

	two[BLK + 300] ^= 1;                         /* both damaged */
	assert_int_equal(vmeta_header_read(two, &d, &damaged, why, sizeof(why)), VMETA_INVALID);
	assert_string_equal(why, "checksum mismatch");

	memset(two + BLK, 0x5a, BLK);                /* two different reasons */
	assert_int_equal(vmeta_header_read(two, &d, &damaged, why, sizeof(why)), VMETA_INVALID);
	assert_string_equal(why, "copy 0: checksum mismatch; copy 1: bad magic (not a grappe "
			    "volume header)");
}

static const uint8_t uuid[16] = "0123456789abcdef";

static void test_table_round_trip(void **state)
{
	uint64_t e[VLAYOUT_ENTRIES], d[VLAYOUT_ENTRIES], seq = 0;
	uint8_t blk[BLK], again[BLK];
	char why[200] = "";

	for (unsigned i = 0; i < VLAYOUT_ENTRIES; i++)
		e[i] = i % 3 ? i : (i | VMETA_DIRTY);
	vmeta_table_encode(e, 100, 2, 5, uuid, blk);
	assert_int_equal(vmeta_table_decode(blk, 1, 2, uuid, 100, d, &seq, why, sizeof(why)),
			 VMETA_OK);
	assert_int_equal(seq, 5);
	assert_memory_equal(e, d, 100 * sizeof(uint64_t));
	vmeta_table_encode(d, 100, 2, 5, uuid, again);
	assert_memory_equal(blk, again, BLK);
	assert_int_equal(blk[8 * 3 + 7], 0x80);     /* dirty: bit 63 of entry 3 */

	vmeta_table_encode(e, VLAYOUT_ENTRIES, 1, 2, uuid, blk);
	assert_int_equal(vmeta_table_decode(blk, 0, 1, uuid, VLAYOUT_ENTRIES, d, &seq, why,
					    sizeof(why)), VMETA_OK);
	assert_memory_equal(e, d, sizeof(e));

	assert_int_equal(vmeta_block_entries(1000, 1), VLAYOUT_ENTRIES);
	assert_int_equal(vmeta_block_entries(1000, 2), 1000 - VLAYOUT_ENTRIES);
	assert_int_equal(vmeta_block_entries(1000, 3), 0);
	assert_int_equal(vmeta_block_entries(1000, 0), 0);
}

static void table_refused(const uint8_t *blk, unsigned copy, uint64_t block, const uint8_t *u,
			  unsigned n, const char *needle)
{
	uint64_t d[VLAYOUT_ENTRIES], seq;
	char why[200] = "";

	assert_int_equal(vmeta_table_decode(blk, copy, block, u, n, d, &seq, why, sizeof(why)),
			 VMETA_INVALID);
	if (!strstr(why, needle))
		fail_msg("\"%s\" does not mention \"%s\"", why, needle);
}

static void test_table_rejections(void **state)
{
	uint64_t e[VLAYOUT_ENTRIES] = { 1, 2, 3 }, d[VLAYOUT_ENTRIES], seq;
	uint8_t blk[BLK], zero[BLK] = { 0 };
	uint8_t other[16] = "another volume!";
	char why[200];

	vmeta_table_encode(e, 3, 4, 7, uuid, blk);
	table_refused(blk, 1, 5, uuid, 3, "holds block 4, not 5");
	table_refused(blk, 1, 4, other, 3, "another volume");
	table_refused(blk, 0, 4, uuid, 3, "copy 0 holds update sequence 7");
	table_refused(blk, 1, 4, uuid, 2, "non-zero bytes after the last entry (2)");
	table_refused(blk, 1, 4, uuid, VLAYOUT_ENTRIES + 1, "entries in one block");
	blk[10] ^= 4;
	table_refused(blk, 1, 4, uuid, 3, "checksum mismatch");
	assert_int_equal(vmeta_table_decode(zero, 1, 4, uuid, 3, d, &seq, why, sizeof(why)),
			 VMETA_EMPTY);
}

static void test_table_copies(void **state)
{
	uint64_t e[VLAYOUT_ENTRIES] = { 9, 9 }, d[VLAYOUT_ENTRIES], seq;
	uint8_t two[2 * BLK];
	char why[200] = "";
	int damaged;

	memset(two, 0, sizeof(two));
	assert_int_equal(vmeta_table_read(two, 1, uuid, 2, d, &seq, &damaged, why, sizeof(why)),
			 VMETA_INVALID);
	assert_string_equal(why, "missing (all zeros)");

	vmeta_table_encode(e, 2, 1, 1, uuid, two + BLK);
	e[1] = 10 | VMETA_DIRTY;
	vmeta_table_encode(e, 2, 1, 2, uuid, two);
	assert_int_equal(vmeta_table_read(two, 1, uuid, 2, d, &seq, &damaged, why, sizeof(why)),
			 VMETA_OK);
	assert_int_equal(seq, 2);
	assert_int_equal(d[1], 10 | VMETA_DIRTY);
	assert_int_equal(damaged, -1);

	two[7] ^= 1;                                 /* the newer copy torn */
	assert_int_equal(vmeta_table_read(two, 1, uuid, 2, d, &seq, &damaged, why, sizeof(why)),
			 VMETA_OK);
	assert_int_equal(seq, 1);
	assert_int_equal(d[1], 9);
	assert_int_equal(damaged, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_header_round_trip),
		cmocka_unit_test(test_header_rejections),
		cmocka_unit_test(test_header_copies),
		cmocka_unit_test(test_table_round_trip),
		cmocka_unit_test(test_table_rejections),
		cmocka_unit_test(test_table_copies),
	};

	if (sodium_init() < 0)
		return 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
