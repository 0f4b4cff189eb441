// SPDX-License-Identifier: MIT
/*
 * The handshake state machine fed arbitrary bytes, as either side.
 *
 * Input: one control byte (bit 0: this side is the initiator; bits 1-7: how
 * many bytes to feed at a time, 0 = all at once), then what the peer says.
 * Nonces are fixed so that a seed holding a genuine peer transcript drives
 * the machine to the end (tests/fuzz-seeds/fuzz_handshake). Build with
 * -DFUZZ_HANDSHAKE_SEEDS for a main() that writes those seeds.
 */
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fabric/auth.h"

static const uint8_t secret[FABRIC_SECRET_LEN] = "fuzzing secret, thirty-two bytes";
static const uint8_t nonce_i[HS_NONCE_LEN] = "initiator nonce, 32 bytes long..";
static const uint8_t nonce_r[HS_NONCE_LEN] = "responder nonce, 32 bytes long..";

/* Node 2 dials node 0 of a 4-node cluster. */
static struct hs_params fuzz_params(enum hs_role role)
{
	struct hs_params p = {
		.role = role, .secret = secret, .nr_nodes = 4, .now_ms = 0, .timeout_ms = 5000,
	};

	fabric_cluster_id("fuzz", p.cluster_id);
	if (role == HS_INITIATOR) {
		p.self = 2;
		p.peer_min = p.peer_max = 0;
		p.nonce = nonce_i;
	} else {
		p.self = 0;
		p.peer_min = 1;
		p.peer_max = 3;
		p.nonce = nonce_r;
	}
	return p;
}

static void check_invariants(const struct handshake *hs, enum hs_status st)
{
	const uint8_t *out;
	size_t n = hs_output(hs, &out);

	if (n > sizeof(hs->out) || hs->out_off > hs->out_len || hs->in_len > sizeof(hs->in))
		abort();
	/* A refused peer gets nothing more from us. */
	if (st == HS_FAILED && (n || !hs->err[0]))
		abort();
	if (st == HS_DONE && (hs->peer >= 4 || hs->peer == hs->self))
		abort();
	if (st != hs_status(hs))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct hs_params p;
	struct handshake hs;
	enum hs_status st = HS_CONTINUE;
	size_t chunk, off = 1;

	if (size < 1)
		return 0;
	p = fuzz_params(data[0] & 1 ? HS_INITIATOR : HS_RESPONDER);
	chunk = data[0] >> 1;
	if (hs_init(&hs, &p))
		abort();
	while (off < size) {
		size_t n = chunk && chunk < size - off ? chunk : size - off, used;
		const uint8_t *out;

		/* What we would send goes out before the next read. */
		hs_sent(&hs, hs_output(&hs, &out));
		st = hs_feed(&hs, data + off, n, &used);
		if (used > n)
			abort();
		check_invariants(&hs, st);
		if (st != HS_CONTINUE)
			break;
		off += n;
	}
	/* Whatever state it is in, the deadline ends it. */
	st = hs_check_timeout(&hs, 5000);
	check_invariants(&hs, st);
	if (st == HS_CONTINUE)
		abort();
	hs_clear(&hs);
	return 0;
}

#ifdef FUZZ_HANDSHAKE_SEEDS
/* Runs both sides with the fixed nonces and records what each says. */
static size_t transcript(enum hs_role speaker, uint8_t *buf)
{
	struct hs_params pi = fuzz_params(HS_INITIATOR), pr = fuzz_params(HS_RESPONDER);
	struct handshake hs[2];
	size_t len = 0;
	bool progress = true;

	hs_init(&hs[HS_INITIATOR], &pi);
	hs_init(&hs[HS_RESPONDER], &pr);
	while (progress) {
		progress = false;
		for (int i = 0; i < 2; i++) {
			const uint8_t *out;
			size_t n = hs_output(&hs[i], &out), used;

			if (!n || hs_status(&hs[!i]) != HS_CONTINUE)
				continue;
			if (i == (int)speaker) {
				memcpy(buf + len, out, n);
				len += n;
			}
			hs_feed(&hs[!i], out, n, &used);
			hs_sent(&hs[i], n);
			progress = true;
		}
	}
	return len;
}

static void write_seed(const char *dir, const char *name, uint8_t ctl, const uint8_t *p,
		       size_t n)
{
	char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "wb");
	if (!f || fwrite(&ctl, 1, 1, f) != 1 || (n && fwrite(p, 1, n, f) != n))
		exit(1);
	fclose(f);
}

int main(int argc, char **argv)
{
	uint8_t from_i[256], from_r[256];
	size_t ni = transcript(HS_INITIATOR, from_i), nr = transcript(HS_RESPONDER, from_r);
	const char *dir = argc > 1 ? argv[1] : ".";
	static const char http[] = "GET / HTTP/1.1\r\nHost: grappe\r\nUser-Agent: fuzz\r\n"
				   "Accept: */*\r\n\r\n";

	/* We are the responder: the initiator's HELLO and proof. */
	write_seed(dir, "responder-valid", 0, from_i, ni);
	write_seed(dir, "responder-valid-bytewise", 1 << 1, from_i, ni);
	write_seed(dir, "responder-hello-only", 0, from_i, HS_HELLO_LEN);
	write_seed(dir, "responder-truncated", 7 << 1, from_i, HS_HELLO_LEN / 2);
	/* We are the initiator: the responder's HELLO and proof. */
	write_seed(dir, "initiator-valid", 1, from_r, nr);
	write_seed(dir, "initiator-valid-chunks", 1 | 13 << 1, from_r, nr);
	from_r[nr - 1] ^= 1;
	write_seed(dir, "initiator-bad-proof", 1, from_r, nr);
	write_seed(dir, "garbage", 0, (const uint8_t *)http, sizeof(http) - 1);
	return 0;
}
#endif
