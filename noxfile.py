"""Project tasks. `nox` runs lint, typecheck, tests and compat; `nox -s demo` runs the exercise."""

import importlib.util
import sys
from pathlib import Path

import nox

nox.options.sessions = ["lint", "typecheck", "tests", "compat"]
nox.options.error_on_missing_interpreters = False  # `pythons` runs what is installed

PYPROJECT = nox.project.load_toml("pyproject.toml")
CODE = ["src", "tests", "examples", "benchmarks", "noxfile.py"]


def group(name: str) -> list[str]:
    return nox.project.dependency_groups(PYPROJECT, name)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff: lint rules and formatting."""
    session.install(*group("lint"))
    session.run("ruff", "check", *CODE)
    session.run("ruff", "format", "--check", *CODE)


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict on src/."""
    session.install("-e", ".[prometheus,otel]", *group("typecheck"))
    session.run("mypy")


@nox.session
def tests(session: nox.Session) -> None:
    """The whole test suite, integration tests over HTTP against the embedded endpoint."""
    session.install(
        "-e", ".[local]", *group("test"), *group("test-destinations"), *group("test-metrics")
    )
    session.run("pytest", *session.posargs)


# MiniStack pins its own botocore, so it gets a virtualenv of its own, next to the session's.
MINISTACK = "ministack>=1.5,<1.6"


@nox.session
def compat(session: nox.Session) -> None:
    """Integration tests against a second server, MiniStack, plus MiniStack-only cases."""
    session.install("-e", ".", *group("test"), *group("test-metrics"))  # no moto: MiniStack serves
    python = _ministack_python(session)
    spec = importlib.util.spec_from_file_location(
        "ministack_endpoint", Path(__file__).parent / "tests" / "ministack_endpoint.py"
    )
    assert spec is not None and spec.loader is not None
    starter = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(starter)
    with starter.MiniStack(python) as server:  # stopped on the way out, pass or fail
        session.log(f"MiniStack serves {server.url}")
        session.run(
            "pytest",
            "-m",
            "local_endpoint and not moto_only",
            *session.posargs,
            env={
                "DDBSTREAMS_TEST_ENDPOINT_URL": server.url,
                "DDBSTREAMS_TEST_SERVER": "ministack",
                "DDBSTREAMS_MINISTACK_PYTHON": python,  # for servers with short lifetimes
            },
        )


def _ministack_python(session: nox.Session) -> str:
    """The interpreter of .nox/compat-ministack, a virtualenv with MiniStack installed."""
    venv = Path(session.virtualenv.location).parent / "compat-ministack"
    python = venv / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")
    if not python.exists():
        session.run("python", "-m", "venv", str(venv))
    session.run(str(python), "-m", "pip", "install", "--quiet", MINISTACK, external=True)
    return str(python)


@nox.session(python=["3.10", "3.11", "3.12", "3.13"])
def pythons(session: nox.Session) -> None:
    """The test suite on every supported Python that is installed (not run by bare `nox`)."""
    session.install(".[local]", *group("test"), *group("test-destinations"), *group("test-metrics"))
    session.run("pytest", *session.posargs)


@nox.session
def docs(session: nox.Session) -> None:
    """Build the documentation site into site/ (API reference from docstrings)."""
    session.install("-e", ".", *group("docs"))
    session.run("mkdocs", "build", "--strict", *session.posargs)


@nox.session
def demo(session: nox.Session) -> None:
    """The seed exercise end to end on the embedded local endpoint."""
    session.install(".[local]")
    session.run("python", "examples/run_exercise.py", *session.posargs)


@nox.session
def chaos(session: nox.Session) -> None:
    """Chaos soak (not run by bare `nox`): SIGKILLs and wire faults, at-least-once checked.

    `nox -s chaos -- --seed 7`; see tests/chaos_soak.py for the options."""
    session.install(".")
    session.run("python", "tests/chaos_soak.py", *session.posargs)


@nox.session
def mutants(session: nox.Session) -> None:
    """Mutation testing (mutmut) of the reader, coordinator, lineage, stores and pages; not
    run by bare `nox`. `nox -s mutants -- NAME...` re-runs some mutants (docs/mutants.md)."""
    # mutmut puts its mutated copy of src/ first on sys.path; the package installed here
    # only brings the dependencies. Two children at most: the machine has two cores.
    session.install(".[local]", *group("test"), *group("typecheck"), "mutmut>=3.8,<3.9")
    session.run("mutmut", "run", "--max-children", "2", *session.posargs)
    session.run("python", "tests/mutants_report.py")
    if not session.posargs:  # the breakages the issue names, each caught by some test
        session.run("python", "tests/mutants_breakages.py")


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks, not part of the test suite: all, or `nox -s bench -- record_path scale`."""
    session.install(".[local,prometheus]", *group("bench"))
    everything = ["record_path", "latency", "scale", "memory", "parallelism", "leases"]
    for name in session.posargs or everything:
        if name == "leases":  # its lease table on MiniStack: atomic, and quick to Query
            python = _ministack_python(session)
            session.run("python", "benchmarks/bench_leases.py", "--ministack-python", python)
        else:
            session.run("python", f"benchmarks/bench_{name}.py")
    session.run("python", "benchmarks/plot.py")
