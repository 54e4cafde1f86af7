"""CI runs exactly the README's install and test commands."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## In a clone: two commands", 1)[1].split("\n## ", 1)[0]
    return [line.strip() for line in section.splitlines() if line.startswith("    ") and line.strip()]


def test_ci_runs_the_readme_commands():
    install, test = _readme_commands()[:2]
    ci = (ROOT / ".ci" / "run").read_text()
    assert install.replace("pip install", "python -m pip install --quiet") in ci
    assert test in ci
