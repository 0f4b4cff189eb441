/* SPDX-License-Identifier: MIT */
#ifndef GRAPPE_STORE_CLIENT_H
#define GRAPPE_STORE_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "blockdev/blockdev.h"
#include "blockdev/store_msg.h"

/*
 * The client side of the remote block store: a struct blockdev whose
 * operations are done by the store server of another node
 * (blockdev/store_server.h, docs/store-protocol.md).
 *
 * Operations are synchronous for their caller and may be called from many
 * threads at once. One larger than a frame is cut into requests of at
 * most STORE_MSG_MAX_DATA bytes (STORE_MSG_MAX_RANGE for discard and
 * write-zeroes), sent back to back and waited for together, within a
 * window of requests in flight per server node.
 *
 * Each request has a timeout. One that expires fails its operation with
 * -ETIMEDOUT and fails the store: its state is unknown (a write may or may
 * not have been done), so every later operation on it fails at once with
 * the same error; store_client_store_error() says so, and reopening gives
 * a fresh store. store_client_peer_down() fails every request to that node
 * at once with -ENOTCONN, and its stores with it. A malformed reply fails
 * its request with -EPROTO and the store too.
 *
 * Guest memory: the caller's buffers may be guest RAM behind the DSM,
 * whose faults are resolved on the fabric's receive thread. So the receive
 * thread never touches them (read data lands in a buffer of the client's,
 * copied out by the caller's thread), and neither does the send callback
 * (write data is copied from them by the caller's thread first: a fault
 * inside fabric_sendv would hold the peer's send lock the DSM needs).
 */
struct store_client_config {
	/*
	 * Sends a request (a wrapper around fabric_sendv). Called from the
	 * threads that call the blockdev operations, never from receive or
	 * peer_down, and never once store_client_shutdown has returned. Must
	 * copy or send the payload before it returns.
	 */
	store_send_fn send;
	/* One line without newline; NULL: stderr. May be called with the client's lock held. */
	store_log_fn log;
	void *ctx;                 /* for send and log */
	unsigned timeout_ms;       /* per request; 0: 10000 */
	unsigned window;           /* requests in flight per server node; 0: 32 */
};

struct store_client_stats {
	uint64_t requests;         /* frames sent (retries included) */
	uint64_t retries;          /* requests sent again after STORE_ST_BUSY */
	uint64_t timeouts;
	uint64_t malformed;        /* replies refused */
	uint64_t unknown;          /* replies to no request in flight (late, after a timeout) */
	unsigned in_flight;        /* now */
};

struct store_client;

int store_client_create(struct store_client **out, const struct store_client_config *cfg,
			char *err, size_t errlen);
/* A frame of type STORE_MSG_REPLY from node src (fabric thread; never blocks). */
void store_client_receive(struct store_client *cli, unsigned src, uint16_t type,
			  uint64_t req_id, const void *payload, size_t len);
/* Node is gone (for good): fail everything in flight to it with -ENOTCONN, now. */
void store_client_peer_down(struct store_client *cli, unsigned node);
/*
 * Opens the store exported as name by node. Returns 0 with *out set, or a
 * negative errno (-ENOENT: not exported there, -ETIMEDOUT, -ENOTCONN...)
 * with a message in err. Close it with blockdev_close().
 */
int store_client_open(struct store_client *cli, unsigned node, const char *name,
		      struct blockdev **out, char *err, size_t errlen);
/* 0 while the store is usable, else the error that every operation now returns. */
int store_client_store_error(struct blockdev *bd);
/*
 * For a replicated volume's probe (volume_config.reopen): the store named
 * `name` on `node`, whose current blockdev is cur (NULL when it was never
 * opened, e.g. the node did not answer when the volume opened). Returns 0
 * when cur is usable as it is (the probe then reads it again), 1 with a
 * freshly opened store in *out when cur is missing or has failed for good
 * (a timeout, a malformed reply, the node down), or -1 with the reason in
 * why when it cannot be opened now.
 */
int store_client_reopen(struct store_client *cli, unsigned node, const char *name,
			struct blockdev *cur, struct blockdev **out, char *why, size_t whylen);
void store_client_stats(struct store_client *cli, struct store_client_stats *st);
/*
 * Fails everything in flight with -ESHUTDOWN and returns when no thread is
 * in send or will call it again; later operations fail with -ESHUTDOWN.
 * Call it before the fabric goes away. Idempotent.
 */
void store_client_shutdown(struct store_client *cli);
/*
 * Shuts down if needed and lets go of the client; no receive call may be
 * running or follow. Stores still open keep its memory until they are
 * closed.
 */
void store_client_destroy(struct store_client *cli);

#endif
