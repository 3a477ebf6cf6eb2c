"""YAML for job files: PyYAML's safe loader with the YAML 1.2 core schema, merge keys, no duplicate keys.

YAML 1.2 core schema (https://yaml.org/spec/1.2.2/#1032-tag-resolution), unlike PyYAML's YAML 1.1:
`010` is 10 (octal is `0o10`), `1e3` is the float 1000.0, booleans are only true/false (`yes`, `on`
stay strings), and there are no sexagesimal numbers or timestamps. Merge keys (`<<: *base`, or a list
of them) are kept: keys written in the mapping override merged ones, earlier merged mappings override
later ones. A key written twice in one mapping is an error.

Limits, so a hostile file fails at once with one line: a document is at most `MAX_YAML_BYTES`, and
its aliases may expand it to at most `MAX_YAML_NODES` nodes (counted on the node graph before any
object is built, so a "billion laughs" alias bomb costs nothing); an alias inside itself is refused.
"""

from __future__ import annotations

import math
import re
from typing import Any

import yaml
from yaml.constructor import ConstructorError

from .errors import ConfigError

MAX_YAML_BYTES = 1 << 20  # 1 MiB; job files are a few hundred bytes
MAX_YAML_NODES = 1_000_000  # after alias expansion; a document of MAX_YAML_BYTES without aliases has fewer

_MERGE_TAG = "tag:yaml.org,2002:merge"
_INT_DEC = re.compile(r"[-+]?[0-9]+")
_INT_OCT = re.compile(r"0o[0-7]+")
_INT_HEX = re.compile(r"0x[0-9a-fA-F]+")
_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")
_INF = re.compile(r"[-+]?(\.inf|\.Inf|\.INF)")
_NAN = re.compile(r"\.nan|\.NaN|\.NAN")
_BOOL = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}


class CoreLoader(yaml.SafeLoader):
    """A SafeLoader resolving plain scalars by the YAML 1.2 core schema (plus `<<` merge keys)."""

    yaml_implicit_resolvers: dict[Any, list[tuple[str, re.Pattern[str]]]] = {}


def _full(pattern: re.Pattern[str]) -> re.Pattern[str]:
    return re.compile(rf"^(?:{pattern.pattern})$")


for _tag, _pattern, _first in [
    ("tag:yaml.org,2002:null", re.compile(r"null|Null|NULL|~|"), ["~", "n", "N", ""]),
    ("tag:yaml.org,2002:bool", re.compile("|".join(_BOOL)), list("tTfF")),
    ("tag:yaml.org,2002:int", re.compile(f"{_INT_DEC.pattern}|{_INT_OCT.pattern}|{_INT_HEX.pattern}"),
     list("-+0123456789")),
    ("tag:yaml.org,2002:float", re.compile(f"{_FLOAT.pattern}|{_INF.pattern}|{_NAN.pattern}"),
     list("-+.0123456789")),
    (_MERGE_TAG, re.compile("<<"), ["<"]),
]:
    CoreLoader.add_implicit_resolver(_tag, _full(_pattern), _first)


def _scalar_error(node: yaml.ScalarNode, kind: str, text: str, why: str = "") -> ConstructorError:
    shown = text if len(text) <= 40 else text[:37] + "..."
    return ConstructorError(None, None, f"{shown!r} is not a YAML 1.2 {kind}{why}", node.start_mark)


def _construct_bool(loader: CoreLoader, node: yaml.ScalarNode) -> bool:
    text = loader.construct_scalar(node)
    if text not in _BOOL:
        raise _scalar_error(node, "boolean", text, " (write true or false)")
    return _BOOL[text]


def _construct_int(loader: CoreLoader, node: yaml.ScalarNode) -> int:
    text = loader.construct_scalar(node)
    try:
        if _INT_OCT.fullmatch(text):
            return int(text[2:], 8)
        if _INT_HEX.fullmatch(text):
            return int(text[2:], 16)
        if _INT_DEC.fullmatch(text):
            return int(text, 10)
    except ValueError:  # more digits than Python converts
        raise _scalar_error(node, "integer", text, " (too many digits)") from None
    raise _scalar_error(node, "integer", text)


def _construct_float(loader: CoreLoader, node: yaml.ScalarNode) -> float:
    text = loader.construct_scalar(node)
    if _INF.fullmatch(text):
        return -math.inf if text.startswith("-") else math.inf
    if _NAN.fullmatch(text):
        return math.nan
    if _FLOAT.fullmatch(text):
        return float(text)
    raise _scalar_error(node, "float", text)


def _merged(loader: CoreLoader, node: yaml.Node) -> dict[Any, Any]:
    """The mapping a `<<` key merges in: one mapping, or a list of them (earlier ones win)."""
    sources = node.value if isinstance(node, yaml.SequenceNode) else [node]
    out: dict[Any, Any] = {}
    for source in sources:
        if not isinstance(source, yaml.MappingNode):
            raise ConstructorError(None, None, "'<<' takes a mapping or a list of mappings", source.start_mark)
        for key, value in loader.construct_object(source, deep=True).items():
            out.setdefault(key, value)
    return out


def _construct_mapping(loader: CoreLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    """A dict of the mapping's own keys (each at most once) over the keys it merges in."""
    own: dict[Any, Any] = {}
    merged: dict[Any, Any] = {}
    seen_merge = False
    for key_node, value_node in node.value:
        if key_node.tag == _MERGE_TAG:
            if seen_merge:
                raise ConstructorError(None, None, "duplicate key '<<'", key_node.start_mark)
            seen_merge = True
            merged = _merged(loader, value_node)
            continue
        key = loader.construct_object(key_node, deep=True)
        try:
            duplicate = key in own
        except TypeError:
            raise ConstructorError(None, None, f"unhashable key {key!r}", key_node.start_mark) from None
        if duplicate:
            raise ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        own[key] = loader.construct_object(value_node, deep=True)
    return {**merged, **own}


CoreLoader.add_constructor("tag:yaml.org,2002:bool", _construct_bool)
CoreLoader.add_constructor("tag:yaml.org,2002:int", _construct_int)
CoreLoader.add_constructor("tag:yaml.org,2002:float", _construct_float)
CoreLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _where(source: str, node: yaml.Node) -> str:
    return f"{source}:{node.start_mark.line + 1}:{node.start_mark.column + 1}"


def _check_expansion(root: yaml.Node, source: str) -> None:
    """Refuse a node graph whose aliases expand it past MAX_YAML_NODES nodes, or that contains itself."""
    sizes: dict[int, int] = {}  # id(node) -> nodes below it, aliases expanded
    open_nodes: set[int] = set()

    def size(node: yaml.Node) -> int:
        if id(node) in sizes:
            return sizes[id(node)]
        if id(node) in open_nodes:
            raise ConfigError(f"{_where(source, node)}: recursive YAML alias (a node that contains itself)")
        open_nodes.add(id(node))
        children: list[yaml.Node] = []
        if isinstance(node, yaml.SequenceNode):
            children = node.value
        elif isinstance(node, yaml.MappingNode):
            children = [child for pair in node.value for child in pair]
        total = 1
        for child in children:
            total += size(child)
            if total > MAX_YAML_NODES:
                raise ConfigError(f"{_where(source, node)}: YAML aliases expand the document past "
                                  f"{MAX_YAML_NODES} nodes (the alias-expansion limit)")
        open_nodes.discard(id(node))
        sizes[id(node)] = total
        return total

    size(root)


def check_size(size: int, source: str) -> None:
    """Refuse a YAML document of more than MAX_YAML_BYTES bytes."""
    if size > MAX_YAML_BYTES:
        raise ConfigError(f"{source}: YAML document too large ({size} bytes; the limit is {MAX_YAML_BYTES})")


def parse_yaml(text: str, source: str) -> Any:
    """One YAML document (YAML 1.2 core schema, merge keys, no duplicate keys, the limits above) as plain
    Python data; a problem raises `ConfigError` naming `source:line:column`."""
    check_size(len(text) if len(text) > MAX_YAML_BYTES else len(text.encode("utf-8")), source)
    loader = CoreLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_expansion(node, source)
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{where}: malformed YAML: {problem}") from None
    except RecursionError:
        raise ConfigError(f"{source}: YAML nested too deeply") from None
    finally:
        loader.dispose()
