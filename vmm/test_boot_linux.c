// SPDX-License-Identifier: MIT
/* Boot protocol set-up against a synthetic bzImage. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "vmm/boot_linux.h"

#define SETUP_SECTS 4
#define KERNEL_BYTES 8192

static uint8_t *fake_bzimage(size_t *len, uint16_t version, uint8_t xloadflags)
{
	size_t n = (SETUP_SECTS + 1) * 512 + KERNEL_BYTES;
	uint8_t *img = calloc(1, n);

	img[0x1f1] = SETUP_SECTS;
	img[0x201] = 0x6a;                      /* header ends at 0x26c */
	memcpy(img + 0x202, "HdrS", 4);
	img[0x206] = version & 0xff;
	img[0x207] = version >> 8;
	img[0x211] = 0x01;                      /* LOADED_HIGH */
	img[0x22c] = 0xff; img[0x22d] = 0xff; img[0x22e] = 0xff; img[0x22f] = 0x7f;
	img[0x236] = xloadflags;
	img[0x238] = 0xff; img[0x239] = 0x07;   /* cmdline_size 2047 */
	for (size_t i = (SETUP_SECTS + 1) * 512; i < n; i++)
		img[i] = (uint8_t)i;
	*len = n;
	return img;
}

static uint32_t rd32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }

static void test_load(void **state)
{
	struct guest_mem gm;
	struct e820_entry e820[E820_MAX];
	struct boot_entry e;
	size_t len;
	uint8_t *img = fake_bzimage(&len, 0x020f, 0x03);
	uint8_t initrd[10000];
	char err[256];
	struct boot_linux_setup s = { .cmdline = "console=ttyS0 quiet", .rsdp_gpa = 0xe0000 };
	uint8_t *bp;

	(void)state;
	memset(initrd, 0xab, sizeof(initrd));
	assert_int_equal(guest_mem_init(&gm, 64 << 20), 0);
	s.e820 = e820;
	s.nr_e820 = boot_linux_e820(&gm, e820, E820_MAX);
	assert_int_equal(s.nr_e820, 4);
	assert_int_equal(boot_linux_load_image(&gm, img, len, initrd, sizeof(initrd), &s, &e,
					       err, sizeof(err)), 0);
	assert_int_equal(e.rip, 0x100200);
	assert_int_equal(e.rsi, BOOT_PARAMS_GPA);
	/* The protected-mode kernel is at 1 MiB. */
	assert_memory_equal(guest_mem_ptr(&gm, 0x100000, 16), img + (SETUP_SECTS + 1) * 512, 16);
	bp = guest_mem_ptr(&gm, BOOT_PARAMS_GPA, 4096);
	assert_memory_equal(bp + 0x202, "HdrS", 4);
	assert_int_equal(bp[0x210], 0xff);
	assert_true(bp[0x211] & 0x80);
	assert_int_equal(rd32(bp + 0x228), BOOT_CMDLINE_GPA);
	assert_string_equal(guest_mem_ptr(&gm, BOOT_CMDLINE_GPA, 32), "console=ttyS0 quiet");
	/* The initrd sits page-aligned at the top of RAM, intact. */
	uint32_t iaddr = rd32(bp + 0x218);
	assert_int_equal(rd32(bp + 0x21c), sizeof(initrd));
	assert_int_equal(iaddr & 0xfff, 0);
	assert_true(iaddr + sizeof(initrd) <= (64u << 20));
	assert_memory_equal(guest_mem_ptr(&gm, iaddr, sizeof(initrd)), initrd, sizeof(initrd));
	assert_int_equal(bp[0x1e8], 4);
	assert_int_equal(*(uint64_t *)(bp + 0x70), 0xe0000);
	/* Identity map: PML4 -> PDPT -> 2 MiB pages. */
	uint64_t *pd = guest_mem_ptr(&gm, BOOT_PD_GPA, 4096 * 4);
	assert_int_equal(pd[1], (1ull << 21) | 0x83);
	assert_int_equal(pd[2047], (2047ull << 21) | 0x83);
	free(img);
	guest_mem_destroy(&gm);
}

static void test_rejects(void **state)
{
	struct guest_mem gm;
	struct boot_entry e;
	struct boot_linux_setup s = { 0 };
	char err[256];
	size_t len;
	uint8_t *img;
	char longcmd[4096];

	(void)state;
	assert_int_equal(guest_mem_init(&gm, 16 << 20), 0);
	img = fake_bzimage(&len, 0x020f, 0x03);
	assert_int_equal(boot_linux_load_image(&gm, img, 100, NULL, 0, &s, &e, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "not a bzImage"));
	img[0x236] = 0;
	assert_int_equal(boot_linux_load_image(&gm, img, len, NULL, 0, &s, &e, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "64-bit"));
	free(img);
	img = fake_bzimage(&len, 0x0209, 0x03);
	assert_int_equal(boot_linux_load_image(&gm, img, len, NULL, 0, &s, &e, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "2.12"));
	free(img);
	img = fake_bzimage(&len, 0x020f, 0x03);
	memset(longcmd, 'a', sizeof(longcmd) - 1);
	longcmd[sizeof(longcmd) - 1] = 0;
	s.cmdline = longcmd;
	assert_int_equal(boot_linux_load_image(&gm, img, len, NULL, 0, &s, &e, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "command line"));
	s.cmdline = NULL;
	/* An initrd larger than RAM */
	uint8_t *big = calloc(1, 17 << 20);
	assert_int_equal(boot_linux_load_image(&gm, img, len, big, 17 << 20, &s, &e, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "initrd"));
	free(big);
	free(img);
	s.kernel = "/nonexistent/vmlinuz";
	assert_int_equal(boot_linux_load(&gm, &s, &e, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "/nonexistent/vmlinuz"));
	guest_mem_destroy(&gm);
}

static void test_e820_high(void **state)
{
	struct guest_mem gm;
	struct e820_entry e820[E820_MAX];
	unsigned n;

	(void)state;
	assert_int_equal(guest_mem_init(&gm, 4ull << 30), 0);
	n = boot_linux_e820(&gm, e820, E820_MAX);
	assert_int_equal(n, 5);
	assert_int_equal(e820[3].addr + e820[3].size, GUEST_MEM_HOLE_START);
	assert_int_equal(e820[4].addr, GUEST_MEM_HIGH_START);
	assert_int_equal(e820[4].size, 1ull << 30);
	/* gpa <-> offset across the hole */
	assert_int_equal(guest_mem_offset(&gm, GUEST_MEM_HIGH_START), GUEST_MEM_HOLE_START);
	assert_int_equal(guest_mem_gpa(&gm, GUEST_MEM_HOLE_START), GUEST_MEM_HIGH_START);
	assert_null(guest_mem_ptr(&gm, GUEST_MEM_HOLE_START - 8, 16));
	assert_null(guest_mem_ptr(&gm, 0xfee00000, 4));
	guest_mem_destroy(&gm);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_load),
		cmocka_unit_test(test_rejects),
		cmocka_unit_test(test_e820_high),
	};

	return cmocka_run_group_tests_name("boot_linux", tests, NULL, NULL);
}
