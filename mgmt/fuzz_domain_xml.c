/* SPDX-License-Identifier: MIT */
/*
 * Fuzzes the domain XML loader. Besides crashes, leaks and undefined
 * behaviour, it checks what the loader promises about an accepted config,
 * so that a bug letting a bad config through is a finding too.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/vm_config.h"

static void count_warning(void *ctx, const char *msg)
{
	size_t *n = ctx;

	/* Reading the whole message lets ASan see a bad one. */
	*n += strlen(msg);
}

static void check_cells(const struct vm_config *cfg)
{
	uint64_t seen = 0, mem = 0;

	if (cfg->nr_cells > VM_MAX_CELLS)
		abort();
	for (unsigned i = 0; i < cfg->nr_cells; i++) {
		const struct vm_cell *c = &cfg->cells[i];

		if (c->id != i || !c->nr_vcpus || c->mem_bytes % 4096)
			abort();
		for (unsigned j = 0; j < c->nr_vcpus; j++) {
			uint64_t bit = (uint64_t)1 << c->vcpus[j];

			if (c->vcpus[j] >= cfg->nr_vcpus || (seen & bit) ||
			    vm_config_vcpu_cell(cfg, c->vcpus[j]) != i)
				abort();
			seen |= bit;
		}
		for (unsigned j = 0; j < cfg->nr_cells; j++)
			if ((i == j) != (c->distance[j] == 10) ||
			    c->distance[j] < 10 || c->distance[j] > 254)
				abort();
		mem += c->mem_bytes;
	}
	if (cfg->nr_cells && (mem != cfg->mem_bytes ||
			      seen != (~(uint64_t)0 >> (64 - cfg->nr_vcpus))))
		abort();
}

static void check(const struct vm_config *cfg)
{
	if (!cfg->name || !*cfg->name || !cfg->source)
		abort();
	if (cfg->nr_vcpus < 1 || cfg->nr_vcpus > VM_MAX_VCPUS)
		abort();
	if (!cfg->mem_bytes || cfg->mem_bytes % 4096)
		abort();
	if ((cfg->serial == VM_SERIAL_FILE) != (cfg->serial_path != NULL))
		abort();
	if ((cfg->initrd || cfg->cmdline) && !cfg->kernel)
		abort();
	check_cells(cfg);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct vm_config *cfg;
	char err[VM_CONFIG_ERR_LEN];
	size_t warned = 0;

	memset(err, 'x', sizeof(err));
	if (vm_config_parse((const char *)data, size, "fuzz.xml", &cfg, err,
			    count_warning, &warned)) {
		if (cfg || !memchr(err, '\0', sizeof(err)) ||
		    strncmp(err, "fuzz.xml", 8) || strchr(err, '\n'))
			abort();
		return 0;
	}
	check(cfg);
	vm_config_free(cfg);
	return 0;
}
