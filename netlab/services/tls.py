"""Certificates for the ingress controller, with the ``openssl`` command (scripts/setup.sh
installs it): read a ``kubernetes.io/tls`` Secret's pair, make the controller's default one.

ingress-nginx checks a TLS Secret the same way before it serves it (the key must match the
certificate; the names it is valid for are its SANs, else its CN), and generates a
self-signed "Kubernetes Ingress Controller Fake Certificate" for hosts without one.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from netlab.errors import EnvironmentProblem

FAKE_SUBJECT = "/O=Acme Co/CN=Kubernetes Ingress Controller Fake Certificate"


@dataclass(frozen=True)
class CertInfo:
    subject: str
    names: tuple[str, ...]  # DNS SANs, else the CN
    not_after: str


def require() -> str:
    path = shutil.which("openssl")
    if path is None:
        raise EnvironmentProblem("the openssl command is missing (TLS Secrets and the ingress controller need it): apt install openssl")
    return path


def _run(argv: list[str], data: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([require(), *argv], input=data, capture_output=True, timeout=30)


def inspect(cert: bytes, key: bytes) -> CertInfo:
    """What ``cert`` is valid for; ValueError (saying why) unless ``cert`` is a PEM certificate
    and ``key`` the PEM private key that belongs to it."""
    done = _run(["x509", "-noout", "-subject", "-enddate", "-ext", "subjectAltName", "-nameopt", "RFC2253"], cert)
    if done.returncode != 0:
        raise ValueError("tls.crt is not a PEM certificate (openssl: " + _first_line(done.stderr) + ")")
    subject, not_after, sans = "", "", []
    lines = done.stdout.decode(errors="replace").splitlines()
    for i, line in enumerate(lines):
        if line.startswith("subject="):
            subject = line.split("=", 1)[1].strip()
        elif line.startswith("notAfter="):
            not_after = line.split("=", 1)[1].strip()
        elif "Subject Alternative Name" in line and i + 1 < len(lines):
            sans = [p.strip()[4:] for p in lines[i + 1].split(",") if p.strip().startswith("DNS:")]
    key_pub = _run(["pkey", "-pubout"], key)
    if key_pub.returncode != 0:
        raise ValueError("tls.key is not a PEM private key (openssl: " + _first_line(key_pub.stderr) + ")")
    cert_pub = _run(["x509", "-noout", "-pubkey"], cert)
    if cert_pub.stdout.strip() != key_pub.stdout.strip():
        raise ValueError("tls.key does not belong to tls.crt (their public keys differ)")
    cn = next((part[3:] for part in subject.split(",") if part.startswith("CN=")), "")
    names = tuple(sans) if sans else ((cn,) if cn else ())
    return CertInfo(subject, names, not_after)


def fake_certificate(path: Path) -> None:
    """Write ingress-nginx's default certificate (and key) to ``path`` as one PEM file."""
    with tempfile.TemporaryDirectory(prefix="netlab-cert-") as tmp:
        cert, key = Path(tmp) / "tls.crt", Path(tmp) / "tls.key"
        done = _run([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "365", "-subj", FAKE_SUBJECT,
            "-addext", "subjectAltName=DNS:ingress.local", "-keyout", str(key), "-out", str(cert),
        ])
        if done.returncode != 0:
            raise EnvironmentProblem(f"openssl could not make the ingress controller's default certificate: {_first_line(done.stderr)}")
        write_pem(path, cert.read_bytes(), key.read_bytes())


def write_pem(path: Path, cert: bytes, key: bytes) -> None:
    """Certificate and key in one file readable by root only, as the controller keeps them."""
    tmp = path.with_name(path.name + ".netlab-tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(cert.rstrip(b"\n") + b"\n" + key.rstrip(b"\n") + b"\n")
    os.replace(tmp, path)


def _first_line(data: bytes) -> str:
    text = data.decode(errors="replace").strip()
    return text.splitlines()[0] if text else "no output"
