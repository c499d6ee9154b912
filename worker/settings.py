"""Every setting of the service, read once from the environment (prefix ``DELETION_``).

One class on purpose: operators read this file to learn what can be configured,
and the deployment test checks every variable it sets against these fields.
"""

from __future__ import annotations

import random
import re
from datetime import timedelta
from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import parse_qs, urlsplit

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas.messages import Regulation
from worker.errors import ConfigError
from worker.topics import validate_pattern

PACKAGE_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PRODUCTS_FILE = PACKAGE_ROOT / "deploy" / "products.demo.toml"
DEFAULT_MIGRATIONS_DIR = PACKAGE_ROOT / "migrations"
DEFAULT_IDENTITY_HASH_KEY = "change-me-in-production"
MIN_HASH_KEY_BYTES = 32
DEFAULT_WEBHOOK_SECRET_KEY = "change-me-in-production-webhooks"  # noqa: S105 - the dev default, warned about
# Statutory clocks approximated in days from receipt (see worker.due_dates).
DEFAULT_REGULATION_DEADLINES: dict[Regulation, timedelta] = {
    "gdpr": timedelta(days=30),
    "uk_gdpr": timedelta(days=30),
    "ccpa": timedelta(days=45),
    "lgpd": timedelta(days=15),
    "pipeda": timedelta(days=30),
}
# OpenDSR identity types (schemas.opendsr.IDENTITY_TYPES) → the namespace products know
# them by. A key is an identity type for raw values, or `type:format` (e.g.
# "email:sha256") for hashed values that some product can match as they are.
DEFAULT_OPENDSR_IDENTITY_NAMESPACES: dict[str, str] = {
    "controller_customer_id": "userId",
    "email": "email",
    "android_advertising_id": "androidAdvertisingId",
    "android_id": "androidId",
    "fire_advertising_id": "fireAdvertisingId",
    "ios_advertising_id": "iosAdvertisingId",
    "ios_vendor_id": "iosVendorId",
    "microsoft_advertising_id": "microsoftAdvertisingId",
    "microsoft_publisher_id": "microsoftPublisherId",
    "roku_advertising_id": "rokuAdvertisingId",
    "roku_publisher_id": "rokuPublisherId",
}
# What asyncpg accepts; read-write is the one that follows a failover.
TARGET_SESSION_ATTRS = ("any", "primary", "standby", "prefer-standby", "read-write", "read-only")
OPENDSR_IDENTITY_KEY = r"^[a-z][a-z0-9_]{0,63}(:(raw|sha1|md5|sha256))?$"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DELETION_", extra="ignore", frozen=True)

    database_url: str = "postgresql://postgres@127.0.0.1:5432/postgres"
    amqp_url: str = "amqp://guest:guest@127.0.0.1:5672/"
    # The nodes of a RabbitMQ cluster, comma-separated; when set it replaces amqp_url.
    # Each (re)connect tries them in order, or in a new random order with amqp_shuffle
    # (to spread many processes over the nodes): see `broker_urls`.
    amqp_urls: str = ""
    amqp_shuffle: bool = False
    products_file: Path = DEFAULT_PRODUCTS_FILE
    migrations_dir: Path = DEFAULT_MIGRATIONS_DIR

    # Every queue and exchange name starts with this; tests and the bench use their own
    # so that runs never see each other's messages.
    topology_prefix: str = Field(default="deletion", pattern=r"^[A-Za-z0-9_.-]{1,100}$")

    # Consuming: a generous prefetch and batches are what make the pipeline fast; the
    # byte limits bound a role's memory whatever the size of the messages.
    prefetch: int = Field(default=2000, ge=1, le=65535)
    batch_size: int = Field(default=500, ge=1, le=10000)
    batch_wait_ms: int = Field(default=5, ge=0, le=10000)
    consumer_max_bytes: int = Field(default=64 * 1024 * 1024, ge=1024 * 1024)
    batch_max_bytes: int = Field(default=8 * 1024 * 1024, ge=64 * 1024)
    # A role whose database is unreachable holds its work this long, then hands it back
    # to the queue (the broker's consumer timeout is 30 minutes by default).
    unavailable_hold: float = Field(default=300.0, gt=0)
    # Broker-side safety net: a message redelivered this often (it keeps crashing the
    # worker that takes it) is dead-lettered by RabbitMQ itself.
    delivery_limit: int = Field(default=20, ge=1)

    # Limits of one request.
    max_identities: int = Field(default=100_000, ge=1)
    max_message_bytes: int = Field(default=32 * 1024 * 1024, ge=1024)

    # Dispatch: how identities are split into product task messages.
    chunk_size: int = Field(default=10_000, ge=1, le=100_000)
    task_max_items: int = Field(default=1000, ge=1)
    task_max_bytes: int = Field(default=4 * 1024 * 1024, ge=64 * 1024)
    dispatch_batch: int = Field(default=5000, ge=1)
    dispatch_max_identities: int = Field(default=500_000, ge=1)
    dispatch_interval: float = Field(default=1.0, gt=0)
    # A dispatcher publishes the plans it committed at once; plans still unpublished
    # after this long (their dispatcher died) are published by another.
    outbox_lease: float = Field(default=60.0, gt=0)

    # Lifecycle events: how often the relay looks for new ones when it found none, and
    # which event types it publishes to the broker, as comma-separated topic patterns
    # (`job.*,product.*.failed`; `#` is all). Each event costs a broker message; types
    # left out are still recorded, sent to webhooks and callbacks, and audited.
    events_interval: float = Field(default=0.2, gt=0)
    events_publish: str = "#"
    # Due dates: a regulation's deadline from receipt (JSON, e.g. {"gdpr": "P20D"}: the
    # regulations not named keep their default), and how long before it a job still
    # running is reported at risk (event job.at_risk, gauge deletion_jobs_at_risk).
    regulation_deadlines: dict[Regulation, timedelta] = Field(default_factory=dict)
    due_at_risk_margin: timedelta = timedelta(days=5)

    # Webhooks (worker.roles.notify). Signing secrets are stored sealed with a key derived
    # from `webhook_secret_key` (changing it makes existing secrets unreadable). Destinations
    # in private, loopback or link-local ranges are refused unless allowed (local setups
    # and tests). Each delivery is retried with backoff and full jitter, every call within
    # `webhook_timeout`, until `webhook_give_up`; at most `webhook_concurrency` calls are
    # in flight per process, `webhook_per_endpoint` of them to one endpoint.
    webhook_secret_key: SecretStr = SecretStr(DEFAULT_WEBHOOK_SECRET_KEY)
    webhook_allow_private: bool = False
    webhook_give_up: timedelta = timedelta(hours=24)
    webhook_timeout: float = Field(default=10.0, gt=0, le=300)
    webhook_concurrency: int = Field(default=64, ge=1, le=10_000)
    webhook_per_endpoint: int = Field(default=4, ge=1, le=1000)
    webhook_retry_base_ms: int = Field(default=1000, ge=1)
    webhook_retry_cap_ms: int = Field(default=3_600_000, ge=1)
    webhook_rotation_grace: timedelta = timedelta(hours=24)
    webhook_interval: float = Field(default=0.5, gt=0)

    # OpenDSR (worker.api.routes_opendsr, worker.opendsr). The identity-type table (JSON;
    # replaces the default table above as a whole); the processor's X.509 certificate and
    # its private key (PEM files) that sign responses and status callbacks, without which
    # the OpenDSR routes answer 404; the domain named in X-OpenDSR-Processor-Domain
    # (default: the certificate's first DNS name).
    opendsr_identity_namespaces: dict[str, str] = Field(
        default_factory=lambda: dict(DEFAULT_OPENDSR_IDENTITY_NAMESPACES)
    )
    opendsr_certificate_file: Path | None = None
    opendsr_private_key_file: Path | None = None
    opendsr_processor_domain: str = Field(default="", pattern=r"^[A-Za-z0-9.-]{0,253}$")

    # The reconciler: jobs without progress this long are reported stuck.
    stuck_after: timedelta = timedelta(minutes=30)
    reconcile_interval: float = Field(default=30.0, gt=0)
    sweep_page: int = Field(default=10_000, ge=100)

    # Transient failures of a product handler: exponential backoff with full jitter.
    retry_max_attempts: int = Field(default=8, ge=1)
    retry_base_ms: int = Field(default=500, ge=1)
    retry_cap_ms: int = Field(default=300_000, ge=1)
    handler_timeout: float = Field(default=30.0, gt=0)
    handler_concurrency: int = Field(default=8, ge=1)
    # Products called over plain http (their calls carry identity values): local setups only.
    allow_insecure_http: bool = False

    # Personal data: identity values are replaced by keyed hashes this long after a job
    # ends, at most `retention_step` values per transaction.
    identity_retention: timedelta = timedelta(days=7)
    identity_hash_key: SecretStr = SecretStr(DEFAULT_IDENTITY_HASH_KEY)
    retention_step: int = Field(default=5000, ge=1)
    # Deletion receipts (worker.store.receipts): the Ed25519 private key that signs them,
    # base64 of its 32 bytes (`deletion-worker receipts keygen`). Empty: no receipts are
    # issued and the receipt routes answer 404.
    receipt_signing_key: SecretStr = SecretStr("")
    # Dead letters hold identity values too: a new dead-letter queue keeps them this long
    # (0: until purged).
    dead_letter_retention: timedelta = timedelta(days=7)
    maintenance_interval: float = Field(default=60.0, gt=0)

    # Database pool.
    db_pool_min: int = Field(default=1, ge=0)
    db_pool_max: int = Field(default=10, ge=1)

    # HTTP API.
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8080, ge=0, le=65535)
    api_max_body_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)
    # Large bodies parsed at once share this budget; one waits at most api_parse_wait
    # seconds for its turn, then gets 503 with Retry-After.
    api_max_parse_bytes: int = Field(default=12 * 1024 * 1024, ge=1024)
    api_parse_wait: float = Field(default=60.0, gt=0)
    # The web console (/console): the key that signs its session cookies. Empty: a random
    # key per process, so sessions end when the API restarts and do not cross replicas.
    console_session_key: SecretStr = SecretStr("")
    console_session_hours: float = Field(default=12.0, gt=0)

    # Worker metrics and health endpoint (0 = off).
    metrics_port: int = Field(default=9108, ge=0, le=65535)

    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["auto", "json", "console"] = "auto"
    # OpenTelemetry's own variable, not DELETION_-prefixed, so the standard deployment
    # convention works: set, every process exports traces over OTLP/HTTP (worker.tracing).
    otel_exporter_otlp_endpoint: str | None = Field(default=None, validation_alias="OTEL_EXPORTER_OTLP_ENDPOINT")

    shutdown_timeout: float = Field(default=30.0, gt=0)
    # How long a role waits for the broker to confirm what it published (a broker alarm
    # blocks publishers while it lasts); past it the session is made again and the work
    # in hand published again on it.
    confirm_timeout: float = Field(default=120.0, gt=0)

    def identity_hash_key_is_weak(self) -> bool:
        """The default, a placeholder of the deploy files ("change-me…"), or too short to
        resist guessing: hashes made with it can be checked against guesses by anyone."""
        key = self.identity_hash_key.get_secret_value()
        placeholder = "change" in key.lower().replace("-", "").replace("_", "") and "me" in key.lower()
        return key == DEFAULT_IDENTITY_HASH_KEY or placeholder or len(key.encode()) < MIN_HASH_KEY_BYTES

    def webhook_secret_key_is_weak(self) -> bool:
        """Like identity_hash_key_is_weak: webhook secrets sealed with a public key are as
        good as stored in plaintext."""
        key = self.webhook_secret_key.get_secret_value()
        placeholder = "change" in key.lower().replace("-", "").replace("_", "") and "me" in key.lower()
        return key == DEFAULT_WEBHOOK_SECRET_KEY or placeholder or len(key.encode()) < MIN_HASH_KEY_BYTES

    @property
    def broker_urls(self) -> tuple[str, ...]:
        """The broker addresses to try, in the order to try them; read on every (re)connect,
        so that with amqp_shuffle each one spreads anew."""
        urls = [url.strip() for url in self.amqp_urls.split(",") if url.strip()] or [self.amqp_url]
        if self.amqp_shuffle:
            random.shuffle(urls)
        return tuple(urls)

    def deadline(self, regulation: Regulation) -> timedelta:
        return self.regulation_deadlines.get(regulation, DEFAULT_REGULATION_DEADLINES[regulation])

    @field_validator("opendsr_identity_namespaces")
    @classmethod
    def _identity_keys(cls, value: dict[str, str]) -> dict[str, str]:
        bad = [key for key in value if re.match(OPENDSR_IDENTITY_KEY, key) is None]
        if bad:
            raise ValueError(f"keys are identity types, or `type:format` (raw, sha1, md5, sha256): {bad[:3]}")
        if any(not namespace or len(namespace) > 255 for namespace in value.values()):
            raise ValueError("namespaces are 1 to 255 characters")
        return value

    @property
    def event_publish_patterns(self) -> tuple[str, ...]:
        return tuple(part.strip() for part in self.events_publish.split(",") if part.strip())

    @field_validator("events_publish")
    @classmethod
    def _topic_patterns(cls, value: str) -> str:
        patterns = [part.strip() for part in value.split(",") if part.strip()]
        for pattern in patterns:
            validate_pattern(pattern)
        return value

    @field_validator("database_url")
    @classmethod
    def _postgres_url(cls, value: str) -> str:
        if not value.startswith(("postgresql://", "postgres://")):
            raise ValueError("must start with postgresql://")
        # A primary and its standbys: `host1:5432,host2:5432/db?target_session_attrs=read-write`.
        # Every connection (a pool's new one after a failover too) tries the hosts in order
        # and keeps the first that accepts writes. asyncpg would only refuse a mistake here
        # when it first connects, after the process had started.
        parts = urlsplit(value)
        hosts = parts.netloc.rpartition("@")[2].split(",")
        if len(hosts) > 1 and not all(host.strip() for host in hosts):
            raise ValueError("an empty entry in the list of hosts")
        for attrs in parse_qs(parts.query).get("target_session_attrs", []):
            if attrs not in TARGET_SESSION_ATTRS:
                raise ValueError(f"target_session_attrs is one of {', '.join(TARGET_SESSION_ATTRS)}")
        return value

    @field_validator("amqp_url", "amqp_urls")
    @classmethod
    def _amqp_scheme(cls, value: str, info: ValidationInfo) -> str:
        urls = [url.strip() for url in value.split(",") if url.strip()]
        if (not urls and info.field_name == "amqp_url") or any(
            not url.startswith(("amqp://", "amqps://")) for url in urls
        ):
            raise ValueError("must start with amqp:// or amqps://")
        return value


class SettingsError(ConfigError):
    """A setting is wrong or missing; the message is one line meant for a person."""


def describe_settings_error(error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        name = "DELETION_" + "_".join(str(p) for p in item["loc"]).upper()
        parts.append(f"{name}: {item['msg']}")
    return "; ".join(parts)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as error:
        raise SettingsError(f"invalid setting: {describe_settings_error(error)}") from None
