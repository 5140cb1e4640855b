"""parse_events on every recorded delivery in tests/data/webhooks, and on deliveries bent out of shape."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest

from core.webhook.events import InboundMessage, Malformed, OtherChange, StatusUpdate, parse_events
from tests.support import WEBHOOK_DATA, load_delivery

WABA_ID = "1001"
PHONE_NUMBER_ID = "2001"

MARTA_WA_ID = "5491155550001"
MARTA_BSUID = "AR.13491208655302741918"
JULIAN_WA_ID = "5491155550002"
JULIAN_BSUID = "AR.20817364512098734561"
LUCIA_BSUID = "AR.30987612340987612345"
OUTBOUND_WAMID = "wamid.OUTBOUND0001"


def events_of(name: str) -> list[Any]:
    return parse_events(load_delivery(name, WABA_ID, PHONE_NUMBER_ID))


def events_from(document: dict[str, Any]) -> list[Any]:
    return parse_events(document)


def at(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def first_messages(document: dict[str, Any]) -> list[dict[str, Any]]:
    return document["entry"][0]["changes"][0]["value"]["messages"]


# One inbound message per file from Marta (wa_id + BSUID, profile name "Marta Gómez"):
# fixture -> (wamid, type, text, unix timestamp).
MARTA_SINGLE = {
    "text.json": ("wamid.HBgNNTQ5MTE1NTU1MDAwMRUCABIYFjNFQjAzNzJFQTA4Q0FCMzNFNzFDMDIA", "text",
                  "Hola! ¿Tienen turnos para mañana a la tarde?", 1795322400),
    "text_reply_context.json": ("wamid.HBgNNTQ5MTE1NTU1MDAwMRUCABIYFjNFQjBBNURGRDFFMkExNTQxM0MyMzkA", "text",
                                "El de las 17:30 me sirve", 1795322460),
    "image.json": ("wamid.HBgNNTQ5MTE1NTU1MDAwMRUCABIYFjNFQjAwRTc2MjkyNzk0ODg4RDRGMUYA", "image",
                   "[image] Así quedó la factura", 1795322520),
    "audio_voice.json": ("wamid.HBgNNTQ5MTE1NTU1MDAwMRUCABIYFjNFQjBBMDZBNDkyOTU5Q0UxMkIzRjAA", "audio",
                         "[voice note]", 1795322580),
    "video.json": ("wamid.HBgNNTQ5MTE1NTU1MDAwMRUCABIYFjNFQjBGRkJBRjU4RjEyMzE2MjhGOUEA", "video",
                   "[video] Este es el ruido que hace", 1795322640),
    "document.json": ("wamid.HBgNNTQ5MTE1NTU1MDAwMRUCABIYFjNFQjBGN0YwMjlFQ0I5OEFCRTk3OTAA", "document",
                      "[document] Presupuesto-0042.pdf Te paso el presupuesto firmado", 1795322700),
    "sticker.json": ("wamid.HBgNNTQ5MTE1NTU1MDAwMRUCABIYFjNFQjA2NTgxRjY1NDMxNDhDQzI0MjUA", "sticker",
                     "[sticker]", 1795322760),
    "location.json": ("wamid.HBgNNTQ5MTE1NTU1MDAwMRUCABIYFjNFQjA1N0U3RDFEQUM5QUEzQTNGRUMA", "location",
                      "[location] Alto Palermo, Av. Santa Fe 3253, C1425 CABA, Argentina (-34.5885211, -58.4106449)",
                      1795322820),
    "contacts.json": ("wamid.HBgNNTQ5MTE1NTU1MDAwMRUCABIYFjNFQjA5REI0OUE1OTI0OUVFRkI2RjYA", "contacts",
                      "[contact] Sofía Martínez +54 9 11 5555-0123 +54 11 4555-0199", 1795322880),
    "interactive_button_reply.json": ("wamid.HBgNNTQ5MTE1NTU1MDAwMRUCABIYFjNFQjAzQzEzM0JBQjYzN0Q3MjE0QTYA",
                                      "interactive", "Sí, confirmar", 1795322940),
    "interactive_list_reply.json": ("wamid.HBgNNTQ5MTE1NTU1MDAwMRUCABIYFjNFQjBDMjdCQ0IyNEI3Mzk4QTI2NjEA",
                                    "interactive", "Lun 23/11 17:30 - Sucursal Palermo, con Dra. Ruiz", 1795323000),
    "button.json": ("wamid.HBgNNTQ5MTE1NTU1MDAwMRUCABIYFjNFQjA3QjdGQ0M3OEQ2Q0QxNTA3OTIA", "button",
                    "Reprogramar", 1795323060),
    "reaction.json": ("wamid.HBgNNTQ5MTE1NTU1MDAwMRUCABIYFjNFQjBBOTA0M0ZGRTQ2OTgwM0Y3QTcA", "reaction",
                      "[reaction 👍]", 1795323120),
    "order.json": ("wamid.HBgNNTQ5MTE1NTU1MDAwMRUCABIYFjNFQjBDQ0U1NUU0MzA5QTc1Mzk4NUIA", "order",
                   "[order] 2 x ALF-MAICENA-12, 1 x CAFE-MOLIDO-500 - Lo paso a retirar a la tarde", 1795323180),
    "referral.json": ("wamid.HBgNNTQ5MTE1NTU1MDAwMRUCABIYFjNFQjAzM0I4OEFFRkQzNTU0MDRFMTIA", "text",
                      "Hola, vi el anuncio. ¿Cuánto sale la consulta? [via ad: Reservá tu turno por WhatsApp]",
                      1795323300),
    "unsupported.json": ("wamid.HBgNNTQ5MTE1NTU1MDAwMRUCABIYFjNFQjA5OTVGRUUxRjFBN0VCM0EyQTkA", "unsupported",
                         "[unsupported message: Message type unknown]", 1795323360),
    "unknown_type.json": ("wamid.HBgNNTQ5MTE1NTU1MDAwMRUCABIYFjNFQjA1MEQ4QjRBOTQxQzI2Qjg5NDgA", "some_future_type",
                          "[some_future_type message]", 1795323420),
}
SYSTEM_WAMID = "wamid.HBgNNTQ5MTE1NTU1MDAwMRUCABIYFjNFQjAzMTdGMUU3NjFGMkZBQThEQTcA"
BSUID_WAMID = "wamid.HBgXQVIuMzA5ODc2MTIzNDA5ODc2MTIzNDUVAgASGBYzRUIwN0U4M0NBMkE2NUQ2RjkwQTgwAA=="

STATUS_FIXTURES = {
    "status_sent.json": ("sent", 1795323900),
    "status_delivered.json": ("delivered", 1795323902),
    "status_read.json": ("read", 1795323960),
    "status_failed.json": ("failed", 1795323901),
}

OTHER_FIELDS = {
    "template_status.json": ("message_template_status_update", None),
    "template_quality.json": ("message_template_quality_update", None),
    "phone_quality.json": ("phone_number_quality_update", None),
    "account_update.json": ("account_update", None),
    "smb_message_echoes.json": ("smb_message_echoes", PHONE_NUMBER_ID),
}

COVERED = {*MARTA_SINGLE, *STATUS_FIXTURES, *OTHER_FIELDS, "system.json", "bsuid_only.json", "multi_entry.json",
           "several_messages.json", "value_errors.json"}


class TestFixtureCoverage:
    def test_every_recorded_delivery_has_expectations_here(self):
        on_disk = {path.name for path in WEBHOOK_DATA.glob("*.json")}
        assert on_disk - COVERED == set()
        assert COVERED - on_disk == set()


class TestInboundMessages:
    @pytest.mark.parametrize("name", sorted(MARTA_SINGLE))
    def test_single_message_from_a_user_with_a_phone_number(self, name: str):
        wamid, kind, text, seconds = MARTA_SINGLE[name]

        events = events_of(name)

        assert len(events) == 1
        event = events[0]
        assert isinstance(event, InboundMessage)
        assert event.waba_id == WABA_ID
        assert event.phone_number_id == PHONE_NUMBER_ID
        assert event.wamid == wamid
        assert event.type == kind
        assert event.text == text
        assert event.user_key == MARTA_WA_ID
        assert event.wa_id == MARTA_WA_ID
        assert event.user_id == MARTA_BSUID
        assert event.contact_name == "Marta Gómez"
        assert event.wa_timestamp == at(seconds)
        assert event.wa_timestamp.utcoffset().total_seconds() == 0
        assert event.payload["id"] == wamid

    def test_timestamp_is_an_aware_utc_datetime(self):
        [event] = events_of("text.json")

        assert event.wa_timestamp == datetime(2026, 11, 22, 4, 40, tzinfo=UTC)
        assert event.wa_timestamp.tzinfo is not None

    @pytest.mark.parametrize("name", sorted(set(MARTA_SINGLE) - {"reaction.json"}))
    def test_ordinary_messages_want_a_reply(self, name: str):
        [event] = events_of(name)

        assert event.wants_reply is True

    def test_reaction_is_recorded_but_wants_no_reply(self):
        [event] = events_of("reaction.json")

        assert event.type == "reaction"
        assert event.text == "[reaction 👍]"
        assert event.wants_reply is False

    def test_removed_reaction_says_removed(self):
        document = load_delivery("reaction.json", WABA_ID, PHONE_NUMBER_ID)
        first_messages(document)[0]["reaction"]["emoji"] = ""

        [event] = events_from(document)

        assert event.text == "[reaction removed]"
        assert event.wants_reply is False

    def test_system_message_without_contacts_uses_from_and_wants_no_reply(self):
        [event] = events_of("system.json")

        assert isinstance(event, InboundMessage)
        assert event.wamid == SYSTEM_WAMID
        assert event.type == "system"
        assert event.text == "[system] User Marta Gómez changed from 5491155550001 to 5491155550099"
        assert event.user_key == MARTA_WA_ID
        assert event.wa_id == MARTA_WA_ID
        assert event.user_id == MARTA_BSUID
        assert event.contact_name is None
        assert event.wa_timestamp == at(1795323240)
        assert event.wants_reply is False

    def test_voice_note_differs_from_an_audio_file(self):
        document = load_delivery("audio_voice.json", WABA_ID, PHONE_NUMBER_ID)
        first_messages(document)[0]["audio"]["voice"] = False

        [event] = events_from(document)

        assert event.text == "[audio]"

    def test_referral_without_headline_names_the_ad_url(self):
        document = load_delivery("referral.json", WABA_ID, PHONE_NUMBER_ID)
        del first_messages(document)[0]["referral"]["headline"]

        [event] = events_from(document)

        assert event.text == "Hola, vi el anuncio. ¿Cuánto sale la consulta? [via ad: https://fb.me/6XkQ2rB9p]"

    def test_unsupported_message_keeps_its_error_in_the_payload(self):
        [event] = events_of("unsupported.json")

        assert event.payload["errors"][0]["code"] == 131051
        assert event.payload["unsupported"] == {"type": "poll_creation"}


class TestUserKey:
    def test_bsuid_only_user_is_keyed_by_user_id(self):
        [event] = events_of("bsuid_only.json")

        assert isinstance(event, InboundMessage)
        assert event.wamid == BSUID_WAMID
        assert event.type == "text"
        assert event.text == "Hola, ¿hacen envíos a Rosario?"
        assert event.user_key == LUCIA_BSUID
        assert event.wa_id is None
        assert event.user_id == LUCIA_BSUID
        assert event.contact_name == "Lucía"
        assert event.wa_timestamp == at(1795323480)
        assert event.wants_reply is True

    def test_from_user_id_alone_is_enough_without_contacts(self):
        document = load_delivery("bsuid_only.json", WABA_ID, PHONE_NUMBER_ID)
        del document["entry"][0]["changes"][0]["value"]["contacts"]

        [event] = events_from(document)

        assert isinstance(event, InboundMessage)
        assert event.user_key == LUCIA_BSUID
        assert event.user_id == LUCIA_BSUID
        assert event.wa_id is None
        assert event.contact_name is None

    def test_contacts_user_id_alone_is_enough_without_from_user_id(self):
        document = load_delivery("bsuid_only.json", WABA_ID, PHONE_NUMBER_ID)
        del first_messages(document)[0]["from_user_id"]

        [event] = events_from(document)

        assert isinstance(event, InboundMessage)
        assert event.user_key == LUCIA_BSUID
        assert event.wa_id is None

    def test_wa_id_wins_over_user_id_when_both_are_present(self):
        [event] = events_of("text.json")

        assert event.user_key == MARTA_WA_ID
        assert event.user_key != event.user_id

    def test_older_delivery_without_any_bsuid_is_keyed_by_wa_id(self):
        document = load_delivery("text.json", WABA_ID, PHONE_NUMBER_ID)
        del first_messages(document)[0]["from_user_id"]
        del document["entry"][0]["changes"][0]["value"]["contacts"][0]["user_id"]

        [event] = events_from(document)

        assert event.user_key == MARTA_WA_ID
        assert event.wa_id == MARTA_WA_ID
        assert event.user_id is None

    def test_each_message_gets_its_own_contact_when_a_change_names_two_users(self):
        marta, julian = events_of("multi_entry.json")[:2]

        assert (marta.user_key, marta.user_id, marta.contact_name) == (MARTA_WA_ID, MARTA_BSUID, "Marta Gómez")
        assert (julian.user_key, julian.user_id, julian.contact_name) == (JULIAN_WA_ID, JULIAN_BSUID, "Julián Pérez")


class TestStatuses:
    @pytest.mark.parametrize("name", sorted(STATUS_FIXTURES))
    def test_status_fixture_is_one_status_update(self, name: str):
        status, seconds = STATUS_FIXTURES[name]

        events = events_of(name)

        assert len(events) == 1
        event = events[0]
        assert isinstance(event, StatusUpdate)
        assert event.waba_id == WABA_ID
        assert event.phone_number_id == PHONE_NUMBER_ID
        assert event.wamid == OUTBOUND_WAMID
        assert event.status == status
        assert event.timestamp == at(seconds)
        assert event.recipient == MARTA_WA_ID

    @pytest.mark.parametrize("name", ["status_sent.json", "status_delivered.json", "status_read.json"])
    def test_successful_statuses_carry_no_errors(self, name: str):
        [event] = events_of(name)

        assert event.errors == []

    def test_failed_status_keeps_the_131047_error(self):
        [event] = events_of("status_failed.json")

        assert event.status == "failed"
        assert len(event.errors) == 1
        error = event.errors[0]
        assert error["code"] == 131047
        assert error["title"] == "Re-engagement message"
        assert error["message"] == "Re-engagement message"
        assert error["error_data"]["details"].startswith("Message failed to send because more than 24 hours")
        assert error["href"] == "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/"

    def test_status_with_only_a_bsuid_recipient_names_it(self):
        document = load_delivery("status_read.json", WABA_ID, PHONE_NUMBER_ID)
        del document["entry"][0]["changes"][0]["value"]["statuses"][0]["recipient_id"]

        [event] = events_from(document)

        assert event.recipient == MARTA_BSUID

    def test_status_without_id_is_malformed(self):
        document = load_delivery("status_sent.json", WABA_ID, PHONE_NUMBER_ID)
        del document["entry"][0]["changes"][0]["value"]["statuses"][0]["id"]

        [event] = events_from(document)

        assert isinstance(event, Malformed)
        assert event.field == "statuses"
        assert event.phone_number_id == PHONE_NUMBER_ID


class TestSeveralEvents:
    def test_multi_entry_gives_events_from_both_entries_in_delivery_order(self):
        events = events_of("multi_entry.json")

        assert [type(event) for event in events] == [InboundMessage, InboundMessage, StatusUpdate, InboundMessage]
        assert [event.wamid for event in events] == [
            "wamid.HBgNNTQ5MTE1NTU1MDAwMRUCABIYFjNFQjA4QTdFOTZEQTNGOTE1MTAyMEEA",
            "wamid.HBgNNTQ5MTE1NTU1MDAwMhUCABIYFjNFQjBEN0U5Q0JEQTZFQkZCODc5RUIA",
            "wamid.HBgNNTQ5MTE1NTU1MDAwMhUCABEYFDNBOTEyNDIyMjM0MEI1MTJDMjFBAA==",
            "wamid.HBgNNTQ5MTE1NTU1MDAwMRUCABIYFjNFQjA5RTY4NTY2QjdDOUUzRDRFNzUA",
        ]
        first, second, status, last = events
        assert first.text == "Buen día, quería consultar por mi pedido"
        assert second.text == "Hola, ¿están abiertos hoy?"
        assert (status.status, status.recipient, status.timestamp) == ("delivered", JULIAN_WA_ID, at(1795323602))
        assert last.text == "Es el número 4471"
        assert last.user_key == MARTA_WA_ID
        assert last.wa_timestamp == at(1795323605)
        assert {event.waba_id for event in events} == {WABA_ID}

    def test_entries_keep_their_own_waba_id(self):
        document = load_delivery("multi_entry.json", WABA_ID, PHONE_NUMBER_ID)
        document["entry"][1]["id"] = "9999"

        events = events_from(document)

        assert [event.waba_id for event in events] == [WABA_ID, WABA_ID, WABA_ID, "9999"]

    def test_several_messages_give_three_messages_in_order(self):
        events = events_of("several_messages.json")

        assert all(isinstance(event, InboundMessage) for event in events)
        assert [event.text for event in events] == ["hola", "una consulta", "¿hasta qué hora atienden hoy?"]
        assert [event.wa_timestamp for event in events] == [at(1795323700), at(1795323701), at(1795323702)]
        assert [event.wamid for event in events] == [
            "wamid.HBgNNTQ5MTE1NTU1MDAwMRUCABIYFjNFQjBBRTIzQjk0Q0NBRjcxNDMzN0UA",
            "wamid.HBgNNTQ5MTE1NTU1MDAwMRUCABIYFjNFQjAzMkQzMzJEQTc2MUY0NERGNzkA",
            "wamid.HBgNNTQ5MTE1NTU1MDAwMRUCABIYFjNFQjA4NjJBNTFGOEI2Mjk0QTRCMDcA",
        ]
        assert {event.user_key for event in events} == {MARTA_WA_ID}


class TestOtherChanges:
    def test_value_errors_become_an_other_change_named_messages_errors(self):
        events = events_of("value_errors.json")

        assert len(events) == 1
        event = events[0]
        assert isinstance(event, OtherChange)
        assert event.field == "messages.errors"
        assert event.waba_id == WABA_ID
        assert event.phone_number_id == PHONE_NUMBER_ID
        assert event.value["errors"][0]["code"] == 131000
        assert event.value["errors"][0]["error_data"]["details"] == "Unsupported webhook payload"

    @pytest.mark.parametrize("name", sorted(OTHER_FIELDS))
    def test_non_messages_field_is_an_other_change_and_no_inbound_turn(self, name: str):
        field, phone = OTHER_FIELDS[name]

        events = events_of(name)

        assert len(events) == 1
        event = events[0]
        assert isinstance(event, OtherChange)
        assert event.field == field
        assert event.waba_id == WABA_ID
        assert event.phone_number_id == phone

    def test_template_status_keeps_its_value(self):
        [event] = events_of("template_status.json")

        assert event.value["event"] == "APPROVED"
        assert event.value["message_template_name"] == "recordatorio_turno"

    def test_business_app_echo_is_not_an_inbound_message(self):
        events = events_of("smb_message_echoes.json")

        assert not any(isinstance(event, InboundMessage) for event in events)
        [event] = events
        assert event.value["message_echoes"][0]["to"] == MARTA_WA_ID
        assert event.value["message_echoes"][0]["text"]["body"].startswith("Hola Marta, soy Laura")


def with_extra_fields(node: Any) -> Any:
    """A copy with an unknown field added to every object, at every depth."""
    if isinstance(node, dict):
        result = {key: with_extra_fields(value) for key, value in node.items()}
        result["x_future_field"] = {"nested": [1, "two", None, {"deep": True}]}
        result["json"] = "a name that shadows a pydantic method"
        return result
    if isinstance(node, list):
        return [with_extra_fields(item) for item in node]
    return node


def summary(event: Any) -> tuple[Any, ...]:
    if isinstance(event, InboundMessage):
        return ("in", event.wamid, event.type, event.text, event.user_key, event.wa_id, event.user_id,
                event.contact_name, event.wa_timestamp, event.wants_reply)
    if isinstance(event, StatusUpdate):
        return ("status", event.wamid, event.status, event.timestamp, event.recipient,
                [error.get("code") for error in event.errors])
    if isinstance(event, OtherChange):
        return ("other", event.field, event.phone_number_id)
    return ("malformed", event.field)


class TestTolerance:
    @pytest.mark.parametrize("name", sorted(COVERED))
    def test_unknown_fields_everywhere_change_nothing(self, name: str):
        plain = load_delivery(name, WABA_ID, PHONE_NUMBER_ID)

        expected = [summary(event) for event in events_from(plain)]
        got = [summary(event) for event in events_from(with_extra_fields(plain))]

        assert got == expected
        assert all(kind != "malformed" for kind, *_ in got)

    def test_unknown_fields_are_kept_in_the_payload(self):
        document = load_delivery("text.json", WABA_ID, PHONE_NUMBER_ID)
        first_messages(document)[0]["from_logical_id"] = "131"

        [event] = events_from(document)

        assert event.payload["from_logical_id"] == "131"

    def test_message_without_id_is_malformed_and_its_siblings_still_parse(self):
        document = load_delivery("several_messages.json", WABA_ID, PHONE_NUMBER_ID)
        del first_messages(document)[1]["id"]

        events = events_from(document)

        assert [type(event) for event in events] == [InboundMessage, Malformed, InboundMessage]
        assert events[0].text == "hola"
        assert events[2].text == "¿hasta qué hora atienden hoy?"
        assert events[1].field == "messages"
        assert events[1].waba_id == WABA_ID
        assert events[1].phone_number_id == PHONE_NUMBER_ID

    def test_message_that_is_not_an_object_is_malformed_and_its_siblings_still_parse(self):
        document = load_delivery("several_messages.json", WABA_ID, PHONE_NUMBER_ID)
        first_messages(document)[0] = "not a message"

        events = events_from(document)

        assert [type(event) for event in events] == [Malformed, InboundMessage, InboundMessage]
        assert [event.text for event in events[1:]] == ["una consulta", "¿hasta qué hora atienden hoy?"]

    def test_message_with_empty_id_is_malformed(self):
        document = load_delivery("several_messages.json", WABA_ID, PHONE_NUMBER_ID)
        first_messages(document)[1]["id"] = ""

        events = events_from(document)

        assert [type(event) for event in events] == [InboundMessage, Malformed, InboundMessage]

    def test_message_naming_no_sender_is_malformed(self):
        document = load_delivery("text.json", WABA_ID, PHONE_NUMBER_ID)
        del document["entry"][0]["changes"][0]["value"]["contacts"]
        message = first_messages(document)[0]
        del message["from"]
        del message["from_user_id"]

        [event] = events_from(document)

        assert isinstance(event, Malformed)
        assert event.field == "messages"
        assert "wamid.HBgNNTQ5MTE1NTU1MDAwMRUCABIYFjNFQjAzNzJFQTA4Q0FCMzNFNzFDMDIA" in event.detail

    def test_message_naming_no_sender_among_two_contacts_is_malformed_and_siblings_parse(self):
        document = load_delivery("multi_entry.json", WABA_ID, PHONE_NUMBER_ID)
        anonymous = document["entry"][0]["changes"][0]["value"]["messages"][0]
        del anonymous["from"]
        del anonymous["from_user_id"]

        events = events_from(document)

        assert [type(event) for event in events] == [Malformed, InboundMessage, StatusUpdate, InboundMessage]
        assert events[1].user_key == JULIAN_WA_ID
        assert events[3].text == "Es el número 4471"

    def test_unknown_message_type_keeps_its_own_object_in_the_payload(self):
        [event] = events_of("unknown_type.json")

        assert event.type == "some_future_type"
        assert event.payload["some_future_type"]["label"] == "forward-compatible payload"
        assert event.wants_reply is True

    def test_unreadable_timestamp_gives_none_not_a_failure(self):
        document = load_delivery("text.json", WABA_ID, PHONE_NUMBER_ID)
        first_messages(document)[0]["timestamp"] = "soon"

        [event] = events_from(document)

        assert isinstance(event, InboundMessage)
        assert event.wa_timestamp is None
        assert event.text == "Hola! ¿Tienen turnos para mañana a la tarde?"

    def test_input_document_is_not_modified(self):
        document = load_delivery("multi_entry.json", WABA_ID, PHONE_NUMBER_ID)
        before = copy.deepcopy(document)

        events_from(document)

        assert document == before
