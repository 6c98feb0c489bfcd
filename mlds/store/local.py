"""Where the local (embedded) store lives.

Resolution order, first match wins:

1. ``MLDS_STORE`` environment variable (a path): explicit beats discovery, like ``GIT_DIR``;
2. a project store ``.mlds/store`` found by walking up from the current directory (``mlds init``);
3. the personal store ``platformdirs.user_data_dir("mlds")/store`` (created on first use, tier personal).
"""

from __future__ import annotations

import os
from pathlib import Path

from mlds.store.store import Store

PROJECT_DIR = ".mlds"


def personal_store_path() -> Path:
    import platformdirs

    return Path(platformdirs.user_data_dir("mlds")) / "store"


def find_project_store(start: str | os.PathLike | None = None) -> Path | None:
    here = Path(start or os.getcwd()).resolve()
    for d in (here, *here.parents):
        cand = d / PROJECT_DIR / "store"
        if (cand / "mlds-store.json").is_file():
            return cand
    return None


def local_store_path(start: str | os.PathLike | None = None) -> Path:
    env = os.environ.get("MLDS_STORE")
    if env:
        return Path(env).expanduser()
    proj = find_project_store(start)
    if proj is not None:
        return proj
    return personal_store_path()


def local_store(start: str | os.PathLike | None = None, *, create: bool = True) -> Store:
    """The local store; created (tier personal) if missing, unless ``create=False`` (read-only uses)."""
    store = Store.at_path(local_store_path(start), name="local")
    if create and not store.exists():
        store.init("personal")
    return store


def init_store(path: str | os.PathLike | None = None, *, personal: bool = False, tier: str = "personal") -> Store:
    """Create a store: ``path``, the personal store, or ``./.mlds/store`` (project)."""
    if path is None:
        path = personal_store_path() if personal else Path.cwd() / PROJECT_DIR / "store"
    store = Store.at_path(path, name="local")
    store.init(tier)
    return store
