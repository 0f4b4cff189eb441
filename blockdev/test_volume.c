// SPDX-License-Identifier: MIT
/*
 * The replicated volume over file_store replicas in a temporary directory,
 * each behind a fault-injecting wrapper that can fail all operations (or
 * only reads) and later heal. Data is checked against a reference buffer,
 * and every replica's copy of every chunk is read back from the store
 * files themselves. No timing assertions: background work (probe, resync,
 * intent clearing) is waited for by polling its result, with a bound.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "blockdev/file_store.h"
#include "blockdev/volume.h"
#include "blockdev/volume_layout.h"
#include "blockdev/volume_meta.h"

#define CHUNK    (64u << 10)
#define MAXN     4
#define POLL_MAX 2000          /* x 5 ms: the bound on waiting for background work */

/* --- a blockdev that fails on demand --- */

enum fault_mode { PASS, FAIL_ALL, FAIL_READS, FAIL_WRITES };

struct faulty {
	struct blockdev bd;
	struct blockdev *inner;
	int mode;              /* atomic */
	unsigned delay_us;     /* atomic: before every write, to make the store slow */
};

static int mode(struct blockdev *bd)
{
	return __atomic_load_n(&((struct faulty *)bd)->mode, __ATOMIC_ACQUIRE);
}

static struct blockdev *inner(struct blockdev *bd)
{
	return ((struct faulty *)bd)->inner;
}

static int f_read(struct blockdev *bd, const struct iovec *iov, int iovcnt, uint64_t off)
{
	int m = mode(bd);

	return m == FAIL_ALL || m == FAIL_READS ? -EIO : blockdev_read(inner(bd), iov, iovcnt, off);
}

static bool writes_fail(struct blockdev *bd)
{
	return mode(bd) == FAIL_ALL || mode(bd) == FAIL_WRITES;
}

static int f_write(struct blockdev *bd, const struct iovec *iov, int iovcnt, uint64_t off)
{
	unsigned delay = __atomic_load_n(&((struct faulty *)bd)->delay_us, __ATOMIC_RELAXED);

	if (delay)
		usleep(delay);
	return writes_fail(bd) ? -EIO : blockdev_write(inner(bd), iov, iovcnt, off);
}

static int f_flush(struct blockdev *bd)
{
	return writes_fail(bd) ? -EIO : blockdev_flush(inner(bd));
}

static int f_discard(struct blockdev *bd, uint64_t off, uint64_t len)
{
	return writes_fail(bd) ? -EIO : blockdev_discard(inner(bd), off, len);
}

static int f_zeroes(struct blockdev *bd, uint64_t off, uint64_t len, bool may_unmap)
{
	return writes_fail(bd) ? -EIO : blockdev_write_zeroes(inner(bd), off, len, may_unmap);
}

static uint64_t f_size(struct blockdev *bd)
{
	return blockdev_size(inner(bd));
}

static void f_close(struct blockdev *bd)
{
	blockdev_close(inner(bd));
	free(bd);
}

static const struct blockdev_ops faulty_ops = {
	.read = f_read, .write = f_write, .flush = f_flush, .discard = f_discard,
	.write_zeroes = f_zeroes, .size = f_size, .close = f_close,
};

/* --- fixture --- */

struct fx {
	char dir[64];
	char path[MAXN][128];
	unsigned n, r;
	uint64_t size;
	unsigned idle_ms;
	struct vlayout lay;
	struct faulty *fault[MAXN];
	enum fault_mode start_mode[MAXN];   /* of the wrappers try_open makes */
	struct volume *vol;
	struct blockdev *bd;
	uint8_t *ref;
	uint64_t seed;
	pthread_mutex_t log_lock;
	char log[16384];
	/* volume_config.reopen, when set: see test_missing_store_reopened. */
	int (*reopen)(void *ctx, unsigned idx, struct blockdev *cur, struct blockdev **out,
		      char *why, size_t whylen);
};

static void collect(void *ctx, const char *msg)
{
	struct fx *f = ctx;
	size_t n;

	pthread_mutex_lock(&f->log_lock);
	n = strlen(f->log);
	snprintf(f->log + n, sizeof(f->log) - n, "%s\n", msg);
	pthread_mutex_unlock(&f->log_lock);
	if (getenv("VOLUME_TEST_LOG"))
		fprintf(stderr, "  log: %s\n", msg);
}

static bool logged(struct fx *f, const char *needle)
{
	bool found;

	pthread_mutex_lock(&f->log_lock);
	found = strstr(f->log, needle) != NULL;
	pthread_mutex_unlock(&f->log_lock);
	return found;
}

static uint64_t rnd(struct fx *f)
{
	/* xorshift64*: reproducible runs. */
	f->seed ^= f->seed >> 12;
	f->seed ^= f->seed << 25;
	f->seed ^= f->seed >> 27;
	return f->seed * 2685821657736338717ull;
}

static void make_file(const char *path, uint64_t size)
{
	int fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0600);

	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t)size), 0);
	close(fd);
}

static struct fx *fx_new(unsigned n, unsigned r, uint64_t size)
{
	struct fx *f = test_calloc(1, sizeof(*f));
	char why[200];

	f->n = n;
	f->r = r;
	f->size = size;
	f->idle_ms = 600000;
	f->seed = 0x9e3779b97f4a7c15ull ^ (n * 131 + r);
	pthread_mutex_init(&f->log_lock, NULL);
	assert_int_equal(vlayout_init(&f->lay, size, CHUNK, r, n, why, sizeof(why)), 0);
	snprintf(f->dir, sizeof(f->dir), "/tmp/grappe-vol-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	for (unsigned i = 0; i < n; i++) {
		snprintf(f->path[i], sizeof(f->path[i]), "%s/store%u.img", f->dir, i);
		make_file(f->path[i], vlayout_store_bytes(&f->lay, i));
	}
	f->ref = test_calloc(1, size);
	return f;
}

static void fx_free(struct fx *f)
{
	char cmd[128];

	if (f->vol)
		volume_close(f->vol);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
	assert_int_equal(system(cmd), 0);
	test_free(f->ref);
	pthread_mutex_destroy(&f->log_lock);
	test_free(f);
}

static struct blockdev *open_store(const char *path)
{
	struct file_store_opts o = { .cache = FILE_STORE_WRITEBACK };
	struct blockdev *bd = NULL;
	char err[256];

	if (file_store_open(path, &o, &bd, err, sizeof(err)))
		fail_msg("%s", err);
	return bd;
}

static struct faulty *wrap(struct blockdev *in)
{
	struct faulty *w = calloc(1, sizeof(*w));

	assert_non_null(w);
	w->bd = *in;
	w->bd.ops = &faulty_ops;
	w->inner = in;
	return w;
}

static struct volume_config config(struct fx *f, const char **names)
{
	for (unsigned i = 0; i < f->n; i++)
		names[i] = f->path[i];
	return (struct volume_config){
		.name = "vol0", .size = f->size, .chunk_size = CHUNK, .stores = f->n,
		.replicas = f->r, .store_names = names, .log = collect, .log_ctx = f,
		.probe_ms = 20, .idle_ms = f->idle_ms, .reopen = f->reopen, .reopen_ctx = f,
	};
}

/*
 * Opens the volume on the files; present[i] false leaves store i out.
 * Returns volume_open's result; on failure the stores are closed here.
 */
static int try_open(struct fx *f, const bool *present, unsigned local, char *err, size_t errlen)
{
	struct blockdev *bds[MAXN] = { NULL };
	const char *names[MAXN];
	struct volume_config cfg = config(f, names);
	int rc;

	for (unsigned i = 0; i < f->n; i++) {
		f->fault[i] = NULL;
		if (present && !present[i])
			continue;
		f->fault[i] = wrap(open_store(f->path[i]));
		f->fault[i]->mode = f->start_mode[i];
		bds[i] = &f->fault[i]->bd;
	}
	rc = volume_open(&cfg, bds, local, &f->vol, err, errlen);
	if (rc) {
		for (unsigned i = 0; i < f->n; i++)
			blockdev_close(bds[i]);
		f->vol = NULL;
		return rc;
	}
	f->bd = volume_blockdev(f->vol);
	return 0;
}

static void open_ok(struct fx *f, unsigned local)
{
	char err[512] = "";

	if (try_open(f, NULL, local, err, sizeof(err)))
		fail_msg("volume_open: %s", err);
}

static void close_vol(struct fx *f)
{
	blockdev_close(f->bd);
	f->vol = NULL;
	f->bd = NULL;
}

static void set_mode(struct fx *f, unsigned i, enum fault_mode m)
{
	__atomic_store_n(&f->fault[i]->mode, m, __ATOMIC_RELEASE);
}

static struct volume_stats stats(struct fx *f)
{
	struct volume_stats st;

	volume_stats(f->vol, &st);
	return st;
}

/* Writes [off, off+len) of random bytes in up to three iovecs, and into ref. */
static int write_range(struct fx *f, uint64_t off, uint64_t len)
{
	uint8_t *buf = malloc(len);
	struct iovec iov[3];
	uint64_t a = len / 3, b = len / 2;
	int rc;

	assert_non_null(buf);
	for (uint64_t i = 0; i < len; i += 8) {
		uint64_t v = rnd(f);

		memcpy(buf + i, &v, len - i < 8 ? len - i : 8);
	}
	iov[0] = (struct iovec){ buf, a };
	iov[1] = (struct iovec){ buf + a, b - a };
	iov[2] = (struct iovec){ buf + b, len - b };
	rc = blockdev_write(f->bd, iov, 3, off);
	if (!rc)
		memcpy(f->ref + off, buf, len);
	free(buf);
	return rc;
}

/* A random write in [0, limit) crossing chunk boundaries now and then; returns its first chunk. */
static uint64_t random_write_below(struct fx *f, uint64_t limit, uint64_t *last_chunk)
{
	uint64_t len = 512 * (1 + rnd(f) % (3 * CHUNK / 512));
	uint64_t off;

	if (len > limit)
		len = limit;
	off = 512 * (rnd(f) % ((limit - len) / 512 + 1));
	assert_int_equal(write_range(f, off, len), 0);
	*last_chunk = (off + len - 1) / CHUNK;
	return off / CHUNK;
}

static uint64_t random_write(struct fx *f, uint64_t *last_chunk)
{
	return random_write_below(f, f->size, last_chunk);
}

static void verify(struct fx *f)
{
	const uint64_t step = 96 << 10;       /* not a chunk multiple: reads cross chunks */
	uint8_t *buf = malloc(step);

	assert_non_null(buf);
	for (uint64_t off = 0; off < f->size; off += step) {
		uint64_t len = f->size - off < step ? f->size - off : step;
		struct iovec iov = { buf, len };

		assert_int_equal(blockdev_read(f->bd, &iov, 1, off), 0);
		if (memcmp(buf, f->ref + off, len))
			fail_msg("volume data differs from the reference at %llu",
				 (unsigned long long)off);
	}
	free(buf);
}

static void read_file(const char *path, uint64_t off, uint8_t *buf, size_t len)
{
	int fd = open(path, O_RDONLY);

	assert_true(fd >= 0);
	assert_int_equal(pread(fd, buf, len, (off_t)off), (ssize_t)len);
	close(fd);
}

/* Every replica of every chunk, read from the store files, equals the reference. */
static void check_replicas(struct fx *f)
{
	uint8_t *buf = malloc(CHUNK);

	assert_non_null(buf);
	for (uint64_t c = 0; c < f->lay.chunks; c++) {
		uint64_t len = vlayout_chunk_len(&f->lay, c);

		for (unsigned k = 0; k < f->r; k++) {
			unsigned s = vlayout_store(&f->lay, c, k);

			read_file(f->path[s], vlayout_data_offset(&f->lay, c, s), buf, len);
			if (memcmp(buf, f->ref + c * CHUNK, len))
				fail_msg("store %u's copy of chunk %llu differs", s,
					 (unsigned long long)c);
		}
	}
	free(buf);
}

static void disk_header(struct fx *f, unsigned store, struct vmeta_header *h)
{
	uint8_t two[2 * VLAYOUT_BLOCK];
	char why[200];
	int damaged;

	read_file(f->path[store], 0, two, sizeof(two));
	if (vmeta_header_read(two, h, &damaged, why, sizeof(why)) != VMETA_OK)
		fail_msg("store %u header: %s", store, why);
}

/* The table entry of chunk on store, as on the store's file. */
static uint64_t disk_entry(struct fx *f, unsigned store, uint64_t chunk)
{
	uint64_t slot = vlayout_slot(&f->lay, chunk, store), block = 1 + slot / VLAYOUT_ENTRIES;
	uint64_t e[VLAYOUT_ENTRIES], seq;
	uint8_t two[2 * VLAYOUT_BLOCK];
	struct vmeta_header h;
	char why[200];
	int damaged;

	disk_header(f, store, &h);
	read_file(f->path[store], vmeta_block_offset(block, 0), two, sizeof(two));
	if (vmeta_table_read(two, block, h.uuid, vmeta_block_entries(h.slots, block), e, &seq,
			     &damaged, why, sizeof(why)))
		fail_msg("store %u table: %s", store, why);
	return e[slot % VLAYOUT_ENTRIES];
}

static bool any_dirty_on_disk(struct fx *f)
{
	for (uint64_t c = 0; c < f->lay.chunks; c++)
		for (unsigned k = 0; k < f->r; k++)
			if (disk_entry(f, vlayout_store(&f->lay, c, k), c) & VMETA_DIRTY)
				return true;
	return false;
}

static void pause_ms(unsigned ms)
{
	usleep(ms * 1000);
}

/* Waits (bounded) until every store is live again. */
static void wait_healthy(struct fx *f)
{
	for (int i = 0; i < POLL_MAX; i++) {
		struct volume_stats st = stats(f);

		if (!st.degraded && !st.chunks_unavailable)
			return;
		pause_ms(5);
	}
	fail_msg("the volume did not become healthy; log:\n%s", f->log);
}

/* --- tests --- */

static void test_format_rw_reopen(void **state)
{
	struct fx *f = fx_new(2, 2, 3 * CHUNK + 8192);
	struct vmeta_header h;
	uint64_t last;

	open_ok(f, VOLUME_NO_LOCAL);
	assert_true(logged(f, "formatted"));
	assert_int_equal(stats(f).generation, 2);
	assert_false(stats(f).degraded);
	assert_int_equal(blockdev_size(f->bd), f->size);
	verify(f);                                    /* all zeros after formatting */
	for (int i = 0; i < 60; i++)
		random_write(f, &last);
	verify(f);
	assert_int_equal(blockdev_flush(f->bd), 0);
	check_replicas(f);
	/* Write intent is on disk for what was written, before the clean close. */
	assert_true(any_dirty_on_disk(f));
	disk_header(f, 0, &h);
	assert_false(h.clean);
	close_vol(f);
	for (unsigned s = 0; s < 2; s++) {
		disk_header(f, s, &h);
		assert_true(h.clean);
		assert_int_equal(h.generation, 2);
	}
	assert_false(any_dirty_on_disk(f));
	check_replicas(f);

	open_ok(f, 1);
	assert_int_equal(stats(f).generation, 3);
	assert_false(stats(f).degraded);
	verify(f);
	close_vol(f);
	fx_free(f);
}

/* Reads go to the local copy, else the primary. */
static void test_read_preference(void **state)
{
	struct fx *f = fx_new(3, 2, 12 * CHUNK);
	uint8_t buf[4096];
	struct iovec iov = { buf, sizeof(buf) };
	struct volume_stats a, b;

	open_ok(f, 1);
	a = stats(f);
	assert_int_equal(blockdev_read(f->bd, &iov, 1, 3 * CHUNK), 0);   /* stores 0, 1 */
	b = stats(f);
	assert_int_equal(b.replica[1].bytes_read - a.replica[1].bytes_read, sizeof(buf));
	assert_int_equal(b.replica[0].bytes_read, a.replica[0].bytes_read);
	assert_int_equal(blockdev_read(f->bd, &iov, 1, 2 * CHUNK), 0);   /* stores 2, 0 */
	a = stats(f);
	assert_int_equal(a.replica[2].bytes_read - b.replica[2].bytes_read, sizeof(buf));
	assert_int_equal(a.replica[0].bytes_read, b.replica[0].bytes_read);
	close_vol(f);
	fx_free(f);
}

static void test_n3_all_replica_counts(void **state)
{
	for (unsigned r = 1; r <= 3; r++) {
		struct fx *f = fx_new(3, r, 10 * CHUNK);
		uint64_t last;

		open_ok(f, 0);
		for (int i = 0; i < 40; i++)
			random_write(f, &last);
		verify(f);
		assert_int_equal(blockdev_flush(f->bd), 0);
		check_replicas(f);
		close_vol(f);
		open_ok(f, 2);
		verify(f);
		close_vol(f);
		fx_free(f);
	}
}

/*
 * A store fails: writes (to the first 6 of 16 chunks) go on with no error,
 * the store's copies of chunks written meanwhile have a lower generation
 * on its disk. It heals: the probe brings it back, exactly those chunks
 * are copied, its other copies are adopted as they are, and every copy is
 * identical.
 */
static void test_degraded_probe_resync(void **state)
{
	struct fx *f = fx_new(3, 2, 16 * CHUNK);
	bool touched[16] = { false };
	uint64_t g0, first, last, expect = 0;

	f->idle_ms = 20;                 /* let intent clear before the failure */
	open_ok(f, VOLUME_NO_LOCAL);
	for (int i = 0; i < 40; i++)
		random_write(f, &last);
	for (int i = 0; i < POLL_MAX && any_dirty_on_disk(f); i++)
		pause_ms(5);
	assert_false(any_dirty_on_disk(f));
	g0 = stats(f).generation;

	set_mode(f, 1, FAIL_ALL);
	for (int i = 0; i < 40; i++) {
		first = random_write_below(f, 6 * CHUNK, &last);
		for (uint64_t c = first; c <= last; c++)
			touched[c] = true;
	}
	assert_int_equal(blockdev_flush(f->bd), 0);
	verify(f);
	assert_int_equal(stats(f).replica[1].state, VOLUME_REPLICA_FAILED);
	assert_true(stats(f).degraded);
	assert_true(stats(f).generation > g0);
	assert_true(logged(f, "store 1 ("));
	assert_true(logged(f, "Input/output error): degraded"));
	for (uint64_t c = 0; c < 16; c++) {
		int k = vlayout_replica_of(&f->lay, c, 1);
		unsigned other;

		if (k < 0 || !touched[c])
			continue;
		other = vlayout_store(&f->lay, c, k == 0 ? 1 : 0);
		assert_true(vmeta_gen(disk_entry(f, 1, c)) < vmeta_gen(disk_entry(f, other, c)));
		expect++;
	}
	assert_true(expect > 0 && expect < vlayout_slots(&f->lay, 1));
	assert_int_equal(stats(f).replica[1].chunks_stale, expect);

	set_mode(f, 1, PASS);
	wait_healthy(f);
	assert_int_equal(stats(f).replica[1].chunks_resynced, expect);
	assert_true(logged(f, "chunks current"));
	assert_int_equal(stats(f).replica[1].chunks_stale, 0);
	assert_true(logged(f, "store 1 (") && logged(f, "returned"));
	assert_true(logged(f, "resync finished"));
	verify(f);
	check_replicas(f);
	close_vol(f);
	open_ok(f, VOLUME_NO_LOCAL);
	assert_false(stats(f).degraded);
	verify(f);
	close_vol(f);
	fx_free(f);
}

/* A failed store replaced by a new, zeroed one: every chunk is copied to it. */
static void test_reattach_new_store(void **state)
{
	struct fx *f = fx_new(2, 2, 8 * CHUNK), *other = fx_new(2, 2, 8 * CHUNK);
	char err[512] = "", path[160];
	struct blockdev *bd;
	uint64_t last;

	open_ok(other, VOLUME_NO_LOCAL);
	close_vol(other);
	open_ok(f, 0);
	for (int i = 0; i < 20; i++)
		random_write(f, &last);
	/* A live store cannot be replaced; the caller keeps its blockdev. */
	bd = open_store(other->path[1]);
	assert_int_equal(volume_replica_reattach(f->vol, 1, bd, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "in service"));
	blockdev_close(bd);

	set_mode(f, 1, FAIL_ALL);
	for (int i = 0; i < 20; i++)
		random_write(f, &last);
	assert_int_equal(stats(f).replica[1].state, VOLUME_REPLICA_FAILED);
	/* Another volume's store is refused, nothing written to it. */
	bd = open_store(other->path[1]);
	assert_int_equal(volume_replica_reattach(f->vol, 1, bd, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "belongs to another volume"));
	blockdev_close(bd);

	snprintf(path, sizeof(path), "%s/new1.img", f->dir);
	make_file(path, vlayout_store_bytes(&f->lay, 1));
	assert_int_equal(volume_replica_reattach(f->vol, 1, open_store(path), err, sizeof(err)), 0);
	memcpy(f->path[1], path, sizeof(path) < sizeof(f->path[1]) ? sizeof(path)
				: sizeof(f->path[1]));
	wait_healthy(f);
	assert_int_equal(stats(f).replica[1].chunks_resynced, f->lay.chunks);
	assert_true(logged(f, "joins as a new member"));
	verify(f);
	check_replicas(f);
	close_vol(f);
	open_ok(f, 1);                   /* the new file is a full member now */
	assert_false(stats(f).degraded);
	verify(f);
	close_vol(f);
	fx_free(f);
	fx_free(other);
}

static void copy_file(const char *from, const char *to)
{
	struct stat st;
	uint8_t *buf;

	assert_int_equal(stat(from, &st), 0);
	buf = malloc((size_t)st.st_size);
	assert_non_null(buf);
	read_file(from, 0, buf, (size_t)st.st_size);
	make_file(to, 0);
	{
		int fd = open(to, O_WRONLY);

		assert_true(fd >= 0);
		assert_int_equal(pwrite(fd, buf, (size_t)st.st_size, 0), st.st_size);
		close(fd);
	}
	free(buf);
}

static void write_file(const char *path, uint64_t off, const void *buf, size_t len)
{
	int fd = open(path, O_WRONLY);

	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, buf, len, (off_t)off), (ssize_t)len);
	close(fd);
}

/*
 * A crash with write intent set: the stores are saved while the volume is
 * open (after a flush), which is what a crash leaves; one replica's copy of
 * a chunk marked dirty is then made to differ. Reopening resynchronises it
 * from the chosen copy (same generation, so the primary).
 */
static void test_unclean_shutdown(void **state)
{
	struct fx *f = fx_new(2, 2, 6 * CHUNK);
	char saved[MAXN][160];
	uint8_t junk[4096];
	struct vmeta_header h;

	open_ok(f, VOLUME_NO_LOCAL);
	assert_int_equal(write_range(f, 0, 2 * CHUNK), 0);       /* chunks 0 and 1 */
	assert_int_equal(blockdev_flush(f->bd), 0);
	for (unsigned s = 0; s < 2; s++) {
		snprintf(saved[s], sizeof(saved[s]), "%s/crash%u.img", f->dir, s);
		copy_file(f->path[s], saved[s]);
	}
	close_vol(f);
	for (unsigned s = 0; s < 2; s++)
		copy_file(saved[s], f->path[s]);
	disk_header(f, 0, &h);
	assert_false(h.clean);
	assert_true(disk_entry(f, 1, 0) & VMETA_DIRTY);
	/* Chunk 0: primary store 0, replica store 1. */
	memset(junk, 0xee, sizeof(junk));
	write_file(f->path[1], vlayout_data_offset(&f->lay, 0, 1) + 8192, junk, sizeof(junk));

	open_ok(f, 1);                   /* local store 1: a read would prefer the bad copy */
	assert_true(logged(f, "after an unclean shutdown"));
	assert_true(logged(f, "write intent"));
	wait_healthy(f);
	assert_true(stats(f).replica[1].chunks_resynced >= 1);
	verify(f);
	check_replicas(f);
	close_vol(f);
	fx_free(f);
}

/* Rewrites store's table entry of chunk on its file (newest copy, same sequence). */
static void set_disk_entry(struct fx *f, unsigned store, uint64_t chunk, uint64_t entry)
{
	uint64_t slot = vlayout_slot(&f->lay, chunk, store), block = 1 + slot / VLAYOUT_ENTRIES;
	uint64_t e[VLAYOUT_ENTRIES], seq;
	uint8_t two[2 * VLAYOUT_BLOCK], blk[VLAYOUT_BLOCK];
	unsigned n;
	struct vmeta_header h;
	char why[200];
	int damaged;

	disk_header(f, store, &h);
	n = vmeta_block_entries(h.slots, block);
	read_file(f->path[store], vmeta_block_offset(block, 0), two, sizeof(two));
	assert_int_equal(vmeta_table_read(two, block, h.uuid, n, e, &seq, &damaged, why,
					  sizeof(why)), VMETA_OK);
	e[slot % VLAYOUT_ENTRIES] = entry;
	vmeta_table_encode(e, n, block, seq, h.uuid, blk);
	write_file(f->path[store], vmeta_block_offset(block, seq & 1), blk, sizeof(blk));
}

/*
 * A crash after a write reached store 0 but before store 1 even got its
 * intent: store 1's copy is clean, same generation, old data. Reopened
 * without store 1, then with it: store 1's copy must not be taken as it is.
 */
static void test_crash_then_reopen_without_a_replica(void **state)
{
	struct fx *f = fx_new(2, 2, 4 * CHUNK);
	char saved[2][160];
	uint8_t old[4096];
	bool only0[2] = { true, false };
	char err[512] = "";

	open_ok(f, VOLUME_NO_LOCAL);
	assert_int_equal(write_range(f, 0, 2 * CHUNK), 0);
	memcpy(old, f->ref + 4096, sizeof(old));
	assert_int_equal(blockdev_flush(f->bd), 0);
	close_vol(f);
	open_ok(f, VOLUME_NO_LOCAL);
	assert_int_equal(write_range(f, 4096, 4096), 0);   /* chunk 0, the one in flight */
	assert_int_equal(blockdev_flush(f->bd), 0);
	for (unsigned s = 0; s < 2; s++) {
		snprintf(saved[s], sizeof(saved[s]), "%s/crash%u.img", f->dir, s);
		copy_file(f->path[s], saved[s]);
	}
	close_vol(f);
	for (unsigned s = 0; s < 2; s++)
		copy_file(saved[s], f->path[s]);
	/* Store 1 as if neither its intent nor the data had reached it. */
	set_disk_entry(f, 1, 0, vmeta_gen(disk_entry(f, 1, 0)));
	write_file(f->path[1], vlayout_data_offset(&f->lay, 0, 1) + 4096, old, sizeof(old));

	if (try_open(f, only0, 0, err, sizeof(err)))
		fail_msg("%s", err);
	verify(f);
	close_vol(f);                                      /* clean: intent cleared */
	open_ok(f, VOLUME_NO_LOCAL);
	wait_healthy(f);
	verify(f);
	check_replicas(f);
	close_vol(f);
	fx_free(f);
}

/* Idle chunks lose their write intent on disk; nothing else changes. */
static void test_intent_cleared_when_idle(void **state)
{
	struct fx *f = fx_new(3, 2, 6 * CHUNK);
	uint64_t last;
	int i;

	f->idle_ms = 30;
	open_ok(f, VOLUME_NO_LOCAL);
	for (i = 0; i < 10; i++)
		random_write(f, &last);
	for (i = 0; i < POLL_MAX && any_dirty_on_disk(f); i++)
		pause_ms(5);
	assert_false(any_dirty_on_disk(f));
	verify(f);
	check_replicas(f);
	close_vol(f);
	fx_free(f);
}

/*
 * A sequential writer: once chunk c-1 was just written, a write to chunk c
 * puts intent on the next chunks its copies hold in the same table batch
 * (on disk before the data), so the stream does not wait for a batch per
 * chunk. Only the bit: a random write marks no other chunk, and the data
 * and copies are as always.
 */
static void test_intent_ahead_of_sequential_writes(void **state)
{
	struct fx *f = fx_new(2, 2, 40 * CHUNK);   /* every chunk on both stores */
	uint64_t last;

	f->idle_ms = 60000;         /* the cleaner leaves every bit alone here */
	open_ok(f, VOLUME_NO_LOCAL);
	assert_int_equal(write_range(f, 10 * CHUNK, CHUNK), 0);      /* alone: no ahead */
	for (uint64_t c = 11; c < 40; c++)
		assert_false(disk_entry(f, vlayout_store(&f->lay, c, 0), c) & VMETA_DIRTY);
	assert_int_equal(write_range(f, 11 * CHUNK, CHUNK), 0);      /* sequential */
	for (uint64_t c = 12; c <= 27; c++)
		for (unsigned k = 0; k < f->r; k++)
			assert_true(disk_entry(f, vlayout_store(&f->lay, c, k), c) & VMETA_DIRTY);
	for (unsigned k = 0; k < f->r; k++) {
		assert_false(disk_entry(f, vlayout_store(&f->lay, 28, k), 28) & VMETA_DIRTY);
		assert_false(disk_entry(f, vlayout_store(&f->lay, 0, k), 0) & VMETA_DIRTY);
	}
	for (int i = 0; i < 10; i++)
		random_write(f, &last);
	verify(f);
	check_replicas(f);
	close_vol(f);
	fx_free(f);
}

struct file_image {
	uint8_t *data;
	size_t len;
};

static void snapshot(struct fx *f, struct file_image *img)
{
	for (unsigned s = 0; s < f->n; s++) {
		struct stat st;

		assert_int_equal(stat(f->path[s], &st), 0);
		img[s].len = (size_t)st.st_size;
		img[s].data = malloc(img[s].len);
		assert_non_null(img[s].data);
		read_file(f->path[s], 0, img[s].data, img[s].len);
	}
}

static void restore(struct fx *f, const struct file_image *img)
{
	for (unsigned s = 0; s < f->n; s++) {
		make_file(f->path[s], 0);
		write_file(f->path[s], 0, img[s].data, img[s].len);
	}
}

static void same_as(struct fx *f, const struct file_image *img)
{
	struct file_image now[MAXN];

	snapshot(f, now);
	for (unsigned s = 0; s < f->n; s++) {
		assert_int_equal(now[s].len, img[s].len);
		if (memcmp(now[s].data, img[s].data, img[s].len))
			fail_msg("store %u was written by a failed open", s);
		free(now[s].data);
	}
}

static void refused_open(struct fx *f, const bool *present, const char *needle)
{
	struct file_image before[MAXN];
	char err[512] = "";

	snapshot(f, before);
	assert_int_equal(try_open(f, present, VOLUME_NO_LOCAL, err, sizeof(err)), -1);
	if (!strstr(err, needle))
		fail_msg("\"%s\" does not mention \"%s\"", err, needle);
	same_as(f, before);
	for (unsigned s = 0; s < f->n; s++)
		free(before[s].data);
}

static void flip(const char *path, uint64_t off)
{
	uint8_t b;

	read_file(path, off, &b, 1);
	b ^= 0x20;
	write_file(path, off, &b, 1);
}

static void test_bad_stores_refused(void **state)
{
	struct fx *f = fx_new(2, 2, 4 * CHUNK), *other = fx_new(2, 2, 4 * CHUNK);
	struct file_image good[MAXN];
	uint8_t junk[VLAYOUT_BLOCK];
	bool only0[2] = { true, false };
	uint64_t last;
	char err[512];

	/* Creating needs every store, and each big enough. */
	refused_open(f, only0, "creating a volume needs all 2 stores");
	assert_int_equal(truncate(f->path[1], 4096), 0);
	refused_open(f, NULL, "store 1 (");
	refused_open(f, NULL, "truncated: store is 4096 bytes, the volume needs");
	make_file(f->path[1], vlayout_store_bytes(&f->lay, 1));

	open_ok(other, 0);
	close_vol(other);
	open_ok(f, 0);
	for (int i = 0; i < 10; i++)
		random_write(f, &last);
	close_vol(f);
	snapshot(f, good);

	flip(f->path[1], 100);                               /* both header copies */
	flip(f->path[1], VLAYOUT_BLOCK + 100);
	refused_open(f, NULL, "store 1 (");
	refused_open(f, NULL, "): header: checksum mismatch");
	restore(f, good);

	memset(junk, 0x5a, sizeof(junk));
	write_file(f->path[0], 0, junk, sizeof(junk));
	write_file(f->path[0], VLAYOUT_BLOCK, junk, sizeof(junk));
	refused_open(f, NULL, "store 0 (");
	refused_open(f, NULL, "header: bad magic");
	restore(f, good);

	flip(f->path[0], vmeta_block_offset(1, 0) + 16);     /* both table copies */
	flip(f->path[0], vmeta_block_offset(1, 1) + 16);
	refused_open(f, NULL, "table block 1: checksum mismatch");
	restore(f, good);

	assert_int_equal(truncate(f->path[1], (off_t)vlayout_store_bytes(&f->lay, 1) - 4096), 0);
	refused_open(f, NULL, "truncated: store is");
	restore(f, good);

	copy_file(other->path[1], f->path[1]);
	refused_open(f, NULL, "belongs to another volume");
	restore(f, good);

	copy_file(good[0].data ? f->path[0] : f->path[0], f->path[1]);  /* store 0 as store 1 */
	refused_open(f, NULL, "is store 0 of its volume, not store 1");
	restore(f, good);

	f->r = 1;                                            /* configuration differs */
	refused_open(f, NULL, "geometry differs from the configuration");
	f->r = 2;

	/* One torn header copy is not fatal: the other one is used. */
	flip(f->path[1], 100);
	if (try_open(f, NULL, VOLUME_NO_LOCAL, err, sizeof(err)))
		fail_msg("%s", err);
	verify(f);
	close_vol(f);
	for (unsigned s = 0; s < 2; s++)
		free(good[s].data);
	fx_free(f);
	fx_free(other);
}

/*
 * Store 1 fails and the volume closes without it; store 1 is then used
 * alone (store 0 missing) and written; meeting again is a split brain.
 */
static void test_split_brain_refused(void **state)
{
	struct fx *f = fx_new(2, 2, 4 * CHUNK);
	bool only1[2] = { false, true };
	char err[512] = "";
	uint64_t last;

	open_ok(f, 0);
	random_write(f, &last);
	set_mode(f, 1, FAIL_ALL);
	random_write(f, &last);
	close_vol(f);
	if (try_open(f, only1, 1, err, sizeof(err)))
		fail_msg("%s", err);
	random_write(f, &last);
	close_vol(f);
	refused_open(f, NULL, "split brain");
	fx_free(f);
}

/*
 * Store 0 fails, the others go on; reopened with store 0 but without store
 * 2, chunks kept on stores 2 and 0 would come from store 0's older copy.
 */
static void test_missing_store_may_be_newer(void **state)
{
	struct fx *f = fx_new(3, 2, 6 * CHUNK);
	bool no2[3] = { true, true, false };

	open_ok(f, 0);
	set_mode(f, 0, FAIL_ALL);
	assert_int_equal(write_range(f, 0, f->size), 0);
	close_vol(f);
	refused_open(f, no2, "store 2 (");
	refused_open(f, no2, "which is missing, may hold a newer copy than store 0");
	open_ok(f, 0);                   /* all three: store 0 is resynchronised */
	wait_healthy(f);
	verify(f);
	check_replicas(f);
	close_vol(f);
	fx_free(f);
}

/* Reads fail on the local copy: served by the other one, the store is taken out. */
static void test_read_failover(void **state)
{
	struct fx *f = fx_new(2, 2, 4 * CHUNK);
	uint64_t last;

	open_ok(f, 0);
	for (int i = 0; i < 10; i++)
		random_write(f, &last);
	set_mode(f, 0, FAIL_READS);
	verify(f);
	assert_int_equal(stats(f).replica[0].state, VOLUME_REPLICA_FAILED);
	assert_true(logged(f, "read at"));
	random_write(f, &last);
	set_mode(f, 0, PASS);
	wait_healthy(f);
	verify(f);
	check_replicas(f);
	close_vol(f);
	fx_free(f);
}

/*
 * Reads work but writes fail (what a page cache in front of a failing
 * device looks like): the probe must not take the store back.
 */
static void test_probe_needs_writes(void **state)
{
	struct fx *f = fx_new(2, 2, 4 * CHUNK);
	uint64_t last;
	int i;

	open_ok(f, 0);
	set_mode(f, 1, FAIL_WRITES);
	random_write(f, &last);
	assert_int_equal(stats(f).replica[1].state, VOLUME_REPLICA_FAILED);
	for (i = 0; i < POLL_MAX && !logged(f, "out of service: rewriting its header"); i++)
		pause_ms(5);
	assert_true(logged(f, "is still out of service: rewriting its header: Input/output "
			   "error"));
	assert_int_equal(stats(f).replica[1].state, VOLUME_REPLICA_FAILED);
	assert_false(logged(f, "returned"));
	set_mode(f, 1, PASS);
	wait_healthy(f);
	verify(f);
	check_replicas(f);
	close_vol(f);
	fx_free(f);
}

/* A store that cannot be read at opening is left out, then probed back. */
static void test_unreadable_store_at_open(void **state)
{
	struct fx *f = fx_new(2, 2, 4 * CHUNK);
	uint64_t last;

	open_ok(f, 0);
	for (int i = 0; i < 10; i++)
		random_write(f, &last);
	close_vol(f);
	f->start_mode[1] = FAIL_ALL;
	open_ok(f, 1);
	f->start_mode[1] = PASS;
	assert_true(logged(f, "is out of service: reading the header: Input/output error"));
	assert_true(logged(f, "unreadable"));
	assert_int_equal(stats(f).replica[1].state, VOLUME_REPLICA_FAILED);
	assert_true(stats(f).replica[1].attached);
	verify(f);
	for (int i = 0; i < 10; i++)
		random_write(f, &last);
	set_mode(f, 1, PASS);
	wait_healthy(f);
	verify(f);
	check_replicas(f);
	close_vol(f);
	fx_free(f);
}

/* ---- a store unreachable at opening, reopened by the probe ---- */

enum reach { UNREACHABLE, PROBE_AS_IS, FOREIGN, REACHABLE };

static struct {
	int mode;                 /* enum reach, atomic */
	unsigned calls;           /* atomic */
	bool saw_cur;             /* the callback was shown a blockdev */
	struct fx *other;         /* a store of another volume, for FOREIGN */
} reopener;

static int test_reopen(void *ctx, unsigned idx, struct blockdev *cur, struct blockdev **out,
		       char *why, size_t whylen)
{
	struct fx *f = ctx;

	__atomic_fetch_add(&reopener.calls, 1, __ATOMIC_RELAXED);
	*out = NULL;
	if (idx != 1)
		return 0;
	if (cur)
		reopener.saw_cur = true;
	switch (__atomic_load_n(&reopener.mode, __ATOMIC_ACQUIRE)) {
	case UNREACHABLE:
		snprintf(why, whylen, "node 1 does not answer");
		return -1;
	case PROBE_AS_IS:
		return 0;
	case FOREIGN:
		*out = &wrap(open_store(reopener.other->path[1]))->bd;
		return 1;
	default:
		f->fault[1] = wrap(open_store(f->path[1]));
		*out = &f->fault[1]->bd;
		return 1;
	}
}

static unsigned reopen_calls(void)
{
	return __atomic_load_n(&reopener.calls, __ATOMIC_RELAXED);
}

static void wait_calls(unsigned more)
{
	unsigned want = reopen_calls() + more;

	for (int i = 0; i < POLL_MAX && reopen_calls() < want; i++)
		pause_ms(5);
	assert_true(reopen_calls() >= want);
}

static unsigned count_logged(struct fx *f, const char *needle)
{
	unsigned n = 0;

	pthread_mutex_lock(&f->log_lock);
	for (const char *p = f->log; (p = strstr(p, needle)); p++)
		n++;
	pthread_mutex_unlock(&f->log_lock);
	return n;
}

/*
 * Store 1 cannot be reached when the volume opens (a remote store whose
 * node did not answer): the volume runs degraded with no blockdev for it,
 * and its probe asks reopen() every probe_ms. While it cannot be reached,
 * one log line (not one per probe); a store that reopen() gives but the
 * volume refuses (another volume's) is closed and the probe goes on; once
 * it is reachable, it returns as a returning store: exactly the chunks
 * written without it are copied, and every replica is identical.
 */
static void test_missing_store_reopened(void **state)
{
	struct fx *f = fx_new(2, 2, 8 * CHUNK), *other = fx_new(2, 2, 8 * CHUNK);
	const bool present[2] = { true, false };
	bool touched[8] = { false };
	uint64_t first, last, expect = 0;
	char err[512] = "";

	open_ok(other, VOLUME_NO_LOCAL);
	close_vol(other);
	open_ok(f, 0);
	for (int i = 0; i < 20; i++)
		random_write(f, &last);
	close_vol(f);

	memset(&reopener, 0, sizeof(reopener));
	reopener.other = other;
	f->reopen = test_reopen;
	if (try_open(f, present, 0, err, sizeof(err)))
		fail_msg("volume_open: %s", err);
	assert_true(stats(f).degraded);
	assert_int_equal(stats(f).replica[1].state, VOLUME_REPLICA_FAILED);
	assert_false(stats(f).replica[1].attached);
	for (int i = 0; i < 30; i++) {
		first = random_write_below(f, 5 * CHUNK, &last);
		for (uint64_t c = first; c <= last; c++)
			touched[c] = true;
	}
	for (uint64_t c = 0; c < 8; c++)
		expect += touched[c];
	wait_calls(3);
	assert_int_equal(count_logged(f, "is still out of service"), 1);
	assert_true(logged(f, "store 1 (") && logged(f, "missing"));
	assert_true(logged(f, "is still out of service: node 1 does not answer"));
	assert_false(stats(f).replica[1].attached);

	/* "Probe it as it is" with nothing to probe: nothing happens. */
	__atomic_store_n(&reopener.mode, PROBE_AS_IS, __ATOMIC_RELEASE);
	wait_calls(3);
	assert_int_equal(stats(f).replica[1].state, VOLUME_REPLICA_FAILED);

	/* The wrong store: refused, closed (no leak), nothing written to it. */
	__atomic_store_n(&reopener.mode, FOREIGN, __ATOMIC_RELEASE);
	wait_calls(3);
	assert_true(logged(f, "belongs to another volume"));
	assert_int_equal(stats(f).replica[1].state, VOLUME_REPLICA_FAILED);
	assert_false(reopener.saw_cur);

	__atomic_store_n(&reopener.mode, REACHABLE, __ATOMIC_RELEASE);
	wait_healthy(f);
	assert_true(stats(f).replica[1].attached);
	assert_true(logged(f, "returned"));
	assert_int_equal(stats(f).replica[1].chunks_resynced, expect);
	verify(f);
	check_replicas(f);
	/* A live store is not probed. */
	{
		unsigned calls = reopen_calls();

		pause_ms(100);
		assert_int_equal(reopen_calls(), calls);
	}
	close_vol(f);
	f->reopen = NULL;
	open_ok(f, 1);
	assert_false(stats(f).degraded);
	verify(f);
	close_vol(f);
	fx_free(f);
	fx_free(other);
}

/* One store, one replica: no redundancy, the same paths. */
static void test_single_store(void **state)
{
	struct fx *f = fx_new(1, 1, 5 * CHUNK + 4096);
	uint64_t last;

	open_ok(f, 0);
	for (int i = 0; i < 20; i++)
		random_write(f, &last);
	verify(f);
	close_vol(f);
	open_ok(f, VOLUME_NO_LOCAL);
	verify(f);
	check_replicas(f);
	set_mode(f, 0, FAIL_ALL);
	assert_int_equal(write_range(f, 0, 4096), -EIO);
	close_vol(f);
	fx_free(f);
}

/* No copy left: errors, not wrong data; healing brings everything back. */
static void test_no_replica_left(void **state)
{
	struct fx *f = fx_new(2, 2, 4 * CHUNK);
	uint8_t buf[4096];
	struct iovec iov = { buf, sizeof(buf) };
	uint64_t last;

	open_ok(f, 0);
	for (int i = 0; i < 10; i++)
		random_write(f, &last);
	assert_int_equal(blockdev_flush(f->bd), 0);
	set_mode(f, 0, FAIL_ALL);
	set_mode(f, 1, FAIL_ALL);
	memset(buf, 0x77, sizeof(buf));
	assert_int_equal(blockdev_write(f->bd, &iov, 1, 0), -EIO);
	assert_int_equal(blockdev_read(f->bd, &iov, 1, CHUNK), -EIO);
	assert_int_equal(blockdev_flush(f->bd), -EIO);
	assert_int_equal(stats(f).chunks_unavailable, f->lay.chunks);
	set_mode(f, 0, PASS);
	set_mode(f, 1, PASS);
	wait_healthy(f);
	verify(f);
	check_replicas(f);
	close_vol(f);
	fx_free(f);
}

static void test_discard_and_zeroes(void **state)
{
	struct fx *f = fx_new(3, 2, 8 * CHUNK);

	open_ok(f, VOLUME_NO_LOCAL);
	assert_int_equal(write_range(f, 0, f->size), 0);
	assert_int_equal(blockdev_discard(f->bd, CHUNK - 4096, CHUNK + 8192), 0);
	memset(f->ref + CHUNK - 4096, 0, CHUNK + 8192);
	assert_int_equal(blockdev_write_zeroes(f->bd, 5 * CHUNK + 512, 2 * CHUNK, false), 0);
	memset(f->ref + 5 * CHUNK + 512, 0, 2 * CHUNK);
	assert_int_equal(blockdev_write_zeroes(f->bd, 0, 1024, true), 0);
	memset(f->ref, 0, 1024);
	verify(f);
	check_replicas(f);
	/* Outside the volume. */
	assert_int_equal(blockdev_write_zeroes(f->bd, f->size - 512, 1024, false), -EINVAL);
	close_vol(f);
	fx_free(f);
}

struct writer {
	struct fx *f;
	unsigned id;
	uint64_t seed;
	unsigned done;       /* atomic */
	bool *stop;          /* atomic: set once the resync is over */
};

#define WRITERS 4
#define WBLOCK  4096u

/*
 * Writes 4 KiB blocks whose index is id mod 4: chunks overlap, bytes do
 * not. Runs from before the failed store heals until after its resync
 * finished, so the whole resync happens under these writes.
 */
static void *writer_main(void *arg)
{
	struct writer *w = arg;
	struct fx *f = w->f;
	uint64_t blocks = f->size / WBLOCK;
	uint8_t buf[WBLOCK];

	for (unsigned i = 0; i < 100 || !__atomic_load_n(w->stop, __ATOMIC_ACQUIRE); i++) {
		uint64_t b;
		struct iovec iov = { buf, sizeof(buf) };

		w->seed = w->seed * 6364136223846793005ull + 1442695040888963407ull;
		b = (w->seed >> 20) % (blocks / WRITERS) * WRITERS + w->id;
		memset(buf, (int)(w->seed >> 56), sizeof(buf));
		buf[0] = (uint8_t)w->id;
		if (blockdev_write(f->bd, &iov, 1, b * WBLOCK))
			return (void *)1;
		memcpy(f->ref + b * WBLOCK, buf, sizeof(buf));
		__atomic_fetch_add(&w->done, 1, __ATOMIC_RELEASE);
	}
	return NULL;
}

static void test_writers_during_resync(void **state)
{
	struct fx *f = fx_new(3, 2, 32 * CHUNK);
	struct writer w[WRITERS];
	pthread_t t[WRITERS];
	unsigned total = 0;
	bool stop = false;

	open_ok(f, 0);
	assert_int_equal(write_range(f, 0, f->size), 0);
	set_mode(f, 2, FAIL_ALL);
	assert_int_equal(write_range(f, 0, f->size), 0);   /* every chunk of store 2 stale */
	__atomic_store_n(&f->fault[2]->delay_us, 300, __ATOMIC_RELAXED);  /* a slow resync */
	for (unsigned i = 0; i < WRITERS; i++) {
		w[i] = (struct writer){ .f = f, .id = i, .seed = 1000 + i, .stop = &stop };
		assert_int_equal(pthread_create(&t[i], NULL, writer_main, &w[i]), 0);
	}
	for (int i = 0; i < POLL_MAX && total < 40; i++) {
		total = 0;
		for (unsigned k = 0; k < WRITERS; k++)
			total += __atomic_load_n(&w[k].done, __ATOMIC_ACQUIRE);
		pause_ms(1);
	}
	set_mode(f, 2, PASS);                               /* resync starts under the writers */
	wait_healthy(f);
	__atomic_store_n(&stop, true, __ATOMIC_RELEASE);
	for (unsigned i = 0; i < WRITERS; i++) {
		void *rc;

		assert_int_equal(pthread_join(t[i], &rc), 0);
		assert_null(rc);
	}
	assert_true(stats(f).replica[2].chunks_resynced > 0);
	verify(f);
	check_replicas(f);
	close_vol(f);
	fx_free(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_format_rw_reopen),
		cmocka_unit_test(test_read_preference),
		cmocka_unit_test(test_n3_all_replica_counts),
		cmocka_unit_test(test_degraded_probe_resync),
		cmocka_unit_test(test_reattach_new_store),
		cmocka_unit_test(test_unclean_shutdown),
		cmocka_unit_test(test_crash_then_reopen_without_a_replica),
		cmocka_unit_test(test_intent_cleared_when_idle),
		cmocka_unit_test(test_intent_ahead_of_sequential_writes),
		cmocka_unit_test(test_bad_stores_refused),
		cmocka_unit_test(test_split_brain_refused),
		cmocka_unit_test(test_missing_store_may_be_newer),
		cmocka_unit_test(test_read_failover),
		cmocka_unit_test(test_probe_needs_writes),
		cmocka_unit_test(test_unreadable_store_at_open),
		cmocka_unit_test(test_missing_store_reopened),
		cmocka_unit_test(test_single_store),
		cmocka_unit_test(test_no_replica_left),
		cmocka_unit_test(test_discard_and_zeroes),
		cmocka_unit_test(test_writers_during_resync),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
