"""`deletion-worker receipts keygen|show|hashes|verify`: signed deletion receipts.

`verify` runs offline: it needs the receipt file and the public key only (and, to say
whether an identity is covered, the identity hash key; for a job of more than 1,000
identities, also the hash list that `hashes` writes)."""

from __future__ import annotations

import sys
from pathlib import Path

import asyncpg
import click

from worker.cli import common
from worker.errors import ConfigError
from worker.ops.exitcodes import ExitCode
from worker.receipts.identities import HashListError, covers
from worker.receipts.signing import (
    ReceiptInvalidError,
    ReceiptSigner,
    generate_private_key,
    load_public_key,
    public_key_text,
    verify_receipt,
)
from worker.store.receipts import issue_receipt, job_identity_hashes
from worker.store.retention import identity_hash


@click.group("receipts")
def receipts_group() -> None:
    """Signed deletion receipts: keys, issuing, offline verification."""


@receipts_group.command("keygen")
def keygen_command() -> None:
    """A new Ed25519 key pair: set `privateKey` as DELETION_RECEIPT_SIGNING_KEY (a
    secret), publish `publicKey` (also served at GET /receipts/public-key)."""
    private = generate_private_key()
    signer = ReceiptSigner(private)
    common.echo_json({"privateKey": private, "publicKey": public_key_text(signer.public_key), "keyId": signer.key_id})


def _signer() -> ReceiptSigner:
    key = common.settings().receipt_signing_key.get_secret_value()
    if not key:
        raise ConfigError("set DELETION_RECEIPT_SIGNING_KEY (`deletion-worker receipts keygen` makes one)")
    return ReceiptSigner(key)


@receipts_group.command("show")
@click.argument("job_id", type=int)
def show_command(job_id: int) -> None:
    """The receipt of an ended job (issued now if it has none yet), as the signed file."""
    loaded = common.settings()
    signer = _signer()
    key = loaded.identity_hash_key.get_secret_value().encode()
    receipt = common.with_database(loaded, lambda connection: issue_receipt(connection, job_id, key, signer))
    sys.stdout.buffer.write(receipt.document + b"\n")


@receipts_group.command("hashes")
@click.argument("job_id", type=int)
def hashes_command(job_id: int) -> None:
    """The job's identity hashes, sorted, one hex per line: what a receipt's
    `identities.digest` is computed over (give it to `verify --hashes`)."""
    loaded = common.settings()
    key = loaded.identity_hash_key.get_secret_value().encode()

    async def read(connection: asyncpg.Connection) -> list[bytes]:
        return await job_identity_hashes(connection, key, job_id)

    for digest in sorted(common.with_database(loaded, read)):
        click.echo(digest.hex())


def _text_or_file(value: str) -> str:
    path = Path(value)
    return path.read_text(encoding="utf-8").strip() if path.is_file() else value


@receipts_group.command("verify")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--public-key", required=True, help="base64 public key, or a file holding it.")
@click.option("--identity", help="NAMESPACE:VALUE: also check that the receipt covers this identity.")
@click.option("--hash-key", help="The identity hash key (DELETION_IDENTITY_HASH_KEY), or a file holding it.")
@click.option(
    "--hashes",
    "hashes_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The job's hash list (`receipts hashes`), for receipts that carry only a digest.",
)
def verify_command(
    file: Path, public_key: str, identity: str | None, hash_key: str | None, hashes_file: Path | None
) -> None:
    """Check a receipt's signature offline; exit 0 when it holds (and covers --identity),
    6 (INVALID) when it does not."""
    try:
        payload = verify_receipt(file.read_bytes().rstrip(b"\n"), load_public_key(_text_or_file(public_key)))
    except ReceiptInvalidError as error:
        click.echo(f"deletion-worker: receipt NOT valid: {error}", err=True)
        raise click.exceptions.Exit(ExitCode.INVALID) from None
    result: dict[str, object] = {
        "valid": True,
        "jobId": payload["jobId"],
        "workorderId": payload["workorderId"],
        "status": payload["status"],
        "finishedAt": payload["finishedAt"],
    }
    if identity is not None:
        namespace, sep, value = identity.partition(":")
        if not sep or not namespace or not value:
            raise click.BadParameter("expected NAMESPACE:VALUE", param_hint="--identity")
        if hash_key is None:
            raise click.BadParameter("the identity hash key is needed to check an identity", param_hint="--hash-key")
        digest = identity_hash(_text_or_file(hash_key).encode(), namespace, value)
        hash_list = (
            [bytes.fromhex(line) for line in hashes_file.read_text().split()] if hashes_file is not None else None
        )
        try:
            result["coversIdentity"] = covers(payload, digest, hash_list)
        except HashListError as error:
            raise click.UsageError(str(error)) from None
    common.echo_json(result)
    if result.get("coversIdentity") is False:
        raise click.exceptions.Exit(ExitCode.INVALID)
