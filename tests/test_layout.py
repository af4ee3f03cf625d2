"""The repository layout keeps Python's stdlib `platform` module reachable and the parties apart."""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_stdlib_platform_is_not_shadowed_from_the_repo_root():
    # torch imports the stdlib `platform`; a platform/__init__.py in the repo would break it.
    result = subprocess.run(
        [sys.executable, "-c", "import platform, torch; print(platform.system())"],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()


def test_role_folders_are_not_packages():
    for role in ("shared", "authority", "platform"):
        assert not (ROOT / role / "__init__.py").exists(), role


def _imported_modules(package: Path) -> set[str]:
    names = set()
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
    return names


def test_parties_import_only_the_shared_library():
    assert "vetohash_authority" not in _imported_modules(ROOT / "platform" / "vetohash_platform")
    assert "vetohash_platform" not in _imported_modules(ROOT / "authority" / "vetohash_authority")
    shared = _imported_modules(ROOT / "shared" / "vetohash")
    assert not shared & {"vetohash_authority", "vetohash_platform"}


def test_no_unpickling_in_product_code():
    for role in ("shared", "authority", "platform"):
        for path in (ROOT / role).rglob("*.py"):
            text = path.read_text()
            assert "import pickle" not in text and "torch.load(" not in text, path
