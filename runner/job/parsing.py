"""Structured data from command output: TextFSM (ntc-templates or a file), TTP, or JSON."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from runner.errors import ParseFailed
from runner.job import ttpguard
from runner.job.spec import ParserSpec, is_inline_ttp

# TTP logs template and data lines as warnings (a file it was pointed at, line by line):
# what it has to say about a template runner reports itself, once, as the job's error.
_ttp_log = logging.getLogger("ttp")
_ttp_log.addHandler(logging.NullHandler())
_ttp_log.propagate = False


def parse(output: str, how: str | ParserSpec, *, platform: str, command: str,
          templates_dir: Path) -> Any:
    """Parse `output`; ParseFailed (the device's failure, with the reason) when it can't."""
    try:
        if how == "json":
            return json.loads(output)
        if how == "textfsm":
            from ntc_templates.parse import parse_output

            return parse_output(platform=platform, command=command, data=output)
        assert isinstance(how, ParserSpec)
        if how.textfsm is not None:
            return _textfsm_file(output, _template(templates_dir, how.textfsm, "TextFSM"))
        assert how.ttp is not None
        return _ttp(output, how.ttp, templates_dir)
    except ParseFailed:
        raise
    except Exception as exc:
        raise ParseFailed(f"cannot parse output of {command!r}: "
                          f"{type(exc).__name__}: {str(exc).strip()[:300]}") from None


def template_file(templates_dir: Path, name: str, kind: str) -> Path | str:
    """The parser template `name` in templates_dir, symlinks resolved; or why it cannot be
    used (missing, or outside templates_dir: a template never reads another file)."""
    root = templates_dir.resolve()
    path = (templates_dir / name).resolve()
    if not path.is_relative_to(root):
        return f"{kind} template {name!r} is outside {templates_dir} (it resolves to {path})"
    if not path.is_file():
        return f"{kind} template file {name!r} not found in {templates_dir}"
    return path


def _template(templates_dir: Path, name: str, kind: str) -> Path:
    found = template_file(templates_dir, name, kind)
    if isinstance(found, str):
        raise ParseFailed(found)
    return found


def _textfsm_file(output: str, path: Path) -> list[dict[str, Any]]:
    import textfsm

    with path.open(encoding="utf-8") as fh:
        fsm = textfsm.TextFSM(fh)
    rows = fsm.ParseText(output)
    return [dict(zip((h.lower() for h in fsm.header), row, strict=True)) for row in rows]


def _as_text(path: Any, **_: Any) -> list[tuple[str, Any]]:
    return [("text_data", path)]


def _ttp(output: str, template: str, templates_dir: Path) -> Any:
    from ttp import ttp

    if not is_inline_ttp(template):
        template = _template(templates_dir, template, "TTP").read_text(encoding="utf-8")
    why = ttpguard.problem(template)  # checked at load too; a file may have changed since
    if why:
        raise ParseFailed(why)
    parser = ttp()
    # TTP takes a string naming an existing file or directory (or "ttp://...") as that
    # file's contents, for data and template alike: device output such as "/etc" or a
    # template's text must stay text. The loader is looked up in this per-parser table.
    parser._ttp_["utils"]["load_files"] = _as_text
    parser.add_template(template)
    parser.add_input(output)
    try:
        parser.parse(one=True)  # one=True: never TTP's own worker processes (output > 5 MB)
    except SystemExit:  # TTP's way of failing on a template it cannot read
        raise ParseFailed("TTP could not use the template") from None
    return parser.result(structure="flat_list")


def check_parser(how: str | ParserSpec, templates_dir: Path) -> tuple[str, str] | None:
    """For `runner validate`: (the parser's field, why it cannot work), or None."""
    if not isinstance(how, ParserSpec):
        return None
    if how.textfsm is not None:
        found = template_file(templates_dir, how.textfsm, "TextFSM")
        if isinstance(found, str):
            return "textfsm", found
        try:
            import textfsm

            with found.open(encoding="utf-8") as fh:
                textfsm.TextFSM(fh)
        except Exception as exc:
            return "textfsm", f"TextFSM template {how.textfsm!r} is invalid: " + \
                " ".join(str(exc).split())[:300]
    if how.ttp is not None and not is_inline_ttp(how.ttp):
        found = template_file(templates_dir, how.ttp, "TTP")
        if isinstance(found, str):
            return "ttp", found
        try:
            why = ttpguard.problem(found.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            why = f"cannot read TTP template {how.ttp!r}: {exc}"
        if why:
            return "ttp", why
    return None
