#ifndef RM_STORE_READ_H
#define RM_STORE_READ_H

/* Lock-free reads from any reactor: a lookup in the owner's index inside the reader's own
 * epoch section. Values only on disk go to the owner (store/cache.c reads them). */

#include "store/shard.h"

/* On the request's origin reactor: answers a get from memory (the callback runs inside the
 * epoch section, so the value needs no copy) or forwards it to the owner as a disk read. */
void store_read_resolve(struct store_shard *shard, struct store_request *request);

#endif
