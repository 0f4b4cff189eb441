// SPDX-License-Identifier: MIT
/*
 * Tests for the ACPI tables: structure and checksums read back at the
 * specification's offsets, then an independent check by iasl (acpica-tools)
 * which disassembles every table and compiles it again; the recompiled
 * tables must equal ours byte for byte, apart from the creator fields that
 * iasl writes itself.
 */
#include <dirent.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "vmm/acpi.h"

#define BUF_LEN   65536
#define BASE      0xe0000ULL
#define HDR_LEN   36

struct built {
	struct acpi_machine m;
	uint8_t buf[BUF_LEN];
	long len;
	uint64_t base;
	const uint8_t *xsdt, *fadt, *facs, *dsdt, *madt, *srat, *slit;
};

static uint16_t rd16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t rd32(const uint8_t *p)
{
	return rd16(p) | (uint32_t)rd16(p + 2) << 16;
}

static uint64_t rd64(const uint8_t *p)
{
	return rd32(p) | (uint64_t)rd32(p + 4) << 32;
}

static uint8_t sum(const uint8_t *p, size_t n)
{
	uint8_t s = 0;

	while (n--)
		s += *p++;
	return s;
}

/*
 * cells CPUs are spread round-robin over cells so that a CPU's cell is not
 * a function of its index; APIC IDs are sparse (2i) so that the tables must
 * take them from apic_id[]. Each cell has one or two memory ranges.
 */
static void make_machine(struct acpi_machine *m, unsigned cpus, unsigned cells,
			 unsigned ranges_per_cell)
{
	unsigned i, c;

	memset(m, 0, sizeof(*m));
	m->nr_cpus = cpus;
	m->nr_cells = cells;
	for (i = 0; i < cpus; i++) {
		m->apic_id[i] = (uint8_t)(2 * i);
		m->cpu_cell[i] = i % cells;
	}
	for (c = 0; c < cells; c++) {
		struct acpi_mem_range *r = &m->mem[m->nr_mem++];

		r->base = (uint64_t)c << 30;
		r->size = 1ULL << 30;
		r->cell = c;
		if (ranges_per_cell < 2)
			continue;
		r = &m->mem[m->nr_mem++];
		r->base = (64ULL << 30) + ((uint64_t)c << 31);
		r->size = 3ULL << 29;
		r->cell = c;
	}
	for (i = 0; i < cells; i++)
		for (c = 0; c < cells; c++)
			m->distance[i][c] = (uint8_t)(i == c ? 10 :
					20 + (i > c ? i - c : c - i));
	m->ioapic_id = 1;       /* odd: apart from the local APIC IDs */
}

/* The table at gpa, after checking it lies in the buffer and sums to 0. */
static const uint8_t *table_at(const struct built *b, uint64_t gpa,
			       const char *sig)
{
	uint64_t end = b->base + (uint64_t)b->len;
	const uint8_t *t;
	uint32_t len;

	assert_true(gpa >= b->base && gpa + HDR_LEN <= end);
	t = b->buf + (gpa - b->base);
	len = rd32(t + 4);
	assert_true(len >= HDR_LEN && gpa + len <= end);
	assert_memory_equal(t, sig, 4);
	assert_int_equal(sum(t, len), 0);
	assert_memory_equal(t + 10, "GRAPPE", 6);
	assert_memory_equal(t + 16, "GRAPPEVM", 8);
	assert_memory_equal(t + 28, "GRPE", 4);
	return t;
}

static void check_rsdp(struct built *b)
{
	const uint8_t *r = b->buf;

	assert_memory_equal(r, "RSD PTR ", 8);
	assert_int_equal(sum(r, 20), 0);
	assert_int_equal(r[15], 2);
	assert_int_equal(rd32(r + 20), 36);
	assert_int_equal(sum(r, 36), 0);
	assert_memory_equal(r + 9, "GRAPPE", 6);
	assert_int_equal(b->base % 16, 0);
	b->xsdt = table_at(b, rd64(r + 24), "XSDT");
}

static void check_xsdt(struct built *b)
{
	uint32_t len = rd32(b->xsdt + 4), i, n;

	assert_int_equal((len - HDR_LEN) % 8, 0);
	n = (len - HDR_LEN) / 8;
	assert_int_equal(n, b->m.nr_cells > 1 ? 4 : 3);
	for (i = 0; i < n; i++) {
		uint64_t gpa = rd64(b->xsdt + HDR_LEN + 8 * i);
		const uint8_t *t;
		const uint8_t **slot = NULL;

		assert_true(gpa >= b->base && gpa + 4 <= b->base + b->len);
		t = b->buf + (gpa - b->base);
		if (!memcmp(t, "FACP", 4))
			slot = &b->fadt;
		else if (!memcmp(t, "APIC", 4))
			slot = &b->madt;
		else if (!memcmp(t, "SRAT", 4))
			slot = &b->srat;
		else if (!memcmp(t, "SLIT", 4))
			slot = &b->slit;
		else
			fail_msg("unexpected table %.4s in the XSDT", t);
		assert_non_null(slot);
		assert_null(*slot);
		*slot = table_at(b, gpa, (const char *)t);
	}
	assert_non_null(b->fadt);
	assert_non_null(b->madt);
	assert_non_null(b->srat);
	if (b->m.nr_cells > 1)
		assert_non_null(b->slit);
}

static void check_gas_io(const uint8_t *g, unsigned bits, unsigned acc,
			 uint64_t port)
{
	assert_int_equal(g[0], 1);
	assert_int_equal(g[1], bits);
	assert_int_equal(g[2], 0);
	assert_int_equal(g[3], acc);
	assert_int_equal(rd64(g + 4), port);
}

static void check_fadt_pointers(struct built *b)
{
	const uint8_t *f = b->fadt;
	uint64_t facs = rd32(f + 36), dsdt = rd64(f + 140);

	/* FACS: exactly one pointer set, the 32-bit one when it reaches. */
	if (b->base + (uint64_t)b->len <= 1ULL << 32) {
		assert_int_equal(rd64(f + 132), 0);
	} else {
		assert_int_equal(facs, 0);
		facs = rd64(f + 132);
	}
	/* DSDT: both, but the 32-bit one is 0 where it cannot reach. */
	assert_int_equal(rd32(f + 40), dsdt >> 32 ? 0 : dsdt);
	assert_int_equal(facs % 64, 0);
	assert_true(facs >= b->base && facs + 64 <= b->base + b->len);
	b->facs = b->buf + (facs - b->base);
	assert_memory_equal(b->facs, "FACS", 4);
	assert_int_equal(rd32(b->facs + 4), 64);
	assert_int_equal(b->facs[32], 2);
	b->dsdt = table_at(b, dsdt, "DSDT");
	assert_int_equal(b->dsdt[8], 2);
}

static void check_fadt(struct built *b)
{
	const uint8_t *f = b->fadt;

	assert_int_equal(rd32(f + 4), 276);
	assert_int_equal(f[8], 6);
	check_fadt_pointers(b);
	assert_int_equal(rd16(f + 46), ACPI_SCI_IRQ);
	assert_int_equal(rd32(f + 48), 0);              /* no SMI_CMD */
	assert_int_equal(rd32(f + 56), ACPI_PM1_EVT);
	assert_int_equal(rd32(f + 60), 0);
	assert_int_equal(rd32(f + 64), ACPI_PM1_CNT);
	assert_int_equal(rd32(f + 76), ACPI_PM_TMR);
	assert_int_equal(rd32(f + 80), 0);              /* no GPE0 */
	assert_int_equal(f[88], 4);
	assert_int_equal(f[89], 2);
	assert_int_equal(f[91], 4);
	assert_int_equal(f[108], ACPI_RTC_CENTURY);
	/* LEGACY_DEVICES | 8042 | VGA_NOT_PRESENT */
	assert_int_equal(rd16(f + 109), 0x7);
	/* WBINVD | PROC_C1 | SLP_BUTTON | TMR_VAL_EXT | RESET_REG_SUP */
	assert_int_equal(rd32(f + 112), 0x525);
	check_gas_io(f + 116, 8, 1, ACPI_RESET_PORT);
	assert_int_equal(f[128], ACPI_RESET_VALUE);
	check_gas_io(f + 148, 32, 2, ACPI_PM1_EVT);
	check_gas_io(f + 172, 16, 2, ACPI_PM1_CNT);
	check_gas_io(f + 208, 32, 3, ACPI_PM_TMR);
}

static void check_madt(const struct built *b)
{
	const uint8_t *t = b->madt, *e = t + 44, *end = t + rd32(t + 4);
	unsigned count[256] = { 0 }, iso = 0;

	assert_int_equal(rd32(t + 36), LAPIC_BASE_GPA);
	assert_int_equal(rd32(t + 40), 1);
	for (; e < end; e += e[1]) {
		assert_true(e + 2 <= end && e[1] >= 2 && e + e[1] <= end);
		switch (e[0]) {
		case 0:
			assert_int_equal(e[1], 8);
			assert_int_equal(e[2], count[0]);
			assert_int_equal(e[3], b->m.apic_id[count[0]]);
			assert_int_equal(rd32(e + 4), 1);
			break;
		case 1:
			assert_int_equal(e[1], 12);
			assert_int_equal(e[2], b->m.ioapic_id);
			assert_int_equal(rd32(e + 4), IOAPIC_BASE_GPA);
			assert_int_equal(rd32(e + 8), 0);
			break;
		case 2:
			assert_int_equal(e[1], 10);
			assert_int_equal(e[2], 0);
			if (e[3] == 0) {
				assert_int_equal(rd32(e + 4), 2);
				assert_int_equal(rd16(e + 8), 0x5);
			} else {
				assert_int_equal(e[3], ACPI_SCI_IRQ);
				assert_int_equal(rd32(e + 4), ACPI_SCI_IRQ);
				assert_int_equal(rd16(e + 8), 0xd);
			}
			iso |= 1u << e[3];
			break;
		case 4:
			assert_int_equal(e[1], 6);
			assert_int_equal(e[2], 0xff);
			assert_int_equal(rd16(e + 3), 0x5);
			assert_int_equal(e[5], 1);
			break;
		default:
			fail_msg("unexpected MADT entry type %u", e[0]);
		}
		count[e[0]]++;
	}
	assert_ptr_equal(e, end);
	assert_int_equal(count[0], b->m.nr_cpus);
	assert_int_equal(count[1], 1);
	assert_int_equal(count[2], 2);
	assert_int_equal(iso, 1u << 0 | 1u << ACPI_SCI_IRQ);
	assert_int_equal(count[4], 1);
}

static void check_srat(const struct built *b)
{
	const uint8_t *t = b->srat, *e = t + 48, *end = t + rd32(t + 4);
	const struct acpi_machine *m = &b->m;
	unsigned cpus = 0, mems = 0;

	assert_int_equal(t[8], 3);
	assert_int_equal(rd32(t + 36), 1);
	for (; e < end; e += e[1]) {
		assert_true(e + 2 <= end && e[1] >= 2 && e + e[1] <= end);
		if (e[0] == 0) {
			assert_int_equal(e[1], 16);
			assert_true(cpus < m->nr_cpus);
			assert_int_equal(e[2] | e[9] << 8 | e[10] << 16 |
					 e[11] << 24, m->cpu_cell[cpus]);
			assert_int_equal(e[3], m->apic_id[cpus]);
			assert_int_equal(rd32(e + 4), 1);
			cpus++;
		} else {
			assert_int_equal(e[0], 1);
			assert_int_equal(e[1], 40);
			assert_true(mems < m->nr_mem);
			assert_int_equal(rd32(e + 2), m->mem[mems].cell);
			assert_int_equal(rd64(e + 8), m->mem[mems].base);
			assert_int_equal(rd64(e + 16), m->mem[mems].size);
			assert_int_equal(rd32(e + 28), 1);
			mems++;
		}
	}
	assert_ptr_equal(e, end);
	assert_int_equal(cpus, m->nr_cpus);
	assert_int_equal(mems, m->nr_mem);
}

static void check_slit(const struct built *b)
{
	unsigned n = b->m.nr_cells, i, j;

	if (n == 1) {
		assert_null(b->slit);
		return;
	}
	assert_int_equal(rd32(b->slit + 4), 44 + n * n);
	assert_int_equal(rd64(b->slit + 36), n);
	for (i = 0; i < n; i++)
		for (j = 0; j < n; j++)
			assert_int_equal(b->slit[44 + i * n + j],
					 b->m.distance[i][j]);
}

static const uint8_t s5[] = {
	0x08, '_', 'S', '5', '_', 0x12, 0x06, 0x04,
	ACPI_S5_SLP_TYP, 0x00, 0x00, 0x00,
};

static void assert_has(const uint8_t *p, size_t len, const void *what,
		       size_t n, const char *name)
{
	if (!memmem(p, len, what, n))
		fail_msg("the DSDT has no %s", name);
}

/*
 * The devices and their resources, found by their encodings: _HID then the
 * _CRS buffer (IO (Decode16, min, max, 1, len) = 47 01 min max 01 len,
 * IRQNoFlags = 22 mask16, EndTag = 79 00).
 */
static const struct {
	const char *name;
	const char *bytes;
	size_t len;
} dsdt_devices[] = {
#define DEV(name, bytes) { name, bytes, sizeof(bytes) - 1 }
	DEV("COM1 _HID PNP0501", "COM1\x08_HID\x0c\x41\xd0\x05\x01"),
	DEV("COM1 _STA", "_STA\x0a\x0f"),
	DEV("COM1 _CRS", "\x47\x01\xf8\x03\xf8\x03\x01\x08\x22\x10\x00"
		"\x79\x00"),
	DEV("RTC _HID PNP0B00", "RTC_\x08_HID\x0c\x41\xd0\x0b\x00"),
	DEV("RTC _CRS", "\x47\x01\x70\x00\x70\x00\x01\x02\x22\x00\x01"
		"\x79\x00"),
	DEV("PIT _HID PNP0100", "TMR_\x08_HID\x0c\x41\xd0\x01\x00"),
	DEV("PIT _CRS", "\x47\x01\x40\x00\x40\x00\x01\x04\x22\x01\x00"
		"\x79\x00"),
	DEV("PIC _HID PNP0000", "PIC_\x08_HID\x0b\x41\xd0"),
	DEV("PIC _CRS", "\x47\x01\x20\x00\x20\x00\x01\x02"
		"\x47\x01\xa0\x00\xa0\x00\x01\x02\x22\x04\x00\x79\x00"),
#undef DEV
};

/* Name (_UID, i) for a processor device, as AML. */
static size_t cpu_device_bytes(uint8_t *out, unsigned i)
{
	size_t n = (size_t)sprintf((char *)out, "C%03X\x08_HID\x0d" "ACPI0007",
				   i) + 1;

	memcpy(out + n, "\x08_UID", 5);
	n += 5;
	if (i > 1)
		out[n++] = 0x0a;        /* BytePrefix; 0 and 1 are opcodes */
	out[n++] = (uint8_t)i;
	return n;
}

static void check_dsdt(const struct built *b)
{
	const uint8_t *p = b->dsdt;
	uint32_t len = rd32(p + 4);
	uint8_t cpu[40];
	unsigned i;

	assert_has(p, len, s5, sizeof(s5), "\\_S5 package");
	assert_has(p, len, "_SB_", 4, "\\_SB scope");
	for (i = 0; i < sizeof(dsdt_devices) / sizeof(dsdt_devices[0]); i++)
		assert_has(p, len, dsdt_devices[i].bytes, dsdt_devices[i].len,
			   dsdt_devices[i].name);
	/* One processor device per CPU, _UID = MADT processor UID. */
	for (i = 0; i < b->m.nr_cpus; i++)
		assert_has(p, len, cpu, cpu_device_bytes(cpu, i),
			   "processor device");
	assert_null(memmem(p, len, cpu, cpu_device_bytes(cpu, i)));
}

struct extent {
	uint64_t start, len;
};

static int extent_cmp(const void *a, const void *b)
{
	const struct extent *x = a, *y = b;

	return x->start < y->start ? -1 : x->start > y->start;
}

static void check_disjoint(const struct built *b)
{
	const uint8_t *t[] = { b->xsdt, b->fadt, b->facs, b->dsdt, b->madt,
			       b->srat, b->slit };
	struct extent x[8] = { { b->base, 36 } };
	unsigned n = 1, i;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		if (!t[i])
			continue;
		x[n].start = b->base + (uint64_t)(t[i] - b->buf);
		x[n++].len = rd32(t[i] + 4);
	}
	qsort(x, n, sizeof(x[0]), extent_cmp);
	for (i = 1; i < n; i++)
		assert_true(x[i - 1].start + x[i - 1].len <= x[i].start);
}

static void build(struct built *b, uint64_t base)
{
	uint64_t rsdp = 0;

	b->base = base;
	b->len = acpi_build(&b->m, b->buf, sizeof(b->buf), base, &rsdp);
	assert_true(b->len > 0);
	assert_int_equal(rsdp, base);
	check_rsdp(b);
	check_xsdt(b);
	check_fadt(b);
	check_madt(b);
	check_srat(b);
	check_slit(b);
	check_dsdt(b);
	check_disjoint(b);
}

static struct built *new_built(unsigned cpus, unsigned cells, unsigned ranges)
{
	struct built *b = calloc(1, sizeof(*b));

	assert_non_null(b);
	make_machine(&b->m, cpus, cells, ranges);
	return b;
}

static void test_one_cpu_one_cell(void **state)
{
	struct built *b = new_built(1, 1, 1);

	build(b, BASE);
	free(b);
}

static void test_four_cpus_two_cells(void **state)
{
	struct built *b = new_built(4, 2, 1);

	build(b, BASE);
	free(b);
}

static void test_64_cpus_16_cells(void **state)
{
	struct built *b = new_built(64, 16, 2);

	build(b, BASE);
	assert_int_equal(b->m.nr_mem, 2 * ACPI_MAX_CELLS);
	free(b);
}

/* Above 4 GiB only the 64-bit pointers can reach the tables. */
static void test_above_4g(void **state)
{
	struct built *b = new_built(4, 2, 1);

	build(b, 0x100000000ULL + 0x40);
	assert_int_equal(rd32(b->fadt + 36), 0);
	assert_int_equal(rd32(b->fadt + 40), 0);
	free(b);
}

/* Every byte up to the length returned is written, padding included. */
static void test_deterministic(void **state)
{
	struct built *a = new_built(64, 16, 2), *b = new_built(64, 16, 2);
	uint64_t rsdp;

	memset(a->buf, 0xaa, sizeof(a->buf));
	memset(b->buf, 0x55, sizeof(b->buf));
	a->len = acpi_build(&a->m, a->buf, sizeof(a->buf), 0x7000, &rsdp);
	b->len = acpi_build(&b->m, b->buf, sizeof(b->buf), 0x7000, &rsdp);
	assert_true(a->len > 0);
	assert_int_equal(a->len, b->len);
	assert_memory_equal(a->buf, b->buf, (size_t)a->len);
	free(a);
	free(b);
}

/*
 * Each buffer is allocated at exactly the length offered, so ASan catches
 * a write past it; every length short of what is needed must be refused.
 */
static void check_enospc(unsigned cpus, unsigned cells, unsigned ranges)
{
	struct built *b = new_built(cpus, cells, ranges);
	uint64_t rsdp;
	size_t len;
	uint8_t *p;

	b->len = acpi_build(&b->m, b->buf, sizeof(b->buf), BASE, &rsdp);
	assert_true(b->len > 0);
	for (len = 0; len <= (size_t)b->len; len++) {
		p = malloc(len ? len : 1);
		assert_non_null(p);
		if (len < (size_t)b->len) {
			assert_int_equal(acpi_build(&b->m, p, len, BASE, &rsdp),
					 -ENOSPC);
		} else {
			assert_int_equal(acpi_build(&b->m, p, len, BASE, &rsdp),
					 b->len);
			assert_memory_equal(p, b->buf, len);
		}
		free(p);
	}
	free(b);
}

static void test_enospc(void **state)
{
	check_enospc(1, 1, 1);
	check_enospc(4, 2, 1);
	check_enospc(64, 16, 2);
}

static long build_bad(struct acpi_machine *m, uint64_t base)
{
	static uint8_t buf[BUF_LEN];
	uint64_t rsdp;

	return acpi_build(m, buf, sizeof(buf), base, &rsdp);
}

static void test_einval(void **state)
{
	struct acpi_machine m;

	make_machine(&m, 4, 2, 1);
	assert_true(build_bad(&m, BASE) > 0);
	assert_int_equal(build_bad(&m, BASE + 8), -EINVAL);
	assert_int_equal(build_bad(NULL, BASE), -EINVAL);
#define BAD(stmt) do { \
		make_machine(&m, 4, 2, 1); \
		stmt; \
		assert_int_equal(build_bad(&m, BASE), -EINVAL); \
	} while (0)
	BAD(m.nr_cpus = 0);
	BAD(m.nr_cpus = ACPI_MAX_CPUS + 1);
	BAD(m.nr_cells = 0);
	BAD(m.nr_cells = ACPI_MAX_CELLS + 1);
	BAD(m.cpu_cell[3] = 2);
	BAD(m.apic_id[1] = m.apic_id[2]);
	BAD(m.apic_id[0] = 0xff);
	BAD(m.ioapic_id = 0xff);
	BAD(m.ioapic_gsi_base = 24);
	BAD(m.nr_mem = 0);
	BAD(m.nr_mem = 2 * ACPI_MAX_CELLS + 1);
	BAD(m.mem[1].cell = 2);
	BAD(m.mem[0].size = 0);
	BAD(m.mem[0].base = ~0ULL - 10);
	BAD(m.distance[1][1] = 0);
	BAD(m.distance[0][1] = 10);
#undef BAD
	/* One cell has no SLIT, so its distances do not matter. */
	make_machine(&m, 4, 1, 1);
	m.distance[0][0] = 0;
	assert_true(build_bad(&m, BASE) > 0);
}

static void test_default_distances(void **state)
{
	struct acpi_machine m;

	memset(&m, 0, sizeof(m));
	m.distance[0][1] = 31;
	acpi_default_distances(&m);
	assert_int_equal(m.distance[0][0], 10);
	assert_int_equal(m.distance[15][15], 10);
	assert_int_equal(m.distance[0][1], 31);
	assert_int_equal(m.distance[1][0], 20);
	assert_int_equal(m.distance[3][9], 20);
}

static void test_dsdt_aml(void **state)
{
	struct acpi_machine m;
	uint8_t aml[4096];
	long n, i;

	make_machine(&m, 64, 16, 1);
	n = acpi_dsdt_aml(&m, aml, sizeof(aml));
	assert_true(n > 0);
	/* \_S5 comes first: SLP_TYP for PM1a, then PM1b and two reserved. */
	assert_memory_equal(aml, s5, sizeof(s5));
	for (i = 0; i < n; i++)
		assert_int_equal(acpi_dsdt_aml(&m, aml, (size_t)i), -ENOSPC);
	m.nr_cpus = 0;
	assert_int_equal(acpi_dsdt_aml(&m, aml, sizeof(aml)), -EINVAL);
}

/* Decodes a PkgLength; returns its size in bytes. */
static unsigned pkg_decode(const uint8_t *p, size_t *total)
{
	unsigned follow = p[0] >> 6, i;

	if (!follow) {
		*total = p[0] & 0x3f;
		return 1;
	}
	assert_int_equal(p[0] & 0x30, 0);       /* reserved bits */
	*total = p[0] & 0xf;
	for (i = 1; i <= follow; i++)
		*total |= (size_t)p[i] << (4 + 8 * (i - 1));
	return follow + 1;
}

static void check_pkg_length(size_t body)
{
	uint8_t enc[4];
	unsigned n = acpi_aml_pkg_length(body, enc);
	size_t total;

	assert_true(n >= 1 && n <= 4);
	assert_int_equal(pkg_decode(enc, &total), n);
	assert_int_equal(total, body + n);
	/* Shortest: one byte fewer could not have held it. */
	if (n > 1)
		assert_true(body + n - 1 >= (n == 2 ? 1u << 6 :
					      1u << (4 + 8 * (n - 2))));
}

static void test_aml_pkg_length(void **state)
{
	static const size_t edges[] = { 0, 1u << 6, 1u << 12, 1u << 20 };
	uint8_t enc[4];
	size_t i, d;

	for (i = 0; i < sizeof(edges) / sizeof(edges[0]); i++)
		for (d = 0; d < 16; d++)
			if (edges[i] + d >= 8)
				check_pkg_length(edges[i] + d - 8);
	check_pkg_length((1u << 28) - 5);
	assert_int_equal(acpi_aml_pkg_length((1u << 28) - 4, enc), 0);
	acpi_aml_pkg_length(62, enc);
	assert_int_equal(enc[0], 63);
	assert_int_equal(acpi_aml_pkg_length(63, enc), 2);
	assert_int_equal(enc[0], 0x41);
	assert_int_equal(enc[1], 0x04);
}

/* --- iasl ---------------------------------------------------------------- */

struct tmp {
	char dir[64];
};

static int tmp_setup(void **state)
{
	struct tmp *t = calloc(1, sizeof(*t));

	if (!t)
		return -1;
	snprintf(t->dir, sizeof(t->dir), "/tmp/grappe-acpi-XXXXXX");
	if (!mkdtemp(t->dir)) {
		free(t);
		return -1;
	}
	*state = t;
	return 0;
}

static int tmp_teardown(void **state)
{
	struct tmp *t = *state;
	struct dirent *de;
	char path[512];
	DIR *d = opendir(t->dir);

	while (d && (de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", t->dir, de->d_name);
		unlink(path);
	}
	if (d)
		closedir(d);
	rmdir(t->dir);
	free(t);
	return 0;
}

static void require_iasl(void)
{
	const char *path = getenv("PATH");
	char *copy, *dir, *save, exe[512];
	int found = 0;

	copy = strdup(path ? path : "/usr/bin:/bin");
	assert_non_null(copy);
	for (dir = strtok_r(copy, ":", &save); dir && !found;
	     dir = strtok_r(NULL, ":", &save)) {
		snprintf(exe, sizeof(exe), "%s/iasl", *dir ? dir : ".");
		found = access(exe, X_OK) == 0;
	}
	free(copy);
	if (!found)
		fail_msg("iasl not found in PATH (Debian package acpica-tools)");
}

static void write_file(const char *dir, const char *name, const void *p,
		       size_t len)
{
	char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(p, 1, len, f), len);
	assert_int_equal(fclose(f), 0);
}

/* The whole file, NUL-terminated; *len gets its size. */
static char *read_file(const char *dir, const char *name, size_t *len)
{
	char path[512], *buf;
	FILE *f;
	long n;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "rb");
	if (!f)
		fail_msg("%s was not written", path);
	assert_int_equal(fseek(f, 0, SEEK_END), 0);
	n = ftell(f);
	assert_true(n >= 0);
	rewind(f);
	buf = malloc((size_t)n + 1);
	assert_non_null(buf);
	assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
	buf[n] = 0;
	fclose(f);
	if (len)
		*len = (size_t)n;
	return buf;
}

/* Runs "iasl ARGS" in dir; returns its exit status and its output. */
static int iasl(const char *dir, const char *args, char **out)
{
	char cmd[1024];
	int st;

	snprintf(cmd, sizeof(cmd), "cd '%s' && iasl %s >iasl.log 2>&1",
		 dir, args);
	st = system(cmd);
	*out = read_file(dir, "iasl.log", NULL);
	return st != -1 && WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static bool word_in(const char *line, const char *word, const char *zero)
{
	return strstr(line, word) && !strstr(line, zero);
}

/*
 * Fails on a line reporting a problem. iasl -d reports a bad checksum or a
 * malformed name only as a warning and still exits 0, so disassembly is
 * held to "no warnings" as well; compilation only to "no errors".
 */
static void assert_clean(const char *what, const char *text, bool warnings_ok)
{
	const char *line = text;

	while (line && *line) {
		const char *nl = strchr(line, '\n');
		size_t n = nl ? (size_t)(nl - line) : strlen(line);
		char buf[512];

		snprintf(buf, sizeof(buf), "%.*s", (int)n, line);
		if (word_in(buf, "Error", " 0 Errors") ||
		    (!warnings_ok && (word_in(buf, "Warning", " 0 Warnings") ||
				      strstr(buf, "Incorrect") ||
				      strstr(buf, "Invalid"))))
			fail_msg("%s: %s", what, buf);
		line = nl ? nl + 1 : NULL;
	}
}

/*
 * Disassembles SIG.dat, compiles the result and compares the output with
 * the original: iasl writes its own creator ID and revision (bytes 28-35)
 * and so a different checksum (byte 9); everything else must be equal.
 */
static void iasl_round_trip(const char *dir, const char *sig,
			    const uint8_t *t, size_t len)
{
	char name[32], *out, *dsl, *aml;
	size_t aml_len, i;

	snprintf(name, sizeof(name), "%s.dat", sig);
	write_file(dir, name, t, len);
	snprintf(name, sizeof(name), "-d %s.dat", sig);
	assert_int_equal(iasl(dir, name, &out), 0);
	assert_clean(sig, out, false);
	free(out);
	snprintf(name, sizeof(name), "%s.dsl", sig);
	dsl = read_file(dir, name, NULL);
	assert_clean(name, dsl, false);
	free(dsl);
	assert_int_equal(iasl(dir, name, &out), 0);
	assert_clean(name, out, true);
	free(out);
	snprintf(name, sizeof(name), "%s.aml", sig);
	aml = read_file(dir, name, &aml_len);
	assert_int_equal(aml_len, len);
	for (i = 0; i < len; i++)
		if (aml[i] != (char)t[i] && i != 9 && (i < 28 || i >= 36))
			fail_msg("%s: iasl gives 0x%02x at offset %zu, we 0x%02x",
				 sig, (uint8_t)aml[i], i, t[i]);
	free(aml);
}

/*
 * iasl 20200925 cannot disassemble a binary RSDP, but compiles one: the
 * RSDP is written as data-table source with both checksums 0, and iasl's
 * output, with the checksums it computes, must equal ours.
 */
static void iasl_rsdp(const char *dir, const uint8_t *r)
{
	char src[1024], *out, *aml;
	size_t len;

	snprintf(src, sizeof(src),
		 "[0008] Signature : \"RSD PTR \"\n"
		 "[0001] Checksum : 00\n"
		 "[0006] Oem ID : \"%.6s\"\n"
		 "[0001] Revision : %02X\n"
		 "[0004] RSDT Address : %08X\n"
		 "[0004] Length : %08X\n"
		 "[0008] XSDT Address : %016llX\n"
		 "[0001] Extended Checksum : 00\n"
		 "[0003] Reserved : 000000\n",
		 (const char *)r + 9, r[15], rd32(r + 16), rd32(r + 20),
		 (unsigned long long)rd64(r + 24));
	write_file(dir, "rsdp.asl", src, strlen(src));
	assert_int_equal(iasl(dir, "rsdp.asl", &out), 0);
	assert_clean("rsdp.asl", out, true);
	free(out);
	aml = read_file(dir, "rsdp.aml", &len);
	assert_int_equal(len, 36);
	assert_memory_equal(aml, r, 36);
	free(aml);
}

static void check_iasl(void **state, unsigned cpus, unsigned cells,
		       unsigned ranges)
{
	const char *dir = ((struct tmp *)*state)->dir;
	struct built *b = new_built(cpus, cells, ranges);
	static const char *const sig[] = {
		"XSDT", "FACP", "FACS", "DSDT", "APIC", "SRAT", "SLIT",
	};
	const uint8_t *t[7];
	unsigned i;

	require_iasl();
	build(b, BASE);
	t[0] = b->xsdt;
	t[1] = b->fadt;
	t[2] = b->facs;
	t[3] = b->dsdt;
	t[4] = b->madt;
	t[5] = b->srat;
	t[6] = b->slit;
	for (i = 0; i < 7; i++)
		if (t[i])
			iasl_round_trip(dir, sig[i], t[i], rd32(t[i] + 4));
	iasl_rsdp(dir, b->buf);
	free(b);
}

static void test_iasl_one_cell(void **state)
{
	check_iasl(state, 1, 1, 1);
}

static void test_iasl_two_cells(void **state)
{
	check_iasl(state, 4, 2, 1);
}

static void test_iasl_sixteen_cells(void **state)
{
	check_iasl(state, 64, 16, 2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_one_cpu_one_cell),
		cmocka_unit_test(test_four_cpus_two_cells),
		cmocka_unit_test(test_64_cpus_16_cells),
		cmocka_unit_test(test_above_4g),
		cmocka_unit_test(test_deterministic),
		cmocka_unit_test(test_enospc),
		cmocka_unit_test(test_einval),
		cmocka_unit_test(test_default_distances),
		cmocka_unit_test(test_dsdt_aml),
		cmocka_unit_test(test_aml_pkg_length),
		cmocka_unit_test_setup_teardown(test_iasl_one_cell,
						tmp_setup, tmp_teardown),
		cmocka_unit_test_setup_teardown(test_iasl_two_cells,
						tmp_setup, tmp_teardown),
		cmocka_unit_test_setup_teardown(test_iasl_sixteen_cells,
						tmp_setup, tmp_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
