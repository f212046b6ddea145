"""The import graph of eegbench: no circles, no upward imports, no private names across packages.

Every ``import`` in ``eegbench/**/*.py`` counts, at module level or inside a function (a deferred
import is still a dependency; deferring only hides a circle). The modules are ordered in
:data:`LAYERS`, lowest first: a module may import from its own layer and the layers below, never
from a layer above. A name or module that starts with an underscore is private to its package:
``eegbench._check`` may be used anywhere inside eegbench but not by submissions, and
a private function of ``eegbench.submissions`` only inside ``eegbench.submissions``.

Not seen: modules started by name (``python -m eegbench._worker``, ``importlib.import_module``).

The tests fail on any violation: there is no list of tolerated ones.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path


REPO = Path(__file__).resolve().parents[1]

#: The layers of eegbench, lowest first. Names are the modules and packages directly under
#: ``eegbench`` ("eegbench" itself is the package's ``__init__``, the public API). Modules of one
#: layer may import each other (the circle test still applies).
LAYERS: tuple[tuple[str, ...], ...] = (
    # Foundations: errors, version, paths, progress, import fixes, plot style, the submission guard, hashing and
    # atomic files, the generic registry, torch devices.
    ("_check", "_version", "_paths", "_progress", "_compat", "_plots", "_guard", "_io", "registry", "devices",
     "identifiers", "provenance", "errors"),
    # Leaf concepts: task files, retrieval metrics, brain encoder architectures, what a fitted method reports,
    # views of the training images, noise normalisation.
    ("tasks", "metrics", "encoders", "reports", "views", "normalization"),
    # Vision backbones and cached features; they know nothing of datasets.
    ("backbones",),
    # Datasets: the synthetic one simulates responses from a backbone's features, so data sits above backbones.
    ("data",),
    # The method API that submissions implement.
    ("submissions",),
    # Protocols: units, response preparation, training data.
    ("protocols",),
    # Result records, their store and attestations of reproduced ones: they describe runs and run nothing, so they
    # sit below what runs.
    ("records", "results", "attestation"),
    # The contrastive trainer that methods call.
    ("training",),
    # Running submission code in workers, and the harness's scoring.
    ("isolation", "_worker", "scoring"),
    # Statistics over result records, and the scoring modes computed from them.
    ("stats", "scoring_modes"),
    # Resolving a configuration: task, dataset, backbone, method plan, units and their result keys.
    ("plan",),
    # One configuration, end to end.
    ("runner",),
    # Many runs: sweeps, re-runs of records, scaling and RSA analyses, the check of a submission, protocol pitfalls.
    ("sweep", "estimates", "reproduction", "analyses", "check", "pitfalls"),
    ("leaderboard", "pr"),
    # What boards are built from, as a dataset (Parquet, the Hugging Face Hub); the board as a static HTML site.
    ("results_dataset", "site"),
    # The public Python API, then the command line over it.
    ("eegbench",),
    ("cli",),
)

@dataclass(frozen=True)
class Import:
    """One import statement's dependency: ``importer`` uses module ``module`` (and ``name`` of it, if a name)."""

    importer: str
    module: str
    name: str | None = None

    @property
    def target(self) -> str:
        """What is imported, as a dotted path: the module, or the module and the name."""
        return f"{self.module}.{self.name}" if self.name else self.module


def module_files(folder: Path, prefix: str) -> dict[str, Path]:
    """Dotted module names of the ``.py`` files under ``folder`` (a package's ``__init__`` is the package)."""
    out = {}
    for path in sorted(folder.rglob("*.py")):
        parts = [prefix, *path.relative_to(folder).with_suffix("").parts]
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def imports_of(name: str, path: Path, modules: Mapping[str, Path]) -> Iterator[Import]:
    """The eegbench imports of one file, wherever they stand (module level, functions, ``if`` blocks)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (Import(name, alias.name) for alias in node.names if _ours(alias.name))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the importing package, up level - 1 packages
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            if not _ours(base):
                continue
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                yield Import(name, submodule) if submodule in modules else Import(name, base, alias.name)


def _ours(module: str) -> bool:
    return module == "eegbench" or module.startswith("eegbench.")


def unit(module: str) -> str:
    """The top-level module or package of eegbench that ``module`` belongs to (its layer's name)."""
    parts = module.split(".")
    return parts[1] if parts[0] == "eegbench" and len(parts) > 1 else parts[0]


LAYER_OF = {name: level for level, names in enumerate(LAYERS) for name in names}
MODULES = module_files(REPO / "eegbench", "eegbench")
IMPORTS = [imp for name, path in MODULES.items() for imp in imports_of(name, path, MODULES)]
SUBMISSION_IMPORTS = [imp for name, path in module_files(REPO / "submissions", "submissions").items()
                      for imp in imports_of(name, path, MODULES)]


def upward_imports() -> set[tuple[str, str]]:
    """(importer, module) where the module's layer is above the importer's."""
    return {(imp.importer, imp.module) for imp in IMPORTS
            if LAYER_OF[unit(imp.module)] > LAYER_OF[unit(imp.importer)]}


def private_imports() -> set[tuple[str, str]]:
    """(importer, target) where the target is private to a package the importer is not part of.

    A private module (``a._b``) belongs to its parent package ``a``; a private name of a module
    belongs to that module's top-level module or package of eegbench (its :func:`unit`).
    """
    out = set()
    for imp in IMPORTS + SUBMISSION_IMPORTS:
        parts = imp.module.split(".")
        for i, part in enumerate(parts):
            if part.startswith("_") and not part.startswith("__"):
                owner = ".".join(parts[:i])
                if not (imp.importer == owner or imp.importer.startswith(owner + ".")):
                    out.add((imp.importer, imp.module))
                break
        name = imp.name or ""
        if name.startswith("_") and not name.startswith("__") and unit(imp.importer) != unit(imp.module):
            out.add((imp.importer, imp.target))
    return out


def circles(edges: Mapping[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges.get(root, ()))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1:
                    found.append(sorted(group))
    return found


def shortest_circle(start: str, edges: Mapping[str, set[str]]) -> list[str]:
    """The shortest chain of imports from ``start`` back to itself (breadth first), as modules in order."""
    paths = {child: [start, child] for child in sorted(edges.get(start, ()))}
    queue = list(paths)
    while queue:
        node = queue.pop(0)
        if node == start:
            return paths[node]
        for child in sorted(edges.get(node, ())):
            if child not in paths:
                paths[child] = [*paths[node], child]
                queue.append(child)
    return [start]


def _listed(violations: set[tuple[str, str]]) -> str:
    return "\n".join(f"  {importer} imports {target}" for importer, target in sorted(violations))


def test_the_graph_counts_deferred_imports():
    # synthetic.py imports the backbones inside functions; the graph must still see it.
    assert Import("eegbench.data.synthetic", "eegbench.backbones", "load_backbone") in IMPORTS
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert circles({"a": {"b"}, "b": set()}) == []
    assert shortest_circle("a", {"a": {"b", "c"}, "b": {"a"}, "c": {"b"}}) == ["a", "b", "a"]


def test_every_module_has_a_layer():
    missing = sorted({unit(name) for name in MODULES} - set(LAYER_OF))
    assert not missing, f"Add these modules of eegbench to LAYERS in {Path(__file__).name}: {missing}"


def test_no_import_circles():
    edges: dict[str, set[str]] = {name: set() for name in MODULES}
    for imp in IMPORTS:
        if imp.module != imp.importer:
            edges[imp.importer].add(imp.module)
    found = circles(edges)
    assert not found, "Modules that import each other, directly or through others (one circle of each group):\n" + \
        "\n".join(f"  {' -> '.join(shortest_circle(group[0], edges))}" for group in found)


def test_no_upward_imports():
    new = upward_imports()
    assert not new, f"Imports from a higher layer (see LAYERS in {Path(__file__).name}):\n{_listed(new)}"


def test_no_private_imports_across_packages():
    new = private_imports()
    assert not new, f"Private modules or names used outside their package:\n{_listed(new)}"



def _reachable(start: str) -> set[str]:
    """Every module ``start`` imports, directly or through others (deferred imports included)."""
    edges: dict[str, set[str]] = defaultdict(set)
    for imp in IMPORTS:
        edges[imp.importer].add(imp.module)
    seen, queue = {start}, [start]
    while queue:
        for child in edges[queue.pop()] - seen:
            seen.add(child)
            queue.append(child)
    return seen


def test_the_pitfall_code_is_unreachable_from_runs_sweeps_and_main_tables():
    for start in ("eegbench.runner", "eegbench.sweep", "eegbench.results", "eegbench.stats"):
        assert "eegbench.pitfalls" not in _reachable(start), f"{start} reaches eegbench.pitfalls"
    importers = {imp.importer for imp in IMPORTS if imp.module == "eegbench.pitfalls"}
    assert importers <= {"eegbench.leaderboard", "eegbench.results_dataset", "eegbench.site", "eegbench.cli"}, importers
    # the leaderboard imports it in the function that reads pitfall records and the one that adds their section;
    # the site in the one that adds their section
    for module, expected in (("leaderboard", {"read_board_records", "_pitfall_sections"}),
                             ("site", {"_pitfall_section"})):
        tree = ast.parse((REPO / "eegbench" / f"{module}.py").read_text())
        holders = {function.name for function in ast.walk(tree) if isinstance(function, ast.FunctionDef)
                   for node in ast.walk(function)
                   if isinstance(node, ast.ImportFrom) and node.module == "eegbench.pitfalls"}
        module_level = [node for node in tree.body
                        if isinstance(node, ast.ImportFrom) and node.module == "eegbench.pitfalls"]
        assert holders == expected and not module_level, module
