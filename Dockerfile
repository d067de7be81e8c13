# One image per service, each a target of this file, each holding only its distribution's dependency
# closure as locked in uv.lock:
#   docker build --target ingress -t switchboard-ingress .     (also controller, session, projector, console, cli)
# The `cli` target is the `switchboard` command (replay, calls, policy push, … from a Job or a shell).
# Multi-stage: `builder` installs each closure into its own virtualenv with uv (from the lock, never
# re-resolved); each final stage starts again from the slim Python image and copies one virtualenv.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ARG UV_VERSION=0.13.9
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_NO_CACHE=1 \
    UV_PYTHON_DOWNLOADS=never
RUN python -m pip install "uv==${UV_VERSION}"
WORKDIR /src
COPY pyproject.toml uv.lock ./
COPY shared ./shared
COPY services ./services
COPY emulator ./emulator
COPY cli ./cli
# --no-editable: the workspace's own packages are built into the virtualenv, so /src is not needed later.
RUN for package in switchboard-ingress switchboard-controller switchboard-session switchboard-projector \
                   switchboard-console switchboard; do \
      UV_PROJECT_ENVIRONMENT=/opt/$package uv sync --frozen --no-default-groups --no-editable \
        --package $package --python /usr/local/bin/python || exit 1; \
    done

FROM ${PYTHON_IMAGE} AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# The runtime needs no package manager for Python either: drop pip from the base interpreter.
RUN python -m pip uninstall --yes pip setuptools wheel \
 && groupadd --gid 10001 switchboard \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin switchboard
USER 10001:10001

FROM runtime AS ingress
COPY --from=builder /opt/switchboard-ingress /opt/venv
ENV PATH=/opt/venv/bin:$PATH
EXPOSE 8080
ENTRYPOINT ["switchboard-ingress"]

FROM runtime AS controller
COPY --from=builder /opt/switchboard-controller /opt/venv
ENV PATH=/opt/venv/bin:$PATH
ENTRYPOINT ["switchboard-controller"]

FROM runtime AS session
COPY --from=builder /opt/switchboard-session /opt/venv
ENV PATH=/opt/venv/bin:$PATH
ENTRYPOINT ["switchboard-session"]

FROM runtime AS projector
COPY --from=builder /opt/switchboard-projector /opt/venv
ENV PATH=/opt/venv/bin:$PATH
ENTRYPOINT ["switchboard-projector"]

FROM runtime AS console
COPY --from=builder /opt/switchboard-console /opt/venv
ENV PATH=/opt/venv/bin:$PATH
EXPOSE 8090
ENTRYPOINT ["switchboard-console"]

FROM runtime AS cli
COPY --from=builder /opt/switchboard /opt/venv
ENV PATH=/opt/venv/bin:$PATH
ENTRYPOINT ["switchboard"]
CMD ["--help"]
