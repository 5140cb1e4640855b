"""Almacén Demo: a neighbourhood store in Buenos Aires that answers questions, takes orders and hands over to staff.

Classified instructions: a cheap classifier call picks `saludo`, `consulta`, `soporte` or `humano` each turn, and
that category's prompt and tools answer. `business_hours` is available in every category.
"""

from clients.demo import prompts, tools
from clients.demo.settings import DemoSettings
from core.clients import ClientSpec
from core.llm.builtin_tools import hand_over_to_person, search_knowledge
from core.llm.instructions import Category, ClassifiedPrompts

INSTRUCTIONS = ClassifiedPrompts(
    base=prompts.BASE,
    categories=[
        Category("saludo", prompts.DESCRIPTIONS["saludo"], prompts.SALUDO),
        Category("consulta", prompts.DESCRIPTIONS["consulta"], prompts.CONSULTA, tools=[search_knowledge]),
        Category("soporte", prompts.DESCRIPTIONS["soporte"], prompts.SOPORTE,
                 tools=[search_knowledge, hand_over_to_person]),
        Category("humano", prompts.DESCRIPTIONS["humano"], prompts.HUMANO, tools=[hand_over_to_person]),
    ],
    default="consulta",
)

client = ClientSpec(
    name="demo",
    settings_class=DemoSettings,
    instructions=INSTRUCTIONS,
    tools=[tools.business_hours],
    offline_message=prompts.OFFLINE_MESSAGE,
    fallback_message=prompts.FALLBACK_MESSAGE,
)
