"""Metadata filters (``where``): equality, ``in`` and ranges on numbers and ISO dates.

``{"lang": "en", "tag": {"in": ["a", "b"]}, "year": {"gte": 2015, "lt": 2020},
"published": {"gte": "2021-01-01"}}``: every condition must hold. ISO-8601 dates compare as strings,
which orders them correctly when written alike (``YYYY-MM-DD[THH:MM:SS]``). One compiler turns a filter
into SQL over the document store's ``metadata`` JSON (which the vector and lexical searches then restrict
to) and a Python predicate (brute force, tests); a Milvus ``expr`` comes from the same checked form.
"""

from __future__ import annotations

import json
import re
from typing import Any

from retriever.errors import RetrieverError

RANGE_OPS = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
OPERATORS = set(RANGE_OPS) | {"eq", "in"}
KEY = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1  # SQLite's integers
Scalar = str | int | float | bool
Where = dict[str, Any]


class FilterError(RetrieverError):
    """A ``where`` filter is malformed."""


def _check_scalar(key: str, value: Any) -> Scalar:
    if isinstance(value, int) and not isinstance(value, bool) and not INT64_MIN <= value <= INT64_MAX:
        raise FilterError(f"where['{key}']: {value} is outside the 64-bit integer range")
    if isinstance(value, (str, int, float, bool)):
        return value
    raise FilterError(f"where['{key}']: expected a string, number or boolean, got {json.dumps(value)[:60]}")


def normalise(where: Where | None) -> list[tuple[str, str, Any]]:
    """Validate and flatten to ``(key, op, value)`` conditions (op in eq, in, gt, gte, lt, lte)."""
    if not where:
        return []
    if not isinstance(where, dict):
        raise FilterError("where must be an object of field conditions")
    out = []
    for key, cond in where.items():
        if not KEY.match(key):
            raise FilterError(f"where: field name '{key[:64]}' must be 1-64 letters, digits, '_', '-' or '.'")
        if not isinstance(cond, dict):
            out.append((key, "eq", _check_scalar(key, cond)))
            continue
        if not cond or set(cond) - OPERATORS:
            raise FilterError(f"where['{key}']: operators are {', '.join(sorted(OPERATORS))}; got {sorted(cond)}")
        for op, value in cond.items():
            if op == "in":
                if not isinstance(value, list) or not value:
                    raise FilterError(f"where['{key}']['in'] must be a non-empty list")
                out.append((key, "in", [_check_scalar(key, v) for v in value]))
            elif op in RANGE_OPS and (isinstance(value, bool) or not isinstance(value, (int, float, str))):
                raise FilterError(f"where['{key}']['{op}'] must be a number or an ISO date string")
            else:
                out.append((key, op, _check_scalar(key, value)))
    return out


def _path(key: str) -> str:
    return "$." + ".".join(f'"{part}"' for part in key.split("."))


def to_sql(where: Where | None) -> tuple[str, tuple]:
    """A SQL condition over ``documents.metadata`` and its arguments (``("", ())`` when unfiltered)."""
    parts, args = [], []
    for key, op, value in normalise(where):
        field = f"json_extract(metadata, '{_path(key)}')"
        if op == "in":
            parts.append(f"{field} IN ({','.join('?' * len(value))})")
            args += [int(v) if isinstance(v, bool) else v for v in value]
        else:
            parts.append(f"{field} {RANGE_OPS.get(op, '=')} ?")
            args.append(int(value) if isinstance(value, bool) else value)
    return " AND ".join(parts), tuple(args)


def _lookup(metadata: dict, key: str) -> Any:
    value: Any = metadata
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def _compare(left: Any, op: str, right: Any) -> bool:
    if left is None or isinstance(left, (dict, list)):
        return False
    numbers = (int, float)
    if isinstance(left, numbers) != isinstance(right, numbers):
        return False  # SQLite: numbers and text never compare equal or in range
    if op == "eq":
        return left == right
    return {"gt": left > right, "gte": left >= right, "lt": left < right, "lte": left <= right}[op]


def matches(where: Where | None, metadata: dict) -> bool:
    """The same filter as a Python predicate over one document's metadata."""
    for key, op, value in normalise(where):
        left = _lookup(metadata, key)
        if op == "in":
            if not any(_compare(left, "eq", v) for v in value):
                return False
        elif not _compare(left, op, value):
            return False
    return True


def to_milvus_expr(where: Where | None, field: str = "metadata") -> str:
    """A Milvus boolean expression over a JSON field."""
    parts = []
    for key, op, value in normalise(where):
        target = field + "".join(f'["{part}"]' for part in key.split("."))
        if op == "in":  # an OR of equalities: Milvus Lite takes ``in`` on plain fields only
            parts.append("(" + " or ".join(f"{target} == {json.dumps(v)}" for v in value) + ")")
        else:
            parts.append(f"{target} {RANGE_OPS.get(op, '==')} {json.dumps(value)}")
    return " and ".join(parts)
