# `make demo` and `make test` work on a fresh Debian machine: they install what is missing
# (Debian packages with apt, the Python package into .venv) and then run.

VENV ?= .venv
PY := $(VENV)/bin/python
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)
# Every Debian package the demo and the tests use, installed with --no-install-recommends, so a
# package that another one only recommends must be named here (README.md, "Debian packages"):
# prosody + lua-dbi-sqlite3: the XMPP servers of the demo and integration tests (SQLite pubsub storage)
# lua-unbound: Prosody's resolver (libunbound); without it Prosody ignores its `unbound` settings and
#   the hosts file, and s2s between the local domains fails with remote-server-not-found. Debian's
#   prosody only recommends it.
# xmlsec1: signature interoperability tests; trang: converts the Atom RELAX NG schemas for feed tests
# chromium: headless browser test of the feed's HTML views
# ejabberd: the second XMPP server the bridge supports (mixed-federation tests);
# profanity + tmux: a real chat client, driven like a person, for the chat tests
# postgresql: the private clusters (initdb in a temporary directory) of the PostgreSQL store tests
# erlang-p1-pgsql: ejabberd's PostgreSQL driver (Debian's ejabberd only suggests it), for the ejabberd
#   cluster test's pubsub on SQL storage
# iproute2: network namespaces and veth links (ip, tc) for the machine-loss failover test (tests/netns.py)
DEBIAN_PACKAGES := prosody lua-dbi-sqlite3 lua-unbound xmlsec1 trang chromium ejabberd profanity tmux postgresql erlang-p1-pgsql iproute2

.PHONY: demo test bench lint system-packages clean

demo: system-packages $(VENV)/.installed
	$(PY) -m xmppbridge.cli demo --workdir var/demo

test: system-packages $(VENV)/.installed
	$(PY) -m ruff check xmppbridge tests
	$(PY) -m pytest -q

# Benchmarks print their figures and comparisons; not part of `make test` or CI.
bench: system-packages $(VENV)/.installed
	$(PY) -m pip install -q -e '.[bench]'
	@for script in bench/bench_*.py; do echo "== $$script"; $(PY) $$script || exit 1; done

lint: $(VENV)/.installed
	$(PY) -m ruff check xmppbridge tests

system-packages:
	@missing=""; for p in $(DEBIAN_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

clean:
	rm -rf $(VENV) var build *.egg-info
