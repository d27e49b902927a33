"""`audioclf serve`: a trained model behind an HTTP API and a web page (FastAPI; the optional ``serve`` extra)."""
