# One image for every Switchboard service; the command picks the service:
#   docker run IMAGE ingress | controller | session | projector
# Multi-stage: wheels are built in `builder`; the final stage gets only the installed virtualenv.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY switchboard ./switchboard
RUN python -m pip wheel --wheel-dir /wheels . \
 && python -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-index --find-links /wheels switchboard \
 && /opt/venv/bin/pip uninstall --yes pip

FROM ${PYTHON_IMAGE} AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# The runtime needs no package manager for Python either: drop pip from the base interpreter.
RUN python -m pip uninstall --yes pip setuptools wheel \
 && groupadd --gid 10001 switchboard \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin switchboard
COPY --from=builder /opt/venv /opt/venv
USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["switchboard"]
CMD ["--help"]
