"""Store commands: init, add, log, tag, checkout, fsck, gc, ls, search, push, pull, clone, promote.

Thin wrappers over :mod:`mlds.store`: parse arguments, call the library, print.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from mlds.cli.app import app, console, err_console, print_error


def _size(n: int | float | None) -> str:
    if n is None:
        return "-"
    n = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def _progress() -> bool:
    return sys.stderr.isatty()


RemoteOpt = typer.Option(None, "--remote", "-r", help="Remote name or URL (instead of the positional argument).")


def _one_remote(positional: str | None, option: str | None) -> str | None:
    if positional and option and positional != option:
        from mlds.errors import MldsError

        raise MldsError(f"two remotes given ({positional!r} and -r {option!r}); give one")
    return positional or option


def _reachable(remote: str) -> None:
    """Probe a network remote first, saying so while retrying (a dead server otherwise looks like a hang)."""
    from mlds.remotes import config as cfg
    from mlds.remotes.reach import wait_until_reachable
    from mlds.store.api import _looks_like_location

    if _looks_like_location(remote):
        if "://" not in remote:
            return
        r = cfg.Remote(name=remote, url=remote)
    else:
        r = cfg.get_remote(remote)
    wait_until_reachable(r, on_retry=lambda msg: print_error(msg, label="retrying"))


def _sync_remote(verb: str, ref: str, positional: str | None, option: str | None) -> str:
    """The remote for push/pull: given, or the default one; arguments in the wrong order get a hint."""
    from mlds.errors import MldsError
    from mlds.remotes import config as cfg
    from mlds.store.api import _looks_like_location

    given = _one_remote(positional, option)
    names = {r.name for r in cfg.list_remotes()}
    ref_name = ref.split("@", 1)[0]
    if ref_name in names and not _is_local_dataset(ref_name):
        if given and given not in names and not _looks_like_location(given):
            raise MldsError(f"{ref_name!r} is a remote and {given!r} is not: the dataset comes first: "
                            f"mlds {verb} {given} {ref_name}")
        if not given:
            raise MldsError(f"{ref_name!r} is a remote, not a dataset; say which dataset: mlds {verb} DATASET {ref_name}")
    remote = cfg.resolve_remote_name(given)
    _reachable(remote)
    return remote


def _is_local_dataset(name: str) -> bool:
    from mlds.store.local import local_store

    try:
        st = local_store(create=False)
        return st.exists() and name in st.list_datasets()
    except Exception:  # noqa: BLE001 - only a hint depends on it
        return False


@app.command("init")
def init_cmd(
    path: Optional[str] = typer.Argument(None, help="Where to create the store (default ./.mlds/store); a path, URL or remote name."),
    personal: bool = typer.Option(False, "--personal", help="Create the personal store in the user data directory."),
    tier: str = typer.Option("personal", "--tier", help="Tier of the new store: personal, group or public."),
) -> None:
    """Create a store (a project store in ./.mlds/store by default)."""
    from mlds import store

    st = store.init(path, personal=personal, tier=tier)
    console.print(f"initialised store at {st.url} (tier {st.tier})", highlight=False)


@app.command("add")
def add_cmd(
    source: str = typer.Argument(..., help="An mlds dataset file, NAME@TAG from the store, or any file mlds reads."),
    dataset: str = typer.Option(..., "-d", "--dataset", help="Dataset name in the store."),
    message: str = typer.Option("", "-m", "--message", help="What changed."),
    shard_frames: Optional[int] = typer.Option(None, "--shard-frames", help="Maximum frames per shard."),
    append: bool = typer.Option(False, "--append", "-a", help="New version = every frame of the latest version + SOURCE's (shards reused)."),
    dedupe: bool = typer.Option(True, "--dedupe/--keep-duplicates", help="Skip frames already stored (same frame hash) and count them."),
) -> None:
    """Make a new version of DATASET from SOURCE (unchanged shards are reused); --append adds to the latest."""
    from mlds import store

    r = store.add(source, dataset, message, append=append, dedupe=dedupe, shard_max_frames=shard_frames)
    dup = r.get("duplicates_skipped")
    if r["unchanged"]:
        console.print(f"{dataset}: nothing changed (still v{r['version']})"
                      + (f"; {dup} duplicate frame(s) skipped" if dup else ""), highlight=False)
        return
    added = r.get("n_frames_added")
    console.print(f"{dataset}@v{r['version']} {r['manifest'][:12]}: "
                  + (f"{added} frame(s) added, " if added is not None else "")
                  + (f"{dup} duplicate frame(s) skipped, " if dup else "")
                  + f"{r['new_shards']} new shard(s) ({_size(r['new_bytes'])}), {r['reused_shards']} reused",
                  highlight=False, soft_wrap=True)


@app.command("log")
def log_cmd(ref: str = typer.Argument(..., help="NAME[@TAG]")) -> None:
    """Show the versions of a dataset, newest first."""
    from mlds import store

    for e in store.log(ref):
        if e.get("missing"):
            console.print(f"[yellow]{e['manifest'][:12]}[/] (not in this store)")
            continue
        tags = f" ({', '.join(e['tags'])})" if e["tags"] else ""
        console.print(f"[yellow]v{e['version']}[/] {e['manifest'][:12]}{tags}  {e['created']}  {e['author']}", highlight=False)
        console.print(f"    {e['n_frames']} frames, {e['shards']} shard(s), {_size(e['size'])}  {e['message']}", highlight=False)


@app.command("tag")
def tag_cmd(
    ref: str = typer.Argument(..., help="NAME@VERSION (e.g. si@v3)"),
    new_tag: str = typer.Argument(..., help="Tag to create"),
    force: bool = typer.Option(False, "--force", help="Move the tag if it exists."),
) -> None:
    """Give a version a name."""
    from mlds import store

    h = store.tag(ref, new_tag, force=force)
    console.print(f"{ref.split('@')[0]}@{new_tag} -> {h[:12]}", highlight=False)


@app.command("checkout")
def checkout_cmd(
    ref: str = typer.Argument(..., help="NAME[@TAG]"),
    output: Path = typer.Option(..., "-o", "--output", help="Output file: .h5, .zarr or .zarr.zip"),
    force: bool = typer.Option(False, "--force", "-f", help="Replace an existing output file."),
) -> None:
    """Write a version as one self-contained dataset file."""
    from mlds import store
    from mlds.convert import check_output

    check_output(output, "mlds", force=force)
    out = store.checkout(ref, output)
    console.print(f"wrote {out}", highlight=False)


@app.command("fsck")
def fsck_cmd(remote: Optional[str] = typer.Argument(None, help="Remote name or URL (default: the local store)."),
             remote_opt: Optional[str] = RemoteOpt) -> None:
    """Verify every object's sha256 and every version; exit non-zero if anything is bad."""
    from mlds import store

    remote = _one_remote(remote, remote_opt)
    if remote:
        _reachable(remote)
    r = store.fsck(remote)
    for key, why in r["bad"]:
        err_console.print(f"[red]bad[/] {key}: {why}", highlight=False, soft_wrap=True)
    if r["bad"]:
        from mlds.errors import IntegrityError

        # an MldsError (not typer.Exit) so the exit status is non-zero through mlds.cli.run as well
        raise IntegrityError(f"{r['store']}: {len(r['bad'])} problem(s) in {r['objects']} objects")
    console.print(f"{r['store']}: {r['objects']} objects OK", highlight=False)


@app.command("gc")
def gc_cmd(
    remote: Optional[str] = typer.Argument(None, help="Remote name or URL (default: the local store)."),
    remote_opt: Optional[str] = RemoteOpt,
    grace: Optional[float] = typer.Option(None, "--grace", help="Keep unreferenced objects younger than this many seconds (default 3600)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Only report what would be removed."),
) -> None:
    """Remove objects no version references (older than the grace period)."""
    from mlds import store

    remote = _one_remote(remote, remote_opt)
    if remote:
        _reachable(remote)
    r = store.gc(remote, grace_seconds=grace, dry_run=dry_run)
    verb = "would remove" if dry_run else "removed"
    console.print(f"{verb} {len(r['removed'])} object(s), {_size(r['freed'])}; kept {r['kept_recent']} recent unreferenced", highlight=False)


@app.command("ls")
def ls_cmd(remote: Optional[str] = typer.Argument(None, help="Remote name or URL (default: the local store)."),
           remote_opt: Optional[str] = RemoteOpt) -> None:
    """List datasets and their versions (of the local store, or of a remote)."""
    from rich.table import Table
    from mlds import store

    remote = _one_remote(remote, remote_opt)
    if remote:
        _reachable(remote)
    rows = store.ls(remote)
    t = Table("dataset", "latest", "tags", "frames", "elements", "size")
    for r in rows:
        tags = ", ".join(sorted(r["refs"], key=lambda x: (x != "latest", len(x), x)))
        t.add_row(r["dataset"], f"v{r.get('version', '?')}", tags, str(r.get("nframes", "-")),
                  " ".join(r.get("elements", [])), _size(r.get("size")))
    console.print(t)


@app.command("search")
def search_cmd(
    query: str = typer.Argument(..., help='Filter, e.g. \'elements HAS ALL "Si","O" AND nelements<=3\''),
    remote: Optional[list[str]] = typer.Option(None, "--remote", "-r", help="Search this remote (repeatable)."),
    all_remotes: bool = typer.Option(False, "--all", help="Search the local store and every configured remote."),
) -> None:
    """Find datasets and potentials by elements, code, functional, size (OPTIMADE-like filter)."""
    from rich.table import Table
    from mlds import store

    targets: list = list(remote or [])
    if all_remotes:
        from mlds.remotes.config import list_remotes

        targets = [None] + [r.name for r in list_remotes()]
    for t in targets:
        if t:
            _reachable(t)
    hits = store.search(query, targets or None)
    # code/functional columns only when some hit records them: a narrow terminal keeps the rest readable
    extra = [(k, c) for k, c in (("codes", "code"), ("functionals", "functional")) if any(h.get(k) for h in hits)]
    t = Table()
    for col in ("remote", "name", "kind", "version", "frames", "elements", *(c for _, c in extra), "size"):
        t.add_column(col, no_wrap=col != "elements", min_width=len(col))
    for h in hits:
        kind = h.get("kind", "dataset")
        frames = str(h.get("nframes")) if kind == "dataset" else "-"  # a potential has files, not frames
        t.add_row(h["remote"], h["dataset"], kind, f"v{h.get('version')}", frames, " ".join(h.get("elements", [])),
                  *(",".join(h.get(k, [])) for k, _ in extra), _size(h.get("size")))
    console.print(t)
    if not hits:
        err_console.print("no matching datasets")


def _report_sync(verb: str, r: dict) -> None:
    console.print(f"{verb} {r.get('dataset', '')} {r.get('remote', '')}: {r['sent_objects']} object(s), "
                  f"{_size(r['sent_bytes'])} transferred, {r['objects'] - r['sent_objects']} already there"
                  + (f"; tags {', '.join(r['tags'])}" if r.get("tags") else ""), highlight=False, soft_wrap=True)


@app.command("push")
def push_cmd(
    ref: str = typer.Argument(..., help="NAME[@TAG] (default tag: latest)"),
    remote: Optional[str] = typer.Argument(None, help="Remote name or URL (default: the default remote)."),
    remote_opt: Optional[str] = RemoteOpt,
) -> None:
    """Send a version to a remote (only missing objects; the ref is written last)."""
    from mlds import store

    target = _sync_remote("push", ref, remote, remote_opt)
    _report_sync("pushed", store.push(ref, target, progress=_progress()))


@app.command("pull")
def pull_cmd(
    ref: str = typer.Argument(..., help="NAME[@TAG] (default: every tag)"),
    remote: Optional[str] = typer.Argument(None, help="Remote name or URL (default: the default remote)."),
    remote_opt: Optional[str] = RemoteOpt,
    force: bool = typer.Option(False, "--force", help="Let the remote's tags replace diverged local ones (manifests are kept)."),
) -> None:
    """Fetch a dataset from a remote, verifying every byte."""
    from mlds import store

    target = _sync_remote("pull", ref, remote, remote_opt)
    _report_sync("pulled", store.pull(ref, target, force=force, progress=_progress()))


@app.command("clone")
def clone_cmd(
    remote: Optional[str] = typer.Argument(None, help="Remote name or URL (default: the default remote)."),
    dest: Optional[str] = typer.Argument(None, help="Destination store path/URL (default: the local store)."),
    remote_opt: Optional[str] = RemoteOpt,
    dataset: Optional[list[str]] = typer.Option(None, "--dataset", "-d", help="Only these datasets."),
) -> None:
    """Copy every dataset of a remote."""
    from mlds import store
    from mlds.remotes.config import resolve_remote_name

    remote = resolve_remote_name(_one_remote(remote, remote_opt))
    _reachable(remote)
    r = store.clone(remote, dest, dataset or None, progress=_progress())
    console.print(f"cloned {len(r['datasets'])} dataset(s): {r['sent_objects']} object(s), {_size(r['sent_bytes'])}", highlight=False)


@app.command("promote")
def promote_cmd(
    ref: str = typer.Argument(..., help="NAME@TAG"),
    to: str = typer.Option(..., "--to", help="Remote of a higher tier (group or public)."),
    check: bool = typer.Option(False, "--check", help="Only check the policy; copy nothing."),
) -> None:
    """Check the target tier's policy (listing everything missing and how to fix it), then copy the version."""
    from mlds import store
    from mlds.errors import PolicyError
    from mlds.meta import with_hints

    _reachable(to)
    problems = store.check_promotion(ref, to)
    if problems:
        raise PolicyError(f"{ref} cannot be promoted to {to}; missing or invalid:\n  "
                          + "\n  ".join(with_hints(problems, ref.split("@")[0])))
    if check:
        console.print(f"{ref} meets the policy of {to}", highlight=False)
        return
    _report_sync("promoted", store.promote(ref, to, progress=_progress()))
