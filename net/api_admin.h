#ifndef RM_API_ADMIN_H
#define RM_API_ADMIN_H

/* GET /v1/admin/{breakers,limits,queues}: live state as JSON, behind the admin token
 * ("Authorization: Bearer TOKEN"). Without a configured token the admin API is off (404). */

#include "net/api.h"

void api_admin_handle(struct api_context *api, struct http_exchange *exchange);

#endif
