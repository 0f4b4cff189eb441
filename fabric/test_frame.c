// SPDX-License-Identifier: MIT
/* Fabric frames: layout, round trips, and every refusal. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "fabric/frame.h"

static const uint8_t key[FRAME_KEY_LEN] = "0123456789abcdef0123456789abcdef";
static uint8_t buf[4 * (FRAME_HDR_LEN + FRAME_MAX_PAYLOAD)];

/* A sender from node 1 to node 2 and the matching receiver, in a 4-node cluster. */
static void pair(struct frame_tx *tx, struct frame_rx *rx)
{
	assert_int_equal(frame_tx_init(tx, key, 1, 2), 0);
	assert_int_equal(frame_rx_init(rx, key, 1, 2, 4), 0);
}

/* Seals one frame into buf at off; returns its length. */
static size_t put(struct frame_tx *tx, size_t off, uint16_t type, uint64_t req, const void *p,
		  size_t len)
{
	struct iovec v = { .iov_base = (void *)p, .iov_len = len };

	assert_int_equal(frame_seal(tx, buf + off, type, 0, req, &v, 1), 0);
	if (len)
		memcpy(buf + off + FRAME_HDR_LEN, p, len);
	return FRAME_HDR_LEN + len;
}

static enum frame_err get(struct frame_rx *rx, size_t len, struct frame_hdr *h,
			  const uint8_t **payload)
{
	size_t used;

	return frame_decode(rx, buf, len, h, payload, &used);
}

static void test_layout(void **state)
{
	struct frame_tx tx;
	struct frame_rx rx;

	(void)state;
	pair(&tx, &rx);
	put(&tx, 0, 0x1234, 0x0102030405060708ull, "hi", 2);
	/* Little-endian, byte for byte, as docs/fabric.md says. */
	assert_memory_equal(buf, "GRPF", 4);
	assert_int_equal(buf[4], FRAME_VERSION);
	assert_int_equal(buf[5], 0);
	assert_int_equal(buf[6], 0x34);
	assert_int_equal(buf[7], 0x12);
	assert_int_equal(buf[10], 1);   /* source */
	assert_int_equal(buf[12], 2);   /* destination */
	assert_int_equal(buf[16], 2);   /* length */
	assert_int_equal(buf[24], 0x08);
	assert_int_equal(buf[31], 0x01);
	assert_int_equal(buf[32], 1);   /* first sequence number */
	assert_memory_equal(buf + FRAME_HDR_LEN, "hi", 2);
}

static void test_roundtrip_sizes(void **state)
{
	static const size_t sizes[] = { 0, 1, 63, 64, 4096, 4096 + 32, FRAME_MAX_PAYLOAD };
	static uint8_t payload[FRAME_MAX_PAYLOAD];
	const uint8_t *p;
	struct frame_tx tx;
	struct frame_rx rx;
	struct frame_hdr h;

	(void)state;
	pair(&tx, &rx);
	for (size_t i = 0; i < sizeof(payload); i++)
		payload[i] = (uint8_t)(i * 7 + 3);
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		size_t n = put(&tx, 0, FRAME_TYPE_USER + (uint16_t)i, 1000 + i, payload, sizes[i]);

		assert_int_equal(get(&rx, n, &h, &p), FRAME_OK);
		assert_int_equal(h.type, FRAME_TYPE_USER + i);
		assert_int_equal(h.req_id, 1000 + i);
		assert_int_equal(h.len, sizes[i]);
		assert_int_equal(h.seq, i + 1);
		assert_int_equal(h.src, 1);
		assert_int_equal(h.dst, 2);
		assert_ptr_equal(p, buf + FRAME_HDR_LEN);
		if (sizes[i])
			assert_memory_equal(p, payload, sizes[i]);
	}
}

/* A header and a page in two pieces MAC the same as one piece. */
static void test_iovec(void **state)
{
	static uint8_t page[4096];
	uint8_t small[24] = "dsm header, 24 bytes...";
	struct iovec v[2] = { { small, sizeof(small) }, { page, sizeof(page) } };
	const uint8_t *p;
	struct frame_tx tx;
	struct frame_rx rx;
	struct frame_hdr h;
	size_t used;

	(void)state;
	pair(&tx, &rx);
	memset(page, 0xa5, sizeof(page));
	assert_int_equal(frame_seal(&tx, buf, 0x200, 0, 9, v, 2), 0);
	memcpy(buf + FRAME_HDR_LEN, small, sizeof(small));
	memcpy(buf + FRAME_HDR_LEN + sizeof(small), page, sizeof(page));
	assert_int_equal(frame_decode(&rx, buf, FRAME_HDR_LEN + 4120, &h, &p, &used), FRAME_OK);
	assert_int_equal(used, FRAME_HDR_LEN + 4120);
	assert_memory_equal(p + sizeof(small), page, sizeof(page));
}

/* Frames back to back in one buffer, decoded one after the other. */
static void test_stream(void **state)
{
	struct frame_tx tx;
	struct frame_rx rx;
	struct frame_hdr h;
	const uint8_t *p;
	size_t off = 0, used, end = 0;

	(void)state;
	pair(&tx, &rx);
	for (unsigned i = 0; i < 100; i++) {
		char msg[32];
		int n = snprintf(msg, sizeof(msg), "message %u", i);

		end += put(&tx, end, FRAME_TYPE_USER, i, msg, (size_t)n);
	}
	for (unsigned i = 0; i < 100; i++) {
		char msg[32];
		int n = snprintf(msg, sizeof(msg), "message %u", i);

		assert_int_equal(frame_decode(&rx, buf + off, end - off, &h, &p, &used), FRAME_OK);
		assert_int_equal(h.req_id, i);
		assert_int_equal(h.len, n);
		assert_memory_equal(p, msg, (size_t)n);
		off += used;
	}
	assert_int_equal(off, end);
}

/* Every prefix of a frame is incomplete, never an error and never accepted. */
static void test_truncated(void **state)
{
	struct frame_tx tx;
	struct frame_rx rx;
	struct frame_hdr h;
	const uint8_t *p;
	size_t n, used;

	(void)state;
	pair(&tx, &rx);
	n = put(&tx, 0, FRAME_TYPE_USER, 1, "0123456789", 10);
	for (size_t len = 0; len < n; len++) {
		assert_int_equal(frame_decode(&rx, buf, len, &h, &p, &used), FRAME_MORE);
		assert_int_equal(used, len < FRAME_HDR_LEN ? FRAME_HDR_LEN : n);
	}
	assert_int_equal(frame_decode(&rx, buf, n, &h, &p, &used), FRAME_OK);
}

/* Sets one header field after sealing. */
static enum frame_err corrupt_at(size_t off, uint8_t value)
{
	struct frame_tx tx;
	struct frame_rx rx;
	struct frame_hdr h;
	const uint8_t *p;
	size_t n;

	pair(&tx, &rx);
	n = put(&tx, 0, FRAME_TYPE_USER, 1, "payload", 7);
	buf[off] = value;
	return get(&rx, n, &h, &p);
}

static void test_header_refusals(void **state)
{
	(void)state;
	assert_int_equal(corrupt_at(0, 'X'), FRAME_E_MAGIC);
	assert_int_equal(corrupt_at(3, 'G'), FRAME_E_MAGIC);
	assert_int_equal(corrupt_at(4, 2), FRAME_E_VERSION);
	assert_int_equal(corrupt_at(4, 0), FRAME_E_VERSION);
	assert_int_equal(corrupt_at(5, 1), FRAME_E_RESERVED);
	assert_int_equal(corrupt_at(8, 1), FRAME_E_RESERVED);      /* unknown flag */
	assert_int_equal(corrupt_at(15, 1), FRAME_E_RESERVED);
	assert_int_equal(corrupt_at(21, 1), FRAME_E_RESERVED);
	assert_int_equal(corrupt_at(18, 1), FRAME_MORE);           /* 64 KiB + 7 is allowed */
	assert_int_equal(corrupt_at(18, 2), FRAME_E_LENGTH);       /* 128 KiB + 7 is not */
	assert_int_equal(corrupt_at(19, 1), FRAME_E_LENGTH);
	/* Fields covered by the MAC only: a change is a forgery. */
	assert_int_equal(corrupt_at(6, 0x01), FRAME_E_MAC);        /* type */
	assert_int_equal(corrupt_at(10, 3), FRAME_E_MAC);          /* source */
	assert_int_equal(corrupt_at(12, 3), FRAME_E_MAC);          /* destination */
	assert_int_equal(corrupt_at(24, 0xff), FRAME_E_MAC);       /* request id */
	assert_int_equal(corrupt_at(32, 2), FRAME_E_MAC);          /* sequence */
	assert_int_equal(corrupt_at(40, 0), FRAME_E_MAC);          /* the MAC itself */
	assert_int_equal(corrupt_at(FRAME_HDR_LEN + 3, 'X'), FRAME_E_MAC);  /* payload */
}

/* No single flipped bit anywhere in the frame gets through. */
static void test_every_bit(void **state)
{
	struct frame_tx tx;
	struct frame_rx rx;
	struct frame_hdr h;
	const uint8_t *p;
	size_t n;

	(void)state;
	pair(&tx, &rx);
	n = put(&tx, 0, FRAME_TYPE_USER, 77, "a short payload", 15);
	for (size_t bit = 0; bit < n * 8; bit++) {
		enum frame_err e;

		buf[bit / 8] ^= (uint8_t)(1u << (bit % 8));
		e = get(&rx, n, &h, &p);
		assert_true(e != FRAME_OK);
		buf[bit / 8] ^= (uint8_t)(1u << (bit % 8));
	}
	assert_int_equal(get(&rx, n, &h, &p), FRAME_OK);
}

static void test_length_limit(void **state)
{
	static uint8_t big[FRAME_MAX_PAYLOAD + 1];
	struct iovec v = { big, sizeof(big) };
	struct iovec many[FRAME_IOV_MAX + 1];
	struct frame_tx tx;
	struct frame_rx rx;

	(void)state;
	pair(&tx, &rx);
	assert_int_equal(frame_seal(&tx, buf, FRAME_TYPE_USER, 0, 0, &v, 1), -EINVAL);
	for (int i = 0; i <= FRAME_IOV_MAX; i++)
		many[i] = (struct iovec){ big, 1 };
	assert_int_equal(frame_seal(&tx, buf, FRAME_TYPE_USER, 0, 0, many, FRAME_IOV_MAX + 1),
			 -EINVAL);
	assert_int_equal(frame_seal(&tx, buf, FRAME_TYPE_USER, 1, 0, NULL, 0), -EINVAL);
	/* Refused seals do not use up sequence numbers. */
	assert_int_equal(tx.next_seq, 1);
	tx.next_seq = UINT64_MAX;
	assert_int_equal(frame_seal(&tx, buf, FRAME_TYPE_USER, 0, 0, NULL, 0), -EOVERFLOW);
}

static void test_replay_reorder(void **state)
{
	struct frame_tx tx;
	struct frame_rx rx;
	struct frame_hdr h;
	const uint8_t *p;
	uint8_t first[FRAME_HDR_LEN + 5];
	size_t n1, n2;

	(void)state;
	pair(&tx, &rx);
	n1 = put(&tx, 0, FRAME_TYPE_USER, 1, "first", 5);
	memcpy(first, buf, n1);
	n2 = put(&tx, 0, FRAME_TYPE_USER, 2, "second", 6);
	/* The second before the first: out of order. */
	assert_int_equal(get(&rx, n2, &h, &p), FRAME_E_SEQ);
	memcpy(buf, first, n1);
	assert_int_equal(get(&rx, n1, &h, &p), FRAME_OK);
	/* The first again: a replay. */
	assert_int_equal(get(&rx, n1, &h, &p), FRAME_E_SEQ);
	assert_int_equal(h.seq, 1);
}

static void test_wrong_nodes(void **state)
{
	struct frame_tx tx;
	struct frame_rx rx;
	struct frame_hdr h;
	const uint8_t *p;
	char msg[200];
	size_t n;

	(void)state;
	/* A genuine MAC but the wrong source: a frame meant for another connection. */
	assert_int_equal(frame_tx_init(&tx, key, 3, 2), 0);
	assert_int_equal(frame_rx_init(&rx, key, 1, 2, 4), 0);
	n = put(&tx, 0, FRAME_TYPE_USER, 1, "x", 1);
	assert_int_equal(get(&rx, n, &h, &p), FRAME_E_SRC);
	frame_describe(FRAME_E_SRC, &h, &rx, msg, sizeof(msg));
	assert_non_null(strstr(msg, "3, connection is with node 1"));

	assert_int_equal(frame_tx_init(&tx, key, 1, 0), 0);
	n = put(&tx, 0, FRAME_TYPE_USER, 1, "x", 1);
	assert_int_equal(get(&rx, n, &h, &p), FRAME_E_DST);

	/* Out of range for the cluster. */
	assert_int_equal(frame_tx_init(&tx, key, 1, 9), 0);
	n = put(&tx, 0, FRAME_TYPE_USER, 1, "x", 1);
	assert_int_equal(get(&rx, n, &h, &p), FRAME_E_DST);
	assert_int_equal(frame_tx_init(&tx, key, 70, 2), 0);
	n = put(&tx, 0, FRAME_TYPE_USER, 1, "x", 1);
	assert_int_equal(get(&rx, n, &h, &p), FRAME_E_SRC);
}

static void test_wrong_key(void **state)
{
	uint8_t other[FRAME_KEY_LEN];
	struct frame_tx tx;
	struct frame_rx rx;
	struct frame_hdr h;
	const uint8_t *p;
	size_t n;

	(void)state;
	memcpy(other, key, sizeof(other));
	other[0] ^= 1;
	assert_int_equal(frame_tx_init(&tx, other, 1, 2), 0);
	assert_int_equal(frame_rx_init(&rx, key, 1, 2, 4), 0);
	n = put(&tx, 0, FRAME_TYPE_USER, 1, "x", 1);
	assert_int_equal(get(&rx, n, &h, &p), FRAME_E_MAC);
	/* The receiver did not move: the genuine first frame is still welcome. */
	assert_int_equal(rx.next_seq, 1);
}

static void test_fabric_types(void **state)
{
	static uint8_t reason[300];
	struct frame_tx tx;
	struct frame_rx rx;
	struct frame_hdr h;
	const uint8_t *p;
	size_t n;

	(void)state;
	pair(&tx, &rx);
	n = put(&tx, 0, FRAME_TYPE_HEARTBEAT, 0, NULL, 0);
	assert_int_equal(get(&rx, n, &h, &p), FRAME_OK);
	n = put(&tx, 0, FRAME_TYPE_BYE, 0, "bye", 3);
	assert_int_equal(get(&rx, n, &h, &p), FRAME_OK);
	n = put(&tx, 0, FRAME_TYPE_HEARTBEAT, 0, "x", 1);
	assert_int_equal(get(&rx, n, &h, &p), FRAME_E_PAYLOAD);

	pair(&tx, &rx);
	n = put(&tx, 0, FRAME_TYPE_BYE, 0, reason, sizeof(reason));
	assert_int_equal(get(&rx, n, &h, &p), FRAME_E_PAYLOAD);
	pair(&tx, &rx);
	n = put(&tx, 0, 0, 0, NULL, 0);
	assert_int_equal(get(&rx, n, &h, &p), FRAME_E_TYPE);
	pair(&tx, &rx);
	n = put(&tx, 0, 0xff, 0, NULL, 0);
	assert_int_equal(get(&rx, n, &h, &p), FRAME_E_TYPE);
}

static void test_messages(void **state)
{
	struct frame_hdr h = { .version = 9, .len = 1u << 20, .seq = 5, .src = 3, .type = 7 };
	struct frame_rx rx = { .src = 1, .dst = 2, .next_seq = 4 };
	char msg[200];

	(void)state;
	for (int e = FRAME_OK; e <= FRAME_E_PAYLOAD; e++)
		assert_true(strlen(frame_strerror((enum frame_err)e)) > 0);
	frame_describe(FRAME_E_VERSION, &h, &rx, msg, sizeof(msg));
	assert_non_null(strstr(msg, "9, expected 1"));
	frame_describe(FRAME_E_LENGTH, &h, &rx, msg, sizeof(msg));
	assert_non_null(strstr(msg, "1048576 > 65792"));
	frame_describe(FRAME_E_SEQ, &h, &rx, msg, sizeof(msg));
	assert_non_null(strstr(msg, "5, expected 4"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_layout),
		cmocka_unit_test(test_roundtrip_sizes),
		cmocka_unit_test(test_iovec),
		cmocka_unit_test(test_stream),
		cmocka_unit_test(test_truncated),
		cmocka_unit_test(test_header_refusals),
		cmocka_unit_test(test_every_bit),
		cmocka_unit_test(test_length_limit),
		cmocka_unit_test(test_replay_reorder),
		cmocka_unit_test(test_wrong_nodes),
		cmocka_unit_test(test_wrong_key),
		cmocka_unit_test(test_fabric_types),
		cmocka_unit_test(test_messages),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
