"""No import cycles in ``pantherahive``: a module that imports another which imports it
back (directly or through others) can only be understood, tested or moved together with
it. Checked on grimp's graph of every module, sub-packages' ``__init__`` included, and
lazy imports inside functions included (they are cycles all the same, just deferred)."""

from __future__ import annotations

from collections.abc import Iterator

import grimp


def strongly_connected(graph: grimp.ImportGraph) -> list[list[str]]:
    """Tarjan's algorithm, iterative: the groups of modules that reach each other."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    groups: list[list[str]] = []

    def imports(module: str) -> Iterator[str]:
        return iter(sorted(graph.find_modules_directly_imported_by(module)))

    for root in sorted(graph.modules):
        if root in index:
            continue
        work = [(root, imports(root))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            module, imported = work[-1]
            child = next(imported, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, imports(child)))
                elif child in on_stack:
                    low[module] = min(low[module], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[module])
            if low[module] == index[module]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == module:
                        break
                if len(group) > 1:
                    groups.append(sorted(group))
    return groups


def test_no_module_of_pantherahive_imports_itself_back() -> None:
    graph = grimp.build_graph("pantherahive")
    cycles = strongly_connected(graph)
    described = []
    for group in cycles:
        first, second = group[0], next(
            m for m in group[1:] if graph.find_shortest_chain(importer=group[0], imported=m)
        )
        there = graph.find_shortest_chain(importer=first, imported=second) or ()
        back = graph.find_shortest_chain(importer=second, imported=first) or ()
        described.append(" -> ".join([*there, *back[1:]]))
    assert not cycles, "import cycles:\n" + "\n".join(described)


def test_the_check_finds_a_cycle() -> None:
    graph = grimp.ImportGraph()
    for module in ("pkg", "pkg.a", "pkg.b", "pkg.c"):
        graph.add_module(module)
    graph.add_import(importer="pkg.a", imported="pkg.b")
    graph.add_import(importer="pkg.b", imported="pkg.c")
    graph.add_import(importer="pkg.c", imported="pkg.a")
    assert strongly_connected(graph) == [["pkg.a", "pkg.b", "pkg.c"]]
