"""The console's words in English (the source) and Spanish (es-AR): one catalogue, the language negotiated per
request from the account's choice or the browser's Accept-Language."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

Language = Literal["en", "es"]
LANGUAGES: dict[Language, str] = {"en": "English", "es": "Español"}
MONTHS: dict[Language, tuple[str, ...]] = {
    "en": ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"),
    "es": ("ene", "feb", "mar", "abr", "may", "jun", "jul", "ago", "sep", "oct", "nov", "dic"),
}

# Each English text the console shows, in Spanish as spoken in Argentina (voseo). A text missing here is shown in
# English; tests/test_console_language.py checks that every text a template names is here.
SPANISH: dict[str, str] = {
    # the bar, tabs and login
    "Console": "Consola", "WhatsApp bots": "Bots de WhatsApp", "Log out": "Salir", "Inbox": "Bandeja",
    "inbox": "bandeja", "Dashboard": "Panel", "Playground": "Probador", "Clients": "Clientes", "Log in": "Ingresar",
    "Email": "Email", "Password": "Contraseña", "Back to the console": "Volver a la consola",
    "admin": "admin", "operator": "operador", "viewer": "lector",
    # the inbox
    "All": "Todas", "Needs attention": "Requiere atención", "Taken over": "Tomadas",
    "Search name, number or text": "Buscar nombre, número o texto", "unread messages": "mensajes sin leer",
    "new message": "mensaje nuevo", "No conversations match.": "Ninguna conversación coincide.",
    "No conversations.": "No hay conversaciones.", "newer": "más nuevas", "older": "más viejas",
    "needs attention": "requiere atención", "taken over": "tomada por una persona", "bot answering": "el bot responde",
    "waiting for the person": "esperando a la persona",
    # a conversation
    "Take over": "Tomar", "Give back to the bot": "Devolver al bot",
    "Clear “needs attention”": "Quitar “requiere atención”",
    "24 h window open: free-form replies reach {name} until {time} UTC ({left} left).":
        "Ventana de 24 h abierta: las respuestas libres le llegan a {name} hasta el {time} UTC (quedan {left}).",
    "24 h window closed since {time} UTC: only an approved template reaches {name}.":
        "Ventana de 24 h cerrada desde el {time} UTC: a {name} solo le llega una plantilla aprobada.",
    "No message from {name} yet: only an approved template reaches them.":
        "{name} todavía no escribió: solo le llega una plantilla aprobada.",
    "Send a template": "Enviar una plantilla", "(the window is closed)": "(la ventana está cerrada)",
    "{client} has no approved template (they are synced from WhatsApp Manager).":
        "{client} no tiene plantillas aprobadas (se sincronizan desde WhatsApp Manager).",
    "Choose": "Elegir", "e.g.": "p. ej.", "Send template": "Enviar plantilla", "Write to {name}": "Escribile a {name}",
    "Take over to answer, or write now (the bot keeps answering)":
        "Tomá la conversación para responder, o escribí ahora (el bot sigue respondiendo)",
    "Send": "Enviar", "No messages yet.": "Todavía no hay mensajes.", "category": "categoría", "tokens": "tokens",
    "bot": "bot", "pending": "pendiente", "sent": "enviado", "sandbox": "sandbox", "delivered": "entregado",
    "read": "leído", "failed": "falló",
    "Tags": "Etiquetas", "no tags": "sin etiquetas", "new tag": "etiqueta nueva", "Add tag": "Agregar etiqueta",
    "Remove the tag {tag}": "Quitar la etiqueta {tag}", "Note on {name}": "Nota sobre {name}",
    "Only staff see it; the bot does not.": "Solo la ve el equipo; el bot no.", "Save note": "Guardar nota",
    # the dashboard
    "The bot is": "El bot está", "on": "encendido", "off": "apagado",
    "It answers every new message that no person took over.":
        "Responde cada mensaje nuevo que ninguna persona haya tomado.",
    "New messages wait for a person; nothing earlier is answered when it is switched back on.":
        "Los mensajes nuevos esperan a una persona; al encenderlo no se responde nada anterior.",
    "Switch the bot off": "Apagar el bot", "Switch the bot on": "Encender el bot", "Today": "Hoy",
    "Last 30 days": "Últimos 30 días", "Conversations": "Conversaciones", "Messages in": "Mensajes recibidos",
    "Replies sent": "Respuestas enviadas", "bot and operators": "del bot y de operadores", "Fallbacks": "Fallbacks",
    "the bot could not answer": "el bot no pudo responder", "Tokens": "Tokens",
    "in + out, {today} / {month} model calls": "entrada + salida, {today} / {month} llamadas al modelo",
    "Cost": "Costo", "unknown": "desconocido", "no price for {models}": "sin precio para {models}",
    # the playground
    "Saved prompt": "Prompt guardado", "Edited prompt": "Prompt editado",
    "the bot is answering…": "el bot está respondiendo…", "Nothing yet: write below.": "Nada todavía: escribí abajo.",
    "{client} is live: its replies go to real WhatsApp users through the Graph API, and it has no sandbox number, so "
    "the playground cannot talk to it (a tester's message would be answered for real, and its tools would record "
    "leads and email staff). Try the bot on a copy of the client in sandbox mode (without ACCESS_TOKEN, e.g. on a "
    "laptop with ./scripts/serve).":
        "{client} está en vivo: sus respuestas van a usuarios reales de WhatsApp por la Graph API y no tiene número "
        "de sandbox, así que el probador no puede hablarle (le respondería de verdad a quien prueba, y sus "
        "herramientas registrarían leads y mandarían emails al equipo). Probá el bot en una copia del cliente en modo "
        "sandbox (sin ACCESS_TOKEN, p. ej. en una notebook con ./scripts/serve).",
    "You write as a WhatsApp user to {client}'s sandbox number; the bot answers through the real webhook, debounce "
    "and model. Nothing is sent to WhatsApp. Edit the prompt to compare: each message then goes to both "
    "conversations.":
        "Escribís como un usuario de WhatsApp al número de sandbox de {client}; el bot responde por el webhook, el "
        "debounce y el modelo reales. No se envía nada a WhatsApp. Editá el prompt para comparar: cada mensaje va "
        "entonces a las dos conversaciones.",
    "No OPENAI_API_KEY: the offline responder answers, and an edited prompt changes nothing.":
        "Sin OPENAI_API_KEY responde el modo offline, y un prompt editado no cambia nada.",
    "System prompt (edit to try it; never saved to the client)":
        "Prompt de sistema (editalo para probarlo; nunca se guarda en el cliente)",
    "Write as a customer would": "Escribí como lo haría un cliente",
    # the admin page
    "Client": "Cliente", "Numbers": "Números", "Sends": "Envía", "Model": "Modelo", "Health": "Estado",
    "Last error": "Último error", "bot off": "bot apagado", "none": "ninguno", "ok": "ok", "check": "revisar",
    # refusals the pages show
    "Wrong email or password.": "Email o contraseña incorrectos.",
    "The form expired; please log in again.": "El formulario venció; ingresá de nuevo.",
    "Too many failed logins: wait a few minutes and try again.":
        "Demasiados intentos fallidos: esperá unos minutos y probá de nuevo.",
    "The form expired; reload the page and try again.": "El formulario venció; recargá la página y probá de nuevo.",
    "No such conversation.": "No existe esa conversación.",
    "This account can read conversations but not act on them.":
        "Esta cuenta puede leer conversaciones pero no actuar sobre ellas.",
    "This account can read the dashboard but not switch the bot.":
        "Esta cuenta puede ver el panel pero no encender ni apagar el bot.",
    "This account's client is not served here.": "El cliente de esta cuenta no se atiende acá.",
    "The playground is for operators and admins.": "El probador es para operadores y admins.",
    "The admin page is for the platform's admins.": "La página de clientes es para los admins de la plataforma.",
    "Write something to send.": "Escribí algo para enviar.",
    "Say what to change: edit=tag-add, tag-remove or notes.":
        "Indicá qué cambiar: edit=tag-add, tag-remove o notes.",
    "A parameter holds a NUL character, which WhatsApp does not take.":
        "Un parámetro tiene un carácter NUL, que WhatsApp no acepta.",
    "Say whether the bot is to be on or off (enabled=true|false).":
        "Indicá si el bot queda encendido o apagado (enabled=true|false).",
    "This client is live: the playground only talks to clients in sandbox mode.":
        "Este cliente está en vivo: el probador solo habla con clientes en modo sandbox.",
    "Write a message to send (text, no NUL characters).": "Escribí un mensaje para enviar (texto, sin caracteres NUL).",
    "The message was not taken: try again in a moment.": "El mensaje no se tomó: probá de nuevo en un momento.",
}
CATALOGUES: dict[Language, dict[str, str]] = {"en": {}, "es": SPANISH}


class Translator:
    """`_("text", name=value)` in the templates: the text in the request's language, its {fields} filled in."""

    def __init__(self, lang: Language) -> None:
        self.lang = lang
        self._words = CATALOGUES[lang]

    def __call__(self, text: str | None, **values: Any) -> str:
        if not text:
            return ""
        said = self._words.get(text, text)
        return said.format(**values) if values else said

    @property
    def html_lang(self) -> str:
        return "es-AR" if self.lang == "es" else "en"

    @property
    def choices(self) -> list[tuple[str, str]]:
        return [(code, "ES" if code == "es" else "EN") for code in LANGUAGES]

    def day(self, value: date) -> str:
        return f"{value.day:02d} {MONTHS[self.lang][value.month - 1]}"

    def when(self, value: datetime) -> str:
        return f"{self.day(value)} {value.hour:02d}:{value.minute:02d}"


def negotiate(accept_language: str | None, chosen: str | None = None) -> Language:
    """The account's choice when it made one; else the browser's most wanted of Spanish and English; else English."""
    if chosen in LANGUAGES:
        return chosen  # type: ignore[return-value]
    best: tuple[float, int, Language] | None = None
    for position, part in enumerate((accept_language or "").split(",")[:20]):
        tag, _, params = part.strip().partition(";")
        code = tag.strip().lower().split("-")[0]
        if code not in LANGUAGES:
            continue
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                continue
        if quality > 0 and (best is None or (quality, -position) > (best[0], best[1])):
            best = (quality, -position, code)  # type: ignore[assignment]
    return best[2] if best else "en"
