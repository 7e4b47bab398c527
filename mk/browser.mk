# Headless Chromium for the browser test of the Dagster UI (bioreview_assets_tests/ui/). Debian's package via
# apt-get when it is missing and apt-get is there; otherwise nothing happens and that test skips, saying why.

.PHONY: chromium
test-deps:: chromium

CHROMIUM_BIN := $(firstword $(shell command -v chromium chromium-browser 2>/dev/null))
# apt-get needs root; sudo only when it asks for no password (CI has no terminal to type one into).
APT_AS := $(if $(filter 0,$(shell id -u)),,$(if $(shell sudo -n true 2>/dev/null && echo ok),sudo -n))

chromium:
ifeq ($(CHROMIUM_BIN),)
	@if command -v apt-get >/dev/null 2>&1 && { [ "$$(id -u)" = 0 ] || [ -n "$(APT_AS)" ]; }; then \
		echo "installing chromium (Debian package) for the UI browser test"; \
		$(APT_AS) apt-get update -qq && $(APT_AS) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium \
			|| echo "chromium could not be installed: the UI browser test will be skipped"; \
	else \
		echo "chromium not found and apt-get is unavailable here: the UI browser test will be skipped"; \
	fi
else
	@true
endif
