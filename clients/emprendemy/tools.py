"""Tools of the emprendemy client: the course catalogue (read from the store) and leads for the sales team."""

from __future__ import annotations

import logging
import re
from datetime import date

from pydantic import ValidationError

from clients.emprendemy.catalogue import DOCUMENT, Catalogue, Course, find, search
from core.llm.tools import ToolContext, ToolError
from core.whatsapp.rich import ListMessage, Row, Section

log = logging.getLogger("clients.emprendemy")

DAYS = ["lunes", "martes", "miércoles", "jueves", "viernes", "sábado", "domingo"]
MONTHS = ["enero", "febrero", "marzo", "abril", "mayo", "junio", "julio", "agosto", "septiembre", "octubre",
          "noviembre", "diciembre"]

# A real-looking address: local part without spaces or leading, trailing or doubled dots; a domain with a dot
# and a top-level domain of letters.
_EMAIL = re.compile(r"^(?!\.)(?!.*\.\.)[A-Za-z0-9._%+'-]+(?<!\.)@"
                    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}$")
NOT_FOUND = ("No hay ningún curso {what} en el catálogo de Emprendemy: ese curso no existe. No lo inventes; "
             "decíselo al usuario y ofrecé los que sí existen: {names}.")


def price(amount: int) -> str:
    return "$" + f"{amount:,}".replace(",", ".")


def long_date(day: date) -> str:
    return f"{DAYS[day.weekday()]} {day.day} de {MONTHS[day.month - 1]} de {day.year} ({day.isoformat()})"


async def load_courses(ctx: ToolContext) -> list[Course]:
    data = await ctx.get_document(DOCUMENT)
    if data is None:
        raise ToolError("the course catalogue is not available right now; say so and offer that a person will answer")
    try:
        return Catalogue.model_validate(data).root
    except ValidationError:
        log.exception("emprendemy.bad_catalogue", extra={"client": ctx.client})
        raise ToolError("the course catalogue cannot be read right now; say so and offer that a person will "
                        "answer") from None


def _names(courses: list[Course]) -> str:
    return "; ".join(course.name for course in courses)


def _line(course: Course) -> str:
    return (f"- {course.name} (id: {course.id}): {course.modality}, {course.duration}, {price(course.price_ars)}, "
            f"próximo inicio {long_date(course.next_start)}")


def details(course: Course) -> str:
    lines = [
        f"Curso: {course.name} (id: {course.id})",
        f"De qué se trata: {course.summary}",
        f"Precio: {price(course.price_ars)} (pesos argentinos, el curso completo)",
        f"Duración: {course.duration}",
        f"Modalidad: {course.modality}",
        f"Próximo inicio: {long_date(course.next_start)}",
        f"Inscripción: {course.enrollment_url}",
    ]
    if course.topics:
        lines.insert(2, f"Temas: {', '.join(course.topics)}")
    return "\n".join(lines)


async def _resolve(given: str, ctx: ToolContext) -> Course:
    courses = await load_courses(ctx)
    course, candidates = find(courses, given)
    if course is not None:
        return course
    if len(candidates) > 1:
        raise ToolError(f"«{given}» puede ser más de un curso: {_names(candidates)}. Preguntale al usuario cuál.")
    raise ToolError(NOT_FOUND.format(what=f"llamado «{given}»", names=_names(courses)))


async def list_courses(*, ctx: ToolContext) -> str:
    """List every course Emprendemy offers (name, id, modality, duration, price and next start date).

    This catalogue is the only source about courses: a course not listed here does not exist."""
    courses = await load_courses(ctx)
    return f"Catálogo de Emprendemy: {len(courses)} cursos, y no hay otros.\n" + "\n".join(map(_line, courses))


def _short(name: str, limit: int) -> str:
    """A course name within a list row's title limit, cut at a word."""
    if len(name) <= limit:
        return name
    return name[:limit - 1].rsplit(" ", 1)[0].rstrip(" ,;:") + "…"


async def offer_courses(*, ctx: ToolContext) -> str:
    """Send the user the courses as a WhatsApp list to tap and choose from (name, price and next start).

    Use it when the user wants to see the courses to pick one; when they choose, their reply names the course."""
    courses = sorted(await load_courses(ctx), key=lambda course: course.next_start)
    shown = courses[:10]  # a WhatsApp list holds at most 10 rows
    rows = [Row(id=course.id, title=_short(course.name, 24),
                description=f"{course.name} · {price(course.price_ars)}"[:72]) for course in shown]
    sent = ctx.reply_rich(ListMessage(body="Estos son nuestros cursos. Tocá «Ver cursos» y elegí el que te interesa.",
                                      button="Ver cursos", sections=[Section(rows=rows)]))
    left = f" Los otros {len(courses) - 10} no entraban en la lista." if len(courses) > 10 else ""
    return sent + left


async def search_courses(query: str, *, ctx: ToolContext) -> str:
    """Search the course catalogue by topic or words of the name, e.g. "marketing", "excel", "monotributo".

    Case and accents do not matter. Answers with the matching courses, or says that there is none."""
    courses = await load_courses(ctx)
    found = search(courses, query)
    if not found:
        return NOT_FOUND.format(what=f"sobre «{query}»", names=_names(courses))
    return f"Cursos que coinciden con «{query}»:\n" + "\n".join(map(_line, found))


async def course_details(course: str, *, ctx: ToolContext) -> str:
    """Everything about one course: summary, topics, price, duration, modality, next start date and enrollment URL.

    `course` is its id (e.g. "marketing-digital") or its name. Says so when no such course exists."""
    return details(await _resolve(course, ctx))


def _clean_name(name: str) -> str:
    cleaned = " ".join(name.split())
    if not cleaned or not any(char.isalpha() for char in cleaned):
        raise ToolError("the name is empty: ask the user for their name before registering them")
    if len(cleaned) > 100:
        raise ToolError("the name is too long (over 100 characters): ask the user for just their name")
    return cleaned


def _clean_email(email: str) -> str:
    cleaned = email.strip().strip("<>").strip()
    if len(cleaned) > 254 or not _EMAIL.fullmatch(cleaned):
        raise ToolError(f"«{email}» is not a valid email address (it should look like nombre@dominio.com): nothing "
                        "was registered. Ask the user to check it and send it again.")
    local, _, domain = cleaned.rpartition("@")
    return f"{local}@{domain.lower()}"


async def register_lead(name: str, email: str, course: str, *, ctx: ToolContext) -> str:
    """Register someone interested in a course so an adviser contacts them, and notify the sales team by email.

    Call it only with the user's own name, email and the course they want (its id or name), once they gave all
    three. If it answers with an error, nothing was registered: tell the user what to fix."""
    cleaned_name = _clean_name(name)
    cleaned_email = _clean_email(email)
    chosen = await _resolve(course, ctx)
    lead = {"name": cleaned_name, "email": cleaned_email, "course_id": chosen.id, "course_name": chosen.name,
            "whatsapp": ctx.user_key, "contact_name": ctx.contact_name}
    ref = await ctx.add_record("lead", lead)
    if not ref.new:  # the model asked twice: the lead and its email are there already
        return (f"{cleaned_name} ({cleaned_email}) ya estaba registrado como interesado en «{chosen.name}» "
                f"(referencia {ref}): no hace falta registrarlo de nuevo.")
    profile = f" (perfil de WhatsApp: {ctx.contact_name})" if ctx.contact_name else ""
    body = "\n".join([
        "Nuevo interesado registrado por el asistente de WhatsApp.",
        "",
        f"Nombre: {cleaned_name}",
        f"Email: {cleaned_email}",
        f"Curso: {chosen.name} ({chosen.id})",
        f"WhatsApp: {ctx.user_key}{profile}",
        f"Conversación: {ctx.conversation_id} (GET /api/v1/{ctx.client}/conversations/{ctx.conversation_id}/messages)",
        f"Referencia del lead: {ref}",
    ])
    ctx.notify_staff(f"Nuevo lead: {cleaned_name} - {chosen.name}", body, reply_to=cleaned_email)
    log.info("emprendemy.lead_registered", extra={"client": ctx.client, "conversation": ctx.conversation_id,
                                                   "lead": ref, "course": chosen.id})
    return (f"Listo: {cleaned_name} ({cleaned_email}) quedó registrado como interesado en «{chosen.name}» "
            f"(referencia {ref}). Un asesor le va a escribir a ese email. Link de inscripción: "
            f"{chosen.enrollment_url}")
