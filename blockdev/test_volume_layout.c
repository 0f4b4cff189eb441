// SPDX-License-Identifier: MIT
/*
 * Chunk placement and packing: for N = 1..4 stores and R = 1..3 replicas,
 * every chunk is on R distinct stores (c + k) mod N, the slots of a store
 * are its chunks in order (0, 1, 2, ...), the inverse mapping agrees, the
 * capacity covers every slot, and bad geometries are refused.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "blockdev/volume_layout.h"

#define C64K (64ull << 10)

static void check_geometry(unsigned n, unsigned r, uint64_t chunks, uint64_t tail)
{
	struct vlayout l;
	char why[200];
	uint64_t next_slot[VLAYOUT_MAX_STORES] = { 0 }, total = 0, max_slots = 0;
	uint64_t size = chunks * C64K - tail;

	assert_int_equal(vlayout_init(&l, size, C64K, r, n, why, sizeof(why)), 0);
	assert_int_equal(l.chunks, chunks);
	assert_int_equal(l.chunk_shift, 16);
	for (uint64_t c = 0; c < chunks; c++) {
		bool seen[VLAYOUT_MAX_STORES] = { false };

		for (unsigned k = 0; k < r; k++) {
			unsigned s = vlayout_store(&l, c, k);

			assert_int_equal(s, (c + k) % n);
			assert_false(seen[s]);          /* R distinct stores */
			seen[s] = true;
			assert_int_equal(vlayout_replica_of(&l, c, s), (int)k);
			/* Packed in chunk order: the next free slot of that store. */
			assert_int_equal(vlayout_slot(&l, c, s), next_slot[s]);
			assert_int_equal(vlayout_chunk_at(&l, s, next_slot[s]), c);
			assert_true(vlayout_data_offset(&l, c, s) + C64K <= vlayout_store_bytes(&l, s));
			next_slot[s]++;
		}
		for (unsigned s = 0; s < n; s++)
			if (!seen[s])
				assert_int_equal(vlayout_replica_of(&l, c, s), -1);
		assert_int_equal(vlayout_chunk_len(&l, c), c == chunks - 1 ? C64K - tail : C64K);
	}
	for (unsigned s = 0; s < n; s++) {
		assert_int_equal(vlayout_slots(&l, s), next_slot[s]);
		assert_int_equal(vlayout_store_bytes(&l, s), l.data_start + next_slot[s] * C64K);
		total += next_slot[s];
		if (next_slot[s] > max_slots)
			max_slots = next_slot[s];
	}
	assert_int_equal(total, chunks * r);
	assert_true(l.table_blocks * VLAYOUT_ENTRIES >= max_slots);
	assert_true((l.table_blocks - 1) * VLAYOUT_ENTRIES < max_slots);
	assert_int_equal(l.data_start % VLAYOUT_DATA_ALIGN, 0);
	assert_true(l.data_start >= 2 * (1 + l.table_blocks) * VLAYOUT_BLOCK);
}

static void test_all_small_geometries(void **state)
{
	for (unsigned n = 1; n <= 4; n++)
		for (unsigned r = 1; r <= 3 && r <= n; r++)
			for (uint64_t chunks = 1; chunks <= 3 * n + 2; chunks++)
				check_geometry(n, r, chunks, chunks % 2 ? 512 : 0);
}

/* More slots than one table block holds. */
static void test_multi_block_tables(void **state)
{
	check_geometry(3, 2, 2000, 0);
	check_geometry(4, 3, 1111, 4096);
}

/* Worked example from docs/volume.md: N = 3, R = 2. */
static void test_example(void **state)
{
	struct vlayout l;
	char why[200];

	assert_int_equal(vlayout_init(&l, 10 * C64K, C64K, 2, 3, why, sizeof(why)), 0);
	/* Store 0 holds chunks 0, 2, 3, 5, 6, 8, 9 (residues 0 and 2). */
	uint64_t want[] = { 0, 2, 3, 5, 6, 8, 9 };

	assert_int_equal(vlayout_slots(&l, 0), 7);
	for (unsigned i = 0; i < 7; i++) {
		assert_int_equal(vlayout_chunk_at(&l, 0, i), want[i]);
		assert_int_equal(vlayout_slot(&l, want[i], 0), i);
	}
	assert_int_equal(vlayout_store(&l, 2, 0), 2);
	assert_int_equal(vlayout_store(&l, 2, 1), 0);
	assert_int_equal(vlayout_replica_of(&l, 2, 0), 1);
	assert_int_equal(vlayout_replica_of(&l, 1, 0), -1);
	assert_int_equal(l.table_blocks, 1);
	assert_int_equal(l.data_start, 1 << 20);
}

/* The largest volume: products stay below 2^64. */
static void test_huge(void **state)
{
	struct vlayout l;
	char why[200];
	uint64_t last;

	assert_int_equal(vlayout_init(&l, VLAYOUT_MAX_SIZE, C64K, 3, 64, why, sizeof(why)), 0);
	last = l.chunks - 1;
	for (unsigned k = 0; k < 3; k++) {
		unsigned s = vlayout_store(&l, last, k);
		uint64_t slot = vlayout_slot(&l, last, s);

		assert_int_equal(slot, vlayout_slots(&l, s) - 1);
		assert_int_equal(vlayout_chunk_at(&l, s, slot), last);
		assert_true(vlayout_store_bytes(&l, s) > l.data_start);
	}
}

static void refused(uint64_t size, uint64_t chunk, unsigned r, unsigned n, const char *needle)
{
	struct vlayout l;
	char why[200] = "";

	assert_int_equal(vlayout_init(&l, size, chunk, r, n, why, sizeof(why)), -1);
	if (!strstr(why, needle))
		fail_msg("\"%s\" does not mention \"%s\"", why, needle);
}

static void test_refused(void **state)
{
	refused(1 << 20, 32 << 10, 1, 1, "chunk size");
	refused(1 << 20, (64 << 10) + 512, 1, 1, "chunk size");
	refused(1 << 20, 2ull << 30, 1, 1, "chunk size");
	refused(0, C64K, 1, 1, "volume size");
	refused(1000, C64K, 1, 1, "volume size");
	refused(VLAYOUT_MAX_SIZE + 512, C64K, 1, 1, "volume size");
	refused(1 << 20, C64K, 1, 0, "stores");
	refused(1 << 20, C64K, 1, 65, "stores");
	refused(1 << 20, C64K, 0, 2, "replicas");
	refused(1 << 20, C64K, 3, 2, "replicas");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_all_small_geometries),
		cmocka_unit_test(test_multi_block_tables),
		cmocka_unit_test(test_example),
		cmocka_unit_test(test_huge),
		cmocka_unit_test(test_refused),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
