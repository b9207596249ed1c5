"""YAML read safely, with the YAML 1.2 core schema rather than PyYAML's YAML 1.1 one: `2e-4` and
`1e3` are numbers (1.1 reads them as strings), only `true`/`false` are booleans (1.1 also reads `on`,
`off`, `yes`, `no` as booleans, which would turn `autocast: off` into False), and dates stay strings.

Safely: a settings text is small, so nesting deeper than `MAX_DEPTH`, aliases expanding past
`MAX_VALUES` values ("billion laughs": a few lines that would expand to gigabytes), a value containing
itself and an integer too long to read are refused, in one line naming the line, before anything is
built from them."""

import re

import yaml

from tuneforge.errors import TuneforgeError


class CoreLoader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 core-schema scalars (see the module docstring)."""


CoreLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag.rsplit(":", 1)[-1] not in ("bool", "int", "float", "timestamp")]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
CoreLoader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                                 list("tTfF"))
CoreLoader.add_implicit_resolver("tag:yaml.org,2002:int", re.compile(r"^[-+]?(?:0|[1-9][0-9]*)$"),
                                 list("-+0123456789"))
CoreLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^(?:[-+]?(?:[0-9]+\.[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?|[-+]?[0-9]+[eE][-+]?[0-9]+"
               r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"),
    list("-+0123456789."))


MAX_BYTES = 1_000_000
"""Largest settings file read (the demo's experiment is 2 kB)."""
MAX_DEPTH = 32
"""Deepest nesting of lists and mappings a settings text may have (an experiment file needs 3)."""
MAX_VALUES = 10_000
"""Most values a settings text may hold once its aliases are expanded (an experiment file holds a few
hundred): a few lines of nested aliases ("billion laughs") would otherwise expand to gigabytes."""


def load_yaml(text: str, name: str):
    """(data, node tree) of one YAML document, read safely (`safe_load`); a mistake is one line naming
    `name` and the line."""
    try:
        return safe_load(text, name)
    except yaml.MarkedYAMLError as err:
        mark, context = err.problem_mark or err.context_mark, err.context_mark
        line = f":{mark.line + 1}" if mark else ""
        since = f" ({err.context} from line {context.line + 1})" if err.context and context and err.problem else ""
        raise TuneforgeError(f"{name}{line}: invalid YAML: {err.problem or err.context}{since}") from None
    except yaml.YAMLError as err:
        raise TuneforgeError(f"{name}: invalid YAML: {str(err)[:200]}") from None


def safe_load(text: str, name: str):
    """(data, node tree) of one YAML document. Nesting deeper than `MAX_DEPTH`, aliases expanding past
    `MAX_VALUES` values and a value containing itself are refused (a `TuneforgeError`) before anything
    is built from them; bad YAML raises yaml's own error."""
    _check_depth(text, name)  # the composer recurses per level: check the depth on the flat events first
    loader = CoreLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, None
        _check_expansion(node, name)
        return loader.construct_document(node), node
    finally:
        loader.dispose()


def _check_depth(text: str, name: str) -> None:
    depth = 0
    for event in yaml.parse(text, Loader=CoreLoader):
        if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            depth += 1
            if depth > MAX_DEPTH:
                raise TuneforgeError(f"{name}:{event.start_mark.line + 1}: lists and mappings nested more than "
                                     f"{MAX_DEPTH} levels deep; settings need a few")
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            depth -= 1


def _check_expansion(root: yaml.Node, name: str) -> None:
    """Refuse a node tree whose aliases expand past `MAX_VALUES` values or make a value contain itself.
    Shared nodes (aliases) are counted once per use, each computed once: linear in the file's size."""
    sizes, open_ = {}, set()  # id -> expanded size; ids entered and not finished (the current ancestors)
    stack = [(root, False)]
    while stack:
        node, finished = stack.pop()
        children = _children(node)
        if finished:
            open_.discard(id(node))
            sizes[id(node)] = 1 + sum(sizes[id(child)] for child in children)
            if sizes[id(node)] > MAX_VALUES:
                raise TuneforgeError(f"{name}:{node.start_mark.line + 1}: this holds more than {MAX_VALUES:,} "
                                     "values with its aliases expanded; settings need a few hundred (write them "
                                     "out without nested aliases)")
        elif id(node) in open_:
            raise TuneforgeError(f"{name}:{node.start_mark.line + 1}: an alias here refers to a value that "
                                 "contains it (a recursive structure); settings cannot hold one")
        elif id(node) not in sizes:
            open_.add(id(node))
            stack.append((node, True))
            stack.extend((child, False) for child in children)


def _children(node: yaml.Node) -> list:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return list(node.value) if isinstance(node, yaml.SequenceNode) else []


MAX_DIGITS = 30
"""Longest integer a settings text may spell (seeds and counts need far fewer digits)."""


def _construct_int(loader, node):
    if len(node.value.lstrip("+-")) > MAX_DIGITS:
        raise yaml.constructor.ConstructorError(None, None, f"an integer of {len(node.value):,} digits "
                                                f"({node.value[:12]}...): no setting takes more than {MAX_DIGITS}",
                                                node.start_mark)
    return yaml.SafeLoader.construct_yaml_int(loader, node)


CoreLoader.add_constructor("tag:yaml.org,2002:int", _construct_int)
