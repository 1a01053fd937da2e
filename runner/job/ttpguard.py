"""Which TTP templates runner lets run: those that can only match text.

TTP evaluates template text as Python (each match-variable function's arguments and most
<group> attributes go through eval(); <macro>, <vars load="python">, <lookup> and <input>
through exec() or file reads) and writes files from <output returner="file">. A job file's
inline template, or a file in templates/, would run with runner's rights (root, on a jump
host, and on every worker). So a template may hold <group> (and <doc>) tags and match
variables whose function arguments are plain values (strings, numbers, bare words, lists of
those); anything else is refused with the reason, before a device is contacted."""

from __future__ import annotations

import ast
import re
import warnings
from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the XML parser loads for a job with an inline TTP template, not for all
    from xml.etree import ElementTree as ET

# As TTP finds match variables in a line and splits one into functions (ttp/ttp.py and
# ttp/utils/get_attributes.py): the check must read the template exactly as TTP does.
_VARIABLE = re.compile(r"{{([\S\s]+?)}}")
_FUNCTION = re.compile(r"^(?P<name>\S+?)\s?(\((?P<options>.*)\))?$")
_GROUP_OWN = frozenset({"name", "method", "default"})  # group attributes TTP never evaluates
# functions that call, load or evaluate something named elsewhere (a macro, a variable's
# text, an input or output tag)
_DENIED = frozenset({"macro", "chain", "functions", "input", "output"})
_PLAIN = (ast.Constant, ast.Name, ast.Load, ast.List, ast.Tuple, ast.Set, ast.Dict,
          ast.UnaryOp, ast.USub, ast.UAdd)


@lru_cache(maxsize=256)
def problem(template: str) -> str | None:
    """Why runner refuses to run this TTP template, or None."""
    if re.search(r"<!\s*(DOCTYPE|ENTITY)", template, re.IGNORECASE):
        return "TTP template: <!DOCTYPE> and <!ENTITY> are not allowed"
    root = _tree(template)
    if isinstance(root, str):
        return root
    if root.attrib:
        return f"TTP <template> attributes are not allowed ({', '.join(root.attrib)})"
    return _tags(root) or _variables(root)


def _tags(root: ET.Element) -> str | None:
    for element in root.iter():
        if element is root:
            continue
        tag = str(element.tag).lower()
        if tag == "doc":
            continue  # a template's documentation, never evaluated
        if tag != "group":
            return (f"TTP <{element.tag}> is not allowed: runner runs templates of <group> "
                    "tags and match variables only (other tags run code or read files)")
        for name, value in element.attrib.items():
            if name.lower() not in _GROUP_OWN:
                why = _functions(f"{name}({value})")  # how TTP reads such an attribute
                if why:
                    return f"TTP <group {name}=...>: {why}"
    return None


def _variables(root: ET.Element) -> str | None:
    # itertext: as TTP sees the text, XML entities (&#40; for "(") already replaced
    for text in root.itertext():
        for line in text.splitlines():
            for variable in _VARIABLE.findall(line):
                why = _functions(variable)
                if why:
                    return f"TTP match variable {{{{{variable}}}}}: {why}"
    return None


def _tree(template: str) -> ET.Element | str:
    """The element tree TTP builds from the template (ttp's construct_etree), or why it
    cannot build one."""
    from xml.etree import ElementTree as ET

    try:
        root = ET.XML(template)
        if str(root.tag).lower() != "template":
            root = ET.XML(f"<template>\n{template}\n</template>")
    except ET.ParseError:
        try:
            root = ET.XML(f"<template>\n{template}\n</template>")
        except ET.ParseError as exc:
            return f"TTP template is not valid (TTP reads it as XML): {exc}"
    return root


def _functions(variable: str) -> str | None:
    """Why one match variable (`name | f1(args) | f2`) is refused, or None."""
    for item in (i.strip() for i in variable.split("|")):
        if not item:
            continue
        found = _FUNCTION.match(item)
        if found is None:
            return f"TTP cannot read {item!r}"
        name, options = found["name"], found["options"]
        if name in _DENIED:
            return f"function {name!r} is not allowed (it runs or loads something named " \
                   "elsewhere)"
        if options and not _plain_arguments(options):
            return f"the arguments of {name!r} must be plain values (strings, numbers, " \
                   "words, lists of these): TTP evaluates them as Python"
    return None


def _plain_arguments(options: str) -> bool:
    with warnings.catch_warnings():  # '\w' in a regex argument is an invalid escape to ast
        warnings.simplefilter("ignore")
        try:
            call = ast.parse(f"_({options})", mode="eval").body
        except SyntaxError:
            return False
    if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name)
            and call.func.id == "_"):
        return False  # e.g. "a), evil(b": not one call's arguments
    if any(k.arg is None for k in call.keywords):
        return False
    for arg in [*call.args, *(k.value for k in call.keywords)]:
        for node in ast.walk(arg):
            if not isinstance(node, _PLAIN):
                return False
            if isinstance(node, ast.Name) and node.id.startswith("_"):
                return False  # __builtins__ and friends
    return True
