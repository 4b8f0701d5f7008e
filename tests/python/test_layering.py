"""Dependencies point one way: every `#include` under core/, server/ and
client/ is checked against the order README.md's Layout section writes down
(core's folders lowest first; server/ above all of core; client/ on
core/util only; core never reaches the adapters or the generated protocol),
and the project's own headers include each other without a cycle."""
import os
import pathlib
import re
import sys

SOURCE = pathlib.Path(os.environ.get("GRAFT_SOURCE_DIR", pathlib.Path(__file__).resolve().parents[2]))
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)
ORDER_LINE = re.compile(r"^core's folders, lowest first: (.+)$", re.M)


def written_order():
    """The order as README.md states it: `util → auth → data → …`."""
    found = ORDER_LINE.search((SOURCE / "README.md").read_text())
    assert found, "README.md's Layout section no longer states core's order"
    order = [name.strip(" `.") for name in found.group(1).split("→")]
    folders = sorted(p.name for p in (SOURCE / "core").iterdir() if p.is_dir())
    assert sorted(order) == folders, f"the written order {order} does not name core's folders {folders}"
    return order


def sources():
    for top in ("core", "server", "client"):
        for path in sorted((SOURCE / top).rglob("*")):
            if path.suffix in (".cc", ".h"):
                yield path


def includes(path):
    return INCLUDE.findall(path.read_text())


def violations(order):
    rank = {name: i for i, name in enumerate(order)}
    bad = []
    for path in sources():
        rel = path.relative_to(SOURCE)
        top = rel.parts[0]
        for inc in includes(path):
            parts = inc.split("/")
            target = parts[0]
            if top == "core":
                here = rel.parts[1]
                if target in ("server", "client", "graft", "proto"):
                    bad.append(f"{rel}: {inc} (core never includes the adapters or the generated protocol)")
                elif target == "core" and len(parts) > 2 and rank.get(parts[1], -1) > rank[here]:
                    bad.append(f"{rel}: {inc} (core/{here} is below core/{parts[1]})")
            elif top == "client":
                if target == "server" or (target == "core" and parts[1] != "util"):
                    bad.append(f"{rel}: {inc} (client/ uses the protocol and core/util only)")
            elif top == "server":
                if target == "client":
                    bad.append(f"{rel}: {inc} (server/ never includes client/)")
    return bad


def cycles():
    """Include cycles among the project's own headers (a path of them)."""
    graph = {}
    for path in sources():
        rel = str(path.relative_to(SOURCE))
        graph[rel] = [inc for inc in includes(path) if (SOURCE / inc).is_file()]
    found, state = [], {}

    def visit(node, stack):
        state[node] = "open"
        stack.append(node)
        for nxt in graph.get(node, []):
            if state.get(nxt) == "open":
                found.append(" -> ".join(stack[stack.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, stack)
        stack.pop()
        state[node] = "done"

    for node in graph:
        if node not in state:
            visit(node, [])
    return found


def test_every_include_follows_the_written_order():
    order = written_order()
    assert order[0] == "util" and order[-1] == "jobs", order
    bad = violations(order)
    assert not bad, "includes against the order README.md writes down:\n" + "\n".join(bad)


def test_no_include_cycle():
    found = cycles()
    assert not found, "include cycles:\n" + "\n".join(found)


def test_the_check_sees_an_upward_include(tmp_path, monkeypatch):
    """The rule is not vacuous: a copy of the tree with one upward include fails it."""
    order = written_order()
    fake = tmp_path / "src"
    (fake / "core" / "util").mkdir(parents=True)
    (fake / "core" / "jobs").mkdir(parents=True)
    for folder in order:
        (fake / "core" / folder).mkdir(exist_ok=True)
    (fake / "core" / "util" / "low.h").write_text('#include "core/jobs/high.h"\n')
    (fake / "core" / "jobs" / "high.h").write_text('#include "core/util/low.h"\n')
    for top in ("server", "client"):
        (fake / top).mkdir()
    (fake / "README.md").write_text((SOURCE / "README.md").read_text())
    monkeypatch.setattr(sys.modules[__name__], "SOURCE", fake)
    assert violations(order) == ["core/util/low.h: core/jobs/high.h (core/util is below core/jobs)"]
    assert cycles() == ["core/jobs/high.h -> core/util/low.h -> core/jobs/high.h"]
