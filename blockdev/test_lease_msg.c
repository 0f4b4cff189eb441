// SPDX-License-Identifier: MIT
/* Read-lease messages: the documented layout, round trips, every refusal. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "blockdev/lease_msg.h"

static void encode_ok(const struct lease_msg *m, uint8_t *buf)
{
	const char *why;

	assert_int_equal(lease_msg_encode(m, buf, &why), 0);
}

static void refused(uint16_t type, const uint8_t *buf, size_t len, const char *reason)
{
	struct lease_msg m;
	const char *why;

	assert_int_equal(lease_msg_decode(type, buf, len, &m, &why), -1);
	assert_non_null(why);
	assert_string_equal(why, reason);
}

static void test_layout(void **state)
{
	struct lease_msg m = { .type = LEASE_MSG_GRANT, .status = LEASE_REFUSED,
			       .volume = 0x04030201, .store = 63, .region = 0x0102030405ull,
			       .seq = 0x1122334455667788ull };
	uint8_t buf[LEASE_MSG_LEN];
	const uint8_t want[LEASE_MSG_LEN] = {
		1, 1, 0, 0, 0x01, 0x02, 0x03, 0x04, 63, 0, 0, 0, 0, 0, 0, 0,
		0x05, 0x04, 0x03, 0x02, 0x01, 0, 0, 0,
		0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11,
	};

	(void)state;
	encode_ok(&m, buf);
	assert_memory_equal(buf, want, sizeof(want));
	assert_int_equal(LEASE_MSG_REQUEST, 0x310);
	assert_int_equal(LEASE_MSG_ACK, 0x313);
}

static void test_round_trips(void **state)
{
	const struct lease_msg ms[] = {
		{ .type = LEASE_MSG_REQUEST, .volume = 1, .store = 2, .region = 3 },
		{ .type = LEASE_MSG_GRANT, .status = LEASE_GRANTED, .store = 0, .region = 0, .seq = 1 },
		{ .type = LEASE_MSG_GRANT, .status = LEASE_REFUSED, .region = LEASE_MAX_REGION,
		  .seq = UINT64_MAX },
		{ .type = LEASE_MSG_REVOKE, .store = 5, .region = LEASE_ALL_REGIONS, .seq = 9 },
		{ .type = LEASE_MSG_REVOKE, .store = 5, .region = 17, .seq = 9 },
		{ .type = LEASE_MSG_ACK, .store = 5, .region = LEASE_ALL_REGIONS, .seq = 9 },
		{ .type = LEASE_MSG_ACK, .volume = UINT32_MAX, .store = 63, .region = 4, .seq = 2 },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(ms) / sizeof(ms[0]); i++) {
		uint8_t buf[LEASE_MSG_LEN];
		struct lease_msg got;
		const char *why;

		encode_ok(&ms[i], buf);
		assert_int_equal(lease_msg_decode(ms[i].type, buf, sizeof(buf), &got, &why), 0);
		assert_int_equal(got.type, ms[i].type);
		assert_int_equal(got.status, ms[i].status);
		assert_int_equal(got.volume, ms[i].volume);
		assert_int_equal(got.store, ms[i].store);
		assert_int_equal(got.region, ms[i].region);
		assert_int_equal(got.seq, ms[i].seq);
	}
}

static void test_refusals(void **state)
{
	struct lease_msg m = { .type = LEASE_MSG_REVOKE, .store = 1, .region = 2, .seq = 3 };
	uint8_t good[LEASE_MSG_LEN], buf[LEASE_MSG_LEN + 1];
	const char *why;

	(void)state;
	encode_ok(&m, good);
	refused(LEASE_MSG_REVOKE, good, LEASE_MSG_LEN - 1, "truncated");
	memcpy(buf, good, LEASE_MSG_LEN);
	buf[LEASE_MSG_LEN] = 0;
	refused(LEASE_MSG_REVOKE, buf, sizeof(buf), "trailing bytes");
	refused(0x305, good, LEASE_MSG_LEN, "not a lease message type");
	refused(LEASE_MSG_END, good, LEASE_MSG_LEN, "not a lease message type");
	for (unsigned off = 0; off < LEASE_MSG_LEN; off++) {
		bool reserved = off == 2 || off == 3 || (off >= 12 && off < 16);

		memcpy(buf, good, LEASE_MSG_LEN);
		buf[off] ^= 0x80;
		if (reserved)
			refused(LEASE_MSG_REVOKE, buf, LEASE_MSG_LEN, "reserved field set");
	}
	memcpy(buf, good, LEASE_MSG_LEN);
	buf[0] = 2;
	refused(LEASE_MSG_REVOKE, buf, LEASE_MSG_LEN, "unknown version");
	memcpy(buf, good, LEASE_MSG_LEN);
	buf[1] = 1;                                    /* a status outside GRANT */
	refused(LEASE_MSG_REVOKE, buf, LEASE_MSG_LEN, "bad status");
	memcpy(buf, good, LEASE_MSG_LEN);
	buf[8] = 64;
	refused(LEASE_MSG_REVOKE, buf, LEASE_MSG_LEN, "store index out of range");
	memcpy(buf, good, LEASE_MSG_LEN);
	buf[21] = 1;                                   /* region 2^40 + 2 */
	refused(LEASE_MSG_REVOKE, buf, LEASE_MSG_LEN, "region out of range");
	memcpy(buf, good, LEASE_MSG_LEN);
	memset(buf + 24, 0, 8);
	refused(LEASE_MSG_REVOKE, buf, LEASE_MSG_LEN, "sequence 0");
	/* The same bytes as a REQUEST carry a sequence; as a GRANT, status 2 is unknown. */
	refused(LEASE_MSG_REQUEST, good, LEASE_MSG_LEN, "sequence in a request");
	memcpy(buf, good, LEASE_MSG_LEN);
	buf[1] = 2;
	refused(LEASE_MSG_GRANT, buf, LEASE_MSG_LEN, "bad status");
	/* Every region only in REVOKE and ACK. */
	m = (struct lease_msg){ .type = LEASE_MSG_GRANT, .region = LEASE_ALL_REGIONS, .seq = 1 };
	assert_int_equal(lease_msg_encode(&m, buf, &why), -1);
	assert_string_equal(why, "region out of range");
	m.type = LEASE_MSG_REVOKE;
	encode_ok(&m, buf);
	refused(LEASE_MSG_GRANT, buf, LEASE_MSG_LEN, "region out of range");
	refused(LEASE_MSG_REQUEST, buf, LEASE_MSG_LEN, "region out of range");
}

static void test_types(void **state)
{
	(void)state;
	assert_true(lease_msg_owns_type(LEASE_MSG_REQUEST));
	assert_false(lease_msg_owns_type(0x305));
	assert_false(lease_msg_owns_type(0x380));
	assert_true(lease_msg_to_coordinator(LEASE_MSG_REQUEST));
	assert_true(lease_msg_to_coordinator(LEASE_MSG_ACK));
	assert_false(lease_msg_to_coordinator(LEASE_MSG_GRANT));
	assert_false(lease_msg_to_coordinator(LEASE_MSG_REVOKE));
	assert_string_equal(lease_msg_type_name(LEASE_MSG_REVOKE), "LEASE_REVOKE");
	assert_string_equal(lease_msg_type_name(0x300), "unknown");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_layout),
		cmocka_unit_test(test_round_trips),
		cmocka_unit_test(test_refusals),
		cmocka_unit_test(test_types),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
