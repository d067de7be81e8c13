"""Checking a JSON body against the openai SDK's TypedDicts: the keys the SDK does not define.

pydantic ignores extra keys in TypedDicts, so `unknown_keys` is the check that nothing we send (or the
emulator accepts) is made up.
"""

from __future__ import annotations

import types
from collections.abc import Mapping
from typing import Any, Literal, Union, get_args, get_origin

from typing_extensions import get_type_hints, is_typeddict  # the SDK's TypedDicts are typing_extensions'


def unknown_keys(value: Any, tp: Any, path: str = "$") -> list[str]:
    """Keys in `value` that the SDK TypedDict `tp` (recursively) does not define.

    pydantic ignores extra keys in TypedDicts, so this is the check that nothing we send is made up.
    """
    origin = get_origin(tp)
    if origin is Union or isinstance(tp, types.UnionType):
        fits = [m for m in get_args(tp) if kind_fits(value, m)]
        if not fits:
            return [f"{path}: {type(value).__name__} fits none of {tp}"]
        return min((unknown_keys(value, m, path) for m in fits), key=len)
    if is_typeddict(tp):
        if not isinstance(value, dict):
            return [f"{path}: expected an object"]
        hints = get_type_hints(tp)
        found = [f"{path}.{k}" for k in value if k not in hints]
        for key, item in value.items():
            if key in hints:
                found += unknown_keys(item, hints[key], f"{path}.{key}")
        return found
    if isinstance(value, list) and get_args(tp):
        return [p for i, item in enumerate(value) for p in unknown_keys(item, get_args(tp)[0], f"{path}[{i}]")]
    return []


def kind_fits(value: Any, tp: Any) -> bool:
    """Whether `value` could be a `tp` at all (tagged unions: a ``type`` literal must agree)."""
    if tp is type(None):
        return value is None
    if isinstance(value, dict):
        if is_typeddict(tp):
            hints = get_type_hints(tp)
            return all(
                get_origin(hints[k]) is not Literal or v in get_args(hints[k]) for k, v in value.items() if k in hints
            )
        return tp in (object, Any) or get_origin(tp) in (dict, Mapping)
    return not is_typeddict(tp) and (get_origin(tp) is not Literal or value in get_args(tp))
