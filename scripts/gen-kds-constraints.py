#!/usr/bin/env python3
"""Writes server/src/kds/constraints.json: for every KDS operation, its input members in the model's order
with the constraints AWS validates (required, lengths, ranges, patterns, enum values, list and map members).
The facts come from botocore's published `kinesis` service model (the one boto3 ships); the server checks
every request against this table (server/src/kds/validation.rs). Run it from the repository root with the
test venv's Python after upgrading botocore:  .venv/bin/python scripts/gen-kds-constraints.py
"""

from __future__ import annotations

import json
from pathlib import Path

import botocore
import botocore.session

OUT = Path(__file__).resolve().parents[1] / "server" / "src" / "kds" / "constraints.json"


def lower_camel(name: str) -> str:
    return name[:1].lower() + name[1:]


def shape_doc(shape, depth: int = 0) -> dict:
    doc: dict = {"type": shape.type_name}
    for key in ("min", "max", "pattern"):
        if key in shape.metadata:
            doc[key] = shape.metadata[key]
    if getattr(shape, "enum", None):
        doc["enum"] = list(shape.enum)
    if depth > 4:
        return doc
    if shape.type_name == "structure":
        doc["members"] = [member_doc(name, member, name in shape.required_members, depth + 1)
                          for name, member in shape.members.items()]
    elif shape.type_name == "list":
        doc["item"] = shape_doc(shape.member, depth + 1)
    elif shape.type_name == "map":
        doc["key"] = shape_doc(shape.key, depth + 1)
        doc["value"] = shape_doc(shape.value, depth + 1)
    return doc


def member_doc(name: str, shape, required: bool, depth: int) -> dict:
    return {"name": name, "path": lower_camel(name), "required": required, **shape_doc(shape, depth)}


def main() -> None:
    model = botocore.session.get_session().get_service_model("kinesis")
    operations = {}
    for name in model.operation_names:
        shape = model.operation_model(name).input_shape
        operations[name] = [] if shape is None else [
            member_doc(member, member_shape, member in shape.required_members, 1)
            for member, member_shape in shape.members.items()
        ]
    table = {
        "source": f"botocore {botocore.__version__}, service kinesis {model.api_version}",
        "operations": operations,
    }
    OUT.write_text(json.dumps(table, indent=1, sort_keys=False) + "\n")
    print(f"wrote {OUT} ({len(operations)} operations)")


if __name__ == "__main__":
    main()
