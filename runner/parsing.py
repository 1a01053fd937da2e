"""Structured data from command output: TextFSM (ntc-templates or a file), TTP, or JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from runner.errors import ParseFailed
from runner.job.spec import ParserSpec


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
            return _textfsm_file(output, templates_dir / how.textfsm)
        assert how.ttp is not None
        return _ttp(output, how.ttp, templates_dir)
    except ParseFailed:
        raise
    except Exception as exc:
        raise ParseFailed(f"cannot parse output of {command!r}: "
                          f"{type(exc).__name__}: {str(exc).strip()[:300]}") from None


def _textfsm_file(output: str, path: Path) -> list[dict[str, Any]]:
    import textfsm

    with path.open(encoding="utf-8") as fh:
        fsm = textfsm.TextFSM(fh)
    rows = fsm.ParseText(output)
    return [dict(zip((h.lower() for h in fsm.header), row, strict=True)) for row in rows]


def _ttp(output: str, template: str, templates_dir: Path) -> Any:
    from ttp import ttp

    if not _is_inline_ttp(template):
        template = (templates_dir / template).read_text(encoding="utf-8")
    parser = ttp(data=output, template=template)
    parser.parse()
    return parser.result(structure="flat_list")


def _is_inline_ttp(template: str) -> bool:
    """Inline TTP has match variables; anything else names a file in templates/."""
    return "{{" in template


def check_parser(how: str | ParserSpec, templates_dir: Path) -> str | None:
    """For `runner validate`: why this parser cannot work, or None."""
    if isinstance(how, ParserSpec) and how.textfsm is not None:
        path = templates_dir / how.textfsm
        if not path.is_file():
            return f"TextFSM template {how.textfsm!r} not found in {templates_dir}"
        try:
            import textfsm

            with path.open(encoding="utf-8") as fh:
                textfsm.TextFSM(fh)
        except Exception as exc:
            return f"TextFSM template {how.textfsm!r} is invalid: {exc}"
    if isinstance(how, ParserSpec) and how.ttp is not None and not _is_inline_ttp(how.ttp) \
            and not (templates_dir / how.ttp).is_file():
        return f"TTP template file {how.ttp!r} not found in {templates_dir}"
    return None
