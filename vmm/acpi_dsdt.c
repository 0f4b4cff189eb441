// SPDX-License-Identifier: MIT
/*
 * The DSDT, written as AML by a small encoder (ACPI 6.0, chapter 20).
 *
 * A package's length prefix counts itself and has a variable size, so it is
 * only known once the package is complete: pkg_begin() reserves one byte,
 * pkg_end() widens it in place. Every encoding is the shortest one, which is
 * what iasl emits, so a disassemble/recompile round trip gives back the
 * same bytes.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "vmm/acpi.h"
#include "vmm/pci.h"
#include "vmm/pvpanic.h"

#define AML_MAX_DEPTH 8

/* AML opcodes used here. */
#define AML_ZERO        0x00
#define AML_ONE         0x01
#define AML_NAME        0x08
#define AML_BYTE        0x0a
#define AML_WORD        0x0b
#define AML_DWORD       0x0c
#define AML_STRING      0x0d
#define AML_QWORD       0x0e
#define AML_SCOPE       0x10
#define AML_BUFFER      0x11
#define AML_PACKAGE     0x12
#define AML_EXT         0x5b
#define AML_EXT_DEVICE  0x82
#define AML_ROOT        '\\'
#define AML_DUAL_NAME   0x2e
#define AML_MULTI_NAME  0x2f

/* Small resource descriptors (6.4.2). */
#define RES_IRQ_NOFLAGS 0x22    /* type 4, 2 bytes: IRQ mask */
#define RES_IO          0x47    /* type 8, 7 bytes */
#define RES_END         0x79    /* type 15, 1 byte: checksum */
#define RES_IO_DECODE16 0x01

struct aml {
	uint8_t *p;
	size_t cap;
	size_t len;
	size_t open[AML_MAX_DEPTH];
	unsigned depth;
	int err;
};

static void emit(struct aml *a, const void *src, size_t n)
{
	if (a->err)
		return;
	if (n > a->cap - a->len) {
		a->err = -ENOSPC;
		return;
	}
	memcpy(a->p + a->len, src, n);
	a->len += n;
}

static void emit1(struct aml *a, uint8_t b)
{
	emit(a, &b, 1);
}

static void pkg_begin(struct aml *a)
{
	if (a->depth == AML_MAX_DEPTH) {
		a->err = a->err ? a->err : -EINVAL;
		return;
	}
	a->open[a->depth++] = a->len;
	emit1(a, 0);
}

unsigned acpi_aml_pkg_length(size_t body, uint8_t out[4])
{
	unsigned n, i;
	size_t total;

	if (body + 1 < (1u << 6))
		n = 1;
	else if (body + 2 < (1u << 12))
		n = 2;
	else if (body + 3 < (1u << 20))
		n = 3;
	else if (body + 4 < (1u << 28))
		n = 4;
	else
		return 0;
	total = body + n;
	if (n == 1) {
		out[0] = (uint8_t)total;
		return 1;
	}
	/* Lead byte: count of following bytes in 7:6, low nibble in 3:0. */
	out[0] = (uint8_t)(((n - 1) << 6) | (total & 0xf));
	for (i = 1; i < n; i++)
		out[i] = (uint8_t)(total >> (4 + 8 * (i - 1)));
	return n;
}

static void pkg_end(struct aml *a)
{
	uint8_t enc[4];
	size_t start, body;
	unsigned n;

	if (!a->depth) {
		a->err = a->err ? a->err : -EINVAL;
		return;
	}
	start = a->open[--a->depth];
	if (a->err)
		return;
	body = a->len - start - 1;
	n = acpi_aml_pkg_length(body, enc);
	if (!n || n - 1 > a->cap - a->len) {
		a->err = -ENOSPC;
		return;
	}
	memmove(a->p + start + n, a->p + start + 1, body);
	memcpy(a->p + start, enc, n);
	a->len += n - 1;
}

static bool seg_char_ok(char c, bool first)
{
	if (c == '_' || (c >= 'A' && c <= 'Z'))
		return true;
	return !first && c >= '0' && c <= '9';
}

/* One NameSeg from s (up to 4 characters, '_'-padded); returns its length. */
static size_t name_seg(struct aml *a, const char *s)
{
	char seg[4] = { '_', '_', '_', '_' };
	size_t n = 0;

	while (s[n] && s[n] != '.') {
		if (n == 4 || !seg_char_ok(s[n], n == 0)) {
			a->err = a->err ? a->err : -EINVAL;
			return n;
		}
		seg[n] = s[n];
		n++;
	}
	if (!n)
		a->err = a->err ? a->err : -EINVAL;
	emit(a, seg, sizeof(seg));
	return n;
}

/* A NameString: optional root prefix, then dot-separated segments. */
static void name_string(struct aml *a, const char *path)
{
	unsigned nseg = 1;
	const char *s;

	if (*path == AML_ROOT) {
		emit1(a, AML_ROOT);
		path++;
	}
	for (s = path; *s; s++)
		nseg += *s == '.';
	if (nseg == 2) {
		emit1(a, AML_DUAL_NAME);
	} else if (nseg > 2) {
		emit1(a, AML_MULTI_NAME);
		emit1(a, (uint8_t)nseg);
	}
	for (;;) {
		path += name_seg(a, path);
		if (a->err || *path != '.')
			break;
		path++;
	}
}

static void le(struct aml *a, uint64_t v, unsigned bytes)
{
	unsigned i;

	for (i = 0; i < bytes; i++)
		emit1(a, (uint8_t)(v >> (8 * i)));
}

static void integer(struct aml *a, uint64_t v)
{
	if (v <= 1) {
		emit1(a, v ? AML_ONE : AML_ZERO);
	} else if (v <= 0xff) {
		emit1(a, AML_BYTE);
		le(a, v, 1);
	} else if (v <= 0xffff) {
		emit1(a, AML_WORD);
		le(a, v, 2);
	} else if (v <= 0xffffffff) {
		emit1(a, AML_DWORD);
		le(a, v, 4);
	} else {
		emit1(a, AML_QWORD);
		le(a, v, 8);
	}
}

static void string(struct aml *a, const char *s)
{
	emit1(a, AML_STRING);
	emit(a, s, strlen(s) + 1);
}

/*
 * EISAID("PNP0501"): three letters in 5 bits each and four hex digits,
 * stored as a big-endian dword (so the letters come first in memory). It is
 * an ordinary integer to AML, so PNP0000 fits a WordConst.
 */
static void eisaid(struct aml *a, const char *id)
{
	uint32_t v = 0;
	unsigned i;

	for (i = 0; i < 3; i++)
		v = (v << 5) | ((id[i] - 0x40) & 0x1f);
	for (i = 3; i < 7; i++) {
		char c = id[i];

		v = (v << 4) | (uint32_t)(c <= '9' ? c - '0' : c - 'A' + 10);
	}
	integer(a, __builtin_bswap32(v));
}

static void name_int(struct aml *a, const char *name, uint64_t v)
{
	emit1(a, AML_NAME);
	name_string(a, name);
	integer(a, v);
}

static void name_str(struct aml *a, const char *name, const char *v)
{
	emit1(a, AML_NAME);
	name_string(a, name);
	string(a, v);
}

static void name_eisaid(struct aml *a, const char *name, const char *id)
{
	emit1(a, AML_NAME);
	name_string(a, name);
	eisaid(a, id);
}

static void scope_begin(struct aml *a, const char *path)
{
	emit1(a, AML_SCOPE);
	pkg_begin(a);
	name_string(a, path);
}

static void device_begin(struct aml *a, const char *path)
{
	emit1(a, AML_EXT);
	emit1(a, AML_EXT_DEVICE);
	pkg_begin(a);
	name_string(a, path);
}

/* A resource template is built apart: its Buffer needs the size first. */
struct res {
	uint8_t b[96];
	size_t n;
};

static void res_put(struct res *r, const uint8_t *d, size_t n)
{
	/* Templates here are fixed and small: b[] holds the largest. */
	if (n <= sizeof(r->b) - r->n) {
		memcpy(r->b + r->n, d, n);
		r->n += n;
	}
}

/* IO (Decode16, port, port, 1, len): a fixed range. */
static void res_io(struct res *r, uint16_t port, uint8_t len)
{
	const uint8_t d[8] = {
		RES_IO, RES_IO_DECODE16,
		(uint8_t)port, (uint8_t)(port >> 8),
		(uint8_t)port, (uint8_t)(port >> 8),
		1, len,
	};

	res_put(r, d, sizeof(d));
}

/* IRQNoFlags () {irq}: edge-triggered, active high, exclusive. */
static void res_irq(struct res *r, unsigned irq)
{
	const uint8_t d[3] = {
		RES_IRQ_NOFLAGS, (uint8_t)(1u << irq), (uint8_t)(1u << irq >> 8),
	};

	res_put(r, d, sizeof(d));
}

/* Name (_CRS, ResourceTemplate () {...}), closing the template. */
static void name_crs(struct aml *a, struct res *r)
{
	/* A zero checksum byte tells the OS not to check it. */
	const uint8_t end[2] = { RES_END, 0 };

	res_put(r, end, sizeof(end));
	emit1(a, AML_NAME);
	name_string(a, "_CRS");
	emit1(a, AML_BUFFER);
	pkg_begin(a);
	integer(a, r->n);
	emit(a, r->b, r->n);
	pkg_end(a);
}

/*
 * Processor devices let Linux bind its ACPI processor driver; _UID is the
 * "ACPI Processor UID" the MADT gives each local APIC.
 */
static void cpu_devices(struct aml *a, const struct acpi_machine *m)
{
	char name[8];
	unsigned i;

	for (i = 0; i < m->nr_cpus; i++) {
		snprintf(name, sizeof(name), "C%03X", i & 0xfff);
		device_begin(a, name);
		name_str(a, "_HID", "ACPI0007");
		name_int(a, "_UID", i);
		pkg_end(a);
	}
}

static void com1_device(struct aml *a)
{
	struct res r = { .n = 0 };

	device_begin(a, "COM1");
	name_eisaid(a, "_HID", "PNP0501");
	name_int(a, "_UID", 1);
	name_int(a, "_STA", 0x0f);
	res_io(&r, 0x3f8, 8);
	res_irq(&r, 4);
	name_crs(a, &r);
	pkg_end(a);
}

static void rtc_device(struct aml *a)
{
	struct res r = { .n = 0 };

	device_begin(a, "RTC");
	name_eisaid(a, "_HID", "PNP0B00");
	res_io(&r, 0x70, 2);
	res_irq(&r, 8);
	name_crs(a, &r);
	pkg_end(a);
}

static void pit_device(struct aml *a)
{
	struct res r = { .n = 0 };

	device_begin(a, "TMR");
	name_eisaid(a, "_HID", "PNP0100");
	res_io(&r, 0x40, 4);
	res_irq(&r, 0);
	name_crs(a, &r);
	pkg_end(a);
}

static void pic_device(struct aml *a)
{
	struct res r = { .n = 0 };

	device_begin(a, "PIC");
	name_eisaid(a, "_HID", "PNP0000");
	res_io(&r, 0x20, 2);
	res_io(&r, 0xa0, 2);
	res_irq(&r, 2);
	name_crs(a, &r);
	pkg_end(a);
}

/*
 * pvpanic (QEMU0001): Linux's pvpanic driver finds its port through _CRS and
 * writes to it on panic, which is how on_crash learns of a crash.
 */
static void pvpanic_device(struct aml *a)
{
	struct res r = { .n = 0 };

	device_begin(a, "PEVT");
	name_str(a, "_HID", "QEMU0001");
	name_int(a, "_STA", 0x0f);
	res_io(&r, PVPANIC_PORT, 1);
	name_crs(a, &r);
	pkg_end(a);
}

/* ---- PCI host bridge (vmm/pci.c; docs/devices.md) ---- */

/* Large resource descriptors (6.4.3.5): Word and DWord Address Space. */
#define RES_WORD_ADDR   0x88
#define RES_DWORD_ADDR  0x87
#define ADDR_MEMORY     0
#define ADDR_IO         1
#define ADDR_BUS        2
/* General flags: ResourceProducer, PosDecode, MinFixed, MaxFixed. */
#define ADDR_FIXED      0x0c
#define IO_ENTIRE_RANGE 0x03
#define MEM_RW_UNCACHED 0x01

/* WordBusNumber / WordIO (min..max, no translation). */
static void res_word_addr(struct res *r, uint8_t type, uint8_t tflags, uint16_t min,
			  uint16_t max)
{
	uint16_t len = (uint16_t)(max - min + 1);
	const uint8_t d[16] = {
		RES_WORD_ADDR, 13, 0, type, ADDR_FIXED, tflags,
		0, 0,                                   /* granularity */
		(uint8_t)min, (uint8_t)(min >> 8),
		(uint8_t)max, (uint8_t)(max >> 8),
		0, 0,                                   /* translation */
		(uint8_t)len, (uint8_t)(len >> 8),
	};

	res_put(r, d, sizeof(d));
}

/* DWordMemory (min..max, non-cacheable, read-write). */
static void res_dword_mem(struct res *r, uint32_t min, uint32_t max)
{
	uint32_t len = max - min + 1;
	uint8_t d[26] = { RES_DWORD_ADDR, 23, 0, ADDR_MEMORY, ADDR_FIXED, MEM_RW_UNCACHED };

	for (unsigned i = 0; i < 4; i++) {
		d[10 + i] = (uint8_t)(min >> (8 * i));
		d[14 + i] = (uint8_t)(max >> (8 * i));
		d[22 + i] = (uint8_t)(len >> (8 * i));
	}
	res_put(r, d, sizeof(d));
}

/*
 * _PRT: INTA of slot s goes straight to GSI 16 + s % 8 (Source 0, so
 * level-triggered, active low). Every function of ours uses INTA.
 */
static void pci_prt(struct aml *a)
{
	emit1(a, AML_NAME);
	name_string(a, "_PRT");
	emit1(a, AML_PACKAGE);
	pkg_begin(a);
	emit1(a, PCI_MAX_SLOTS);
	for (unsigned s = 0; s < PCI_MAX_SLOTS; s++) {
		emit1(a, AML_PACKAGE);
		pkg_begin(a);
		emit1(a, 4);
		integer(a, (uint64_t)s << 16 | 0xffff);    /* any function of slot s */
		integer(a, 0);                              /* INTA */
		integer(a, 0);                              /* a GSI, no link device */
		integer(a, PCI_INTX_GSI_BASE + s % PCI_INTX_NR_GSI);
		pkg_end(a);
	}
	pkg_end(a);
}

/*
 * The host bridge: bus 0, the I/O and MMIO windows its BARs live in. The
 * config ports 0xCF8-0xCFF are not in _CRS (Linux reserves them itself).
 */
static void pci_host_bridge(struct aml *a)
{
	struct res r = { .n = 0 };

	device_begin(a, "PCI0");
	name_eisaid(a, "_HID", "PNP0A03");
	name_int(a, "_ADR", 0);
	name_int(a, "_UID", 0);
	res_word_addr(&r, ADDR_BUS, 0, 0, 0);
	res_word_addr(&r, ADDR_IO, IO_ENTIRE_RANGE, PCI_IO_BASE, PCI_IO_END - 1);
	res_dword_mem(&r, (uint32_t)PCI_MMIO_BASE, (uint32_t)(PCI_MMIO_END - 1));
	name_crs(a, &r);
	pci_prt(a);
	pkg_end(a);
}

/* ---- end of PCI host bridge ---- */

/* \_S5: {PM1a SLP_TYP, PM1b SLP_TYP, reserved, reserved}; no PM1b block. */
static void sleep_s5(struct aml *a)
{
	emit1(a, AML_NAME);
	name_string(a, "_S5");
	emit1(a, AML_PACKAGE);
	pkg_begin(a);
	emit1(a, 4);
	integer(a, ACPI_S5_SLP_TYP);
	integer(a, 0);
	integer(a, 0);
	integer(a, 0);
	pkg_end(a);
}

/*
 * The definition block's scope is the root, so \_S5 and \_SB are written
 * without the root prefix, as iasl would.
 */
long acpi_dsdt_aml(const struct acpi_machine *m, uint8_t *out, size_t cap)
{
	struct aml a = { .p = out, .cap = cap };

	if (!m || !m->nr_cpus || m->nr_cpus > ACPI_MAX_CPUS)
		return -EINVAL;
	sleep_s5(&a);
	scope_begin(&a, "_SB");
	cpu_devices(&a, m);
	pic_device(&a);
	pit_device(&a);
	rtc_device(&a);
	com1_device(&a);
	pvpanic_device(&a);
	pci_host_bridge(&a);	/* PCI: vmm/pci.c */
	pkg_end(&a);
	if (!a.err && a.depth)
		a.err = -EINVAL;
	return a.err ? a.err : (long)a.len;
}
