/* SPDX-License-Identifier: MIT */
#ifndef GRAPPE_FABRIC_H
#define GRAPPE_FABRIC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "fabric/auth.h"
#include "fabric/frame.h"

/*
 * The fabric: one authenticated TCP connection between every pair of
 * nodes of a cluster, carrying (type, request id, payload) messages.
 *
 * Node i dials every node j < i and accepts connections from every j > i,
 * so each pair ends up with exactly one connection whatever the start
 * order; a dial that fails is retried with backoff until fabric_start's
 * deadline. Each connection starts with the handshake of fabric/auth.h;
 * afterwards every frame is MACed and sequenced (fabric/frame.h). A frame
 * that fails any check is never delivered: it is logged, and the peer
 * that sent it is cut off and reported down, because a node that sends
 * garbage cannot be trusted with guest memory.
 *
 * One endpoint has one receive thread (an epoll loop) that calls the
 * on_frame and on_peer_down callbacks. Peers are watched with heartbeats:
 * a peer silent for dead_ms is declared down. A peer that is down stays
 * down (a node that failed does not rejoin a running guest).
 *
 * All state is in struct fabric: a process may hold several endpoints
 * (tests run four in one process).
 */
#define FABRIC_MAX_NODES FRAME_MAX_NODES
#define FABRIC_ADDR_MAX 128

struct fabric_config {
	unsigned self;
	unsigned nr_nodes;                       /* 1..FABRIC_MAX_NODES */
	/*
	 * host:port of every node ([v6]:port for IPv6). This node's may have
	 * port 0 (any free port, see fabric_local_port); others' may be NULL
	 * when fabric_set_peer_addr gives them before fabric_start.
	 */
	const char *addr[FABRIC_MAX_NODES];
	uint8_t secret[FABRIC_SECRET_LEN];       /* fabric_secret_load() */
	const char *cluster;                     /* cluster name; NULL = "" */
	unsigned heartbeat_ms;                   /* 0: 200 */
	unsigned dead_ms;                        /* silence that means death; 0: 2000 */
	unsigned handshake_ms;                   /* 0: 5000 */
	/*
	 * After traffic, the receive thread polls without sleeping for up to
	 * this long before it blocks (adaptive: shrinks when polling finds
	 * nothing). 0: always block. A spinning thread takes a whole core, so
	 * keep it to tens of microseconds, and off on a crowded host.
	 */
	unsigned busy_poll_us;
	/*
	 * By default a node must connect from the IP address configured for it
	 * (when that is not a wildcard): set this behind NAT.
	 */
	bool no_addr_check;
};

/* Why a peer is gone. */
enum fabric_down_reason {
	FABRIC_PEER_LEFT,	/* it said goodbye (fabric_destroy on its side) */
	FABRIC_PEER_LOST,	/* connection closed or failed, or silent too long */
	FABRIC_PEER_REFUSED,	/* it broke the protocol: we cut it off */
};

struct fabric_ops {
	/*
	 * A message from node src. Called on the receive thread; payload is
	 * valid during the call only and has no particular alignment. May call
	 * fabric_send; must not block for long (heartbeats wait for it) and
	 * must not call fabric_destroy.
	 */
	void (*on_frame)(void *ctx, unsigned src, uint16_t type, uint64_t req_id,
			 const void *payload, size_t len);
	/*
	 * Node peer is gone (once per peer, on the receive thread): why says
	 * it in words for people, reason in a form to act on.
	 */
	void (*on_peer_down)(void *ctx, unsigned peer, enum fabric_down_reason reason,
			     const char *why);
	/* One log line, without newline. NULL: stderr. */
	void (*on_log)(void *ctx, const char *msg);
	void *ctx;
};

struct fabric;

/*
 * Checks the configuration, resolves the addresses and starts listening
 * (so that fabric_local_port is known). No thread runs yet. Returns 0, or
 * -1 with a message in err.
 */
int fabric_create(const struct fabric_config *cfg, const struct fabric_ops *ops,
		  struct fabric **out, char *err, size_t errlen);
/* The port this endpoint listens on (useful with port 0). */
unsigned fabric_local_port(const struct fabric *f);
/* Sets or changes a peer's address; only before fabric_start. */
int fabric_set_peer_addr(struct fabric *f, unsigned node, const char *addr, char *err,
			 size_t errlen);
/*
 * Starts the receive thread, dials and accepts until every peer is
 * connected and authenticated. Returns 0, or -1 after timeout_ms with a
 * message naming each missing node and why (call fabric_destroy then).
 * Messages may arrive from peers that are up before this returns.
 */
int fabric_start(struct fabric *f, unsigned timeout_ms, char *err, size_t errlen);
/*
 * Sends one message (type >= FRAME_TYPE_USER, len <= FRAME_MAX_PAYLOAD) to
 * node dst. Thread-safe; messages from one thread to one peer arrive in
 * order. Never blocks the receive thread; another thread may wait (at most
 * dead_ms) while the peer has a large backlog. Returns 0 once the message
 * is written or queued, or -EINVAL (bad dst, type or length), -ENOTCONN
 * (peer not up yet), -EPIPE (peer down), -ETIMEDOUT (the peer stopped
 * reading; it is then declared down).
 */
int fabric_send(struct fabric *f, unsigned dst, uint16_t type, uint64_t req_id,
		const void *payload, size_t len);
/* The same with a payload in pieces (e.g. a header and a 4 KiB page), not copied. */
int fabric_sendv(struct fabric *f, unsigned dst, uint16_t type, uint64_t req_id,
		 const struct iovec *iov, int iovcnt);
bool fabric_peer_up(const struct fabric *f, unsigned node);

/*
 * The node's one event loop (DESIGN.md: fabric, userfaultfd and timers):
 * another fd can be watched by the receive thread, so that, e.g., the DSM
 * resolves faults on the same thread that receives pages, without a
 * cross-thread wake-up. cb runs on the receive thread with the epoll
 * events that fired (level-triggered), under the same rules as on_frame.
 * Up to FABRIC_MAX_WATCH fds. Returns 0, or -ENOSPC, -EEXIST or the
 * epoll_ctl error.
 */
#define FABRIC_MAX_WATCH 16
typedef void (*fabric_fd_cb)(void *ctx, int fd, uint32_t events);
int fabric_watch_fd(struct fabric *f, int fd, uint32_t events, fabric_fd_cb cb, void *ctx);
/* After this returns, cb is not called again for fd (also from inside a callback). */
int fabric_unwatch_fd(struct fabric *f, int fd);

struct fabric_peer_stats {
	uint64_t frames_tx, bytes_tx, frames_rx, bytes_rx;
	uint64_t queued;      /* bytes waiting for the socket */
};
void fabric_peer_stats(struct fabric *f, unsigned node, struct fabric_peer_stats *st);

/*
 * Tells the peers this node is leaving, stops the receive thread (no
 * callback runs after this returns) and frees everything. No other thread
 * may be using f by then.
 */
void fabric_destroy(struct fabric *f);

#endif
