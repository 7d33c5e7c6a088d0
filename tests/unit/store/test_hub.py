"""Hugging Face pulls with the real huggingface_hub against a fake Hub on 127.0.0.1."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from slmkit.errors import IntegrityError, InvalidName, InvalidRequest, PullError
from slmkit.store import ModelStore
from slmkit.store.hub import HubClient, HubRef, choose, parse_hub_ref
from tests.fakes.hub import COMMIT, FakeHub
from tests.ggufs import write_tiny_gguf

REPO = "org/Tiny-GGUF"


@pytest.fixture(scope="module")
def gguf(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return write_tiny_gguf(tmp_path_factory.mktemp("g") / "t.gguf").read_bytes() + b"\0" * 300_000


@pytest.fixture
def hub(gguf: bytes) -> Iterator[FakeHub]:
    h = FakeHub(
        files={
            REPO: {
                "tiny-Q4_K_M.gguf": gguf,
                "tiny-Q8_0.gguf": gguf + b"\0" * 64,
                "README.md": b"# tiny",
                "pytorch_model.bin": b"PICKLE",
            }
        }
    )
    h.start()
    yield h
    h.stop()


@pytest.fixture
def store(tmp_path: Path) -> ModelStore:
    return ModelStore(tmp_path / "models")


@pytest.mark.parametrize(
    ("text", "ref"),
    [
        ("hf.co/org/repo", HubRef("org/repo", None, None, None)),
        ("hf.co/org/repo:Q4_K_M", HubRef("org/repo", "Q4_K_M", None, None)),
        ("huggingface.co/org/repo:q8_0@v1.0", HubRef("org/repo", "q8_0", None, "v1.0")),
        ("hf.co/org/repo/model-Q5_K_M.gguf", HubRef("org/repo", None, "model-Q5_K_M.gguf", None)),
        ("hf.co/org/repo@" + COMMIT, HubRef("org/repo", None, None, COMMIT)),
    ],
)
def test_parse_hub_refs(text: str, ref: HubRef) -> None:
    assert parse_hub_ref(text) == ref


@pytest.mark.parametrize(
    "text",
    [
        "hf.co/org",
        "hf.co/../etc/passwd",
        "hf.co/org/repo/model.bin",
        "hf.co/org/repo/../x.gguf",
        "hf.co/org/repo@../../x",
        "hf.co/org/repo:Q4/../",
        "hf.co/.org/repo",
        "hf.co/org/repo/a/b.gguf",
    ],
)
def test_bad_hub_refs(text: str) -> None:
    with pytest.raises(InvalidName):
        parse_hub_ref(text)


def files(*names: str, size: int = 100) -> list[dict[str, object]]:
    return [{"rfilename": n, "size": size, "lfs": {"sha256": "a" * 64, "size": size}} for n in names]


def test_choose() -> None:
    listing = files("m-Q4_K_M.gguf", "m-Q8_0.gguf", "m-Q4_K_M-imat.gguf")
    assert choose(listing, HubRef("o/r", None, None, None), None)["rfilename"] == "m-Q4_K_M.gguf"
    assert choose(listing, HubRef("o/r", "q8_0", None, None), None)["rfilename"] == "m-Q8_0.gguf"
    with pytest.raises(PullError, match=r"no Q2_K GGUF.*m-Q8_0\.gguf"):
        choose(listing, HubRef("o/r", "Q2_K", None, None), None)
    sized = [{**files("a-Q8_0.gguf")[0], "size": 900}, {**files("a-Q5_K_M.gguf")[0], "size": 500}]
    assert choose(sized, HubRef("o/r", None, None, None), 600)["rfilename"] == "a-Q5_K_M.gguf"
    with pytest.raises(PullError, match="split"):
        choose(files("m-Q4_K_M-00001-of-00002.gguf"), HubRef("o/r", None, None, None), None)
    no_hash = [{"rfilename": "m-Q4_K_M.gguf", "size": 10, "lfs": None}]
    with pytest.raises(PullError, match="no sha256"):
        choose(no_hash, HubRef("o/r", None, None, None), None)


def test_full_pull_downloads_only_the_gguf(store: ModelStore, hub: FakeHub, gguf: bytes) -> None:
    record = HubClient(store, private=True, endpoint=hub.url, token="hf_secret").pull(
        parse_hub_ref(f"hf.co/{REPO}")
    )
    assert record.name.display == f"hf.co/{REPO}:Q4_K_M"
    assert record.model_path.read_bytes() == gguf
    assert record.config.revision == COMMIT and record.config.source.endswith("/tiny-Q4_K_M.gguf")
    fetched = [p for _, p, _ in hub.requests if "/resolve/" in p]
    assert fetched and all(p.endswith("tiny-Q4_K_M.gguf") for p in fetched)
    assert all(h.get("authorization") == "Bearer hf_secret" for _, _, h in hub.requests)
    assert not list(store.root.rglob("*-partial"))


MiB = 1024 * 1024


@pytest.fixture
def big(hub: FakeHub, gguf: bytes) -> bytes:
    data = gguf + b"\0" * (25 * MiB)
    hub.files[REPO]["tiny-Q4_K_M.gguf"] = data
    return data


def test_an_interrupted_pull_resumes_in_the_next_one(store: ModelStore, hub: FakeHub, big: bytes) -> None:
    hub.cut_after["tiny-Q4_K_M.gguf"] = [12 * MiB]
    client = HubClient(store, private=True, endpoint=hub.url)
    with pytest.raises(PullError, match="resume"):
        client.pull(parse_hub_ref(f"hf.co/{REPO}:Q4_K_M"))
    assert store.list() == []
    hub.cut_after.clear()
    record = client.pull(parse_hub_ref(f"hf.co/{REPO}:Q4_K_M"))
    ranges = [h.get("range") for m, p, h in hub.requests if m == "GET" and "/resolve/" in p]
    assert ranges[-1] is not None and ranges[-1].startswith("bytes=")
    resumed_at = int(ranges[-1][6:-1])
    assert 0 < resumed_at <= 12 * MiB  # what the broken-off transfer had written
    assert hashlib.sha256(record.model_path.read_bytes()).hexdigest() == hashlib.sha256(big).hexdigest()


def test_right_size_wrong_bytes_is_refused(store: ModelStore, hub: FakeHub) -> None:
    hub.wrong_bytes.add("tiny-Q4_K_M.gguf")
    with pytest.raises(IntegrityError, match="does not match the sha256 the Hub reports"):
        HubClient(store, private=True, endpoint=hub.url).pull(parse_hub_ref(f"hf.co/{REPO}"))
    assert store.list() == [] and store.blobs.digests() == []


def test_unverifiable_files_are_refused_before_download(store: ModelStore, hub: FakeHub) -> None:
    hub.no_sha.add("tiny-Q4_K_M.gguf")
    with pytest.raises(PullError, match="no sha256"):
        HubClient(store, private=True, endpoint=hub.url).pull(parse_hub_ref(f"hf.co/{REPO}"))
    assert not [p for _, p, _ in hub.requests if "/resolve/" in p]


def test_unknown_repo_and_allowed_hosts(store: ModelStore, hub: FakeHub) -> None:
    with pytest.raises(PullError, match="not found"):
        HubClient(store, private=True, endpoint=hub.url).pull(parse_hub_ref("hf.co/org/missing"))
    with pytest.raises(InvalidRequest, match="SLM_ALLOWED_HOSTS"):
        HubClient(store, private=True, endpoint=hub.url, allowed_hosts=("huggingface.co",))


ONNX_REPO = "microsoft/Tiny-onnx"
VARIANT = "cpu_and_mobile/cpu-int4-rtn-block-32"


def _onnx_files() -> dict[str, bytes]:
    import json

    decoder = {
        "filename": "model.onnx", "num_hidden_layers": 2, "num_key_value_heads": 1, "head_size": 4,
        "hidden_size": 8,
    }  # fmt: skip
    config = {"model": {"type": "phi3", "vocab_size": 32, "context_length": 128, "decoder": decoder}}
    variant = {
        "genai_config.json": json.dumps(config).encode(),
        "model.onnx": b"graph" * 50,
        "model.onnx.data": b"\1" * 5000,
        "tokenizer.json": b"{}",
        "tokenizer_config.json": json.dumps({"chat_template": "{{ messages }}"}).encode(),
    }
    files = {f"{VARIANT}/{n}": d for n, d in variant.items()}
    files |= {f"cuda/cuda-fp16/{n}": d for n, d in variant.items()}
    files |= {"README.md": b"# tiny", f"{VARIANT}/sub/extra.bin": b"x"}
    return files


@pytest.fixture
def onnx_hub(hub: FakeHub) -> FakeHub:
    hub.files[ONNX_REPO] = _onnx_files()
    return hub


def test_an_onnx_repo_pulls_its_cpu_int4_variant_folder_checked(store: ModelStore, onnx_hub: FakeHub) -> None:
    record = HubClient(store, private=True, endpoint=onnx_hub.url).pull(parse_hub_ref(f"hf.co/{ONNX_REPO}"))
    assert record.name.display == f"hf.co/{ONNX_REPO}:cpu-int4-rtn-block-32"
    assert record.config.model_format == "onnx" and record.config.file_type == "int4"
    assert sorted(record.files) == [
        "genai_config.json", "model.onnx", "model.onnx.data", "tokenizer.json", "tokenizer_config.json"
    ]  # fmt: skip
    assert record.files["model.onnx.data"].read_bytes() == b"\1" * 5000
    assert record.template == "{{ messages }}" and record.config.revision == COMMIT
    fetched = {p for _, p, _ in onnx_hub.requests if "/resolve/" in p}
    assert all(VARIANT in p and "/sub/" not in p for p in fetched) and len(fetched) == 5
    named = HubClient(store, private=True, endpoint=onnx_hub.url).pull(
        parse_hub_ref(f"hf.co/{ONNX_REPO}:cuda-fp16")
    )
    assert named.config.file_type == "fp16"


def test_onnx_pull_refuses_other_bytes_and_unknown_variants(store: ModelStore, onnx_hub: FakeHub) -> None:
    client = HubClient(store, private=True, endpoint=onnx_hub.url)
    with pytest.raises(PullError, match=r"no variant folder 'gpu'.*cpu-int4-rtn-block-32"):
        client.pull(parse_hub_ref(f"hf.co/{ONNX_REPO}:gpu"))
    onnx_hub.wrong_bytes.add(f"{VARIANT}/genai_config.json")  # a git file: its blob id
    with pytest.raises(IntegrityError, match="git blob id"):
        client.pull(parse_hub_ref(f"hf.co/{ONNX_REPO}"))
    onnx_hub.wrong_bytes = {f"{VARIANT}/model.onnx.data"}  # an LFS file: its sha256
    with pytest.raises(IntegrityError, match="sha256"):
        client.pull(parse_hub_ref(f"hf.co/{ONNX_REPO}"))
    assert store.list() == []


def test_onnx_variant_file_names_are_checked(store: ModelStore, onnx_hub: FakeHub) -> None:
    onnx_hub.files[ONNX_REPO][f"{VARIANT}/.hidden"] = b"skipped"
    onnx_hub.files[ONNX_REPO][f"{VARIANT}/-evil"] = b"refused"
    with pytest.raises(InvalidRequest, match="not allowed"):
        HubClient(store, private=True, endpoint=onnx_hub.url).pull(parse_hub_ref(f"hf.co/{ONNX_REPO}"))
    assert store.list() == [] and store.blobs.digests() == []


def test_a_vision_repo_pulls_the_projector_beside_the_weights(
    store: ModelStore, hub: FakeHub, gguf: bytes, tmp_path: Path
) -> None:
    from slmkit.store.hub import choose_projector

    projector = write_tiny_gguf(tmp_path / "p.gguf", arch="clip", template=None).read_bytes()
    hub.files[REPO] |= {"mmproj-tiny-f16.gguf": projector, "mmproj-tiny-Q8_0.gguf": projector + b"\0" * 64}
    record = HubClient(store, private=True, endpoint=hub.url).pull(parse_hub_ref(f"hf.co/{REPO}:Q4_K_M"))
    assert record.model_path.read_bytes() == gguf  # the projector is never taken for the model
    assert record.projector is not None and record.projector.read_bytes() == projector
    fetched = {p.rsplit("/", 1)[-1] for _, p, _ in hub.requests if "/resolve/" in p}
    assert fetched == {"tiny-Q4_K_M.gguf", "mmproj-tiny-f16.gguf"}  # F16 preferred, one of them
    assert choose_projector(files("m-Q4_K_M.gguf")) is None
    # a "projector" that is not one is refused, and nothing is stored under the name
    hub.files[REPO] = {"tiny-Q4_K_M.gguf": gguf, "mmproj-tiny-f16.gguf": gguf}
    with pytest.raises(PullError, match="not a vision projector"):
        HubClient(store, private=True, endpoint=hub.url).pull(
            parse_hub_ref("hf.co/org/Tiny-GGUF:Q4_K_M@other")
        )
