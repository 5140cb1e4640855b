"""Demo shop bot: a neighbourhood store that answers questions and tells its opening hours."""

from clients.demo import prompts, tools
from clients.demo.settings import DemoSettings
from core.clients import ClientSpec
from core.llm.instructions import SinglePrompt

client = ClientSpec(
    name="demo",
    settings_class=DemoSettings,
    instructions=SinglePrompt(prompts.INSTRUCTIONS),
    tools=[tools.business_hours],
    offline_message=prompts.OFFLINE_MESSAGE,
)
