/* SPDX-License-Identifier: MIT */
#ifndef GRAPPE_STORE_SERVER_H
#define GRAPPE_STORE_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include "blockdev/blockdev.h"
#include "blockdev/store_msg.h"

/*
 * The node side of the remote block store: serves the requests of other
 * nodes (blockdev/store_client.h) on the local blockdevs it exports
 * (docs/store-protocol.md).
 *
 * store_server_receive runs on the fabric's receive thread, which also
 * sends heartbeats, so it never touches a disk: it decodes the request,
 * answers OPEN and every refusal itself (no I/O in either), and queues the
 * rest for a small pool of worker threads that do the I/O and send the
 * reply. The queue is bounded: a client node may have at most
 * per_source requests queued or in service (the credit it is told in the
 * OPEN reply), and all nodes together max_queued; past either, the request
 * is answered STORE_ST_BUSY without being done (the client retries). So
 * the queue holds at most max_queued * (STORE_MSG_MAX_DATA + ~100) bytes.
 *
 * OPEN is a barrier: it is answered only once every request its node sent
 * before it is done (with a store that answers at all). A client that
 * reopens a store after a timeout thus knows that none of its old
 * requests can land after the new store's first write.
 */
#define STORE_SERVER_MAX_WORKERS 8
#define STORE_SERVER_MAX_EXPORTS 64

struct store_server_config {
	/*
	 * Sends a reply (a wrapper around fabric_sendv). Called from the
	 * worker threads and from store_server_receive; must copy or send the
	 * payload before it returns. Never called once store_server_shutdown
	 * has returned.
	 */
	store_send_fn send;
	store_log_fn log;          /* one line without newline; NULL: stderr */
	void *ctx;                 /* for send and log */
	unsigned workers;          /* I/O threads; 0: 2 */
	unsigned per_source;       /* requests queued per client node; 0: 64 */
	unsigned max_queued;       /* requests queued in all; 0: 256 */
};

struct store_server_stats {
	uint64_t requests;         /* accepted and queued */
	uint64_t opens;            /* OPEN answered (found or not) */
	uint64_t busy;             /* refused: queue full */
	uint64_t refused;          /* refused: bad handle, range, read-only, stopping */
	uint64_t malformed;        /* not decodable (never acted on) */
	uint64_t io_errors;        /* the local store failed an operation */
	uint64_t send_errors;      /* a reply could not be sent */
	uint64_t dropped;          /* queued requests of a node that went down */
	unsigned queued;           /* now: queued or in service */
	unsigned opens_waiting;    /* now: OPENs waiting for earlier requests (barriers) */
	bool stopping;             /* store_server_shutdown has begun */
};

struct store_server;

/* Starts the workers. Returns 0, or a negative errno with a message in err. */
int store_server_create(struct store_server **out, const struct store_server_config *cfg,
			char *err, size_t errlen);
/*
 * Makes bd reachable under name (store_msg_name_ok). The caller keeps
 * ownership: bd must stay open until store_server_destroy. Its size,
 * block size and flags are read once, here (they are constant). Returns
 * 0, -EINVAL (bad name), -EEXIST or -ENOSPC.
 */
int store_server_export(struct store_server *srv, const char *name, struct blockdev *bd);
/* A frame of a request type from node src (fabric thread; never blocks on I/O). */
void store_server_receive(struct store_server *srv, unsigned src, uint16_t type,
			  uint64_t req_id, const void *payload, size_t len);
/* Node went down: its queued requests are dropped (their replies could not be sent). */
void store_server_peer_down(struct store_server *srv, unsigned node);
void store_server_stats(struct store_server *srv, struct store_server_stats *st);
/*
 * Stops serving: waits for the operations in service, answers the queued
 * ones STORE_ST_SHUTDOWN, and returns when no thread is in send or will
 * call it again (receive may still be called; it drops everything). Call
 * it before the fabric goes away. Idempotent.
 */
void store_server_shutdown(struct store_server *srv);
/* Shuts down if needed and frees; no receive call may be running or follow. */
void store_server_destroy(struct store_server *srv);

#endif
