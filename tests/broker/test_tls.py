"""wss:// and https:// with a certificate (self-signed, made in the test)."""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl
from pathlib import Path

import aiohttp

from broker.protocol import Challenge, Hello, Welcome, encode_str, server_to_client_decoder, sign_challenge
from mtor_cli.client import CA_ENV
from mtor_cli.signed import call
from tests.support.peers import new_account


def self_signed(tmp: Path) -> tuple[Path, Path]:
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


async def test_tls_serves_wss_and_signed_https(make_broker, tmp_path: Path, monkeypatch) -> None:
    cert, key = self_signed(tmp_path)
    server = await make_broker(tls_cert=cert, tls_key=key)
    assert server.url.startswith("wss://") and server.http_url.startswith("https://")
    account = new_account()
    trusted = ssl.create_default_context(cafile=str(cert))
    decoder = server_to_client_decoder()
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(server.url + "/ws/client", ssl=trusted) as ws:
            challenge = decoder.decode((await ws.receive()).data)
            assert isinstance(challenge, Challenge)
            sig = sign_challenge(account.key, challenge.nonce, "client")
            await ws.send_str(encode_str(Hello(address=account.address, signature=sig, nonce=challenge.nonce)))
            assert isinstance(decoder.decode((await ws.receive()).data), Welcome)
        # Plain ws:// on the TLS port gets nowhere.
        try:
            async with http.ws_connect(server.url.replace("wss://", "ws://") + "/ws/client") as plain:
                await plain.receive(timeout=2)
            raise AssertionError("plain ws:// was served on a TLS port")
        except (TimeoutError, aiohttp.ClientError):
            pass
    monkeypatch.setenv(CA_ENV, str(cert))
    profile = await asyncio.to_thread(call, server.url, "GET", "/v1/profile", None, account)
    assert profile["address"] == account.address
