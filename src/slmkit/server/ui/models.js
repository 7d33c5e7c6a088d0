// The Models dialog: loaded models (memory, when they unload), stored models (size,
// delete), and pulling a new one with progress. It tells the page when the list changed.
import * as api from "./api.js";

const $ = (id) => document.getElementById(id);
let pulling = null;
let onChange = () => {};

function size(bytes) {
  if (!bytes) return "";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (bytes >= 1000 && i < units.length - 1) { bytes /= 1000; i++; }
  return (i ? bytes.toFixed(1) : bytes) + " " + units[i];
}

function until(when) {
  const seconds = (Date.parse(when) - Date.now()) / 1000;
  if (!Number.isFinite(seconds) || seconds > 3.15e7) return "kept loaded";
  if (seconds < 60) return "in under a minute";
  return seconds < 3600 ? "in " + Math.round(seconds / 60) + " min" : "in " + (seconds / 3600).toFixed(1) + " h";
}

function row(cells, action) {
  const tr = document.createElement("tr");
  for (const text of cells) {
    const td = document.createElement("td");
    td.textContent = text;
    tr.append(td);
  }
  const td = document.createElement("td");
  if (action) td.append(action);
  tr.append(td);
  return tr;
}

function button(label, run) {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = label;
  b.addEventListener("click", async () => {
    b.disabled = true;
    try { await run(); } catch (e) { $("pull-status").textContent = e.message; } finally { b.disabled = false; }
  });
  return b;
}

export async function refresh() {
  try {
    const [loaded, stored] = await Promise.all([api.loaded(), api.stored()]);
    $("loaded").tBodies[0].replaceChildren(...loaded.map((m) => row([m.name, size(m.size), until(m.expires_at)],
      button("Unload", async () => { await api.unload(m.name); await refresh(); }))));
    $("stored").tBodies[0].replaceChildren(...stored.map((m) => row([m.name, size(m.size)],
      button("Delete", async () => {
        if (!confirm("Delete " + m.name + " from this server?")) return;
        await api.remove(m.name);
        await refresh();
        onChange();
      }))));
  } catch (e) {
    $("pull-status").textContent = e.message;
  }
}

async function startPull(event) {
  event.preventDefault();
  const name = $("pull-name").value.trim();
  if (!name || pulling) return;
  pulling = new AbortController();
  $("pull").disabled = true;
  $("pull-cancel").hidden = false;
  $("pull-progress").hidden = false;
  $("pull-progress").removeAttribute("value");  // indeterminate until sizes are known
  $("pull-status").textContent = "Pulling " + name + "…";
  try {
    await api.pull(name, $("pull-insecure").checked, pulling.signal, (p) => {
      if (p.total) { $("pull-progress").max = p.total; $("pull-progress").value = p.completed || 0; }
      const part = p.total ? " " + Math.floor((100 * (p.completed || 0)) / p.total) + "%" : "";
      $("pull-status").textContent = p.status + part;
    });
    $("pull-status").textContent = "Pulled " + name + ".";
    $("pull-name").value = "";
    onChange();
  } catch (e) {
    $("pull-status").textContent = e.name === "AbortError" ? "Pull cancelled (what arrived is kept for a resume)." : "Pull failed: " + e.message;
  } finally {
    pulling = null;
    $("pull").disabled = false;
    $("pull-cancel").hidden = true;
    $("pull-progress").hidden = true;
    refresh();
  }
}

export function setup(changed) {
  onChange = changed;
  $("open-models").addEventListener("click", () => { $("models").showModal(); refresh(); });
  $("pull-form").addEventListener("submit", startPull);
  $("pull-cancel").addEventListener("click", () => pulling && pulling.abort());
}
