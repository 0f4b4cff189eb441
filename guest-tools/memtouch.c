/* memtouch: write a pattern over N MiB of memory, then verify it.
 *
 * Run inside a grappe guest whose RAM is spread over several nodes, it
 * touches more memory than one node may hold (each node process has a
 * memory limit, and a bounded cache of other nodes' pages), so pages must
 * be evicted, written back to their home node and fetched again when the
 * pattern is checked. Every 64-bit word carries its own offset mixed with
 * a seed and the pass number, so a page that came back stale, from another
 * page, or as zeros is caught with its address.
 *
 * Output lines start with "GRAPPE-GUEST: " (harnesses grep the console):
 *   GRAPPE-GUEST: memtouch wrote mib=256 secs=...
 *   GRAPPE-GUEST: memtouch numa N0=... N1=...     (pages per guest NUMA node)
 *   GRAPPE-GUEST: memtouch PASS mib=256 passes=2 secs=...
 *   GRAPPE-GUEST: memtouch FAIL <what, where>
 *
 * Built static (gcc -static) like the other guest tools.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define P "GRAPPE-GUEST: "

static long opt_mib = 64;
static long opt_passes = 2;
static uint64_t opt_seed = 0x6d656d746f756368ULL; /* "memtouch" */
static long opt_timeout = 600;

static void fail(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
static void fail(const char *fmt, ...)
{
    va_list ap;
    char msg[400];
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    printf(P "memtouch FAIL %s\n", msg);
    fflush(stdout);
    exit(1);
}

/* A hung run (a page that never comes back) must end with a message. */
static void on_alarm(int sig)
{
    (void)sig;
    static const char m[] = P "memtouch FAIL watchdog: did not finish in time\n";
    ssize_t r = write(1, m, sizeof m - 1);
    (void)r;
    _exit(2);
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* The value of word i in pass p: a bijective mix, so neighbours differ. */
static uint64_t pattern(uint64_t pass, uint64_t i)
{
    uint64_t x = (opt_seed ^ (pass * 0x9e3779b97f4a7c15ULL)) + i;
    x ^= x >> 31;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 29;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 32;
    return x;
}

/* Pages of our buffer per guest NUMA node, from /proc/self/numa_maps. */
static void print_numa(const void *buf)
{
    char line[4096], want[32];
    FILE *f = fopen("/proc/self/numa_maps", "r");

    if (!f) {
        printf(P "memtouch numa unknown (%s)\n", strerror(errno));
        return;
    }
    snprintf(want, sizeof want, "%lx ", (unsigned long)(uintptr_t)buf);
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, want, strlen(want)))
            continue;
        char out[1024] = "";
        size_t k = 0;
        for (char *t = strtok(line, " \n"); t; t = strtok(NULL, " \n"))
            if (t[0] == 'N' && t[1] >= '0' && t[1] <= '9' && k + strlen(t) + 2 < sizeof out)
                k += (size_t)snprintf(out + k, sizeof out - k, " %s", t);
        printf(P "memtouch numa%s\n", k ? out : " none");
        fclose(f);
        return;
    }
    printf(P "memtouch numa not found\n");
    fclose(f);
}

static long num_arg(const char *a, const char *name)
{
    size_t n = strlen(name);
    char *end;
    long v;

    if (strncmp(a, name, n) || a[n] != '=')
        return -1;
    v = strtol(a + n + 1, &end, 0);
    if (*end || v < 0) {
        fprintf(stderr, "memtouch: bad value in %s\n", a);
        exit(2);
    }
    return v;
}

int main(int argc, char **argv)
{
    long v;

    setvbuf(stdout, NULL, _IOLBF, 0);
    for (int i = 1; i < argc; i++) {
        if ((v = num_arg(argv[i], "--mib")) >= 0)
            opt_mib = v ? v : 1;
        else if ((v = num_arg(argv[i], "--passes")) >= 0)
            opt_passes = v ? v : 1;
        else if ((v = num_arg(argv[i], "--seed")) >= 0)
            opt_seed = (uint64_t)v;
        else if ((v = num_arg(argv[i], "--timeout")) >= 0)
            opt_timeout = v;
        else {
            fprintf(stderr, "usage: memtouch [--mib=N] [--passes=N] [--seed=N] [--timeout=S]\n");
            return 2;
        }
    }
    signal(SIGALRM, on_alarm);
    alarm((unsigned)opt_timeout);

    size_t bytes = (size_t)opt_mib << 20, words = bytes / sizeof(uint64_t);
    uint64_t *buf = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (buf == MAP_FAILED)
        fail("mmap %ld MiB: %s", opt_mib, strerror(errno));

    double t0 = now();
    /*
     * Each pass overwrites everything written by the previous one and then
     * checks it all: the second pass rewrites pages that were evicted and
     * written back, and reads them back after they moved again.
     */
    for (long pass = 0; pass < opt_passes; pass++) {
        double t1 = now();
        for (size_t i = 0; i < words; i++)
            buf[i] = pattern((uint64_t)pass, i);
        printf(P "memtouch wrote pass=%ld mib=%ld secs=%.3f\n", pass, opt_mib, now() - t1);
        if (pass == 0)
            print_numa(buf);
        t1 = now();
        for (size_t i = 0; i < words; i++) {
            uint64_t want = pattern((uint64_t)pass, i);
            if (buf[i] != want)
                fail("pass %ld: word at offset %#zx (page %zu) is %016llx, expected %016llx",
                     pass, i * sizeof(uint64_t), i * sizeof(uint64_t) / 4096,
                     (unsigned long long)buf[i], (unsigned long long)want);
        }
        printf(P "memtouch checked pass=%ld secs=%.3f\n", pass, now() - t1);
    }
    printf(P "memtouch PASS mib=%ld passes=%ld secs=%.3f\n", opt_mib, opt_passes, now() - t0);
    munmap(buf, bytes);
    return 0;
}
