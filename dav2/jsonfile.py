"""The one JSON reader for files a user names: size and nesting bounded, every problem one line.

Sidecars, DA-2K annotations, dav2-bench result files, transformers config.json files, shard
indexes: all are read with `read_json` (a file) or `parse_json` (text already in memory), which

- read the file through dav2.files.read_user_bytes: a regular file of at most MAX_JSON_BYTES
  (64 MB; raise it with $DAV2_MAX_JSON_MB), never a FIFO or /dev/zero;
- refuse nesting deeper than MAX_JSON_DEPTH (100) before parsing: Python's parser recurses
  once per level and a file of 200,000 "[" would end in RecursionError. The depth is counted
  without recursion (numpy over the brackets outside strings);
- turn a decoding or syntax error into one JsonError (a Dav2Error) naming the file and the
  line and column.

What the document must look like is the caller's to check; `expect` makes a wrong type one
line too ("DA-2K annotations x.json: "pairs" must be a list, not a number").
"""

import json
import os
import re

import numpy as np

from dav2.errors import Dav2Error, quote
from dav2.files import read_user_bytes

MAX_JSON_BYTES = 64 * 1024 * 1024
MAX_JSON_DEPTH = 100
LIMIT_VARIABLE = "DAV2_MAX_JSON_MB"
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)

JSON_TYPES = {dict: "an object", list: "a list", str: "a string", bool: "true or false", type(None): "null"}


class JsonError(Dav2Error):
    """A JSON file that cannot be read, is too large or too deep, or has the wrong shape."""


def json_limit() -> int:
    """MAX_JSON_BYTES, or $DAV2_MAX_JSON_MB megabytes when set to a positive number."""
    value = os.environ.get(LIMIT_VARIABLE, "").strip()
    try:
        megabytes = float(value)
    except ValueError:
        return MAX_JSON_BYTES
    return int(megabytes * 1024 * 1024) if megabytes > 0 and np.isfinite(megabytes) else MAX_JSON_BYTES


def read_json(path: str | os.PathLike, what: str, limit: int | None = None) -> object:
    """The JSON document in the file `path` (a `what`: "DA-2K annotations"), bounded as the module
    docstring says."""
    data = read_user_bytes(path, json_limit() if limit is None else limit, what, f"${LIMIT_VARIABLE}")
    return parse_json(data, f"{what} {quote(path)}")


def parse_json(text: str | bytes, what: str, max_depth: int = MAX_JSON_DEPTH) -> object:
    """The JSON document in `text`; one JsonError naming `what` when it is not JSON or too deep."""
    data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else bytes(text)
    depth = nesting_depth(data, max_depth)
    if depth > max_depth:
        raise JsonError(f"{what} is nested {depth} levels deep, past the limit of {max_depth}")
    try:
        return json.loads(data)
    except json.JSONDecodeError as exc:
        raise JsonError(f"{what} is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})") from None
    except (UnicodeDecodeError, RecursionError, ValueError) as exc:
        raise JsonError(f"{what} is not valid JSON ({type(exc).__name__})") from None


def nesting_depth(data: bytes, max_depth: int = MAX_JSON_DEPTH) -> int:
    """The deepest nesting of [ and { outside strings, counted without recursion; 0 when the
    text has too few brackets to be deeper than `max_depth` (the common case, not counted)."""
    if data.count(b"[") + data.count(b"{") <= max_depth:
        return 0
    codes = np.frombuffer(_STRING.sub(b'""', data), np.uint8)
    steps = np.isin(codes, (ord("["), ord("{"))).astype(np.int32) - np.isin(codes, (ord("]"), ord("}")))
    return int(np.cumsum(steps).max(initial=0))


def type_name(value: object) -> str:
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, int | float):
        return "a number"
    return JSON_TYPES.get(type(value), type(value).__name__)


def expect(value: object, kind: type | tuple[type, ...], what: str) -> object:
    """`value` when it is of `kind` (a bool is never a number here), else one JsonError:
    "`what` must be a list, not a string"."""
    kinds = kind if isinstance(kind, tuple) else (kind,)
    number_wanted = any(k in (int, float) for k in kinds)
    if isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds and number_wanted):
        return value
    wanted = " or ".join("a number" if k in (int, float) else JSON_TYPES.get(k, k.__name__) for k in kinds)
    raise JsonError(f"{what} must be {wanted}, not {type_name(value)}")


def finite_number(value: object, what: str) -> float:
    """A JSON number that is finite (json accepts NaN and Infinity), as float; else one JsonError."""
    number = float(expect(value, (int, float), what))
    if not np.isfinite(number):
        raise JsonError(f"{what} must be a finite number, not {value}")
    return number
