// SPDX-License-Identifier: MIT
/* An in-order loopback link for tests. See test_loopback_fixture.h. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "blockdev/test_loopback_fixture.h"

struct loopback_frame {
	struct loopback_frame *next;
	uint16_t type;
	uint64_t req_id;
	size_t len;
	uint8_t data[];
};

int loopback_link_send(void *ctx, unsigned dst, uint16_t type, uint64_t req_id,
		       const struct iovec *iov, int iovcnt)
{
	struct loopback_link *l = ctx;
	struct loopback_frame *f;
	size_t len = 0;

	if (dst != l->to_node)
		return -ENOTCONN;
	for (int i = 0; i < iovcnt; i++)
		len += iov[i].iov_len;
	f = malloc(sizeof(*f) + len);
	if (!f)
		return -ENOMEM;
	*f = (struct loopback_frame){ .type = type, .req_id = req_id, .len = len };
	len = 0;
	for (int i = 0; i < iovcnt; i++) {
		memcpy(f->data + len, iov[i].iov_base, iov[i].iov_len);
		len += iov[i].iov_len;
	}
	pthread_mutex_lock(&l->lock);
	l->sent++;
	if (l->drop) {
		free(f);
	} else {
		*l->tail = f;
		l->tail = &f->next;
		pthread_cond_signal(&l->cond);
	}
	pthread_mutex_unlock(&l->lock);
	return 0;
}

static void *link_main(void *arg)
{
	struct loopback_link *l = arg;

	pthread_mutex_lock(&l->lock);
	for (;;) {
		struct loopback_frame *f = l->q;

		if (!f) {
			if (l->stop)
				break;
			pthread_cond_wait(&l->cond, &l->lock);
			continue;
		}
		l->q = f->next;
		if (!l->q)
			l->tail = &l->q;
		pthread_mutex_unlock(&l->lock);
		l->deliver(l->to, l->from, f->type, f->req_id, f->data, f->len);
		free(f);
		pthread_mutex_lock(&l->lock);
	}
	pthread_mutex_unlock(&l->lock);
	return NULL;
}

void loopback_link_start(struct loopback_link *l, unsigned from, unsigned to_node,
			 loopback_deliver_fn *deliver, void *to)
{
	*l = (struct loopback_link){ .from = from, .to_node = to_node, .deliver = deliver,
				     .to = to };
	pthread_mutex_init(&l->lock, NULL);
	pthread_cond_init(&l->cond, NULL);
	l->tail = &l->q;
	assert_int_equal(pthread_create(&l->thread, NULL, link_main, l), 0);
}

void loopback_link_stop(struct loopback_link *l)
{
	pthread_mutex_lock(&l->lock);
	l->stop = true;
	pthread_cond_signal(&l->cond);
	pthread_mutex_unlock(&l->lock);
	pthread_join(l->thread, NULL);
	pthread_mutex_destroy(&l->lock);
	pthread_cond_destroy(&l->cond);
}
