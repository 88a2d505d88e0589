"""langchain-openai's usage: ChatOpenAI reads OPENAI_API_KEY and OPENAI_BASE_URL (or OPENAI_API_BASE)."""
import os

from langchain_openai import ChatOpenAI

llm = ChatOpenAI(model=os.environ["MODEL_NAME"])
print(llm.invoke("Hello").content)
