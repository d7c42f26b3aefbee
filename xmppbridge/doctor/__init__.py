"""`xmppbridge doctor`: a live check of a deployment, one line per check (ok, warn or FAIL, what was
found, the fix), in the spirit of ``prosodyctl check connectivity``.

``report`` and ``advice`` are the pure core; ``local``, ``connect``, ``xmpp`` and ``relay`` do the I/O;
``run.diagnose`` puts them together.
"""

from xmppbridge.doctor.report import Check, Report, format_text, report_json
from xmppbridge.doctor.run import diagnose

__all__ = ["Check", "Report", "diagnose", "format_text", "report_json"]
