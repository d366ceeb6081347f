"""mkdocs hooks of the documentation site.

The Rust crates' API documentation is rustdoc's own (``cargo doc``, built by ``scripts/docs`` into
``target/doc``): its files join the site under ``rust/``, as files of the site, so that a link from a
page to ``rust/signalroom_core/index.html`` is checked like any other by ``mkdocs build --strict``.
A build without them fails and says how to make them. The files beside ``deploy/README.md`` (which
the cluster's page includes) join the site beside that page.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File, Files

#: The crates whose API documentation the site carries (those published on crates.io).
CRATES = ("signalroom_core", "signalroom_client", "signalroom_server")
#: Where ``cargo doc`` writes, from the repository's root (``CARGO_TARGET_DIR`` moves it).
DOC_DIR = Path(os.environ.get("CARGO_TARGET_DIR", "target")) / "doc"


def on_files(files: Files, config: MkDocsConfig, **kwargs: Any) -> Files:
    root = Path(config.config_file_path).parent
    doc = (root / DOC_DIR).resolve()
    missing = [crate for crate in CRATES if not (doc / crate / "index.html").is_file()]
    if missing:
        raise PluginError(
            f"no cargo doc output for {', '.join(missing)} in {doc}: run scripts/docs "
            "(cargo doc --no-deps -p signalroom-core -p signalroom-client -p signalroom-server)"
        )
    # Other crates' pages (a `cargo doc` without --no-deps) are left out: a directory with an
    # index.html at the top is a crate's.
    others = {d.name for d in doc.iterdir() if (d / "index.html").is_file() and d.name not in CRATES}
    for path in sorted(doc.rglob("*")):
        relative = path.relative_to(doc).as_posix()
        if not path.is_file() or relative.split("/", 1)[0] in others:
            continue
        files.append(File.generated(config, f"rust/{relative}", abs_src_path=str(path)))
    # The cluster's page includes deploy/README.md, which links to the files beside it.
    for path in sorted((root / "deploy").iterdir()):
        if path.is_file() and path.name != "README.md":
            files.append(File.generated(config, f"server/{path.name}", abs_src_path=str(path)))
    return files
