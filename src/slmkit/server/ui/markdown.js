// An answer's Markdown as sanitised HTML: marked (GFM) parses it, raw HTML in the text is
// shown as text, DOMPurify removes anything executable that is left (event handlers,
// javascript: and other non-http links, scripts, forms, frames), highlight.js colours the
// code blocks, and each block gets a copy button. The page's CSP (no inline script) is the
// third wall. Links open in a new tab without a referrer.

const escapeHtml = (s) => s.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);

let parser = null;
function markdown() {
  if (parser) return parser;
  parser = new window.marked.Marked({ gfm: true, breaks: true, async: false });
  parser.use({ renderer: { html: (token) => escapeHtml(token.text) } });
  window.DOMPurify.addHook("afterSanitizeAttributes", (node) => {
    if (node.tagName === "A") {
      node.setAttribute("target", "_blank");
      node.setAttribute("rel", "noopener noreferrer");
    }
  });
  return parser;
}

const PURIFY = {
  USE_PROFILES: { html: true },
  FORBID_TAGS: ["style", "form", "input", "button", "textarea", "select", "iframe", "object", "embed"],
  FORBID_ATTR: ["style", "srcset"],
  ALLOWED_URI_REGEXP: /^(?:https?:|mailto:|#|\/(?!\/))/i,
};

export function html(text) {
  return window.DOMPurify.sanitize(markdown().parse(text), PURIFY);
}

// Put `text` into `element` as rendered Markdown, with highlighted, copyable code blocks.
export function render(element, text) {
  element.innerHTML = html(text);
  for (const code of element.querySelectorAll("pre > code")) {
    const language = [...code.classList].find((c) => c.startsWith("language-"));
    const known = language ? window.hljs.getLanguage(language.slice(9)) : code.textContent.trim();
    if (known) window.hljs.highlightElement(code);  // no class: guessed; an unknown one: left plain
    const button = document.createElement("button");
    button.type = "button";
    button.className = "copy-code";
    button.textContent = "Copy";
    button.addEventListener("click", () => copy(code.textContent, button));
    code.parentElement.prepend(button);
  }
}

export async function copy(text, button) {
  try {
    await navigator.clipboard.writeText(text);
    if (button) { button.textContent = "Copied"; setTimeout(() => { button.textContent = "Copy"; }, 1500); }
  } catch {
    if (button) button.textContent = "Copy failed";
  }
}
