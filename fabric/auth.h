/* SPDX-License-Identifier: MIT */
#ifndef GRAPPE_AUTH_H
#define GRAPPE_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fabric/frame.h"

/*
 * Cluster secret and the handshake that proves knowledge of it.
 *
 * The secret is 32 random bytes in a file readable by its owner (and
 * possibly its group) only. Two nodes that connect run a mutual
 * challenge-response over one TCP connection (docs/fabric.md):
 *
 *   initiator -> HELLO(role 0, id, nr_nodes, cluster id, nonce_i)
 *   responder -> HELLO(role 1, id, nr_nodes, cluster id, nonce_r)
 *   initiator -> PROOF_I = HMAC-SHA256(secret, "...initiator proof" | T)
 *   responder -> PROOF_R = HMAC-SHA256(secret, "...responder proof" | T)
 *
 * where T is both HELLO messages as sent. The responder answers only
 * after checking PROOF_I, so a peer without the secret learns nothing but
 * a random nonce. Both then derive one key per direction from the secret
 * and T; every frame afterwards carries a MAC under that key.
 *
 * The state machine does no I/O and reads no clock: bytes go in with
 * hs_feed(), bytes to send come out of hs_output(), the time comes in with
 * hs_check_timeout(). The fabric drives it over a socket; tests and the
 * fuzzer drive it from memory.
 */
#define FABRIC_SECRET_LEN 32
#define HS_NONCE_LEN 32
#define HS_CLUSTER_ID_LEN 16
#define HS_HELLO_LEN 60
#define HS_PROOF_LEN 32
#define HS_VERSION 1

/*
 * Reads a secret file. Refuses a file that is not a regular file, is not
 * exactly FABRIC_SECRET_LEN bytes, or that others may read or write.
 * Returns 0, or -1 with a message in err.
 */
int fabric_secret_load(const char *path, uint8_t out[FABRIC_SECRET_LEN], char *err,
		       size_t errlen);
/* Creates a new secret file (mode 0600; never overwrites). 0, or -1 and err. */
int fabric_secret_generate(const char *path, char *err, size_t errlen);
/* The 16-byte id of a cluster: a hash of its name ("" when NULL). */
void fabric_cluster_id(const char *name, uint8_t out[HS_CLUSTER_ID_LEN]);

enum hs_role { HS_INITIATOR = 0, HS_RESPONDER = 1 };

enum hs_status { HS_CONTINUE = 0, HS_DONE = 1, HS_FAILED = -1 };

/* Why a handshake failed, for callers that react differently (tests, logs). */
enum hs_error {
	HS_ERR_NONE = 0,
	HS_ERR_PROTOCOL,   /* not a grappe fabric peer, or garbage */
	HS_ERR_VERSION,    /* speaks another fabric version */
	HS_ERR_CLUSTER,    /* another cluster, or another cluster size */
	HS_ERR_ID,         /* a node id that may not connect here */
	HS_ERR_AUTH,       /* proof of the secret failed */
	HS_ERR_TIMEOUT,
};

struct hs_params {
	enum hs_role role;
	const uint8_t *secret;          /* FABRIC_SECRET_LEN bytes */
	uint8_t cluster_id[HS_CLUSTER_ID_LEN];
	unsigned self;
	unsigned nr_nodes;
	/*
	 * The peer ids this side accepts: [peer_min, peer_max] (empty when
	 * peer_min > peer_max). An initiator dialled one address and expects
	 * exactly that node.
	 */
	unsigned peer_min, peer_max;
	uint64_t now_ms;                /* when the handshake starts */
	unsigned timeout_ms;            /* 0: 5000 */
	const uint8_t *nonce;           /* NULL: random (tests and fuzzing fix it) */
};

enum hs_state { HS_WAIT_HELLO, HS_WAIT_PROOF, HS_OK, HS_FAIL };

struct handshake {
	enum hs_role role;
	enum hs_state state;
	enum hs_error error;
	char err[160];
	uint8_t secret[FABRIC_SECRET_LEN];
	uint8_t cluster_id[HS_CLUSTER_ID_LEN];
	unsigned self, nr_nodes, peer_min, peer_max;
	uint64_t deadline_ms;
	unsigned timeout_ms;
	/* T: the initiator's HELLO then the responder's */
	uint8_t hello[2][HS_HELLO_LEN];
	uint8_t in[HS_HELLO_LEN];
	size_t in_len;
	uint8_t out[HS_HELLO_LEN + HS_PROOF_LEN];
	size_t out_len, out_off;
	/* results */
	unsigned peer;
	uint8_t tx_key[FRAME_KEY_LEN], rx_key[FRAME_KEY_LEN];
};

/* Returns 0, or -1 (bad parameters, libsodium unusable) with hs->err set. */
int hs_init(struct handshake *hs, const struct hs_params *p);
/*
 * Consumes received bytes; *used tells how many (bytes after the
 * handshake's last message belong to the frame stream and are not used).
 * HS_DONE: peer, tx_key and rx_key are valid and hs_output() may still hold
 * the last message, which must be sent before any frame.
 */
enum hs_status hs_feed(struct handshake *hs, const uint8_t *in, size_t len, size_t *used);
/* Bytes waiting to be sent; hs_sent() says how many went out. */
size_t hs_output(const struct handshake *hs, const uint8_t **out);
void hs_sent(struct handshake *hs, size_t n);
/* Fails the handshake when its deadline has passed. */
enum hs_status hs_check_timeout(struct handshake *hs, uint64_t now_ms);
enum hs_status hs_status(const struct handshake *hs);
/* Wipes the secret and the keys. */
void hs_clear(struct handshake *hs);

#endif
