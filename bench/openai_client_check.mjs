// The official OpenAI Node client against Ringmaster's gateway, unchanged but for its base
// URL: a plain completion, a streamed one, and a tool-calling turn. Exits 1 on any mismatch.
import OpenAI from "openai";

const client = new OpenAI({ baseURL: process.argv[2], apiKey: "unused-by-the-mock" });

function check(condition, what) {
    if (!condition) {
        console.error(`openai client check failed: ${what}`);
        process.exit(1);
    }
    console.log(`ok: ${what}`);
}

const plain = await client.chat.completions.create({
    model: "gpt-4o-mini",
    messages: [{ role: "user", content: "Say hello" }],
});
check(plain.choices[0].message.content.length > 0, "a plain completion has content");
check(plain.usage.total_tokens > 0, "usage is reported");

const stream = await client.chat.completions.create({
    model: "gpt-4o-mini",
    messages: [{ role: "user", content: "Stream a hello" }],
    stream: true,
    stream_options: { include_usage: true },
});
let text = "";
let chunks = 0;
for await (const chunk of stream) {
    chunks++;
    text += chunk.choices[0]?.delta?.content ?? "";
}
check(chunks > 2 && text.length > 0, `a streamed completion arrives in ${chunks} chunks`);

const tools = await client.chat.completions.create({
    model: "gpt-4o-mini",
    messages: [{ role: "user", content: "weather in Paris" }],
    tools: [{ type: "function", function: { name: "weather",
              parameters: { type: "object", properties: { city: { type: "string" } } } } }],
});
const call = tools.choices[0].message.tool_calls?.[0];
check(call && call.function.name === "weather", "a tool call is parsed by the client");
