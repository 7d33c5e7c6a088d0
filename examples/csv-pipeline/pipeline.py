"""Classify support tickets and extract fields from a CSV with `slm batch`, into CSV or Parquet.

    python pipeline.py tickets.csv tickets-labelled.csv [--target URL|slm://MODEL] [--model NAME]

Each row becomes one chat request whose answer must follow a JSON schema (the server enforces
it with a grammar, so every answer parses); `slm batch` runs them (resumable: run it again
after an interruption and only the missing rows are sent); the answers are joined back to the
rows by ``custom_id``. Output: the input's columns plus category, urgent, product (and error,
for a row whose request failed). A .parquet output needs pyarrow.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

SCHEMA = {
    "type": "object",
    "properties": {
        "category": {"enum": ["billing", "shipping", "product", "account"]},
        "urgent": {"type": "boolean"},
        "product": {"type": "string", "maxLength": 40},
    },
    "required": ["category", "urgent", "product"],
    "additionalProperties": False,
}
SYSTEM = (
    "You label customer support tickets as JSON. category: billing, shipping, product or account; "
    "urgent: true if the customer needs help today; product: the product the ticket names, else empty."
)
# One worked example per category: a small model copies the pattern far better than it follows
# a description (SmolLM2-135M without them: every row "billing", product "the product named")
EXAMPLES = [
    ("My invoice shows the wrong address for my PhotoBox subscription.",
     {"category": "billing", "urgent": False, "product": "PhotoBox"}),
    ("My parcel with the TrailLamp was sent to the wrong town.",
     {"category": "shipping", "urgent": False, "product": "TrailLamp"}),
    ("I cannot change my email, and I need it fixed today.",
     {"category": "account", "urgent": True, "product": ""}),
    ("The SoundBar remote stopped working after a week.",
     {"category": "product", "urgent": False, "product": "SoundBar"}),
]  # fmt: skip


def messages(text: str) -> list[dict[str, str]]:
    shots = []
    for ticket, answer in EXAMPLES:
        shots.append({"role": "user", "content": "Ticket: " + ticket})
        shots.append({"role": "assistant", "content": json.dumps(answer)})
    return [{"role": "system", "content": SYSTEM}, *shots, {"role": "user", "content": "Ticket: " + text}]


def requests(rows: list[dict[str, str]], model: str) -> str:
    lines = []
    for row in rows:
        body = {
            "model": model,
            "messages": messages(row["text"]),
            "response_format": {"type": "json_schema", "json_schema": {"name": "ticket", "schema": SCHEMA}},
            "temperature": 0,
            "max_tokens": 60,
        }
        lines.append(
            json.dumps(
                {"custom_id": row["id"], "method": "POST", "url": "/v1/chat/completions", "body": body}
            )
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("input")
    parser.add_argument("output")
    parser.add_argument("--target", help="server URL or slm://MODEL (default: the local slm serve)")
    parser.add_argument("--model", default="smollm2:135m")
    args = parser.parse_args()
    with open(args.input, newline="") as fh:
        rows = list(csv.DictReader(fh))
    work = Path(args.output).with_suffix(".batch")
    work.mkdir(exist_ok=True)
    (work / "requests.jsonl").write_text(requests(rows, args.model))
    slm = shutil.which("slm") or str(Path(sys.executable).with_name("slm"))
    command = [slm, "batch", str(work / "requests.jsonl"), "-o", str(work / "results.jsonl")]
    if args.target:
        command += ["--target", args.target]
    if subprocess.run(command).returncode != 0:
        print("some rows are not answered yet: run the pipeline again", file=sys.stderr)
        return 1
    answers = {}
    for line in (work / "results.jsonl").read_text().splitlines():
        result = json.loads(line)
        response = result.get("response") or {}
        if response.get("status_code") == 200:
            answers[result["custom_id"]] = json.loads(response["body"]["choices"][0]["message"]["content"])
        else:
            answers[result["custom_id"]] = {"error": json.dumps(response.get("body") or result.get("error"))}
    out = [
        {**row, **{k: "" for k in (*SCHEMA["properties"], "error")}, **answers.get(row["id"], {})}
        for row in rows
    ]
    if args.output.endswith(".parquet"):
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(out), args.output)
    else:
        with open(args.output, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(out[0]))
            writer.writeheader()
            writer.writerows(out)
    print(f"{len(out)} rows -> {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
