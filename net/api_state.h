#ifndef RM_API_STATE_H
#define RM_API_STATE_H

/* The state API: /v1/state/{ns}/{key} with GET, HEAD, PUT and DELETE. */

#include "net/api.h"

/* Handles a request whose path starts with /v1/state/ and whose method is allowed. */
void api_state_handle(struct api_context *api, struct http_exchange *exchange);

#endif
