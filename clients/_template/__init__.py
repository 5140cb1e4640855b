"""__CLIENT__: what this business is, in one line."""

from clients.__CLIENT__ import prompts
from core.clients import ClientSpec
from core.llm.instructions import SinglePrompt

client = ClientSpec(
    name="__CLIENT__",
    instructions=SinglePrompt(prompts.INSTRUCTIONS),
    tools=[],
    offline_message=prompts.OFFLINE_MESSAGE,
)
