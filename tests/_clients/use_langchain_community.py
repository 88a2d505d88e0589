"""langchain-community's (deprecated) ChatOpenAI: reads OPENAI_API_KEY and OPENAI_API_BASE, else
the openai client's OPENAI_BASE_URL."""
import os
import warnings

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # the package's sunset notice
    from langchain_community.chat_models.openai import ChatOpenAI
warnings.simplefilter("ignore")  # the class's deprecation notice (langchain's import set its own filter)

llm = ChatOpenAI(model=os.environ["MODEL_NAME"])
print(llm.invoke("Hello").content)
