// SPDX-License-Identifier: MIT
/* Cluster secret files and the mutual challenge-response handshake. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "fabric/auth.h"

#define HS_MAGIC "GRPH"
#define HS_DEFAULT_TIMEOUT_MS 5000

/*
 * Labels keep the four HMACs over the same transcript apart. Each one is
 * hashed with its terminating NUL, so no label is a prefix of another.
 */
static const char LABEL_PROOF_I[] = "grappe-fabric-1 initiator proof";
static const char LABEL_PROOF_R[] = "grappe-fabric-1 responder proof";
static const char LABEL_KEY_I2R[] = "grappe-fabric-1 key initiator to responder";
static const char LABEL_KEY_R2I[] = "grappe-fabric-1 key responder to initiator";

int fabric_secret_load(const char *path, uint8_t out[FABRIC_SECRET_LEN], char *err,
		       size_t errlen)
{
	struct stat st;
	ssize_t n;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		snprintf(err, errlen, "cluster secret %s: %s", path, strerror(errno));
		return -1;
	}
	if (fstat(fd, &st)) {
		snprintf(err, errlen, "cluster secret %s: %s", path, strerror(errno));
		goto fail;
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "cluster secret %s: not a regular file", path);
		goto fail;
	}
	/* A secret others can read is no secret; one they can write is worse. */
	if (st.st_mode & S_IRWXO) {
		snprintf(err, errlen,
			 "cluster secret %s: other users may access it (mode %04o); "
			 "run chmod 600 %s", path, (unsigned)(st.st_mode & 07777), path);
		goto fail;
	}
	if (st.st_size != FABRIC_SECRET_LEN) {
		snprintf(err, errlen, "cluster secret %s: %lld bytes, a secret is exactly %d",
			 path, (long long)st.st_size, FABRIC_SECRET_LEN);
		goto fail;
	}
	n = read(fd, out, FABRIC_SECRET_LEN);
	if (n != FABRIC_SECRET_LEN) {
		snprintf(err, errlen, "cluster secret %s: short read", path);
		sodium_memzero(out, FABRIC_SECRET_LEN);
		goto fail;
	}
	close(fd);
	return 0;
fail:
	close(fd);
	return -1;
}

int fabric_secret_generate(const char *path, char *err, size_t errlen)
{
	uint8_t key[FABRIC_SECRET_LEN];
	ssize_t n;
	int fd;

	if (sodium_init() < 0) {
		snprintf(err, errlen, "libsodium cannot be initialised");
		return -1;
	}
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOCTTY, 0600);
	if (fd < 0) {
		snprintf(err, errlen, "cannot create cluster secret %s: %s", path, strerror(errno));
		return -1;
	}
	randombytes_buf(key, sizeof(key));
	n = write(fd, key, sizeof(key));
	sodium_memzero(key, sizeof(key));
	if (n != (ssize_t)sizeof(key) || fsync(fd)) {
		snprintf(err, errlen, "cannot write cluster secret %s: %s", path,
			 n < 0 ? strerror(errno) : "short write");
		close(fd);
		unlink(path);
		return -1;
	}
	close(fd);
	return 0;
}

void fabric_cluster_id(const char *name, uint8_t out[HS_CLUSTER_ID_LEN])
{
	static const char prefix[] = "grappe cluster id";
	crypto_generichash_state st;

	crypto_generichash_init(&st, NULL, 0, HS_CLUSTER_ID_LEN);
	crypto_generichash_update(&st, (const uint8_t *)prefix, sizeof(prefix));
	if (name)
		crypto_generichash_update(&st, (const uint8_t *)name, strlen(name));
	crypto_generichash_final(&st, out, HS_CLUSTER_ID_LEN);
}

static void put16(uint8_t *p, unsigned v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static unsigned get16(const uint8_t *p)
{
	return p[0] | (unsigned)p[1] << 8;
}

/* HMAC-SHA256(secret, label | hello_i | hello_r) */
static void hs_mac(const struct handshake *hs, const char *label, size_t label_len,
		   uint8_t out[crypto_auth_hmacsha256_BYTES])
{
	crypto_auth_hmacsha256_state st;

	crypto_auth_hmacsha256_init(&st, hs->secret, FABRIC_SECRET_LEN);
	crypto_auth_hmacsha256_update(&st, (const uint8_t *)label, label_len);
	crypto_auth_hmacsha256_update(&st, hs->hello[HS_INITIATOR], HS_HELLO_LEN);
	crypto_auth_hmacsha256_update(&st, hs->hello[HS_RESPONDER], HS_HELLO_LEN);
	crypto_auth_hmacsha256_final(&st, out);
	sodium_memzero(&st, sizeof(st));
}

static void hs_emit(struct handshake *hs, const uint8_t *p, size_t n)
{
	/* Output is at most one HELLO and one PROOF: compact, then append. */
	if (hs->out_off) {
		memmove(hs->out, hs->out + hs->out_off, hs->out_len - hs->out_off);
		hs->out_len -= hs->out_off;
		hs->out_off = 0;
	}
	memcpy(hs->out + hs->out_len, p, n);
	hs->out_len += n;
}

static enum hs_status hs_fail(struct handshake *hs, enum hs_error e, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static enum hs_status hs_fail(struct handshake *hs, enum hs_error e, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(hs->err, sizeof(hs->err), fmt, ap);
	va_end(ap);
	hs->state = HS_FAIL;
	hs->error = e;
	/* Nothing more goes out, and no key material stays behind. */
	hs->out_len = hs->out_off = 0;
	sodium_memzero(hs->secret, sizeof(hs->secret));
	sodium_memzero(hs->tx_key, sizeof(hs->tx_key));
	sodium_memzero(hs->rx_key, sizeof(hs->rx_key));
	return HS_FAILED;
}

int hs_init(struct handshake *hs, const struct hs_params *p)
{
	uint8_t *h;

	memset(hs, 0, sizeof(*hs));
	hs->role = p->role;
	hs->state = HS_WAIT_HELLO;
	if (sodium_init() < 0) {
		hs_fail(hs, HS_ERR_PROTOCOL, "libsodium cannot be initialised");
		return -1;
	}
	if (p->nr_nodes == 0 || p->nr_nodes > FRAME_MAX_NODES || p->self >= p->nr_nodes ||
	    p->peer_max >= p->nr_nodes ||
	    (p->role != HS_INITIATOR && p->role != HS_RESPONDER)) {
		hs_fail(hs, HS_ERR_PROTOCOL, "invalid handshake parameters");
		return -1;
	}
	memcpy(hs->secret, p->secret, FABRIC_SECRET_LEN);
	memcpy(hs->cluster_id, p->cluster_id, HS_CLUSTER_ID_LEN);
	hs->self = p->self;
	hs->nr_nodes = p->nr_nodes;
	hs->peer_min = p->peer_min;
	hs->peer_max = p->peer_max;
	hs->timeout_ms = p->timeout_ms ? p->timeout_ms : HS_DEFAULT_TIMEOUT_MS;
	hs->deadline_ms = p->now_ms + hs->timeout_ms;

	h = hs->hello[p->role];
	memcpy(h, HS_MAGIC, 4);
	h[4] = HS_VERSION;
	h[5] = (uint8_t)p->role;
	put16(h + 6, p->self);
	put16(h + 8, p->nr_nodes);
	put16(h + 10, 0);
	memcpy(h + 12, p->cluster_id, HS_CLUSTER_ID_LEN);
	if (p->nonce)
		memcpy(h + 28, p->nonce, HS_NONCE_LEN);
	else
		randombytes_buf(h + 28, HS_NONCE_LEN);
	/* Both sides speak first: the HELLOs cross on the wire. */
	hs_emit(hs, h, HS_HELLO_LEN);
	return 0;
}

static const char *role_name(unsigned role)
{
	return role == HS_INITIATOR ? "initiator" : "responder";
}

/* The peer's HELLO: everything in it is a claim to be checked. */
static enum hs_status hs_take_hello(struct handshake *hs, const uint8_t *h)
{
	unsigned peer_role = !hs->role, id = get16(h + 6), nodes = get16(h + 8);
	uint8_t proof[HS_PROOF_LEN];

	if (memcmp(h, HS_MAGIC, 4))
		return hs_fail(hs, HS_ERR_PROTOCOL, "not a grappe fabric peer (bad handshake magic)");
	if (h[4] != HS_VERSION)
		return hs_fail(hs, HS_ERR_VERSION, "peer speaks fabric version %u, this node %u",
			       h[4], HS_VERSION);
	if (h[5] != peer_role || get16(h + 10))
		return hs_fail(hs, HS_ERR_PROTOCOL, "malformed HELLO (role %u, expected %s)",
			       h[5], role_name(peer_role));
	if (nodes != hs->nr_nodes)
		return hs_fail(hs, HS_ERR_CLUSTER, "peer says the cluster has %u nodes, this node %u",
			       nodes, hs->nr_nodes);
	if (memcmp(h + 12, hs->cluster_id, HS_CLUSTER_ID_LEN))
		return hs_fail(hs, HS_ERR_CLUSTER, "peer belongs to another cluster (cluster id differs)");
	if (id == hs->self)
		return hs_fail(hs, HS_ERR_ID, "peer claims this node's own id %u", id);
	if (id < hs->peer_min || id > hs->peer_max) {
		if (hs->peer_min > hs->peer_max)
			return hs_fail(hs, HS_ERR_ID, "peer claims node id %u, but no node may "
				       "connect to node %u (higher ids dial lower ones)", id, hs->self);
		if (hs->peer_min == hs->peer_max)
			return hs_fail(hs, HS_ERR_ID, "peer claims node id %u, expected node %u", id,
				       hs->peer_min);
		return hs_fail(hs, HS_ERR_ID, "peer claims node id %u, expected an id in %u..%u",
			       id, hs->peer_min, hs->peer_max);
	}
	hs->peer = id;
	memcpy(hs->hello[peer_role], h, HS_HELLO_LEN);
	hs->state = HS_WAIT_PROOF;
	/* The initiator proves first; the responder waits for that proof. */
	if (hs->role == HS_INITIATOR) {
		hs_mac(hs, LABEL_PROOF_I, sizeof(LABEL_PROOF_I), proof);
		hs_emit(hs, proof, sizeof(proof));
	}
	return HS_CONTINUE;
}

static enum hs_status hs_take_proof(struct handshake *hs, const uint8_t *p)
{
	bool initiator = hs->role == HS_INITIATOR;
	uint8_t want[HS_PROOF_LEN], k_i2r[FRAME_KEY_LEN], k_r2i[FRAME_KEY_LEN];

	if (initiator)
		hs_mac(hs, LABEL_PROOF_R, sizeof(LABEL_PROOF_R), want);
	else
		hs_mac(hs, LABEL_PROOF_I, sizeof(LABEL_PROOF_I), want);
	if (crypto_verify_32(want, p)) {
		sodium_memzero(want, sizeof(want));
		return hs_fail(hs, HS_ERR_AUTH, "node %u failed to prove the cluster secret "
			       "(wrong secret, or not a member of this cluster)", hs->peer);
	}
	if (!initiator) {
		hs_mac(hs, LABEL_PROOF_R, sizeof(LABEL_PROOF_R), want);
		hs_emit(hs, want, sizeof(want));
	}
	hs_mac(hs, LABEL_KEY_I2R, sizeof(LABEL_KEY_I2R), k_i2r);
	hs_mac(hs, LABEL_KEY_R2I, sizeof(LABEL_KEY_R2I), k_r2i);
	memcpy(hs->tx_key, initiator ? k_i2r : k_r2i, FRAME_KEY_LEN);
	memcpy(hs->rx_key, initiator ? k_r2i : k_i2r, FRAME_KEY_LEN);
	sodium_memzero(k_i2r, sizeof(k_i2r));
	sodium_memzero(k_r2i, sizeof(k_r2i));
	sodium_memzero(want, sizeof(want));
	sodium_memzero(hs->secret, sizeof(hs->secret));
	hs->state = HS_OK;
	return HS_DONE;
}

enum hs_status hs_feed(struct handshake *hs, const uint8_t *in, size_t len, size_t *used)
{
	enum hs_status st = hs_status(hs);

	*used = 0;
	while (st == HS_CONTINUE && *used < len) {
		size_t want = hs->state == HS_WAIT_HELLO ? HS_HELLO_LEN : HS_PROOF_LEN;
		size_t n = want - hs->in_len;

		if (n > len - *used)
			n = len - *used;
		memcpy(hs->in + hs->in_len, in + *used, n);
		hs->in_len += n;
		*used += n;
		if (hs->in_len < want)
			break;
		hs->in_len = 0;
		if (hs->state == HS_WAIT_HELLO)
			st = hs_take_hello(hs, hs->in);
		else
			st = hs_take_proof(hs, hs->in);
	}
	return st;
}

size_t hs_output(const struct handshake *hs, const uint8_t **out)
{
	*out = hs->out + hs->out_off;
	return hs->out_len - hs->out_off;
}

void hs_sent(struct handshake *hs, size_t n)
{
	if (n > hs->out_len - hs->out_off)
		n = hs->out_len - hs->out_off;
	hs->out_off += n;
	if (hs->out_off == hs->out_len)
		hs->out_off = hs->out_len = 0;
}

enum hs_status hs_check_timeout(struct handshake *hs, uint64_t now_ms)
{
	if (hs_status(hs) != HS_CONTINUE || now_ms < hs->deadline_ms)
		return hs_status(hs);
	return hs_fail(hs, HS_ERR_TIMEOUT, "handshake timed out after %u ms waiting for the "
		       "peer's %s (%zu bytes of it received)", hs->timeout_ms,
		       hs->state == HS_WAIT_HELLO ? "HELLO" : "proof", hs->in_len);
}

enum hs_status hs_status(const struct handshake *hs)
{
	switch (hs->state) {
	case HS_OK:
		return HS_DONE;
	case HS_FAIL:
		return HS_FAILED;
	default:
		return HS_CONTINUE;
	}
}

void hs_clear(struct handshake *hs)
{
	sodium_memzero(hs, sizeof(*hs));
}
