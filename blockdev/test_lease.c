// SPDX-License-Identifier: MIT
/*
 * Read leases end to end, two nodes in one process: node 0 (the I/O node)
 * runs the volume and its lease coordinator; node 1 (a serving node) holds
 * store 0 and reads the volume through a lease_reader whose `remote` is
 * the volume itself behind a counting wrapper (what would be the store
 * client on disk/TARGET), so a read that reaches the I/O node is seen.
 * Lease messages go through a loopback link per direction, delivered in
 * order by a thread of the receiving side, as the fabric does.
 *
 * The volume sees store 0 through a wrapper that can fail; the reader
 * reads the same file_store (as a serving node reads the store its store
 * server exports) through a wrapper that can hold reads in flight.
 *
 * N = 3, R = 2, chunks of 64 KiB, regions of 4 chunks: store 0 holds the
 * chunks c with c % 3 != 1, so chunk 1 is never read locally.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "blockdev/file_store.h"
#include "blockdev/lease_coord.h"
#include "blockdev/lease_reader.h"
#include "blockdev/test_loopback_fixture.h"
#include "blockdev/volume.h"
#include "blockdev/volume_layout.h"

#define IO_NODE 0u
#define SERVING_NODE 1u
#define N 3u
#define CHUNK (64u << 10)
#define CHUNKS 48u
#define VOL_SIZE ((uint64_t)CHUNKS * CHUNK)
#define REGION_CHUNKS 4u
#define VOLUME_ID 7u

static void sleep_ms(unsigned ms)
{
	nanosleep(&(struct timespec){ .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000 },
		  NULL);
}

/* The bound only keeps a broken build from hanging the suite. */
#define WAIT_FOR(cond)                                                  \
	do {                                                            \
		unsigned waited_ = 0;                                   \
		while (!(cond) && waited_++ < 20000)                    \
			sleep_ms(1);                                    \
		assert_true(cond);                                      \
	} while (0)

/* ---- a blockdev wrapper: fails, holds reads, counts ---- */

struct wrap {
	struct blockdev bd;
	struct blockdev *inner;
	bool owns;                  /* close() closes inner */
	int fail_writes, fail_reads; /* atomic */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool hold;                  /* reads wait while set */
	unsigned held;              /* reads waiting */
	uint64_t reads, writes;     /* atomic */
};

static struct wrap *wrap_of(struct blockdev *bd)
{
	return (struct wrap *)bd;
}

static int w_read(struct blockdev *bd, const struct iovec *iov, int iovcnt, uint64_t off)
{
	struct wrap *w = wrap_of(bd);

	__atomic_fetch_add(&w->reads, 1, __ATOMIC_RELAXED);
	pthread_mutex_lock(&w->lock);
	w->held++;
	pthread_cond_broadcast(&w->cond);
	while (w->hold)
		pthread_cond_wait(&w->cond, &w->lock);
	w->held--;
	pthread_mutex_unlock(&w->lock);
	if (__atomic_load_n(&w->fail_reads, __ATOMIC_ACQUIRE))
		return -EIO;
	return blockdev_read(w->inner, iov, iovcnt, off);
}

static int w_write(struct blockdev *bd, const struct iovec *iov, int iovcnt, uint64_t off)
{
	struct wrap *w = wrap_of(bd);

	__atomic_fetch_add(&w->writes, 1, __ATOMIC_RELAXED);
	if (__atomic_load_n(&w->fail_writes, __ATOMIC_ACQUIRE))
		return -EIO;
	return blockdev_write(w->inner, iov, iovcnt, off);
}

static int w_flush(struct blockdev *bd)
{
	if (__atomic_load_n(&wrap_of(bd)->fail_writes, __ATOMIC_ACQUIRE))
		return -EIO;
	return blockdev_flush(wrap_of(bd)->inner);
}

static int w_discard(struct blockdev *bd, uint64_t off, uint64_t len)
{
	return blockdev_discard(wrap_of(bd)->inner, off, len);
}

static int w_zeroes(struct blockdev *bd, uint64_t off, uint64_t len, bool may_unmap)
{
	if (__atomic_load_n(&wrap_of(bd)->fail_writes, __ATOMIC_ACQUIRE))
		return -EIO;
	return blockdev_write_zeroes(wrap_of(bd)->inner, off, len, may_unmap);
}

static uint64_t w_size(struct blockdev *bd)
{
	return blockdev_size(wrap_of(bd)->inner);
}

static void w_close(struct blockdev *bd)
{
	struct wrap *w = wrap_of(bd);

	if (w->owns)
		blockdev_close(w->inner);
	pthread_mutex_destroy(&w->lock);
	pthread_cond_destroy(&w->cond);
	free(w);
}

static const struct blockdev_ops wrap_ops = {
	.read = w_read, .write = w_write, .flush = w_flush, .discard = w_discard,
	.write_zeroes = w_zeroes, .size = w_size, .close = w_close,
};

static struct wrap *wrap_new(struct blockdev *inner, bool owns)
{
	struct wrap *w = calloc(1, sizeof(*w));

	assert_non_null(w);
	w->bd = (struct blockdev){ .ops = &wrap_ops, .block_size = inner->block_size,
				   .discard = inner->discard };
	w->inner = inner;
	w->owns = owns;
	pthread_mutex_init(&w->lock, NULL);
	pthread_cond_init(&w->cond, NULL);
	return w;
}

static void wrap_hold(struct wrap *w, bool on)
{
	pthread_mutex_lock(&w->lock);
	w->hold = on;
	pthread_cond_broadcast(&w->cond);
	pthread_mutex_unlock(&w->lock);
}

static unsigned wrap_held(struct wrap *w)
{
	unsigned n;

	pthread_mutex_lock(&w->lock);
	n = w->held;
	pthread_mutex_unlock(&w->lock);
	return n;
}

/* ---- the links: lease messages only, in order (test_loopback_fixture.h) ---- */

/* Lease messages are one-way (no request id), between the two nodes only. */
static int lease_send(void *ctx, unsigned dst, uint16_t type, uint64_t req_id,
		      const struct iovec *iov, int iovcnt)
{
	struct loopback_link *l = ctx;

	assert_int_equal(dst, l->to_node);
	assert_int_equal(req_id, 0);
	return loopback_link_send(ctx, dst, type, req_id, iov, iovcnt);
}

static void to_coord(void *to, unsigned src, uint16_t type, uint64_t req_id, const void *p,
		     size_t len)
{
	lease_coord_receive(to, src, type, p, len);
}

static void to_reader(void *to, unsigned src, uint16_t type, uint64_t req_id, const void *p,
		      size_t len)
{
	lease_reader_receive(to, src, type, p, len);
}

/* ---- the two nodes ---- */

struct fix {
	char dir[64];
	char path[N][96];
	struct blockdev *fs0;        /* store 0's file_store: node 1's own */
	struct wrap *vol0;           /* the volume's view of store 0 (fails on demand) */
	struct wrap *local0;         /* the reader's view of store 0 (holds reads) */
	struct wrap *remote;         /* the I/O node as the reader reaches it (counts) */
	struct volume *vol;
	struct lease_coord *lc;
	struct lease_reader *lr;
	struct loopback_link up, down;  /* reader -> coordinator, coordinator -> reader */
};

/* GRAPPE_TEST_LOG=1 shows the volume's and the leases' log lines. */
static void quiet(void *ctx, const char *msg)
{
	(void)ctx;
	if (getenv("GRAPPE_TEST_LOG"))
		fprintf(stderr, "log: %s\n", msg);
}

static struct blockdev *open_store(struct fix *f, unsigned s, const struct vlayout *l)
{
	struct file_store_opts o = { .cache = FILE_STORE_WRITEBACK };
	struct blockdev *bd;
	char err[256];
	FILE *fp;

	char path[96];

	snprintf(path, sizeof(path), "%s/store%u", f->dir, s);
	memcpy(f->path[s], path, sizeof(path));
	fp = fopen(f->path[s], "w");
	assert_non_null(fp);
	assert_int_equal(ftruncate(fileno(fp), (off_t)vlayout_store_bytes(l, s)), 0);
	fclose(fp);
	assert_int_equal(file_store_open(f->path[s], &o, &bd, err, sizeof(err)), 0);
	return bd;
}

static int setup(void **state)
{
	struct fix *f = calloc(1, sizeof(*f));
	struct vlayout l;
	struct volume_config vc = { .name = "vol", .size = VOL_SIZE, .chunk_size = CHUNK,
				    .stores = N, .replicas = 2, .log = quiet, .probe_ms = 10 };
	struct lease_coord_config cc = { .volume = VOLUME_ID, .stores = N, .chunks = CHUNKS,
					 .region_chunks = REGION_CHUNKS, .send = lease_send,
					 .log = quiet };
	struct lease_reader_config rc = { .volume = VOLUME_ID, .size = VOL_SIZE,
					  .chunk_size = CHUNK, .stores = N, .replicas = 2,
					  .region_chunks = REGION_CHUNKS, .coordinator = IO_NODE,
					  .send = lease_send, .log = quiet };
	struct blockdev *stores[N];
	char err[512];

	assert_non_null(f);
	snprintf(f->dir, sizeof(f->dir), "/tmp/grappe-lease-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	assert_int_equal(vlayout_init(&l, VOL_SIZE, CHUNK, 2, N, err, sizeof(err)), 0);
	f->fs0 = open_store(f, 0, &l);
	f->vol0 = wrap_new(f->fs0, false);
	stores[0] = &f->vol0->bd;
	for (unsigned s = 1; s < N; s++)
		stores[s] = open_store(f, s, &l);
	assert_int_equal(volume_open(&vc, stores, 2, &f->vol, err, sizeof(err)), 0);

	for (unsigned s = 0; s < N; s++)
		cc.holder[s] = s == 0 ? SERVING_NODE : LEASE_NO_HOLDER;
	cc.ctx = &f->down;
	assert_int_equal(lease_coord_create(&cc, &f->lc, err, sizeof(err)), 0);
	volume_set_leases(f->vol, f->lc);

	f->local0 = wrap_new(f->fs0, false);
	f->remote = wrap_new(volume_blockdev(f->vol), false);
	rc.local[0] = &f->local0->bd;
	rc.remote = &f->remote->bd;
	rc.ctx = &f->up;
	assert_int_equal(lease_reader_create(&rc, &f->lr, err, sizeof(err)), 0);

	loopback_link_start(&f->up, SERVING_NODE, IO_NODE, to_coord, f->lc);
	loopback_link_start(&f->down, IO_NODE, SERVING_NODE, to_reader, f->lr);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fix *f = *state;
	char cmd[160];

	/* As a node ends: the disk (reader's blockdev), the volume, then the fabric. */
	blockdev_close(lease_reader_blockdev(f->lr));
	volume_close(f->vol);        /* closes its stores: vol0 too (not fs0) */
	loopback_link_stop(&f->up);
	loopback_link_stop(&f->down);
	lease_reader_destroy(f->lr);
	lease_coord_destroy(f->lc);
	w_close(&f->local0->bd);
	blockdev_close(f->fs0);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
	assert_int_equal(system(cmd), 0);
	free(f);
	return 0;
}

/* ---- helpers ---- */

static void pattern(uint8_t *buf, size_t len, uint64_t chunk, unsigned version)
{
	for (size_t i = 0; i < len; i++)
		buf[i] = (uint8_t)(chunk * 37 + version * 101 + i * 7 + (i >> 9));
}

/* Writes a whole chunk through the I/O node's volume (the I/O node's path). */
static int write_chunk(struct fix *f, uint64_t chunk, unsigned version)
{
	static __thread uint8_t buf[CHUNK];
	struct iovec iov = { .iov_base = buf, .iov_len = CHUNK };

	pattern(buf, CHUNK, chunk, version);
	return blockdev_write(volume_blockdev(f->vol), &iov, 1, chunk * CHUNK);
}

/* Reads a whole chunk through the serving node and checks it is that version. */
static void read_check(struct fix *f, uint64_t chunk, unsigned version)
{
	static __thread uint8_t got[CHUNK], want[CHUNK];
	struct iovec iov[2] = { { .iov_base = got, .iov_len = 1000 },
				{ .iov_base = got + 1000, .iov_len = CHUNK - 1000 } };

	pattern(want, CHUNK, chunk, version);
	assert_int_equal(blockdev_read(lease_reader_blockdev(f->lr), iov, 2, chunk * CHUNK), 0);
	assert_memory_equal(got, want, CHUNK);
}

static struct lease_reader_stats rstats(struct fix *f)
{
	struct lease_reader_stats st;

	lease_reader_stats(f->lr, &st);
	return st;
}

static struct lease_coord_stats cstats(struct fix *f)
{
	struct lease_coord_stats st;

	lease_coord_stats(f->lc, &st);
	return st;
}

static uint64_t io_node_reads(struct fix *f)
{
	return __atomic_load_n(&f->remote->reads, __ATOMIC_ACQUIRE);
}

/* Reads chunk (forwarded, asking for the lease) until a read of it is served locally. */
static void take_lease(struct fix *f, uint64_t chunk, unsigned version)
{
	uint64_t before = rstats(f).reads_local;
	unsigned tries = 0;

	do {
		read_check(f, chunk, version);
		if (rstats(f).reads_local > before)
			break;
		sleep_ms(1);
	} while (++tries < 20000);
	if (rstats(f).reads_local <= before)
		fprintf(stderr, "chunk %" PRIu64 ": no local read after %u tries: granted %" PRIu64
			" refused %" PRIu64 " revoked %" PRIu64 " leases %" PRIu64 "\n", chunk, tries,
			rstats(f).granted, rstats(f).refused, rstats(f).revoked, rstats(f).leases);
	assert_true(rstats(f).reads_local > before);
}

/* ---- tests ---- */

/* No lease yet: forwarded. With the lease: from store 0, never reaching the I/O node. */
static void test_local_read_with_lease(void **state)
{
	struct fix *f = *state;
	uint64_t fwd;

	for (uint64_t c = 0; c < CHUNKS; c++)
		assert_int_equal(write_chunk(f, c, 1), 0);
	assert_int_equal(io_node_reads(f), 0);
	read_check(f, 0, 1);
	assert_int_equal(io_node_reads(f), 1);
	assert_int_equal(rstats(f).reads_local, 0);
	WAIT_FOR(rstats(f).leases == 1);
	assert_int_equal(cstats(f).leases, 1);

	fwd = io_node_reads(f);
	for (unsigned i = 0; i < 10; i++)
		read_check(f, 0, 1);
	/* Chunks 2 and 3 are in the same region (4 chunks) and on store 0. */
	read_check(f, 2, 1);
	read_check(f, 3, 1);
	assert_int_equal(io_node_reads(f), fwd);
	assert_int_equal(rstats(f).reads_local, 12);
	assert_int_equal(rstats(f).bytes_local, 12ull * CHUNK);
	assert_int_equal(__atomic_load_n(&f->local0->reads, __ATOMIC_ACQUIRE), 12);
}

/* Chunk 1 is not on store 0: always forwarded, no lease asked for. */
static void test_chunk_not_held_is_forwarded(void **state)
{
	struct fix *f = *state;

	assert_int_equal(write_chunk(f, 1, 3), 0);
	for (unsigned i = 0; i < 3; i++)
		read_check(f, 1, 3);
	assert_int_equal(io_node_reads(f), 3);
	assert_int_equal(rstats(f).reads_local, 0);
	assert_int_equal(f->up.sent, 0);
}

/* A read spanning chunks: the held, leased ones local, chunk 1 forwarded. */
static void test_read_across_chunks(void **state)
{
	struct fix *f = *state;
	static uint8_t got[3 * CHUNK], want[3 * CHUNK];
	struct iovec iov = { .iov_base = got, .iov_len = sizeof(got) };

	for (uint64_t c = 0; c < 3; c++) {
		assert_int_equal(write_chunk(f, c, 2), 0);
		pattern(want + c * CHUNK, CHUNK, c, 2);
	}
	struct lease_reader_stats st;

	take_lease(f, 0, 2);
	st = rstats(f);
	assert_int_equal(blockdev_read(lease_reader_blockdev(f->lr), &iov, 1, 0), 0);
	assert_memory_equal(got, want, sizeof(got));
	assert_int_equal(rstats(f).reads_local - st.reads_local, 2);  /* chunks 0 and 2 */
	assert_int_equal(rstats(f).reads_forwarded - st.reads_forwarded, 1); /* chunk 1 */
}

/*
 * A write that store 0 fails: the volume takes store 0 out, which revokes
 * the lease (and waits for the ACK) before the write completes. The next
 * read goes to the I/O node and sees the new data, though store 0's file
 * still has the old.
 */
static void test_write_missing_local_copy_revokes(void **state)
{
	struct fix *f = *state;
	struct volume_stats vs;
	uint8_t old[512], stale[512];
	struct iovec iov = { .iov_base = stale, .iov_len = sizeof(stale) };
	struct vlayout l;
	char err[128];
	uint64_t local;

	assert_int_equal(vlayout_init(&l, VOL_SIZE, CHUNK, 2, N, err, sizeof(err)), 0);
	assert_int_equal(write_chunk(f, 0, 1), 0);
	take_lease(f, 0, 1);
	local = rstats(f).reads_local;
	__atomic_store_n(&f->vol0->fail_writes, 1, __ATOMIC_RELEASE);
	assert_int_equal(write_chunk(f, 0, 2), 0);
	/* Revoked and acknowledged before the write returned. */
	assert_int_equal(cstats(f).revoked, 1);
	assert_int_equal(cstats(f).leases, 0);
	assert_int_equal(rstats(f).revoked, 1);
	assert_int_equal(rstats(f).leases, 0);
	volume_stats(f->vol, &vs);
	assert_int_equal(vs.replica[0].state, VOLUME_REPLICA_FAILED);

	/* Store 0's copy is stale: reading it would give version 1. */
	assert_int_equal(blockdev_read(f->fs0, &iov, 1, vlayout_data_offset(&l, 0, 0)), 0);
	pattern(old, sizeof(old), 0, 1);
	assert_memory_equal(stale, old, sizeof(old));
	read_check(f, 0, 2);
	assert_int_equal(rstats(f).reads_local, local);
	/* And no lease while the store is out: asked, refused. */
	WAIT_FOR(rstats(f).refused >= 1);
	read_check(f, 0, 2);
	assert_int_equal(rstats(f).reads_local, local);
}

/*
 * A store failure found by the I/O node itself (a flush) revokes; once the
 * probe takes store 0 back and the resync copies its stale chunks, leases
 * are granted again and local reads see the data written meanwhile.
 */
static void test_failure_and_resync(void **state)
{
	struct fix *f = *state;
	struct volume_stats vs;

	for (uint64_t c = 0; c < CHUNKS; c++)
		assert_int_equal(write_chunk(f, c, 1), 0);
	take_lease(f, 0, 1);
	take_lease(f, 6, 1);          /* region 1; chunk 4 is not on store 0 */
	assert_int_equal(rstats(f).leases, 2);
	__atomic_store_n(&f->vol0->fail_writes, 1, __ATOMIC_RELEASE);
	assert_int_equal(blockdev_flush(volume_blockdev(f->vol)), 0);
	assert_int_equal(rstats(f).leases, 0);
	assert_int_equal(cstats(f).revoked, 1);   /* one REVOKE for the whole store */
	for (uint64_t c = 0; c < CHUNKS; c += 2)
		assert_int_equal(write_chunk(f, c, 2), 0);

	__atomic_store_n(&f->vol0->fail_writes, 0, __ATOMIC_RELEASE);
	do {
		sleep_ms(5);
		volume_stats(f->vol, &vs);
	} while (vs.replica[0].state != VOLUME_REPLICA_LIVE);
	assert_true(vs.replica[0].chunks_resynced > 0);
	for (uint64_t c = 0; c < CHUNKS; c++) {
		if (c % 3 == 1)
			continue;
		take_lease(f, c, c % 2 ? 1 : 2);
		read_check(f, c, c % 2 ? 1 : 2);
	}
	assert_true(rstats(f).reads_local >= 2 * CHUNKS / 3);
}

struct bg {
	struct fix *f;
	uint64_t chunk;
	unsigned version;
	int rc;
	int done;                    /* atomic */
	uint8_t buf[CHUNK];
};

static void *bg_read(void *arg)
{
	struct bg *b = arg;
	struct iovec iov = { .iov_base = b->buf, .iov_len = CHUNK };

	b->rc = blockdev_read(lease_reader_blockdev(b->f->lr), &iov, 1, b->chunk * CHUNK);
	__atomic_store_n(&b->done, 1, __ATOMIC_RELEASE);
	return NULL;
}

static void *bg_write(void *arg)
{
	struct bg *b = arg;

	b->rc = write_chunk(b->f, b->chunk, b->version);
	__atomic_store_n(&b->done, 1, __ATOMIC_RELEASE);
	return NULL;
}

/*
 * A revocation does not wait for this node's disk: with a local read held
 * inside store 0, a write that makes store 0's copy stale completes (the
 * ACK went at once), and the held read, once it returns, is thrown away and
 * read again through the I/O node: it gets the new data, not the stale copy.
 */
static void test_revocation_does_not_wait_for_local_reads(void **state)
{
	struct fix *f = *state;
	struct bg rd = { .f = f, .chunk = 0 }, wr = { .f = f, .chunk = 0, .version = 2 };
	pthread_t rt, wt;
	uint8_t v2[CHUNK];

	assert_int_equal(write_chunk(f, 0, 1), 0);
	take_lease(f, 0, 1);
	wrap_hold(f->local0, true);
	assert_int_equal(pthread_create(&rt, NULL, bg_read, &rd), 0);
	WAIT_FOR(wrap_held(f->local0) == 1);

	__atomic_store_n(&f->vol0->fail_writes, 1, __ATOMIC_RELEASE);
	assert_int_equal(pthread_create(&wt, NULL, bg_write, &wr), 0);
	pthread_join(wt, NULL);                   /* done while the read is still held */
	assert_int_equal(wr.rc, 0);
	assert_int_equal(rstats(f).revoked, 1);
	assert_int_equal(rstats(f).leases, 0);
	assert_false(__atomic_load_n(&rd.done, __ATOMIC_ACQUIRE));

	wrap_hold(f->local0, false);
	pthread_join(rt, NULL);
	assert_int_equal(rd.rc, 0);
	/* Store 0 missed the write: its copy is version 1, the volume's is 2. */
	pattern(v2, CHUNK, 0, 2);
	assert_memory_equal(rd.buf, v2, CHUNK);
	assert_int_equal(rstats(f).late_reads, 1);
	read_check(f, 0, 2);
}

/* A revocation whose holder never answers ends when the holder is declared dead. */
static void test_revocation_ends_on_node_death(void **state)
{
	struct fix *f = *state;
	struct bg wr = { .f = f, .chunk = 0, .version = 2 };
	pthread_t wt;

	assert_int_equal(write_chunk(f, 0, 1), 0);
	take_lease(f, 0, 1);
	pthread_mutex_lock(&f->down.lock);
	f->down.drop = true;                        /* the REVOKE is lost with the node */
	pthread_mutex_unlock(&f->down.lock);
	__atomic_store_n(&f->vol0->fail_writes, 1, __ATOMIC_RELEASE);
	assert_int_equal(pthread_create(&wt, NULL, bg_write, &wr), 0);
	sleep_ms(100);
	assert_false(__atomic_load_n(&wr.done, __ATOMIC_ACQUIRE));
	lease_coord_peer_down(f->lc, SERVING_NODE);
	pthread_join(wt, NULL);
	assert_int_equal(wr.rc, 0);
	/* A dead node gets no lease. */
	pthread_mutex_lock(&f->down.lock);
	f->down.drop = false;
	pthread_mutex_unlock(&f->down.lock);
	__atomic_store_n(&f->vol0->fail_writes, 0, __ATOMIC_RELEASE);
	assert_int_equal(cstats(f).leases, 0);
}

/* A local read that fails is forwarded: the guest sees the data. */
static void test_local_error_forwarded(void **state)
{
	struct fix *f = *state;

	assert_int_equal(write_chunk(f, 0, 4), 0);
	uint64_t local;

	take_lease(f, 0, 4);
	local = rstats(f).reads_local;
	__atomic_store_n(&f->local0->fail_reads, 1, __ATOMIC_RELEASE);
	read_check(f, 0, 4);
	assert_int_equal(rstats(f).local_errors, 1);
	assert_int_equal(rstats(f).reads_local, local);
}

/* The I/O node dies: every lease is dropped, reads go (and fail) there. */
static void test_coordinator_death_drops_leases(void **state)
{
	struct fix *f = *state;

	assert_int_equal(write_chunk(f, 0, 1), 0);
	uint64_t local;

	take_lease(f, 0, 1);
	local = rstats(f).reads_local;
	lease_reader_peer_down(f->lr, IO_NODE);
	assert_int_equal(rstats(f).leases, 0);
	read_check(f, 0, 1);                        /* the test's I/O node still answers */
	assert_int_equal(rstats(f).reads_local, local);
}

/*
 * The coordinator sends without its lock, so a grant can arrive after a
 * revocation numbered above it: the node ignores it and holds no lease.
 */
static void test_grant_after_its_revocation_ignored(void **state)
{
	struct fix *f = *state;
	uint8_t buf[LEASE_MSG_LEN];
	const char *why;
	struct lease_msg m = { .type = LEASE_MSG_REVOKE, .volume = VOLUME_ID, .store = 0,
			       .region = 0, .seq = 1000 };
	uint64_t local;

	assert_int_equal(write_chunk(f, 0, 1), 0);
	assert_int_equal(lease_msg_encode(&m, buf, &why), 0);
	lease_reader_receive(f->lr, IO_NODE, LEASE_MSG_REVOKE, buf, sizeof(buf));
	read_check(f, 0, 1);                        /* asks; the grant is numbered below 1000 */
	WAIT_FOR(rstats(f).stale_grants == 1);
	assert_int_equal(cstats(f).granted, 1);
	assert_int_equal(rstats(f).leases, 0);
	local = rstats(f).reads_local;
	read_check(f, 0, 1);                        /* forwarded, asks again: stale again */
	assert_int_equal(rstats(f).reads_local, local);
	WAIT_FOR(rstats(f).stale_grants == 2);
	/* Every region of the store, likewise (region 1: chunks 4..7; chunk 6 is on store 0). */
	m.region = LEASE_ALL_REGIONS;
	m.seq = 2000;
	assert_int_equal(lease_msg_encode(&m, buf, &why), 0);
	lease_reader_receive(f->lr, IO_NODE, LEASE_MSG_REVOKE, buf, sizeof(buf));
	assert_int_equal(write_chunk(f, 6, 1), 0);
	read_check(f, 6, 1);
	WAIT_FOR(rstats(f).stale_grants == 3);
	assert_int_equal(cstats(f).granted, 3);
	assert_int_equal(rstats(f).leases, 0);
}

/* Garbage and misdirected lease messages are dropped, never acted on. */
static void test_bad_messages_dropped(void **state)
{
	struct fix *f = *state;
	uint8_t buf[LEASE_MSG_LEN];
	const char *why;
	struct lease_msg m = { .type = LEASE_MSG_GRANT, .store = 0, .region = 0, .seq = 9,
			       .volume = VOLUME_ID };

	assert_int_equal(write_chunk(f, 0, 1), 0);
	/* An unasked grant, a grant from another node, another volume, truncated. */
	assert_int_equal(lease_msg_encode(&m, buf, &why), 0);
	lease_reader_receive(f->lr, IO_NODE, LEASE_MSG_GRANT, buf, sizeof(buf));
	lease_reader_receive(f->lr, 2, LEASE_MSG_GRANT, buf, sizeof(buf));
	lease_reader_receive(f->lr, IO_NODE, LEASE_MSG_GRANT, buf, sizeof(buf) - 1);
	m.volume = VOLUME_ID + 1;
	assert_int_equal(lease_msg_encode(&m, buf, &why), 0);
	lease_reader_receive(f->lr, IO_NODE, LEASE_MSG_GRANT, buf, sizeof(buf));
	assert_int_equal(rstats(f).leases, 0);
	read_check(f, 0, 1);
	assert_int_equal(rstats(f).reads_local, 0);

	/* The coordinator: a request for a store node 2 does not hold; an unknown ACK. */
	m = (struct lease_msg){ .type = LEASE_MSG_REQUEST, .store = 0, .volume = VOLUME_ID };
	assert_int_equal(lease_msg_encode(&m, buf, &why), 0);
	lease_coord_receive(f->lc, 2, LEASE_MSG_REQUEST, buf, sizeof(buf));
	m = (struct lease_msg){ .type = LEASE_MSG_REQUEST, .store = 1, .volume = VOLUME_ID };
	assert_int_equal(lease_msg_encode(&m, buf, &why), 0);
	lease_coord_receive(f->lc, SERVING_NODE, LEASE_MSG_REQUEST, buf, sizeof(buf));
	m = (struct lease_msg){ .type = LEASE_MSG_ACK, .store = 0, .seq = 77, .volume = VOLUME_ID };
	assert_int_equal(lease_msg_encode(&m, buf, &why), 0);
	lease_coord_receive(f->lc, SERVING_NODE, LEASE_MSG_ACK, buf, sizeof(buf));
	lease_coord_receive(f->lc, SERVING_NODE, LEASE_MSG_GRANT, buf, sizeof(buf));
	WAIT_FOR(rstats(f).leases == 1);
	assert_int_equal(cstats(f).granted, 1);      /* only the reader's own request */
	assert_int_equal(cstats(f).leases, 1);
}

/*
 * Readers on the serving node and a writer on the I/O node, with store 0
 * failing and coming back: a read that starts after a write completed
 * never returns older data than that write (checked by version).
 */
#define STRESS_CHUNKS 12u

struct stress {
	struct fix *f;
	unsigned acked[STRESS_CHUNKS];   /* atomic: newest version acknowledged */
	int stop;                        /* atomic */
	unsigned stale_reads, reads;     /* atomic */
	uint64_t seed;
};

static void *stress_reader(void *arg)
{
	struct stress *s = arg;
	static __thread uint8_t buf[CHUNK], want[CHUNK];
	uint64_t x = s->seed++ * 0x9e3779b97f4a7c15ull + 1;

	while (!__atomic_load_n(&s->stop, __ATOMIC_ACQUIRE)) {
		uint64_t c;
		unsigned floor, v;
		struct iovec iov = { .iov_base = buf, .iov_len = CHUNK };

		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		c = x % STRESS_CHUNKS;
		floor = __atomic_load_n(&s->acked[c], __ATOMIC_ACQUIRE);
		if (blockdev_read(lease_reader_blockdev(s->f->lr), &iov, 1, c * CHUNK))
			continue;
		__atomic_fetch_add(&s->reads, 1, __ATOMIC_RELAXED);
		for (v = floor; v < floor + 1000; v++) {
			pattern(want, 64, c, v);
			if (!memcmp(buf, want, 64))
				break;
		}
		if (v == floor + 1000)
			__atomic_fetch_add(&s->stale_reads, 1, __ATOMIC_RELAXED);
	}
	return NULL;
}

static void test_stress_no_stale_reads(void **state)
{
	struct fix *f = *state;
	struct stress s = { .f = f, .seed = 1 };
	pthread_t rt[3];
	struct volume_stats vs;

	for (uint64_t c = 0; c < STRESS_CHUNKS; c++)
		assert_int_equal(write_chunk(f, c, 0), 0);
	for (unsigned i = 0; i < 3; i++)
		assert_int_equal(pthread_create(&rt[i], NULL, stress_reader, &s), 0);
	for (unsigned round = 0; round < 6; round++) {
		for (unsigned i = 0; i < 200; i++) {
			uint64_t c = (i * 7 + round) % STRESS_CHUNKS;
			unsigned v = __atomic_load_n(&s.acked[c], __ATOMIC_ACQUIRE) + 1;

			assert_int_equal(write_chunk(f, c, v), 0);
			__atomic_store_n(&s.acked[c], v, __ATOMIC_RELEASE);
			if (i == 60)
				__atomic_store_n(&f->vol0->fail_writes, 1, __ATOMIC_RELEASE);
			if (i == 120)
				__atomic_store_n(&f->vol0->fail_writes, 0, __ATOMIC_RELEASE);
		}
		do {
			sleep_ms(2);
			volume_stats(f->vol, &vs);
		} while (vs.replica[0].state != VOLUME_REPLICA_LIVE);
	}
	__atomic_store_n(&s.stop, 1, __ATOMIC_RELEASE);
	for (unsigned i = 0; i < 3; i++)
		pthread_join(rt[i], NULL);
	assert_int_equal(s.stale_reads, 0);
	assert_true(s.reads > 0);
	assert_true(rstats(f).reads_local > 0);
	assert_true(cstats(f).revoked > 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_local_read_with_lease, setup, teardown),
		cmocka_unit_test_setup_teardown(test_chunk_not_held_is_forwarded, setup, teardown),
		cmocka_unit_test_setup_teardown(test_read_across_chunks, setup, teardown),
		cmocka_unit_test_setup_teardown(test_write_missing_local_copy_revokes, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_failure_and_resync, setup, teardown),
		cmocka_unit_test_setup_teardown(test_revocation_does_not_wait_for_local_reads, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_revocation_ends_on_node_death, setup, teardown),
		cmocka_unit_test_setup_teardown(test_local_error_forwarded, setup, teardown),
		cmocka_unit_test_setup_teardown(test_coordinator_death_drops_leases, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_grant_after_its_revocation_ignored, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_bad_messages_dropped, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stress_no_stale_reads, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
