"""The SMTP session notices, copies and alerts go through: the smtp provider's `SmtpHook`,
holding one session open for many messages (made by `dereg.connections.smtp_hook`)."""

from __future__ import annotations

import re
import smtplib
import ssl

from airflow.providers.smtp.hooks.smtp import SmtpHook

from dereg.errors import NotifyError
from dereg.redact import redact

_PLAIN_ADDRESS = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9.-]+$")


class NoticeSmtpHook(SmtpHook):
    """The SMTP provider's hook holding one session open for many messages.

    Differences from `SmtpHook`: STARTTLS is used only on a plain connection (the provider would
    also try it inside SSL); the connection extra `ssl_ca_file` names the CA bundle the server's
    certificate is verified against (default: the system's); errors become a `NotifyError` that
    names the server and what to check, never a password or an address.
    """

    @property
    def smtp_starttls(self) -> bool:
        return super().smtp_starttls and not self.use_ssl

    def _build_ssl_context(self) -> ssl.SSLContext | None:
        context = super()._build_ssl_context()
        ca_file = self.conn.extra_dejson.get("ssl_ca_file")
        if context is not None and ca_file:
            context = ssl.create_default_context(cafile=ca_file)
        return context

    def where(self) -> str:
        try:
            return f"SMTP server {self.host or '?'}:{self.port or (465 if self.use_ssl else 25)}"
        except Exception:  # noqa: BLE001 - the connection itself could not be loaded
            return f"the SMTP server of connection {self.smtp_conn_id!r}"

    def open(self) -> NoticeSmtpHook:
        try:
            return self.get_conn()
        except Exception as exc:  # noqa: BLE001 - any failure to open is reported the same way
            self._smtp_client = None
            hint = "Check the SMTP connection's host, port, TLS settings and credentials"
            if isinstance(exc, ssl.SSLCertVerificationError):
                hint = (
                    "The server's certificate could not be verified: set the connection extra "
                    "ssl_ca_file to the CA bundle that signed it (or fix the host name)"
                )
            elif isinstance(exc, smtplib.SMTPAuthenticationError):
                hint = "The server refused the connection's login and password"
            raise NotifyError(
                f"{self.where()} of connection {self.smtp_conn_id!r} cannot be used: unreachable, or it "
                f"refused TLS or the login ({type(exc).__name__}: {redact(str(exc))[:200]}). {hint}; "
                "nothing was recorded as sent."
            ) from None

    def alive(self) -> bool:
        return self._smtp_client is not None and getattr(self._smtp_client, "sock", None) is not None

    def reopen(self) -> None:
        self.close()
        self.open()

    def send_raw(self, sender: str, recipient: str, data: bytes) -> None:
        """One message, as wire bytes (CRLF line ends), to one recipient over the open session.

        The same exchange and exceptions as `smtplib.SMTP.sendmail` (MAIL, RCPT, DATA; RSET after a
        refusal, the session closed after a 421), without re-parsing two plain addresses per
        message, which is a good part of sendmail's own CPU time. Anything else goes through
        sendmail."""
        if not self.alive():
            self.reopen()
        client = self._smtp_client
        if not (_PLAIN_ADDRESS.match(sender) and _PLAIN_ADDRESS.match(recipient)):
            client.sendmail(sender, [recipient], data)
            return
        client.ehlo_or_helo_if_needed()
        size = f" SIZE={len(data)}" if client.has_extn("size") else ""
        code, reply = client.docmd("mail", f"FROM:<{sender}>{size}")
        if code != 250:
            self._abandon(client, code)
            raise smtplib.SMTPSenderRefused(code, reply, sender)
        code, reply = client.docmd("rcpt", f"TO:<{recipient}>")
        if code not in (250, 251):
            self._abandon(client, code)
            raise smtplib.SMTPRecipientsRefused({recipient: (code, reply)})
        code, reply = client.data(data)
        if code != 250:
            self._abandon(client, code)
            raise smtplib.SMTPDataError(code, reply)

    @staticmethod
    def _abandon(client, code: int) -> None:
        if code == 421:
            client.close()
        else:
            client._rset()

    def close(self) -> None:
        client, self._smtp_client = self._smtp_client, None
        if client is not None:
            try:
                client.quit()
            except Exception:  # noqa: BLE001 - closing a session that may already be gone
                try:
                    client.close()
                except Exception:  # noqa: BLE001
                    pass
