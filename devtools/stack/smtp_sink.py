"""An SMTP sink for the demo and tests: aiosmtpd storing each message as a `.eml` file.

Run as `python -m devtools.stack.smtp_sink --port 8025 --dir .state/mail`. For tests: addresses in
`refuse` are refused with 550 at RCPT time, as a real relay refuses unknown mailboxes; addresses in
`defer` (address -> how many times) get 451 at RCPT, as a greylisting relay answers; addresses in
`close_at_data` (address -> how many times) get 421 after DATA, and the client drops the session.
"""

from __future__ import annotations

import argparse
import signal
import threading
import uuid
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import Envelope


class StoringHandler:
    def __init__(self, directory: Path, refuse: set[str] | None = None):
        self.directory = directory
        self.refuse = {a.lower() for a in (refuse or set())}
        self.defer: dict[str, int] = {}
        self.close_at_data: dict[str, int] = {}
        self.temporary_replies = 0
        directory.mkdir(parents=True, exist_ok=True)

    async def handle_RCPT(self, server, session, envelope: Envelope, address: str, rcpt_options):
        if address.lower() in self.refuse:
            return "550 5.1.1 mailbox unavailable"
        if self.defer.get(address.lower(), 0) > 0:
            self.defer[address.lower()] -= 1
            self.temporary_replies += 1
            return "451 4.7.1 greylisted, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope: Envelope):
        rcpt = envelope.rcpt_tos[0].lower() if envelope.rcpt_tos else ""
        if self.close_at_data.get(rcpt, 0) > 0:
            self.close_at_data[rcpt] -= 1
            self.temporary_replies += 1
            return "421 4.3.2 service shutting down"
        name = f"{uuid.uuid4().hex}.eml"
        tmp = self.directory / f".{name}.tmp"
        tmp.write_bytes(envelope.original_content or envelope.content)
        tmp.rename(self.directory / name)
        return "250 Message accepted for delivery"


def start_sink(directory: Path, port: int, refuse: set[str] | None = None, **smtp_options) -> Controller:
    """`smtp_options` go to aiosmtpd's SMTP (tls_context, require_starttls, authenticator, ...)."""
    controller = Controller(
        StoringHandler(directory, refuse), hostname="127.0.0.1", port=port, **smtp_options
    )
    controller.start()
    return controller


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8025)
    parser.add_argument("--dir", type=Path, required=True)
    args = parser.parse_args()
    from devtools.stack.ports import require_free

    require_free(args.port, "the SMTP sink", "DEREG_SMTP_PORT")
    controller = start_sink(args.dir, args.port)
    print(f"SMTP sink on 127.0.0.1:{args.port}, storing messages in {args.dir}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    controller.stop()


if __name__ == "__main__":
    main()
