"""llama-index's OpenAILike (llama-index-llms-openai-like): reads OPENAI_API_KEY and OPENAI_API_BASE
only (not OPENAI_BASE_URL); is_chat_model=True sends chat completions, which Metis serves."""
import os

from llama_index.llms.openai_like import OpenAILike

llm = OpenAILike(model=os.environ["MODEL_NAME"], is_chat_model=True)
print(llm.complete("Hello"))
