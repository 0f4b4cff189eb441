// SPDX-License-Identifier: MIT
/*
 * The frame decoder on arbitrary bytes, with a fixed session key.
 *
 * First byte: the mode.
 *   even: the rest is a received byte stream, decoded frame after frame
 *         until an error or an incomplete frame (a forger's view: the MAC
 *         stops almost everything, which is the point).
 *   odd:  the rest chooses a frame's fields (type, source, destination,
 *         sequence, request id) and payload; it is sealed with the genuine
 *         key and then decoded, so the checks behind the MAC are fuzzed
 *         too. A sealed frame whose fields are what the receiver expects
 *         must come back identical.
 * Build with -DFUZZ_FRAME_SEEDS for a main() that writes the seeds.
 */
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fabric/frame.h"

static const uint8_t key[FRAME_KEY_LEN] = "fuzzing session key, 32 bytes...";
static uint8_t frame_buf[FRAME_HDR_LEN + FRAME_MAX_PAYLOAD];

/* A receiver for node 1 -> node 2 in a 4-node cluster. */
static void receiver(struct frame_rx *rx)
{
	if (frame_rx_init(rx, key, 1, 2, 4))
		abort();
}

static void decode_stream(const uint8_t *data, size_t size)
{
	struct frame_rx rx;
	struct frame_hdr h;
	const uint8_t *payload;
	size_t off = 0, used;

	receiver(&rx);
	while (off < size) {
		enum frame_err e = frame_decode(&rx, data + off, size - off, &h, &payload, &used);

		if (e != FRAME_OK)
			return;
		if (used != FRAME_HDR_LEN + h.len || used > size - off ||
		    payload != data + off + FRAME_HDR_LEN)
			abort();
		off += used;
	}
}

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

/* Fields: type 2, src 2, dst 2, seq 1 (offset from 1), req 8, then the payload. */
static void seal_and_decode(const uint8_t *data, size_t size)
{
	struct frame_tx tx;
	struct frame_rx rx;
	struct frame_hdr h;
	const uint8_t *payload;
	struct iovec v[2];
	uint64_t req;
	size_t len, used, half;
	enum frame_err e;

	if (size < 15)
		return;
	if (frame_tx_init(&tx, key, get16(data + 2), get16(data + 4)))
		abort();
	tx.next_seq = 1 + data[6] % 4;
	memcpy(&req, data + 7, 8);
	len = size - 15;
	if (len > FRAME_MAX_PAYLOAD)
		len = FRAME_MAX_PAYLOAD;
	/* Split the payload in two pieces, as a header and a page would be. */
	half = len / 2;
	v[0] = (struct iovec){ (void *)(data + 15), half };
	v[1] = (struct iovec){ (void *)(data + 15 + half), len - half };
	if (frame_seal(&tx, frame_buf, get16(data), 0, req, v, 2))
		abort();
	memcpy(frame_buf + FRAME_HDR_LEN, data + 15, len);
	receiver(&rx);
	e = frame_decode(&rx, frame_buf, FRAME_HDR_LEN + len, &h, &payload, &used);
	if (e == FRAME_MORE || e == FRAME_E_MAGIC || e == FRAME_E_VERSION ||
	    e == FRAME_E_RESERVED || e == FRAME_E_LENGTH || e == FRAME_E_MAC)
		abort();        /* the sender made all of these right */
	if (e != FRAME_OK)
		return;
	if (h.src != 1 || h.dst != 2 || h.seq != 1 || h.req_id != req || h.len != len ||
	    used != FRAME_HDR_LEN + len || memcmp(payload, data + 15, len))
		abort();
	/* Decoded once; the same bytes again are a replay. */
	if (frame_decode(&rx, frame_buf, FRAME_HDR_LEN + len, &h, &payload, &used) != FRAME_E_SEQ)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	if (data[0] & 1)
		seal_and_decode(data + 1, size - 1);
	else
		decode_stream(data + 1, size - 1);
	return 0;
}

#ifdef FUZZ_FRAME_SEEDS
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

/* A stream of n genuine frames from node 1 to node 2, after the mode byte. */
static size_t genuine_stream(uint8_t *buf, unsigned n, size_t payload_len)
{
	struct frame_tx tx;
	size_t len = 1;

	buf[0] = 0;
	frame_tx_init(&tx, key, 1, 2);
	for (unsigned i = 0; i < n; i++) {
		struct iovec v = { buf + len + FRAME_HDR_LEN, payload_len };

		memset(buf + len + FRAME_HDR_LEN, 'a' + (int)i, payload_len);
		frame_seal(&tx, buf + len, i % 2 ? FRAME_TYPE_HEARTBEAT : 0x100 + i, 0, i,
			   &v, i % 2 ? 0 : 1);
		len += FRAME_HDR_LEN + (i % 2 ? 0 : payload_len);
	}
	return len;
}

int main(int argc, char **argv)
{
	static uint8_t buf[8 * (FRAME_HDR_LEN + 4096)];
	const char *dir = argc > 1 ? argv[1] : ".";
	uint8_t fields[1 + 15 + 16] = { 1, 0x00, 0x01, 1, 0, 2, 0, 0, 7 };
	size_t n;

	n = genuine_stream(buf, 4, 32);
	write_seed(dir, "stream-4-frames", buf, n);
	write_seed(dir, "stream-truncated", buf, n - 5);
	n = genuine_stream(buf, 3, 4096);
	write_seed(dir, "stream-pages", buf, n);
	n = genuine_stream(buf, 2, 8);
	buf[n - 1] ^= 0x40;
	write_seed(dir, "stream-bad-mac", buf, n);
	memcpy(fields + 16, "sixteen byte pay", 16);
	write_seed(dir, "sealed-valid", fields, sizeof(fields));
	fields[3] = 3;          /* source 3 */
	write_seed(dir, "sealed-wrong-src", fields, sizeof(fields));
	fields[3] = 1;
	fields[1] = 0x02;       /* BYE */
	fields[2] = 0x00;
	write_seed(dir, "sealed-bye", fields, sizeof(fields));
	return 0;
}
#endif
