// SPDX-License-Identifier: MIT
/* The remote block store's messages: see store_msg.h and docs/store-protocol.md. */
#include <assert.h>
#include <errno.h>
#include <string.h>

#include "blockdev/store_msg.h"
#include "fabric/frame.h"

/* The largest message must fit one fabric frame. */
static_assert(STORE_MSG_REQ_HDR_LEN + STORE_MSG_MAX_DATA <= FRAME_MAX_PAYLOAD,
	      "a WRITE does not fit a frame");
static_assert(STORE_MSG_REPLY_HDR_LEN + STORE_MSG_MAX_DATA <= FRAME_MAX_PAYLOAD,
	      "a READ reply does not fit a frame");
static_assert(STORE_MSG_IOV_MAX == FRAME_IOV_MAX, "send callback limit differs from the fabric's");
static_assert(STORE_MAX_NODES == FRAME_MAX_NODES, "node limit differs from the fabric's");
static_assert(STORE_MSG_MAX_RANGE % STORE_MSG_SECTOR == 0 &&
	      STORE_MSG_MAX_DATA % STORE_MSG_SECTOR == 0, "limits must be whole sectors");

struct wr { uint8_t *p; size_t len; };
struct rd { const uint8_t *p; size_t len, off; bool short_read; };

static void put(struct wr *w, uint64_t v, unsigned bytes)
{
	for (unsigned i = 0; i < bytes; i++)
		w->p[w->len++] = (uint8_t)(v >> (8 * i));
}

static uint64_t get(struct rd *r, unsigned bytes)
{
	uint64_t v = 0;

	if (r->off + bytes > r->len) {
		r->short_read = true;
		return 0;
	}
	for (unsigned i = 0; i < bytes; i++)
		v |= (uint64_t)r->p[r->off++] << (8 * i);
	return v;
}

bool store_msg_owns_type(uint16_t type)
{
	return type >= STORE_MSG_FIRST && type <= STORE_MSG_LAST;
}

bool store_msg_is_request(uint16_t type)
{
	return type >= STORE_MSG_OPEN && type < STORE_MSG_REQ_END;
}

bool store_msg_is_reply(uint16_t type)
{
	return type == STORE_MSG_REPLY;
}

const char *store_msg_type_name(uint16_t type)
{
	static const char *const names[] = {
		"OPEN", "READ", "WRITE", "FLUSH", "DISCARD", "WRITE_ZEROES",
	};

	if (store_msg_is_request(type))
		return names[type - STORE_MSG_OPEN];
	return store_msg_is_reply(type) ? "REPLY" : "unknown";
}

/* One table for both directions of the errno mapping. */
static const struct { uint16_t st; int err; const char *name; } status_map[] = {
	{ STORE_ST_OK, 0, "ok" },
	{ STORE_ST_IO, EIO, "I/O error" },
	{ STORE_ST_INVAL, EINVAL, "invalid argument" },
	{ STORE_ST_ROFS, EROFS, "read-only store" },
	{ STORE_ST_NOSPC, ENOSPC, "no space" },
	{ STORE_ST_DQUOT, EDQUOT, "quota exceeded" },
	{ STORE_ST_NOTSUP, EOPNOTSUPP, "not supported" },
	{ STORE_ST_NOMEM, ENOMEM, "out of memory" },
	{ STORE_ST_NOENT, ENOENT, "no such export" },
	{ STORE_ST_BADHANDLE, EBADF, "unknown handle" },
	{ STORE_ST_BUSY, EBUSY, "server busy" },
	{ STORE_ST_PROTO, EPROTO, "malformed request" },
	{ STORE_ST_SHUTDOWN, ESHUTDOWN, "server shutting down" },
};
static_assert(sizeof(status_map) / sizeof(status_map[0]) == STORE_ST_END,
	      "every status needs a row");

const char *store_status_name(unsigned status)
{
	return status < STORE_ST_END ? status_map[status].name : "unknown status";
}

uint16_t store_status_from_errno(int rc)
{
	int e = rc < 0 ? -rc : rc;

	if (e == ENOTSUP)
		e = EOPNOTSUPP;
	for (unsigned i = 0; i < STORE_ST_END; i++)
		if (status_map[i].err == e)
			return status_map[i].st;
	return STORE_ST_IO;
}

int store_status_to_errno(unsigned status)
{
	return status < STORE_ST_END ? -status_map[status].err : -EIO;
}

static bool name_char_ok(uint8_t c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       (c && strchr("._:@+/-", c));
}

bool store_msg_name_ok(const char *name, size_t len)
{
	if (!name || len == 0 || len > STORE_MSG_NAME_MAX)
		return false;
	for (size_t i = 0; i < len; i++)
		if (!name_char_ok((uint8_t)name[i]))
			return false;
	return true;
}

static bool sectors(uint64_t v)
{
	return v % STORE_MSG_SECTOR == 0;
}

/* Offset and length of an I/O request: whole sectors, 1..max bytes, no wrap-around. */
static const char *check_extent(const struct store_req *r, uint32_t max)
{
	if (r->len == 0)
		return "zero length";
	if (r->len > max)
		return "length over the per-request maximum";
	if (!sectors(r->off) || !sectors(r->len))
		return "offset or length not a multiple of 512";
	if (r->off > STORE_MSG_MAX_END - r->len)
		return "offset out of range";
	return NULL;
}

static const char *check_req(uint16_t type, const struct store_req *r)
{
	if (!store_msg_is_request(type))
		return "not a request type";
	if (r->flags & ~(type == STORE_MSG_WRITE_ZEROES ? STORE_REQ_F_MAY_UNMAP : 0))
		return "unknown flags";
	switch (type) {
	case STORE_MSG_OPEN:
		if (r->handle || r->off)
			return "OPEN with a handle or an offset";
		return store_msg_name_ok((const char *)r->body, r->len) ? NULL : "bad store name";
	case STORE_MSG_FLUSH:
		return r->off || r->len ? "FLUSH with an offset or a length" : NULL;
	case STORE_MSG_READ:
	case STORE_MSG_WRITE:
		return check_extent(r, STORE_MSG_MAX_DATA);
	default:
		return check_extent(r, STORE_MSG_MAX_RANGE);
	}
}

static bool has_body(uint16_t type)
{
	return type == STORE_MSG_OPEN || type == STORE_MSG_WRITE;
}

int store_msg_encode_req(uint16_t type, const struct store_req *r,
			 uint8_t hdr[STORE_MSG_REQ_HDR_LEN], const char **why)
{
	struct wr w = { .p = hdr };
	const char *bad = check_req(type, r);

	if (bad) {
		*why = bad;
		return -EINVAL;
	}
	put(&w, STORE_MSG_VERSION, 1);
	put(&w, r->flags, 1);
	put(&w, 0, 2);
	put(&w, r->handle, 4);
	put(&w, r->off, 8);
	put(&w, r->len, 4);
	put(&w, 0, 4);
	return (int)w.len;
}

static const char *decode_req_hdr(struct rd *rd, struct store_req *r)
{
	uint8_t version = (uint8_t)get(rd, 1);
	uint64_t reserved;

	r->flags = (uint8_t)get(rd, 1);
	reserved = get(rd, 2);
	r->handle = (uint32_t)get(rd, 4);
	r->off = get(rd, 8);
	r->len = (uint32_t)get(rd, 4);
	reserved |= get(rd, 4);
	if (rd->short_read)
		return "truncated header";
	if (version != STORE_MSG_VERSION)
		return "unknown version";
	return reserved ? "reserved field set" : NULL;
}

int store_msg_decode_req(uint16_t type, const uint8_t *buf, size_t len, struct store_req *r,
			 const char **why)
{
	struct rd rd = { .p = buf, .len = len };
	size_t body;
	const char *bad;

	memset(r, 0, sizeof(*r));
	bad = decode_req_hdr(&rd, r);
	body = len - rd.off;
	if (!bad && has_body(type)) {
		if (body != r->len)
			bad = body < r->len ? "body shorter than its length" : "trailing bytes";
		else
			r->body = buf + rd.off;
	} else if (!bad && body) {
		bad = "trailing bytes";
	}
	if (!bad)
		bad = check_req(type, r);
	if (bad) {
		*why = bad;
		return -EINVAL;
	}
	return 0;
}

static const char *check_info(const struct store_info *in)
{
	if (in->block_size != 512 && in->block_size != 4096)
		return "block size not 512 or 4096";
	if (in->size > STORE_MSG_MAX_END)
		return "size out of range";
	if (in->max_inflight == 0 || in->max_inflight > STORE_MSG_MAX_INFLIGHT)
		return "credits out of range";
	return NULL;
}

static const char *check_reply(const struct store_reply *r)
{
	if (!store_msg_is_request(r->req_type))
		return "answers an unknown request type";
	if (r->status >= STORE_ST_END)
		return "unknown status";
	if (r->status != STORE_ST_OK)
		return r->data_len ? "error with data" : NULL;
	if (r->req_type == STORE_MSG_OPEN)
		return r->data_len ? "trailing bytes" : check_info(&r->info);
	if (r->req_type != STORE_MSG_READ)
		return r->data_len ? "data in a reply that carries none" : NULL;
	if (r->data_len == 0 || r->data_len > STORE_MSG_MAX_DATA || !sectors(r->data_len))
		return "read data length out of range";
	return NULL;
}

static void put_info(struct wr *w, const struct store_info *in)
{
	put(w, in->handle, 4);
	put(w, in->block_size, 4);
	put(w, in->size, 8);
	put(w, (in->read_only ? STORE_INFO_F_READ_ONLY : 0) |
	       (in->discard ? STORE_INFO_F_DISCARD : 0), 2);
	put(w, in->max_inflight, 2);
	put(w, 0, 4);
}

int store_msg_encode_reply(const struct store_reply *r, uint8_t *buf, size_t cap,
			   const char **why)
{
	struct wr w = { .p = buf };
	const char *bad = check_reply(r);
	bool info = r->status == STORE_ST_OK && r->req_type == STORE_MSG_OPEN;

	if (!bad && cap < STORE_MSG_REPLY_HDR_LEN + (info ? STORE_MSG_INFO_LEN : 0))
		bad = "buffer too small";
	if (bad) {
		*why = bad;
		return -EINVAL;
	}
	put(&w, STORE_MSG_VERSION, 1);
	put(&w, (uint64_t)(r->req_type - STORE_MSG_OPEN), 1);
	put(&w, r->status, 2);
	put(&w, 0, 4);
	if (info)
		put_info(&w, &r->info);
	return (int)w.len;
}

static const char *get_info(struct rd *rd, struct store_info *in)
{
	uint64_t flags, reserved;

	in->handle = (uint32_t)get(rd, 4);
	in->block_size = (uint32_t)get(rd, 4);
	in->size = get(rd, 8);
	flags = get(rd, 2);
	in->max_inflight = (uint16_t)get(rd, 2);
	reserved = get(rd, 4);
	if (rd->short_read)
		return "truncated store description";
	if (flags & ~(uint64_t)(STORE_INFO_F_READ_ONLY | STORE_INFO_F_DISCARD))
		return "unknown store flags";
	in->read_only = flags & STORE_INFO_F_READ_ONLY;
	in->discard = flags & STORE_INFO_F_DISCARD;
	return reserved ? "reserved field set" : NULL;
}

static const char *decode_reply_hdr(struct rd *rd, struct store_reply *r)
{
	uint8_t version = (uint8_t)get(rd, 1);
	uint8_t op = (uint8_t)get(rd, 1);

	r->status = (uint16_t)get(rd, 2);
	if (get(rd, 4))
		return "reserved field set";
	if (rd->short_read)
		return "truncated header";
	if (version != STORE_MSG_VERSION)
		return "unknown version";
	if (op >= STORE_MSG_REQ_END - STORE_MSG_OPEN)
		return "answers an unknown request type";
	r->req_type = (uint16_t)(STORE_MSG_OPEN + op);
	return NULL;
}

int store_msg_decode_reply(const uint8_t *buf, size_t len, struct store_reply *r,
			   const char **why)
{
	struct rd rd = { .p = buf, .len = len };
	const char *bad;

	memset(r, 0, sizeof(*r));
	bad = decode_reply_hdr(&rd, r);
	if (!bad && r->status == STORE_ST_OK && r->req_type == STORE_MSG_OPEN)
		bad = get_info(&rd, &r->info);
	if (!bad && rd.off < len) {
		/* Only a READ that succeeded carries data; check_reply refuses the rest. */
		if (len - rd.off > UINT32_MAX)
			bad = "trailing bytes";
		r->data = buf + rd.off;
		r->data_len = (uint32_t)(len - rd.off);
	}
	if (!bad)
		bad = check_reply(r);
	if (bad) {
		*why = bad;
		return -EINVAL;
	}
	return 0;
}
