/* SPDX-License-Identifier: MIT */
#ifndef GRAPPE_FRAME_H
#define GRAPPE_FRAME_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

/*
 * One fabric frame: a fixed 56-byte header, then the payload. Every field
 * is little-endian and written byte by byte, so the layout does not depend
 * on the compiler (docs/fabric.md has the table):
 *
 *   0  magic "GRPF"     4  version (1)   5  reserved (0)
 *   6  type   u16       8  flags u16     10 source node u16
 *   12 destination u16  14 reserved u16  16 payload length u32
 *   20 reserved u32     24 request id u64   32 sequence u64
 *   40 MAC[16]          56 payload
 *
 * The MAC is Poly1305 over bytes 0..39 and the payload, with a one-time
 * key taken from ChaCha20(session key, nonce = sequence): the sequence is
 * the nonce, so it must never repeat under one key, which the strictly
 * increasing per-direction counter guarantees. A receiver accepts exactly
 * the next sequence number: a replayed, reordered, dropped or injected
 * frame is refused.
 */
#define FRAME_MAGIC "GRPF"
#define FRAME_VERSION 1
#define FRAME_HDR_LEN 56
#define FRAME_MAC_OFF 40
#define FRAME_MAC_LEN 16
#define FRAME_KEY_LEN 32
#define FRAME_MAX_PAYLOAD (64 * 1024 + 256)
#define FRAME_MAX_NODES 64
#define FRAME_IOV_MAX 8

/* Types below FRAME_TYPE_USER belong to the fabric itself. */
enum frame_type {
	FRAME_TYPE_HEARTBEAT = 1,  /* empty: "I am alive", sent when idle */
	FRAME_TYPE_BYE = 2,        /* payload: a reason; the sender is leaving */
	FRAME_TYPE_USER = 0x100,   /* first type an upper layer may use */
};

/* No flag is defined yet: a frame with any flag set is refused. */
#define FRAME_FLAGS_KNOWN 0

enum frame_err {
	FRAME_OK = 0,
	FRAME_MORE,          /* not an error: the frame is not complete yet */
	FRAME_E_MAGIC,
	FRAME_E_VERSION,
	FRAME_E_RESERVED,    /* a reserved field or an unknown flag is set */
	FRAME_E_LENGTH,
	FRAME_E_TYPE,
	FRAME_E_SRC,
	FRAME_E_DST,
	FRAME_E_SEQ,
	FRAME_E_MAC,
	FRAME_E_PAYLOAD,     /* a fabric frame whose payload is malformed */
};

struct frame_hdr {
	uint8_t version;
	uint16_t type;
	uint16_t flags;
	uint16_t src;
	uint16_t dst;
	uint32_t len;
	uint64_t req_id;
	uint64_t seq;
	uint8_t mac[FRAME_MAC_LEN];
};

/* One direction of one connection, as the sender sees it. */
struct frame_tx {
	uint8_t key[FRAME_KEY_LEN];
	uint16_t src, dst;
	uint64_t next_seq;
};

/* One direction of one connection, as the receiver sees it. */
struct frame_rx {
	uint8_t key[FRAME_KEY_LEN];
	uint16_t src, dst;   /* the peer, and this node */
	uint16_t nr_nodes;
	uint64_t next_seq;
};

/* Returns 0, or -1 if libsodium cannot be initialised. */
int frame_tx_init(struct frame_tx *tx, const uint8_t key[FRAME_KEY_LEN], unsigned src,
		  unsigned dst);
int frame_rx_init(struct frame_rx *rx, const uint8_t key[FRAME_KEY_LEN], unsigned src,
		  unsigned dst, unsigned nr_nodes);

void frame_hdr_pack(const struct frame_hdr *h, uint8_t out[FRAME_HDR_LEN]);
/*
 * Checks what can be checked without the key or the payload: magic,
 * version, reserved fields, flags, length. FRAME_MORE if len < header.
 */
enum frame_err frame_hdr_unpack(const uint8_t *in, size_t len, struct frame_hdr *h);

/*
 * Fills the header of the next frame: takes a sequence number and computes
 * the MAC over the header and the payload given as iovecs (so that a page
 * is never copied). Returns 0, or -EINVAL (payload too long, too many
 * iovecs) or -EOVERFLOW (sequence space exhausted).
 */
int frame_seal(struct frame_tx *tx, uint8_t hdr[FRAME_HDR_LEN], uint16_t type, uint16_t flags,
	       uint64_t req_id, const struct iovec *iov, int iovcnt);

/*
 * Decodes the frame at the start of buf (a stream: more frames may
 * follow). FRAME_OK: *h, *payload and *consumed are set and the receive
 * sequence has advanced. FRAME_MORE: *consumed is the number of bytes the
 * complete frame needs when known (at least the header length otherwise).
 * Any other value: the frame is malformed or forged and nothing in it may
 * be used; the connection must be closed.
 */
enum frame_err frame_decode(struct frame_rx *rx, const uint8_t *buf, size_t len,
			    struct frame_hdr *h, const uint8_t **payload, size_t *consumed);

const char *frame_strerror(enum frame_err e);
/* A message naming the offending field and value, for logs. */
void frame_describe(enum frame_err e, const struct frame_hdr *h, const struct frame_rx *rx,
		    char *buf, size_t len);

#endif
