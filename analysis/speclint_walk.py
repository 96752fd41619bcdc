"""Shared plumbing of the spec lint: the result type, operations, $ref resolution, collection.

Results are keyed by (rule, JSON pointer): a flaw in a shared component is reported once,
at the component, with every operation that reaches it listed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import unquote

from mirrorscope.analysis.speclint_lines import escape_pointer_token
from mirrorscope.analysis.speclint_rules import RULES_BY_ID

OPERATION_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH"})
MAX_REF_DEPTH = 32  # $ref chains and schema nesting stop here (cycles end at the bound)


class SpecLintError(ValueError):
    """The document is not something the lint can read (wrong version, wrong shape)."""


@dataclass(frozen=True, slots=True)
class OperationRef:
    """One operation of the spec, as the lint walks it."""

    method: str  # upper case
    path: str  # the key under `paths`, as written
    pointer: str
    op: dict

    @property
    def label(self) -> str:
        """"GET /users/{id}"."""
        return f"{self.method} {self.path}"


@dataclass(slots=True)
class LintResult:
    """One rule broken at one place of the spec."""

    rule_id: str
    level: str
    message: str
    pointer: str  # JSON pointer into the spec (RFC 6901)
    line: int | None = None  # 1-based line in the source file, when known
    operations: list[tuple[str, str]] = field(default_factory=list)  # (METHOD, spec path)
    field_path: str | None = None  # dotted field path ("items[].sku"), for schema results
    observed_in_traffic: bool = False  # an operation of this result was seen in traffic
    observed_requests: int = 0
    traffic_evidence: list[str] = field(default_factory=list)  # what traffic confirms
    context: dict[str, object] = field(default_factory=dict)  # for traffic checks only

    @property
    def rule_name(self) -> str:
        """The rule's stable name."""
        return RULES_BY_ID[self.rule_id].name

    @property
    def confirmed_by_traffic(self) -> bool:
        """True when the observed traffic shows the flaw too."""
        return bool(self.traffic_evidence)

    def to_dict(self) -> dict[str, object]:
        """The JSON output contract of one result."""
        return {"rule_id": self.rule_id, "rule_name": self.rule_name, "level": self.level,
                "message": self.message, "pointer": self.pointer, "line": self.line,
                "operations": [f"{m} {p}" for m, p in self.operations], "field": self.field_path,
                "observed_in_traffic": self.observed_in_traffic,
                "observed_requests": self.observed_requests,
                "confirmed_by_traffic": self.confirmed_by_traffic,
                "traffic_evidence": list(self.traffic_evidence)}


def mapping(value: object) -> dict:
    """The value if it is a JSON object, else {} (malformed specs are linted, not crashed on)."""
    return value if isinstance(value, dict) else {}


def sequence(value: object) -> list:
    """The value if it is a JSON array, else []."""
    return value if isinstance(value, list) else []


def child(pointer: str, *tokens: object) -> str:
    """A pointer extended by reference tokens."""
    return pointer + "".join("/" + escape_pointer_token(t) for t in tokens)


def schema_types(schema: dict) -> set[str]:
    """The declared types of a schema (3.1 type lists, 3.0 single types), inferred if absent."""
    declared = schema.get("type")
    if isinstance(declared, str):
        return {declared}
    if isinstance(declared, list):
        return {t for t in declared if isinstance(t, str)}
    if "properties" in schema or "additionalProperties" in schema:
        return {"object"}
    if "items" in schema:
        return {"array"}
    return set()


class Collector:
    """Resolves local $refs and gathers results, merging repeats of (rule, pointer)."""

    def __init__(self, spec: dict) -> None:
        self.spec = spec
        self.results: dict[tuple[str, str], LintResult] = {}

    def resolve(self, node: object, pointer: str) -> tuple[object, str]:
        """Follow local $refs; (None, pointer) for external or dangling ones."""
        depth = 0
        while isinstance(node, dict) and isinstance(node.get("$ref"), str):
            ref = node["$ref"]
            if not ref.startswith("#") or depth >= MAX_REF_DEPTH:
                return None, pointer  # another document: not ours to lint
            pointer = unquote(ref[1:])
            node = self.lookup(pointer)
            depth += 1
        return node, pointer

    def lookup(self, pointer: str) -> object:
        """The node at a JSON pointer, or None."""
        node: object = self.spec
        for token in pointer.split("/")[1:]:
            token = token.replace("~1", "/").replace("~0", "~")
            if isinstance(node, dict):
                node = node.get(token, _int_key(node, token))
            elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
                node = node[int(token)]
            else:
                return None
        return node

    def add(self, rule_id: str, pointer: str, message: str,
            operation: OperationRef | None = None, *, level: str | None = None,
            field_path: str | None = None, context: dict[str, object] | None = None) -> None:
        """Record a result, or add the operation to the same rule's result at that pointer."""
        key = (rule_id, pointer)
        result = self.results.get(key)
        if result is None:
            result = self.results[key] = LintResult(
                rule_id, level or RULES_BY_ID[rule_id].level, message, pointer,
                field_path=field_path, context=dict(context or {}))
        if operation is not None:
            entry = (operation.method, operation.path)
            if entry not in result.operations:
                result.operations.append(entry)


def _int_key(node: dict, token: str) -> object:
    # YAML reads `200:` as an int key: a pointer token "200" must still find it.
    return node.get(int(token)) if token.isdigit() else None


def operations(spec: dict, collector: Collector) -> list[OperationRef]:
    """Every operation of the spec, path items resolved."""
    out: list[OperationRef] = []
    paths = spec.get("paths")
    if not isinstance(paths, dict):
        return out
    for path, raw_item in paths.items():
        item, item_pointer = collector.resolve(raw_item, child("/paths", path))
        if not isinstance(item, dict):
            continue
        for method in OPERATION_METHODS:
            op = item.get(method)
            if isinstance(op, dict):
                out.append(OperationRef(method.upper(), str(path), child(item_pointer, method),
                                        op))
    return out


def path_item(spec: dict, collector: Collector, operation: OperationRef) -> tuple[dict, str]:
    """The (resolved) path item that holds an operation, and its pointer."""
    item, pointer = collector.resolve(mapping(spec.get("paths")).get(operation.path),
                                      child("/paths", operation.path))
    return (item if isinstance(item, dict) else {}), pointer
