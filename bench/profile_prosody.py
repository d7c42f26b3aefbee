"""Profile one member's Prosody during a ``bench_scale.py`` run: which Lua work its server is busy with.

``profile_prosody.py [--member a] [--every 20000] [--stacks FILE] [bench_scale.py's arguments]``, e.g.
``profile_prosody.py --member a 16 --topology hub`` for the hub of 16. ``--report FILE`` prints the
report of a profile already taken, without a run.

That member's Prosody loads ``bench/prosody/mod_bench_profile.lua``, which samples its Lua stack every
``--every`` VM instructions (a count hook: Prosody 0.12 has no profiler of its own, and ``perf`` sees
only the interpreter's own frames, 81 % of the hub's samples in one of them, SCALING.md). After the run
this prints where the samples fell:

- by activity: answering node listings (disco#items on a node, XEP-0060 §5.5), answering item requests,
  storing a published item, sending its notifications (copying and serializing the stanza for each
  subscriber), reading streams, and the rest;
- inclusive by file and by function, and the functions running when sampled (self).

Instructions are not seconds: time in C (expat, SQLite, TLS, the kernel) is not in it. The hook costs
the profiled server about a tenth more CPU (one run each: 57.5 s against 52.9 s for the 16-member hub).
"""

from __future__ import annotations

import runpy
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import option, table  # noqa: E402
from xmppbridge.demo import prosody  # noqa: E402

PLUGINS = Path(__file__).resolve().parent / "prosody"
BENCH_SCALE = Path(__file__).resolve().parent / "bench_scale.py"

# Activities, first match wins: (name, the function that marks it, and one that must run below it, or
# None). A function is "file:linedefined" in Prosody 0.12.3 (Debian 12): most of these are anonymous or
# local, so debug.getinfo has no name for them. Another Prosody version needs these looked up again.
ACTIVITIES = (
    ("answering node listings (disco#items on a node)", "mod_pubsub/pubsub.lib.lua:303", None),
    ("answering item requests (by id, max_items)", "mod_pubsub/pubsub.lib.lua:335", None),
    ("publishing: storing the item (SQL)", "util/pubsub.lua:533", "mod_pubsub/pubsub.lib.lua:896"),
    ("publishing: notifications (a copy, serialized, per subscriber)", "util/pubsub.lua:533",
     "mod_pubsub/mod_pubsub.lua:68"),
    ("publishing: the rest (access, events)", "util/pubsub.lua:533", None),
    ("other stanzas (routing, s2s, disco, subscriptions)", "core/stanza_router.lua:150", None),
    ("reading and parsing streams", "util/xmppstream.lua:309", None),
)
OTHER = "the rest (timers, connections)"


def parse(lines: Iterable[str]) -> tuple[Counter[tuple[str, ...]], int]:
    """Folded stacks -> (stack -> samples, total samples)."""
    stacks: Counter[tuple[str, ...]] = Counter()
    for line in lines:
        if line.startswith("#") or not line.strip():
            continue
        count, _, folded = line.rstrip("\n").partition(" ")
        stacks[tuple(folded.split(";"))] += int(count)
    return stacks, sum(stacks.values())


def activity(stack: tuple[str, ...]) -> str:
    where = [frame.partition(" ")[0] for frame in stack]
    for label, marker, below in ACTIVITIES:
        at = next((i for i, frame in enumerate(where) if frame.endswith(marker)), None)
        if at is not None and (below is None or any(frame.endswith(below) for frame in where[at + 1:])):
            return label
    return OTHER


def inclusive(stacks: Counter[tuple[str, ...]], key: Callable[[str], str]) -> Counter[str]:
    counts: Counter[str] = Counter()
    for stack, n in stacks.items():
        for k in {key(frame) for frame in stack}:
            counts[k] += n
    return counts


def report(path: Path, top: int = 20) -> None:
    stacks, total = parse(path.read_text().splitlines())
    if not total:
        raise SystemExit(f"{path} holds no samples: did the member's Prosody load mod_bench_profile?")
    share = lambda n: f"{100 * n / total:.1f} %"  # noqa: E731
    by_activity: Counter[str] = Counter()
    for stack, n in stacks.items():
        by_activity[activity(stack)] += n
    print(f"\n{total} samples of {path}\n")
    rows = [[a, share(n)] for a, n in by_activity.most_common()]
    print(table(rows, ["activity", "share of the Lua samples"]))
    for title, counts in (
        ("file (inclusive)", inclusive(stacks, lambda f: f.partition(":")[0])),
        ("function (inclusive)", inclusive(stacks, lambda f: f)),
        ("function (self)", _selfs(stacks)),
    ):
        print()
        print(table([[k, share(n)] for k, n in counts.most_common(top)], [title, "share"]))


def _selfs(stacks: Counter[tuple[str, ...]]) -> Counter[str]:
    counts: Counter[str] = Counter()
    for stack, n in stacks.items():
        if stack:
            counts[stack[-1]] += n
    return counts


def profiled(member: str, out: Path, every: int) -> Callable[[prosody.ProsodyServer], Path]:
    """``ProsodyServer.write_config`` that also loads the profiler, for ``member``'s server only."""
    write_config = prosody.ProsodyServer.write_config

    def write(self: prosody.ProsodyServer) -> Path:
        path = write_config(self)
        if self.domain.partition(".")[0] == member:
            text = path.read_text().replace("modules_enabled = {", 'modules_enabled = { "bench_profile";', 1)
            path.write_text(f'plugin_paths = {{ "{PLUGINS}" }}\nbench_profile_file = "{out}"\n'
                            f"bench_profile_every = {every}\n{text}")
        return path

    return write


def main() -> None:
    done = option("--report", "")
    if done:
        report(Path(done))
        return
    member, every = option("--member", "a"), int(option("--every", "20000"))
    out = Path(option("--stacks", "") or Path(tempfile.mkdtemp(prefix="prosody-profile-")) / "stacks.txt")
    rest, skip = [], False
    for arg in sys.argv[1:]:
        if skip:
            skip = False
        elif arg in ("--member", "--every", "--stacks"):
            skip = True
        elif arg.partition("=")[0] in ("--member", "--every", "--stacks"):
            continue
        else:
            rest.append(arg)
    prosody.ProsodyServer.write_config = profiled(member, out, every)  # type: ignore[method-assign]
    sys.argv = [str(BENCH_SCALE), *rest]
    runpy.run_path(str(BENCH_SCALE), run_name="__main__")
    print(f"\nProsody of {member}, its Lua sampled every {every} instructions (folded stacks in {out}):")
    report(out)


if __name__ == "__main__":
    main()
