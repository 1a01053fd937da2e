"""Templates and `expect:` conditions are bounded in memory, not only in loops: a corpus of
memory bombs, each rendered in a process of its own whose peak RSS the test reads (wait4),
under an address-space limit so a bomb that got through fails the test, not the machine."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from runner.errors import CheckFailed, RenderFailed
from runner.job.checks import check
from runner.job.render import Templates

BIG = "{% set big = 'a' * 900000 %}"
NESTED = "{% for j in range(999) %}{% for i in range(1000) %}"
BOMBS = {
    "zfill": "{{ 'a'.zfill(3000000000) }}",
    "ljust": "{{ 'a'.ljust(3000000000) }}",
    "rjust": "{{ 'a'.rjust(3000000000, 'x') }}",
    "center_method": "{{ 'a'.center(3000000000) }}",
    "center_filter": "{{ 'a'|center(3000000000) }}",
    "format_width": "{{ '{:>3000000000}'.format('a') }}",
    "format_nested_width": "{{ '{:{}}'.format('a', 3000000000) }}",
    "format_map": "{{ '{x:>3000000000}'.format_map({'x': 1}) }}",
    "printf_width": "{{ '%03000000000d' % 1 }}",
    "printf_star": "{{ '%*d' % (3000000000, 1) }}",
    "format_filter": "{{ '%03000000000d'|format(1) }}",
    "concat_doubling": "{% set ns = namespace(s='ab') %}{% for i in range(60) %}"
                       "{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s|length }}",
    "plus_doubling": "{% set ns = namespace(s='ab') %}{% for i in range(60) %}"
                     "{% set ns.s = ns.s + ns.s %}{% endfor %}{{ ns.s|length }}",
    "list_doubling": "{% set ns = namespace(l=[1]) %}{% for i in range(60) %}"
                     "{% set ns.l = ns.l + ns.l %}{% endfor %}{{ ns.l|length }}",
    "repeat": "{{ 'a' * 3000000000 }}",
    "repeat_refs_tojson": BIG + "{{ ([big] * 3000)|tojson }}",
    "repeat_refs_text": BIG + "{{ [big] * 3000 }}",
    "replace_method": "{% set s = 'a' * 100000 %}{{ s.replace('a', 'b' * 50000) }}",
    "replace_filter": "{% set s = 'a' * 100000 %}{{ s|replace('a', 'b' * 50000) }}",
    "join_appended": BIG + "{% set l = [] %}{% for i in range(3000) %}{% set _ = l.append(big) %}"
                     "{% endfor %}{{ l|join }}",
    "append_distinct": "{% set l = [] %}" + NESTED + "{% set _ = l.append('x' * 1000 ~ i) %}"
                       "{% endfor %}{% endfor %}{{ l|length }}",
    "dict_update": "{% set d = {} %}{% for i in range(100000) %}"
                   "{% set _ = d.update({i: 'x' * 10000 ~ i}) %}{% endfor %}{{ d|length }}",
    "set_block": "{% set x %}" + NESTED + "A" * 200 + "{% endfor %}{% endfor %}{% endset %}"
                 "{{ x|length }}",
    "macro_doubling": "{% macro m(s) %}{{ s }}{{ s }}{% endmacro %}"
                      "{% set ns = namespace(s='ab') %}{% for i in range(60) %}"
                      "{% set ns.s = m(ns.s) %}{% endfor %}{{ ns.s|length }}",
    "filter_block": "{% filter upper %}" + NESTED + "a" * 200 + "{% endfor %}{% endfor %}"
                    "{% endfilter %}",
    "static_text_loop": NESTED + "A" * 200 + "{% endfor %}{% endfor %}",
    "indent": "{{ 'a\\na\\na'|indent(1000000000) }}",
    "wordwrap": "{{ ('a ' * 400000)|wordwrap(1, wrapstring='x' * 10000) }}",
    "expandtabs": "{% set s = '\\t' * 100000 %}{{ s.expandtabs(100000) }}",
    "int_squaring": "{% set ns = namespace(n=3) %}{% for i in range(40) %}"
                    "{% set ns.n = ns.n * ns.n %}{% endfor %}{{ 1 }}",
    "power_chain": "{% set ns = namespace(n=3) %}{% for i in range(10) %}"
                   "{% set ns.n = ns.n ** 100 %}{% endfor %}{{ 1 }}",
    "lipsum": "{{ lipsum(100000000) }}",
    "batch": "{{ [1]|batch(1000000000, 'x')|list }}",
    "slice": "{{ [1]|slice(1000000000)|list }}",
    "loops": "{% for i in range(99999) %}{% for j in range(99999) %}x{% endfor %}{% endfor %}",
}
# Conditions of `expect:` given a small answer.
EXPECT_BOMBS = {
    "zfill": "output.zfill(3000000000) | length > 0",
    "doubling": "(output * 100000000) | length > 0",
    "format": "'{:>3000000000}'.format(output) | length > 0",
    "join": "(([output] * 100000) | join) | length > 0",
}
PEAK_MIB = 200  # a Python process with runner loaded peaks near 60 MiB
CHILD = """\
import json, resource, sys
resource.setrlimit(resource.RLIMIT_AS, (2 * 1024 ** 3, 2 * 1024 ** 3))
from pathlib import Path
from runner.errors import CheckFailed, RenderFailed
from runner.job.checks import check
from runner.job.render import Templates
kind, source, where = sys.argv[1:]
try:
    if kind == "template":
        Path(where, "bomb.j2").write_text(source, encoding="utf-8")
        Templates(Path(where)).render("bomb.j2", "cisco_ios", {})
        print(json.dumps({"refused": None}))
    else:
        check(source, {"output": "Gi0/1 up", "parsed": [], "host": {}, "vars": {}})
        print(json.dumps({"refused": None}))
except (RenderFailed, CheckFailed) as exc:
    print(json.dumps({"refused": str(exc)}))
# this process's own peak: the kernel's high-water mark of its memory since exec
print(next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM:")))
"""


def peak_of(kind: str, source: str, where: Path) -> tuple[dict[str, str | None], int]:
    """Run one render in a fresh process limited to 2 GiB of address space: its answer
    and its peak RSS in MiB, as the process itself reads it (VmHWM). Not wait4's rusage:
    a child's ru_maxrss starts from the forking process's size (the kernel keeps the old
    image's high-water mark across exec), so a large test process would be measured."""
    proc = subprocess.run([sys.executable, "-c", CHILD, kind, source, str(where)],
                          capture_output=True, text=True, check=False, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    answer, peak_kib = proc.stdout.strip().splitlines()[-2:]
    return json.loads(answer), int(peak_kib) // 1024


@pytest.mark.parametrize("name", sorted(BOMBS))
def test_a_template_bomb_is_refused_with_memory_bounded(name: str, tmp_path: Path) -> None:
    answer, peak = peak_of("template", BOMBS[name], tmp_path)
    assert answer["refused"], name
    assert peak < PEAK_MIB, (name, peak)


@pytest.mark.parametrize("name", sorted(EXPECT_BOMBS))
def test_an_expect_bomb_is_refused_with_memory_bounded(name: str, tmp_path: Path) -> None:
    answer, peak = peak_of("check", EXPECT_BOMBS[name], tmp_path)
    assert answer["refused"] and "could not be evaluated" in answer["refused"], name
    assert peak < PEAK_MIB, (name, peak)


def test_the_bounds_name_the_limit_to_raise(tmp_path: Path) -> None:
    (tmp_path / "pad.j2").write_text("{{ 'a'.zfill(2000000) }}", encoding="utf-8")
    with pytest.raises(RenderFailed, match=r"pad.j2: the template builds padded text \(about "
                                           r"2,000,000 bytes\), more than the 1,048,576 bytes "
                                           r"one value may hold \(limits.template_value\)"):
        Templates(tmp_path).render("pad.j2", "cisco_ios", {})
    # A job that needs bigger values says so.
    assert len(Templates(tmp_path, max_value=4_000_000, max_rendered=4_000_000).render(
        "pad.j2", "cisco_ios", {})[0]) == 2_000_000


def test_ordinary_templates_are_untouched(tmp_path: Path) -> None:
    """A large, real config (vlans, interfaces, a prefix list, format and join) renders."""
    (tmp_path / "big.j2").write_text(
        "{% for v in range(1, 4000) %}vlan {{ v }}\n name {{ 'v%04d' % v }}\n{% endfor %}"
        "{% for i in range(48) %}interface Gi1/0/{{ i }}\n description {{ '{:<20}'.format("
        "host.name ~ '-' ~ i) }}\n switchport trunk allowed vlan {{ range(1, 200)|join(',') }}"
        "\n{% endfor %}{% set ns = namespace(l=[]) %}{% for i in range(2000) %}"
        "{% set _ = ns.l.append('ip prefix-list P seq %d permit 10.%d.%d.0/24' % (i * 5, "
        "i // 256, i % 256)) %}{% endfor %}{{ ns.l|join('\\n') }}\n", encoding="utf-8")
    lines = Templates(tmp_path).render("big.j2", "cisco_ios", {"host": {"name": "sw1"}})
    assert len(lines) == 3999 * 2 + 48 * 3 + 2000
    assert lines[-1] == "ip prefix-list P seq 9995 permit 10.7.207.0/24"


def test_expect_on_a_large_answer_still_works() -> None:
    output = "Gi0/1 up\n" * 400_000  # 3.6 MB: bounds scale with what the check is given
    check("output.splitlines() | select('search', 'up') | list | length == 400000",
          {"output": output, "parsed": [], "host": {}, "vars": {}})
    with pytest.raises(CheckFailed, match="could not be evaluated"):
        check("(output * 100) | length > 0", {"output": output, "parsed": [], "host": {},
                                              "vars": {}})
