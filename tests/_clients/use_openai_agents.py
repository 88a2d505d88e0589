"""openai-agents with an OpenAI-compatible endpoint (its docs' "other model providers" page): the
default client reads OPENAI_BASE_URL and OPENAI_API_KEY; Metis serves Chat Completions only."""
import os

from agents import Agent, Runner, set_default_openai_api

set_default_openai_api("chat_completions")
agent = Agent(name="Assistant", instructions="You are a helpful assistant.", model=os.environ["MODEL_NAME"])
print(Runner.run_sync(agent, "Hello").final_output)
