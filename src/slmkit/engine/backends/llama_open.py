"""Opening llama.cpp: its backend libraries (once per process), a model, a context, and
llama-cpp-python's high-level ``Llama``, with slmkit's parameters and errors. llama.py (the
serving backend) and llama_offline.py (quantize, scoring) open models only through here.
"""

from __future__ import annotations

import ctypes
import functools
from typing import Any

from slmkit.engine.backends import clean_message
from slmkit.errors import ModelLoadError
from slmkit.hardware import cpu_extra_buffers


def open_model(path: str) -> Any:
    """llama.cpp's model for a GGUF file, or ModelLoadError."""
    from llama_cpp import _internals

    try:
        return _internals.LlamaModel(path_model=path, params=model_params(), verbose=False)
    except (ValueError, RuntimeError, OSError) as exc:
        raise ModelLoadError(f"llama.cpp could not load the model: {clean_message(exc)}") from exc


def open_context(model: Any, params: Any) -> Any:
    """A context over ``model`` (closed on failure), or ModelLoadError."""
    from llama_cpp import _internals

    params.no_perf = True
    try:
        return _internals.LlamaContext(model=model, params=params, verbose=False)
    except (ValueError, RuntimeError) as exc:
        model.close()
        raise ModelLoadError(f"llama.cpp could not create a context: {clean_message(exc)}") from exc


@functools.cache
def cpu_backend() -> str:
    """Load llama.cpp's backends (once per process) and name the CPU backend's library.

    Built with GGML_BACKEND_DL (the portable image build), llama.cpp looks for its backend
    libraries beside the executable and in the working directory only, while the
    llama-cpp-python wheel puts them in ``site-packages/bin`` (its CMake installs backend
    modules as runtime files): with no device registered, they are loaded from there (or from
    beside libllama). The name tells which CPU variant llama.cpp chose for this CPU
    (``libggml-cpu-haswell.so``, ``-skylakex``, ``-sapphirerapids`` ...; ``libggml-cpu.so``
    for a build without variants); "" where the process's mappings cannot be read.
    """
    import os
    from pathlib import Path

    import llama_cpp  # noqa: F401 (loads libllama, and with it the libggml it uses)
    from llama_cpp import _ggml

    try:  # the wheel holds copies, not links: libggml.so (_ggml's) is another instance than
        # libggml.so.0 (libllama's), with a backend registry of its own
        lib = ctypes.CDLL("libggml.so.0", mode=os.RTLD_NOLOAD)
    except (OSError, AttributeError):
        lib = _ggml.libggml
    lib.ggml_backend_dev_count.restype = ctypes.c_size_t
    if lib.ggml_backend_dev_count() == 0:
        lib.ggml_backend_load_all_from_path.argtypes = [ctypes.c_char_p]
        here = Path(_ggml.libggml_base_path)
        for folder in (here, here.parent.parent / "bin", here.parent.parent / "lib"):
            if any(folder.glob("*ggml-cpu*")):
                lib.ggml_backend_load_all_from_path(str(folder).encode())
                break
        if lib.ggml_backend_dev_count() == 0:
            raise ModelLoadError(
                "llama.cpp found no CPU backend library (libggml-cpu*.so) beside libllama or in "
                "site-packages/bin: reinstall llama-cpp-python"
            )
    return mapped_library("libggml-cpu")


def mapped_library(prefix: str, maps: str = "/proc/self/maps") -> str:
    """The file name of the first library mapped into this process whose name starts with
    ``prefix`` ("" if none, or where there is no /proc)."""
    try:
        with open(maps, encoding="utf-8", errors="replace") as lines:
            for line in lines:
                name = line.rstrip("\n").rpartition("/")[2]
                if "/" in line and name.startswith(prefix) and ".so" in name:
                    return name
    except OSError:
        pass
    return ""


def model_params() -> Any:
    """llama.cpp's model parameters: its defaults, without the CPU extra buffer types where
    they crash (hardware.cpu_extra_buffers). Loads the backends first (:func:`cpu_backend`)."""
    import llama_cpp

    cpu_backend()
    params = llama_cpp.llama_model_default_params()
    params.use_extra_bufts = cpu_extra_buffers()
    return params


def high_level(**kwargs: Any) -> Any:
    """llama-cpp-python's ``Llama`` (the embedding context) with :func:`model_params`: it
    reads ``llama_model_default_params`` from its bindings module and has no argument for
    extra buffers, so that one function is ours while it is built."""
    import llama_cpp
    from llama_cpp import llama_cpp as bindings  # the module Llama reads it from

    defaults = bindings.llama_model_default_params
    bindings.llama_model_default_params = model_params  # which calls the package's, unpatched
    try:
        return llama_cpp.Llama(**kwargs)
    finally:
        bindings.llama_model_default_params = defaults
