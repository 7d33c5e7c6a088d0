// This server's APIs, as the page uses them: the OpenAI dialect to chat and list models,
// Ollama's to see loaded models, pull and delete. Every call sends the API key, if any.

let apiKey = "";
export function setKey(key) { apiKey = key.trim(); }

function headers() {
  const h = { "Content-Type": "application/json" };
  if (apiKey) h.Authorization = "Bearer " + apiKey;
  return h;
}

export class ApiError extends Error {
  constructor(message, status) { super(message); this.status = status; }
}

async function failure(response) {
  const body = await response.json().catch(() => ({}));
  const e = body.error;
  const message = (e && (e.message || e)) || "HTTP " + response.status;
  const hint = response.status === 401 ? " (enter an API key in Settings)" : "";
  return new ApiError(String(message) + hint, response.status);
}

async function call(method, path, body) {
  const r = await fetch(path, { method, headers: headers(), body: body === undefined ? undefined : JSON.stringify(body) });
  if (!r.ok) throw await failure(r);
  return r.status === 204 ? null : r.json().catch(() => null);
}

// Lines of a streamed body as they arrive: SSE events ("\n\n") or NDJSON ("\n").
async function* lines(response, separator) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf(separator)) >= 0) {
      const line = buffer.slice(0, cut).trim();
      buffer = buffer.slice(cut + separator.length);
      if (line) yield line;
    }
  }
  if (buffer.trim()) yield buffer.trim();
}

// Chat models (those with the "completion" capability) and which of them take images.
export async function models() {
  const data = await call("GET", "/v1/models");
  const chat = data.data.filter((m) => !m.capabilities || m.capabilities.includes("completion"));
  return chat.map((m) => ({ id: m.id, vision: Boolean(m.capabilities && m.capabilities.includes("vision")) }));
}

// The server's default model (SLM_DEFAULT_MODEL), from /ready, which needs no key.
export async function defaultModel() {
  const r = await fetch("/ready").catch(() => null);
  const body = r ? await r.json().catch(() => ({})) : {};
  return body.model || null;
}

// Stream one chat answer: onDelta(text) for each piece; returns the usage (or null).
export async function chat(request, signal, onDelta) {
  const r = await fetch("/v1/chat/completions", {
    method: "POST", headers: headers(), signal,
    body: JSON.stringify({ ...request, stream: true, stream_options: { include_usage: true } }),
  });
  if (!r.ok) throw await failure(r);
  let usage = null;
  for await (const line of lines(r, "\n\n")) {
    if (!line.startsWith("data:")) continue;
    const data = line.slice(5).trim();
    if (data === "[DONE]") continue;
    const chunk = JSON.parse(data);
    if (chunk.error) throw new ApiError(chunk.error.message || "the answer failed", 500);
    if (chunk.usage) usage = chunk.usage;
    const delta = chunk.choices && chunk.choices[0] && chunk.choices[0].delta;
    if (delta && delta.content) onDelta(delta.content);
  }
  return usage;
}

export const loaded = async () => (await call("GET", "/api/ps")).models;
export const stored = async () => (await call("GET", "/api/tags")).models;
export const remove = (model) => call("DELETE", "/api/delete", { model });
export const unload = (model) => call("POST", "/api/generate", { model, keep_alive: 0, stream: false });

// Pull with progress: onProgress({status, completed, total}) for each line Ollama's API sends.
export async function pull(model, insecure, signal, onProgress) {
  const body = JSON.stringify({ model, insecure, stream: true });
  const r = await fetch("/api/pull", { method: "POST", headers: headers(), signal, body });
  if (!r.ok) throw await failure(r);
  for await (const line of lines(r, "\n")) {
    const data = JSON.parse(line);
    if (data.error) throw new ApiError(data.error, 500);
    onProgress(data);
  }
}
