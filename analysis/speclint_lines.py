"""Line numbers of a spec's nodes, keyed by JSON pointer, for SARIF regions.

YAML (and JSON, which PyYAML reads as YAML in nearly every case) is composed into a node
tree whose marks give each key's line.  A document PyYAML cannot compose gets no lines:
line numbers are a convenience, never a reason to fail a lint.
"""

from __future__ import annotations

_MAX_ENTRIES = 200_000  # aliases can make a small file a huge tree: stop walking there
_MAX_DEPTH = 64


def escape_pointer_token(token: object) -> str:
    """One JSON pointer reference token (RFC 6901: ~ -> ~0, / -> ~1)."""
    return str(token).replace("~", "~0").replace("/", "~1")


def line_map(text: str) -> dict[str, int]:
    """JSON pointer -> 1-based line of the key (or item) that holds it; {} when unreadable."""
    try:
        import yaml
    except ImportError:  # pragma: no cover - PyYAML is a dependency
        return {}
    try:
        root = yaml.compose(text.lstrip("\ufeff"), Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return {}
    lines: dict[str, int] = {}
    if root is not None:
        lines[""] = root.start_mark.line + 1
        _walk(root, "", lines, 0)
    return lines


def _walk(node: object, pointer: str, lines: dict[str, int], depth: int) -> None:
    import yaml

    if depth > _MAX_DEPTH or len(lines) > _MAX_ENTRIES:
        return
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if not isinstance(key, yaml.ScalarNode):
                continue
            child = f"{pointer}/{escape_pointer_token(key.value)}"
            lines.setdefault(child, key.start_mark.line + 1)
            _walk(value, child, lines, depth + 1)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            child = f"{pointer}/{index}"
            lines.setdefault(child, item.start_mark.line + 1)
            _walk(item, child, lines, depth + 1)


def line_for(lines: dict[str, int], pointer: str) -> int | None:
    """The line of a pointer, else of its nearest ancestor that has one."""
    while True:
        if pointer in lines:
            return lines[pointer]
        if not pointer:
            return None
        pointer = pointer.rsplit("/", 1)[0]
