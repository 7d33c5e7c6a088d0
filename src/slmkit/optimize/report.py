"""Tables, JSON and the size/quality/speed chart of `slm quantize` and `slm eval`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from slmkit import jsonout
from slmkit.units import human


def row(result: dict[str, Any]) -> list[str]:
    """One table row from a result dict (see cli/quality.py for its keys)."""
    ppl = result.get("perplexity") or {}
    ratio = ppl.get("ppl_ratio")
    return [
        result["model"],
        result.get("type", ""),
        human(result["size"]) if result.get("size") else "-",
        f"{result['bits_per_weight']:.2f}" if result.get("bits_per_weight") else "-",
        f"{ppl['ppl']:.2f}±{ppl['ppl_error']:.2f}" if ppl else "-",
        f"{ratio - 1:+.2%}" if ratio is not None else "-",
        f"{ppl['kld']:.4f}" if ppl.get("kld") is not None else "-",
        f"{ppl['top1_agreement']:.1%}" if ppl.get("top1_agreement") is not None else "-",
        f"{result['tok_s']:.1f}" if result.get("tok_s") else "-",
        result.get("status", ""),
    ]


HEADERS = ["MODEL", "TYPE", "SIZE", "BITS/W", "PPL", "ΔPPL", "KLD", "TOP-1", "TOK/S", "STATUS"]


def write_json(out: Path, name: str, data: Any) -> Path:
    return jsonout.write(out / name, data)


def sweep_chart(results: list[dict[str, Any]], path: Path) -> Path | None:
    """Size vs perplexity change and vs decode speed, one point per quant type."""
    points = [r for r in results if r.get("size") and (r.get("perplexity") or {}).get("ppl_ratio")]
    if len(points) < 2:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for r in points:
        size = r["size"] / 2**20
        change = 100 * (r["perplexity"]["ppl_ratio"] - 1)
        left.scatter(size, change, color="tab:blue")
        left.annotate(r["type"], (size, change), textcoords="offset points", xytext=(4, 4))
        if r.get("tok_s"):
            right.scatter(size, r["tok_s"], color="tab:green")
            right.annotate(r["type"], (size, r["tok_s"]), textcoords="offset points", xytext=(4, 4))
    left.set(xlabel="size (MiB)", ylabel="perplexity change vs source (%)", title="quality")
    right.set(xlabel="size (MiB)", ylabel="decode tok/s (1 stream)", title="speed")
    for ax in (left, right):
        ax.grid(alpha=0.3)
    fig.suptitle(f"{points[0].get('source', '')}: quantization sweep")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
