// slmkit's built-in chat page: plain JavaScript, no build step. It talks to this server's
// OpenAI-compatible API (/v1/models, /v1/chat/completions with streaming).
"use strict";

const $ = (id) => document.getElementById(id);
const history = [];
const vision = new Set();  // models that take images (capability "vision")
let controller = null;

function headers() {
  const h = { "Content-Type": "application/json" };
  const key = $("key").value.trim();
  if (key) h["Authorization"] = "Bearer " + key;
  return h;
}

function status(text) { $("status").textContent = text; }

function add(role, text, image) {
  const li = document.createElement("li");
  li.className = role;
  if (image) {
    const img = document.createElement("img");
    img.src = image;
    img.alt = "attached image";
    img.className = "thumb";
    li.append(img);
  }
  const body = document.createElement("span");
  body.className = "text";
  body.textContent = text;
  li.append(body);
  $("log").append(li);
  li.scrollIntoView({ block: "end" });
  return li;
}

async function loadModels() {
  try {
    const r = await fetch("/v1/models", { headers: headers() });
    if (!r.ok) { status("Could not list models: " + r.status + (r.status === 401 ? " (enter an API key)" : "")); return; }
    const data = await r.json();
    const select = $("model");
    const current = select.value;
    // chat models only: an embedding-only model (capabilities without "completion") cannot answer
    const chat = data.data.filter((m) => !m.capabilities || m.capabilities.includes("completion"));
    select.replaceChildren(...chat.map((m) => new Option(m.id, m.id)));
    vision.clear();
    chat.filter((m) => m.capabilities && m.capabilities.includes("vision")).forEach((m) => vision.add(m.id));
    if (current) select.value = current;
    showAttach();
    status(chat.length + " chat model(s) available");
  } catch (e) { status("Could not reach the server: " + e); }
}

// The image picker shows for a model that takes images; the file goes as a data URL part.
function showAttach() {
  const on = vision.has($("model").value);
  $("attach").hidden = !on;
  if (!on) $("image").value = "";
}

function readImage() {
  const file = $("image").files && $("image").files[0];
  if (!file) return Promise.resolve(null);
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(new Error("could not read the image"));
    reader.readAsDataURL(file);
  });
}

async function send(text, image) {
  // a turn with an image keeps it in the history: the next turn reuses its cached tokens
  const content = image ? [{ type: "text", text }, { type: "image_url", image_url: { url: image } }] : text;
  history.push({ role: "user", content });
  add("user", text, image);
  const li = add("assistant", "");
  const body = li.querySelector(".text");
  const messages = [];
  const system = $("system").value.trim();
  if (system) messages.push({ role: "system", content: system });
  messages.push(...history);
  const request = {
    model: $("model").value,
    messages,
    stream: true,
    stream_options: { include_usage: true },
  };
  // Only what the user set: the rest comes from the model's PARAMETERs and the server's defaults.
  for (const field of ["temperature", "top_p", "max_tokens"]) {
    const value = $(field).value.trim();
    if (value !== "") request[field] = Number(value);
  }
  controller = new AbortController();
  $("stop").disabled = false;
  $("send").disabled = true;
  const started = performance.now();
  let first = null, usage = null, answer = "";
  try {
    const r = await fetch("/v1/chat/completions", { method: "POST", headers: headers(), body: JSON.stringify(request), signal: controller.signal });
    if (!r.ok) {
      const err = await r.json().catch(() => ({}));
      throw new Error((err.error && err.error.message) || ("HTTP " + r.status));
    }
    const reader = r.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const line = buffer.slice(0, cut).trim();
        buffer = buffer.slice(cut + 2);
        if (!line.startsWith("data:")) continue;
        const data = line.slice(5).trim();
        if (data === "[DONE]") continue;
        const chunk = JSON.parse(data);
        if (chunk.error) throw new Error(chunk.error.message);
        if (chunk.usage) usage = chunk.usage;
        const delta = chunk.choices && chunk.choices[0] && chunk.choices[0].delta;
        if (delta && delta.content) {
          if (first === null) first = performance.now();
          answer += delta.content;
          body.textContent = answer;
        }
      }
    }
  } catch (e) {
    if (e.name !== "AbortError") { li.classList.add("error"); body.textContent = answer + (answer ? "\n" : "") + "Error: " + e.message; }
  } finally {
    const end = performance.now();
    const meta = document.createElement("span");
    meta.className = "meta";
    const ttft = first === null ? null : (first - started) / 1000;
    const tokens = usage ? usage.completion_tokens : null;
    const rate = tokens && first !== null && end > first ? tokens / ((end - first) / 1000) : null;
    meta.textContent = [
      ttft === null ? null : "time to first token " + ttft.toFixed(2) + " s",
      rate === null ? null : rate.toFixed(1) + " tokens/s",
      tokens === null ? null : tokens + " tokens",
      controller && controller.signal.aborted ? "stopped" : null,
    ].filter(Boolean).join(" · ");
    li.append(meta);
    if (answer) history.push({ role: "assistant", content: answer });
    controller = null;
    $("stop").disabled = true;
    $("send").disabled = false;
    $("prompt").focus();
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("key").value = localStorage.getItem("slmkit.key") || "";
  $("key").addEventListener("change", () => { localStorage.setItem("slmkit.key", $("key").value.trim()); loadModels(); });
  $("model").addEventListener("change", showAttach);
  $("composer").addEventListener("submit", async (e) => {
    e.preventDefault();
    const text = $("prompt").value.trim();
    if (!text || controller) return;
    let image = null;
    try { image = await readImage(); } catch (err) { status(err.message); return; }
    $("prompt").value = "";
    $("image").value = "";
    send(text, image);
  });
  $("prompt").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); $("composer").requestSubmit(); }
  });
  $("stop").addEventListener("click", () => controller && controller.abort());
  $("clear").addEventListener("click", () => { history.length = 0; $("log").replaceChildren(); status(""); });
  loadModels();
});
