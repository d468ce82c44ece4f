#!/usr/bin/env python3
"""Checks Argo Workflows `Workflow` documents against Argo's full Workflow CRD schema, made
strict.

Usage: argo_check.py FILE...   (YAML or JSON; every document in every file must be a
                               Workflow; exit 0: all pass, 1: some fail, 2: usage)

The schema is testing/fixtures/argo/workflow.schema.json (the CRD's openAPIV3Schema, verbatim;
see that folder's README.md for its release), transformed here at load time:

- strict: every object schema that has no `additionalProperties` and no
  `x-kubernetes-preserve-unknown-fields: true` gets `additionalProperties: false`. That covers
  objects that list `properties` (an unknown or misspelt field is an error, where the API
  server would silently prune it) and the few property-less objects (Argo's empty structs such
  as `archive.none`, where the API server would prune every field);
- `x-kubernetes-int-or-string: true` becomes `type: [integer, string]`;
- `metadata` (just `type: object` in the CRD) is checked as Kubernetes' ObjectMeta
  (fixtures/argo/objectmeta.schema.json, strict), and must have `name` or `generateName`.

plus `apiVersion: argoproj.io/v1alpha1` and `kind: Workflow`. Validation is JSON Schema draft
2020-12 (`jsonschema`), which covers the OpenAPI v3 subset that CRD schemas use. Not checked:
`format`s, the CEL rules (`x-kubernetes-validations`) and what only Argo's controller checks
(template references, expressions). A `null` value is an error (the API server would drop it).

Errors go to stdout: per failing document its file and index, then one line per error with
its path (`spec.templates[0].dag.tasks[1]`) and message.
"""
import json
import sys
from functools import lru_cache
from pathlib import Path

import jsonschema
import yaml

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "argo"
API_VERSION = "argoproj.io/v1alpha1"
KIND = "Workflow"
MAX_ERRORS = 50


def strict(schema: dict) -> dict:
    """A copy of an OpenAPI v3 (structural) schema with the transformations described above."""
    s = dict(schema)
    if s.get("x-kubernetes-int-or-string"):
        s.pop("anyOf", None)
        s["type"] = ["integer", "string"]
    if "properties" in s:
        s["properties"] = {name: strict(sub) for name, sub in s["properties"].items()}
    if isinstance(s.get("additionalProperties"), dict):
        s["additionalProperties"] = strict(s["additionalProperties"])
    elif ("additionalProperties" not in s
          and not s.get("x-kubernetes-preserve-unknown-fields")
          and ("properties" in s or s.get("type") == "object")):
        s["additionalProperties"] = False
    if isinstance(s.get("items"), dict):
        s["items"] = strict(s["items"])
    for key in ("anyOf", "allOf", "oneOf"):
        if key in s:
            s[key] = [strict(sub) for sub in s[key]]
    if isinstance(s.get("not"), dict):
        s["not"] = strict(s["not"])
    return s


@lru_cache(maxsize=1)
def validator() -> jsonschema.protocols.Validator:
    crd = json.loads((FIXTURES / "workflow.schema.json").read_text(encoding="utf-8"))
    meta = json.loads((FIXTURES / "objectmeta.schema.json").read_text(encoding="utf-8"))
    schema = strict(crd)
    schema["$defs"] = meta["$defs"]  # ObjectMeta's own refs are #/$defs/...
    schema["required"] = sorted(set(schema.get("required", [])) | {"apiVersion", "kind", "metadata", "spec"})
    schema["properties"]["apiVersion"] = {**schema["properties"]["apiVersion"], "const": API_VERSION}
    schema["properties"]["kind"] = {**schema["properties"]["kind"], "const": KIND}
    schema["properties"]["metadata"] = {"$ref": meta["$ref"]}
    return jsonschema.Draft202012Validator(schema)


def where(path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(document)"


def describe(error: jsonschema.ValidationError) -> str:
    msg = error.message
    if error.validator in ("anyOf", "oneOf") and error.context:
        best = jsonschema.exceptions.best_match(error.context)
        msg += f" (e.g. at {where(list(error.absolute_path) + list(best.path))}: {best.message})"
    if len(msg) > 600:
        msg = msg[:600] + "..."
    return f"{where(error.absolute_path)}: {msg}"


def check_document(doc) -> list:
    if not isinstance(doc, dict):
        return [f"(document): a {type(doc).__name__}, not a mapping"]
    errors = sorted(validator().iter_errors(doc), key=lambda e: (list(map(str, e.absolute_path)), e.message))
    lines = [describe(e) for e in errors[:MAX_ERRORS]]
    meta = doc.get("metadata")
    if isinstance(meta, dict) and not meta.get("name") and not meta.get("generateName"):
        lines.insert(0, "metadata: has neither name nor generateName")
    if len(errors) > MAX_ERRORS:
        lines.append(f"... and {len(errors) - MAX_ERRORS} more")
    return lines


def main(argv) -> int:
    if not argv:
        print("usage: argo_check.py FILE...", file=sys.stderr)
        return 2
    failed = False
    for path in argv:
        try:
            with open(path, encoding="utf-8") as f:
                docs = [d for d in yaml.safe_load_all(f) if d is not None]
        except (OSError, yaml.YAMLError) as e:
            print(f"FAIL {path}: cannot read as YAML/JSON: {e}")
            failed = True
            continue
        if not docs:
            print(f"FAIL {path}: no document")
            failed = True
            continue
        for i, doc in enumerate(docs):
            errors = check_document(doc)
            if errors:
                failed = True
                print(f"FAIL {path} document {i}:")
                for e in errors:
                    print(f"  {e}")
            else:
                print(f"ok {path} document {i}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
