// slmkit's chat page: plain JavaScript modules, no build step, talking to this server's
// OpenAI-compatible API. Conversations live in this browser (conversations.js); answers are
// rendered as sanitised Markdown (markdown.js); the Models dialog is models.js.
import * as api from "./api.js";
import * as store from "./conversations.js";
import { copy, render } from "./markdown.js";
import * as modelsDialog from "./models.js";

const $ = (id) => document.getElementById(id);
const SAMPLING = ["temperature", "top_p", "top_k", "min_p", "repetition_penalty", "max_tokens", "seed"];
const MAX_FILE_BYTES = 256 * 1024;
const MAX_FILES = 8;
const TEXT_NAME = /\.(txt|md|markdown|rst|csv|tsv|json|jsonl|ya?ml|toml|ini|cfg|conf|log|xml|html?|css|js|mjs|ts|tsx|jsx|py|rb|go|rs|java|kt|c|h|cc|cpp|hpp|cs|swift|php|sh|bash|zsh|sql|r|lua|pl|tex|diff|patch)$/i;

let conversations = store.all();
let current = null;
let vision = new Set();
let controller = null;
let following = true;
let attachments = [];  // {name, text} or {name, image}

// -- settings, key, theme ------------------------------------------------------------------
function loadSettings() {
  $("key").value = localStorage.getItem("slmkit.key") || "";
  api.setKey($("key").value);
  const saved = JSON.parse(localStorage.getItem("slmkit.settings") || "{}");
  for (const field of [...SAMPLING, "system"]) if (saved[field] !== undefined) $(field).value = saved[field];
}

function saveSettings() {
  const values = {};
  for (const field of [...SAMPLING, "system"]) values[field] = $(field).value;
  localStorage.setItem("slmkit.settings", JSON.stringify(values));
}

function applyTheme() {
  const chosen = localStorage.getItem("slmkit.theme");
  const dark = chosen ? chosen === "dark" : matchMedia("(prefers-color-scheme: dark)").matches;
  document.documentElement.dataset.theme = dark ? "dark" : "light";
  $("hljs-dark").disabled = !dark;
  $("hljs-light").disabled = dark;
}

function status(text) { $("status").textContent = text; }

// -- models --------------------------------------------------------------------------------
async function loadModels() {
  let list;
  try {
    list = await api.models();
  } catch (e) {
    status("Could not list models: " + e.message);
    return;
  }
  const select = $("model");
  const wanted = (current && current.model) || select.value || (await api.defaultModel());
  const fallback = await api.defaultModel();
  select.replaceChildren(...list.map((m) => new Option(m.id, m.id)));
  vision = new Set(list.filter((m) => m.vision).map((m) => m.id));
  const ids = list.map((m) => m.id);
  select.value = ids.includes(wanted) ? wanted : ids.includes(fallback) ? fallback : ids[0] || "";
  if (current && !current.model) current.model = select.value;
  if (!list.length) status("No chat model on this server yet: pull one from Models.");
  else if ($("status").textContent.startsWith("Could not list")) status("");
}

// -- conversations ---------------------------------------------------------------------------
function persist() {
  current.updated = Date.now();
  store.setCurrent(current.id);
  if (!conversations.includes(current)) conversations.unshift(current);
  if (!store.save(conversations)) status("This browser's storage is full: delete old conversations to keep new ones.");
  renderList();
}

function open(conversation) {
  if (controller) controller.abort();
  current = conversation;
  store.setCurrent(current.id);
  if (current.model && [...$("model").options].some((o) => o.value === current.model)) $("model").value = current.model;
  attachments = [];
  renderAttachments();
  renderList();
  renderLog();
  document.body.classList.remove("sidebar-open");
  $("prompt").focus();
}

function newChat() {
  open(store.fresh($("model").value));
}

function renderList() {
  const items = [...conversations].sort((a, b) => b.updated - a.updated).map((c) => {
    const li = document.createElement("li");
    if (current && c.id === current.id) li.setAttribute("aria-current", "true");
    const title = document.createElement("button");
    title.type = "button";
    title.className = "title";
    title.textContent = c.title;
    title.addEventListener("click", () => open(c));
    const rename = document.createElement("button");
    rename.type = "button";
    rename.className = "icon rename";
    rename.textContent = "✎";
    rename.setAttribute("aria-label", "Rename " + c.title);
    rename.addEventListener("click", () => startRename(li, c));
    const remove = document.createElement("button");
    remove.type = "button";
    remove.className = "icon delete";
    remove.textContent = "✕";
    remove.setAttribute("aria-label", "Delete " + c.title);
    remove.addEventListener("click", () => {
      if (!confirm("Delete the conversation “" + c.title + "”?")) return;
      conversations = conversations.filter((x) => x !== c);
      store.save(conversations);
      if (current === c) newChat(); else renderList();
    });
    li.append(title, rename, remove);
    return li;
  });
  $("conversations").replaceChildren(...items);
}

function startRename(li, c) {
  const input = document.createElement("input");
  input.value = c.title;
  input.className = "rename-input";
  input.setAttribute("aria-label", "New title");
  const done = (keep) => {
    if (keep && input.value.trim()) { c.title = input.value.trim().slice(0, 100); store.save(conversations); }
    renderList();
  };
  input.addEventListener("keydown", (e) => {
    if (e.key === "Enter") { e.preventDefault(); done(true); }
    if (e.key === "Escape") done(false);
  });
  input.addEventListener("blur", () => done(true));
  li.replaceChildren(input);
  input.focus();
  input.select();
}

// -- the log -------------------------------------------------------------------------------------
function actionButton(label, run, cls) {
  const b = document.createElement("button");
  b.type = "button";
  b.className = "action " + (cls || "");
  b.textContent = label;
  b.addEventListener("click", () => run(b));
  return b;
}

function bubble(message, index) {
  const li = document.createElement("li");
  li.className = message.role + (message.failed ? " error" : "");
  if (message.image) {
    const img = document.createElement("img");
    img.src = message.image;
    img.alt = "attached image";
    img.className = "thumb";
    li.append(img);
  }
  const body = document.createElement("div");
  body.className = "text";
  if (message.role === "assistant") render(body, message.text);
  else body.textContent = message.text;
  li.append(body);
  if (message.files && message.files.length) {
    const chips = document.createElement("ul");
    chips.className = "chips";
    for (const f of message.files) {
      const chip = document.createElement("li");
      chip.textContent = "📄 " + f.name;
      chips.append(chip);
    }
    li.append(chips);
  }
  if (message.meta) {
    const meta = document.createElement("span");
    meta.className = "meta";
    meta.textContent = message.meta;
    li.append(meta);
  }
  const actions = document.createElement("div");
  actions.className = "actions";
  if (message.role === "assistant") {
    actions.append(actionButton("Copy", (b) => copy(message.text, b), "copy"));
    if (index === current.messages.length - 1) actions.append(actionButton("Regenerate", regenerate, "regenerate"));
  } else {
    actions.append(actionButton("Edit", () => startEdit(li, index), "edit"));
  }
  li.append(actions);
  return li;
}

function renderLog(scroll = true) {
  const s = $("scroller"), top = s.scrollTop;
  $("log").replaceChildren(...current.messages.map(bubble));
  $("empty").hidden = current.messages.length > 0;
  if (scroll) scrollToEnd(); else s.scrollTop = top;
}

function scrollToEnd() {
  const s = $("scroller");
  s.scrollTop = s.scrollHeight;
  following = true;
  $("follow").hidden = true;
}

function startEdit(li, index) {
  if (controller) return;
  const message = current.messages[index];
  const area = document.createElement("textarea");
  area.value = message.text;
  area.rows = Math.min(12, message.text.split("\n").length + 1);
  area.className = "edit-area";
  area.setAttribute("aria-label", "Edit the message");
  const save = actionButton("Save and send", () => {
    const text = area.value.trim();
    if (!text) return;
    current.messages = current.messages.slice(0, index);
    current.messages.push({ ...message, text, failed: false });
    renderLog();
    answer();
  }, "save");
  const cancel = actionButton("Cancel", () => renderLog(false), "cancel");
  li.replaceChildren(area, save, cancel);
  area.focus();
}

// -- asking and answering ------------------------------------------------------------------------
function content(message) {
  let text = message.text;
  for (const f of message.files || []) text += "\n\nFile: " + f.name + "\n```\n" + f.text + "\n```";
  if (!message.image) return text;
  return [{ type: "text", text }, { type: "image_url", image_url: { url: message.image } }];
}

function request(messages) {
  const history = messages.filter((m) => !m.failed).map((m) => ({ role: m.role, content: content(m) }));
  const system = $("system").value.trim();
  const body = { model: $("model").value, messages: system ? [{ role: "system", content: system }, ...history] : history };
  for (const field of SAMPLING) {
    const value = $(field).value.trim();
    if (value !== "") body[field] = Number(value);
  }
  return body;
}

function send(event) {
  event.preventDefault();
  const text = $("prompt").value.trim();
  if ((!text && !attachments.length) || controller) return;
  if (!$("model").value) { status("Choose a model first (or pull one from Models)."); return; }
  const image = attachments.find((a) => a.image);
  const files = attachments.filter((a) => a.text !== undefined).map((a) => ({ name: a.name, text: a.text }));
  const message = { role: "user", text, files };
  if (image) message.image = image.image;
  if (!current.messages.length) current.title = store.titleOf(text || files[0].name);
  current.messages.push(message);
  $("prompt").value = "";
  attachments = [];
  renderAttachments();
  $("log").append(bubble(message, current.messages.length - 1));
  $("empty").hidden = true;
  persist();
  answer();
}

function regenerate() {
  if (controller) return;
  const last = current.messages[current.messages.length - 1];
  if (!last || last.role !== "assistant") return;
  current.messages.pop();
  const user = current.messages[current.messages.length - 1];
  if (user) user.failed = false;
  renderLog();
  answer();
}

async function answer() {
  current.model = $("model").value;
  const body = request(current.messages);
  const message = { role: "assistant", text: "" };
  current.messages.push(message);
  const li = bubble(message, current.messages.length - 1);
  li.classList.add("streaming");
  $("log").append(li);
  const text = li.querySelector(".text");
  controller = new AbortController();
  $("stop").hidden = false;
  $("send").hidden = true;
  status("");
  scrollToEnd();
  const started = performance.now();
  let first = null, usage = null, pending = false;
  const paint = () => {
    pending = false;
    render(text, message.text);
    if (following) $("scroller").scrollTop = $("scroller").scrollHeight;
  };
  try {
    usage = await api.chat(body, controller.signal, (piece) => {
      if (first === null) first = performance.now();
      message.text += piece;
      if (!pending) { pending = true; requestAnimationFrame(paint); }
    });
  } catch (e) {
    if (e.name !== "AbortError") {
      message.failed = true;  // neither this answer nor its question is sent again
      const asked = current.messages[current.messages.length - 2];
      if (asked) asked.failed = true;
      message.text += (message.text ? "\n\n" : "") + "**Error:** " + e.message;
    }
  } finally {
    const end = performance.now();
    const ttft = first === null ? null : (first - started) / 1000;
    const tokens = usage ? usage.completion_tokens : null;
    const rate = tokens && first !== null && end > first ? tokens / ((end - first) / 1000) : null;
    message.meta = [
      current.model,
      ttft === null ? null : "time to first token " + ttft.toFixed(2) + " s",
      rate === null ? null : rate.toFixed(1) + " tokens/s",
      tokens === null ? null : tokens + " tokens",
      controller.signal.aborted ? "stopped" : null,
    ].filter(Boolean).join(" · ");
    controller = null;
    $("stop").hidden = true;
    $("send").hidden = false;
    persist();
    renderLog(following);  // a reader who scrolled up stays where they are
    $("prompt").focus({ preventScroll: true });
  }
}

// -- attachments ---------------------------------------------------------------------------------
function renderAttachments() {
  $("attachments").replaceChildren(...attachments.map((a, i) => {
    const li = document.createElement("li");
    li.textContent = (a.image ? "🖼 " : "📄 ") + a.name;
    const x = actionButton("✕", () => { attachments.splice(i, 1); renderAttachments(); }, "icon");
    x.setAttribute("aria-label", "Remove " + a.name);
    li.append(x);
    return li;
  }));
}

function read(file, how) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(new Error("could not read " + file.name));
    if (how === "url") reader.readAsDataURL(file); else reader.readAsText(file);
  });
}

async function attach() {
  const files = [...$("files").files];
  $("files").value = "";
  for (const file of files) {
    if (attachments.length >= MAX_FILES) { status("At most " + MAX_FILES + " files per message."); break; }
    if (file.type.startsWith("image/")) {
      if (!vision.has($("model").value)) { status($("model").value + " does not take images; " + file.name + " was not attached."); continue; }
      if (attachments.some((a) => a.image)) { status("One image per message."); continue; }
      attachments.push({ name: file.name, image: await read(file, "url") });
    } else if (file.type.startsWith("text/") || TEXT_NAME.test(file.name) || file.type === "application/json") {
      if (file.size > MAX_FILE_BYTES) { status(file.name + " is over " + MAX_FILE_BYTES / 1024 + " KiB; not attached."); continue; }
      const text = await read(file, "text");
      if (text.includes("\u0000")) { status(file.name + " is not a text file; not attached."); continue; }
      attachments.push({ name: file.name, text });
    } else {
      status(file.name + ": only text files" + (vision.has($("model").value) ? " and images" : "") + " can be attached.");
    }
  }
  renderAttachments();
}

// -- wiring ----------------------------------------------------------------------------------------
document.addEventListener("DOMContentLoaded", async () => {
  applyTheme();
  loadSettings();
  const last = conversations.find((c) => c.id === store.currentId());
  current = last || store.fresh(null);
  renderList();
  renderLog();
  await loadModels();
  if (!current.model) current.model = $("model").value;

  $("composer").addEventListener("submit", send);
  $("prompt").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); $("composer").requestSubmit(); }
  });
  $("stop").addEventListener("click", () => controller && controller.abort());
  $("new-chat").addEventListener("click", newChat);
  $("model").addEventListener("change", () => { current.model = $("model").value; if (current.messages.length) persist(); });
  $("model").addEventListener("pointerdown", loadModels, { passive: true });
  window.addEventListener("focus", loadModels);
  $("files").addEventListener("change", attach);
  $("key").addEventListener("change", () => {
    localStorage.setItem("slmkit.key", $("key").value.trim());
    api.setKey($("key").value);
    loadModels();
  });
  $("settings-form").addEventListener("input", saveSettings);
  $("reset-settings").addEventListener("click", () => { for (const f of SAMPLING) $(f).value = ""; saveSettings(); });
  $("theme").addEventListener("click", () => {
    localStorage.setItem("slmkit.theme", document.documentElement.dataset.theme === "dark" ? "light" : "dark");
    applyTheme();
  });
  $("toggle-sidebar").addEventListener("click", () => {
    const open = document.body.classList.toggle("sidebar-open");
    $("toggle-sidebar").setAttribute("aria-expanded", String(open));
  });
  $("scroller").addEventListener("scroll", () => {
    const s = $("scroller");
    following = s.scrollHeight - s.scrollTop - s.clientHeight < 48;
    $("follow").hidden = following || !controller;
  }, { passive: true });
  $("follow").addEventListener("click", scrollToEnd);
  modelsDialog.setup(loadModels);
  document.body.dataset.ready = "true";  // for tests and scripts: the page is wired up
});
