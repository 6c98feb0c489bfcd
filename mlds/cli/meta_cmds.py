"""`mlds meta show|set`: read and edit the metadata a tier policy checks (license, authors, settings, ...)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, List, Optional

import typer
from rich.markup import escape

from mlds.cli.app import app, console
from mlds.cli.convert_cmds import Author, Description, License, MetaFile, Name

meta_app = typer.Typer(help="Show or change a dataset's metadata (a store dataset gets a new version).",
                       no_args_is_help=False)
app.add_typer(meta_app, name="meta")

Target = Annotated[str, typer.Argument(help="Store dataset NAME[@TAG] or a dataset file.", show_default=False)]


@meta_app.command("show")
def meta_show(
    target: Target,
    as_json: bool = typer.Option(False, "--json", help="Print the whole metadata as JSON (provenance included)."),
) -> None:
    """Print the metadata, then what the group and public tiers still need and the command that adds it."""
    from mlds.meta import missing_by_tier, read_metadata

    meta = read_metadata(target)
    if as_json:
        console.print_json(json.dumps(meta, default=str))
        return
    shown = {k: v for k, v in meta.items() if k not in ("sources", "units")}
    console.print_json(json.dumps(shown, default=str))
    sources = meta.get("sources") or []
    console.print(f"provenance: {len(sources)} source file(s), {sum(s.get('frames_kept', 0) for s in sources)} frames "
                  "kept (--json shows them)", highlight=False)
    name = target if not Path(target).exists() else "FILE"
    for tier, lines in missing_by_tier(meta, os.fspath(name).split("@")[0]).items():
        if not lines:
            console.print(f"[green]{tier} tier: nothing missing[/]")
            continue
        console.print(f"[yellow]{tier} tier needs:[/]")
        for line in lines:
            console.print(f"  {escape(line)}", highlight=False, soft_wrap=True)


@meta_app.command("set")
def meta_set(
    target: Target,
    assignments: Annotated[Optional[List[str]], typer.Argument(
        help="KEY=VALUE edits (VALUE is JSON when it parses), e.g. calculations.0.plane_wave_cutoff_eV=520.",
        show_default=False)] = None,
    name: Name = None, license: License = None, author: Author = None, description: Description = None,
    meta: MetaFile = None,
    unset: Annotated[Optional[List[str]], typer.Option("--unset", help="Remove a key, e.g. keywords (repeatable).")] = None,
    message: Annotated[str, typer.Option("-m", "--message", help="Version message (store datasets).")] = "",
) -> None:
    """Change metadata: a store dataset gets a new version (shards reused); a file is rewritten in place."""
    from mlds import meta as meta_mod

    changes = meta_mod.from_options(meta_file=meta, name=name, license=license, authors=author or (),
                                    description=description)
    if not changes and not assignments and not unset:
        from mlds.errors import MldsError

        raise MldsError("nothing to change: give --license, --author, --description, --name, --meta FILE "
                        "or KEY=VALUE")
    r = meta_mod.set_metadata(target, changes, assignments or (), unset or (), message=message)
    if r["unchanged"]:
        console.print(f"{target}: metadata already as given; nothing changed", highlight=False)
    elif "version" in r:
        console.print(f"{r['target']}@v{r['version']}: metadata updated ({', '.join(r['changed'])})", highlight=False)
    else:
        console.print(f"{target}: metadata updated ({', '.join(r['changed'])})", highlight=False)
