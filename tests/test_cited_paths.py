"""Every repository path that the docs, the schema and the code cite exists, and the
contract is the project's own: docs/metrics.md and docs/upstream.md, linked from the
README, and nothing points at a page outside the repository."""

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOP = ("docs", "gateway", "resolvers", "loaders", "workers", "tests", "bench", ".ci", "deploy")
# `docs/metrics.md`, `resolvers/figures/`, `tests/js/codegen.ts`: a top-level folder, then
# names of letters, digits, `_`, `.` and `-` (a `<placeholder>` or a `*` ends the path).
TOPS = "|".join(re.escape(t) for t in TOP)
CITED = re.compile(rf"(?<![\w./-])((?:{TOPS})/(?:[\w.-]+/)*[\w.-]*)")
# A relative Markdown link: [text](target) or [text](target#anchor).
LINK = re.compile(r"\]\((?!https?:|mailto:|#)([^)#\s]+)")
SUFFIXES = {".md", ".py", ".graphql", ".ts", ".toml", ".yaml", ".yml", ""}


def tracked_files() -> list[Path]:
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return [
        ROOT / name
        for name in out
        if (ROOT / name).is_file()
        and Path(name).suffix in SUFFIXES
        and (Path(name).suffix or name == "Makefile")
    ]


def cited(path: Path, text: str) -> set[str]:
    found = set()
    for match in CITED.finditer(text):
        name = match.group(1).rstrip(".")
        if name.endswith("/") or "." in Path(name).name:  # a folder, or a file with a suffix
            found.add(name)
    if path.suffix == ".md":
        for match in LINK.finditer(text):
            target = (path.parent / match.group(1)).resolve()
            found.add(str(target.relative_to(ROOT)) if target.is_relative_to(ROOT) else str(target))
    return found


def ignored(names: set[str]) -> set[str]:
    """Those of `names` that git ignores: outputs written at run time (bench/results/)."""
    out = subprocess.run(
        ["git", "check-ignore", "--no-index", "--stdin"],
        cwd=ROOT,
        input="\n".join(sorted(names)),
        capture_output=True,
        text=True,
    ).stdout.split()
    return set(out)


def test_every_cited_repository_path_exists() -> None:
    missing = {
        (str(path.relative_to(ROOT)), name)
        for path in tracked_files()
        if path != Path(__file__)
        for name in cited(path, path.read_text(errors="replace"))
        if not (ROOT / name).exists()
    }
    outputs = ignored({name for _, name in missing})
    assert sorted(f"{path}: {name}" for path, name in missing if name not in outputs) == []


def test_the_contract_is_in_the_repository_and_linked_from_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "](docs/metrics.md)" in readme
    assert "](docs/upstream.md)" in readme
    assert (ROOT / "docs/metrics.md").is_file()
    assert (ROOT / "docs/upstream.md").is_file()
    outside = re.compile(r"\bspec/|\bMETRICS\.md|\bUPSTREAM\.md|\.\./shared")
    pointing_out = sorted(
        str(path.relative_to(ROOT))
        for path in tracked_files()
        if path != Path(__file__) and outside.search(path.read_text(errors="replace"))
    )
    assert pointing_out == []


def test_the_finder_sees_what_it_must() -> None:
    text = (
        "see `docs/metrics.md`, resolvers/figures/ and loaders/<module>.py, "
        "gateway/documents/operations/*.graphql; docs/nope.md."
    )
    assert cited(ROOT / "x.py", text) == {
        "docs/metrics.md",
        "resolvers/figures/",
        "loaders/",  # the folder of a placeholder's file
        "gateway/documents/operations/",
        "docs/nope.md",
    }
