#ifndef RM_API_GATEWAY_H
#define RM_API_GATEWAY_H

/* POST /v1/chat/completions (OpenAI-compatible, through the LLM queue of the endpoint serving
 * the model) and POST /v1/tools/{tool} (through the tool's breaker). */

#include "net/api.h"

void api_gateway_chat(struct api_context *api, struct http_exchange *exchange);
void api_gateway_tool(struct api_context *api, struct http_exchange *exchange);

#endif
