/* SPDX-License-Identifier: MIT */
#ifndef GRAPPE_STORE_MSG_H
#define GRAPPE_STORE_MSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

/*
 * The wire format of the remote block store (docs/store-protocol.md has
 * the tables): a client node asks the node that owns a backing store to
 * read, write, flush, discard or zero it. Fabric types 0x300..0x3ff.
 *
 * A request is a fixed 24-byte little-endian header, followed by the
 * data (WRITE) or the store's name (OPEN):
 *
 *   0  version (1)   1  flags        2  reserved u16 (0)
 *   4  handle u32    8  offset u64   16 length u32    20 reserved u32 (0)
 *   24 body
 *
 * A reply (fabric type STORE_MSG_REPLY, same request id) is an 8-byte
 * header followed by the store's description (OPEN) or the data (READ)
 * when the status is OK, and by nothing otherwise:
 *
 *   0  version (1)   1  op (request type - 0x300)   2  status u16
 *   4  reserved u32 (0)                              8  body
 *
 * Decoding checks every byte, since a frame's payload comes from another
 * process: sizes, alignment, ranges, reserved fields, flags.
 */
#define STORE_MSG_VERSION 1
#define STORE_MSG_REQ_HDR_LEN 24
#define STORE_MSG_REPLY_HDR_LEN 8
#define STORE_MSG_INFO_LEN 24
/* Offsets and lengths are in whole 512-byte sectors (the blockdev contract). */
#define STORE_MSG_SECTOR 512u
/* Data per READ or WRITE: with the header it fits one fabric frame. */
#define STORE_MSG_MAX_DATA (64u * 1024)
/*
 * Range per DISCARD or WRITE_ZEROES. Small enough that a store that has
 * to write the zeros (no fallocate) still answers well within the
 * client's timeout with a full window of them queued.
 */
#define STORE_MSG_MAX_RANGE (16u << 20)
#define STORE_MSG_NAME_MAX 64
/* Nothing past 2^63: the server's pread/pwrite take a signed off_t. */
#define STORE_MSG_MAX_END ((uint64_t)INT64_MAX)
/* Pieces the send callback may be given (= FRAME_IOV_MAX, fabric_sendv's limit). */
#define STORE_MSG_IOV_MAX 8
/* Nodes the client and server track (= FRAME_MAX_NODES). */
#define STORE_MAX_NODES 64
/* Credits a server may advertise (requests in flight per client node). */
#define STORE_MSG_MAX_INFLIGHT 1024

enum store_msg_type {
	STORE_MSG_FIRST = 0x300,
	STORE_MSG_OPEN = 0x300,      /* name -> handle, size, block size, flags */
	STORE_MSG_READ,              /* reply carries the data */
	STORE_MSG_WRITE,             /* carries the data */
	STORE_MSG_FLUSH,
	STORE_MSG_DISCARD,
	STORE_MSG_WRITE_ZEROES,
	STORE_MSG_REQ_END,
	STORE_MSG_REPLY = 0x380,     /* the answer to any request (req_id matches) */
	STORE_MSG_LAST = 0x3ff,      /* the range belongs to the store, unknown types included */
};

/* WRITE_ZEROES: the server may deallocate the range. */
#define STORE_REQ_F_MAY_UNMAP 0x01

/*
 * Portable status codes: errno values differ between systems, so the
 * wire carries these and each side maps them to and from its errno.
 */
enum store_status {
	STORE_ST_OK = 0,
	STORE_ST_IO,         /* EIO, and any errno without a code of its own */
	STORE_ST_INVAL,      /* EINVAL: outside the store, misaligned */
	STORE_ST_ROFS,       /* EROFS: read-only export */
	STORE_ST_NOSPC,      /* ENOSPC */
	STORE_ST_DQUOT,      /* EDQUOT */
	STORE_ST_NOTSUP,     /* EOPNOTSUPP */
	STORE_ST_NOMEM,      /* ENOMEM */
	STORE_ST_NOENT,      /* ENOENT: OPEN of a name that is not exported */
	STORE_ST_BADHANDLE,  /* EBADF: a handle this server never gave */
	STORE_ST_BUSY,       /* EBUSY: queue full, nothing done; the client retries */
	STORE_ST_PROTO,      /* EPROTO: malformed request, nothing done */
	STORE_ST_SHUTDOWN,   /* ESHUTDOWN: the server is stopping, nothing done */
	STORE_ST_END,
};

/* The read-only and discard bits of an OPEN reply. */
#define STORE_INFO_F_READ_ONLY 0x01
#define STORE_INFO_F_DISCARD 0x02

struct store_req {
	uint8_t flags;          /* STORE_REQ_F_* (WRITE_ZEROES only) */
	uint32_t handle;        /* from OPEN; 0 in OPEN itself */
	uint64_t off;           /* bytes; 0 for OPEN and FLUSH */
	/* READ/WRITE: data bytes; DISCARD/WRITE_ZEROES: range; OPEN: name length; FLUSH: 0 */
	uint32_t len;
	const uint8_t *body;    /* decoded WRITE data or OPEN name: points into the payload */
};

struct store_info {
	uint32_t handle;
	uint32_t block_size;    /* 512 or 4096 */
	uint64_t size;          /* bytes */
	bool read_only;
	bool discard;
	uint16_t max_inflight;  /* requests a client node may have queued at the server */
};

struct store_reply {
	uint16_t req_type;      /* STORE_MSG_OPEN..WRITE_ZEROES: what this answers */
	uint16_t status;        /* enum store_status */
	struct store_info info; /* OPEN, status OK */
	const uint8_t *data;    /* READ, status OK: points into the payload */
	uint32_t data_len;
};

/* Sends one frame; the shape of fabric_sendv (iovcnt <= STORE_MSG_IOV_MAX). */
typedef int (*store_send_fn)(void *ctx, unsigned dst, uint16_t type, uint64_t req_id,
			     const struct iovec *iov, int iovcnt);
typedef void (*store_log_fn)(void *ctx, const char *msg);

/* Fabric types 0x300..0x3ff belong to the store: cluster.c routes them here. */
bool store_msg_owns_type(uint16_t type);
/* STORE_MSG_OPEN..STORE_MSG_WRITE_ZEROES go to the server... */
bool store_msg_is_request(uint16_t type);
/* ...STORE_MSG_REPLY to the client. */
bool store_msg_is_reply(uint16_t type);
const char *store_msg_type_name(uint16_t type);

const char *store_status_name(unsigned status);
/* A blockdev result (0 or a negative errno) as a status code. */
uint16_t store_status_from_errno(int rc);
/* A status code as a blockdev result (0 or a negative errno). */
int store_status_to_errno(unsigned status);

/* Export names: 1..STORE_MSG_NAME_MAX of [A-Za-z0-9._:@+/-]. */
bool store_msg_name_ok(const char *name, size_t len);

/*
 * Writes the 24-byte request header of a request about to be sent, after
 * checking it as the decoder would (for OPEN, r->body must hold the
 * name). Returns STORE_MSG_REQ_HDR_LEN, or -EINVAL with a reason in *why.
 */
int store_msg_encode_req(uint16_t type, const struct store_req *r,
			 uint8_t hdr[STORE_MSG_REQ_HDR_LEN], const char **why);
/* Decodes one whole request payload. Returns 0, or -EINVAL with a reason in *why. */
int store_msg_decode_req(uint16_t type, const uint8_t *buf, size_t len, struct store_req *r,
			 const char **why);
/*
 * Writes a reply's header, and the description for an OPEN that
 * succeeded; READ data (r->data_len bytes) is sent after it. Returns the
 * bytes written, or -EINVAL with a reason in *why.
 */
int store_msg_encode_reply(const struct store_reply *r, uint8_t *buf, size_t cap,
			   const char **why);
#define STORE_MSG_REPLY_MAX_HDR (STORE_MSG_REPLY_HDR_LEN + STORE_MSG_INFO_LEN)
/* Decodes one whole reply payload. Returns 0, or -EINVAL with a reason in *why. */
int store_msg_decode_reply(const uint8_t *buf, size_t len, struct store_reply *r,
			   const char **why);

#endif
