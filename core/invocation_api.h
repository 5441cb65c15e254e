#ifndef RM_INVOCATION_API_H
#define RM_INVOCATION_API_H

/* The invocation routes, reached from net/api.c through struct api_context (context: the
 * struct invocation_runtime). */

struct http_exchange;

/* POST /v1/agents/{agent}/invocations */
void invocation_api_create(void *context, struct http_exchange *exchange);
/* GET or DELETE /v1/invocations/{id} */
void invocation_api_lookup(void *context, struct http_exchange *exchange);

#endif
