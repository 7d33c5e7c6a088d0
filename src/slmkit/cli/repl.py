"""The interactive session of `slm run`: what `ollama run` users expect.

A line editor with history (prompt_toolkit), `\"\"\"` blocks over several lines, Ctrl-C that
stops the answer (the stream is closed, so the server cancels the request) and returns to
the prompt, and the slash commands: /set, /unset, /show, /load, /save, /clear, /bye, /?.

:class:`Session` holds the conversation and its settings and knows nothing of terminals: it
reads nothing and writes to the two streams it is given, so tests drive it with plain
strings; :func:`interactive` is the loop around a line reader.
"""

from __future__ import annotations

import base64
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from slmkit.answer import parameters
from slmkit.cli.wordwrap import NoWrap, WordWrap
from slmkit.client import Client
from slmkit.errors import ClientError, InvalidRequest
from slmkit.results import Completion

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".gif")
EFFORTS = ("low", "medium", "high")
BLOCK = '"""'

HELP = """Commands:
  /set            set a session variable (/? set)
  /unset          unset one (parameter NAME, system, format)
  /show           show the model's info, modelfile, parameters, system or template
  /load MODEL     switch to another model (the conversation starts over)
  /save MODEL     save this session as a new model: its system prompt, parameters and messages
  /clear          forget the conversation (the system prompt stays)
  /bye            leave (or Ctrl-D)
  /?, /help       this help; /? set, /? show, /? shortcuts for more

Begin a message with \"\"\" to write several lines; end it with \"\"\"."""

HELP_SET = """/set parameter NAME VALUE   a model parameter for this session (/set parameter alone lists them)
/set system TEXT            the system prompt (\"\"\" for several lines)
/set format json            answers in JSON; /unset format to stop
/set think [low|medium|high], /set nothink
                            let a thinking model reason (at that effort), or not
/set hidethinking, /set nohidethinking
                            hide or show the reasoning
/set verbose, /set quiet    print timings after each answer, or not
/set wordwrap, /set nowordwrap
                            wrap answers at word boundaries, or not
/set history, /set nohistory
                            keep what you type in the history file, or not (from now on)"""

HELP_SHOW = """/show info         architecture, size, context length, quantization, capabilities
/show license      the model's license
/show modelfile    the Modelfile that would recreate it with this session's settings
/show parameters   the model's parameters and this session's
/show system       the system prompt in use
/show template     the chat template"""

HELP_SHORTCUTS = """Ctrl-C        stop the answer (at the prompt: clear the line)
Ctrl-D        leave (on an empty line)
Up, Down      previous and next messages (kept across sessions)
Ctrl-R        search the history
Ctrl-A, Ctrl-E   start and end of the line
Ctrl-W, Ctrl-U   delete the word, the line before the cursor
Ctrl-L        clear the screen"""


@dataclass
class Settings:
    """What a session sends with each message; flags set them first, /set changes them."""

    model: str
    system: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    format: str | None = None
    think: bool | str | None = None
    hide_thinking: bool = False
    wordwrap: bool = True
    verbose: bool = False
    keep_alive: str | None = None
    history: bool = True  # lines typed are kept in the history file (/set nohistory: not)


def message(text: str, err: TextIO) -> dict[str, Any]:
    """A user message; the words that name image files become its images (as in `ollama run`)."""
    words, images = [], []
    for word in text.split():
        path = Path(word.strip("'\"")).expanduser()
        if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
            images.append(base64.b64encode(path.read_bytes()).decode())
            print(f"Added image '{path}'", file=err)
        else:
            words.append(word)
    if not images:
        return {"role": "user", "content": text}
    return {"role": "user", "content": " ".join(words), "images": images}


def timings(done: Completion, err: TextIO) -> None:
    print(
        f"prompt: {done.prompt_tokens} tokens in {done.prompt_eval_seconds:.3f}s, "
        f"output: {done.completion_tokens} tokens in {done.eval_seconds:.3f}s "
        f"({done.tokens_per_second:.1f} tok/s), load {done.load_seconds:.3f}s",
        file=err,
    )


class Session:
    def __init__(self, client: Client, settings: Settings, out: TextIO, err: TextIO) -> None:
        self.client = client
        self.settings = settings
        self.out = out
        self.err = err
        self.messages: list[dict[str, Any]] = []

    # -- a message and its answer ---------------------------------------------------------------
    def ask(self, text: str) -> Completion | None:
        """Send one message and stream the answer; a Ctrl-C (KeyboardInterrupt) or an error
        ends this answer only, and the unanswered message is not kept."""
        self.messages.append(message(text, self.err))
        try:
            done = self._stream()
        except KeyboardInterrupt:
            self.out.write("\n")
            self.messages.pop()
            return None
        except ClientError as exc:
            self.out.write("\n")
            print(f"Error: {exc}", file=self.err)
            self.messages.pop()
            return None
        if done is not None:
            self.messages.append({"role": "assistant", "content": done.text})
            if self.settings.verbose:
                timings(done, self.err)
        return done

    def _conversation(self) -> list[dict[str, Any]]:
        system = [{"role": "system", "content": self.settings.system}] if self.settings.system else []
        return [*system, *self.messages]

    def _stream(self) -> Completion | None:
        s = self.settings
        width = shutil.get_terminal_size().columns if self.out.isatty() else 0
        writer = WordWrap(self.out, width) if s.wordwrap and width else NoWrap(self.out)
        thinking, done = False, None
        chunks = self.client.chat(
            s.model, self._conversation(), stream=True, options=s.options or None,
            keep_alive=s.keep_alive, format=s.format, think=s.think,
        )  # fmt: skip
        try:
            for chunk in chunks:
                if chunk.thinking and not s.hide_thinking:
                    if not thinking:
                        writer.write(self._dim("Thinking...\n"))
                        thinking = True
                    writer.write(self._dim(chunk.thinking))
                if chunk.text:
                    if thinking:
                        writer.write(self._dim("\n...done thinking.\n\n"))
                        thinking = False
                    writer.write(chunk.text)
                done = chunk.done or done
        finally:
            writer.flush()
            chunks.close()  # a Ctrl-C closes the stream: the server cancels the request
        self.out.write("\n")
        return done

    def _dim(self, text: str) -> str:
        return f"\x1b[2m{text}\x1b[0m" if self.out.isatty() else text

    # -- slash commands ------------------------------------------------------------------------------
    def command(self, line: str) -> bool:
        """Carry out one /command; False when the session should end."""
        name, _, rest = line.strip().partition(" ")
        rest = rest.strip()
        name = name.lower()
        if name in {"/bye", "/exit", "/quit"}:
            return False
        try:
            handler = self._handlers().get(name)
            if handler is None:
                print(f"Unknown command '{name}'. Type /? for help", file=self.err)
            else:
                handler(rest)
        except (InvalidRequest, ClientError) as exc:
            print(f"Error: {exc}", file=self.err)
        return True

    def _handlers(self) -> dict[str, Callable[[str], None]]:
        return {
            "/?": self._help, "/help": self._help, "/set": self._set, "/unset": self._unset,
            "/show": self._show, "/load": self._load, "/save": self._save, "/clear": self._clear,
        }  # fmt: skip

    def _say(self, text: str) -> None:
        print(text, file=self.out)

    def _help(self, topic: str) -> None:
        pages = {"set": HELP_SET, "show": HELP_SHOW, "shortcuts": HELP_SHORTCUTS, "shortcut": HELP_SHORTCUTS}
        self._say(pages.get(topic.lower().lstrip("/"), HELP))

    def _clear(self, _: str) -> None:
        self.messages.clear()
        self._say("Cleared session context")

    def _set(self, rest: str) -> None:
        s = self.settings
        what, _, value = rest.partition(" ")
        what, value = what.lower(), value.strip()
        flags = {
            "verbose": ("verbose", True, "Set 'verbose' mode."),
            "quiet": ("verbose", False, "Set 'quiet' mode."),
            "wordwrap": ("wordwrap", True, "Set 'wordwrap' mode."),
            "nowordwrap": ("wordwrap", False, "Set 'nowordwrap' mode."),
            "hidethinking": ("hide_thinking", True, "Set 'hidethinking' mode."),
            "nohidethinking": ("hide_thinking", False, "Set 'nohidethinking' mode."),
            "nothink": ("think", False, "Set 'nothink' mode."),
            "history": ("history", True, "Set 'history' mode."),
            "nohistory": ("history", False, "Set 'nohistory' mode."),
        }
        if what in flags:
            attr, flag, said = flags[what]
            setattr(s, attr, flag)
            self._say(said)
        elif what == "parameter":
            self._set_parameter(value)
        elif what == "system":
            if not value:
                raise InvalidRequest("/set system: give the system prompt")
            s.system = value
            self._say("Set system message.")
        elif what == "format":
            if value.lower() != "json":
                raise InvalidRequest("/set format: only json (/unset format to stop)")
            s.format = "json"
            self._say("Set format to 'json' mode.")
        elif what == "think":
            if value and value.lower() not in EFFORTS:
                raise InvalidRequest(f"/set think: {value!r} is not one of {', '.join(EFFORTS)}")
            s.think = value.lower() or True
            self._say(f"Set 'think' mode{f' ({value.lower()})' if value else ''}.")
        else:
            self._say(HELP_SET)

    def _set_parameter(self, value: str) -> None:
        name, _, raw = value.partition(" ")
        if not name:
            rows = "\n".join(f"  {n:<18} {kind:<7} {doc}" for n, kind, _, doc in parameters.describe())
            self._say(f"/set parameter NAME VALUE, NAME one of:\n{rows}")
            return
        if not raw.strip():
            raise InvalidRequest(f"/set parameter {name}: give a value")
        p = parameters.lookup(name, "/set parameter ")
        if p.kind == "strings":  # stop strings: this value replaces the session's, as in Ollama
            self.settings.options.pop(p.name, None)
        parameters.add_line(self.settings.options, p.name, raw.strip(), "/set parameter ")
        self._say(f"Set parameter '{p.name}' to '{raw.strip()}'")

    def _unset(self, rest: str) -> None:
        what, _, value = rest.partition(" ")
        s = self.settings
        if what == "parameter" and value.strip():
            s.options.pop(parameters.lookup(value.strip(), "/unset parameter ").name, None)
            self._say(f"Unset parameter '{value.strip()}'")
        elif what == "system":
            s.system = None
            self._say("Cleared system message.")
        elif what == "format":
            s.format = None
            self._say("Disabled format.")
        else:
            self._say("/unset parameter NAME, /unset system, /unset format")

    def _show(self, what: str) -> None:
        data = self.client.show(self.settings.model)
        what = what.lower()
        if what == "info":
            from slmkit.cli.show import print_info

            print_info(data, self.out)
        elif what == "parameters":
            model = data.get("parameters") or "(none set by the model)"
            mine = "\n".join(f"{k:<18} {v}" for k, v in self.settings.options.items())
            self._say(f"Model parameters:\n{model}")
            if mine:
                self._say(f"\nThis session's:\n{mine}")
        elif what == "system":
            self._say(self.settings.system or data.get("system") or "No system message was specified.")
        elif what in {"template", "license"}:
            self._say(data.get(what) or f"No {what} was specified for this model.")
        elif what == "modelfile":
            self._say(self._modelfile(data))
        else:
            self._say(HELP_SHOW)

    def _modelfile(self, data: dict[str, Any]) -> str:
        """The model's Modelfile with this session's settings on top (what /save would make)."""
        from slmkit.modelfile import Modelfile, render_modelfile

        s = self.settings
        if not (s.system or s.options or self.messages):
            return str(data.get("modelfile", ""))
        return render_modelfile(
            Modelfile(from_=s.model, parameters=dict(s.options), system=s.system, messages=self._kept())
        )

    def _kept(self) -> list[dict[str, str]]:
        return [{"role": m["role"], "content": m["content"]} for m in self.messages]

    def _load(self, name: str) -> None:
        if not name:
            raise InvalidRequest("/load: give a model name")
        self.client.show(name)  # an unknown name: the server's error, the session unchanged
        self._say(f"Loading model '{name}'")
        self.client.load(name, self.settings.keep_alive)
        self.settings.model = name
        self.messages.clear()

    def _save(self, name: str) -> None:
        if not name:
            raise InvalidRequest("/save: give a name for the new model")
        s = self.settings
        kept = self._kept()
        self.client.create(
            name, **{"from": s.model}, system=s.system, parameters=s.options or None, messages=kept or None
        )
        self._say(f"Created new model '{name}'")


def read_message(read: Callable[[str], str]) -> str:
    """One message or command from ``read``: a line, or a \"\"\" block over several lines
    (the quotes removed). EOFError and KeyboardInterrupt pass through."""
    line = read(">>> ")
    if line.count(BLOCK) != 1:
        return line.replace(BLOCK, "") if line.count(BLOCK) == 2 else line
    lines = [line]
    while BLOCK not in (more := read("... ")):
        lines.append(more)
    lines.append(more)
    return "\n".join(lines).replace(BLOCK, "").strip()


def interactive(session: Session, read: Callable[[str], str]) -> int:
    """Messages and commands until /bye or Ctrl-D; Ctrl-C at the prompt clears the line."""
    while True:
        try:
            text = read_message(read).strip()
        except KeyboardInterrupt:
            print("Use Ctrl + d or /bye to exit.", file=session.err)
            continue
        except EOFError:
            session.out.write("\n")
            return 0
        if not text:
            continue
        if text.startswith("/") and not text.startswith("//"):
            if not session.command(text):
                return 0
            continue
        session.ask(text.removeprefix("/"))  # "//..." sends a message that starts with "/"


def terminal_reader(history: Path, settings: Settings | None = None) -> Callable[[str], str]:
    """prompt_toolkit's line editor, with history kept in ``history`` (Emacs keys, Ctrl-R
    search) while ``settings.history`` is on."""
    from prompt_toolkit import PromptSession
    from prompt_toolkit.history import FileHistory

    class Kept(FileHistory):
        def store_string(self, string: str) -> None:
            if settings is None or settings.history:
                super().store_string(string)

    history.parent.mkdir(parents=True, exist_ok=True)
    if not history.exists():  # what was typed is private: readable by its owner only
        history.touch(mode=0o600)
    prompt: PromptSession[str] = PromptSession(history=Kept(str(history)), enable_history_search=False)

    def read(label: str) -> str:
        placeholder = "Send a message (/? for help)" if label == ">>> " else ""
        return prompt.prompt(label, placeholder=placeholder)

    return read
