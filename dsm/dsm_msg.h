/* SPDX-License-Identifier: MIT */
#ifndef GRAPPE_DSM_MSG_H
#define GRAPPE_DSM_MSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Messages of the DSM coherence protocol (docs/dsm.md, dsm/model/dsm.pml:
 * the names are the model's). Each is a fixed 16-byte little-endian
 * header, followed by exactly one 4 KiB page for the types that carry
 * data:
 *
 *   0  version (1)    1  type       2  flags      3  reserved (0)
 *   4  reserved u32 (0)             8  page index u64
 *   16 page (DATA; PUT_M and FWD_DATA unless DSM_MSG_F_ZERO)
 *
 * A page is named by its index (offset / 4096) in guest RAM, the same on
 * every node. The decoder checks every byte, since frames come from
 * other processes; the receiver also checks the index against its RAM.
 */
#define DSM_PAGE_SHIFT 12
#define DSM_PAGE_SIZE (1u << DSM_PAGE_SHIFT)
#define DSM_MSG_VERSION 1
#define DSM_MSG_HDR_LEN 16
#define DSM_MSG_MAX_LEN (DSM_MSG_HDR_LEN + DSM_PAGE_SIZE)
/* 2^40 pages = 4 PiB of guest RAM: anything larger is garbage. */
#define DSM_MSG_MAX_PAGE ((1ULL << 40) - 1)

enum dsm_msg_type {
	/* requester -> home */
	DSM_GET_S = 1,     /* read miss */
	DSM_GET_M,         /* write miss */
	DSM_UPGRADE,       /* write to a page held S: M without data */
	DSM_PUT_M,         /* eviction of an M page: write-back (page) */
	/* home -> sharer / owner */
	DSM_INV,           /* drop your copy, answer INV_ACK */
	DSM_FWD_GET_S,     /* owner: keep S, send the page to the home */
	DSM_FWD_GET_M,     /* owner: drop it, send the page to the home */
	/* sharer / owner -> home */
	DSM_INV_ACK,
	DSM_FWD_DATA,      /* answer to FWD_GET_* (page) */
	/* home -> requester */
	DSM_DATA,          /* grant with the page */
	DSM_DATA_ZERO,     /* grant of a page whose content is zero: no payload */
	DSM_UPG_ACK,       /* UPGRADE granted: now M */
	DSM_PUT_ACK,       /* PUT_M done (or stale) */
	DSM_MSG_TYPE_END,
};

/* PUT_M, FWD_DATA: the page is all zero and not carried. */
#define DSM_MSG_F_ZERO 0x01
/* DATA, DATA_ZERO: the grant is M (else S). */
#define DSM_MSG_F_GRANT_M 0x02

struct dsm_msg {
	uint8_t type;
	uint8_t flags;
	uint64_t page;
};

/* Does a message with this header carry a 4 KiB page after it? */
bool dsm_msg_has_page(const struct dsm_msg *m);
/* Checks a message about to be sent (type, flags, page index): 0 or -EINVAL. */
int dsm_msg_check(const struct dsm_msg *m, const char **why);
/* Writes the 16-byte header. Returns DSM_MSG_HDR_LEN, or -EINVAL. */
int dsm_msg_encode(const struct dsm_msg *m, uint8_t *buf, size_t cap);
/*
 * Decodes one whole frame payload (header, then the page if the type
 * carries one). Returns 0 with *page pointing into buf (or NULL), or
 * -EINVAL with a reason in *why.
 */
int dsm_msg_decode(const uint8_t *buf, size_t len, struct dsm_msg *m, const uint8_t **page,
		   const char **why);
const char *dsm_msg_type_name(unsigned type);

#endif
