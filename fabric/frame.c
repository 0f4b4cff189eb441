// SPDX-License-Identifier: MIT
/* Fabric frames: explicit little-endian layout, Poly1305 MAC, strict sequence. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <sodium.h>

#include "fabric/frame.h"

/* Longest reason a BYE frame may carry. */
#define FRAME_BYE_MAX 256

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
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

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get64(const uint8_t *p)
{
	return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

int frame_tx_init(struct frame_tx *tx, const uint8_t key[FRAME_KEY_LEN], unsigned src,
		  unsigned dst)
{
	/* sodium_init picks the fast ChaCha20/Poly1305 code for this CPU. */
	if (sodium_init() < 0)
		return -1;
	memcpy(tx->key, key, FRAME_KEY_LEN);
	tx->src = (uint16_t)src;
	tx->dst = (uint16_t)dst;
	tx->next_seq = 1;
	return 0;
}

int frame_rx_init(struct frame_rx *rx, const uint8_t key[FRAME_KEY_LEN], unsigned src,
		  unsigned dst, unsigned nr_nodes)
{
	if (sodium_init() < 0)
		return -1;
	memcpy(rx->key, key, FRAME_KEY_LEN);
	rx->src = (uint16_t)src;
	rx->dst = (uint16_t)dst;
	rx->nr_nodes = (uint16_t)nr_nodes;
	rx->next_seq = 1;
	return 0;
}

void frame_hdr_pack(const struct frame_hdr *h, uint8_t out[FRAME_HDR_LEN])
{
	memcpy(out, FRAME_MAGIC, 4);
	out[4] = h->version;
	out[5] = 0;
	put16(out + 6, h->type);
	put16(out + 8, h->flags);
	put16(out + 10, h->src);
	put16(out + 12, h->dst);
	put16(out + 14, 0);
	put32(out + 16, h->len);
	put32(out + 20, 0);
	put64(out + 24, h->req_id);
	put64(out + 32, h->seq);
	memcpy(out + FRAME_MAC_OFF, h->mac, FRAME_MAC_LEN);
}

enum frame_err frame_hdr_unpack(const uint8_t *in, size_t len, struct frame_hdr *h)
{
	if (len < FRAME_HDR_LEN)
		return FRAME_MORE;
	h->version = in[4];
	h->type = get16(in + 6);
	h->flags = get16(in + 8);
	h->src = get16(in + 10);
	h->dst = get16(in + 12);
	h->len = get32(in + 16);
	h->req_id = get64(in + 24);
	h->seq = get64(in + 32);
	memcpy(h->mac, in + FRAME_MAC_OFF, FRAME_MAC_LEN);
	if (memcmp(in, FRAME_MAGIC, 4))
		return FRAME_E_MAGIC;
	if (h->version != FRAME_VERSION)
		return FRAME_E_VERSION;
	if (in[5] || get16(in + 14) || get32(in + 20) || (h->flags & ~FRAME_FLAGS_KNOWN))
		return FRAME_E_RESERVED;
	if (h->len > FRAME_MAX_PAYLOAD)
		return FRAME_E_LENGTH;
	return FRAME_OK;
}

/*
 * Poly1305 needs a fresh key per message: the first ChaCha20 block under
 * the session key with the sequence number as nonce gives it, as in the
 * ChaCha20-Poly1305 AEAD (RFC 8439). Unlike that AEAD, the MAC can cover
 * a header and a page that are not contiguous in memory.
 */
static void frame_mac(const uint8_t key[FRAME_KEY_LEN], uint64_t seq, const uint8_t *hdr,
		      const struct iovec *iov, int iovcnt, uint8_t mac[FRAME_MAC_LEN])
{
	uint8_t nonce[crypto_stream_chacha20_ietf_NONCEBYTES] = { 0 };
	uint8_t otk[crypto_onetimeauth_KEYBYTES];
	crypto_onetimeauth_state st;

	put64(nonce + 4, seq);
	crypto_stream_chacha20_ietf(otk, sizeof(otk), nonce, key);
	crypto_onetimeauth_init(&st, otk);
	crypto_onetimeauth_update(&st, hdr, FRAME_MAC_OFF);
	for (int i = 0; i < iovcnt; i++)
		if (iov[i].iov_len)
			crypto_onetimeauth_update(&st, iov[i].iov_base, iov[i].iov_len);
	crypto_onetimeauth_final(&st, mac);
	sodium_memzero(otk, sizeof(otk));
	sodium_memzero(&st, sizeof(st));
}

int frame_seal(struct frame_tx *tx, uint8_t hdr[FRAME_HDR_LEN], uint16_t type, uint16_t flags,
	       uint64_t req_id, const struct iovec *iov, int iovcnt)
{
	struct frame_hdr h = {
		.version = FRAME_VERSION, .type = type, .flags = flags,
		.src = tx->src, .dst = tx->dst, .req_id = req_id,
	};
	size_t len = 0;

	if (iovcnt < 0 || iovcnt > FRAME_IOV_MAX || (flags & ~FRAME_FLAGS_KNOWN))
		return -EINVAL;
	for (int i = 0; i < iovcnt; i++) {
		len += iov[i].iov_len;
		if (len > FRAME_MAX_PAYLOAD)
			return -EINVAL;
	}
	if (tx->next_seq == UINT64_MAX)
		return -EOVERFLOW;
	h.len = (uint32_t)len;
	h.seq = tx->next_seq++;
	frame_hdr_pack(&h, hdr);
	frame_mac(tx->key, h.seq, hdr, iov, iovcnt, hdr + FRAME_MAC_OFF);
	return 0;
}

/* Fabric frames are consumed by the fabric: their payloads are checked here. */
static enum frame_err check_type(const struct frame_hdr *h)
{
	switch (h->type) {
	case FRAME_TYPE_HEARTBEAT:
		return h->len ? FRAME_E_PAYLOAD : FRAME_OK;
	case FRAME_TYPE_BYE:
		return h->len > FRAME_BYE_MAX ? FRAME_E_PAYLOAD : FRAME_OK;
	default:
		return h->type >= FRAME_TYPE_USER ? FRAME_OK : FRAME_E_TYPE;
	}
}

/* Everything the MAC vouches for must also be what this connection expects. */
static enum frame_err check_fields(const struct frame_rx *rx, const struct frame_hdr *h)
{
	if (h->src >= rx->nr_nodes || h->src != rx->src)
		return FRAME_E_SRC;
	if (h->dst >= rx->nr_nodes || h->dst != rx->dst)
		return FRAME_E_DST;
	if (h->seq != rx->next_seq)
		return FRAME_E_SEQ;
	return check_type(h);
}

enum frame_err frame_decode(struct frame_rx *rx, const uint8_t *buf, size_t len,
			    struct frame_hdr *h, const uint8_t **payload, size_t *consumed)
{
	uint8_t mac[FRAME_MAC_LEN];
	struct iovec iov;
	enum frame_err e;

	*consumed = FRAME_HDR_LEN;
	e = frame_hdr_unpack(buf, len, h);
	if (e != FRAME_OK)
		return e;
	*consumed = FRAME_HDR_LEN + (size_t)h->len;
	if (len < *consumed)
		return FRAME_MORE;
	/* The MAC first: a forged frame is reported as forged, whatever it says. */
	iov.iov_base = (void *)(buf + FRAME_HDR_LEN);
	iov.iov_len = h->len;
	frame_mac(rx->key, h->seq, buf, &iov, 1, mac);
	if (crypto_verify_16(mac, h->mac))
		return FRAME_E_MAC;
	e = check_fields(rx, h);
	if (e != FRAME_OK)
		return e;
	rx->next_seq++;
	*payload = buf + FRAME_HDR_LEN;
	return FRAME_OK;
}

const char *frame_strerror(enum frame_err e)
{
	switch (e) {
	case FRAME_OK: return "ok";
	case FRAME_MORE: return "incomplete frame";
	case FRAME_E_MAGIC: return "bad magic (not a grappe fabric frame)";
	case FRAME_E_VERSION: return "unsupported frame version";
	case FRAME_E_RESERVED: return "reserved field or unknown flag set";
	case FRAME_E_LENGTH: return "payload length over the maximum";
	case FRAME_E_TYPE: return "reserved frame type";
	case FRAME_E_SRC: return "wrong source node";
	case FRAME_E_DST: return "wrong destination node";
	case FRAME_E_SEQ: return "replayed or out-of-order sequence number";
	case FRAME_E_MAC: return "bad MAC (forged or corrupted frame)";
	case FRAME_E_PAYLOAD: return "malformed fabric frame payload";
	}
	return "unknown frame error";
}

void frame_describe(enum frame_err e, const struct frame_hdr *h, const struct frame_rx *rx,
		    char *buf, size_t len)
{
	switch (e) {
	case FRAME_E_VERSION:
		snprintf(buf, len, "%s: %u, expected %u", frame_strerror(e), h->version,
			 FRAME_VERSION);
		break;
	case FRAME_E_LENGTH:
		snprintf(buf, len, "%s: %" PRIu32 " > %u", frame_strerror(e), h->len,
			 FRAME_MAX_PAYLOAD);
		break;
	case FRAME_E_TYPE:
	case FRAME_E_PAYLOAD:
		snprintf(buf, len, "%s: type 0x%x, length %" PRIu32, frame_strerror(e), h->type,
			 h->len);
		break;
	case FRAME_E_SRC:
		snprintf(buf, len, "%s: %u, connection is with node %u", frame_strerror(e), h->src,
			 rx->src);
		break;
	case FRAME_E_DST:
		snprintf(buf, len, "%s: %u, this is node %u", frame_strerror(e), h->dst, rx->dst);
		break;
	case FRAME_E_SEQ:
		snprintf(buf, len, "%s: %" PRIu64 ", expected %" PRIu64, frame_strerror(e), h->seq,
			 rx->next_seq);
		break;
	case FRAME_E_MAC:
		snprintf(buf, len, "%s: seq %" PRIu64 ", type 0x%x", frame_strerror(e), h->seq,
			 h->type);
		break;
	default:
		snprintf(buf, len, "%s", frame_strerror(e));
		break;
	}
}
