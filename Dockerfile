# mnistfc with TensorFlow for `docker run --gpus all`: CUDA and cuDNN come as NVIDIA's pip
# wheels (tensorflow[and-cuda]), the driver from the host through --gpus.
#
#   docker build -t mnistfc:0.1.0 -t mnistfc:latest .                  # CUDA (default)
#   docker build --build-arg TF_VARIANT=cpu -t mnistfc:0.1.0-cpu .     # CPU only, smaller
#   docker run --gpus all -v "$PWD/data:/data" -v "$PWD/results:/results" mnistfc train --out /results/train
#
# BASE_IMAGE: any Debian-like image whose `python3` is CPython 3.11 with the venv module
# (CI and containers/build_local.sh use a debootstrapped bookworm, no registry needed).
# Exact versions: containers/constraints.txt (regenerate with containers/lock.sh).
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}

# cuda: tensorflow[and-cuda]; cpu: tensorflow, the same wheel without NVIDIA's CUDA wheels.
# On Linux it holds GPU kernels but no CUDA libraries. tensorflow-cpu would make the image
# ~470 MB smaller, but it is not the `tensorflow` mnistfc requires (`pip check` would fail).
# Both at the version in constraints.txt.
ARG TF_VARIANT=cuda

ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    LANG=C.UTF-8 \
    PYTHONUNBUFFERED=1

# Dependencies first, in their own layer: a source change does not reinstall TensorFlow.
# A venv, because Debian's own python3 refuses pip installs outside one (PEP 668).
# In the same layer, what no run reads goes: TensorFlow's C++ headers (410 MB, for compiling
# custom ops) and the test suites of numpy, pandas, matplotlib and h5py (65 MB; their
# `testing` modules stay). The bytecode (150 MB) stays: Apptainer's and Charliecloud's images
# are read-only, so without it every process would compile what it imports again (`import
# tensorflow` took 9-11 s instead of 3.2-3.7 s here).
COPY containers/requirements.txt containers/constraints.txt /tmp/pins/
RUN set -eu; \
    case "$TF_VARIANT" in \
        cuda) tf="tensorflow[and-cuda]" ;; \
        cpu) tf="tensorflow" ;; \
        *) echo "TF_VARIANT must be cuda or cpu, not '$TF_VARIANT'" >&2; exit 2 ;; \
    esac; \
    python3 -m venv "$VIRTUAL_ENV"; \
    pip install --no-cache-dir --disable-pip-version-check -c /tmp/pins/constraints.txt pip; \
    pip install --no-cache-dir --disable-pip-version-check -c /tmp/pins/constraints.txt \
        -r /tmp/pins/requirements.txt "$tf"; \
    site=$(python3 -c 'import sysconfig; print(sysconfig.get_path("purelib"))'); \
    rm -rf "$site/tensorflow/include" "$site/pandas/tests" "$site/matplotlib/tests" \
        "$site/h5py/tests"; \
    find "$site/numpy" -depth -type d -name tests -exec rm -rf {} +; \
    rm -rf /tmp/pins

# Any uid may run it (docker run --user "$(id -u):$(id -g)" to own what lands in a bind
# mount): HOME is fixed and open to all, for Keras's and Matplotlib's caches.
RUN useradd --create-home --uid 1000 --user-group --shell /bin/bash mnistfc \
    && chmod 1777 /home/mnistfc \
    && mkdir -p /data /results \
    && chown mnistfc:mnistfc /data /results

# Must equal mnistfc.__version__ (the build checks it). Declared this late, like the labels'
# args, so that a new version or commit does not invalidate the dependency layer's cache.
ARG VERSION=0.1.0
COPY pyproject.toml README.md /tmp/src/
COPY mnistfc /tmp/src/mnistfc
# `pip check`: every installed distribution's requirements are met, mnistfc's included.
RUN pip install --no-cache-dir --disable-pip-version-check --no-deps /tmp/src \
    && rm -rf /tmp/src \
    && python3 -c "import sys, mnistfc; v = mnistfc.__version__; sys.exit(0 if v == '${VERSION}' else f'mnistfc is {v}, the VERSION build arg ${VERSION}')" \
    && pip check --disable-pip-version-check

# Specs and cluster profiles, so `mnistfc sweep jobs/grid.toml` and `mnistfc study` work here.
COPY jobs /opt/mnistfc/jobs

ARG BASE_IMAGE
ARG REVISION=unknown
LABEL org.opencontainers.image.title="mnistfc" \
      org.opencontainers.image.description="Hyperparameter studies of small fully connected Keras networks on MNIST (TensorFlow ${TF_VARIANT})" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.base.name="${BASE_IMAGE}" \
      mnistfc.tf-variant="${TF_VARIANT}"

ENV HOME=/home/mnistfc \
    MNISTFC_DATA_DIR=/data \
    MNISTFC_IMAGE="mnistfc:${VERSION}-${TF_VARIANT}"
# By number (the mnistfc user made above): a host or Kubernetes' runAsNonRoot need not
# resolve a name to know it is not root.
USER 1000:1000
WORKDIR /opt/mnistfc
VOLUME ["/data", "/results"]
ENTRYPOINT ["mnistfc"]
CMD ["--help"]
