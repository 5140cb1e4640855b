"""The WhatsApp Cloud API (Graph API) calls the service makes, on one shared httpx client."""

from __future__ import annotations

import logging
import zlib
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from core.whatsapp.errors import WhatsAppError

log = logging.getLogger("core.whatsapp")

# What a template sync asks for; Meta's default fields may leave parameter_format and quality_score out.
TEMPLATE_FIELDS = "id,name,language,status,category,parameter_format,components,quality_score"
TEMPLATE_PAGE_SIZE = 100
TEMPLATE_MAX_PAGES = 200


class Recipient(Protocol):
    """Who a message goes to: wa_id when known, else the business-scoped user id."""

    wa_id: str | None
    user_id: str | None


def recipient_fields(to: Recipient) -> dict[str, str]:
    # Meta accepts a BSUID in "recipient" where no phone-based wa_id is known (PLATFORM.md §6).
    if to.wa_id:
        return {"to": to.wa_id}
    if to.user_id:
        return {"recipient": to.user_id}
    raise ValueError("recipient has neither wa_id nor user_id")


@dataclass(frozen=True)
class Media:
    content: bytes
    mime_type: str


class WhatsAppSender(Protocol):
    """Acts on behalf of one business number; the live Graph API or the sandbox."""

    async def send_text(self, phone_number_id: str, token: str | None, to: Recipient, body: str) -> str:
        """Send a text message; returns its wamid."""

    async def send_template(self, phone_number_id: str, token: str | None, to: Recipient,
                            template: dict[str, Any], callback_data: str | None = None) -> str:
        """Send a template message (the Cloud API `template` object); returns its wamid. `callback_data` goes as
        biz_opaque_callback_data, which Meta returns in the message's status webhooks."""

    async def send_message(self, phone_number_id: str, token: str | None, to: Recipient, message_type: str,
                           content: dict[str, Any]) -> str:
        """Send a message of another type (interactive, image, document, location) with its Cloud API object;
        returns its wamid."""

    async def mark_read(self, phone_number_id: str, token: str | None, wamid: str, typing: bool) -> None:
        """Mark a message read, optionally showing the typing indicator."""

    async def download_media(self, media_id: str, token: str | None, max_bytes: int) -> Media:
        """Fetch a received media file (id → short-lived URL → bytes), refusing files over `max_bytes`."""


class GraphSender:
    """Talks to the Graph API at `base_url` (Meta's, or a stand-in)."""

    def __init__(self, http: httpx.AsyncClient, base_url: str) -> None:
        self._http = http
        self._base_url = base_url.rstrip("/")

    async def _post(self, phone_number_id: str, token: str | None, body: dict[str, Any]) -> dict[str, Any]:
        if not token:
            raise WhatsAppError("no access token configured for live sending")
        try:
            response = await self._http.post(
                f"{self._base_url}/{phone_number_id}/messages",
                json=body,
                headers={"Authorization": f"Bearer {token}"},
            )
        except httpx.HTTPError as error:
            raise WhatsAppError(f"Graph API unreachable: {type(error).__name__}") from error
        if response.status_code >= 400:
            raise WhatsAppError.from_response(response)
        try:
            return response.json()
        except ValueError as error:
            raise WhatsAppError("Graph API answered with a body that is not JSON", status_code=response.status_code) from error

    async def send_text(self, phone_number_id: str, token: str | None, to: Recipient, body: str) -> str:
        payload = {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            **recipient_fields(to),
            "type": "text",
            "text": {"body": body, "preview_url": False},
        }
        return _wamid(await self._post(phone_number_id, token, payload))

    async def send_template(self, phone_number_id: str, token: str | None, to: Recipient,
                            template: dict[str, Any], callback_data: str | None = None) -> str:
        payload = {"messaging_product": "whatsapp", "recipient_type": "individual", **recipient_fields(to),
                   "type": "template", "template": template}
        if callback_data is not None:
            payload["biz_opaque_callback_data"] = callback_data
        return _wamid(await self._post(phone_number_id, token, payload))

    async def send_message(self, phone_number_id: str, token: str | None, to: Recipient, message_type: str,
                           content: dict[str, Any]) -> str:
        payload = {"messaging_product": "whatsapp", "recipient_type": "individual", **recipient_fields(to),
                   "type": message_type, message_type: content}
        return _wamid(await self._post(phone_number_id, token, payload))

    async def list_templates(self, waba_id: str, token: str | None) -> list[dict[str, Any]]:
        """Every template of a WhatsApp Business Account, following `paging.cursors.after` while `paging.next` is
        given (Meta's cursor pagination)."""
        if not token:
            raise WhatsAppError("no access token configured to list templates")
        items: list[dict[str, Any]] = []
        params: dict[str, str] = {"fields": TEMPLATE_FIELDS, "limit": str(TEMPLATE_PAGE_SIZE)}
        seen: set[str] = set()
        for _ in range(TEMPLATE_MAX_PAGES):
            try:
                response = await self._http.get(f"{self._base_url}/{waba_id}/message_templates", params=params,
                                                headers={"Authorization": f"Bearer {token}"})
            except httpx.HTTPError as error:
                raise WhatsAppError(f"Graph API unreachable: {type(error).__name__}") from error
            if response.status_code >= 400:
                raise WhatsAppError.from_response(response)
            try:
                page = response.json()
                items += [item for item in page.get("data") or [] if isinstance(item, dict)]
                paging = page.get("paging") or {}
                after = (paging.get("cursors") or {}).get("after")
            except (ValueError, AttributeError, TypeError) as error:
                raise WhatsAppError("Graph API answered the template list with an unexpected body") from error
            # Meta gives `next` only when there is a next page; a cursor seen before would loop forever.
            if not paging.get("next") or not after or after in seen:
                return items
            seen.add(after)
            params = {**params, "after": str(after)}
        raise WhatsAppError(f"the template list of WABA {waba_id} has more than {TEMPLATE_MAX_PAGES} pages")

    async def mark_read(self, phone_number_id: str, token: str | None, wamid: str, typing: bool) -> None:
        payload: dict[str, Any] = {"messaging_product": "whatsapp", "status": "read", "message_id": wamid}
        if typing:
            payload["typing_indicator"] = {"type": "text"}
        await self._post(phone_number_id, token, payload)

    async def download_media(self, media_id: str, token: str | None, max_bytes: int) -> Media:
        if not token:
            raise WhatsAppError("no access token configured to download media")
        headers = {"Authorization": f"Bearer {token}"}
        try:
            meta = await self._http.get(f"{self._base_url}/{media_id}", headers=headers)
            if meta.status_code >= 400:
                raise WhatsAppError.from_response(meta)
            info = meta.json()
            if int(info.get("file_size") or 0) > max_bytes:
                raise WhatsAppError(f"media is {info['file_size']} bytes, over the {max_bytes}-byte cap")
            # The URL lives about 5 minutes and needs the same bearer token (WHATSAPP.md §12); only the encodings
            # _read_capped decodes are offered.
            download = self._http.stream("GET", info["url"], headers={**headers, "Accept-Encoding": "gzip, deflate"},
                                         follow_redirects=True)
            async with download as response:
                if response.status_code >= 400:
                    raise WhatsAppError(f"media download answered HTTP {response.status_code}",
                                        status_code=response.status_code)
                content = await _read_capped(response, max_bytes)
                mime = info.get("mime_type") or response.headers.get("content-type", "application/octet-stream")
        except httpx.HTTPError as error:
            raise WhatsAppError(f"media download failed: {type(error).__name__}") from error
        except (KeyError, ValueError, TypeError) as error:
            raise WhatsAppError("the Graph API answered the media lookup without a usable url") from error
        return Media(content, str(mime))


def _wamid(answer: dict[str, Any]) -> str:
    try:
        return str(answer["messages"][0]["id"])
    except (KeyError, IndexError, TypeError) as error:
        raise WhatsAppError("Graph API accepted the message but returned no message id") from error


# zlib window bits per Content-Encoding: gzip framing, or zlib framing for HTTP's "deflate".
_ENCODINGS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


async def _read_capped(response: httpx.Response, max_bytes: int) -> bytes:
    """The body, decoded; refused on a declared length over `max_bytes`, and as soon as it grows past it."""
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise WhatsAppError(f"media download declares {declared} bytes, over the {max_bytes}-byte cap")
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("identity", "", *_ENCODINGS):
        raise WhatsAppError(f"media sent with Content-Encoding {encoding!r}, which cannot be read within the cap")
    # Decoded here, not by httpx: its decoder inflates a whole network chunk at once (a 64 KB chunk of a gzip
    # bomb is ~64 MB); zlib's max_length stops one byte past the cap.
    decoder = zlib.decompressobj(_ENCODINGS[encoding]) if encoding in _ENCODINGS else None
    chunks, sent, size = [], 0, 0
    try:
        async for raw in response.aiter_raw():
            sent += len(raw)
            data = raw if decoder is None else decoder.decompress(raw, max_bytes - size + 1)
            size += len(data)
            if size > max_bytes or sent > max_bytes:
                raise WhatsAppError(f"media is over the {max_bytes}-byte cap")
            chunks.append(data)
        if decoder is not None:
            data = decoder.flush(max_bytes - size + 1)
            if size + len(data) > max_bytes:
                raise WhatsAppError(f"media is over the {max_bytes}-byte cap")
            chunks.append(data)
    except zlib.error as error:
        raise WhatsAppError(f"media body is not valid {encoding}: {error}") from error
    return b"".join(chunks)
