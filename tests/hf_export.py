"""Test helper: a GGUF turned into a Hugging Face model folder through transformers' own GGUF
loading (dequantized to float32), as `slm convert` would find it on the Hub."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any


def export_hf(gguf_path: Path, out: Path) -> Any:
    """Write config.json, model.safetensors and the tokenizer files; return the transformers model."""
    import torch
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    stage = out.parent / "gguf-stage"
    stage.mkdir(parents=True, exist_ok=True)
    shutil.copy(gguf_path, stage / gguf_path.name)
    model = AutoModelForCausalLM.from_pretrained(str(stage), gguf_file=gguf_path.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(str(stage), gguf_file=gguf_path.name)
    shutil.rmtree(stage)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    if model.config.tie_word_embeddings:
        state.pop("lm_head.weight", None)
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    config = model.config.to_dict()
    config.pop("quantization_config", None)
    config["architectures"] = [type(model).__name__]  # as a Hub folder names it (the ONNX builder needs it)
    (out / "config.json").write_text(json.dumps(config, indent=2))
    tokenizer.save_pretrained(str(out))
    model.eval()
    return model
