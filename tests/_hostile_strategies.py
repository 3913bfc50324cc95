"""Hypothesis strategies that break a tool's published ``inputSchema``, and the schema walking behind them.

``schema_violation(schemas, baselines)`` takes one valid call per tool and breaks exactly one field
(a top-level argument or a field of a nested request model): a value of the wrong type, out of
range, NaN/inf, a huge string or list, an unknown or a missing field, hostile text. Values that
pydantic's lax mode converts losslessly ("5" -> 5) are not counted as invalid; ``is_invalid``
confirms a generated call breaks the schema as the client would send it.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import jsonschema
from hypothesis import strategies as st

HOSTILE_STRINGS = [
    "../../etc/passwd", "/etc/passwd", "~root/.ssh/id_rsa", "..", "\x00", "a\x00b", "名前", "🏀" * 50,
    "'; DROP TABLE runs; --", "$(rm -rf /)", "{{7*7}}", "<script>alert(1)</script>", "\u202e", "\ud7ff",
    "xgboost", "sklearn.svm.SVC", "__import__('os').system('id')", "NaN", "Infinity", " ", "\n",
]


# --- schema walking -------------------------------------------------------------------------------


def resolve(node: dict, root: dict) -> dict:
    while "$ref" in node:
        target = root["$defs"][node["$ref"].rsplit("/", 1)[-1]]
        node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    return node


def branches(node: dict, root: dict) -> list[dict]:
    node = resolve(node, root)
    options = node.get("anyOf") or node.get("oneOf")
    return [resolve(b, root) for b in options] if options else [node]


def object_node(node: dict, root: dict) -> dict | None:
    """The object schema behind ``node`` (through $ref and nullable anyOf), if it has properties."""
    for branch in branches(node, root):
        if branch.get("type") == "object" and "properties" in branch:
            return branch
    return None


def mutation_sites(schema: dict) -> list[tuple[tuple[str, ...], dict]]:
    """Every (path, schema) a generated call may break: top-level fields and the fields of nested
    request models (one level down), including optional fields the baseline leaves out."""
    sites: list[tuple[tuple[str, ...], dict]] = [((), schema)]
    for name, prop in schema.get("properties", {}).items():
        sites.append(((name,), prop))
        nested = object_node(prop, schema)
        if nested is not None:
            sites.append(((name, "*"), nested))
            sites += [((name, child), child_schema) for child, child_schema in nested["properties"].items()]
    return sites


def _is_number_text(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


def lax_coercible(value: Any, node: dict, root: dict) -> bool:
    """Values pydantic's lax mode converts losslessly ("5" -> 5, 1.0 -> 1, "true" -> True): the
    tools accept them on purpose, so they are not counted as invalid calls."""
    for branch in branches(node, root):
        kind = branch.get("type")
        if kind == "integer" and (
            isinstance(value, bool) or (isinstance(value, float) and value.is_integer())
            or (isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d+(\.0*)?\s*", value))
        ):
            return True
        if kind == "number" and (isinstance(value, bool) or (isinstance(value, str) and _is_number_text(value))):
            return True
        if kind == "boolean" and (
            (not isinstance(value, bool) and isinstance(value, (int, float)) and value in (0, 1))
            or (isinstance(value, str) and value.strip().lower() in
                {"0", "1", "true", "false", "yes", "no", "on", "off", "t", "f", "y", "n"})
        ):
            return True
    return False


JUNK = st.sampled_from([[], {}, [1, 2], {"a": 1}, "text", -1, 0, 1.5, True, None, math.nan, math.inf])
NON_NUMERIC_TEXT = st.text(min_size=1, max_size=20).filter(lambda s: not _is_number_text(s))


def huge_string(at_least: int) -> st.SearchStrategy[str]:
    return st.sampled_from([at_least + 1, at_least + 1000, 100_000, 1_000_000]).map(
        lambda n: "x" * max(n, at_least + 1)
    )


def valid_value(node: dict, root: dict) -> Any:
    """A small value valid for ``node`` (to fill huge lists and dicts with otherwise-valid items)."""
    validator = jsonschema.Draft202012Validator({**node, "$defs": root.get("$defs", {})})
    for candidate in (1, "x", 0.5, {"type": "int", "low": 1, "high": 2}, "0" * 32, True, None, {"a": 1}):
        if validator.is_valid(candidate):
            return candidate
    return None


def invalid_values(node: dict, root: dict) -> st.SearchStrategy[Any]:
    node = resolve(node, root)
    options = branches(node, root)
    if len(options) > 1:
        found = st.one_of([JUNK, *(_invalid_for_branch(b, root) for b in options if b.get("type") != "null")])
        return found.filter(lambda v: not lax_coercible(v, node, root))
    return _invalid_for_branch(node, root)


def as_sent(value: Any) -> Any:
    """What the client puts on the wire: JSON has no NaN or infinity, the SDK sends them as null
    (a raw NaN token is tested separately, over stdio)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: as_sent(v) for k, v in value.items()}
    if isinstance(value, list):
        return [as_sent(v) for v in value]
    return value


def is_invalid(schema: dict, args: dict) -> bool:
    return not jsonschema.Draft202012Validator(schema).is_valid(as_sent(args))


def _invalid_for_branch(node: dict, root: dict) -> st.SearchStrategy[Any]:
    kind = node.get("type")
    found: list[st.SearchStrategy[Any]] = [JUNK]
    if "enum" in node or "const" in node:
        found.append(st.sampled_from(HOSTILE_STRINGS) | st.text(max_size=30))
    if kind == "string":
        found.append(st.integers() | st.floats() | st.lists(st.text(max_size=5), max_size=3))
        if "maxLength" in node:
            found.append(huge_string(node["maxLength"]))
        if node.get("minLength"):
            found.append(st.just(""))
        if "pattern" in node:
            found.append(st.sampled_from(HOSTILE_STRINGS) | st.text(max_size=40))
    elif kind in ("integer", "number"):
        found.append(st.sampled_from([math.nan, math.inf, -math.inf, 10**40, -(10**40)]))
        found.append(NON_NUMERIC_TEXT)
        if "minimum" in node:
            found.append(st.integers(max_value=math.floor(node["minimum"]) - 1) if kind == "integer"
                         else st.floats(max_value=node["minimum"], exclude_max=True, allow_nan=False))
        if "maximum" in node:
            found.append(st.integers(min_value=math.ceil(node["maximum"]) + 1) if kind == "integer"
                         else st.floats(min_value=node["maximum"], exclude_min=True, allow_nan=False))
        if kind == "integer":
            found.append(st.floats(allow_nan=False, allow_infinity=False).filter(lambda x: not x.is_integer()))
    elif kind == "boolean":
        found.append(st.sampled_from(["maybe", 2, 0.5, -1, "", "yes please", [True]]))
    elif kind == "array":
        item = node.get("items", {})
        found.append(st.lists(invalid_values(item, root), min_size=1, max_size=3))
        found.append(st.sampled_from(["not a list", 7, {"k": 1}]))
        if "maxItems" in node:
            filler = valid_value(item, root)
            found.append(st.sampled_from([node["maxItems"] + 1, node["maxItems"] + 5000]).map(lambda n: [filler] * n))
        if node.get("minItems"):
            found.append(st.just([]))
    elif kind == "object":
        extra = node.get("additionalProperties")
        found.append(st.sampled_from(["not an object", 3, [1]]))
        if isinstance(extra, dict):
            keys = st.from_regex(r"\A[a-z]{1,12}\Z")
            found.append(st.dictionaries(keys, invalid_values(extra, root), min_size=1, max_size=3))
            filler = valid_value(extra, root)
            if "maxProperties" in node:
                found.append(st.sampled_from([node["maxProperties"] + 1, node["maxProperties"] + 3000]).map(
                    lambda n: {f"k{i}": filler for i in range(n)}))
            key_limit = node.get("propertyNames", {}).get("maxLength")
            if key_limit:
                found.append(st.just({"k" * (key_limit + 1): filler}))
    return st.one_of(found).filter(lambda v: not lax_coercible(v, node, root))


@st.composite
def schema_violation(
    draw, schemas: dict[str, dict], baselines: dict[str, dict]
) -> tuple[str, dict, tuple[str, ...]]:
    """(tool, arguments, field names any of which the error must mention): ``baselines[tool]``
    with one field broken against ``schemas[tool]``."""
    name = draw(st.sampled_from(sorted(schemas)))
    schema = schemas[name]
    args = json.loads(json.dumps(baselines[name]))
    path, node = draw(st.sampled_from(mutation_sites(schema)))
    kind = draw(st.sampled_from(["value", "unknown_field", "missing"]))
    if path and path[-1] == "*":  # the nested object itself: add an unknown field or drop a required one
        kind = draw(st.sampled_from(["unknown_field", "missing"]))
    container, key = args, None
    if path:
        for part in path[:-1]:
            container = container.setdefault(part, {})
        key = path[-1]
    if not path or key == "*":
        target = container
        node_obj = schema if not path else node
        required = node_obj.get("required", [])
        if kind == "missing" and required and all(r in target for r in required):
            missing = draw(st.sampled_from(required))
            del target[missing]
            return name, args, (missing,)
        unknown = draw(st.from_regex(r"\A[a-z][a-z_]{0,15}\Z").filter(lambda k: k not in node_obj.get("properties", {})))
        target[unknown] = draw(JUNK | st.text(max_size=10))
        return name, args, (unknown,)
    container[key] = draw(invalid_values(node, schema))
    return name, args, (key,)


def unbounded_nodes(node: dict, root: dict, where: str = "", seen: frozenset = frozenset()) -> list[str]:
    if "$ref" in node:
        ref = node["$ref"]
        if ref in seen:
            return []
        return unbounded_nodes(resolve(node, root), root, where, seen | {ref})
    found = []
    kind = node.get("type")
    if kind == "string" and "maxLength" not in node and "enum" not in node and "const" not in node:
        found.append(where or "<root>")
    if kind == "array":
        if "maxItems" not in node:
            found.append(where)
        found += unbounded_nodes(node.get("items", {}), root, where + "[]", seen)
    if kind == "object":
        extra = node.get("additionalProperties")
        if isinstance(extra, dict):
            if "maxProperties" not in node or "maxLength" not in node.get("propertyNames", {}):
                found.append(where + "{}")
            found += unbounded_nodes(extra, root, where + "{}", seen)
        for key, child in node.get("properties", {}).items():
            found += unbounded_nodes(child, root, f"{where}.{key}", seen)
    for option in node.get("anyOf", []) + node.get("oneOf", []):
        found += unbounded_nodes(option, root, where, seen)
    return found
