"""How much each quantization type gains from batching on this CPU: aggregate decode speed of
8 sequences over 1 (llama-cpp-python's low-level API, greedy, 2 threads), per type, measured
in interleaved rounds. `slm recommend` uses these gains (src/slmkit/optimize/quants.py).

    .venv/bin/python benchmarks/quant_batching.py [--model smollm2|gemma] [--types Q8_0,Q4_0,...]

Types are made from the shipped GGUF with llama.cpp's quantizer (requantizing: the values are
worse than from F16, but speed depends only on the type). Rows whose width is not a multiple
of 256 fall back from K-quants to Q5_0/Q8_0 (SmolLM2: 576, Gemma 3 270M: 640): the table names
the file types as llama.cpp wrote them.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from serving import model_file, reference

from slmkit.engine.backends.llama_offline import quantize
from slmkit.optimize.quants import file_type_id
from slmkit.store.gguf_info import read_info


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="smollm2", choices=["smollm2", "gemma"])
    parser.add_argument("--types", default="F16,Q8_0,Q6_K,Q5_K_M,Q4_K_M,Q4_0,Q4_1,IQ4_NL,Q2_K")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=48)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    source = model_file(args.model)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for quant in args.types.split(","):
            path = Path(tmp) / f"{quant}.gguf"
            quantize(source, path, file_type_id(quant), threads=args.threads, allow_requantize=True)
            mix = read_info(path).tensor_bytes
            one, eight = [], []
            for _ in range(args.rounds):  # interleaved: both sizes see the same machine load
                one.append(reference(str(path), args.threads, 1, args.tokens)["decode_tok_s"])
                eight.append(reference(str(path), args.threads, 8, args.tokens)["decode_tok_s"])
            b1, b8 = max(one), max(eight)
            main_type = max(mix, key=lambda k: mix[k])
            rows.append({"type": quant, "bytes": sum(mix.values()), "main_tensor_type": main_type,
                         "mix": mix, "b1_tok_s": round(b1, 1), "b8_tok_s": round(b8, 1),
                         "gain": round(b8 / b1, 2)})  # fmt: skip
            print(f"{quant:8} ({main_type:6} most bytes) B=1 {b1:6.1f} tok/s  B=8 {b8:6.1f} tok/s", end="")
            print(f"  gain {b8 / b1:.2f}x")
    out = Path(__file__).parent / "results" / f"quant-batching-{args.model}.json"
    out.write_text(json.dumps({"model": args.model, "threads": args.threads, "rows": rows}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
