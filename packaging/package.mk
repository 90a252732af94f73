# Packaging targets, included from the top Makefile:
#   make package   dist/firehose_<version>-1_<arch>.deb and dist/firehose-<version>-1.<arch>.rpm
#   make repo      dist/repo/, a flat apt repository of those debs
#   make package-check  lintian, rpmlint, rpm -qpl and rpm -qp --scripts
#   make e2e       the booted-systemd end-to-end test (root; see README.md, "Packages and systemd")

# Keep whatever default goal the including Makefile had (restored at the end).
_firehose_default_goal := $(.DEFAULT_GOAL)

FIREHOSE_GIT_VERSION := $(shell git describe --tags --always --dirty 2>/dev/null || echo unknown)
FIREHOSE_PKG_VERSION := $(shell packaging/version.sh $(FIREHOSE_GIT_VERSION))
FIREHOSE_PKG_RELEASE ?= 1
FIREHOSE_ARCHES ?= amd64 arm64
FIREHOSE_CONFIG_SRC ?= packaging/firehose.toml

# nfpm is pinned and built once; `go install` leaves go.mod alone.
NFPM_VERSION := v2.45.2
FIREHOSE_TOOLS ?= $(CURDIR)/.cache/tools
NFPM := $(FIREHOSE_TOOLS)/nfpm-$(NFPM_VERSION)

FIREHOSE_STAGE := dist/stage
FIREHOSE_LDFLAGS := -s -w -X github.com/firehose/firehose/appliance/version.Version=$(FIREHOSE_GIT_VERSION)

export FIREHOSE_PKG_VERSION FIREHOSE_PKG_RELEASE

.PHONY: package repo package-check e2e stage

$(NFPM):
	mkdir -p $(FIREHOSE_TOOLS)/.bin-$(NFPM_VERSION)
	GOBIN=$(FIREHOSE_TOOLS)/.bin-$(NFPM_VERSION) go install github.com/goreleaser/nfpm/v2/cmd/nfpm@$(NFPM_VERSION)
	mv $(FIREHOSE_TOOLS)/.bin-$(NFPM_VERSION)/nfpm $@

# Always rebuilt: the version comes from git, and go's cache makes it cheap.
stage:
	rm -rf $(FIREHOSE_STAGE)
	mkdir -p $(FIREHOSE_STAGE)
	set -e; for a in $(FIREHOSE_ARCHES); do \
		CGO_ENABLED=0 GOOS=linux GOARCH=$$a go build -trimpath -ldflags "$(FIREHOSE_LDFLAGS)" \
			-o $(FIREHOSE_STAGE)/$$a/firehosectl ./cmd/firehosectl; \
	done
	gzip -9n <packaging/man/firehosectl.1 >$(FIREHOSE_STAGE)/firehosectl.1.gz
	cp README.md $(FIREHOSE_STAGE)/README.md
	cp $(FIREHOSE_CONFIG_SRC) $(FIREHOSE_STAGE)/firehose.toml
	packaging/changelog.sh $(FIREHOSE_PKG_VERSION)-$(FIREHOSE_PKG_RELEASE) $(FIREHOSE_GIT_VERSION) >$(FIREHOSE_STAGE)/changelog.yml

package: stage $(NFPM)
	rm -f dist/firehose_*.deb dist/firehose-*.rpm
	set -e; for a in $(FIREHOSE_ARCHES); do \
		GOARCH=$$a $(NFPM) pkg --config nfpm.yaml --packager deb --target dist/; \
		GOARCH=$$a $(NFPM) pkg --config nfpm.yaml --packager rpm --target dist/; \
	done
	@ls -1 dist/*.deb dist/*.rpm

repo: package
	rm -rf dist/repo
	mkdir -p dist/repo
	cp dist/firehose_*.deb dist/repo/
	packaging/repo.sh dist/repo

package-check: package
	packaging/check.sh dist

# Two newer builds of the same commit (releases +1 and +2): one to upgrade to
# over a broken config, one for the clean upgrade. The rpm and a newer one
# go in too, to run their scriptlets under the container's systemd.
e2e: repo
	rm -rf dist/e2e
	mkdir -p dist/e2e/upgrade dist/e2e/rpm
	set -e; for r in $$(($(FIREHOSE_PKG_RELEASE)+1)) $$(($(FIREHOSE_PKG_RELEASE)+2)); do \
		GOARCH=amd64 FIREHOSE_PKG_RELEASE=$$r $(NFPM) pkg --config nfpm.yaml --packager deb --target dist/e2e/upgrade/; \
	done
	cp dist/firehose-*.x86_64.rpm dist/e2e/rpm/
	GOARCH=amd64 FIREHOSE_PKG_RELEASE=$$(($(FIREHOSE_PKG_RELEASE)+1)) $(NFPM) pkg --config nfpm.yaml --packager rpm --target dist/e2e/rpm/
	packaging/repo.sh dist/e2e/upgrade
	packaging/check.sh dist
	packaging/e2e/run.sh

.DEFAULT_GOAL := $(_firehose_default_goal)
