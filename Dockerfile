# syntax=docker/dockerfile:1
#
# pgbackups: a static Go binary on Debian with PostgreSQL client tools.
#
#   docker build -t pgbackups \
#     --build-arg VERSION="$(git describe --tags --always --dirty)" \
#     --build-arg COMMIT="$(git rev-parse --short HEAD)" .
#
# Client versions: pg_dump refuses to dump a server newer than itself, and
# pgbackups uses the server's own major version of pg_dump from
# /usr/lib/postgresql/*/bin, else the oldest newer one (and pg_restore by
# the target server's version likewise: pg_restore 17+ cannot restore into
# PostgreSQL 16 or older). The image carries several majors from
# apt.postgresql.org (PGDG): by default the PG_CLIENTS newest released ones
# PGDG offers when the image is built. Pin an exact set, or slim the image to
# the one your server needs, with e.g. --build-arg PG_MAJORS="17 16".
# PGBACKUPS_PG_BIN_DIR=/usr/lib/postgresql/16/bin forces one at run time.
#
# deploy_test.go parses this file and runs the build stage's `go build` for
# real, so the binary this image ships is built and tested without a
# container engine.

ARG GO_VERSION=1.26
ARG DEBIAN_RELEASE=bookworm

FROM --platform=$BUILDPLATFORM golang:${GO_VERSION}-${DEBIAN_RELEASE} AS build
ARG TARGETOS
ARG TARGETARCH
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG VERSION=dev
ARG COMMIT=unknown
# Static (no cgo: runs on any glibc or none), reproducible (-trimpath, no
# VCS stamping: .git is not in the context), stamped for `pgbackups version`.
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} go build -trimpath -ldflags "-s -w -X main.version=${VERSION} -X main.commit=${COMMIT}" -o /out/pgbackups .

# Only the PGDG signing key is taken from here: Debian's postgresql-common
# ships it, so the key is as trusted as the Debian archive and the runtime
# image needs neither curl nor gpg to add the repository.
FROM --platform=$BUILDPLATFORM debian:${DEBIAN_RELEASE}-slim AS pgdg-key
WORKDIR /tmp/pgdg
RUN apt-get update \
    && apt-get download postgresql-common \
    && dpkg-deb -x postgresql-common_*.deb . \
    && cp usr/share/postgresql-common/pgdg/apt.postgresql.org.asc /pgdg.asc \
    && rm -rf /var/lib/apt/lists/*

FROM debian:${DEBIAN_RELEASE}-slim
ARG DEBIAN_RELEASE
# Empty: the PG_CLIENTS newest majors PGDG offers. Or a list: "17 16 15".
ARG PG_MAJORS=""
ARG PG_CLIENTS=5

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# A fixed non-root uid, so Kubernetes' runAsNonRoot can verify it and volumes
# can be chowned to it ahead of time. Its home is the state directory: the
# local backend's default and where libpq looks for ~/.pgpass. 0700: backups
# hold the whole database, and a new named volume copies this mode.
RUN groupadd --system --gid 65532 pgbackups \
    && useradd --system --uid 65532 --gid pgbackups --home-dir /var/lib/pgbackups --shell /usr/sbin/nologin pgbackups \
    && install -d -o pgbackups -g pgbackups -m 0700 /var/lib/pgbackups

COPY --from=pgdg-key /pgdg.asc /usr/share/keyrings/apt.postgresql.org.asc

# Packages are not pinned to versions: the clients and CA certificates must
# take upstream security fixes whenever the image is rebuilt; the base image
# tag and PG_MAJORS are the pins.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && printf '%s\n' 'Types: deb' 'URIs: https://apt.postgresql.org/pub/repos/apt' \
       "Suites: ${DEBIAN_RELEASE}-pgdg" 'Components: main' \
       'Signed-By: /usr/share/keyrings/apt.postgresql.org.asc' \
       > /etc/apt/sources.list.d/pgdg.sources \
    && apt-get update \
    && read -r -a majors <<< "${PG_MAJORS}" \
    && if [ "${#majors[@]}" -eq 0 ]; then \
         mapfile -t majors < <(apt-cache pkgnames postgresql-client- \
           | sed -n 's/^postgresql-client-\([0-9][0-9]*\)$/\1/p' | sort -rnu | head -n "${PG_CLIENTS}"); \
       fi \
    && [ "${#majors[@]}" -gt 0 ] \
    && apt-get install -y --no-install-recommends zstd "${majors[@]/#/postgresql-client-}" \
    && rm -rf /var/lib/apt/lists/* \
    && ls -d /usr/lib/postgresql/*/bin/pg_dump

# Declared late: a new VERSION or COMMIT must not rebuild the layers above.
ARG VERSION=dev
ARG COMMIT=unknown
LABEL org.opencontainers.image.title="pgbackups" \
      org.opencontainers.image.description="Scheduled PostgreSQL backups: pg_dump streamed through zstd into S3 or a local directory" \
      org.opencontainers.image.source="https://github.com/pgbackups/pgbackups" \
      org.opencontainers.image.url="https://github.com/pgbackups/pgbackups" \
      org.opencontainers.image.documentation="https://github.com/pgbackups/pgbackups#readme" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${COMMIT}"

COPY --from=build /out/pgbackups /usr/local/bin/pgbackups

USER 65532:65532
WORKDIR /var/lib/pgbackups
VOLUME ["/var/lib/pgbackups"]
EXPOSE 8080

# The binary probes its own /healthz: no curl in the image. `docker ps`
# then says whether backups succeed. /healthz stays unhealthy across a
# restart while the last success is stale, so where an unhealthy container
# is replaced (Docker Swarm, autoheal), override this with
# `pgbackups healthcheck --live`, which probes /livez.
HEALTHCHECK --interval=30s --timeout=10s --start-period=30s --retries=3 \
    CMD ["pgbackups", "healthcheck"]

# On SIGTERM the daemon lets an in-flight backup finish for
# PGBACKUPS_SHUTDOWN_GRACE (30s), then aborts it; cleaning up against a
# storage endpoint that stopped answering takes up to about 70 s more. Give
# `docker stop -t` (or `docker run --stop-timeout`) the grace plus 90 s:
# 120 with the default.
STOPSIGNAL SIGTERM
ENTRYPOINT ["pgbackups"]
CMD ["daemon"]
