"""Settings of knowledge search (to be folded into core/config.py's Settings)."""

from __future__ import annotations

from typing import Self

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_EMBEDDING_MODEL = "text-embedding-3-small"


class KnowledgeSettings(BaseSettings):
    """Variables of knowledge search; OPENAI_* are the global ones, read here too so this stands alone."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)

    pinecone_api_key: SecretStr | None = None
    pinecone_index_host: str | None = None
    embedding_model: str = DEFAULT_EMBEDDING_MODEL
    embedding_dimensions: int | None = Field(default=None, gt=0)
    knowledge_min_score: float | None = Field(default=None, ge=0)
    knowledge_top_k: int = Field(default=3, ge=1, le=20)
    knowledge_timeout_seconds: float = Field(default=10.0, gt=0)
    openai_api_key: SecretStr | None = None
    openai_base_url: str | None = None
    clients_package: str = "clients"

    @field_validator("pinecone_api_key", "pinecone_index_host", "openai_api_key", "openai_base_url",
                     "embedding_dimensions", "knowledge_min_score", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("pinecone_index_host", "openai_base_url")
    @classmethod
    def _strip_slash(cls, value: str | None) -> str | None:
        return value.strip().rstrip("/") if value else value

    @model_validator(mode="after")
    def _pinecone_pair(self) -> Self:
        if (self.pinecone_api_key is None) != (self.pinecone_index_host is None):
            missing = "PINECONE_INDEX_HOST" if self.pinecone_index_host is None else "PINECONE_API_KEY"
            raise ValueError(f"{missing} must be set too: Pinecone needs both PINECONE_API_KEY and PINECONE_INDEX_HOST")
        return self

    @property
    def uses_pinecone(self) -> bool:
        return self.pinecone_api_key is not None and self.pinecone_index_host is not None
