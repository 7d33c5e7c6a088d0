"""Offline test models: tiny random-weight Hugging Face folders built from configs in seconds,
cached between test runs, for `slm convert` (llama.cpp's converter) to turn into GGUF.

    from tests.tiny_models import build
    folder = build("phi3")            # -> Path of a Hugging Face model folder

No hub is reachable here and no small cross-encoder ships as a package, so each architecture
gets a model of its real class (transformers) with random weights and a vocabulary trained
offline on a fixed corpus: byte-level BPE (`tokenizers`) for the GPT-2-style vocabularies,
SentencePiece for Gemma. Each vocabulary carries the special tokens llama.cpp's loader looks
up for its architecture (a Phi-3 vocabulary without ``<|end|>`` fails to load). A vocabulary
trained anew has no pre-tokenizer llama.cpp's converter recognises, so ``PRE_TOKENIZER`` says
which one it uses (GPT-2's split, ByteLevel with its regex) and `slm convert --pre-tokenizer`
passes it on.

Folders are cached under ``$XDG_CACHE_HOME/slmkit-tests/tiny-models/`` (else ``~/.cache``),
keyed by the architecture, this file's text and the transformers version, and written
atomically (built beside, renamed into place).

    python -m tests.tiny_models phi3 gemma3 ...   # build (or find) and print their folders
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PRE_TOKENIZER = "gpt-2"  # what the BPE vocabularies below split text with
VOCAB = 512
SEED = 0
WEIGHT_STD = 0.2  # large enough that greedy choices are not near-ties


def _corpus() -> Iterator[str]:
    """A fixed text with every printable ASCII character, words, numbers and code."""
    words = [
        "the",
        "quick",
        "brown",
        "fox",
        "jumps",
        "over",
        "the",
        "lazy",
        "dog",
        "while",
        "small",
        "language",
        "models",
        "run",
        "on",
        "local",
        "machines",
        "and",
        "answer",
        "questions",
        "about",
        "cities",
        "rivers",
        "numbers",
        "code",
        "and",
        "music",
        "def",
        "return",
        "import",
        "class",
        "for",
        "while",
        "if",
        "else",
        "print",
        "value",
        "list",
        "dict",
    ]
    for i in range(400):
        line = " ".join(words[(i * 7 + j * 3) % len(words)] for j in range(12))
        yield f"{line} {i} {i * 37 % 1000}. {line.capitalize()}!"
    for i in range(100):  # paragraphs: "\n\n" is one token (SmolVLM's image slicing needs it)
        yield f"Paragraph {i}.\n\nNext line {i}\nend.\n\n"
    yield "".join(chr(c) for c in range(32, 127))
    yield "Paris is the capital of France. The capital of Italy is Rome.\n\tdef f(x):\n    return x"


@dataclass(frozen=True)
class Spec:
    architecture: str  # config.json architectures[0]
    model_type: str
    vocab: str  # "bpe" or "spm"
    specials: tuple[str, ...]
    config: dict[str, Any] = field(default_factory=dict)
    tokenizer_config: dict[str, Any] = field(default_factory=dict)
    head: str = "causal"  # causal, sequence-classification, vision


CHATML = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
VISION_SPECIALS = (
    *CHATML, "<end_of_utterance>", "<image>", "<fake_token_around_image>", "<global-img>",
    *(f"<row_{r}_col_{c}>" for r in range(1, 7) for c in range(1, 7)),
)  # fmt: skip
_DECODER = {
    "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
    "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 512,
    "tie_word_embeddings": False,
}  # fmt: skip
_BPE_CHATML = {
    "bos_token": "<|endoftext|>",
    "eos_token": "<|im_end|>",
    "tokenizer_class": "PreTrainedTokenizerFast",
}

SPECS: dict[str, Spec] = {
    "llama": Spec("LlamaForCausalLM", "llama", "bpe", CHATML, {}, _BPE_CHATML),
    "mistral": Spec("MistralForCausalLM", "mistral", "bpe", CHATML, {"sliding_window": None}, _BPE_CHATML),
    "qwen2": Spec("Qwen2ForCausalLM", "qwen2", "bpe", CHATML, {}, _BPE_CHATML),
    "qwen3": Spec("Qwen3ForCausalLM", "qwen3", "bpe", CHATML, {"head_dim": 32}, _BPE_CHATML),
    # as Phi-4-mini: a GPT-2 tokenizer with Phi's chat tokens, partial rotary embeddings; and
    # as Phi-3, <s> </s> <unk>, which llama.cpp's loader looks up in any model named "phi3"
    "phi3": Spec(
        "Phi3ForCausalLM",
        "phi3",
        "bpe",
        ("<|endoftext|>", "<|end|>", "<|user|>", "<|assistant|>", "<|system|>", "<s>", "</s>", "<unk>"),
        {"partial_rotary_factor": 0.75, "rope_scaling": None},
        {"bos_token": "<|endoftext|>", "eos_token": "<|end|>", "tokenizer_class": "GPT2Tokenizer"},
    ),
    # as Gemma 3: SentencePiece, five sliding-window layers to one global (llama.cpp's fixed
    # pattern: the GGUF does not record it)
    "gemma3": Spec(
        "Gemma3ForCausalLM",
        "gemma3_text",
        "spm",
        ("<start_of_turn>", "<end_of_turn>"),
        {
            "head_dim": 16,
            "query_pre_attn_scalar": 16,
            "sliding_window": 16,
            "num_hidden_layers": 6,
            "layer_types": ["sliding_attention"] * 5 + ["full_attention"],
            "tie_word_embeddings": True,
        },
        {
            "bos_token": "<bos>",
            "eos_token": "<eos>",
            "pad_token": "<pad>",
            "unk_token": "<unk>",
            "tokenizer_class": "GemmaTokenizer",
            "add_bos_token": True,
        },
    ),
    # as bge-reranker: RoBERTa with one relevance logit, type_vocab_size 1
    "roberta-reranker": Spec(
        "RobertaForSequenceClassification",
        "roberta",
        "bpe",
        ("<s>", "<pad>", "</s>", "<unk>", "<mask>"),
        {
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "max_position_embeddings": 130,
            "type_vocab_size": 1,
            "num_labels": 1,
            "pad_token_id": 1,
            "bos_token_id": 0,
            "eos_token_id": 2,
        },
        {
            "bos_token": "<s>",
            "eos_token": "</s>",
            "sep_token": "</s>",
            "cls_token": "<s>",
            "pad_token": "<pad>",
            "unk_token": "<unk>",
            "mask_token": "<mask>",
            "tokenizer_class": "RobertaTokenizer",
        },
        head="sequence-classification",
    ),
    # as SmolVLM (Idefics3): a SigLIP-style vision tower, a pixel-shuffle connector and a Llama
    # text model; the processor's files (preprocessor_config.json) go with it
    "smolvlm": Spec(
        "Idefics3ForConditionalGeneration",
        "idefics3",
        "bpe",
        VISION_SPECIALS,
        {
            "text_config": {
                "model_type": "llama",
                "architectures": ["VLlama3ForCausalLM"],
                **_DECODER,
                "max_position_embeddings": 1024,
            },
            "vision_config": {
                "hidden_size": 32,
                "intermediate_size": 64,
                "num_hidden_layers": 2,
                "num_attention_heads": 2,
                "image_size": 64,
                "patch_size": 16,
            },
            "scale_factor": 2,
        },
        _BPE_CHATML | {"eos_token": "<end_of_utterance>"},
        head="vision",
    ),
}


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "slmkit-tests" / "tiny-models"


def build(name: str) -> Path:
    """The Hugging Face folder of the tiny model ``name`` (a key of SPECS), built on first use."""
    import transformers

    spec = SPECS[name]
    key = hashlib.sha256(
        Path(__file__).read_bytes() + transformers.__version__.encode() + name.encode()
    ).hexdigest()[:12]
    folder = cache_dir() / f"{name}-{key}"
    if (folder / "config.json").is_file():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder.parent, prefix=f".{name}-") as tmp:
        stage = Path(tmp) / "model"
        stage.mkdir()
        _BUILDERS[spec.vocab](stage, spec)
        _model(stage, spec)
        try:
            stage.rename(folder)
        except OSError:
            if not (folder / "config.json").is_file():
                raise
    return folder


def convert(folder: Path, out: Path, *extra: str) -> Path:
    """``slm convert`` of a folder ``build`` made (its vocabulary's pre-tokenizer stated)."""
    import subprocess

    done = subprocess.run(
        [sys.executable, "-m", "slmkit", "convert", str(folder), "--pre-tokenizer", PRE_TOKENIZER, *extra,
         "--out", str(out)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-1500:]
    return out


def load(folder: Path) -> Any:
    """The transformers model of a folder ``build`` made, float32, in eval mode."""
    import torch
    import transformers

    config = json.loads((folder / "config.json").read_text())
    cls = getattr(transformers, config["architectures"][0])
    return cls.from_pretrained(str(folder), dtype=torch.float32).eval()


def _model(stage: Path, spec: Spec) -> None:
    import torch
    import transformers
    from transformers import AutoConfig, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(stage))
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in tokenizer.all_special_tokens}
    base = dict(_DECODER) if spec.head == "causal" else {}
    base["vocab_size"] = len(tokenizer)
    if spec.head == "vision":
        base = {"image_token_id": tokenizer.convert_tokens_to_ids("<image>"), "vocab_size": len(tokenizer)}
        spec = dataclasses.replace(
            spec,
            config=spec.config | {"text_config": spec.config["text_config"] | {"vocab_size": len(tokenizer)}},
        )
    if spec.head == "causal":
        bos = spec.tokenizer_config.get("bos_token")
        eos = spec.tokenizer_config.get("eos_token")
        base |= {"bos_token_id": ids.get(bos), "eos_token_id": ids.get(eos), "pad_token_id": ids.get(eos)}
    config = AutoConfig.for_model(spec.model_type, **(base | spec.config))
    config.architectures = [spec.architecture]
    torch.manual_seed(SEED)
    model = getattr(transformers, spec.architecture)(config).to(torch.float32)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name.lower() and name.endswith("weight"):
                p.uniform_(0.8, 1.2)  # as trained norms: near one (Gemma stores w - 1: near 0)
                if spec.model_type.startswith("gemma"):
                    p.sub_(1.0)
            else:
                p.normal_(0, WEIGHT_STD)
    model.eval().save_pretrained(str(stage))
    if spec.head == "vision":
        _processor(stage, config)


def _processor(stage: Path, config: Any) -> None:
    """SmolVLM's processor files: one image of ``image_size`` pixels, not split into tiles."""
    from transformers import AutoTokenizer, Idefics3ImageProcessor, Idefics3Processor

    size = config.vision_config.image_size
    images = Idefics3ImageProcessor(
        size={"longest_edge": size}, max_image_size={"longest_edge": size}, do_image_splitting=False
    )
    tokens = (size // config.vision_config.patch_size) ** 2 // config.scale_factor**2
    Idefics3Processor(
        images, AutoTokenizer.from_pretrained(str(stage)), image_seq_len=tokens
    ).save_pretrained(str(stage))


def _bpe(stage: Path, spec: Spec) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB,
        special_tokens=list(spec.specials),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(_corpus(), trainer)
    if spec.head == "sequence-classification":  # RoBERTa's <s> A </s></s> B </s>
        tok.post_processor = processors.RobertaProcessing(
            ("</s>", tok.token_to_id("</s>")), ("<s>", tok.token_to_id("<s>")), trim_offsets=False
        )
    else:
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    tok.save(str(stage / "tokenizer.json"))
    _write_tokenizer_config(stage, spec)


def _spm(stage: Path, spec: Spec) -> None:
    import sentencepiece as spm

    spm.SentencePieceTrainer.train(
        sentence_iterator=_corpus(), model_prefix=str(stage / "tokenizer"), vocab_size=VOCAB,
        model_type="bpe", pad_id=0, eos_id=1, bos_id=2, unk_id=3, pad_piece="<pad>", eos_piece="<eos>",
        bos_piece="<bos>", unk_piece="<unk>", user_defined_symbols=list(spec.specials), byte_fallback=True,
        character_coverage=1.0, minloglevel=2,
    )  # fmt: skip
    (stage / "tokenizer.vocab").unlink()
    _write_tokenizer_config(stage, spec)
    from transformers import AutoTokenizer

    AutoTokenizer.from_pretrained(str(stage)).save_pretrained(str(stage))  # adds tokenizer.json


def _write_tokenizer_config(stage: Path, spec: Spec) -> None:
    config = {"model_max_length": 512, "clean_up_tokenization_spaces": False} | spec.tokenizer_config
    (stage / "tokenizer_config.json").write_text(json.dumps(config, indent=2))


_BUILDERS: dict[str, Callable[[Path, Spec], None]] = {"bpe": _bpe, "spm": _spm}


if __name__ == "__main__":
    for arg in sys.argv[1:] or list(SPECS):
        print(build(arg))
    shutil.disk_usage(cache_dir())  # the cache exists
