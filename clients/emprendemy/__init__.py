"""Emprendemy: an online course school for entrepreneurs, answering from its course catalogue and taking leads.

The catalogue (`courses.json`) is seeded into the store under `courses` and edited through
`GET/PUT /api/v1/emprendemy/courses`; the tools read it from the store on every call.
"""

from pathlib import Path

from clients.emprendemy import prompts, tools
from clients.emprendemy.catalogue import DOCUMENT
from clients.emprendemy.router import router
from core.clients import ClientSpec
from core.llm.builtin_tools import hand_over_to_person
from core.llm.instructions import SinglePrompt

client = ClientSpec(
    name="emprendemy",
    instructions=SinglePrompt(prompts.INSTRUCTIONS),
    tools=[tools.list_courses, tools.offer_courses, tools.search_courses, tools.course_details, tools.register_lead, hand_over_to_person],
    router=router,
    offline_message=prompts.OFFLINE_MESSAGE,
    fallback_message=prompts.FALLBACK_MESSAGE,
    seed_documents={DOCUMENT: Path(__file__).parent / "courses.json"},
)
