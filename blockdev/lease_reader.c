// SPDX-License-Identifier: MIT
/*
 * A serving node's view of a replicated volume (lease_reader.h,
 * docs/volume.md "Read leases").
 *
 * One lock covers the leases: a read checks its lease under it, a REVOKE
 * clears the lease under it, so no read starts on a revoked region, and the
 * ACK goes at once. A local read still in flight then may see the write the
 * revocation lets through (or a torn mix): so a read notes the region's
 * revocation count when it starts and, if the count moved by the time the
 * read returns, throws its data away and reads through the I/O node. The
 * ACK never waits for this node's disk: a local read that hangs delays its
 * own request, not the coordinator's failure round of that store.
 *
 * Messages are sent after that lock is released (the fabric thread takes
 * it, and a send may wait for the peer). The coordinator sends without
 * its lock too, so a grant may arrive after a revocation numbered above
 * it: such a grant is stale and ignored.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "blockdev/iov_slice.h"
#include "blockdev/lease_coord.h"
#include "blockdev/lease_reader.h"
#include "blockdev/volume_layout.h"

#define SMALL_IOVS 16
/* After a refusal, reads of the region are forwarded without asking again for this long. */
#define RETRY_NS (100ull * 1000 * 1000)

struct local_store {
	struct blockdev *bd;          /* NULL: not on this node */
	uint64_t *leased, *asked;     /* bit per region */
	uint64_t *retry_after;        /* per region: monotonic ns before which not to ask */
	uint64_t *revoked_seq;        /* per region: the newest revocation seen */
	uint64_t revoked_all_seq;     /* the newest revocation of every region */
	uint64_t *revocations;        /* per region: how many revocations it had */
	uint64_t revocations_all;     /* ... and the store as a whole */
	uint64_t nleased;
};

struct lease_reader {
	struct blockdev bd;           /* first: the view given to virtio-blk */
	struct lease_reader_config c;
	struct vlayout lay;
	uint64_t regions;
	pthread_mutex_t lock;
	bool coordinator_dead;
	struct local_store st[LEASE_MAX_STORES];
	struct lease_reader_stats stats; /* counters under lock, except the atomics below */
	int refs;                     /* atomic: the blockdev's and the owner's */
};

static void lr_log(struct lease_reader *lr, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void lr_log(struct lease_reader *lr, const char *fmt, ...)
{
	store_log_fn log = __atomic_load_n(&lr->c.log, __ATOMIC_ACQUIRE);
	char msg[384];
	va_list ap;

	if (!log)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	log(lr->c.ctx, msg);
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static bool bit(const uint64_t *map, uint64_t i)
{
	return (map[i / 64] >> (i % 64)) & 1;
}

static void set_bit(uint64_t *map, uint64_t i, bool on)
{
	if (on)
		map[i / 64] |= 1ull << (i % 64);
	else
		map[i / 64] &= ~(1ull << (i % 64));
}

static void count(uint64_t *ctr, uint64_t n)
{
	__atomic_fetch_add(ctr, n, __ATOMIC_RELAXED);
}

static void send_msg(struct lease_reader *lr, struct lease_msg *m)
{
	uint8_t buf[LEASE_MSG_LEN];
	struct iovec iov = { .iov_base = buf, .iov_len = sizeof(buf) };
	const char *why;
	int rc;

	m->volume = lr->c.volume;
	if (lease_msg_encode(m, buf, &why)) {
		lr_log(lr, "read leases: not sending %s: %s", lease_msg_type_name(m->type), why);
		return;
	}
	rc = lr->c.send(lr->c.ctx, lr->c.coordinator, m->type, 0, &iov, 1);
	if (rc)
		lr_log(lr, "read leases: %s to node %u: %s", lease_msg_type_name(m->type),
		       lr->c.coordinator, strerror(-rc));
}

/* ---- reads ---- */

/* Under lock: this node's store with a lease on chunk's copy, or -1. */
static int leased_store_locked(struct lease_reader *lr, uint64_t chunk)
{
	uint64_t region = chunk / lr->c.region_chunks;

	if (lr->coordinator_dead)
		return -1;
	for (unsigned s = 0; s < lr->lay.stores; s++)
		if (lr->st[s].bd && bit(lr->st[s].leased, region) &&
		    vlayout_replica_of(&lr->lay, chunk, s) >= 0)
			return (int)s;
	return -1;
}

/*
 * Under lock: whether to ask for a lease on chunk's copy on this node
 * (once at a time per region); *m is the request to send after unlocking.
 */
static bool ask_locked(struct lease_reader *lr, uint64_t chunk, struct lease_msg *m)
{
	uint64_t region = chunk / lr->c.region_chunks;

	if (lr->coordinator_dead)
		return false;
	for (unsigned s = 0; s < lr->lay.stores; s++) {
		struct local_store *ls = &lr->st[s];

		if (!ls->bd || vlayout_replica_of(&lr->lay, chunk, s) < 0 || bit(ls->asked, region) ||
		    now_ns() < ls->retry_after[region])
			continue;
		set_bit(ls->asked, region, true);
		*m = (struct lease_msg){ .type = LEASE_MSG_REQUEST, .store = s, .region = region };
		return true;
	}
	return false;
}

/* The piece from this node's copy under a lease: 0, or why it could not be. */
static int read_local(struct lease_reader *lr, uint64_t chunk, uint64_t within,
		      const struct iovec *iov, int iovcnt, uint64_t len)
{
	uint64_t region = chunk / lr->c.region_chunks, revs, revs_all;
	struct local_store *ls;
	struct lease_msg ask;
	bool revoked;
	int s, rc;

	pthread_mutex_lock(&lr->lock);
	s = leased_store_locked(lr, chunk);
	if (s < 0) {
		bool asking = ask_locked(lr, chunk, &ask);

		pthread_mutex_unlock(&lr->lock);
		if (asking)
			send_msg(lr, &ask);
		return -ENOENT;
	}
	ls = &lr->st[s];
	revs = ls->revocations[region];
	revs_all = ls->revocations_all;
	pthread_mutex_unlock(&lr->lock);

	rc = blockdev_read(ls->bd, iov, iovcnt, vlayout_data_offset(&lr->lay, chunk, (unsigned)s) +
				   within);

	pthread_mutex_lock(&lr->lock);
	revoked = ls->revocations[region] != revs || ls->revocations_all != revs_all;
	pthread_mutex_unlock(&lr->lock);
	if (revoked) {
		/* Acknowledged while this read ran: the copy may have changed under it. */
		count(&lr->stats.late_reads, 1);
		return -ESTALE;
	}
	if (rc) {
		/* The I/O node reads another copy, and fails this store if it is broken. */
		count(&lr->stats.local_errors, 1);
		lr_log(lr, "read leases: local read of store %d failed (%s); forwarded", s,
		       strerror(-rc));
		return rc;
	}
	count(&lr->stats.reads_local, 1);
	count(&lr->stats.bytes_local, len);
	return 0;
}

static struct lease_reader *lr_of(struct blockdev *bd)
{
	return (struct lease_reader *)bd;
}

static int lr_read(struct blockdev *bd, const struct iovec *iov, int iovcnt, uint64_t off)
{
	struct lease_reader *lr = lr_of(bd);
	struct iovec small[SMALL_IOVS], *slice = small;
	uint64_t len = iov_total(iov, iovcnt), done = 0;
	int rc = 0;

	if (off > lr->lay.size || len > lr->lay.size - off)
		return -EINVAL;
	if (iovcnt > SMALL_IOVS) {
		slice = malloc(sizeof(*slice) * (size_t)iovcnt);
		if (!slice)
			return -ENOMEM;
	}
	/* Chunk by chunk: each piece from this node's copy if leased, else from the I/O node. */
	while (done < len && !rc) {
		uint64_t pos = off + done, chunk = pos >> lr->lay.chunk_shift;
		uint64_t within = pos & (lr->lay.chunk_size - 1);
		uint64_t plen = lr->lay.chunk_size - within < len - done ? lr->lay.chunk_size - within
									   : len - done;
		int n = iov_slice(iov, iovcnt, done, plen, slice);

		if (read_local(lr, chunk, within, slice, n, plen)) {
			rc = blockdev_read(lr->c.remote, slice, n, pos);
			if (!rc) {
				count(&lr->stats.reads_forwarded, 1);
				count(&lr->stats.bytes_forwarded, plen);
			}
		}
		done += plen;
	}
	if (slice != small)
		free(slice);
	return rc;
}

/* ---- everything else goes to the I/O node ---- */

static int lr_write(struct blockdev *bd, const struct iovec *iov, int iovcnt, uint64_t off)
{
	return blockdev_write(lr_of(bd)->c.remote, iov, iovcnt, off);
}

static int lr_flush(struct blockdev *bd)
{
	return blockdev_flush(lr_of(bd)->c.remote);
}

static int lr_discard(struct blockdev *bd, uint64_t off, uint64_t len)
{
	return blockdev_discard(lr_of(bd)->c.remote, off, len);
}

static int lr_write_zeroes(struct blockdev *bd, uint64_t off, uint64_t len, bool may_unmap)
{
	return blockdev_write_zeroes(lr_of(bd)->c.remote, off, len, may_unmap);
}

static uint64_t lr_size(struct blockdev *bd)
{
	return lr_of(bd)->lay.size;
}

static void lr_free(struct lease_reader *lr);

/* The blockdev and the owner each hold a reference: either may go first. */
static void lr_put(struct lease_reader *lr)
{
	if (__atomic_sub_fetch(&lr->refs, 1, __ATOMIC_ACQ_REL) == 0)
		lr_free(lr);
}

static void lr_close(struct blockdev *bd)
{
	struct lease_reader *lr = lr_of(bd);

	blockdev_close(lr->c.remote);
	lr->c.remote = NULL;
	lr_put(lr);
}

static const struct blockdev_ops lr_ops = {
	.read = lr_read,
	.write = lr_write,
	.flush = lr_flush,
	.discard = lr_discard,
	.write_zeroes = lr_write_zeroes,
	.size = lr_size,
	.close = lr_close,
};

/* ---- messages from the coordinator ---- */

static void on_grant(struct lease_reader *lr, const struct lease_msg *m)
{
	struct local_store *ls = &lr->st[m->store];

	if (!bit(ls->asked, m->region)) {
		lr_log(lr, "read leases: unasked grant for store %u region %" PRIu64 " ignored",
		       m->store, m->region);
		return;
	}
	set_bit(ls->asked, m->region, false);
	if (m->seq < ls->revoked_seq[m->region] || m->seq < ls->revoked_all_seq) {
		/* Granted, then revoked before this node saw the grant. */
		lr->stats.stale_grants++;
		return;
	}
	if (m->status == LEASE_REFUSED) {
		ls->retry_after[m->region] = now_ns() + RETRY_NS;
		lr->stats.refused++;
		return;
	}
	if (!bit(ls->leased, m->region))
		ls->nleased++;
	set_bit(ls->leased, m->region, true);
	lr->stats.granted++;
}

static uint64_t max_u64(uint64_t a, uint64_t b)
{
	return a > b ? a : b;
}

/* Under lock: drops the lease(s), so that no read starts under them, and marks the reads in flight stale. */
static void on_revoke(struct lease_reader *lr, const struct lease_msg *m)
{
	struct local_store *ls = &lr->st[m->store];

	if (m->region == LEASE_ALL_REGIONS) {
		memset(ls->leased, 0, (lr->regions + 63) / 64 * sizeof(uint64_t));
		ls->nleased = 0;
		ls->revoked_all_seq = max_u64(ls->revoked_all_seq, m->seq);
		ls->revocations_all++;
	} else {
		if (bit(ls->leased, m->region)) {
			set_bit(ls->leased, m->region, false);
			ls->nleased--;
		}
		ls->revoked_seq[m->region] = max_u64(ls->revoked_seq[m->region], m->seq);
		ls->revocations[m->region]++;
	}
	lr->stats.revoked++;
}

static void revoke(struct lease_reader *lr, const struct lease_msg *m)
{
	pthread_mutex_lock(&lr->lock);
	on_revoke(lr, m);
	pthread_mutex_unlock(&lr->lock);
	send_msg(lr, &(struct lease_msg){ .type = LEASE_MSG_ACK, .store = m->store,
					  .region = m->region, .seq = m->seq });
}

void lease_reader_receive(struct lease_reader *lr, unsigned src, uint16_t type,
			  const void *payload, size_t len)
{
	struct lease_msg m = { .type = 0 };
	const char *why = NULL;

	if (src != lr->c.coordinator)
		why = "not from the coordinator";
	else if (type != LEASE_MSG_GRANT && type != LEASE_MSG_REVOKE)
		why = "not for a serving node";
	else if (lease_msg_decode(type, payload, len, &m, &why))
		;
	else if (m.volume != lr->c.volume)
		why = "another volume";
	else if (m.store >= lr->lay.stores || !lr->st[m.store].bd)
		why = "a store this node does not hold";
	else if (m.region != LEASE_ALL_REGIONS && m.region >= lr->regions)
		why = "region out of range";
	if (why) {
		lr_log(lr, "read leases: dropped a %s (%zu bytes) from node %u: %s",
		       lease_msg_type_name(type), len, src, why);
		return;
	}
	if (type == LEASE_MSG_GRANT) {
		pthread_mutex_lock(&lr->lock);
		on_grant(lr, &m);
		pthread_mutex_unlock(&lr->lock);
		return;
	}
	revoke(lr, &m);
}

void lease_reader_peer_down(struct lease_reader *lr, unsigned node)
{
	if (node != lr->c.coordinator)
		return;
	pthread_mutex_lock(&lr->lock);
	lr->coordinator_dead = true;
	for (unsigned s = 0; s < lr->lay.stores; s++) {
		if (!lr->st[s].bd)
			continue;
		memset(lr->st[s].leased, 0, (lr->regions + 63) / 64 * sizeof(uint64_t));
		lr->st[s].nleased = 0;
	}
	pthread_mutex_unlock(&lr->lock);
}

/* ---- life ---- */

static int init_store(struct lease_reader *lr, unsigned s)
{
	struct local_store *ls = &lr->st[s];
	size_t words = (lr->regions + 63) / 64;

	ls->bd = lr->c.local[s];
	ls->leased = calloc(words, sizeof(uint64_t));
	ls->asked = calloc(words, sizeof(uint64_t));
	ls->retry_after = calloc(lr->regions, sizeof(uint64_t));
	ls->revoked_seq = calloc(lr->regions, sizeof(uint64_t));
	ls->revocations = calloc(lr->regions, sizeof(uint64_t));
	return ls->leased && ls->asked && ls->retry_after && ls->revoked_seq && ls->revocations
		       ? 0
		       : -1;
}

int lease_reader_create(const struct lease_reader_config *cfg, struct lease_reader **out,
			char *err, size_t errlen)
{
	unsigned replicas = cfg->replicas ? cfg->replicas : (cfg->stores < 2 ? cfg->stores : 2);
	struct lease_reader *lr;
	char why[256];

	*out = NULL;
	if (!cfg->remote || !cfg->send || cfg->stores > LEASE_MAX_STORES) {
		snprintf(err, errlen, "read leases: bad configuration");
		return -1;
	}
	lr = calloc(1, sizeof(*lr));
	if (!lr) {
		snprintf(err, errlen, "read leases: out of memory");
		return -1;
	}
	lr->c = *cfg;
	if (!lr->c.region_chunks)
		lr->c.region_chunks = LEASE_REGION_CHUNKS;
	pthread_mutex_init(&lr->lock, NULL);
	if (vlayout_init(&lr->lay, cfg->size, cfg->chunk_size ? cfg->chunk_size : 1ull << 20,
			 replicas, cfg->stores, why, sizeof(why))) {
		snprintf(err, errlen, "read leases: %s", why);
		goto fail;
	}
	lr->regions = (lr->lay.chunks + lr->c.region_chunks - 1) / lr->c.region_chunks;
	for (unsigned s = 0; s < cfg->stores; s++) {
		if (cfg->local[s] && init_store(lr, s)) {
			snprintf(err, errlen, "read leases: out of memory");
			goto fail;
		}
	}
	lr->bd = (struct blockdev){ .ops = &lr_ops, .block_size = cfg->remote->block_size,
				    .read_only = cfg->remote->read_only,
				    .discard = cfg->remote->discard };
	lr->refs = 2;
	*out = lr;
	return 0;
fail:
	lr->c.remote = NULL;       /* the caller's on failure */
	lr_free(lr);
	return -1;
}

struct blockdev *lease_reader_blockdev(struct lease_reader *lr)
{
	return &lr->bd;
}

void lease_reader_stats(struct lease_reader *lr, struct lease_reader_stats *st)
{
	pthread_mutex_lock(&lr->lock);
	/* The counters under the lock, then the atomic ones. */
	*st = (struct lease_reader_stats){ .granted = lr->stats.granted,
					   .refused = lr->stats.refused,
					   .revoked = lr->stats.revoked,
					   .stale_grants = lr->stats.stale_grants };
	st->reads_local = __atomic_load_n(&lr->stats.reads_local, __ATOMIC_RELAXED);
	st->bytes_local = __atomic_load_n(&lr->stats.bytes_local, __ATOMIC_RELAXED);
	st->reads_forwarded = __atomic_load_n(&lr->stats.reads_forwarded, __ATOMIC_RELAXED);
	st->bytes_forwarded = __atomic_load_n(&lr->stats.bytes_forwarded, __ATOMIC_RELAXED);
	st->local_errors = __atomic_load_n(&lr->stats.local_errors, __ATOMIC_RELAXED);
	st->late_reads = __atomic_load_n(&lr->stats.late_reads, __ATOMIC_RELAXED);
	st->leases = 0;
	for (unsigned s = 0; s < LEASE_MAX_STORES; s++)
		st->leases += lr->st[s].nleased;
	pthread_mutex_unlock(&lr->lock);
}

/*
 * The host's teardown, after the queues stopped: one line per disk saying
 * what the leases saved (the lab tests read it). The log goes with the host,
 * so nothing is logged after this even if the disk closes later.
 */
void lease_reader_destroy(struct lease_reader *lr)
{
	struct lease_reader_stats st;

	if (!lr)
		return;
	lease_reader_stats(lr, &st);
	lr_log(lr, "read leases: %" PRIu64 " reads (%" PRIu64 " KiB) from this node's store, %"
	       PRIu64 " through the I/O node, %" PRIu64 " local errors, %" PRIu64 " reread after a revocation"
	       "; leases granted %" PRIu64 ", refused %" PRIu64 ", revoked %" PRIu64, st.reads_local,
	       st.bytes_local >> 10, st.reads_forwarded, st.local_errors, st.late_reads, st.granted,
	       st.refused, st.revoked);
	__atomic_store_n(&lr->c.log, NULL, __ATOMIC_RELEASE);
	lr_put(lr);
}

static void lr_free(struct lease_reader *lr)
{
	for (unsigned s = 0; s < LEASE_MAX_STORES; s++) {
		free(lr->st[s].leased);
		free(lr->st[s].asked);
		free(lr->st[s].retry_after);
		free(lr->st[s].revoked_seq);
		free(lr->st[s].revocations);
	}
	pthread_mutex_destroy(&lr->lock);
	free(lr);
}
