// SPDX-License-Identifier: MIT
/* The remote store's wire format: layouts, round trips and every refusal. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "blockdev/store_msg.h"

#define MAXMSG (STORE_MSG_REQ_HDR_LEN + STORE_MSG_MAX_DATA + 1024)

static uint8_t msg[MAXMSG];

/* Header + body in msg; returns the length. */
static size_t build_req(uint16_t type, const struct store_req *r)
{
	const char *why = NULL;
	int n = store_msg_encode_req(type, r, msg, &why);

	if (n < 0)
		print_error("encode %s: %s\n", store_msg_type_name(type), why);
	assert_int_equal(n, STORE_MSG_REQ_HDR_LEN);
	if (type == STORE_MSG_OPEN || type == STORE_MSG_WRITE) {
		memcpy(msg + n, r->body, r->len);
		return (size_t)n + r->len;
	}
	return (size_t)n;
}

static void expect_req_refused(uint16_t type, size_t len, const char *reason)
{
	struct store_req out;
	const char *why = NULL;

	assert_int_equal(store_msg_decode_req(type, msg, len, &out, &why), -EINVAL);
	assert_non_null(why);
	if (reason)
		assert_string_equal(why, reason);
}

/* A valid request decodes to itself; every shorter or longer payload is refused. */
static void req_roundtrip(uint16_t type, const struct store_req *r)
{
	struct store_req out;
	const char *why = NULL;
	size_t len = build_req(type, r);

	assert_int_equal(store_msg_decode_req(type, msg, len, &out, &why), 0);
	assert_int_equal(out.flags, r->flags);
	assert_int_equal(out.handle, r->handle);
	assert_int_equal(out.off, r->off);
	assert_int_equal(out.len, r->len);
	if (type == STORE_MSG_OPEN || type == STORE_MSG_WRITE) {
		assert_ptr_equal(out.body, msg + STORE_MSG_REQ_HDR_LEN);
		assert_memory_equal(out.body, r->body, r->len);
	} else {
		assert_null(out.body);
	}
	for (size_t l = 0; l < len; l++)
		expect_req_refused(type, l, NULL);
	msg[len] = 0;
	expect_req_refused(type, len + 1, NULL);
}

static void test_request_layout(void **state)
{
	struct store_req r = { .flags = STORE_REQ_F_MAY_UNMAP, .handle = 0x04030201,
			       .off = 0x1122334455667000ULL, .len = 0x10000 };
	static const uint8_t want[STORE_MSG_REQ_HDR_LEN] = {
		1, 1, 0, 0, 0x01, 0x02, 0x03, 0x04,
		0x00, 0x70, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11,
		0x00, 0x00, 0x01, 0x00, 0, 0, 0, 0,
	};

	(void)state;
	assert_int_equal(build_req(STORE_MSG_WRITE_ZEROES, &r), STORE_MSG_REQ_HDR_LEN);
	assert_memory_equal(msg, want, sizeof(want));
}

static void test_request_roundtrips(void **state)
{
	static uint8_t data[STORE_MSG_MAX_DATA];
	struct store_req r;

	(void)state;
	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)(i * 13 + 1);
	r = (struct store_req){ .len = 7, .body = (const uint8_t *)"node1:d" };
	req_roundtrip(STORE_MSG_OPEN, &r);
	r = (struct store_req){ .handle = 3, .off = 512, .len = STORE_MSG_MAX_DATA };
	req_roundtrip(STORE_MSG_READ, &r);
	r.body = data;
	req_roundtrip(STORE_MSG_WRITE, &r);
	r = (struct store_req){ .handle = 3, .off = 1024, .len = 512, .body = data };
	req_roundtrip(STORE_MSG_WRITE, &r);
	r = (struct store_req){ .handle = 9 };
	req_roundtrip(STORE_MSG_FLUSH, &r);
	r = (struct store_req){ .handle = 1, .off = 1 << 30, .len = STORE_MSG_MAX_RANGE };
	req_roundtrip(STORE_MSG_DISCARD, &r);
	r.flags = STORE_REQ_F_MAY_UNMAP;
	req_roundtrip(STORE_MSG_WRITE_ZEROES, &r);
	r.flags = 0;
	r.off = STORE_MSG_MAX_END + 1 - STORE_MSG_SECTOR - r.len;   /* last whole sector */
	r.off -= r.off % STORE_MSG_SECTOR;
	req_roundtrip(STORE_MSG_WRITE_ZEROES, &r);
}

/* Requests the encoder refuses, and the decoder too when the same bytes are forged. */
static void refuse_both(uint16_t type, const struct store_req *r, const char *reason)
{
	const char *why = NULL;
	uint8_t hdr[STORE_MSG_REQ_HDR_LEN];
	size_t len = STORE_MSG_REQ_HDR_LEN;

	assert_int_equal(store_msg_encode_req(type, r, hdr, &why), -EINVAL);
	assert_string_equal(why, reason);
	memset(msg, 0, STORE_MSG_REQ_HDR_LEN);
	msg[0] = STORE_MSG_VERSION;
	msg[1] = r->flags;
	for (int i = 0; i < 4; i++)
		msg[4 + i] = (uint8_t)(r->handle >> (8 * i));
	for (int i = 0; i < 8; i++)
		msg[8 + i] = (uint8_t)(r->off >> (8 * i));
	for (int i = 0; i < 4; i++)
		msg[16 + i] = (uint8_t)(r->len >> (8 * i));
	if (type == STORE_MSG_OPEN) {
		memcpy(msg + len, r->body, r->len);
		len += r->len;
	} else if (type == STORE_MSG_WRITE) {
		assert_true(r->len <= MAXMSG - STORE_MSG_REQ_HDR_LEN);
		memset(msg + len, 0xa5, r->len);
		len += r->len;
	}
	expect_req_refused(type, len, reason);
}

static void test_request_refusals(void **state)
{
	struct store_req r;

	(void)state;
	r = (struct store_req){ .len = 0, .body = (const uint8_t *)"" };
	refuse_both(STORE_MSG_OPEN, &r, "bad store name");
	r = (struct store_req){ .len = 3, .body = (const uint8_t *)"a b" };
	refuse_both(STORE_MSG_OPEN, &r, "bad store name");
	r = (struct store_req){ .len = 65, .body = (const uint8_t *)
		"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" };
	refuse_both(STORE_MSG_OPEN, &r, "bad store name");
	r = (struct store_req){ .handle = 1, .len = 1, .body = (const uint8_t *)"a" };
	refuse_both(STORE_MSG_OPEN, &r, "OPEN with a handle or an offset");
	r = (struct store_req){ .flags = STORE_REQ_F_MAY_UNMAP, .len = 512 };
	refuse_both(STORE_MSG_READ, &r, "unknown flags");
	r = (struct store_req){ .flags = STORE_REQ_F_MAY_UNMAP, .len = 512 };
	refuse_both(STORE_MSG_DISCARD, &r, "unknown flags");
	r = (struct store_req){ .flags = 0x80, .len = 512 };
	refuse_both(STORE_MSG_WRITE_ZEROES, &r, "unknown flags");
	r = (struct store_req){ .len = 0 };
	refuse_both(STORE_MSG_READ, &r, "zero length");
	r = (struct store_req){ .len = 0 };
	refuse_both(STORE_MSG_DISCARD, &r, "zero length");
	r = (struct store_req){ .len = STORE_MSG_MAX_DATA + 512 };
	refuse_both(STORE_MSG_READ, &r, "length over the per-request maximum");
	r = (struct store_req){ .len = STORE_MSG_MAX_RANGE + 512 };
	refuse_both(STORE_MSG_WRITE_ZEROES, &r, "length over the per-request maximum");
	r = (struct store_req){ .off = 100, .len = 512 };
	refuse_both(STORE_MSG_READ, &r, "offset or length not a multiple of 512");
	r = (struct store_req){ .off = 0, .len = 1000 };
	refuse_both(STORE_MSG_DISCARD, &r, "offset or length not a multiple of 512");
	r = (struct store_req){ .off = 4095, .len = 4096 };
	refuse_both(STORE_MSG_WRITE, &r, "offset or length not a multiple of 512");
	r = (struct store_req){ .len = STORE_MSG_MAX_DATA + 512 };
	refuse_both(STORE_MSG_WRITE, &r, "length over the per-request maximum");
	r = (struct store_req){ .off = UINT64_MAX - 511, .len = 512 };
	refuse_both(STORE_MSG_READ, &r, "offset out of range");
	r = (struct store_req){ .off = STORE_MSG_MAX_END + 1, .len = 512 };
	refuse_both(STORE_MSG_DISCARD, &r, "offset out of range");
	r = (struct store_req){ .off = 512 };
	refuse_both(STORE_MSG_FLUSH, &r, "FLUSH with an offset or a length");
	r = (struct store_req){ .len = 512 };
	refuse_both(STORE_MSG_FLUSH, &r, "FLUSH with an offset or a length");
	r = (struct store_req){ .len = 512 };
	assert_int_equal(store_msg_encode_req(STORE_MSG_REPLY, &r, msg, &(const char *){ 0 }),
			 -EINVAL);
}

static void test_request_header_bytes(void **state)
{
	struct store_req r = { .handle = 2, .off = 4096, .len = 512 };
	size_t len;

	(void)state;
	len = build_req(STORE_MSG_READ, &r);
	msg[0] = 2;
	expect_req_refused(STORE_MSG_READ, len, "unknown version");
	/* Each reserved byte, alone. */
	for (int i = 2; i < 4; i++) {
		len = build_req(STORE_MSG_READ, &r);
		msg[i] = 1;
		expect_req_refused(STORE_MSG_READ, len, "reserved field set");
	}
	for (int i = 20; i < 24; i++) {
		len = build_req(STORE_MSG_READ, &r);
		msg[i] = 0x80;
		expect_req_refused(STORE_MSG_READ, len, "reserved field set");
	}
	/* A WRITE whose data is shorter or longer than its header says. */
	r.body = (const uint8_t *)"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
		 "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
		 "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
		 "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
		 "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
		 "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
		 "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
		 "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
	len = build_req(STORE_MSG_WRITE, &r);
	expect_req_refused(STORE_MSG_WRITE, len - 1, "body shorter than its length");
	expect_req_refused(STORE_MSG_WRITE, len + 1, "trailing bytes");
	/* A READ that carries data; a type outside the requests. */
	len = build_req(STORE_MSG_READ, &r);
	expect_req_refused(STORE_MSG_READ, len + 512, "trailing bytes");
	expect_req_refused(STORE_MSG_REPLY, len, "not a request type");
	expect_req_refused(0x3f0, len, "not a request type");
	expect_req_refused(STORE_MSG_READ, 0, "truncated header");
}

static size_t build_reply(const struct store_reply *r)
{
	const char *why = NULL;
	int n = store_msg_encode_reply(r, msg, MAXMSG, &why);

	if (n < 0)
		print_error("encode reply: %s\n", why);
	assert_true(n > 0);
	if (r->data_len)
		memcpy(msg + n, r->data, r->data_len);
	return (size_t)n + r->data_len;
}

static void expect_reply_refused(size_t len, const char *reason)
{
	struct store_reply out;
	const char *why = NULL;

	assert_int_equal(store_msg_decode_reply(msg, len, &out, &why), -EINVAL);
	assert_non_null(why);
	if (reason)
		assert_string_equal(why, reason);
}

static void reply_roundtrip(const struct store_reply *r)
{
	struct store_reply out;
	const char *why = NULL;
	size_t len = build_reply(r);

	assert_int_equal(store_msg_decode_reply(msg, len, &out, &why), 0);
	assert_int_equal(out.req_type, r->req_type);
	assert_int_equal(out.status, r->status);
	assert_memory_equal(&out.info, &r->info, sizeof(out.info));
	assert_int_equal(out.data_len, r->data_len);
	if (r->data_len)
		assert_memory_equal(out.data, r->data, r->data_len);
	for (size_t l = 0; l < len; l++)
		if (!(r->req_type == STORE_MSG_READ && l > STORE_MSG_REPLY_HDR_LEN &&
		      (l - STORE_MSG_REPLY_HDR_LEN) % STORE_MSG_SECTOR == 0))
			expect_reply_refused(l, NULL);
	msg[len] = 0;
	expect_reply_refused(len + 1, NULL);
}

static void test_reply_layout(void **state)
{
	struct store_reply r = { .req_type = STORE_MSG_OPEN, .status = STORE_ST_OK };
	static const uint8_t want[] = {
		1, 0, 0, 0, 0, 0, 0, 0,
		7, 0, 0, 0, 0x00, 0x10, 0, 0,
		0x00, 0x00, 0x00, 0x40, 0, 0, 0, 0,
		3, 0, 64, 0, 0, 0, 0, 0,
	};
	struct store_reply e = { .req_type = STORE_MSG_FLUSH, .status = STORE_ST_NOSPC };
	static const uint8_t want_e[] = { 1, 3, 4, 0, 0, 0, 0, 0 };

	(void)state;
	memset(&r.info, 0, sizeof(r.info));
	r.info = (struct store_info){ .handle = 7, .block_size = 4096, .size = 1ULL << 30,
				      .read_only = true, .discard = true, .max_inflight = 64 };
	assert_int_equal(build_reply(&r), sizeof(want));
	assert_memory_equal(msg, want, sizeof(want));
	assert_int_equal(build_reply(&e), sizeof(want_e));
	assert_memory_equal(msg, want_e, sizeof(want_e));
}

static void test_reply_roundtrips(void **state)
{
	static uint8_t data[STORE_MSG_MAX_DATA];
	struct store_reply r;

	(void)state;
	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)(i * 5 + 2);
	memset(&r, 0, sizeof(r));
	r.req_type = STORE_MSG_OPEN;
	r.info = (struct store_info){ .handle = 1, .block_size = 512, .size = 12345,
				      .discard = true, .max_inflight = 1 };
	reply_roundtrip(&r);
	memset(&r, 0, sizeof(r));
	r.req_type = STORE_MSG_READ;
	r.data = data;
	r.data_len = STORE_MSG_MAX_DATA;
	reply_roundtrip(&r);
	r.data_len = 512;
	reply_roundtrip(&r);
	r = (struct store_reply){ .req_type = STORE_MSG_WRITE };
	reply_roundtrip(&r);
	for (uint16_t st = 1; st < STORE_ST_END; st++) {
		r = (struct store_reply){ .req_type = STORE_MSG_READ, .status = st };
		reply_roundtrip(&r);
		r.req_type = STORE_MSG_OPEN;
		reply_roundtrip(&r);
	}
}

static void test_reply_refusals(void **state)
{
	struct store_reply r = { .req_type = STORE_MSG_OPEN };
	const char *why = NULL;
	size_t len;

	(void)state;
	r.info = (struct store_info){ .handle = 1, .block_size = 1024, .size = 4096,
				      .max_inflight = 8 };
	assert_int_equal(store_msg_encode_reply(&r, msg, MAXMSG, &why), -EINVAL);
	assert_string_equal(why, "block size not 512 or 4096");
	r.info.block_size = 512;
	r.info.max_inflight = 0;
	assert_int_equal(store_msg_encode_reply(&r, msg, MAXMSG, &why), -EINVAL);
	r.info.max_inflight = 8;
	assert_int_equal(store_msg_encode_reply(&r, msg, 10, &why), -EINVAL);
	assert_string_equal(why, "buffer too small");

	len = build_reply(&r);
	msg[0] = 9;
	expect_reply_refused(len, "unknown version");
	len = build_reply(&r);
	msg[1] = 6;
	expect_reply_refused(len, "answers an unknown request type");
	len = build_reply(&r);
	msg[2] = STORE_ST_END;
	expect_reply_refused(len, "unknown status");
	msg[2] = STORE_ST_END;
	expect_reply_refused(STORE_MSG_REPLY_HDR_LEN, "unknown status");
	len = build_reply(&r);
	msg[5] = 1;
	expect_reply_refused(len, "reserved field set");
	len = build_reply(&r);
	msg[13] = 0;                        /* block size 0 */
	expect_reply_refused(len, "block size not 512 or 4096");
	len = build_reply(&r);
	msg[23] = 0x80;                     /* size past 2^63 */
	expect_reply_refused(len, "size out of range");
	len = build_reply(&r);
	msg[24] = 4;                        /* unknown store flag */
	expect_reply_refused(len, "unknown store flags");
	len = build_reply(&r);
	msg[26] = 0;                        /* no credit */
	expect_reply_refused(len, "credits out of range");
	len = build_reply(&r);
	msg[29] = 1;
	expect_reply_refused(len, "reserved field set");
	len = build_reply(&r);
	expect_reply_refused(len + 4, "trailing bytes");

	/* READ data: whole sectors, at most one frame's worth. */
	r = (struct store_reply){ .req_type = STORE_MSG_READ, .data = msg + 2048, .data_len = 512 };
	assert_int_equal(store_msg_encode_reply(&r, msg, MAXMSG, &why), STORE_MSG_REPLY_HDR_LEN);
	expect_reply_refused(STORE_MSG_REPLY_HDR_LEN, "read data length out of range");
	expect_reply_refused(STORE_MSG_REPLY_HDR_LEN + 100, "read data length out of range");
	expect_reply_refused(STORE_MSG_REPLY_HDR_LEN + STORE_MSG_MAX_DATA + 512,
			     "read data length out of range");
	r = (struct store_reply){ .req_type = STORE_MSG_READ, .status = STORE_ST_IO };
	len = build_reply(&r);
	expect_reply_refused(len + 512, "error with data");
	r = (struct store_reply){ .req_type = STORE_MSG_FLUSH };
	len = build_reply(&r);
	expect_reply_refused(len + 512, "data in a reply that carries none");
	r = (struct store_reply){ .req_type = STORE_MSG_REPLY };
	assert_int_equal(store_msg_encode_reply(&r, msg, MAXMSG, &why), -EINVAL);
	expect_reply_refused(3, "truncated header");
}

static void test_status_and_types(void **state)
{
	static const int errs[] = { EIO, EINVAL, EROFS, ENOSPC, EDQUOT, EOPNOTSUPP, ENOMEM,
				    ENOENT, EBADF, EBUSY, EPROTO, ESHUTDOWN };

	(void)state;
	assert_int_equal(store_status_from_errno(0), STORE_ST_OK);
	assert_int_equal(store_status_to_errno(STORE_ST_OK), 0);
	for (size_t i = 0; i < sizeof(errs) / sizeof(errs[0]); i++) {
		uint16_t st = store_status_from_errno(-errs[i]);

		assert_int_not_equal(st, STORE_ST_OK);
		if (errs[i] != EIO)
			assert_int_not_equal(st, STORE_ST_IO);
		assert_int_equal(store_status_to_errno(st), -errs[i]);
	}
	/* Anything without a code of its own is an I/O error, both ways. */
	assert_int_equal(store_status_from_errno(-EBADMSG), STORE_ST_IO);
	assert_int_equal(store_status_from_errno(-ENOTSUP), STORE_ST_NOTSUP);
	assert_int_equal(store_status_to_errno(999), -EIO);
	assert_string_equal(store_status_name(STORE_ST_ROFS), "read-only store");
	assert_string_equal(store_status_name(999), "unknown status");

	assert_false(store_msg_owns_type(0x2ff));
	assert_true(store_msg_owns_type(0x300));
	assert_true(store_msg_owns_type(0x3ff));
	assert_false(store_msg_owns_type(0x400));
	assert_true(store_msg_is_request(STORE_MSG_WRITE_ZEROES));
	assert_false(store_msg_is_request(STORE_MSG_REQ_END));
	assert_false(store_msg_is_request(STORE_MSG_REPLY));
	assert_true(store_msg_is_reply(STORE_MSG_REPLY));
	assert_false(store_msg_is_reply(STORE_MSG_READ));
	assert_string_equal(store_msg_type_name(STORE_MSG_FLUSH), "FLUSH");
	assert_string_equal(store_msg_type_name(0x3f0), "unknown");

	assert_true(store_msg_name_ok("node-1/disk_0.img:a@b+c", 23));
	assert_false(store_msg_name_ok("a\0b", 3));
	assert_false(store_msg_name_ok("a\xc3\xa9", 3));
	assert_false(store_msg_name_ok(NULL, 0));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_request_layout),
		cmocka_unit_test(test_request_roundtrips),
		cmocka_unit_test(test_request_refusals),
		cmocka_unit_test(test_request_header_bytes),
		cmocka_unit_test(test_reply_layout),
		cmocka_unit_test(test_reply_roundtrips),
		cmocka_unit_test(test_reply_refusals),
		cmocka_unit_test(test_status_and_types),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
