# audioclf serve on CPU. Build:  docker build -t audioclf .
# Run (the model folder mounted read-only; a token, since the container listens beyond its loopback):
#   docker run -p 8000:8000 -v "$PWD/runs/demo:/model:ro" -e AUDIOCLF_TOKEN=change-me audioclf
FROM python:3.11-slim
ENV PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1 HF_HUB_OFFLINE=1
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install ".[serve]" && useradd --create-home audioclf
USER audioclf
EXPOSE 8000
CMD ["audioclf", "serve", "--model", "/model", "--host", "0.0.0.0", "--port", "8000", "--cache-dir", "/home/audioclf/cache"]
