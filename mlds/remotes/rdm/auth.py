"""Personal access token lookup and ``check`` for GakuNin RDM remotes.

Order: explicit token → env ``MLDS_RDM_TOKEN`` → ``RDM_TOKEN`` → ``OSF_TOKEN`` → token
file (``MLDS_RDM_TOKEN_FILE`` or ``~/.config/mlds/rdm-token``), which must not be
readable by group or others.  The token never appears in a message, log or repr.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from mlds.errors import AuthError

from .client import DEFAULT_API_URL, RDMClient, check_guid

TOKEN_ENV_VARS = ("MLDS_RDM_TOKEN", "RDM_TOKEN", "OSF_TOKEN")
TOKEN_FILE_ENV = "MLDS_RDM_TOKEN_FILE"
API_URL_ENV = "MLDS_RDM_API_URL"


def default_token_file() -> Path:
    return Path(os.path.expanduser("~")) / ".config" / "mlds" / "rdm-token"


def token_file_path(env=None) -> Path:
    env = os.environ if env is None else env
    p = env.get(TOKEN_FILE_ENV)
    return Path(os.path.expanduser(p)) if p else default_token_file()


def read_token_file(path: str | os.PathLike) -> str | None:
    """The token in ``path``; ``None`` if the file does not exist.  Refuses a file that
    group or others can read (or write)."""
    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    if os.name == "posix" and st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise AuthError("rdm", f"token file {path} is accessible by other users "
                               f"(mode {stat.S_IMODE(st.st_mode):o}); run: chmod 600 {path}")
    token = path.read_text(encoding="utf-8").strip()
    if not token:
        raise AuthError("rdm", f"token file {path} is empty")
    if any(c.isspace() for c in token):
        raise AuthError("rdm", f"token file {path} must hold only the token")
    return token


def resolve_token(token: str | None = None, env=None) -> str | None:
    """Find the token; ``None`` means anonymous (public projects only)."""
    if token:
        return token
    env = os.environ if env is None else env
    for var in TOKEN_ENV_VARS:
        v = (env.get(var) or "").strip()
        if v:
            return v
    return read_token_file(token_file_path(env))


def resolve_api_url(api_url: str | None = None, env=None) -> str:
    env = os.environ if env is None else env
    return api_url or env.get(API_URL_ENV) or DEFAULT_API_URL


@dataclass
class CheckResult:
    user_id: str
    user_name: str
    project_id: str | None = None
    project_title: str | None = None
    permission: str | None = None  # admin | write | read | None
    providers: list = field(default_factory=list)
    default_provider: str | None = None
    quota_used: int | None = None  # from the web app's quota endpoint; None when not reported
    quota_max: int | None = None

    def lines(self) -> list[str]:
        out = [f"user: {self.user_name} ({self.user_id})"]
        if self.project_id:
            out.append(f"project: {self.project_title} ({self.project_id})")
            out.append(f"permission: {self.permission or 'none'}")
            out.append(f"storage: {', '.join(self.providers) or 'none'} (default {self.default_provider})")
        if self.quota_used is not None and self.quota_max is not None:
            out.append(f"quota: {self.quota_used} of {self.quota_max} bytes used "
                       f"({max(0, self.quota_max - self.quota_used)} free)")
        elif self.project_id:
            out.append("quota: not reported (GakuNin's per-project quota endpoint takes a web login, "
                       "not a personal access token)")
        else:
            out.append("quota: not reported")
        return out


def check(project: str | None = None, *, token: str | None = None, api_url: str | None = None,
          client: RDMClient | None = None, **client_kw) -> CheckResult:
    """Who am I, and what may I do on ``project`` (a guid or ``rdm://guid/...`` URL)."""
    own = client is None
    if own:
        tok = resolve_token(token)
        if tok is None:
            raise AuthError("rdm", f"no token: set MLDS_RDM_TOKEN or write it to {token_file_path()} (chmod 600)")
        client = RDMClient(tok, resolve_api_url(api_url), **client_kw)
    try:
        me = client.me()
        res = CheckResult(me.id, me.full_name)
        if project:
            guid = project.split("://", 1)[-1].strip("/").split("/")[0]
            check_guid(guid)
            proj = client.project(guid)
            provs = client.providers(guid)
            res.project_id, res.project_title, res.permission = proj.id, proj.title, proj.permission
            res.providers = [p.name for p in provs]
            res.default_provider = client.pick_provider(provs).name if provs else None
            quota = client.creator_quota(proj)
            if quota is not None:
                res.quota_used, res.quota_max = quota["used"], quota["max"]
        return res
    finally:
        if own:
            client.close()
