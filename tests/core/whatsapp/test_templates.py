"""Templates as Meta lists them: the parameters they take, what a send must give, and the Cloud API message."""

from __future__ import annotations

import pytest

from core.whatsapp.templates import Template, TemplateError, from_graph, placeholders, status_of_event

# Shapes as GET /{waba-id}/message_templates returns them (Meta's template docs; pywa types/templates.py).
POSITIONAL = {
    "id": "1689556908129832", "name": "recordatorio_turno", "language": "es_AR", "status": "APPROVED",
    "category": "UTILITY", "parameter_format": "POSITIONAL",
    "components": [
        {"type": "HEADER", "format": "TEXT", "text": "Turno {{1}}", "example": {"header_text": ["confirmado"]}},
        {"type": "BODY", "text": "Hola {{1}}, tu turno es el {{2}} a las {{3}}.",
         "example": {"body_text": [["Marta", "lunes", "17:30"]]}},
        {"type": "FOOTER", "text": "Almacén Demo"},
        {"type": "BUTTONS", "buttons": [{"type": "QUICK_REPLY", "text": "Cancelar"},
                                        {"type": "URL", "text": "Ver turno", "url": "https://demo.example/t/{{1}}",
                                         "example": ["https://demo.example/t/abc"]}]},
    ],
}
NAMED = {
    "id": "2", "name": "pedido_listo", "language": "es_AR", "status": "APPROVED", "category": "UTILITY",
    "parameter_format": "NAMED", "quality_score": {"score": "GREEN"},
    "components": [
        {"type": "HEADER", "format": "IMAGE", "example": {"header_handle": ["https://x/4::aW"]}},
        {"type": "BODY", "text": "{{nombre}}, tu pedido {{pedido}} está listo. Gracias, {{nombre}}.",
         "example": {"body_text_named_params": [{"param_name": "nombre", "example": "Marta"},
                                                {"param_name": "pedido", "example": "#123"}]}},
        {"type": "BUTTONS", "buttons": [{"type": "COPY_CODE", "example": ["DESC10"]}]},
    ],
}


def test_placeholders_positional_by_number_and_named_by_first_use():
    assert placeholders("{{2}} y {{1}} y {{10}} y {{2}}") == ["1", "2", "10"]
    assert placeholders("{{ nombre }} {{pedido}} {{nombre}}") == ["nombre", "pedido"]
    assert placeholders(None) == []


class TestFromGraph:
    def test_reads_the_fields_and_the_quality(self):
        template = from_graph(NAMED)
        assert (template.name, template.language, template.category, template.status, template.parameter_format,
                template.template_id, template.quality) == ("pedido_listo", "es_AR", "UTILITY", "APPROVED", "NAMED",
                                                            "2", "GREEN")

    def test_an_item_without_name_or_language_is_skipped(self):
        assert from_graph({"name": "x"}) is None and from_graph({"language": "es"}) is None

    def test_status_events(self):
        assert status_of_event("REINSTATED") == "APPROVED" and status_of_event("paused") == "PAUSED"


class TestParameters:
    def test_positional_in_order_header_body_buttons(self):
        params = from_graph(POSITIONAL).parameters()
        assert [p.key for p in params] == ["header.1", "body.1", "body.2", "body.3", "button1.1"]
        assert [p.example for p in params] == ["confirmado", "Marta", "lunes", "17:30", "https://demo.example/t/abc"]

    def test_named_with_a_media_header_and_a_coupon(self):
        params = from_graph(NAMED).parameters()
        assert [(p.key, p.kind) for p in params] == [("header.media", "image"), ("body.nombre", "text"),
                                                     ("body.pedido", "text"), ("button0.coupon_code", "coupon_code")]


class TestBind:
    def test_a_list_must_have_one_value_per_parameter(self):
        with pytest.raises(TemplateError, match=r"takes 5 parameters \(header.1, body.1, body.2, body.3, button1.1\); "
                                                r"2 given"):
            from_graph(POSITIONAL).bind(["a", "b"])

    def test_a_missing_named_parameter_is_named(self):
        with pytest.raises(TemplateError, match="missing parameters body.pedido, button0.coupon_code"):
            from_graph(NAMED).bind({"nombre": "Marta", "media": "https://x/img.jpg"})

    def test_an_unknown_name_is_named(self):
        with pytest.raises(TemplateError, match="has no parameter 'apellido'"):
            from_graph(NAMED).bind({"apellido": "Gómez"})

    def test_an_ambiguous_short_name_asks_for_the_key(self):
        with pytest.raises(TemplateError, match="ambiguous: use one of header.1, body.1, button1.1"):
            from_graph(POSITIONAL).bind({"1": "x"})

    def test_keys_and_short_names_together(self):
        bound = from_graph(POSITIONAL).bind({"header.1": "confirmado", "body.1": "Marta", "2": "lunes", "3": "17:30",
                                             "button1.1": "abc"})
        assert bound["body.2"] == "lunes" and bound["button1.1"] == "abc"


class TestMessage:
    def test_positional_payload(self):
        template = from_graph(POSITIONAL)
        bound = template.bind(["confirmado", "Marta", "lunes", "17:30", "abc"])
        assert template.message(bound) == {
            "name": "recordatorio_turno", "language": {"code": "es_AR"},
            "components": [
                {"type": "header", "parameters": [{"type": "text", "text": "confirmado"}]},
                {"type": "body", "parameters": [{"type": "text", "text": "Marta"}, {"type": "text", "text": "lunes"},
                                                {"type": "text", "text": "17:30"}]},
                {"type": "button", "sub_type": "url", "index": "1", "parameters": [{"type": "text", "text": "abc"}]},
            ]}
        assert template.render(bound) == ("Turno confirmado\nHola Marta, tu turno es el lunes a las 17:30.\n"
                                          "Almacén Demo\n[Cancelar] [Ver turno]")

    def test_named_payload_carries_parameter_names(self):
        template = from_graph(NAMED)
        bound = template.bind({"media": "https://demo.example/p.jpg", "nombre": "Marta", "pedido": "#9",
                               "coupon_code": "DESC10"})
        assert template.message(bound)["components"] == [
            {"type": "header", "parameters": [{"type": "image", "image": {"link": "https://demo.example/p.jpg"}}]},
            {"type": "body", "parameters": [{"type": "text", "text": "Marta", "parameter_name": "nombre"},
                                            {"type": "text", "text": "#9", "parameter_name": "pedido"}]},
            {"type": "button", "sub_type": "copy_code", "index": "0",
             "parameters": [{"type": "coupon_code", "coupon_code": "DESC10"}]},
        ]
        assert template.render(bound) == "[image]\nMarta, tu pedido #9 está listo. Gracias, Marta."

    def test_a_template_without_parameters_sends_no_components(self):
        template = Template("hola", "es", "MARKETING", "APPROVED", [{"type": "BODY", "text": "¡Hola!"}])
        assert template.message(template.bind([])) == {"name": "hola", "language": {"code": "es"}}
