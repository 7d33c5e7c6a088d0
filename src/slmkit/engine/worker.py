"""The worker process: owns one model and runs its EngineCore step loop.

Messages from the API process (tuples over a multiprocessing Pipe):
    ("generate", EngineRequest)        queue a generation
    ("abort", request_id)              stop one (client went away)
    ("embed", call_id, [texts], prio)  embeddings, answered with ("result", call_id, ...)
    ("rank", call_id, [(q, d)], prio, max_doc_tokens)  rerank scores of (query, document) pairs
    ("cancel_embed", call_id)          drop an embedding or rerank job (client went away)
    ("tokenize", call_id, text, special)   token ids (``special``: with BOS), answered at once
    ("detokenize", call_id, [ids])     the text of token ids, answered at once
    ("render", call_id, EngineRequest) the prompt's token ids (template rendered), at once
    ("shutdown",)                      close the model and exit
Messages to the API process:
    ("ready", ModelInfo) | ("load_error", SlmError)      once, after loading
    ("events", [(request_id, Event), ...])              after every step with output
    ("result", call_id, value) | ("result_error", call_id, SlmError)
    ("threads", n)                                      the thread count changed (engine/threads.py)

Each turn of the loop runs one generation step, then, when generation has had its share of
time, one bounded chunk of the oldest embedding job (engine/embeddings.py): neither kind of
work starves the other.

A native crash in llama.cpp (or ONNX Runtime) kills only this process; the API process sees the pipe close.
Any Python error on one request's path (its prompt, sampler, output, embedding, tokenize
call) ends that request alone (``errors.contain``); the process exits only for what is not
one request's fault: a native crash, a lost pipe, a shutdown.
"""

from __future__ import annotations

import signal
import time
from multiprocessing.connection import Connection
from typing import Any

from slmkit.engine.core import EngineCore
from slmkit.engine.embeddings import EmbeddingJobs
from slmkit.engine.threads import INTERVAL, ThreadGovernor
from slmkit.errors import SlmError, contain
from slmkit.pipe import Event, Failed, LoadSpec


def worker_main(conn: Connection, spec: LoadSpec, template: str | None, options: dict[str, Any]) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the API process decides when we stop
    from slmkit.engine.backends import open_backend

    try:
        backend = open_backend(spec)
        core = EngineCore(
            backend,
            template,
            max_waiting=int(options.get("max_waiting", 512)),
            template_timeout=float(options.get("template_timeout", 1.0)),
            draft_tokens=spec.draft_tokens,
        )
    except SlmError as exc:
        conn.send(("load_error", exc))
        return
    conn.send(("ready", backend.info))
    # automatic threads adapt to the machine's load, where the backend can change them
    governor = ThreadGovernor.for_backend(spec.n_threads, backend)
    try:
        _loop(conn, core, governor)
    except (EOFError, OSError, KeyboardInterrupt):
        pass  # the API process went away
    finally:
        backend.close()


def _loop(conn: Connection, core: EngineCore, governor: ThreadGovernor | None = None) -> None:
    embeddings = EmbeddingJobs(core.backend)
    while True:
        threads = governor.adjust(core.backend) if governor is not None else None
        if threads is not None:
            conn.send(("threads", threads))
        if core.has_work or embeddings.pending:
            while conn.poll():
                if not _handle(conn, core, embeddings, conn.recv()):
                    return
        elif governor is not None and not conn.poll(INTERVAL):
            continue  # idle: the governor keeps sampling, so a request starts with the threads that fit
        elif not _handle(conn, core, embeddings, conn.recv()):
            return
        started = time.perf_counter()
        events = core.step()
        embeddings.credit(time.perf_counter() - started)
        if governor is not None and core.stalled:
            governor.stalled()
        if events:
            conn.send(("events", events, core.kv_tokens, core.scheduler.preemptions))
        if embeddings.due(generating=core.has_work):
            reply = embeddings.step()
            if reply is not None:
                conn.send(reply)


# Calls answered at once, between steps: message kind -> (EngineCore method, what failed)
CALLS = {
    "tokenize": ("tokenize", "tokenizing"),
    "detokenize": ("detokenize", "detokenizing"),
    "render": ("render", "rendering"),
}


def _handle(conn: Connection, core: EngineCore, embeddings: EmbeddingJobs, message: tuple[Any, ...]) -> bool:
    kind = message[0]
    if kind == "generate":
        request = message[1]
        try:
            core.add_request(request)
        except SlmError as exc:
            failed: list[tuple[str, Event]] = [(request.request_id, Failed(exc))]
            conn.send(("events", failed))
    elif kind == "abort":
        events = core.abort(message[1])
        if events:
            conn.send(("events", events))
    elif kind == "embed":
        embeddings.add(message[1], message[2], message[3])
    elif kind == "rank":
        embeddings.add_rank(message[1], message[2], message[3], message[4])
    elif kind == "cancel_embed":
        embeddings.cancel(message[1])
    elif kind in CALLS:
        method, stage = CALLS[kind]
        try:
            value: Any = getattr(core, method)(*message[2:])
        except Exception as exc:  # one request's boundary (errors.contain)
            conn.send(("result_error", message[1], contain(exc, stage)))
        else:
            conn.send(("result", message[1], value))
    elif kind == "shutdown":
        return False
    return True
