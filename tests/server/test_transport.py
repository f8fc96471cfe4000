"""TLS when a certificate is configured, and the per-connection rate limit, over real sockets."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import json
import ssl
import urllib.request
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from serverkit import SECRET, run_with_server, tiny_config
from websockets.asyncio.client import connect

from server.tokens import mint_token


def self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1, made at test time (no file is shipped)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def producer_url(scheme: str, port: int, session: str) -> str:
    token = mint_token(SECRET, session, "producer", 120.0)
    return f"{scheme}://127.0.0.1:{port}/sessions/{session}/motion?token={token}"


def test_tls_serves_https_and_wss_when_a_certificate_is_configured(tmp_path: Path) -> None:
    cert, key = self_signed_certificate(tmp_path)
    config = tiny_config(tmp_path, tls_cert=str(cert), tls_key=str(key))
    trusted = ssl.create_default_context(cafile=str(cert))

    async def body(server: Any) -> None:
        assert server.scheme == "https"

        def healthz() -> int:
            url = f"https://127.0.0.1:{server.port}/healthz"
            with urllib.request.urlopen(url, context=trusted, timeout=10) as response:
                return int(response.status)

        assert await asyncio.to_thread(healthz) == 200
        async with connect(producer_url("wss", server.port, "tls"), ssl=trusted) as producer:
            await producer.send(json.dumps({"type": "start", "identity": "default"}))
            reply = json.loads(await asyncio.wait_for(producer.recv(), 60))
            assert reply["type"] == "started"
            await producer.send(json.dumps({"type": "end"}))

        # Plain TCP to a TLS port gets no HTTP answer.
        def plain() -> None:
            urllib.request.urlopen(f"http://127.0.0.1:{server.port}/healthz", timeout=10)

        try:
            await asyncio.to_thread(plain)
        except OSError:
            pass
        else:
            raise AssertionError("a plain HTTP request to the TLS port was answered")

    run_with_server(config, body)


def test_rate_limit_answers_with_an_error_and_the_connection_goes_on(tmp_path: Path) -> None:
    config = tiny_config(tmp_path, rate_limit_per_s=1.0, rate_limit_burst=3)

    async def body(server: Any) -> None:
        async with connect(producer_url("ws", server.port, "rate")) as producer:
            # A valid first message (``end`` with no run: an error) opens the connection
            # (server.door); a garbage first message would close it.
            await producer.send(json.dumps({"type": "end"}))
            for _ in range(5):
                await producer.send(json.dumps({"type": "no-such-type"}))
            replies = [json.loads(await asyncio.wait_for(producer.recv(), 30)) for _ in range(6)]
            fields = [reply.get("field") for reply in replies]
            assert all(reply["type"] == "error" for reply in replies)
            # The first three are within the burst (rejected for their content), the rest
            # are refused by the limiter before being read.
            assert fields[3:] == ["rate", "rate", "rate"], fields
            assert "rate" not in fields[:3]
            await asyncio.sleep(1.2)  # one token refills
            await producer.send(json.dumps({"type": "start", "identity": "default"}))
            reply = json.loads(await asyncio.wait_for(producer.recv(), 60))
            assert reply["type"] == "started"

    run_with_server(config, body)
