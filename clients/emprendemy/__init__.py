"""Emprendemy: an online course school for entrepreneurs."""

from clients.emprendemy import prompts
from core.clients import ClientSpec
from core.llm.instructions import SinglePrompt

client = ClientSpec(
    name="emprendemy",
    instructions=SinglePrompt(prompts.INSTRUCTIONS),
    offline_message=prompts.OFFLINE_MESSAGE,
)
