// slmkit through the official `openai` npm package: a chat answer, a streamed answer, embeddings.
//   npm install && SLM_URL=http://127.0.0.1:11435 node index.mjs
import OpenAI from "openai";

const client = new OpenAI({
  baseURL: `${process.env.SLM_URL ?? "http://127.0.0.1:11435"}/v1`,
  apiKey: process.env.SLM_API_KEY ?? "unused",
});
const model = process.env.CHAT_MODEL ?? "smollm2:135m";

const answer = await client.chat.completions.create({
  model,
  messages: [{ role: "user", content: "Name one planet of the solar system." }],
  max_tokens: 16,
  temperature: 0,
});
console.log(JSON.stringify({ kind: "chat", text: answer.choices[0].message.content, usage: answer.usage }));

const stream = await client.chat.completions.create({
  model,
  messages: [{ role: "user", content: "Count from one to five." }],
  max_tokens: 24,
  stream: true,
});
let streamed = "";
let chunks = 0;
for await (const chunk of stream) {
  streamed += chunk.choices[0]?.delta?.content ?? "";
  chunks += 1;
}
console.log(JSON.stringify({ kind: "stream", text: streamed, chunks }));

const embedded = await client.embeddings.create({
  model: process.env.EMBED_MODEL ?? model,
  input: ["a kettle", "a teapot"],
});
console.log(JSON.stringify({ kind: "embeddings", count: embedded.data.length, dimensions: embedded.data[0].embedding.length }));
