"""`mlds import`, `mlds convert`, `mlds export`: one pipeline (:func:`mlds.convert.convert`), three names.

``import`` makes an mlds dataset; ``convert`` and ``export`` write any format
(chosen by the output's name, or ``--to``).  All three take the same inputs
(files, folders, globs, mlds datasets, store versions NAME@TAG) and the same
options, so what works on one works on the others.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from mlds.cli.app import app, console, err_console, print_error

# -- the options every pipeline command shares -------------------------------------------------
Inputs = Annotated[list[str], typer.Argument(
    help="Input files, folders, glob patterns, mlds datasets (.h5/.zarr/.zarr.zip) or store versions NAME[@TAG].",
    show_default=False)]
Output = Annotated[Path, typer.Option("-o", "--output", show_default=False,
                                      help="Output; its name gives the format: .h5/.zarr/.zarr.zip (mlds), "
                                           ".xyz/.extxyz (extxyz), input.data (n2p2); a folder with --to aenet.")]
To = Annotated[Optional[str], typer.Option("--to", help="Output format (mlds, extxyz, n2p2, aenet) when the name does not say it; "
                                                        "a contradiction with the name is an error.")]
From = Annotated[Optional[str], typer.Option("--from", help="Input format (detected from content when omitted).")]
Force = Annotated[bool, typer.Option("--force", "-f", help="Replace an existing output file (a folder's other files are never touched).")]
Units = Annotated[Optional[str], typer.Option("--units", help="n2p2 units preset, reading and writing: angstrom-ev or bohr-hartree.")]
LengthUnit = Annotated[Optional[str], typer.Option("--length-unit", help="n2p2 length unit: angstrom or bohr (with --energy-unit).")]
EnergyUnit = Annotated[Optional[str], typer.Option("--energy-unit", help="n2p2 energy unit: eV or hartree (with --length-unit).")]
KeepUnconverged = Annotated[bool, typer.Option("--keep-unconverged", help="Keep SCF-unconverged steps, flagged, instead of dropping them.")]
KeepDuplicates = Annotated[bool, typer.Option("--keep-duplicates", help="Keep frames identical to one already read (default: keep the first, count the rest).")]
TestFraction = Annotated[Optional[float], typer.Option("--test-fraction", help="Tag this fraction of frames set=test, the rest set=train (kept in datasets, n2p2 and extxyz).")]
Seed = Annotated[int, typer.Option("--seed", help="Random seed for --test-fraction.")]
Frames = Annotated[Optional[str], typer.Option("--frames", help="Keep only these frames, counted over all inputs from 0: e.g. 0:100,150,200:400:2.")]
Elements = Annotated[Optional[str], typer.Option("--elements", help="Keep only frames made of these elements, e.g. Si,O.")]
Label = Annotated[Optional[list[str]], typer.Option("--label", help="Keep only frames with this label, e.g. set=test or config_type=bulk "
                                                               "(after --test-fraction tagging; repeatable).")]
Name = Annotated[Optional[str], typer.Option("--name", help="Dataset name (metadata).")]
License = Annotated[Optional[str], typer.Option("--license", help="SPDX license of the data, e.g. CC-BY-4.0.")]
Author = Annotated[Optional[list[str]], typer.Option("--author", help="An author, 'Name <email> (ORCID)' (repeatable).")]
Description = Annotated[Optional[str], typer.Option("--description", help="What the data are.")]
MetaFile = Annotated[Optional[Path], typer.Option("--meta", help="JSON file of metadata keys (license, authors, calculations, ...).")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or summary table.")]

MAX_ROWS = 40


def unit_options(units: str | None, length_unit: str | None, energy_unit: str | None) -> dict:
    """n2p2 unit options: a preset, or independent length and energy units."""
    out: dict = {}
    if units:
        out["units"] = units
    if length_unit:
        out["length_unit"] = length_unit
    if energy_unit:
        out["energy_unit"] = energy_unit
    return out


def run_pipeline(*, inputs: list[str], output: Path, command: str, to: str | None = None,
                 from_fmt: str | None = None, force: bool = False, units: str | None = None,
                 length_unit: str | None = None, energy_unit: str | None = None, keep_unconverged: bool = False,
                 keep_duplicates: bool = False, test_fraction: float | None = None, seed: int = 0,
                 frames: str | None = None, elements: str | None = None, label: list[str] | None = None,
                 name: str | None = None, license: str | None = None, author: list[str] | None = None,
                 description: str | None = None, meta: Path | None = None, quiet: bool = False) -> None:
    """The three commands' shared body: parse the options, run :func:`mlds.convert.convert`, print the summary."""
    from mlds import meta as meta_mod
    from mlds.convert import EmptyOutputError, Selection, convert, output_format
    from mlds.errors import FormatError

    fmt = output_format(output, to)
    if command == "import" and fmt != "mlds":
        raise FormatError(output, f"'mlds import' makes an mlds dataset (.h5, .zarr, .zarr.zip); "
                          f"to write {fmt}, use 'mlds convert' or 'mlds export'")
    metadata = meta_mod.from_options(meta_file=meta, name=name, license=license, authors=author or (),
                                     description=description)
    ropts = unit_options(units, length_unit, energy_unit)
    if keep_unconverged:
        ropts["keep_unconverged"] = True
    wopts = unit_options(units, length_unit, energy_unit) if fmt == "n2p2" else {}
    selection = Selection(frames=frames, elements=elements.split(",") if elements else None, labels=label)

    # rich.progress is imported only when a bar is shown (start-up of every quiet or piped run, issue 12)
    progress = None if quiet or not err_console.is_terminal else _progress_bar()
    state = {"frames": 0}
    with progress if progress is not None else contextlib.nullcontext():
        task = progress.add_task("reading", total=None, frames=0) if progress is not None else None

        def on_file(path: str, i: int, n: int, total: int | None) -> None:
            progress.update(task, total=n, completed=i, description=Path(path).name)

        def on_frame() -> None:
            state["frames"] += 1
            if state["frames"] % 50 == 0:
                progress.update(task, frames=state["frames"])

        try:
            result = convert(inputs, output, from_fmt=from_fmt, to_fmt=to, force=force, reader_options=ropts,
                             writer_options=wopts or None, metadata=metadata, selection=selection,
                             keep_duplicates=keep_duplicates, test_fraction=test_fraction, seed=seed,
                             on_file=on_file if progress is not None else None,
                             on_frame=on_frame if progress is not None else None)
        except EmptyOutputError as err:
            if progress is not None:
                progress.stop()
            if not quiet:
                _summary_table(err.result)
            raise
    if not quiet:
        _summary_table(result)
    _final_line(result)


def _progress_bar():
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[frames]} frames"),
        TimeElapsedColumn(), console=err_console, transient=True,
    )


def _summary_table(result) -> None:
    from rich.markup import escape
    from rich.table import Table

    table = Table(title="sources", show_edge=False, title_justify="left")
    for col in ("source", "format", "kept", "dropped", "notes"):
        table.add_column(col, overflow="fold")
    paths = [s.path for s in result.sources] + [p for p, _ in result.skipped_inputs]
    try:
        base = os.path.commonpath([os.path.abspath(p) for p in paths]) if len(paths) > 1 else ""
    except ValueError:
        base = ""
    if base and os.path.isfile(base):
        base = os.path.dirname(base)

    def shown(p: str) -> str:
        return os.path.relpath(os.path.abspath(p), base) if base else p

    rows = 0
    for s in result.sources:
        if rows >= MAX_ROWS:
            break
        notes = [f"[yellow]0 frames: {escape(s.empty_reason)}[/]"] if s.kept == 0 and s.empty_reason else []
        notes += [escape(w.replace(s.path + ": ", "")) for w in s.warnings[:3]
                  if not (s.empty_reason and s.empty_reason in w)]
        dropped = ", ".join(f"{k}: {v}" for k, v in s.dropped.items()) or "-"
        table.add_row(escape(shown(s.path)), s.format, str(s.kept), dropped, "; ".join(notes) or "-")
        rows += 1
    for path, why in result.skipped_inputs:
        if rows >= MAX_ROWS:
            break
        table.add_row(escape(shown(path)), "-", "-", "-", f"not read: {escape(why)}")
        rows += 1
    hidden = len(result.sources) + len(result.skipped_inputs) - rows
    if hidden > 0:
        table.add_row(f"… {hidden} more", "", "", "", "")
    console.print(table)
    # sources left empty by the selection or by duplicates are in the table; a warning is for ones that had nothing
    empty = [s for s in result.empty_sources if not s.dropped.get("not-selected") and not s.duplicates]
    if empty and result.n_frames:
        print_error(f"{len(empty)} source(s) gave no frame (see the table)", label="warning")


def _final_line(result) -> None:
    extras = []
    if result.duplicates:
        extras.append(f"{result.duplicates} duplicate(s) skipped")
    if result.not_selected:
        extras.append(f"{result.not_selected} not selected")
    dropped = sum(sum(v for k, v in s.dropped.items() if k not in ("duplicate", "not-selected")) for s in result.sources)
    if dropped:
        extras.append(f"{dropped} dropped by the readers")
    if result.skipped_inputs:
        extras.append(f"{len(result.skipped_inputs)} file(s) not read")
    if result.n_test:
        extras.append(f"{result.n_test} tagged set=test")
    tail = f" ({'; '.join(extras)})" if extras else ""
    line = f"wrote {result.n_frames} frames to {result.output} [{result.format}]{tail}"
    if line.isascii() and line.isprintable():  # what Rich prints for it, without importing Rich (issue 12)
        sys.stdout.write(line + "\n")
        sys.stdout.flush()
    else:  # a path is printed as it is (Rich drops control characters, expands tabs)
        console.print(line, soft_wrap=True, highlight=False, markup=False, emoji=False)


@app.command("import")
def import_cmd(
    inputs: Inputs, output: Output, from_fmt: From = None, force: Force = False,
    name: Name = None, license: License = None, author: Author = None, description: Description = None,
    meta: MetaFile = None, units: Units = None, length_unit: LengthUnit = None, energy_unit: EnergyUnit = None,
    keep_unconverged: KeepUnconverged = False, keep_duplicates: KeepDuplicates = False,
    test_fraction: TestFraction = None, seed: Seed = 0, frames: Frames = None, elements: Elements = None,
    label: Label = None, quiet: Quiet = False,
) -> None:
    """Make an mlds dataset from DFT outputs, training files, other datasets or store versions."""
    run_pipeline(command="import", **locals())


@app.command("convert")
def convert_cmd(
    inputs: Inputs, output: Output, to: To = None, from_fmt: From = None, force: Force = False,
    units: Units = None, length_unit: LengthUnit = None, energy_unit: EnergyUnit = None,
    keep_unconverged: KeepUnconverged = False, keep_duplicates: KeepDuplicates = False,
    test_fraction: TestFraction = None, seed: Seed = 0, frames: Frames = None, elements: Elements = None,
    label: Label = None, name: Name = None, license: License = None, author: Author = None,
    description: Description = None, meta: MetaFile = None, quiet: Quiet = False,
) -> None:
    """Convert between formats: any input mlds reads to mlds, extxyz, n2p2 or aenet."""
    run_pipeline(command="convert", **locals())


@app.command("export")
def export_cmd(
    inputs: Inputs, output: Output, to: To = None, force: Force = False,
    units: Units = None, length_unit: LengthUnit = None, energy_unit: EnergyUnit = None,
    keep_unconverged: KeepUnconverged = False, keep_duplicates: KeepDuplicates = False,
    test_fraction: TestFraction = None, seed: Seed = 0, frames: Frames = None, elements: Elements = None,
    label: Label = None, from_fmt: From = None, name: Name = None, license: License = None, author: Author = None,
    description: Description = None, meta: MetaFile = None, quiet: Quiet = False,
) -> None:
    """Write datasets (files or store versions NAME@TAG) out as extxyz, n2p2, aenet or another mlds file."""
    run_pipeline(command="export", **locals())
