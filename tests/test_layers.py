"""The import stack runs one way, and only worker/amqp talks to the AMQP client libraries.

cli → bench → console → runner | api | ops → roles → handlers | store | amqp → db | products | … →
settings → errors | schemas. `store` and `amqp` never import each other: roles are the
only place where a transaction and a publish meet.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAYERS = {
    "worker": 0,  # the package itself (empty)
    "worker.cli": 8,
    "worker.bench": 7,
    "worker.console": 6,  # the web console: pages over the API's state, the store and the operator tools
    "worker.runner": 5,
    "worker.api": 5,
    "worker.ops": 5,
    "worker.producer": 4,
    "worker.sdk": 4,  # the product SDK: a public API like the producer, on worker.amqp
    "worker.roles": 4,
    "worker.handlers": 3,
    "worker.store": 3,
    "worker.opendsr": 3,  # OpenDSR mapping, callback bodies, certificate signing: never the store
    "worker.webhooks": 3,  # signing, URL guard, sealed secrets, sender: never the store
    "worker.amqp": 3,
    "worker.db": 2,
    "worker.products": 2,
    "worker.retry": 2,
    "worker.metrics": 2,
    "worker.logs": 2,
    "worker.tracing": 1,  # W3C trace context and spans: below logging, which adds trace ids
    "worker.aio": 2,
    "worker.gc_pause": 2,
    "worker.gc_tuning": 2,
    "worker.due_dates": 2,
    "worker.receipts": 2,  # canonical JSON, Ed25519, identity digests: pure, below the store that issues receipts
    "worker.settings": 1,
    "worker.errors": 0,
    "worker.topics": 0,  # topic-pattern matching, pure: settings validate with it
    "schemas": 0,
}
AMQP_LIBRARIES = ("aio_pika", "aiormq", "pamqp")
# The ceiling is measured through plain aio-pika on purpose: the yardstick of the pipeline.
AMQP_EXCEPTIONS = {"worker.bench.ceiling"}
NEVER = {("worker.store", "worker.amqp"), ("worker.amqp", "worker.store")}


def group(module: str) -> str:
    return max((name for name in LAYERS if module == name or module.startswith(name + ".")), key=len)


def modules() -> dict[str, set[str]]:
    """Every module of the package and what it imports (`from a import b`: a.b when b is a
    module, else a)."""
    paths = sorted([*(ROOT / "worker").rglob("*.py"), *(ROOT / "schemas").rglob("*.py")])
    names = {".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): p for p in paths}
    imports: dict[str, set[str]] = {}
    for name, path in names.items():
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for alias in node.names:
                    submodule = f"{node.module}.{alias.name}"
                    found.add(submodule if submodule in names else node.module)
            elif isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
        imports[name] = found
    return imports


def test_only_the_amqp_package_imports_the_amqp_libraries() -> None:
    offenders = {
        module
        for module, imported in modules().items()
        if any(i.split(".")[0] in AMQP_LIBRARIES for i in imported)
        and not module.startswith("worker.amqp")
        and module not in AMQP_EXCEPTIONS
    }
    assert offenders == set()


def test_imports_go_down_the_stack() -> None:
    graph = modules()
    violations = []
    for module, imported in graph.items():
        for target in imported:
            if target not in graph:
                continue
            source_group, target_group = group(module), group(target)
            if (source_group, target_group) in NEVER or (
                source_group != target_group and LAYERS[target_group] >= LAYERS[source_group]
            ):
                violations.append(f"{module} -> {target}")
    assert violations == []


def test_no_import_cycles() -> None:
    imports = modules()
    graph = {module: {t for t in imported if t in imports} for module, imported in imports.items()}
    visiting: set[str] = set()
    done: set[str] = set()
    cycles: list[str] = []

    def visit(module: str, path: list[str]) -> None:
        if module in done:
            return
        if module in visiting:
            cycles.append(" -> ".join([*path[path.index(module) :], module]))
            return
        visiting.add(module)
        for target in sorted(graph[module]):
            visit(target, [*path, module])
        visiting.discard(module)
        done.add(module)

    for module in sorted(graph):
        visit(module, [])
    assert cycles == []
