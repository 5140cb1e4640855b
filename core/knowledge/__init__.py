"""Knowledge search: a client's `knowledge/*.md` files, indexed locally (BM25) or in Pinecone."""

from core.knowledge.base import Document, Passage, Retriever, SyncReport
from core.knowledge.documents import clients_dir, knowledge_dir, load_documents, split_passages
from core.knowledge.factory import build_retriever
from core.knowledge.lexical import LexicalRetriever
from core.knowledge.settings import KnowledgeSettings
from core.knowledge.tool import best_answer, search_knowledge

__all__ = ["Document", "KnowledgeSettings", "LexicalRetriever", "Passage", "Retriever", "SyncReport", "best_answer",
           "build_retriever", "clients_dir", "knowledge_dir", "load_documents", "search_knowledge",
           "split_passages"]
