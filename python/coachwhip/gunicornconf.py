"""A gunicorn.conf.py is never read (it is Python, run at startup), but never silently ignored
either: its simple settings are translated into coachwhip flags for the message."""

from __future__ import annotations

import ast
from pathlib import Path

# gunicorn's setting names -> coachwhip's flags (gunicorn's docs, "Settings")
SETTINGS = {
    "workers": "--workers",
    "bind": "--bind",
    "threads": "--threads",
    "timeout": "--timeout-worker-healthcheck",
    "graceful_timeout": "--timeout-graceful-shutdown",
    "keepalive": "--timeout-keep-alive",
    "max_requests": "--max-requests",
    "max_requests_jitter": "--max-requests-jitter",
    "backlog": "--backlog",
    "accesslog": "--access-logfile",
    "errorlog": "--error-logfile",
    "loglevel": "--log-level",
    "reload": "--reload",
    "reuse_port": "--reuse-port",
    "forwarded_allow_ips": "--forwarded-allow-ips",
    "limit_request_line": "--limit-request-line",
    "limit_request_fields": "--limit-request-fields",
    "certfile": "--ssl-certfile",
    "keyfile": "--ssl-keyfile",
    "ca_certs": "--ssl-ca-certs",
    "cert_reqs": "--ssl-cert-reqs",
    "ciphers": "--ssl-ciphers",
    "chdir": "--chdir",
    "worker_connections": "--max-connections",
    "root_path": "--root-path",
    "proxy_protocol": "--proxy-protocol",
    "raw_env": "-e",
}
_NO_EFFECT = {"worker_class", "preload_app", "proc_name", "wsgi_app"}
_EXAMPLE = "workers = 4 -> --workers 4, or workers = 4 under [tool.coachwhip] in pyproject.toml"


def translate(path: Path) -> str:
    """'workers = 4 -> --workers 4; ...' for the file's top-level settings (at most 6)."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8", errors="replace"))
    except (OSError, SyntaxError, ValueError):
        return _EXAMPLE
    said: list[str] = []
    other: list[str] = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            other.append(node.name)  # a server hook (post_fork, on_starting, ...)
            continue
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1):
            continue
        target = node.targets[0]
        if not isinstance(target, ast.Name) or target.id.startswith("_"):
            continue
        name = target.id
        flag = SETTINGS.get(name)
        if name == "wsgi_app":
            said.append("wsgi_app -> the MODULE:ATTRIBUTE argument")
        elif flag is None:
            if name not in _NO_EFFECT:
                other.append(name)
        else:
            said.append(f"{name} = {ast.unparse(node.value)} -> {_flag(flag, node.value)}")
    if not said and not other:
        return _EXAMPLE
    text = "; ".join(said[:6]) + ("; ..." if len(said) > 6 else "")
    if other:
        text += ("; " if text else "") + "no equivalent: " + ", ".join(other[:6])
    return text


def _flag(flag: str, value: ast.expr) -> str:
    try:
        literal = ast.literal_eval(value)
    except (ValueError, TypeError, SyntaxError):
        return f"{flag} N"
    if literal is True:
        return flag
    if literal is False:
        return f"--no-{flag[2:]}" if flag.startswith("--") else "(nothing)"
    if isinstance(literal, (list, tuple)):
        return " ".join(f"{flag} {item}" for item in literal)
    return f"{flag} {literal}"


def message(path: Path) -> str:
    """The one line said about a gunicorn.conf.py."""
    return (
        f"coachwhip does not read {path.name} (gunicorn's Python config): put its settings on "
        f"the command line or under [tool.coachwhip] in pyproject.toml ({translate(path)})"
    )
