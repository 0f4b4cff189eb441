// SPDX-License-Identifier: MIT
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vmm/boot_linux.h"

/* Offsets in the zero page and the setup header (boot.rst). */
#define BP_ACPI_RSDP      0x070
#define BP_E820_ENTRIES   0x1e8
#define BP_HDR            0x1f1
#define BP_E820_TABLE     0x2d0
#define HDR_SETUP_SECTS   0x1f1
#define HDR_VID_MODE      0x1fa
#define HDR_JUMP_END      0x201   /* byte at 0x201 + 0x202 = end of the header */
#define HDR_MAGIC         0x202
#define HDR_VERSION       0x206
#define HDR_TYPE_OF_LOADER 0x210
#define HDR_LOADFLAGS     0x211
#define HDR_RAMDISK_IMAGE 0x218
#define HDR_RAMDISK_SIZE  0x21c
#define HDR_HEAP_END_PTR  0x224
#define HDR_CMD_LINE_PTR  0x228
#define HDR_INITRD_MAX    0x22c
#define HDR_XLOADFLAGS    0x236
#define HDR_CMDLINE_SIZE  0x238

#define LOADED_HIGH   0x01
#define CAN_USE_HEAP  0x80
#define XLF_KERNEL_64 0x01

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t rd32(const uint8_t *p) { return rd16(p) | (uint32_t)rd16(p + 2) << 16; }
static void wr16(uint8_t *p, uint16_t v) { p[0] = v; p[1] = v >> 8; }
static void wr32(uint8_t *p, uint32_t v) { wr16(p, v); wr16(p + 2, v >> 16); }
static void wr64(uint8_t *p, uint64_t v) { wr32(p, v); wr32(p + 4, v >> 32); }

unsigned boot_linux_e820(const struct guest_mem *gm, struct e820_entry *out, unsigned max)
{
	unsigned n = 0;

	if (max < 5)
		return 0;
	/* Conventional memory up to the EBDA, then the legacy BIOS hole. */
	out[n++] = (struct e820_entry){ 0, 0x9fc00, E820_RAM };
	out[n++] = (struct e820_entry){ 0x9fc00, 0x400, E820_RESERVED };
	out[n++] = (struct e820_entry){ BOOT_ACPI_GPA, 0x100000 - BOOT_ACPI_GPA, E820_RESERVED };
	out[n++] = (struct e820_entry){ 0x100000, gm->low_size - 0x100000, E820_RAM };
	if (gm->size > gm->low_size)
		out[n++] = (struct e820_entry){ GUEST_MEM_HIGH_START, gm->size - gm->low_size, E820_RAM };
	return n;
}

static void build_page_tables(struct guest_mem *gm)
{
	uint64_t *pml4 = guest_mem_ptr(gm, BOOT_PML4_GPA, 4096);
	uint64_t *pdpt = guest_mem_ptr(gm, BOOT_PDPT_GPA, 4096);
	uint64_t *pd = guest_mem_ptr(gm, BOOT_PD_GPA, 4 * 4096);

	memset(pml4, 0, 4096);
	memset(pdpt, 0, 4096);
	pml4[0] = BOOT_PDPT_GPA | 0x3;             /* present, writable */
	for (unsigned i = 0; i < 4; i++)
		pdpt[i] = (BOOT_PD_GPA + i * 4096) | 0x3;
	for (uint64_t i = 0; i < 4 * 512; i++)
		pd[i] = (i << 21) | 0x83;           /* present, writable, 2 MiB */
}

static void build_gdt(struct guest_mem *gm, struct boot_entry *e)
{
	uint64_t *gdt = guest_mem_ptr(gm, BOOT_GDT_GPA, 4 * 8);

	gdt[0] = 0;
	gdt[1] = 0;
	gdt[BOOT_CODE_SEL / 8] = 0x00af9b000000ffffULL;   /* 64-bit code */
	gdt[BOOT_DATA_SEL / 8] = 0x00cf93000000ffffULL;   /* flat data */
	e->gdt_base = BOOT_GDT_GPA;
	e->gdt_limit = 4 * 8 - 1;
}

static int fail(char *err, size_t errlen, const char *msg)
{
	snprintf(err, errlen, "%s", msg);
	return -1;
}

static int place_initrd(struct guest_mem *gm, uint8_t *bp, const uint8_t *initrd,
			size_t len, uint64_t kernel_end, char *err, size_t errlen)
{
	uint64_t max = rd32(bp + HDR_INITRD_MAX);
	uint64_t top = gm->low_size;
	uint64_t addr;
	void *dst;

	if (rd16(bp + HDR_VERSION) < 0x0203)
		max = 0x37ffffff;
	if (top > max + 1)
		top = max + 1;
	if (len > top)
		return fail(err, errlen, "initrd does not fit in guest memory");
	addr = (top - len) & ~0xfffULL;
	if (addr < kernel_end)
		return fail(err, errlen, "initrd does not fit in guest memory below the kernel's limit");
	dst = guest_mem_ptr(gm, addr, len);
	if (!dst)
		return fail(err, errlen, "initrd does not fit in guest memory");
	memcpy(dst, initrd, len);
	wr32(bp + HDR_RAMDISK_IMAGE, (uint32_t)addr);
	wr32(bp + HDR_RAMDISK_SIZE, (uint32_t)len);
	return 0;
}

int boot_linux_load_image(struct guest_mem *gm, const uint8_t *image, size_t image_len,
			  const uint8_t *initrd, size_t initrd_len,
			  const struct boot_linux_setup *setup, struct boot_entry *entry,
			  char *err, size_t errlen)
{
	size_t setup_len, kernel_len, hdr_end, cmd_len;
	uint8_t *bp, *kdst;
	char *cmd;
	unsigned nr;

	if (image_len < 0x300 || memcmp(image + HDR_MAGIC, "HdrS", 4))
		return fail(err, errlen, "not a bzImage (no HdrS setup header)");
	if (rd16(image + HDR_VERSION) < 0x020c)
		return fail(err, errlen, "boot protocol older than 2.12: no 64-bit entry point");
	if (!(image[HDR_XLOADFLAGS] & XLF_KERNEL_64))
		return fail(err, errlen, "kernel has no 64-bit entry point (XLF_KERNEL_64)");
	setup_len = ((size_t)(image[HDR_SETUP_SECTS] ? image[HDR_SETUP_SECTS] : 4) + 1) * 512;
	if (setup_len >= image_len)
		return fail(err, errlen, "bzImage truncated: no protected-mode kernel");
	kernel_len = image_len - setup_len;
	kdst = guest_mem_ptr(gm, BOOT_KERNEL_GPA, kernel_len);
	if (!kdst)
		return fail(err, errlen, "kernel does not fit in guest memory");
	memcpy(kdst, image + setup_len, kernel_len);

	bp = guest_mem_ptr(gm, BOOT_PARAMS_GPA, 4096);
	memset(bp, 0, 4096);
	hdr_end = 0x202 + image[HDR_JUMP_END];
	if (hdr_end > 0x300 || hdr_end > image_len)
		hdr_end = 0x300 < image_len ? 0x300 : image_len;
	memcpy(bp + BP_HDR, image + BP_HDR, hdr_end - BP_HDR);
	wr16(bp + HDR_VID_MODE, 0xffff);
	bp[HDR_TYPE_OF_LOADER] = 0xff;
	bp[HDR_LOADFLAGS] |= LOADED_HIGH | CAN_USE_HEAP;
	wr16(bp + HDR_HEAP_END_PTR, 0xfe00);

	cmd = guest_mem_ptr(gm, BOOT_CMDLINE_GPA, BOOT_CMDLINE_MAX);
	cmd_len = setup->cmdline ? strlen(setup->cmdline) : 0;
	if (cmd_len >= BOOT_CMDLINE_MAX ||
	    (rd16(image + HDR_VERSION) >= 0x0206 && cmd_len > rd32(image + HDR_CMDLINE_SIZE)))
		return fail(err, errlen, "kernel command line too long for this kernel");
	memcpy(cmd, setup->cmdline ? setup->cmdline : "", cmd_len + 1);
	wr32(bp + HDR_CMD_LINE_PTR, (uint32_t)BOOT_CMDLINE_GPA);

	if (initrd && initrd_len &&
	    place_initrd(gm, bp, initrd, initrd_len, BOOT_KERNEL_GPA + kernel_len, err, errlen))
		return -1;

	nr = setup->nr_e820 > E820_MAX ? E820_MAX : setup->nr_e820;
	bp[BP_E820_ENTRIES] = (uint8_t)nr;
	memcpy(bp + BP_E820_TABLE, setup->e820, nr * sizeof(struct e820_entry));
	wr64(bp + BP_ACPI_RSDP, setup->rsdp_gpa);

	build_page_tables(gm);
	build_gdt(gm, entry);
	entry->rip = BOOT_KERNEL_GPA + 0x200;   /* startup_64 */
	entry->rsi = BOOT_PARAMS_GPA;
	entry->cr3 = BOOT_PML4_GPA;
	return 0;
}

static int read_file(const char *path, uint8_t **buf, size_t *len, char *err, size_t errlen)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	size_t done = 0;

	if (fd < 0 || fstat(fd, &st) < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	*buf = malloc(st.st_size ? st.st_size : 1);
	if (!*buf) {
		close(fd);
		return fail(err, errlen, "out of memory");
	}
	while (done < (size_t)st.st_size) {
		ssize_t r = read(fd, *buf + done, st.st_size - done);

		if (r <= 0) {
			snprintf(err, errlen, "%s: read failed: %s", path,
				 r < 0 ? strerror(errno) : "file shrank");
			free(*buf);
			close(fd);
			return -1;
		}
		done += r;
	}
	close(fd);
	*len = done;
	return 0;
}

int boot_linux_load(struct guest_mem *gm, const struct boot_linux_setup *setup,
		    struct boot_entry *entry, char *err, size_t errlen)
{
	uint8_t *kernel = NULL, *initrd = NULL;
	size_t klen = 0, ilen = 0;
	char sub[256];
	int ret;

	if (!setup->kernel)
		return fail(err, errlen, "no kernel given (os/kernel)");
	if (read_file(setup->kernel, &kernel, &klen, err, errlen))
		return -1;
	if (setup->initrd && read_file(setup->initrd, &initrd, &ilen, err, errlen)) {
		free(kernel);
		return -1;
	}
	ret = boot_linux_load_image(gm, kernel, klen, initrd, ilen, setup, entry, sub, sizeof(sub));
	if (ret)
		snprintf(err, errlen, "%s: %s", setup->kernel, sub);
	free(kernel);
	free(initrd);
	return ret;
}
