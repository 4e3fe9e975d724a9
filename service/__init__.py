"""The REST service: FastAPI app over ``retriever`` indexes (``retriever serve``)."""
