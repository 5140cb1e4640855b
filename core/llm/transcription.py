"""Speech to text for voice notes, through OpenAI's transcription endpoint."""

from __future__ import annotations

from typing import Protocol

from openai import AsyncOpenAI

EXTENSIONS = {"audio/ogg": "ogg", "audio/mpeg": "mp3", "audio/mp4": "m4a", "audio/aac": "m4a", "audio/amr": "amr",
              "audio/wav": "wav", "audio/webm": "webm"}


class Transcriber(Protocol):
    async def transcribe(self, audio: bytes, mime_type: str) -> str:
        """The words spoken in `audio`."""


class OpenAITranscriber:
    def __init__(self, openai: AsyncOpenAI, model: str) -> None:
        self._openai = openai
        self._model = model

    async def transcribe(self, audio: bytes, mime_type: str) -> str:
        base = mime_type.split(";")[0].strip().lower()
        # A filename with the right extension is how the endpoint detects the format (PLATFORM.md §1).
        name = f"voice.{EXTENSIONS.get(base, 'ogg')}"
        result = await self._openai.audio.transcriptions.create(file=(name, audio, base), model=self._model)
        return result.text.strip()
