#!/usr/bin/env python3
"""Writes a service's constraints table: for every operation, its input members in the model's order with
the constraints AWS validates (required, lengths, ranges, patterns, enum values, list and map members).
The facts come from botocore's published service models (the ones boto3 ships); the server checks every
request against these tables (server/src/validation.rs). Run it from the repository root with the test
venv's Python after upgrading botocore:
    .venv/bin/python scripts/gen-constraints.py kinesis server/src/kds/constraints.json
    .venv/bin/python scripts/gen-constraints.py firehose server/src/firehose/constraints.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import botocore
import botocore.session

# Firehose's destination configurations nest deeper than KDS's documents (a processor's parameters
# sit six structures down); past this depth a member is checked for its type only.
MAX_DEPTH = 8


def lower_camel(name: str) -> str:
    return name[:1].lower() + name[1:]


def shape_doc(shape, depth: int = 0) -> dict:
    doc: dict = {"type": shape.type_name}
    for key in ("min", "max", "pattern"):
        if key in shape.metadata:
            doc[key] = shape.metadata[key]
    if getattr(shape, "enum", None):
        doc["enum"] = list(shape.enum)
    if depth > MAX_DEPTH:
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
    service, out = sys.argv[1], Path(sys.argv[2])
    model = botocore.session.get_session().get_service_model(service)
    operations = {}
    for name in model.operation_names:
        shape = model.operation_model(name).input_shape
        operations[name] = [] if shape is None else [
            member_doc(member, member_shape, member in shape.required_members, 1)
            for member, member_shape in shape.members.items()
        ]
    table = {
        "source": f"botocore {botocore.__version__}, service {service} {model.api_version}",
        "operations": operations,
    }
    out.write_text(json.dumps(table, indent=1, sort_keys=False) + "\n")
    print(f"wrote {out} ({len(operations)} operations)")


if __name__ == "__main__":
    main()
