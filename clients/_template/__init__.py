"""__CLIENT__: what this business is, in one line."""

from clients.__CLIENT__ import prompts
from core.clients import ClientSpec
from core.llm.builtin_tools import hand_over_to_person, search_knowledge
from core.llm.instructions import SinglePrompt

client = ClientSpec(
    name="__CLIENT__",
    instructions=SinglePrompt(prompts.INSTRUCTIONS),
    # search_knowledge answers from knowledge/*.md; hand_over_to_person switches the chat to a person
    # (and emails staff when __CLIENT__'s SMTP variables are set). Add the client's own typed functions here.
    tools=[search_knowledge, hand_over_to_person],
    offline_message=prompts.OFFLINE_MESSAGE,
    fallback_message=prompts.FALLBACK_MESSAGE,
)
