"""Fixtures for knowledge search: a client's Spanish knowledge files and the stand-in servers."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.core.knowledge.fakes import FakeEmbeddings, FakePinecone
from tests.fakes.server import serve

KNOWLEDGE = {
    "horarios.md": """# Horarios y local

## Horarios de atención
Atendemos de lunes a viernes de 9 a 18 h y los sábados de 10 a 13 h. Domingos y feriados, cerrado.

## Dirección
Estamos en Av. Corrientes 1234, CABA, a dos cuadras del subte B (estación Callao).
""",
    "envios.md": """# Envíos

## Zonas y costos
Hacemos envíos a todo el país por Correo Argentino. En CABA el envío es gratis en compras de más de $20.000.

## Tiempos de entrega
Los pedidos al interior tardan entre 3 y 6 días hábiles en llegar.
""",
    "pagos.md": """# Medios de pago

Aceptamos tarjetas de crédito y débito, transferencia bancaria y Mercado Pago.

Con tarjeta de crédito hay 3 cuotas sin interés.
""",
    "talleres.md": """# Talleres de cocina

## Inscripción
La inscripción a los talleres se hace por este WhatsApp con una seña del 50 %. Los cupos son limitados.

## Garantía
Todos los productos de la tienda tienen garantía de un año.
""",
}


@pytest.fixture(autouse=True)
def no_knowledge_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("PINECONE_", "EMBEDDING_", "KNOWLEDGE_", "OPENAI_", "CLIENTS_PACKAGE")):
            monkeypatch.delenv(name)


@pytest.fixture
def clients_root(tmp_path: Path) -> Path:
    """A clients folder with client `acme` and its knowledge files."""
    root = tmp_path / "clients"
    folder = root / "acme" / "knowledge"
    folder.mkdir(parents=True)
    (root / "acme" / "__init__.py").write_text("")
    for name, text in KNOWLEDGE.items():
        (folder / name).write_text(text, encoding="utf-8")
    return root


@pytest.fixture
def pinecone_server() -> Iterator[FakePinecone]:
    fake = FakePinecone()
    with serve(fake.app) as url:
        fake.url = url
        yield fake


@pytest.fixture
def embeddings_server() -> Iterator[FakeEmbeddings]:
    fake = FakeEmbeddings()
    with serve(fake.app) as url:
        fake.url = url + "/v1"
        yield fake
