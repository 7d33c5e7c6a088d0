"""`slm create NAME -f Modelfile`: parse locally, upload a local GGUF (or pull FROM), create."""

from __future__ import annotations

import argparse
from pathlib import Path

from slmkit.cli import gate
from slmkit.cli.connect import ensure_server
from slmkit.errors import ClientError, InvalidRequest
from slmkit.modelfile import parse


def arguments(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("model", help="name of the new model")
    cmd.add_argument("-f", "--file", default="Modelfile", help="path to the Modelfile (default: ./Modelfile)")
    cmd.add_argument("--insecure", action="store_true", help="plain http if FROM must be pulled")
    gate.add_arguments(cmd)


def run(args: argparse.Namespace) -> int:
    path = Path(args.file)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidRequest(f"could not read {path}: {exc.strerror}") from exc
    modelfile = parse(text)
    client = ensure_server()
    fields: dict[str, object] = {}
    source = Path(modelfile.from_).expanduser()
    if not source.is_absolute():
        source = path.parent / source
    if modelfile.from_.endswith(".gguf") or source.is_file():
        if not source.is_file():
            raise InvalidRequest(f"FROM {modelfile.from_}: no such file")
        print(f"uploading {source.name}")
        fields["files"] = {source.name: client.upload_blob(source)}
    else:
        try:
            client.show(modelfile.from_)
        except ClientError as exc:
            if exc.status_code != 404:
                raise
            print(f"pulling {modelfile.from_}")
            for _ in client.pull(modelfile.from_, insecure=args.insecure):
                pass
        fields["from"] = modelfile.from_
    adapters = {}
    for ref in modelfile.adapters:
        adapter = Path(ref).expanduser()
        adapter = adapter if adapter.is_absolute() else path.parent / adapter
        if not adapter.is_file():
            raise InvalidRequest(f"ADAPTER {ref}: no such file")
        print(f"uploading {adapter.name}")
        adapters[adapter.name] = client.upload_blob(adapter)
    if adapters:
        fields["adapters"] = adapters
    result = client.create(
        args.model,
        template=modelfile.template,
        system=modelfile.system,
        parameters=modelfile.parameters or None,
        messages=modelfile.messages or None,
        license=modelfile.license or None,
        **fields,
    )
    if gate.wanted(args):  # measured here, in this store; below a floor it is deleted again
        gate.check(args.model, args, lambda: client.delete(args.model))
    print(result.get("status", "success"))
    return 0
