#ifndef RM_STORE_WRITE_H
#define RM_STORE_WRITE_H

/* Writes on the owner reactor: the compare-and-swap check, the record encoded into the
 * group-commit batch, the new snapshot published, and the acknowledgement (at once for
 * async namespaces, after the covering fdatasync for sync ones). */

#include "store/shard.h"

/* now_unix_ns: the record's timestamp, and the time TTLs are checked against. */
void store_write_execute(struct store_shard *shard, struct store_request *request,
                         uint64_t now_unix_ns);

#endif
