"""The jobs directory as `runner serve` and `schedule list` read it: every valid job (a file
edited into something invalid keeps its previous version, and so does one whose edit would
make a workflow cycle or name an unknown parent), the scheduled ones with their triggers,
the workflow graph, and the blackout calendar (an invalid calendar keeps the previous)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from runner.errors import InputError
from runner.job.blackouts import Calendar, calendar_file, is_calendar, read_calendar
from runner.job.load import JobFile, graph_node, job_files, load_job
from runner.job.triggers import Trigger
from runner.job.workflow import Graph, Node, check_graph
from runner.schedule.policy import Slot


@dataclass
class Scheduled:
    job: JobFile
    trigger: Trigger
    key: str  # identity of the schedule: a changed schedule restarts its fire times
    slot: Slot

    @property
    def name(self) -> str:
        return self.job.spec.name


def scheduled_from(job: JobFile) -> Scheduled | None:
    schedule = job.spec.schedule
    if schedule is None:
        return None
    # the key is when it fires: supersede (added later) changes what a preview does, not when
    key = schedule.model_dump_json(exclude={"supersede"})
    return Scheduled(job, schedule.trigger(), key, Slot(schedule.overlap))


@dataclass
class JobsDir:
    """Every valid job of a directory; a file that turns invalid keeps its previous
    version. `jobs`: the scheduled ones; `all`: every one (events, workflows, freshness)."""

    path: Path
    jobs: dict[str, Scheduled] = field(default_factory=dict)
    all: dict[str, JobFile] = field(default_factory=dict)
    calendar: Calendar = field(default_factory=Calendar)
    _seen: dict[Path, tuple[int, int]] = field(default_factory=dict)
    _valid: dict[Path, JobFile] = field(default_factory=dict)  # each file's last valid read
    _files: dict[Path, JobFile] = field(default_factory=dict)  # the versions in effect
    _unreadable: dict[Path, str] = field(default_factory=dict)  # load errors, by file
    _misfits: dict[Path, str] = field(default_factory=dict)  # names used twice, cycles...

    def invalid(self) -> list[tuple[Path, str, str | None]]:
        """Each invalid file: its error and the job whose previous version stays in effect
        (None: the file is left out)."""
        problems = {**self._misfits, **self._unreadable}
        return [(path, error, self._files[path].spec.name if path in self._files else None)
                for path, error in sorted(problems.items())]

    def snapshot(self) -> dict[Path, tuple[int, int]]:
        files = job_files(self.path)
        found = calendar_file(self.path)
        out = {}
        for f in [*files, *([found] if found else [])]:
            try:
                st = f.stat()
            except OSError:
                continue
            out[f] = (st.st_mtime_ns, st.st_size)
        return out

    def changed(self) -> bool:
        return self.snapshot() != self._seen

    @property
    def nodes(self) -> dict[str, Node]:
        return {name: graph_node(job) for name, job in self.all.items()}

    def graph(self, root: str) -> Graph | None:
        """The workflow an occurrence of `root` starts, if any job follows it."""
        found = Graph.of(self.nodes, root)
        return found if found.steps else None

    def children(self, name: str) -> list[str]:
        return sorted(n for n, node in self.nodes.items()
                      if any(p.job == name for p in node.parents))

    def reload(self) -> list[str]:
        """Apply added, edited and removed files; returns messages for the log."""
        messages: list[str] = []
        current = self.snapshot()
        self._reload_calendar(current, messages)
        previous = dict(self._files)
        for path in [p for p in self._valid if p not in current]:
            gone = self._valid.pop(path)
            self._unreadable.pop(path, None)
            if path in previous:
                messages.append(f"removed {gone.spec.name} ({path.name} is gone)")
        fresh: set[Path] = set()
        for path in [p for p in self._unreadable if p not in current]:
            self._unreadable.pop(path)
        self._misfits = {}
        for path, stamp in current.items():
            if is_calendar(path) or self._seen.get(path) == stamp:
                continue
            try:
                self._valid[path] = load_job(path)
                fresh.add(path)
                self._unreadable.pop(path, None)
            except InputError as exc:
                self._unreadable[path] = str(exc)
                kept = previous.get(path)
                outcome = f"keeping the previous version of {kept.spec.name}" if kept \
                    else "not scheduled"
                messages.append(f"invalid job file, {outcome}: {exc}")
        self._files = self._settle(previous, fresh, messages)
        self._seen = current
        self._publish(previous, messages)
        return messages

    def _reload_calendar(self, current: dict[Path, tuple[int, int]],
                         messages: list[str]) -> None:
        found = calendar_file(self.path)
        if found is None:
            if self.calendar.source is not None:
                messages.append(f"blackouts: {self.calendar.source.name} is gone: no windows")
            self.calendar = Calendar()
            return
        if self._seen.get(found) == current.get(found) and self.calendar.source == found:
            return
        try:
            self.calendar = read_calendar(found)
        except InputError as exc:
            kept = "keeping the previous windows" if self.calendar.source else "no windows"
            messages.append(f"invalid blackouts file, {kept}: {exc}")
            return
        names = ", ".join(p.window.name for p in self.calendar.windows) or "none"
        messages.append(f"blackout windows from {found.name}: {names}")

    def _settle(self, previous: dict[Path, JobFile], fresh: set[Path],
                messages: list[str]) -> dict[Path, JobFile]:
        """The versions in effect: every valid file, except that a name used twice or a
        workflow problem sends the file just read back to its previous version (or out,
        until a later change makes it fit), until the directory is consistent."""
        candidates = dict(self._valid)
        for _ in range(len(candidates) + 2):
            by_name: dict[str, Path] = {}
            problems: dict[Path, str] = {}
            for path in sorted(candidates, key=lambda p: (p in fresh, p)):
                name = candidates[path].spec.name
                if name in by_name:
                    problems[path] = (f"{path}: job name {name!r} is already used by "
                                      f"{by_name[name]}")
                else:
                    by_name[name] = path
            if not problems:
                graph = check_graph({n: graph_node(candidates[p]) for n, p in by_name.items()})
                problems = {by_name[n]: str(e) for n, e in graph.items()}
            if not problems:
                return candidates
            involved = {p: m for p, m in problems.items() if p in fresh}
            for path, problem in (involved or problems).items():  # the new files first
                self._misfits[path] = problem
                kept = previous.get(path)
                if path in fresh and kept is not None and kept is not candidates[path]:
                    candidates[path] = kept
                    messages.append(f"invalid job file, keeping the previous version of "
                                    f"{kept.spec.name}: {problem}")
                else:
                    candidates.pop(path)
                    if path in fresh or path in previous:
                        messages.append(f"invalid job file, not scheduled: {problem}")
                fresh.discard(path)
        return candidates

    def _publish(self, previous: dict[Path, JobFile], messages: list[str]) -> None:
        self.all = {j.spec.name: j for j in self._files.values()}
        before = dict(self.jobs)
        self.jobs = {}
        for path, job in sorted(self._files.items()):
            new = scheduled_from(job)
            old_file = previous.get(path)
            if new is None:
                if old_file is not None and old_file.spec.schedule is not None \
                        and job is not old_file:
                    messages.append(f"unscheduled {old_file.spec.name} ({path.name} has no "
                                    "schedule now)")
                continue
            old = before.get(new.name)
            if old is not None and old.key == new.key:
                new.slot = old.slot  # same schedule: keep its running state
            self.jobs[new.name] = new
            if old_file is None or job is not old_file:
                messages.append(f"{'updated' if old_file else 'scheduled'} {new.name}: "
                                f"{new.trigger.describe()}")
