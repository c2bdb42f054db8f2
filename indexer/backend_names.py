"""The index backends' names and the help of their options: nothing heavy, so ``indexer --help``
and the API's parser read them without loading FAISS or Milvus (:mod:`indexer.backends` opens indexes)."""

BACKENDS = ("faiss", "milvus")
DEFAULT_BACKEND = "faiss"
BACKEND_HELP = "where the vectors live: faiss (default; files in the index folder) or milvus (a Milvus collection)"
CHECK_BACKEND_HELP = "the backend the index must have (default: whichever its manifest records): faiss or milvus"
MILVUS_URI_HELP = ("the Milvus the collection is on: a Milvus Lite file (NAME.db, opened by one process at a time) or a server "
                   "URL (http://HOST:19530; credentials in $MILVUS_TOKEN)")
