"""Pulls from the Hugging Face Hub: ``hf.co/ORG/REPO[:QUANT][@REV]`` or ``hf.co/ORG/REPO/FILE.gguf``;
and ONNX Runtime GenAI repositories (Microsoft's and Foundry Local's ``*-onnx`` repos), where
``:TAG`` names a variant folder (``hf.co/ORG/REPO:cpu-int4-rtn-block-32``; default: a CPU int4
one). Every file of the variant folder is fetched: LFS files checked against the sha256 the
Hub reports (as GGUFs are), small files against their git blob id; then the folder passes
the ONNX gate (store/onnx_folder.py) before its manifest is written.

The repo's file list and LFS hashes come from the Hub API through ``huggingface_hub``
(honouring the endpoint and token); one GGUF is chosen (the quant asked for, default
Q4_K_M, else the largest that fits the memory budget) and downloaded from its resolve URL by
the store's own transfer (registry.py), which resumes an interrupted download from its
``-partial`` file and, unlike ``huggingface_hub``, which only checks sizes, refuses bytes
that do not hash to the sha256 the Hub reports. Only then does the file pass the GGUF
validator and get a manifest that records source, revision and hash.
Nothing but that one ``.gguf`` is ever downloaded: never pickle-based weights or code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from slmkit.errors import IntegrityError, InvalidName, InvalidRequest, PullError
from slmkit.names import ModelName
from slmkit.store import egress
from slmkit.store.gguf_info import read_info
from slmkit.store.manifest import MEDIA_MODEL, Layer
from slmkit.store.registry import Progress, ProgressFn, RegistryClient
from slmkit.store.store import ModelRecord, ModelStore

HUB_HOSTS = {"hf.co", "huggingface.co"}
DEFAULT_QUANT = "Q4_K_M"
_REPO_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,95}")
_FILE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,200}\.gguf")
_SPLIT = re.compile(r"-\d{5}-of-\d{5}\.gguf$")


@dataclass(frozen=True)
class HubRef:
    repo_id: str  # ORG/REPO
    quant: str | None  # e.g. "Q4_K_M"; None = default choice
    filename: str | None  # an exact .gguf file in the repo
    revision: str | None  # branch, tag or commit; None = main

    @property
    def name(self) -> ModelName:
        """Where the model lands in the store: hf.co/ORG/REPO:QUANT (or the file's stem)."""
        tag = self.quant or (self.filename.removesuffix(".gguf") if self.filename else DEFAULT_QUANT)
        org, repo = self.repo_id.split("/")
        return ModelName.parse(f"hf.co/{org}/{repo}:{tag}")


def is_hub_ref(text: str) -> bool:
    return text.split("/", 1)[0].lower() in HUB_HOSTS


def parse_hub_ref(text: str) -> HubRef:
    """Parse ``hf.co/ORG/REPO[:QUANT][@REV]`` or ``hf.co/ORG/REPO/FILE.gguf[@REV]``."""
    rest, _, revision = text.partition("@")
    if (revision and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.\-/]{0,99}", revision)) or ".." in revision:
        raise InvalidName(f"invalid revision {revision!r}")
    parts = rest.split("/")
    if len(parts) not in (3, 4) or parts[0].lower() not in HUB_HOSTS:
        raise InvalidName(f"invalid Hugging Face reference {text!r}: use hf.co/ORG/REPO[:QUANT]")
    org, repo = parts[1], parts[2]
    quant = None
    if len(parts) == 3 and ":" in repo:
        repo, quant = repo.split(":", 1)
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,40}", quant):
            raise InvalidName(f"invalid quantization {quant!r}")
    filename = parts[3] if len(parts) == 4 else None
    if not (_REPO_PART.fullmatch(org) and _REPO_PART.fullmatch(repo)):
        raise InvalidName(f"invalid Hugging Face repository {org}/{repo}")
    if filename is not None and not _FILE.fullmatch(filename):
        raise InvalidName(f"invalid file name {filename!r}: only .gguf files can be pulled")
    return HubRef(f"{org}/{repo}", quant, filename, revision or None)


def _is_projector(name: str) -> bool:
    return name.lower().startswith("mmproj")


def choose_projector(files: list[dict[str, Any]]) -> dict[str, Any] | None:
    """A vision model's projector beside its weights (``mmproj-*.gguf``, as llama.cpp's
    converter and the GGUF publishers name it): F16 if there is one, else the largest."""
    found = [
        f for f in files
        if str(f["rfilename"]).endswith(".gguf") and "/" not in str(f["rfilename"])
        and _is_projector(str(f["rfilename"]))
    ]  # fmt: skip
    if not found:
        return None
    f16 = [f for f in found if re.search(r"(^|[-_.])f16([-_.]|$)", str(f["rfilename"]).lower())]
    chosen = min(f16, key=lambda f: len(f["rfilename"])) if f16 else max(found, key=lambda f: f["size"])
    if not re.fullmatch(r"[0-9a-f]{64}", str((chosen.get("lfs") or {}).get("sha256", ""))):
        raise PullError(f"the Hub reports no sha256 for {chosen['rfilename']}; refusing an unverifiable file")
    return chosen


def choose(files: list[dict[str, Any]], ref: HubRef, max_bytes: int | None) -> dict[str, Any]:
    """Pick the GGUF file to pull from the repo's listing (a projector is not a model)."""
    ggufs = [
        f for f in files
        if str(f["rfilename"]).endswith(".gguf") and "/" not in str(f["rfilename"])
        and not _is_projector(str(f["rfilename"]))
    ]  # fmt: skip
    if ref.filename:
        match = [f for f in ggufs if f["rfilename"] == ref.filename]
        if not match:
            raise PullError(f"{ref.repo_id} has no file {ref.filename}")
        chosen = match[0]
    else:
        wanted = (ref.quant or DEFAULT_QUANT).lower()
        match = [
            f for f in ggufs if re.search(rf"(^|[-_.]){re.escape(wanted)}([-_.]|$)", f["rfilename"].lower())
        ]
        if match:
            chosen = min(match, key=lambda f: len(f["rfilename"]))
        elif ref.quant is None and ggufs:
            fitting = [f for f in ggufs if max_bytes is None or f["size"] <= max_bytes]
            if not fitting:
                raise PullError(f"no GGUF file of {ref.repo_id} fits the memory budget")
            chosen = max(fitting, key=lambda f: f["size"])  # the best quality that fits
        else:
            available = ", ".join(sorted(f["rfilename"] for f in ggufs)) or "none"
            raise PullError(f"{ref.repo_id} has no {ref.quant} GGUF (files: {available})")
    if _SPLIT.search(chosen["rfilename"]):
        raise PullError("split GGUF files (-00001-of-0000N) are not supported yet")
    lfs = chosen.get("lfs") or {}
    if not re.fullmatch(r"[0-9a-f]{64}", str(lfs.get("sha256", ""))):
        raise PullError(f"the Hub reports no sha256 for {chosen['rfilename']}; refusing an unverifiable file")
    return chosen


MAX_SMALL_FILE = 64 * 1024 * 1024  # a non-LFS file (JSON, template) of an ONNX folder, at most


def _tag(folder: str) -> str:
    """A variant folder's name as a model tag (the name grammar's characters)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "-", folder)[:80] or "onnx"


def choose_onnx(files: list[dict[str, Any]], ref: HubRef) -> tuple[str, list[dict[str, Any]]]:
    """The ONNX variant folder to pull (a folder holding genai_config.json) and its files:
    the one whose last path part is ``ref.quant`` (the tag), else a CPU int4 variant, else
    the only one. Refuses names with path tricks and files the Hub cannot vouch for."""
    from slmkit.store.onnx_folder import MAX_FILES, check_name

    paths = [str(f["rfilename"]) for f in files]
    folders = sorted(p.rpartition("/")[0] for p in paths if p.rpartition("/")[2] == "genai_config.json")
    if ref.filename:
        raise PullError(
            f"{ref.repo_id} is an ONNX repository: name a variant folder (hf.co/ORG/REPO:VARIANT)"
        )
    if ref.quant:
        wanted = [d for d in folders if d.rsplit("/", 1)[-1].lower() == ref.quant.lower()]
    else:
        wanted = [d for d in folders if "cpu" in d.lower() and "int4" in d.lower()] or (
            folders if len(folders) == 1 else []
        )
    if not wanted:
        variants = ", ".join(d.rsplit("/", 1)[-1] or "(top)" for d in folders)
        asked = f"no variant folder {ref.quant!r}" if ref.quant else "no CPU int4 variant"
        raise PullError(f"{ref.repo_id} has {asked} (variants: {variants}); pull hf.co/{ref.repo_id}:VARIANT")
    folder = min(wanted, key=len)
    prefix = f"{folder}/" if folder else ""
    chosen = [
        f for f in files
        if str(f["rfilename"]).startswith(prefix) and "/" not in str(f["rfilename"])[len(prefix) :]
        and not str(f["rfilename"]).rsplit("/", 1)[-1].startswith(".")
    ]  # fmt: skip
    if len(chosen) > MAX_FILES:
        raise PullError(f"the variant folder has more than {MAX_FILES} files")
    for f in chosen:
        check_name(str(f["rfilename"]).rsplit("/", 1)[-1])
        lfs = f.get("lfs") or {}
        if lfs and not re.fullmatch(r"[0-9a-f]{64}", str(lfs.get("sha256", ""))):
            raise PullError(f"the Hub reports no sha256 for {f['rfilename']}; refusing an unverifiable file")
        if not lfs and not re.fullmatch(r"[0-9a-f]{40}", str(f.get("blob_id") or "")):
            raise PullError(f"the Hub reports no blob id for {f['rfilename']}; refusing an unverifiable file")
    return folder, chosen


class HubClient:
    def __init__(
        self,
        store: ModelStore,
        *,
        endpoint: str | None = None,
        token: str | None = None,
        allowed_hosts: tuple[str, ...] = (),
        private: bool = False,
        max_bytes: int | None = None,
    ) -> None:
        self.store = store
        self.private = private  # may connect to private and loopback addresses (store/egress.py)
        self.endpoint = (endpoint or "https://huggingface.co").rstrip("/")
        self.token = token or None
        self.max_bytes = max_bytes
        self.allowed_hosts = allowed_hosts
        self.cancelled = False
        host = urlsplit(self.endpoint).hostname or ""
        if (
            allowed_hosts
            and host not in allowed_hosts
            and urlsplit(self.endpoint).netloc not in allowed_hosts
        ):
            raise InvalidRequest(f"Hub host {host!r} is not in SLM_ALLOWED_HOSTS")

    def pull(self, ref: HubRef, progress: ProgressFn | None = None) -> ModelRecord:
        import httpx2
        from huggingface_hub import HfApi
        from huggingface_hub.errors import HfHubHTTPError

        report = progress or (lambda p: None)
        report(Progress("pulling manifest"))
        egress.guard_hub(private=self.private)
        api = HfApi(endpoint=self.endpoint, token=self.token)
        try:
            info = api.model_info(ref.repo_id, revision=ref.revision, files_metadata=True)
        except httpx2.TransportError as exc:
            raise PullError(f"could not reach {urlsplit(self.endpoint).hostname}") from exc
        except HfHubHTTPError as exc:
            status = exc.response.status_code if exc.response is not None else 0
            if status in (401, 404):
                raise PullError(f"{ref.repo_id} was not found on the Hub (or needs HF_TOKEN)") from exc
            raise PullError(f"the Hub answered {status} for {ref.repo_id}") from exc
        files = [
            {
                "rfilename": s.rfilename,
                "size": s.size or 0,
                "lfs": dict(s.lfs) if s.lfs else None,
                "blob_id": s.blob_id,
            }
            for s in info.siblings or []
        ]
        if not any(str(f["rfilename"]).endswith(".gguf") for f in files) and any(
            str(f["rfilename"]).rsplit("/", 1)[-1] == "genai_config.json" for f in files
        ):
            return self._pull_onnx(ref, files, info.sha or ref.revision or "main", report)
        chosen = choose(files, ref, self.max_bytes)
        digest = "sha256:" + chosen["lfs"]["sha256"]
        size = int(chosen["lfs"].get("size") or chosen["size"])
        commit = info.sha or ref.revision or "main"
        blobs = self.store.blobs
        if not blobs.exists(digest) or not self._intact(digest):
            self._download(ref, chosen["rfilename"], commit, digest, size, report)
        projector = choose_projector(files)
        if projector is not None:  # a vision model: its projector comes with it
            projector_digest = "sha256:" + projector["lfs"]["sha256"]
            if not blobs.exists(projector_digest) or not self._intact(projector_digest):
                size = int(projector["lfs"].get("size") or projector["size"])
                self._download(ref, projector["rfilename"], commit, projector_digest, size, report)
            if read_info(blobs.path(projector_digest)).architecture != "clip":
                raise PullError(f"{projector['rfilename']} is not a vision projector GGUF")
        report(Progress("verifying sha256 digest"))
        gguf = read_info(blobs.path(digest))
        report(Progress("writing manifest"))
        record = self.store.create(
            ref.name,
            digest,
            gguf,
            source=f"{self.endpoint}/{ref.repo_id}/{chosen['rfilename']}",
            revision=commit,
            projector=projector_digest if projector is not None else None,
        )
        report(Progress("success"))
        return record

    def _pull_onnx(
        self, ref: HubRef, files: list[dict[str, Any]], commit: str, report: ProgressFn
    ) -> ModelRecord:
        folder, chosen = choose_onnx(files, ref)
        stored: dict[str, str] = {}
        for entry in chosen:
            path = str(entry["rfilename"])
            name = path.rsplit("/", 1)[-1]
            lfs = entry.get("lfs") or {}
            if lfs:
                digest, size = "sha256:" + str(lfs["sha256"]), int(lfs.get("size") or entry["size"])
                if not self.store.blobs.exists(digest) or not self._intact(digest):
                    self._download(ref, path, commit, digest, size, report)
            else:
                digest = self._fetch_small(ref, path, commit, str(entry["blob_id"]), int(entry["size"]))
            stored[name] = digest
        report(Progress("writing manifest"))
        tag = folder.rsplit("/", 1)[-1]
        org, repo = ref.repo_id.split("/")
        record = self.store.create_folder(
            ModelName.parse(f"hf.co/{org}/{repo}:{_tag(tag)}"),
            stored,
            precision=folder,
            source=f"{self.endpoint}/{ref.repo_id}/{folder}",
            revision=commit,
        )
        report(Progress("success"))
        return record

    def _fetch_small(self, ref: HubRef, path: str, commit: str, blob_id: str, size: int) -> str:
        """A file the Hub keeps in git (configs, templates): read whole, checked against its
        git blob id (sha1 of ``blob <size>``, a NUL, then the bytes), stored by sha256."""
        import hashlib

        from huggingface_hub import hf_hub_url

        url = hf_hub_url(ref.repo_id, path, revision=commit, endpoint=self.endpoint)
        with RegistryClient(self.store, allowed_hosts=self.allowed_hosts, private=self.private) as transfer:
            transfer.use_token(self.token)
            with transfer._get(url) as response:
                if response.status_code != 200:
                    raise PullError(f"the Hub answered {response.status_code} for {path}")
                data = bytearray()
                for chunk in response.iter_bytes():
                    data += chunk
                    if len(data) > MAX_SMALL_FILE:
                        raise PullError(f"{path} is larger than {MAX_SMALL_FILE} bytes without LFS")
        actual = hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()
        if actual != blob_id or len(data) != size:
            raise IntegrityError(f"{path} does not match the git blob id the Hub reports")
        return self.store.blobs.write_bytes(bytes(data))

    def _intact(self, digest: str) -> bool:
        try:
            self.store.blobs.check(digest)
            return True
        except IntegrityError:
            return False

    def _download(
        self, ref: HubRef, filename: str, commit: str, digest: str, size: int, report: ProgressFn
    ) -> None:
        """The resolve URL through slmkit's own transfer: huggingface_hub 2.x discards a
        broken download, ours resumes it from its -partial file with Range, and checks the
        LFS sha256 that huggingface_hub does not."""
        from huggingface_hub import hf_hub_url

        url = hf_hub_url(ref.repo_id, filename, revision=commit, endpoint=self.endpoint)
        with RegistryClient(self.store, allowed_hosts=self.allowed_hosts, private=self.private) as transfer:
            transfer.use_token(self.token)
            try:
                transfer.fetch_blob(url, Layer(mediaType=MEDIA_MODEL, digest=digest, size=size), report)
            except IntegrityError as exc:
                raise IntegrityError(f"{filename} does not match the sha256 the Hub reports: {exc}") from exc
