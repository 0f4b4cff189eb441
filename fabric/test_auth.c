// SPDX-License-Identifier: MIT
/* Cluster secret files and the handshake state machine, without sockets. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "fabric/auth.h"

static const uint8_t secret[FABRIC_SECRET_LEN] = "the cluster secret, 32 bytes....";
static const uint8_t wrong[FABRIC_SECRET_LEN] = "not the cluster secret, 32 bytes";

/* ---- secret files ------------------------------------------------------- */

static char dir[64];

static int make_dir(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/grappe-test-auth-XXXXXX");
	return mkdtemp(dir) ? 0 : -1;
}

static int remove_dir(void **state)
{
	char cmd[128];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	return system(cmd);
}

static void write_file(const char *path, const void *data, size_t len, mode_t mode)
{
	int fd;

	unlink(path);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, len), (ssize_t)len);
	close(fd);
	assert_int_equal(chmod(path, mode), 0);
}

static void test_secret_load(void **state)
{
	uint8_t out[FABRIC_SECRET_LEN], big[33] = { 0 };
	char path[128], err[256];

	(void)state;
	snprintf(path, sizeof(path), "%s/key", dir);
	write_file(path, secret, sizeof(secret), 0600);
	assert_int_equal(fabric_secret_load(path, out, err, sizeof(err)), 0);
	assert_memory_equal(out, secret, sizeof(out));
	/* A group may share the secret. */
	write_file(path, secret, sizeof(secret), 0640);
	assert_int_equal(fabric_secret_load(path, out, err, sizeof(err)), 0);

	write_file(path, secret, sizeof(secret), 0644);
	assert_int_equal(fabric_secret_load(path, out, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "other users may access it (mode 0644)"));
	assert_non_null(strstr(err, "chmod 600"));
	write_file(path, secret, sizeof(secret), 0602);
	assert_int_equal(fabric_secret_load(path, out, err, sizeof(err)), -1);

	write_file(path, secret, 31, 0600);
	assert_int_equal(fabric_secret_load(path, out, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "31 bytes, a secret is exactly 32"));
	write_file(path, big, sizeof(big), 0600);
	assert_int_equal(fabric_secret_load(path, out, err, sizeof(err)), -1);
	write_file(path, big, 0, 0600);
	assert_int_equal(fabric_secret_load(path, out, err, sizeof(err)), -1);

	assert_int_equal(fabric_secret_load(dir, out, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "not a regular file"));
	snprintf(path, sizeof(path), "%s/absent", dir);
	assert_int_equal(fabric_secret_load(path, out, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "No such file"));
}

static void test_secret_generate(void **state)
{
	uint8_t a[FABRIC_SECRET_LEN], b[FABRIC_SECRET_LEN];
	char p1[128], p2[128], err[256];
	struct stat st;

	(void)state;
	snprintf(p1, sizeof(p1), "%s/gen1", dir);
	snprintf(p2, sizeof(p2), "%s/gen2", dir);
	assert_int_equal(fabric_secret_generate(p1, err, sizeof(err)), 0);
	assert_int_equal(fabric_secret_generate(p2, err, sizeof(err)), 0);
	assert_int_equal(stat(p1, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(st.st_size, FABRIC_SECRET_LEN);
	assert_int_equal(fabric_secret_load(p1, a, err, sizeof(err)), 0);
	assert_int_equal(fabric_secret_load(p2, b, err, sizeof(err)), 0);
	assert_memory_not_equal(a, b, sizeof(a));
	/* Never overwrites an existing secret. */
	assert_int_equal(fabric_secret_generate(p1, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "File exists"));
	assert_int_equal(fabric_secret_load(p1, b, err, sizeof(err)), 0);
	assert_memory_equal(a, b, sizeof(a));
}

static void test_cluster_id(void **state)
{
	uint8_t a[HS_CLUSTER_ID_LEN], b[HS_CLUSTER_ID_LEN], c[HS_CLUSTER_ID_LEN];

	(void)state;
	fabric_cluster_id("web", a);
	fabric_cluster_id("web", b);
	fabric_cluster_id("db", c);
	assert_memory_equal(a, b, sizeof(a));
	assert_memory_not_equal(a, c, sizeof(a));
	fabric_cluster_id(NULL, b);
	fabric_cluster_id("", c);
	assert_memory_equal(b, c, sizeof(b));
}

/* ---- the handshake ------------------------------------------------------ */

/* Node 2 dials node 0 in a 4-node cluster named "test". */
static struct hs_params params(enum hs_role role, const uint8_t *key)
{
	struct hs_params p = {
		.role = role,
		.secret = key,
		.nr_nodes = 4,
		.now_ms = 1000,
		.timeout_ms = 5000,
	};

	fabric_cluster_id("test", p.cluster_id);
	if (role == HS_INITIATOR) {
		p.self = 2;
		p.peer_min = p.peer_max = 0;
	} else {
		p.self = 0;
		p.peer_min = 1;
		p.peer_max = 3;
	}
	return p;
}

/*
 * Moves bytes between the two machines, chunk bytes at a time, until
 * neither has anything to say. Returns the number of bytes moved.
 */
static size_t shuttle(struct handshake *a, struct handshake *b, size_t chunk)
{
	struct handshake *hs[2] = { a, b };
	size_t moved = 0;
	bool progress = true;

	while (progress) {
		progress = false;
		for (int i = 0; i < 2; i++) {
			const uint8_t *out;
			size_t n = hs_output(hs[i], &out), used;

			if (!n || hs_status(hs[!i]) != HS_CONTINUE)
				continue;
			if (n > chunk)
				n = chunk;
			hs_feed(hs[!i], out, n, &used);
			assert_true(used <= n);
			hs_sent(hs[i], n);
			moved += n;
			progress = true;
		}
	}
	return moved;
}

static void check_keys(const struct handshake *i, const struct handshake *r)
{
	assert_int_equal(hs_status(i), HS_DONE);
	assert_int_equal(hs_status(r), HS_DONE);
	assert_int_equal(i->peer, 0);
	assert_int_equal(r->peer, 2);
	assert_memory_equal(i->tx_key, r->rx_key, FRAME_KEY_LEN);
	assert_memory_equal(i->rx_key, r->tx_key, FRAME_KEY_LEN);
	assert_memory_not_equal(i->tx_key, i->rx_key, FRAME_KEY_LEN);
}

static void test_success(void **state)
{
	struct hs_params pi = params(HS_INITIATOR, secret), pr = params(HS_RESPONDER, secret);
	struct handshake i, r;

	(void)state;
	assert_int_equal(hs_init(&i, &pi), 0);
	assert_int_equal(hs_init(&r, &pr), 0);
	assert_int_equal(shuttle(&i, &r, 1000), 2 * HS_HELLO_LEN + 2 * HS_PROOF_LEN);
	check_keys(&i, &r);
	/* Nothing more to say; the secret is gone from memory. */
	const uint8_t *out;
	assert_int_equal(hs_output(&i, &out), 0);
	assert_int_equal(hs_output(&r, &out), 0);
	uint8_t zero[FABRIC_SECRET_LEN] = { 0 };
	assert_memory_equal(i.secret, zero, sizeof(zero));
	hs_clear(&i);
	hs_clear(&r);
}

static void test_byte_by_byte(void **state)
{
	struct hs_params pi = params(HS_INITIATOR, secret), pr = params(HS_RESPONDER, secret);
	struct handshake i, r;

	(void)state;
	assert_int_equal(hs_init(&i, &pi), 0);
	assert_int_equal(hs_init(&r, &pr), 0);
	shuttle(&i, &r, 1);
	check_keys(&i, &r);
}

/* The frames after the handshake work with the derived keys, both ways. */
static void test_keys_carry_frames(void **state)
{
	struct hs_params pi = params(HS_INITIATOR, secret), pr = params(HS_RESPONDER, secret);
	uint8_t buf[FRAME_HDR_LEN + 4];
	struct iovec v = { "ping", 4 };
	const uint8_t *payload;
	struct handshake i, r;
	struct frame_tx tx;
	struct frame_rx rx;
	struct frame_hdr h;
	size_t used;

	(void)state;
	hs_init(&i, &pi);
	hs_init(&r, &pr);
	shuttle(&i, &r, 7);
	frame_tx_init(&tx, i.tx_key, 2, 0);
	frame_rx_init(&rx, r.rx_key, 2, 0, 4);
	frame_seal(&tx, buf, FRAME_TYPE_USER, 0, 1, &v, 1);
	memcpy(buf + FRAME_HDR_LEN, "ping", 4);
	assert_int_equal(frame_decode(&rx, buf, sizeof(buf), &h, &payload, &used), FRAME_OK);
	/* A frame sent back with the same direction key is refused (no reflection). */
	frame_tx_init(&tx, i.tx_key, 0, 2);
	frame_rx_init(&rx, i.rx_key, 0, 2, 4);
	frame_seal(&tx, buf, FRAME_TYPE_USER, 0, 1, &v, 1);
	assert_int_equal(frame_decode(&rx, buf, sizeof(buf), &h, &payload, &used), FRAME_E_MAC);
}

/* Fresh nonces give fresh keys: a session never reuses another's. */
static void test_fresh_keys(void **state)
{
	struct hs_params pi = params(HS_INITIATOR, secret), pr = params(HS_RESPONDER, secret);
	uint8_t k1[FRAME_KEY_LEN];
	struct handshake i, r;

	(void)state;
	hs_init(&i, &pi);
	hs_init(&r, &pr);
	shuttle(&i, &r, 1000);
	memcpy(k1, i.tx_key, sizeof(k1));
	hs_init(&i, &pi);
	hs_init(&r, &pr);
	shuttle(&i, &r, 1000);
	assert_memory_not_equal(k1, i.tx_key, sizeof(k1));
}

static void test_wrong_secret_initiator(void **state)
{
	struct hs_params pi = params(HS_INITIATOR, wrong), pr = params(HS_RESPONDER, secret);
	struct handshake i, r;
	const uint8_t *out;

	(void)state;
	hs_init(&i, &pi);
	hs_init(&r, &pr);
	shuttle(&i, &r, 1000);
	assert_int_equal(hs_status(&r), HS_FAILED);
	assert_int_equal(r.error, HS_ERR_AUTH);
	assert_non_null(strstr(r.err, "node 2 failed to prove the cluster secret"));
	/* The responder said nothing after its HELLO: no proof to learn from. */
	assert_int_equal(hs_output(&r, &out), 0);
	assert_int_equal(hs_status(&i), HS_CONTINUE);
}

static void test_wrong_secret_responder(void **state)
{
	struct hs_params pi = params(HS_INITIATOR, secret), pr = params(HS_RESPONDER, wrong);
	struct handshake i, r;

	(void)state;
	hs_init(&i, &pi);
	hs_init(&r, &pr);
	shuttle(&i, &r, 1000);
	/* A responder with another secret cannot check our proof... */
	assert_int_equal(hs_status(&r), HS_FAILED);
	assert_int_equal(r.error, HS_ERR_AUTH);
	assert_int_equal(hs_status(&i), HS_CONTINUE);
}

/* An impostor at a node's address answers with a proof it made up. */
static void test_impostor_responder(void **state)
{
	struct hs_params pi = params(HS_INITIATOR, secret), pr = params(HS_RESPONDER, wrong);
	uint8_t fake[HS_PROOF_LEN];
	struct handshake i, r;
	const uint8_t *out;
	size_t used;

	(void)state;
	hs_init(&i, &pi);
	hs_init(&r, &pr);
	assert_int_equal(hs_output(&r, &out), HS_HELLO_LEN);
	assert_int_equal(hs_feed(&i, out, HS_HELLO_LEN, &used), HS_CONTINUE);
	memset(fake, 0x5a, sizeof(fake));
	assert_int_equal(hs_feed(&i, fake, sizeof(fake), &used), HS_FAILED);
	assert_int_equal(i.error, HS_ERR_AUTH);
	assert_non_null(strstr(i.err, "node 0 failed to prove"));
}

/* A recorded responder transcript does not convince a new initiator. */
static void test_replayed_handshake(void **state)
{
	struct hs_params pi = params(HS_INITIATOR, secret), pr = params(HS_RESPONDER, secret);
	uint8_t rec[HS_HELLO_LEN + HS_PROOF_LEN];
	struct handshake i, r;
	size_t used;

	(void)state;
	hs_init(&i, &pi);
	hs_init(&r, &pr);
	shuttle(&i, &r, 1000);
	memcpy(rec, r.hello[HS_RESPONDER], HS_HELLO_LEN);
	/* The responder's proof of that session: recompute it by running it again. */
	{
		struct handshake i2, r2;
		uint8_t ni[HS_NONCE_LEN], nr[HS_NONCE_LEN];
		const uint8_t *out;

		memcpy(ni, i.hello[HS_INITIATOR] + 28, sizeof(ni));
		memcpy(nr, r.hello[HS_RESPONDER] + 28, sizeof(nr));
		pi.nonce = ni;
		pr.nonce = nr;
		hs_init(&i2, &pi);
		hs_init(&r2, &pr);
		assert_int_equal(hs_output(&r2, &out), HS_HELLO_LEN);
		hs_feed(&i2, out, HS_HELLO_LEN, &used);
		hs_sent(&r2, HS_HELLO_LEN);
		hs_output(&i2, &out);
		hs_feed(&r2, out, HS_HELLO_LEN + HS_PROOF_LEN, &used);
		assert_int_equal(hs_output(&r2, &out), HS_PROOF_LEN);
		memcpy(rec + HS_HELLO_LEN, out, HS_PROOF_LEN);
	}
	pi.nonce = NULL;
	hs_init(&i, &pi);
	assert_int_equal(hs_feed(&i, rec, sizeof(rec), &used), HS_FAILED);
	assert_int_equal(i.error, HS_ERR_AUTH);
}

static void test_wrong_ids(void **state)
{
	struct hs_params pi = params(HS_INITIATOR, secret), pr = params(HS_RESPONDER, secret);
	struct handshake i, r;

	(void)state;
	/* Dialled node 1's address, node 0 answered. */
	pi.peer_min = pi.peer_max = 1;
	hs_init(&i, &pi);
	hs_init(&r, &pr);
	shuttle(&i, &r, 1000);
	assert_int_equal(hs_status(&i), HS_FAILED);
	assert_int_equal(i.error, HS_ERR_ID);
	assert_non_null(strstr(i.err, "claims node id 0, expected node 1"));

	/* A lower id may not dial a higher one. */
	pi = params(HS_INITIATOR, secret);
	pr = params(HS_RESPONDER, secret);
	pr.self = 3;
	pr.peer_min = 4;
	pr.peer_max = 3;
	pi.peer_min = pi.peer_max = 3;
	hs_init(&i, &pi);
	hs_init(&r, &pr);
	shuttle(&i, &r, 1000);
	assert_int_equal(hs_status(&r), HS_FAILED);
	assert_int_equal(r.error, HS_ERR_ID);
	assert_non_null(strstr(r.err, "no node may connect to node 3"));

	/* A peer claiming our own id. */
	pi = params(HS_INITIATOR, secret);
	pr = params(HS_RESPONDER, secret);
	pr.self = 2;
	pr.peer_min = 0;
	pi.peer_min = pi.peer_max = 2;
	pi.self = 2;
	hs_init(&i, &pi);
	hs_init(&r, &pr);
	shuttle(&i, &r, 1000);
	assert_int_equal(r.error, HS_ERR_ID);
	assert_non_null(strstr(r.err, "own id 2"));
}

static void test_other_cluster(void **state)
{
	struct hs_params pi = params(HS_INITIATOR, secret), pr = params(HS_RESPONDER, secret);
	struct handshake i, r;

	(void)state;
	fabric_cluster_id("another", pi.cluster_id);
	hs_init(&i, &pi);
	hs_init(&r, &pr);
	shuttle(&i, &r, 1000);
	assert_int_equal(r.error, HS_ERR_CLUSTER);
	assert_int_not_equal(hs_status(&i), HS_DONE);
	assert_non_null(strstr(r.err, "another cluster"));

	pi = params(HS_INITIATOR, secret);
	pi.nr_nodes = 5;
	hs_init(&i, &pi);
	hs_init(&r, &pr);
	shuttle(&i, &r, 1000);
	assert_int_equal(r.error, HS_ERR_CLUSTER);
	assert_non_null(strstr(r.err, "5 nodes, this node 4"));
}

static void test_version_and_role(void **state)
{
	struct hs_params pi = params(HS_INITIATOR, secret), pr = params(HS_RESPONDER, secret);
	struct handshake i, r, r2;
	uint8_t hello[HS_HELLO_LEN];
	const uint8_t *out;
	size_t used;

	(void)state;
	hs_init(&i, &pi);
	hs_init(&r, &pr);
	hs_output(&i, &out);
	memcpy(hello, out, sizeof(hello));
	hello[4] = 2;
	assert_int_equal(hs_feed(&r, hello, sizeof(hello), &used), HS_FAILED);
	assert_int_equal(r.error, HS_ERR_VERSION);
	assert_non_null(strstr(r.err, "version 2"));

	/* A responder's own HELLO reflected back at it. */
	hs_init(&r, &pr);
	hs_output(&r, &out);
	memcpy(hello, out, sizeof(hello));
	assert_int_equal(hs_feed(&r, hello, sizeof(hello), &used), HS_FAILED);
	assert_int_equal(r.error, HS_ERR_PROTOCOL);

	/* Two responders talking to each other get nowhere. */
	hs_init(&r, &pr);
	hs_init(&r2, &pr);
	shuttle(&r, &r2, 1000);
	assert_int_equal(hs_status(&r2), HS_FAILED);
	assert_int_not_equal(hs_status(&r), HS_DONE);
}

static void test_garbage(void **state)
{
	static const char http[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n....................................";
	struct hs_params pr = params(HS_RESPONDER, secret);
	uint8_t junk[200];
	struct handshake r;
	size_t used;

	(void)state;
	hs_init(&r, &pr);
	assert_int_equal(hs_feed(&r, (const uint8_t *)http, sizeof(http), &used), HS_FAILED);
	assert_int_equal(r.error, HS_ERR_PROTOCOL);
	assert_int_equal(used, HS_HELLO_LEN);
	assert_non_null(strstr(r.err, "not a grappe fabric peer"));
	/* A failed handshake stays failed. */
	assert_int_equal(hs_feed(&r, junk, 10, &used), HS_FAILED);
	assert_int_equal(used, 0);

	for (unsigned seed = 1; seed < 200; seed++) {
		srand(seed);
		for (size_t k = 0; k < sizeof(junk); k++)
			junk[k] = (uint8_t)rand();
		hs_init(&r, &pr);
		assert_int_not_equal(hs_feed(&r, junk, sizeof(junk), &used), HS_DONE);
	}
}

static void test_truncated_and_timeout(void **state)
{
	struct hs_params pi = params(HS_INITIATOR, secret), pr = params(HS_RESPONDER, secret);
	struct handshake i, r;
	const uint8_t *out;
	size_t used;

	(void)state;
	hs_init(&i, &pi);
	hs_init(&r, &pr);
	hs_output(&i, &out);
	assert_int_equal(hs_feed(&r, out, 30, &used), HS_CONTINUE);
	assert_int_equal(hs_check_timeout(&r, 1000 + 4999), HS_CONTINUE);
	assert_int_equal(hs_check_timeout(&r, 1000 + 5000), HS_FAILED);
	assert_int_equal(r.error, HS_ERR_TIMEOUT);
	assert_non_null(strstr(r.err, "timed out after 5000 ms waiting for the peer's HELLO "
				       "(30 bytes of it received)"));
	/* Silent after the HELLOs: the initiator gives up waiting for the proof. */
	hs_init(&i, &pi);
	hs_init(&r, &pr);
	hs_output(&r, &out);
	assert_int_equal(hs_feed(&i, out, HS_HELLO_LEN, &used), HS_CONTINUE);
	assert_int_equal(hs_check_timeout(&i, 7000), HS_FAILED);
	assert_non_null(strstr(i.err, "peer's proof"));
	/* A finished handshake does not time out. */
	hs_init(&i, &pi);
	hs_init(&r, &pr);
	shuttle(&i, &r, 1000);
	assert_int_equal(hs_check_timeout(&i, 1u << 30), HS_DONE);
}

/* Bytes after the last handshake message belong to the frame stream. */
static void test_leftover(void **state)
{
	struct hs_params pi = params(HS_INITIATOR, secret), pr = params(HS_RESPONDER, secret);
	uint8_t in[HS_HELLO_LEN + HS_PROOF_LEN + 10];
	struct handshake i, r;
	const uint8_t *out;
	size_t used, n;

	(void)state;
	hs_init(&i, &pi);
	hs_init(&r, &pr);
	n = hs_output(&i, &out);
	assert_int_equal(hs_feed(&r, out, n, &used), HS_CONTINUE);
	hs_sent(&i, n);
	n = hs_output(&r, &out);
	memcpy(in, out, n);
	hs_sent(&r, n);
	/* Now the initiator proves itself and the responder answers with its proof. */
	assert_int_equal(hs_feed(&i, in, HS_HELLO_LEN, &used), HS_CONTINUE);
	n = hs_output(&i, &out);
	assert_int_equal(hs_feed(&r, out, n, &used), HS_DONE);
	hs_sent(&i, n);
	n = hs_output(&r, &out);
	assert_int_equal(n, HS_PROOF_LEN);
	memcpy(in, out, n);
	memset(in + n, 'F', 10);
	assert_int_equal(hs_feed(&i, in, n + 10, &used), HS_DONE);
	assert_int_equal(used, HS_PROOF_LEN);
}

static void test_bad_params(void **state)
{
	struct hs_params p = params(HS_RESPONDER, secret);
	struct handshake h;

	(void)state;
	p.self = 4;
	assert_int_equal(hs_init(&h, &p), -1);
	p = params(HS_RESPONDER, secret);
	p.nr_nodes = 65;
	assert_int_equal(hs_init(&h, &p), -1);
	p = params(HS_RESPONDER, secret);
	p.peer_max = 4;
	assert_int_equal(hs_init(&h, &p), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_secret_load),
		cmocka_unit_test(test_secret_generate),
		cmocka_unit_test(test_cluster_id),
		cmocka_unit_test(test_success),
		cmocka_unit_test(test_byte_by_byte),
		cmocka_unit_test(test_keys_carry_frames),
		cmocka_unit_test(test_fresh_keys),
		cmocka_unit_test(test_wrong_secret_initiator),
		cmocka_unit_test(test_wrong_secret_responder),
		cmocka_unit_test(test_impostor_responder),
		cmocka_unit_test(test_replayed_handshake),
		cmocka_unit_test(test_wrong_ids),
		cmocka_unit_test(test_other_cluster),
		cmocka_unit_test(test_version_and_role),
		cmocka_unit_test(test_garbage),
		cmocka_unit_test(test_truncated_and_timeout),
		cmocka_unit_test(test_leftover),
		cmocka_unit_test(test_bad_params),
	};

	return cmocka_run_group_tests(tests, make_dir, remove_dir);
}
