"""Remote configuration, like git remotes, in a user and a project config file.

* user config: ``$MLDS_CONFIG_HOME/config.toml``, else the platform user config
  directory (``~/.config/mlds/config.toml`` on Linux);
* project config: ``.mlds/config.toml`` in the nearest directory, from the
  current directory upward, that holds a ``.mlds/`` directory (like git).  That
  ``.mlds/`` directory is also the project store's root; see
  :func:`find_project_root` / :func:`project_store_dir`.

A remote defined in the project config overrides one of the same name in the
user config.  File format::

    [remotes.origin]
    url = "s3://bucket/prefix"
    tier = "group"

    [remotes.origin.options]
    endpoint_url = "https://s3.example.ac.jp"
    profile = "lab"

Credentials are never written here: options that look like secrets (``key``,
``secret``, ``token``, ``password``...) and passwords inside URLs are refused.
Other top-level tables in the files are preserved when mlds rewrites them
(comments are not).
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable
from urllib.parse import urlsplit

import tomli_w

from mlds.errors import MldsError

TIERS = ("personal", "group", "public")
SCOPES = ("user", "project")
SCHEMES = ("file", "s3", "sftp", "http", "https", "rdm")
PROJECT_DIR_NAME = ".mlds"
CONFIG_FILE_NAME = "config.toml"

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")

CREDENTIAL_HELP = (
    "credentials come from the environment, never from mlds config: "
    "S3 uses the AWS chain (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or --option profile=NAME for an AWS profile); "
    "SFTP uses the ssh agent or a key (--option key_file=PATH), a password only from MLDS_SFTP_PASSWORD; "
    "GakuNin RDM uses its token environment variable or a token file readable only by you"
)

# Option names that would hold a secret.  Names ending in _file/_path/_env/
# _profile point to where a secret lives and are allowed.
_SECRET_EXACT = {"key", "secret", "token", "password", "passwd", "pass", "passphrase", "pwd"}
_SECRET_PARTS = ("secret", "password", "passwd", "passphrase", "token", "access_key", "credential", "private_key")
_SAFE_SUFFIXES = ("_file", "_path", "_env", "_profile", "_filename")


class ConfigError(MldsError):
    """A config file or a remote definition is invalid."""


@dataclass
class Remote:
    name: str
    url: str
    tier: str = "personal"
    options: dict[str, Any] = field(default_factory=dict)
    scope: str = "user"

    @property
    def scheme(self) -> str:
        return url_scheme(self.url)

    @property
    def display_url(self) -> str:
        return redact_url(self.url)

    @property
    def display_options(self) -> dict[str, Any]:
        """Options for display: user info in URL values replaced by ``***`` (a config written by hand
        or by an older mlds may hold some; new ones are refused by :func:`check_options`)."""
        return _redact_values(self.options)


# -- locations ----------------------------------------------------------------

def user_config_path() -> Path:
    home = os.environ.get("MLDS_CONFIG_HOME")
    if home:
        return Path(home).expanduser() / CONFIG_FILE_NAME
    import platformdirs

    return Path(platformdirs.user_config_dir("mlds", appauthor=False)) / CONFIG_FILE_NAME


def find_project_root(start: Path | str | None = None) -> Path | None:
    """The nearest directory, from ``start`` (default: cwd) upward, that
    contains a ``.mlds/`` directory; ``None`` outside any project.

    The project store's root is ``find_project_root(...) / ".mlds"``
    (:func:`project_store_dir`).
    """
    here = Path(start if start is not None else Path.cwd()).expanduser().resolve()
    if here.is_file():
        here = here.parent
    for candidate in (here, *here.parents):
        if (candidate / PROJECT_DIR_NAME).is_dir():
            return candidate
    return None


def project_store_dir(start: Path | str | None = None) -> Path | None:
    root = find_project_root(start)
    return None if root is None else root / PROJECT_DIR_NAME


def project_config_path(start: Path | str | None = None) -> Path | None:
    store = project_store_dir(start)
    return None if store is None else store / CONFIG_FILE_NAME


def config_path(scope: str, cwd: Path | str | None = None) -> Path:
    _check_scope(scope)
    if scope == "user":
        return user_config_path()
    path = project_config_path(cwd)
    if path is None:
        raise ConfigError(
            f"not inside an mlds project (no {PROJECT_DIR_NAME}/ directory in {Path(cwd or Path.cwd()).resolve()} "
            "or above); run 'mlds init' first or use --user"
        )
    return path


# -- validation ---------------------------------------------------------------

def url_scheme(url: str) -> str:
    """``file`` for plain paths, else the URL scheme (lower case)."""
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", url):
        return url.split("://", 1)[0].lower()
    return "file"


def redact_url(url: str) -> str:
    """The URL without any password in its user-info part."""
    if "://" not in url:
        return url
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    netloc = f"{user}:***@{netloc}" if user else f"***@{netloc}"
    return parts._replace(netloc=netloc).geturl()


def is_secret_option(name: str) -> bool:
    n = name.lower().replace("-", "_")
    if n.endswith(_SAFE_SUFFIXES):
        return False
    if n in _SECRET_EXACT or n.endswith("_key"):
        # "key", "aws_access_key", "api_key", ...  (key_file is allowed above)
        return True
    return any(part in n for part in _SECRET_PARTS)


_URL_USERINFO = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://([^/?#@]*)@")


def _credential_in_value(value: Any) -> bool:
    """A URL with user info (``http://user:SECRET@host``, ``https://TOKEN@host``) anywhere in an option value."""
    if isinstance(value, str):
        return bool(_URL_USERINFO.match(value.strip()))
    if isinstance(value, (list, tuple)):
        return any(_credential_in_value(v) for v in value)
    return False


def _redact_values(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _redact_values(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_redact_values(v) for v in value]
    if isinstance(value, str) and _URL_USERINFO.match(value.strip()):
        return _URL_USERINFO.sub(lambda m: m.group(0).replace(m.group(1), "***"), value.strip(), count=1)
    return value


def check_options(options: dict[str, Any], remote: str = "", _prefix: str = "") -> None:
    for key, value in options.items():
        if not isinstance(key, str) or not key:
            raise ConfigError(f"remote {remote!r}: option names must be non-empty strings")
        full = f"{_prefix}{key}"
        if is_secret_option(key):
            raise ConfigError(
                f"remote {remote!r}: refusing to store option {full!r}: it looks like a credential; {CREDENTIAL_HELP}"
            )
        if _credential_in_value(value):
            raise ConfigError(
                f"remote {remote!r}: refusing to store option {full!r}: its URL carries a user name or "
                f"password (user info before '@'); {CREDENTIAL_HELP}"
            )
        if isinstance(value, dict):
            check_options(value, remote, f"{full}.")


def validate_name(name: str) -> None:
    if not _NAME_RE.match(name or ""):
        raise ConfigError(
            f"invalid remote name {name!r}: use letters, digits, '.', '_' or '-' (max 64, starting with a letter or digit)"
        )


def normalize_url(name: str, url: str, base: Path | None = None) -> str:
    """Check a remote URL; plain and ``file://`` paths become absolute."""
    url = url.strip()
    if not url:
        raise ConfigError(f"remote {name!r}: empty URL")
    scheme = url_scheme(url)
    if scheme not in SCHEMES:
        raise ConfigError(
            f"remote {name!r}: unsupported URL scheme {scheme!r} (use a path, file://, s3://, sftp://, https://, http:// or rdm://)"
        )
    if scheme == "file":
        path = url[len("file://"):] if url.lower().startswith("file://") else url
        p = Path(path).expanduser()
        if not p.is_absolute():
            p = (base or Path.cwd()) / p
        return str(p.resolve())
    parts = urlsplit(url)
    if parts.password is not None:
        raise ConfigError(f"remote {name!r}: refusing a password inside the URL; {CREDENTIAL_HELP}")
    if scheme in ("rdm", "http", "https", "s3") and "@" in parts.netloc:
        # no user names on these: what sits before '@' is a token or key pasted into the URL
        raise ConfigError(f"remote {name!r}: refusing user info (a token?) inside the {scheme}:// URL; "
                          f"{CREDENTIAL_HELP}")
    if not parts.netloc:
        raise ConfigError(f"remote {name!r}: URL {redact_url(url)!r} has no host/bucket/project part")
    try:
        parts.port  # noqa: B018 - validates the port
    except ValueError:
        raise ConfigError(f"remote {name!r}: URL {url!r} has an invalid port") from None
    if parts.query or parts.fragment:
        raise ConfigError(f"remote {name!r}: URL {url!r} must not have a query or fragment")
    return url.rstrip("/") if parts.path not in ("", "/") else url


def _check_tier(tier: str) -> None:
    if tier not in TIERS:
        raise ConfigError(f"invalid tier {tier!r}: use one of {', '.join(TIERS)}")


def _check_scope(scope: str) -> None:
    if scope not in SCOPES:
        raise ConfigError(f"invalid scope {scope!r}: use 'user' or 'project'")


# -- reading ------------------------------------------------------------------

def read_config(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: invalid TOML: {err}") from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot read config: {err.strerror or err}") from None


def _remotes_in(path: Path | None, scope: str) -> dict[str, Remote]:
    if path is None:
        return {}
    data = read_config(path)
    table = data.get("remotes", {})
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: 'remotes' must be a table")
    out: dict[str, Remote] = {}
    for name, entry in table.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("url"), str):
            raise ConfigError(f"{path}: remote {name!r} needs a 'url' string")
        tier = entry.get("tier", "personal")
        if tier not in TIERS:
            raise ConfigError(f"{path}: remote {name!r} has invalid tier {tier!r} (use {', '.join(TIERS)})")
        options = entry.get("options", {})
        if not isinstance(options, dict):
            raise ConfigError(f"{path}: remote {name!r}: 'options' must be a table")
        out[name] = Remote(name=name, url=entry["url"], tier=tier, options=dict(options), scope=scope)
    return out


def list_remotes(cwd: Path | str | None = None) -> list[Remote]:
    """All remotes, sorted by name; a project remote hides a user one."""
    merged = _remotes_in(user_config_path(), "user")
    merged.update(_remotes_in(project_config_path(cwd), "project"))
    return [merged[k] for k in sorted(merged)]


def get_remote(name: str, cwd: Path | str | None = None) -> Remote:
    remotes = {r.name: r for r in list_remotes(cwd)}
    if name in remotes:
        return remotes[name]
    known = ", ".join(sorted(remotes)) or "none configured"
    raise ConfigError(f"no remote named {name!r} (known remotes: {known}); add one with 'mlds remote add NAME URL'")


# -- writing ------------------------------------------------------------------

def add_remote(
    name: str,
    url: str,
    tier: str = "personal",
    scope: str = "user",
    options: dict[str, Any] | None = None,
    *,
    replace: bool = False,
    cwd: Path | str | None = None,
) -> Remote:
    validate_name(name)
    _check_tier(tier)
    _check_scope(scope)
    options = dict(options or {})
    check_options(options, name)
    url = normalize_url(name, url, Path(cwd) if cwd else None)
    path = config_path(scope, cwd)
    data = read_config(path)
    remotes = data.setdefault("remotes", {})
    if name in remotes and not replace:
        raise ConfigError(f"remote {name!r} already exists in the {scope} config ({path}); "
                          "pass --force to replace it")
    entry: dict[str, Any] = {"url": url, "tier": tier}
    if options:
        entry["options"] = options
    remotes[name] = entry
    write_config(path, data)
    return Remote(name=name, url=url, tier=tier, options=options, scope=scope)


def remove_remote(name: str, scope: str | None = None, cwd: Path | str | None = None) -> list[str]:
    """Remove ``name`` from ``scope`` (default: every scope defining it).

    Returns the scopes it was removed from.
    """
    removed = remove_section_entry("remotes", name, scope=scope, cwd=cwd)
    for sc in removed:  # no default pointing at a removed remote
        path = config_path(sc, cwd)
        data = read_config(path)
        if data.get(DEFAULT_SECTION, {}).get(DEFAULT_KEY) == name:
            del data[DEFAULT_SECTION][DEFAULT_KEY]
            write_config(path, data)
    if not removed:
        known = ", ".join(r.name for r in list_remotes(cwd)) or "none configured"
        where = f"the {scope} config" if scope else "any config"
        raise ConfigError(f"no remote named {name!r} in {where} (known remotes: {known})")
    return removed


# -- the default remote (like DVC's core.remote): what push/pull use without -r ----------

DEFAULT_SECTION, DEFAULT_KEY = "core", "remote"


def default_remote(cwd: Path | str | None = None) -> str | None:
    """``[core] remote`` of the project config, else of the user config, else the only remote configured."""
    for path in (project_config_path(cwd), user_config_path()):
        if path is not None:
            name = read_config(path).get(DEFAULT_SECTION, {}).get(DEFAULT_KEY)
            if isinstance(name, str) and name:
                return name
    remotes = list_remotes(cwd)
    return remotes[0].name if len(remotes) == 1 else None


def set_default_remote(name: str, scope: str = "user", cwd: Path | str | None = None) -> Path:
    """Make ``name`` the default remote in the ``scope`` config; returns the file written."""
    get_remote(name, cwd)  # must exist
    path = config_path(scope, cwd)
    data = read_config(path)
    data.setdefault(DEFAULT_SECTION, {})[DEFAULT_KEY] = name
    write_config(path, data)
    return path


def resolve_remote_name(name: str | None, cwd: Path | str | None = None) -> str:
    """``name`` if given, else the default remote; one line saying how to set one otherwise."""
    if name:
        return name
    default = default_remote(cwd)
    if default:
        return default
    known = ", ".join(r.name for r in list_remotes(cwd)) or "none configured"
    raise ConfigError(f"no remote given and no default remote (known remotes: {known}); pass -r REMOTE, "
                      "or set a default with 'mlds remote default NAME' (or 'mlds remote add NAME URL --default')")


def write_config(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` as TOML atomically, keeping the file's permissions."""
    from mlds.util import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_text(tomli_w.dumps(data), encoding="utf-8")
        if path.exists():
            os.chmod(tmp, path.stat().st_mode & 0o777)

def parse_option_values(pairs: Iterable[str], remote: str = "") -> dict[str, Any]:
    """``["k=v", ...]`` from the command line to an options dict.

    ``true``/``false`` become booleans, integers become ints; dotted keys
    (``client_kwargs.region_name=x``) become nested tables.
    """
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"remote {remote!r}: options must be given as key=value")
        value: Any = raw
        low = raw.strip().lower()
        if low in ("true", "yes", "on"):
            value = True
        elif low in ("false", "no", "off"):
            value = False
        elif re.fullmatch(r"[+-]?\d+", raw.strip()):
            value = int(raw)
        target = out
        *parents, leaf = key.split(".")
        for p in parents:
            target = target.setdefault(p, {})
            if not isinstance(target, dict):
                raise ConfigError(f"remote {remote!r}: option {key!r} conflicts with another option")
        target[leaf] = value
    return out


# -- other sections (machines, ingest, ...) -----------------------------------
# A small generic API so other parts of mlds keep their settings in these same
# files (``[machines.NAME]``, ...) instead of a second config system.  The caller
# validates its own entries; this layer only merges scopes and writes TOML.

def section_entries(section: str, cwd: Path | str | None = None) -> dict[str, tuple[str, dict[str, Any]]]:
    """``{name: (scope, table)}`` of ``[section.NAME]`` tables; a project entry
    hides a user entry of the same name."""
    merged: dict[str, tuple[str, dict[str, Any]]] = {}
    for scope, path in (("user", user_config_path()), ("project", project_config_path(cwd))):
        if path is None:
            continue
        table = read_config(path).get(section, {})
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: '{section}' must be a table")
        for name, entry in table.items():
            if not isinstance(entry, dict):
                raise ConfigError(f"{path}: [{section}.{name}] must be a table")
            merged[name] = (scope, entry)
    return merged


def set_section_entry(
    section: str,
    name: str,
    entry: dict[str, Any],
    *,
    scope: str = "user",
    replace: bool = False,
    cwd: Path | str | None = None,
) -> Path:
    """Write ``[section.NAME]`` into the ``scope`` config; returns the file."""
    if not _NAME_RE.match(name or ""):
        raise ConfigError(
            f"invalid name {name!r}: use letters, digits, '.', '_' or '-' (max 64, starting with a letter or digit)"
        )
    path = config_path(scope, cwd)
    data = read_config(path)
    table = data.setdefault(section, {})
    if name in table and not replace:
        raise ConfigError(f"{section} entry {name!r} already exists in the {scope} config ({path}); use --force to replace it")
    table[name] = entry
    write_config(path, data)
    return path


def remove_section_entry(
    section: str, name: str, *, scope: str | None = None, cwd: Path | str | None = None
) -> list[str]:
    """Remove ``[section.NAME]`` from ``scope`` (default: every scope defining
    it); returns the scopes it was removed from (empty when it was nowhere)."""
    removed: list[str] = []
    for sc in SCOPES if scope is None else (scope,):
        _check_scope(sc)
        path = user_config_path() if sc == "user" else project_config_path(cwd)
        if path is None:
            if scope == "project":
                config_path("project", cwd)  # raises the "not in a project" error
            continue
        data = read_config(path)
        table = data.get(section, {})
        if isinstance(table, dict) and name in table:
            del table[name]
            if not table:
                del data[section]
            write_config(path, data)
            removed.append(sc)
    return removed
