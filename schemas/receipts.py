"""Bodies of the receipt routes (worker/api/routes_receipts.py). A receipt file is the
canonical JSON (keys sorted, no whitespace) of `ReceiptDocument`; the signature is
Ed25519 over the canonical JSON of its `receipt` (see worker.receipts.signing)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class ReceiptProduct(BaseModel):
    product: str
    status: str
    since: str = Field(description="When the product reached this status (UTC)")
    chunksTotal: int
    chunksSuccess: int
    chunksFailed: int
    deleted: int | None = Field(default=None, description="Rows or records the product reported deleted")
    notFound: int | None = Field(default=None, description="Identities the product reported it did not hold")
    identitiesFailed: int | None = Field(default=None, description="Identities that failed at the latest attempt")
    retries: int = Field(default=0, description="How often only what failed was sent again")


class ReceiptIdentities(BaseModel):
    count: int
    hash: str = Field(description="How each identity was hashed")
    digest: str = Field(description="SHA-256 (hex) of the raw hashes, sorted and concatenated")
    hashes: list[str] | None = Field(
        default=None, description="The hashes (hex, sorted), for jobs of up to 1,000 identities"
    )


class ReceiptAuditHead(BaseModel):
    seq: int
    hash: str


class ReceiptPayload(BaseModel):
    type: str = "deletion-receipt"
    version: int
    algorithm: str = "Ed25519"
    keyId: str
    jobId: int
    workorderId: str
    bundleId: str
    requestId: str
    projectKey: str
    organization: str
    action: str
    datasetId: str
    status: str
    dryRun: bool = Field(default=False, description="A dry run: nothing was deleted, counts are what would have been")
    createdAt: str
    finishedAt: str
    products: list[ReceiptProduct]
    identities: ReceiptIdentities
    auditHead: ReceiptAuditHead | None = Field(description="The job's audit chain head when the receipt was issued")
    issuedAt: str


class ReceiptDocument(BaseModel):
    receipt: ReceiptPayload
    signature: str = Field(description="Ed25519 signature (hex) of the canonical JSON of `receipt`")


class ReceiptPublicKey(BaseModel):
    algorithm: str
    keyId: str
    publicKey: str = Field(description="base64 of the 32-byte Ed25519 public key")
