"""The deployment examples in deploy/ (issue 10 §5) are real: HAProxy and nginx accept them
with their own config checks, the Kubernetes YAML and the systemd units parse, and every
coachwhip command line in them is accepted by coachwhip's own option parser."""

from __future__ import annotations

import configparser
import shlex
import subprocess
from pathlib import Path
from typing import Any

import yaml
from coachwhip.cli import build_parser
from coachwhip.config import Config
from proxies import find_binary

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def coachwhip_config(argv: list[str]) -> Config:
    """The Config a `coachwhip ...` command line in an example gives (argv without the
    program name); any unknown flag or bad value fails the test."""
    args = vars(build_parser().parse_args(argv))
    return Config.load(args, environ={})


def test_kubernetes_deployment_probes_and_grace_period() -> None:
    docs = list(yaml.safe_load_all((DEPLOY / "kubernetes.yaml").read_text()))
    deployment: dict[str, Any] = next(d for d in docs if d["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["args"][0] == "coachwhip"
    config = coachwhip_config(container["args"][1:])
    assert config.readiness and config.health and config.metrics
    assert container["readinessProbe"]["httpGet"]["path"] == "/-/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/-/health"
    assert "preStop" in container["lifecycle"]
    grace = pod["terminationGracePeriodSeconds"]
    assert grace > config.shutdown_delay + config.timeout_graceful_shutdown
    # the readiness probe notices within the delay
    probe = container["readinessProbe"]
    assert probe["periodSeconds"] * probe["failureThreshold"] < config.shutdown_delay


def test_haproxy_config_is_accepted_by_haproxy() -> None:
    haproxy = find_binary("haproxy", "haproxy")
    result = subprocess.run(
        [haproxy, "-c", "-f", str(DEPLOY / "haproxy.cfg")], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "option httpchk GET /-/ready" in (DEPLOY / "haproxy.cfg").read_text()


def test_nginx_config_is_accepted_by_nginx(tmp_path: Path) -> None:
    nginx = find_binary("nginx", "nginx-light")
    wrapper = tmp_path / "nginx.conf"
    wrapper.write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\n"
        "events {}\n"
        f"http {{\n access_log off;\n client_body_temp_path {tmp_path};\n"
        f" include {DEPLOY / 'nginx.conf'};\n}}\n"
    )
    result = subprocess.run(
        [nginx, "-t", "-c", str(wrapper), "-p", str(tmp_path)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys keep their case
    parser.read_string((DEPLOY / name).read_text())
    return parser


def test_systemd_units_parse_and_name_each_other() -> None:
    socket_text = (DEPLOY / "coachwhip.socket").read_text()
    listens = [line for line in socket_text.splitlines() if line.startswith("ListenStream=")]
    assert len(listens) == 2  # coachwhip serves every one
    service = unit("coachwhip.service")
    assert service["Unit"]["Requires"] == "coachwhip.socket"
    argv = shlex.split(service["Service"]["ExecStart"])
    assert argv[0].endswith("/coachwhip")
    config = coachwhip_config(argv[1:])
    assert config.workers == 4 and config.readiness
    assert service["Service"]["ExecReload"].endswith("-HUP $MAINPID")
    assert float(service["Service"]["TimeoutStopSec"]) > config.timeout_graceful_shutdown
