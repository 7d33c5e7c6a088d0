"""The catalog's schema, the memory estimator's arithmetic, and recommendations, without weights."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from slmkit.errors import InvalidRequest, NotFound
from slmkit.hardware import Gpu, Machine
from slmkit.models.memory import MiB, Shape, estimate_shape
from slmkit.optimize.catalog import load_catalog, parse_catalog, tier_of
from slmkit.optimize.recommend import Speed, batch_gain, recommend, speed_from_bench
from slmkit.optimize.sizing import fit_catalog

GiB = 1024 * MiB
REQUIRED = {
    "smollm2-135m", "smollm2-360m", "smollm2-1.7b", "qwen3-0.6b", "qwen3-1.7b", "qwen3-4b",
    "qwen3-8b", "qwen3-14b", "qwen3-30b-a3b", "gemma3-270m", "gemma3-1b", "gemma3-4b",
    "gemma3-12b", "gemma3-27b", "phi4-mini", "phi4", "llama3.2-1b", "llama3.2-3b", "mistral-7b",
    "bitnet-b1.58-2b4t",
}  # fmt: skip


def machine(ram: int = 16 * GiB, cores: int = 2, gpus: tuple[Gpu, ...] = ()) -> Machine:
    return Machine(ram, ram, None, cores, cores, "test cpu", ("avx2",), gpus)


def test_catalog_has_the_models_the_issue_names_with_consistent_tiers() -> None:
    catalog = load_catalog()
    assert len(catalog.models) >= 25
    assert {m.id for m in catalog.models} >= REQUIRED
    tiers = {m.id: m.tier for m in catalog.models}
    assert tiers["smollm2-135m"] == tiers["llama3.2-1b"] == "micro"
    assert tiers["qwen3-4b"] == tiers["qwen2.5-1.5b"] == "small"
    assert tiers["qwen3-14b"] == tiers["qwen3-30b-a3b"] == tiers["gemma3-27b"] == "medium"
    for m in catalog.models:
        assert m.heads * m.head_dim >= m.hidden // 2, m.id  # dimensions are plausible
        assert all(q.pull for q in m.quants.values())


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ({"kv_heads": 4}, "multiple of kv_heads"),
        ({"quants": {"Q9_X": {"pull": "x"}}}, "unknown quant"),
        ({"params": 10}, "embeddings alone"),
        ({"params": 40_000_000_000}, "beyond the medium tier"),
        ({"layers": 0}, "greater than 0"),
        ({"surprise": 1}, "Extra inputs"),
    ],
)
def test_invalid_catalog_entries_are_refused_naming_the_problem(
    edit: dict[str, object], message: str
) -> None:
    import yaml

    entry = load_catalog().get("smollm2-135m").model_dump() | edit
    with pytest.raises(InvalidRequest, match=message):
        parse_catalog(yaml.safe_dump({"models": [entry]}))


def test_catalog_lookup_by_id_or_ollama_name_and_a_clear_miss() -> None:
    catalog = load_catalog()
    assert catalog.get("gemma3:270m").id == "gemma3-270m"
    with pytest.raises(NotFound, match="did you mean"):
        catalog.get("qwen3-3b")
    assert tier_of(1_499_999_999) == "micro" and tier_of(1_500_000_000) == "small"


def test_kv_cache_is_layers_x_heads_x_dims_x_context_and_scales_with_slots_and_type() -> None:
    shape = Shape(layers=30, hidden=576, ffn=1536, heads=9, kv_heads=3, key_length=64,
                  value_length=64, vocab=49152, context=8192)  # fmt: skip
    one = estimate_shape(shape, 100 * MiB, 0, 2048)
    assert one.kv_cache == 30 * 3 * (64 + 64) * 2048 * 2
    assert estimate_shape(shape, 100 * MiB, 0, 2048, 4).kv_cache == 4 * one.kv_cache
    assert estimate_shape(shape, 100 * MiB, 0, 2048, kv_type="q8_0").kv_cache == one.kv_cache * 34 // 64
    capped = estimate_shape(shape, 100 * MiB, 0, 100_000)
    assert capped.n_ctx == 8192 and capped.kv_cache == 4 * one.kv_cache
    with pytest.raises(InvalidRequest, match="kv type"):
        estimate_shape(shape, 1, 0, 512, kv_type="q3")
    repacked = estimate_shape(shape, 100 * MiB, 10 * MiB, 2048)
    assert repacked.total - one.total == 10 * MiB and repacked.required == one.required


def test_sliding_window_layers_hold_their_window_and_a_batch_per_slot() -> None:
    gemma = Shape(layers=18, hidden=640, ffn=2048, heads=4, kv_heads=1, key_length=256, value_length=256,
                  vocab=262144, context=32768, swa_layers=15, swa_window=512)  # fmt: skip
    per_layer = 1 * (256 + 256) * 2  # bytes per token per layer, f16
    trimmed = estimate_shape(gemma, 100 * MiB, 0, 4096, 4)
    assert trimmed.kv_cache == 4 * per_layer * (3 * 4096 + 15 * 1024)  # 512 + 512 rounded to 256
    full = estimate_shape(gemma, 100 * MiB, 0, 4096, 4, swa_full=True)
    assert full.kv_cache == 4 * per_layer * 18 * 4096
    small = estimate_shape(gemma, 100 * MiB, 0, 512, 1)  # a window wider than the context
    assert small.kv_cache == per_layer * 18 * 512


def test_a_shared_pool_holds_its_cells_whatever_the_slots() -> None:
    shape = Shape(layers=30, hidden=576, ffn=1536, heads=9, kv_heads=3, key_length=64, value_length=64,
                  vocab=49152, context=8192)  # fmt: skip
    per_token = 30 * 3 * (64 + 64) * 2  # f16, all layers
    four = estimate_shape(shape, 100 * MiB, 0, 4096, 4)
    pooled = estimate_shape(shape, 100 * MiB, 0, 4096, 32, kv_pool=16384)
    assert pooled.kv_cache == four.kv_cache == per_token * 16384
    odd = estimate_shape(shape, 100 * MiB, 0, 4096, 8, kv_pool=1000)  # llama.cpp pads to 256
    assert odd.kv_cache == per_token * 1024
    assert (
        estimate_shape(shape, 100 * MiB, 0, 1024, 2, kv_pool=4096).kv_cache == per_token * 2048
    )  # no smaller
    gemma = Shape(layers=18, hidden=640, ffn=2048, heads=4, kv_heads=1, key_length=256, value_length=256,
                  vocab=262144, context=32768, swa_layers=15, swa_window=512)  # fmt: skip
    per_layer = 1 * (256 + 256) * 2
    shared = estimate_shape(gemma, 100 * MiB, 0, 4096, 8, kv_pool=8192)  # windows: 8 x 512 + a batch
    assert shared.kv_cache == per_layer * (3 * 8192 + 15 * 4608)
    wide = estimate_shape(gemma, 100 * MiB, 0, 4096, 32, kv_pool=8192)  # more windows than the pool
    assert wide.kv_cache == per_layer * 18 * 8192


def test_sliding_window_layers_follow_the_architectures_pattern_or_the_gguf() -> None:
    from slmkit.models.memory import swa_layers

    assert swa_layers({"gemma3.attention.sliding_window": 512}, "gemma3", 18) == 15
    assert swa_layers({"gemma2.attention.sliding_window": 4096}, "gemma2", 26) == 13
    assert swa_layers({"gemma3.attention.sliding_window": 0}, "gemma3", 18) == 0
    assert swa_layers({"x.attention.sliding_window": 64}, "x", 8) == 0  # pattern unknown: all full
    named = {"x.attention.sliding_window": 64, "x.attention.sliding_window_pattern": [True, False] * 4}
    assert swa_layers(named, "x", 8) == 4
    every = {"x.attention.sliding_window": 64, "x.attention.sliding_window_pattern": 4}
    assert swa_layers(every, "x", 8) == 6
    gemma = load_catalog().get("gemma3-270m").shape
    assert (gemma.swa_layers, gemma.swa_window) == (15, 512)


def test_catalog_weights_match_known_files_and_grow_with_bits() -> None:
    smol = load_catalog().get("smollm2-135m")
    known, _ = smol.weight_bytes("Q4_1")
    assert abs(known - 96_577_344) / 96_577_344 < 0.02  # the shipped file's tensor data
    sizes = [smol.weight_bytes(q)[0] for q in ("Q4_K_M", "Q8_0", "F16")]
    assert sizes == sorted(sizes)
    llama8 = load_catalog().get("llama3.1-8b")
    assert 4.4 * GiB < llama8.weight_bytes("Q4_K_M")[0] < 4.9 * GiB  # public files: 4.58 GiB


def test_fit_verdict_against_ram_and_gpus() -> None:
    qwen14 = load_catalog().get("qwen3-14b")
    small = fit_catalog(qwen14, machine(4 * GiB), n_ctx=4096)
    assert not small.fits_ram
    big = fit_catalog(
        qwen14, machine(64 * GiB, gpus=(Gpu("A", 24 * GiB, 24 * GiB), Gpu("B", 8 * GiB, 8 * GiB)))
    )
    assert big.fits_ram and big.fits_gpu == [True, False]
    data = big.to_json()
    assert data["bytes"]["total"] == sum(
        v for k, v in data["bytes"].items() if k not in {"total", "required"}
    )


def test_batch_gain_interpolates_to_the_measured_gain_at_eight() -> None:
    assert batch_gain("Q4_1", 1) == 1.0
    assert batch_gain("Q4_1", 8) == pytest.approx(1.65)
    assert batch_gain("Q4_K_M", 8) == pytest.approx(2.0) == batch_gain("Q4_K_M", 32)
    assert 1.0 < batch_gain("Q4_K_M", 2) < batch_gain("Q4_K_M", 4) < 2.0


def test_recommend_fits_the_machine_and_for_many_users_prefers_types_that_batch() -> None:
    speed = Speed(9e9, 0.002, "test")
    tiny = recommend(load_catalog(), machine(1 * GiB), speed, n_ctx=2048)
    assert tiny and all(c.fit.estimate.required <= 0.9 * GiB for c in tiny)
    assert all(c.model.tier == "micro" for c in tiny)
    scores = [c.score for c in tiny]
    assert scores == sorted(scores, reverse=True)
    solo = recommend(load_catalog(), machine(1 * GiB), speed, n_ctx=2048, min_tok_s=60)
    crowd = recommend(load_catalog(), machine(2 * GiB), speed, n_ctx=2048, parallel=8, min_tok_s=18)
    pairs = lambda found: {(c.model.id, c.fit.quant) for c in found}  # noqa: E731
    assert ("smollm2-135m", "Q4_1") in pairs(solo)
    assert ("smollm2-135m", "Q4_1") not in pairs(crowd)  # 1.65x batching: too slow per user
    assert ("smollm2-135m", "Q4_K_M") in pairs(crowd)


def test_bench_results_recalibrate_the_speed(tmp_path: Path) -> None:
    results = tmp_path / "results.json"
    results.write_text(json.dumps({"levels": [
        {"concurrency": 1, "targets": {"slm://m": {"per_stream_tok_s": {"p50": 50.0}}}},
        {"concurrency": 8, "targets": {"slm://m": {"per_stream_tok_s": {"p50": 10.0}}}},
    ]}))  # fmt: skip
    speed = speed_from_bench(results, lambda label: 180_000_000 if label == "slm://m" else None, machine())
    assert speed.single(180_000_000) == pytest.approx(50.0)
    assert speed.calibrated_from == str(results)
    results.write_text("{}")
    with pytest.raises(InvalidRequest, match=r"results\.json"):
        speed_from_bench(results, lambda label: None, machine())


def test_onnx_builds_are_sized_with_an_f32_kv_cache_and_ranked_after_gguf_at_equal_quality() -> None:
    from slmkit.optimize.sizing import fit_catalog_onnx

    phi = load_catalog().get("phi4-mini")
    assert ("onnx", "int4") in phi.variants()
    onnx = fit_catalog_onnx(phi, machine(16 * GiB), n_ctx=4096)
    gguf = fit_catalog(phi, machine(16 * GiB), quant="Q4_0", n_ctx=4096)
    assert onnx.fmt == "onnx" and onnx.kv_type == "f32" and onnx.to_json()["format"] == "onnx"
    assert onnx.estimate.kv_cache == 2 * gguf.estimate.kv_cache  # f32 against f16
    assert onnx.estimate.repacked == 0
    with pytest.raises(InvalidRequest, match="no ONNX int8"):
        fit_catalog_onnx(phi, machine(), precision="int8")
    speed = Speed(9e9, 0.002, "test")
    found = recommend(load_catalog(), machine(16 * GiB), speed, n_ctx=2048, min_tok_s=1)
    runtimes = {(c.model.id, c.fit.fmt): c for c in found}
    assert ("phi4-mini", "onnx") in runtimes and "ONNX Runtime" in runtimes["phi4-mini", "onnx"].why
    order = [(c.model.id, c.fit.quant) for c in found]
    assert order.index(("phi4-mini", "Q4_K_M")) < order.index(("phi4-mini", "int4"))
    only = recommend(load_catalog(), machine(16 * GiB), speed, n_ctx=2048, min_tok_s=1, formats=("onnx",))
    assert only and {c.fit.fmt for c in only} == {"onnx"}
    assert only[0].to_json()["pull"] == "hf.co/microsoft/Phi-4-mini-instruct-onnx"


def test_unknown_onnx_precisions_are_refused() -> None:
    text = load_catalog().models[0].model_dump_json()
    entry = json.loads(text) | {"onnx": {"int3": {"pull": "hf.co/o/r"}}}
    with pytest.raises(InvalidRequest, match="unknown ONNX precisions"):
        parse_catalog(json.dumps({"models": [entry]}))


def test_a_reranker_is_catalogued_sized_without_kv_cache_and_never_recommended() -> None:
    catalog = load_catalog()
    reranker = catalog.get("bge-reranker-v2-m3")
    assert reranker.task == "rerank" and reranker.tier == "micro" and reranker.arch == "bert"
    box = machine()
    fit = fit_catalog(reranker, box, n_ctx=8192)
    assert fit.estimate.kv_cache == 0 and fit.fits_ram
    assert fit.estimate.required < 2 * fit.estimate.weights  # weights, compute, runtime: no KV
    found = recommend(catalog, box, Speed(9e9, 0.002, "test"), min_tok_s=0.0)
    assert found and all(c.model.task == "chat" for c in found)
    assert catalog.get("phi4-mini").onnx  # Phi-4-mini: GGUF and ONNX builds


def test_a_vision_models_projector_counts_in_its_memory(tmp_path: Path) -> None:
    from slmkit.formats import PROJECTOR_OVERHEAD
    from slmkit.optimize.sizing import fit_stored
    from slmkit.store import ModelStore
    from tests.ggufs import write_tiny_gguf

    store = ModelStore(tmp_path / "models")
    plain = store.import_gguf("text:1", write_tiny_gguf(tmp_path / "m.gguf"))
    projector = write_tiny_gguf(tmp_path / "p.gguf", arch="clip", template=None)
    seeing = store.import_gguf("vlm:1", write_tiny_gguf(tmp_path / "m.gguf"), projector=projector)
    extra = fit_stored(seeing, machine()).estimate.required - fit_stored(plain, machine()).estimate.required
    assert extra >= PROJECTOR_OVERHEAD + projector.stat().st_size
    with pytest.raises(InvalidRequest, match="not a vision projector"):
        store.import_gguf("bad:1", write_tiny_gguf(tmp_path / "m.gguf"), projector=tmp_path / "m.gguf")
