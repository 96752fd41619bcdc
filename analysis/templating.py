"""Path templating on a trie: typed segments plus statistics over the values seen at a position.

Every request path is inserted segment by segment.  A position becomes a parameter when:

- the value is typed (integer, UUID, ObjectId, hex digest, date, e-mail, IPv4, random token);
- enough distinct sibling values share an informative shape ("SKU-000123"), are slugs
  ("how-to-bake-bread") or are static files in one directory;
- or simply too many distinct values answered at one position (cardinality).

Fixed words stay literal: versions (v1, v2beta1), reserved route words (me, search, latest
...), and a value whose 2xx JSON responses have a different shape from its siblings' (the
"split" rule: `/articles/editors-picks` next to `/articles/{article}`).  Every decision is
recorded on the node as a reason string.  The trie stores one opaque payload per HTTP method
at each endpoint node; merging two nodes merges their payloads through a callback, so the
inventory's statistics follow the templates.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar
from urllib.parse import quote, unquote

from mirrorscope.analysis.templating_segments import (
    RESERVED_WORDS,
    STATIC_DIRS,
    asset_extension,
    informative_shape,
    is_slug,
    is_version,
    param_name,
    shape,
    typed_kind,
)

P = TypeVar("P")
KeysFn = Callable[[], frozenset[str] | None]
_SAFE = "!$&'()*+,;=:@-._~"
# Value kinds a parameter gets from statistics rather than from a typed value.
UNTYPED_KINDS = frozenset({"slug", "asset", "string", "shape", "joined"})


def confirms_existence(status: int | None) -> bool:
    """True when a response status shows the route exists (2xx/3xx, or auth/rate refusals)."""
    return status is not None and (100 <= status < 400 or status in (401, 403, 429))


def split_path(path: str, max_depth: int) -> tuple[list[str], bool]:
    """Decoded, non-empty segments of a path (at most max_depth) and whether it was cut."""
    segments = [unquote(s, errors="replace") for s in path.split("/") if s]
    if len(segments) > max_depth:
        return segments[:max_depth], True
    return segments, False


@dataclass(slots=True)
class TemplatingConfig:
    """Thresholds of the templater (all counts are distinct sibling values)."""

    max_depth: int = 24  # segments kept per path; deeper ones are dropped (counted)
    max_children: int = 256  # literal children per node; beyond, new values go to a parameter
    max_nodes: int = 100_000  # trie nodes per host; beyond, new values go to a parameter
    max_literal_siblings: int = 20  # cardinality rule
    slug_min_values: int = 5
    join_min_values: int = 5  # values a parameter needs before look-alike literals join it
    shape_min_values: int = 4
    asset_min_files: int = 4  # 2 under a static directory name (static/, assets/, ...)
    split_jaccard: float = 0.25  # response-key similarity below which a value stays literal
    profile_min_samples: int = 3  # 2xx JSON responses needed before the split rule applies
    profile_max_samples: int = 64  # responses profiled per node and method (enough for a vote)
    max_reasons: int = 6
    max_members: int = 4096  # untyped values remembered per parameter
    reserved_words: frozenset[str] = RESERVED_WORDS


class Node(Generic[P]):
    """One position of the trie: a literal segment or the parameter of its parent."""

    __slots__ = ("accepts", "children", "hits", "kinds", "literal", "live", "members",
                 "merged_into", "methods", "name", "param", "parent", "payloads",
                 "profile_n", "profiles", "protected", "reasons")

    def __init__(self, parent: Node[P] | None, literal: str | None, name: str = "") -> None:
        self.parent = parent
        self.literal = literal  # None for the root and for parameter nodes
        self.name = name  # parameter name (stable once chosen)
        self.children: dict[str, Node[P]] = {}
        self.param: Node[P] | None = None
        self.accepts: set[str] = set()  # value classes a parameter node takes
        self.kinds: Counter[str] = Counter()  # value kinds seen at a parameter node
        self.members: set[str] = set()  # untyped values known to belong here (bounded)
        self.reasons: list[str] = []
        self.protected = False  # a literal that merges never take
        self.live = False  # something under it answered with an existence status
        self.hits = 0
        self.payloads: dict[str, P] = {}  # method -> inventory statistics
        self.methods: set[str] = set()  # methods of requests that ended here
        self.profiles: dict[str, Counter[str]] = {}  # method -> top-level 2xx JSON keys
        self.profile_n: dict[str, int] = {}
        self.merged_into: Node[P] | None = None

    @property
    def is_param(self) -> bool:
        """True for a parameter position."""
        return self.literal is None and self.parent is not None

    def resolve(self) -> Node[P]:
        """The node that absorbed this one (itself when never merged)."""
        node = self
        while node.merged_into is not None:
            node = node.merged_into
        return node

    def add_reason(self, reason: str, limit: int) -> None:
        """Record why this node is what it is: the first reason of each rule, bounded."""
        rule = reason.split(":", 1)[0]
        if len(self.reasons) < limit and not any(r.split(":", 1)[0] == rule
                                                 for r in self.reasons):
            self.reasons.append(reason)


def _signature(node: Node[P], limit: int = 2000) -> set[tuple[int, str]]:
    """(relative depth, method) of every request that ended in a node's subtree (bounded)."""
    out: set[tuple[int, str]] = set()
    stack: list[tuple[Node[P], int]] = [(node, 0)]
    visited = 0
    while stack and visited < limit:
        cur, depth = stack.pop()
        visited += 1
        out.update((depth, m) for m in cur.methods)
        stack.extend((c, depth + 1) for c in cur.children.values())
        if cur.param is not None:
            stack.append((cur.param, depth + 1))
    return out


def _majority(counter: Counter[str], n: int) -> frozenset[str]:
    return frozenset(k for k, c in counter.items() if c * 2 >= n)


def _jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


def _dedupe(parts: list[tuple[bool, str]]) -> list[tuple[bool, str]]:
    """Give repeated parameter names a suffix (/{repo}/{repo_2}): OpenAPI wants them unique."""
    used: Counter[str] = Counter()
    out: list[tuple[bool, str]] = []
    for is_param, text in parts:
        if is_param:
            used[text] += 1
            text = text if used[text] == 1 else f"{text}_{used[text]}"
        out.append((is_param, text))
    return out


# Every transaction renders its endpoint's template (percent-encoding each literal); the
# same few templates come back, so recent renderings are kept.  Bounded: dropped whole.
_RENDER_CACHE_ENTRIES = 4096
_RENDER_CACHE_MAX_PATH = 1024  # characters of the rendered template
_render_cache: dict[tuple[tuple[bool, str], ...], str] = {}


def _render(parts: list[tuple[bool, str]]) -> str:
    """A path template from (is_param, text) parts."""
    cache_key = tuple(parts)
    found = _render_cache.get(cache_key)
    if found is None:
        out = ["{" + text + "}" if is_param else quote(text, safe=_SAFE)
               for is_param, text in _dedupe(parts)]
        found = "/" + "/".join(out)
        if len(found) <= _RENDER_CACHE_MAX_PATH:
            if len(_render_cache) >= _RENDER_CACHE_ENTRIES:
                _render_cache.clear()
            _render_cache[cache_key] = found
    return found


def chain(node: Node[P]) -> list[Node[P]]:
    """The nodes from the root's child down to this node (its template's positions)."""
    out: list[Node[P]] = []
    cur: Node[P] | None = node.resolve()
    while cur is not None and cur.parent is not None:
        out.append(cur)
        cur = cur.parent
    out.reverse()
    return out


def template_of(node: Node[P]) -> str:
    """The path template of a trie node."""
    return _render([(True, n.name) if n.is_param else (False, n.literal or "")
                    for n in chain(node)])


def path_params(node: Node[P]) -> list[tuple[int, str, Node[P]]]:
    """(position, unique name, node) of every parameter in a node's template."""
    return template_and_params(node)[1]


def template_and_params(node: Node[P]) -> tuple[str, list[tuple[int, str, Node[P]]]]:
    """(template_of(node), path_params(node)), walking the node's chain once."""
    nodes = chain(node)
    parts = [(True, n.name) if n.is_param else (False, n.literal or "") for n in nodes]
    if not any(is_param for is_param, _ in parts):
        return _render(parts), []
    return _render(parts), [(i, text, nodes[i])
                            for i, (is_param, text) in enumerate(_dedupe(parts)) if is_param]


class PathTrie(Generic[P]):
    """The templater of one host: insert paths, look templates up, list endpoint nodes."""

    def __init__(self, merge_payload: Callable[[P, P], P],
                 config: TemplatingConfig | None = None) -> None:
        self.config = config or TemplatingConfig()
        self.root: Node[P] = Node(None, None)
        self._merge_payload = merge_payload
        self.merges = 0  # merge operations done (a counter for the caller)
        self.splits = 0
        self.overflows = 0  # values routed to a parameter because a bound was hit
        self.nodes = 1

    # ------------------------------------------------------------------ routing

    def insert(self, segments: list[str], method: str, status: int | None,
               keys: KeysFn) -> Node[P]:
        """Route one observed request into the trie, updating statistics; return its node."""
        node = self.root
        path = [node]
        dirty: list[Node[P]] = []
        last = len(segments) - 1
        for i, seg in enumerate(segments):
            child = node.children.get(seg)
            if child is None:
                child = self._route_new(node, seg, method, keys if i == last else None, dirty)
            node = child
            path.append(node)
        confirmed = confirms_existence(status)
        for step in path:
            step.hits += 1
            if confirmed and not step.live:
                step.live = True
                if step.parent is not None and step.literal is not None:
                    dirty.append(step.parent)
        if len(node.methods) < 16:
            node.methods.add(method)
        if status is not None and 200 <= status < 300:
            self._profile(node, method, keys)
        for parent in dirty:
            if parent.merged_into is None:
                self._consider_merge(parent)
        return node.resolve()

    def lookup(self, segments: list[str], method: str, keys: KeysFn) -> str:
        """The current template of a path, without changing anything."""
        node: Node[P] | None = self.root
        parts: list[tuple[bool, str]] = []
        previous: str | None = None
        last = len(segments) - 1
        for i, seg in enumerate(segments):
            kind = typed_kind(seg)
            nxt: Node[P] | None = None
            if node is not None:
                nxt = node.children.get(seg)
                if nxt is None and (kind is not None or self._lookup_accepts(
                        node, seg, method, keys if i == last else None)):
                    nxt = node.param
            if nxt is not None:
                parts.append((True, nxt.name) if nxt.is_param else (False, seg))
            elif kind is not None:
                parts.append((True, param_name(previous, {kind})))
            else:
                parts.append((False, seg))
            if nxt is None or not nxt.is_param:
                previous = seg if kind is None else previous
            node = nxt
        return _render(parts)

    @staticmethod
    def template(node: Node[P]) -> str:
        """The path template of a node."""
        return template_of(node)

    @staticmethod
    def decisions(node: Node[P]) -> list[dict[str, object]]:
        """Why each position of a node's template is a parameter or a kept literal."""
        out: list[dict[str, object]] = []
        for position, step in enumerate(chain(node)):
            reasons = list(step.reasons)
            parent = step.parent
            if not reasons and step.protected and parent is not None and \
                    parent.param is not None and step.literal is not None:
                why = "version segment" if is_version(step.literal) else "reserved route word"
                reasons.append(f"kept literal: {why} (next to {{{parent.param.name}}})")
            if step.is_param and step.kinds.get("joined"):
                reasons.append(f"joined: {step.kinds['joined']} literal values used like the "
                               "others (same methods below, alike responses)")
            if reasons:
                entry: dict[str, object] = {"position": position, "reasons": reasons}
                if step.is_param:
                    entry["param"] = step.name
                    entry["kinds"] = sorted(step.kinds)
                else:
                    entry["literal"] = step.literal
                out.append(entry)
        return out

    def endpoints(self) -> Iterator[tuple[Node[P], str, P]]:
        """Every (node, method, payload) held by the trie."""
        stack = [self.root]
        while stack:
            node = stack.pop()
            for method, payload in node.payloads.items():
                yield node, method, payload
            stack.extend(node.children.values())
            if node.param is not None:
                stack.append(node.param)

    # ----------------------------------------------------------------- decisions

    def _new_param(self, parent: Node[P], kinds: set[str]) -> Node[P]:
        previous = parent.literal if parent.literal is not None else self._nearest_literal(parent)
        param: Node[P] = Node(parent, None, param_name(previous, kinds))
        parent.param = param
        self.nodes += 1
        return param

    @staticmethod
    def _nearest_literal(node: Node[P]) -> str | None:
        cur: Node[P] | None = node
        while cur is not None:
            if cur.literal is not None:
                return cur.literal
            cur = cur.parent
        return None

    def _route_new(self, node: Node[P], seg: str, method: str, keys: KeysFn | None,
                   dirty: list[Node[P]]) -> Node[P]:
        cfg = self.config
        kind = typed_kind(seg)
        if kind is not None:
            param = node.param or self._new_param(node, {kind})
            if kind not in param.accepts:
                param.accepts.add(kind)
                param.add_reason(f"typed: {kind} value", cfg.max_reasons)
            param.kinds[kind] += 1
            return param
        param = node.param
        if param is not None and (seg in param.members or self._accepts(param, seg)):
            if keys is None or not self._diverges(param, method, keys):
                value_class = self._value_class(seg)
                param.kinds[value_class] += 1
                self._remember(param, seg)
                seen = param.kinds[value_class]
                if seen == cfg.join_min_values or seen & (seen - 1) == 0:
                    dirty.append(node)  # more values: look-alike siblings may join now
                return param
            param.members.discard(seg)
            child = self._new_literal(node, seg)
            child.protected = True
            self.splits += 1
            child.add_reason(f"split from {{{node.param.name}}}: its {method} responses have "
                             "different JSON keys", cfg.max_reasons)
            return child
        if len(node.children) >= cfg.max_children or self.nodes >= cfg.max_nodes:
            self.overflows += 1
            param = node.param or self._new_param(node, {"string"})
            if "any" not in param.accepts:
                param.accepts.add("any")
                param.add_reason(f"overflow: more than {cfg.max_children} distinct values",
                                 cfg.max_reasons)
            param.kinds["string"] += 1
            return param
        child = self._new_literal(node, seg)
        # Versions and reserved words never merge; the reason is shown only where it
        # mattered, i.e. when the position also has a parameter (see decisions()).
        child.protected = is_version(seg) or seg.lower() in cfg.reserved_words
        dirty.append(node)
        return child

    def _lookup_accepts(self, node: Node[P], seg: str, method: str,
                        keys: KeysFn | None) -> bool:
        param = node.param
        return param is not None and (seg in param.members or self._accepts(param, seg)) and \
            not self._diverges(param, method, keys)

    def _remember(self, param: Node[P], value: str) -> None:
        if len(param.members) < self.config.max_members:
            param.members.add(value)

    def _new_literal(self, node: Node[P], seg: str) -> Node[P]:
        child: Node[P] = Node(node, seg)
        node.children[seg] = child
        self.nodes += 1
        return child

    def _accepts(self, param: Node[P], seg: str) -> bool:
        if is_version(seg) or seg.lower() in self.config.reserved_words:
            return False
        accepts = param.accepts
        if "any" in accepts:
            return True
        if "slug" in accepts and is_slug(seg):
            return True
        if "asset" in accepts and asset_extension(seg):
            return True
        return bool(accepts) and f"shape:{shape(seg)}" in accepts

    @staticmethod
    def _value_class(seg: str) -> str:
        if is_slug(seg):
            return "slug"
        if asset_extension(seg):
            return "asset"
        return "string"

    def _profile(self, node: Node[P], method: str, keys: KeysFn) -> None:
        seen = node.profile_n.get(method, 0)
        if seen >= self.config.profile_max_samples:
            return
        found = keys()
        if found is None:
            return
        node.profile_n[method] = seen + 1
        node.profiles.setdefault(method, Counter()).update(found)

    def _diverges(self, param: Node[P], method: str, keys: KeysFn | None) -> bool:
        """True when this response's JSON keys do not look like the parameter's responses."""
        if keys is None:
            return False
        n = param.profile_n.get(method, 0)
        if n < self.config.profile_min_samples:
            return False
        found = keys()
        if found is None:
            return False
        majority = _majority(param.profiles[method], n)
        return bool(majority) and _jaccard(found, majority) < self.config.split_jaccard

    def _consider_merge(self, node: Node[P]) -> None:
        cfg = self.config
        candidates = [c for c in node.children.values() if not c.protected]
        if len(candidates) < 2:
            self._join_lookalikes(node)
            return
        typed_sibling = node.param is not None and any(
            k not in UNTYPED_KINDS for k in node.param.kinds)
        # Next to a typed parameter (/users/{user_id}) literal siblings are usually actions:
        # ask for twice the evidence before calling them values.
        factor = 2 if typed_sibling else 1
        groups: list[tuple[str, list[Node[P]], str]] = []
        assets = [c for c in candidates if asset_extension(c.literal or "") and not c.children
                  and c.param is None]
        need = 2 if (node.literal or "").lower() in STATIC_DIRS else cfg.asset_min_files
        if len(assets) >= need:
            groups.append(("asset", assets, f"static files: {len(assets)} distinct names"))
        by_shape: dict[str, list[Node[P]]] = defaultdict(list)
        for c in candidates:
            shp = shape(c.literal or "")
            if informative_shape(shp):
                by_shape[shp].append(c)
        for shp, members in by_shape.items():
            if len(members) >= cfg.shape_min_values * factor:
                groups.append((f"shape:{shp}", members,
                               f"shape: {len(members)} distinct values look like {shp}"))
        slugs = [c for c in candidates if is_slug(c.literal or "")]
        if len(slugs) >= cfg.slug_min_values * factor:
            groups.append(("slug", slugs, f"slug: {len(slugs)} distinct hyphenated values"))
        live = sum(1 for c in candidates if c.live)
        if live >= cfg.max_literal_siblings:
            groups.append(("any", candidates,
                           f"cardinality: {live} distinct values answered at this position "
                           f"(threshold {cfg.max_literal_siblings})"))
        for accept, members, reason in groups:
            present = [m for m in members if node.children.get(m.literal or "") is m]
            if len(present) >= 2:
                self._merge_into_param(node, present, accept, reason)
        if node.merged_into is None:
            self._join_lookalikes(node)

    def _join_lookalikes(self, node: Node[P]) -> None:
        """Literal siblings that look like an established parameter's values join it.

        A parameter made from many slugs (or codes, or files) is strong evidence that the
        position is variable; a plain word beside it ("website" next to /repos/{owner}/{repo}
        slugs) is one more value when it is used the same way: its methods at each depth
        below are a subset of the parameter's, and its 2xx JSON responses look alike.
        """
        param = node.param
        cfg = self.config
        if param is None or "any" in param.accepts:
            return
        values = sum(n for k, n in param.kinds.items() if k in UNTYPED_KINDS)
        if values < cfg.join_min_values:
            return
        lookalikes: list[Node[P]] = []
        param_sig: set[tuple[int, str]] | None = None
        for child in list(node.children.values()):
            if not child.methods and not child.children and child.param is None:
                continue
            if child.protected and not self._reserved_value(param, child):
                continue
            if param_sig is None:
                param_sig = _signature(param)
            if _signature(child) <= param_sig:
                lookalikes.append(child)
        if lookalikes:
            # The reason is written by decisions(), with the running count.
            self._merge_into_param(node, lookalikes, "joined", "")

    def _reserved_value(self, param: Node[P], child: Node[P]) -> bool:
        """A reserved word ("api", "docs") that positive evidence shows is one more value.

        Reserved words stay literal unless their own 2xx JSON responses have the same keys
        as the parameter's (Jaccard >= 0.5); versions and split-off values never join.
        """
        literal = child.literal or ""
        if is_version(literal) or child.reasons:
            return False
        for method, counter in child.profiles.items():
            n = param.profile_n.get(method, 0)
            if n < self.config.profile_min_samples:
                continue
            own = _majority(counter, child.profile_n[method])
            theirs = _majority(param.profiles[method], n)
            if own and theirs and _jaccard(own, theirs) >= 0.5:
                return True
        return False

    def _merge_into_param(self, node: Node[P], members: list[Node[P]], accept: str,
                          reason: str) -> None:
        cfg = self.config
        kinds = {"asset"} if accept == "asset" else {"slug"} if accept == "slug" else {"string"}
        param = node.param or self._new_param(node, kinds)
        param.accepts.add(accept)
        if reason:
            param.add_reason(reason, cfg.max_reasons)
        pooled: dict[str, Counter[str]] = {m: Counter(c) for m, c in param.profiles.items()}
        pooled_n = dict(param.profile_n)
        for member in members:
            for method, counter in member.profiles.items():
                pooled.setdefault(method, Counter()).update(counter)
                pooled_n[method] = pooled_n.get(method, 0) + member.profile_n[method]
        grown: list[Node[P]] = []
        for member in members:
            odd = self._odd_one_out(member, pooled, pooled_n)
            if odd is not None:
                member.protected = True
                member.add_reason(f"kept literal: its {odd} responses have different JSON keys "
                                  f"from the other values of {{{param.name}}}", cfg.max_reasons)
                self.splits += 1
                continue
            del node.children[member.literal or ""]
            self._remember(param, member.literal or "")
            param.kinds[accept.split(":")[0] if accept != "any" else "string"] += 1
            self._merge_node(param, member, grown)
            self.merges += 1
        for grew in [param, *grown]:
            if grew.merged_into is None:
                self._consider_merge(grew)

    def _odd_one_out(self, member: Node[P], pooled: dict[str, Counter[str]],
                     pooled_n: dict[str, int]) -> str | None:
        """The method whose responses set this member apart from the others, if any."""
        for method, counter in member.profiles.items():
            own_n = member.profile_n[method]
            rest_n = pooled_n[method] - own_n
            if own_n < 1 or rest_n < self.config.profile_min_samples:
                continue
            rest = pooled[method] - counter
            majority = _majority(rest, rest_n)
            own = _majority(counter, own_n)
            if majority and _jaccard(own, majority) < self.config.split_jaccard:
                return method
        return None

    def _merge_node(self, dst: Node[P], src: Node[P], grown: list[Node[P]]) -> None:
        """Fold src (and its subtree) into dst."""
        dst.hits += src.hits
        dst.live = dst.live or src.live
        dst.methods |= src.methods
        for method, payload in src.payloads.items():
            mine = dst.payloads.get(method)
            dst.payloads[method] = payload if mine is None else self._merge_payload(mine, payload)
        for method, counter in src.profiles.items():
            dst.profiles.setdefault(method, Counter()).update(counter)
            dst.profile_n[method] = dst.profile_n.get(method, 0) + src.profile_n[method]
        for reason in src.reasons:
            dst.add_reason(reason, self.config.max_reasons)
        src.payloads = {}
        src.merged_into = dst
        self.nodes -= 1
        added = False
        for literal, child in src.children.items():
            if literal in dst.children:
                self._merge_node(dst.children[literal], child, grown)
            elif dst.param is not None and (typed_kind(literal) is not None
                                            or literal in dst.param.members
                                            or self._accepts(dst.param, literal)):
                if typed_kind(literal) is None:
                    self._remember(dst.param, literal)
                self._merge_node(dst.param, child, grown)
            else:
                dst.children[literal] = child
                child.parent = dst
                added = True
        if src.param is not None:
            if dst.param is None:
                dst.param = src.param
                src.param.parent = dst
            else:
                dst.param.accepts |= src.param.accepts
                dst.param.kinds.update(src.param.kinds)
                for value in src.param.members:
                    self._remember(dst.param, value)
                self._merge_node(dst.param, src.param, grown)
        src.children = {}
        src.param = None
        if added:
            grown.append(dst)
