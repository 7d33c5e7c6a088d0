// Conversations kept in this browser (localStorage), newest first: each has an id, a title,
// the model it used and its messages ({role, text, files?, image?, meta?, failed?}).

const KEY = "slmkit.conversations";
const CURRENT = "slmkit.current";

export function all() {
  try {
    const list = JSON.parse(localStorage.getItem(KEY) || "[]");
    return Array.isArray(list) ? list.filter((c) => c && typeof c.id === "string" && Array.isArray(c.messages)) : [];
  } catch {
    return [];
  }
}

// Save every conversation; false when the browser's storage is full.
export function save(list) {
  try {
    localStorage.setItem(KEY, JSON.stringify(list));
    return true;
  } catch {
    return false;
  }
}

export function fresh(model) {
  return { id: crypto.randomUUID(), title: "New chat", model, messages: [], updated: Date.now() };
}

export const currentId = () => localStorage.getItem(CURRENT);
export const setCurrent = (id) => localStorage.setItem(CURRENT, id);

// A title from the first message: its first line, cut at 48 characters.
export function titleOf(text) {
  const line = text.trim().split("\n")[0];
  return line.length > 48 ? line.slice(0, 47) + "…" : line || "New chat";
}
