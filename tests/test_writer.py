"""The writer never leaves the target folder and never overwrites user code."""

from pathlib import Path

import pytest

from generator.errors import GenerationError
from generator.planner import MANIFEST
from generator.writer import (
    Manifest,
    check_destination,
    place,
    safe_relative,
    target_of,
    write_files,
)


@pytest.mark.parametrize(
    "path", ["../x.py", "/etc/passwd", "a/../../b", "", "a//b", "./a"]
)
def test_paths_that_escape_are_refused(path: str) -> None:
    with pytest.raises(GenerationError, match="outside the project"):
        safe_relative(path)


def test_symlinks_are_not_followed_out_of_the_project(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    project = tmp_path / "project"
    project.mkdir()
    (project / "pkg").symlink_to(outside)
    with pytest.raises(GenerationError, match="symlink"):
        write_files(project, {"pkg/evil.py": "x = 1\n"})
    assert not (outside / "evil.py").exists()
    with pytest.raises(GenerationError, match="symlink"):
        target_of(project, "pkg/evil.py")


def test_a_folder_portwright_did_not_write_is_refused(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(GenerationError, match="portwright did not write it"):
        check_destination(tmp_path, force=False)
    check_destination(tmp_path, force=True)
    check_destination(tmp_path / "absent", force=False)


def test_a_generated_folder_points_to_regenerate(tmp_path: Path) -> None:
    write_files(tmp_path, {MANIFEST: Manifest({}).to_json()})
    with pytest.raises(GenerationError, match="portwright regenerate"):
        check_destination(tmp_path, force=False)


def test_place_with_force_keeps_user_files(tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    write_files(dest, {"pkg/components/a.py": "mine = 1\n", "other.txt": "keep me\n"})
    files = {"pkg/components/a.py": b"skeleton = 1\n", "pkg/schemas.py": b"x = 1\n"}
    manifest = Manifest.build(
        files, {"pkg/components/a.py": "user", "pkg/schemas.py": "generator"}
    )
    kept = place(dest, files, manifest)
    assert kept == ["pkg/components/a.py"]
    assert (dest / "pkg/components/a.py").read_text() == "mine = 1\n"
    assert (dest / "pkg/schemas.py").read_text() == "x = 1\n"
    assert (dest / "other.txt").read_text() == "keep me\n"
    assert Manifest.read(dest) == manifest


def test_manifest_json_is_stable_and_round_trips(tmp_path: Path) -> None:
    manifest = Manifest.build({"b": b"2", "a": b"1"}, {"a": "user", "b": "generator"})
    text = manifest.to_json()
    assert text.index('"a"') < text.index('"b"')
    write_files(tmp_path, {MANIFEST: text})
    assert Manifest.read(tmp_path) == manifest


def test_a_damaged_manifest_is_reported(tmp_path: Path) -> None:
    write_files(tmp_path, {MANIFEST: "{not json"})
    with pytest.raises(GenerationError, match="manifest is damaged"):
        Manifest.read(tmp_path)
