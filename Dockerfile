# deepdraw in a container (docs/containers.md). CPU build (default):
#   docker build -t deepdraw .
# CUDA build: the same pinned list, torch from PyTorch's CUDA index instead of its CPU index:
#   docker build --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128 -t deepdraw:cuda .
# Run (data and output folders bound from the host):
#   docker run --rm -v "$PWD/runs:/work/runs" -v "$PWD/configs:/work/configs:ro" deepdraw \
#       pipeline configs/demo.toml
FROM python:3.11-slim

ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1 \
    MPLBACKEND=Agg \
    DEEPDRAW_DATA=/opt/deepdraw/data

WORKDIR /opt/deepdraw

# The pinned runtime list of `make install` (requirements/lock.txt, written by requirements/lock.py);
# torch==2.13.0 resolves to the build of TORCH_INDEX (its local label, +cpu or +cu128, ranks first).
COPY requirements/lock.txt requirements/lock.txt
RUN pip install --no-cache-dir --extra-index-url "${TORCH_INDEX}" -r requirements/lock.txt

# deepdraw itself (no dependency resolution: everything it needs is pinned above), shipped data, configs
COPY pyproject.toml README.md LICENSE ./
COPY src src
COPY data data
COPY configs configs
RUN pip install --no-cache-dir --no-deps . \
    && deepdraw --version \
    && useradd --create-home --uid 1000 deepdraw \
    && mkdir -p /work \
    && chown deepdraw /work

USER 1000
WORKDIR /work
ENTRYPOINT ["deepdraw"]
CMD ["--help"]
