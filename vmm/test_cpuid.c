// SPDX-License-Identifier: MIT
/* CPUID filtering: what the guest must never see, and what it must. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "vmm/cpuid.h"

static struct cpuid_table in, out;

static void add(uint32_t fn, uint32_t idx, uint32_t a, uint32_t b, uint32_t c, uint32_t d)
{
	struct kvm_cpuid_entry2 *e = &in.entries[in.hdr.nent++];

	memset(e, 0, sizeof(*e));
	e->function = fn;
	e->index = idx;
	e->eax = a; e->ebx = b; e->ecx = c; e->edx = d;
}

static const struct kvm_cpuid_entry2 *find(uint32_t fn, uint32_t idx)
{
	for (unsigned i = 0; i < out.hdr.nent; i++)
		if (out.entries[i].function == fn && out.entries[i].index == idx)
			return &out.entries[i];
	return NULL;
}

static void build_supported(void)
{
	memset(&in, 0, sizeof(in));
	add(0, 0, 0xd, 0, 0, 0);
	add(1, 0, 0x800f12, 0x00ff0800, 0xffffffff, 0xffffffff);
	add(0xa, 0, 0x07300402, 1, 2, 3);
	add(0xb, 0, 1, 2, 0x100, 7);
	add(0xb, 1, 4, 8, 0x201, 7);
	add(0x40000000, 0, 0x40000001, 0, 0, 0);
	add(0x40000001, 0, 0xffffffff, 0, 0, 0);
	add(0x80000001, 0, 0, 0, 0xffffffff, 0);
	add(0x8000000a, 0, 1, 2, 3, 4);
}

static void test_leaf1(void **state)
{
	const struct kvm_cpuid_entry2 *e;

	(void)state;
	build_supported();
	cpuid_filter(&in, &out, 7, 4);
	e = find(1, 0);
	assert_non_null(e);
	assert_int_equal(e->ecx & (1u << 21), 0);	/* no x2APIC */
	assert_int_equal(e->ecx & (1u << 24), 0);	/* no TSC deadline */
	assert_true(e->ecx & (1u << 31));		/* hypervisor */
	assert_true(e->edx & (1u << 9));		/* APIC */
	assert_int_equal(e->ebx >> 24, 7);		/* APIC ID */
	assert_int_equal((e->ebx >> 16) & 0xff, 1);
	assert_int_equal(e->ebx & 0xffff, 0x0800);
}

static void test_kvm_leaves(void **state)
{
	const struct kvm_cpuid_entry2 *e;

	(void)state;
	build_supported();
	cpuid_filter(&in, &out, 0, 1);
	e = find(0x40000000, 0);
	assert_non_null(e);
	assert_memory_equal(&e->ebx, "KVMK", 4);
	assert_memory_equal(&e->ecx, "VMKV", 4);
	e = find(0x40000001, 0);
	assert_non_null(e);
	/* PV EOI (6), PV unhalt (7), PV IPI (11), async PF (4, 14), poll control (12) withheld */
	assert_int_equal(e->eax & ((1u << 4) | (1u << 6) | (1u << 7) | (1u << 11) |
				   (1u << 12) | (1u << 13) | (1u << 14) | (1u << 15)), 0);
	assert_true(e->eax & (1u << 3));		/* kvmclock2 */
	assert_int_equal(cpuid_kvm_features(0), 0);	/* never more than KVM has */
}

static void test_hidden(void **state)
{
	const struct kvm_cpuid_entry2 *e;

	(void)state;
	build_supported();
	cpuid_filter(&in, &out, 2, 2);
	assert_null(find(0x8000000a, 0));		/* SVM leaf gone */
	e = find(0x80000001, 0);
	assert_int_equal(e->ecx & ((1u << 2) | (1u << 3) | (1u << 22)), 0);
	e = find(0xa, 0);
	assert_int_equal(e->eax | e->ebx | e->ecx | e->edx, 0);	/* no PMU */
	e = find(0xb, 1);
	assert_int_equal(e->edx, 2);			/* x2APIC ID = APIC ID */
	assert_int_equal(e->ebx, 1);
	assert_int_equal((e->ecx >> 8) & 0xff, 2);	/* core level */
}

static void test_xsave_consistency(void **state)
{
	const struct kvm_cpuid_entry2 *e;

	(void)state;
	build_supported();
	add(7, 0, 0, 0, 1u << 3, 0);                  /* PKU */
	add(0xd, 0, 0x207, 0x240, 0xa88, 0);          /* x87 SSE AVX PKRU */
	add(0xd, 2, 0x100, 0x240, 0, 0);              /* AVX, but no PKRU subleaf */
	cpuid_filter(&in, &out, 0, 1);
	e = find(0xd, 0);
	assert_int_equal(e->eax, 0x7);                /* leaf 1 has AVX (all ones) */
	assert_int_equal(e->ecx, 0x340);
	e = find(7, 0);
	assert_int_equal(e->ecx & (1u << 3), 0);
	/* AVX state without the AVX flag goes too. */
	build_supported();
	in.entries[1].ecx &= ~(1u << 28);
	add(0xd, 0, 0x7, 0x240, 0x340, 0);
	add(0xd, 2, 0x100, 0x240, 0, 0);
	cpuid_filter(&in, &out, 0, 1);
	e = find(0xd, 0);
	assert_int_equal(e->eax, 0x3);
	assert_int_equal(e->ecx, 576);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_leaf1),
		cmocka_unit_test(test_kvm_leaves),
		cmocka_unit_test(test_hidden),
		cmocka_unit_test(test_xsave_consistency),
	};

	return cmocka_run_group_tests_name("cpuid", tests, NULL, NULL);
}
