# Switchboard — build, demo, test, bench.
# `make demo` and `make test` install whatever this Debian machine is missing first.

SWIFT      ?= swift
CONFIG     ?= Config/demo.yaml
# System packages the build needs (C libraries), and those only the tests need: Python for the
# schema/interop checks, chromium + chromium-driver + selenium for the webchat browser tests,
# Dovecot for the email IMAP tests, aiosmtpd as the SMTP server the email tests send to, Postfix
# (installed unconfigured: the tests and the benchmark run private instances) and swaks as a
# real MTA and mail client in front of the LMTP listener.
APT_BUILD := libsystemd-dev libcurl4-openssl-dev libssl-dev libsqlite3-dev pkg-config curl systemd
APT_TEST  := python3 python3-pip chromium chromium-driver dovecot-imapd dovecot-lmtpd postfix swaks
# Independent implementations our output is checked against (schema, Standard Webhooks, CloudEvents).
PIP_PACKAGES := jsonschema rfc3339-validator standardwebhooks cloudevents openapi-spec-validator aiosmtpd selenium

.PHONY: all deps test-deps build release install demo test fuzz bench clean

all: build

# apt-get installs whatever of $(1) is missing (as root, or through sudo).
define apt_install
	@missing=""; for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  echo "postfix postfix/main_mailer_type select No configuration" | $$SUDO debconf-set-selections 2>/dev/null || true; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi
endef

deps:
	$(call apt_install,$(APT_BUILD))
	@command -v $(SWIFT) >/dev/null || { echo "Swift 6 is required (https://www.swift.org/install/linux/)"; exit 1; }

test-deps: deps
	$(call apt_install,$(APT_TEST))
	@missing=""; for p in $(PIP_PACKAGES); do python3 -c "import importlib.metadata as m; m.version('$$p')" 2>/dev/null || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing (pip):$$missing"; \
	  python3 -m pip install -q $$missing 2>/dev/null || python3 -m pip install -q --break-system-packages $$missing; \
	fi

build: deps
	$(SWIFT) build --product switchboard

# The production binary: optimised, with the Swift runtime linked in, so it runs without the
# toolchain (whose libraries a hardened unit may not even see, e.g. under ProtectHome=).
release: deps
	$(SWIFT) build -c release --product switchboard --static-swift-stdlib --build-path .build-static

# Installs the binary, the systemd units, sysusers/tmpfiles, the reference configuration (only
# when none is there: an existing one is never overwritten) and the docs, at the paths the
# units name (/usr/bin, /usr/share/doc). Run `make release` first, as yourself; then
# `sudo make install`. DESTDIR for packaging (then nothing is run on this machine).
PREFIX := /usr
install:
	@test -x .build-static/release/switchboard || { echo "run 'make release' first"; exit 1; }
	install -D -m 0755 .build-static/release/switchboard $(DESTDIR)$(PREFIX)/bin/switchboard
	install -D -m 0644 systemd/switchboard.service $(DESTDIR)/etc/systemd/system/switchboard.service
	install -D -m 0644 systemd/switchboard.socket $(DESTDIR)/etc/systemd/system/switchboard.socket
	install -D -m 0644 systemd/switchboard-public.socket $(DESTDIR)/etc/systemd/system/switchboard-public.socket
	install -D -m 0644 systemd/switchboard.sysusers $(DESTDIR)/etc/sysusers.d/switchboard.conf
	install -D -m 0644 systemd/switchboard.tmpfiles $(DESTDIR)/etc/tmpfiles.d/switchboard.conf
	install -d -m 0755 $(DESTDIR)$(PREFIX)/share/doc/switchboard
	install -m 0644 README.md docs/*.md docs/openapi.yaml $(DESTDIR)$(PREFIX)/share/doc/switchboard/
	install -d -m 0755 $(DESTDIR)/etc/switchboard
	@if [ -e $(DESTDIR)/etc/switchboard/switchboard.yaml ]; then \
	  echo "kept the existing /etc/switchboard/switchboard.yaml (the new reference is in $(PREFIX)/share/doc/switchboard/)"; \
	else install -m 0640 Config/switchboard.yaml $(DESTDIR)/etc/switchboard/switchboard.yaml; fi
	install -m 0644 Config/switchboard.yaml $(DESTDIR)$(PREFIX)/share/doc/switchboard/switchboard.yaml
	@if [ -z "$(DESTDIR)" ]; then \
	  systemd-sysusers switchboard.conf && systemd-tmpfiles --create switchboard.conf \
	  && chgrp switchboard /etc/switchboard/switchboard.yaml && systemctl daemon-reload; \
	fi
	@echo "installed; next: edit /etc/switchboard/switchboard.yaml and create its credentials (docs/operations.md), then"
	@echo "  systemctl enable --now switchboard.socket switchboard.service"

demo: build
	@mkdir -p .switchboard
	@echo "Switchboard demo: public listener http://127.0.0.1:8080, API http://127.0.0.1:8081 and .switchboard/api.sock"
	@echo "  try:  .build/debug/switchboard simulate demo --config $(CONFIG) --text 'Hello!'"
	.build/debug/switchboard serve --config $(CONFIG)

test: test-deps
	$(SWIFT) build --build-tests
	$(SWIFT) test --skip-build
	FUZZ_SECONDS=$(TEST_FUZZ_SECONDS) SWIFT=$(SWIFT) bash Fuzz/run.sh

# libFuzzer on the email MIME path and the IMAP response parser (Fuzz/): `make test` runs each
# target briefly, `make fuzz FUZZ_SECONDS=3600` for a real session.
TEST_FUZZ_SECONDS ?= 20
FUZZ_SECONDS ?= 300
fuzz: deps
	FUZZ_SECONDS=$(FUZZ_SECONDS) SWIFT=$(SWIFT) bash Fuzz/run.sh

# The WhatsApp phase compares with pywa (a Python WhatsApp framework) on uvicorn.
BENCH_PIP_PACKAGES := 'pywa[fastapi]' uvicorn

bench: test-deps
	@python3 -c "import pywa, uvicorn, fastapi" 2>/dev/null || python3 -m pip install -q $(BENCH_PIP_PACKAGES) 2>/dev/null \
	  || python3 -m pip install -q --break-system-packages $(BENCH_PIP_PACKAGES) || echo "bench: pywa not installed; its comparison is skipped"
	bash Benchmarks/run.sh

clean:
	rm -rf .build .build-static .switchboard
