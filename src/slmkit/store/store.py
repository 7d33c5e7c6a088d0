"""The model store: manifests under ``manifests/<host>/<ns>/<model>/<tag>``, blobs by digest.

A manifest is written only after every blob it names is in place, to a temp file that is
fsynced and renamed, so a reader sees either the old model or the new one, never half.
"""

from __future__ import annotations

import builtins
import contextlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from slmkit.errors import IntegrityError, InvalidRequest, ModelNotFound, StoreError
from slmkit.names import ModelName
from slmkit.store.blobs import BlobStore
from slmkit.store.gguf_info import GGUFInfo, read_info
from slmkit.store.manifest import (
    CONFIG_MEDIA_TYPE,
    MEDIA_ADAPTER,
    MEDIA_LICENSE,
    MEDIA_MESSAGES,
    MEDIA_MODEL,
    MEDIA_MODEL_FILE,
    MEDIA_PARAMS,
    MEDIA_PROJECTOR,
    MEDIA_SYSTEM,
    MEDIA_TEMPLATE,
    MEDIA_UPSTREAM,
    TITLE,
    Layer,
    Manifest,
    ModelConfig,
)


@dataclass(frozen=True)
class ModelRecord:
    """A model as the store knows it: its name, manifest and the small layers' contents."""

    name: ModelName
    manifest: Manifest
    digest: str  # sha256 of the manifest bytes; identifies this version of the model
    modified_at: datetime
    config: ModelConfig
    model_path: Path  # the GGUF weights blob, or a folder model's view directory (see view())
    template: str | None  # jinja chat template, when the model has one
    system: str | None  # default system prompt
    params: dict[str, Any]  # default options (temperature, stop, ...)
    messages: list[dict[str, str]]  # few-shot history put before every chat
    license: str | None
    adapters: list[Path]  # LoRA adapter GGUF blobs, applied at load
    upstream: dict[str, str] | None = None  # {"url", "model"}: served by a remote OpenAI server
    projector: Path | None = None  # a vision model's projector GGUF blob
    files: dict[str, Path] = field(default_factory=dict)  # a folder model: file name -> its blob

    @property
    def size(self) -> int:
        return self.manifest.total_size


class ModelStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.blobs = BlobStore(root)
        self.manifests = root / "manifests"
        self.views = root / "views"  # folder models as directories of hard links, by manifest

    # -- names and manifests -------------------------------------------------------------
    def _manifest_path(self, name: ModelName) -> Path:
        return self.manifests.joinpath(*name.path_parts())

    def write_manifest(self, name: ModelName, manifest: Manifest) -> None:
        path = self._manifest_path(name)
        data = manifest.model_dump_json(indent=None, exclude_none=True).encode()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".partial-", dir=path.parent)
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, path)
            finally:
                Path(tmp).unlink(missing_ok=True)
        except OSError as exc:
            raise StoreError(f"could not write manifest: {exc.strerror}") from exc

    def _read_manifest(self, name: ModelName) -> tuple[Manifest, bytes, float]:
        path = self._manifest_path(name)
        try:
            data = path.read_bytes()
            mtime = path.stat().st_mtime
        except FileNotFoundError as exc:
            raise ModelNotFound(name.display, self.nearby(name.display)) from exc
        except OSError as exc:
            raise StoreError(f"could not read manifest of {name.display}: {exc.strerror}") from exc
        try:
            return Manifest.model_validate_json(data), data, mtime
        except ValidationError as exc:
            raise StoreError(f"manifest of {name.display} is malformed") from exc

    def _read_text(self, layer: Layer | None) -> str | None:
        if layer is None:
            return None
        try:
            return self.blobs.path(layer.digest).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise StoreError(f"could not read layer {layer.digest}") from exc

    # -- public API ------------------------------------------------------------------------
    def get(self, name: str | ModelName) -> ModelRecord:
        parsed = name if isinstance(name, ModelName) else ModelName.parse(name)
        manifest, raw, mtime = self._read_manifest(parsed)
        import hashlib

        config_text = self._read_text(manifest.config) or "{}"
        params_text = self._read_text(manifest.layer(MEDIA_PARAMS))
        messages_text = self._read_text(manifest.layer(MEDIA_MESSAGES))
        upstream_layer = manifest.layer(MEDIA_UPSTREAM)
        upstream_text = self._read_text(upstream_layer)
        try:
            config = ModelConfig.model_validate_json(config_text)
            params = json.loads(params_text) if params_text else {}
            messages = json.loads(messages_text) if messages_text else []
            if not isinstance(params, dict) or not isinstance(messages, list):
                raise ValueError("params must be an object, messages a list")
            messages = [
                {"role": str(m["role"]), "content": str(m["content"])}
                for m in messages
                if isinstance(m, dict)
            ]
            upstream = json.loads(upstream_text) if upstream_text else None
            if upstream is not None:
                upstream = {"url": str(upstream["url"]), "model": str(upstream["model"])}
        except (ValidationError, ValueError, KeyError) as exc:
            raise StoreError(f"config of {parsed.display} is malformed") from exc
        digest = f"sha256:{hashlib.sha256(raw).hexdigest()}"
        if manifest.model_files:  # a folder model: the worker loads its view (see view())
            model_path = self.views / digest.removeprefix("sha256:")
        else:
            model_path = self.blobs.path((upstream_layer or manifest.model_layer).digest)
        return ModelRecord(
            name=parsed,
            manifest=manifest,
            digest=digest,
            modified_at=datetime.fromtimestamp(mtime, tz=UTC),
            config=config,
            model_path=model_path,
            template=self._read_text(manifest.layer(MEDIA_TEMPLATE)),
            system=self._read_text(manifest.layer(MEDIA_SYSTEM)),
            params=params,
            messages=messages,
            license=self._read_text(manifest.layer(MEDIA_LICENSE)),
            adapters=[self.blobs.path(x.digest) for x in manifest.layers if x.mediaType == MEDIA_ADAPTER],
            upstream=upstream,
            files={n: self.blobs.path(layer.digest) for n, layer in manifest.model_files.items()},
            projector=self.blobs.path(p.digest) if (p := manifest.layer(MEDIA_PROJECTOR)) else None,
        )

    def exists(self, name: str | ModelName) -> bool:
        parsed = name if isinstance(name, ModelName) else ModelName.parse(name)
        return self._manifest_path(parsed).is_file()

    def nearby(self, wanted: str, most: int = 3) -> builtins.list[str]:
        """Stored names close to ``wanted`` (a typo's "did you mean"), from the manifest paths
        alone; at most the first 10,000 are compared."""
        import difflib
        import itertools

        if not self.manifests.is_dir():
            return []
        names = []
        for path in itertools.islice(self.manifests.glob("*/*/*/*"), 10_000):
            if path.name.startswith(".partial-"):
                continue
            try:
                names.append(ModelName(*path.relative_to(self.manifests).parts).display)
            except (InvalidRequest, TypeError):
                continue
        return difflib.get_close_matches(wanted, names, n=most, cutoff=0.75)

    def list(self) -> builtins.list[ModelRecord]:
        out: builtins.list[ModelRecord] = []
        if not self.manifests.is_dir():
            return out
        for path in sorted(self.manifests.glob("*/*/*/*")):
            if not path.is_file() or path.name.startswith(".partial-"):
                continue
            rel = path.relative_to(self.manifests).parts
            try:
                out.append(self.get(ModelName(*rel)))
            except (StoreError, InvalidRequest):
                continue  # a stray or damaged file: skip it rather than break `list`
        return out

    def import_gguf(
        self,
        name: str | ModelName,
        source: Path,
        *,
        template: str | None = None,
        system: str | None = None,
        params: dict[str, Any] | None = None,
        projector: Path | None = None,
    ) -> ModelRecord:
        """Copy a GGUF (and a vision model's projector GGUF) into the store as ``name`` with
        its template/system/params layers."""
        parsed = name if isinstance(name, ModelName) else ModelName.parse(name)
        if not source.is_file():
            raise InvalidRequest("model file not found or not a regular file")
        info = read_info(source)  # refuse malformed files before they enter the store
        projector_digest = self.write_projector(projector) if projector is not None else None
        digest = self.blobs.write_file(source)
        return self.create(
            parsed, digest, info, template=template, system=system, params=params, projector=projector_digest
        )

    def write_projector(self, path: Path) -> str:
        """A projector GGUF into the blobs (checked: a GGUF whose architecture is clip)."""
        if not path.is_file():
            raise InvalidRequest("projector: file not found or not a regular file")
        if read_info(path).architecture != "clip":
            raise InvalidRequest("projector: not a vision projector GGUF (its architecture is not clip)")
        return self.blobs.write_file(path)

    def import_folder(
        self,
        name: str | ModelName,
        folder: Path,
        *,
        system: str | None = None,
        params: dict[str, Any] | None = None,
        source: str = "",
        revision: str = "",
        provenance: dict[str, Any] | None = None,
    ) -> ModelRecord:
        """Store an ONNX Runtime GenAI model folder as ``name``: every file a blob (written
        atomically, by digest), its name in the layer; refused before anything is written
        when the folder is malformed (store/onnx_folder.py)."""
        from slmkit.store.onnx_folder import folder_files

        parsed = name if isinstance(name, ModelName) else ModelName.parse(name)
        files = folder_files(folder)
        return self.create_folder(
            parsed,
            {n: self.blobs.write_file(path) for n, path in files.items()},
            precision=folder.resolve().name,
            system=system,
            params=params,
            source=source,
            revision=revision,
            provenance=provenance,
        )

    def create_folder(
        self,
        name: ModelName,
        files: dict[str, str],
        *,
        precision: str = "",
        template: str | None = None,
        system: str | None = None,
        params: dict[str, Any] | None = None,
        messages: builtins.list[dict[str, str]] | None = None,
        license: str | None = None,
        source: str = "",
        revision: str = "",
        provenance: dict[str, Any] | None = None,
    ) -> ModelRecord:
        """Write the manifest of a folder model whose files (name -> digest) are stored;
        ``precision``: a name saying the weights' precision (int4, ...), when known;
        ``template``: overrides the folder's own chat template."""
        from slmkit.store.onnx_folder import read_folder_info

        info = read_folder_info({n: self.blobs.path(d) for n, d in files.items()}, precision)
        layers = [
            Layer(mediaType=MEDIA_MODEL_FILE, digest=d, size=self.blobs.size(d), annotations={TITLE: n})
            for n, d in sorted(files.items())
        ]
        template = template if template is not None else info.chat_template
        self._small_layers(layers, template, system, license, params, messages)
        config = self._config_layer(info, "onnx", source, revision, provenance)
        self.write_manifest(name, Manifest(config=config, layers=layers))
        return self.get(name)

    def view(self, record: ModelRecord) -> Path:
        """A folder model as a directory the runtime can open: each file a hard link to its
        blob (a copy where links are impossible), built in a temp directory and renamed into
        place, so a reader never sees half a view; when two processes build it at once, the
        first rename wins and the other uses it. A view whose links no longer point at their
        blobs is moved aside and built again. Blocking: call it off the event loop."""
        files = record.manifest.model_files
        target = record.model_path

        def intact() -> bool:
            try:
                return all(os.path.samefile(target / n, self.blobs.path(x.digest)) for n, x in files.items())
            except OSError:
                return False

        if intact():
            return target
        self.views.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=".partial-", dir=self.views))
        try:
            for n, layer in files.items():
                blob = self.blobs.path(layer.digest)
                if not blob.is_file():
                    raise IntegrityError(f"blob {layer.digest} of {record.name.display} is missing")
                try:
                    os.link(blob, stage / n)
                except OSError:
                    shutil.copyfile(blob, stage / n)
            if intact():  # another builder finished meanwhile
                return target
            if target.exists():  # damaged: moved aside in one step, then removed
                stale = Path(tempfile.mkdtemp(prefix=".stale-", dir=self.views))
                with contextlib.suppress(FileNotFoundError):  # another builder moved it
                    os.replace(target, stale / "view")
                shutil.rmtree(stale, ignore_errors=True)
            try:
                os.replace(stage, target)
            except OSError:
                if not intact():  # not another builder's finished view either
                    raise
        except OSError as exc:
            raise StoreError(f"could not lay out the model's files: {exc.strerror}") from exc
        finally:
            shutil.rmtree(stage, ignore_errors=True)
        return target

    def create(
        self,
        name: ModelName,
        model_digest: str,
        info: GGUFInfo,
        *,
        template: str | None = None,
        system: str | None = None,
        params: dict[str, Any] | None = None,
        source: str = "",
        revision: str = "",
        messages: builtins.list[dict[str, str]] | None = None,
        license: str | None = None,
        adapters: builtins.list[str] | None = None,
        provenance: dict[str, Any] | None = None,
        projector: str | None = None,
    ) -> ModelRecord:
        """Write the manifest for weights already in the store plus small layers."""
        layers = [Layer(mediaType=MEDIA_MODEL, digest=model_digest, size=self.blobs.size(model_digest))]
        if projector:
            layers.append(Layer(mediaType=MEDIA_PROJECTOR, digest=projector, size=self.blobs.size(projector)))
        layers += [Layer(mediaType=MEDIA_ADAPTER, digest=d, size=self.blobs.size(d)) for d in adapters or []]
        template = template if template is not None else info.chat_template
        self._small_layers(layers, template, system, license, params, messages)
        config = self._config_layer(info, "gguf", source, revision, provenance)
        self.write_manifest(name, Manifest(config=config, layers=layers))
        return self.get(name)

    def _small_layers(
        self,
        layers: builtins.list[Layer],
        template: str | None,
        system: str | None,
        license: str | None,
        params: dict[str, Any] | None,
        messages: builtins.list[dict[str, str]] | None,
    ) -> None:
        """Append the text layers a manifest carries besides its weights."""
        for media, text in ((MEDIA_TEMPLATE, template), (MEDIA_SYSTEM, system), (MEDIA_LICENSE, license)):
            if text:
                layers.append(self._text_layer(media, text))
        if params:
            layers.append(self._text_layer(MEDIA_PARAMS, json.dumps(params, sort_keys=True)))
        if messages:
            layers.append(self._text_layer(MEDIA_MESSAGES, json.dumps(messages)))

    def _config_layer(
        self, info: GGUFInfo, fmt: str, source: str, revision: str, provenance: dict[str, Any] | None
    ) -> Layer:
        """The config blob: facts about the weights, where they came from and how they were made."""
        config = ModelConfig(
            model_format=fmt,
            model_family=info.architecture,
            model_families=[info.architecture],
            model_type=info.size_label,
            file_type=info.file_type,
            context_length=info.context_length,
            embedding_length=info.embedding_length,
            parameter_count=info.parameter_count,
            source=source,
            revision=revision,
            provenance=provenance or {},
        )
        return self._text_layer(CONFIG_MEDIA_TYPE, config.model_dump_json())

    def register_upstream(self, name: str | ModelName, url: str, model: str) -> ModelRecord:
        """A model whose engine is a remote OpenAI-compatible server (no weights here); written
        again only when its address or remote name changed."""
        parsed = name if isinstance(name, ModelName) else ModelName.parse(name)
        spec = {"url": url, "model": model}
        if self.exists(parsed):
            current = self.get(parsed)
            if current.upstream == spec:
                return current
        layer = self._text_layer(MEDIA_UPSTREAM, json.dumps(spec, sort_keys=True))
        config = ModelConfig(
            model_family="upstream", model_families=["upstream"], file_type="remote", source=url
        )
        config_layer = self._text_layer(CONFIG_MEDIA_TYPE, config.model_dump_json())
        self.write_manifest(parsed, Manifest(config=config_layer, layers=[layer]))
        return self.get(parsed)

    def _text_layer(self, media_type: str, text: str) -> Layer:
        data = text.encode("utf-8")
        return Layer(mediaType=media_type, digest=self.blobs.write_bytes(data), size=len(data))

    def copy(self, source: str | ModelName, destination: str | ModelName) -> ModelRecord:
        src = source if isinstance(source, ModelName) else ModelName.parse(source)
        dst = destination if isinstance(destination, ModelName) else ModelName.parse(destination)
        manifest, _, _ = self._read_manifest(src)
        self.write_manifest(dst, manifest)
        return self.get(dst)

    def delete(self, name: str | ModelName) -> None:
        """Remove a model's manifest, then every blob no other manifest uses."""
        parsed = name if isinstance(name, ModelName) else ModelName.parse(name)
        path = self._manifest_path(parsed)
        if not path.is_file():
            raise ModelNotFound(parsed.display)
        try:
            path.unlink()
        except OSError as exc:
            raise StoreError(f"could not delete {parsed.display}: {exc.strerror}") from exc
        self.prune()

    def prune(self) -> builtins.list[str]:
        """Delete blobs that no manifest references; return their digests."""
        used = {d for record in self.list() for d in record.manifest.digests}
        removed = [d for d in self.blobs.digests() if d not in used]
        for digest in removed:
            self.blobs.remove(digest)
        views = {record.digest.removeprefix("sha256:") for record in self.list()}
        if self.views.is_dir():
            import time

            for path in self.views.iterdir():
                # another process's view in the making (.partial-, .stale-) is left an hour
                leftover = path.name.startswith(".") and time.time() - path.stat().st_mtime > 3600
                if (not path.name.startswith(".") and path.name not in views) or leftover:
                    shutil.rmtree(path, ignore_errors=True)
        return removed

    def verify(self, name: str | ModelName) -> builtins.list[tuple[str, str | None]]:
        """Re-hash every blob of a model: (digest, problem or None) for each."""
        record = self.get(name)
        out: builtins.list[tuple[str, str | None]] = []
        for digest in record.manifest.digests:
            try:
                self.blobs.verify(digest)
                out.append((digest, None))
            except IntegrityError as exc:
                out.append((digest, str(exc)))
        return out
