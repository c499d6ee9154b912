"""The OpenDSR 2.0 (formerly OpenGDPR) bodies this service reads and writes.

Only erasure requests are carried out; access and portability requests are refused
with the spec's error. Field names are the spec's (snake_case). Requests allow fields
beyond these (`extensions`, vendor fields): the spec lets controllers send them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from schemas.messages import MAX_CALLBACK_URLS, MAX_IDENTITIES, CallbackUrl, IdentityValue

API_VERSION = "2.0"

# The identity types the spec names (section 5.1) and the encodings of their values (5.2).
IDENTITY_TYPES = (
    "controller_customer_id",
    "android_advertising_id",
    "android_id",
    "email",
    "fire_advertising_id",
    "ios_advertising_id",
    "ios_vendor_id",
    "microsoft_advertising_id",
    "microsoft_publisher_id",
    "roku_publisher_id",
    "roku_advertising_id",
)
IDENTITY_FORMATS = ("raw", "sha1", "md5", "sha256")
SUBJECT_REQUEST_TYPES = ("erasure", "access", "portability")
SUPPORTED_REQUEST_TYPES = ("erasure",)

RequestStatus = Literal["pending", "in_progress", "completed", "cancelled"]
Word = Annotated[str, StringConstraints(pattern=r"^[^\x00]*$", min_length=1, max_length=100)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SubjectIdentity(BaseModel):
    model_config = ConfigDict(extra="allow")

    identity_type: Word
    identity_value: IdentityValue
    identity_format: Word = "raw"


class OpenDsrRequest(BaseModel):
    """`POST /opendsr/requests`: a data subject request from a controller."""

    model_config = ConfigDict(extra="allow")

    subject_request_id: UUID = Field(description="UUID v4 made by the controller; the request's idempotency key")
    subject_request_type: Word = Field(description="`erasure` (access and portability are refused)")
    subject_identities: list[SubjectIdentity] = Field(min_length=1, max_length=MAX_IDENTITIES)
    regulation: Word = Field(description="`gdpr`, `ccpa`, `uk_gdpr`, `lgpd` or `pipeda`")
    submitted_time: AwareDatetime = Field(description="RFC 3339: when the data subject made the request")
    api_version: Word | None = None
    status_callback_urls: list[CallbackUrl] = Field(default_factory=list, max_length=MAX_CALLBACK_URLS)
    property_id: Word | None = None
    extensions: dict[str, object] | None = None


class RequestCreated(_Body):
    """201 of `POST /opendsr/requests` (and of the same request sent again)."""

    controller_id: str = Field(description="The organization of the API key")
    expected_completion_time: datetime
    received_time: datetime
    encoded_request: str = Field(description="Base64 of the request body as received; do not log or store it")
    subject_request_id: UUID
    processor_signature: str = Field(description="Base64 signature of this body without this field")


class RequestStatusBody(_Body):
    """200 of `GET /opendsr/requests/{id}`."""

    controller_id: str
    expected_completion_time: datetime
    subject_request_id: UUID
    request_status: RequestStatus
    api_version: str


class RequestCancelled(_Body):
    """202 of `DELETE /opendsr/requests/{id}`."""

    controller_id: str
    received_time: datetime = Field(description="When the cancellation was received")
    subject_request_id: UUID
    api_version: str
    processor_signature: str


class StatusCallback(_Body):
    """POSTed to each `status_callback_urls` entry when the request's status changes."""

    controller_id: str
    expected_completion_time: datetime
    status_callback_url: str
    subject_request_id: UUID
    request_status: RequestStatus


class SupportedIdentity(_Body):
    identity_type: str
    identity_format: str


class Discovery(_Body):
    """200 of `GET /opendsr/discovery`."""

    api_version: str
    supported_identities: list[SupportedIdentity]
    supported_subject_request_types: list[str]
    processor_certificate: str = Field(description="URL of the PEM certificate that signs responses and callbacks")


class ErrorDetail(_Body):
    domain: str
    reason: str
    message: str


class ErrorObject(_Body):
    code: int = Field(description="The HTTP status")
    message: str
    errors: list[ErrorDetail]


class OpenDsrError(_Body):
    """Every error of the OpenDSR routes. Never quotes an identity value."""

    error: ErrorObject
