# pgbackups: build, test, bench, lint. Plain targets around the go tool and
# the project's scripts; nothing here is needed to `go install` the binary.

VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT  ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
# The same flags as the Dockerfile's build stage (deploy_test.go checks both).
LDFLAGS := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT)

.PHONY: all build test bench lint readme-config

all: lint build

# A static binary, stamped for `pgbackups version`.
build:
	CGO_ENABLED=0 go build -trimpath -ldflags "$(LDFLAGS)" -o pgbackups .

# The whole suite, exactly as CI runs it: installs what it needs, then
# go vet and go test ./... with CI=true.
test:
	./scripts/test.sh

bench:
	./bench/run.sh

lint:
	@out="$$(gofmt -l .)"; if [ -n "$$out" ]; then echo "gofmt -l: these files need gofmt -w:"; echo "$$out"; exit 1; fi
	go vet ./...

# Rewrites the block between README.md's config-reference markers with
# `pgbackups help config`, generated from the config struct; deploy_test.go's
# TestReadmeConfigReference fails when the two disagree.
readme-config:
	@grep -q '^<!-- config-reference:start -->$$' README.md && grep -q '^<!-- config-reference:end -->$$' README.md \
		|| { echo "README.md lacks the <!-- config-reference:start/end --> marker lines"; exit 1; }
	go run . help config > README.md.ref
	awk '/^<!-- config-reference:end -->$$/ { skip = 0 } \
		!skip { print } \
		/^<!-- config-reference:start -->$$/ { print ""; while ((getline line < "README.md.ref") > 0) print line; print ""; skip = 1 }' \
		README.md > README.md.new
	mv README.md.new README.md
	rm -f README.md.ref
