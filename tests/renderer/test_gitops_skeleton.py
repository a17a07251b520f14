"""gitops-repo/ (the skeleton a new GitOps repository starts from) agrees with the renderer."""

from __future__ import annotations

from pathlib import Path

from renderer import render_base

SKELETON = Path(__file__).resolve().parents[2] / "gitops-repo"


def test_skeleton_base_is_byte_identical_to_render_base():
    rendered = render_base()
    on_disk = {
        str(path.relative_to(SKELETON)): path.read_bytes() for path in (SKELETON / "base").rglob("*") if path.is_file()
    }
    assert sorted(on_disk) == sorted(rendered)
    for path, content in rendered.items():
        assert on_disk[path] == content, f"gitops-repo/{path} differs from render_base(); copy it over"


def test_skeleton_has_the_documented_folders():
    assert (SKELETON / "apps" / ".gitkeep").is_file()
    assert (SKELETON / "argocd-apps" / ".gitkeep").is_file()
    readme = (SKELETON / "README.md").read_text()
    for folder in ("base/model-server/", "apps/<namespace>/<model>/", "argocd-apps/"):
        assert folder in readme
