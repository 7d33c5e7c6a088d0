"""GGUF (llama.cpp) against ONNX (ONNX Runtime) builds of one model, speed and quality in one run.

SmolLM2-135M: the shipped Q4_1 GGUF is dequantized to a Hugging Face folder (transformers), then
converted both ways from that one folder: `slm convert --outtype f16` (the reference) and
`slm quantize --to Q4_0` for GGUF; `slm convert --to onnx --precision int4|int8` for ONNX.
`slm eval --reference` gives each build's perplexity, KL divergence and top-1 agreement
against the f16 reference; `slm bench` serves the GGUF and ONNX 4-bit builds side by side
(1/4/8 clients, one thread each, interleaved). Note the reference was itself Q4_1: the
shipped Q4_1 scores near-perfectly against it; the builds quantized again (Q4_0, int4) show
what a 4-bit round trip costs.

    python benchmarks/onnx_vs_gguf.py [--out benchmarks/results/onnx-vs-gguf]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUILDS = [  # (model name, what it is)
    ("smollm2:135m", "GGUF Q4_1 (shipped)"),
    ("smol:q4_0", "GGUF Q4_0 (from f16)"),
    ("smol-onnx:int4", "ONNX int4 (from f16)"),
    ("smol-onnx:int8", "ONNX int8 (from f16)"),
]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/onnx-vs-gguf"))
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        env = {**os.environ, "SLM_MODELS": str(work / "store"), "SLM_NUM_THREADS": str(args.threads)}

        def slm(*argv: str) -> str:
            done = subprocess.run(
                [sys.executable, "-m", "slmkit", *argv], env=env, capture_output=True, text=True, check=False
            )
            if done.returncode != 0:
                raise SystemExit(f"slm {' '.join(argv)}: {done.stderr[-2000:]}")
            return done.stdout

        sys.path.insert(0, str(ROOT))
        from tests.hf_export import export_hf

        from slmkit.store.default import packaged_path

        gguf = Path(packaged_path())
        slm("import", "smollm2:135m", str(gguf))
        export_hf(gguf, work / "hf")
        slm(
            "convert",
            str(work / "hf"),
            "--outtype",
            "f16",
            "--out",
            str(work / "f16.gguf"),
            "--name",
            "smol:f16",
        )
        slm("quantize", "smol:f16", "--to", "Q4_0", "--name", "smol:q4_0")
        for precision in ("int4", "int8"):
            slm(
                "convert", str(work / "hf"), "--to", "onnx", "--precision", precision,
                "--out", str(work / f"onnx-{precision}"), "--name", f"smol-onnx:{precision}",
            )  # fmt: skip
        quality = []
        for name, what in BUILDS:
            result = json.loads(
                slm("eval", name, "--reference", "smol:f16", "--threads", str(args.threads), "--json")
            )
            quality.append({"build": what, **result})
        (out / "quality.json").write_text(json.dumps(quality, indent=2))
        rows = [
            "| build | size MB | ppl | ppl / f16 | KLD | top-1 agree | decode tok/s (scorer, 1 stream) |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in quality:
            p = r["perplexity"]
            rows.append(
                f"| {r['build']} | {r['size'] / 1e6:.1f} | {p['ppl']:.2f} | {p['ppl_ratio']:.3f} | "
                f"{p['kld']:.4f} | {p['top1_agreement']:.3f} | {r['tok_s']:.1f} |"
            )
        (out / "quality.md").write_text(
            f"# Quality against the f16 reference (`slm eval --reference`, {args.threads} thread)\n\n"
            + "\n".join(rows)
            + "\n"
        )
        print("\n".join(rows))
        print(
            slm(
                "bench",
                "slm://smol:q4_0",
                "slm://smol-onnx:int4",
                "slm://smollm2:135m",
                "--concurrency",
                "1,4,8",
                "--num-requests",
                "16",
                "--output-tokens",
                "64",
                "--out",
                str(out),
            )
        )


if __name__ == "__main__":
    main()
