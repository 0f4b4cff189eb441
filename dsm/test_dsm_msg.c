// SPDX-License-Identifier: MIT
/* DSM messages: round trips and refusals. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <string.h>
#include <cmocka.h>

#include "dsm/dsm_msg.h"

static uint8_t buf[DSM_MSG_MAX_LEN + 1];

/* Encodes m (and a page when it carries one), decodes it back. */
static size_t frame(const struct dsm_msg *m)
{
	size_t len;

	assert_int_equal(dsm_msg_encode(m, buf, sizeof(buf)), DSM_MSG_HDR_LEN);
	len = DSM_MSG_HDR_LEN;
	if (dsm_msg_has_page(m)) {
		memset(buf + len, 0xa5, DSM_PAGE_SIZE);
		len += DSM_PAGE_SIZE;
	}
	return len;
}

static void roundtrip(uint8_t type, uint8_t flags, uint64_t page)
{
	struct dsm_msg m = { .type = type, .flags = flags, .page = page }, out;
	const uint8_t *pg;
	const char *why = NULL;
	size_t len = frame(&m);

	assert_int_equal(dsm_msg_decode(buf, len, &out, &pg, &why), 0);
	assert_null(why);
	assert_int_equal(out.type, type);
	assert_int_equal(out.flags, flags);
	assert_true(out.page == page);
	assert_true((pg != NULL) == dsm_msg_has_page(&m));
	if (pg)
		assert_ptr_equal(pg, buf + DSM_MSG_HDR_LEN);
	/* one byte short, one byte more */
	assert_int_equal(dsm_msg_decode(buf, len - 1, &out, &pg, &why), -EINVAL);
	assert_int_equal(dsm_msg_decode(buf, len + 1, &out, &pg, &why), -EINVAL);
	assert_string_equal(why, "trailing bytes");
}

static void test_roundtrips(void **state)
{
	(void)state;
	for (uint8_t t = DSM_GET_S; t < DSM_MSG_TYPE_END; t++)
		roundtrip(t, 0, 7);
	roundtrip(DSM_DATA, DSM_MSG_F_GRANT_M, 12345);
	roundtrip(DSM_DATA_ZERO, DSM_MSG_F_GRANT_M, 0);
	roundtrip(DSM_PUT_M, DSM_MSG_F_ZERO, 1);
	roundtrip(DSM_FWD_DATA, DSM_MSG_F_ZERO, DSM_MSG_MAX_PAGE);
	roundtrip(DSM_GET_M, 0, DSM_MSG_MAX_PAGE);
}

static void test_payload_rules(void **state)
{
	struct dsm_msg m = { .type = DSM_DATA };

	(void)state;
	assert_true(dsm_msg_has_page(&m));
	m.type = DSM_DATA_ZERO;
	assert_false(dsm_msg_has_page(&m));
	m.type = DSM_PUT_M;
	assert_true(dsm_msg_has_page(&m));
	m.flags = DSM_MSG_F_ZERO;
	assert_false(dsm_msg_has_page(&m));
	m = (struct dsm_msg){ .type = DSM_INV };
	assert_false(dsm_msg_has_page(&m));
	assert_string_equal(dsm_msg_type_name(DSM_FWD_GET_M), "FWD_GET_M");
	assert_string_equal(dsm_msg_type_name(0), "?");
	assert_string_equal(dsm_msg_type_name(200), "?");
}

static void refused(size_t len, const char *reason)
{
	struct dsm_msg out;
	const uint8_t *pg = (const uint8_t *)1;
	const char *why = NULL;

	assert_int_equal(dsm_msg_decode(buf, len, &out, &pg, &why), -EINVAL);
	assert_null(pg);
	assert_non_null(why);
	assert_string_equal(why, reason);
}

static void test_refusals(void **state)
{
	struct dsm_msg m = { .type = DSM_GET_S, .page = 3 };
	size_t len;

	(void)state;
	refused(0, "truncated header");
	len = frame(&m);
	refused(len - 1, "truncated header");
	buf[0] = 2;
	refused(len, "unknown version");
	len = frame(&m);
	buf[3] = 1;
	refused(len, "reserved bytes set");
	len = frame(&m);
	buf[6] = 1;
	refused(len, "reserved bytes set");
	len = frame(&m);
	buf[1] = 0;
	refused(len, "unknown type");
	buf[1] = DSM_MSG_TYPE_END;
	refused(len, "unknown type");
	len = frame(&m);
	buf[2] = DSM_MSG_F_ZERO;           /* GET_S has no flags */
	refused(len, "flags not allowed for this type");
	buf[2] = 0x80;
	refused(len, "flags not allowed for this type");
	len = frame(&m);
	buf[15] = 0x01;                    /* page 2^56 + 3 */
	refused(len, "page index out of range");
	/* DATA without its page */
	m = (struct dsm_msg){ .type = DSM_DATA, .page = 1 };
	len = frame(&m);
	refused(DSM_MSG_HDR_LEN, "truncated page");
	refused(len - 1, "truncated page");
	/* a zero PUT_M carries nothing */
	m = (struct dsm_msg){ .type = DSM_PUT_M, .flags = DSM_MSG_F_ZERO, .page = 1 };
	len = frame(&m);
	buf[len] = 0;
	refused(len + DSM_PAGE_SIZE, "trailing bytes");
	/* the encoder refuses what the decoder would */
	m = (struct dsm_msg){ .type = DSM_INV, .flags = DSM_MSG_F_GRANT_M };
	assert_int_equal(dsm_msg_encode(&m, buf, sizeof(buf)), -EINVAL);
	m = (struct dsm_msg){ .type = DSM_INV, .page = DSM_MSG_MAX_PAGE + 1 };
	assert_int_equal(dsm_msg_encode(&m, buf, sizeof(buf)), -EINVAL);
	m = (struct dsm_msg){ .type = DSM_INV };
	assert_int_equal(dsm_msg_encode(&m, buf, DSM_MSG_HDR_LEN - 1), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrips),
		cmocka_unit_test(test_payload_rules),
		cmocka_unit_test(test_refusals),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
