"""The hand-written content header (worker.amqp.frames) is byte for byte pamqp's, for
every combination of properties, the ones it writes itself and the ones it hands back."""

from __future__ import annotations

import pamqp.frame
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pamqp import commands as spec
from pamqp.body import ContentBody
from pamqp.header import ContentHeader

from worker.amqp.frames import content_body, content_header

short_strings = st.one_of(st.none(), st.just(""), st.text(max_size=90))
property_sets = st.fixed_dictionaries(
    {},
    optional={
        "content_type": short_strings,
        "delivery_mode": st.sampled_from([None, 1, 2]),
        "expiration": st.one_of(st.none(), st.just(""), st.integers(0, 10**12).map(str)),
        "message_id": short_strings,
        # Any of these sends the header through pamqp.
        "headers": st.one_of(st.none(), st.dictionaries(st.text(min_size=1, max_size=8), st.integers(0, 9))),
        "correlation_id": short_strings,
        "app_id": short_strings,
        "priority": st.one_of(st.none(), st.integers(0, 9)),
    },
)


def pamqp_header(channel: int, properties: spec.Basic.Properties, body_size: int) -> bytes:
    return pamqp.frame.marshal(ContentHeader(properties=properties, body_size=body_size), channel)


# No deadline: a busy CI machine makes the first examples slow, not wrong.
@settings(max_examples=300, deadline=None)
@given(property_sets, st.integers(0, 65535), st.integers(0, 2**63 - 1))
def test_every_header_is_the_one_pamqp_writes(fields: dict[str, object], channel: int, body_size: int) -> None:
    properties = spec.Basic.Properties(**fields)  # type: ignore[arg-type]
    assert content_header(channel, properties, body_size) == pamqp_header(channel, properties, body_size)


def test_what_this_service_publishes_is_written_without_pamqp(monkeypatch: pytest.MonkeyPatch) -> None:
    properties = spec.Basic.Properties(content_type="application/json", delivery_mode=2, message_id="m-1")
    expected = pamqp_header(3, properties, 512)

    def refuse(*_args: object) -> bytes:
        raise AssertionError("the common properties went through pamqp")

    monkeypatch.setattr(pamqp.frame, "marshal", refuse)
    assert content_header(3, properties, 512) == expected


def test_a_message_id_too_long_for_amqp_is_refused_as_pamqp_refuses_it() -> None:
    properties = spec.Basic.Properties(message_id="m" * 256)
    with pytest.raises(TypeError, match="255"):
        content_header(1, properties, 1)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=4096), st.integers(0, 65535))
def test_every_body_frame_is_the_one_pamqp_writes(chunk: bytes, channel: int) -> None:
    assert content_body(channel, chunk) == pamqp.frame.marshal(ContentBody(chunk), channel)
