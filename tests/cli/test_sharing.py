"""Finishing the sharing steps from the CLI: metadata, default remote, hints, a dead remote, store refs as inputs."""

from __future__ import annotations

import re
import socket
import tomllib

import ase.io

from mlds.demo import example_path
from tests.cli.conftest import no_traceback


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens there once the socket is closed


def test_metadata_remotes_and_hints(mlds_many, tmp_path):
    runs = mlds_many(
        ["init"],
        ["import", example_path("cu3au_emt.extxyz"), "-o", "cu.mlds.h5", "--name", "cu", "--license", "CC0-1.0",
         "--author", "Jane Doe <jane@example.org> (0000-0002-1825-0097)", "-q"],
        ["add", "cu.mlds.h5", "-d", "cu"],
        ["remote", "add", "group", "share/group", "--tier", "group", "--default"],
        ["remote", "add", "public", "share/public", "--tier", "public"],
        ["remote", "add", "dead", "s3://bucket/mlds", "-o", f"endpoint_url=http://127.0.0.1:{_closed_port()}",
         "-o", "connect_attempts=2"],
        # -- checks start here
        ["remote", "add", "group", "elsewhere"],
        ["push", "group", "cu"],
        ["push", "cu"],
        ["meta", "set", "cu", "--description", "EMT demo cells", "calculations.0.code=ASE-EMT",
         "calculations.0.method=empirical-potential", "calculations.0.code_version=3.29",
         "calculations.0.functional=EMT"],
        ["meta", "show", "cu"],
        ["push", "cu"],
        ["promote", "cu@v2", "--to", "public"],
        ["export", "cu@v2", "-o", "from-store.xyz", "-q"],
        ["push", "cu", "-r", "dead"],
        ["meta", "set", "cu", "--description", "EMT demo cells"],
        ["add", example_path("nial_emt.extxyz"), "-d", "cu", "--append"],
        ["add", example_path("cu3au_emt.extxyz"), "-d", "cu", "--append"],
        ["info", "cu"],
    )
    setup = runs[:6]
    again, swapped, refused, meta_set, shown, pushed, promoted, exported, dead, unchanged = runs[6:16]
    appended, nothing_new, info = runs[16:]
    assert all(r.code == 0 for r in setup), setup
    # remote add writes the project config (inside a project), with the default remote
    config = tomllib.loads((tmp_path / ".mlds" / "config.toml").read_text())
    assert set(config["remotes"]) == {"group", "public", "dead"} and config["core"]["remote"] == "group"
    assert again.code == 2 and "--force" in again.err and len(again.err_lines) == 1, again
    assert swapped.code == 2 and "mlds push cu group" in swapped.err and len(swapped.err_lines) == 1, swapped
    # the group tier refuses incomplete settings, naming the command that fixes each missing field
    assert refused.code == 2 and "metadata.calculations" in refused.err and "fix: mlds meta set cu" in refused.err
    assert meta_set.code == 0 and "cu@v2" in meta_set.out, meta_set
    assert "group tier: nothing missing" in shown.out and "public tier: nothing missing" in shown.out, shown
    assert pushed.code == 0 and "pushed cu group" in pushed.out, pushed      # the default remote, no -r
    assert promoted.code == 0 and "promoted cu public" in promoted.out, promoted
    assert exported.code == 0 and len(ase.io.read(tmp_path / "from-store.xyz", ":")) == 24, exported
    assert dead.code == 2 and no_traceback(dead), dead
    assert "retrying" in dead.err and "not answering" in dead.err and "after 2 attempts" in dead.err, dead
    assert unchanged.code == 0 and "nothing changed" in unchanged.out, unchanged
    # add --append: the latest frames + the new ones (shards reused); frames already stored are counted, not stored
    assert appended.code == 0 and "cu@v3" in appended.out and "16 frame(s) added" in appended.out, appended
    assert "1 reused" in appended.out
    assert nothing_new.code == 0 and "nothing changed" in nothing_new.out and "24 duplicate" in nothing_new.out
    assert info.code == 0 and re.search(r"frames\s+40 ", info.out) and re.search(r"duplicates\s+none", info.out), info


def test_ingest_push_remote_checked_first_and_a_store_that_is_a_file(mlds_many, tmp_path):
    from tests.ingest.conftest import make_run

    make_run(tmp_path / "runs", "run1", "h2o_pair")
    ingest = ["ingest", "runs", "-d", "w", "-j", "1", "--settle", "0"]
    (tmp_path / "afile").write_text("not a store\n")
    unknown, no_default, listed, remote_add, default_push, _, to_file, from_file = mlds_many(
        ["init"],
        [*ingest, "--push", "gruop"],
        [*ingest, "--push", ""],          # an empty value: the default remote, as `mlds push` without one
        ["ls"],
        ["remote", "add", "group", "share/group", "--tier", "group", "--default"],
        [*ingest, "--push", ""],
        ["remote", "add", "filed", "./afile"],
        ["push", "w", "filed"],
        ["pull", "w", "-r", "filed"],
    )[1:]
    # a typo in the remote fails before any run is read: nothing converted, nothing committed
    assert unknown.code == 2 and "no remote named 'gruop'" in unknown.err and len(unknown.err_lines) == 1, unknown
    assert no_default.code == 2 and "no default remote" in no_default.err and len(no_default.err_lines) == 1
    assert listed.code == 0 and "w" not in listed.out.split(), listed
    assert remote_add.code == 0 and default_push.code == 0, default_push
    assert "w: new version v1" in default_push.out and "pushed w" in default_push.out, default_push
    assert (tmp_path / "share" / "group" / "refs" / "w" / "v1").exists()
    # a remote or MLDS_STORE pointing at a file: one line, exit 2, for reads, writes and init alike
    runs = [to_file, from_file] + mlds_many(["ls"], ["log", "x"], ["add", example_path("cu3au_emt.extxyz"), "-d", "x"], ["init", "./afile"],
                     env={"MLDS_STORE": str(tmp_path / "afile")})
    for r in runs:
        assert r.code == 2 and no_traceback(r) and len(r.err_lines) == 1 and "is a file, not a store folder" in r.err, r
    assert (tmp_path / "afile").read_text() == "not a store\n"


def test_import_metadata_from_a_file_and_options(mlds_many, tmp_path):
    import json

    import mlds

    meta_file = example_path("cu3au_emt.meta.json")
    (tmp_path / "bad.json").write_text('{"license": 5}\n')
    (tmp_path / "broken.json").write_text('{"license": "CC0-1.0"\n')
    ok, shown, wrong_type, broken = mlds_many(
        ["import", example_path("cu3au_emt.extxyz"), "-o", "m.h5", "--meta", meta_file, "--description", "mine", "-q"],
        ["meta", "show", "m.h5"],
        ["import", example_path("cu3au_emt.extxyz"), "-o", "b.h5", "--meta", "bad.json"],
        ["import", example_path("cu3au_emt.extxyz"), "-o", "c.h5", "--meta", "broken.json"],
    )
    assert ok.code == 0 and shown.code == 0, (ok, shown)
    expected = json.loads(meta_file.read_text())
    with mlds.open(tmp_path / "m.h5") as ds:
        for key in ("license", "authors", "calculations"):
            assert ds.metadata[key] == expected[key]
        assert ds.metadata["description"] == "mine"      # an option beats the file
    assert "public tier: nothing missing" in shown.out, shown
    assert wrong_type.code == 2 and "metadata.license" in wrong_type.err and len(wrong_type.err_lines) == 1
    assert broken.code == 2 and "broken.json" in broken.err and "not valid JSON" in broken.err and len(broken.err_lines) == 1
    assert not (tmp_path / "b.h5").exists() and not (tmp_path / "c.h5").exists()
