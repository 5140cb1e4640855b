"""Speech to text for voice notes, through OpenAI's transcription endpoint."""

from __future__ import annotations

from typing import Any, Protocol

from openai import AsyncOpenAI

from core.clock import Clock
from core.llm.concurrency import AdaptiveLimiter
from core.llm.ratelimit import call_limited

EXTENSIONS = {"audio/ogg": "ogg", "audio/mpeg": "mp3", "audio/mp4": "m4a", "audio/aac": "m4a", "audio/amr": "amr",
              "audio/wav": "wav", "audio/webm": "webm"}


class Transcriber(Protocol):
    async def transcribe(self, audio: bytes, mime_type: str) -> str:
        """The words spoken in `audio`."""


class OpenAITranscriber:
    def __init__(self, openai: AsyncOpenAI, model: str, limiter: AdaptiveLimiter | None = None,
                 clock: Clock | None = None) -> None:
        self._openai = openai
        self._model = model
        self._limiter = limiter  # the same endpoint as the chat calls: its rate limits count for both
        self._clock = clock

    async def transcribe(self, audio: bytes, mime_type: str) -> str:
        base = mime_type.split(";")[0].strip().lower()
        # A filename with the right extension is how the endpoint detects the format (PLATFORM.md §1).
        name = f"voice.{EXTENSIONS.get(base, 'ogg')}"
        def create() -> Any:
            return self._openai.audio.transcriptions.create(file=(name, audio, base), model=self._model)

        if self._limiter is not None and self._clock is not None:
            result = await call_limited(self._limiter, self._clock, create)
        else:
            result = await create()
        return result.text.strip()
