"""langchain-sambanova's README usage: ChatSambaNova reads SAMBANOVA_API_KEY and SAMBANOVA_API_BASE."""
import os

from langchain_sambanova import ChatSambaNova

llm = ChatSambaNova(model=os.environ["MODEL_NAME"])
print(llm.invoke("Hello").content)
